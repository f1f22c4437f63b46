//! Wiring: opens the databases a configuration names (or the embedded default's) and builds
//! the registry over them, with its mount table and permission cache. With nothing
//! configured, regfs uses the embedded default: two SQLite files in a data directory, laid out
//! like a Carbon default install (the node's own database at `/`, a "shared" database mounted at
//! `/_system/config` and `/_system/governance` with target paths equal to the mount paths).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::authz::Authorizer;
use crate::config::{DataSource, FileConfig, Location, Overwrite};
use crate::err;
use crate::error::Result;
use crate::mount_table::{Mount, MountTable};
use crate::registry::Registry;
use crate::sql::{Pool, ServerOptions};
use crate::store::server::ServerStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreOptions};
use crate::um::UmDb;

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

/// The embedded default as a configuration: the node's own database `local.db` (data source
/// `local`) at `/`, the shared database `shared.db` (data source `shared`, remote instance
/// `gov`) mounted at `/_system/config` and `/_system/governance` under the same paths, and the
/// user-management tables in the shared database, as a Carbon cluster keeps them. It goes
/// through the same wiring as a configuration file.
pub fn embedded_config(data_dir: &Path) -> Result<FileConfig> {
    let url = |db: &str| -> Result<String> {
        let file = data_dir.join(db);
        let file = file.to_str().ok_or_else(|| {
            err!(
                EINVAL,
                "the data directory {} is not valid UTF-8: give one that is (--data-dir)",
                data_dir.display()
            )
        })?;
        // A TOML string, quoted and escaped.
        Ok(toml::Value::String(format!("sqlite:{file}")).to_string())
    };
    let mounts: String = SHARED_PARTITIONS
        .iter()
        .map(|p| {
            format!(
                "[[mounts]]\npath = \"{p}\"\ninstance = \"{SHARED_INSTANCE_ID}\"\ntarget_path = \"{p}\"\n\n"
            )
        })
        .collect();
    let text = format!(
        "node_data_source = \"local\"\n\n\
         [data_sources.local]\nurl = {}\n\n\
         [data_sources.shared]\nurl = {}\n\n\
         [remote_instances.{SHARED_INSTANCE_ID}]\ndata_source = \"shared\"\n\n\
         {mounts}\
         [user_management]\ndata_source = \"shared\"\n",
        url(LOCAL_DB)?,
        url(SHARED_DB)?
    );
    let cfg: FileConfig = toml::from_str(&text)
        .map_err(|e| err!(EIO, "the embedded default's configuration: {e}"))?;
    cfg.check()?;
    Ok(cfg)
}

/// The user-management database of the embedded default.
pub async fn embedded_um(data_dir: &Path) -> Result<UmDb> {
    let cfg = embedded_config(data_dir)?;
    ensure_data_dir(data_dir)?;
    um_from(&cfg).await
}

/// Opens (creating and initializing as needed) the embedded default's databases and returns the
/// registry over them, with the mount bookkeeping rows written: [`registry_from`] of
/// [`embedded_config`].
pub async fn embedded_registry(data_dir: &Path) -> Result<Registry> {
    let cfg = embedded_config(data_dir)?;
    // A refused mount changes nothing in the data directory: what this attempt created (the
    // directory, a database file and its journal) goes again.
    let new_dir = !data_dir.exists();
    let created: Vec<PathBuf> = [LOCAL_DB, SHARED_DB]
        .iter()
        .flat_map(|db| ["", "-wal", "-shm", "-journal"].map(|s| data_dir.join(format!("{db}{s}"))))
        .filter(|f| !f.exists())
        .collect();
    let result = match ensure_data_dir(data_dir) {
        Ok(()) => registry_from(&cfg).await,
        Err(e) => Err(e),
    };
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
        .unwrap_or_else(crate::config::default_admin);
    let authz = Arc::new(Authorizer::new(um, admin));
    authz.refresh().await?;
    let every = cfg
        .cache
        .permission_refresh_ms
        .map(std::time::Duration::from_millis)
        .unwrap_or(PERMISSION_REFRESH);
    authz.spawn_refresher(every);
    let registry = Registry::new(MountTable::new(root, mounts), Some(authz))
        .trusting_feeds(cfg.cache.open_trusts_feed);
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
