//! `RegFs` without a kernel: the paths where inodes, open files and coherence meet.

use std::ffi::OsStr;
use std::sync::Arc;

use super::{Caller, Ino, PREFILL_MAX, ROOT_INO, RegFs};
use crate::content::SpoolPolicy;
use crate::identity::Identity;

const ROOT: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 1,
};

async fn embedded(dir: &std::path::Path) -> RegFs {
    let registry = crate::wiring::embedded_registry(dir).await.unwrap();
    let identity = Identity::new(crate::um::ADMIN_USER, Default::default());
    let token = registry.change_token().await.unwrap();
    RegFs::new(Arc::new(registry), identity, SpoolPolicy::default(), token)
}

/// `/_system/local`'s inode.
async fn local_dir(fs: &RegFs) -> Ino {
    let system = lookup(fs, ROOT_INO, "_system").await;
    lookup(fs, system, "local").await
}

async fn lookup(fs: &RegFs, parent: Ino, name: &str) -> Ino {
    fs.lookup(ROOT, parent, OsStr::new(name)).await.unwrap().ino
}

async fn write_file(fs: &RegFs, dir: Ino, name: &str, data: &[u8]) {
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
async fn forgotten(fs: &RegFs, dir: Ino, name: &str) -> Ino {
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
    let local = local_dir(&fs).await;
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
    let o_local = local_dir(&other).await;
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
    let local = local_dir(&fs).await;
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

/// The entry at `name` in `dir` as another process on the same databases sees it.
async fn size_elsewhere(other: &RegFs, name: &str) -> Option<u64> {
    let local = local_dir(other).await;
    match other.lookup(ROOT, local, OsStr::new(name)).await {
        Ok(attr) => Some(attr.entry.size),
        Err(e) => {
            assert_eq!(e.errno(), libc::ENOENT, "{e}");
            None
        }
    }
}

async fn list(fs: &RegFs, dir: Ino) -> Vec<String> {
    let fh = fs.opendir(ROOT, dir).await.unwrap();
    let items = fs.readdir(fh, 0, 1000).await.unwrap();
    fs.releasedir(fh);
    items
        .into_iter()
        .filter(|i| !i.is_dot)
        .map(|i| i.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_file_shows_here_and_gets_its_row_when_something_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = embedded(dir.path()).await;
    let other = embedded(dir.path()).await;
    let local = local_dir(&fs).await;

    // Created without O_EXCL: no row yet, but this node looks it up and stats it.
    let flags = libc::O_WRONLY | libc::O_CREAT;
    let (attr, fh) = fs
        .create(ROOT, local, OsStr::new("p"), 0o640, flags)
        .await
        .unwrap();
    assert_eq!(size_elsewhere(&other, "p").await, None);
    assert_eq!(lookup(&fs, local, "p").await, attr.ino);
    let st = fs.getattr(ROOT, attr.ino).await.unwrap();
    assert_eq!((st.entry.perm, st.entry.size), (0o640, 0));

    // A listing needs the row: the file is inserted (empty) and listed, here and elsewhere.
    assert!(list(&fs, local).await.contains(&"p".to_string()));
    assert_eq!(size_elsewhere(&other, "p").await, Some(0));

    // What the handle writes lands at close, as one version over that row.
    fs.write(fh, 0, b"pending").await.unwrap();
    assert_eq!(size_elsewhere(&other, "p").await, Some(0));
    fs.release(fh).await.unwrap();
    assert_eq!(size_elsewhere(&other, "p").await, Some(7));

    // An unlink of a pending file removes it before it ever had a row.
    let (attr, fh) = fs
        .create(ROOT, local, OsStr::new("q"), 0o600, flags)
        .await
        .unwrap();
    fs.unlink(ROOT, local, OsStr::new("q")).await.unwrap();
    fs.write(fh, 0, b"gone").await.unwrap();
    fs.release(fh).await.unwrap();
    fs.forget(attr.ino, 1);
    assert_eq!(size_elsewhere(&other, "q").await, None);
    assert!(!list(&fs, local).await.contains(&"q".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_renamed_while_open_commits_under_its_new_name() {
    let dir = tempfile::tempdir().unwrap();
    let fs = embedded(dir.path()).await;
    let other = embedded(dir.path()).await;
    let local = local_dir(&fs).await;
    write_file(&fs, local, "a", b"first").await;

    let ino = lookup(&fs, local, "a").await;
    let o = fs.open(ROOT, ino, libc::O_RDWR).await.unwrap();
    fs.write(o.fh, 5, b" second").await.unwrap();
    fs.rename(
        ROOT,
        local,
        OsStr::new("a"),
        local,
        OsStr::new("b"),
        crate::store::RenameMode::Replace,
    )
    .await
    .unwrap();
    // The rename committed what the handle wrote before it moved the resource.
    assert_eq!(size_elsewhere(&other, "a").await, None);
    assert_eq!(size_elsewhere(&other, "b").await, Some(12));
    fs.write(o.fh, 12, b" third").await.unwrap();
    fs.release(o.fh).await.unwrap();
    assert_eq!(size_elsewhere(&other, "b").await, Some(18));
    assert_eq!(size_elsewhere(&other, "a").await, None);
    assert_eq!(lookup(&fs, local, "b").await, ino);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_heard_from_elsewhere_keeps_the_pages_of_files_open_here() {
    let dir = tempfile::tempdir().unwrap();
    let fs = embedded(dir.path()).await;
    let local = local_dir(&fs).await;
    write_file(&fs, local, "open", b"o").await;
    write_file(&fs, local, "closed", b"c").await;
    let open = lookup(&fs, local, "open").await;
    let closed = lookup(&fs, local, "closed").await;
    let o = fs.open(ROOT, open, libc::O_RDONLY).await.unwrap();
    assert_eq!(fs.read(o.fh, 0, 10).await.unwrap(), b"o");
    // Another process removes the open file, and the feed names both.
    let other = embedded(dir.path()).await;
    let o_local = local_dir(&other).await;
    other
        .unlink(ROOT, o_local, OsStr::new("open"))
        .await
        .unwrap();

    let paths = ["/_system/local/open", "/_system/local/closed"].map(String::from);
    let dropped = fs.forget_paths(&paths);
    let of = |ino| dropped.iter().find(|d| d.ino == ino).unwrap();
    assert!(of(open).open, "an open file keeps its pages");
    assert!(!of(closed).open);
    // Their directory goes too (its listing and times move with them), once.
    assert_eq!(dropped.iter().filter(|d| d.ino == local).count(), 1);
    // The handle goes on reading the version it loaded, and fstat answers as after a local
    // unlink: what the file was, with no links. A file not open here is gone.
    assert_eq!(fs.read(o.fh, 0, 10).await.unwrap(), b"o");
    let st = fs.getattr(ROOT, open).await.unwrap();
    assert_eq!((st.entry.size, st.nlink), (1, 0));
    other
        .unlink(ROOT, o_local, OsStr::new("closed"))
        .await
        .unwrap();
    let _ = fs.forget_paths(&paths[1..]);
    let e = fs.getattr(ROOT, closed).await.unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT, "{e}");

    fs.release(o.fh).await.unwrap();
    let dropped = fs.forget_paths(&paths[..1]);
    assert!(!dropped.iter().find(|d| d.ino == open).unwrap().open);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_feed_stands_in_for_revalidation_and_a_lost_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let registry = crate::wiring::embedded_registry(dir.path())
        .await
        .unwrap()
        .trusting_feeds(true);
    let health = crate::store::FeedHealth::default();
    registry.add_feed_health("/_system/local", health.clone());
    let identity = Identity::new(crate::um::ADMIN_USER, Default::default());
    // Not watched: only the feed can vouch for what is remembered.
    let fs = RegFs::new(Arc::new(registry), identity, SpoolPolicy::default(), None);
    let local = local_dir(&fs).await;
    write_file(&fs, local, "f", b"one").await;
    let ino = forgotten(&fs, local, "f").await;
    let open_read = async |fs: &RegFs| {
        let o = fs.open(ROOT, ino, libc::O_RDONLY).await.unwrap();
        if let Some(p) = &o.prefill {
            fs.prefilled(p, true);
        }
        fs.release(o.fh).await.unwrap();
        o.keep_cache
    };
    assert!(!open_read(&fs).await, "a cold open");
    let v0 = fs.getattr(ROOT, ino).await.unwrap().entry.version;
    // A new version another process wrote without a word to the feed.
    let bump = || {
        let c = rusqlite::Connection::open(dir.path().join(crate::wiring::LOCAL_DB)).unwrap();
        c.execute(
            "UPDATE REG_RESOURCE SET REG_VERSION = REG_VERSION + 1000 WHERE REG_NAME = 'f'",
            [],
        )
        .unwrap();
    };
    bump();

    // The feed confirms it heard everything: the warm open, a lookup and a stat ask nothing.
    health.confirm();
    assert!(open_read(&fs).await, "trusted: the new version goes unseen");
    let looked_up = fs.lookup(ROOT, local, OsStr::new("f")).await.unwrap();
    assert_eq!((looked_up.ino, looked_up.entry.version), (ino, v0));
    fs.forget(ino, 1);
    assert_eq!(fs.getattr(ROOT, ino).await.unwrap().entry.version, v0);

    // Lost: every open reads the live version again.
    health.lost();
    assert!(!open_read(&fs).await, "revalidated: the version moved");
    let v1 = fs.getattr(ROOT, ino).await.unwrap().entry.version;
    assert_eq!(v1, v0 + 1000);
}
