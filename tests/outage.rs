//! A mounted registry whose database server stops answering, then goes down, then comes back:
//! every operation gets EIO within the configured bound (never a hang) with a log line saying
//! why, and the mount works again by itself once the server is back.

mod common;

use std::time::{Duration, Instant};

use common::Mounted;
use common::servers::{Kind, Server};

fn outage_on_a_mount(kind: Kind) {
    let server = Server::start(kind);
    let dir = tempfile::Builder::new()
        .prefix("regfs-test-")
        .tempdir()
        .unwrap();
    let bound = Duration::from_secs(2);
    let cfg = common::server_config_on(dir.path(), &server, bound.as_secs());
    let m = Mounted::with_data(dir, cfg, &[]);
    let f = m.p("_system/config/app.xml");
    std::fs::write(&f, "<a/>").unwrap();

    // The server stops answering (SIGSTOP): a read that must reach it fails within the bound.
    server.pause();
    let start = Instant::now();
    // A name the kernel has not cached, so the lookup reaches regfs and the database.
    let r = std::fs::read_to_string(m.p("_system/config/other.xml"));
    let took = start.elapsed();
    server.resume();
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EIO));
    assert!(took < bound * 4, "hung for {took:?}");
    assert!(
        m.log().contains("did not answer within"),
        "{}",
        common::tail(&m.log(), 20)
    );

    // Back: the mount works again without a remount.
    assert!(common::wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&f).is_ok_and(|s| s == "<a/>")
    }));

    // The server goes down hard: writes fail within the bound and change nothing.
    server.stop(true);
    let start = Instant::now();
    let r = std::fs::write(&f, "<b/>");
    assert!(r.is_err(), "a write with the database down succeeded");
    assert!(
        start.elapsed() < bound * 4,
        "hung for {:?}",
        start.elapsed()
    );
    assert!(
        m.log().contains("database unreachable") || m.log().contains("did not answer"),
        "{}",
        common::tail(&m.log(), 20)
    );
    // `regfs status` says so, and fails.
    let mnt = m.mnt.to_string_lossy().into_owned();
    let out = common::run_regfs(["status", mnt.as_str()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("{mnt}: NOT HEALTHY")), "{text}");
    assert!(text.contains("NOT REACHABLE"), "{text}");
    assert!(text.contains("problem: database shared ("), "{text}");
    assert!(text.contains(") does not answer: "), "{text}");
    server.run();
    assert!(
        common::wait_until(Duration::from_secs(30), || std::fs::write(&f, "<c/>")
            .is_ok()),
        "the mount did not recover:\n{}",
        common::tail(&m.log(), 20)
    );
    let r = std::fs::read_to_string(&f);
    assert!(
        r.as_deref().is_ok_and(|s| s == "<c/>"),
        "read after the recovery: {r:?}\n{}",
        common::tail(&m.log(), 30)
    );
    // Healthy again once the change feed has caught up too.
    let mut text = String::new();
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            let out = common::run_regfs(["status", mnt.as_str()]);
            text = String::from_utf8_lossy(&out.stdout).into_owned();
            out.status.success()
        }),
        "{text}"
    );
    assert!(text.contains(&format!("{mnt}: healthy")), "{text}");
}

#[test]
fn postgres_outage_on_a_mount_is_eio_then_recovers() {
    outage_on_a_mount(Kind::Postgres);
}

#[test]
fn mariadb_outage_on_a_mount_is_eio_then_recovers() {
    outage_on_a_mount(Kind::MariaDb);
}
