use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use regfs::authz::{Action, Authorizer};
use regfs::daemon::{self, MountOptions};
use regfs::err;
use regfs::um::Grantee;
use regfs::{config, wiring};

/// regfs: mount a WSO2 Carbon registry as a directory tree.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DataDir {
    /// Data directory of the embedded default (SQLite files and, in the background, the log).
    /// Default: /var/lib/regfs as root, else $XDG_DATA_HOME/regfs or ~/.local/share/regfs.
    #[arg(long, env = "REGFS_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// A configuration file (see examples/regfs.toml) instead of the embedded default.
    #[arg(long, env = "REGFS_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// A WSO2 product's PRODUCT_HOME/repository/conf: registry.xml, user-mgt.xml and
    /// datasources/*.xml are read as-is, and regfs serves what that node would see.
    #[arg(
        long,
        env = "REGFS_WSO2_CONF",
        global = true,
        conflicts_with = "config"
    )]
    wso2_conf: Option<PathBuf>,
}

impl DataDir {
    fn path(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(wiring::default_data_dir)
    }

    fn file_config(&self) -> regfs::Result<Option<config::FileConfig>> {
        wiring::load_source(self.config.as_deref(), self.wso2_conf.as_deref())
    }

    async fn um(&self) -> regfs::Result<regfs::um::UmDb> {
        match self.file_config()? {
            Some(cfg) => wiring::um_from(&cfg).await,
            None => wiring::embedded_um(&self.path()).await,
        }
    }

    async fn registry(&self) -> regfs::Result<regfs::registry::Registry> {
        match self.file_config()? {
            Some(cfg) => wiring::registry_from(&cfg).await,
            None => wiring::embedded_registry(&self.path()).await,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Mount the registry at MOUNTPOINT (backgrounds itself unless --foreground).
    Mount {
        mountpoint: PathBuf,
        #[command(flatten)]
        data: DataDir,
        /// Stay attached to the terminal and log to stderr.
        #[arg(long, short = 'f')]
        foreground: bool,
        /// Log filter (RUST_LOG overrides it): error, warn, info, debug, trace.
        #[arg(long, default_value = daemon::DEFAULT_LOG_LEVEL, value_parser = daemon::check_log_level)]
        log_level: String,
        /// Log file (default in the background: DATA_DIR/regfs.log).
        #[arg(long)]
        log_file: Option<PathBuf>,
        /// Log lines as text, or as one JSON object each (for log collectors).
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Skip the kernel's POSIX mode/owner checks (default_permissions) and leave every
        /// decision to the registry.
        #[arg(long)]
        no_posix_permissions: bool,
        /// Threads serving kernel requests: each runs one request at a time, start to finish.
        #[arg(long, default_value_t = 4)]
        threads: usize,
        /// Map a local account name or numeric uid to a registry user: --map deploy=ops
        /// (repeatable). Without a map entry an account acts as the registry user of its own
        /// name, root as admin.
        #[arg(long = "map", value_name = "ACCOUNT=USER", value_parser = parse_map)]
        map: Vec<(String, String)>,
        /// Mount options, as for mount(8) (repeatable; applied after the flags above): ro, rw,
        /// allow_other, allow_root, nosuid, nodev, noexec, noatime, ...; regfs's own as
        /// config=FILE, data_dir=DIR, wso2_conf=DIR, log_level=L, log_file=F,
        /// log_format=text|json, threads=N, map=ACCOUNT:USER, no_posix_permissions,
        /// foreground. fstab's own (_netdev, nofail, noauto, x-*, ...) are passed over.
        #[arg(short = 'o', value_name = "OPTION[,OPTION...]")]
        options: Vec<String>,
        /// Pass over unknown -o options instead of refusing the mount (mount -s).
        #[arg(long, hide = true)]
        sloppy: bool,
    },
    /// The registry's activity log (REG_LOG: what Carbon and regfs logged) at and below PATH
    /// (default /), newest first.
    Log {
        #[arg(default_value = "/")]
        path: String,
        /// Only entries since WHEN: 2026-12-04, "2026-12-04 10:00", RFC 3339, or 30s/15m/2h/7d ago.
        #[arg(long, value_name = "WHEN", value_parser = parse_since)]
        since: Option<chrono::NaiveDateTime>,
        /// Only entries by this registry user.
        #[arg(long)]
        user: Option<String>,
        /// At most this many entries (with --follow: the last this many, then every new one).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only entries older than the entry with this id (the next page: the last id printed;
        /// ids are per database, so page a PATH inside one).
        #[arg(long, value_name = "ID", conflicts_with = "follow")]
        before: Option<i64>,
        /// One JSON object per line instead of aligned text.
        #[arg(long)]
        json: bool,
        /// Keep printing new entries as they are logged, oldest first (Ctrl-C ends).
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// A resource's archived versions (what `version_resources_on_change` keeps, as Carbon's
    /// console lists them): snapshot id, time, author, size. Each reads as 'PATH;version:N'.
    Versions {
        path: String,
        /// One JSON array of {"snapshot", "version", "time", "author", "size"}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Restore a resource to its version N, as Carbon's restoreVersion does: the content
    /// becomes a new version (the current one archived when versioning is on); REG_LOG RESTORE.
    Restore {
        path: String,
        /// The snapshot id, as `regfs versions` lists it.
        version: i64,
        #[command(flatten)]
        data: DataDir,
    },
    /// Write the subtree at PATH to FILE ('-': standard output) in Carbon's registry dump
    /// format (what Carbon's Registry.dump writes and restore reads): content, properties,
    /// media types, descriptions, UUIDs, creators and times, tags, comments, ratings,
    /// associations, and regfs's POSIX attributes. Archived versions are not dumped.
    Dump {
        path: String,
        file: PathBuf,
        #[command(flatten)]
        data: DataDir,
    },
    /// Load a dump (from `regfs dump` or Carbon's Registry.dump; FILE '-': standard input) at
    /// PATH: missing collections are made, collections already there are merged into, a
    /// resource already there is refused unless --overwrite. The dump is checked whole before
    /// anything is written; each database takes its part in one transaction.
    Load {
        file: PathBuf,
        path: String,
        /// Replace resources that exist (archived first when versioning is on).
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to standard
    /// output: `regfs completions bash > /etc/bash_completion.d/regfs`.
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff) to standard output: `regfs manpage > regfs.1`.
    Manpage,
    /// How this node's regfs mounts are doing (or the one at MOUNTPOINT): databases reachable,
    /// change feeds, open files not yet committed. Exit status 0 if all are healthy, else 1.
    Status {
        mountpoint: Option<PathBuf>,
        /// One JSON array of the mounts' reports (for monitoring).
        #[arg(long)]
        json: bool,
    },
    /// Create the schema (on a server: Carbon's tables where there are none, and regfs's own
    /// REGFS_* objects), the base collections and the seeded realm. Run once per database, by a
    /// database user who may create tables; mounts then need only SELECT/INSERT/UPDATE/DELETE.
    Init {
        #[command(flatten)]
        data: DataDir,
    },
    /// Registry users (UM_USER) in the configured user-management database.
    User {
        #[command(subcommand)]
        cmd: UserCmd,
        #[command(flatten)]
        data: DataDir,
    },
    /// Roles (UM_ROLE; Internal/NAME for hybrid roles) and their members.
    Role {
        #[command(subcommand)]
        cmd: RoleCmd,
        #[command(flatten)]
        data: DataDir,
    },
    /// Permission grants on registry paths (UM_PERMISSION, UM_ROLE_PERMISSION,
    /// UM_USER_PERMISSION).
    Perm {
        #[command(subcommand)]
        cmd: PermCmd,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user; the password is asked for on a terminal (no echo), else read from the
    /// first line of standard input.
    Add { name: String },
    /// Delete a user and its role memberships and user-level grants.
    Delete { name: String },
    /// Set a user's password, asked for on a terminal (no echo), else read from the first
    /// line of standard input.
    Passwd { name: String },
    /// List users.
    List {
        /// One JSON array of names instead of a line each.
        #[arg(long)]
        json: bool,
    },
    /// A user's roles (exit status 1 if there is no such user).
    Show {
        name: String,
        /// One JSON object: {"user", "roles"}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RoleCmd {
    /// Add a role: NAME (PRIMARY) or Internal/NAME (hybrid).
    Add { role: String },
    /// Delete a role with its memberships and grants.
    Delete { role: String },
    /// Give USER the role.
    Assign { role: String, user: String },
    /// Take the role from USER.
    Revoke { role: String, user: String },
    /// List roles with their members.
    List {
        /// One JSON array of {"role", "members"} objects instead of a line each.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct Rule {
    /// A role (NAME, Internal/NAME), or a user with --user.
    grantee: String,
    /// Registry path, e.g. /_system/config/app.
    path: String,
    /// get, add, delete or authorize (read/write accepted).
    action: String,
    /// GRANTEE is a user (a user-level rule) rather than a role.
    #[arg(long)]
    user: bool,
}

#[derive(Subcommand)]
enum PermCmd {
    /// Allow the action on PATH and below.
    Grant(Rule),
    /// Deny the action on PATH and below (deny wins over allow at one path).
    Deny(Rule),
    /// Remove the rule for GRANTEE at PATH.
    Revoke(Rule),
    /// The rules stored at PATH (with --recursive, at PATH and every path below it).
    Show {
        path: String,
        /// One JSON object: path, target path, and the rules (with --recursive, an array of
        /// them, one per path that holds rules).
        #[arg(long)]
        json: bool,
        /// Also every path below PATH that holds rules.
        #[arg(long, short = 'r')]
        recursive: bool,
    },
    /// Decide whether USER may do ACTION on PATH and explain how; exit status 0 if allowed, 1 if
    /// denied.
    Check {
        user: String,
        path: String,
        action: String,
        /// One JSON object: the decision and its steps (the exit status is the same).
        #[arg(long)]
        json: bool,
    },
}

/// `--since`: a date, a date and time (UTC), RFC 3339, or an age (30s, 15m, 2h, 7d).
fn parse_since(s: &str) -> Result<chrono::NaiveDateTime, String> {
    let now = chrono::Utc::now().naive_utc();
    if let Some((n, unit)) = s
        .char_indices()
        .last()
        .map(|(i, c)| (&s[..i], c))
        .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        let n: i64 = n
            .parse()
            .map_err(|_| format!("{s:?}: a number too large"))?;
        let secs = match unit {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            'd' => n * 86400,
            _ => return Err(format!("{s:?}: an age ends in s, m, h or d")),
        };
        return Ok(now - chrono::TimeDelta::seconds(secs));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.naive_utc());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Ok(t);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists"));
    }
    Err(format!(
        "{s:?}: use a date (2026-12-04), a date and time (\"2026-12-04 10:00\", UTC), RFC 3339, \
         or an age (30s, 15m, 2h, 7d)"
    ))
}

/// One activity-log entry, as text or as a JSON line.
fn print_log_entry(at: &str, e: &regfs::store::LogEntry, json: bool) {
    let action = regfs::store::log_action_name(e.action);
    let time = e.time.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
    if json {
        print_json(&serde_json::json!({
            "id": e.id,
            "time": time,
            "user": e.user,
            "action": action,
            "code": e.action,
            "path": at,
            "data": e.data,
        }));
    } else {
        match &e.data {
            Some(d) => println!("{time}  {:<16} {:<20} {at}  {d}", e.user, action),
            None => println!("{time}  {:<16} {:<20} {at}", e.user, action),
        }
    }
}

/// Prints `value` as one line of JSON (for scripts: `--json`).
fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string(value).expect("plain values serialize")
    );
}

fn parse_map(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((a, u)) if !a.is_empty() && !u.is_empty() => Ok((a.to_string(), u.to_string())),
        _ => Err(format!("expected ACCOUNT=USER, got {s:?}")),
    }
}

fn action(s: &str) -> regfs::Result<Action> {
    Action::parse(s).ok_or_else(|| {
        err!(
            EINVAL,
            "unknown action {s:?}: use get, add, delete or authorize"
        )
    })
}

/// The password for `user`: asked for twice, without echo, on a terminal; otherwise the first
/// line of standard input (scripts: `echo "$PW" | regfs user add NAME`).
fn read_password(user: &str) -> regfs::Result<String> {
    use std::io::{BufRead, IsTerminal};
    let pw = if std::io::stdin().is_terminal() {
        let pw = rpassword::prompt_password(format!("Password for {user}: "))?;
        let again = rpassword::prompt_password("Retype it: ")?;
        if pw != again {
            return Err(err!(EINVAL, "the two passwords differ; nothing changed"));
        }
        pw
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    // user-mgt.xml's default PasswordJavaRegEx: ^[\S]{5,30}$
    if pw.chars().count() < 5 || pw.chars().count() > 30 || pw.chars().any(char::is_whitespace) {
        return Err(err!(
            EINVAL,
            "the password must be 5 to 30 characters without spaces (on a terminal it is asked \
             for; otherwise it is the first line of standard input)"
        ));
    }
    Ok(pw)
}

/// A progress line on standard error while a long command runs, when that is a terminal:
/// entries done (of `total`), redrawn every 200 ms.
struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(
        what: &'static str,
        progress: std::sync::Arc<regfs::store::Progress>,
        total: Option<u64>,
    ) -> Self {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Ticker {
                stop: None,
                thread: None,
            };
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let line = || {
                let n = progress.now();
                match total {
                    Some(t) if t > 0 => format!(
                        "\r{what}: {n}/{t} collections and resources ({}%)",
                        n * 100 / t
                    ),
                    _ => format!("\r{what}: {n} collections and resources"),
                }
            };
            loop {
                eprint!("{}", line());
                if !matches!(
                    rx.recv_timeout(std::time::Duration::from_millis(200)),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                ) {
                    break;
                }
            }
            // Clear the line for what is printed next.
            eprint!("\r\x1b[K");
        });
        Ticker {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn runtime() -> regfs::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Exit status 1 without an error message: a denied `perm check`, an unhealthy `status`.
struct Denied;

async fn admin(command: Command) -> regfs::Result<Result<(), Denied>> {
    match command {
        Command::Mount { .. } => unreachable!("handled before"),
        Command::Log {
            path,
            since,
            user,
            limit,
            before,
            json,
            follow,
            data,
        } => {
            let registry = data.registry().await?;
            let q = regfs::store::LogQuery {
                since,
                user,
                limit,
                before,
                ..Default::default()
            };
            let mut page = registry.activity(&path, &q, None).await?;
            page.truncate(limit as usize);
            if follow {
                page.reverse();
            }
            let mut last: HashMap<usize, i64> = HashMap::new();
            for (store, _, e) in &page {
                let seen = last.entry(*store).or_insert(e.id);
                *seen = (*seen).max(e.id);
            }
            for (_, at, e) in &page {
                print_log_entry(at, e, json);
            }
            if follow {
                // Where each database's log is now, so that only what comes next prints.
                let newest = registry
                    .activity(
                        &path,
                        &regfs::store::LogQuery {
                            limit: 1,
                            ..q.clone()
                        },
                        None,
                    )
                    .await?;
                for (store, _, e) in newest {
                    let seen = last.entry(store).or_insert(e.id);
                    *seen = (*seen).max(e.id);
                }
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let q = regfs::store::LogQuery {
                        limit: 500,
                        ..q.clone()
                    };
                    for (store, at, e) in registry.activity(&path, &q, Some(&last)).await? {
                        let seen = last.entry(store).or_insert(e.id);
                        *seen = (*seen).max(e.id);
                        print_log_entry(&at, &e, json);
                    }
                }
            }
        }
        Command::Versions { path, json, data } => {
            let registry = data.registry().await?;
            let versions = registry.versions(regfs::um::ADMIN_USER, &path).await?;
            if json {
                let all: Vec<_> = versions
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "snapshot": v.snapshot,
                            "version": v.version,
                            "time": v.time.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                            "author": v.author,
                            "size": v.size,
                            "entries": v.entries,
                        })
                    })
                    .collect();
                print_json(&all);
            } else if versions.is_empty() {
                println!(
                    "{path} has no archived versions (version_resources_on_change keeps them; \
                     a collection's are the checkpoints Carbon's createVersion makes)"
                );
            } else {
                for v in versions {
                    // A resource's version reads as PATH;version:N; a collection's
                    // checkpoint is listed only.
                    let (size, what) = match v.entries {
                        Some(n) => (format!("{n} entries"), "checkpoint".to_string()),
                        None => (
                            v.size.to_string(),
                            format!("'{path};version:{}'", v.snapshot),
                        ),
                    };
                    println!(
                        "{:>6}  {}  {:<16} {:>10}  {what}",
                        v.snapshot,
                        v.time.format("%Y-%m-%d %H:%M:%S"),
                        v.author.as_deref().unwrap_or("-"),
                        size,
                    );
                }
            }
        }
        Command::Dump { path, file, data } => {
            let registry = data.registry().await?;
            let progress = std::sync::Arc::new(regfs::store::Progress::default());
            let ticker = Ticker::start("dump", progress.clone(), None);
            let (n, bytes) = if file.as_os_str() == "-" {
                let out = std::io::BufWriter::new(std::io::stdout());
                let (n, _) = registry
                    .dump(regfs::um::ADMIN_USER, &path, out, &progress)
                    .await?;
                (n, None)
            } else {
                // Written beside FILE and renamed into place once complete: a dump that fails
                // halfway leaves no half-written FILE (and an older FILE as it was).
                let dir = file
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                let tmp = tempfile::NamedTempFile::new_in(dir)
                    .map_err(|e| err!(EIO, "cannot write in {}: {e}", dir.display()))?;
                let out = std::io::BufWriter::new(tmp);
                let (n, out) = registry
                    .dump(regfs::um::ADMIN_USER, &path, out, &progress)
                    .await?;
                let tmp = out
                    .into_inner()
                    .map_err(|e| err!(EIO, "cannot write {}: {e}", file.display()))?;
                tmp.as_file().sync_all()?;
                let len = tmp.as_file().metadata()?.len();
                tmp.persist(&file)
                    .map_err(|e| err!(EIO, "cannot write {}: {e}", file.display()))?;
                (n, Some(len))
            };
            ticker.stop();
            match bytes {
                Some(len) => eprintln!(
                    "regfs: dumped {path}: {n} collections and resources, {len} bytes, to {}",
                    file.display()
                ),
                None => eprintln!("regfs: dumped {path}: {n} collections and resources"),
            }
        }
        Command::Load {
            file,
            path,
            overwrite,
            data,
        } => {
            let text = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| err!(EINVAL, "cannot read the dump from standard input: {e}"))?;
                text
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| err!(ENOENT, "cannot read {}: {e}", file.display()))?
            };
            let node = regfs::dump::parse(&text, &file.display().to_string())?;
            drop(text);
            let total = node.count();
            let registry = data.registry().await?;
            let progress = std::sync::Arc::new(regfs::store::Progress::default());
            let ticker = Ticker::start("load", progress.clone(), Some(total));
            let done = registry
                .load(regfs::um::ADMIN_USER, &path, node, overwrite, &progress)
                .await;
            ticker.stop();
            let done = done?;
            let mut also = Vec::new();
            if done.replaced > 0 {
                also.push(format!("{} replaced", done.replaced));
            }
            if done.merged > 0 {
                also.push(format!(
                    "{} collections already there, merged into",
                    done.merged
                ));
            }
            if done.new_uuids > 0 {
                also.push(format!(
                    "{} given new UUIDs, theirs being taken in this database",
                    done.new_uuids
                ));
            }
            eprintln!(
                "regfs: loaded {} at {path}: {} collections and resources written{}",
                file.display(),
                done.created + done.replaced,
                if also.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", also.join("; "))
                }
            );
        }
        Command::Restore {
            path,
            version,
            data,
        } => {
            let registry = data.registry().await?;
            let entry = registry
                .restore(regfs::um::ADMIN_USER, &path, version)
                .await?;
            println!(
                "restored {path} to version {version} ({} bytes; it is now REG_VERSION {})",
                entry.size, entry.version
            );
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "regfs", &mut std::io::stdout());
        }
        Command::Manpage => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| err!(EIO, "cannot write the manual page: {e}"))?;
        }
        Command::Status { mountpoint, json } => {
            let reports = regfs::status::reports(mountpoint.as_deref()).await?;
            if json {
                print_json(&reports);
            } else {
                print!("{}", regfs::status::text(&reports));
            }
            if reports.is_empty() || !reports.iter().all(|r| r.healthy()) {
                return Ok(Err(Denied));
            }
        }
        Command::Init { data } => {
            if let Some(cfg) = data.file_config()? {
                wiring::install(&cfg).await?;
            }
            data.registry().await?;
            match data.config.as_ref().or(data.wso2_conf.as_ref()) {
                Some(file) => println!("regfs: initialized the databases of {}", file.display()),
                None => println!(
                    "regfs: initialized {} ({} and {})",
                    data.path().display(),
                    wiring::LOCAL_DB,
                    wiring::SHARED_DB
                ),
            }
        }
        Command::User { cmd, data } => {
            let um = data.um().await?;
            match cmd {
                UserCmd::Add { name } => {
                    um.user_add(&name, &read_password(&name)?).await?;
                    println!("added user {name}");
                }
                UserCmd::Delete { name } => {
                    um.user_delete(&name).await?;
                    println!("deleted user {name}");
                }
                UserCmd::Passwd { name } => {
                    um.user_passwd(&name, &read_password(&name)?).await?;
                    println!("changed the password of {name}");
                }
                UserCmd::Show { name, json } => {
                    let users = um.user_list().await?;
                    let Some(name) = users.into_iter().find(|u| u.eq_ignore_ascii_case(&name))
                    else {
                        return Err(err!(
                            ENOENT,
                            "no user {name} in the user-management database (a caller without \
                             one acts as the anonymous user)"
                        ));
                    };
                    let mut roles: Vec<String> = um
                        .role_list()
                        .await?
                        .into_iter()
                        .filter(|(_, members)| {
                            members.iter().any(|m| m.eq_ignore_ascii_case(&name))
                        })
                        .map(|(role, _)| role)
                        .collect();
                    if !roles
                        .iter()
                        .any(|r| r.eq_ignore_ascii_case(regfs::policy::EVERYONE_ROLE))
                    {
                        roles.push(regfs::policy::EVERYONE_ROLE.to_string());
                    }
                    roles.sort();
                    if json {
                        print_json(&serde_json::json!({ "user": name, "roles": roles }));
                    } else {
                        println!("user {name}");
                        println!("  roles: {}", roles.join(", "));
                    }
                }
                UserCmd::List { json } => {
                    let users = um.user_list().await?;
                    if json {
                        print_json(&users);
                    } else {
                        for u in users {
                            println!("{u}");
                        }
                    }
                }
            }
        }
        Command::Role { cmd, data } => {
            let um = data.um().await?;
            match cmd {
                RoleCmd::Add { role } => {
                    um.role_add(&role).await?;
                    println!("added role {role}");
                }
                RoleCmd::Delete { role } => {
                    um.role_delete(&role).await?;
                    println!("deleted role {role}");
                }
                RoleCmd::Assign { role, user } => {
                    um.role_membership(&role, &user, true).await?;
                    println!("{user} now has role {role}");
                }
                RoleCmd::Revoke { role, user } => {
                    um.role_membership(&role, &user, false).await?;
                    println!("{user} no longer has role {role}");
                }
                RoleCmd::List { json } => {
                    let roles = um.role_list().await?;
                    if json {
                        let roles: Vec<_> = roles
                            .iter()
                            .map(|(role, members)| {
                                serde_json::json!({ "role": role, "members": members })
                            })
                            .collect();
                        print_json(&roles);
                    } else {
                        for (role, members) in roles {
                            println!("{role}: {}", members.join(", "));
                        }
                    }
                }
            }
        }
        Command::Perm { cmd, data } => {
            // Grants are stored on the mount's target path, as Carbon stores them.
            let registry = data.registry().await?;
            let target = |p: &str| {
                registry
                    .mount_table()
                    .resolve(&regfs::path::normalize(p))
                    .target
            };
            let um = data.um().await?;
            let set = |rule: &Rule| -> regfs::Result<(String, Action, Grantee)> {
                let grantee = if rule.user {
                    Grantee::User(rule.grantee.clone())
                } else {
                    Grantee::Role(rule.grantee.clone())
                };
                Ok((
                    target(&rule.path).to_string(),
                    action(&rule.action)?,
                    grantee,
                ))
            };
            match cmd {
                PermCmd::Grant(rule) => {
                    let (p, a, g) = set(&rule)?;
                    um.set_permission(&p, a, &g, Some(true)).await?;
                    println!("granted {a} on {} to {}", rule.path, rule.grantee);
                }
                PermCmd::Deny(rule) => {
                    let (p, a, g) = set(&rule)?;
                    um.set_permission(&p, a, &g, Some(false)).await?;
                    println!("denied {a} on {} to {}", rule.path, rule.grantee);
                }
                PermCmd::Revoke(rule) => {
                    let (p, a, g) = set(&rule)?;
                    um.set_permission(&p, a, &g, None).await?;
                    println!("revoked the {a} rule on {} for {}", rule.path, rule.grantee);
                }
                PermCmd::Show {
                    path,
                    json,
                    recursive: true,
                } => {
                    let at = target(&path);
                    let mut all = Vec::new();
                    for p in um.rule_paths_below(at.as_str()).await? {
                        let rules = um.rules_at(&p).await?;
                        if !rules.is_empty() {
                            all.push((p, rules));
                        }
                    }
                    if json {
                        let all: Vec<_> = all
                            .iter()
                            .map(|(p, rules)| {
                                serde_json::json!({
                                    "target": p,
                                    "rules": rules.iter().map(|r| serde_json::json!({
                                        "action": r.action,
                                        "allowed": r.allowed,
                                        "grantee": r.grantee,
                                    })).collect::<Vec<_>>(),
                                })
                            })
                            .collect();
                        print_json(&all);
                        return Ok(Ok(()));
                    }
                    if all.is_empty() {
                        println!("no rules at or below {path}");
                    }
                    for (p, rules) in all {
                        println!("{p}:");
                        for r in rules {
                            println!(
                                "  {:<9} {:<6} {}",
                                r.action,
                                if r.allowed { "allow" } else { "deny" },
                                r.grantee
                            );
                        }
                    }
                }
                PermCmd::Show { path, json, .. } => {
                    let at = target(&path);
                    let rules = um.rules_at(at.as_str()).await?;
                    if json {
                        let rules: Vec<_> = rules
                            .iter()
                            .map(|r| {
                                serde_json::json!({
                                    "action": r.action,
                                    "allowed": r.allowed,
                                    "grantee": r.grantee,
                                })
                            })
                            .collect();
                        print_json(&serde_json::json!({
                            "path": regfs::path::normalize(&path),
                            "target": at.as_str(),
                            "rules": rules,
                        }));
                        return Ok(Ok(()));
                    }
                    if rules.is_empty() {
                        println!("no rules at {path} (it inherits from its parents)");
                    }
                    for r in rules {
                        println!(
                            "{:<9} {:<6} {}",
                            r.action,
                            if r.allowed { "allow" } else { "deny" },
                            r.grantee
                        );
                    }
                }
                PermCmd::Check {
                    user,
                    path,
                    action: a,
                    json,
                } => {
                    let a = action(&a)?;
                    let authz = Authorizer::new(std::sync::Arc::new(um), regfs::um::ADMIN_USER);
                    let d = authz.explain(&user, &target(&path), a).await?;
                    if json {
                        print_json(&serde_json::json!({
                            "user": user,
                            "path": regfs::path::normalize(&path),
                            "action": a.to_string(),
                            "allowed": d.allowed,
                            "steps": d.steps,
                        }));
                    } else {
                        println!("{user} {a} {path}");
                        for step in &d.steps {
                            println!("  {step}");
                        }
                        println!("{}", if d.allowed { "ALLOW" } else { "DENY" });
                    }
                    if !d.allowed {
                        return Ok(Err(Denied));
                    }
                }
            }
        }
    }
    Ok(Ok(()))
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Run by mount(8) as /sbin/mount.fuse.regfs (mount -t fuse.regfs, an fstab line).
    let cli = match args.first() {
        Some(argv0) if regfs::mount_opts::is_helper(argv0) => {
            match regfs::mount_opts::helper_command(&args[1..]) {
                Ok(Some(cmd)) => Cli::parse_from(cmd),
                Ok(None) => return ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mount.fuse.regfs: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => Cli::parse_from(args),
    };
    let result = match cli.command {
        Command::Mount {
            mountpoint,
            data,
            foreground,
            log_level,
            log_file,
            log_format,
            no_posix_permissions,
            threads,
            map,
            options,
            sloppy,
        } => {
            let mut opts = MountOptions {
                mountpoint,
                data_dir: data.path(),
                foreground,
                log_level,
                log_file,
                log_json: log_format == LogFormat::Json,
                posix_permissions: !no_posix_permissions,
                threads,
                user_map: map.into_iter().collect::<HashMap<_, _>>(),
                config: data.config.clone(),
                wso2_conf: data.wso2_conf.clone(),
                read_only: false,
                allow: Default::default(),
                kernel: Vec::new(),
                xattr: false,
            };
            options
                .iter()
                .try_for_each(|list| regfs::mount_opts::apply(&mut opts, list, sloppy))
                .and_then(|()| daemon::run(opts))
                .map(Ok)
        }
        other => runtime().and_then(|rt| rt.block_on(admin(other))),
    };
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(Denied)) => ExitCode::from(1),
        Err(e) => {
            eprintln!("regfs: {e}");
            ExitCode::FAILURE
        }
    }
}
