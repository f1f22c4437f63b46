//! Real tools on a real mount: what operators run against the registry every day.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::Mounted;

#[test]
fn ls_cat_cp_mv_rm_mkdir_touch_append() {
    let m = Mounted::new();
    let gov = m.p("_system/governance");
    m.sh(
        &gov,
        "mkdir -p a/b/c && echo one > a/b/c/f.txt && echo two >> a/b/c/f.txt && touch a/empty \
         && test \"$(cat a/b/c/f.txt)\" = \"$(printf 'one\\ntwo')\" && test ! -s a/empty",
    );
    let listing = m.sh(&gov, "ls -lR a");
    assert!(listing.contains("f.txt"), "{listing}");
    assert!(listing.contains("empty"), "{listing}");
    m.sh(
        &gov,
        "mv a/b/c/f.txt a/g.txt && test -f a/g.txt && test ! -e a/b/c/f.txt",
    );
    m.sh(&gov, "mv a/b a/bb && test -d a/bb/c && test ! -e a/b");
    // cp -r in and out.
    let scratch = m.scratch();
    m.sh(
        &scratch,
        "mkdir -p src/d1/d2 && seq 1 5000 > src/d1/numbers && printf 'x' > src/d1/d2/x \
         && head -c 300000 /dev/urandom > src/blob",
    );
    m.sh(
        &gov,
        &format!(
            "cp -r {}/src in && diff -r {}/src in",
            scratch.display(),
            scratch.display()
        ),
    );
    m.sh(
        &gov,
        &format!(
            "cp -r in {}/out && diff -r in {}/out",
            scratch.display(),
            scratch.display()
        ),
    );
    m.sh(&gov, "rm -r in a && test ! -e in && test ! -e a");
    let left = m.sh(&gov, "ls");
    assert_eq!(left.trim(), "repository");
}

#[test]
fn sed_in_place_keeps_mode_and_content() {
    let m = Mounted::new();
    let dir = m.p("_system/config");
    m.sh(
        &dir,
        "printf 'alpha\\nbeta\\n' > conf.xml && chmod 640 conf.xml && sed -i 's/beta/gamma/' conf.xml",
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("conf.xml")).unwrap(),
        "alpha\ngamma\n"
    );
    let mode = std::fs::metadata(dir.join("conf.xml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
}

#[test]
fn editor_style_save_keeps_mode() {
    use std::io::Write;
    let m = Mounted::new();
    let target = m.p("_system/config/settings.conf");
    std::fs::write(&target, "v1\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
    // What vim/emacs/VS Code do: write a temp file, fsync, copy the mode, rename over.
    let tmp = m.p("_system/config/.settings.conf.swp");
    {
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(b"v2\n").unwrap();
        f.sync_all().unwrap();
    }
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, &target).unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "v2\n");
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    assert!(!tmp.exists());
}

#[test]
fn vim_backup_names_work() {
    let m = Mounted::new();
    let dir = m.p("_system/config");
    // vim writes FILE~ as a backup; emacs creates .#FILE lock links (symlinks).
    m.sh(
        &dir,
        "echo a > f && cp f 'f~' && ln -s 'user@host.1234' '.#f' && ls -a | grep -q 'f~' \
         && test \"$(readlink .#f)\" = 'user@host.1234' && rm 'f~' '.#f'",
    );
}

#[test]
fn tar_both_ways_find_grep_diff() {
    let m = Mounted::new();
    let scratch = m.scratch();
    m.sh(
        &scratch,
        "mkdir -p tree/x/y && for i in $(seq 1 40); do echo \"line $i needle$i\" > tree/x/f$i.txt; done \
         && echo deep > tree/x/y/deep.txt && tar -C tree -cf tree.tar .",
    );
    let gov = m.p("_system/governance");
    m.sh(
        &gov,
        &format!(
            "mkdir t && tar -C t -xf {}/tree.tar && diff -r {}/tree t",
            scratch.display(),
            scratch.display()
        ),
    );
    let found = m.sh(&gov, "find t -name '*.txt' | wc -l");
    assert_eq!(found.trim(), "41");
    let grep = m.sh(&gov, "grep -rl needle17 t");
    assert_eq!(grep.trim(), "t/x/f17.txt");
    m.sh(
        &gov,
        &format!(
            "tar -C t -cf {}/back.tar . && mkdir -p {}/back && tar -C {}/back -xf {}/back.tar && diff -r {}/tree {}/back",
            scratch.display(),
            scratch.display(),
            scratch.display(),
            scratch.display(),
            scratch.display(),
            scratch.display()
        ),
    );
}

#[test]
fn git_init_add_commit_inside_the_mount() {
    let m = Mounted::new();
    let dir = m.p("_system/governance");
    let out = m.sh(
        &dir,
        "mkdir repo && cd repo && git init -q . && git config user.email t@example.com \
         && git config user.name tester && echo hello > README && mkdir src && echo 'fn main(){}' > src/main.rs \
         && git add . && git commit -qm first && echo more >> README && git commit -qam second \
         && git log --oneline | wc -l && git status --porcelain && git fsck --no-progress 2>&1",
    );
    assert!(out.trim_start().starts_with('2'), "{out}");
}

#[test]
fn python_tempfile_and_os_replace() {
    let m = Mounted::new();
    let dir = m.p("_system/config");
    let script = r#"
import os, tempfile
target = "app.json"
with open(target, "w") as f:
    f.write("{}")
os.chmod(target, 0o644)
fd, tmp = tempfile.mkstemp(dir=".", prefix=".app.", suffix=".tmp")
with os.fdopen(fd, "w") as f:
    f.write('{"a": 1}')
    f.flush()
    os.fsync(f.fileno())
os.chmod(tmp, 0o644)
os.replace(tmp, target)
assert open(target).read() == '{"a": 1}'
assert [n for n in os.listdir(".") if n.endswith(".tmp")] == []
print("ok")
"#;
    let out = m.sh(&dir, &format!("python3 - <<'EOF'\n{script}\nEOF"));
    assert_eq!(out.trim(), "ok");
}

#[test]
fn sigterm_unmounts_cleanly() {
    let mut m = Mounted::new();
    std::fs::write(m.p("_system/local/keep"), "kept").unwrap();
    m.unmount();
    assert!(!common::is_mounted(&m.mnt));
    // Remount the same data: what was written is there.
    let dir = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    let again = Mounted::with_data(dir, m.data.clone(), &[]);
    assert_eq!(
        std::fs::read_to_string(again.p("_system/local/keep")).unwrap(),
        "kept"
    );
}

#[test]
fn sigint_and_fusermount_unmount_cleanly() {
    // SIGINT, like Ctrl-C on a foreground mount.
    let m = Mounted::new();
    std::fs::write(m.p("_system/local/a"), "a").unwrap();
    nix::sys::signal::kill(m.pid(), nix::sys::signal::Signal::SIGINT).unwrap();
    assert!(common::wait_until(
        std::time::Duration::from_secs(20),
        || !common::is_mounted(&m.mnt)
    ));
    assert!(m.log().contains("SIGINT: unmounting"), "{}", m.log());

    // fusermount -u, as an unprivileged user would unmount.
    let m = Mounted::new();
    let helper = ["fusermount3", "fusermount"]
        .into_iter()
        .find(|h| std::process::Command::new(h).arg("-V").output().is_ok())
        .expect("fusermount3 or fusermount is needed (Debian package fuse3)");
    let st = std::process::Command::new(helper)
        .arg("-u")
        .arg(&m.mnt)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(common::wait_until(
        std::time::Duration::from_secs(20),
        || !common::is_mounted(&m.mnt)
    ));
    // The process notices and exits on its own.
    assert!(
        common::wait_until(std::time::Duration::from_secs(20), || m
            .log()
            .contains("unmounted")),
        "{}",
        m.log()
    );
}

/// A signal that comes the moment the mount is visible still unmounts cleanly: the handlers
/// exist before the mount does. Tried several times, each as soon as /proc/mounts shows it.
#[test]
fn a_signal_right_after_the_mount_appears_unmounts_cleanly() {
    use std::process::{Command, Stdio};
    let dir = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    let data = common::fresh_data(dir.path());
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    for (round, sig) in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ]
    .into_iter()
    .cycle()
    .take(6)
    .enumerate()
    {
        let log = dir.path().join(format!("round-{round}.log"));
        let mut child = Command::new(common::regfs_bin())
            .arg("mount")
            .arg("--foreground")
            .args(common::source_args(&data))
            .arg(&mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        // Polled without a pause: the signal must come as early as the mount can be seen.
        let start = std::time::Instant::now();
        while !common::is_mounted(&mnt) && start.elapsed() < std::time::Duration::from_secs(30) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
        }
        let _ = nix::sys::signal::kill(pid, sig);
        let exited = common::wait_until(std::time::Duration::from_secs(20), || {
            child.try_wait().ok().flatten().is_some()
        });
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let left = common::is_mounted(&mnt);
        if left {
            let _ = Command::new("umount").arg("-l").arg(&mnt).status();
        }
        assert!(
            exited,
            "round {round}: regfs did not exit after {sig}:\n{text}"
        );
        assert!(!left, "round {round}: {sig} left the mount behind:\n{text}");
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "round {round}: regfs ended with {status} after {sig}:\n{text}"
        );
    }
}

/// SIGHUP (logrotate, `systemctl reload`) reopens the log file; the mount keeps serving.
#[test]
fn sighup_reopens_the_log_file_and_the_mount_keeps_serving() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("regfs.log");
    let rotated = logs.path().join("regfs.log.1");
    let mut m = Mounted::with_args(&["--log-file", log.to_str().unwrap()]);
    assert!(
        m.log().contains(&format!("regfs: log: {}", log.display())),
        "the foreground mount names its log file on stderr"
    );
    std::fs::write(m.p("_system/local/before"), "b").unwrap();
    std::fs::rename(&log, &rotated).unwrap();
    nix::sys::signal::kill(m.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        common::wait_until(std::time::Duration::from_secs(20), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("SIGHUP: log file reopened"))
        }),
        "no new log file after SIGHUP; old one:\n{}",
        common::tail(&std::fs::read_to_string(&rotated).unwrap_or_default(), 20)
    );
    assert_eq!(m.exited(), None, "SIGHUP ended regfs");
    std::fs::write(m.p("_system/local/after"), "a").unwrap();
    assert_eq!(
        std::fs::read_to_string(m.p("_system/local/before")).unwrap(),
        "b"
    );
    m.unmount();
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(new.contains("SIGTERM: unmounting"), "{new}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        !old.contains("SIGTERM"),
        "lines still went to the rotated file:\n{old}"
    );
}

/// `regfs mount` in the background (it returns once the mount serves), run in `cwd`.
fn mount_in(cwd: &std::path::Path, m: &Mounted, mountpoint: &str) -> std::process::Output {
    std::process::Command::new(common::regfs_bin())
        .arg("mount")
        .args(m.source_args())
        .arg(mountpoint)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn mounts_at(mnt: &std::path::Path) -> usize {
    let want = mnt.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
        .count()
}

/// A second mount on a directory regfs already serves is refused, however the path is
/// spelled, and the first keeps serving.
#[test]
fn a_second_mount_on_a_served_directory_is_refused() {
    let m = Mounted::new();
    std::fs::write(m.p("_system/local/kept"), "k").unwrap();
    let abs = format!("{}/", m.mnt.display());
    for spelling in ["mnt", "./mnt", "mnt/", abs.as_str()] {
        let out = mount_in(m.dir.path(), &m, spelling);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{spelling}: mounted a second time");
        assert!(
            err.contains("already mounted by a running regfs") && err.contains("umount"),
            "{spelling}: {err}"
        );
        assert_eq!(mounts_at(&m.mnt), 1, "{spelling}: a mount was stacked");
    }
    assert_eq!(
        std::fs::read_to_string(m.p("_system/local/kept")).unwrap(),
        "k"
    );
}

/// After kill -9, a mount right away (before the old process is gone) with a relative path
/// recovers the stale mount point; a non-empty mount point is mounted with a warning.
#[test]
fn stale_mounts_are_recovered_by_any_spelling_and_non_empty_points_warned() {
    for spelling in ["mnt", "./mnt/"] {
        let m = Mounted::new();
        std::fs::write(m.p("_system/local/survivor"), "yes").unwrap();
        nix::sys::signal::kill(m.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
        let out = mount_in(m.dir.path(), &m, spelling);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let ok = out.status.success();
        let read = std::fs::read_to_string(m.p("_system/local/survivor"));
        let _ = std::process::Command::new("umount").arg(&m.mnt).status();
        assert!(
            common::wait_until(std::time::Duration::from_secs(20), || {
                !common::is_mounted(&m.mnt)
            }),
            "{spelling}: the recovered mount did not go"
        );
        assert!(ok, "{spelling}: {err}");
        assert!(err.contains("stale FUSE mount"), "{spelling}: {err}");
        assert_eq!(read.unwrap(), "yes", "{spelling}");
    }

    let m = Mounted::new();
    let busy = m.dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("hidden"), "h").unwrap();
    let out = mount_in(m.dir.path(), &m, "busy");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let listed: Vec<String> = std::fs::read_dir(&busy)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let _ = std::process::Command::new("umount").arg(&busy).status();
    assert!(common::wait_until(
        std::time::Duration::from_secs(20),
        || { !common::is_mounted(&busy) }
    ));
    assert!(out.status.success(), "{err}");
    assert!(err.contains("is not empty"), "{err}");
    assert!(
        listed.contains(&"_system".to_string()) && !listed.contains(&"hidden".to_string()),
        "the mount shows the registry, not what it hides: {listed:?}"
    );
    assert_eq!(std::fs::read_to_string(busy.join("hidden")).unwrap(), "h");
}

#[test]
fn init_creates_the_schema_in_empty_databases() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let init = [
        std::ffi::OsStr::new("init"),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ];
    common::run_regfs_ok(init);
    for db in ["local.db", "shared.db"] {
        let out = common::sql_count(
            &data.join(db),
            "SELECT COUNT(*) FROM REG_PATH WHERE REG_PATH_VALUE = '/_system/config/repository'",
        );
        assert_eq!(out, 1, "{db}");
    }
    assert_eq!(
        common::sql_count(
            &data.join("shared.db"),
            "SELECT COUNT(*) FROM UM_USER WHERE UM_USER_NAME = 'admin'"
        ),
        1
    );
    // Running it again changes nothing.
    common::run_regfs_ok(init);
    assert_eq!(
        common::sql_count(
            &data.join("local.db"),
            "SELECT COUNT(*) FROM REG_PATH WHERE REG_PATH_VALUE = '/'"
        ),
        1
    );
}

/// A mount refused because a database file is not SQLite changes nothing in the data
/// directory: no new local.db (or journal) is left behind.
#[test]
fn a_refused_mount_leaves_the_data_directory_as_it_was() {
    let dir = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("shared.db"),
        "this is not a database, just text\n".repeat(200),
    )
    .unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = common::run_regfs([
        std::ffi::OsStr::new("mount"),
        "--foreground".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        mnt.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mounted on a corrupt shared.db");
    assert!(err.contains("shared.db"), "the error names the file: {err}");
    assert!(!common::is_mounted(&mnt));
    let mut left: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["shared.db"], "the refused mount left files behind");
}

/// A `--log-level` (or `[log] level`) that is no level is refused before anything is mounted,
/// with the levels it takes; directives naming targets are taken.
#[test]
fn an_invalid_log_level_is_refused() {
    let dir = common::open_tempdir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let data = dir.path().join("data");
    for bad in ["bogus", "verbose", "regfs=loud", "info,=debug"] {
        let out = common::run_regfs([
            "mount".as_ref(),
            "--log-level".as_ref(),
            std::ffi::OsStr::new(bad),
            "--data-dir".as_ref(),
            data.as_os_str(),
            mnt.as_os_str(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}: accepted");
        assert!(
            err.contains("invalid log level") && err.contains("debug"),
            "{bad}: {err}"
        );
        assert!(!common::is_mounted(&mnt), "{bad}: mounted");
    }
    assert!(!data.exists(), "a refused mount created the data directory");
    let cfg = common::config_with(dir.path(), "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\n[log]\nlevel = \"chatty\"\n")).unwrap();
    let out = common::run_regfs([
        "mount".as_ref(),
        "--config".as_ref(),
        cfg.as_os_str(),
        mnt.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("[log] level"),
        "{err}"
    );
    assert!(!common::is_mounted(&mnt));
}

/// A mount in the background says where it logs; a log that is not a terminal (the file, or
/// the foreground's stderr redirected) has no colour codes; a normal unmount logs no warning.
#[test]
fn the_log_is_named_at_start_plain_and_quiet_at_a_normal_unmount() {
    let dir = common::open_tempdir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let data = dir.path().join("data");
    let out = common::run_regfs_ok([
        "mount".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        mnt.as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let log = data.join("regfs.log");
    let unmounted = std::process::Command::new("umount")
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(unmounted);
    assert!(
        err.contains(&format!("log: {}", log.display())),
        "the mount names its log: {err}"
    );
    assert!(
        common::wait_until(std::time::Duration::from_secs(20), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("unmounted"))
        }),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in the log file:\n{text}"
    );
    assert!(
        !text.contains("WARN") && !text.contains("ERROR"),
        "a normal unmount logged a warning:\n{text}"
    );

    let mut m = Mounted::new();
    std::fs::write(m.p("_system/local/x"), "x").unwrap();
    m.unmount();
    let text = m.log();
    assert!(
        !text.contains('\u{1b}'),
        "colour codes on a redirected stderr:\n{}",
        common::tail(&text, 5)
    );
}

/// On a terminal `regfs user add` asks for the password twice without echoing it; two that
/// differ change nothing. Scripts still give it on standard input (the other tests do).
#[test]
fn user_add_on_a_terminal_prompts_without_echo() {
    let dir = common::open_tempdir();
    let data = dir.path().join("data");
    common::run_regfs_ok(["init".as_ref(), "--data-dir".as_ref(), data.as_os_str()]);
    // A pseudo-terminal driven by Python's pty module: prompts are answered as they come.
    let drive = r#"
import os, pty, signal, sys, termios, time
signal.alarm(60)  # a prompt that never comes fails the test instead of hanging it
def echo_off(fd):
    # The prompt is printed just before the terminal's echo goes off: an answer written in
    # between would be echoed (and the test would see a leak that no typist could cause).
    # On Linux the master side reports the terminal's modes (pexpect's waitnoecho reads them).
    while termios.tcgetattr(fd)[3] & termios.ECHO:
        time.sleep(0.01)
def run(args, answers):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(args[0], args)
    out, pending, asked = b"", list(answers), 0
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        # A prompt is what came since the last answer, ending in a colon.
        if pending and out[asked:].rstrip().endswith(b":"):
            echo_off(fd)
            os.write(fd, pending.pop(0).encode() + b"\n")
            asked = len(out)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")
regfs, data = sys.argv[1], sys.argv[2]
code, out = run([regfs, "user", "add", "tina", "--data-dir", data], ["tina-secret", "tina-secret"])
print("ADD", code, repr(out))
code, out = run([regfs, "user", "add", "tom", "--data-dir", data], ["tom-secret1", "tom-secret2"])
print("MISMATCH", code, repr(out))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(drive)
        .arg(common::regfs_bin())
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let add = text.lines().find(|l| l.starts_with("ADD")).unwrap();
    assert!(add.starts_with("ADD 0 "), "{text}");
    assert!(
        add.contains("Password for tina:") && add.contains("Retype it:"),
        "{add}"
    );
    assert!(
        !add.contains("tina-secret"),
        "the password was echoed: {add}"
    );
    assert!(add.contains("added user tina"), "{add}");
    let mismatch = text.lines().find(|l| l.starts_with("MISMATCH")).unwrap();
    assert!(
        !mismatch.starts_with("MISMATCH 0 ") && mismatch.contains("differ"),
        "{mismatch}"
    );
    let list = common::run_regfs_ok([
        "user".as_ref(),
        "list".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    let users = String::from_utf8_lossy(&list.stdout);
    assert!(users.contains("tina") && !users.contains("tom"), "{users}");
}

/// `--log-format json` writes one JSON object per line; under systemd (JOURNAL_STREAM set) the
/// text lines carry no timestamp of their own, the journal stamps them.
#[test]
fn json_logs_and_journald_friendly_text() {
    let mut m = Mounted::with_args(&["--log-format", "json"]);
    std::fs::write(m.p("_system/local/j"), "j").unwrap();
    m.unmount();
    let log = m.log();
    let mut objects = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("fields").is_some(),
            "{line}"
        );
        objects += 1;
    }
    assert!(objects > 0 && log.contains("\"mounted\""), "{log}");

    let dir = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    let data = common::fresh_data(dir.path());
    let mut m = Mounted::with_env(dir, data, &[], &[("JOURNAL_STREAM", "8:12345")]);
    m.unmount();
    let log = m.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("regfs::daemon"))
        .collect();
    assert!(!lines.is_empty(), "{log}");
    for l in lines {
        assert!(
            !l.trim_start().starts_with("20"),
            "a timestamp under the journal: {l}"
        );
        assert!(
            l.trim_start().starts_with("INFO")
                || l.trim_start().starts_with("WARN")
                || l.trim_start().starts_with("DEBUG"),
            "{l}"
        );
    }
}

/// A root mount shows in /proc/mounts as `regfs` of type `fuse.regfs`, as `mount -t
/// fuse.regfs` would make it, so `findmnt -t fuse.regfs` and `umount -t` find it.
#[test]
fn proc_mounts_names_regfs_and_its_type() {
    let m = Mounted::new();
    let want = m.mnt.to_string_lossy().to_string();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
        .expect("the mount in /proc/mounts");
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((f[0], f[2]), ("regfs", "fuse.regfs"), "{line}");
}

/// `--json` on the admin commands that list, show or check: one JSON value on stdout that a
/// script can parse, with the same facts as the text, and `perm check`'s exit status kept.
#[test]
fn admin_lists_and_checks_as_json() {
    let dir = common::open_tempdir();
    let data = dir.path().join("data");
    let d = data.as_os_str();
    common::run_regfs_ok(["init".as_ref(), "--data-dir".as_ref(), d]);
    let run = |args: &[&str], stdin: &str| {
        let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        all.extend(["--data-dir".into(), d.to_owned()]);
        common::run_regfs_with_stdin(all, stdin)
    };
    let ok = |args: &[&str], stdin: &str| -> serde_json::Value {
        let out = run(args, stdin);
        assert!(
            out.status.success(),
            "regfs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    };
    ok(&["user", "add", "carol"], "carol-pw\n");
    ok(&["role", "add", "ops"], "");
    ok(&["role", "assign", "ops", "carol"], "");
    ok(&["perm", "grant", "ops", "/_system/config/app", "get"], "");

    let users = ok(&["user", "list", "--json"], "");
    assert!(
        users.as_array().unwrap().contains(&"carol".into()),
        "{users}"
    );
    let roles = ok(&["role", "list", "--json"], "");
    let ops = roles
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "PRIMARY/ops")
        .unwrap_or_else(|| panic!("no ops role in {roles}"));
    assert_eq!(ops["members"], serde_json::json!(["carol"]));
    let shown = ok(&["perm", "show", "/_system/config/app/", "--json"], "");
    assert_eq!(shown["path"], "/_system/config/app");
    assert_eq!(shown["target"], "/_system/config/app");
    assert_eq!(
        shown["rules"],
        serde_json::json!([{ "action": "get", "allowed": true, "grantee": "PRIMARY/ops" }])
    );
    let allowed = ok(
        &[
            "perm",
            "check",
            "carol",
            "/_system/config/app/x",
            "get",
            "--json",
        ],
        "",
    );
    assert_eq!(allowed["allowed"], true, "{allowed}");
    assert_eq!(allowed["user"], "carol");
    assert!(
        !allowed["steps"].as_array().unwrap().is_empty(),
        "{allowed}"
    );
    // A denial: exit status 1, and still one JSON object.
    let out = run(
        &[
            "perm",
            "check",
            "carol",
            "/_system/config/app/x",
            "delete",
            "--json",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let denied: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(denied["allowed"], false, "{denied}");
}

/// `/sbin/mount.fuse.regfs` as a link to the regfs under test, for as long as it lives; one
/// already there (an installed regfs) is put back afterwards.
struct MountHelper {
    saved: Option<std::path::PathBuf>,
}

/// The tests that change this machine's mount helper or packages, one at a time.
static SYSTEM: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl MountHelper {
    const PATH: &'static str = "/sbin/mount.fuse.regfs";

    fn install() -> Self {
        let path = std::path::Path::new(Self::PATH);
        let saved = path.symlink_metadata().is_ok().then(|| {
            let aside = std::path::PathBuf::from(format!("{}.regfs-test-saved", Self::PATH));
            std::fs::rename(path, &aside).unwrap();
            aside
        });
        std::os::unix::fs::symlink(common::regfs_bin(), path)
            .unwrap_or_else(|e| panic!("cannot link {} to regfs: {e}", Self::PATH));
        MountHelper { saved }
    }
}

impl Drop for MountHelper {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(Self::PATH);
        if let Some(aside) = &self.saved {
            let _ = std::fs::rename(aside, Self::PATH);
        }
    }
}

/// `umount MNT`, which must succeed, then waits (bounded) until it is gone.
fn umount_and_wait(mnt: &std::path::Path) {
    let st = std::process::Command::new("umount")
        .arg(mnt)
        .status()
        .unwrap();
    assert!(st.success(), "umount {}", mnt.display());
    assert!(
        common::wait_until(std::time::Duration::from_secs(20), || !common::is_mounted(
            mnt
        )),
        "{} still mounted",
        mnt.display()
    );
}

/// Unmounts `0` (lazily, if still mounted) when dropped: a failed assertion leaves no mount.
struct Unmounts(std::path::PathBuf);

impl Drop for Unmounts {
    fn drop(&mut self) {
        if common::is_mounted(&self.0) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

/// An `/etc/fstab` line of type `fuse.regfs`, and `mount -t fuse.regfs`: mount(8) runs the
/// helper `mount.fuse.regfs` (a link to regfs), which mounts in the background with the
/// line's options, passing over fstab's and systemd's own; `umount` unmounts. `ro` makes the
/// mount read-only; an unknown option refuses the mount and says which.
#[test]
fn fstab_lines_and_mount_t_fuse_regfs_mount_through_the_helper() {
    let dir = common::open_tempdir();
    let data = dir.path().join("data");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let log = dir.path().join("regfs.log");
    let _system = SYSTEM.lock().unwrap_or_else(|e| e.into_inner());
    let _helper = MountHelper::install();
    let _unmounts = Unmounts(mnt.clone());
    let fstab = dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# what an operator writes in /etc/fstab\n\
             {} {} fuse.regfs _netdev,nofail,x-systemd.requires=postgresql.service,threads=2,log_file={} 0 0\n",
            data.display(),
            mnt.display(),
            log.display()
        ),
    )
    .unwrap();
    let mount = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new("mount")
            .args(args)
            .output()
            .expect("mount(8)")
    };
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let out = mount(&["-T".as_ref(), fstab.as_os_str(), mnt.as_os_str()]);
    assert!(
        out.status.success(),
        "mount -T fstab: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        common::tail(&log_text(), 30)
    );
    assert!(common::is_mounted(&mnt), "mounted once mount(8) returns");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let want = mnt.to_string_lossy();
    assert!(
        mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&*want) && l.contains(" fuse.regfs ")),
        "{mounts}"
    );
    let f = mnt.join("_system/local/from-fstab.txt");
    std::fs::write(&f, "booted\n").unwrap();
    umount_and_wait(&mnt);

    // mount -t fuse.regfs, read-only: what the fstab mount wrote is there, changes are refused.
    let out = mount(&[
        "-t".as_ref(),
        "fuse.regfs".as_ref(),
        "-o".as_ref(),
        format!("ro,nosuid,nodev,log_file={}", log.display()).as_ref(),
        data.as_os_str(),
        mnt.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "mount -t fuse.regfs -o ro: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "booted\n");
    assert_eq!(
        common::errno_of(std::fs::write(mnt.join("_system/local/no.txt"), "x")),
        libc::EROFS
    );
    let line = std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(&*want))
        .map(str::to_string)
        .unwrap();
    let flags = line.split_whitespace().nth(3).unwrap().to_string();
    for flag in ["ro", "nosuid", "nodev"] {
        assert!(flags.split(',').any(|f| f == flag), "{flag} in {line}");
    }
    umount_and_wait(&mnt);

    // An option regfs does not know: refused, with its name, and nothing is mounted.
    let out = mount(&[
        "-t".as_ref(),
        "fuse.regfs".as_ref(),
        "-o".as_ref(),
        "frobnicate".as_ref(),
        data.as_os_str(),
        mnt.as_os_str(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown mount option \"frobnicate\""), "{err}");
    assert!(!common::is_mounted(&mnt));
}

/// `contrib/regfs.service` as systemd runs it: its ExecStart (on this test's config and
/// mountpoint) tells `NOTIFY_SOCKET` READY=1 once the mount is up, as `Type=notify` wants,
/// and STOPPING=1 when SIGTERM (`systemctl stop`) unmounts it.
#[test]
fn the_systemd_service_example_runs_as_a_notify_service() {
    use std::os::unix::net::UnixDatagram;
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/regfs.service"
    ))
    .unwrap();
    assert!(unit.lines().any(|l| l == "Type=notify"), "{unit}");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let dir = common::open_tempdir();
    let cfg = common::config_with(dir.path(), "");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _unmounts = Unmounts(mnt.clone());
    let words: Vec<std::ffi::OsString> = exec
        .split_whitespace()
        .map(|w| match w {
            "/usr/bin/regfs" => common::regfs_bin().into(),
            "/etc/regfs/regfs.toml" => cfg.clone().into_os_string(),
            "/mnt/registry" => mnt.clone().into_os_string(),
            other => other.into(),
        })
        .collect();
    assert_eq!(words[0], common::regfs_bin(), "{exec}");
    let socket = dir.path().join("notify.sock");
    let listen = UnixDatagram::bind(&socket).unwrap();
    listen
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let log = std::fs::File::create(dir.path().join("service.log")).unwrap();
    let mut child = std::process::Command::new(&words[0])
        .args(&words[1..])
        .env("NOTIFY_SOCKET", &socket)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let service_log = || std::fs::read_to_string(dir.path().join("service.log")).unwrap();
    let mut buf = [0u8; 512];
    let n = listen.recv(&mut buf).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("no READY=1 within 60 s ({e}); log:\n{}", service_log())
    });
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(common::is_mounted(&mnt), "ready means mounted");
    std::fs::write(mnt.join("_system/local/by-systemd.txt"), "x").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let n = listen.recv(&mut buf).unwrap();
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    let mut status = None;
    assert!(common::wait_until(
        std::time::Duration::from_secs(20),
        || {
            status = child.try_wait().unwrap();
            status.is_some()
        }
    ));
    assert!(status.unwrap().success(), "{}", service_log());
    assert!(!common::is_mounted(&mnt));
}

/// `regfs status`: each mount answers for itself (its databases reachable, its open files and
/// those not yet committed), as text and as JSON; exit status 0 while healthy. A mount point
/// that is no regfs mount is refused.
#[test]
fn status_reports_each_mount_and_what_it_holds() {
    let m = Mounted::new();
    let mnt = m.mnt.to_string_lossy().into_owned();
    let status = |args: &[&str]| {
        let mut all = vec!["status"];
        all.extend_from_slice(args);
        common::run_regfs(all)
    };
    let out = status(&[&mnt]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(&format!("{mnt}: healthy (pid {}", m.pid())),
        "{text}"
    );
    assert!(text.contains("reachable ("), "{text}");
    assert!(
        text.contains("open files: 0 (0 with changes not yet committed)"),
        "{text}"
    );

    // A file open with a write not yet committed (no close, no fsync), held by a shell of
    // its own: a descriptor of this process would be closed (flushed, so committed) in every
    // child it spawns, and a shell's redirections dup and close theirs.
    use std::io::{BufRead, Write};
    let hold = "import sys; f = open(sys.argv[1], 'w'); f.write('not yet'); f.flush(); \
                print('ready', flush=True); sys.stdin.readline()";
    let mut held = std::process::Command::new("python3")
        .args(["-c", hold])
        .arg(m.p("_system/local/held.txt"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(held.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let out = status(&["--json", &mnt]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let me = &json.as_array().expect("an array")[0];
    assert_eq!(me["mountpoint"], mnt.as_str());
    assert_eq!(me["pid"], m.pid().as_raw());
    assert_eq!(me["healthy"], true);
    assert_eq!(
        (me["open_files"].as_u64(), me["pending_commit"].as_u64()),
        (Some(1), Some(1))
    );
    let dbs = me["databases"].as_array().unwrap();
    assert!(
        !dbs.is_empty() && dbs.iter().all(|d| d["reachable"] == true),
        "{me}"
    );
    let shared = dbs
        .iter()
        .find(|d| {
            d["mounted_at"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "/_system/config")
        })
        .expect("the database of /_system/config");
    if std::env::var_os("REGFS_TEST_BACKEND").is_some() {
        assert!(
            shared["feed"]["how"].is_string(),
            "a server has a change feed: {me}"
        );
    }
    held.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert!(held.wait().unwrap().success());

    let out = status(&[m.scratch().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a regfs mount"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `user show` names a user's roles (the everyone role included), and refuses a user that does
/// not exist; `perm show --recursive` lists the rules at and below a path, path by path.
#[test]
fn user_show_and_recursive_perm_show() {
    let dir = common::open_tempdir();
    let d = dir.path().join("data");
    let run = |args: &[&str], stdin: &str| {
        let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        all.extend(["--data-dir".into(), d.clone().into_os_string()]);
        common::run_regfs_with_stdin(all, stdin)
    };
    let ok = |args: &[&str], stdin: &str| {
        let out = run(args, stdin);
        assert!(
            out.status.success(),
            "regfs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["init"], "");
    ok(&["user", "add", "carol"], "carol-pw\n");
    ok(&["role", "add", "ops"], "");
    ok(&["role", "assign", "ops", "carol"], "");
    ok(&["perm", "grant", "ops", "/_system/config/app", "get"], "");
    ok(
        &[
            "perm",
            "deny",
            "--user",
            "carol",
            "/_system/config/app/secret",
            "get",
        ],
        "",
    );
    ok(
        &["perm", "grant", "ops", "/_system/governance/x", "add"],
        "",
    );

    assert_eq!(
        ok(&["user", "show", "carol"], ""),
        "user carol\n  roles: Internal/everyone, PRIMARY/ops\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["user", "show", "carol", "--json"], "")).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"user": "carol", "roles": ["Internal/everyone", "PRIMARY/ops"]})
    );
    let out = run(&["user", "show", "nobody"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user nobody"));

    assert_eq!(
        ok(&["perm", "show", "--recursive", "/_system/config"], ""),
        "/_system/config/app:\n  get       allow  PRIMARY/ops\n\
         /_system/config/app/secret:\n  get       deny   user carol\n"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        &["perm", "show", "-r", "/_system/config", "--json"],
        "",
    ))
    .unwrap();
    let targets: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["/_system/config/app", "/_system/config/app/secret"]
    );
    assert_eq!(
        ok(&["perm", "show", "-r", "/_system/local"], ""),
        "no rules at or below /_system/local\n"
    );
}

/// Shell completions and the manual page come from the command line's own definition.
#[test]
fn completions_and_manual_page_are_generated_from_the_cli() {
    let bash = common::run_regfs(["completions", "bash"]);
    assert!(bash.status.success());
    let script = String::from_utf8(bash.stdout).unwrap();
    assert!(
        script.contains("_regfs()") && script.contains("status"),
        "{script}"
    );
    let dir = common::open_tempdir();
    let file = dir.path().join("regfs.bash");
    std::fs::write(&file, &script).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let zsh = common::run_regfs(["completions", "zsh"]);
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef regfs"));
    let bad = common::run_regfs(["completions", "tcsh"]);
    assert!(!bad.status.success());

    let man = common::run_regfs(["manpage"]);
    assert!(man.status.success());
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(page.contains(".TH regfs 1"), "{page}");
    for sub in ["mount", "status", "init", "perm"] {
        assert!(page.contains(sub), "{sub} in the manual page");
    }
}

/// `args` followed by the flags that name the databases of `data` (a data dir or a config).
fn with_source(args: &[&str], data: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.extend(common::source_args(data));
    all
}

/// What `regfs ARGS` on the databases of `data` prints; it must succeed.
fn stdout_of(args: &[&str], data: &std::path::Path) -> String {
    String::from_utf8(common::run_regfs_ok(with_source(args, data)).stdout).unwrap()
}

/// `regfs log`: the activity log below a path, newest first, as text and JSON lines, filtered
/// by user and time; `--follow` prints what is logged next.
#[test]
fn the_activity_log_reads_and_follows() {
    let m = Mounted::new();
    let conf = m.p("_system/config");
    m.sh(
        &conf,
        "echo a > logged.xml && mv logged.xml moved.xml && rm moved.xml && mkdir logdir",
    );
    let log = |extra: &[&str]| stdout_of(&[&["log"], extra].concat(), &m.data);
    let lines: Vec<serde_json::Value> = log(&["/_system/config", "--json", "--limit", "4"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["action"].as_str().unwrap(), l["path"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("ADD", "/_system/config/logdir"),
            ("DELETE_RESOURCE", "/_system/config/moved.xml"),
            ("RENAME", "/_system/config/moved.xml"),
            ("ADD", "/_system/config/logged.xml"),
        ]
    );
    assert_eq!(
        lines[2]["data"], "/_system/config/logged.xml",
        "a rename's old path"
    );
    // The next page starts before the last id printed.
    let last = lines[1]["id"].as_i64().unwrap().to_string();
    let next: Vec<serde_json::Value> = log(&[
        "/_system/config",
        "--json",
        "--limit",
        "2",
        "--before",
        &last,
    ])
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(next[0]["action"], "RENAME");
    assert_eq!(next[1]["path"], "/_system/config/logged.xml");
    assert!(lines.iter().all(|l| l["user"] == "admin"));
    let text = log(&["/_system/config/logdir"]);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("admin") && text.contains("ADD") && text.contains("/_system/config/logdir")
    );
    assert_eq!(log(&["/_system/config", "--user", "nobody-at-all"]), "");
    assert_eq!(
        log(&["/_system/config", "--since", "2h", "--limit", "1"])
            .lines()
            .count(),
        1
    );

    // --follow: what is logged after it started.
    use std::io::BufRead;
    let args = with_source(
        &[
            "log",
            "/_system/config",
            "--follow",
            "--limit",
            "0",
            "--json",
        ],
        &m.data,
    );
    let mut follow = std::process::Command::new(common::regfs_bin())
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // Until the follower is up, a write may fall before its starting point: write again
    // until one shows.
    let mut seen = None;
    for i in 0..40 {
        std::fs::write(conf.join(format!("followed-{i}.xml")), "x").unwrap();
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            seen = Some(line);
            break;
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let line: serde_json::Value =
        serde_json::from_str(&seen.expect("--follow printed an entry")).unwrap();
    assert_eq!(line["action"], "ADD");
    assert!(
        line["path"]
            .as_str()
            .unwrap()
            .starts_with("/_system/config/followed-")
    );
}

/// `regfs versions` lists what versioning archived (each readable as `PATH;version:N`), and
/// `regfs restore` brings one back as Carbon's restoreVersion does: its content as a new
/// version, the replaced one archived, a RESTORE entry in REG_LOG.
#[test]
fn versions_are_listed_and_restored() {
    let dir = common::open_tempdir();
    let cfg = common::config_with(dir.path(), "version_resources_on_change = true");
    let m = Mounted::with_data(dir, cfg.clone(), &["-o", "xattr"]);
    let f = m.p("_system/governance/v.xml");
    for text in ["one", "two", "three"] {
        std::fs::write(&f, text).unwrap();
    }
    let cli = |args: &[&str]| stdout_of(args, &cfg);
    let listed: serde_json::Value =
        serde_json::from_str(&cli(&["versions", "/_system/governance/v.xml", "--json"])).unwrap();
    let versions = listed.as_array().unwrap();
    assert_eq!(versions.len(), 2, "{listed}");
    let first = versions[0]["snapshot"].as_i64().unwrap();
    assert_eq!(versions[0]["size"], 3);
    assert_eq!(versions[0]["author"], "admin");
    assert_eq!(
        std::fs::read_to_string(m.p(&format!("_system/governance/v.xml;version:{first}"))).unwrap(),
        "one"
    );
    let ids: Vec<String> = versions.iter().map(|v| v["snapshot"].to_string()).collect();
    let out = std::process::Command::new("getfattr")
        .args(["--only-values", "-n", "user.regfs.versions"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        ids.join("\n"),
        "the snapshot ids as an xattr"
    );
    let text = cli(&["versions", "/_system/governance/v.xml"]);
    assert!(
        text.contains(&format!("'/_system/governance/v.xml;version:{first}'")),
        "{text}"
    );

    let said = cli(&["restore", "/_system/governance/v.xml", &first.to_string()]);
    assert!(said.starts_with(&format!(
        "restored /_system/governance/v.xml to version {first}"
    )));
    assert!(
        common::wait_until(std::time::Duration::from_secs(20), || {
            std::fs::read_to_string(&f).is_ok_and(|s| s == "one")
        }),
        "the mount reads the restored content"
    );
    let after: serde_json::Value =
        serde_json::from_str(&cli(&["versions", "/_system/governance/v.xml", "--json"])).unwrap();
    assert_eq!(
        after.as_array().unwrap().len(),
        3,
        "what the restore replaced is archived"
    );
    let log = cli(&["log", "/_system/governance/v.xml", "--json", "--limit", "1"]);
    let entry: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
    assert_eq!(
        (entry["action"].as_str(), entry["data"].as_str()),
        (Some("RESTORE"), Some(first.to_string().as_str()))
    );

    // What does not exist is refused, and changes nothing.
    let out = common::run_regfs(with_source(
        &["restore", "/_system/governance/v.xml", "999999"],
        &cfg,
    ));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no version 999999"));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "one");
}

/// A collection's checkpoints (Carbon's `createVersion` of a collection: the collection and
/// every descendant archived, one REG_SNAPSHOT row without a resource name) are listed by
/// `regfs versions DIR`, with how many entries each holds.
#[test]
fn collection_checkpoints_are_listed() {
    let m = Mounted::new();
    m.sh(
        &m.p("_system/governance"),
        "mkdir -p cp/sub && echo a > cp/a.txt && echo b > cp/sub/b.txt",
    );
    let cli = |args: &[&str]| stdout_of(args, &m.data);
    let listed = cli(&["versions", "/_system/governance/cp"]);
    assert!(listed.contains("has no archived versions"), "{listed}");
    // What Carbon's VersionRepository writes for a checkpoint of cp: its rows archived in
    // REG_RESOURCE_HISTORY, their versions in VIDS (8 bytes each, big-endian), the
    // collection's first.
    let rows = m.query(
        true,
        "SELECT r.REG_VERSION, r.REG_PATH_ID FROM REG_RESOURCE r JOIN REG_PATH p \
         ON p.REG_PATH_ID = r.REG_PATH_ID WHERE p.REG_PATH_VALUE = '/_system/governance/cp' \
         ORDER BY r.REG_NAME IS NOT NULL, r.REG_VERSION",
    );
    assert_eq!(rows.len(), 2, "the collection and a.txt: {rows:?}");
    let path_id = &rows[0][1];
    let hex: String = rows
        .iter()
        .map(|r| format!("{:016X}", r[0].parse::<i64>().unwrap()))
        .collect();
    let blob = match common::servers::backend() {
        Some(common::servers::Kind::Postgres) => format!("decode('{hex}', 'hex')"),
        _ => format!("X'{hex}'"),
    };
    let versions: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    m.execute(
        true,
        &format!(
            "INSERT INTO REG_CONTENT_HISTORY (REG_CONTENT_ID, REG_CONTENT_DATA, REG_TENANT_ID) \
             SELECT c.REG_CONTENT_ID, c.REG_CONTENT_DATA, c.REG_TENANT_ID FROM REG_CONTENT c \
             JOIN REG_RESOURCE r ON r.REG_CONTENT_ID = c.REG_CONTENT_ID \
             WHERE r.REG_VERSION IN ({0}); \
             INSERT INTO REG_RESOURCE_HISTORY (REG_PATH_ID, REG_NAME, REG_VERSION, REG_MEDIA_TYPE, \
             REG_CREATOR, REG_CREATED_TIME, REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, \
             REG_DESCRIPTION, REG_CONTENT_ID, REG_TENANT_ID, REG_UUID) \
             SELECT REG_PATH_ID, REG_NAME, REG_VERSION, REG_MEDIA_TYPE, REG_CREATOR, \
             REG_CREATED_TIME, 'carol', REG_LAST_UPDATED_TIME, REG_DESCRIPTION, REG_CONTENT_ID, \
             REG_TENANT_ID, REG_UUID FROM REG_RESOURCE WHERE REG_VERSION IN ({0}); \
             INSERT INTO REG_SNAPSHOT (REG_PATH_ID, REG_RESOURCE_NAME, REG_RESOURCE_VIDS, \
             REG_TENANT_ID) VALUES ({path_id}, NULL, {blob}, -1234)",
            versions.join(", ")
        ),
    );
    let listed: serde_json::Value =
        serde_json::from_str(&cli(&["versions", "/_system/governance/cp", "--json"])).unwrap();
    let all = listed.as_array().unwrap();
    assert_eq!(all.len(), 1, "{listed}");
    assert_eq!(all[0]["entries"], 2);
    assert_eq!(all[0]["author"], "carol");
    assert_eq!(all[0]["version"].to_string(), versions[0]);
    let text = cli(&["versions", "/_system/governance/cp"]);
    assert!(
        text.contains("2 entries") && text.contains("checkpoint"),
        "{text}"
    );
    // A file in it has no versions of its own from the checkpoint.
    let file = cli(&["versions", "/_system/governance/cp/a.txt", "--json"]);
    assert_eq!(file.trim(), "[]");
}

/// Removes the regfs package when dropped, if the test installed it.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::process::Command::new("dpkg")
            .args(["-r", "regfs"])
            .output();
    }
}

/// `scripts/build-deb.sh` builds a Debian package that installs with `dpkg -i`: the binary,
/// the mount helper (so `mount -t fuse.regfs` works at once), the manual page, completions
/// and the service example; `dpkg -r` takes it all away again.
#[test]
fn the_debian_package_installs_mounts_and_removes() {
    let _system = SYSTEM.lock().unwrap_or_else(|e| e.into_inner());
    let installed = std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "regfs"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&installed.stdout).contains("install ok installed"),
        "the regfs package is installed on this machine; this test installs and removes its \
         own: run `dpkg -r regfs` first"
    );
    let dir = common::open_tempdir();
    let out = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-deb.sh"))
        .arg(common::regfs_bin())
        .arg(dir.path())
        .env("REGFS_DEB_COMPRESSION", "gzip")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let _installed = Installed;
    let out = std::process::Command::new("dpkg")
        .args(["-i", &deb])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpkg -i: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = std::process::Command::new("/usr/bin/regfs")
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("regfs {}", env!("CARGO_PKG_VERSION"))
    );
    for f in [
        "/usr/share/man/man1/regfs.1.gz",
        "/usr/share/bash-completion/completions/regfs",
        "/lib/systemd/system/regfs.service",
        "/usr/share/doc/regfs/fstab.example",
    ] {
        assert!(std::path::Path::new(f).exists(), "{f} installed");
    }
    // The helper it installed mounts.
    let data = dir.path().join("data");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _unmounts = Unmounts(mnt.clone());
    let out = std::process::Command::new("mount")
        .args(["-t", "fuse.regfs"])
        .arg(&data)
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount -t fuse.regfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(mnt.join("_system/local/packaged.txt"), "deb").unwrap();
    umount_and_wait(&mnt);

    let out = std::process::Command::new("dpkg")
        .args(["-r", "regfs"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpkg -r: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!std::path::Path::new("/usr/bin/regfs").exists());
    assert!(
        std::path::Path::new("/sbin/mount.fuse.regfs")
            .symlink_metadata()
            .is_err()
    );
}

/// Lets the local user `uid` open /dev/fuse while it lives (an ACL entry, removed on drop): a
/// machine whose /dev/fuse is 0600 (this one; Debian's udev makes it 0666) lets only root
/// mount otherwise.
struct FuseAccess(u32);

impl FuseAccess {
    fn grant(uid: u32) -> Self {
        let st = std::process::Command::new("setfacl")
            .args(["-m", &format!("u:{uid}:rw"), "/dev/fuse"])
            .status()
            .expect("setfacl (Debian package acl) runs");
        assert!(st.success(), "setfacl on /dev/fuse");
        FuseAccess(uid)
    }
}

impl Drop for FuseAccess {
    fn drop(&mut self) {
        let _ = std::process::Command::new("setfacl")
            .args(["-x", &format!("u:{}", self.0), "/dev/fuse"])
            .status();
    }
}

/// First use as a user other than root (#20 item 5): `regfs mount DIR` with nothing else
/// creates the embedded default in the user's own data directory, mounts through fusermount3,
/// and the user acts as admin there (writes, makes collections, owns what they make), then
/// unmounts with `fusermount3 -u`.
#[test]
fn a_user_other_than_root_mounts_a_registry_of_their_own() {
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let dir = common::open_tempdir();
    let (home, mnt) = (dir.path().join("home"), dir.path().join("mnt"));
    let bin = dir.path().join("regfs");
    std::fs::copy(common::regfs_bin(), &bin).unwrap();
    for d in [&home, &mnt] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let as_nobody = |program: &std::path::Path, args: &[&std::ffi::OsStr]| {
        std::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &home)
            .current_dir(&home)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let _fuse = FuseAccess::grant(NOBODY);
    let _unmounts = Unmounts(mnt.clone());
    let out = as_nobody(&bin, &["mount".as_ref(), mnt.as_os_str()]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(said.contains("mounted at"), "{said}");
    assert!(common::is_mounted(&mnt));
    let data = home.join(".local/share/regfs");
    let script = "echo mine > _system/config/mine.txt && cat _system/config/mine.txt && \
                  mkdir _system/governance/made && stat -c '%u %n' _system/config/mine.txt \
                  _system/governance/made";
    let out = as_nobody(
        std::path::Path::new("/bin/sh"),
        &[
            "-c".as_ref(),
            format!("cd {} && {script}", mnt.display()).as_ref(),
        ],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        shown,
        format!("mine\n{NOBODY} _system/config/mine.txt\n{NOBODY} _system/governance/made\n")
    );
    let log = std::fs::read_to_string(data.join("regfs.log")).unwrap();
    assert!(log.contains("act as admin"), "{log}");
    let out = as_nobody(
        std::path::Path::new("/usr/bin/fusermount3"),
        &["-u".as_ref(), mnt.as_os_str()],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(common::wait_until(
        std::time::Duration::from_secs(20),
        || !common::is_mounted(&mnt)
    ));
    // The registry is the user's: its files are theirs.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(data.join("shared.db")).unwrap().uid(),
        NOBODY
    );
}
