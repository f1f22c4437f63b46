//! Test harness: mounts the real `regfs` binary on a fresh temp dir and always unmounts it.
#![allow(dead_code)]

pub mod servers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Mounted {
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    pub data: PathBuf,
    child: Option<Child>,
    /// The `--log-file` the mount was given, if any: [`Mounted::log`] reads it too.
    log_file: Option<PathBuf>,
}

pub fn is_mounted(mnt: &Path) -> bool {
    let want = mnt.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 2 && f[1] == want && f[2].starts_with("fuse")
        })
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
/// The errno of a failed call, 0 on success.
pub fn errno_of(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

pub fn regfs_bin() -> &'static str {
    env!("CARGO_BIN_EXE_regfs")
}

fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: the FUSE tests need a kernel with FUSE (run as root on a machine with /dev/fuse)"
    );
    assert!(
        nix::unistd::geteuid().is_root(),
        "the FUSE tests mount for real and must run as root"
    );
}

impl Mounted {
    /// Mounts fresh databases: the embedded default, or with `REGFS_TEST_BACKEND` set, a
    /// config whose node database and shared database are both on that server.
    pub fn new() -> Self {
        Self::with_args(&[])
    }

    pub fn with_args(args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("regfs-test-")
            .tempdir()
            .unwrap();
        let data = fresh_data(dir.path());
        Self::with_data(dir, data, args)
    }

    /// Runs SQL on one of this mount's databases, read-only in spirit, and returns the rows as
    /// text: the shared database (`shared = true`) or the node's own.
    pub fn query(&self, shared: bool, sql: &str) -> Vec<Vec<String>> {
        self.run_sql(shared, sql, true)
    }

    /// Runs SQL that writes on one of this mount's databases, as another program (a Carbon
    /// node) would; returns the rows as [`Self::query`] does.
    pub fn execute(&self, shared: bool, sql: &str) -> Vec<Vec<String>> {
        self.run_sql(shared, sql, false)
    }

    fn run_sql(&self, shared: bool, sql: &str, read_only: bool) -> Vec<Vec<String>> {
        let url_in_config = || {
            let cfg = std::fs::read_to_string(&self.data).unwrap();
            let section = if shared {
                "[data_sources.shared]"
            } else {
                "[data_sources.node]"
            };
            let url = cfg
                .split(section)
                .nth(1)
                .and_then(|rest| rest.lines().find(|l| l.starts_with("url")))
                .expect("the data source's url");
            let url = url.split('"').nth(1).expect("a quoted url");
            url.to_string()
        };
        let text = match servers::backend() {
            None => {
                let db = if self.data.extension().is_some_and(|e| e == "toml") {
                    PathBuf::from(url_in_config().trim_start_matches("sqlite:"))
                } else {
                    self.data
                        .join(if shared { "shared.db" } else { "local.db" })
                };
                let mut sqlite3 = Command::new("sqlite3");
                if read_only {
                    sqlite3.arg("-readonly");
                }
                let out = sqlite3
                    .arg("-separator")
                    .arg("\t")
                    .arg(&db)
                    .arg(sql)
                    .output()
                    .expect("sqlite3 (Debian package sqlite3) runs");
                assert!(
                    out.status.success(),
                    "{sql}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
            Some(kind) => {
                let url = url_in_config();
                let db = url.rsplit('/').next().unwrap();
                servers::server_for(kind).sql_in(db, sql)
            }
        };
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    /// The arguments that name this mount's databases: `--data-dir DIR` or `--config FILE`.
    pub fn source_args(&self) -> Vec<std::ffi::OsString> {
        source_args(&self.data)
    }

    /// A second regfs process on this mount's databases: another node of the cluster.
    pub fn another_node(&self) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("regfs-test-")
            .tempdir()
            .unwrap();
        Self::with_data(dir, self.data.clone(), &[])
    }

    pub fn with_data(dir: tempfile::TempDir, data: PathBuf, args: &[&str]) -> Self {
        Self::with_env(dir, data, args, &[])
    }

    /// [`Mounted::with_data`] with extra environment variables for the regfs process.
    pub fn with_env(
        dir: tempfile::TempDir,
        data: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        require_fuse();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let log = std::fs::File::create(dir.path().join("regfs.log")).unwrap();
        let child = Command::new(regfs_bin())
            .arg("mount")
            .arg("--foreground")
            .args(source_args(&data))
            .args(args)
            .arg(&mnt)
            .env("RUST_LOG", "regfs=debug,fuser=error")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn regfs");
        let log_file = args
            .iter()
            .position(|a| *a == "--log-file")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from);
        let mut m = Mounted {
            dir,
            mnt,
            data,
            child: Some(child),
            log_file,
        };
        let up = wait_until(Duration::from_secs(30), || {
            is_mounted(&m.mnt)
                || m.child
                    .as_mut()
                    .is_some_and(|c| c.try_wait().ok().flatten().is_some())
        });
        assert!(
            up && is_mounted(&m.mnt),
            "regfs did not mount within 30 s; log:\n{}",
            m.log()
        );
        if m.data.extension().is_some_and(|e| e == "toml") {
            let log = m.log();
            assert!(
                log.contains("opened") && log.contains("data_source"),
                "the config's data sources were not opened; log:\n{log}"
            );
        }
        m
    }

    /// The serving regfs process.
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.as_ref().expect("regfs is running").id() as i32)
    }

    /// What the mount printed (its stderr), then what it wrote to its `--log-file`.
    pub fn log(&self) -> String {
        let mut log =
            std::fs::read_to_string(self.dir.path().join("regfs.log")).unwrap_or_default();
        if let Some(f) = &self.log_file {
            log.push_str(&std::fs::read_to_string(f).unwrap_or_default());
        }
        log
    }

    /// Whether the serving process has exited (it is reaped if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// `MOUNT/rel`.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel.trim_start_matches('/'))
    }

    /// A scratch directory outside the mount.
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Runs `sh -c script` in `cwd` and asserts success; returns stdout.
    pub fn sh(&self, cwd: &Path, script: &str) -> String {
        let out = sh_output(cwd, script);
        assert!(
            out.status.success(),
            "script failed ({}):\n{script}\nstdout:\n{}\nstderr:\n{}\nregfs log tail:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops regfs with SIGTERM and waits for the unmount (bounded).
    pub fn unmount(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let exited = wait_until(Duration::from_secs(20), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Fresh databases for a mount under `dir`: a data directory for the embedded default, or a
/// config on the `REGFS_TEST_BACKEND` server.
pub fn fresh_data(dir: &Path) -> PathBuf {
    match servers::backend() {
        None => dir.join("data"),
        Some(kind) => server_config(dir, kind),
    }
}

pub fn source_args(data: &Path) -> Vec<std::ffi::OsString> {
    let flag = if data.extension().is_some_and(|e| e == "toml") {
        "--config"
    } else {
        "--data-dir"
    };
    vec![flag.into(), data.as_os_str().to_owned()]
}

/// A configuration file for a mount under `dir` on the `REGFS_TEST_BACKEND` (SQLite files in
/// `dir` by default), laid out as the embedded default is, with `top` (top-level keys of
/// regfs.toml) added.
pub fn config_with(dir: &Path, top: &str) -> PathBuf {
    let file = match servers::backend() {
        Some(kind) => server_config(dir, kind),
        None => {
            let file = dir.join("regfs.toml");
            let db = |name: &str| format!("sqlite:{}", dir.join(name).display());
            std::fs::write(&file, layout_toml(&db("local.db"), &db("shared.db"), "")).unwrap();
            file
        }
    };
    let rest = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{top}\n{rest}")).unwrap();
    file
}

/// A config on the shared test server of `kind`: the node's own database and the shared
/// database (holding /_system/config, /_system/governance and the UM_* tables, as in a Carbon
/// cluster) are two fresh databases there.
pub fn server_config(dir: &Path, kind: servers::Kind) -> PathBuf {
    server_config_on(dir, servers::server_for(kind), 10)
}

/// [`server_config`] on a given server, with `busy_timeout_secs` as the EIO bound.
pub fn server_config_on(dir: &Path, server: &servers::Server, timeout_secs: u64) -> PathBuf {
    let (node, shared) = (server.fresh_db(), server.fresh_db());
    let password = match server.password() {
        Some(p) => {
            let f = dir.join("db.password");
            std::fs::write(&f, format!("{p}\n")).unwrap();
            format!("password_file = {:?}\n", f.display().to_string())
        }
        None => String::new(),
    };
    let file = dir.join("regfs.toml");
    std::fs::write(
        &file,
        layout_toml(
            &server.url(&node),
            &server.url(&shared),
            &format!("busy_timeout_secs = {timeout_secs}\n{password}"),
        ),
    )
    .unwrap();
    // What a DBA does once per database: a mount only checks the catalog.
    run_regfs_ok([
        std::ffi::OsStr::new("init"),
        "--config".as_ref(),
        file.as_os_str(),
    ]);
    file
}

/// regfs.toml laid out as the embedded default is: the node's own database and the shared one
/// (each data source with `source_lines` added), /_system/config and /_system/governance
/// mounted from the shared database under the same paths, and the UM_* tables there.
fn layout_toml(node_url: &str, shared_url: &str, source_lines: &str) -> String {
    format!(
        r#"node_data_source = "node"

[data_sources.node]
url = "{node_url}"
{source_lines}
[data_sources.shared]
url = "{shared_url}"
{source_lines}
[remote_instances.gov]
data_source = "shared"

[[mounts]]
path = "/_system/config"
instance = "gov"
target_path = "/_system/config"

[[mounts]]
path = "/_system/governance"
instance = "gov"
target_path = "/_system/governance"

[user_management]
data_source = "shared"
"#
    )
}

/// Runs the regfs CLI with `args` (no stdin) and returns its output.
pub fn run_regfs<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(regfs_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run regfs")
}

/// Runs the regfs CLI with `args`, `stdin` fed to it (passwords), and returns its output.
pub fn run_regfs_with_stdin<I, S>(args: I, stdin: &str) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    use std::io::Write;
    let mut child = Command::new(regfs_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run regfs");
    // A command that reads no password (`role add`) may exit before the write:
    // the pipe is then closed and EPIPE only says that it did not need the input.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.expect("feed regfs's stdin"),
    }
    child.wait_with_output().unwrap()
}

/// [`run_regfs`], asserting that it succeeded.
#[track_caller]
pub fn run_regfs_ok<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = run_regfs(args);
    assert!(
        out.status.success(),
        "regfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A temp dir other local users may traverse (tests that run processes as other uids).
pub fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A read-only pool on an SQLite file, to read tables back with plain SQL.
pub async fn ro_pool(db: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .read_only(true),
    )
    .await
    .unwrap()
}

/// Runs a `SELECT COUNT(...)`-style query on an SQLite file, read-only, with plain SQL.
pub fn sql_count(db: &Path, sql: &'static str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = ro_pool(db).await;
        sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
    })
}

pub fn sh_output(cwd: &Path, script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .expect("run sh")
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Carbon's own DDL for a server kind and kernel line (`4.12.x`, `4.4.x`), unedited, where the
/// workplace keeps it beside the project (`../shared/carbon/dbscripts/`).
pub fn carbon_dbscript(kind: servers::Kind, version: &str) -> PathBuf {
    let name = match kind {
        servers::Kind::Postgres => format!("postgresql-{version}.sql"),
        servers::Kind::MariaDb => format!("mysql-{version}.sql"),
    };
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/carbon/dbscripts")
        .join(name);
    assert!(
        file.exists(),
        "{} is missing: the suites load Carbon's own DDL from ../shared/carbon (beside the \
         project), as the workplace lays it out",
        file.display()
    );
    file
}
