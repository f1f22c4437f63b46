//! `regfs dump` and `regfs load`: a registry subtree to and from Carbon's dump format (see
//! [`crate::dump`]), across the mount table. A dump reads what `user` may get, entry by entry,
//! and writes as it walks; a load checks the whole dump first (names, permissions, read-only
//! mounts, and, when it spans several databases, conflicts), then writes each database's part
//! in one transaction.

use std::io::Write;
use std::sync::atomic::Ordering;

use super::Registry;
use crate::authz::Action;
use crate::content::SpoolPolicy;
use crate::dump::{self, DumpWriter, Node, Posix};
use crate::err;
use crate::error::Result;
use crate::path::{self, TargetPath};
use crate::store::rows::{naive_to_system, to_ns};
use crate::store::{Entry, Kind, LINK_MEDIA_TYPE, Loaded, Progress};

/// Carbon's property holding a symbolic link's `path;target;user`.
const LINK_RESTORATION: &str = "registry.linkrestoration";

/// How many children a dump lists at a time.
const PAGE: u32 = 500;

fn ms(t: std::time::SystemTime) -> i64 {
    to_ns(t).div_euclid(1_000_000)
}

fn naive_ms(t: chrono::NaiveDateTime) -> i64 {
    ms(naive_to_system(t))
}

impl Registry {
    /// Writes the subtree at `p` to `out` in Carbon's dump format, as `user` may read it
    /// (children `user` may not get are left out, as in a listing). Returns how many
    /// collections and resources it wrote; `progress.done` counts them as it goes.
    pub async fn dump<W: Write + Send>(
        &self,
        user: &str,
        p: &str,
        out: W,
        progress: &Progress,
    ) -> Result<(u64, W)> {
        let p = path::normalize(p);
        if path::split_version(&p).is_some() {
            return Err(err!(
                EINVAL,
                "{p} is an archived version: dump the resource itself"
            ));
        }
        self.authorize(user, &p, Action::Get).await?;
        let mut w = DumpWriter::new(out);
        let n = self.dump_walk(user, &p, &mut w, progress).await?;
        Ok((n, w.into_inner()?))
    }

    fn dump_walk<'a, W: Write + Send>(
        &'a self,
        user: &'a str,
        p: &'a str,
        w: &'a mut DumpWriter<W>,
        progress: &'a Progress,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64>> + Send + 'a>> {
        Box::pin(async move {
            let Some(node) = self.dump_node(p).await? else {
                return Err(err!(ENOENT, "{p} does not exist"));
            };
            w.open(&node, p)?;
            progress.done.fetch_add(1, Ordering::Relaxed);
            let mut count = 1;
            // A Carbon link is dumped as the collection it is, not followed.
            let link = node.media_type.as_deref() == Some(LINK_MEDIA_TYPE);
            if node.collection && !link {
                let mut after: Option<String> = None;
                loop {
                    let page = self.list_page(user, p, after.as_deref(), PAGE).await?;
                    for child in &page.entries {
                        let child_path = path::join(p, &child.name);
                        count += self.dump_walk(user, &child_path, w, progress).await?;
                    }
                    if !page.more {
                        break;
                    }
                    after = page.cursor;
                }
            }
            w.close(node.collection)?;
            Ok(count)
        })
    }

    /// One entry of a dump, its children not included: its row as the database holds it (a
    /// Carbon link as its collection or resource with its properties), `None` if nothing is
    /// at `p`. Association paths come out relative, as Carbon dumps them.
    async fn dump_node(&self, p: &str) -> Result<Option<Node>> {
        let r = self.table.resolve(p);
        let target = r.target.as_str();
        let store = r.mount.store.as_ref();
        let Some(entry) = store.stat(target).await? else {
            return Ok(None);
        };
        let Some(meta) = store.metadata(target).await? else {
            return Ok(None);
        };
        let collection = entry.kind == Kind::Directory;
        let content = match collection {
            true => None,
            false => Some(
                store
                    .read_content(target, &SpoolPolicy::in_memory())
                    .await?
                    .1
                    .into_vec()?,
            ),
        };
        let social = meta.social;
        let associations = social
            .associations
            .into_iter()
            .map(|(kind, dest)| {
                let destination = if dest.starts_with('/') {
                    let shown = self
                        .table
                        .registry_paths(r.mount.store_id, &TargetPath::new(dest.as_str()));
                    let at = shown.into_iter().next().unwrap_or(dest);
                    dump::relative_association(&at, p)
                } else {
                    format!(":{dest}")
                };
                dump::Association {
                    source: dump::relative_association(p, p),
                    destination,
                    kind,
                }
            })
            .collect();
        let said = |s: crate::store::Remark| dump::Said {
            user: s.user,
            time_ms: Some(naive_ms(s.time)),
            text: s.text,
        };
        Ok(Some(Node {
            name: path::name(p).to_string(),
            collection,
            media_type: meta.media_type,
            version: Some(meta.version),
            creator: Some(meta.creator),
            created_ms: Some(naive_ms(meta.created)),
            last_updater: meta.last_updater,
            last_modified_ms: Some(ms(entry.mtime)),
            uuid: Some(meta.uuid),
            description: meta.description,
            properties: meta
                .properties
                .into_iter()
                .flat_map(|(k, vs)| vs.into_iter().map(move |v| (k.clone(), v)))
                .collect(),
            comments: social.comments.into_iter().map(said).collect(),
            taggings: social.taggings.into_iter().map(said).collect(),
            ratings: social
                .ratings
                .into_iter()
                .map(|r| dump::Rated {
                    user: r.user,
                    time_ms: Some(naive_ms(r.time)),
                    rate: r.rate,
                })
                .collect(),
            associations,
            posix: Some(posix_of(&entry)),
            content,
            children: Vec::new(),
        }))
    }

    /// Writes the dump `node` at `p` (its name in the dump does not matter): collections
    /// already there are merged into, resources already there are EEXIST unless `overwrite`.
    /// Everything is checked before anything is written; each database the subtree spans
    /// takes its part in one transaction. `progress.done` counts entries as they are written.
    pub async fn load(
        &self,
        user: &str,
        p: &str,
        mut node: Node,
        overwrite: bool,
        progress: &Progress,
    ) -> Result<Loaded> {
        let p = path::normalize(p);
        node.name = path::name(&p).to_string();
        if p == "/" && !node.collection {
            return Err(err!(
                EISDIR,
                "/ is a collection: a resource cannot be loaded there"
            ));
        }
        // Names, permissions, read-only mounts, mount points: all before anything is written.
        if let Some(parent) = path::parent(&p) {
            self.writable(parent)?;
            self.authorize(user, parent, Action::Add).await?;
        }
        self.check_load(user, &p, &node, true).await?;
        // Paths inside the dump as each database will hold them.
        self.localize(&p, &mut node);
        let pieces = self.split_at_mounts(&p, node);
        if pieces.len() > 1 {
            for (at, piece) in &pieces {
                self.check_conflicts(at, piece, overwrite).await?;
            }
        }
        let mut total = Loaded::default();
        for (at, piece) in &pieces {
            let r = self.table.resolve(at);
            let done = r
                .mount
                .store
                .load(r.target.as_str(), piece, user, overwrite, Some(progress))
                .await?;
            progress.before.fetch_add(piece.count(), Ordering::Relaxed);
            progress.done.store(0, Ordering::Relaxed);
            total.created += done.created;
            total.replaced += done.replaced;
            total.merged += done.merged;
            total.new_uuids += done.new_uuids;
        }
        Ok(total)
    }

    /// The names, permissions (add on every path, as Carbon's restore checks put) and mounts
    /// of a load of `node` at `p`.
    fn check_load<'a>(
        &'a self,
        user: &'a str,
        p: &'a str,
        node: &'a Node,
        root: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            if !root {
                path::check_name(std::ffi::OsStr::new(&node.name))
                    .map_err(|e| crate::Error::new(e.errno(), format!("{p}: in the dump: {e}")))?;
            }
            self.writable(p)?;
            if self.table.is_mount_point(p) && !node.collection {
                return Err(err!(
                    EEXIST,
                    "{p} is a mount point: the dump has a resource there"
                ));
            }
            self.authorize(user, p, Action::Add).await?;
            for child in &node.children {
                self.check_load(user, &path::join(p, &child.name), child, false)
                    .await?;
            }
            Ok(())
        })
    }

    /// Rewrites what in `node` (at registry path `p`) names registry paths: a Carbon link's
    /// `path;target;user` now at `p` and pointing where it did relative to itself (as
    /// Carbon's restore resolves it), and association paths absolute, as target paths where
    /// they fall in the same database.
    fn localize(&self, p: &str, node: &mut Node) {
        if node.media_type.as_deref() == Some(LINK_MEDIA_TYPE) {
            for (k, v) in node.properties.iter_mut() {
                if k != LINK_RESTORATION {
                    continue;
                }
                let parts: Vec<&str> = v.split(';').collect();
                if let [old_path, old_target, who] = parts[..] {
                    let rel = path::relative_to(path::parent(old_path).unwrap_or("/"), old_target);
                    let target = match rel.as_str() {
                        "." => path::parent(p).unwrap_or("/").to_string(),
                        rel => path::link_target(p, rel).unwrap_or_else(|| old_target.to_string()),
                    };
                    *v = format!("{p};{target};{who}");
                }
            }
        }
        let here = self.table.resolve(p);
        let store_id = here.mount.store_id;
        for a in node.associations.iter_mut() {
            let source = dump::absolute_association(&a.source, p);
            let src = self.table.resolve(&source);
            a.source = match src.mount.store_id == store_id {
                true => src.target.as_str().to_string(),
                false => source,
            };
            if let Some(url) = a.destination.strip_prefix(':') {
                a.destination = url.to_string();
            } else {
                let dest = dump::absolute_association(&a.destination, p);
                let d = self.table.resolve(&dest);
                a.destination = match d.mount.store_id == store_id {
                    true => d.target.as_str().to_string(),
                    false => dest,
                };
            }
        }
        for child in node.children.iter_mut() {
            let child_path = path::join(p, &child.name);
            self.localize(&child_path, child);
        }
    }

    /// `node` at `p` cut into the parts that live in one database each: a child at a mount
    /// point starts a part of its own. Each part with the registry path it goes to.
    fn split_at_mounts(&self, p: &str, mut node: Node) -> Vec<(String, Node)> {
        let mut out = Vec::new();
        let children = std::mem::take(&mut node.children);
        for child in children {
            let child_path = path::join(p, &child.name);
            if self.table.is_mount_point(&child_path) {
                out.extend(self.split_at_mounts(&child_path, child));
            } else {
                let mut parts = self.split_at_mounts(&child_path, child);
                // The first part is the child itself, still in this database.
                let (_, own) = parts.remove(0);
                node.children.push(own);
                out.extend(parts);
            }
        }
        out.insert(0, (p.to_string(), node));
        out
    }

    /// EEXIST (or EISDIR) for what the load of `node` at `p` would refuse in its own
    /// transaction: asked of every part first when a load spans several databases, so that
    /// a refusal leaves all of them as they were.
    fn check_conflicts<'a>(
        &'a self,
        p: &'a str,
        node: &'a Node,
        overwrite: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let r = self.table.resolve(p);
            let Some(entry) = r.mount.store.stat(r.target.as_str()).await? else {
                return Ok(());
            };
            let collection = entry.kind == Kind::Directory;
            crate::store::ops::check_conflict(p, Some(collection), node.collection, overwrite)?;
            if collection && node.collection {
                for child in &node.children {
                    self.check_conflicts(&path::join(p, &child.name), child, overwrite)
                        .await?;
                }
            }
            Ok(())
        })
    }
}

/// An entry's POSIX attributes as the dump keeps them.
fn posix_of(e: &Entry) -> Posix {
    Posix {
        mode: e.kind.type_bits() | (e.perm & 0o7777),
        uid: e.uid,
        gid: e.gid,
        rdev: e.rdev,
        atime_ns: to_ns(e.atime),
        mtime_ns: to_ns(e.mtime),
    }
}
