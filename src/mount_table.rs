//! The mount table: registry path → (store, target path), longest prefix wins, as `registry.xml`
//! mounts do in Carbon. The root entry (`/`) is the node's own database.

use std::sync::Arc;

use crate::path::{self, TargetPath};
use crate::store::Store;

/// One mount: everything at or below `path` lives in `store` under `target`.
#[derive(Clone)]
pub struct Mount {
    pub path: String,
    pub target: String,
    /// `remoteInstance` id (Carbon's `instanceId`), recorded in the mount bookkeeping rows.
    pub instance_id: String,
    pub store: Arc<dyn Store>,
    /// Index of the store in [`MountTable::stores`]; equal ids mean one database.
    pub store_id: usize,
    pub read_only: bool,
    /// Carbon's overwrite="true": the local database's content at the mount path is replaced by
    /// the link (false for overwrite="virtual", which keeps it hidden underneath).
    pub replace_local: bool,
}

/// Where a registry path lives.
pub struct Resolved<'a> {
    pub mount: &'a Mount,
    /// The path inside the mount's database.
    pub target: TargetPath,
}

#[derive(Clone)]
pub struct MountTable {
    /// Sorted longest path first, the root entry last.
    mounts: Arc<Vec<Mount>>,
}

impl MountTable {
    /// `root` is the node's own database; `mounts` are the `registry.xml`-style mounts.
    pub fn new(root: Mount, mut mounts: Vec<Mount>) -> Self {
        mounts.push(root);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.path.len()));
        Self {
            mounts: Arc::new(mounts),
        }
    }

    pub fn resolve(&self, p: &str) -> Resolved<'_> {
        let mount = self
            .mounts
            .iter()
            .find(|m| path::is_within(p, &m.path))
            .expect("the root mount covers every path");
        let rest = if mount.path == "/" {
            if p == "/" { "" } else { p }
        } else {
            &p[mount.path.len()..]
        };
        let target = TargetPath::new(match (mount.target.as_str(), rest) {
            ("/", "") => "/".to_string(),
            ("/", rest) => rest.to_string(),
            (t, rest) => format!("{t}{rest}"),
        });
        Resolved { mount, target }
    }

    /// The registry paths at which `target`, a path in the database of store `store_id`,
    /// shows: one per mount of that database whose target covers it, unless a more specific
    /// mount hides it there.
    pub fn registry_paths(&self, store_id: usize, target: &TargetPath) -> Vec<String> {
        let target = target.as_str();
        let mut out = Vec::new();
        for m in self.mounts.iter().filter(|m| m.store_id == store_id) {
            if !path::is_within(target, &m.target) {
                continue;
            }
            let rest = if m.target == "/" {
                if target == "/" { "" } else { target }
            } else {
                &target[m.target.len()..]
            };
            let p = match (m.path.as_str(), rest) {
                (mp, "") => mp.to_string(),
                ("/", rest) => rest.to_string(),
                (mp, rest) => format!("{mp}{rest}"),
            };
            let r = self.resolve(&p);
            if r.mount.store_id == store_id && r.target.as_str() == target && !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Mounts whose mount point is a direct child of `dir`, with that child's name.
    pub fn child_mounts<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, &'a Mount)> {
        self.mounts
            .iter()
            .filter(move |m| m.path != "/" && path::parent(&m.path) == Some(dir))
            .map(|m| (path::name(&m.path), m))
    }

    /// Whether `p` is a mount point (other than the root).
    pub fn is_mount_point(&self, p: &str) -> bool {
        p != "/" && self.mounts.iter().any(|m| m.path == p)
    }

    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Each database behind the table once (mounts on one database share its `store_id`).
    pub fn stores(&self) -> impl Iterator<Item = &Arc<dyn Store>> {
        self.per_store().map(|m| &m.store)
    }

    /// One mount per database behind the table (the first of those on it).
    pub fn per_store(&self) -> impl Iterator<Item = &Mount> {
        let first =
            |i: usize, m: &Mount| !self.mounts[..i].iter().any(|o| o.store_id == m.store_id);
        self.mounts
            .iter()
            .enumerate()
            .filter(move |&(i, m)| first(i, m))
            .map(|(_, m)| m)
    }

    /// The root entry: the node's own database.
    pub fn root(&self) -> &Mount {
        self.mounts
            .last()
            .expect("the root mount is always present")
    }
}
