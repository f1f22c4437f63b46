//! Files created without O_EXCL, pending until their first flush (SEMANTICS.md, "New files").
//!
//! A binary of its own with one test: a fork anywhere in the process while a pending file is
//! open (another test mounting, or running a client) closes the child's copy of the descriptor
//! at exec, and that close is a FLUSH, which inserts the file early. That is correct POSIX
//! behaviour, but it would race with the visibility this test checks.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Mounted, errno_of};

#[test]
fn a_new_file_goes_in_with_its_content_at_close() {
    // open(O_CREAT) without O_EXCL: the row goes in at the first flush, with the content, in one
    // transaction. This node sees the file at once; other nodes from its close on.
    let a = Mounted::new();
    let b = a.another_node();
    std::fs::create_dir(a.p("_system/config/pend")).unwrap();
    let at_a = |name: &str| a.p(&format!("_system/config/pend/{name}"));
    let at_b = |name: &str| b.p(&format!("_system/config/pend/{name}"));

    let mut h = std::fs::File::create(at_a("new.txt")).unwrap();
    h.write_all(b"hello").unwrap();
    assert_eq!(std::fs::metadata(at_a("new.txt")).unwrap().len(), 5);
    assert_eq!(errno_of(std::fs::metadata(at_b("new.txt"))), libc::ENOENT);
    drop(h);
    assert_eq!(std::fs::read_to_string(at_b("new.txt")).unwrap(), "hello");
    // One insert: the log has the add and no update.
    let log = a.query(
        true,
        "SELECT REG_ACTION FROM REG_LOG WHERE REG_PATH LIKE '%/pend/new.txt'",
    );
    assert_eq!(log, [["0"]], "REG_LOG actions for new.txt");

    // O_EXCL creates are lock files: the row is there before the first write.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(at_a("lock"))
        .unwrap();
    assert!(at_b("lock").exists());
    let second = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(at_b("lock"));
    assert_eq!(errno_of(second), libc::EEXIST);
    drop(lock);

    // A listing inserts the pending files it would show, with what was written so far.
    let mut listed = std::fs::File::create(at_a("listed")).unwrap();
    listed.write_all(b"one").unwrap();
    let names: Vec<String> = std::fs::read_dir(a.p("_system/config/pend"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"listed".to_string()), "{names:?}");
    assert_eq!(std::fs::read_to_string(at_b("listed")).unwrap(), "one");
    listed.write_all(b" two").unwrap();
    drop(listed);
    assert_eq!(std::fs::read_to_string(at_b("listed")).unwrap(), "one two");

    // rmdir sees a pending child; chmod and rename of a pending file work.
    std::fs::create_dir(at_a("sub")).unwrap();
    let mut child = std::fs::File::create(at_a("sub/child")).unwrap();
    assert_eq!(errno_of(std::fs::remove_dir(at_a("sub"))), libc::ENOTEMPTY);
    std::fs::set_permissions(at_a("sub/child"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(at_a("sub/child"), at_a("moved")).unwrap();
    child.write_all(b"moved along").unwrap();
    drop(child);
    assert_eq!(
        std::fs::read_to_string(at_b("moved")).unwrap(),
        "moved along"
    );
    assert_eq!(
        std::fs::metadata(at_b("moved"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    std::fs::remove_dir(at_a("sub")).unwrap();

    // A rename onto a pending file replaces it; the replaced handle's writes go nowhere.
    std::fs::write(at_a("src"), "S").unwrap();
    let mut target = std::fs::File::create(at_a("target")).unwrap();
    target.write_all(b"T").unwrap();
    std::fs::rename(at_a("src"), at_a("target")).unwrap();
    target.write_all(b"T").unwrap();
    drop(target);
    assert_eq!(std::fs::read_to_string(at_b("target")).unwrap(), "S");

    // An unlinked pending file keeps working through its handle, and is gone for everyone.
    let mut gone = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(at_a("gone"))
        .unwrap();
    gone.write_all(b"data").unwrap();
    std::fs::remove_file(at_a("gone")).unwrap();
    gone.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    gone.read_to_string(&mut s).unwrap();
    assert_eq!(s, "data");
    drop(gone);
    assert!(!at_a("gone").exists());
    assert!(!at_b("gone").exists());

    // An empty new file (`: > f`) goes in at its release, which the kernel sends just after
    // the last close returns (a flush of a handle that wrote nothing could be the shell's
    // close before it writes).
    drop(std::fs::File::create(at_a("empty")).unwrap());
    assert!(common::wait_until(Duration::from_secs(15), || {
        std::fs::metadata(at_b("empty")).is_ok_and(|m| m.len() == 0)
    }));

    // The other node takes the name while it is pending here: the insert overwrites it, as an
    // open of the existing file would have, and says so.
    let mut both = std::fs::File::create(at_a("both")).unwrap();
    both.write_all(b"from a").unwrap();
    std::fs::write(at_b("both"), "from b").unwrap();
    drop(both);
    assert_eq!(std::fs::read_to_string(at_b("both")).unwrap(), "from a");
    assert!(
        a.log()
            .contains("was created elsewhere while it was open here")
    );
}
