//! Coherence with the kernel's caches: what regfs forgets when something else changed the
//! databases (the change watcher and the change feed call in here), what it tells the kernel
//! to drop through [`KernelCache`] (implemented by `fuse.rs`), and what stays valid meanwhile.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::Ino;
use super::{ROOT_INO, RegFs};
use crate::error::Result;
use crate::path;

/// The kernel's caches, as far as regfs itself must drop them (the FUSE adapter implements
/// it; nothing is dropped without one, e.g. in tests without a kernel).
pub trait KernelCache: Send + Sync {
    /// Drops the pages the kernel holds of `ino` (and its attributes). Must not wait for the
    /// kernel: it may be called while a request on `ino` is being answered.
    fn drop_pages(&self, ino: Ino);
}

/// What the kernel should drop after [`RegFs::forget_cached`]: an inode's attributes and
/// pages, and the name it was looked up by.
#[derive(Debug, Clone)]
pub struct Dropped {
    pub ino: Ino,
    pub parent: Ino,
    pub name: String,
    /// Open on this node: the kernel keeps its pages, only its attributes go (see
    /// [`RegFs::forget_paths`]).
    pub open: bool,
}

impl RegFs {
    /// Gives regfs the kernel's caches to drop what it must (content refused at commit).
    pub fn set_kernel_cache(&self, kernel: Arc<dyn KernelCache>) {
        let _ = self.kernel.set(kernel);
    }

    /// See [`Registry::permission_epoch`].
    pub fn permission_epoch(&self) -> u64 {
        self.registry.permission_epoch()
    }

    /// See [`Registry::refresh_permissions`].
    pub async fn refresh_permissions(&self) -> Result<()> {
        self.registry.refresh_permissions().await
    }

    /// See [`Registry::change_token`].
    pub async fn change_token(&self) -> Result<Option<Vec<i64>>> {
        self.registry.change_token().await
    }

    /// Whether `token` (the databases' change token now) differs from the one what regfs
    /// remembers agrees with: something else committed since.
    pub fn changed_elsewhere(&self, token: &[i64]) -> bool {
        self.seen.lock().as_deref() != Some(token)
    }

    /// Whether nothing else committed since what regfs remembers was last brought up to date:
    /// then a content version recorded as cached by the kernel is still the live one. Always
    /// false on a mount that is not watched.
    pub(super) async fn quiet(&self) -> Result<bool> {
        if self.seen.lock().is_none() {
            return Ok(false);
        }
        Ok(match self.change_token().await? {
            Some(token) => !self.changed_elsewhere(&token),
            None => false,
        })
    }

    /// Forgets every entry regfs remembers from the database (and which content versions the
    /// kernel's page cache holds), after something else changed the databases or the
    /// permissions; `token`, if given, is the change token this catches up with. Returns every
    /// inode the kernel knows, with its name, so that the caller can make the kernel drop them
    /// too.
    pub fn forget_cached(&self, token: Option<Vec<i64>>) -> Vec<Dropped> {
        // Under `seen`, so that no open finds the new token before the versions are forgotten.
        let mut seen = self.seen.lock();
        self.era.fetch_add(1, Ordering::SeqCst);
        let mut inodes = self.inodes.lock();
        let mut out = Vec::with_capacity(inodes.nodes.len());
        for (&ino, n) in inodes.nodes.iter_mut() {
            n.last = None;
            n.fetched = None;
            n.cached_version = None;
            if ino != ROOT_INO {
                out.push(Dropped {
                    ino,
                    parent: n.parent,
                    name: n.name.clone(),
                    open: false,
                });
            }
        }
        if let Some(token) = token {
            *seen = Some(token);
        }
        out
    }

    /// Forgets what regfs remembers of `paths` (registry paths another process changed) and
    /// of their directories, whose listings and times move with them. Returns the inodes the
    /// kernel knows among them, for the caller to make it drop them too (the root among them:
    /// it has no entry to expire). A path regfs never looked up is nothing to drop: the
    /// kernel caches no negative entries of regfs's (see `fuse.rs`' lookup).
    ///
    /// A file open on this node keeps its pages in the kernel: only its attributes are
    /// dropped. Its open handles read the version they opened (regfs may not hold that
    /// content itself: a kept page cache serves the reads), as they did before the feed
    /// existed; the next open compares versions as always.
    pub fn forget_paths(&self, paths: &[String]) -> Vec<Dropped> {
        let _seen = self.seen.lock();
        self.era.fetch_add(1, Ordering::SeqCst);
        let open: HashSet<Ino> = self.open_files.lock().keys().copied().collect();
        let mut inodes = self.inodes.lock();
        let mut out: Vec<Dropped> = Vec::new();
        for p in paths {
            let dir = path::parent(p).unwrap_or("/");
            for ino in [inodes.find(p), inodes.find(dir)].into_iter().flatten() {
                if out.iter().any(|d| d.ino == ino) {
                    continue;
                }
                let Some(n) = inodes.nodes.get_mut(&ino) else {
                    continue;
                };
                // `last` stays: it is what the kernel was told, and what an unlinked inode
                // that is still open answers getattr with. Without `fetched` the next getattr
                // reads the database.
                n.fetched = None;
                let open = open.contains(&ino);
                if !open {
                    n.cached_version = None;
                }
                out.push(Dropped {
                    ino,
                    parent: n.parent,
                    name: n.name.clone(),
                    open,
                });
            }
        }
        out
    }

    /// Forgets that `ino`'s attributes are recent: a local change moved them (a collection's
    /// times when an entry comes or goes, a file's ctime when it moves).
    pub(super) fn stale(&self, ino: Ino) {
        if let Some(n) = self.inodes.lock().nodes.get_mut(&ino) {
            n.fetched = None;
        }
    }

    /// A local change in the collection `ino` committed its new mtime and ctime `t`: what we
    /// remember of it is as recent as it was, with those times. (The kernel drops a directory's
    /// attributes whenever an entry in it comes or goes, and asks again at the next path walk
    /// through it: every create or unlink in a row would otherwise read the collection back.)
    pub(super) fn touched(&self, ino: Ino, t: SystemTime) {
        if let Some(e) = self
            .inodes
            .lock()
            .nodes
            .get_mut(&ino)
            .and_then(|n| n.last.as_mut())
        {
            e.mtime = t;
            e.ctime = t;
        }
    }
}
