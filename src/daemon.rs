//! Running a mount: stale-mount recovery, daemonizing (fork before any thread exists), logging,
//! signal handling and a clean unmount.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};
use tracing::{error, info, warn};

use crate::err;
use crate::error::Result;
use crate::fs::RegFs;
use crate::fuse::FuseAdapter;
use crate::identity::Identity;

pub struct MountOptions {
    pub mountpoint: PathBuf,
    pub data_dir: PathBuf,
    pub foreground: bool,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
    /// One JSON object per log line instead of text.
    pub log_json: bool,
    /// Let the kernel check POSIX mode bits and ownership (`default_permissions`).
    pub posix_permissions: bool,
    pub threads: usize,
    /// Local account name or uid → registry user.
    pub user_map: HashMap<String, String>,
    /// A configuration file instead of the embedded default.
    pub config: Option<PathBuf>,
    /// A WSO2 product's `repository/conf` directory instead of the embedded default.
    pub wso2_conf: Option<PathBuf>,
    /// Mounted read-only (`-o ro`): the kernel refuses every change with EROFS.
    pub read_only: bool,
    /// Who besides the mounting user may use the mount (root's mounts: everyone).
    pub allow: Allow,
    /// Generic mount flags passed to the kernel (`-o nosuid,nodev,...`).
    pub kernel: Vec<MountOption>,
    /// Registry properties as extended attributes (`-o xattr`).
    pub xattr: bool,
}

/// Who may use a mount, besides the user who made it (`-o allow_other`, `-o allow_root`).
/// Mounts made by root let everyone in whatever this says: regfs maps each caller to a
/// registry user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allow {
    #[default]
    Owner,
    Root,
    Other,
}

/// The mounts at `mountpoint` in /proc/mounts (several if stacked), each as its source and
/// type, e.g. (`regfs`, `fuse`) for a regfs mounted by root.
fn mounts_at(mountpoint: &Path) -> Vec<(String, String)> {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return Vec::new();
    };
    let want = mountpoint.to_string_lossy();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (source, target, fstype) = (f.next()?, f.next()?, f.next()?);
            (unescape_mount_field(target) == *want)
                .then(|| (unescape_mount_field(source), fstype.to_string()))
        })
        .collect()
}

/// Whether `mountpoint` is listed in /proc/mounts as a FUSE mount.
pub fn is_fuse_mount(mountpoint: &Path) -> bool {
    mounts_at(mountpoint)
        .iter()
        .any(|(_, t)| t == "fuse" || t.starts_with("fuse."))
}

/// Whether one of the mounts at `mountpoint` is a regfs (its fsname or subtype says so).
fn is_regfs_mount(mountpoint: &Path) -> bool {
    mounts_at(mountpoint)
        .iter()
        .any(|(source, t)| source == "regfs" || t == "fuse.regfs")
}

fn unescape_mount_field(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The mount point as /proc/mounts spells it, without touching the mount point itself (a
/// stale mount answers nothing but ENOTCONN): `mnt`, `./mnt` and `/abs/mnt/` all name the
/// same mount. The parent's symbolic links are resolved, the last component's are not.
fn absolute_mountpoint(given: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(given)
        .map_err(|e| err!(ENOENT, "mount point {}: {e}", given.display()))?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) if name != ".." => {
            let parent = std::fs::canonicalize(parent)
                .map_err(|e| err!(ENOENT, "mount point {}: {e}", given.display()))?;
            Ok(parent.join(name))
        }
        _ => std::fs::canonicalize(&abs)
            .map_err(|e| err!(ENOENT, "mount point {}: {e}", given.display())),
    }
}

/// Whether the FUSE filesystem mounted at `mountpoint` answers: a statfs always reaches the
/// process serving it (the kernel caches none). `Some(false)`: the connection is gone (its
/// process died); `None`: no answer within `limit` (a process still exiting, or hung).
fn fuse_answers(mountpoint: &Path, limit: Duration) -> Option<bool> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = mountpoint.to_path_buf();
    // A hung filesystem would hold this thread forever: it is left behind, not joined.
    std::thread::spawn(move || {
        let _ = tx.send(nix::sys::statvfs::statvfs(&p));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(_)) => Some(true),
        // ECONNABORTED: the request was in flight when the connection died.
        Ok(Err(nix::errno::Errno::ENOTCONN | nix::errno::Errno::ECONNABORTED)) => Some(false),
        // Any other refusal (EACCES, ...): something answered.
        Ok(Err(_)) => Some(true),
        Err(_) => None,
    }
}

fn detach_stale(mountpoint: &Path) -> Result<()> {
    eprintln!(
        "regfs: {} holds a stale FUSE mount left by a crashed process; detaching it",
        mountpoint.display()
    );
    nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
        err!(
            EBUSY,
            "cannot detach the stale mount at {}: {e}; run `umount -l {}` as root",
            mountpoint.display(),
            mountpoint.display()
        )
    })
}

/// How long a mount point's FUSE process may take to answer before it is taken for gone or
/// hung: a process killed a moment ago finishes exiting within it.
const LIVENESS_WAIT: Duration = Duration::from_secs(10);

/// Makes `given` ready to mount on: a stale FUSE mount left by a crashed (or just killed)
/// regfs is detached; a running regfs there is refused, as is anything that is not a
/// directory. Returns the canonical mount point, and a warning for the log if it is not empty.
fn prepare_mountpoint(given: &Path) -> Result<(PathBuf, Option<String>)> {
    let abs = absolute_mountpoint(given)?;
    let fuse = is_fuse_mount(&abs);
    match std::fs::metadata(&abs) {
        Ok(m) if !m.is_dir() => {
            return Err(err!(
                ENOTDIR,
                "mount point {} is not a directory",
                abs.display()
            ));
        }
        Ok(_) if fuse => match fuse_answers(&abs, LIVENESS_WAIT) {
            Some(false) => detach_stale(&abs)?,
            Some(true) => {
                let what = if is_regfs_mount(&abs) {
                    "a running regfs"
                } else {
                    "another FUSE filesystem"
                };
                return Err(err!(
                    EBUSY,
                    "{} is already mounted by {what}: unmount it first (`umount {}`) or choose another directory",
                    abs.display(),
                    abs.display()
                ));
            }
            None => {
                return Err(err!(
                    EBUSY,
                    "{} is a FUSE mount whose process does not answer (within {} s); if that process is gone, run `umount -l {}` as root",
                    abs.display(),
                    LIVENESS_WAIT.as_secs(),
                    abs.display()
                ));
            }
        },
        Ok(_) => {}
        // ECONNABORTED: a request in flight when the process serving the mount died (it was
        // killed a moment ago and is still exiting); the mount is as stale as with ENOTCONN.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {
            if !fuse {
                return Err(err!(
                    ENOTCONN,
                    "{} is not reachable (transport endpoint is not connected) and is not a FUSE mount",
                    abs.display()
                ));
            }
            detach_stale(&abs)?;
        }
        Err(e) => {
            return Err(err!(
                ENOENT,
                "mount point {} is not usable: {e}",
                abs.display()
            ));
        }
    }
    let mountpoint = std::fs::canonicalize(&abs)
        .map_err(|e| err!(ENOENT, "mount point {}: {e}", abs.display()))?;
    let nonempty = std::fs::read_dir(&mountpoint)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    let warning = nonempty.then(|| {
        format!(
            "mount point {} is not empty: what it holds is hidden while regfs is mounted",
            mountpoint.display()
        )
    });
    if let Some(w) = &warning {
        eprintln!("regfs: warning: {w}");
    }
    Ok((mountpoint, warning))
}

/// The log file, reopened at its path on SIGHUP: logrotate moves the old file away and
/// `systemctl reload` sends SIGHUP, after which lines go to a new file at the configured path.
struct LogFile {
    path: PathBuf,
    file: parking_lot::Mutex<std::fs::File>,
}

static LOG_FILE: std::sync::OnceLock<LogFile> = std::sync::OnceLock::new();

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl LogFile {
    fn reopen(&self) -> std::io::Result<()> {
        let f = open_log(&self.path)?;
        *self.file.lock() = f;
        Ok(())
    }
}

struct LogWriter(&'static LogFile);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.file.lock().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.file.lock().flush()
    }
}

/// Reopens the log file (SIGHUP); what it says goes to the log.
fn reopen_log() {
    match LOG_FILE.get() {
        Some(log) => match log.reopen() {
            Ok(()) => info!(file = %log.path.display(), "SIGHUP: log file reopened"),
            Err(e) => warn!(
                "SIGHUP: cannot reopen the log file {}: {e}; logging on to the old one",
                log.path.display()
            ),
        },
        None => info!("SIGHUP: no log file to reopen (logging to stderr)"),
    }
}

fn init_logging(level: &str, file: Option<&Path>, json: bool) -> Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::Layer;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .map_err(|e| err!(EINVAL, "bad log level {level:?}: {e}"))?;
    let (writer, ansi, journald) = match file {
        Some(path) => {
            let f = open_log(path)
                .map_err(|e| err!(EIO, "cannot open log file {}: {e}", path.display()))?;
            // An absolute path: the daemon's working directory is no longer the caller's.
            let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            let log = LOG_FILE.get_or_init(|| LogFile {
                path,
                file: parking_lot::Mutex::new(f),
            });
            (BoxMakeWriter::new(move || LogWriter(log)), false, false)
        }
        // Colours only for a person at a terminal: not in a file, a pipe or the journal.
        // systemd says that stderr is the journal with JOURNAL_STREAM: the journal stamps
        // each line itself.
        None => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
            std::env::var_os("JOURNAL_STREAM").is_some(),
        ),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let layer = if json {
        layer.json().boxed()
    } else if journald {
        layer.without_time().boxed()
    } else {
        layer.boxed()
    };
    tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .init();
    // A daemon's stderr is /dev/null: make panics reach the log.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        error!("panic: {info}");
        default_hook(info);
    }));
    Ok(())
}

/// Mounts and serves until unmounted. In the background mode the calling process returns once
/// the mount is up (or fails with the reason); the served process detaches from the terminal.
pub fn run(mut opts: MountOptions) -> Result<()> {
    // Read the configuration before anything else, so a mistake is reported on the terminal.
    let config = crate::wiring::load_source(opts.config.as_deref(), opts.wso2_conf.as_deref())?;
    if let Some(cfg) = &config {
        for (k, v) in &cfg.user_map {
            opts.user_map.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if opts.log_file.is_none() {
            opts.log_file = cfg.log.file.clone();
        }
        if let Some(level) = &cfg.log.level
            && opts.log_level == DEFAULT_LOG_LEVEL
        {
            opts.log_level =
                check_log_level(level).map_err(|e| err!(EINVAL, "[log] level: {e}"))?;
        }
    }
    let opts = opts;
    let (mountpoint, warning) = prepare_mountpoint(&opts.mountpoint)?;
    if opts.foreground {
        if let Some(file) = &opts.log_file {
            eprintln!("regfs: log: {}", file.display());
        }
        init_logging(&opts.log_level, opts.log_file.as_deref(), opts.log_json)?;
        if let Some(w) = &warning {
            warn!("{w}");
        }
        return serve(&opts, config.as_ref(), &mountpoint, &mut None);
    }
    let log_file = opts
        .log_file
        .clone()
        .unwrap_or_else(|| opts.data_dir.join("regfs.log"));
    let log_file = std::path::absolute(&log_file).unwrap_or(log_file);
    // Fork before any thread exists (no runtime, no pools yet).
    let (read_end, write_end) = nix::unistd::pipe().map_err(|e| err!(EIO, "pipe: {e}"))?;
    // SAFETY: no other thread exists yet (no runtime, no pools), so the child inherits no
    // lock held by a thread that is not copied; it only runs ordinary Rust code after.
    match unsafe { nix::unistd::fork() }.map_err(|e| err!(EIO, "fork: {e}"))? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(write_end);
            let mut msg = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut msg);
            if msg.trim() == "ok" {
                eprintln!(
                    "regfs: mounted at {}; log: {}",
                    mountpoint.display(),
                    log_file.display()
                );
                Ok(())
            } else if msg.is_empty() {
                Err(err!(
                    EIO,
                    "regfs exited before the mount was ready; see its log"
                ))
            } else {
                Err(err!(EIO, "{}", msg.trim()))
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(read_end);
            let _ = nix::unistd::setsid();
            if let Some(dir) = log_file.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let mut status = Some(std::fs::File::from(write_end));
            if let Err(e) = init_logging(&opts.log_level, Some(&log_file), opts.log_json) {
                report(&mut status, &e.to_string());
                std::process::exit(1);
            }
            detach_stdio();
            if let Some(w) = &warning {
                warn!("{w}");
            }
            if let Err(e) = serve(&opts, config.as_ref(), &mountpoint, &mut status) {
                report(&mut status, &e.to_string());
                error!("{e}");
                std::process::exit(1);
            }
            std::process::exit(0);
        }
    }
}

/// Tells the waiting parent how the start went, once; closing the pipe lets it exit.
fn report(status: &mut Option<std::fs::File>, msg: &str) {
    if let Some(mut f) = status.take() {
        let _ = f.write_all(msg.as_bytes());
    }
}

fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let fd: OwnedFd = null.into();
        for target in 0..=2 {
            // SAFETY: plain dup2 of an fd we own onto the standard descriptors.
            unsafe { libc::dup2(fd.as_raw_fd(), target) };
        }
    }
}

/// The `--log-level` default; a configuration file's level applies when the flag is left at it.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Checks a log filter as `--log-level` and the config's `[log] level` take it: a level
/// (`error`, `warn`, `info`, `debug`, `trace`, `off`), or `tracing` directives naming targets
/// (`regfs=debug,fuser=warn`). A bare word that is no level is refused: `EnvFilter` would take
/// it for a target name and log nothing of regfs's.
pub fn check_log_level(level: &str) -> std::result::Result<String, String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let bad = || {
        format!(
            "invalid log level {level:?}: use error, warn, info, debug, trace or off, or \
             directives such as regfs=debug,fuser=warn"
        )
    };
    for directive in level.split(',') {
        let lvl = directive.rsplit('=').next().unwrap_or("").trim();
        let named = directive.contains('=');
        if !LEVELS.contains(&lvl.to_ascii_lowercase().as_str())
            || (named && directive.starts_with('='))
        {
            return Err(bad());
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map_err(|e| format!("{}: {e}", bad()))?;
    Ok(level.to_string())
}

/// The uid map of a mount: `--map` and the config's, and on the embedded default mounted by
/// another user than root, that user as `admin`: the SQLite files are theirs, and they would
/// otherwise be anonymous on their own fresh registry. `--map` for their uid or name wins.
fn owner_map(opts: &MountOptions, configured: bool) -> HashMap<String, String> {
    let uid = nix::unistd::geteuid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name);
    let map = with_owner(&opts.user_map, configured, uid.as_raw(), name.as_deref());
    if map.len() > opts.user_map.len() {
        info!(
            uid = uid.as_raw(),
            "the embedded default is this user's own: they act as {} on this mount",
            crate::um::ADMIN_USER
        );
    }
    map
}

/// [`owner_map`] for the user `uid` (account `name`).
fn with_owner(
    map: &HashMap<String, String>,
    configured: bool,
    uid: u32,
    name: Option<&str>,
) -> HashMap<String, String> {
    let mut map = map.clone();
    let mapped = map.contains_key(&uid.to_string()) || name.is_some_and(|n| map.contains_key(n));
    if !configured && uid != 0 && !mapped {
        map.insert(uid.to_string(), crate::um::ADMIN_USER.to_string());
    }
    map
}

fn serve(
    opts: &MountOptions,
    config: Option<&crate::config::FileConfig>,
    mountpoint: &Path,
    ready: &mut Option<std::fs::File>,
) -> Result<()> {
    // Buffers of a megabyte or more (content pieces, driver packets) are mapped and returned
    // to the system when freed. glibc otherwise raises this threshold after the first such
    // free, and each thread's arena then keeps its largest pieces: peak memory grew with the
    // number of threads that had moved a large file, 20-50 MiB for one 64 MiB file.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's policy, and glibc makes it thread-safe.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Requests run on fuser's threads (see fuse.rs); the runtime drives the servers'
        // sockets, timers and background tasks.
        .worker_threads(2)
        .thread_name("regfs-worker")
        .enable_all()
        .build()
        .map_err(|e| err!(EIO, "cannot start the runtime: {e}"))?;
    let registry = match config {
        Some(cfg) => runtime.block_on(crate::wiring::registry_from(cfg))?,
        None => runtime.block_on(crate::wiring::embedded_registry(&opts.data_dir))?,
    };
    match opts.config.as_ref().or(opts.wso2_conf.as_ref()) {
        Some(file) => info!(
            config = %file.display(),
            mountpoint = %mountpoint.display(),
            "registry ready"
        ),
        None => info!(
            data_dir = %opts.data_dir.display(),
            mountpoint = %mountpoint.display(),
            "registry ready"
        ),
    }
    let identity = Identity::new(crate::um::ADMIN_USER, owner_map(opts, config.is_some()));
    let spool = config.map(|c| c.cache.spool_policy()).unwrap_or_default();
    // What the databases look like before the kernel can cache anything: a change made
    // elsewhere after this is one the watcher must push out. `None`: a database cannot tell
    // (a server), and the kernel's short TTL bounds what goes unseen instead.
    let first_token = runtime.block_on(registry.change_token())?;
    let watched = first_token.is_some();
    // The servers' change feeds: what other nodes commit is pushed out of the caches as it
    // happens. Without one, the kernel's short TTL bounds what goes unseen.
    let (feed_tx, feed_rx) = std::sync::mpsc::channel();
    let sink: crate::store::FeedSink = Arc::new(move |heard| feed_tx.send(heard).is_ok());
    let feeds = match runtime.block_on(registry.start_feeds(sink)) {
        Ok(feeds) => feeds,
        Err(e) => {
            warn!(
                "cannot start the change feed: {e}; changes made on other nodes show within \
                 {:?} (the kernel's cache time) instead",
                crate::fs::ATTR_TTL
            );
            Vec::new()
        }
    };
    for (store, how) in &feeds {
        info!(store = %store, "change feed: {how}");
    }
    if registry.trusts_feeds() {
        info!(
            "open_trusts_feed: while a change feed is healthy, what this node read is answered \
             from memory (opens, lookups, stats); while it is not, every open reads the live \
             version again"
        );
    } else if config.is_some_and(|c| c.cache.open_trusts_feed) {
        warn!(
            "open_trusts_feed is set but no database has a change feed: every open reads the \
             live version"
        );
    }
    let feed = (!feeds.is_empty()).then_some(feed_rx);
    let fs = Arc::new(RegFs::new(Arc::new(registry), identity, spool, first_token));
    let notifier = Arc::new(std::sync::OnceLock::new());
    let xattr = opts.xattr || config.is_some_and(|c| c.xattr);
    if xattr {
        info!("registry properties are extended attributes on this mount (xattr)");
    }
    let adapter =
        FuseAdapter::new(fs.clone(), runtime.handle().clone(), notifier.clone()).with_xattr(xattr);
    fs.set_kernel_cache(adapter.kernel_cache());
    let leftover = adapter.unmounter();

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("regfs".into()),
        MountOption::Subtype("regfs".into()),
    ];
    if opts.posix_permissions {
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    config.mount_options.push(if opts.read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    config.mount_options.extend(opts.kernel.iter().cloned());
    config.acl = match opts.allow {
        Allow::Owner => SessionACL::Owner,
        Allow::Root => SessionACL::RootAndOwner,
        Allow::Other => SessionACL::All,
    };
    if nix::unistd::geteuid().is_root() {
        // Every local user can reach the mount; regfs maps each caller to a registry user.
        config.acl = SessionACL::All;
        // Root mounts with mount(2) itself, and fuser hands the subtype only to fusermount:
        // given to the kernel, /proc/mounts says `fuse.regfs` (as `mount -t fuse.regfs`
        // would), not plain `fuse`.
        config
            .mount_options
            .retain(|o| !matches!(o, MountOption::Subtype(_)));
        config
            .mount_options
            .push(MountOption::CUSTOM("subtype=regfs".into()));
    }
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;

    // The handlers exist before the mount is visible: a signal that comes as soon as it is
    // (or while it is being made) is queued for the task below, which unmounts, instead of
    // killing regfs and leaving a dead mount behind.
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        let _rt = runtime.enter();
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Some((term, int, hup)),
            _ => {
                warn!("cannot install signal handlers; unmount with umount");
                None
            }
        }
    };
    let mut session = fuser::Session::new(adapter, mountpoint, &config)
        .map_err(|e| err!(EIO, "cannot mount at {}: {e}", mountpoint.display()))?;
    let _ = notifier.set(session.notifier());
    info!(mountpoint = %mountpoint.display(), "mounted");
    report(ready, "ok");
    // Run by systemd as a Type=notify service: the unit is up once the mount is.
    let status = format!("serving {}", mountpoint.display());
    if let Err(e) = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]) {
        warn!("cannot tell systemd the mount is ready (NOTIFY_SOCKET): {e}");
    }

    let _control = crate::status::serve(
        runtime.handle(),
        fs.clone(),
        crate::status::Fixed {
            mountpoint: mountpoint.to_path_buf(),
            source: match (&opts.config, &opts.wso2_conf) {
                (Some(c), _) => format!("config {}", c.display()),
                (None, Some(w)) => format!("WSO2 conf {}", w.display()),
                (None, None) => format!("embedded default in {}", opts.data_dir.display()),
            },
            read_only: opts.read_only,
            threads: opts.threads.max(1),
            started: std::time::Instant::now(),
        },
    );

    let watching = Arc::new(AtomicBool::new(true));
    let mut watcher = None;
    if watched || feed.is_some() {
        use std::os::fd::AsFd;
        let kernel = crate::fuse::KernelNotifier {
            notifier: session.notifier(),
            expirer: crate::fuse::Expirer::new(session.as_fd())
                .map_err(|e| err!(EIO, "cannot set up the change watcher's notifications: {e}"))?,
        };
        let (fs, rt, on) = (fs.clone(), runtime.handle().clone(), watching.clone());
        let sources = crate::watch::Sources {
            token: watched,
            feed,
        };
        watcher = Some(
            std::thread::Builder::new()
                .name("regfs-watch".into())
                .spawn(move || crate::watch::run(&fs, &kernel, &rt, &on, sources))
                .map_err(|e| err!(EIO, "cannot start the change watcher: {e}"))?,
        );
    }

    let mut unmounter = session.unmount_callable();
    let mp = mountpoint.to_path_buf();
    runtime.spawn(async move {
        let Some((mut term, mut int, mut hup)) = signals else {
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: unmounting"),
                _ = int.recv() => info!("SIGINT: unmounting"),
                _ = hup.recv() => {
                    reopen_log();
                    continue;
                }
            }
            break;
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        if let Err(e) = unmounter.unmount() {
            warn!(
                "unmount of {} failed ({e}); detaching it lazily",
                mp.display()
            );
            let _ = nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH);
        }
    });
    let _ = leftover.set(parking_lot::Mutex::new(session.unmount_callable()));
    session
        .run()
        .map_err(|e| err!(EIO, "FUSE session ended with an error: {e}"))?;
    // The watcher uses the runtime: it ends (within one interval) before the runtime does.
    watching.store(false, Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.join();
    }
    info!(mountpoint = %mountpoint.display(), "unmounted");
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_an_embedded_default_is_its_admin_unless_mapped() {
        let none = HashMap::new();
        let admin = |m: &HashMap<String, String>| m.get("1000").cloned();
        assert_eq!(
            admin(&with_owner(&none, false, 1000, Some("alice"))).as_deref(),
            Some("admin")
        );
        // A configuration names its own users; root is admin anyway.
        assert!(with_owner(&none, true, 1000, Some("alice")).is_empty());
        assert!(with_owner(&none, false, 0, Some("root")).is_empty());
        // The operator's --map wins, by uid or by name.
        let by_name = HashMap::from([("alice".to_string(), "ops".to_string())]);
        assert_eq!(with_owner(&by_name, false, 1000, Some("alice")), by_name);
        let by_uid = HashMap::from([("1000".to_string(), "ops".to_string())]);
        assert_eq!(with_owner(&by_uid, false, 1000, Some("alice")), by_uid);
    }
}
