//! The registry service: path operations on *registry* paths. It resolves each path through the
//! mount table to a store and a target path, refuses what crosses databases (EXDEV) or writes to
//! read-only mounts (EROFS), and shows mount points with the mounted collection's attributes.

mod archive;

use std::sync::Arc;
use std::time::SystemTime;

use tracing::warn;

use crate::authz::{Action, Authorizer};
use crate::content::{Content, SpoolPolicy};
use crate::err;
use crate::error::Result;
use crate::mount_table::MountTable;
use crate::path::{self, TargetPath};
use crate::store::{
    AttrChange, DirEntry, Entry, FeedHealth, FeedSink, Field, Heard, Kind, LINK_MEDIA_TYPE,
    LogEntry, LogQuery, Metadata, NewEntry, RenameMode, SetMode, SpaceInfo, Store, VersionInfo,
};

/// Longest symlink text made into a Carbon link: `registry.linkrestoration` holds the link's
/// path, the target and the user in REG_PROPERTY.REG_VALUE, 1000 characters in Carbon's schema.
const CARBON_LINK_TARGET_MAX: usize = 400;

/// What a Carbon symbolic link's `registry.linkrestoration` (`path;target;user`) points to, as
/// the text of a symlink: the target relative to the link's collection. Carbon resolves it the
/// same way (`Repository.put`: relative to the recorded path, applied to the current one), so a
/// moved link keeps pointing where it did relative to itself.
fn link_text(restoration: &str) -> Option<String> {
    let mut parts = restoration.split(';');
    let (link, target) = (parts.next()?, parts.next()?);
    let dir = path::parent(link).unwrap_or("/");
    Some(path::relative_to(dir, target))
}

/// One page of a listing.
pub struct Page {
    pub entries: Vec<DirEntry>,
    /// The last name fetched (visible or not): the next page starts after it.
    pub cursor: Option<String>,
    /// Whether more children may follow.
    pub more: bool,
}

/// How recently a change feed must have confirmed it heard everything for
/// [`Registry::feed_vouches`] (its heartbeats and polls confirm several times a second).
pub const FEED_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

pub struct Registry {
    table: MountTable,
    /// `None` leaves every decision to POSIX modes (tests of the layers below use this).
    authz: Option<Arc<Authorizer>>,
    /// Whether a healthy change feed stands in for reading a file's version at open (`[cache]
    /// open_trusts_feed`).
    trust_feed: bool,
    /// Each store's change feed, once started.
    feeds: parking_lot::Mutex<Vec<Feed>>,
}

/// A started change feed: its store, how it hears changes, and its health.
struct Feed {
    store_id: usize,
    how: String,
    health: FeedHealth,
}

/// How one database behind the mount table is doing (`regfs status`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DatabaseStatus {
    /// The store's name: its data source, or its SQLite file.
    pub name: String,
    /// The registry paths mounted from it.
    pub mounted_at: Vec<String>,
    pub reachable: bool,
    /// How long a query took to answer.
    pub answer_ms: Option<f64>,
    /// Why it is not reachable.
    pub error: Option<String>,
    /// Its change feed, if it has one.
    pub feed: Option<FeedStatus>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FeedStatus {
    /// How it hears changes (`LISTEN regfs_changes ...`, `REG_LOG ... polled ...`).
    pub how: String,
    /// It confirmed lately that it heard everything committed (see [`FeedHealth`]).
    pub healthy: bool,
}

impl Registry {
    pub fn new(table: MountTable, authz: Option<Arc<Authorizer>>) -> Self {
        Self {
            table,
            authz,
            trust_feed: false,
            feeds: Default::default(),
        }
    }

    /// Lets a healthy change feed stand in for revalidation (see [`Registry::feed_vouches`]).
    pub fn trusting_feeds(mut self, trust: bool) -> Self {
        self.trust_feed = trust;
        self
    }

    /// Whether what this node remembers of `p` may be taken as current without asking the
    /// database: trusting feeds is on, and the feed of `p`'s database confirmed within
    /// [`FEED_FRESH`] that it heard everything committed (a change it heard drops `p` from the
    /// caches before that). False for a database without a feed.
    pub fn feed_vouches(&self, p: &str) -> bool {
        if !self.trust_feed {
            return false;
        }
        let store_id = self.table.resolve(p).mount.store_id;
        self.feeds
            .lock()
            .iter()
            .any(|f| f.store_id == store_id && f.health.fresh(FEED_FRESH))
    }

    /// How each database behind the mount table is doing: a query (bounded by `within`)
    /// says whether it answers, and its feed whether it hears changes.
    pub async fn database_status(&self, within: std::time::Duration) -> Vec<DatabaseStatus> {
        let mounts = self.table.mounts();
        let mut out = Vec::new();
        for m in self.table.per_store() {
            let started = std::time::Instant::now();
            let answer = match tokio::time::timeout(within, m.store.stat("/")).await {
                Ok(Ok(_)) => Ok(started.elapsed()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {within:?}")),
            };
            let feed = self
                .feeds
                .lock()
                .iter()
                .find(|f| f.store_id == m.store_id)
                .map(|f| FeedStatus {
                    how: f.how.clone(),
                    // A few of its confirmations late, not one.
                    healthy: f.health.fresh(3 * FEED_FRESH),
                });
            out.push(DatabaseStatus {
                name: m.store.name().to_string(),
                mounted_at: mounts
                    .iter()
                    .filter(|o| o.store_id == m.store_id)
                    .map(|o| o.path.clone())
                    .collect(),
                reachable: answer.is_ok(),
                answer_ms: answer.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
                error: answer.err(),
                feed,
            });
        }
        out
    }

    /// Takes `health` as the feed of `p`'s database (tests without a server).
    #[cfg(test)]
    pub(crate) fn add_feed_health(&self, p: &str, health: FeedHealth) {
        let store_id = self.table.resolve(p).mount.store_id;
        self.feeds.lock().push(Feed {
            store_id,
            how: "a test's".into(),
            health,
        });
    }

    /// Whether [`Registry::feed_vouches`] may ever be true: trusting is on and a feed started.
    pub fn trusts_feeds(&self) -> bool {
        self.trust_feed && !self.feeds.lock().is_empty()
    }

    /// EACCES (with a log line naming user, path and action) unless the registry's permissions
    /// let `user` do `action` on `p`. Permissions are kept on the mount's *target* path.
    pub async fn authorize(&self, user: &str, p: &str, action: Action) -> Result<()> {
        let Some(authz) = &self.authz else {
            return Ok(());
        };
        // An archived version is authorized as its resource's path, as Carbon does.
        let p = path::split_version(p).map_or(p, |(base, _)| base);
        let target = self.table.resolve(p).target;
        authz.check(user, &target, p, action).await
    }

    /// Checks the user-management tables now (not at the permission cache's next poll) and
    /// drops the cache if they changed, moving [`Registry::permission_epoch`].
    pub async fn refresh_permissions(&self) -> Result<()> {
        match &self.authz {
            Some(a) => a.refresh().await,
            None => Ok(()),
        }
    }

    /// Moves each time a change of users, roles or permissions dropped the permission cache
    /// (0 without one).
    pub fn permission_epoch(&self) -> u64 {
        self.authz.as_ref().map_or(0, |a| a.epoch())
    }

    /// A value that changes when what this node cached may be out of date: another process
    /// committed to one of the databases, or the user-management tables changed. `None` when
    /// a database behind the mount table cannot tell ([`Store::foreign_commits`]).
    pub async fn change_token(&self) -> Result<Option<Vec<i64>>> {
        let mut token = vec![self.authz.as_ref().map_or(0, |a| a.epoch() as i64)];
        for store in self.table.stores() {
            let Some(v) = store.foreign_commits().await? else {
                return Ok(None);
            };
            token.push(v);
        }
        Ok(Some(token))
    }

    /// Starts the change feed of every database behind the mount table that has one (see
    /// [`Store::start_feed`]): `sink` hears the *registry* paths changed elsewhere (a target
    /// path hidden by a more specific mount is none). Returns each store's name and how its
    /// feed hears changes; empty when no store has a feed.
    pub async fn start_feeds(&self, sink: FeedSink) -> Result<Vec<(String, String)>> {
        let mut started = Vec::new();
        for m in self.table.per_store() {
            let (table, store_id, sink) = (self.table.clone(), m.store_id, sink.clone());
            let map: FeedSink = Arc::new(move |heard| match heard {
                Heard::Everything => sink(Heard::Everything),
                Heard::Permissions => sink(Heard::Permissions),
                Heard::Paths(targets) => {
                    let paths = targets
                        .iter()
                        .flat_map(|t| table.registry_paths(store_id, &TargetPath::new(t.as_str())))
                        .collect();
                    sink(Heard::Paths(paths))
                }
            });
            let health = FeedHealth::default();
            if let Some(how) = m.store.start_feed(map, health.clone()).await? {
                self.feeds.lock().push(Feed {
                    store_id,
                    how: how.clone(),
                    health,
                });
                started.push((m.store.name().to_string(), how));
            }
        }
        Ok(started)
    }

    pub fn mount_table(&self) -> &MountTable {
        &self.table
    }

    /// Writes the mount bookkeeping rows (link collections, mount records) for every mount
    /// into the node's own database, as Carbon does at start-up.
    pub async fn record_mounts(&self) -> Result<()> {
        let root = self.table.root();
        for m in self.table.mounts() {
            if m.path == "/" {
                continue;
            }
            // Only mounts whose parent lies in the node's own database are recorded there.
            let parent = path::parent(&m.path).unwrap_or("/");
            if self.table.resolve(parent).mount.store_id != root.store_id {
                continue;
            }
            root.store
                .ensure_mount_link(&m.path, &m.instance_id, &m.target, m.replace_local)
                .await?;
        }
        Ok(())
    }

    fn writable(&self, p: &str) -> Result<crate::mount_table::Resolved<'_>> {
        if path::split_version(p).is_some() {
            return Err(err!(EROFS, "{p} is an archived version: read-only"));
        }
        let r = self.table.resolve(p);
        if r.mount.read_only {
            return Err(err!(
                EROFS,
                "{p} is under the read-only mount {}",
                r.mount.path
            ));
        }
        Ok(r)
    }

    /// The entry at `p`. Needs get on `p`, except that a collection may be looked up (walked
    /// through) without it: Carbon checks only the path a request names, so a deeper grant
    /// (get on /a/secret/open) works under a denied collection (/a/secret), whose listing and
    /// attributes' readers still need get.
    pub async fn stat(&self, user: &str, p: &str) -> Result<Option<Entry>> {
        if let Some((base, snapshot)) = path::split_version(p) {
            self.authorize(user, base, Action::Get).await?;
            let r = self.table.resolve(base);
            return r
                .mount
                .store
                .stat_version(r.target.as_str(), snapshot)
                .await;
        }
        let denied = self.authorize(user, p, Action::Get).await.err();
        let r = self.table.resolve(p);
        let entry = match r.mount.store.stat(r.target.as_str()).await? {
            Some(e) => Some(Self::as_link(r.mount.store.as_ref(), r.target.as_str(), e).await?),
            None => None,
        };
        match (denied, &entry) {
            (Some(e), Some(found)) => Self::walk_through(user, p, e, found.kind).map(|_| entry),
            (Some(e), None) => Err(e),
            (None, _) => Ok(entry),
        }
    }

    /// A Carbon symbolic link (media type [`LINK_MEDIA_TYPE`], three-part
    /// `registry.linkrestoration`) shows as a symlink to its target; anything else as it is.
    /// Only rows of that media type cost a query.
    async fn as_link(store: &dyn Store, target: &str, mut entry: Entry) -> Result<Entry> {
        if entry.media_type.as_deref() != Some(LINK_MEDIA_TYPE) {
            return Ok(entry);
        }
        if let Some(text) = store
            .link_restoration(target)
            .await?
            .as_deref()
            .and_then(link_text)
        {
            entry.kind = Kind::Symlink;
            entry.perm = 0o777;
            entry.size = text.len() as u64;
        }
        Ok(entry)
    }

    /// What the symlink at `p` points to: a Carbon link's target relative to it, or a regfs
    /// symlink's stored text.
    pub async fn readlink(&self, user: &str, p: &str) -> Result<Vec<u8>> {
        self.authorize(user, p, Action::Get).await?;
        let r = self.table.resolve(p);
        if let Some(text) = r
            .mount
            .store
            .link_restoration(r.target.as_str())
            .await?
            .as_deref()
            .and_then(link_text)
        {
            return Ok(text.into_bytes());
        }
        r.mount.store.read(r.target.as_str()).await
    }

    /// The activity log at and below the registry path `p`, from every database the mount
    /// table puts there, newest first: each entry with its store id and the registry path it
    /// shows at. `q.below` and `q.after` are worked out per database: with `after` (the last
    /// id seen of each store id), only newer entries, oldest first.
    pub async fn activity(
        &self,
        p: &str,
        q: &LogQuery,
        after: Option<&std::collections::HashMap<usize, i64>>,
    ) -> Result<Vec<(usize, String, LogEntry)>> {
        let p = path::normalize(p);
        let resolved = self.table.resolve(&p);
        let mut out = Vec::new();
        let mounts = self.table.mounts();
        for m in self.table.per_store() {
            // Where in this database `p`'s subtree lies: the path `p` resolves to, and the
            // targets of its mounts below `p`.
            let mut prefixes: Vec<String> = Vec::new();
            if resolved.mount.store_id == m.store_id {
                prefixes.push(resolved.target.as_str().to_string());
            }
            for o in mounts.iter().filter(|o| o.store_id == m.store_id) {
                if o.path != p && path::is_within(&o.path, &p) && !prefixes.contains(&o.target) {
                    prefixes.push(o.target.clone());
                }
            }
            for prefix in prefixes {
                let q = LogQuery {
                    below: Some(prefix),
                    after: after.map(|a| a.get(&m.store_id).copied().unwrap_or(0)),
                    ..q.clone()
                };
                for e in m.store.activity(&q).await? {
                    let shown = self
                        .table
                        .registry_paths(m.store_id, &TargetPath::new(e.path.as_str()));
                    for at in shown.into_iter().filter(|at| path::is_within(at, &p)) {
                        if !out.iter().any(|(s, a, o): &(usize, String, LogEntry)| {
                            *s == m.store_id && *a == at && o.id == e.id
                        }) {
                            out.push((m.store_id, at, e.clone()));
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| b.2.time.cmp(&a.2.time).then(b.2.id.cmp(&a.2.id)));
        if after.is_some() {
            out.reverse();
        }
        Ok(out)
    }

    /// The archived versions of the resource at `p`, oldest first: needs get.
    pub async fn versions(&self, user: &str, p: &str) -> Result<Vec<VersionInfo>> {
        self.authorize(user, p, Action::Get).await?;
        let r = self.table.resolve(p);
        if r.mount.store.stat(r.target.as_str()).await?.is_none() {
            return Err(err!(ENOENT, "{p} does not exist"));
        }
        r.mount.store.versions(r.target.as_str()).await
    }

    /// Carbon's `restoreVersion` of `p` to its version `snapshot`: needs add, as a put does.
    pub async fn restore(&self, user: &str, p: &str, snapshot: i64) -> Result<Entry> {
        let r = self.writable(p)?;
        self.authorize(user, p, Action::Add).await?;
        r.mount
            .store
            .restore(r.target.as_str(), snapshot, user)
            .await
    }

    /// The registry metadata of `p` (properties, media type, UUID, ...): needs get.
    pub async fn metadata(&self, user: &str, p: &str) -> Result<Metadata> {
        self.authorize(user, p, Action::Get).await?;
        if path::split_version(p).is_some() {
            return Err(err!(
                ENODATA,
                "{p} is an archived version: its properties are not shown"
            ));
        }
        let r = self.table.resolve(p);
        r.mount
            .store
            .metadata(r.target.as_str())
            .await?
            .ok_or_else(|| err!(ENOENT, "{p} does not exist"))
    }

    /// Sets (`values`) or removes (`None`) the property `name` of `p`: needs add on `p`, as
    /// Carbon's put does; refused on read-only mounts and archived versions.
    pub async fn set_property(
        &self,
        user: &str,
        p: &str,
        name: &str,
        values: Option<&[String]>,
        mode: SetMode,
    ) -> Result<()> {
        let r = self.writable(p)?;
        self.authorize(user, p, Action::Add).await?;
        r.mount
            .store
            .set_property(r.target.as_str(), name, values, mode, user)
            .await
    }

    /// Sets (`None`: clears) the media type or description of `p`: needs add, as a put does.
    pub async fn set_field(
        &self,
        user: &str,
        p: &str,
        field: Field,
        value: Option<&str>,
    ) -> Result<()> {
        let r = self.writable(p)?;
        self.authorize(user, p, Action::Add).await?;
        r.mount
            .store
            .set_field(r.target.as_str(), field, value, user)
            .await
    }

    /// [`Registry::stat`]'s permission rule for an entry already at hand (a recent read).
    pub async fn authorize_stat(&self, user: &str, p: &str, kind: Kind) -> Result<()> {
        match self.authorize(user, p, Action::Get).await {
            Ok(()) => Ok(()),
            Err(e) => Self::walk_through(user, p, e, kind),
        }
    }

    /// A collection may be looked up without get (walked through); anything else may not.
    fn walk_through(user: &str, p: &str, denied: crate::error::Error, kind: Kind) -> Result<()> {
        if kind != Kind::Directory {
            return Err(denied);
        }
        tracing::debug!(
            user,
            path = p,
            "lookup of a collection without get: traversal only"
        );
        Ok(())
    }

    /// One page of `dir`'s children sorted by name, after `after`. Mount points among them show
    /// the mounted collection (and appear even if the local database has no row for them).
    /// Children the caller may not get are left out, as Carbon's getChildren does; the page's
    /// cursor is the last name fetched, hidden or not.
    pub async fn list_page(
        &self,
        user: &str,
        dir: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page> {
        self.authorize(user, dir, Action::Get).await?;
        let r = self.table.resolve(dir);
        let mut page = r.mount.store.list(r.target.as_str(), after, limit).await?;
        let full = page.len() as u32 >= limit;
        let mut changed = false;
        for (name, m) in self.table.child_mounts(dir) {
            if after.is_some_and(|a| name <= a) {
                continue;
            }
            if full && page.last().is_some_and(|last| name > last.name.as_str()) {
                continue;
            }
            let Some(entry) = m.store.stat(&m.target).await? else {
                page.retain(|e| e.name != name);
                continue;
            };
            match page.iter_mut().find(|e| e.name == name) {
                Some(e) => e.entry = entry,
                None => {
                    page.push(DirEntry {
                        name: name.to_string(),
                        entry,
                    });
                    changed = true;
                }
            }
        }
        if changed {
            page.sort_by(|a, b| a.name.cmp(&b.name));
            page.truncate(limit as usize);
        }
        for d in page
            .iter_mut()
            .filter(|d| d.entry.media_type.as_deref() == Some(LINK_MEDIA_TYPE))
        {
            let child = path::join(dir, &d.name);
            let r = self.table.resolve(&child);
            d.entry =
                Self::as_link(r.mount.store.as_ref(), r.target.as_str(), d.entry.clone()).await?;
        }
        let cursor = page.last().map(|d| d.name.clone());
        let more = full;
        if let Some(authz) = &self.authz {
            let mut visible = Vec::with_capacity(page.len());
            for d in page {
                let child = path::join(dir, &d.name);
                let target = self.table.resolve(&child).target;
                if authz.can(user, &target, Action::Get).await? {
                    visible.push(d);
                }
            }
            page = visible;
        }
        Ok(Page {
            entries: page,
            cursor,
            more,
        })
    }

    /// The content in memory (symlink targets, small files).
    pub async fn read(&self, user: &str, p: &str) -> Result<Vec<u8>> {
        self.authorize(user, p, Action::Get).await?;
        let r = self.table.resolve(p);
        r.mount.store.read(r.target.as_str()).await
    }

    /// The content with the `REG_VERSION` it belongs to, spooled to disk when `policy` says so.
    pub async fn read_content(
        &self,
        user: &str,
        p: &str,
        policy: &SpoolPolicy,
    ) -> Result<(i64, Content)> {
        self.authorize(user, p, Action::Get).await?;
        if let Some((base, snapshot)) = path::split_version(p) {
            let r = self.table.resolve(base);
            return r
                .mount
                .store
                .read_version(r.target.as_str(), snapshot)
                .await;
        }
        let r = self.table.resolve(p);
        r.mount.store.read_content(r.target.as_str(), policy).await
    }

    /// Creates `p`. A symlink whose text points inside the registry in normal form (see
    /// [`path::link_target`]) becomes a Carbon symbolic link, as `EmbeddedRegistry.createLink`
    /// writes one, so that Carbon's console shows it as a link; other symlinks (absolute, or
    /// out of the registry) are regfs's own, their text kept as content.
    pub async fn create(&self, p: &str, new: NewEntry, user: &str) -> Result<Entry> {
        let r = self.creatable(p, user).await?;
        let carbon_target = (new.kind == Kind::Symlink)
            .then(|| std::str::from_utf8(&new.content).ok())
            .flatten()
            .filter(|text| text.len() <= CARBON_LINK_TARGET_MAX && !text.contains(';'))
            .and_then(|text| path::link_target(p, text))
            .filter(|target| target != p && !p.contains(';'));
        let Some(target) = carbon_target else {
            return r.mount.store.create(r.target.as_str(), new, user).await;
        };
        // Carbon makes the link a resource when its target is one, else a collection.
        let t = self.table.resolve(&target);
        let as_resource = t
            .mount
            .store
            .stat(t.target.as_str())
            .await?
            .is_some_and(|e| e.kind != Kind::Directory);
        let restoration = format!("{p};{target};{user}");
        let entry = r
            .mount
            .store
            .create_link(
                r.target.as_str(),
                &restoration,
                &target,
                as_resource,
                new,
                user,
            )
            .await?;
        // Carbon's addMountEntry: a record of the link in the node's own database.
        let record = p.replace('/', "-");
        let props: [(&str, &str); 3] = [("path", p), ("target", &target), ("author", user)];
        if let Err(e) = self
            .table
            .root()
            .store
            .mount_record(&record, Some(&props))
            .await
        {
            warn!("{p}: the link is there, but its mount record was not written: {e}");
        }
        Self::as_link(r.mount.store.as_ref(), r.target.as_str(), entry).await
    }

    /// [`Registry::create`] of a file with `data` as its content, in one transaction (see
    /// [`Store::create_file`]).
    pub async fn create_file(
        &self,
        p: &str,
        new: NewEntry,
        data: &Content,
        user: &str,
    ) -> Result<Entry> {
        let r = self.creatable(p, user).await?;
        r.mount
            .store
            .create_file(r.target.as_str(), new, data, user)
            .await
    }

    /// Whether [`Registry::create`] of `p` by `user` would pass its checks now (mount points,
    /// read-only mounts, permissions), without creating anything: a file whose insert waits
    /// for its first commit is checked here when it is opened. Whether the name is free is
    /// not asked again: the kernel looked it up just before, in the same open.
    pub async fn check_create(&self, p: &str, user: &str) -> Result<()> {
        let r = self.creatable(p, user).await?;
        r.mount.store.check_new_name(r.target.as_str()).await
    }

    async fn creatable(&self, p: &str, user: &str) -> Result<crate::mount_table::Resolved<'_>> {
        if self.table.is_mount_point(p) {
            return Err(err!(EEXIST, "{p} is a mount point"));
        }
        let r = self.writable(p)?;
        if let Some(parent) = path::parent(p) {
            self.authorize(user, parent, Action::Add).await?;
        }
        self.authorize(user, p, Action::Add).await?;
        Ok(r)
    }

    pub async fn write(&self, p: &str, data: &Content, user: &str) -> Result<Entry> {
        let r = self.overwritable(p, user).await?;
        r.mount.store.write(r.target.as_str(), data, user).await
    }

    /// [`Registry::write`] only over `REG_VERSION` `expected` (see [`Store::write_if`]).
    pub async fn write_if(
        &self,
        p: &str,
        data: &Content,
        user: &str,
        expected: i64,
    ) -> Result<Entry> {
        let r = self.overwritable(p, user).await?;
        r.mount
            .store
            .write_if(r.target.as_str(), data, user, expected)
            .await
    }

    /// Whether [`Registry::write`] of `p` by `user` would pass its checks now (read-only
    /// mounts, archived versions, permissions), without writing: a handle that may change a
    /// file is checked when it is opened.
    pub async fn check_write(&self, p: &str, user: &str) -> Result<()> {
        self.overwritable(p, user).await.map(drop)
    }

    async fn overwritable(&self, p: &str, user: &str) -> Result<crate::mount_table::Resolved<'_>> {
        let r = self.writable(p)?;
        self.authorize(user, p, Action::Add).await?;
        Ok(r)
    }

    /// Removes the Carbon symbolic link `p` as Carbon's `removeLink` does, with its mount
    /// record. Returns the collection's new times.
    pub async fn remove_link(&self, p: &str, user: &str) -> Result<SystemTime> {
        let r = self.writable(p)?;
        self.authorize(user, p, Action::Delete).await?;
        let touched = r.mount.store.remove_link(r.target.as_str(), user).await?;
        if let Err(e) = self
            .table
            .root()
            .store
            .mount_record(&p.replace('/', "-"), None)
            .await
        {
            warn!("{p}: the link was removed, but its mount record was not: {e}");
        }
        Ok(touched)
    }

    /// Returns the collection's new times (see [`Store::remove`]).
    pub async fn remove(&self, p: &str, dir: bool, user: &str) -> Result<SystemTime> {
        if self.table.is_mount_point(p) {
            return Err(err!(EBUSY, "{p} is a mount point"));
        }
        let r = self.writable(p)?;
        self.authorize(user, p, Action::Delete).await?;
        let touched = match r.mount.store.remove(r.target.as_str(), dir, user).await {
            // An unlink of a collection: a Carbon link is one (the kernel saw a symlink).
            Err(e)
                if !dir
                    && e.errno() == libc::EISDIR
                    && r.mount
                        .store
                        .link_restoration(r.target.as_str())
                        .await?
                        .is_some() =>
            {
                return self.remove_link(p, user).await;
            }
            other => other?,
        };
        // Carbon clears a deleted path's grants (AuthorizationUtils.clearAuthorizations).
        if let Some(authz) = &self.authz
            && let Err(e) = authz.clear_path(&r.target).await
        {
            warn!("{p} was removed but its permission rows were not: {e}");
        }
        Ok(touched)
    }

    /// Returns the collections' new times (see [`Store::rename`]).
    pub async fn rename(
        &self,
        from: &str,
        to: &str,
        mode: RenameMode,
        user: &str,
    ) -> Result<Option<SystemTime>> {
        for p in [from, to] {
            if self.table.is_mount_point(p) {
                return Err(err!(EBUSY, "{p} is a mount point"));
            }
        }
        // A subtree holding a mount point cannot move: the mount would be left behind.
        if let Some(m) = self
            .table
            .mounts()
            .iter()
            .find(|m| m.path != "/" && path::is_within(&m.path, from))
        {
            return Err(err!(EBUSY, "{from} contains the mount point {}", m.path));
        }
        let src = self.writable(from)?;
        let dst = self.writable(to)?;
        self.authorize(user, from, Action::Delete).await?;
        if let Some(parent) = path::parent(to) {
            self.authorize(user, parent, Action::Add).await?;
        }
        self.authorize(user, to, Action::Add).await?;
        if src.mount.store_id != dst.mount.store_id {
            return Err(err!(
                EXDEV,
                "{from} and {to} live in different databases ({} and {})",
                src.mount.store.name(),
                dst.mount.store.name()
            ));
        }
        src.mount
            .store
            .rename(src.target.as_str(), dst.target.as_str(), mode, user)
            .await
    }

    pub async fn set_attr(&self, user: &str, p: &str, change: AttrChange) -> Result<Entry> {
        let r = self.writable(p)?;
        self.authorize(user, p, Action::Add).await?;
        let entry = r.mount.store.set_attr(r.target.as_str(), change).await?;
        Self::as_link(r.mount.store.as_ref(), r.target.as_str(), entry).await
    }

    /// Space used over every distinct database.
    pub async fn space(&self) -> Result<SpaceInfo> {
        let mut total = SpaceInfo::default();
        for store in self.table.stores() {
            let s = store.space().await?;
            total.bytes_used += s.bytes_used;
            total.entries += s.entries;
        }
        Ok(total)
    }
}
