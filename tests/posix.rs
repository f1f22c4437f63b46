//! File semantics checked through the kernel with std::fs and libc on a real mount.

mod common;

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::{Mounted, errno_of};

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> i32 {
    let (a, b) = (cstr(from), cstr(to));
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

#[test]
fn three_partitions_at_their_registry_paths() {
    let m = Mounted::new();
    let mut names: Vec<String> = std::fs::read_dir(m.p("_system"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["config", "governance", "local"]);
    for p in ["_system/local", "_system/config", "_system/governance"] {
        assert!(m.p(p).join("repository").is_dir(), "{p}/repository");
    }
}

#[test]
fn open_handle_survives_unlink() {
    let m = Mounted::new();
    let f = m.p("_system/local/ghost");
    std::fs::write(&f, "still here").unwrap();
    let mut h = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&f)
        .unwrap();
    std::fs::remove_file(&f).unwrap();
    assert!(!f.exists());
    let mut s = String::new();
    h.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here");
    h.write_all(b" and more").unwrap();
    h.seek(SeekFrom::Start(0)).unwrap();
    s.clear();
    h.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here and more");
    assert_eq!(h.metadata().unwrap().nlink(), 0);
    drop(h);
    assert!(!f.exists());
}

#[test]
fn hard_links_are_refused_with_eperm() {
    let m = Mounted::new();
    let f = m.p("_system/local/a");
    std::fs::write(&f, "x").unwrap();
    assert_eq!(
        errno_of(std::fs::hard_link(&f, m.p("_system/local/b"))),
        libc::EPERM
    );
    assert!(m.log().contains("hard links are not supported"));
}

#[test]
fn rename_replaces_noreplace_and_exdev() {
    let m = Mounted::new();
    let a = m.p("_system/config/a");
    let b = m.p("_system/config/b");
    std::fs::write(&a, "A").unwrap();
    std::fs::write(&b, "B").unwrap();
    assert_eq!(renameat2(&a, &b, libc::RENAME_NOREPLACE), libc::EEXIST);
    std::fs::rename(&a, &b).unwrap();
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "A");
    assert!(!a.exists());
    // config and governance share a database: rename works between them.
    std::fs::rename(&b, m.p("_system/governance/b")).unwrap();
    // local is another database: EXDEV, so mv falls back to copy + delete.
    assert_eq!(
        errno_of(std::fs::rename(
            m.p("_system/governance/b"),
            m.p("_system/local/b")
        )),
        libc::EXDEV
    );
    m.sh(&m.mnt, "mv _system/governance/b _system/local/b");
    assert_eq!(
        std::fs::read_to_string(m.p("_system/local/b")).unwrap(),
        "A"
    );
    // Directories move with their subtree.
    std::fs::create_dir_all(m.p("_system/local/d1/d2/d3")).unwrap();
    std::fs::write(m.p("_system/local/d1/d2/d3/f"), "deep").unwrap();
    std::fs::rename(
        m.p("_system/local/d1"),
        m.p("_system/local/repository/moved"),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(m.p("_system/local/repository/moved/d2/d3/f")).unwrap(),
        "deep"
    );
    assert_eq!(
        errno_of(std::fs::rename(
            m.p("_system/local/repository"),
            m.p("_system/local/repository/moved/x")
        )),
        libc::EINVAL
    );
    // Mount points stay where they are.
    assert_eq!(
        errno_of(std::fs::rename(m.p("_system/config"), m.p("_system/cfg"))),
        libc::EBUSY
    );
}

#[test]
fn rmdir_and_unlink_errors() {
    let m = Mounted::new();
    let d = m.p("_system/local/dir");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("f"), "x").unwrap();
    assert_eq!(errno_of(std::fs::remove_dir(&d)), libc::ENOTEMPTY);
    assert_eq!(errno_of(std::fs::remove_file(&d)), libc::EISDIR);
    assert_eq!(errno_of(std::fs::remove_dir(d.join("f"))), libc::ENOTDIR);
    assert_eq!(errno_of(std::fs::create_dir(&d)), libc::EEXIST);
    std::fs::remove_file(d.join("f")).unwrap();
    std::fs::remove_dir(&d).unwrap();
    assert_eq!(errno_of(std::fs::metadata(&d)), libc::ENOENT);
}

/// `mkdirat` relative to `dir`, as an errno.
fn mkdirat(dir: &std::fs::File, name: &str) -> i32 {
    use std::os::fd::AsRawFd;
    let n = CString::new(name).unwrap();
    if unsafe { libc::mkdirat(dir.as_raw_fd(), n.as_ptr(), 0o755) } == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

/// `openat` of a directory relative to `dir`.
fn open_dir_at(dir: &std::fs::File, name: &str) -> std::io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let n = CString::new(name).unwrap();
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            n.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// Directories nest deeper than one system call's PATH_MAX (4096 bytes), as pjdfstest's
/// `*/03` tests and `rm -rf` of deep trees expect, up to the backend's limit on a collection
/// path: regfs's 32 KiB on the embedded SQLite, the width of Carbon's REG_PATH_VALUE on a server
/// (2000 bytes, 750 on MariaDB). Past it mkdir fails with ENAMETOOLONG and creates nothing.
#[test]
fn collection_paths_nest_past_path_max_up_to_the_backends_limit() {
    use common::servers::{Kind, backend};
    let m = Mounted::new();
    let limit = match backend() {
        None => 32 * 1024,
        Some(Kind::Postgres) => 2000,
        Some(Kind::MariaDb) => 750,
    };
    let name = "d".repeat(250);
    let mut registry_path = String::from("/_system/local");
    let mut dir = std::fs::File::open(m.p("_system/local")).unwrap();
    loop {
        registry_path = format!("{registry_path}/{name}");
        let r = mkdirat(&dir, &name);
        if registry_path.len() > limit {
            assert_eq!(r, libc::ENAMETOOLONG, "at {} bytes", registry_path.len());
            assert_eq!(
                errno_of(open_dir_at(&dir, &name)),
                libc::ENOENT,
                "a refused mkdir created nothing"
            );
            break;
        }
        assert_eq!(r, 0, "mkdir at {} bytes", registry_path.len());
        dir = open_dir_at(&dir, &name).unwrap();
    }
    // Files and tools work at the bottom, then rm -rf takes the whole chain.
    use std::os::fd::AsRawFd;
    let at_bottom = format!("/proc/self/fd/{}/f", dir.as_raw_fd());
    std::fs::write(&at_bottom, "deep").unwrap();
    assert_eq!(std::fs::read_to_string(&at_bottom).unwrap(), "deep");
    drop(dir);
    m.sh(&m.p("_system/local"), &format!("rm -rf {name}"));
    assert_eq!(
        errno_of(std::fs::metadata(m.p("_system/local").join(&name))),
        libc::ENOENT
    );
}

#[test]
fn names_the_registry_cannot_store() {
    let m = Mounted::new();
    let dir = m.p("_system/local");
    assert_eq!(
        errno_of(std::fs::write(dir.join("a;version:3"), "x")),
        libc::EINVAL
    );
    assert_eq!(
        errno_of(std::fs::write(dir.join("x".repeat(256)), "x")),
        libc::ENAMETOOLONG
    );
    let bad = std::ffi::OsStr::from_bytes(b"bad\xffname");
    assert_eq!(errno_of(std::fs::write(dir.join(bad), "x")), libc::EILSEQ);
    assert!(std::fs::read_dir(&dir).unwrap().all(|e| {
        let n = e.unwrap().file_name();
        n == "repository"
    }));
    // WSO2's "illegal" characters other than ';' are allowed.
    for name in ["file~", ".#file", "a b", "x@y#z!%^*+={}|<>\",'"] {
        std::fs::write(dir.join(name), name).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), name);
    }
}

#[test]
fn attributes_mode_owner_times_truncate() {
    let m = Mounted::new();
    let f = m.p("_system/local/attrs");
    std::fs::write(&f, "0123456789").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o751)).unwrap();
    std::os::unix::fs::chown(&f, Some(1234), Some(5678)).unwrap();
    let md = std::fs::metadata(&f).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o751);
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    let when = SystemTime::UNIX_EPOCH + Duration::new(1_500_000_000, 123_456_789);
    let file = std::fs::File::options().write(true).open(&f).unwrap();
    file.set_times(
        std::fs::FileTimes::new()
            .set_modified(when)
            .set_accessed(when),
    )
    .unwrap();
    drop(file);
    let md = std::fs::metadata(&f).unwrap();
    assert_eq!(md.modified().unwrap(), when);
    assert_eq!(md.accessed().unwrap(), when);
    let file = std::fs::File::options().write(true).open(&f).unwrap();
    file.set_len(4).unwrap();
    drop(file);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "0123");
    let file = std::fs::File::options().write(true).open(&f).unwrap();
    file.set_len(6).unwrap();
    drop(file);
    assert_eq!(std::fs::read(&f).unwrap(), b"0123\0\0");
    // Beyond what one registry blob holds: EFBIG, and nothing changes.
    let file = std::fs::File::options().write(true).open(&f).unwrap();
    assert_eq!(errno_of(file.set_len(999_999_999_999_999)), libc::EFBIG);
    drop(file);
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 6);
    // A directory's mtime moves when an entry is added.
    let d = m.p("_system/local");
    let before = std::fs::metadata(&d).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(d.join("new"), "n").unwrap();
    // The kernel may serve the directory's attributes from its cache for up to the TTL.
    assert!(common::wait_until(Duration::from_secs(3), || {
        std::fs::metadata(&d).unwrap().modified().unwrap() > before
    }));
}

#[test]
fn close_to_open_and_large_file() {
    let m = Mounted::new();
    let f = m.p("_system/governance/big.bin");
    let data: Vec<u8> = (0..(8u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761u32) >> 13) as u8)
        .collect();
    {
        let mut h = std::fs::File::create(&f).unwrap();
        for chunk in data.chunks(100_000) {
            h.write_all(chunk).unwrap();
        }
        // Another opener sees local unflushed writes on this node (shared open state)...
        assert_eq!(std::fs::metadata(&f).unwrap().len(), data.len() as u64);
    }
    // ...and the whole content after close.
    assert_eq!(std::fs::read(&f).unwrap(), data);
    // Appends and sparse writes.
    let mut h = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
    h.write_all(b"tail").unwrap();
    drop(h);
    assert_eq!(std::fs::metadata(&f).unwrap().len(), data.len() as u64 + 4);
}

#[test]
fn statfs_and_symlinks_and_fifos() {
    let m = Mounted::new();
    let st = nix::sys::statvfs::statvfs(&m.mnt).unwrap();
    assert!(st.blocks() > 0);
    assert_eq!(st.name_max(), 255);
    let dir = m.p("_system/local");
    std::os::unix::fs::symlink("../target/x", dir.join("link")).unwrap();
    assert_eq!(
        std::fs::read_link(dir.join("link"))
            .unwrap()
            .to_str()
            .unwrap(),
        "../target/x"
    );
    assert!(
        std::fs::symlink_metadata(dir.join("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    nix::unistd::mkfifo(
        &dir.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(dir.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn stale_mount_after_kill_9_is_recovered() {
    let m = Mounted::new();
    std::fs::write(m.p("_system/local/survivor"), "yes").unwrap();
    // Kill regfs hard: the mount point is left "Transport endpoint is not connected".
    nix::sys::signal::kill(m.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(common::wait_until(Duration::from_secs(10), || {
        errno_of(std::fs::metadata(&m.mnt)) == libc::ENOTCONN
    }));
    // A new regfs on the same mount point recovers it.
    let mut args: Vec<std::ffi::OsString> = vec!["mount".into()];
    args.extend(m.source_args());
    args.push(m.mnt.clone().into());
    let out = common::run_regfs_ok(args);
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale FUSE mount"));
    assert_eq!(
        std::fs::read_to_string(m.p("_system/local/survivor")).unwrap(),
        "yes"
    );
    // Stop the background regfs this test started (the harness only knows the killed one).
    let _ = std::process::Command::new("umount").arg(&m.mnt).status();
    assert!(common::wait_until(Duration::from_secs(10), || {
        !common::is_mounted(&m.mnt)
    }));
}

#[test]
fn another_node_writes_are_seen_at_the_next_open() {
    // Two regfs processes on one data directory stand in for two nodes sharing a database.
    let a = Mounted::new();
    let b = a.another_node();
    let fa = a.p("_system/config/shared.txt");
    let fb = b.p("_system/config/shared.txt");
    std::fs::write(&fa, "version-1").unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&fb).ok().as_deref() == Some("version-1")
    }));
    // Read twice on b: the second open may keep b's page cache (same version).
    assert_eq!(std::fs::read_to_string(&fb).unwrap(), "version-1");
    // a rewrites it (same length, so no size change hides a stale page cache).
    std::fs::write(&fa, "version-2").unwrap();
    assert_eq!(std::fs::read_to_string(&fb).unwrap(), "version-2");
    assert_eq!(std::fs::read_to_string(&fb).unwrap(), "version-2");
    // And back the other way.
    std::fs::write(&fb, "version-3").unwrap();
    assert_eq!(std::fs::read_to_string(&fa).unwrap(), "version-3");
}

/// `> file` (an open with O_TRUNC, then writes, then close) is one change: another node reads
/// the old content until the close and the new content after it, never an empty file, and the
/// registry gets one new version and one UPDATE log entry. An O_TRUNC open that writes nothing
/// still empties the file at its close. Locally the truncation shows at once.
#[test]
fn a_truncating_open_commits_with_its_writes() {
    let a = Mounted::new();
    let b = a.another_node();
    let fa = a.p("_system/config/t.txt");
    let fb = b.p("_system/config/t.txt");
    std::fs::write(&fa, "old content").unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&fb).ok().as_deref() == Some("old content")
    }));
    let updates = || {
        a.query(
            true,
            "SELECT COUNT(*) FROM REG_LOG WHERE REG_PATH = '/_system/config/t.txt' \
             AND REG_ACTION = 1",
        )[0][0]
            .parse::<i64>()
            .unwrap()
    };
    let before = updates();
    let mut w = std::fs::File::create(&fa).unwrap();
    assert_eq!(
        std::fs::metadata(&fa).unwrap().len(),
        0,
        "truncated locally at once"
    );
    assert_eq!(std::fs::read_to_string(&fb).unwrap(), "old content");
    w.write_all(b"new").unwrap();
    assert_eq!(std::fs::read_to_string(&fb).unwrap(), "old content");
    drop(w);
    assert_eq!(std::fs::read_to_string(&fb).unwrap(), "new");
    assert_eq!(
        updates(),
        before + 1,
        "one version for the truncation and the write"
    );
    // A handle that only truncated commits at its release, which the kernel sends just after
    // the last close returns (a flush alone could be the shell's close before its writes).
    drop(std::fs::File::create(&fa).unwrap());
    assert_eq!(std::fs::metadata(&fa).unwrap().len(), 0);
    assert!(
        common::wait_until(Duration::from_secs(15), || {
            std::fs::read_to_string(&fb).ok().as_deref() == Some("")
        }),
        "the truncation never reached the other node"
    );
    assert_eq!(
        updates(),
        before + 2,
        "one version for the truncation alone"
    );
    // Removed on the other node while this one still knows the name: `> file` makes it anew.
    std::fs::remove_file(&fb).unwrap();
    std::fs::write(&fa, "again").unwrap();
    assert_eq!(std::fs::read_to_string(&fb).unwrap(), "again");
}

/// The shells' `> file` (open, dup2, close of the original descriptor, write, close) makes one
/// transaction: one ADD for a new file, one UPDATE for an existing one, never an empty version
/// first. bash, dash and `sh -c`, with a builtin and with an external command.
#[test]
fn a_shell_redirect_makes_one_version() {
    let m = Mounted::new();
    let dir = m.p("_system/config/redir");
    std::fs::create_dir(&dir).unwrap();
    let log = |name: &str, action: i64| {
        m.query(
            true,
            &format!(
                "SELECT COUNT(*) FROM REG_LOG WHERE REG_PATH = '/_system/config/redir/{name}' \
                 AND REG_ACTION = {action}"
            ),
        )[0][0]
            .parse::<i64>()
            .unwrap()
    };
    let shells: &[(&str, &[&str])] = &[
        ("bash", &["bash", "-c"]),
        ("dash", &["dash", "-c"]),
        ("sh", &["sh", "-c"]),
    ];
    for (shell, argv) in shells {
        for (kind, cmd) in [("builtin", "echo"), ("external", "/bin/echo")] {
            let name = format!("{shell}-{kind}.txt");
            let run = |text: &str| {
                let out = std::process::Command::new(argv[0])
                    .args(&argv[1..])
                    .arg(format!("{cmd} {text} > {name}"))
                    .current_dir(&dir)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{shell}: {out:?}");
            };
            run("first");
            assert_eq!(
                (log(&name, 0), log(&name, 1)),
                (1, 0),
                "{shell} {kind}: a new file is one ADD"
            );
            run("second");
            assert_eq!(
                (log(&name, 0), log(&name, 1)),
                (1, 1),
                "{shell} {kind}: an overwrite is one UPDATE"
            );
            assert_eq!(
                std::fs::read_to_string(dir.join(&name)).unwrap(),
                "second\n"
            );
        }
    }
}

/// `>>` from two nodes at once (three shells on each): every line lands, none overwrites
/// another node's, because an append commits as an append to what the database has then.
#[test]
fn appends_from_two_nodes_all_land() {
    let a = Mounted::new();
    let b = a.another_node();
    std::fs::write(a.p("_system/config/log.txt"), "").unwrap();
    assert!(common::wait_until(Duration::from_secs(15), || {
        b.p("_system/config/log.txt").exists()
    }));
    let mut shells = Vec::new();
    for (node, m) in [("a", &a), ("b", &b)] {
        for k in 0..3 {
            shells.push(
                std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "for i in $(seq 1 25); do echo {node}{k}-$i >> log.txt || exit 1; done"
                    ))
                    .current_dir(m.p("_system/config"))
                    .spawn()
                    .unwrap(),
            );
        }
    }
    for mut s in shells {
        assert!(s.wait().unwrap().success(), "an append failed");
    }
    let want: std::collections::BTreeSet<String> = ["a", "b"]
        .iter()
        .flat_map(|n| (0..3).flat_map(move |k| (1..=25).map(move |i| format!("{n}{k}-{i}"))))
        .collect();
    for m in [&a, &b] {
        let mut got = std::collections::BTreeSet::new();
        let ok = common::wait_until(Duration::from_secs(15), || {
            let text = std::fs::read_to_string(m.p("_system/config/log.txt")).unwrap();
            got = text.lines().map(str::to_string).collect();
            text.lines().count() == want.len() && got == want
        });
        let missing: Vec<&String> = want.difference(&got).take(10).collect();
        assert!(
            ok,
            "{} of {} lines, missing e.g. {missing:?}\n{}",
            got.len(),
            want.len(),
            common::tail(&a.log(), 20)
        );
    }
}

/// The times `cp -a` and `tar x` set before they close a file they wrote stay: the commit of
/// the writes does not stamp the close's time over them.
#[test]
fn cp_a_and_tar_x_keep_the_times_they_set() {
    let m = Mounted::new();
    let scratch = m.scratch();
    m.sh(
        &scratch,
        "mkdir -p src && seq 1 2000 > src/big.txt && echo small > src/small.txt \
         && touch -d '2001-02-03 04:05:06' src/big.txt src/small.txt \
         && tar cf tree.tar -C src .",
    );
    let dest = m.p("_system/governance");
    m.sh(
        &dest,
        &format!(
            "cp -a {src}/big.txt {src}/small.txt . && mkdir t && tar xf {tar} -C t",
            src = scratch.join("src").display(),
            tar = scratch.join("tree.tar").display()
        ),
    );
    let want = m.sh(&scratch, "stat -c %Y src/big.txt");
    for f in ["big.txt", "small.txt", "t/big.txt", "t/small.txt"] {
        let got = m.sh(&dest, &format!("stat -c %Y {f}"));
        assert_eq!(got, want, "{f}: the mtime set before close was lost");
    }
    // And after the kernel's caches are gone: it is what the database holds.
    let b = m.another_node();
    for f in ["big.txt", "t/small.txt"] {
        let got = b.sh(&b.p("_system/governance"), &format!("stat -c %Y {f}"));
        assert_eq!(got, want, "{f} on another node");
    }
}

/// A tmpfs of `size` at a fresh directory, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn new(under: &Path, size: &str) -> SmallDisk {
        let dir = under.join("small-disk");
        std::fs::create_dir(&dir).unwrap();
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "regfs-test-disk",
            ])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "cannot mount a tmpfs (run as root)");
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A disk that fills up at a close leaves no half-written resource: a new file's row and its
/// content go in together or not at all, and an overwrite leaves the old content.
#[test]
fn a_full_disk_leaves_no_half_written_resource() {
    let dir = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    let disk = SmallDisk::new(dir.path(), "4m");
    let data = disk.0.join("data");
    common::run_regfs_ok([
        std::ffi::OsStr::new("init"),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    // The mount point in a temp dir of its own: `dir` holds the small disk, and goes only
    // after the disk is unmounted (a mounted directory cannot be removed).
    let mnt_dir = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    let mut m = Mounted::with_data(mnt_dir, data, &[]);
    std::fs::write(m.p("_system/local/kept.txt"), "old").unwrap();
    // 6 MiB of content cannot fit: the commit at fsync fails with ENOSPC. Written by a child
    // process of its own: a descriptor in this (multi-threaded) test process would be
    // inherited by whatever another test forks meanwhile, and that copy's close at exec is a
    // flush, which commits what is written so far (as any close does).
    let write_big = |name: &str| {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import os, sys\n\
                 fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n\
                 os.write(fd, b'7' * (6 << 20))\n\
                 try:\n    os.fsync(fd)\n    print('synced')\n\
                 except OSError as e:\n    print(e.errno)\n\
                 try:\n    os.close(fd)\n\
                 except OSError:\n    pass\n",
            )
            .arg(m.p(&format!("_system/local/{name}")))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(write_big("big.bin"), libc::ENOSPC.to_string());
    assert_eq!(write_big("kept.txt"), libc::ENOSPC.to_string());
    // The node's own database is the SQLite file on the small disk, whatever the backend.
    let local = disk.0.join("data/local.db");
    assert_eq!(
        common::sql_count(
            &local,
            "SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_NAME = 'big.bin'"
        ),
        0,
        "a resource row went in without its content\n{}",
        common::tail(&m.log(), 30)
    );
    assert_eq!(
        common::sql_count(
            &local,
            "SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_NAME = 'kept.txt' AND REG_CONTENT_ID IS NULL"
        ),
        0
    );
    m.unmount();
    let again = m.another_node();
    assert!(!again.p("_system/local/big.bin").exists());
    assert_eq!(
        std::fs::read_to_string(again.p("_system/local/kept.txt")).unwrap(),
        "old"
    );
    drop(again);
    drop(m);
    drop(disk);
    drop(dir);
}

/// How many of the pages `len` bytes of `file` span are in the page cache: mapped, never read.
fn resident_pages(file: &std::fs::File, len: usize) -> usize {
    use std::os::fd::AsRawFd;
    let mut present = vec![0u8; len.div_ceil(4096)];
    // SAFETY: a fresh read-only mapping of an open file, unmapped before returning; mincore
    // writes one byte per page into a vector of that many bytes.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            addr,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        let r = libc::mincore(addr, len, present.as_mut_ptr());
        let err = std::io::Error::last_os_error();
        libc::munmap(addr, len);
        assert_eq!(r, 0, "mincore: {err}");
    }
    present.iter().filter(|b| *b & 1 == 1).count()
}

#[test]
fn a_small_files_first_open_brings_its_pages() {
    // The open that first reads a file of up to 128 KiB stores its content in the kernel's
    // page cache: the reads that follow need no request.
    let a = Mounted::new();
    let sizes = [1, 4095, 4096, 4097, 20_000, 128 << 10, (128 << 10) + 1];
    let content = |n: usize| (0..n).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>();
    let name = |n: usize| format!("_system/config/sized-{n}");
    for n in sizes {
        std::fs::write(a.p(&name(n)), content(n)).unwrap();
    }
    // Another node, started now, has opened none of them.
    let b = a.another_node();
    for n in sizes {
        let mut file = std::fs::File::open(b.p(&name(n))).unwrap();
        let expected = if n <= 128 << 10 { n.div_ceil(4096) } else { 0 };
        assert_eq!(
            resident_pages(&file, n),
            expected,
            "pages of a {n}-byte file"
        );
        let mut got = Vec::new();
        file.read_to_end(&mut got).unwrap();
        assert!(got == content(n), "content of the {n}-byte file");
    }
    // Changed elsewhere, shorter and longer: the next open reads all of the new content,
    // read at once (before the watcher of an embedded mount could tell the kernel).
    let changed = |n: usize, new: &[u8]| {
        std::fs::write(a.p(&name(n)), new).unwrap();
        assert!(
            std::fs::read(b.p(&name(n))).unwrap() == new,
            "{n} bytes, then {}",
            new.len()
        );
    };
    changed(20_000, b"short");
    changed(4097, &content(9000));
    changed((128 << 10) + 1, &content(200_000));
    // Looked up, then changed elsewhere, then opened for the first time.
    std::fs::write(a.p(&name(7)), content(7)).unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || b
        .p(&name(7))
        .exists()));
    changed(7, &content(5000));
}

#[test]
fn names_and_attributes_changed_elsewhere_reach_the_kernels_cache() {
    // On SQLite the kernel may keep entries for 10 s: regfs watches the databases and drops
    // them as soon as another process commits (on the servers the kernel keeps them 1 s).
    let a = Mounted::new();
    let b = a.another_node();
    let (fa, fb) = (
        a.p("_system/governance/watched.txt"),
        b.p("_system/governance/watched.txt"),
    );
    std::fs::write(&fa, "x").unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || fb.exists()));
    let mode = |f: &std::path::Path| std::fs::metadata(f).map(|m| m.mode() & 0o7777);
    assert_eq!(mode(&fa).unwrap(), 0o644);
    std::fs::set_permissions(&fb, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        common::wait_until(Duration::from_secs(5), || mode(&fa).ok() == Some(0o600)),
        "a chmod on the other node is not seen here: {:o}",
        mode(&fa).unwrap()
    );
    let (ga, gb) = (
        a.p("_system/governance/moved.txt"),
        b.p("_system/governance/moved.txt"),
    );
    assert!(!ga.exists());
    std::fs::rename(&fb, &gb).unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || {
        !fa.exists() && ga.exists()
    }));
    std::fs::remove_file(&gb).unwrap();
    assert!(common::wait_until(Duration::from_secs(5), || !ga.exists()));
}

#[test]
fn a_shell_in_the_mount_keeps_its_working_directory_when_another_process_commits() {
    // When another process commits, an embedded mount's watcher makes the kernel drop the
    // entries it cached. Dropping them outright (unhashing the dentries) would leave every
    // process whose working directory is in the mount with a directory the kernel calls
    // deleted: getcwd fails with ENOENT (`sh: getcwd() failed`, `pwd -P`, git). They are
    // expired instead, and looked up again at their next use.
    let a = Mounted::new();
    let b = a.another_node();
    let dir = a.p("_system/governance/cwd/deeper");
    std::fs::create_dir_all(&dir).unwrap();
    let mut sh = std::process::Command::new("sh")
        .arg("-c")
        .arg("read go && exec /bin/pwd -P")
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let before = a.log().matches("cached entries dropped").count();
    std::fs::write(b.p("_system/governance/cwd/other.txt"), "x").unwrap();
    // Only the embedded default watches (the servers' entries live 1 s in the kernel).
    if common::servers::backend().is_none() {
        assert!(
            common::wait_until(Duration::from_secs(10), || {
                a.log().matches("cached entries dropped").count() > before
            }),
            "the watcher never dropped the cached entries\n{}",
            common::tail(&a.log(), 20)
        );
    }
    sh.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = sh.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pwd -P in the mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        dir.to_str().unwrap()
    );
    // The entries were only expired: a name changed elsewhere still shows.
    assert!(a.p("_system/governance/cwd/other.txt").exists());
}

#[test]
fn a_directory_reports_the_times_its_changes_committed() {
    // After a change in a directory, regfs answers the kernel's next getattr of it from what
    // the change wrote: those times must be the ones in the database, to the nanosecond.
    let m = Mounted::new();
    let d = m.p("_system/governance/times");
    std::fs::create_dir(&d).unwrap();
    let committed = || -> (i64, i64) {
        let rows = m.query(
            true,
            "SELECT a.MTIME_NS, a.CTIME_NS FROM REGFS_ATTR a JOIN REG_RESOURCE r \
             ON r.REG_UUID = a.REG_UUID AND r.REG_TENANT_ID = a.REG_TENANT_ID \
             JOIN REG_PATH p ON p.REG_PATH_ID = r.REG_PATH_ID AND p.REG_TENANT_ID = r.REG_TENANT_ID \
             WHERE p.REG_PATH_VALUE = '/_system/governance/times' AND r.REG_NAME IS NULL",
        );
        assert_eq!(
            rows.len(),
            1,
            "one attribute row for the collection: {rows:?}"
        );
        (rows[0][0].parse().unwrap(), rows[0][1].parse().unwrap())
    };
    let seen = || -> (i64, i64) {
        let md = std::fs::metadata(&d).unwrap();
        (
            md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            md.ctime() * 1_000_000_000 + md.ctime_nsec(),
        )
    };
    let mut last = committed();
    let mut check = |what: &str| {
        let now = committed();
        assert!(now.0 > last.0, "{what}: the collection's mtime moved");
        assert_eq!(seen(), now, "{what}: stat shows the committed times");
        last = now;
    };
    std::fs::write(d.join("f"), "x").unwrap();
    check("a new file");
    std::fs::create_dir(d.join("sub")).unwrap();
    check("mkdir");
    std::fs::rename(d.join("f"), d.join("g")).unwrap();
    check("rename");
    std::fs::rename(d.join("g"), d.join("sub/g")).unwrap();
    check("a move out");
    std::fs::remove_file(d.join("sub/g")).unwrap();
    std::fs::remove_dir(d.join("sub")).unwrap();
    check("rmdir");
    std::fs::write(d.join("h"), "y").unwrap();
    std::fs::remove_file(d.join("h")).unwrap();
    check("unlink");
}

/// A file that says how long it is: its length in the first 8 bytes, then one tag byte repeated.
fn self_describing(len: usize, tag: u8) -> Vec<u8> {
    let mut v = (len as u64).to_le_bytes().to_vec();
    v.resize(len.max(8), tag);
    v
}

/// Why `data` is not a whole [`self_describing`] file, if it is not.
fn torn(data: &[u8]) -> Option<String> {
    if data.len() < 8 {
        return Some(format!("{} bytes: shorter than its header", data.len()));
    }
    let said = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
    if said != data.len() {
        return Some(format!(
            "{} bytes read of a {said}-byte version",
            data.len()
        ));
    }
    let tag = data.get(8).copied();
    let mixed = data[8..].iter().position(|b| Some(*b) != tag);
    mixed.map(|at| format!("{said} bytes, mixed content at {}", at + 8))
}

#[test]
fn readers_see_whole_versions_while_a_file_is_replaced_under_them() {
    // A writer replaces a file (writes a temporary file, renames it over) while readers open
    // and read it, with sizes on both sides of a page and of the 128 KiB the first open
    // stores in the page cache. An open that races a replacement opens the old file or the
    // new one, never neither, and every read is one whole version. (Between replacements the
    // writer waits until each reader finished a read, so that no open races two of them.)
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let m = Mounted::new();
    let dir = m.p("_system/config");
    let target = dir.join("replaced.bin");
    std::fs::write(&target, self_describing(9, 0)).unwrap();
    let sizes = [9, 4095, 4096, 5000, 70_000, 128 << 10, 140_000];
    let writing = Arc::new(AtomicBool::new(true));
    let done: Arc<Vec<AtomicUsize>> = Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (target, writing, done) = (target.clone(), writing.clone(), done.clone());
            std::thread::spawn(move || -> Result<(), String> {
                while writing.load(Ordering::Relaxed) {
                    let data = if r == 0 {
                        // Small reads, so that a version spans many of them.
                        let mut f =
                            std::fs::File::open(&target).map_err(|e| format!("open: {e}"))?;
                        let (mut data, mut buf) = (Vec::new(), [0u8; 1000]);
                        loop {
                            let n = f.read(&mut buf).map_err(|e| format!("read: {e}"))?;
                            if n == 0 {
                                break data;
                            }
                            data.extend_from_slice(&buf[..n]);
                        }
                    } else {
                        std::fs::read(&target).map_err(|e| format!("open and read: {e}"))?
                    };
                    if let Some(why) = torn(&data) {
                        return Err(format!("reader {r}: {why}"));
                    }
                    done[r].fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    for i in 0..80usize {
        let tmp = dir.join(format!("replaced.{i}.tmp"));
        std::fs::write(
            &tmp,
            self_describing(sizes[i % sizes.len()], 1 + (i % 200) as u8),
        )
        .unwrap();
        std::fs::rename(&tmp, &target).unwrap();
        let seen: Vec<usize> = done.iter().map(|d| d.load(Ordering::Relaxed)).collect();
        let each_read = common::wait_until(Duration::from_secs(10), || {
            let finished = readers.iter().any(|r| r.is_finished());
            finished
                || done
                    .iter()
                    .zip(&seen)
                    .all(|(d, s)| d.load(Ordering::Relaxed) > *s)
        });
        assert!(each_read, "the readers stopped making progress");
        if readers.iter().any(|r| r.is_finished()) {
            break;
        }
    }
    writing.store(false, Ordering::Relaxed);
    for r in readers {
        if let Err(e) = r.join().unwrap() {
            panic!("{e}\n{}", common::tail(&m.log(), 40));
        }
    }
    assert_eq!(torn(&std::fs::read(&target).unwrap()), None);
}

/// Carbon 4.4 keeps properties, tags, comments and ratings by REG_VERSION (registry.xml's
/// `staticConfiguration` versioning, on by default there). A write through the mount makes a
/// new version, as Carbon's update does, and carries them to it as Carbon does: a Carbon node
/// reading the resource afterwards still sees its lifecycle state, tags, comments and rating.
/// Checked for a small write and for one over the servers' 4 MiB piece (the general path).
#[test]
fn versioned_properties_tags_comments_and_ratings_follow_each_write() {
    let m = Mounted::new();
    let f = m.p("_system/governance/svc.wsdl");
    std::fs::write(&f, "<v1/>").unwrap();
    let version = || -> String {
        let rows = m.query(
            true,
            "SELECT r.REG_VERSION FROM REG_RESOURCE r JOIN REG_PATH p \
             ON p.REG_PATH_ID = r.REG_PATH_ID AND p.REG_TENANT_ID = r.REG_TENANT_ID \
             WHERE p.REG_PATH_VALUE = '/_system/governance' AND r.REG_NAME = 'svc.wsdl'",
        );
        assert_eq!(rows.len(), 1, "one live row: {rows:?}");
        rows[0][0].clone()
    };
    let v1 = version();
    // What Carbon 4.4's DAOs insert for a property, a tag, a comment and a rating.
    m.execute(
        true,
        &format!(
            "INSERT INTO REG_PROPERTY (REG_NAME, REG_VALUE, REG_TENANT_ID) \
             VALUES ('registry.lifecycle.state', 'Testing', -1234); \
             INSERT INTO REG_RESOURCE_PROPERTY (REG_PROPERTY_ID, REG_VERSION, REG_TENANT_ID) \
             SELECT MAX(REG_ID), {v1}, -1234 FROM REG_PROPERTY; \
             INSERT INTO REG_TAG (REG_TAG_NAME, REG_USER_ID, REG_TAGGED_TIME, REG_TENANT_ID) \
             VALUES ('soap', 'admin', CURRENT_TIMESTAMP, -1234); \
             INSERT INTO REG_RESOURCE_TAG (REG_TAG_ID, REG_VERSION, REG_TENANT_ID) \
             SELECT MAX(REG_ID), {v1}, -1234 FROM REG_TAG; \
             INSERT INTO REG_COMMENT (REG_COMMENT_TEXT, REG_USER_ID, REG_COMMENTED_TIME, \
             REG_TENANT_ID) VALUES ('reviewed', 'admin', CURRENT_TIMESTAMP, -1234); \
             INSERT INTO REG_RESOURCE_COMMENT (REG_COMMENT_ID, REG_VERSION, REG_TENANT_ID) \
             SELECT MAX(REG_ID), {v1}, -1234 FROM REG_COMMENT; \
             INSERT INTO REG_RATING (REG_RATING, REG_USER_ID, REG_RATED_TIME, REG_TENANT_ID) \
             VALUES (4, 'admin', CURRENT_TIMESTAMP, -1234); \
             INSERT INTO REG_RESOURCE_RATING (REG_RATING_ID, REG_VERSION, REG_TENANT_ID) \
             SELECT MAX(REG_ID), {v1}, -1234 FROM REG_RATING;"
        ),
    );
    let metadata = |v: &str| -> Vec<Vec<String>> {
        m.query(
            true,
            &format!(
                "SELECT 'property', p.REG_NAME, p.REG_VALUE FROM REG_PROPERTY p \
                 JOIN REG_RESOURCE_PROPERTY x ON x.REG_PROPERTY_ID = p.REG_ID \
                 AND x.REG_TENANT_ID = p.REG_TENANT_ID WHERE x.REG_VERSION = {v} \
                 UNION ALL SELECT 'tag', t.REG_TAG_NAME, t.REG_USER_ID FROM REG_TAG t \
                 JOIN REG_RESOURCE_TAG x ON x.REG_TAG_ID = t.REG_ID \
                 AND x.REG_TENANT_ID = t.REG_TENANT_ID WHERE x.REG_VERSION = {v} \
                 UNION ALL SELECT 'comment', c.REG_COMMENT_TEXT, c.REG_USER_ID FROM REG_COMMENT c \
                 JOIN REG_RESOURCE_COMMENT x ON x.REG_COMMENT_ID = c.REG_ID \
                 AND x.REG_TENANT_ID = c.REG_TENANT_ID WHERE x.REG_VERSION = {v} \
                 UNION ALL SELECT 'rating', CAST(r.REG_RATING AS CHAR(8)), r.REG_USER_ID \
                 FROM REG_RATING r JOIN REG_RESOURCE_RATING x ON x.REG_RATING_ID = r.REG_ID \
                 AND x.REG_TENANT_ID = r.REG_TENANT_ID WHERE x.REG_VERSION = {v} \
                 ORDER BY 1"
            ),
        )
    };
    let expected = metadata(&v1);
    assert_eq!(expected.len(), 4, "{expected:?}");
    let mut last = v1;
    for (what, content) in [
        ("a small write", b"<v2/>".to_vec()),
        ("a 5 MiB write", vec![b'x'; 5 << 20]),
    ] {
        std::fs::write(&f, &content).unwrap();
        let v = version();
        assert_ne!(v, last, "{what} made a new version");
        assert_eq!(
            metadata(&v),
            expected,
            "{what} carried the versioned metadata"
        );
        assert_eq!(
            metadata(&last),
            expected,
            "{what} left the old version's rows"
        );
        last = v;
    }
    assert_eq!(std::fs::read(&f).unwrap().len(), 5 << 20);
}

/// With Carbon's `versionResourcesOnChange` (`version_resources_on_change = true`), nothing a
/// write, a rename over a file or an unlink replaces is lost: each old content is archived as a
/// version the way Carbon archives it (REG_CONTENT_HISTORY, REG_RESOURCE_HISTORY, and a
/// REG_SNAPSHOT row whose REG_RESOURCE_VIDS is the version as 8 big-endian bytes), so Carbon
/// lists it as `a.xml;version:N`. Directories are not archived, as in Carbon.
#[test]
fn with_version_resources_on_change_nothing_overwritten_is_lost() {
    use common::servers::{Kind, backend};
    let dir = common::open_tempdir();
    let cfg = common::config_with(dir.path(), "version_resources_on_change = true");
    let m = Mounted::with_data(dir, cfg, &[]);
    let gov = m.p("_system/governance");
    let f = gov.join("a.xml");
    std::fs::write(&f, "one").unwrap();
    std::fs::write(&f, "two").unwrap();
    m.sh(&gov, "sed -i s/two/three/ a.xml && mkdir d && rmdir d");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "three");
    std::fs::remove_file(&f).unwrap();

    let hex = |col: &str| match backend() {
        None => format!("hex({col})"),
        Some(Kind::Postgres) => format!("upper(encode({col}, 'hex'))"),
        Some(Kind::MariaDb) => format!("HEX({col})"),
    };
    let where_a = "REG_PATH_ID = (SELECT REG_PATH_ID FROM REG_PATH \
                   WHERE REG_PATH_VALUE = '/_system/governance' AND REG_TENANT_ID = -1234)";
    let history = m.query(
        true,
        &format!(
            "SELECT h.REG_VERSION, {} FROM REG_RESOURCE_HISTORY h JOIN REG_CONTENT_HISTORY c \
             ON c.REG_CONTENT_ID = h.REG_CONTENT_ID AND c.REG_TENANT_ID = h.REG_TENANT_ID \
             WHERE h.{where_a} AND h.REG_NAME = 'a.xml' ORDER BY h.REG_VERSION",
            hex("c.REG_CONTENT_DATA")
        ),
    );
    let contents: Vec<&str> = history.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        contents,
        ["6F6E65", "74776F", "7468726565"],
        "one, two and three archived in order: {history:?}"
    );
    let snapshots = m.query(
        true,
        &format!(
            "SELECT {} FROM REG_SNAPSHOT WHERE {where_a} AND REG_RESOURCE_NAME = 'a.xml' \
             ORDER BY REG_SNAPSHOT_ID",
            hex("REG_RESOURCE_VIDS")
        ),
    );
    let versions: Vec<String> = history
        .iter()
        .map(|r| format!("{:016X}", r[0].parse::<i64>().unwrap()))
        .collect();
    assert_eq!(
        snapshots.into_iter().flatten().collect::<Vec<_>>(),
        versions,
        "one snapshot per archived version, naming it"
    );
    let collections = m.query(
        true,
        "SELECT COUNT(*) FROM REG_RESOURCE_HISTORY WHERE REG_NAME IS NULL",
    );
    assert_eq!(collections, [["0"]], "a directory is not archived");
    let live = m.query(
        true,
        &format!("SELECT COUNT(*) FROM REG_RESOURCE WHERE {where_a} AND REG_NAME = 'a.xml'"),
    );
    assert_eq!(live, [["0"]], "the unlink still removed the live row");

    // Each version reads back under WSO2's own path syntax, after the file itself is gone;
    // versions are read-only and never listed.
    let ids = m.query(
        true,
        &format!(
            "SELECT REG_SNAPSHOT_ID FROM REG_SNAPSHOT WHERE {where_a} \
             AND REG_RESOURCE_NAME = 'a.xml' ORDER BY REG_SNAPSHOT_ID"
        ),
    );
    let read: Vec<String> = ids
        .iter()
        .map(|id| std::fs::read_to_string(gov.join(format!("a.xml;version:{}", id[0]))).unwrap())
        .collect();
    assert_eq!(read, ["one", "two", "three"]);
    let v1 = gov.join(format!("a.xml;version:{}", ids[0][0]));
    let md = std::fs::metadata(&v1).unwrap();
    assert_eq!((md.len(), md.permissions().mode() & 0o7777), (3, 0o444));
    assert_eq!(
        errno_of(std::fs::OpenOptions::new().append(true).open(&v1)),
        libc::EROFS
    );
    assert_eq!(errno_of(std::fs::remove_file(&v1)), libc::EROFS);
    assert_eq!(errno_of(std::fs::rename(&v1, gov.join("x"))), libc::EROFS);
    assert_eq!(
        errno_of(std::fs::metadata(gov.join("a.xml;version:999999"))),
        libc::ENOENT
    );
    assert_eq!(
        errno_of(std::fs::metadata(gov.join("b.xml;version:1"))),
        libc::ENOENT
    );
    assert!(
        std::fs::read_dir(&gov).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(';')),
        "versions are not listed"
    );
}

/// A save by rename (sed -i here; editors, rsync and Python's os.replace work the same way)
/// replaces a resource with a temporary file that has no registry metadata of its own: the
/// resource keeps its UUID, creator, creation time, description, media type and its
/// properties and tags, path-keyed (Carbon 4.5 and later) or version-keyed (Carbon 4.4),
/// with the new content. A moved resource that has metadata of its own keeps its own.
#[test]
fn a_save_by_rename_keeps_the_resources_registry_identity() {
    let m = Mounted::new();
    let gov = m.p("_system/governance");
    std::fs::write(gov.join("svc.wsdl"), "<old/>").unwrap();
    std::fs::write(gov.join("other.xml"), "<other/>").unwrap();
    let gov_id = "(SELECT REG_PATH_ID FROM REG_PATH WHERE REG_PATH_VALUE = '/_system/governance' \
                  AND REG_TENANT_ID = -1234)";
    let identity = |name: &str| -> Vec<String> {
        let rows = m.query(
            true,
            &format!(
                "SELECT REG_UUID, REG_CREATOR, REG_DESCRIPTION, REG_MEDIA_TYPE, REG_VERSION \
                 FROM REG_RESOURCE WHERE REG_PATH_ID = {gov_id} AND REG_NAME = '{name}'"
            ),
        );
        assert_eq!(rows.len(), 1, "{name}: {rows:?}");
        rows[0].clone()
    };
    // As Carbon would have left them: a description, a creator, a path-keyed property and
    // tag, and a version-keyed property.
    let v = identity("svc.wsdl")[4].clone();
    m.execute(
        true,
        &format!(
            "UPDATE REG_RESOURCE SET REG_DESCRIPTION = 'echo service', REG_CREATOR = 'carbon' \
             WHERE REG_VERSION = {v}; \
             INSERT INTO REG_PROPERTY (REG_NAME, REG_VALUE, REG_TENANT_ID) \
             VALUES ('owner', 'team-a', -1234); \
             INSERT INTO REG_RESOURCE_PROPERTY (REG_PROPERTY_ID, REG_PATH_ID, \
             REG_RESOURCE_NAME, REG_TENANT_ID) SELECT MAX(REG_ID), {gov_id}, 'svc.wsdl', -1234 \
             FROM REG_PROPERTY; \
             INSERT INTO REG_TAG (REG_TAG_NAME, REG_USER_ID, REG_TAGGED_TIME, REG_TENANT_ID) \
             VALUES ('soap', 'admin', CURRENT_TIMESTAMP, -1234); \
             INSERT INTO REG_RESOURCE_TAG (REG_TAG_ID, REG_PATH_ID, REG_RESOURCE_NAME, \
             REG_TENANT_ID) SELECT MAX(REG_ID), {gov_id}, 'svc.wsdl', -1234 FROM REG_TAG; \
             INSERT INTO REG_PROPERTY (REG_NAME, REG_VALUE, REG_TENANT_ID) \
             VALUES ('registry.lifecycle.state', 'Testing', -1234); \
             INSERT INTO REG_RESOURCE_PROPERTY (REG_PROPERTY_ID, REG_VERSION, REG_TENANT_ID) \
             SELECT MAX(REG_ID), {v}, -1234 FROM REG_PROPERTY;"
        ),
    );
    let metadata = |name: &str| -> Vec<Vec<String>> {
        let v = identity(name)[4].clone();
        m.query(
            true,
            &format!(
                "SELECT p.REG_NAME, p.REG_VALUE FROM REG_PROPERTY p JOIN REG_RESOURCE_PROPERTY x \
                 ON x.REG_PROPERTY_ID = p.REG_ID AND x.REG_TENANT_ID = p.REG_TENANT_ID \
                 WHERE (x.REG_PATH_ID = {gov_id} AND x.REG_RESOURCE_NAME = '{name}') \
                 OR x.REG_VERSION = {v} \
                 UNION ALL SELECT 'tag', t.REG_TAG_NAME FROM REG_TAG t JOIN REG_RESOURCE_TAG x \
                 ON x.REG_TAG_ID = t.REG_ID AND x.REG_TENANT_ID = t.REG_TENANT_ID \
                 WHERE x.REG_PATH_ID = {gov_id} AND x.REG_RESOURCE_NAME = '{name}' ORDER BY 1"
            ),
        )
    };
    let before = identity("svc.wsdl");
    let meta = metadata("svc.wsdl");
    assert_eq!(meta.len(), 3, "{meta:?}");
    m.sh(&gov, "chmod 640 svc.wsdl && sed -i s/old/new/ svc.wsdl");
    assert_eq!(
        std::fs::read_to_string(gov.join("svc.wsdl")).unwrap(),
        "<new/>"
    );
    let after = identity("svc.wsdl");
    assert_ne!(after[4], before[4], "a new version");
    assert_eq!(
        after[..4],
        before[..4],
        "uuid, creator, description, media type kept"
    );
    assert_eq!(metadata("svc.wsdl"), meta, "properties and tags kept");
    let md = std::fs::metadata(gov.join("svc.wsdl")).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o640, "sed kept the mode");
    // Moving a resource that has metadata of its own over another: its own identity goes
    // with it, and the replaced one's goes.
    std::fs::rename(gov.join("svc.wsdl"), gov.join("other.xml")).unwrap();
    assert_eq!(identity("other.xml")[..4], before[..4]);
    assert_eq!(metadata("other.xml"), meta);
}

/// `getxattr`, `setxattr` as the C library calls them, for what the tools do not show:
/// errno, the size query, `XATTR_CREATE`/`XATTR_REPLACE`.
fn get_xattr(p: &Path, name: &str, size: usize) -> Result<Vec<u8>, i32> {
    let (path, name) = (cstr(p), CString::new(name).unwrap());
    let mut buf = vec![0u8; size];
    let ptr = if size == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    // SAFETY: the buffer is `size` bytes long (or null with size 0); both strings are NUL-ended.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), ptr, size) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    buf.truncate(if size == 0 { 0 } else { n as usize });
    if size == 0 {
        buf = vec![0; n as usize];
    }
    Ok(buf)
}

fn set_xattr(p: &Path, name: &str, value: &[u8], flags: i32) -> i32 {
    let (path, name) = (cstr(p), CString::new(name).unwrap());
    // SAFETY: the value is `value.len()` bytes long; both strings are NUL-ended.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if r == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

/// Registry properties are extended attributes: `setfattr`/`getfattr` round-trip one (and a
/// multi-valued one, as lines) on a file and on a directory, the rows are Carbon's
/// (REG_PROPERTY mapped by path in REG_RESOURCE_PROPERTY, an UPDATE in REG_LOG, content and
/// version unchanged), a property Carbon's SQL wrote shows, the registry metadata reads under
/// `user.regfs.` and is read-only, the xattr protocol's size query, ERANGE and flags hold, and
/// Carbon's widths and the other namespaces are refused.
#[test]
fn registry_properties_are_extended_attributes() {
    // Off by default: the kernel is told once and asks nothing more (ls -l stays fast).
    let plain = Mounted::new();
    std::fs::write(plain.p("_system/local/f"), "x").unwrap();
    assert_eq!(
        set_xattr(&plain.p("_system/local/f"), "user.a", b"v", 0),
        libc::EOPNOTSUPP
    );
    assert_eq!(
        get_xattr(&plain.p("_system/local/f"), "user.a", 16),
        Err(libc::EOPNOTSUPP)
    );
    drop(plain);

    let m = Mounted::with_args(&["-o", "xattr"]);
    let conf = m.p("_system/config");
    std::fs::write(conf.join("app.xml"), "<a/>").unwrap();
    std::fs::create_dir(conf.join("d")).unwrap();
    let version = |m: &Mounted| {
        m.query(
            true,
            "SELECT r.REG_VERSION, r.REG_UUID FROM REG_RESOURCE r JOIN REG_PATH p \
             ON p.REG_PATH_ID = r.REG_PATH_ID WHERE p.REG_PATH_VALUE = '/_system/config' \
             AND r.REG_NAME = 'app.xml'",
        )
    };
    let before = version(&m);
    assert_eq!(
        m.sh(
            &conf,
            "setfattr -n user.lifecycle -v Development app.xml && \
             setfattr -n user.endpoints -v \"$(printf 'http://a\\nhttp://b')\" app.xml && \
             setfattr -n user.owner -v ops d && \
             getfattr --only-values -n user.lifecycle app.xml"
        ),
        "Development"
    );
    let dump = m.sh(&conf, "getfattr -d app.xml");
    assert!(dump.contains("user.lifecycle=\"Development\""), "{dump}");
    assert!(
        dump.contains("user.endpoints=\"http://a\\012http://b\""),
        "{dump}"
    );
    assert!(
        !dump.contains("user.regfs."),
        "the metadata is read by name only: {dump}"
    );
    let meta = |key: &str| {
        m.sh(
            &conf,
            &format!("getfattr --only-values -n user.regfs.{key} app.xml"),
        )
    };
    assert_eq!(meta("media-type"), "application/xml");
    assert_eq!(meta("uuid"), before[0][1]);
    assert_eq!(meta("version"), before[0][0]);
    assert_eq!(meta("creator"), "admin");
    assert_eq!(m.sh(&conf, "getfattr --only-values -n user.owner d"), "ops");

    // Carbon's rows: by path and name, one REG_PROPERTY row per value.
    let rows = m.query(
        true,
        "SELECT pr.REG_NAME, pr.REG_VALUE FROM REG_PROPERTY pr JOIN REG_RESOURCE_PROPERTY rp \
         ON rp.REG_PROPERTY_ID = pr.REG_ID AND rp.REG_TENANT_ID = pr.REG_TENANT_ID \
         JOIN REG_PATH p ON p.REG_PATH_ID = rp.REG_PATH_ID AND p.REG_TENANT_ID = rp.REG_TENANT_ID \
         WHERE p.REG_PATH_VALUE = '/_system/config' AND rp.REG_RESOURCE_NAME = 'app.xml' \
         ORDER BY pr.REG_ID",
    );
    assert_eq!(
        rows,
        [
            ["lifecycle", "Development"],
            ["endpoints", "http://a"],
            ["endpoints", "http://b"]
        ]
    );
    let dir_rows = m.query(
        true,
        "SELECT pr.REG_NAME, pr.REG_VALUE FROM REG_PROPERTY pr JOIN REG_RESOURCE_PROPERTY rp \
         ON rp.REG_PROPERTY_ID = pr.REG_ID JOIN REG_PATH p ON p.REG_PATH_ID = rp.REG_PATH_ID \
         WHERE p.REG_PATH_VALUE = '/_system/config/d' AND rp.REG_RESOURCE_NAME IS NULL",
    );
    assert_eq!(dir_rows, [["owner", "ops"]]);
    assert_eq!(
        m.query(
            true,
            "SELECT COUNT(*) FROM REG_LOG WHERE REG_PATH = '/_system/config/app.xml' \
             AND REG_ACTION = 1",
        ),
        [["2"]],
        "one UPDATE per property change"
    );
    assert_eq!(version(&m), before, "the version stays");
    assert_eq!(
        std::fs::read_to_string(conf.join("app.xml")).unwrap(),
        "<a/>"
    );

    // Replaced, then removed: no REG_PROPERTY row is left behind.
    m.sh(
        &conf,
        "setfattr -n user.lifecycle -v Testing app.xml && setfattr -x user.lifecycle app.xml",
    );
    let out = common::sh_output(&conf, "getfattr -n user.lifecycle app.xml");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such attribute"));
    assert_eq!(
        m.query(
            true,
            "SELECT COUNT(*) FROM REG_PROPERTY WHERE REG_NAME = 'lifecycle'"
        ),
        [["0"]]
    );

    // A property Carbon's own SQL wrote (JDBCResourceDAO.addProperties).
    m.execute(
        true,
        "INSERT INTO REG_PROPERTY (REG_NAME, REG_VALUE, REG_TENANT_ID) \
         VALUES ('registry.carbon', 'from carbon', -1234)",
    );
    m.execute(
        true,
        "INSERT INTO REG_RESOURCE_PROPERTY (REG_PROPERTY_ID, REG_PATH_ID, REG_RESOURCE_NAME, \
         REG_TENANT_ID) SELECT MAX(pr.REG_ID), MAX(p.REG_PATH_ID), 'app.xml', -1234 \
         FROM REG_PROPERTY pr, REG_PATH p WHERE pr.REG_NAME = 'registry.carbon' \
         AND p.REG_PATH_VALUE = '/_system/config'",
    );
    let f = conf.join("app.xml");
    assert!(
        common::wait_until(Duration::from_secs(5), || get_xattr(
            &f,
            "user.registry.carbon",
            64
        ) == Ok(b"from carbon".to_vec())),
        "{:?}",
        get_xattr(&f, "user.registry.carbon", 64)
    );

    // The media type and description are writable fields of the row; tags, comments and
    // ratings Carbon's console wrote read too.
    m.sh(
        &conf,
        "setfattr -n user.regfs.description -v 'The app' app.xml && \
         setfattr -n user.regfs.media-type -v text/plain app.xml",
    );
    assert_eq!(
        m.query(
            true,
            "SELECT r.REG_DESCRIPTION, r.REG_MEDIA_TYPE FROM REG_RESOURCE r JOIN REG_PATH p \
             ON p.REG_PATH_ID = r.REG_PATH_ID WHERE p.REG_PATH_VALUE = '/_system/config' \
             AND r.REG_NAME = 'app.xml'",
        ),
        [["The app", "text/plain"]]
    );
    assert_eq!(meta("media-type"), "text/plain");
    assert_eq!(version(&m), before, "fields change in place");
    for (entity, mapping, fk, cols, values) in [
        (
            "REG_TAG",
            "REG_RESOURCE_TAG",
            "REG_TAG_ID",
            "REG_TAG_NAME, REG_USER_ID, REG_TAGGED_TIME",
            "'prod', 'alice'",
        ),
        (
            "REG_COMMENT",
            "REG_RESOURCE_COMMENT",
            "REG_COMMENT_ID",
            "REG_COMMENT_TEXT, REG_USER_ID, REG_COMMENTED_TIME",
            "'looks good', 'bob'",
        ),
        (
            "REG_RATING",
            "REG_RESOURCE_RATING",
            "REG_RATING_ID",
            "REG_RATING, REG_USER_ID, REG_RATED_TIME",
            "4, 'carol'",
        ),
    ] {
        m.execute(
            true,
            &format!(
                "INSERT INTO {entity} ({cols}, REG_TENANT_ID) VALUES ({values}, CURRENT_TIMESTAMP, -1234)"
            ),
        );
        m.execute(
            true,
            &format!(
                "INSERT INTO {mapping} ({fk}, REG_PATH_ID, REG_RESOURCE_NAME, REG_TENANT_ID) \
                 SELECT MAX(x.REG_ID), MAX(p.REG_PATH_ID), 'app.xml', -1234 FROM {entity} x, REG_PATH p \
                 WHERE p.REG_PATH_VALUE = '/_system/config'"
            ),
        );
    }
    m.execute(
        true,
        "INSERT INTO REG_ASSOCIATION (REG_SOURCEPATH, REG_TARGETPATH, REG_ASSOCIATION_TYPE, \
         REG_TENANT_ID) VALUES ('/_system/config/app.xml', '/_system/governance/svc.wsdl', \
         'depends', -1234)",
    );
    assert_eq!(meta("associations"), "depends /_system/governance/svc.wsdl");
    assert_eq!(meta("tags"), "prod");
    assert_eq!(meta("comments"), "bob: looks good");
    assert_eq!(meta("rating"), "4.00 (1 ratings)");
    assert_eq!(set_xattr(&f, "user.regfs.tags", b"x", 0), libc::EPERM);
    assert_eq!(
        set_xattr(&f, "user.regfs.media-type", b"application/vnd.wso2-link", 0),
        libc::EPERM
    );

    // The xattr protocol.
    assert_eq!(get_xattr(&f, "user.endpoints", 0).map(|v| v.len()), Ok(17));
    assert_eq!(get_xattr(&f, "user.endpoints", 4), Err(libc::ERANGE));
    assert_eq!(
        set_xattr(&f, "user.endpoints", b"x", libc::XATTR_CREATE),
        libc::EEXIST
    );
    assert_eq!(
        set_xattr(&f, "user.nothing", b"x", libc::XATTR_REPLACE),
        libc::ENODATA
    );
    assert_eq!(set_xattr(&f, "user.fresh", b"x", libc::XATTR_CREATE), 0);
    assert_eq!(get_xattr(&f, "security.capability", 64), Err(libc::ENODATA));
    assert_eq!(set_xattr(&f, "trusted.x", b"x", 0), libc::EOPNOTSUPP);
    assert_eq!(set_xattr(&f, "user.regfs.uuid", b"x", 0), libc::EPERM);
    assert_eq!(
        set_xattr(&f, &format!("user.{}", "n".repeat(101)), b"x", 0),
        libc::ERANGE
    );
    assert_eq!(
        set_xattr(&f, "user.long", "v".repeat(1001).as_bytes(), 0),
        libc::E2BIG
    );
    assert_eq!(
        m.query(
            true,
            "SELECT COUNT(*) FROM REG_PROPERTY WHERE REG_NAME = 'long'"
        ),
        [["0"]],
        "a refused value changes nothing"
    );
    let names = m.sh(&conf, "getfattr -m - app.xml");
    for n in ["user.endpoints", "user.fresh", "user.registry.carbon"] {
        assert!(names.lines().any(|l| l == n), "{n} in {names}");
    }

    // A save by rename (sed -i writes a new file and renames it over) keeps the resource,
    // its UUID and its properties, as an overwrite would.
    m.sh(&conf, "sed -i 's/a/b/' app.xml");
    assert_eq!(
        std::fs::read_to_string(conf.join("app.xml")).unwrap(),
        "<b/>"
    );
    assert_eq!(meta("uuid"), before[0][1]);
    assert_eq!(get_xattr(&f, "user.fresh", 16), Ok(b"x".to_vec()));
    m.sh(&conf, "sed -i 's/b/a/' app.xml");

    // Copies carry the properties: `mv` between databases, `cp -a`.
    m.sh(
        &conf,
        "cp -a app.xml copy.xml && mv copy.xml ../local/moved.xml",
    );
    let moved = m.p("_system/local/moved.xml");
    assert_eq!(
        get_xattr(&moved, "user.endpoints", 64),
        Ok(b"http://a\nhttp://b".to_vec())
    );
    assert_eq!(std::fs::read_to_string(&moved).unwrap(), "<a/>");

    // rsync -X between two regfs paths, and across databases: the properties go along, a
    // directory's too; rsync writes a temp file and renames it into place.
    m.sh(
        &conf,
        "mkdir -p tree/sub && cp -a app.xml tree/sub/ && setfattr -n user.team -v ops tree && \
         rsync -aX tree/ ../governance/synced/ && rsync -aX tree/ ../local/synced/",
    );
    for copy in ["_system/governance/synced", "_system/local/synced"] {
        let root = m.p(copy);
        assert_eq!(
            get_xattr(&root, "user.team", 16),
            Ok(b"ops".to_vec()),
            "{copy}"
        );
        assert_eq!(
            get_xattr(&root.join("sub/app.xml"), "user.endpoints", 64),
            Ok(b"http://a\nhttp://b".to_vec()),
            "{copy}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("sub/app.xml")).unwrap(),
            "<a/>"
        );
    }
}
