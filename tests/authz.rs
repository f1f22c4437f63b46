//! Registry permissions on a real mount, exercised by processes running as other local users
//! (uids mapped to registry users with --map), and the grants read back with plain SQL.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Mounted;

const ALICE: u32 = 3001; // devs
const BOB: u32 = 3002; // ops
const CAROL: u32 = 3003; // Internal/auditors
const DAVE: u32 = 3004; // no roles: only Internal/everyone
const STRANGER: u32 = 3005; // unmapped: anonymous

/// Runs `regfs ARGS` against the mount's data directory; stdin feeds passwords.
fn regfs(m: &Mounted, args: &[&str]) -> (bool, String) {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.extend(m.source_args());
    let out = common::run_regfs_with_stdin(all, "s3cret-pw\n");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn admin(m: &Mounted, args: &[&str]) {
    let (ok, out) = regfs(m, args);
    assert!(ok, "regfs {args:?} failed: {out}");
}

/// Runs `sh -c script` as `uid` in `cwd`; returns (exit code, combined output).
fn as_user(uid: u32, cwd: &Path, script: &str) -> (i32, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[track_caller]
fn allowed(uid: u32, cwd: &Path, script: &str) -> String {
    let (code, out) = as_user(uid, cwd, script);
    assert_eq!(code, 0, "uid {uid} should be allowed: {script}\n{out}");
    out
}

#[track_caller]
fn denied(uid: u32, cwd: &Path, script: &str) {
    let (code, out) = as_user(uid, cwd, script);
    assert_ne!(code, 0, "uid {uid} should be denied: {script}\n{out}");
    assert!(
        out.contains("Permission denied"),
        "uid {uid}: expected EACCES from {script}, got:\n{out}"
    );
}

#[test]
fn permission_matrix_for_several_local_users() {
    // Other users must be able to reach the mount point.
    let dir = common::open_tempdir();
    let data = common::fresh_data(dir.path());
    let map = [
        format!("{ALICE}=alice"),
        format!("{BOB}=bob"),
        format!("{CAROL}=carol"),
        format!("{DAVE}=dave"),
    ];
    let mut args = Vec::new();
    for m in &map {
        args.push("--map");
        args.push(m.as_str());
    }
    let m = Mounted::with_data(dir, data, &args);

    // Users and roles, made while the mount runs.
    for u in ["alice", "bob", "carol", "dave"] {
        admin(&m, &["user", "add", u]);
    }
    admin(&m, &["role", "add", "devs"]);
    admin(&m, &["role", "add", "ops"]);
    admin(&m, &["role", "add", "Internal/auditors"]);
    admin(&m, &["role", "assign", "devs", "alice"]);
    admin(&m, &["role", "assign", "ops", "bob"]);
    admin(&m, &["role", "assign", "Internal/auditors", "carol"]);
    let (ok, out) = regfs(&m, &["user", "add", "alice"]);
    assert!(!ok && out.contains("already exists"), "{out}");

    // The tree, made by root (admin), open at the POSIX level so the registry decides.
    let proj = m.p("_system/governance/proj");
    m.sh(
        &m.mnt,
        "cd _system/governance && mkdir -p proj/secret/open proj/trash proj/carol-only \
         && echo public > proj/pub.txt && echo hidden > proj/secret/s.txt \
         && echo visible > proj/secret/open/o.txt && echo junk > proj/trash/t.txt \
         && chmod -R a+rwX proj",
    );
    let g = "/_system/governance/proj";
    admin(&m, &["perm", "grant", "devs", g, "add"]);
    admin(
        &m,
        &["perm", "grant", "devs", &format!("{g}/trash"), "delete"],
    );
    admin(
        &m,
        &[
            "perm",
            "deny",
            "Internal/everyone",
            &format!("{g}/secret"),
            "get",
        ],
    );
    admin(&m, &["perm", "grant", "ops", &format!("{g}/secret"), "get"]);
    admin(
        &m,
        &[
            "perm",
            "grant",
            "Internal/everyone",
            &format!("{g}/secret/open"),
            "get",
        ],
    );
    admin(
        &m,
        &[
            "perm",
            "grant",
            "--user",
            "carol",
            &format!("{g}/carol-only"),
            "add",
        ],
    );
    admin(
        &m,
        &[
            "perm",
            "deny",
            "--user",
            "bob",
            &format!("{g}/pub.txt"),
            "get",
        ],
    );

    // `perm check` explains, and its exit status is the decision.
    let (ok, out) = regfs(
        &m,
        &[
            "perm",
            "check",
            "alice",
            &format!("{g}/secret/s.txt"),
            "get",
        ],
    );
    assert!(
        !ok && out.contains("DENY") && out.contains("denies internal/everyone"),
        "{out}"
    );
    let (ok, out) = regfs(
        &m,
        &["perm", "check", "bob", &format!("{g}/secret/s.txt"), "get"],
    );
    assert!(
        ok && out.contains("ALLOW") && out.contains("primary/ops"),
        "{out}"
    );

    // The mount picks the changes up without a remount (bounded wait). The last change made
    // (bob's deny on pub.txt) is waited for, so that a refresh between two grants cannot leave
    // the later ones unseen.
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            as_user(BOB, &proj, "cat pub.txt").0 != 0
        }),
        "the changes never reached the running mount\n{}",
        common::tail(&m.log(), 30)
    );
    assert_eq!(as_user(ALICE, &proj, "echo a > by-alice.txt").0, 0);

    // Inheritance: everyone's get on / reaches the project; devs' add on proj reaches below.
    assert_eq!(allowed(ALICE, &proj, "cat pub.txt").trim(), "public");
    allowed(
        ALICE,
        &proj,
        "mkdir newdir && echo x > newdir/f && cat newdir/f",
    );
    allowed(
        ALICE,
        &proj,
        "echo more >> by-alice.txt && touch by-alice.txt && chmod 640 by-alice.txt",
    );
    // Deny over allow: everyone is denied get on secret; alice has nothing else there.
    denied(ALICE, &proj, "cat secret/s.txt");
    denied(ALICE, &proj, "ls secret");
    // Listings leave out what the caller cannot get.
    let listing = allowed(ALICE, &proj, "ls");
    assert!(!listing.contains("secret"), "{listing}");
    assert!(listing.contains("pub.txt"), "{listing}");
    // A deeper rule overrides a shallower one.
    assert_eq!(
        allowed(ALICE, &proj, "cat secret/open/o.txt").trim(),
        "visible"
    );
    // Delete needs delete: not granted on proj, granted on trash.
    denied(ALICE, &proj, "rm pub.txt");
    denied(ALICE, &proj, "rmdir newdir/../carol-only");
    denied(ALICE, &proj, "mv by-alice.txt renamed.txt");
    allowed(
        ALICE,
        &proj,
        "rm trash/t.txt && echo y > trash/u && mv trash/u trash/v",
    );

    // A role allowed at the same node wins for its members, even with everyone denied.
    assert_eq!(allowed(BOB, &proj, "cat secret/s.txt").trim(), "hidden");
    assert!(allowed(BOB, &proj, "ls").contains("secret"));
    // User-level rules come first: bob is denied pub.txt although everyone may get it.
    denied(BOB, &proj, "cat pub.txt");
    // No add for ops.
    denied(BOB, &proj, "echo b > by-bob.txt");
    denied(BOB, &proj, "mkdir bobdir");
    denied(BOB, &proj, "echo b >> by-alice.txt");
    denied(BOB, &proj, "touch -m -d 2001-01-01 by-alice.txt");

    // A user-level grant lets carol write in carol-only, and nowhere else.
    allowed(CAROL, &proj, "echo c > carol-only/c.txt");
    denied(CAROL, &proj, "echo c > c.txt");

    // dave has only Internal/everyone: read, no write.
    assert_eq!(allowed(DAVE, &proj, "cat pub.txt").trim(), "public");
    denied(DAVE, &proj, "echo d > d.txt");

    // An unmapped uid is the anonymous user: nothing by default.
    denied(STRANGER, &m.mnt, "ls _system");
    denied(STRANGER, &m.mnt, "cat _system/governance/proj/pub.txt");

    // The admin (root) may do everything.
    m.sh(
        &proj,
        "cat secret/s.txt && rm pub.txt && echo again > pub.txt",
    );

    // Changes apply to a running mount, and a revoked grant stops working.
    admin(&m, &["perm", "grant", "ops", g, "add"]);
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            as_user(BOB, &proj, "echo b > by-bob.txt").0 == 0
        }),
        "the grant never reached the running mount\n{}",
        common::tail(&m.log(), 40)
    );
    admin(&m, &["perm", "revoke", "ops", g, "add"]);
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            as_user(BOB, &proj, "echo b2 > by-bob2.txt").0 != 0
        }),
        "the revoked grant kept working\n{}",
        common::tail(&m.log(), 40)
    );
    denied(BOB, &proj, "echo b3 > by-bob3.txt");
    admin(&m, &["role", "revoke", "devs", "alice"]);
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            as_user(ALICE, &proj, "echo a2 > by-alice2.txt").0 != 0
        }),
        "the revoked role kept working\n{}",
        common::tail(&m.log(), 40)
    );

    // Every denial has a log line naming user, path and action.
    let log = m.log();
    assert!(
        log.contains("registry denies get on /_system/governance/proj/secret/s.txt to user alice"),
        "{}",
        common::tail(&log, 40)
    );
    assert!(
        log.contains("to user uid-3005"),
        "{}",
        common::tail(&log, 40)
    );

    check_grants_layout(&m);
}

/// The grants as Carbon lays them out: one UM_PERMISSION row per (path, action URI), role rows
/// without a domain prefix and with the role's domain id, user rows in UM_USER_PERMISSION.
fn check_grants_layout(m: &Mounted) {
    let q = |sql: &str| m.query(true, sql);
    let rows = q(
        "SELECT p.UM_RESOURCE_ID, p.UM_ACTION, rp.UM_ROLE_NAME, rp.UM_IS_ALLOWED, d.UM_DOMAIN_NAME, \
         rp.UM_TENANT_ID FROM UM_ROLE_PERMISSION rp JOIN UM_PERMISSION p ON p.UM_ID = rp.UM_PERMISSION_ID \
         JOIN UM_DOMAIN d ON d.UM_DOMAIN_ID = rp.UM_DOMAIN_ID ORDER BY p.UM_RESOURCE_ID, rp.UM_ROLE_NAME",
    );
    let get = "http://www.wso2.org/projects/registry/actions/get";
    let has = |path: &str, action: &str, role: &str, allowed: i64, domain: &str| {
        let want = [
            path.to_string(),
            action.to_string(),
            role.to_string(),
            allowed.to_string(),
            domain.to_string(),
            "-1234".to_string(),
        ];
        rows.iter().any(|r| r[..] == want[..])
    };
    // Seeded root grants.
    assert!(has("/", get, "admin", 1, "PRIMARY"), "{rows:#?}");
    assert!(has("/", get, "everyone", 1, "INTERNAL"), "{rows:#?}");
    assert!(has("/", "authorize", "admin", 1, "PRIMARY"), "{rows:#?}");
    assert!(
        has("/permission", "ui.execute", "admin", 1, "PRIMARY"),
        "{rows:#?}"
    );
    // The test's grants.
    let secret = "/_system/governance/proj/secret";
    assert!(has(secret, get, "everyone", 0, "INTERNAL"), "{rows:#?}");
    assert!(has(secret, get, "ops", 1, "PRIMARY"), "{rows:#?}");
    assert!(has(
        "/_system/governance/proj/trash",
        "http://www.wso2.org/projects/registry/actions/delete",
        "devs",
        1,
        "PRIMARY"
    ));
    // Revoked: no row left for ops' add on proj.
    assert!(
        !rows
            .iter()
            .any(|r| r[0] == "/_system/governance/proj" && r[2] == "ops")
    );
    let users = q(
        "SELECT p.UM_RESOURCE_ID, p.UM_ACTION, up.UM_USER_NAME, up.UM_IS_ALLOWED FROM UM_USER_PERMISSION up \
         JOIN UM_PERMISSION p ON p.UM_ID = up.UM_PERMISSION_ID ORDER BY 1",
    );
    assert!(
        users.contains(&vec![
            "/_system/governance/proj/carol-only".to_string(),
            "http://www.wso2.org/projects/registry/actions/add".to_string(),
            "carol".to_string(),
            "1".to_string(),
        ]),
        "{users:?}"
    );
    // bob's rule on pub.txt went when root deleted pub.txt: Carbon clears a deleted
    // path's grants.
    assert!(
        !users
            .iter()
            .any(|u| u[0] == "/_system/governance/proj/pub.txt"),
        "{users:?}"
    );
    // Domains as Carbon numbers them for the super tenant.
    let names: Vec<String> = q(
        "SELECT UM_DOMAIN_ID, UM_DOMAIN_NAME FROM UM_DOMAIN WHERE UM_TENANT_ID = -1234 ORDER BY 1",
    )
    .into_iter()
    .map(|r| r[1].clone())
    .collect();
    assert_eq!(
        names,
        ["PRIMARY", "SYSTEM", "INTERNAL", "APPLICATION", "WORKFLOW"]
    );
    // Users: salted SHA-256, Base64, 24-character salts; roles stored without a domain prefix.
    let row =
        &q("SELECT UM_USER_PASSWORD, UM_SALT_VALUE FROM UM_USER WHERE UM_USER_NAME = 'alice'")[0];
    assert_eq!(row[1].len(), 24);
    assert_eq!(row[0], regfs::um::hash_password("s3cret-pw", &row[1]));
    let hybrid: Vec<String> = q("SELECT UM_ROLE_NAME FROM UM_HYBRID_ROLE ORDER BY 1")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(hybrid, ["auditors", "everyone"]);
}

/// A process of `uid` that opens `path` for writing, writes `data` at offset 0, says
/// "written", and closes when told (a line on its stdin), then prints how the close went.
struct Holder(std::process::Child);

impl Holder {
    fn open_and_write(uid: u32, path: &Path, data: &str) -> Holder {
        use std::io::BufRead;
        let script = "import os, sys\n\
            fd = os.open(sys.argv[1], os.O_WRONLY)\n\
            os.pwrite(fd, sys.argv[2].encode(), 0)\n\
            print('written', flush=True)\n\
            sys.stdin.readline()\n\
            try:\n    os.close(fd)\n    print('closed', flush=True)\n\
            except OSError as e:\n    print('close', e.errno, flush=True)\n";
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(path)
            .arg(data)
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "written", "uid {uid} could not write {path:?}");
        Holder(child)
    }

    /// Closes the file; what the close returned ("closed" or "close ERRNO").
    fn close(mut self) -> String {
        use std::io::Write;
        self.0.stdin.take().unwrap().write_all(b"\n").unwrap();
        let out = self.0.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Each version is committed as the user who wrote it, authorized for them: a reader's close
/// commits nothing, another writer commits the first writer's changes as theirs before making
/// its own, and changes refused at commit (add revoked while the file was open) are dropped
/// and no longer served to anyone.
#[test]
fn each_handle_commits_only_its_own_writes_as_its_writer() {
    let dir = common::open_tempdir();
    let data = common::fresh_data(dir.path());
    let map = [format!("{ALICE}=alice"), format!("{BOB}=bob")];
    let m = Mounted::with_data(dir, data, &["--map", &map[0], "--map", &map[1]]);
    admin(&m, &["user", "add", "alice"]);
    admin(&m, &["user", "add", "bob"]);
    let g = "/_system/governance/w";
    m.sh(
        &m.mnt,
        "mkdir _system/governance/w && echo orig > _system/governance/w/f.txt \
         && chmod -R a+rwX _system/governance/w",
    );
    for u in ["alice", "bob"] {
        admin(&m, &["perm", "grant", "--user", u, g, "add"]);
    }
    let f = m.p("_system/governance/w/f.txt");
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            as_user(ALICE, &f.with_file_name(""), "echo probe > probe.txt").0 == 0
        }),
        "the grant never reached the mount\n{}",
        common::tail(&m.log(), 30)
    );
    let updaters = || -> Vec<String> {
        m.query(
            true,
            "SELECT REG_USER_ID FROM REG_LOG WHERE REG_PATH = '/_system/governance/w/f.txt' \
             AND REG_ACTION = 1 ORDER BY REG_LOG_ID",
        )
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
    };
    let last_updater = || {
        m.query(
            true,
            "SELECT r.REG_LAST_UPDATOR FROM REG_RESOURCE r JOIN REG_PATH p ON p.REG_PATH_ID = r.REG_PATH_ID \
             WHERE p.REG_PATH_VALUE = '/_system/governance/w' AND r.REG_NAME = 'f.txt'",
        )[0][0]
            .clone()
    };
    let before = updaters();

    // alice writes and keeps the file open; bob reads her change (one node, one buffer) and
    // closes: nothing is committed, least of all as bob.
    let alice = Holder::open_and_write(ALICE, &f, "ALICE");
    assert_eq!(
        allowed(BOB, &m.mnt, &format!("cat {}", f.display())),
        "ALICE"
    );
    assert_eq!(updaters(), before, "a reader's close committed a version");
    // bob appends: alice's change goes in first, as hers, then bob's, as his.
    allowed(BOB, &m.mnt, &format!("echo bob >> {}", f.display()));
    assert_eq!(alice.close(), "closed");
    let mut want = before.clone();
    want.extend(["alice".to_string(), "bob".to_string()]);
    assert_eq!(updaters(), want, "each change is committed as its writer");
    assert_eq!(last_updater(), "bob");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "ALICEbob\n");

    // alice writes again, then loses add while the file is open.
    let alice = Holder::open_and_write(ALICE, &f, "REFUSED");
    admin(&m, &["perm", "deny", "--user", "alice", g, "add"]);
    let mut probe = 0;
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            probe += 1;
            as_user(
                ALICE,
                &f.with_file_name(""),
                &format!("echo x > probe-{probe}.txt"),
            )
            .0 != 0
        }),
        "the deny never reached the mount\n{}",
        common::tail(&m.log(), 30)
    );
    // root reads (and closes) meanwhile: that commits nothing either.
    m.sh(&m.mnt, &format!("cat {} > /dev/null", f.display()));
    assert_eq!(
        updaters(),
        want,
        "a reader committed alice's refused change"
    );
    assert_eq!(
        alice.close(),
        format!("close {}", libc::EACCES),
        "alice's close must report the refusal"
    );
    assert_eq!(updaters(), want, "the refused change reached the database");
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "ALICEbob\n",
        "the refused change is still served"
    );
    assert!(
        m.log().contains("uncommitted changes by alice dropped"),
        "{}",
        common::tail(&m.log(), 30)
    );
}

/// `access(2)` (`test -r`, `test -w`, `test -x`) answers with the registry's decision for the
/// asked mode when the kernel does not check modes itself (`--no-posix-permissions`).
#[test]
fn access_answers_with_the_registry_decision_for_its_mode() {
    let dir = common::open_tempdir();
    let data = common::fresh_data(dir.path());
    let map = [format!("{ALICE}=alice"), format!("{DAVE}=dave")];
    let m = Mounted::with_data(
        dir,
        data,
        &["--no-posix-permissions", "--map", &map[0], "--map", &map[1]],
    );
    admin(&m, &["user", "add", "alice"]);
    admin(&m, &["user", "add", "dave"]);
    m.sh(
        &m.mnt,
        "mkdir -p _system/governance/acc/hidden && echo r > _system/governance/acc/f.txt \
         && echo s > _system/governance/acc/hidden/s.txt && chmod 644 _system/governance/acc/f.txt",
    );
    let g = "/_system/governance/acc";
    admin(&m, &["perm", "grant", "--user", "alice", g, "add"]);
    admin(
        &m,
        &[
            "perm",
            "deny",
            "--user",
            "dave",
            &format!("{g}/hidden"),
            "get",
        ],
    );
    let acc = m.p("_system/governance/acc");
    let probe = |uid: u32, test: &str| as_user(uid, &acc, &format!("test {test}")).0 == 0;
    assert!(
        common::wait_until(Duration::from_secs(10), || probe(ALICE, "-w f.txt")
            && !probe(DAVE, "-r hidden/s.txt")),
        "the grants never reached the mount\n{}",
        common::tail(&m.log(), 30)
    );
    // dave may only read: readable, not writable, whatever the mode bits say.
    assert!(probe(DAVE, "-r f.txt"));
    assert!(
        !probe(DAVE, "-w f.txt"),
        "test -w says writable to a reader"
    );
    assert!(!probe(DAVE, "-w ."), "test -w on the collection");
    assert!(!probe(DAVE, "-x f.txt"), "no execute bit");
    assert!(probe(DAVE, "-x hidden"), "collections are walked through");
    assert!(!probe(DAVE, "-r hidden/s.txt"));
    // alice has add: writable, the collection too.
    assert!(probe(ALICE, "-w f.txt") && probe(ALICE, "-w .") && probe(ALICE, "-r f.txt"));
    // What access said is what the operation does.
    denied(DAVE, &acc, "echo x >> f.txt");
    allowed(ALICE, &acc, "echo x >> f.txt");
}
