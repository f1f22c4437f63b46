//! Several nodes on one shared PostgreSQL or MariaDB database: what one node (or a Carbon node,
//! writing SQL) commits, the others hear through the change feed and drop from their caches
//! and the kernel's; what they write at once all lands and leaves the tables consistent.
//!
//! The feed tests run the receiving node in this process, without a kernel: its watcher's
//! kernel notifications are recorded (see `regfs::watch::KernelNotify`), so the test sees
//! exactly which inodes were dropped and when.

mod common;

use std::ffi::OsStr;
use std::io::{Read, Seek};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::servers::{self, Kind};
use common::{Mounted, wait_until};
use parking_lot::Mutex;
use regfs::fs::{Caller, Ino, ROOT_INO, RegFs};
use regfs::store::{FeedSink, Heard};
use regfs::watch::{self, KernelNotify};

const ROOT: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 1,
};

/// Bound on how long a change takes to be heard (it takes milliseconds; CI machines are busy).
const HEARD_WITHIN: Duration = Duration::from_secs(20);

/// The kernel, as far as the watcher talks to it: what it was told to drop.
#[derive(Default)]
struct Recorder {
    inodes: Mutex<Vec<Ino>>,
    entries: Mutex<Vec<(Ino, String)>>,
}

impl KernelNotify for Recorder {
    fn inval_inode(&self, ino: Ino) {
        self.inodes.lock().push(ino);
    }
    fn inval_attrs(&self, ino: Ino) {
        self.inodes.lock().push(ino);
    }
    fn expire_entry(&self, parent: Ino, name: &str) {
        self.entries.lock().push((parent, name.to_string()));
    }
}

impl Recorder {
    fn clear(&self) {
        self.inodes.lock().clear();
        self.entries.lock().clear();
    }
    fn dropped(&self, ino: Ino) -> bool {
        self.inodes.lock().contains(&ino)
    }
}

/// A node in this process on the databases of `cfg`, with its watcher running.
struct Node {
    rt: tokio::runtime::Runtime,
    registry: Arc<regfs::registry::Registry>,
    fs: Arc<RegFs>,
    kernel: Arc<Recorder>,
    on: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
    feeds: Vec<(String, String)>,
}

impl Node {
    fn start(cfg: &Path) -> Node {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let source = regfs::wiring::load_source(Some(cfg), None)
            .unwrap()
            .expect("a config");
        let registry = rt.block_on(regfs::wiring::registry_from(&source)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let sink: FeedSink = Arc::new(move |heard: Heard| tx.send(heard).is_ok());
        let feeds = rt.block_on(registry.start_feeds(sink)).unwrap();
        let identity = regfs::identity::Identity::new(regfs::um::ADMIN_USER, Default::default());
        let registry = Arc::new(registry);
        let fs = Arc::new(RegFs::new(
            registry.clone(),
            identity,
            Default::default(),
            None,
        ));
        let kernel = Arc::new(Recorder::default());
        let on = Arc::new(AtomicBool::new(true));
        let watcher = {
            let (fs, kernel, on, handle) =
                (fs.clone(), kernel.clone(), on.clone(), rt.handle().clone());
            std::thread::spawn(move || {
                let sources = watch::Sources {
                    token: false,
                    feed: Some(rx),
                };
                watch::run(&fs, kernel.as_ref(), &handle, &on, sources)
            })
        };
        Node {
            rt,
            registry,
            fs,
            kernel,
            on,
            watcher: Some(watcher),
            feeds,
        }
    }

    /// The inode of `rel` (below the root), looked up name by name as the kernel does.
    fn lookup(&self, rel: &str) -> regfs::error::Result<Ino> {
        let mut ino = ROOT_INO;
        for name in rel.split('/') {
            ino = self
                .rt
                .block_on(self.fs.lookup(ROOT, ino, OsStr::new(name)))?
                .ino;
        }
        Ok(ino)
    }

    fn size(&self, ino: Ino) -> u64 {
        self.rt
            .block_on(self.fs.getattr(ROOT, ino))
            .unwrap()
            .entry
            .size
    }

    fn mode(&self, ino: Ino) -> u32 {
        self.rt
            .block_on(self.fs.getattr(ROOT, ino))
            .unwrap()
            .entry
            .perm
    }

    /// Opens `ino` read-only, reads it whole (storing a first open's content as the kernel's
    /// page cache would) and closes it: whether the open kept the kernel's cache, and what it
    /// read.
    fn open_read(&self, ino: Ino) -> (bool, Vec<u8>) {
        let o = self
            .rt
            .block_on(self.fs.open(ROOT, ino, libc::O_RDONLY))
            .unwrap();
        if let Some(p) = &o.prefill {
            self.fs.prefilled(p, true);
        }
        let data = self.rt.block_on(self.fs.read(o.fh, 0, 1 << 20)).unwrap();
        self.rt.block_on(self.fs.release(o.fh)).unwrap();
        (o.keep_cache, data)
    }

    /// Waits until the watcher dropped `ino`.
    fn hears(&self, ino: Ino, what: &str) {
        assert!(
            wait_until(HEARD_WITHIN, || self.kernel.dropped(ino)),
            "{what}: the node never dropped inode {ino} (dropped: {:?})",
            self.kernel.inodes.lock()
        );
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.on.store(false, std::sync::atomic::Ordering::Relaxed);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}

/// The shared database's name in a config made by [`common::server_config`].
fn shared_db(cfg: &Path) -> String {
    let text = std::fs::read_to_string(cfg).unwrap();
    let shared = text.split("[data_sources.shared]").nth(1).unwrap();
    let url = shared.lines().find(|l| l.starts_with("url")).unwrap();
    url.split('"')
        .nth(1)
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

/// Node A is a real mount (a process of its own, as another node is); node B runs here. Each
/// kind of change A makes reaches B's caches: the inode it names and its directory are
/// dropped, and B reads the new state at once.
fn feed_case(kind: Kind) {
    let dir = common::open_tempdir();
    let cfg = common::server_config(dir.path(), kind);
    let mnt = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    let a = Mounted::with_data(mnt, cfg.clone(), &[]);
    let b = Node::start(&cfg);
    let (how, push) = match kind {
        Kind::Postgres => ("LISTEN regfs_changes", true),
        Kind::MariaDb => ("polled", false),
    };
    assert!(
        b.feeds.iter().any(|(_, h)| h.contains(how)),
        "the shared database's feed: {:?}",
        b.feeds
    );
    let _ = push;

    let conf = a.p("_system/config");
    std::fs::write(conf.join("f.txt"), "one\n").unwrap();
    let dir_ino = b.lookup("_system/config").unwrap();
    let f = b.lookup("_system/config/f.txt").unwrap();
    assert_eq!(b.size(f), 4);

    // An append (REG_LOG UPDATE).
    b.kernel.clear();
    {
        use std::io::Write;
        let mut h = std::fs::OpenOptions::new()
            .append(true)
            .open(conf.join("f.txt"))
            .unwrap();
        h.write_all(b"two\n").unwrap();
    }
    b.hears(f, "append");
    assert_eq!(b.size(f), 8, "B reads the appended size at once");

    // chmod (no REG_LOG row: REGFS_CHANGE).
    b.kernel.clear();
    std::fs::set_permissions(conf.join("f.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    b.hears(f, "chmod");
    assert_eq!(b.mode(f) & 0o777, 0o600, "B reads the new mode at once");

    // utimens.
    b.kernel.clear();
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    std::fs::File::options()
        .write(true)
        .open(conf.join("f.txt"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    b.hears(f, "utimens");

    // A create: the directory's listing and times.
    b.kernel.clear();
    std::fs::write(conf.join("g.txt"), "g\n").unwrap();
    b.hears(dir_ino, "create");

    // A rename: both ends.
    b.kernel.clear();
    std::fs::rename(conf.join("f.txt"), conf.join("h.txt")).unwrap();
    b.hears(f, "rename");
    assert!(
        b.kernel
            .entries
            .lock()
            .contains(&(dir_ino, "f.txt".to_string()))
    );
    assert_eq!(
        b.lookup("_system/config/f.txt").unwrap_err().errno(),
        libc::ENOENT
    );
    let h = b.lookup("_system/config/h.txt").unwrap();

    // A delete.
    b.kernel.clear();
    std::fs::remove_file(conf.join("h.txt")).unwrap();
    b.hears(h, "unlink");

    // A change Carbon makes with its own SQL (JDBCResourceDAO's update and its REG_LOG entry)
    // shows too: the description is not what regfs shows, the log entry is what B hears.
    let g = b.lookup("_system/config/g.txt").unwrap();
    b.kernel.clear();
    let db = shared_db(&cfg);
    let now = match kind {
        Kind::Postgres => "now()",
        Kind::MariaDb => "NOW()",
    };
    servers::server_for(kind).sql_in(
        &db,
        &format!(
            "UPDATE REG_RESOURCE SET REG_DESCRIPTION = 'carbon' WHERE REG_NAME = 'g.txt'; \
             INSERT INTO REG_LOG (REG_PATH, REG_USER_ID, REG_LOGGED_TIME, REG_ACTION, \
             REG_ACTION_DATA, REG_TENANT_ID) VALUES ('/_system/config/g.txt', 'admin', {now}, \
             1, NULL, -1234)"
        ),
    );
    b.hears(g, "Carbon's update");
}

#[test]
fn postgres_feed_drops_what_other_nodes_change() {
    feed_case(Kind::Postgres);
}

#[test]
fn mariadb_feed_drops_what_other_nodes_change() {
    feed_case(Kind::MariaDb);
}

/// With `[cache] open_trusts_feed`, a node whose change feed is healthy answers a warm open
/// from memory: a change the feed cannot hear (SQL that writes no REG_LOG entry) goes unseen,
/// which shows that nothing was asked; a change it hears makes the next open read the new
/// content; once the feed is lost (on PostgreSQL: its LISTEN session killed), what the node
/// remembered goes, and so does the trust until the feed confirms again.
fn trusted_feed_case(kind: Kind) {
    let dir = common::open_tempdir();
    let cfg = common::server_config(dir.path(), kind);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[cache]\nopen_trusts_feed = true\n");
    std::fs::write(&cfg, text).unwrap();
    let mnt = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    let a = Mounted::with_data(mnt, cfg.clone(), &[]);
    let b = Node::start(&cfg);
    let file = a.p("_system/config/trusted.txt");
    std::fs::write(&file, "one\n").unwrap();
    let reg = "/_system/config/trusted.txt";
    assert!(
        wait_until(HEARD_WITHIN, || b.registry.feed_vouches(reg)),
        "B's feed confirms it hears everything"
    );
    let f = b.lookup("_system/config/trusted.txt").unwrap();
    assert_eq!(b.open_read(f), (false, b"one\n".to_vec()), "a cold open");
    assert_eq!(b.open_read(f), (true, b"one\n".to_vec()), "a warm open");

    // A new version written with SQL alone: no REG_LOG row, nothing for the feed to hear.
    let db = shared_db(&cfg);
    let bump = match kind {
        Kind::Postgres => {
            "UPDATE REG_RESOURCE SET REG_VERSION = nextval('REG_RESOURCE_PK_SEQ') \
                           WHERE REG_NAME = 'trusted.txt'"
        }
        Kind::MariaDb => {
            "UPDATE REG_RESOURCE SET REG_VERSION = REG_VERSION + 100000 \
                          WHERE REG_NAME = 'trusted.txt'"
        }
    };
    // The warm open after the bump is answered from memory. What B may still hear of A's
    // write (the feed and the watcher run on their own time; the watcher drops what it heard
    // once more an interval later) can drop B's memory first, and a loaded machine can hold
    // a poll past the feed's freshness: then the open asks, rightly. Such a round leaves a
    // trace (the inode dropped, or the feed no longer vouching) and is tried again; an open
    // that asks with neither is the failure.
    let mut rounds = 0;
    loop {
        rounds += 1;
        b.kernel.clear();
        servers::server_for(kind).sql_in(&db, bump);
        assert!(wait_until(HEARD_WITHIN, || b.registry.feed_vouches(reg)));
        if b.open_read(f).0 {
            break;
        }
        let excused = b.kernel.dropped(f) || !b.registry.feed_vouches(reg);
        assert!(
            excused && rounds < 10,
            "the warm open asked the database though nothing was heard and the feed vouched \
             (round {rounds}): the new version was seen"
        );
        // Memory again for the next round: the version the open just read.
        assert!(wait_until(HEARD_WITHIN, || b.open_read(f).0));
    }
    let looked_up = b.lookup("_system/config/trusted.txt").unwrap();
    assert_eq!(looked_up, f, "the lookup is answered from memory too");

    // What A writes, B hears: its next open reads the new content.
    b.kernel.clear();
    std::fs::write(&file, "two, longer\n").unwrap();
    b.hears(f, "an overwrite");
    assert_eq!(b.size(f), 12);
    assert_eq!(b.open_read(f), (false, b"two, longer\n".to_vec()));
    assert!(b.open_read(f).0);

    if kind == Kind::Postgres {
        // The LISTEN sessions killed: B hears that it may have missed something and drops
        // everything, then trusts the feed again once its heartbeat comes back.
        b.kernel.clear();
        servers::server_for(kind).sql_in(
            &db,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        );
        b.hears(f, "the LISTEN session's loss");
        servers::server_for(kind).sql_in(&db, bump);
        assert!(wait_until(HEARD_WITHIN, || b.registry.feed_vouches(reg)));
        assert!(
            !b.open_read(f).0,
            "after the loss the open read the live version"
        );
    }
}

#[test]
fn postgres_warm_opens_trust_a_healthy_feed() {
    trusted_feed_case(Kind::Postgres);
}

#[test]
fn mariadb_warm_opens_trust_a_healthy_feed() {
    trusted_feed_case(Kind::MariaDb);
}

/// The tables as Carbon reads them: one REG_PATH per path, one live row per name, no content
/// row that nothing points to.
fn check_tables(kind: Kind, cfg: &Path) {
    for (what, sql) in [
        (
            "duplicate REG_PATH values",
            "SELECT COUNT(*) FROM (SELECT REG_PATH_VALUE FROM REG_PATH GROUP BY REG_PATH_VALUE, \
             REG_TENANT_ID HAVING COUNT(*) > 1) x",
        ),
        (
            "two live rows for one name",
            "SELECT COUNT(*) FROM (SELECT REG_PATH_ID FROM REG_RESOURCE GROUP BY REG_PATH_ID, \
             REG_NAME, REG_TENANT_ID HAVING COUNT(*) > 1) x",
        ),
        (
            "orphan content rows",
            "SELECT COUNT(*) FROM REG_CONTENT c WHERE NOT EXISTS (SELECT 1 FROM REG_RESOURCE r \
             WHERE r.REG_CONTENT_ID = c.REG_CONTENT_ID AND r.REG_TENANT_ID = c.REG_TENANT_ID) \
             AND NOT EXISTS (SELECT 1 FROM REG_RESOURCE_HISTORY h \
             WHERE h.REG_CONTENT_ID = c.REG_CONTENT_ID AND h.REG_TENANT_ID = c.REG_TENANT_ID)",
        ),
    ] {
        let out = servers::server_for(kind).sql_in(&shared_db(cfg), sql);
        assert_eq!(out.trim(), "0", "{what}");
    }
}

/// A mount of `cfg` in a temp dir of its own, with `args`.
fn mount(cfg: &Path, args: &[&str]) -> Mounted {
    Mounted::with_data(
        tempfile::Builder::new()
            .prefix("regfs-test-")
            .tempdir()
            .unwrap(),
        cfg.to_path_buf(),
        args,
    )
}

/// Three nodes at once, a bounded number of rounds each: overwriting one file, appending to
/// one file, creating, renaming and removing in one directory. No operation fails (conflicts
/// between nodes are retried, not EIO), every acknowledged append is there once, and the
/// tables are consistent afterwards.
fn hammer_case(kind: Kind) {
    const ROUNDS: usize = 25;
    let dir = common::open_tempdir();
    let cfg = common::server_config(dir.path(), kind);
    let nodes = [mount(&cfg, &[]), mount(&cfg, &[]), mount(&cfg, &[])];
    std::fs::create_dir(nodes[0].p("_system/config/h")).unwrap();
    std::fs::write(nodes[0].p("_system/config/h/log"), "").unwrap();
    for n in &nodes {
        assert!(wait_until(HEARD_WITHIN, || n
            .p("_system/config/h/log")
            .exists()));
    }
    let workers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let d = n.p("_system/config/h");
            std::thread::spawn(move || {
                use std::io::Write;
                let mut errors = Vec::new();
                let mut note = |what: &str, r: std::io::Result<()>| {
                    if let Err(e) = r {
                        errors.push(format!("{what}: {e}"));
                    }
                };
                for i in 0..ROUNDS {
                    let tag = format!("n{k}-{i}");
                    note("overwrite", std::fs::write(d.join("shared"), &tag));
                    note(
                        "append",
                        std::fs::OpenOptions::new()
                            .append(true)
                            .open(d.join("log"))
                            .and_then(|mut f| f.write_all(format!("{tag}\n").as_bytes())),
                    );
                    note("create", std::fs::write(d.join(&tag), &tag));
                    note(
                        "rename",
                        std::fs::rename(d.join(&tag), d.join(format!("{tag}.r"))),
                    );
                    if i % 2 == 0 {
                        note("unlink", std::fs::remove_file(d.join(format!("{tag}.r"))));
                    }
                    note("list", std::fs::read_dir(&d).map(|it| it.for_each(drop)));
                }
                errors
            })
        })
        .collect();
    let errors: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        errors.is_empty(),
        "{} operations failed, e.g. {:?}\n{}",
        errors.len(),
        &errors[..errors.len().min(5)],
        nodes
            .iter()
            .enumerate()
            .map(|(k, n)| format!("node {k}:\n{}", common::tail(&warnings(&n.log()), 20)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut want: Vec<String> = (0..3)
        .flat_map(|k| (0..ROUNDS).map(move |i| format!("n{k}-{i}")))
        .collect();
    want.sort();
    let mut names: Vec<String> = (0..3)
        .flat_map(|k| {
            (0..ROUNDS)
                .filter(|i| i % 2 == 1)
                .map(move |i| format!("n{k}-{i}.r"))
        })
        .chain(["log".to_string(), "shared".to_string()])
        .collect();
    names.sort();
    for n in &nodes {
        let mut got = Vec::new();
        let ok = wait_until(HEARD_WITHIN, || {
            got = std::fs::read_to_string(n.p("_system/config/h/log"))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
            got.sort();
            got == want
        });
        assert!(
            ok,
            "every acknowledged append, once: {} of {} lines",
            got.len(),
            want.len()
        );
        let mut listed = Vec::new();
        let ok = wait_until(HEARD_WITHIN, || {
            listed = std::fs::read_dir(n.p("_system/config/h"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            listed.sort();
            listed == names
        });
        assert!(ok, "every node lists what is left: {listed:?}");
    }
    check_tables(kind, &cfg);
}

/// The WARN and ERROR lines of a log: why an operation failed, without the DEBUG chatter.
fn warnings(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn postgres_three_nodes_hammer_without_errors() {
    hammer_case(Kind::Postgres);
}

#[test]
fn mariadb_three_nodes_hammer_without_errors() {
    hammer_case(Kind::MariaDb);
}

/// A permission change made through node A's configuration (`regfs perm`, as an operator on
/// node A would) is enforced on node B without a remount. On PostgreSQL node B's permission
/// cache does not poll within the test (`permission_refresh_ms` is an hour): the change must
/// come through its change feed, announced by the command's own transaction.
fn permission_case(kind: Kind) {
    const ERIN: u32 = 3101;
    let dir = common::open_tempdir();
    let cfg = common::server_config(dir.path(), kind);
    if kind == Kind::Postgres {
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str("\n[cache]\npermission_refresh_ms = 3600000\n");
        std::fs::write(&cfg, text).unwrap();
    }
    let map = format!("{ERIN}=erin");
    let b = mount(&cfg, &["--map", &map]);
    let cli = |args: &[&str]| {
        let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        all.push("--config".into());
        all.push(cfg.as_os_str().to_owned());
        let out = common::run_regfs_with_stdin(all, "erin-secret\n");
        assert!(
            out.status.success(),
            "regfs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["user", "add", "erin"]);
    std::fs::create_dir(b.p("_system/governance/p")).unwrap();
    std::fs::write(b.p("_system/governance/p/f.txt"), "secret\n").unwrap();
    std::fs::set_permissions(
        b.p("_system/governance/p"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    std::fs::set_permissions(
        b.p("_system/governance/p/f.txt"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let f = b.p("_system/governance/p/f.txt");
    let read_as_erin = || {
        std::process::Command::new("cat")
            .arg(&f)
            .uid(ERIN)
            .gid(ERIN)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    use std::os::unix::process::CommandExt;
    assert!(
        wait_until(HEARD_WITHIN, read_as_erin),
        "erin reads: everyone may get below /"
    );
    cli(&[
        "perm",
        "deny",
        "Internal/everyone",
        "/_system/governance/p",
        "get",
    ]);
    assert!(
        wait_until(HEARD_WITHIN, || !read_as_erin()),
        "the deny made elsewhere is enforced on B:\n{}",
        common::tail(&b.log(), 20)
    );
    cli(&[
        "perm",
        "revoke",
        "Internal/everyone",
        "/_system/governance/p",
        "get",
    ]);
    assert!(
        wait_until(HEARD_WITHIN, read_as_erin),
        "and so is the revoke of the deny"
    );
}

#[test]
fn postgres_permission_change_on_one_node_is_enforced_on_another() {
    permission_case(Kind::Postgres);
}

#[test]
fn mariadb_permission_change_on_one_node_is_enforced_on_another() {
    permission_case(Kind::MariaDb);
}

/// Two real mounts: the feed is wired into the daemon (its log says how it hears changes, and
/// what it dropped); a rename on A while B creates in the same directory loses nothing; the
/// tables are consistent afterwards.
fn two_mounts_case(kind: Kind) {
    let dir = common::open_tempdir();
    let cfg = common::server_config(dir.path(), kind);
    let (a, b) = (mount(&cfg, &[]), mount(&cfg, &[]));
    for m in [&a, &b] {
        assert!(
            wait_until(HEARD_WITHIN, || m.log().contains("change feed: ")),
            "the mount says how it hears changes:\n{}",
            common::tail(&m.log(), 30)
        );
    }
    std::fs::create_dir(a.p("_system/config/d")).unwrap();
    std::fs::write(a.p("_system/config/d/seen.txt"), "x").unwrap();
    // B caches the file's attributes; A's chmod reaches B's kernel through the feed.
    let seen = b.p("_system/config/d/seen.txt");
    assert!(wait_until(HEARD_WITHIN, || seen.exists()));
    std::fs::set_permissions(
        a.p("_system/config/d/seen.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    assert!(
        wait_until(HEARD_WITHIN, || std::fs::metadata(&seen).is_ok_and(|m| m
            .permissions()
            .mode()
            & 0o777
            == 0o640)),
        "B sees A's chmod"
    );
    assert!(
        wait_until(HEARD_WITHIN, || b
            .log()
            .contains("changes made elsewhere: cached entries dropped")),
        "B's watcher dropped what A changed:\n{}",
        common::tail(&b.log(), 30)
    );

    // A renames files while B creates new ones in the same directory.
    const N: usize = 30;
    for i in 0..N {
        std::fs::write(a.p(&format!("_system/config/d/x{i}")), format!("{i}")).unwrap();
    }
    let (pa, pb) = (a.p("_system/config/d"), b.p("_system/config/d"));
    let renamer = std::thread::spawn(move || {
        for i in 0..N {
            std::fs::rename(pa.join(format!("x{i}")), pa.join(format!("y{i}"))).unwrap();
        }
    });
    for i in 0..N {
        std::fs::write(pb.join(format!("b{i}")), format!("b{i}")).unwrap();
    }
    renamer.join().unwrap();
    let mut want: Vec<String> = (0..N)
        .flat_map(|i| [format!("y{i}"), format!("b{i}")])
        .chain(["seen.txt".to_string()])
        .collect();
    want.sort();
    for m in [&a, &b] {
        let mut got = Vec::new();
        let ok = wait_until(HEARD_WITHIN, || {
            got = std::fs::read_dir(m.p("_system/config/d"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            got.sort();
            got == want
        });
        assert!(ok, "both nodes list every file: {got:?}");
    }
    for i in 0..N {
        assert_eq!(
            std::fs::read_to_string(b.p(&format!("_system/config/d/y{i}"))).unwrap(),
            format!("{i}")
        );
        assert_eq!(
            std::fs::read_to_string(a.p(&format!("_system/config/d/b{i}"))).unwrap(),
            format!("b{i}")
        );
    }

    // A removes a file B holds open: B's descriptor goes on as after a local unlink (fstat
    // answers, with no links; reads give what it opened), and the name is gone on B.
    let held = b.p("_system/config/d/y0");
    let mut f = std::fs::File::open(&held).unwrap();
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    std::fs::remove_file(a.p("_system/config/d/y0")).unwrap();
    assert!(
        wait_until(HEARD_WITHIN, || !held.exists()),
        "B hears the unlink"
    );
    let st = f.metadata().unwrap();
    assert_eq!((st.len(), st.nlink()), (1, 0));
    text.clear();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.read_to_string(&mut text).unwrap();
    assert_eq!(text, "0");
    drop(f);

    check_tables(kind, &cfg);
}

#[test]
fn postgres_two_mounts_hear_each_other() {
    two_mounts_case(Kind::Postgres);
}

#[test]
fn mariadb_two_mounts_hear_each_other() {
    two_mounts_case(Kind::MariaDb);
}
