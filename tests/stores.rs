//! The PostgreSQL and MariaDB stores against real servers: the store conformance suite, two
//! nodes racing on one database, the dialects' schema rules, databases made by Carbon 4.4.x
//! scripts, and a server that goes down or stops answering mid-mount.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::servers::{self, Kind, Server};
use regfs::conformance::{self, dir, file};
use regfs::sql::ServerOptions;
use regfs::store::server::ServerStore;
use regfs::store::{Kind as EntryKind, RenameMode, Store, StoreOptions};

/// A test on each server for the scenario `fn(Kind)`.
macro_rules! on_both_servers {
    ($scenario:ident: $postgres:ident, $mariadb:ident) => {
        #[test]
        fn $postgres() {
            $scenario(Kind::Postgres);
        }

        #[test]
        fn $mariadb() {
            $scenario(Kind::MariaDb);
        }
    };
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn open(server: &Server, db: &str, timeout: Duration) -> ServerStore {
    let s = ServerStore::open(
        db,
        ServerOptions {
            url: server.url(db),
            password: server.password().map(str::to_string),
            max_connections: 4,
            timeout,
        },
        StoreOptions {
            max_retries: 20,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    s.install().await.unwrap();
    s.init().await.unwrap();
    s
}

fn conformance_on(kind: Kind) {
    let server = servers::server_for(kind);
    let db = server.fresh_db();
    rt().block_on(async {
        let s = open(server, &db, Duration::from_secs(20)).await;
        conformance::listing_pages(&s).await;
        conformance::random_operations(&s).await;
        conformance::large_content(&s).await;
        conformance::conditional_writes(&s).await;
        // init again on a populated database is a no-op.
        s.init().await.unwrap();
    });
}

on_both_servers!(
    conformance_on: postgres_store_passes_the_conformance_suite,
    mariadb_store_passes_the_conformance_suite
);

/// Two stores on one database (two nodes) create the same names at the same time: each name
/// is created exactly once, the losers get EEXIST, and no duplicate rows appear.
fn racing_nodes(kind: Kind) {
    let server = servers::server_for(kind);
    let db = server.fresh_db();
    rt().block_on(async {
        // Both nodes start at once on the empty database: their schema creation races too.
        let (a, b) = tokio::join!(
            open(server, &db, Duration::from_secs(30)),
            open(server, &db, Duration::from_secs(30))
        );
        let (a, b) = (Arc::new(a), Arc::new(b));
        a.create("/race", dir(), "u").await.unwrap();
        let mut tasks = Vec::new();
        for (i, s) in [a.clone(), b.clone(), a.clone(), b.clone()]
            .into_iter()
            .enumerate()
        {
            tasks.push(tokio::spawn(async move {
                let mut won = 0;
                for n in 0..20 {
                    // Collections, files with content and empty files (PostgreSQL's
                    // one-statement create) race alike.
                    let new = match n % 3 {
                        0 => dir(),
                        1 => file(format!("{i}").as_bytes()),
                        _ => file(b""),
                    };
                    match s.create(&format!("/race/n{n}"), new, "u").await {
                        Ok(_) => won += 1,
                        Err(e) => assert_eq!(e.errno(), libc::EEXIST, "{e}"),
                    }
                }
                won
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, 20, "every name created exactly once");
        assert_eq!(b.list("/race", None, 100).await.unwrap().len(), 20);
    });
    let dupes = server.sql_in(
        &db,
        "SELECT COUNT(*) FROM (SELECT REG_PATH_ID, REG_NAME FROM REG_RESOURCE \
         GROUP BY REG_PATH_ID, REG_NAME HAVING COUNT(*) > 1) d",
    );
    assert_eq!(dupes.trim(), "0");
}

/// Three nodes with the default store options overwriting one file and creating, renaming
/// and unlinking in one collection, all at once: conflicts between them are retried within
/// the operation's time bound, so none of them gets EIO, and nothing is lost.
fn contention(kind: Kind) {
    let server = servers::server_for(kind);
    let db = server.fresh_db();
    rt().block_on(async {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let s = ServerStore::open(
                &db,
                ServerOptions {
                    url: server.url(&db),
                    password: server.password().map(str::to_string),
                    max_connections: 4,
                    timeout: Duration::from_secs(10),
                },
                StoreOptions::default(),
            )
            .await
            .unwrap();
            nodes.push(Arc::new(s));
        }
        nodes[0].install().await.unwrap();
        nodes[0].init().await.unwrap();
        nodes[0].create("/c", dir(), "u").await.unwrap();
        nodes[0].create("/c/shared", file(b"0"), "u").await.unwrap();
        let mut tasks = Vec::new();
        for (i, s) in nodes.iter().cycle().take(6).cloned().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut errors = Vec::new();
                for n in 0..15 {
                    let mine = format!("/c/t{i}-{n}");
                    let steps = [
                        s.write("/c/shared", &format!("{i}-{n}").into_bytes().into(), "u")
                            .await
                            .map(drop),
                        s.create(&mine, file(b"x"), "u").await.map(drop),
                        s.rename(&mine, &format!("{mine}-moved"), RenameMode::Replace, "u")
                            .await
                            .map(drop),
                        s.list("/c", None, 1000).await.map(drop),
                        s.remove(&format!("{mine}-moved"), false, "u")
                            .await
                            .map(drop),
                    ];
                    errors.extend(steps.into_iter().filter_map(Result::err));
                }
                errors
            }));
        }
        // And writers doing nothing but overwrite the one file, as appenders on three nodes do.
        for (i, s) in nodes.iter().cycle().take(6).cloned().enumerate() {
            tasks.push(tokio::spawn(async move {
                let mut errors = Vec::new();
                for n in 0..40 {
                    let data = format!("w{i}-{n}").into_bytes().into();
                    if let Err(e) = s.write("/c/shared", &data, "u").await {
                        errors.push(e);
                    }
                }
                errors
            }));
        }
        let mut errors = Vec::new();
        for t in tasks {
            errors.extend(t.await.unwrap());
        }
        let shown: Vec<String> = errors.iter().take(5).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{} operations failed under contention, e.g. {shown:#?}",
            errors.len()
        );
        // Only the shared file is left, with one of the writes.
        let left = nodes[1].list("/c", None, 1000).await.unwrap();
        assert_eq!(left.len(), 1, "{left:?}");
    });
}

/// A node remembers collection rows between creates and unlinks (PostgreSQL): whatever
/// another node (or Carbon) does to the collection meanwhile, the next change lands in the
/// collection that is at the path now.
fn collections_changed_elsewhere(kind: Kind) {
    let server = servers::server_for(kind);
    let db = server.fresh_db();
    rt().block_on(async {
        let a = open(server, &db, Duration::from_secs(20)).await;
        let b = open(server, &db, Duration::from_secs(20)).await;
        a.create("/_system/config/r", dir(), "u").await.unwrap();
        a.create("/_system/config/r/f1", file(b"1"), "u")
            .await
            .unwrap();
        // Moved away, and a new collection at the old path (same REG_PATH row).
        b.rename(
            "/_system/config/r",
            "/_system/config/r2",
            RenameMode::Replace,
            "u",
        )
        .await
        .unwrap();
        b.create("/_system/config/r", dir(), "u").await.unwrap();
        let f2 = a
            .create("/_system/config/r/f2", file(b"2"), "u")
            .await
            .unwrap();
        assert!(b.stat("/_system/config/r/f2").await.unwrap().is_some());
        // Its times moved, not those of the collection that left.
        assert_eq!(
            b.stat("/_system/config/r").await.unwrap().unwrap().mtime,
            f2.ctime
        );
        assert!(b.stat("/_system/config/r2/f2").await.unwrap().is_none());
        a.remove("/_system/config/r2/f1", false, "u").await.unwrap();
        assert_eq!(
            a.remove("/_system/config/r/f1", false, "u")
                .await
                .unwrap_err()
                .errno(),
            libc::ENOENT
        );
        a.remove("/_system/config/r/f2", false, "u").await.unwrap();
        // Carbon updates the collection: a new row with a new REG_VERSION.
        server.sql_in(
            &db,
            "UPDATE REG_RESOURCE SET REG_VERSION = REG_VERSION + 1000000 WHERE REG_NAME IS NULL \
             AND REG_PATH_ID = (SELECT REG_PATH_ID FROM REG_PATH \
             WHERE REG_PATH_VALUE = '/_system/config/r')",
        );
        let f3 = a
            .create("/_system/config/r/f3", file(b"3"), "u")
            .await
            .unwrap();
        let r = b.stat("/_system/config/r").await.unwrap().unwrap();
        assert!(r.version > 1000000, "the collection's new row");
        // The collection's times were written for its new version, so they count.
        assert_eq!(r.mtime, f3.ctime);
        let touched = a.remove("/_system/config/r/f3", false, "u").await.unwrap();
        assert_eq!(
            b.stat("/_system/config/r").await.unwrap().unwrap().mtime,
            touched
        );
        // Removed, then made again: a new row at the same path.
        a.remove("/_system/config/r", true, "u").await.unwrap();
        b.create("/_system/config/r", dir(), "u").await.unwrap();
        a.create("/_system/config/r/f4", file(b"4"), "u")
            .await
            .unwrap();
        assert!(b.stat("/_system/config/r/f4").await.unwrap().is_some());
        a.remove("/_system/config/r/f4", false, "u").await.unwrap();
    });
    // No attribute row was written for a collection row that is gone.
    let orphans = server.sql_in(
        &db,
        "SELECT COUNT(*) FROM REGFS_ATTR a WHERE NOT EXISTS (SELECT 1 FROM REG_RESOURCE r \
         WHERE r.REG_UUID = a.REG_UUID AND r.REG_TENANT_ID = a.REG_TENANT_ID)",
    );
    assert_eq!(orphans.trim(), "0");
}

on_both_servers!(
    collections_changed_elsewhere: postgres_changes_land_in_the_collection_now_at_the_path,
    mariadb_changes_land_in_the_collection_now_at_the_path
);

/// Renames of resources (one statement on PostgreSQL): replacing a resource takes its content,
/// attributes and mappings away, mappings move with the renamed one, both collections and the
/// resource's ctime take the rename's time, the log says RENAME or MOVE with the old path, and
/// what the one statement does not cover (no replacing with RENAME_NOREPLACE, a collection in
/// the way, a resource Carbon wrote without attributes) still follows the general rules.
fn renames_follow_carbons_rules(kind: Kind) {
    let server = servers::server_for(kind);
    let db = server.fresh_db();
    let count = |sql: &str| server.sql_in(&db, sql).trim().parse::<i64>().unwrap();
    rt().block_on(async {
        let s = open(server, &db, Duration::from_secs(20)).await;
        for d in ["/_system/config/a", "/_system/config/b", "/_system/config/b/sub"] {
            s.create(d, dir(), "u").await.unwrap();
        }
        for f in ["a/x", "a/y", "b/z"] {
            s.create(&format!("/_system/config/{f}"), file(f.as_bytes()), "u")
                .await
                .unwrap();
        }
        // A property on each of x and y.
        for name in ["x", "y"] {
            server.sql_in(
                &db,
                "INSERT INTO REG_PROPERTY (REG_NAME, REG_VALUE, REG_TENANT_ID) \
                 VALUES ('k', 'v', -1234)",
            );
            server.sql_in(
                &db,
                &format!(
                    "INSERT INTO REG_RESOURCE_PROPERTY (REG_PROPERTY_ID, REG_PATH_ID, \
                     REG_RESOURCE_NAME, REG_TENANT_ID) SELECT MAX(REG_ID), (SELECT REG_PATH_ID \
                     FROM REG_PATH WHERE REG_PATH_VALUE = '/_system/config/a'), '{name}', -1234 \
                     FROM REG_PROPERTY"
                ),
            );
        }
        // x replaces y in the same collection.
        let t1 = s
            .rename(
                "/_system/config/a/x",
                "/_system/config/a/y",
                RenameMode::Replace,
                "u",
            )
            .await
            .unwrap()
            .expect("something moved");
        assert_eq!(s.read("/_system/config/a/y").await.unwrap(), b"a/x");
        assert!(s.stat("/_system/config/a/x").await.unwrap().is_none());
        assert_eq!(count("SELECT COUNT(*) FROM REG_RESOURCE_PROPERTY"), 1);
        assert_eq!(count("SELECT COUNT(*) FROM REG_PROPERTY"), 1);
        assert_eq!(
            count("SELECT COUNT(*) FROM REG_RESOURCE_PROPERTY WHERE REG_RESOURCE_NAME = 'y'"),
            1
        );
        assert_eq!(count("SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_NAME = 'y'"), 1);
        let y = s.stat("/_system/config/a/y").await.unwrap().unwrap();
        assert_eq!(y.ctime, t1);
        assert_eq!(s.stat("/_system/config/a").await.unwrap().unwrap().mtime, t1);
        assert_eq!(
            count(
                "SELECT COUNT(*) FROM REG_LOG WHERE REG_ACTION = 9 \
                 AND REG_PATH = '/_system/config/a/y' AND REG_ACTION_DATA = '/_system/config/a/x'"
            ),
            1
        );
        // y moves to another collection: both collections' times move.
        let t2 = s
            .rename(
                "/_system/config/a/y",
                "/_system/config/b/y",
                RenameMode::Replace,
                "u",
            )
            .await
            .unwrap()
            .expect("something moved");
        for d in ["/_system/config/a", "/_system/config/b"] {
            assert_eq!(s.stat(d).await.unwrap().unwrap().mtime, t2, "{d}");
        }
        assert_eq!(
            count("SELECT COUNT(*) FROM REG_LOG WHERE REG_ACTION = 10 AND REG_PATH = '/_system/config/b/y'"),
            1
        );
        assert_eq!(
            count(
                "SELECT COUNT(*) FROM REG_RESOURCE_PROPERTY WHERE REG_RESOURCE_NAME = 'y' \
                 AND REG_PATH_ID = (SELECT REG_PATH_ID FROM REG_PATH \
                 WHERE REG_PATH_VALUE = '/_system/config/b')"
            ),
            1
        );
        // Not replacing, a collection in the way, no such resource: errors, nothing changes.
        let e = |r: regfs::error::Result<Option<std::time::SystemTime>>| r.unwrap_err().errno();
        assert_eq!(
            e(s.rename(
                "/_system/config/b/y",
                "/_system/config/b/z",
                RenameMode::NoReplace,
                "u"
            )
            .await),
            libc::EEXIST
        );
        assert_eq!(
            e(s.rename(
                "/_system/config/b/y",
                "/_system/config/b/sub",
                RenameMode::Replace,
                "u"
            )
            .await),
            libc::EISDIR
        );
        assert_eq!(
            e(s.rename(
                "/_system/config/b/none",
                "/_system/config/b/w",
                RenameMode::Replace,
                "u"
            )
            .await),
            libc::ENOENT
        );
        assert_eq!(s.read("/_system/config/b/z").await.unwrap(), b"b/z");
        // A resource Carbon wrote has no attribute row: it moves, and gets one with its ctime.
        server.sql_in(
            &db,
            "DELETE FROM REGFS_ATTR WHERE REG_UUID = (SELECT REG_UUID FROM REG_RESOURCE \
             WHERE REG_NAME = 'z')",
        );
        let t3 = s
            .rename(
                "/_system/config/b/z",
                "/_system/config/a/z",
                RenameMode::Replace,
                "u",
            )
            .await
            .unwrap()
            .expect("something moved");
        assert_eq!(s.stat("/_system/config/a/z").await.unwrap().unwrap().ctime, t3);
        assert_eq!(s.read("/_system/config/a/z").await.unwrap(), b"b/z");
    });
}

on_both_servers!(
    renames_follow_carbons_rules: postgres_renames_follow_carbons_rules,
    mariadb_renames_follow_carbons_rules
);

/// chmod, chown and utimens (one statement for a resource on PostgreSQL): each returns the
/// entry as a stat then shows it, keeps the type bits, moves ctime, and the cases the one
/// statement leaves to the general path (a collection, a resource Carbon wrote without
/// attributes) behave the same.
fn attribute_changes(kind: Kind) {
    let server = servers::server_for(kind);
    let db = server.fresh_db();
    rt().block_on(async {
        let s = open(server, &db, Duration::from_secs(20)).await;
        s.create("/_system/config/s", dir(), "u").await.unwrap();
        s.create("/_system/config/s/f", file(b"abc"), "u")
            .await
            .unwrap();
        let link = regfs::store::NewEntry {
            kind: EntryKind::Symlink,
            perm: 0o777,
            uid: 0,
            gid: 0,
            rdev: 0,
            content: b"f".to_vec(),
        };
        s.create("/_system/config/s/l", link, "u").await.unwrap();
        let at = |secs: u64| std::time::UNIX_EPOCH + Duration::new(secs, 123_456_789);
        let changes = [
            regfs::store::AttrChange {
                perm: Some(0o4750),
                ..Default::default()
            },
            regfs::store::AttrChange {
                uid: Some(7),
                gid: Some(8),
                ..Default::default()
            },
            regfs::store::AttrChange {
                atime: Some(at(1_000_000)),
                mtime: Some(at(2_000_000)),
                ..Default::default()
            },
            regfs::store::AttrChange {
                ctime: Some(at(3_000_000)),
                ..Default::default()
            },
        ];
        for p in [
            "/_system/config/s/f",
            "/_system/config/s/l",
            "/_system/config/s",
        ] {
            let kind = s.stat(p).await.unwrap().unwrap().kind;
            for (i, change) in changes.iter().enumerate() {
                let before = std::time::SystemTime::now();
                let e = s.set_attr(p, change.clone()).await.unwrap();
                assert_eq!(
                    Some(&e),
                    s.stat(p).await.unwrap().as_ref(),
                    "{p} change {i}"
                );
                assert_eq!(e.kind, kind, "{p}: the type stays");
                match i {
                    0 => assert_eq!(e.perm, 0o4750),
                    1 => assert_eq!((e.uid, e.gid, e.perm), (7, 8, 0o4750)),
                    2 => assert_eq!((e.atime, e.mtime), (at(1_000_000), at(2_000_000))),
                    _ => assert_eq!((e.ctime, e.mtime), (at(3_000_000), at(2_000_000))),
                }
                if i < 3 {
                    assert!(e.ctime >= before, "{p} change {i}: ctime moves");
                }
            }
        }
        assert_eq!(
            s.stat("/_system/config/s/f").await.unwrap().unwrap().size,
            3
        );
        // Carbon's resource without an attribute row, updated after it was created: its
        // times are REG_LAST_UPDATED_TIME's, and a chmod keeps its mtime.
        server.sql_in(
            &db,
            "DELETE FROM REGFS_ATTR WHERE REG_UUID = (SELECT REG_UUID FROM REG_RESOURCE \
             WHERE REG_NAME = 'f')",
        );
        server.sql_in(
            &db,
            "UPDATE REG_RESOURCE SET REG_LAST_UPDATED_TIME = '2020-01-02 03:04:05' \
             WHERE REG_NAME = 'f'",
        );
        let before = s.stat("/_system/config/s/f").await.unwrap().unwrap();
        let e = s
            .set_attr(
                "/_system/config/s/f",
                regfs::store::AttrChange {
                    perm: Some(0o600),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!((e.perm, e.kind, e.size), (0o600, EntryKind::File, 3));
        assert_eq!(e.mtime, before.mtime);
        assert!(e.mtime < std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000));
        assert_eq!(Some(e), s.stat("/_system/config/s/f").await.unwrap());
    });
}

on_both_servers!(
    attribute_changes: postgres_attribute_changes,
    mariadb_attribute_changes
);

on_both_servers!(
    racing_nodes: postgres_nodes_racing_on_one_database_lose_nothing,
    mariadb_nodes_racing_on_one_database_lose_nothing
);
on_both_servers!(
    contention: postgres_contention_between_nodes_gives_no_eio,
    mariadb_contention_between_nodes_gives_no_eio
);

#[test]
fn postgres_schema_is_carbons_with_lower_case_names_and_sequences() {
    let server = servers::postgres();
    let db = server.fresh_db();
    rt().block_on(async {
        let s = open(server, &db, Duration::from_secs(20)).await;
        s.create("/_system/config/a.xml", file(b"<a/>"), "admin")
            .await
            .unwrap();
        s.create("/_system/config/A.xml", file(b"<A/>"), "admin")
            .await
            .unwrap();
        s.create("/_system/config/\u{65e5}\u{672c}", dir(), "admin")
            .await
            .unwrap();
        assert_eq!(s.read("/_system/config/A.xml").await.unwrap(), b"<A/>");
    });
    let tables = server.sql_in(
        &db,
        "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name LIKE 'reg_%'",
    );
    for t in [
        "reg_path",
        "reg_resource",
        "reg_content",
        "reg_log",
        "reg_property",
    ] {
        assert!(tables.split(',').any(|x| x.trim() == t), "{t} in {tables}");
    }
    let seqs = server.sql_in(
        &db,
        "SELECT COUNT(*) FROM information_schema.sequences WHERE sequence_name = 'reg_path_pk_seq'",
    );
    assert_eq!(seqs.trim(), "1");
    let row = server.sql_in(
        &db,
        "SELECT r.reg_creator, r.reg_media_type, convert_from(c.reg_content_data, 'UTF8') \
         FROM reg_resource r JOIN reg_path p ON p.reg_path_id = r.reg_path_id \
         JOIN reg_content c ON c.reg_content_id = r.reg_content_id \
         WHERE p.reg_path_value = '/_system/config' AND r.reg_name = 'a.xml' AND r.reg_tenant_id = -1234",
    );
    assert_eq!(row.trim(), "admin\tapplication/xml\t<a/>");
}

#[test]
fn mariadb_schema_keeps_paths_latin1_case_sensitive_and_refuses_other_characters() {
    let server = servers::mariadb();
    let db = server.fresh_db();
    rt().block_on(async {
        let s = open(server, &db, Duration::from_secs(20)).await;
        s.create("/_system/config/Dir", dir(), "admin")
            .await
            .unwrap();
        s.create("/_system/config/dir", dir(), "admin")
            .await
            .unwrap();
        s.create("/_system/config/caf\u{e9}", dir(), "admin")
            .await
            .unwrap();
        // Resource names are utf8mb4; collection paths are latin1 in Carbon's MySQL schema.
        s.create(
            "/_system/config/dir/\u{65e5}\u{672c}.txt",
            file(b"x"),
            "admin",
        )
        .await
        .unwrap();
        let e = s
            .create("/_system/config/\u{65e5}\u{672c}", dir(), "admin")
            .await
            .unwrap_err();
        assert_eq!(e.errno(), libc::EILSEQ, "{e}");
        assert!(
            s.stat("/_system/config/\u{65e5}\u{672c}")
                .await
                .unwrap()
                .is_none()
        );
        let names: Vec<String> = s
            .list("/_system/config", None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, ["Dir", "caf\u{e9}", "dir", "repository"]);
        let long = format!("/_system/config/{}", "x".repeat(740));
        assert_eq!(
            s.create(&long, dir(), "admin").await.unwrap_err().errno(),
            libc::ENAMETOOLONG
        );
    });
    let col = server.sql_in(
        &db,
        "SELECT CHARACTER_SET_NAME, COLLATION_NAME, CHARACTER_MAXIMUM_LENGTH FROM \
         information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'REG_PATH' \
         AND COLUMN_NAME = 'REG_PATH_VALUE'",
    );
    assert_eq!(col.trim(), "latin1\tlatin1_general_cs\t750");
    let blob = server.sql_in(
        &db,
        "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME = 'REG_CONTENT' AND COLUMN_NAME = 'REG_CONTENT_DATA'",
    );
    assert_eq!(blob.trim(), "longblob");
}

/// Unlink deletes the property, tag, comment and rating mappings Carbon hung on a resource
/// (and the properties themselves), and leaves those of other resources alone; a rename takes
/// them along.
fn unlink_removes_mappings(kind: Kind) {
    let server = servers::server_for(kind);
    let db = server.fresh_db();
    rt().block_on(async {
        let s = open(server, &db, Duration::from_secs(20)).await;
        s.create("/_system/config/m", dir(), "u").await.unwrap();
        for name in ["with", "plain", "other"] {
            let p = format!("/_system/config/m/{name}");
            s.create(&p, file(b"1"), "u").await.unwrap();
        }
        let parent =
            "(SELECT REG_PATH_ID FROM REG_PATH WHERE REG_PATH_VALUE = '/_system/config/m')";
        for name in ["with", "other"] {
            server.sql_in(
                &db,
                "INSERT INTO REG_PROPERTY (REG_NAME, REG_VALUE, REG_TENANT_ID) \
                 VALUES ('k', 'v', -1234)",
            );
            server.sql_in(
                &db,
                &format!(
                    "INSERT INTO REG_RESOURCE_PROPERTY (REG_PROPERTY_ID, REG_PATH_ID, \
                     REG_RESOURCE_NAME, REG_TENANT_ID) SELECT MAX(REG_ID), {parent}, '{name}', \
                     -1234 FROM REG_PROPERTY"
                ),
            );
        }
        server.sql_in(
            &db,
            "INSERT INTO REG_TAG (REG_TAG_NAME, REG_USER_ID, REG_TAGGED_TIME, REG_TENANT_ID) \
             VALUES ('t', 'u', CURRENT_TIMESTAMP, -1234)",
        );
        server.sql_in(
            &db,
            &format!(
                "INSERT INTO REG_RESOURCE_TAG (REG_TAG_ID, REG_PATH_ID, REG_RESOURCE_NAME, \
                 REG_TENANT_ID) SELECT MAX(REG_ID), {parent}, 'with', -1234 FROM REG_TAG"
            ),
        );
        let count = |sql: &str| server.sql_in(&db, sql).trim().parse::<i64>().unwrap();
        s.remove("/_system/config/m/plain", false, "u")
            .await
            .unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM REG_RESOURCE_PROPERTY"), 2);
        s.remove("/_system/config/m/with", false, "u")
            .await
            .unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM REG_RESOURCE_PROPERTY"), 1);
        assert_eq!(count("SELECT COUNT(*) FROM REG_PROPERTY"), 1);
        assert_eq!(count("SELECT COUNT(*) FROM REG_RESOURCE_TAG"), 0);
        assert!(s.stat("/_system/config/m/other").await.unwrap().is_some());
        // A rename takes a resource's mappings along.
        s.rename(
            "/_system/config/m/other",
            "/_system/config/m/moved",
            RenameMode::Replace,
            "u",
        )
        .await
        .unwrap();
        assert_eq!(
            count("SELECT COUNT(*) FROM REG_RESOURCE_PROPERTY WHERE REG_RESOURCE_NAME = 'moved'"),
            1
        );
    });
}

on_both_servers!(
    unlink_removes_mappings: postgres_unlink_removes_mappings,
    mariadb_unlink_removes_mappings
);

/// A database made by Carbon's own 4.4.x script: mapping tables without ID columns, REG_PATH
/// without its UNIQUE constraint; `install` adds only regfs's objects.
fn accepts_carbon_44(kind: Kind) {
    let server = servers::server_for(kind);
    let db = server.fresh_db();
    server.sql_file_in(&db, &common::carbon_dbscript(kind, "4.4.x"));
    rt().block_on(async {
        let s = open(server, &db, Duration::from_secs(20)).await;
        let flavor = s.probe().await.unwrap();
        assert!(
            flavor.exists && !flavor.mapping_ids && !flavor.unique_paths,
            "{flavor:?}"
        );
        s.create("/_system/config/x", dir(), "u").await.unwrap();
        s.create("/_system/config/x/f", file(b"1"), "u")
            .await
            .unwrap();
        s.rename(
            "/_system/config/x",
            "/_system/config/y",
            RenameMode::Replace,
            "u",
        )
        .await
        .unwrap();
        s.ensure_mount_link("/_system/config", "gov", "/_system/config", true)
            .await
            .unwrap();
        assert_eq!(
            s.stat("/_system/config").await.unwrap().unwrap().kind,
            EntryKind::Directory
        );
    });
    let this_db = match kind {
        Kind::Postgres => "current_schema()",
        Kind::MariaDb => "DATABASE()",
    };
    let cols = server.sql_in(
        &db,
        &format!(
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = {this_db} \
             AND LOWER(table_name) = 'reg_resource_property' AND LOWER(column_name) = 'id'"
        ),
    );
    assert_eq!(cols.trim(), "0", "regfs left the 4.4.x table as it was");
}

on_both_servers!(
    accepts_carbon_44: postgres_accepts_a_carbon_44_database,
    mariadb_accepts_a_carbon_44_database
);

/// A resource larger than MariaDB's max_allowed_packet is refused with EFBIG and changes
/// nothing: MySQL answers an oversized CONCAT with NULL and a warning, which must not become a
/// silently emptied file. A private server, since the setting is global.
#[test]
fn mariadb_refuses_content_over_max_allowed_packet_with_efbig() {
    let server = Server::start(Kind::MariaDb);
    server.sql("SET GLOBAL max_allowed_packet = 8388608");
    let db = server.fresh_db();
    rt().block_on(async {
        // Connections made from here on get the 8 MiB limit.
        let s = open(&server, &db, Duration::from_secs(20)).await;
        s.create("/_system/config/big", file(b"before"), "u")
            .await
            .unwrap();
        let data = regfs::content::Content::from(vec![7u8; 12 << 20]);
        let e = s
            .write("/_system/config/big", &data, "u")
            .await
            .unwrap_err();
        assert_eq!(e.errno(), libc::EFBIG, "{e}");
        assert!(e.message().contains("max_allowed_packet"), "{e}");
        assert_eq!(s.read("/_system/config/big").await.unwrap(), b"before");
        // Below the limit, pieces still make up a value larger than one piece.
        let data = regfs::content::Content::from(vec![8u8; 6 << 20]);
        s.write("/_system/config/big", &data, "u").await.unwrap();
        assert_eq!(
            s.read("/_system/config/big").await.unwrap(),
            vec![8u8; 6 << 20]
        );
        // The pieces were joined in a user variable on the server; no connection of the
        // store still holds one. MariaDB counts a session's memory in its process list: a
        // connection keeps its network buffer (about one 4 MiB piece), and would hold the
        // 6 MiB value besides (11 MB, measured) had the variable been left set.
        let held: i64 = server
            .sql_in(
                &db,
                &format!(
                    "SELECT COALESCE(MAX(MEMORY_USED), 0) FROM information_schema.PROCESSLIST \
                     WHERE DB = '{db}'"
                ),
            )
            .trim()
            .parse()
            .unwrap();
        assert!(held < 6 << 20, "a connection still holds {held} bytes");
    });
}

/// Content larger than one statement's piece goes to PostgreSQL through one binary COPY. When
/// the server refuses the row (here a trigger; in life a full disk or a constraint), the write
/// fails with its reason, changes nothing, and the same store (its pooled connections) goes on
/// working: the COPY and its transaction are ended, not left open on a connection.
#[test]
fn postgres_large_content_refused_by_the_server_changes_nothing() {
    let server = servers::server_for(Kind::Postgres);
    let db = server.fresh_db();
    server.sql_in(
        &db,
        "CREATE FUNCTION refuse_big() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'no room for % bytes', octet_length(NEW.reg_content_data); END $$",
    );
    rt().block_on(async {
        let s = open(server, &db, Duration::from_secs(20)).await;
        server.sql_in(
            &db,
            "CREATE TRIGGER refuse_big BEFORE INSERT ON reg_content FOR EACH ROW \
             WHEN (octet_length(NEW.reg_content_data) > 5000000) EXECUTE FUNCTION refuse_big()",
        );
        s.create("/_system/config/big", file(b"before"), "u")
            .await
            .unwrap();
        let big = vec![3u8; 6 << 20];
        let e = s
            .write("/_system/config/big", &big.clone().into(), "u")
            .await
            .unwrap_err();
        assert_eq!(e.errno(), libc::EIO, "{e}");
        assert!(e.message().contains("no room for 6291456 bytes"), "{e}");
        assert_eq!(s.read("/_system/config/big").await.unwrap(), b"before");
        // Every pooled connection still works, and the next large write goes through.
        for i in 0..8 {
            s.create(&format!("/_system/config/f{i}"), file(b"x"), "u")
                .await
                .unwrap();
        }
        server.sql_in(&db, "DROP TRIGGER refuse_big ON reg_content");
        s.write("/_system/config/big", &big.clone().into(), "u")
            .await
            .unwrap();
        assert_eq!(s.read("/_system/config/big").await.unwrap(), big);
        assert_eq!(
            server
                .sql_in(&db, "SELECT count(*) FROM reg_content WHERE octet_length(reg_content_data) > 5000000")
                .trim(),
            "1"
        );
    });
}

/// A server that stops answering (SIGSTOP) or goes down gives EIO within the bound, and the
/// store works again once the server is back, without being reopened.
fn outage(kind: Kind) {
    let server = Server::start(kind);
    let db = server.fresh_db();
    let bound = Duration::from_secs(3);
    rt().block_on(async {
        let s = open(&server, &db, bound).await;
        s.create("/_system/config/f", file(b"before"), "u")
            .await
            .unwrap();

        server.pause();
        let start = Instant::now();
        let e = s
            .write("/_system/config/f", &b"during".to_vec().into(), "u")
            .await
            .unwrap_err();
        assert_eq!(e.errno(), libc::EIO, "{e}");
        assert!(
            start.elapsed() < bound * 3,
            "hung for {:?}",
            start.elapsed()
        );
        let start = Instant::now();
        assert_eq!(
            s.stat("/_system/config/f").await.unwrap_err().errno(),
            libc::EIO
        );
        assert!(
            start.elapsed() < bound * 3,
            "hung for {:?}",
            start.elapsed()
        );
        server.resume();

        let start = Instant::now();
        loop {
            match s.read("/_system/config/f").await {
                Ok(data) => {
                    assert_eq!(data, b"before", "the failed write changed nothing");
                    break;
                }
                Err(e) => {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "no recovery: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }

        server.stop(true);
        let start = Instant::now();
        let e = s
            .write("/_system/config/f", &b"down".to_vec().into(), "u")
            .await
            .unwrap_err();
        assert_eq!(e.errno(), libc::EIO, "{e}");
        assert!(
            start.elapsed() < bound * 3,
            "hung for {:?}",
            start.elapsed()
        );
        server.run();
        let start = Instant::now();
        loop {
            match s
                .write("/_system/config/f", &b"after".to_vec().into(), "u")
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "no recovery: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        assert_eq!(s.read("/_system/config/f").await.unwrap(), b"after");
    });
}

on_both_servers!(
    outage: postgres_outage_gives_eio_in_bounded_time_and_recovers,
    mariadb_outage_gives_eio_in_bounded_time_and_recovers
);

/// The UM_* tables on a server: seeded as Carbon seeds them, and users, roles and grants
/// round-trip into decisions; a second open (another node) seeds nothing twice.
fn user_management_on(kind: Kind) {
    let server = servers::server_for(kind);
    let db = server.fresh_db();
    rt().block_on(async {
        let pool = || async {
            regfs::sql::Pool::connect(&ServerOptions {
                url: server.url(&db),
                password: server.password().map(str::to_string),
                max_connections: 2,
                timeout: Duration::from_secs(20),
            })
            .await
            .unwrap()
        };
        let missing = regfs::um::UmDb::open_server(pool().await, -1234).await;
        assert!(
            missing
                .as_ref()
                .is_err_and(|e| e.message().contains("regfs init")),
            "an empty database is refused with a pointer to regfs init"
        );
        regfs::um::UmDb::install_server(&pool().await)
            .await
            .unwrap();
        let um = regfs::um::UmDb::open_server(pool().await, -1234)
            .await
            .unwrap();
        conformance::um_round_trip(&um).await;
        let again = regfs::um::UmDb::open_server(pool().await, -1234)
            .await
            .unwrap();
        assert!(again.user_verify("alice", "secret1").await.unwrap());
        um.clear_path("/x").await.unwrap();
        assert!(again.rules_at("/x").await.unwrap().is_empty());
    });
    let admins = server.sql_in(
        &db,
        "SELECT COUNT(*) FROM UM_USER WHERE UM_USER_NAME = 'admin' AND UM_TENANT_ID = -1234",
    );
    assert_eq!(admins.trim(), "1");
    let everyone = server.sql_in(
        &db,
        "SELECT UM_ROLE_NAME FROM UM_HYBRID_ROLE WHERE UM_TENANT_ID = -1234",
    );
    assert_eq!(everyone.trim(), "everyone");
}

on_both_servers!(
    user_management_on: postgres_user_management_tables_work_as_carbons,
    mariadb_user_management_tables_work_as_carbons
);
