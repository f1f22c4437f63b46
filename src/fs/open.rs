//! Open files and close-to-open write-back: one shared content buffer per open inode (local
//! readers see local writes at once), committed on flush, fsync and close as one version;
//! pending files (created, not yet inserted), appends that merge with other nodes', and the
//! page-cache prefill of small files.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::Mutex;
use tracing::{debug, warn};

use super::{Caller, INLINE_CREATE_MAX, PREFILL_MAX, RegFs, check_size, may_change, refused};
use super::{Fh, Ino};
use crate::authz::{Action, SYSTEM_USER};
use crate::content::Content;
use crate::err;
use crate::error::{Error, Result};
use crate::store::{Entry, Kind, NewEntry};

/// Content of an open file, shared by every handle on the inode so that local readers see local
/// writes at once; committed to the database on flush, fsync and close.
pub(super) struct OpenFile {
    pub(super) state: Mutex<OpenState>,
    /// Serializes commits so an older snapshot never lands after a newer one. Changes to spooled
    /// content take it too: a spool file is written in place, so it must not change while a
    /// commit copies it out.
    pub(super) commit: tokio::sync::Mutex<()>,
    /// One load of the content at a time: the kernel's readahead sends several reads at once,
    /// and each would otherwise read the whole file from the database (and hold its buffers).
    pub(super) load: tokio::sync::Mutex<()>,
}

pub(super) struct OpenState {
    /// A file created without `O_EXCL` is inserted by its first commit, together with its
    /// content: one transaction instead of two. Until then it lives here, and this node's
    /// lookups, getattrs and listings see it (see [`Pending`]).
    pub(super) pending: Option<Pending>,
    pub(super) data: Option<Content>,
    pub(super) dirty: bool,
    /// The registry user whose uncommitted changes `data` holds: it is committed as them,
    /// authorized for them, and attributed to them. A change by another user commits theirs
    /// first (see [`RegFs::change`]). Set whenever `dirty` is.
    pub(super) writer: Option<String>,
    /// The handles whose changes are in the uncommitted `data`: only their flush, fsync or
    /// close commits it. A handle that changed nothing (a reader) commits nothing.
    pub(super) contributors: HashSet<Fh>,
    /// Where the uncommitted changes begin, when all of them are appends through `O_APPEND`
    /// handles: they are committed as an append to what the database has at the commit, so
    /// that appends from several nodes all land.
    pub(super) append_base: Option<u64>,
    /// The version `data` was loaded as.
    pub(super) loaded_version: Option<i64>,
    /// [`RegFs::era`] when that load began.
    pub(super) loaded_era: u64,
    /// Bumped on every change, so a commit only clears `dirty` if nothing changed meanwhile.
    pub(super) generation: u64,
    pub(super) handles: u32,
    /// Bumped by every open, so that a [`Prefill`] can tell whether another open came meanwhile.
    pub(super) opens: u64,
}

impl OpenState {
    /// Nothing is uncommitted any more (the changes went in, or there is nowhere for them).
    pub(super) fn committed(&mut self) {
        self.dirty = false;
        self.writer = None;
        self.contributors.clear();
        self.append_base = None;
    }

    /// Forgets the uncommitted changes: the content is read from the database again.
    pub(super) fn discard(&mut self) {
        self.committed();
        self.data = None;
        self.loaded_version = None;
        self.generation += 1;
    }
}

/// What an open returns: the handle, and what the kernel may do with its page cache.
pub struct Opened {
    pub fh: Fh,
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
    pub ino: Ino,
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
pub(super) struct Pending {
    pub(super) new: NewEntry,
    /// What lookup and getattr answer meanwhile.
    pub(super) entry: Entry,
    /// The creator, recorded as the resource's creator whoever commits first.
    pub(super) user: String,
}

pub(super) struct FileHandle {
    pub(super) ino: Ino,
    pub(super) append: bool,
    pub(super) user: String,
    /// The handle wrote data (not only truncated or created the file). Until it does, its
    /// flush commits nothing: the shell's `> file` opens, dup2s and closes the original fd (a
    /// flush) before it writes, and a commit there would make an empty version first.
    pub(super) wrote: bool,
}

/// Whose changes a commit writes.
#[derive(Clone, Copy, Debug)]
pub(super) enum CommitFor {
    /// A handle's flush, fsync or close: the uncommitted changes, if this handle made some.
    Handle(Fh),
    /// Whatever is uncommitted, as its writer (a rename, a setattr, another user's change,
    /// a listing that needs a pending file's row).
    Writer,
}

/// What kind of change [`RegFs::change`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Edit {
    /// Replaces the whole content (needs none loaded): a truncation to zero.
    Whole,
    /// Changes the content where it is: a write at an offset, a truncation to a length.
    InPlace,
    /// Adds at the end, through an `O_APPEND` handle.
    Append,
}

impl RegFs {
    /// A new handle on `ino`, and whether it is the first open of the inode (see
    /// [`Node::opened`]).
    pub(super) fn open_handle(
        &self,
        ino: Ino,
        flags: i32,
        c: Caller,
        initial: Option<Content>,
    ) -> (Fh, bool) {
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
        let fh = Fh(self.next_fh.fetch_add(1, Ordering::Relaxed));
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
    pub async fn open(&self, c: Caller, ino: Ino, flags: i32) -> Result<Opened> {
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
        let quiet = matches!(peek, Some(Some(_)))
            && (self.registry.feed_vouches(&p) || self.quiet().await?);
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
    pub(super) async fn prefill(
        &self,
        ino: Ino,
        of: &OpenFile,
        p: &str,
    ) -> Result<Option<Prefill>> {
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

    pub(super) fn handle(&self, fh: Fh) -> Result<(Ino, bool, String, Arc<OpenFile>)> {
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

    pub(super) async fn ensure_loaded(&self, of: &OpenFile, p: &str) -> Result<()> {
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

    pub(super) async fn loaded(&self, ino: Ino, of: &OpenFile) -> Result<()> {
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

    pub async fn read(&self, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
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

    pub async fn write(&self, fh: Fh, offset: u64, buf: &[u8]) -> Result<u32> {
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
    pub(super) async fn change(
        &self,
        ino: Ino,
        of: &OpenFile,
        by: (&str, Option<Fh>),
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

    pub(super) fn apply(
        st: &mut OpenState,
        f: impl FnOnce(&mut Content) -> Result<()>,
    ) -> Result<()> {
        f(st.data.get_or_insert_with(Default::default))?;
        st.dirty = true;
        st.generation += 1;
        Ok(())
    }

    /// Writes the open file's uncommitted changes to the database in one transaction, as
    /// their writer (see [`CommitFor`]). Changes the registry refuses (the writer lost add,
    /// a read-only mount) are dropped: no other handle commits them or reads them after.
    pub(super) async fn commit(&self, ino: Ino, of: &OpenFile, why: CommitFor) -> Result<()> {
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
                    %ino,
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
    pub(super) async fn append(
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
    pub(super) fn drop_refused(&self, ino: Ino, of: &OpenFile, p: &str, writer: &str, e: &Error) {
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
    pub(super) async fn insert_new(
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
    pub async fn flush(&self, fh: Fh) -> Result<()> {
        let (ino, _, _, of) = self.handle(fh)?;
        if !self.files.lock().get(&fh).is_some_and(|h| h.wrote) {
            return Ok(());
        }
        self.commit(ino, &of, CommitFor::Handle(fh)).await
    }

    /// Commits this handle's changes, whatever they are.
    pub async fn fsync(&self, fh: Fh) -> Result<()> {
        let (ino, _, _, of) = self.handle(fh)?;
        self.commit(ino, &of, CommitFor::Handle(fh)).await
    }

    pub async fn release(&self, fh: Fh) -> Result<()> {
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

    /// What a pending (not yet inserted) file looks like, if `ino` is one.
    pub(super) fn pending_entry(&self, ino: Ino) -> Option<Entry> {
        let of = self.open_files.lock().get(&ino).cloned()?;
        let st = of.state.lock();
        st.pending.as_ref().map(|p| p.entry.clone())
    }

    /// Inserts `ino` now if it is a pending file (see [`Pending`]).
    pub(super) async fn insert_pending(&self, ino: Ino) -> Result<()> {
        let Some(of) = self.open_files.lock().get(&ino).cloned() else {
            return Ok(());
        };
        if of.state.lock().pending.is_none() {
            return Ok(());
        }
        self.commit(ino, &of, CommitFor::Writer).await
    }

    pub(super) async fn insert_pending_name(&self, parent: Ino, name: &str) -> Result<()> {
        match self.named(parent, name) {
            Some(ino) => self.insert_pending(ino).await,
            None => Ok(()),
        }
    }

    /// Inserts the pending files in directory `dir`: a listing, and rmdir's emptiness check,
    /// need their rows.
    pub(super) async fn insert_pending_children(&self, dir: Ino) -> Result<()> {
        let pending: Vec<Ino> = {
            let open = self.open_files.lock();
            open.iter()
                .filter(|(_, of)| of.state.lock().pending.is_some())
                .map(|(&ino, _)| ino)
                .collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        let children: Vec<Ino> = {
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
}
