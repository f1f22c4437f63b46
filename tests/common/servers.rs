//! Real PostgreSQL and MariaDB servers for the tests, from Debian's packages: a temp data
//! directory, loopback TCP on a free port and a unix socket, run as the packages' unprivileged
//! users. A test binary shares one server of each kind ([`postgres`], [`mariadb`]) and gives each
//! test fresh databases; a test that stops its server starts a private one ([`Server::start`]).
//!
//! Servers are spawned from one long-lived thread with PR_SET_PDEATHSIG, so they end with the
//! test process even when it panics or is killed.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

use super::wait_until;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    MariaDb,
}

pub struct Server {
    pub kind: Kind,
    pub port: u16,
    pub dir: PathBuf,
    child: Mutex<Option<Child>>,
}

/// The test binary's shared PostgreSQL server.
pub fn postgres() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| Server::start(Kind::Postgres))
}

/// The test binary's shared MariaDB server.
pub fn mariadb() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| Server::start(Kind::MariaDb))
}

/// The backend the filesystem suites run on: `REGFS_TEST_BACKEND` = sqlite (default),
/// postgres or mariadb.
pub fn backend() -> Option<Kind> {
    match std::env::var("REGFS_TEST_BACKEND").as_deref() {
        Ok("postgres") => Some(Kind::Postgres),
        Ok("mariadb") | Ok("mysql") => Some(Kind::MariaDb),
        Ok("sqlite") | Ok("") | Err(_) => None,
        Ok(other) => panic!("REGFS_TEST_BACKEND={other}: expected sqlite, postgres or mariadb"),
    }
}

pub fn server_for(kind: Kind) -> &'static Server {
    match kind {
        Kind::Postgres => postgres(),
        Kind::MariaDb => mariadb(),
    }
}

/// A port no one listens on, never handed out twice in this process, and below the kernel's
/// ephemeral range. Binding port 0 (what this did before) returns a port that is free only while
/// the server holds it: when a test stopped its server to restart it, another test starting a
/// server in parallel got the same port from the kernel, and the restart failed with "Address
/// already in use" (seen in CI). Ports below the range are never handed out implicitly, and the
/// counter keeps this process's servers apart; the starting point depends on the process id so
/// that test binaries differ too.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let low = 10_000.min(ephemeral_low / 2).max(1024);
    let span = ephemeral_low.saturating_sub(low).max(1);
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let port = low + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
    panic!("no free TCP port in {low}..{ephemeral_low} for a test database server");
}

fn pg_bin(tool: &str) -> PathBuf {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(base)
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not installed ({}: {e}); run `bash scripts/test-all.sh`, which installs it",
                base.display()
            )
        })
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    versions.sort();
    versions
        .last()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(tool)
}

fn require(tool: &str) {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{tool} is not installed; run `bash scripts/test-all.sh`, which installs PostgreSQL and MariaDB"
    );
}

fn user_ids(name: &str) -> (u32, u32) {
    let u = nix::unistd::User::from_name(name)
        .unwrap()
        .unwrap_or_else(|| {
            panic!("system user {name} is missing (is the server package installed?)")
        });
    (u.uid.as_raw(), u.gid.as_raw())
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Data directories of servers whose test process is gone (a shared server's directory outlives
/// its process, which ends without running destructors of statics).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("regfs-pg-") || name.starts_with("regfs-mariadb-")) {
            continue;
        }
        let owner = std::fs::read_to_string(e.path().join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(pid) = owner
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Sends `sig` to `pid` and its direct children (PostgreSQL's backends call setsid(), so a
/// process group does not reach them).
fn signal_tree(pid: i32, sig: nix::sys::signal::Signal) {
    for p in tree(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
    }
}

/// `pid` and its direct children.
fn tree(pid: i32) -> Vec<i32> {
    let mut pids = vec![pid];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(child) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // Fields after the command name, which is in parentheses: state, ppid, ...
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(pid) {
                pids.push(child);
            }
        }
    }
    pids
}

/// Spawns `cmd` from a thread that lives as long as the process, with PR_SET_PDEATHSIG: the
/// server gets SIGTERM when the test process ends, however it ends.
fn spawn_owned(mut cmd: Command) -> Child {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
            // The channel lives in a static and is never closed: this thread stays alive.
        });
        Mutex::new(tx)
    });
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock().unwrap().send((cmd, reply_tx)).unwrap();
    reply_rx.recv().unwrap().expect("spawn database server")
}

impl Server {
    /// Initialises and starts a private server.
    pub fn start(kind: Kind) -> Server {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the database tests start servers as their system users and must run as root"
        );
        // One server starts at a time: two mariadb-install-db runs at once in one test binary
        // were seen to fail.
        static STARTING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        remove_stale_dirs();
        let dir = tempfile::Builder::new()
            .prefix(match kind {
                Kind::Postgres => "regfs-pg-",
                Kind::MariaDb => "regfs-mariadb-",
            })
            .tempdir()
            .unwrap()
            .keep();
        let owner = match kind {
            Kind::Postgres => "postgres",
            Kind::MariaDb => "mysql",
        };
        let (uid, gid) = user_ids(owner);
        nix::unistd::chown(&dir, Some(uid.into()), Some(gid.into())).unwrap();
        std::fs::write(dir.join("owner.pid"), std::process::id().to_string()).unwrap();
        match kind {
            Kind::Postgres => {
                let initdb = pg_bin("initdb");
                assert!(
                    initdb.exists(),
                    "{} is missing; run `bash scripts/test-all.sh`, which installs PostgreSQL",
                    initdb.display()
                );
                run_ok(
                    Command::new(&initdb)
                        .args(["-D"])
                        .arg(dir.join("data"))
                        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
                        .arg("--locale=C.UTF-8")
                        .uid(uid)
                        .gid(gid)
                        .current_dir(&dir),
                );
            }
            Kind::MariaDb => {
                require("mariadb-install-db");
                run_ok(
                    Command::new("mariadb-install-db")
                        .arg("--no-defaults")
                        .arg(format!("--datadir={}", dir.join("data").display()))
                        .arg("--user=mysql")
                        .arg("--skip-test-db")
                        .current_dir(&dir),
                );
            }
        }
        let s = Server {
            kind,
            port: free_port(),
            dir,
            child: Mutex::new(None),
        };
        s.run();
        match kind {
            Kind::Postgres => {}
            Kind::MariaDb => {
                // root@localhost authenticates by socket peer only; the tests connect over TCP
                // with a password, as a deployment would.
                s.sql(
                    "CREATE USER IF NOT EXISTS 'regfs'@'127.0.0.1' IDENTIFIED BY 'regfs-secret'; \
                     GRANT ALL ON *.* TO 'regfs'@'127.0.0.1' WITH GRANT OPTION;",
                );
            }
        }
        s
    }

    /// Starts the server process on its data directory and waits until it answers.
    pub fn run(&self) {
        let mut child = self.child.lock().unwrap();
        assert!(child.is_none(), "server already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let cmd = match self.kind {
            Kind::Postgres => {
                let (uid, gid) = user_ids("postgres");
                let mut c = Command::new(pg_bin("postgres"));
                c.arg("-D")
                    .arg(self.dir.join("data"))
                    .arg("-p")
                    .arg(self.port.to_string())
                    .arg("-k")
                    .arg(&self.dir)
                    .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                    .args(["-c", "max_connections=200"])
                    .uid(uid)
                    .gid(gid);
                c
            }
            Kind::MariaDb => {
                // Started as mysql rather than with --user: a server that drops privileges
                // itself loses PR_SET_PDEATHSIG (the kernel clears it on a credentials change).
                let (uid, gid) = user_ids("mysql");
                let mut c = Command::new("mariadbd");
                c.uid(uid).gid(gid);
                c.arg("--no-defaults")
                    .arg(format!("--datadir={}", self.dir.join("data").display()))
                    .arg(format!("--socket={}", self.socket().display()))
                    .arg(format!("--port={}", self.port))
                    .arg(format!(
                        "--pid-file={}",
                        self.dir.join("mariadb.pid").display()
                    ))
                    // A private tmpdir: every mariadbd deletes the `#sql*` files in its tmpdir
                    // when it starts (mysql_rm_tmp_tables), so servers sharing /tmp delete each
                    // other's internal temporary tables ("Error on delete of
                    // '/tmp/#sql-temptable-...'", seen in CI).
                    .arg(format!("--tmpdir={}", self.dir.display()))
                    .args([
                        "--bind-address=127.0.0.1",
                        "--innodb-flush-log-at-trx-commit=2",
                        "--innodb-buffer-pool-size=128M",
                        "--max-connections=300",
                        "--max-allowed-packet=1G",
                        "--skip-name-resolve",
                    ]);
                c
            }
        };
        let mut cmd = cmd;
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        *child = Some(spawn_owned(cmd));
        drop(child);
        let mut exited = None;
        let up = wait_until(Duration::from_secs(60), || {
            exited = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok()?);
            exited.is_some() || self.answers()
        });
        if exited.is_some() {
            *self.child.lock().unwrap() = None;
        }
        assert!(
            up && exited.is_none(),
            "{:?} on port {} {}; log:\n{}",
            self.kind,
            self.port,
            match exited {
                Some(status) => format!("exited at start ({status})"),
                None => "did not start within 60 s".to_string(),
            },
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    fn answers(&self) -> bool {
        let mut c = self.client();
        c.arg(match self.kind {
            Kind::Postgres => "-c",
            Kind::MariaDb => "-e",
        })
        .arg("SELECT 1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        c.status().is_ok_and(|s| s.success())
    }

    fn client(&self) -> Command {
        self.client_in(match self.kind {
            Kind::Postgres => "postgres",
            Kind::MariaDb => "mysql",
        })
    }

    /// The command-line client, connected as the superuser to database `db`.
    fn client_in(&self, db: &str) -> Command {
        match self.kind {
            Kind::Postgres => {
                let mut c = Command::new(pg_bin("psql"));
                c.args([
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                ])
                .arg("-p")
                .arg(self.port.to_string())
                .arg(db);
                c
            }
            Kind::MariaDb => {
                let mut c = Command::new("mariadb");
                c.arg("--no-defaults")
                    .arg(format!("--socket={}", self.socket().display()))
                    .args(["-u", "root"])
                    .arg(db);
                c
            }
        }
    }

    /// Runs SQL as the superuser and returns its output (tab-separated, no headers).
    pub fn sql(&self, sql: &str) -> String {
        let db = match self.kind {
            Kind::Postgres => "postgres",
            Kind::MariaDb => "mysql",
        };
        self.sql_in(db, sql)
    }

    /// Runs SQL in database `db` and returns its output (tab-separated, no headers).
    pub fn sql_in(&self, db: &str, sql: &str) -> String {
        let mut c = self.client_in(db);
        match self.kind {
            Kind::Postgres => c.args(["-A", "-t", "-F", "\t", "-c", sql]),
            Kind::MariaDb => c.args(["-N", "-B", "-e", sql]),
        };
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the SQL script `file` in database `db` as the superuser, stopping at the first
    /// error (Carbon's dbscripts, loaded as Carbon's installation guide says).
    pub fn sql_file_in(&self, db: &str, file: &Path) {
        let mut c = self.client_in(db);
        let out = match self.kind {
            Kind::Postgres => c.arg("-f").arg(file).output().unwrap(),
            Kind::MariaDb => c
                .stdin(std::fs::File::open(file).unwrap())
                .output()
                .unwrap(),
        };
        assert!(
            out.status.success(),
            "loading {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new empty database with the given default character set (MariaDB; PostgreSQL's are
    /// UTF8 whatever `charset` says); returns its name.
    pub fn fresh_db_with_charset(&self, charset: &str) -> String {
        match self.kind {
            Kind::Postgres => self.fresh_db(),
            Kind::MariaDb => {
                let name = format!(
                    "regfs_{}",
                    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
                );
                self.sql(&format!("CREATE DATABASE {name} CHARACTER SET {charset}"));
                name
            }
        }
    }

    /// The schema of database `db` as the server's dump tool writes it (no data, no owners or
    /// privileges, no AUTO_INCREMENT counters), one statement per item.
    pub fn schema_dump(&self, db: &str) -> Vec<String> {
        let out = match self.kind {
            Kind::Postgres => Command::new(pg_bin("pg_dump"))
                .args(["-s", "-x", "-O", "-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(self.port.to_string())
                .arg(db)
                .output()
                .unwrap(),
            Kind::MariaDb => Command::new("mariadb-dump")
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket().display()))
                .args([
                    "-u",
                    "root",
                    "--no-data",
                    "--skip-comments",
                    "--skip-dump-date",
                ])
                .arg(db)
                .output()
                .unwrap(),
        };
        assert!(
            out.status.success(),
            "dumping {db}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // A function's `$$`-quoted body holds `;` too: a statement ends outside one.
        let mut stmts: Vec<String> = Vec::new();
        let mut open = false;
        for piece in text.split(";\n") {
            match stmts.last_mut() {
                Some(last) if open => {
                    last.push_str(";\n");
                    last.push_str(piece);
                }
                _ => stmts.push(piece.to_string()),
            }
            if piece.matches("$$").count() % 2 == 1 {
                open = !open;
            }
        }
        stmts
            .iter()
            .map(|stmt| {
                let kept: Vec<&str> = stmt
                    .lines()
                    // pg_dump's \restrict lines carry a random key per dump.
                    .filter(|l| {
                        !l.trim().is_empty()
                            && !l.starts_with("--")
                            && !l.starts_with("\\restrict")
                            && !l.starts_with("\\unrestrict")
                    })
                    .collect();
                let joined = kept.join("\n");
                // MariaDB writes the next AUTO_INCREMENT value into CREATE TABLE.
                match joined.find(" AUTO_INCREMENT=") {
                    Some(i) => {
                        let rest = &joined[i + 16..];
                        let end = rest.find(' ').unwrap_or(rest.len());
                        format!("{}{}", &joined[..i], &rest[end..])
                    }
                    None => joined,
                }
            })
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Stops every process of the server (SIGSTOP): it keeps its connections but answers nothing.
    /// Returns once every thread of the server's main process is stopped: kill() returns before
    /// the stop has reached threads running elsewhere, and a query could slip through.
    pub fn pause(&self) {
        self.signal_group(nix::sys::signal::Signal::SIGSTOP);
        let Some(pid) = self.child.lock().unwrap().as_ref().map(|c| c.id() as i32) else {
            return;
        };
        let stopped = || {
            tree(pid).into_iter().all(|p| {
                let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
                    return true;
                };
                tasks.flatten().all(|t| {
                    let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                    // The state follows the command name, which is in parentheses.
                    matches!(
                        stat.rsplit_once(')')
                            .and_then(|(_, rest)| rest.split_whitespace().next()),
                        Some("T" | "t" | "Z" | "X") | None
                    )
                })
            })
        };
        assert!(
            wait_until(Duration::from_secs(10), stopped),
            "the server did not stop"
        );
    }

    pub fn resume(&self) {
        self.signal_group(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal_group(&self, sig: nix::sys::signal::Signal) {
        if let Some(child) = self.child.lock().unwrap().as_ref() {
            signal_tree(child.id() as i32, sig);
        }
    }

    /// A new empty database; returns its name.
    pub fn fresh_db(&self) -> String {
        let name = format!(
            "regfs_{}",
            uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
        );
        self.sql(&format!("CREATE DATABASE {name}"));
        name
    }

    /// The URL regfs connects with (the password, for MariaDB, comes separately).
    pub fn url(&self, db: &str) -> String {
        match self.kind {
            Kind::Postgres => format!("postgres://postgres@127.0.0.1:{}/{db}", self.port),
            Kind::MariaDb => format!("mysql://regfs@127.0.0.1:{}/{db}", self.port),
        }
    }

    pub fn password(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Postgres => None,
            Kind::MariaDb => Some("regfs-secret"),
        }
    }

    /// Stops the server: `kill` true is SIGKILL (a crash), else a fast clean shutdown.
    pub fn stop(&self, kill: bool) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        signal_tree(pid.as_raw(), nix::sys::signal::Signal::SIGCONT);
        if kill {
            signal_tree(pid.as_raw(), nix::sys::signal::Signal::SIGKILL);
        }
        let sig = if kill {
            nix::sys::signal::Signal::SIGKILL
        } else if self.kind == Kind::Postgres {
            nix::sys::signal::Signal::SIGINT
        } else {
            nix::sys::signal::Signal::SIGTERM
        };
        let _ = nix::sys::signal::kill(pid, sig);
        let gone = wait_until(Duration::from_secs(60), || {
            child.try_wait().ok().flatten().is_some()
        });
        if !gone {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(false);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
