//! regfs on databases exactly as Carbon makes them: Carbon's own dbscripts (4.12.x and 4.4.x,
//! PostgreSQL and MySQL, unedited, from `../shared/carbon/dbscripts/`) loaded into real servers,
//! MariaDB with a latin1 and a utf8mb4 default character set. Each case: a mount by a DML-only
//! user is refused before `regfs init` and changes nothing; `regfs init` by the DBA adds only
//! regfs's own objects; the DML-only user then mounts and runs the file workload; the rows read
//! back with plain SQL; a resource Carbon's JDBCResourceDAO inserted reads through the mount;
//! `user add`, `role add`, `perm grant` write the realm's own rows; names that differ only in
//! case or trailing spaces never overwrite each other; names a column cannot hold are EILSEQ.

mod common;

use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};
use std::time::Duration;

use common::servers::{self, Kind, Server};
use common::{Mounted, wait_until};

/// A database user with SELECT, INSERT, UPDATE and DELETE only, as operators give applications.
struct AppUser {
    name: String,
    password: &'static str,
}

fn app_user(server: &Server, db: &str) -> AppUser {
    let name = format!("app_{}", &db[db.len() - 8..]);
    match server.kind {
        Kind::Postgres => {
            server.sql(&format!("CREATE ROLE {name} LOGIN PASSWORD 'app-secret'"));
        }
        Kind::MariaDb => {
            server.sql(&format!(
                "CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY 'app-secret'; \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON {db}.* TO '{name}'@'127.0.0.1'"
            ));
        }
    }
    let user = AppUser {
        name,
        password: "app-secret",
    };
    grant_dml(server, db, &user);
    user
}

/// PostgreSQL grants on the tables and sequences there are now (MariaDB's `db.*` covers new
/// ones by itself).
fn grant_dml(server: &Server, db: &str, user: &AppUser) {
    if server.kind == Kind::Postgres {
        server.sql_in(
            db,
            &format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {0}; \
                 GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {0}",
                user.name
            ),
        );
    }
}

/// A node's config: its own registry in SQLite under `dir`, /_system/config,
/// /_system/governance and the realm in the Carbon database, as `user` (the superuser when
/// `None`, a DBA).
fn config(dir: &Path, server: &Server, db: &str, user: Option<&AppUser>, tag: &str) -> PathBuf {
    let (who, password) = match (user, server.kind) {
        (Some(u), _) => (u.name.clone(), Some(u.password)),
        (None, Kind::Postgres) => ("postgres".to_string(), None),
        (None, Kind::MariaDb) => ("regfs".to_string(), server.password()),
    };
    let scheme = match server.kind {
        Kind::Postgres => "postgres",
        Kind::MariaDb => "mysql",
    };
    let pw_line = match password {
        Some(p) => {
            let f = dir.join(format!("{tag}.password"));
            std::fs::write(&f, format!("{p}\n")).unwrap();
            format!("password_file = {:?}\n", f.display().to_string())
        }
        None => String::new(),
    };
    let file = dir.join(format!("{tag}.toml"));
    std::fs::write(
        &file,
        format!(
            r#"node_data_source = "node"

[data_sources.node]
url = "sqlite:{local}"

[data_sources.carbon]
url = "{scheme}://{who}@127.0.0.1:{port}/{db}"
busy_timeout_secs = 20
{pw_line}
[remote_instances.gov]
data_source = "carbon"

[[mounts]]
path = "/_system/config"
instance = "gov"
target_path = "/_system/config"

[[mounts]]
path = "/_system/governance"
instance = "gov"
target_path = "/_system/governance"

[user_management]
data_source = "carbon"
"#,
            local = dir.join("local.db").display(),
            port = server.port,
        ),
    )
    .unwrap();
    file
}

/// `regfs mount --foreground` that must fail: its exit status and output.
fn refused_mount(cfg: &Path, dir: &Path) -> String {
    let mnt = dir.join("refused-mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mut child = Command::new(common::regfs_bin())
        .args(["mount", "--foreground", "--config"])
        .arg(cfg)
        .arg(&mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(60), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = Command::new("umount").arg("-l").arg(&mnt).status();
        panic!("the mount was expected to be refused, and it mounted");
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the mount should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the regfs CLI with `stdin`; asserts success and returns stdout.
fn cli(args: &[&str], cfg: &Path, stdin: &str) -> String {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.extend(["--config".into(), cfg.as_os_str().to_owned()]);
    let out = common::run_regfs_with_stdin(all, stdin);
    assert!(
        out.status.success(),
        "regfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The statements only one of two schema dumps has.
fn schema_changes<'a>(now: &'a [String], before: &'a [String]) -> Vec<&'a String> {
    now.iter()
        .filter(|s| !before.contains(s))
        .chain(before.iter().filter(|s| !now.contains(s)))
        .collect()
}

#[track_caller]
fn assert_same_schema(now: &[String], before: &[String], what: &str) {
    let changes = schema_changes(now, before);
    assert!(
        changes.is_empty(),
        "{what} changed the schema: {changes:#?}"
    );
}

fn count(server: &Server, db: &str, sql: &str) -> i64 {
    server.sql_in(db, sql).trim().parse().unwrap()
}

/// What each database can hold, by Carbon's DDL and the database's default character set.
struct Expect {
    /// The collations take names that differ in case or trailing spaces for one (MySQL).
    merging: bool,
    /// A directory name outside latin1 is refused.
    dir_latin1_only: bool,
    /// A file name outside latin1 is refused.
    file_latin1_only: bool,
}

fn carbon_case(kind: Kind, version: &str, charset: &str) {
    let server = servers::server_for(kind);
    let db = server.fresh_db_with_charset(charset);
    server.sql_file_in(&db, &common::carbon_dbscript(kind, version));
    let app = app_user(server, &db);
    let dir = common::open_tempdir();
    let dba_cfg = config(dir.path(), server, &db, None, "dba");
    let app_cfg = config(dir.path(), server, &db, Some(&app), "app");
    let carbon_schema = server.schema_dump(&db);

    // Before `regfs init`: refused, with what is missing and the command, and nothing written.
    let refusal = refused_mount(&app_cfg, dir.path());
    assert!(
        refusal.contains("REGFS_ATTR") && refusal.contains("regfs init"),
        "the refusal names the missing table and the command: {refusal}"
    );
    assert_same_schema(&server.schema_dump(&db), &carbon_schema, "a refused mount");
    assert_eq!(count(server, &db, "SELECT COUNT(*) FROM REG_PATH"), 0);
    assert_eq!(count(server, &db, "SELECT COUNT(*) FROM UM_USER"), 0);

    // `regfs init` by the DBA: regfs's own objects only, twice without complaint.
    common::run_regfs_ok(["init".as_ref(), "--config".as_ref(), dba_cfg.as_os_str()]);
    common::run_regfs_ok(["init".as_ref(), "--config".as_ref(), dba_cfg.as_os_str()]);
    grant_dml(server, &db, &app);
    let after_init = server.schema_dump(&db);
    let changed = schema_changes(&after_init, &carbon_schema);
    assert!(!changed.is_empty(), "regfs init added nothing");
    for stmt in &changed {
        assert!(
            stmt.to_ascii_lowercase().contains("regfs_"),
            "regfs init changed Carbon's schema:\n{stmt}"
        );
    }

    // The DML-only user mounts and works.
    let d = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    let m = Mounted::with_data(d, app_cfg.clone(), &["-o", "xattr"]);
    let gov = m.p("_system/governance");
    m.sh(
        &gov,
        "mkdir -p app/conf && printf '<a>1</a>\\n' > app/conf/a.xml && cat app/conf/a.xml \
         && sed -i 's/1/2/' app/conf/a.xml && grep -q '<a>2</a>' app/conf/a.xml \
         && cp -r app app2 && mv app2/conf/a.xml app2/conf/b.xml && ls -l app2/conf \
         && tar cf - app | (mkdir untar && cd untar && tar xf -) && cmp app/conf/a.xml untar/app/conf/a.xml \
         && rm -r app2 untar && echo 'café' > 'é.txt' && cat 'é.txt'",
    );
    assert_eq!(
        std::fs::read_to_string(gov.join("app/conf/a.xml")).unwrap(),
        "<a>2</a>\n"
    );
    // Rows as Carbon reads them.
    assert_eq!(
        count(
            server,
            &db,
            "SELECT COUNT(*) FROM REG_RESOURCE r JOIN REG_PATH p ON p.REG_PATH_ID = r.REG_PATH_ID \
             WHERE p.REG_PATH_VALUE = '/_system/governance/app/conf' AND r.REG_NAME = 'a.xml' \
             AND r.REG_CREATOR = 'admin' AND r.REG_TENANT_ID = -1234"
        ),
        1
    );
    assert!(
        count(
            server,
            &db,
            "SELECT COUNT(*) FROM REG_LOG WHERE REG_PATH = '/_system/governance/app/conf/a.xml' \
             AND REG_ACTION = 0"
        ) >= 1
    );
    assert_eq!(
        count(
            server,
            &db,
            "SELECT COUNT(*) FROM REG_PATH WHERE REG_PATH_VALUE LIKE '/_system/governance/app2%'"
        ),
        2,
        "REG_PATH rows stay after a removal, as in Carbon"
    );

    // A resource Carbon's JDBCResourceDAO inserted (content row, then the resource row).
    let insert = match kind {
        Kind::Postgres => {
            "WITH c AS (INSERT INTO REG_CONTENT (REG_CONTENT_DATA, REG_TENANT_ID) \
             VALUES (convert_to('from carbon', 'UTF8'), -1234) RETURNING REG_CONTENT_ID) \
             INSERT INTO REG_RESOURCE (REG_PATH_ID, REG_NAME, REG_MEDIA_TYPE, REG_CREATOR, \
             REG_CREATED_TIME, REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, REG_DESCRIPTION, \
             REG_CONTENT_ID, REG_TENANT_ID, REG_UUID) SELECT p.REG_PATH_ID, 'carbon.xml', \
             'application/xml', 'admin', now(), 'admin', now(), NULL, c.REG_CONTENT_ID, -1234, \
             'c0ffee00-0000-4000-8000-000000000001' FROM REG_PATH p, c \
             WHERE p.REG_PATH_VALUE = '/_system/governance' AND p.REG_TENANT_ID = -1234"
        }
        Kind::MariaDb => {
            "INSERT INTO REG_CONTENT (REG_CONTENT_DATA, REG_TENANT_ID) VALUES ('from carbon', -1234); \
             INSERT INTO REG_RESOURCE (REG_PATH_ID, REG_NAME, REG_MEDIA_TYPE, REG_CREATOR, \
             REG_CREATED_TIME, REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, REG_DESCRIPTION, \
             REG_CONTENT_ID, REG_TENANT_ID, REG_UUID) SELECT p.REG_PATH_ID, 'carbon.xml', \
             'application/xml', 'admin', NOW(), 'admin', NOW(), NULL, LAST_INSERT_ID(), -1234, \
             'c0ffee00-0000-4000-8000-000000000001' FROM REG_PATH p \
             WHERE p.REG_PATH_VALUE = '/_system/governance' AND p.REG_TENANT_ID = -1234"
        }
    };
    server.sql_in(&db, insert);
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(
            gov.join("carbon.xml")
        )
        .is_ok_and(|s| s == "from carbon")),
        "a resource Carbon inserted reads through the mount"
    );

    // Its properties, as Carbon's JDBC DAOs map them: one by version (Carbon 4.4.x's
    // versioned resources) reads as an extended attribute; one set through the mount is
    // written by path and name, as Carbon 4.12.x writes it, and its UPDATE is logged.
    server.sql_in(
        &db,
        "INSERT INTO REG_PROPERTY (REG_NAME, REG_VALUE, REG_TENANT_ID) \
         VALUES ('registry.lifecycle.state', 'Created', -1234)",
    );
    server.sql_in(
        &db,
        "INSERT INTO REG_RESOURCE_PROPERTY (REG_PROPERTY_ID, REG_VERSION, REG_TENANT_ID) \
         SELECT MAX(pr.REG_ID), MAX(r.REG_VERSION), -1234 FROM REG_PROPERTY pr, REG_RESOURCE r \
         WHERE pr.REG_NAME = 'registry.lifecycle.state' AND r.REG_NAME = 'carbon.xml'",
    );
    assert_eq!(
        m.sh(
            &gov,
            "getfattr --only-values -n user.registry.lifecycle.state carbon.xml && echo && \
             setfattr -n user.owner -v ops carbon.xml && getfattr --only-values -n user.owner carbon.xml"
        ),
        "Created\nops"
    );
    assert_eq!(
        count(
            server,
            &db,
            "SELECT COUNT(*) FROM REG_RESOURCE_PROPERTY rp JOIN REG_PROPERTY pr \
             ON pr.REG_ID = rp.REG_PROPERTY_ID JOIN REG_PATH p ON p.REG_PATH_ID = rp.REG_PATH_ID \
             WHERE p.REG_PATH_VALUE = '/_system/governance' AND rp.REG_RESOURCE_NAME = 'carbon.xml' \
             AND pr.REG_NAME = 'owner' AND pr.REG_VALUE = 'ops'"
        ),
        1
    );
    assert_eq!(
        count(
            server,
            &db,
            "SELECT COUNT(*) FROM REG_LOG WHERE REG_PATH = '/_system/governance/carbon.xml' \
             AND REG_ACTION = 1"
        ),
        1
    );

    // A symbolic link as Carbon's createLink stores it (a collection of the link media type
    // with registry.linkrestoration) reads as a symlink, and `ln -s` writes one.
    let link_sql = match kind {
        Kind::Postgres => {
            "WITH p AS (INSERT INTO REG_PATH (REG_PATH_VALUE, REG_PATH_PARENT_ID, REG_TENANT_ID) \
             SELECT '/_system/governance/carbonlink', REG_PATH_ID, -1234 FROM REG_PATH \
             WHERE REG_PATH_VALUE = '/_system/governance' AND REG_TENANT_ID = -1234 \
             RETURNING REG_PATH_ID), \
             r AS (INSERT INTO REG_RESOURCE (REG_PATH_ID, REG_NAME, REG_MEDIA_TYPE, REG_CREATOR, \
             REG_CREATED_TIME, REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, REG_TENANT_ID, REG_UUID) \
             SELECT p.REG_PATH_ID, NULL, 'application/vnd.wso2-link', 'admin', now(), 'admin', \
             now(), -1234, 'c0ffee00-0000-4000-8000-000000000002' FROM p RETURNING REG_PATH_ID), \
             pr AS (INSERT INTO REG_PROPERTY (REG_NAME, REG_VALUE, REG_TENANT_ID) VALUES \
             ('registry.linkrestoration', '/_system/governance/carbonlink;/_system/governance/app;admin', \
             -1234) RETURNING REG_ID) \
             INSERT INTO REG_RESOURCE_PROPERTY (REG_PROPERTY_ID, REG_PATH_ID, REG_RESOURCE_NAME, \
             REG_TENANT_ID) SELECT pr.REG_ID, r.REG_PATH_ID, NULL, -1234 FROM pr, r"
        }
        Kind::MariaDb => {
            "INSERT INTO REG_PATH (REG_PATH_VALUE, REG_PATH_PARENT_ID, REG_TENANT_ID) \
             SELECT '/_system/governance/carbonlink', REG_PATH_ID, -1234 FROM REG_PATH \
             WHERE REG_PATH_VALUE = '/_system/governance' AND REG_TENANT_ID = -1234; \
             SET @p = LAST_INSERT_ID(); \
             INSERT INTO REG_RESOURCE (REG_PATH_ID, REG_NAME, REG_MEDIA_TYPE, REG_CREATOR, \
             REG_CREATED_TIME, REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, REG_TENANT_ID, REG_UUID) \
             VALUES (@p, NULL, 'application/vnd.wso2-link', 'admin', NOW(), 'admin', NOW(), -1234, \
             'c0ffee00-0000-4000-8000-000000000002'); \
             INSERT INTO REG_PROPERTY (REG_NAME, REG_VALUE, REG_TENANT_ID) VALUES \
             ('registry.linkrestoration', '/_system/governance/carbonlink;/_system/governance/app;admin', -1234); \
             INSERT INTO REG_RESOURCE_PROPERTY (REG_PROPERTY_ID, REG_PATH_ID, REG_RESOURCE_NAME, \
             REG_TENANT_ID) VALUES (LAST_INSERT_ID(), @p, NULL, -1234)"
        }
    };
    server.sql_in(&db, link_sql);
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_link(
            gov.join("carbonlink")
        )
        .is_ok_and(|t| t == Path::new("app"))),
        "a link Carbon made reads as a symlink to its target"
    );
    assert_eq!(
        std::fs::read_to_string(gov.join("carbonlink/conf/a.xml")).unwrap(),
        "<a>2</a>\n"
    );
    m.sh(
        &gov,
        "ln -s app/conf/a.xml mylink && ln -s ../governance/app dirlink && ln -s /etc/hostname own \
         && test \"$(readlink mylink)\" = app/conf/a.xml && grep -q 2 mylink \
         && test -f dirlink/conf/a.xml && test \"$(readlink own)\" = /etc/hostname \
         && chown -h 123:456 mylink dirlink && test \"$(stat -c %u:%g:%F dirlink)\" = '123:456:symbolic link' \
         && touch -h -d @1700000000 mylink && test \"$(stat -c %Y mylink)\" = 1700000000",
    );
    for (name, target) in [
        ("mylink", "/_system/governance/app/conf/a.xml"),
        ("dirlink", "/_system/governance/app"),
    ] {
        let p = format!("/_system/governance/{name}");
        assert_eq!(
            count(
                server,
                &db,
                &format!(
                    "SELECT COUNT(*) FROM REG_LOG WHERE REG_PATH = '{p}' AND REG_ACTION = 13 \
                     AND REG_ACTION_DATA = '{target}'"
                )
            ),
            1,
            "CREATE_SYMBOLIC_LINK for {name}"
        );
        assert_eq!(
            count(
                server,
                &db,
                &format!(
                    "SELECT COUNT(*) FROM REG_PROPERTY WHERE REG_NAME = 'registry.linkrestoration' \
                     AND REG_VALUE = '{p};{target};admin'"
                )
            ),
            1,
            "registry.linkrestoration of {name}"
        );
    }
    assert_eq!(
        count(
            server,
            &db,
            "SELECT COUNT(*) FROM REG_LOG WHERE REG_PATH = '/_system/governance/own' AND REG_ACTION = 13"
        ),
        0,
        "a symlink out of the registry stays regfs's own"
    );
    m.sh(
        &gov,
        "rm mylink dirlink own carbonlink && test -f app/conf/a.xml",
    );
    assert_eq!(
        count(
            server,
            &db,
            "SELECT COUNT(*) FROM REG_LOG WHERE REG_ACTION = 14 AND REG_PATH IN \
             ('/_system/governance/mylink', '/_system/governance/dirlink', '/_system/governance/carbonlink')"
        ),
        3,
        "REMOVE_LINK for each Carbon link"
    );

    // Names that differ only in case or trailing spaces.
    let expect = Expect {
        merging: kind == Kind::MariaDb,
        dir_latin1_only: kind == Kind::MariaDb && (charset == "latin1" || version == "4.12.x"),
        file_latin1_only: kind == Kind::MariaDb && charset == "latin1",
    };
    std::fs::write(gov.join("Case.txt"), "upper\n").unwrap();
    std::fs::write(gov.join("sp.txt"), "plain\n").unwrap();
    std::fs::create_dir(gov.join("Dir")).unwrap();
    // REG_PATH_VALUE is latin1_general_cs in 4.12.x (case-sensitive, but PAD SPACE), the
    // database's default collation in 4.4.x.
    let dir_case_merges = expect.merging && version == "4.4.x";
    for (name, dir, merges) in [
        ("case.txt", false, expect.merging),
        ("sp.txt ", false, expect.merging),
        ("dir", true, dir_case_merges),
        ("Dir ", true, expect.merging),
    ] {
        let r = if dir {
            std::fs::create_dir(gov.join(name))
        } else {
            std::fs::write(gov.join(name), "other\n")
        };
        if merges {
            assert_eq!(
                common::errno_of(r),
                libc::EEXIST,
                "{name:?} beside a name the collation takes for it"
            );
        } else {
            r.unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
    }
    assert_eq!(
        std::fs::read_to_string(gov.join("Case.txt")).unwrap(),
        "upper\n"
    );
    assert_eq!(
        std::fs::read_to_string(gov.join("sp.txt")).unwrap(),
        "plain\n"
    );
    if expect.merging {
        assert_eq!(
            common::errno_of(std::fs::rename(gov.join("sp.txt"), gov.join("Case.TXT"))),
            libc::EEXIST,
            "a rename onto a name the collation confuses"
        );
        // A case-only rename of one entry is no confusion.
        std::fs::rename(gov.join("Case.txt"), gov.join("CASE.txt")).unwrap();
        assert_eq!(
            std::fs::read_to_string(gov.join("CASE.txt")).unwrap(),
            "upper\n"
        );
        assert_eq!(
            count(
                server,
                &db,
                "SELECT COUNT(*) FROM REG_RESOURCE r JOIN REG_PATH p ON p.REG_PATH_ID = r.REG_PATH_ID \
                 WHERE p.REG_PATH_VALUE = '/_system/governance' AND LOWER(r.REG_NAME) IN ('case.txt', 'sp.txt')"
            ),
            2,
            "no second row for a confusable name"
        );
    } else {
        assert_eq!(
            std::fs::read_to_string(gov.join("case.txt")).unwrap(),
            "other\n"
        );
    }

    // Names outside latin1.
    let r = std::fs::create_dir(gov.join("dir-日本"));
    if expect.dir_latin1_only {
        assert_eq!(common::errno_of(r), libc::EILSEQ, "mkdir dir-日本");
    } else {
        r.unwrap();
        std::fs::write(gov.join("dir-日本/x.txt"), "x").unwrap();
    }
    let r = std::fs::write(gov.join("file-日本.txt"), "x");
    if expect.file_latin1_only {
        assert_eq!(common::errno_of(r), libc::EILSEQ, "file-日本.txt");
        assert_eq!(
            common::errno_of(std::fs::rename(
                gov.join("sp.txt"),
                gov.join("file-日本.txt")
            )),
            libc::EILSEQ,
            "rename to file-日本.txt"
        );
    } else {
        r.unwrap();
        assert_eq!(
            std::fs::read_to_string(gov.join("file-日本.txt")).unwrap(),
            "x"
        );
    }
    let listing: Vec<String> = std::fs::read_dir(&gov)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(listing.contains(&"é.txt".to_string()), "{listing:?}");
    let log = m.log();
    if expect.merging {
        assert!(log.contains("collation"), "the refusals are logged:\n{log}");
    }
    if expect.file_latin1_only || expect.dir_latin1_only {
        assert!(
            log.contains("cannot hold"),
            "the EILSEQ refusals are logged:\n{log}"
        );
    }

    // The realm as Carbon's JDBC user store manager writes it, by the DML-only user.
    cli(&["user", "add", "carol"], &app_cfg, "carol-secret\n");
    cli(&["role", "add", "ops"], &app_cfg, "");
    cli(&["role", "add", "Internal/devs"], &app_cfg, "");
    cli(&["role", "assign", "ops", "carol"], &app_cfg, "");
    cli(
        &["perm", "grant", "ops", "/_system/governance/app", "get"],
        &app_cfg,
        "",
    );
    let check = cli(
        &[
            "perm",
            "check",
            "carol",
            "/_system/governance/app/conf/a.xml",
            "get",
        ],
        &app_cfg,
        "",
    );
    assert!(check.contains("ALLOW"), "{check}");
    assert_eq!(
        count(
            server,
            &db,
            "SELECT COUNT(*) FROM UM_USER WHERE UM_USER_NAME = 'carol' AND UM_TENANT_ID = -1234"
        ),
        1
    );
    assert_eq!(
        count(
            server,
            &db,
            "SELECT COUNT(*) FROM UM_ROLE_PERMISSION rp JOIN UM_PERMISSION p ON p.UM_ID = rp.UM_PERMISSION_ID \
             JOIN UM_DOMAIN d ON d.UM_DOMAIN_ID = rp.UM_DOMAIN_ID AND d.UM_TENANT_ID = rp.UM_TENANT_ID \
             WHERE p.UM_RESOURCE_ID = '/_system/governance/app' AND rp.UM_ROLE_NAME = 'ops' \
             AND d.UM_DOMAIN_NAME = 'PRIMARY' AND rp.UM_IS_ALLOWED = 1"
        ),
        1
    );
    assert_eq!(
        count(
            server,
            &db,
            "SELECT COUNT(*) FROM UM_HYBRID_ROLE WHERE UM_ROLE_NAME = 'devs' AND UM_TENANT_ID = -1234"
        ),
        1
    );

    // After all of that, Carbon's schema is still Carbon's: only regfs's objects differ.
    drop(m);
    assert_same_schema(
        &server.schema_dump(&db),
        &after_init,
        "the mount and its workload",
    );
}

#[test]
fn postgres_carbon_4_12_database() {
    carbon_case(Kind::Postgres, "4.12.x", "UTF8");
}

#[test]
fn postgres_carbon_4_4_database() {
    carbon_case(Kind::Postgres, "4.4.x", "UTF8");
}

#[test]
fn mariadb_carbon_4_12_latin1_database() {
    carbon_case(Kind::MariaDb, "4.12.x", "latin1");
}

#[test]
fn mariadb_carbon_4_12_utf8mb4_database() {
    carbon_case(Kind::MariaDb, "4.12.x", "utf8mb4");
}

#[test]
fn mariadb_carbon_4_4_latin1_database() {
    carbon_case(Kind::MariaDb, "4.4.x", "latin1");
}

#[test]
fn mariadb_carbon_4_4_utf8mb4_database() {
    carbon_case(Kind::MariaDb, "4.4.x", "utf8mb4");
}
