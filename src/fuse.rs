//! The FUSE adapter: translates kernel requests into [`RegFs`] calls and results into replies.
//! Each request runs to completion on the fuser thread that read it (`--threads` of them), on
//! the tokio runtime's handle. Handing every request to a runtime worker cost a thread wake-up
//! per request, a third of a small file's create on a 2-core VM; the SQLite store's work is
//! synchronous anyway, and a server store's socket waits are driven by the runtime meanwhile.
//! Every error reply is logged with its reason.

use std::ffi::OsStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use tracing::{debug, info, warn};

use crate::error::Error;
use crate::fs::{Attr, Caller, Fh, Ino, Prefill, RegFs};
use crate::store::{AttrChange, Kind, RenameMode};

pub struct FuseAdapter {
    fs: Arc<RegFs>,
    rt: tokio::runtime::Handle,
    /// Kernel entry/attribute cache lifetime ([`RegFs::entry_ttl`]). Never zero: zero makes
    /// the kernel look everything up again on every access.
    ttl: Duration,
    /// The session's notifier, set once the session exists: opens store file content in the
    /// page cache through it (see [`Prefill`]).
    notifier: Arc<OnceLock<Notifier>>,
    /// One such store at a time. A store waits for the page locks that a concurrent reader's
    /// readahead holds until its read is answered; with one store at a time, another thread
    /// is always free to answer it. (With one thread there is no such reader: its open would
    /// wait for this one.)
    storing: parking_lot::Mutex<()>,
    /// The session's unmounter, set once the session exists (see [`FuseAdapter::destroy`]).
    unmounter: Arc<OnceLock<parking_lot::Mutex<fuser::SessionUnmounter>>>,
    /// Registry properties as extended attributes (`-o xattr`). Without, every xattr request
    /// is answered ENOSYS, which the kernel remembers: it answers EOPNOTSUPP itself from
    /// then on, and `ls -l` costs no request for the attributes it asks of every file.
    xattr: bool,
}

impl FuseAdapter {
    /// Where the daemon puts the session's unmounter once the session exists.
    pub fn unmounter(&self) -> Arc<OnceLock<parking_lot::Mutex<fuser::SessionUnmounter>>> {
        self.unmounter.clone()
    }

    pub fn new(
        fs: Arc<RegFs>,
        rt: tokio::runtime::Handle,
        notifier: Arc<OnceLock<Notifier>>,
    ) -> Self {
        let ttl = fs.entry_ttl();
        Self {
            fs,
            rt,
            ttl,
            notifier,
            storing: parking_lot::Mutex::new(()),
            unmounter: Arc::new(OnceLock::new()),
            xattr: false,
        }
    }

    /// Serves extended attributes (see [`FuseAdapter::xattr`]'s field).
    pub fn with_xattr(mut self, on: bool) -> Self {
        self.xattr = on;
        self
    }

    /// Whether xattr requests are served; if not, answers `reply` ENOSYS (see the field).
    fn xattr_off(&self, op: &str, ino: INodeNo) -> bool {
        if !self.xattr {
            debug!(
                ino = ino.0,
                op, "extended attributes are off on this mount (-o xattr turns them on): ENOSYS"
            );
        }
        !self.xattr
    }

    /// Makes the kernel drop its attributes of `ino`, not its pages: it asks for them at the
    /// next stat, or read at what it takes for the end of the file. Waits for nothing (no page
    /// locks), so it is safe while answering a request.
    fn drop_attrs(&self, ino: Ino) {
        if let Some(notifier) = self.notifier.get()
            && let Err(e) = notifier.inval_inode(INodeNo(ino.0), -1, 0)
        {
            debug!(%ino, "attribute invalidation refused: {e}");
        }
    }

    /// What regfs itself must drop from the kernel's caches, through this adapter's
    /// notifier.
    pub fn kernel_cache(&self) -> Arc<dyn crate::fs::KernelCache> {
        Arc::new(PageDropper(self.notifier.clone()))
    }

    /// Stores a [`Prefill`] in the kernel's page cache; whether it did.
    fn store(&self, p: &Prefill) -> bool {
        let (Some(notifier), Some(_one)) = (self.notifier.get(), self.storing.try_lock()) else {
            return false;
        };
        match notifier.store(INodeNo(p.ino.0), 0, p.data()) {
            Ok(()) => true,
            Err(e) => {
                debug!(ino = %p.ino, "page cache store refused: {e}");
                false
            }
        }
    }

    /// Runs one request's work here, on the calling fuser thread, inside its span: every
    /// line logged meanwhile says which request it belongs to.
    fn run<F>(&self, span: tracing::Span, f: F)
    where
        F: std::future::Future<Output = ()>,
    {
        use tracing::Instrument;
        self.rt.block_on(f.instrument(span));
    }
}

/// Drops an inode's pages on a thread of its own: the kernel takes the pages' locks, which a
/// request being answered on `ino` (a write, a flush) may hold until it is answered.
struct PageDropper(Arc<OnceLock<Notifier>>);

impl crate::fs::KernelCache for PageDropper {
    fn drop_pages(&self, ino: Ino) {
        let Some(notifier) = self.0.get().cloned() else {
            return;
        };
        std::thread::spawn(move || {
            if let Err(e) = notifier.inval_inode(INodeNo(ino.0), 0, 0) {
                debug!(%ino, "page invalidation refused: {e}");
            }
        });
    }
}

/// The kernel's caches for the change watcher ([`crate::watch`]): inode invalidations through
/// fuser's notifier, entry expiry through the [`Expirer`]. Each call waits for the kernel.
pub struct KernelNotifier {
    pub notifier: Notifier,
    pub expirer: Expirer,
}

impl crate::watch::KernelNotify for KernelNotifier {
    fn inval_inode(&self, ino: Ino) {
        // ENOENT: the kernel had already dropped it.
        let _ = self.notifier.inval_inode(INodeNo(ino.0), 0, 0);
    }

    fn inval_attrs(&self, ino: Ino) {
        // A negative offset: attributes only, the pages stay.
        let _ = self.notifier.inval_inode(INodeNo(ino.0), -1, 0);
    }

    fn expire_entry(&self, parent: Ino, name: &str) {
        if let Err(e) = self.expirer.expire_entry(parent.0, OsStr::new(name)) {
            debug!(%parent, name, "cannot expire the kernel's entry: {e}");
        }
    }
}

/// The span of one FUSE request: its operation, the inode it names and the kernel's request
/// id (as mountpoint-s3 does), e.g. `req{op="write" ino=42 id=1234}`.
fn request_span(op: &'static str, req: &Request, ino: INodeNo) -> tracing::Span {
    tracing::info_span!("req", op, ino = ino.0, id = req.unique().0)
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Directory => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let e = &a.entry;
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: e.size,
        blocks: e.size.div_ceil(512),
        atime: e.atime,
        mtime: e.mtime,
        ctime: e.ctime,
        crtime: e.crtime,
        kind: file_type(e.kind),
        perm: e.perm as u16,
        nlink: a.nlink,
        uid: e.uid,
        gid: e.gid,
        rdev: e.rdev,
        blksize: 4096,
        flags: 0,
    }
}

/// Logs why an errno goes back to the caller: ENOENT is routine (debug), EIO is an error in
/// regfs or its database (warn), the rest are refusals worth an info line.
fn log_error(op: &str, e: &Error) {
    match e.errno() {
        libc::ENOENT | libc::ENODATA => debug!(op, errno = e.errno(), "{}", e.message()),
        libc::EIO => warn!(op, errno = e.errno(), "{}", e.message()),
        _ => info!(op, errno = e.errno(), "{}", e.message()),
    }
}

/// The xattr protocol: size 0 asks for the size; a buffer too small is ERANGE.
fn xattr_reply(reply: fuser::ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        debug!(
            len = value.len(),
            size, "xattr reply larger than the caller's buffer (ERANGE)"
        );
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

fn errno(op: &str, e: &Error) -> Errno {
    log_error(op, e);
    Errno::from_i32(e.errno())
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl Filesystem for FuseAdapter {
    /// The session ends (an umount, or the daemon's own on a signal): what fuser would still
    /// unmount when the session is dropped is gone already in the normal case, and fuser would
    /// log that umount failed (EINVAL). It is taken here, where that is expected.
    fn destroy(&mut self) {
        let Some(unmounter) = self.unmounter.get() else {
            return;
        };
        match unmounter.lock().unmount() {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => {
                debug!("the mount was already gone at the end of the session ({e})")
            }
            Err(e) => warn!("unmount at the end of the session failed: {e}"),
        }
    }

    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Listings with attributes in one round trip; parallel lookups in one directory.
        // FUSE_ATOMIC_O_TRUNC: an open with O_TRUNC arrives as one open request with the flag,
        // not an open and then a setattr of size 0, so the truncation is committed with what
        // the handle writes at its close (see `RegFs::open`).
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ATOMIC_O_TRUNC;
        let _ = config.add_capabilities(wanted & config.capabilities());
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("lookup", req, parent), async move {
            match fs.lookup(c, Ino(parent.0), name).await {
                Ok(a) => reply.entry(&self.ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno("lookup", &e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(Ino(ino.0), nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("getattr", req, ino), async move {
            match fs.getattr(c, Ino(ino.0)).await {
                Ok(a) => reply.attr(&self.ttl, &file_attr(&a)),
                Err(e) => reply.error(errno("getattr", &e)),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let (fs, c) = (&self.fs, caller(req));
        let change = AttrChange {
            perm: mode.map(|m| m & 0o7777),
            uid,
            gid,
            atime: atime.map(time),
            mtime: mtime.map(time),
            ctime,
        };
        self.run(request_span("setattr", req, ino), async move {
            match fs.setattr(c, Ino(ino.0), size, change).await {
                Ok(a) => reply.attr(&self.ttl, &file_attr(&a)),
                Err(e) => reply.error(errno("setattr", &e)),
            }
        });
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("readlink", req, ino), async move {
            match fs.readlink(c, Ino(ino.0)).await {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(errno("readlink", &e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("mknod", req, parent), async move {
            match fs.mknod(c, Ino(parent.0), name, mode, rdev).await {
                Ok(a) => reply.entry(&self.ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno("mknod", &e)),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("mkdir", req, parent), async move {
            match fs.mkdir(c, Ino(parent.0), name, mode).await {
                Ok(a) => reply.entry(&self.ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno("mkdir", &e)),
            }
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("unlink", req, parent), async move {
            match fs.unlink(c, Ino(parent.0), name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("unlink", &e)),
            }
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("rmdir", req, parent), async move {
            match fs.rmdir(c, Ino(parent.0), name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rmdir", &e)),
            }
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("symlink", req, parent), async move {
            match fs.symlink(c, Ino(parent.0), link_name, target).await {
                Ok(a) => reply.entry(&self.ttl, &file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno("symlink", &e)),
            }
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            let e = crate::err!(
                EINVAL,
                "rename flags {flags} are not supported (only RENAME_NOREPLACE)"
            );
            reply.error(errno("rename", &e));
            return;
        }
        let mode = if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else {
            RenameMode::Replace
        };
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("rename", req, parent), async move {
            match fs
                .rename(c, Ino(parent.0), name, Ino(newparent.0), newname, mode)
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("rename", &e)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        _newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let e = crate::err!(
            EPERM,
            "hard links are not supported by the registry (inode {}, new name {newname:?}); copy instead",
            ino.0
        );
        reply.error(errno("link", &e));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("open", req, ino), async move {
            match fs.open(c, Ino(ino.0), flags.0).await {
                // Close-to-open: the page cache is kept only while the content version the
                // kernel cached is still the live one.
                Ok(o) => {
                    if o.stale_attrs {
                        self.drop_attrs(Ino(ino.0));
                    }
                    let keep = match &o.prefill {
                        Some(p) => fs.prefilled(p, self.store(p)),
                        None => o.keep_cache,
                    };
                    let mut out = FopenFlags::empty();
                    if keep {
                        out |= FopenFlags::FOPEN_KEEP_CACHE;
                    }
                    if !RegFs::flush_on_close(flags.0) {
                        out |= FopenFlags::FOPEN_NOFLUSH;
                    }
                    reply.opened(FileHandle(o.fh.0), out)
                }
                Err(e) => reply.error(errno("open", &e)),
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = &self.fs;
        self.run(request_span("read", req, ino), async move {
            match fs.read(Fh(fh.0), offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno("read", &e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let fs = &self.fs;
        self.run(request_span("write", req, ino), async move {
            match fs.write(Fh(fh.0), offset, data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno("write", &e)),
            }
        });
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let fs = &self.fs;
        self.run(request_span("flush", req, ino), async move {
            match fs.flush(Fh(fh.0)).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("flush", &e)),
            }
        });
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let fs = &self.fs;
        self.run(request_span("release", req, ino), async move {
            match fs.release(Fh(fh.0)).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("release", &e)),
            }
        });
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = &self.fs;
        self.run(request_span("fsync", req, ino), async move {
            match fs.fsync(Fh(fh.0)).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("fsync", &e)),
            }
        });
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("opendir", req, ino), async move {
            match fs.opendir(c, Ino(ino.0)).await {
                Ok(fh) => reply.opened(FileHandle(fh.0), FopenFlags::empty()),
                Err(e) => reply.error(errno("opendir", &e)),
            }
        });
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = &self.fs;
        self.run(request_span("readdir", req, ino), async move {
            match fs.readdir(Fh(fh.0), offset, 256).await {
                Ok(items) => {
                    for item in items {
                        if reply.add(
                            INodeNo(item.ino.0),
                            item.next_offset,
                            file_type(item.attr.entry.kind),
                            &item.name,
                        ) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno("readdir", &e)),
            }
        });
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let fs = &self.fs;
        self.run(request_span("readdirplus", req, ino), async move {
            match fs.readdir(Fh(fh.0), offset, 128).await {
                Ok(items) => {
                    for item in items {
                        if reply.add(
                            INodeNo(item.ino.0),
                            item.next_offset,
                            &item.name,
                            &self.ttl,
                            &file_attr(&item.attr),
                            Generation(0),
                        ) {
                            break;
                        }
                        if !item.is_dot {
                            fs.count_lookup(item.ino);
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno("readdirplus", &e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(Fh(fh.0));
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes are committed when they are made.
        reply.ok();
    }

    /// No ioctls: every Python `open` asks for TCGETS (isatty), and fuser's default logs a
    /// warning for each. ENOTTY is what a regular file answers.
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        debug!(cmd, "ioctl: not supported (ENOTTY)");
        reply.error(Errno::from_i32(libc::ENOTTY));
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let fs = &self.fs;
        self.run(request_span("statfs", req, ino), async move {
            match fs.statfs().await {
                Ok(space) => {
                    const BSIZE: u64 = 4096;
                    let used = space.bytes_used.div_ceil(BSIZE);
                    // The databases grow as needed; report room as the used size plus a
                    // generous margin so tools that check free space proceed.
                    let total = used + (1u64 << 28);
                    let files = space.entries + (1u64 << 32);
                    reply.statfs(
                        total,
                        total - used,
                        total - used,
                        files,
                        files - space.entries,
                        BSIZE as u32,
                        crate::path::NAME_MAX as u32,
                        BSIZE as u32,
                    );
                }
                Err(e) => reply.error(errno("statfs", &e)),
            }
        });
    }

    // Extended attributes: registry properties as user.NAME, metadata as user.regfs.* (see
    // fs/xattr.rs). Other namespaces are answered here, without a query: the kernel asks for
    // security.capability at every write.
    fn getxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        size: u32,
        reply: fuser::ReplyXattr,
    ) {
        if self.xattr_off("getxattr", ino) {
            reply.error(Errno::ENOSYS);
            return;
        }
        if !name.as_encoded_bytes().starts_with(b"user.") {
            debug!(
                ino = ino.0,
                ?name,
                "getxattr: only user.* attributes exist (ENODATA)"
            );
            reply.error(Errno::ENODATA);
            return;
        }
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("getxattr", req, ino), async move {
            match fs.getxattr(c, Ino(ino.0), name).await {
                Ok(value) => xattr_reply(reply, size, &value),
                Err(e) => reply.error(errno("getxattr", &e)),
            }
        });
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: fuser::ReplyXattr) {
        if self.xattr_off("listxattr", ino) {
            reply.error(Errno::ENOSYS);
            return;
        }
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("listxattr", req, ino), async move {
            match fs.listxattr(c, Ino(ino.0)).await {
                Ok(names) => xattr_reply(reply, size, &names),
                Err(e) => reply.error(errno("listxattr", &e)),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if self.xattr_off("setxattr", ino) {
            reply.error(Errno::ENOSYS);
            return;
        }
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("setxattr", req, ino), async move {
            match fs.set_xattr(c, Ino(ino.0), name, Some(value), flags).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("setxattr", &e)),
            }
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if self.xattr_off("removexattr", ino) {
            reply.error(Errno::ENOSYS);
            return;
        }
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("removexattr", req, ino), async move {
            match fs.set_xattr(c, Ino(ino.0), name, None, 0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("removexattr", &e)),
            }
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("access", req, ino), async move {
            match fs.access(c, Ino(ino.0), mask.bits()).await {
                Ok(_) => reply.ok(),
                Err(e) => reply.error(errno("access", &e)),
            }
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (fs, c) = (&self.fs, caller(req));
        self.run(request_span("create", req, parent), async move {
            match fs.create(c, Ino(parent.0), name, mode, flags).await {
                Ok((a, fh)) => reply.created(
                    &self.ttl,
                    &file_attr(&a),
                    Generation(0),
                    FileHandle(fh.0),
                    FopenFlags::empty(),
                ),
                Err(e) => reply.error(errno("create", &e)),
            }
        });
    }
}

/// The one kernel notification regfs sends that fuser 0.18 cannot: an entry invalidation with
/// `FUSE_EXPIRE_ONLY` (protocol 7.38, Linux 6.2). fuser's `inval_entry` unhashes the dentry,
/// and a directory unhashed while it is some process's working directory counts as deleted
/// for that process: getcwd fails with ENOENT (`sh: getcwd() failed`, `pwd -P`, git) although
/// nothing was removed. An expired dentry stays where it is and is looked up again at its next
/// use, which drops it then if the name is gone or now names another inode. A kernel older than
/// 6.2 ignores the flag and drops the entry as fuser's notification would.
pub struct Expirer(std::os::fd::OwnedFd);

/// `FUSE_NOTIFY_INVAL_ENTRY`, the notification code in the header's error field.
const FUSE_NOTIFY_INVAL_ENTRY: i32 = 3;
/// `fuse_notify_inval_entry_out.flags`: expire the entry instead of dropping it.
const FUSE_EXPIRE_ONLY: u32 = 1;

impl Expirer {
    /// Writes to its own duplicate of the session's `/dev/fuse` descriptor.
    pub fn new(session: std::os::fd::BorrowedFd<'_>) -> std::io::Result<Self> {
        Ok(Expirer(session.try_clone_to_owned()?))
    }

    /// Expires the kernel's entry `name` in the directory `parent`. Ok when the kernel has no
    /// such entry (ENOENT): there was nothing to expire.
    pub fn expire_entry(&self, parent: u64, name: &OsStr) -> std::io::Result<()> {
        let msg = expire_entry_message(parent, name.as_encoded_bytes())?;
        match nix::unistd::write(&self.0, &msg) {
            Ok(n) if n == msg.len() => Ok(()),
            Ok(n) => Err(std::io::Error::other(format!(
                "the kernel took {n} of {} bytes of an entry notification",
                msg.len()
            ))),
            Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// `fuse_out_header` (len, error = the notification code, unique 0), then
/// `fuse_notify_inval_entry_out` (parent, namelen, flags), then the name and a NUL, which the
/// kernel reads as part of the message.
fn expire_entry_message(parent: u64, name: &[u8]) -> std::io::Result<Vec<u8>> {
    let namelen = u32::try_from(name.len())
        .ok()
        .filter(|&n| n <= 1024)
        .ok_or_else(|| std::io::Error::other("an entry name longer than FUSE's 1024 bytes"))?;
    let len = 16 + 16 + name.len() + 1;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&FUSE_NOTIFY_INVAL_ENTRY.to_ne_bytes());
    msg.extend_from_slice(&0u64.to_ne_bytes());
    msg.extend_from_slice(&parent.to_ne_bytes());
    msg.extend_from_slice(&namelen.to_ne_bytes());
    msg.extend_from_slice(&FUSE_EXPIRE_ONLY.to_ne_bytes());
    msg.extend_from_slice(name);
    msg.push(0);
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expire_only_entry_notification_is_laid_out_as_the_kernel_reads_it() {
        let msg = expire_entry_message(0x0102_0304_0506_0708, b"name.xml").unwrap();
        let u32_at = |i: usize| u32::from_ne_bytes(msg[i..i + 4].try_into().unwrap());
        assert_eq!(msg.len(), 16 + 16 + 8 + 1);
        assert_eq!(u32_at(0) as usize, msg.len());
        assert_eq!(u32_at(4), 3, "FUSE_NOTIFY_INVAL_ENTRY");
        assert_eq!(&msg[8..16], &[0; 8], "unique 0: a notification");
        assert_eq!(
            u64::from_ne_bytes(msg[16..24].try_into().unwrap()),
            0x0102_0304_0506_0708
        );
        assert_eq!(u32_at(24), 8, "namelen");
        assert_eq!(u32_at(28), 1, "FUSE_EXPIRE_ONLY");
        assert_eq!(&msg[32..], b"name.xml\0");
        assert!(expire_entry_message(1, &[b'x'; 1025]).is_err());
    }
}
