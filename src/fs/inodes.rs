//! The inode table: which inode number stands for which registry path, with the kernel's
//! lookup counts, what each inode was last known as, and whether the kernel's page cache holds
//! its content. Inodes of removed entries that are still referenced stay until forgotten.

use std::collections::HashMap;
use std::time::Instant;

use super::ROOT_INO;
use crate::err;
use crate::error::Result;
use crate::store::{Entry, Kind};

/// An inode number: how the kernel names a file (FUSE's node id). Its own type, so that it is
/// never taken for a handle, a count or an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ino(pub u64);

/// A file or directory handle: what the kernel holds for an open file ([`RegFs::open`],
/// [`RegFs::opendir`]), numbered apart from inodes.
///
/// [`RegFs::open`]: super::RegFs::open
/// [`RegFs::opendir`]: super::RegFs::opendir
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fh(pub u64);

impl std::fmt::Display for Ino {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for Fh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

pub(super) struct Node {
    pub(super) parent: Ino,
    pub(super) name: String,
    pub(super) kind: Kind,
    /// Kernel references (lookups minus forgets).
    pub(super) lookups: u64,
    /// Nodes in the table whose parent is this node.
    pub(super) children: u64,
    /// Removed from the tree while still referenced (open or looked up).
    pub(super) unlinked: bool,
    pub(super) last: Option<Entry>,
    /// When `last` was read from the database; `None` once a local change made it stale.
    pub(super) fetched: Option<Instant>,
    /// The `REG_VERSION` whose content the kernel's page cache holds for this inode, if known:
    /// an open of the same version keeps the cache.
    pub(super) cached_version: Option<i64>,
    /// An open of this inode has been answered. Until then the kernel holds no pages of it
    /// (nothing reaches the page cache but through an open file), so an open may fill them
    /// itself: see [`Prefill`].
    pub(super) opened: bool,
}

pub(super) struct InodeTable {
    pub(super) nodes: HashMap<Ino, Node>,
    pub(super) by_name: HashMap<(Ino, String), Ino>,
    pub(super) next_ino: u64,
}

impl InodeTable {
    pub(super) fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_INO,
            Node {
                parent: ROOT_INO,
                name: String::new(),
                kind: Kind::Directory,
                lookups: 1,
                children: 0,
                unlinked: false,
                last: None,
                fetched: None,
                cached_version: None,
                opened: false,
            },
        );
        Self {
            nodes,
            by_name: HashMap::new(),
            next_ino: ROOT_INO.0 + 1,
        }
    }

    pub(super) fn path(&self, ino: Ino) -> Result<String> {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let node = self
                .nodes
                .get(&cur)
                .ok_or_else(|| err!(ESTALE, "inode {ino} is not known (forgotten)"))?;
            if node.unlinked {
                return Err(err!(ENOENT, "inode {ino} was removed"));
            }
            parts.push(node.name.as_str());
            cur = node.parent;
        }
        parts.reverse();
        Ok(format!("/{}", parts.join("/")))
    }

    /// The inode for `parent/name`, allocated if new. A node of another kind at the same name
    /// (replaced behind our back) is detached and a new inode allocated.
    pub(super) fn get_or_insert(&mut self, parent: Ino, name: &str, kind: Kind) -> Ino {
        if let Some(&ino) = self.by_name.get(&(parent, name.to_string())) {
            if self.nodes.get(&ino).is_some_and(|n| n.kind == kind) {
                return ino;
            }
            self.detach(parent, name);
        }
        let ino = Ino(self.next_ino);
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_string(),
                kind,
                lookups: 0,
                children: 0,
                unlinked: false,
                last: None,
                fetched: None,
                cached_version: None,
                opened: false,
            },
        );
        self.by_name.insert((parent, name.to_string()), ino);
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children += 1;
        }
        ino
    }

    /// Removes `parent/name` from the tree; the node lives on while referenced.
    /// The inode of the registry path `p`, if every name on the way is known.
    pub(super) fn find(&self, p: &str) -> Option<Ino> {
        let mut ino = ROOT_INO;
        for name in p.split('/').filter(|n| !n.is_empty()) {
            ino = *self.by_name.get(&(ino, name.to_string()))?;
        }
        Some(ino)
    }

    pub(super) fn detach(&mut self, parent: Ino, name: &str) -> Option<Ino> {
        let ino = self.by_name.remove(&(parent, name.to_string()))?;
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.unlinked = true;
        }
        self.maybe_drop(ino);
        Some(ino)
    }

    pub(super) fn rename(&mut self, parent: Ino, name: &str, new_parent: Ino, new_name: &str) {
        self.detach(new_parent, new_name);
        let Some(ino) = self.by_name.remove(&(parent, name.to_string())) else {
            return;
        };
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.parent = new_parent;
            n.name = new_name.to_string();
        }
        if parent != new_parent {
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.children -= 1;
            }
            if let Some(p) = self.nodes.get_mut(&new_parent) {
                p.children += 1;
            }
            self.maybe_drop(parent);
        }
        self.by_name.insert((new_parent, new_name.to_string()), ino);
    }

    pub(super) fn forget(&mut self, ino: Ino, n: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.maybe_drop(ino);
    }

    /// Drops a node nobody references any more (no kernel lookups, no children in the table),
    /// then its parent if that became unreferenced too. Open files hold a lookup of their own.
    pub(super) fn maybe_drop(&mut self, ino: Ino) {
        let mut cur = ino;
        while cur != ROOT_INO {
            let Some(node) = self.nodes.get(&cur) else {
                return;
            };
            if node.lookups > 0 || node.children > 0 {
                return;
            }
            let (parent, name, unlinked) = (node.parent, node.name.clone(), node.unlinked);
            self.nodes.remove(&cur);
            if !unlinked {
                self.by_name.remove(&(parent, name));
            }
            match self.nodes.get_mut(&parent) {
                Some(p) => p.children = p.children.saturating_sub(1),
                None => return,
            }
            cur = parent;
        }
    }
}
