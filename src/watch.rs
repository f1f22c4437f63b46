//! The change watcher: what other processes commit (another regfs node, a Carbon node, a
//! second mount of the same SQLite file, a change of permissions) is pushed out of this node's
//! caches and the kernel's, so that it shows at once instead of when a TTL runs out.
//!
//! Its sources, one loop:
//! - the databases' change token ([`RegFs::change_token`], SQLite's commit counter): when it
//!   moves, everything cached is dropped;
//! - the servers' change feeds ([`crate::registry::Registry::start_feeds`]): the paths they
//!   name are dropped (everything, when a feed lost track);
//! - the permission cache's epoch: a change of users, roles or permissions drops everything,
//!   since the kernel's cached lookups were decided under the old rules.
//!
//! Kernel notifications go through [`KernelNotify`], which `fuse.rs` implements, so the loop
//! runs without a kernel in tests. It runs on a thread of its own: a notification waits for
//! the kernel's locks, which a request in progress may hold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::fs::{Dropped, Ino, ROOT_INO, RegFs};
use crate::store::Heard;

/// How often the watcher asks the databases whether another process committed (and, without
/// a feed message, how long it waits for one).
pub const WATCH_EVERY: Duration = Duration::from_millis(100);

/// The kernel's caches, as the watcher drops them.
pub trait KernelNotify: Send + Sync {
    /// Drops the attributes and pages the kernel holds of `ino` (a directory: its listing).
    fn inval_inode(&self, ino: Ino);
    /// Drops only the attributes the kernel holds of `ino`, keeping its pages.
    fn inval_attrs(&self, ino: Ino);
    /// Expires the entry `name` in the directory `parent`: looked up again at its next use.
    fn expire_entry(&self, parent: Ino, name: &str);
}

/// What the watcher listens to.
pub struct Sources {
    /// The databases report every commit of another process through the change token.
    pub token: bool,
    /// The servers' change feeds (see [`crate::registry::Registry::start_feeds`]).
    pub feed: Option<Receiver<Heard>>,
}

/// What to drop at the next pass.
#[derive(Default)]
struct Due {
    everything: bool,
    /// The UM tables changed: the permission cache is brought up to date first.
    permissions: bool,
    paths: Vec<String>,
}

impl Due {
    fn take(&mut self, heard: Heard) {
        match heard {
            Heard::Everything => self.everything = true,
            Heard::Permissions => self.permissions = true,
            Heard::Paths(p) if !self.everything => self.paths.extend(p),
            Heard::Paths(_) => {}
        }
    }

    fn is_empty(&self) -> bool {
        !self.everything && !self.permissions && self.paths.is_empty()
    }
}

/// Runs until `on` turns false (checked every [`WATCH_EVERY`]).
pub fn run(
    fs: &RegFs,
    kernel: &dyn KernelNotify,
    rt: &tokio::runtime::Handle,
    on: &AtomicBool,
    mut sources: Sources,
) {
    let mut failing = false;
    let mut epoch = fs.permission_epoch();
    // A read that began before the other process's commit may still be in flight when its
    // entries are dropped, and then remember (here, and in the kernel) what it read: what is
    // dropped is dropped once more an interval later.
    let mut again = Due::default();
    let mut again_at = Instant::now();
    loop {
        let mut due = Due::default();
        match &sources.feed {
            Some(rx) => match rx.recv_timeout(WATCH_EVERY) {
                Ok(heard) => {
                    due.take(heard);
                    while let Ok(more) = rx.try_recv() {
                        due.take(more);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => sources.feed = None,
            },
            None => std::thread::sleep(WATCH_EVERY),
        }
        if !on.load(Ordering::Relaxed) {
            return;
        }
        let mut token = None;
        if sources.token {
            match rt.block_on(fs.change_token()) {
                Ok(Some(t)) => {
                    if std::mem::take(&mut failing) {
                        info!("checking the databases for changes made elsewhere again");
                    }
                    if fs.changed_elsewhere(&t) {
                        due.everything = true;
                        info!(
                            "another process changed the databases or the permissions: cached entries dropped"
                        );
                    }
                    token = Some(t);
                }
                // The databases are fixed for the mount's life: no store stops telling.
                Ok(None) => sources.token = false,
                Err(e) => {
                    if !failing {
                        warn!("cannot check the databases for changes made elsewhere: {e}");
                    }
                    failing = true;
                }
            }
        }
        // Another process committed to the databases (maybe to the UM tables) or a feed said
        // the UM tables changed: the permission cache is checked now rather than at its next
        // poll, and, if it moved, every decision cached (here and in the kernel) goes below.
        if due.permissions || due.everything {
            if let Err(e) = rt.block_on(fs.refresh_permissions()) {
                warn!("cannot check the user-management tables for changes: {e}");
            }
            due.permissions = false;
        }
        let now_epoch = fs.permission_epoch();
        if now_epoch != epoch {
            epoch = now_epoch;
            due.everything = true;
        }
        let late = if !again.is_empty() && Instant::now() >= again_at {
            std::mem::take(&mut again)
        } else {
            Due::default()
        };
        if due.is_empty() && late.is_empty() {
            continue;
        }
        let everything = due.everything || late.everything;
        let dropped = if everything {
            fs.forget_cached(token)
        } else {
            let mut paths = due.paths.clone();
            paths.extend(late.paths);
            fs.forget_paths(&paths)
        };
        notify(kernel, &dropped);
        debug!(
            entries = dropped.len(),
            everything, "changes made elsewhere: cached entries dropped"
        );
        // What was heard just now is dropped once more an interval later (not what was
        // dropped for the second time).
        if !due.is_empty() {
            if again.is_empty() {
                again_at = Instant::now() + WATCH_EVERY;
            }
            again.everything |= due.everything;
            again.paths.extend(due.paths);
            if again.everything {
                again.paths.clear();
            }
        }
    }
}

fn notify(kernel: &dyn KernelNotify, dropped: &[Dropped]) {
    for d in dropped {
        if d.open {
            kernel.inval_attrs(d.ino);
        } else {
            kernel.inval_inode(d.ino);
        }
        // Expired, not dropped: a directory dropped while it is some process's working
        // directory would read as deleted to that process (see `fuse::Expirer`).
        if d.ino != ROOT_INO {
            kernel.expire_entry(d.parent, &d.name);
        }
    }
}
