//! Times the SQLite store's write and read of one large resource, with peak memory (a profile
//! aid for the chunked blob I/O). `cargo run --release --example large_speed [MiB]`
use std::time::Instant;

use regfs::content::{Content, SpoolPolicy};
use regfs::store::sqlite::SqliteStore;
use regfs::store::{Kind, NewEntry, Store, StoreOptions};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("t.db"), StoreOptions::default())
        .await
        .unwrap();
    s.init().await.unwrap();
    let new = NewEntry {
        kind: Kind::File,
        perm: 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
        content: Vec::new(),
    };
    s.create("/big", new, "u").await.unwrap();
    let policy = SpoolPolicy::default();
    let mut data = Content::default();
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for i in 0..mib {
        data.write_at(&policy, (i << 20) as u64, &chunk).unwrap();
    }
    println!("content ready: peak {} MiB", peak_rss_kib() >> 10);
    for round in 0..2 {
        let t = Instant::now();
        s.write("/big", &data, "u").await.unwrap();
        println!(
            "write {round}: {:?}, peak {} MiB",
            t.elapsed(),
            peak_rss_kib() >> 10
        );
    }
    let t = Instant::now();
    let (_, back) = s.read_content("/big", &policy).await.unwrap();
    println!(
        "read: {:?} ({} bytes), peak {} MiB",
        t.elapsed(),
        back.len(),
        peak_rss_kib() >> 10
    );
}
