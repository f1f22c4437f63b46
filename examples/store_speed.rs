//! Times the SQLite store's basic operations without FUSE (a quick profile aid).
//! `cargo run --release --example store_speed`
use std::time::Instant;

use regfs::store::sqlite::SqliteStore;
use regfs::store::{Kind, NewEntry, Store, StoreOptions};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let readers: u32 = std::env::var("READERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let s = SqliteStore::open(
        &dir.path().join("t.db"),
        StoreOptions {
            max_connections: readers,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    s.init().await.unwrap();
    let n = 2000;
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(s.file()),
    )
    .await
    .unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let _: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    }
    println!("SELECT 1: {:?}/op", t.elapsed() / n);
    let mut conn = pool.acquire().await.unwrap();
    let t = Instant::now();
    for _ in 0..n {
        let _: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    }
    println!("SELECT 1 on one connection: {:?}/op", t.elapsed() / n);
    drop(conn);
    let new = |kind| NewEntry {
        kind,
        perm: 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
        content: vec![],
    };
    s.create("/d", new(Kind::Directory), "u").await.unwrap();
    let t = Instant::now();
    for i in 0..n {
        s.stat(&format!("/d/f{i}")).await.unwrap();
    }
    println!("stat (miss): {:?}/op", t.elapsed() / n);
    let t = Instant::now();
    for i in 0..n {
        s.create(&format!("/d/f{i}"), new(Kind::File), "u")
            .await
            .unwrap();
    }
    println!("create: {:?}/op", t.elapsed() / n);
    let data = regfs::content::Content::from(vec![7u8; 2048]);
    let t = Instant::now();
    for i in 0..n {
        s.write(&format!("/d/f{i}"), &data, "u").await.unwrap();
    }
    println!("write: {:?}/op", t.elapsed() / n);
    let t = Instant::now();
    for i in 0..n {
        s.stat(&format!("/d/f{i}")).await.unwrap();
    }
    println!("stat (hit): {:?}/op", t.elapsed() / n);
    let t = Instant::now();
    for i in 0..n {
        s.read(&format!("/d/f{i}")).await.unwrap();
    }
    println!("read: {:?}/op", t.elapsed() / n);
    let t = Instant::now();
    let mut after: Option<String> = None;
    let mut total = 0;
    loop {
        let page = s.list("/d", after.as_deref(), 512).await.unwrap();
        if page.is_empty() {
            break;
        }
        total += page.len();
        after = Some(page.last().unwrap().name.clone());
    }
    println!("list {total}: {:?}", t.elapsed());
    let t = Instant::now();
    for i in 0..n {
        s.remove(&format!("/d/f{i}"), false, "u").await.unwrap();
    }
    println!("remove: {:?}/op", t.elapsed() / n);
}
