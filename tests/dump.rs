//! `regfs dump` and `regfs load`: a subtree with content, POSIX attributes, properties, media
//! types, descriptions, UUIDs, Carbon links, tags, comments, ratings and associations goes
//! SQLite → PostgreSQL → MariaDB through Carbon's dump format and comes out the same (read
//! back through a real mount and with plain SQL); conflicts, bad dumps and Carbon's own dumps.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::servers::{self, Kind};
use common::{Mounted, run_regfs, run_regfs_ok, source_args};

const APP: &str = "/_system/governance/app";

/// One registry to dump from or load into: its config (or data dir) and how to run SQL on its
/// shared database.
struct Registry {
    dir: tempfile::TempDir,
    data: PathBuf,
    kind: Option<Kind>,
}

impl Registry {
    fn new(kind: Option<Kind>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("regfs-test-")
            .tempdir()
            .unwrap();
        let data = match kind {
            None => dir.path().join("data"),
            Some(k) => common::server_config(dir.path(), k),
        };
        if kind.is_none() {
            run_regfs_ok(cli(&["init"], &data));
        }
        Registry { dir, data, kind }
    }

    /// SQL on the shared database (the one that holds /_system/governance), rows as text.
    fn sql(&self, sql: &str) -> Vec<String> {
        let text = match self.kind {
            None => {
                let out = Command::new("sqlite3")
                    .arg(self.data.join("shared.db"))
                    .arg(sql)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{sql}: {out:?}");
                String::from_utf8(out.stdout).unwrap()
            }
            Some(k) => {
                let cfg = std::fs::read_to_string(&self.data).unwrap();
                let shared = cfg.split("[data_sources.shared]").nth(1).unwrap();
                let url = shared.lines().find(|l| l.starts_with("url")).unwrap();
                let db = url.trim_end_matches('"').rsplit('/').next().unwrap();
                servers::server_for(k).sql_in(db, sql)
            }
        };
        text.lines().map(|l| l.replace('|', "\t")).collect()
    }

    fn mount(&self) -> Mounted {
        let dir = tempfile::Builder::new()
            .prefix("regfs-test-")
            .tempdir()
            .unwrap();
        Mounted::with_data(dir, self.data.clone(), &["-o", "xattr"])
    }

    fn dump(&self, path: &str, name: &str) -> PathBuf {
        let file = self.dir.path().join(name);
        let out = run_regfs_ok(cli(&["dump", path, file.to_str().unwrap()], &self.data));
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("dumped"), "{said}");
        file
    }

    fn load(&self, file: &Path, path: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["load", file.to_str().unwrap(), path];
        args.extend(extra);
        run_regfs(cli(&args, &self.data))
    }

    fn count(&self, table: &str) -> String {
        self.sql(&format!("SELECT COUNT(*) FROM {table}")).concat()
    }
}

fn cli(args: &[&str], data: &Path) -> Vec<std::ffi::OsString> {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.extend(source_args(data));
    all
}

/// A dump with what legitimately differs between databases taken out: the REG_VERSION each
/// database gave a row, and (`seconds`) the milliseconds of times a database keeps in
/// seconds (Carbon's MySQL schema: TIMESTAMP without fractions).
fn normalized(file: &Path, seconds: bool) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("<version>") {
            continue;
        }
        let mut line = line.to_string();
        for tag in ["createdTime", "date"] {
            let open = format!("<{tag}>");
            if seconds
                && let Some(start) = line.find(&open)
                && let Some(end) = line.find(&format!("</{tag}>"))
            {
                let n: i64 = line[start + open.len()..end].parse().unwrap();
                line = format!(
                    "{}{}{}",
                    &line[..start + open.len()],
                    n / 1000,
                    &line[end..]
                );
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// What a tree looks like through a mount: every entry's type, mode, owner, size, mtime (ns),
/// and a file's content, a link's target and every attribute's value.
fn tree(m: &Mounted, at: &str) -> String {
    m.sh(
        &m.p(at),
        "find . -printf '%p %y %m %U:%G %s %T@ %l\\n' | LC_ALL=C sort; \
         find . -type f -exec sha256sum {} + | LC_ALL=C sort; \
         getfattr -R -h -d -m - --absolute-names . 2>/dev/null | grep -v '^# file' | LC_ALL=C sort",
    )
}

/// The acceptance test of `regfs dump`/`load`: SQLite → PostgreSQL → MariaDB and back.
#[test]
fn a_subtree_round_trips_sqlite_postgres_mariadb() {
    let lite = Registry::new(None);
    {
        let m = lite.mount();
        let gov = m.p("_system/governance");
        m.sh(
            &gov,
            "mkdir -p app/sub/deep app/empty && printf '<a/>\\n' > app/a.xml && \
             head -c 70000 /dev/urandom > app/sub/bin && printf 'x\\0y\\377' >> app/sub/bin && \
             : > app/sub/deep/empty.txt && printf 'ü' > 'app/naïve name.txt' && \
             chmod 640 app/a.xml && chmod 700 app/sub/deep && chown 1000:100 app/sub/bin && \
             ln -s ../a.xml app/sub/link && ln -s /etc/hostname app/abs && mkfifo app/fifo && \
             setfattr -n user.lifecycle -v Development app/a.xml && \
             setfattr -n user.multi -v \"$(printf 'one\\ntwo')\" app/a.xml && \
             setfattr -n user.spaced -v '  a & <b>  ' app/a.xml && \
             setfattr -n user.regfs.description -v 'the app' app && \
             setfattr -n user.regfs.media-type -v application/octet-stream app/sub/bin && \
             touch -d '2020-01-02 03:04:05.123456789' app/a.xml",
        );
    }
    // What Carbon's console adds: a tag, a comment, a rating and an association.
    let dir_id = lite
        .sql(&format!(
            "SELECT REG_PATH_ID FROM REG_PATH WHERE REG_PATH_VALUE = '{APP}'"
        ))
        .concat();
    lite.sql(&format!(
        "INSERT INTO REG_TAG (REG_TAG_NAME, REG_USER_ID, REG_TAGGED_TIME, REG_TENANT_ID) \
         VALUES ('soa', 'bob', '2024-05-06 07:08:09', -1234); \
         INSERT INTO REG_RESOURCE_TAG (REG_TAG_ID, REG_PATH_ID, REG_RESOURCE_NAME, REG_TENANT_ID) \
         SELECT MAX(REG_ID), {dir_id}, 'a.xml', -1234 FROM REG_TAG; \
         INSERT INTO REG_COMMENT (REG_COMMENT_TEXT, REG_USER_ID, REG_COMMENTED_TIME, REG_TENANT_ID) \
         VALUES ('looks good', 'bob', '2024-05-06 07:08:10', -1234); \
         INSERT INTO REG_RESOURCE_COMMENT (REG_COMMENT_ID, REG_PATH_ID, REG_RESOURCE_NAME, \
         REG_TENANT_ID) SELECT MAX(REG_ID), {dir_id}, 'a.xml', -1234 FROM REG_COMMENT; \
         INSERT INTO REG_RATING (REG_RATING, REG_USER_ID, REG_RATED_TIME, REG_TENANT_ID) \
         VALUES (4, 'bob', '2024-05-06 07:08:11', -1234); \
         INSERT INTO REG_RESOURCE_RATING (REG_RATING_ID, REG_PATH_ID, REG_RESOURCE_NAME, \
         REG_TENANT_ID) SELECT MAX(REG_ID), {dir_id}, 'a.xml', -1234 FROM REG_RATING; \
         INSERT INTO REG_ASSOCIATION (REG_SOURCEPATH, REG_TARGETPATH, REG_ASSOCIATION_TYPE, \
         REG_TENANT_ID) VALUES ('{APP}/a.xml', '{APP}/sub/bin', 'depends', -1234); \
         INSERT INTO REG_ASSOCIATION (REG_SOURCEPATH, REG_TARGETPATH, REG_ASSOCIATION_TYPE, \
         REG_TENANT_ID) VALUES ('{APP}/a.xml', 'http://example.org/doc', 'docs', -1234);"
    ));
    let d1 = lite.dump(APP, "from-sqlite.xml");
    let text = std::fs::read_to_string(&d1).unwrap();
    assert!(
        text.starts_with("<resource name=\"app\" status=\"dump\" isCollection=\"true\">"),
        "{}",
        &text[..200]
    );
    for expected in [
        "<property key=\"lifecycle\">Development</property>",
        "<tagName>soa</tagName>",
        "<text>looks good</text>",
        "<rate>4</rate>",
        "<destination>sub/bin</destination>",
        "<destination>:http://example.org/doc</destination>",
        "<description>the app</description>",
    ] {
        assert!(text.contains(expected), "{expected} missing from the dump");
    }

    // Into PostgreSQL, back out: the same dump.
    let pg = Registry::new(Some(Kind::Postgres));
    let out = pg.load(&d1, APP, &[]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("loaded") && said.contains("11 collections and resources written"),
        "{said}"
    );
    let d2 = pg.dump(APP, "from-postgres.xml");
    assert_eq!(normalized(&d2, false), normalized(&d1, false));

    // Into MariaDB (times in seconds there), back out.
    let my = Registry::new(Some(Kind::MariaDb));
    let out = my.load(&d2, APP, &[]);
    assert!(out.status.success(), "{out:?}");
    let d3 = my.dump(APP, "from-mariadb.xml");
    assert_eq!(normalized(&d3, true), normalized(&d1, true));

    // Through the mounts, the trees are the same: types, modes, owners, sizes, times to the
    // nanosecond, content, link targets, properties, descriptions and media types.
    let (want, got) = {
        let a = lite.mount();
        let b = my.mount();
        (tree(&a, APP), tree(&b, APP))
    };
    assert_eq!(got, want);
    assert!(
        want.contains("./sub/link l 777") && want.contains("../a.xml"),
        "{want}"
    );
    assert!(want.contains("./fifo p 644"), "{want}");
    assert!(want.contains("user.lifecycle=\"Development\""), "{want}");

    // Rows as Carbon reads them: the UUID kept, the tag with its user and the RESTORE entry.
    let uuid = |r: &Registry| {
        r.sql(&format!(
            "SELECT r.REG_UUID FROM REG_RESOURCE r JOIN REG_PATH p ON p.REG_PATH_ID = r.REG_PATH_ID \
             WHERE p.REG_PATH_VALUE = '{APP}' AND r.REG_NAME = 'a.xml'"
        ))
        .concat()
    };
    assert_eq!(uuid(&my), uuid(&lite));
    assert_eq!(
        my.sql(
            "SELECT t.REG_TAG_NAME, t.REG_USER_ID, x.REG_RESOURCE_NAME FROM REG_TAG t \
             JOIN REG_RESOURCE_TAG x ON x.REG_TAG_ID = t.REG_ID"
        ),
        ["soa\tbob\ta.xml"]
    );
    assert_eq!(
        my.sql(&format!(
            "SELECT REG_ACTION, REG_USER_ID FROM REG_LOG WHERE REG_PATH = '{APP}' \
             AND REG_ACTION = 8"
        )),
        ["8\tadmin"]
    );

    // A second load over it is refused, and changes nothing.
    let before = (my.count("REG_RESOURCE"), my.count("REG_LOG"));
    let out = my.load(&d1, APP, &[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("exists") && said.contains("--overwrite"),
        "{said}"
    );
    assert_eq!((my.count("REG_RESOURCE"), my.count("REG_LOG")), before);
    // With --overwrite the resources are replaced, UUIDs kept, the tree the same.
    let out = my.load(&d1, APP, &["--overwrite"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(uuid(&my), uuid(&lite));
    let d4 = my.dump(APP, "overwritten.xml");
    assert_eq!(normalized(&d4, true), normalized(&d1, true));

    // A truncated dump is refused before anything is written.
    let cut = my.dir.path().join("cut.xml");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let before = my.count("REG_RESOURCE");
    let out = my.load(&cut, "/_system/governance/other", &[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("cut.xml") && said.contains("XML"), "{said}");
    assert_eq!(my.count("REG_RESOURCE"), before);
}

/// A dump as Carbon's `Registry.dump` writes it (no regfs attributes, old `childs`, elements
/// regfs does not know) loads, with Carbon's defaults for what it lacks; a load elsewhere in
/// the same database gives the copies new UUIDs.
#[test]
fn carbon_s_own_dump_loads() {
    let lite = Registry::new(None);
    let file = lite.dir.path().join("carbon.xml");
    std::fs::write(
        &file,
        "<resource name=\"svc\" status=\"dump\" isCollection=\"true\"><mediaType></mediaType>\
         <version>7</version><creator>carbon</creator><createdTime>1600000000000</createdTime>\
         <lastUpdater>carbon</lastUpdater><lastModified>1600000000000</lastModified>\
         <uuid>aaaaaaaa-0000-0000-0000-000000000001</uuid><description></description>\
         <somethingNew><x/></somethingNew><childs>\
         <resource name=\"svc.wsdl\" status=\"dump\" isCollection=\"false\">\
         <mediaType>application/wsdl+xml</mediaType><creator>carbon</creator>\
         <createdTime>1600000000000</createdTime><lastModified>1600000001000</lastModified>\
         <uuid>aaaaaaaa-0000-0000-0000-000000000002</uuid><description>A service</description>\
         <properties><property key=\"registry.lifecycle.state\">Testing</property></properties>\
         <content>PGRlZmluaXRpb25zLz4=</content></resource></childs></resource>",
    )
    .unwrap();
    let out = lite.load(&file, "/_system/governance/trunk/svc", &[]);
    assert!(out.status.success(), "{out:?}");
    let out = lite.load(&file, "/_system/governance/trunk/copy", &[]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("2 given new UUIDs"), "{said}");
    let m = lite.mount();
    let svc = m.p("_system/governance/trunk/svc");
    assert_eq!(
        std::fs::read_to_string(svc.join("svc.wsdl")).unwrap(),
        "<definitions/>"
    );
    let listing = m.sh(
        &svc,
        "stat -c '%A %U %Y' svc.wsdl . && getfattr -d -m - svc.wsdl | grep -v '^#' && \
         for a in description media-type; do getfattr -n user.regfs.$a svc.wsdl; done | grep -v '^#'",
    );
    assert!(
        listing.contains("-rw-rw-rw- root 1600000001")
            && listing.contains("drwxrwxrwx root 1600000000"),
        "Carbon's defaults and the dump's times: {listing}"
    );
    assert!(
        listing.contains("user.registry.lifecycle.state=\"Testing\"")
            && listing.contains("user.regfs.description=\"A service\"")
            && listing.contains("user.regfs.media-type=\"application/wsdl+xml\""),
        "{listing}"
    );
    let creator = m.sh(
        &svc,
        "getfattr --only-values -n user.regfs.creator svc.wsdl",
    );
    assert_eq!(creator, "carbon");
    drop(m);

    // On a terminal, a dump shows its progress; in a pipe it does not.
    let out = lite.dir.path().join("tty.xml");
    let cmd = format!(
        "{} dump /_system/governance/trunk {} --data-dir {}",
        common::regfs_bin(),
        out.display(),
        lite.data.display()
    );
    let tty = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    assert!(
        shown.contains("\rdump: ") && shown.contains("collections and resources"),
        "{shown:?}"
    );
    let piped = run_regfs_ok(cli(
        &["dump", "/_system/governance/trunk", out.to_str().unwrap()],
        &lite.data,
    ));
    assert!(!String::from_utf8_lossy(&piped.stderr).contains('\r'));
}

/// A load that replaces what other nodes cached reaches them through their change feeds, even
/// where a healthy feed stands in for revalidating opens (`open_trusts_feed`): each replaced
/// resource, and each new entry of a collection that was there, is announced.
#[test]
fn a_load_over_cached_files_reaches_trusting_nodes() {
    let pg = Registry::new(Some(Kind::Postgres));
    let mut text = std::fs::read_to_string(&pg.data).unwrap();
    text.push_str("\n[cache]\nopen_trusts_feed = true\n");
    std::fs::write(&pg.data, text).unwrap();
    let dump = |content: &str, extra: &str| {
        use base64::Engine;
        format!(
            "<resource name=\"app\" status=\"dump\" isCollection=\"true\"><children>\
             <resource name=\"a.xml\" status=\"dump\" isCollection=\"false\">\
             <content>{}</content></resource>{extra}</children></resource>",
            base64::engine::general_purpose::STANDARD.encode(content)
        )
    };
    let first = pg.dir.path().join("first.xml");
    std::fs::write(&first, dump("old\n", "")).unwrap();
    assert!(pg.load(&first, APP, &[]).status.success());
    let b = pg.mount();
    let f = b.p(&format!("{APP}/a.xml"));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "old\n");
    assert!(!b.p(&format!("{APP}/new.xml")).exists());
    let second = pg.dir.path().join("second.xml");
    std::fs::write(
        &second,
        dump(
            "new\n",
            "<resource name=\"new.xml\" status=\"dump\" isCollection=\"false\"/>",
        ),
    )
    .unwrap();
    let out = pg.load(&second, APP, &["--overwrite"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        common::wait_until(std::time::Duration::from_secs(20), || {
            std::fs::read_to_string(&f).is_ok_and(|s| s == "new\n")
                && b.p(&format!("{APP}/new.xml")).exists()
        }),
        "node B still shows what it cached:\n{}",
        common::tail(&b.log(), 20)
    );
}
