//! `regfs status`: how each regfs mount on this node is doing.
//!
//! Each mount answers on a control socket of its own, `<pid>.sock` in [`socket_dir`]
//! (`/run/regfs` for root), with one JSON line, a [`MountStatus`], then closes. `regfs status`
//! reads the regfs mounts in `/proc/mounts`, asks each mount's socket, and reports; a mount
//! that does not answer (hung, or a regfs without the socket) is unhealthy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::err;
use crate::error::Result;
use crate::fs::{Holdings, RegFs};
use crate::registry::DatabaseStatus;

/// How long one database may take to answer a status query.
const DATABASE_WITHIN: Duration = Duration::from_secs(3);

/// How long `regfs status` waits for a mount to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// What a mount says of itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MountStatus {
    pub mountpoint: String,
    pub pid: u32,
    pub version: String,
    pub uptime_secs: u64,
    /// What it mounts: `embedded default in DIR`, `config FILE`, `WSO2 conf DIR`.
    pub source: String,
    pub read_only: bool,
    pub threads: usize,
    /// `[cache] open_trusts_feed` is in effect.
    pub trusts_feed: bool,
    pub databases: Vec<DatabaseStatus>,
    #[serde(flatten)]
    pub holdings: Holdings,
    pub healthy: bool,
    /// What makes it unhealthy, one line each.
    pub problems: Vec<String>,
}

/// What a mount knows of itself that does not change while it runs.
pub struct Fixed {
    pub mountpoint: PathBuf,
    pub source: String,
    pub read_only: bool,
    pub threads: usize,
    pub started: Instant,
}

/// Where this user's mounts put their control sockets: `/run/regfs` for root, else
/// `$XDG_RUNTIME_DIR/regfs`, else `/tmp/regfs-UID`.
pub fn socket_dir() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/regfs");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => Path::new(&d).join("regfs"),
        _ => PathBuf::from(format!("/tmp/regfs-{uid}")),
    }
}

/// Gathers a mount's status now.
pub async fn gather(fs: &RegFs, fixed: &Fixed) -> MountStatus {
    let registry = fs.registry();
    let databases = registry.database_status(DATABASE_WITHIN).await;
    let mut problems = Vec::new();
    for d in &databases {
        if let Some(e) = &d.error {
            problems.push(format!("database {} does not answer: {e}", d.name));
        }
        if let Some(f) = d.feed.as_ref().filter(|f| !f.healthy) {
            problems.push(format!(
                "the change feed of {} has not confirmed lately ({}): changes made elsewhere \
                 may show late",
                d.name, f.how
            ));
        }
    }
    MountStatus {
        mountpoint: fixed.mountpoint.display().to_string(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: fixed.started.elapsed().as_secs(),
        source: fixed.source.clone(),
        read_only: fixed.read_only,
        threads: fixed.threads,
        trusts_feed: registry.trusts_feeds(),
        databases,
        holdings: fs.holdings(),
        healthy: problems.is_empty(),
        problems,
    }
}

/// The control socket of a running mount; removed when dropped.
pub struct Control {
    path: PathBuf,
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Opens this process's control socket and answers on it, on `rt`, for as long as the
/// returned [`Control`] lives. A socket that cannot be made is logged, not fatal: the mount
/// serves without it.
pub fn serve(rt: &tokio::runtime::Handle, fs: Arc<RegFs>, fixed: Fixed) -> Option<Control> {
    let dir = socket_dir();
    let path = dir.join(format!("{}.sock", std::process::id()));
    let made = (|| -> std::io::Result<tokio::net::UnixListener> {
        std::fs::create_dir_all(&dir)?;
        let _ = std::fs::remove_file(&path);
        let _rt = rt.enter();
        let listener = tokio::net::UnixListener::bind(&path)?;
        use std::os::unix::fs::PermissionsExt;
        // What it tells (paths, database names) is for the mount's owner.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(listener)
    })();
    let listener = match made {
        Ok(l) => l,
        Err(e) => {
            warn!(
                "cannot open the control socket {} ({e}): `regfs status` cannot ask this mount",
                path.display()
            );
            return None;
        }
    };
    let fixed = Arc::new(fixed);
    rt.spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let (fs, fixed) = (fs.clone(), fixed.clone());
            tokio::spawn(async move {
                let status = gather(&fs, &fixed).await;
                let mut line = serde_json::to_string(&status).expect("plain values serialize");
                line.push('\n');
                if let Err(e) = conn.write_all(line.as_bytes()).await {
                    debug!("regfs status went away before its answer: {e}");
                }
            });
        }
    });
    Some(Control { path })
}

/// The regfs mounts in `/proc/mounts`: their mount points.
pub fn regfs_mounts() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && (f[2] == "fuse.regfs" || (f[0] == "regfs" && f[2] == "fuse")))
                .then(|| PathBuf::from(unescape(f[1])))
        })
        .collect()
}

/// `/proc/mounts` writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |j: usize| b.get(j).is_some_and(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal(i + 1) && octal(i + 2) && octal(i + 3) {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Asks every control socket in `dir` (removing those of processes that are gone).
async fn ask_all(dir: &Path) -> HashMap<PathBuf, MountStatus> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Some(pid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".sock"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
        {
            // Its process is gone (killed): nothing will answer there again.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let ask = async {
            let mut conn = tokio::net::UnixStream::connect(&path).await?;
            let mut text = String::new();
            conn.read_to_string(&mut text).await?;
            serde_json::from_str::<MountStatus>(text.trim())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        };
        match tokio::time::timeout(ANSWER_WITHIN, ask).await {
            Ok(Ok(status)) => {
                out.insert(PathBuf::from(&status.mountpoint), status);
            }
            Ok(Err(e)) => debug!("{}: {e}", path.display()),
            Err(_) => debug!("{}: no answer within {ANSWER_WITHIN:?}", path.display()),
        }
    }
    out
}

/// One mount as `regfs status` reports it: its own answer, or why there is none.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Report {
    Answered(MountStatus),
    Silent {
        mountpoint: String,
        healthy: bool,
        problems: Vec<String>,
    },
}

impl Report {
    pub fn healthy(&self) -> bool {
        match self {
            Report::Answered(s) => s.healthy,
            Report::Silent { .. } => false,
        }
    }
}

/// The reports of this node's regfs mounts, or of the one at `only`.
pub async fn reports(only: Option<&Path>) -> Result<Vec<Report>> {
    let mounts = regfs_mounts();
    let only = match only {
        Some(p) => {
            let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            if !mounts.contains(&abs) {
                return Err(err!(
                    ENOENT,
                    "{} is not a regfs mount (see /proc/mounts)",
                    p.display()
                ));
            }
            Some(abs)
        }
        None => None,
    };
    let mut dirs = vec![socket_dir()];
    if nix::unistd::geteuid().is_root()
        && let Ok(users) = std::fs::read_dir("/run/user")
    {
        dirs.extend(users.flatten().map(|u| u.path().join("regfs")));
    }
    let mut answers = HashMap::new();
    for d in &dirs {
        answers.extend(ask_all(d).await);
    }
    Ok(mounts
        .into_iter()
        .filter(|m| only.as_ref().is_none_or(|o| o == m))
        .map(|m| match answers.remove(&m) {
            Some(s) => Report::Answered(s),
            None => Report::Silent {
                mountpoint: m.display().to_string(),
                healthy: false,
                problems: vec![
                    "the mount does not answer on a control socket: its regfs is hung, \
                     killed (`regfs mount` on it again recovers it), or another user's"
                        .into(),
                ],
            },
        })
        .collect())
}

/// `regfs status` as text, one block per mount.
pub fn text(reports: &[Report]) -> String {
    let mut out = String::new();
    if reports.is_empty() {
        out.push_str("no regfs mounts on this node\n");
    }
    for r in reports {
        match r {
            Report::Silent {
                mountpoint,
                problems,
                ..
            } => {
                out.push_str(&format!("{mountpoint}: NOT HEALTHY\n"));
                for p in problems {
                    out.push_str(&format!("  problem: {p}\n"));
                }
            }
            Report::Answered(s) => {
                out.push_str(&format!(
                    "{}: {} (pid {}, up {}, regfs {})\n",
                    s.mountpoint,
                    if s.healthy { "healthy" } else { "NOT HEALTHY" },
                    s.pid,
                    uptime(s.uptime_secs),
                    s.version
                ));
                out.push_str(&format!(
                    "  source: {}{}; {} threads{}\n",
                    s.source,
                    if s.read_only { " (read-only)" } else { "" },
                    s.threads,
                    if s.trusts_feed {
                        "; opens trust the change feed"
                    } else {
                        ""
                    }
                ));
                for d in &s.databases {
                    let state = match (&d.error, d.answer_ms) {
                        (Some(e), _) => format!("NOT REACHABLE: {e}"),
                        (None, Some(ms)) => format!("reachable ({ms:.1} ms)"),
                        (None, None) => "reachable".into(),
                    };
                    out.push_str(&format!(
                        "  database {} ({}): {state}\n",
                        d.name,
                        d.mounted_at.join(", ")
                    ));
                    if let Some(f) = &d.feed {
                        out.push_str(&format!(
                            "    change feed: {}, {}\n",
                            f.how,
                            if f.healthy { "healthy" } else { "NOT HEALTHY" }
                        ));
                    }
                }
                out.push_str(&format!(
                    "  open files: {} ({} with changes not yet committed); inodes known: {}\n",
                    s.holdings.open_files, s.holdings.pending_commit, s.holdings.inodes
                ));
                for p in &s.problems {
                    out.push_str(&format!("  problem: {p}\n"));
                }
            }
        }
    }
    out
}

fn uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_mounts_escapes_are_undone() {
        assert_eq!(unescape(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape(r"/a\134b"), r"/a\b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn uptimes_read_as_people_say_them() {
        assert_eq!(uptime(5), "5s");
        assert_eq!(uptime(125), "2m 5s");
        assert_eq!(uptime(7300), "2h 1m");
        assert_eq!(uptime(90000), "1d 1h");
    }
}
