//! Directory handles: listings read from the registry page by page for the user who opened
//! them; this node's pending files in the directory get their rows first, so they are listed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Attr, Caller, DirItem, ROOT_INO, RegFs};
use super::{Fh, Ino};
use crate::authz::Action;
use crate::err;
use crate::error::Result;
use crate::store::Entry;

pub(super) struct DirHandle {
    pub(super) ino: Ino,
    /// The registry user who opened the listing: children are filtered for them.
    pub(super) user: String,
    pub(super) entries: Vec<(String, Entry)>,
    pub(super) cursor: Option<String>,
    pub(super) complete: bool,
}

impl RegFs {
    pub async fn opendir(&self, c: Caller, ino: Ino) -> Result<Fh> {
        let p = self.path(ino)?;
        let user = self.identity.registry_user(c.uid);
        self.registry.authorize(&user, &p, Action::Get).await?;
        let fh = Fh(self.next_fh.fetch_add(1, Ordering::Relaxed));
        self.dirs.lock().insert(
            fh,
            Arc::new(tokio::sync::Mutex::new(DirHandle {
                ino,
                user,
                entries: Vec::new(),
                cursor: None,
                complete: false,
            })),
        );
        Ok(fh)
    }

    pub fn releasedir(&self, fh: Fh) {
        self.dirs.lock().remove(&fh);
    }

    /// Listing items from `offset` on (up to about `max` of them). Offsets 0 and 1 are `.` and
    /// `..`; offset `n + 2` is the n-th child. Pages are fetched from the database by name
    /// (never OFFSET) as the kernel reads further; offset 0 starts a fresh listing.
    pub async fn readdir(&self, fh: Fh, offset: u64, max: usize) -> Result<Vec<DirItem>> {
        let dh = self
            .dirs
            .lock()
            .get(&fh)
            .cloned()
            .ok_or_else(|| err!(EBADF, "directory handle {fh} is not open"))?;
        let mut dh = dh.lock().await;
        let dir_path = self.path(dh.ino)?;
        if offset == 0 {
            self.insert_pending_children(dh.ino).await?;
            dh.entries.clear();
            dh.cursor = None;
            dh.complete = false;
        }
        let mut items = Vec::new();
        if offset < 2 {
            let dir_entry = self
                .registry
                .stat(&dh.user, &dir_path)
                .await?
                .ok_or_else(|| err!(ENOENT, "{dir_path} no longer exists"))?;
            let parent_ino = self
                .inodes
                .lock()
                .nodes
                .get(&dh.ino)
                .map(|n| n.parent)
                .unwrap_or(ROOT_INO);
            for (i, name) in [".", ".."].into_iter().enumerate().skip(offset as usize) {
                let ino = if i == 0 { dh.ino } else { parent_ino };
                items.push(DirItem {
                    ino,
                    next_offset: i as u64 + 1,
                    name: name.to_string(),
                    attr: Attr {
                        ino,
                        entry: dir_entry.clone(),
                        nlink: 2,
                    },
                    is_dot: true,
                });
            }
        }
        let mut index = offset.saturating_sub(2) as usize;
        while items.len() < max {
            if index >= dh.entries.len() {
                if dh.complete {
                    break;
                }
                let page = self
                    .registry
                    .list_page(&dh.user, &dir_path, dh.cursor.as_deref(), self.list_page)
                    .await?;
                if !page.more {
                    dh.complete = true;
                }
                if page.cursor.is_some() {
                    dh.cursor = page.cursor;
                }
                dh.entries
                    .extend(page.entries.into_iter().map(|d| (d.name, d.entry)));
                continue;
            }
            let (name, entry) = dh.entries[index].clone();
            let attr = self.remember(dh.ino, &name, entry, false);
            items.push(DirItem {
                ino: attr.ino,
                next_offset: index as u64 + 3,
                name,
                attr,
                is_dot: false,
            });
            index += 1;
        }
        Ok(items)
    }
}
