//! The configuration model: where the databases are and how the registry tree is mounted, as
//! a TOML file says it (`regfs mount --config FILE`). [`crate::wso2conf`] reads the same model
//! from a WSO2 product's conf directory; [`crate::wiring`] opens what it names.

use std::path::{Path, PathBuf};

use crate::err;
use crate::error::Result;
use crate::store::SUPER_TENANT_ID;
use crate::um::ADMIN_USER;

/// A configuration file (`regfs mount --config FILE`): data sources, remote instances, mounts,
/// the user-management database, tenant and uid map. See `examples/regfs.toml`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Tenant id every row carries (default: the super tenant, -1234).
    #[serde(default = "default_tenant")]
    pub tenant: i64,
    /// Which data source is this node's own database (Carbon's `currentDBConfig`): it holds `/`
    /// and `/_system/local`.
    pub node_data_source: String,
    pub data_sources: std::collections::BTreeMap<String, DataSource>,
    #[serde(default)]
    pub remote_instances: std::collections::BTreeMap<String, RemoteInstance>,
    #[serde(default)]
    pub mounts: Vec<MountConfig>,
    /// The data source holding the `UM_*` tables (default: the node's own).
    pub user_management: Option<UserManagement>,
    /// Local account name or uid → registry user.
    #[serde(default)]
    pub user_map: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Carbon's `<versionResourcesOnChange>` (registry.xml): archive every overwritten,
    /// removed or replaced resource as a version, as Carbon does (default false, as Carbon's).
    #[serde(default)]
    pub version_resources_on_change: bool,
    /// Registry properties as extended attributes (`-o xattr` does the same; default false:
    /// see README, "Extended attributes").
    #[serde(default)]
    pub xattr: bool,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    /// `sqlite:PATH`, `postgres://USER@HOST:PORT/DB`, `mysql://USER@HOST:PORT/DB` (or
    /// `mariadb://`), or the JDBC form of the last two (`jdbc:postgresql://...`,
    /// `jdbc:mysql://...`, `jdbc:mariadb://...`).
    pub url: String,
    /// The user, when the URL does not carry one (as in JDBC URLs).
    pub username: Option<String>,
    /// Seconds one operation may wait for the database (a lock, a connection, an answer)
    /// before it fails with EIO.
    #[serde(default = "default_busy_timeout")]
    pub busy_timeout_secs: u64,
    /// Connections to a server database (default 8).
    pub max_connections: Option<u32>,
    /// Password from an environment variable or a file, never in the config itself.
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// A password given in place (by a WSO2 datasource definition); never read from TOML.
    #[serde(skip)]
    pub password: Option<String>,
}

/// Where a data source lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    /// A server URL in sqlx's form (`postgres://` or `mysql://`), user included.
    Server(String),
}

impl DataSource {
    /// Where this data source lives, or a clear refusal for what regfs cannot open.
    pub fn location(&self, key: &str) -> Result<Location> {
        let url = self.url.trim();
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if rest.is_empty() {
                return Err(err!(EINVAL, "{key}: {url:?} names no file"));
            }
            return Ok(Location::Sqlite(PathBuf::from(rest)));
        }
        let server = translate_jdbc(url)
            .map_err(|hint| err!(EINVAL, "{key}: cannot open {url:?}: {hint}"))?;
        let server = match &self.username {
            Some(user) if !server.contains('@') => {
                let (scheme, rest) = server.split_once("://").unwrap_or(("", &server));
                format!("{scheme}://{user}@{rest}")
            }
            _ => server,
        };
        Ok(Location::Server(server))
    }

    /// The password from password_env or password_file, if either is set.
    pub fn password(&self, key: &str) -> Result<Option<String>> {
        if let Some(p) = &self.password {
            return Ok(Some(p.clone()));
        }
        if let Some(var) = &self.password_env {
            return std::env::var(var).map(Some).map_err(|_| {
                err!(
                    EINVAL,
                    "{key}.password_env: the environment variable {var} is not set"
                )
            });
        }
        if let Some(file) = &self.password_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                err!(
                    EINVAL,
                    "{key}.password_file: cannot read {}: {e}",
                    file.display()
                )
            })?;
            return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
        }
        Ok(None)
    }
}

/// A server database URL in sqlx's form, from either sqlx's form or a JDBC URL as Carbon's
/// master-datasources.xml has it; `Err` is what to do instead.
pub fn translate_jdbc(url: &str) -> std::result::Result<String, String> {
    let lower = url.to_ascii_lowercase();
    let body = lower
        .strip_prefix("jdbc:")
        .map(|_| &url[5..])
        .unwrap_or(url);
    let lower_body = body.to_ascii_lowercase();
    let (scheme, rest) = if let Some(r) = strip_ci(body, "postgresql://") {
        ("postgres", r)
    } else if let Some(r) = strip_ci(body, "postgres://") {
        ("postgres", r)
    } else if let Some(r) = strip_ci(body, "mysql://") {
        ("mysql", r)
    } else if let Some(r) = strip_ci(body, "mariadb://") {
        ("mysql", r)
    } else if lower_body.starts_with("h2:") {
        return Err(
            "H2 (Carbon's embedded default) has no Rust driver; move the registry to \
             PostgreSQL or MySQL/MariaDB (Carbon's dbscripts create those schemas), or use a \
             sqlite: data source"
                .into(),
        );
    } else {
        return Err(
            "regfs opens sqlite:, postgres:// (jdbc:postgresql://) and mysql:// \
             (jdbc:mysql://, jdbc:mariadb://) data sources"
                .into(),
        );
    };
    // JDBC options (useSSL=false, autoReconnect=true, ...) are the Java driver's: drop them,
    // keeping only what the Rust drivers understand.
    let (hostpath, query) = rest.split_once('?').unwrap_or((rest, ""));
    let keep: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            let k = kv.split('=').next().unwrap_or("");
            matches!(
                k,
                "sslmode" | "host" | "socket" | "ssl-mode" | "ssl-ca" | "charset" | "options"
            )
        })
        .collect();
    if hostpath.is_empty() || !hostpath.contains('/') {
        return Err(format!(
            "the URL names no database (expected {scheme}://HOST[:PORT]/DATABASE)"
        ));
    }
    Ok(if keep.is_empty() {
        format!("{scheme}://{hostpath}")
    } else {
        format!("{scheme}://{hostpath}?{}", keep.join("&"))
    })
}

fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteInstance {
    pub data_source: String,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overwrite {
    True,
    False,
    Virtual,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    pub path: String,
    pub instance: String,
    pub target_path: String,
    #[serde(default = "default_overwrite")]
    pub overwrite: Overwrite,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserManagement {
    pub data_source: String,
    #[serde(default = "default_admin")]
    pub admin_user: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How often a mount checks the UM tables for changes (milliseconds).
    pub permission_refresh_ms: Option<u64>,
    /// An open file's content up to this size is kept in memory; larger content goes to a spool
    /// file (MiB, default 4).
    pub file_memory_mib: Option<u64>,
    /// Where spool files go (default `$TMPDIR`, else `/var/tmp`). They are unlinked from the
    /// start, so nothing is left behind.
    pub spool_dir: Option<PathBuf>,
    /// While a server database's change feed is healthy, answer opens, lookups and stats of
    /// what this node already read from memory instead of asking the database (default
    /// false: every open reads the live version). See SEMANTICS.md, "Changes made elsewhere".
    #[serde(default)]
    pub open_trusts_feed: bool,
}

impl CacheConfig {
    pub fn spool_policy(&self) -> crate::content::SpoolPolicy {
        let default = crate::content::SpoolPolicy::default();
        crate::content::SpoolPolicy {
            dir: self.spool_dir.clone().unwrap_or(default.dir),
            memory_limit: self
                .file_memory_mib
                .map_or(default.memory_limit, |m| m << 20),
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: Option<String>,
    pub file: Option<PathBuf>,
}

fn default_tenant() -> i64 {
    SUPER_TENANT_ID
}
fn default_busy_timeout() -> u64 {
    10
}
fn default_overwrite() -> Overwrite {
    Overwrite::True
}
pub(crate) fn default_admin() -> String {
    ADMIN_USER.to_string()
}

impl FileConfig {
    /// Reads and checks `file`; errors name the file, the key and what is wrong.
    pub fn load(file: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| err!(ENOENT, "cannot read config {}: {e}", file.display()))?;
        let cfg: FileConfig = toml::from_str(&text).map_err(|e| {
            err!(
                EINVAL,
                "config {}: {}",
                file.display(),
                e.to_string().trim()
            )
        })?;
        cfg.check()
            .map_err(|e| err!(EINVAL, "config {}: {}", file.display(), e.message()))?;
        Ok(cfg)
    }

    pub(crate) fn check(&self) -> Result<()> {
        let ds = |key: &str, name: &str| -> Result<()> {
            if self.data_sources.contains_key(name) {
                Ok(())
            } else {
                Err(err!(
                    EINVAL,
                    "{key}: no data source {name:?} in [data_sources]"
                ))
            }
        };
        ds("node_data_source", &self.node_data_source)?;
        for (id, inst) in &self.remote_instances {
            ds(
                &format!("remote_instances.{id}.data_source"),
                &inst.data_source,
            )?;
        }
        if let Some(um) = &self.user_management {
            ds("user_management.data_source", &um.data_source)?;
        }
        for (i, m) in self.mounts.iter().enumerate() {
            let key = format!("mounts[{i}]");
            if !self.remote_instances.contains_key(&m.instance) {
                return Err(err!(
                    EINVAL,
                    "{key}.instance: no remote instance {:?} in [remote_instances]",
                    m.instance
                ));
            }
            for (field, p) in [("path", &m.path), ("target_path", &m.target_path)] {
                if !p.starts_with('/') || crate::path::normalize(p) != *p {
                    return Err(err!(
                        EINVAL,
                        "{key}.{field}: {p:?} must be an absolute registry path without a trailing '/'"
                    ));
                }
            }
            if m.path == "/" {
                return Err(err!(
                    EINVAL,
                    "{key}.path: the registry root cannot be mounted over"
                ));
            }
            if crate::path::is_within(&m.path, "/_system/local") {
                return Err(err!(
                    EINVAL,
                    "{key}.path: {} is node-local (/_system/local) and is never mounted from another database",
                    m.path
                ));
            }
        }
        for (name, d) in &self.data_sources {
            d.location(&format!("data_sources.{name}.url"))?;
        }
        Ok(())
    }
}
