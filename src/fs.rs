//! The filesystem layer below the FUSE adapter: inode numbers, open files and directory handles,
//! close-to-open write-back of content. No kernel types here, so all of it is testable without a
//! mount; `fuse.rs` only translates requests and replies.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tracing::{debug, warn};

use crate::authz::{Action, SYSTEM_USER};
use crate::content::{Content, SpoolPolicy};
use crate::err;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::path;
use crate::registry::Registry;
use crate::store::{AttrChange, Entry, Kind, NewEntry, RenameMode};

pub const ROOT_INO: u64 = 1;

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
    pub ino: u64,
    pub entry: Entry,
    pub nlink: u32,
}

/// A listing item handed to the adapter.
#[derive(Debug, Clone)]
pub struct DirItem {
    pub ino: u64,
    /// The cookie the kernel passes back to continue after this item.
    pub next_offset: u64,
    pub name: String,
    pub attr: Attr,
    /// `.` and `..` are not counted as lookups by the kernel.
    pub is_dot: bool,
}

struct Node {
    parent: u64,
    name: String,
    kind: Kind,
    /// Kernel references (lookups minus forgets).
    lookups: u64,
    /// Nodes in the table whose parent is this node.
    children: u64,
    /// Removed from the tree while still referenced (open or looked up).
    unlinked: bool,
    last: Option<Entry>,
    /// When `last` was read from the database; `None` once a local change made it stale.
    fetched: Option<Instant>,
    /// The `REG_VERSION` whose content the kernel's page cache holds for this inode, if known:
    /// an open of the same version keeps the cache.
    cached_version: Option<i64>,
    /// An open of this inode has been answered. Until then the kernel holds no pages of it
    /// (nothing reaches the page cache but through an open file), so an open may fill them
    /// itself: see [`Prefill`].
    opened: bool,
}

struct InodeTable {
    nodes: HashMap<u64, Node>,
    by_name: HashMap<(u64, String), u64>,
    next_ino: u64,
}

impl InodeTable {
    fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_INO,
            Node {
                parent: ROOT_INO,
                name: String::new(),
                kind: Kind::Directory,
                lookups: 1,
                children: 0,
                unlinked: false,
                last: None,
                fetched: None,
                cached_version: None,
                opened: false,
            },
        );
        Self {
            nodes,
            by_name: HashMap::new(),
            next_ino: ROOT_INO + 1,
        }
    }

    fn path(&self, ino: u64) -> Result<String> {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let node = self
                .nodes
                .get(&cur)
                .ok_or_else(|| err!(ESTALE, "inode {ino} is not known (forgotten)"))?;
            if node.unlinked {
                return Err(err!(ENOENT, "inode {ino} was removed"));
            }
            parts.push(node.name.as_str());
            cur = node.parent;
        }
        parts.reverse();
        Ok(format!("/{}", parts.join("/")))
    }

    /// The inode for `parent/name`, allocated if new. A node of another kind at the same name
    /// (replaced behind our back) is detached and a new inode allocated.
    fn get_or_insert(&mut self, parent: u64, name: &str, kind: Kind) -> u64 {
        if let Some(&ino) = self.by_name.get(&(parent, name.to_string())) {
            if self.nodes.get(&ino).is_some_and(|n| n.kind == kind) {
                return ino;
            }
            self.detach(parent, name);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_string(),
                kind,
                lookups: 0,
                children: 0,
                unlinked: false,
                last: None,
                fetched: None,
                cached_version: None,
                opened: false,
            },
        );
        self.by_name.insert((parent, name.to_string()), ino);
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children += 1;
        }
        ino
    }

    /// Removes `parent/name` from the tree; the node lives on while referenced.
    /// The inode of the registry path `p`, if every name on the way is known.
    fn find(&self, p: &str) -> Option<u64> {
        let mut ino = ROOT_INO;
        for name in p.split('/').filter(|n| !n.is_empty()) {
            ino = *self.by_name.get(&(ino, name.to_string()))?;
        }
        Some(ino)
    }

    fn detach(&mut self, parent: u64, name: &str) -> Option<u64> {
        let ino = self.by_name.remove(&(parent, name.to_string()))?;
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.unlinked = true;
        }
        self.maybe_drop(ino);
        Some(ino)
    }

    fn rename(&mut self, parent: u64, name: &str, new_parent: u64, new_name: &str) {
        self.detach(new_parent, new_name);
        let Some(ino) = self.by_name.remove(&(parent, name.to_string())) else {
            return;
        };
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.parent = new_parent;
            n.name = new_name.to_string();
        }
        if parent != new_parent {
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.children -= 1;
            }
            if let Some(p) = self.nodes.get_mut(&new_parent) {
                p.children += 1;
            }
            self.maybe_drop(parent);
        }
        self.by_name.insert((new_parent, new_name.to_string()), ino);
    }

    fn forget(&mut self, ino: u64, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.maybe_drop(ino);
    }

    /// Drops a node nobody references any more (no kernel lookups, no children in the table),
    /// then its parent if that became unreferenced too. Open files hold a lookup of their own.
    fn maybe_drop(&mut self, ino: u64) {
        let mut cur = ino;
        while cur != ROOT_INO {
            let Some(node) = self.nodes.get(&cur) else {
                return;
            };
            if node.lookups > 0 || node.children > 0 {
                return;
            }
            let (parent, name, unlinked) = (node.parent, node.name.clone(), node.unlinked);
            self.nodes.remove(&cur);
            if !unlinked {
                self.by_name.remove(&(parent, name));
            }
            match self.nodes.get_mut(&parent) {
                Some(p) => p.children = p.children.saturating_sub(1),
                None => return,
            }
            cur = parent;
        }
    }
}

/// Content of an open file, shared by every handle on the inode so that local readers see local
/// writes at once; committed to the database on flush, fsync and close.
struct OpenFile {
    state: Mutex<OpenState>,
    /// Serializes commits so an older snapshot never lands after a newer one. Changes to spooled
    /// content take it too: a spool file is written in place, so it must not change while a
    /// commit copies it out.
    commit: tokio::sync::Mutex<()>,
    /// One load of the content at a time: the kernel's readahead sends several reads at once,
    /// and each would otherwise read the whole file from the database (and hold its buffers).
    load: tokio::sync::Mutex<()>,
}

struct OpenState {
    /// A file created without `O_EXCL` is inserted by its first commit, together with its
    /// content: one transaction instead of two. Until then it lives here, and this node's
    /// lookups, getattrs and listings see it (see [`Pending`]).
    pending: Option<Pending>,
    data: Option<Content>,
    dirty: bool,
    /// The registry user whose uncommitted changes `data` holds: it is committed as them,
    /// authorized for them, and attributed to them. A change by another user commits theirs
    /// first (see [`RegFs::change`]). Set whenever `dirty` is.
    writer: Option<String>,
    /// The handles whose changes are in the uncommitted `data`: only their flush, fsync or
    /// close commits it. A handle that changed nothing (a reader) commits nothing.
    contributors: HashSet<u64>,
    /// Where the uncommitted changes begin, when all of them are appends through `O_APPEND`
    /// handles: they are committed as an append to what the database has at the commit, so
    /// that appends from several nodes all land.
    append_base: Option<u64>,
    /// The version `data` was loaded as.
    loaded_version: Option<i64>,
    /// [`RegFs::era`] when that load began.
    loaded_era: u64,
    /// Bumped on every change, so a commit only clears `dirty` if nothing changed meanwhile.
    generation: u64,
    handles: u32,
    /// Bumped by every open, so that a [`Prefill`] can tell whether another open came meanwhile.
    opens: u64,
}

impl OpenState {
    /// Nothing is uncommitted any more (the changes went in, or there is nowhere for them).
    fn committed(&mut self) {
        self.dirty = false;
        self.writer = None;
        self.contributors.clear();
        self.append_base = None;
    }

    /// Forgets the uncommitted changes: the content is read from the database again.
    fn discard(&mut self) {
        self.committed();
        self.data = None;
        self.loaded_version = None;
        self.generation += 1;
    }
}

/// What an open returns: the handle, and what the kernel may do with its page cache.
pub struct Opened {
    pub fh: u64,
    /// The kernel may keep the pages it holds: they are of the live content version.
    pub keep_cache: bool,
    /// The kernel's attributes of the file may be older than the content this handle reads
    /// (it changed elsewhere): the adapter has the kernel drop them before answering.
    pub stale_attrs: bool,
    /// Content for the kernel's page cache, to be stored before the open is answered.
    pub prefill: Option<Prefill>,
}

/// The content of a small file opened for reading for the first time since the kernel learned
/// of the inode, so that the kernel holds none of its pages. The adapter stores it in the page
/// cache (FUSE's notify-store) before answering the open, and answers it with the cache kept
/// when [`RegFs::prefilled`] says so: reads are then served without a request, and the kernel,
/// which drops a file's atime after every read that reaches the filesystem, has no reason to
/// ask for its attributes again at the next `stat`. A `cat` of a file takes four requests
/// instead of five, and a second `cat` three instead of four.
pub struct Prefill {
    pub ino: u64,
    data: Content,
    version: i64,
    era: u64,
    generation: u64,
    opens: u64,
}

impl Prefill {
    pub fn data(&self) -> &[u8] {
        self.data.as_slice().unwrap_or_default()
    }
}

/// A new file not yet in the database. The create's checks (permissions, a free name) passed
/// when it was opened; the insert happens at the first flush, fsync or close, or before any
/// operation that needs the row (setattr, unlink, rename, a listing of its directory).
struct Pending {
    new: NewEntry,
    /// What lookup and getattr answer meanwhile.
    entry: Entry,
    /// The creator, recorded as the resource's creator whoever commits first.
    user: String,
}

struct FileHandle {
    ino: u64,
    append: bool,
    user: String,
    /// The handle wrote data (not only truncated or created the file). Until it does, its
    /// flush commits nothing: the shell's `> file` opens, dup2s and closes the original fd (a
    /// flush) before it writes, and a commit there would make an empty version first.
    wrote: bool,
}

/// Whose changes a commit writes.
#[derive(Clone, Copy, Debug)]
enum CommitFor {
    /// A handle's flush, fsync or close: the uncommitted changes, if this handle made some.
    Handle(u64),
    /// Whatever is uncommitted, as its writer (a rename, a setattr, another user's change,
    /// a listing that needs a pending file's row).
    Writer,
}

/// What kind of change [`RegFs::change`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Edit {
    /// Replaces the whole content (needs none loaded): a truncation to zero.
    Whole,
    /// Changes the content where it is: a write at an offset, a truncation to a length.
    InPlace,
    /// Adds at the end, through an `O_APPEND` handle.
    Append,
}

/// The kernel's caches, as far as regfs itself must drop them (the FUSE adapter implements
/// it; nothing is dropped without one, e.g. in tests without a kernel).
pub trait KernelCache: Send + Sync {
    /// Drops the pages the kernel holds of `ino` (and its attributes). Must not wait for the
    /// kernel: it may be called while a request on `ino` is being answered.
    fn drop_pages(&self, ino: u64);
}

struct DirHandle {
    ino: u64,
    /// The registry user who opened the listing: children are filtered for them.
    user: String,
    entries: Vec<(String, Entry)>,
    cursor: Option<String>,
    complete: bool,
}

pub struct RegFs {
    registry: Arc<Registry>,
    identity: Identity,
    inodes: Mutex<InodeTable>,
    open_files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    files: Mutex<HashMap<u64, FileHandle>>,
    dirs: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<DirHandle>>>>,
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

/// What the kernel should drop after [`RegFs::forget_cached`]: an inode's attributes and
/// pages, and the name it was looked up by.
#[derive(Debug, Clone)]
pub struct Dropped {
    pub ino: u64,
    pub parent: u64,
    pub name: String,
    /// Open on this node: the kernel keeps its pages, only its attributes go (see
    /// [`RegFs::forget_paths`]).
    pub open: bool,
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
        let entry_ttl = if watched.is_some() {
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

    fn path(&self, ino: u64) -> Result<String> {
        self.inodes.lock().path(ino)
    }

    /// Gives regfs the kernel's caches to drop what it must (content refused at commit).
    pub fn set_kernel_cache(&self, kernel: Arc<dyn KernelCache>) {
        let _ = self.kernel.set(kernel);
    }

    /// How long the kernel may cache entries and attributes. [`WATCHED_TTL`] when every
    /// database behind the mount reports the commits other processes make (SQLite's:
    /// [`Registry::change_token`] is `Some`), so that the daemon can push each such change
    /// out through [`RegFs::forget_cached`]; otherwise [`ATTR_TTL`], which bounds how long a
    /// change made elsewhere goes unseen.
    pub fn entry_ttl(&self) -> Duration {
        self.entry_ttl
    }

    /// See [`Registry::permission_epoch`].
    pub fn permission_epoch(&self) -> u64 {
        self.registry.permission_epoch()
    }

    /// See [`Registry::change_token`].
    pub async fn change_token(&self) -> Result<Option<Vec<i64>>> {
        self.registry.change_token().await
    }

    /// Whether `token` (the databases' change token now) differs from the one what regfs
    /// remembers agrees with: something else committed since.
    pub fn changed_elsewhere(&self, token: &[i64]) -> bool {
        self.seen.lock().as_deref() != Some(token)
    }

    /// Whether nothing else committed since what regfs remembers was last brought up to date:
    /// then a content version recorded as cached by the kernel is still the live one. Always
    /// false on a mount that is not watched.
    async fn quiet(&self) -> Result<bool> {
        if self.seen.lock().is_none() {
            return Ok(false);
        }
        Ok(match self.change_token().await? {
            Some(token) => !self.changed_elsewhere(&token),
            None => false,
        })
    }

    /// Forgets every entry regfs remembers from the database (and which content versions the
    /// kernel's page cache holds), after something else changed the databases or the
    /// permissions; `token`, if given, is the change token this catches up with. Returns every
    /// inode the kernel knows, with its name, so that the caller can make the kernel drop them
    /// too.
    pub fn forget_cached(&self, token: Option<Vec<i64>>) -> Vec<Dropped> {
        // Under `seen`, so that no open finds the new token before the versions are forgotten.
        let mut seen = self.seen.lock();
        self.era.fetch_add(1, Ordering::SeqCst);
        let mut inodes = self.inodes.lock();
        let mut out = Vec::with_capacity(inodes.nodes.len());
        for (&ino, n) in inodes.nodes.iter_mut() {
            n.last = None;
            n.fetched = None;
            n.cached_version = None;
            if ino != ROOT_INO {
                out.push(Dropped {
                    ino,
                    parent: n.parent,
                    name: n.name.clone(),
                    open: false,
                });
            }
        }
        if let Some(token) = token {
            *seen = Some(token);
        }
        out
    }

    /// Forgets what regfs remembers of `paths` (registry paths another process changed) and
    /// of their directories, whose listings and times move with them. Returns the inodes the
    /// kernel knows among them, for the caller to make it drop them too (the root among them:
    /// it has no entry to expire). A path regfs never looked up is nothing to drop: the
    /// kernel caches no negative entries of regfs's (see `fuse.rs`' lookup).
    ///
    /// A file open on this node keeps its pages in the kernel: only its attributes are
    /// dropped. Its open handles read the version they opened (regfs may not hold that
    /// content itself: a kept page cache serves the reads), as they did before the feed
    /// existed; the next open compares versions as always.
    pub fn forget_paths(&self, paths: &[String]) -> Vec<Dropped> {
        let _seen = self.seen.lock();
        self.era.fetch_add(1, Ordering::SeqCst);
        let open: HashSet<u64> = self.open_files.lock().keys().copied().collect();
        let mut inodes = self.inodes.lock();
        let mut out: Vec<Dropped> = Vec::new();
        for p in paths {
            let dir = path::parent(p).unwrap_or("/");
            for ino in [inodes.find(p), inodes.find(dir)].into_iter().flatten() {
                if out.iter().any(|d| d.ino == ino) {
                    continue;
                }
                let Some(n) = inodes.nodes.get_mut(&ino) else {
                    continue;
                };
                // `last` stays: it is what the kernel was told, and what an unlinked inode
                // that is still open answers getattr with. Without `fetched` the next getattr
                // reads the database.
                n.fetched = None;
                let open = open.contains(&ino);
                if !open {
                    n.cached_version = None;
                }
                out.push(Dropped {
                    ino,
                    parent: n.parent,
                    name: n.name.clone(),
                    open,
                });
            }
        }
        out
    }

    /// The path of a name to create (see [`path::check_name`]).
    fn child_path(&self, parent: u64, name: &OsStr) -> Result<(String, String)> {
        self.join_child(parent, path::check_name(name)?)
    }

    /// The path of a name to look up, remove or rename away: also an archived version,
    /// `NAME;version:N` (see [`path::check_lookup_name`]), which the registry refuses to
    /// change (EROFS).
    fn existing_child_path(&self, parent: u64, name: &OsStr) -> Result<(String, String)> {
        self.join_child(parent, path::check_lookup_name(name)?)
    }

    fn join_child(&self, parent: u64, name: &str) -> Result<(String, String)> {
        let dir = self.path(parent)?;
        Ok((path::join(&dir, name), name.to_string()))
    }

    /// Overlays what local open files know (unflushed size, times) on an entry just read from
    /// the database, and remembers it.
    fn attr(&self, ino: u64, entry: Entry) -> Attr {
        self.attr_from(ino, entry, Some(Instant::now()))
    }

    /// [`RegFs::attr`] of an entry read at `fetched` (`None`: not from the database).
    fn attr_from(&self, ino: u64, mut entry: Entry, fetched: Option<Instant>) -> Attr {
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

    fn remember(&self, parent: u64, name: &str, entry: Entry, lookup: bool) -> Attr {
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

    pub async fn lookup(&self, c: Caller, parent: u64, name: &OsStr) -> Result<Attr> {
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
        match self.registry.stat(&user, &p).await? {
            Some(entry) => Ok(self.remember(parent, &name, entry, true)),
            None => {
                self.inodes.lock().detach(parent, &name);
                Err(err!(ENOENT, "{p} does not exist"))
            }
        }
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.lock().forget(ino, n);
    }

    /// `access(2)` for `mask` (`R_OK`, `W_OK`, `X_OK`; 0: existence), answered with the
    /// registry's decision for what each bit stands for: read is get; write is add (on a
    /// collection: adding to it), refused on read-only mounts and archived versions as the
    /// write itself would be; execute is get on a file with an execute bit, and traversal of
    /// a collection, which needs no permission (see [`Registry::authorize_stat`]).
    pub async fn access(&self, c: Caller, ino: u64, mask: i32) -> Result<()> {
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

    pub async fn getattr(&self, c: Caller, ino: u64) -> Result<Attr> {
        let _ns = self.namespace.read().await;
        let p = match self.path(ino) {
            Ok(p) => p,
            Err(e) => {
                // Unlinked but still open: answer from what we last knew.
                let last = self
                    .inodes
                    .lock()
                    .nodes
                    .get(&ino)
                    .and_then(|n| n.last.clone());
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
        let recent = {
            let inodes = self.inodes.lock();
            inodes
                .nodes
                .get(&ino)
                .and_then(|n| match (n.fetched, &n.last) {
                    (Some(at), Some(e)) if at.elapsed() < ATTR_TTL => Some((at, e.clone())),
                    _ => None,
                })
        };
        if let Some((at, entry)) = recent {
            self.registry.authorize_stat(&user, &p, entry.kind).await?;
            return Ok(self.attr_from(ino, entry, Some(at)));
        }
        match self.registry.stat(&user, &p).await? {
            Some(entry) => Ok(self.attr(ino, entry)),
            None => Err(err!(ENOENT, "{p} no longer exists (removed elsewhere)")),
        }
    }

    pub async fn setattr(
        &self,
        c: Caller,
        ino: u64,
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

    pub async fn readlink(&self, c: Caller, ino: u64) -> Result<Vec<u8>> {
        let p = self.path(ino)?;
        let user = self.identity.registry_user(c.uid);
        self.registry.readlink(&user, &p).await
    }

    /// Creates `parent/name` owned by the caller (group from a setgid parent).
    async fn make(&self, c: Caller, parent: u64, name: &OsStr, new: NewEntry) -> Result<Attr> {
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
    fn new_gid(&self, parent: u64, gid: u32) -> u32 {
        let inodes = self.inodes.lock();
        match inodes.nodes.get(&parent).and_then(|n| n.last.as_ref()) {
            Some(e) if e.perm & libc::S_ISGID != 0 => e.gid,
            _ => gid,
        }
    }

    pub async fn mkdir(&self, c: Caller, parent: u64, name: &OsStr, mode: u32) -> Result<Attr> {
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
        parent: u64,
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
        parent: u64,
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
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, u64)> {
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

    /// Forgets that `ino`'s attributes are recent: a local change moved them (a collection's
    /// times when an entry comes or goes, a file's ctime when it moves).
    fn stale(&self, ino: u64) {
        if let Some(n) = self.inodes.lock().nodes.get_mut(&ino) {
            n.fetched = None;
        }
    }

    /// A local change in the collection `ino` committed its new mtime and ctime `t`: what we
    /// remember of it is as recent as it was, with those times. (The kernel drops a directory's
    /// attributes whenever an entry in it comes or goes, and asks again at the next path walk
    /// through it: every create or unlink in a row would otherwise read the collection back.)
    fn touched(&self, ino: u64, t: SystemTime) {
        if let Some(e) = self
            .inodes
            .lock()
            .nodes
            .get_mut(&ino)
            .and_then(|n| n.last.as_mut())
        {
            e.mtime = t;
            e.ctime = t;
        }
    }

    /// The inode at `parent/name` in the table, if any.
    fn named(&self, parent: u64, name: &str) -> Option<u64> {
        self.inodes
            .lock()
            .by_name
            .get(&(parent, name.to_string()))
            .copied()
    }

    /// What a pending (not yet inserted) file looks like, if `ino` is one.
    fn pending_entry(&self, ino: u64) -> Option<Entry> {
        let of = self.open_files.lock().get(&ino).cloned()?;
        let st = of.state.lock();
        st.pending.as_ref().map(|p| p.entry.clone())
    }

    /// Inserts `ino` now if it is a pending file (see [`Pending`]).
    async fn insert_pending(&self, ino: u64) -> Result<()> {
        let Some(of) = self.open_files.lock().get(&ino).cloned() else {
            return Ok(());
        };
        if of.state.lock().pending.is_none() {
            return Ok(());
        }
        self.commit(ino, &of, CommitFor::Writer).await
    }

    async fn insert_pending_name(&self, parent: u64, name: &str) -> Result<()> {
        match self.named(parent, name) {
            Some(ino) => self.insert_pending(ino).await,
            None => Ok(()),
        }
    }

    /// Inserts the pending files in directory `dir`: a listing, and rmdir's emptiness check,
    /// need their rows.
    async fn insert_pending_children(&self, dir: u64) -> Result<()> {
        let pending: Vec<u64> = {
            let open = self.open_files.lock();
            open.iter()
                .filter(|(_, of)| of.state.lock().pending.is_some())
                .map(|(&ino, _)| ino)
                .collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        let children: Vec<u64> = {
            let inodes = self.inodes.lock();
            pending
                .into_iter()
                .filter(|ino| inodes.nodes.get(ino).is_some_and(|n| n.parent == dir))
                .collect()
        };
        for ino in children {
            self.insert_pending(ino).await?;
        }
        Ok(())
    }

    pub async fn unlink(&self, c: Caller, parent: u64, name: &OsStr) -> Result<()> {
        self.remove(c, parent, name, false).await
    }

    pub async fn rmdir(&self, c: Caller, parent: u64, name: &OsStr) -> Result<()> {
        self.remove(c, parent, name, true).await
    }

    async fn remove(&self, c: Caller, parent: u64, name: &OsStr, dir: bool) -> Result<()> {
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
    async fn preserve_open_content(&self, parent: u64, name: &str, p: &str) -> Result<()> {
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
        parent: u64,
        name: &OsStr,
        new_parent: u64,
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

    /// A new handle on `ino`, and whether it is the first open of the inode (see
    /// [`Node::opened`]).
    fn open_handle(
        &self,
        ino: u64,
        flags: i32,
        c: Caller,
        initial: Option<Content>,
    ) -> (u64, bool) {
        {
            let mut open = self.open_files.lock();
            let of = open
                .entry(ino)
                .or_insert_with(|| {
                    Arc::new(OpenFile {
                        state: Mutex::new(OpenState {
                            pending: None,
                            data: None,
                            dirty: false,
                            writer: None,
                            contributors: HashSet::new(),
                            append_base: None,
                            loaded_version: None,
                            loaded_era: 0,
                            generation: 0,
                            handles: 0,
                            opens: 0,
                        }),
                        commit: tokio::sync::Mutex::new(()),
                        load: tokio::sync::Mutex::new(()),
                    })
                })
                .clone();
            // Counted under the map's lock: a release of the last other handle removes the
            // entry under it too, so it cannot remove the one this handle is joining.
            let mut st = of.state.lock();
            if st.handles == 0 {
                // Close-to-open: a fresh open reads what the database has now.
                st.committed();
                st.data = initial;
                st.loaded_version = None;
                // The open file keeps the inode alive.
                if let Some(n) = self.inodes.lock().nodes.get_mut(&ino) {
                    n.lookups += 1;
                }
            }
            st.handles += 1;
            st.opens += 1;
        }
        let first = match self.inodes.lock().nodes.get_mut(&ino) {
            Some(n) => !std::mem::replace(&mut n.opened, true),
            None => false,
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.files.lock().insert(
            fh,
            FileHandle {
                ino,
                append: flags & libc::O_APPEND != 0,
                user: self.identity.registry_user(c.uid),
                wrote: false,
            },
        );
        (fh, first)
    }

    /// Whether closing a handle opened with `flags` must reach regfs (FUSE's flush). A
    /// read-only handle has nothing of its own to commit: content is committed by the close
    /// or fsync of the handle that wrote it, and its release still comes. Skipping the flush
    /// saves a request on every `cat`, `grep` and editor read.
    pub fn flush_on_close(flags: i32) -> bool {
        may_change(flags)
    }

    /// Opens a file: see [`Opened`].
    pub async fn open(&self, c: Caller, ino: u64, flags: i32) -> Result<Opened> {
        let ns = self.namespace.read().await;
        let p = self.path(ino).map_err(|e| match e.errno() {
            // Replaced or removed by a rename or unlink after the kernel looked the name up:
            // ESTALE makes the kernel look it up again and open what the name is now, as
            // the open would have if it had come a moment later.
            libc::ENOENT => err!(
                ESTALE,
                "{}; the kernel looks the name up again",
                e.message()
            ),
            _ => e,
        })?;
        // Checked before reading what is remembered (see [`RegFs::forget_cached`]), and only
        // if there is a cached version to keep.
        let peek = self.inodes.lock().nodes.get(&ino).map(|n| n.cached_version);
        let quiet = matches!(peek, Some(Some(_))) && self.quiet().await?;
        let (kind, cached, known_size) = match self.inodes.lock().nodes.get(&ino) {
            Some(n) => (
                Some(n.kind),
                n.cached_version,
                n.last.as_ref().map(|e| e.size),
            ),
            None => (None, None, None),
        };
        if kind == Some(Kind::Directory) {
            return Err(err!(EISDIR, "{p} is a collection"));
        }
        let user = self.identity.registry_user(c.uid);
        let writing = may_change(flags);
        // A handle that may change the file is refused now if its commit would be (a
        // read-only mount, an archived version): errors at close go unseen by most programs.
        if writing {
            self.registry.check_write(&p, &user).await?;
        } else {
            self.registry.authorize(&user, &p, Action::Get).await?;
        }
        let small = known_size.is_some_and(|s| s > 0 && s <= PREFILL_MAX);
        // Close-to-open: what the database has now decides whether the kernel's page cache
        // and attributes still hold. A truncating open replaces both; a prefill learns it from
        // the content it loads; and on a watched mount where nothing else committed since the
        // kernel cached a version, that version is still the live one.
        let truncating = flags & libc::O_TRUNC != 0;
        let may_prefill = !writing && small && cached.is_none();
        let known_live = quiet && !truncating && cached.is_some();
        // A truncating open asks too, although it reads nothing: its change is committed only
        // at close, whose errors most programs ignore, so a database that is down must fail
        // the open itself (`> file` then says so).
        let live = if may_prefill || known_live {
            None
        } else {
            self.registry.stat(SYSTEM_USER, &p).await?
        };
        if truncating && live.is_none() && self.pending_entry(ino).is_none() {
            // Removed elsewhere since the kernel looked it up: ESTALE makes it look the name
            // up again, so `> file` creates the file anew instead of committing to nothing.
            return Err(err!(
                ESTALE,
                "{p} was removed elsewhere; the kernel looks the name up again"
            ));
        }
        let keep = !truncating
            && (known_live || (cached.is_some() && live.as_ref().map(|e| e.version) == cached));
        let mut stale_attrs = false;
        match live {
            Some(entry) => {
                // The kernel reads up to the size it holds: a size changed elsewhere must
                // reach it before this handle's reads, or they stop at the old end.
                stale_attrs = known_size != Some(entry.size);
                self.attr(ino, entry);
            }
            None if known_live => {}
            // The size the next getattr reports must be that of the content this open reads.
            None => self.stale(ino),
        }
        let (fh, first) = self.open_handle(ino, flags, c, None);
        let mut opened = Opened {
            fh,
            keep_cache: keep,
            stale_attrs,
            prefill: None,
        };
        if keep {
            return Ok(opened);
        }
        if let Some(n) = self.inodes.lock().nodes.get_mut(&ino) {
            // The kernel drops this inode's pages now; they refill from what we load next.
            n.cached_version = None;
        }
        let Some(of) = self.open_files.lock().get(&ino).cloned() else {
            return Ok(opened);
        };
        {
            // Another handle on this node (or one whose release the kernel has not sent yet:
            // it comes after close returns) may hold content loaded before a change elsewhere.
            // Close-to-open wants what the database has now, unless local writes are pending.
            let mut st = of.state.lock();
            if !st.dirty {
                st.data = None;
                st.loaded_version = None;
            }
        }
        if truncating {
            // FUSE_ATOMIC_O_TRUNC: the truncation is this handle's change, committed with what
            // it writes at its flush or fsync (or alone, if it writes nothing). No reader on
            // another node sees the file empty between the open and the write that follows,
            // and `> file` makes one version, not an empty one and then another.
            // Another user's uncommitted changes are committed first, which takes the
            // namespace lock itself; nothing below needs it (a truncating open prefills
            // nothing).
            drop(ns);
            self.change(ino, &of, (&user, Some(fh)), Edit::Whole, |data| {
                *data = Content::default();
                Ok(())
            })
            .await?;
            return Ok(opened);
        }
        if may_prefill && first {
            opened.prefill = self.prefill(ino, &of, &p).await?;
        }
        if may_prefill && opened.prefill.as_ref().map(|p| p.data.len()) != known_size {
            // Not prefilled (not the first open, or no longer small), or the content changed
            // size since the kernel learned it: it must ask again.
            opened.stale_attrs = true;
        }
        Ok(opened)
    }

    /// Loads the content of a file being opened for a [`Prefill`], if it is still the only
    /// open of the inode and small enough.
    async fn prefill(&self, ino: u64, of: &OpenFile, p: &str) -> Result<Option<Prefill>> {
        self.ensure_loaded(of, p).await?;
        let st = of.state.lock();
        if st.handles != 1 || st.dirty || st.pending.is_some() {
            return Ok(None);
        }
        match (&st.data, st.loaded_version) {
            (Some(data @ Content::Mem(_)), Some(version))
                if !data.is_empty() && data.len() <= PREFILL_MAX =>
            {
                Ok(Some(Prefill {
                    ino,
                    data: data.clone(),
                    version,
                    era: st.loaded_era,
                    generation: st.generation,
                    opens: st.opens,
                }))
            }
            _ => Ok(None),
        }
    }

    /// After the adapter tried to store `prefill` in the kernel's page cache (`stored`: it
    /// did), whether the open may be answered with the cache kept. Not if anything opened or
    /// changed the file meanwhile: a writer's pages may be older or newer than the ones stored,
    /// and the kernel must then drop them all, as for any open whose cache is not kept.
    pub fn prefilled(&self, prefill: &Prefill, stored: bool) -> bool {
        let Some(of) = self.open_files.lock().get(&prefill.ino).cloned() else {
            return false;
        };
        let st = of.state.lock();
        let unchanged = stored
            && self.era.load(Ordering::SeqCst) == prefill.era
            && !st.dirty
            && st.generation == prefill.generation
            && st.opens == prefill.opens;
        if unchanged && let Some(n) = self.inodes.lock().nodes.get_mut(&prefill.ino) {
            n.cached_version = Some(prefill.version);
        }
        unchanged
    }

    fn handle(&self, fh: u64) -> Result<(u64, bool, String, Arc<OpenFile>)> {
        let files = self.files.lock();
        let h = files
            .get(&fh)
            .ok_or_else(|| err!(EBADF, "file handle {fh} is not open"))?;
        let of = self
            .open_files
            .lock()
            .get(&h.ino)
            .cloned()
            .ok_or_else(|| err!(EBADF, "inode {} has no open state", h.ino))?;
        Ok((h.ino, h.append, h.user.clone(), of))
    }

    async fn ensure_loaded(&self, of: &OpenFile, p: &str) -> Result<()> {
        if of.state.lock().data.is_some() {
            return Ok(());
        }
        let _loading = of.load.lock().await;
        if of.state.lock().data.is_some() {
            return Ok(());
        }
        // The handle was authorized when it was opened; loading its content is regfs's own read.
        let era = self.era.load(Ordering::SeqCst);
        let (version, data) = self
            .registry
            .read_content(SYSTEM_USER, p, &self.spool)
            .await?;
        let mut st = of.state.lock();
        if st.data.is_none() {
            st.data = Some(data);
            st.loaded_version = Some(version);
            st.loaded_era = era;
        }
        Ok(())
    }

    async fn loaded(&self, ino: u64, of: &OpenFile) -> Result<()> {
        if of.state.lock().data.is_some() {
            return Ok(());
        }
        let _ns = self.namespace.read().await;
        // A rename or unlink that held the lock meanwhile may have loaded it, before the
        // path went away.
        if of.state.lock().data.is_some() {
            return Ok(());
        }
        let p = self.path(ino)?;
        self.ensure_loaded(of, &p).await
    }

    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let (ino, _, _, of) = self.handle(fh)?;
        self.loaded(ino, &of).await?;
        let data = {
            let st = of.state.lock();
            if !st.dirty
                && let Some(v) = st.loaded_version
                && st.loaded_era == self.era.load(Ordering::SeqCst)
                && let Some(n) = self.inodes.lock().nodes.get_mut(&ino)
            {
                n.cached_version = Some(v);
            }
            st.data.clone().unwrap_or_default()
        };
        data.read_at(offset, size as usize)
    }

    pub async fn write(&self, fh: u64, offset: u64, buf: &[u8]) -> Result<u32> {
        let (ino, append, user, of) = self.handle(fh)?;
        self.loaded(ino, &of).await?;
        let edit = if append { Edit::Append } else { Edit::InPlace };
        self.change(ino, &of, (&user, Some(fh)), edit, |data| {
            let start = if append { data.len() } else { offset };
            let end = start.saturating_add(buf.len() as u64);
            check_size(end)?;
            data.write_at(&self.spool, start, buf)
        })
        .await?;
        if let Some(h) = self.files.lock().get_mut(&fh) {
            h.wrote = true;
        }
        Ok(buf.len() as u32)
    }

    /// Applies `f` to an open file's content and marks it dirty, as a change by the registry
    /// user `by.0` through handle `by.1` (none: a truncate by path); `edit` says what kind of
    /// change `f` makes. Takes the namespace lock to commit: the
    /// caller must not hold it. Uncommitted changes of
    /// another user are committed first, as theirs: one buffer never mixes two writers'
    /// changes, and each version is attributed to (and authorized for) the user who made it.
    /// In-memory content is copy-on-write, so only spooled content waits for a commit in
    /// progress.
    async fn change(
        &self,
        ino: u64,
        of: &OpenFile,
        by: (&str, Option<u64>),
        edit: Edit,
        f: impl FnOnce(&mut Content) -> Result<()>,
    ) -> Result<()> {
        let spooled = |st: &OpenState| st.data.as_ref().is_some_and(Content::is_spooled);
        loop {
            let was_spooled = spooled(&of.state.lock());
            let guard = match was_spooled {
                true => Some(of.commit.lock().await),
                false => None,
            };
            {
                let mut st = of.state.lock();
                if guard.is_none() && spooled(&st) {
                    // Another write moved it to a spool file meanwhile: take the lock after all.
                    continue;
                }
                if !st.dirty || st.writer.as_deref() == Some(by.0) {
                    // Uncommitted changes that are all appends commit as an append to what
                    // the database has then (see `commit`); anything else replaces it.
                    st.append_base = match edit {
                        Edit::Append if !st.dirty => Some(st.data.as_ref().map_or(0, Content::len)),
                        Edit::Append => st.append_base,
                        Edit::Whole | Edit::InPlace => None,
                    };
                    st.writer = Some(by.0.to_string());
                    if let Some(fh) = by.1 {
                        st.contributors.insert(fh);
                    }
                    return Self::apply(&mut st, f);
                }
            }
            {
                drop(guard);
                self.commit(ino, of, CommitFor::Writer).await?;
                if edit != Edit::Whole && of.state.lock().data.is_none() {
                    // The other user's changes were refused and dropped: this change applies
                    // to what the database has.
                    self.loaded(ino, of).await?;
                }
            }
        }
    }

    fn apply(st: &mut OpenState, f: impl FnOnce(&mut Content) -> Result<()>) -> Result<()> {
        f(st.data.get_or_insert_with(Default::default))?;
        st.dirty = true;
        st.generation += 1;
        Ok(())
    }

    /// Writes the open file's uncommitted changes to the database in one transaction, as
    /// their writer (see [`CommitFor`]). Changes the registry refuses (the writer lost add,
    /// a read-only mount) are dropped: no other handle commits them or reads them after.
    async fn commit(&self, ino: u64, of: &OpenFile, why: CommitFor) -> Result<()> {
        let _guard = of.commit.lock().await;
        let era = self.era.load(Ordering::SeqCst);
        let (data, generation, pending, writer, append) = {
            let st = of.state.lock();
            if !st.dirty {
                return Ok(());
            }
            if let CommitFor::Handle(fh) = why
                && !st.contributors.contains(&fh)
            {
                return Ok(());
            }
            let Some(writer) = st.writer.clone() else {
                return Err(err!(EIO, "inode {ino}: uncommitted changes with no writer"));
            };
            let pending = st.pending.as_ref().map(|p| (p.new.clone(), p.user.clone()));
            let append = st.append_base.map(|base| (base, st.loaded_version));
            (
                st.data.clone().unwrap_or_default(),
                st.generation,
                pending,
                writer,
                append,
            )
        };
        let _ns = self.namespace.read().await;
        let p = match self.path(ino) {
            Ok(p) => p,
            Err(_) => {
                debug!(
                    ino,
                    "dropping writes to a file that was unlinked while open"
                );
                of.state.lock().committed();
                return Ok(());
            }
        };
        let inserting = pending.is_some();
        let written = match (pending, append) {
            (Some((new, creator)), _) => self.insert_new(&p, new, &data, &creator).await,
            (None, Some((base, loaded))) => self.append(&p, &data, base, loaded, &writer).await,
            (None, None) => self.registry.write(&p, &data, &writer).await,
        };
        // Whether the database now holds more than this node's content: other nodes' appends.
        let merged;
        let entry = match written {
            Ok(entry) => {
                merged = entry.size != data.len();
                entry
            }
            Err(e) if refused(&e) => {
                self.drop_refused(ino, of, &p, &writer, &e);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if inserting {
            let parent = self.inodes.lock().nodes.get(&ino).map(|n| n.parent);
            if let Some(parent) = parent {
                self.touched(parent, entry.ctime);
            }
        }
        {
            let mut st = of.state.lock();
            st.pending = None;
            if st.generation == generation {
                st.committed();
            } else if st.append_base.is_some() {
                // Appends made meanwhile follow what was just committed.
                st.append_base = Some(data.len());
            }
            if merged {
                // This node's content lacks the other nodes' appends: read it again (unless
                // more local changes wait, which the next commit merges the same way).
                if !st.dirty {
                    st.data = None;
                }
                st.loaded_version = None;
            } else {
                st.loaded_version = Some(entry.version);
            }
        }
        let forgotten = self.era.load(Ordering::SeqCst) != era;
        if let Some(n) = self.inodes.lock().nodes.get_mut(&ino) {
            // The page cache holds what was just written: this version's content (unless
            // something else committed meanwhile, and the kernel was told to drop it).
            n.cached_version = if forgotten || merged {
                None
            } else {
                Some(entry.version)
            };
            n.last = Some(entry);
            n.fetched = Some(Instant::now());
        }
        if merged && let Some(kernel) = self.kernel.get() {
            kernel.drop_pages(ino);
        }
        Ok(())
    }

    /// Commits appends: `data[base..]` added to what the database has now, as `writer`. Over
    /// the version this node's content was loaded as (`loaded`), `data` itself is written;
    /// if another node (or Carbon) replaced the file meanwhile, its content is read again and
    /// the appended bytes go after it, until a conditional write finds the version it read.
    async fn append(
        &self,
        p: &str,
        data: &Content,
        base: u64,
        loaded: Option<i64>,
        writer: &str,
    ) -> Result<Entry> {
        let suffix = data.read_at(base, (data.len() - base.min(data.len())) as usize)?;
        let mut over = loaded.map(|v| (v, None::<Content>));
        let mut attempt = 0u32;
        loop {
            if let Some((version, current)) = &over {
                let written = match current {
                    None => self.registry.write_if(p, data, writer, *version).await,
                    Some(current) => {
                        let mut merged = current.clone();
                        merged.write_at(&self.spool, current.len(), &suffix)?;
                        self.registry.write_if(p, &merged, writer, *version).await
                    }
                };
                match written {
                    Err(e) if e.errno() == libc::ESTALE && attempt < 100 => {
                        debug!(path = p, attempt, "appending after a change elsewhere: {e}");
                        attempt += 1;
                    }
                    Err(e) if e.errno() == libc::ESTALE => {
                        return Err(err!(
                            EIO,
                            "{p}: appends kept meeting changes elsewhere: {e}"
                        ));
                    }
                    other => return other,
                }
            }
            let (version, current) = self
                .registry
                .read_content(SYSTEM_USER, p, &self.spool)
                .await?;
            over = Some((version, Some(current)));
        }
    }

    /// Forgets the uncommitted changes `writer` made to `p` (refused with `e`): the open file
    /// reads what the database has again, and so does the kernel. A file that was never
    /// inserted is gone.
    fn drop_refused(&self, ino: u64, of: &OpenFile, p: &str, writer: &str, e: &Error) {
        warn!("{p}: uncommitted changes by {writer} dropped: {e}");
        let never_inserted = {
            let mut st = of.state.lock();
            st.discard();
            st.pending.take().is_some()
        };
        if let Some(n) = self.inodes.lock().nodes.get_mut(&ino) {
            n.cached_version = None;
            n.fetched = None;
        }
        if never_inserted {
            let mut inodes = self.inodes.lock();
            if let Some((parent, name)) = inodes.nodes.get(&ino).map(|n| (n.parent, n.name.clone()))
            {
                inodes.detach(parent, &name);
            }
        }
        if let Some(kernel) = self.kernel.get() {
            kernel.drop_pages(ino);
        }
    }

    /// The insert of a pending file, with `data` in the same transaction when it is in memory.
    /// A name that another node (or Carbon) took meanwhile is overwritten, as an open without
    /// `O_EXCL` of an existing file would have done.
    async fn insert_new(
        &self,
        p: &str,
        mut new: NewEntry,
        data: &Content,
        user: &str,
    ) -> Result<Entry> {
        let inline = !data.is_spooled() && data.len() <= INLINE_CREATE_MAX;
        let created = if inline {
            new.content = data.to_vec()?;
            self.registry.create(p, new, user).await
        } else {
            self.registry.create_file(p, new, data, user).await
        };
        match created {
            Ok(entry) => Ok(entry),
            Err(e) if e.errno() == libc::EEXIST => {
                warn!("{p} was created elsewhere while it was open here; overwriting it");
                self.registry.write(p, data, user).await
            }
            Err(e) => Err(e),
        }
    }

    /// A close of `fh` (one of possibly several: dup'ed descriptors, forked processes).
    /// Commits this handle's changes, unless all it did was truncate or create the file:
    /// those go in with the writes that follow, or at its release (see [`FileHandle::wrote`]).
    pub async fn flush(&self, fh: u64) -> Result<()> {
        let (ino, _, _, of) = self.handle(fh)?;
        if !self.files.lock().get(&fh).is_some_and(|h| h.wrote) {
            return Ok(());
        }
        self.commit(ino, &of, CommitFor::Handle(fh)).await
    }

    /// Commits this handle's changes, whatever they are.
    pub async fn fsync(&self, fh: u64) -> Result<()> {
        let (ino, _, _, of) = self.handle(fh)?;
        self.commit(ino, &of, CommitFor::Handle(fh)).await
    }

    pub async fn release(&self, fh: u64) -> Result<()> {
        let (ino, _, _, of) = self.handle(fh)?;
        let result = self.commit(ino, &of, CommitFor::Handle(fh)).await;
        self.files.lock().remove(&fh);
        let (last, lost) = {
            // Under the map's lock, as in open_handle.
            let mut open = self.open_files.lock();
            let mut st = of.state.lock();
            st.handles -= 1;
            if st.handles == 0 {
                open.remove(&ino);
            }
            // Changes whose last handle is gone without committing them: no one else may.
            let lost = st.contributors.remove(&fh) && st.contributors.is_empty() && st.dirty;
            if lost {
                st.discard();
            }
            (st.handles == 0, lost)
        };
        if lost {
            let p = self.path(ino).unwrap_or_else(|_| format!("inode {ino}"));
            warn!(
                "{p}: changes not committed when their last handle closed are lost: {}",
                result
                    .as_ref()
                    .err()
                    .map_or("no error".into(), |e| e.to_string())
            );
            if let Some(kernel) = self.kernel.get() {
                kernel.drop_pages(ino);
            }
        }
        if last {
            self.inodes.lock().forget(ino, 1);
        }
        result
    }

    pub async fn opendir(&self, c: Caller, ino: u64) -> Result<u64> {
        let p = self.path(ino)?;
        let user = self.identity.registry_user(c.uid);
        self.registry.authorize(&user, &p, Action::Get).await?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.dirs.lock().insert(
            fh,
            Arc::new(tokio::sync::Mutex::new(DirHandle {
                ino,
                user,
                entries: Vec::new(),
                cursor: None,
                complete: false,
            })),
        );
        Ok(fh)
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.lock().remove(&fh);
    }

    /// Listing items from `offset` on (up to about `max` of them). Offsets 0 and 1 are `.` and
    /// `..`; offset `n + 2` is the n-th child. Pages are fetched from the database by name
    /// (never OFFSET) as the kernel reads further; offset 0 starts a fresh listing.
    pub async fn readdir(&self, fh: u64, offset: u64, max: usize) -> Result<Vec<DirItem>> {
        let dh = self
            .dirs
            .lock()
            .get(&fh)
            .cloned()
            .ok_or_else(|| err!(EBADF, "directory handle {fh} is not open"))?;
        let mut dh = dh.lock().await;
        let dir_path = self.path(dh.ino)?;
        if offset == 0 {
            self.insert_pending_children(dh.ino).await?;
            dh.entries.clear();
            dh.cursor = None;
            dh.complete = false;
        }
        let mut items = Vec::new();
        if offset < 2 {
            let dir_entry = self
                .registry
                .stat(&dh.user, &dir_path)
                .await?
                .ok_or_else(|| err!(ENOENT, "{dir_path} no longer exists"))?;
            let parent_ino = self
                .inodes
                .lock()
                .nodes
                .get(&dh.ino)
                .map(|n| n.parent)
                .unwrap_or(ROOT_INO);
            for (i, name) in [".", ".."].into_iter().enumerate().skip(offset as usize) {
                let ino = if i == 0 { dh.ino } else { parent_ino };
                items.push(DirItem {
                    ino,
                    next_offset: i as u64 + 1,
                    name: name.to_string(),
                    attr: Attr {
                        ino,
                        entry: dir_entry.clone(),
                        nlink: 2,
                    },
                    is_dot: true,
                });
            }
        }
        let mut index = offset.saturating_sub(2) as usize;
        while items.len() < max {
            if index >= dh.entries.len() {
                if dh.complete {
                    break;
                }
                let page = self
                    .registry
                    .list_page(&dh.user, &dir_path, dh.cursor.as_deref(), self.list_page)
                    .await?;
                if !page.more {
                    dh.complete = true;
                }
                if page.cursor.is_some() {
                    dh.cursor = page.cursor;
                }
                dh.entries
                    .extend(page.entries.into_iter().map(|d| (d.name, d.entry)));
                continue;
            }
            let (name, entry) = dh.entries[index].clone();
            let attr = self.remember(dh.ino, &name, entry, false);
            items.push(DirItem {
                ino: attr.ino,
                next_offset: index as u64 + 3,
                name,
                attr,
                is_dot: false,
            });
            index += 1;
        }
        Ok(items)
    }

    /// Counts a readdirplus entry the kernel accepted as a lookup.
    pub fn count_lookup(&self, ino: u64) {
        if let Some(n) = self.inodes.lock().nodes.get_mut(&ino) {
            n.lookups += 1;
        }
    }

    pub async fn statfs(&self) -> Result<crate::store::SpaceInfo> {
        self.registry.space().await
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::sync::Arc;

    use super::{Caller, PREFILL_MAX, ROOT_INO, RegFs};
    use crate::content::SpoolPolicy;
    use crate::identity::Identity;
    use crate::store::StoreOptions;

    const ROOT: Caller = Caller {
        uid: 0,
        gid: 0,
        pid: 1,
    };

    async fn embedded(dir: &std::path::Path) -> RegFs {
        let registry = crate::wiring::embedded_registry(dir, StoreOptions::default())
            .await
            .unwrap();
        let identity = Identity::new(crate::um::ADMIN_USER, Default::default());
        let token = registry.change_token().await.unwrap();
        RegFs::new(Arc::new(registry), identity, SpoolPolicy::default(), token)
    }

    async fn lookup(fs: &RegFs, parent: u64, name: &str) -> u64 {
        fs.lookup(ROOT, parent, OsStr::new(name)).await.unwrap().ino
    }

    async fn write_file(fs: &RegFs, dir: u64, name: &str, data: &[u8]) {
        let flags = libc::O_WRONLY | libc::O_CREAT;
        let (_, fh) = fs
            .create(ROOT, dir, OsStr::new(name), 0o644, flags)
            .await
            .unwrap();
        fs.write(fh, 0, data).await.unwrap();
        fs.release(fh).await.unwrap();
    }

    /// `dir/name` under a new inode, as after the kernel forgot the old one: the kernel holds
    /// no pages of it.
    async fn forgotten(fs: &RegFs, dir: u64, name: &str) -> u64 {
        let old = lookup(fs, dir, name).await;
        fs.forget(old, 2);
        let ino = lookup(fs, dir, name).await;
        assert_ne!(ino, old);
        ino
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_watched_mount_keeps_a_cached_version_until_something_else_commits() {
        let dir = tempfile::tempdir().unwrap();
        let fs = embedded(dir.path()).await;
        // Another process on the same databases.
        let other = embedded(dir.path()).await;
        let system = lookup(&fs, ROOT_INO, "_system").await;
        let local = lookup(&fs, system, "local").await;
        let big = vec![1u8; PREFILL_MAX as usize + 1];
        write_file(&fs, local, "f", &big).await;
        let ino = lookup(&fs, local, "f").await;
        let read_all = async |fh| fs.read(fh, 0, big.len() as u32).await.unwrap();

        // This process's own write: the kernel caches what it wrote, and nothing else has
        // committed, so the next open keeps it without asking the database.
        let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
        assert!(o.keep_cache && !o.stale_attrs);
        fs.release(o.fh).await.unwrap();

        // Another process writes: the next open sees the new version at once, before any
        // watcher caught up, and has the kernel drop the old size.
        let o_system = lookup(&other, ROOT_INO, "_system").await;
        let o_local = lookup(&other, o_system, "local").await;
        write_file(&other, o_local, "f", &big[1..]).await;
        let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
        assert!(!o.keep_cache && o.stale_attrs);
        assert_eq!(read_all(o.fh).await.len(), big.len() - 1);

        // The watcher catches up while that handle is open. Its content was loaded before:
        // reading it again must not record its version as the kernel's, which is left to
        // the next open to decide.
        let token = fs.change_token().await.unwrap().unwrap();
        assert!(fs.changed_elsewhere(&token));
        let _ = fs.forget_cached(Some(token.clone()));
        assert!(!fs.changed_elsewhere(&token));
        assert_eq!(read_all(o.fh).await.len(), big.len() - 1);
        fs.release(o.fh).await.unwrap();
        let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
        assert!(!o.keep_cache);
        assert_eq!(read_all(o.fh).await.len(), big.len() - 1);
        fs.release(o.fh).await.unwrap();
        // Read after the watcher caught up: kept from now on.
        let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
        assert!(o.keep_cache);
        fs.release(o.fh).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_first_read_only_open_of_a_small_file_brings_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let fs = embedded(dir.path()).await;
        let system = lookup(&fs, ROOT_INO, "_system").await;
        let local = lookup(&fs, system, "local").await;
        let small = b"0123456789".repeat(500);
        let big = vec![7u8; PREFILL_MAX as usize + 1];
        write_file(&fs, local, "small", &small).await;
        write_file(&fs, local, "big", &big).await;

        let ino = forgotten(&fs, local, "small").await;
        let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
        assert!(!o.keep_cache);
        let p = o.prefill.expect("content for the page cache");
        assert_eq!(p.data(), &small[..]);
        assert!(fs.prefilled(&p, true));
        fs.release(o.fh).await.unwrap();
        // The kernel holds that version now: the next open keeps it, and brings nothing.
        let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
        assert!(o.keep_cache);
        assert!(o.prefill.is_none());
        fs.release(o.fh).await.unwrap();

        // Not stored (the adapter could not): the kernel must drop its pages as usual.
        let ino = forgotten(&fs, local, "small").await;
        let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
        assert!(!fs.prefilled(&o.prefill.unwrap(), false));
        assert_eq!(fs.read(o.fh, 0, 10).await.unwrap(), b"0123456789");
        fs.release(o.fh).await.unwrap();

        // A writer opened and wrote while the content was being stored: the stored pages
        // may be older than the kernel's, so none are kept.
        let ino = forgotten(&fs, local, "small").await;
        let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
        let p = o.prefill.unwrap();
        let w = fs.open(ROOT, ino, libc::O_WRONLY).await.unwrap();
        assert!(w.prefill.is_none());
        fs.write(w.fh, 0, b"x").await.unwrap();
        assert!(!fs.prefilled(&p, true));
        fs.release(w.fh).await.unwrap();
        fs.release(o.fh).await.unwrap();

        // Only read-only opens of files up to PREFILL_MAX bring content.
        let ino = forgotten(&fs, local, "big").await;
        let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
        assert!(o.prefill.is_none());
        fs.release(o.fh).await.unwrap();
        let ino = forgotten(&fs, local, "small").await;
        let o = fs.open(ROOT, ino, libc::O_RDWR).await.unwrap();
        assert!(o.prefill.is_none());
        fs.release(o.fh).await.unwrap();
    }

    #[test]
    fn only_handles_that_may_change_the_file_flush_on_close() {
        assert!(!RegFs::flush_on_close(libc::O_RDONLY));
        assert!(!RegFs::flush_on_close(libc::O_RDONLY | libc::O_NONBLOCK));
        assert!(RegFs::flush_on_close(libc::O_WRONLY));
        assert!(RegFs::flush_on_close(libc::O_RDWR));
        assert!(RegFs::flush_on_close(libc::O_WRONLY | libc::O_APPEND));
        // Linux truncates on O_RDONLY | O_TRUNC: that handle changed the file.
        assert!(RegFs::flush_on_close(libc::O_RDONLY | libc::O_TRUNC));
    }
}
