//! A store conformance suite: the same checks run against every [`Store`] implementation
//! (SQLite in its unit tests, PostgreSQL and MariaDB in `tests/stores.rs`). Not part of the API.

use std::collections::BTreeMap;

use crate::authz::Action;
use crate::store::*;
use crate::um::{Grantee, UmDb};

pub fn file(content: &[u8]) -> NewEntry {
    NewEntry {
        kind: Kind::File,
        perm: 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
        content: content.to_vec(),
    }
}

pub fn dir() -> NewEntry {
    NewEntry {
        kind: Kind::Directory,
        perm: 0o755,
        uid: 0,
        gid: 0,
        rdev: 0,
        content: Vec::new(),
    }
}

/// A conditional write lands only over the version it names: over another one it is
/// refused with ESTALE and changes nothing; small and large content alike (PostgreSQL's
/// one-statement write and the general path).
pub async fn conditional_writes(s: &dyn Store) {
    s.create("/cw", dir(), "u").await.unwrap();
    for (name, len) in [("small", 10usize), ("large", 5 << 20)] {
        let p = format!("/cw/{name}");
        let v1 = s.create(&p, file(b"one"), "u").await.unwrap().version;
        let two = vec![b'2'; len];
        let v2 = s
            .write_if(&p, &two.clone().into(), "u", v1)
            .await
            .unwrap()
            .version;
        assert_ne!(v1, v2);
        let e = s
            .write_if(&p, &b"stale".to_vec().into(), "u", v1)
            .await
            .unwrap_err();
        assert_eq!(e.errno(), libc::ESTALE, "{e}");
        assert_eq!(
            s.read(&p).await.unwrap(),
            two,
            "a refused write changed {p}"
        );
        assert_eq!(s.stat(&p).await.unwrap().unwrap().version, v2);
        let e = s
            .write_if("/cw/missing", &b"x".to_vec().into(), "u", v2)
            .await
            .unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT, "{e}");
    }
}

/// Content larger than a spool policy's memory limit, larger than one [`CHUNK`] and than the
/// server stores' 4 MiB piece, goes in and comes out whole: from memory and from a spool file,
/// into memory and into a spool file.
///
/// [`CHUNK`]: crate::content::CHUNK
pub async fn large_content(s: &dyn Store) {
    use crate::content::{CHUNK, Content, SpoolPolicy};
    let spool_dir = tempfile::tempdir().unwrap();
    let spooling = SpoolPolicy {
        dir: spool_dir.path().to_path_buf(),
        memory_limit: 64 << 10,
    };
    let pattern =
        |len: usize, seed: u8| -> Vec<u8> { (0..len).map(|i| (i % 251) as u8 ^ seed).collect() };
    s.create("/large", dir(), "u").await.unwrap();
    s.create("/large/f", file(b""), "u").await.unwrap();

    let in_memory = pattern(5 * CHUNK + 7, 1);
    let e = s
        .write("/large/f", &in_memory.clone().into(), "u")
        .await
        .unwrap();
    assert_eq!(e.size, in_memory.len() as u64);
    let (version, back) = s.read_content("/large/f", &spooling).await.unwrap();
    assert_eq!(version, e.version);
    assert!(
        back.is_spooled(),
        "content over the limit comes back spooled"
    );
    assert!(back.to_vec().unwrap() == in_memory, "spooled read differs");
    assert!(
        s.read("/large/f").await.unwrap() == in_memory,
        "read differs"
    );

    let expected = pattern(4 * CHUNK + CHUNK / 2, 2);
    let mut spooled = Content::default();
    for (i, piece) in expected.chunks(100_000).enumerate() {
        spooled
            .write_at(&spooling, (i * 100_000) as u64, piece)
            .unwrap();
    }
    assert!(spooled.is_spooled());
    let e = s.write("/large/f", &spooled, "u").await.unwrap();
    assert_eq!(e.size, expected.len() as u64);
    assert_eq!(s.stat("/large/f").await.unwrap().unwrap().size, e.size);
    let (_, back) = s
        .read_content("/large/f", &SpoolPolicy::in_memory())
        .await
        .unwrap();
    assert!(!back.is_spooled());
    assert!(
        back.as_slice().unwrap() == expected,
        "in-memory read differs"
    );

    // Small again: no spool, and nothing of the large value is left.
    s.write("/large/f", &b"small".to_vec().into(), "u")
        .await
        .unwrap();
    let (_, back) = s.read_content("/large/f", &spooling).await.unwrap();
    assert!(!back.is_spooled());
    assert_eq!(back.to_vec().unwrap(), b"small");
}

/// Listings page by name (byte order) across child collections and resources.
pub async fn listing_pages(s: &dyn Store) {
    s.create("/p", dir(), "u").await.unwrap();
    let mut names = Vec::new();
    for i in 0..57 {
        let name = format!("n{i:03}");
        if i % 3 == 0 {
            s.create(&format!("/p/{name}"), dir(), "u").await.unwrap();
        } else {
            s.create(&format!("/p/{name}"), file(name.as_bytes()), "u")
                .await
                .unwrap();
        }
        names.push(name);
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s.list("/p", after.as_deref(), 10).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().name.clone());
        for d in page {
            assert_eq!(
                d.entry.kind == Kind::Directory,
                d.name[1..].parse::<u32>().unwrap() % 3 == 0
            );
            if d.entry.kind == Kind::File {
                assert_eq!(d.entry.size, 4);
            }
            seen.push(d.name);
        }
    }
    assert_eq!(seen, names);
}

/// A tiny deterministic generator, so failures replay.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Dir,
    File(Vec<u8>),
}

fn children<'a>(
    model: &'a BTreeMap<String, Node>,
    dir: &'a str,
) -> impl Iterator<Item = &'a String> {
    model
        .keys()
        .filter(move |k| crate::path::parent(k) == Some(dir))
}

/// Random creates, writes, removes and renames against the store and a model; after every step
/// the store's answers (stat, list, read) match the model, and failures leave both unchanged.
pub async fn random_operations(s: &dyn Store) {
    let base = "/m";
    s.create(base, dir(), "u").await.unwrap();
    let mut model: BTreeMap<String, Node> = BTreeMap::new();
    model.insert(base.into(), Node::Dir);
    let names = ["a", "b", "c", "dd", "e.xml"];
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for step in 0..600 {
        let dirs: Vec<String> = model
            .iter()
            .filter(|(_, n)| **n == Node::Dir)
            .map(|(k, _)| k.clone())
            .collect();
        let existing: Vec<String> = model.keys().filter(|k| *k != base).cloned().collect();
        let parent = rng.pick(&dirs).clone();
        let name: &str = names[(rng.next() % names.len() as u64) as usize];
        let target = crate::path::join(&parent, name);
        let op = rng.next() % 6;
        match op {
            0 | 1 => {
                let is_dir = op == 0;
                let content = format!("{step}").into_bytes();
                let r = s
                    .create(&target, if is_dir { dir() } else { file(&content) }, "u")
                    .await;
                if model.contains_key(&target) {
                    assert_eq!(r.unwrap_err().errno(), libc::EEXIST, "step {step}");
                } else {
                    r.unwrap();
                    model.insert(
                        target.clone(),
                        if is_dir {
                            Node::Dir
                        } else {
                            Node::File(content)
                        },
                    );
                }
            }
            2 if !existing.is_empty() => {
                let p = rng.pick(&existing).clone();
                let data = format!("w{step}")
                    .repeat((rng.next() % 50) as usize)
                    .into_bytes();
                let r = s.write(&p, &data.clone().into(), "u").await;
                match model.get(&p) {
                    Some(Node::File(_)) => {
                        r.unwrap();
                        model.insert(p, Node::File(data));
                    }
                    _ => assert_eq!(r.unwrap_err().errno(), libc::EISDIR, "step {step}"),
                }
            }
            3 if !existing.is_empty() => {
                let p = rng.pick(&existing).clone();
                let is_dir = model[&p] == Node::Dir;
                let r = s.remove(&p, is_dir, "u").await;
                if is_dir && children(&model, &p).next().is_some() {
                    assert_eq!(r.unwrap_err().errno(), libc::ENOTEMPTY, "step {step}");
                } else {
                    r.unwrap();
                    model.remove(&p);
                }
            }
            4 | 5 if !existing.is_empty() => {
                let from = rng.pick(&existing).clone();
                let to = target;
                let src_dir = model[&from] == Node::Dir;
                let r = s.rename(&from, &to, RenameMode::Replace, "u").await;
                let expected = if from == to {
                    0
                } else if src_dir && crate::path::is_within(&to, &from) {
                    libc::EINVAL
                } else {
                    match model.get(&to) {
                        None => 0,
                        Some(Node::Dir) if !src_dir => libc::EISDIR,
                        Some(Node::File(_)) if src_dir => libc::ENOTDIR,
                        Some(Node::Dir) if children(&model, &to).next().is_some() => {
                            libc::ENOTEMPTY
                        }
                        Some(_) => 0,
                    }
                };
                match r {
                    Ok(_) => assert_eq!(expected, 0, "step {step}: rename {from} -> {to}"),
                    Err(e) => assert_eq!(
                        e.errno(),
                        expected,
                        "step {step}: rename {from} -> {to}: {e}"
                    ),
                }
                if expected == 0 && from != to {
                    model.remove(&to);
                    let moved: Vec<(String, Node)> = model
                        .iter()
                        .filter(|(k, _)| crate::path::is_within(k, &from))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    for (k, v) in moved {
                        model.remove(&k);
                        model.insert(format!("{to}{}", &k[from.len()..]), v);
                    }
                }
            }
            _ => {}
        }
        // Compare the whole tree every few steps.
        if step % 25 == 0 || step == 599 {
            for (p, node) in &model {
                let e = s
                    .stat(p)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("step {step}: {p} missing"));
                match node {
                    Node::Dir => {
                        assert_eq!(e.kind, Kind::Directory, "{p}");
                        let listed: Vec<String> = s
                            .list(p, None, 1000)
                            .await
                            .unwrap()
                            .into_iter()
                            .map(|d| crate::path::join(p, &d.name))
                            .collect();
                        let expected: Vec<String> = children(&model, p).cloned().collect();
                        assert_eq!(listed, expected, "step {step}: listing of {p}");
                    }
                    Node::File(data) => {
                        assert_eq!(e.kind, Kind::File, "{p}");
                        assert_eq!(e.size, data.len() as u64, "{p}");
                        assert_eq!(&s.read(p).await.unwrap(), data, "{p}");
                    }
                }
            }
        }
    }
}

/// A fresh user-management database is seeded as Carbon seeds one, and users, roles and
/// grants round-trip through it into permission decisions.
pub async fn um_round_trip(db: &UmDb) {
    assert!(db.user_verify("admin", "admin").await.unwrap());
    let tree = db.load_tree().await.unwrap();
    let everyone = db.subject("nobody-registered").await.unwrap();
    assert!(!everyone.registered);
    assert!(!tree.decide(&everyone, "/x", Action::Get).allowed);
    db.user_add("alice", "secret1").await.unwrap();
    assert_eq!(
        db.user_add("alice", "x").await.unwrap_err().errno(),
        libc::EEXIST
    );
    let alice = db.subject("alice").await.unwrap();
    assert!(tree.decide(&alice, "/x", Action::Get).allowed);
    assert!(!tree.decide(&alice, "/x", Action::Add).allowed);
    db.role_add("devs").await.unwrap();
    db.role_membership("devs", "alice", true).await.unwrap();
    let fp = db.fingerprint().await.unwrap();
    db.set_permission("/x", Action::Add, &Grantee::Role("devs".into()), Some(true))
        .await
        .unwrap();
    assert_ne!(db.fingerprint().await.unwrap(), fp);
    let tree = db.load_tree().await.unwrap();
    let alice = db.subject("alice").await.unwrap();
    assert!(tree.decide(&alice, "/x/y", Action::Add).allowed);
    let fp = db.fingerprint().await.unwrap();
    db.set_permission(
        "/x",
        Action::Add,
        &Grantee::Role("devs".into()),
        Some(false),
    )
    .await
    .unwrap();
    assert_ne!(db.fingerprint().await.unwrap(), fp);
    assert!(
        !db.load_tree()
            .await
            .unwrap()
            .decide(&alice, "/x/y", Action::Add)
            .allowed
    );
    let rules = db.rules_at("/x").await.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].grantee, "PRIMARY/devs");
    assert!(!rules[0].allowed);
}
