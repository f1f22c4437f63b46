//! Configuration: where the databases are and how the registry tree is mounted. With nothing
//! configured, regfs uses the embedded default: two SQLite files in a data directory, laid out
//! like a Carbon default install (the node's own database at `/`, a "shared" database mounted at
//! `/_system/config` and `/_system/governance` with target paths equal to the mount paths).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::authz::Authorizer;
use crate::err;
use crate::error::Result;
use crate::mount_table::{Mount, MountTable};
use crate::registry::Registry;
use crate::store::server::ServerStore;
use crate::store::server::db::{Pool, ServerOptions};
use crate::store::sqlite::SqliteStore;
use crate::store::{SUPER_TENANT_ID, Store, StoreOptions};
use crate::um::{ADMIN_USER, UmDb};

/// How often a running mount checks the user-management tables for changes.
pub const PERMISSION_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// File names of the embedded default's databases inside the data directory.
pub const LOCAL_DB: &str = "local.db";
pub const SHARED_DB: &str = "shared.db";
/// Carbon's default `remoteInstance` id for the shared database.
pub const SHARED_INSTANCE_ID: &str = "gov";
/// The partitions the shared database holds in the embedded default.
pub const SHARED_PARTITIONS: [&str; 2] = ["/_system/config", "/_system/governance"];

/// The default data directory: `/var/lib/regfs` for root, `$XDG_DATA_HOME/regfs` (or
/// `~/.local/share/regfs`) for other users.
pub fn default_data_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/regfs");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("regfs");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/regfs"),
        None => PathBuf::from("/var/lib/regfs"),
    }
}

fn ensure_data_dir(data_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        err!(
            EIO,
            "cannot create the data directory {}: {e}",
            data_dir.display()
        )
    })
}

/// The user-management database of the embedded default.
pub async fn embedded_um(data_dir: &Path) -> Result<UmDb> {
    ensure_data_dir(data_dir)?;
    UmDb::open(&data_dir.join(SHARED_DB), SUPER_TENANT_ID).await
}

/// Opens (creating and initializing as needed) the embedded default's databases and returns the
/// registry over them, with the mount bookkeeping rows written.
pub async fn embedded_registry(data_dir: &Path, opts: StoreOptions) -> Result<Registry> {
    // A refused mount changes nothing in the data directory: what this attempt created (the
    // directory, a database file and its journal) goes again.
    let new_dir = !data_dir.exists();
    let created: Vec<PathBuf> = [LOCAL_DB, SHARED_DB]
        .iter()
        .flat_map(|db| ["", "-wal", "-shm", "-journal"].map(|s| data_dir.join(format!("{db}{s}"))))
        .filter(|f| !f.exists())
        .collect();
    let result = open_embedded(data_dir, opts).await;
    if result.is_err() {
        for f in &created {
            let _ = std::fs::remove_file(f);
        }
        if new_dir {
            let _ = std::fs::remove_dir(data_dir);
        }
    }
    result
}

async fn open_embedded(data_dir: &Path, opts: StoreOptions) -> Result<Registry> {
    ensure_data_dir(data_dir)?;
    let local: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&data_dir.join(LOCAL_DB), opts.clone()).await?);
    let shared: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&data_dir.join(SHARED_DB), opts).await?);
    local.init().await?;
    shared.init().await?;
    let root = Mount {
        path: "/".into(),
        target: "/".into(),
        instance_id: "local".into(),
        store: local,
        store_id: 0,
        read_only: false,
        replace_local: true,
    };
    let mounts = SHARED_PARTITIONS
        .iter()
        .map(|p| Mount {
            path: p.to_string(),
            target: p.to_string(),
            instance_id: SHARED_INSTANCE_ID.into(),
            store: shared.clone(),
            store_id: 1,
            read_only: false,
            replace_local: true,
        })
        .collect();
    // The embedded default keeps the user-management tables in the shared database, as a
    // Carbon cluster keeps them in the shared UM database.
    let um = Arc::new(embedded_um(data_dir).await?);
    let authz = Arc::new(Authorizer::new(um, ADMIN_USER));
    authz.refresh().await?;
    authz.spawn_refresher(PERMISSION_REFRESH);
    let registry = Registry::new(MountTable::new(root, mounts), Some(authz));
    registry.record_mounts().await?;
    Ok(registry)
}

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
fn default_admin() -> String {
    ADMIN_USER.to_string()
}

/// The configuration the command line names: a TOML file (`--config`), a WSO2 product's conf
/// directory (`--wso2-conf`), or neither (the embedded default).
pub fn load_source(config: Option<&Path>, wso2_conf: Option<&Path>) -> Result<Option<FileConfig>> {
    match (config, wso2_conf) {
        (Some(_), Some(_)) => Err(err!(
            EINVAL,
            "--config and --wso2-conf both name a configuration: give one"
        )),
        (Some(file), None) => FileConfig::load(file).map(Some),
        (None, Some(dir)) => crate::wso2conf::load(dir).map(Some),
        (None, None) => Ok(None),
    }
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

fn server_options(
    d: &DataSource,
    key: &str,
    url: String,
    connections: u32,
) -> Result<ServerOptions> {
    Ok(ServerOptions {
        url,
        password: d.password(key)?,
        max_connections: connections,
        timeout: std::time::Duration::from_secs(d.busy_timeout_secs.max(1)),
    })
}

/// Connects to the store of one data source; nothing is written.
async fn open_store(cfg: &FileConfig, name: &str, d: &DataSource) -> Result<Arc<dyn Store>> {
    let key = format!("data_sources.{name}");
    let timeout = std::time::Duration::from_secs(d.busy_timeout_secs.max(1));
    let opts = StoreOptions {
        tenant_id: cfg.tenant,
        busy_timeout: timeout,
        version_on_change: cfg.version_resources_on_change,
        ..StoreOptions::default()
    };
    let store: Arc<dyn Store> = match d.location(&format!("{key}.url"))? {
        Location::Sqlite(file) => {
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    err!(
                        EIO,
                        "data source {name}: cannot create {}: {e}",
                        parent.display()
                    )
                })?;
            }
            Arc::new(SqliteStore::open(&file, opts).await?)
        }
        Location::Server(url) => {
            let server = server_options(d, &key, url, d.max_connections.unwrap_or(8))?;
            Arc::new(
                ServerStore::open(name, server, opts)
                    .await
                    .map_err(|e| err!(EIO, "data source {name}: {}", e.message()))?,
            )
        }
    };
    tracing::info!(data_source = name, store = store.name(), "opened");
    Ok(store)
}

/// `e` with the data source's name in front.
fn in_source(name: &str, e: crate::Error) -> crate::Error {
    crate::Error::new(e.errno(), format!("data source {name}: {}", e.message()))
}

/// `regfs init` for a config file: creates what each data source lacks of the schema (on a
/// server, Carbon's registry tables only where there are none, and regfs's own `REGFS_*`
/// objects) and the user-management tables where they are missing. Needs a database user who
/// may create tables; a mount afterwards only reads the catalog.
pub async fn install(cfg: &FileConfig) -> Result<()> {
    for (name, d) in &cfg.data_sources {
        let store = open_store(cfg, name, d).await?;
        store.install().await.map_err(|e| in_source(name, e))?;
    }
    if let (key, d, Location::Server(url)) = um_location(cfg)? {
        let pool = Pool::connect(&server_options(d, &key, url, 2)?).await?;
        UmDb::install_server(&pool).await?;
    }
    Ok(())
}

/// Opens the data sources, builds the mount table and authorizer a config file describes.
/// Every database's catalog is checked before anything is written, so that a mount refused
/// for a missing table leaves every database as it was.
pub async fn registry_from(cfg: &FileConfig) -> Result<Registry> {
    let mut stores: std::collections::BTreeMap<&str, (usize, Arc<dyn Store>)> = Default::default();
    for (i, (name, d)) in cfg.data_sources.iter().enumerate() {
        let store = open_store(cfg, name, d).await?;
        store.check().await.map_err(|e| in_source(name, e))?;
        stores.insert(name.as_str(), (i, store));
    }
    let um = um_checked(cfg).await?;
    for (name, (_, store)) in &stores {
        store.init().await.map_err(|e| in_source(name, e))?;
    }
    um.seed().await?;
    let (root_id, root_store) = stores[cfg.node_data_source.as_str()].clone();
    let root = Mount {
        path: "/".into(),
        target: "/".into(),
        instance_id: cfg.node_data_source.clone(),
        store: root_store,
        store_id: root_id,
        read_only: false,
        replace_local: true,
    };
    let mut mounts = Vec::new();
    for m in &cfg.mounts {
        let inst = &cfg.remote_instances[&m.instance];
        let (id, store) = stores[inst.data_source.as_str()].clone();
        if m.overwrite == Overwrite::False {
            // Carbon skips such a mount when something already exists at the path locally.
            let local = stores[cfg.node_data_source.as_str()]
                .1
                .stat(&m.path)
                .await?;
            if local.is_some_and(|e| e.media_type.as_deref() != Some(crate::store::LINK_MEDIA_TYPE))
            {
                tracing::warn!(
                    path = %m.path,
                    "unable to create remote mount: a resource already exists at the given location (overwrite=false); mount skipped"
                );
                continue;
            }
        }
        mounts.push(Mount {
            path: m.path.clone(),
            target: m.target_path.clone(),
            instance_id: m.instance.clone(),
            store,
            store_id: id,
            read_only: inst.read_only,
            replace_local: m.overwrite != Overwrite::Virtual,
        });
        // The mounted collection must exist in its database.
        let (_, s) = &stores[inst.data_source.as_str()];
        if s.stat(&m.target_path).await?.is_none() {
            s.create_path(&m.target_path, crate::store::SYSTEM_USER)
                .await?;
        }
    }
    let um = Arc::new(um);
    let admin = cfg
        .user_management
        .as_ref()
        .map(|u| u.admin_user.clone())
        .unwrap_or_else(default_admin);
    let authz = Arc::new(Authorizer::new(um, admin));
    authz.refresh().await?;
    let every = cfg
        .cache
        .permission_refresh_ms
        .map(std::time::Duration::from_millis)
        .unwrap_or(PERMISSION_REFRESH);
    authz.spawn_refresher(every);
    let registry = Registry::new(MountTable::new(root, mounts), Some(authz));
    registry.record_mounts().await?;
    Ok(registry)
}

/// The user-management database a config file names, seeded as Carbon seeds a new realm.
pub async fn um_from(cfg: &FileConfig) -> Result<UmDb> {
    let um = um_checked(cfg).await?;
    um.seed().await?;
    Ok(um)
}

/// The user-management data source's key, definition and location.
fn um_location(cfg: &FileConfig) -> Result<(String, &DataSource, Location)> {
    let um_source = cfg
        .user_management
        .as_ref()
        .map(|u| u.data_source.as_str())
        .unwrap_or(cfg.node_data_source.as_str());
    let d = &cfg.data_sources[um_source];
    let key = format!("data_sources.{um_source}");
    let location = d.location(&format!("{key}.url"))?;
    Ok((key, d, location))
}

/// The user-management database, its catalog checked; not seeded yet (see [`UmDb::seed`]).
async fn um_checked(cfg: &FileConfig) -> Result<UmDb> {
    match um_location(cfg)? {
        (_, _, Location::Sqlite(file)) => UmDb::open(&file, cfg.tenant).await,
        (key, d, Location::Server(url)) => {
            let pool = Pool::connect(&server_options(d, &key, url, 2)?).await?;
            UmDb::check_server(pool, cfg.tenant).await.map_err(|e| {
                let source = key.trim_start_matches("data_sources.");
                crate::Error::new(
                    e.errno(),
                    format!("user management on {source}: {}", e.message()),
                )
            })
        }
    }
}
