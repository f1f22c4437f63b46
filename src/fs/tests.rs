//! `RegFs` without a kernel: the paths where inodes, open files and coherence meet.

use std::ffi::OsStr;
use std::sync::Arc;

use super::{Caller, PREFILL_MAX, ROOT_INO, RegFs};
use crate::content::SpoolPolicy;
use crate::identity::Identity;
use crate::store::StoreOptions;

const ROOT: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 1,
};

async fn embedded(dir: &std::path::Path) -> RegFs {
    let registry = crate::wiring::embedded_registry(dir, StoreOptions::default())
        .await
        .unwrap();
    let identity = Identity::new(crate::um::ADMIN_USER, Default::default());
    let token = registry.change_token().await.unwrap();
    RegFs::new(Arc::new(registry), identity, SpoolPolicy::default(), token)
}

async fn lookup(fs: &RegFs, parent: u64, name: &str) -> u64 {
    fs.lookup(ROOT, parent, OsStr::new(name)).await.unwrap().ino
}

async fn write_file(fs: &RegFs, dir: u64, name: &str, data: &[u8]) {
    let flags = libc::O_WRONLY | libc::O_CREAT;
    let (_, fh) = fs
        .create(ROOT, dir, OsStr::new(name), 0o644, flags)
        .await
        .unwrap();
    fs.write(fh, 0, data).await.unwrap();
    fs.release(fh).await.unwrap();
}

/// `dir/name` under a new inode, as after the kernel forgot the old one: the kernel holds
/// no pages of it.
async fn forgotten(fs: &RegFs, dir: u64, name: &str) -> u64 {
    let old = lookup(fs, dir, name).await;
    fs.forget(old, 2);
    let ino = lookup(fs, dir, name).await;
    assert_ne!(ino, old);
    ino
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watched_mount_keeps_a_cached_version_until_something_else_commits() {
    let dir = tempfile::tempdir().unwrap();
    let fs = embedded(dir.path()).await;
    // Another process on the same databases.
    let other = embedded(dir.path()).await;
    let system = lookup(&fs, ROOT_INO, "_system").await;
    let local = lookup(&fs, system, "local").await;
    let big = vec![1u8; PREFILL_MAX as usize + 1];
    write_file(&fs, local, "f", &big).await;
    let ino = lookup(&fs, local, "f").await;
    let read_all = async |fh| fs.read(fh, 0, big.len() as u32).await.unwrap();

    // This process's own write: the kernel caches what it wrote, and nothing else has
    // committed, so the next open keeps it without asking the database.
    let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
    assert!(o.keep_cache && !o.stale_attrs);
    fs.release(o.fh).await.unwrap();

    // Another process writes: the next open sees the new version at once, before any
    // watcher caught up, and has the kernel drop the old size.
    let o_system = lookup(&other, ROOT_INO, "_system").await;
    let o_local = lookup(&other, o_system, "local").await;
    write_file(&other, o_local, "f", &big[1..]).await;
    let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
    assert!(!o.keep_cache && o.stale_attrs);
    assert_eq!(read_all(o.fh).await.len(), big.len() - 1);

    // The watcher catches up while that handle is open. Its content was loaded before:
    // reading it again must not record its version as the kernel's, which is left to
    // the next open to decide.
    let token = fs.change_token().await.unwrap().unwrap();
    assert!(fs.changed_elsewhere(&token));
    let _ = fs.forget_cached(Some(token.clone()));
    assert!(!fs.changed_elsewhere(&token));
    assert_eq!(read_all(o.fh).await.len(), big.len() - 1);
    fs.release(o.fh).await.unwrap();
    let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
    assert!(!o.keep_cache);
    assert_eq!(read_all(o.fh).await.len(), big.len() - 1);
    fs.release(o.fh).await.unwrap();
    // Read after the watcher caught up: kept from now on.
    let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
    assert!(o.keep_cache);
    fs.release(o.fh).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_read_only_open_of_a_small_file_brings_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let fs = embedded(dir.path()).await;
    let system = lookup(&fs, ROOT_INO, "_system").await;
    let local = lookup(&fs, system, "local").await;
    let small = b"0123456789".repeat(500);
    let big = vec![7u8; PREFILL_MAX as usize + 1];
    write_file(&fs, local, "small", &small).await;
    write_file(&fs, local, "big", &big).await;

    let ino = forgotten(&fs, local, "small").await;
    let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
    assert!(!o.keep_cache);
    let p = o.prefill.expect("content for the page cache");
    assert_eq!(p.data(), &small[..]);
    assert!(fs.prefilled(&p, true));
    fs.release(o.fh).await.unwrap();
    // The kernel holds that version now: the next open keeps it, and brings nothing.
    let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
    assert!(o.keep_cache);
    assert!(o.prefill.is_none());
    fs.release(o.fh).await.unwrap();

    // Not stored (the adapter could not): the kernel must drop its pages as usual.
    let ino = forgotten(&fs, local, "small").await;
    let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
    assert!(!fs.prefilled(&o.prefill.unwrap(), false));
    assert_eq!(fs.read(o.fh, 0, 10).await.unwrap(), b"0123456789");
    fs.release(o.fh).await.unwrap();

    // A writer opened and wrote while the content was being stored: the stored pages
    // may be older than the kernel's, so none are kept.
    let ino = forgotten(&fs, local, "small").await;
    let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
    let p = o.prefill.unwrap();
    let w = fs.open(ROOT, ino, libc::O_WRONLY).await.unwrap();
    assert!(w.prefill.is_none());
    fs.write(w.fh, 0, b"x").await.unwrap();
    assert!(!fs.prefilled(&p, true));
    fs.release(w.fh).await.unwrap();
    fs.release(o.fh).await.unwrap();

    // Only read-only opens of files up to PREFILL_MAX bring content.
    let ino = forgotten(&fs, local, "big").await;
    let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
    assert!(o.prefill.is_none());
    fs.release(o.fh).await.unwrap();
    let ino = forgotten(&fs, local, "small").await;
    let o = fs.open(ROOT, ino, libc::O_RDWR).await.unwrap();
    assert!(o.prefill.is_none());
    fs.release(o.fh).await.unwrap();
}

#[test]
fn only_handles_that_may_change_the_file_flush_on_close() {
    assert!(!RegFs::flush_on_close(libc::O_RDONLY));
    assert!(!RegFs::flush_on_close(libc::O_RDONLY | libc::O_NONBLOCK));
    assert!(RegFs::flush_on_close(libc::O_WRONLY));
    assert!(RegFs::flush_on_close(libc::O_RDWR));
    assert!(RegFs::flush_on_close(libc::O_WRONLY | libc::O_APPEND));
    // Linux truncates on O_RDONLY | O_TRUNC: that handle changed the file.
    assert!(RegFs::flush_on_close(libc::O_RDONLY | libc::O_TRUNC));
}
