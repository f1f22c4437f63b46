//! Store tests against a real SQLite file: targeted checks of Carbon's row conventions, and a
//! random operation sequence checked against an in-memory reference model of the tree.

use super::*;
use crate::store::Store;

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("t.db"), StoreOptions::default())
        .await
        .unwrap();
    s.init().await.unwrap();
    (dir, s)
}

/// A separate pool on the same file, to read tables back with plain SQL.
async fn sql(s: &SqliteStore) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(s.file()))
        .await
        .unwrap()
}

use crate::conformance::{dir, file};

#[tokio::test]
async fn update_makes_a_new_version_and_keeps_identity() {
    let (_d, s) = store().await;
    let e1 = s
        .create("/_system/local/a.xml", file(b"one"), "alice")
        .await
        .unwrap();
    let e2 = s
        .write("/_system/local/a.xml", &b"two".to_vec().into(), "bob")
        .await
        .unwrap();
    assert!(e2.version > e1.version);
    assert_eq!(e2.uuid, e1.uuid);
    assert_eq!(e2.crtime, e1.crtime);
    assert_eq!(e1.media_type.as_deref(), Some("application/xml"));
    assert_eq!(e2.media_type, e1.media_type);
    let row: (String, String) = sqlx::query_as(
        "SELECT REG_CREATOR, REG_LAST_UPDATOR FROM REG_RESOURCE WHERE REG_NAME = 'a.xml'",
    )
    .fetch_one(&sql(&s).await)
    .await
    .unwrap();
    assert_eq!(row, ("alice".into(), "bob".into()));
    let versions: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_NAME = 'a.xml'")
            .fetch_one(&sql(&s).await)
            .await
            .unwrap();
    assert_eq!(versions, 1);
    assert_eq!(s.read("/_system/local/a.xml").await.unwrap(), b"two");
}

#[tokio::test]
async fn empty_content_has_no_content_row() {
    let (_d, s) = store().await;
    s.create("/e", file(b""), "u").await.unwrap();
    let cid: Option<i64> =
        sqlx::query_scalar("SELECT REG_CONTENT_ID FROM REG_RESOURCE WHERE REG_NAME = 'e'")
            .fetch_one(&sql(&s).await)
            .await
            .unwrap();
    assert_eq!(cid, None);
    assert_eq!(s.read("/e").await.unwrap(), b"");
}

#[tokio::test]
async fn errors_change_nothing() {
    let (_d, s) = store().await;
    s.create("/d", dir(), "u").await.unwrap();
    s.create("/d/f", file(b"x"), "u").await.unwrap();
    let pool = sql(&s).await;
    let count = |_s: &SqliteStore| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT (SELECT COUNT(*) FROM REG_RESOURCE) + (SELECT COUNT(*) FROM REG_LOG)",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let before = count(&s).await;
    fn e<T: std::fmt::Debug>(r: Result<T>) -> i32 {
        r.unwrap_err().errno()
    }
    assert_eq!(e(s.remove("/d", true, "u").await), libc::ENOTEMPTY);
    assert_eq!(e(s.remove("/d", false, "u").await), libc::EISDIR);
    assert_eq!(
        s.create("/d/f", file(b"y"), "u").await.unwrap_err().errno(),
        libc::EEXIST
    );
    assert_eq!(
        s.create("/nope/f", file(b"y"), "u")
            .await
            .unwrap_err()
            .errno(),
        libc::ENOENT
    );
    assert_eq!(
        s.create("/d/f/g", file(b"y"), "u")
            .await
            .unwrap_err()
            .errno(),
        libc::ENOTDIR
    );
    assert_eq!(
        e(s.rename("/d", "/d/sub", RenameMode::Replace, "u").await),
        libc::EINVAL
    );
    s.create("/g", file(b"z"), "u").await.unwrap();
    let before2 = count(&s).await;
    assert!(before2 > before);
    assert_eq!(
        e(s.rename("/g", "/d/f", RenameMode::NoReplace, "u").await),
        libc::EEXIST
    );
    assert_eq!(
        e(s.rename("/g", "/d", RenameMode::Replace, "u").await),
        libc::EISDIR
    );
    assert_eq!(
        e(s.rename("/d", "/g", RenameMode::Replace, "u").await),
        libc::ENOTDIR
    );
    assert_eq!(count(&s).await, before2);
    assert_eq!(s.read("/d/f").await.unwrap(), b"x");
}

#[tokio::test]
async fn listing_pages_by_name_across_collections_and_resources() {
    let (_d, s) = store().await;
    crate::conformance::listing_pages(&s).await;
}

/// Multi-threaded, as in a mount: the chunked blob I/O runs in `block_in_place` there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_content_moves_in_chunks() {
    let (_d, s) = store().await;
    crate::conformance::large_content(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_land_only_over_their_version() {
    let (_d, s) = store().await;
    crate::conformance::conditional_writes(&s).await;
}

#[tokio::test]
async fn random_operations_match_a_reference_model() {
    let (_d, s) = store().await;
    crate::conformance::random_operations(&s).await;
}

/// A resource Carbon gave properties and a tag loses them with it; one without any takes the
/// short delete batch and leaves the others' rows alone.
#[tokio::test]
async fn unlink_removes_what_hangs_off_the_resource() {
    let (_d, s) = store().await;
    s.create("/m", dir(), "u").await.unwrap();
    s.create("/m/with", file(b"1"), "u").await.unwrap();
    s.create("/m/plain", file(b"2"), "u").await.unwrap();
    let pool = sql(&s).await;
    for stmt in [
        "INSERT INTO REG_PROPERTY (REG_NAME, REG_VALUE, REG_TENANT_ID) VALUES ('k', 'v', -1234)",
        "INSERT INTO REG_RESOURCE_PROPERTY (REG_PROPERTY_ID, REG_PATH_ID, REG_RESOURCE_NAME, REG_TENANT_ID) \
         SELECT MAX(REG_ID), (SELECT REG_PATH_ID FROM REG_PATH WHERE REG_PATH_VALUE = '/m'), 'with', -1234 \
         FROM REG_PROPERTY",
        "INSERT INTO REG_TAG (REG_TAG_NAME, REG_USER_ID, REG_TAGGED_TIME, REG_TENANT_ID) \
         VALUES ('t', 'u', CURRENT_TIMESTAMP, -1234)",
        "INSERT INTO REG_RESOURCE_TAG (REG_TAG_ID, REG_PATH_ID, REG_RESOURCE_NAME, REG_TENANT_ID) \
         SELECT MAX(REG_ID), (SELECT REG_PATH_ID FROM REG_PATH WHERE REG_PATH_VALUE = '/m'), 'with', -1234 \
         FROM REG_TAG",
    ] {
        sqlx::query(stmt).execute(&pool).await.unwrap();
    }
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    s.remove("/m/plain", false, "u").await.unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM REG_RESOURCE_PROPERTY").await, 1);
    s.remove("/m/with", false, "u").await.unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM REG_RESOURCE_PROPERTY").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM REG_PROPERTY").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM REG_RESOURCE_TAG").await, 0);
    assert_eq!(
        count("SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_NAME IS NOT NULL").await,
        0
    );
    assert_eq!(count("SELECT COUNT(*) FROM REG_CONTENT").await, 0);
    // Both removals were logged as DELETE_RESOURCE (7).
    assert_eq!(
        count("SELECT COUNT(*) FROM REG_LOG WHERE REG_ACTION = 7").await,
        2
    );
}

/// Removals leave the writer's compiled statements alone. An rmdir (and an unlink of a file
/// with Carbon's mappings) used to set `PRAGMA defer_foreign_keys`, and setting a flag pragma
/// expires every statement of the connection: each was compiled again at its next use.
#[tokio::test]
async fn removals_keep_the_writers_compiled_statements() {
    let (_d, s) = store().await;
    s.create("/m", dir(), "u").await.unwrap();
    for name in ["/m/a", "/m/b", "/m/c"] {
        s.create(name, file(b"x"), "u").await.unwrap();
    }
    s.create("/m/sub", dir(), "u").await.unwrap();
    s.remove("/m/a", false, "u").await.unwrap();
    s.remove("/m/sub", true, "u").await.unwrap();
    s.remove("/m/b", false, "u").await.unwrap();
    s.create("/m/d", file(b"x"), "u").await.unwrap();
    s.remove("/m/c", false, "u").await.unwrap();
    let w = s.writer.lock().await;
    for sql in REMOVE_BATCH.split(';').map(str::trim) {
        let st = w.conn.prepare_cached(sql).unwrap();
        assert_eq!(
            st.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "compiled again: {sql}"
        );
    }
}

/// A listing, paged, is compiled once per connection: its `LIMIT ?` would otherwise make SQLite
/// compile it again at every page (binding a value the plan was built on expires the plan).
#[tokio::test]
async fn listing_pages_compile_once() {
    let (_d, s) = store().await;
    s.create("/m", dir(), "u").await.unwrap();
    for i in 0..9 {
        s.create(&format!("/m/f{i}"), file(b"x"), "u")
            .await
            .unwrap();
    }
    let mut after: Option<String> = None;
    let mut seen = 0;
    for _ in 0..2 {
        loop {
            let page = s.list("/m", after.as_deref(), 2).await.unwrap();
            let Some(last) = page.last() else { break };
            seen += page.len();
            after = Some(last.name.clone());
        }
        after = None;
    }
    assert_eq!(seen, 18);
    let writer = s.writer.lock().await;
    let readers: Vec<_> = s.readers.iter().map(|r| r.lock()).collect();
    for conn in readers.iter().map(|r| &**r).chain([&writer.conn]) {
        let st = conn.prepare_cached(LIST_SQL).unwrap();
        assert_eq!(st.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }
}

/// The resource fast path of setattr answers exactly what a stat then reads back.
#[tokio::test]
async fn set_attr_returns_what_stat_reads() {
    let (_d, s) = store().await;
    s.create("/a", dir(), "u").await.unwrap();
    s.create("/a/f.xml", file(b"<x/>"), "u").await.unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    for change in [
        AttrChange {
            perm: Some(0o600),
            ..Default::default()
        },
        AttrChange {
            uid: Some(7),
            gid: Some(8),
            mtime: Some(t),
            atime: Some(t),
            ..Default::default()
        },
    ] {
        let e = s.set_attr("/a/f.xml", change).await.unwrap();
        assert_eq!(Some(e), s.stat("/a/f.xml").await.unwrap());
    }
    let e = s.stat("/a/f.xml").await.unwrap().unwrap();
    assert_eq!((e.perm, e.uid, e.gid, e.size, e.mtime), (0o600, 7, 8, 4, t));
    // A collection takes the generic path.
    let d = s
        .set_attr(
            "/a",
            AttrChange {
                perm: Some(0o700),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(Some(d), s.stat("/a").await.unwrap());
    assert_eq!(
        s.set_attr("/a/none", AttrChange::default())
            .await
            .unwrap_err()
            .errno(),
        libc::ENOENT
    );
}

/// Rows Carbon wrote (no attributes, or attributes of an older version) show
/// REG_LAST_UPDATED_TIME as their times; a chmod, a rename or a new entry in a collection then
/// moves only what that change moves (ctime, a collection's mtime), never back to the creation
/// time.
#[tokio::test]
async fn carbons_times_survive_regfs_changes() {
    let (_d, s) = store().await;
    s.create("/a", dir(), "u").await.unwrap();
    s.create("/a/f", file(b"1"), "u").await.unwrap();
    s.create("/a/g", file(b"2"), "u").await.unwrap();
    let pool = sql(&s).await;
    let run = |q: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query(q).execute(&pool).await.unwrap() }
    };
    // f and /a: Carbon's rows without attributes; g: Carbon wrote a newer version.
    run(
        "DELETE FROM REGFS_ATTR WHERE REG_UUID IN (SELECT REG_UUID FROM REG_RESOURCE \
         WHERE REG_NAME = 'f' OR REG_NAME IS NULL AND REG_PATH_ID = (SELECT REG_PATH_ID \
         FROM REG_PATH WHERE REG_PATH_VALUE = '/a'))",
    )
    .await;
    run("UPDATE REG_RESOURCE SET REG_VERSION = REG_VERSION + 1000 WHERE REG_NAME = 'g'").await;
    run(
        "UPDATE REG_RESOURCE SET REG_CREATED_TIME = '2019-05-06 07:08:09', \
         REG_LAST_UPDATED_TIME = '2020-01-02 03:04:05'",
    )
    .await;
    let a = s.stat("/a").await.unwrap().unwrap();
    for p in ["/a/f", "/a/g"] {
        let before = s.stat(p).await.unwrap().unwrap();
        assert_ne!(
            before.mtime, before.crtime,
            "{p}: updated after it was created"
        );
        let e = s
            .set_attr(
                p,
                AttrChange {
                    perm: Some(0o600),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(e.mtime, before.mtime, "{p}: chmod keeps mtime");
        assert!(e.ctime > before.ctime, "{p}: chmod moves ctime");
        let moved = format!("{p}.moved");
        s.rename(p, &moved, RenameMode::Replace, "u").await.unwrap();
        assert_eq!(s.stat(&moved).await.unwrap().unwrap().mtime, before.mtime);
    }
    s.create("/a/h", file(b"3"), "u").await.unwrap();
    let after = s.stat("/a").await.unwrap().unwrap();
    assert_eq!(
        after.atime, a.atime,
        "changes in it do not move the collection's atime"
    );
    assert!(after.mtime > a.mtime);
}

/// Commits leave the checkpoint to a background task, which still moves the WAL into the
/// database file as it grows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_in_the_background() {
    let (tmp, s) = store().await;
    let db = tmp.path().join("t.db");
    let db_size = || std::fs::metadata(&db).unwrap().len();
    let before = db_size();
    s.create("/d", dir(), "u").await.unwrap();
    let body = Content::from(vec![b'x'; 4096]);
    for i in 0..1200 {
        let p = format!("/d/f{i}");
        s.create(&p, file(b""), "u").await.unwrap();
        s.write(&p, &body, "u").await.unwrap();
    }
    // Only a checkpoint writes pages into the database file itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while db_size() < before + (4 << 20) {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint: the database file is still {} bytes",
            db_size()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_commits_move_with_other_connections_only() {
    let (tmp, s) = store().await;
    s.create("/d", dir(), "u").await.unwrap();
    let mine = s.foreign_commits().await.unwrap();
    assert!(mine.is_some());
    // This store's own changes, and a checkpoint of them, do not move it.
    for i in 0..50 {
        s.create(&format!("/d/f{i}"), file(b"x"), "u")
            .await
            .unwrap();
    }
    s.remove("/d/f0", false, "u").await.unwrap();
    let cp = rusqlite::Connection::open(tmp.path().join("t.db")).unwrap();
    cp.execute_batch("PRAGMA wal_checkpoint(PASSIVE)").unwrap();
    assert_eq!(s.foreign_commits().await.unwrap(), mine);
    // Another store on the same file (another process) does, once per check.
    let other = SqliteStore::open(&tmp.path().join("t.db"), StoreOptions::default())
        .await
        .unwrap();
    other.create("/d/g", file(b"y"), "v").await.unwrap();
    let moved = s.foreign_commits().await.unwrap();
    assert_ne!(moved, mine);
    assert_eq!(s.foreign_commits().await.unwrap(), moved);
    // So does a plain SQL change (the sqlite3 shell, a script).
    cp.execute_batch("UPDATE REGFS_ATTR SET ATIME_NS = ATIME_NS + 1")
        .unwrap();
    assert_ne!(s.foreign_commits().await.unwrap(), moved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_store_frees_its_commit_hook() {
    let (_d, s) = store().await;
    s.create("/_system/local/a", file(b"x"), "alice")
        .await
        .unwrap();
    let state = {
        let w = s.writer.lock().await;
        w.hook.as_ref().unwrap().state()
    };
    assert!(state.upgrade().is_some());
    drop(s);
    assert!(
        state.upgrade().is_none(),
        "the WAL hook's context outlived its store"
    );
}

/// overwrite="virtual" over a local collection: as Carbon's createLink, the collection becomes
/// the link, marked `registry.existingresource`, with only CREATE_REMOTE_LINK logged for it;
/// its content stays. A second start changes nothing.
#[tokio::test]
async fn a_virtual_mount_link_marks_the_existing_collection() {
    let (_d, s) = store().await;
    s.create("/_system/local/app", dir(), "alice")
        .await
        .unwrap();
    s.create("/_system/local/app/keep.txt", file(b"k"), "alice")
        .await
        .unwrap();
    for _ in 0..2 {
        s.ensure_mount_link(
            "/_system/local/app",
            "gov",
            "/_system/governance/app",
            false,
        )
        .await
        .unwrap();
    }
    let pool = sql(&s).await;
    let props: Vec<(String, String)> = sqlx::query_as(
        "SELECT pr.REG_NAME, pr.REG_VALUE FROM REG_RESOURCE_PROPERTY rp \
         JOIN REG_PROPERTY pr ON pr.REG_ID = rp.REG_PROPERTY_ID JOIN REG_PATH p \
         ON p.REG_PATH_ID = rp.REG_PATH_ID WHERE p.REG_PATH_VALUE = '/_system/local/app' \
         AND rp.REG_RESOURCE_NAME IS NULL ORDER BY pr.REG_NAME",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        props,
        vec![
            ("registry.existingresource".into(), "true".into()),
            (
                "registry.linkrestoration".into(),
                "/_system/local/app;gov;/_system/governance/app;wso2.system.user".into()
            ),
            ("registry.nonrecursive".into(), "true".into()),
        ]
    );
    let log: Vec<i64> = sqlx::query_scalar(
        "SELECT REG_ACTION FROM REG_LOG WHERE REG_PATH = '/_system/local/app' ORDER BY REG_LOG_ID",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        log,
        vec![0, 12],
        "the user's ADD, then only CREATE_REMOTE_LINK"
    );
    let entry = s.stat("/_system/local/app").await.unwrap().unwrap();
    assert_eq!(entry.media_type.as_deref(), Some(LINK_MEDIA_TYPE));
    assert!(
        s.stat("/_system/local/app/keep.txt")
            .await
            .unwrap()
            .is_some()
    );
}
