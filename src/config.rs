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

/// The user-management database of the embedded default.
pub async fn embedded_um(data_dir: &Path) -> Result<UmDb> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        err!(
            EIO,
            "cannot create the data directory {}: {e}",
            data_dir.display()
        )
    })?;
    UmDb::open(&data_dir.join(SHARED_DB), SUPER_TENANT_ID).await
}

/// Opens (creating and initializing as needed) the embedded default's databases and returns the
/// registry over them, with the mount bookkeeping rows written.
pub async fn embedded_registry(data_dir: &Path, opts: StoreOptions) -> Result<Registry> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        err!(
            EIO,
            "cannot create the data directory {}: {e}",
            data_dir.display()
        )
    })?;
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
        })
        .collect();
    // The embedded default keeps the user-management tables in the shared database, as a
    // Carbon cluster keeps them in the shared UM database.
    let um = Arc::new(UmDb::open(&data_dir.join(SHARED_DB), SUPER_TENANT_ID).await?);
    let authz = Arc::new(Authorizer::new(um, ADMIN_USER));
    authz.refresh().await?;
    authz.spawn_refresher(PERMISSION_REFRESH);
    let registry = Registry::new(MountTable::new(root, mounts), Some(authz));
    registry.record_mounts().await?;
    Ok(registry)
}
