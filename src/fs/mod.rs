//! The filesystem layer below the FUSE adapter: inode numbers, open files and directory handles,
//! close-to-open write-back of content. No kernel types here, so all of it is testable without a
//! mount; `fuse.rs` only translates requests and replies.
//!
//! [`RegFs`] is one type; its concerns are one module each:
//!
//! | module | concern |
//! |---|---|
//! | this one | the namespace: lookup, getattr, setattr, create, mkdir, unlink, rename |
//! | `inodes` | inode numbers and what each was last known as |
//! | `open` | open files, pending files, write-back, appends, prefill |
//! | `dirs` | directory handles and listings |
//! | `coherence` | what is forgotten and dropped from the kernel's caches when others change things |

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::debug;

use crate::authz::{Action, SYSTEM_USER};
use crate::content::{Content, SpoolPolicy};
use crate::err;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::path;
use crate::registry::Registry;
use crate::store::{AttrChange, Entry, Kind, NewEntry, RenameMode};

pub const ROOT_INO: Ino = Ino(1);

/// How long the kernel may keep entries and attributes (never zero: zero makes it look up
/// everything again). A getattr within this time of reading the entry from the database is
/// answered from it, as the kernel could have done itself: the kernel asks again before the
/// time runs out when it drops attributes for its own reasons (atime after a read).
pub const ATTR_TTL: Duration = Duration::from_secs(1);

/// How long the kernel may keep entries and attributes when every change made elsewhere is
/// pushed to it (see [`RegFs::entry_ttl`]): a safety net, not the time changes take to show.
pub const WATCHED_TTL: Duration = Duration::from_secs(10);

/// Largest resource regfs stores: a resource is one blob (SQLite's default limit is 10^9 bytes
/// per value).
pub const MAX_FILE_SIZE: u64 = 999_000_000;

/// A pending file's content up to this size goes into the create's own statement; larger
/// content follows in a write of its own, which moves it in pieces.
const INLINE_CREATE_MAX: u64 = 1 << 20;

/// A file up to this size is handed to the kernel's page cache by the open that first reads it
/// (see [`Prefill`]): the size of the kernel's default readahead window, which the first read
/// would have fetched anyway.
pub const PREFILL_MAX: u64 = 128 << 10;

fn check_size(size: u64) -> Result<()> {
    if size > MAX_FILE_SIZE {
        return Err(err!(
            EFBIG,
            "{size} bytes is more than the {MAX_FILE_SIZE} a registry resource can hold"
        ));
    }
    Ok(())
}

/// A caller, as the kernel reports it.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// An entry with its inode number, ready for a reply.
#[derive(Debug, Clone)]
pub struct Attr {
    pub ino: Ino,
    pub entry: Entry,
    pub nlink: u32,
}

/// A listing item handed to the adapter.
#[derive(Debug, Clone)]
pub struct DirItem {
    pub ino: Ino,
    /// The cookie the kernel passes back to continue after this item.
    pub next_offset: u64,
    pub name: String,
    pub attr: Attr,
    /// `.` and `..` are not counted as lookups by the kernel.
    pub is_dot: bool,
}

mod coherence;
mod dirs;
mod inodes;
mod open;
#[cfg(test)]
mod tests;
mod xattr;

pub use coherence::{Dropped, KernelCache};
use dirs::DirHandle;
use inodes::InodeTable;
pub use inodes::{Fh, Ino};
use open::{CommitFor, Edit, FileHandle, OpenFile, Pending};
pub use open::{Opened, Prefill};

pub struct RegFs {
    registry: Arc<Registry>,
    identity: Identity,
    inodes: Mutex<InodeTable>,
    open_files: Mutex<HashMap<Ino, Arc<OpenFile>>>,
    files: Mutex<HashMap<Fh, FileHandle>>,
    dirs: Mutex<HashMap<Fh, Arc<tokio::sync::Mutex<DirHandle>>>>,
    next_fh: AtomicU64,
    list_page: u32,
    spool: SpoolPolicy,
    entry_ttl: Duration,
    /// On a watched mount, the databases' change token that what regfs remembers agrees with
    /// (see [`RegFs::forget_cached`]); `None` on other mounts.
    seen: Mutex<Option<Vec<i64>>>,
    /// Bumped whenever what regfs remembers is forgotten: a content load that began before
    /// does not record the version it read as the one the kernel caches.
    era: AtomicU64,
    /// Renames and removes (written) against what reaches the database through an inode's
    /// path (read): an open, a content load, a commit, a getattr. The kernel resolved the
    /// inode before it sent the request, and a rename or unlink on another thread may move or
    /// detach it meanwhile; under this lock the path and the database agree.
    namespace: tokio::sync::RwLock<()>,
    kernel: std::sync::OnceLock<Arc<dyn KernelCache>>,
}

/// A new entry's shape; `make` fills in the owner.
fn spec(kind: Kind, perm: u32, rdev: u32, content: Vec<u8>) -> NewEntry {
    NewEntry {
        kind,
        perm,
        uid: 0,
        gid: 0,
        rdev,
        content,
    }
}

/// The attributes a pending file shows until its row exists.
fn pending_entry(new: &NewEntry, name: &str) -> Entry {
    let now = std::time::SystemTime::now();
    Entry {
        kind: new.kind,
        perm: new.perm,
        uid: new.uid,
        gid: new.gid,
        rdev: new.rdev,
        size: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        version: 0,
        uuid: String::new(),
        media_type: crate::store::media_type_for(name).map(str::to_string),
    }
}

/// Whether a handle opened with `flags` may change the file: opened for writing, or
/// truncated by the open itself (Linux truncates on `O_RDONLY | O_TRUNC`).
fn may_change(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

/// Whether the registry refused a commit for good (permissions, a read-only mount): trying
/// again changes nothing, unlike a database that is down.
fn refused(e: &Error) -> bool {
    matches!(e.errno(), libc::EACCES | libc::EPERM | libc::EROFS)
}

fn nlink(kind: Kind) -> u32 {
    if kind == Kind::Directory { 2 } else { 1 }
}

/// See [`RegFs::holdings`].
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Holdings {
    pub open_files: usize,
    pub pending_commit: usize,
    pub inodes: usize,
}

impl RegFs {
    /// `spool` says where the content of large open files is kept (see [`crate::content`]).
    /// `watched`: the databases' change token ([`Registry::change_token`]) before the mount
    /// serves anything, when a watcher will push every change made elsewhere after it (see
    /// [`RegFs::entry_ttl`] and [`RegFs::forget_cached`]).
    pub fn new(
        registry: Arc<Registry>,
        identity: Identity,
        spool: SpoolPolicy,
        watched: Option<Vec<i64>>,
    ) -> Self {
        // A watched mount, or one whose feeds stand in for revalidation, hears every change
        // made elsewhere and drops it from the kernel's caches as it comes.
        let entry_ttl = if watched.is_some() || registry.trusts_feeds() {
            WATCHED_TTL
        } else {
            ATTR_TTL
        };
        Self {
            entry_ttl,
            seen: Mutex::new(watched),
            era: AtomicU64::new(0),
            namespace: tokio::sync::RwLock::new(()),
            kernel: std::sync::OnceLock::new(),
            registry,
            identity,
            inodes: Mutex::new(InodeTable::new()),
            open_files: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            list_page: 512,
            spool,
        }
    }

    /// What this node holds now (`regfs status`): open files, those with changes not yet
    /// committed (or created and not yet inserted), and inodes the kernel knows.
    pub fn holdings(&self) -> Holdings {
        let open: Vec<_> = self.open_files.lock().values().cloned().collect();
        let pending = open
            .iter()
            .filter(|of| {
                let st = of.state.lock();
                st.dirty || st.pending.is_some()
            })
            .count();
        Holdings {
            open_files: open.len(),
            pending_commit: pending,
            inodes: self.inodes.lock().nodes.len(),
        }
    }

    /// The registry service below.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn path(&self, ino: Ino) -> Result<String> {
        self.inodes.lock().path(ino)
    }

    /// How long the kernel may cache entries and attributes. [`WATCHED_TTL`] when every
    /// database behind the mount reports the commits other processes make (SQLite's:
    /// [`Registry::change_token`] is `Some`), so that the daemon can push each such change
    /// out through [`RegFs::forget_cached`]; otherwise [`ATTR_TTL`], which bounds how long a
    /// change made elsewhere goes unseen.
    pub fn entry_ttl(&self) -> Duration {
        self.entry_ttl
    }

    /// The path of a name to create (see [`path::check_name`]).
    fn child_path(&self, parent: Ino, name: &OsStr) -> Result<(String, String)> {
        self.join_child(parent, path::check_name(name)?)
    }

    /// The path of a name to look up, remove or rename away: also an archived version,
    /// `NAME;version:N` (see [`path::check_lookup_name`]), which the registry refuses to
    /// change (EROFS).
    fn existing_child_path(&self, parent: Ino, name: &OsStr) -> Result<(String, String)> {
        self.join_child(parent, path::check_lookup_name(name)?)
    }

    fn join_child(&self, parent: Ino, name: &str) -> Result<(String, String)> {
        let dir = self.path(parent)?;
        Ok((path::join(&dir, name), name.to_string()))
    }

    /// Overlays what local open files know (unflushed size, times) on an entry just read from
    /// the database, and remembers it.
    fn attr(&self, ino: Ino, entry: Entry) -> Attr {
        self.attr_from(ino, entry, Some(Instant::now()))
    }

    /// [`RegFs::attr`] of an entry read at `fetched` (`None`: not from the database).
    fn attr_from(&self, ino: Ino, mut entry: Entry, fetched: Option<Instant>) -> Attr {
        if let Some(of) = self.open_files.lock().get(&ino) {
            let st = of.state.lock();
            if st.dirty
                && let Some(data) = &st.data
            {
                entry.size = data.len();
            }
        }
        let mut inodes = self.inodes.lock();
        let node = inodes.nodes.get_mut(&ino);
        let unlinked = node.as_ref().is_some_and(|n| n.unlinked);
        if let Some(n) = node {
            n.last = Some(entry.clone());
            n.fetched = fetched;
        }
        let nlink = if unlinked { 0 } else { nlink(entry.kind) };
        Attr { ino, entry, nlink }
    }

    fn remember(&self, parent: Ino, name: &str, entry: Entry, lookup: bool) -> Attr {
        let ino = {
            let mut inodes = self.inodes.lock();
            let ino = inodes.get_or_insert(parent, name, entry.kind);
            if lookup && let Some(n) = inodes.nodes.get_mut(&ino) {
                n.lookups += 1;
            }
            ino
        };
        self.attr(ino, entry)
    }

    pub async fn lookup(&self, c: Caller, parent: Ino, name: &OsStr) -> Result<Attr> {
        // `NAME;version:N` looks up an archived version (read-only, never listed).
        let (p, name) = self.existing_child_path(parent, name)?;
        let user = self.identity.registry_user(c.uid);
        let pending = self
            .named(parent, &name)
            .and_then(|ino| self.pending_entry(ino));
        if let Some(entry) = pending {
            self.registry.authorize(&user, &p, Action::Get).await?;
            let attr = self.remember(parent, &name, entry, true);
            self.stale(attr.ino);
            return Ok(attr);
        }
        // Looked up before and vouched for by the change feed: nothing to ask.
        if self.registry.feed_vouches(&p)
            && let Some(ino) = self.named(parent, &name)
            && let Some((at, entry)) = self.recent(ino, &p)
        {
            self.registry.authorize_stat(&user, &p, entry.kind).await?;
            if let Some(n) = self.inodes.lock().nodes.get_mut(&ino) {
                n.lookups += 1;
            }
            return Ok(self.attr_from(ino, entry, Some(at)));
        }
        match self.registry.stat(&user, &p).await? {
            Some(entry) => Ok(self.remember(parent, &name, entry, true)),
            None => {
                self.inodes.lock().detach(parent, &name);
                Err(err!(ENOENT, "{p} does not exist"))
            }
        }
    }

    pub fn forget(&self, ino: Ino, n: u64) {
        self.inodes.lock().forget(ino, n);
    }

    /// `access(2)` for `mask` (`R_OK`, `W_OK`, `X_OK`; 0: existence), answered with the
    /// registry's decision for what each bit stands for: read is get; write is add (on a
    /// collection: adding to it), refused on read-only mounts and archived versions as the
    /// write itself would be; execute is get on a file with an execute bit, and traversal of
    /// a collection, which needs no permission (see [`Registry::authorize_stat`]).
    pub async fn access(&self, c: Caller, ino: Ino, mask: i32) -> Result<()> {
        let attr = self.getattr(c, ino).await?;
        if mask == libc::F_OK {
            return Ok(());
        }
        let p = self.path(ino)?;
        let user = self.identity.registry_user(c.uid);
        let dir = attr.entry.kind == Kind::Directory;
        if mask & libc::R_OK != 0 {
            self.registry.authorize(&user, &p, Action::Get).await?;
        }
        if mask & libc::W_OK != 0 {
            self.registry.check_write(&p, &user).await?;
        }
        if mask & libc::X_OK != 0 && !dir {
            if attr.entry.perm & 0o111 == 0 {
                return Err(err!(EACCES, "{p} has no execute bit"));
            }
            self.registry.authorize(&user, &p, Action::Get).await?;
        }
        Ok(())
    }

    pub async fn getattr(&self, c: Caller, ino: Ino) -> Result<Attr> {
        let _ns = self.namespace.read().await;
        let p = match self.path(ino) {
            Ok(p) => p,
            Err(e) => {
                // Unlinked but still open: answer from what we last knew.
                let last = self.last_known(ino);
                // Without one, ESTALE: the kernel walks the path again and looks the name
                // up afresh (an open that found the name replaced meanwhile), where ENOENT
                // would fail the caller although the name exists.
                return match last {
                    Some(entry) => Ok(self.attr(ino, entry)),
                    None if e.errno() == libc::ENOENT => Err(err!(
                        ESTALE,
                        "inode {ino} was replaced or removed: {}",
                        e.message()
                    )),
                    None => Err(e),
                };
            }
        };
        let user = self.identity.registry_user(c.uid);
        if let Some(entry) = self.pending_entry(ino) {
            self.registry.authorize(&user, &p, Action::Get).await?;
            return Ok(self.attr_from(ino, entry, None));
        }
        if let Some((at, entry)) = self.recent(ino, &p) {
            self.registry.authorize_stat(&user, &p, entry.kind).await?;
            return Ok(self.attr_from(ino, entry, Some(at)));
        }
        match self.registry.stat(&user, &p).await? {
            Some(entry) => Ok(self.attr(ino, entry)),
            None => self.removed_elsewhere(ino, &p),
        }
    }

    /// What regfs read of `ino` (at `p`) from the database, and when, if it may answer
    /// without asking again: read within [`ATTR_TTL`], or at any time while `p`'s change feed
    /// vouches for it ([`Registry::feed_vouches`]: a change heard drops what was read).
    fn recent(&self, ino: Ino, p: &str) -> Option<(Instant, Entry)> {
        let vouched = self.registry.feed_vouches(p);
        let inodes = self.inodes.lock();
        inodes
            .nodes
            .get(&ino)
            .and_then(|n| match (n.fetched, &n.last) {
                (Some(at), Some(e)) if vouched || at.elapsed() < ATTR_TTL => Some((at, e.clone())),
                _ => None,
            })
    }

    /// What `ino` was last known as, if anything (an unlinked inode keeps it).
    fn last_known(&self, ino: Ino) -> Option<Entry> {
        self.inodes
            .lock()
            .nodes
            .get(&ino)
            .and_then(|n| n.last.clone())
    }

    /// getattr of `ino` at `p`, which another node (or process) removed: a file open here
    /// answers as after a local unlink, with what it was and no links (`fstat` on an open
    /// descriptor keeps working, as `tail -f` expects); anything else is gone.
    fn removed_elsewhere(&self, ino: Ino, p: &str) -> Result<Attr> {
        let open = self.open_files.lock().contains_key(&ino);
        let last = self.last_known(ino);
        match last.filter(|_| open) {
            Some(entry) => {
                debug!("{p} was removed elsewhere while open here: answered as unlinked");
                Ok(Attr {
                    ino,
                    entry,
                    nlink: 0,
                })
            }
            None => Err(err!(ENOENT, "{p} no longer exists (removed elsewhere)")),
        }
    }

    pub async fn setattr(
        &self,
        c: Caller,
        ino: Ino,
        size: Option<u64>,
        change: AttrChange,
    ) -> Result<Attr> {
        let p = self.path(ino)?;
        let user = self.identity.registry_user(c.uid);
        self.insert_pending(ino).await?;
        if let Some(size) = size {
            check_size(size)?;
            let of = self.open_files.lock().get(&ino).cloned();
            match of {
                Some(of) => {
                    if size == 0 {
                        // O_TRUNC and the like: no need to load what is thrown away.
                        self.change(ino, &of, (&user, None), Edit::Whole, |data| {
                            *data = Content::default();
                            Ok(())
                        })
                        .await?;
                    } else {
                        self.ensure_loaded(&of, &p).await?;
                        self.change(ino, &of, (&user, None), Edit::InPlace, |data| {
                            data.set_len(&self.spool, size)
                        })
                        .await?;
                    }
                    self.commit(ino, &of, CommitFor::Writer).await?;
                }
                None => {
                    self.registry.authorize(&user, &p, Action::Add).await?;
                    let (_, mut data) = self
                        .registry
                        .read_content(SYSTEM_USER, &p, &self.spool)
                        .await?;
                    data.set_len(&self.spool, size)?;
                    self.registry.write(&p, &data, &user).await?;
                    if let Some(n) = self.inodes.lock().nodes.get_mut(&ino) {
                        n.cached_version = None;
                    }
                }
            }
        }
        if change.atime.is_some() || change.mtime.is_some() {
            // Times set on a file with writes not yet committed (`cp -a`, `tar x`, `rsync -a`
            // set them before close): the writes go in first, so that their commit does not
            // stamp the file with the time of the close.
            let of = self.open_files.lock().get(&ino).cloned();
            if let Some(of) = of {
                self.commit(ino, &of, CommitFor::Writer).await?;
            }
        }
        let entry = if change.is_empty() {
            self.registry
                .stat(&user, &p)
                .await?
                .ok_or_else(|| err!(ENOENT, "{p} no longer exists"))?
        } else {
            self.registry.set_attr(&user, &p, change).await?
        };
        Ok(self.attr(ino, entry))
    }

    pub async fn readlink(&self, c: Caller, ino: Ino) -> Result<Vec<u8>> {
        let p = self.path(ino)?;
        let user = self.identity.registry_user(c.uid);
        self.registry.readlink(&user, &p).await
    }

    /// Creates `parent/name` owned by the caller (group from a setgid parent).
    async fn make(&self, c: Caller, parent: Ino, name: &OsStr, new: NewEntry) -> Result<Attr> {
        let (p, name) = self.child_path(parent, name)?;
        let user = self.identity.registry_user(c.uid);
        // A pending file of that name makes this an EEXIST, as it will be for other nodes.
        self.insert_pending_name(parent, &name).await?;
        let new = NewEntry {
            uid: c.uid,
            gid: self.new_gid(parent, c.gid),
            ..new
        };
        let entry = self.registry.create(&p, new, &user).await?;
        self.touched(parent, entry.ctime);
        Ok(self.remember(parent, &name, entry, true))
    }

    /// BSD/setgid semantics: a new entry in a setgid directory takes the directory's group.
    fn new_gid(&self, parent: Ino, gid: u32) -> u32 {
        let inodes = self.inodes.lock();
        match inodes.nodes.get(&parent).and_then(|n| n.last.as_ref()) {
            Some(e) if e.perm & libc::S_ISGID != 0 => e.gid,
            _ => gid,
        }
    }

    pub async fn mkdir(&self, c: Caller, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr> {
        let mut perm = mode & 0o7777;
        // A subdirectory of a setgid directory is setgid too.
        if self.new_gid(parent, u32::MAX) != u32::MAX {
            perm |= libc::S_ISGID;
        }
        self.make(c, parent, name, spec(Kind::Directory, perm, 0, Vec::new()))
            .await
    }

    pub async fn mknod(
        &self,
        c: Caller,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> Result<Attr> {
        let kind = Kind::from_mode(mode);
        if kind == Kind::Directory {
            return Err(err!(EINVAL, "mknod cannot make a directory; use mkdir"));
        }
        self.make(c, parent, name, spec(kind, mode & 0o7777, rdev, Vec::new()))
            .await
    }

    pub async fn symlink(
        &self,
        c: Caller,
        parent: Ino,
        name: &OsStr,
        target: &std::path::Path,
    ) -> Result<Attr> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = target.as_os_str().as_bytes().to_vec();
        if bytes.len() > 4095 {
            return Err(err!(ENAMETOOLONG, "symlink target is longer than PATH_MAX"));
        }
        self.make(c, parent, name, spec(Kind::Symlink, 0o777, 0, bytes))
            .await
    }

    pub async fn create(
        &self,
        c: Caller,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Fh)> {
        let new = spec(Kind::File, mode & 0o7777, 0, Vec::new());
        if flags & libc::O_EXCL != 0 {
            // Exclusive creates are lock files too: the row goes in now, so that two nodes
            // cannot both succeed.
            let attr = self.make(c, parent, name, new).await?;
            let (fh, _) = self.open_handle(attr.ino, flags, c, Some(Content::default()));
            return Ok((attr, fh));
        }
        let (p, name) = self.child_path(parent, name)?;
        let user = self.identity.registry_user(c.uid);
        self.insert_pending_name(parent, &name).await?;
        self.registry.check_create(&p, &user).await?;
        let new = NewEntry {
            uid: c.uid,
            gid: self.new_gid(parent, c.gid),
            ..new
        };
        let entry = pending_entry(&new, &name);
        let attr = self.remember(parent, &name, entry.clone(), true);
        // Not from the database: never answered as a recent read.
        self.stale(attr.ino);
        let (fh, _) = self.open_handle(attr.ino, flags, c, Some(Content::default()));
        let of = self.open_files.lock().get(&attr.ino).cloned();
        if let Some(of) = of {
            let mut st = of.state.lock();
            st.writer = Some(user.clone());
            st.contributors.insert(fh);
            st.pending = Some(Pending { new, entry, user });
            st.dirty = true;
            st.generation += 1;
        }
        Ok((attr, fh))
    }

    /// The inode at `parent/name` in the table, if any.
    fn named(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.inodes
            .lock()
            .by_name
            .get(&(parent, name.to_string()))
            .copied()
    }

    pub async fn unlink(&self, c: Caller, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove(c, parent, name, false).await
    }

    pub async fn rmdir(&self, c: Caller, parent: Ino, name: &OsStr) -> Result<()> {
        self.remove(c, parent, name, true).await
    }

    async fn remove(&self, c: Caller, parent: Ino, name: &OsStr, dir: bool) -> Result<()> {
        let (_, name) = self.existing_child_path(parent, name)?;
        self.insert_pending_name(parent, &name).await?;
        if dir && let Some(ino) = self.named(parent, &name) {
            self.insert_pending_children(ino).await?;
        }
        let _ns = self.namespace.write().await;
        let p = path::join(&self.path(parent)?, &name);
        self.preserve_open_content(parent, &name, &p).await?;
        let user = self.identity.registry_user(c.uid);
        // A Carbon link to a resource is a resource row: its removal is Carbon's removeLink.
        let carbon_link = !dir
            && self.named(parent, &name).is_some_and(|ino| {
                self.inodes
                    .lock()
                    .nodes
                    .get(&ino)
                    .and_then(|n| n.last.as_ref())
                    .is_some_and(|e| {
                        e.kind == Kind::Symlink
                            && e.media_type.as_deref() == Some(crate::store::LINK_MEDIA_TYPE)
                    })
            });
        let touched = if carbon_link {
            self.registry.remove_link(&p, &user).await?
        } else {
            self.registry.remove(&p, dir, &user).await?
        };
        self.inodes.lock().detach(parent, &name);
        self.touched(parent, touched);
        Ok(())
    }

    /// An open handle keeps working after its file is unlinked or replaced: load its content
    /// before the row goes away.
    async fn preserve_open_content(&self, parent: Ino, name: &str, p: &str) -> Result<()> {
        let ino = self
            .inodes
            .lock()
            .by_name
            .get(&(parent, name.to_string()))
            .copied();
        let Some(ino) = ino else { return Ok(()) };
        let of = self.open_files.lock().get(&ino).cloned();
        if let Some(of) = of {
            self.ensure_loaded(&of, p).await?;
        }
        Ok(())
    }

    pub async fn rename(
        &self,
        c: Caller,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        mode: RenameMode,
    ) -> Result<()> {
        let (from, name) = self.existing_child_path(parent, name)?;
        let (to, new_name) = self.child_path(new_parent, new_name)?;
        if from == to {
            return Ok(());
        }
        self.insert_pending_name(new_parent, &new_name).await?;
        // Unflushed local writes go with the file to its new name.
        let moving = self
            .inodes
            .lock()
            .by_name
            .get(&(parent, name.clone()))
            .copied();
        if let Some(ino) = moving {
            let of = self.open_files.lock().get(&ino).cloned();
            if let Some(of) = of {
                self.commit(ino, &of, CommitFor::Writer).await?;
            }
        }
        let _ns = self.namespace.write().await;
        let from = path::join(&self.path(parent)?, &name);
        let to = path::join(&self.path(new_parent)?, &new_name);
        self.preserve_open_content(new_parent, &new_name, &to)
            .await?;
        let user = self.identity.registry_user(c.uid);
        let touched = self.registry.rename(&from, &to, mode, &user).await?;
        self.inodes
            .lock()
            .rename(parent, &name, new_parent, &new_name);
        if let Some(t) = touched {
            self.touched(parent, t);
            self.touched(new_parent, t);
        }
        if let Some(ino) = moving {
            self.stale(ino);
        }
        Ok(())
    }

    /// Counts a readdirplus entry the kernel accepted as a lookup.
    pub fn count_lookup(&self, ino: Ino) {
        if let Some(n) = self.inodes.lock().nodes.get_mut(&ino) {
            n.lookups += 1;
        }
    }

    pub async fn statfs(&self) -> Result<crate::store::SpaceInfo> {
        self.registry.space().await
    }
}
