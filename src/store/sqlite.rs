//! The SQLite store: regfs's embedded default. WAL mode, one writer connection (so writers queue
//! in-process instead of failing with SQLITE_BUSY), a small pool of readers, a busy timeout for
//! other processes sharing the file, and `BEGIN IMMEDIATE` for every mutation.
//!
//! The connections are rusqlite's: statements run synchronously on the calling runtime thread,
//! from each connection's statement cache. A small operation takes tens of microseconds of
//! SQLite's time; handing each statement to a driver thread and back (as sqlx's SQLite driver
//! does) cost more than that in thread wake-ups. What may take long runs in `block_in_place`:
//! large blobs ([`blob`]); checkpoints have a thread of their own ([`checkpoint`]). A statement
//! can also wait up to the busy timeout for another process's lock, holding its thread.
//! Connections open through [`walbuf`], which writes each commit's WAL frames in one `pwrite`.
//! The writer's `data_version` tells commits made by other processes
//! ([`Store::foreign_commits`]), which the daemon's change watcher pushes to the kernel.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_trait::async_trait;
use rusqlite::Connection;
use tracing::debug;

use super::ops;
use super::rows::*;
use super::*;
use crate::content::{CHUNK, Content, SpoolPolicy};
use crate::error::Result;
use crate::retry::{Bound, Retry};
use crate::sql::{Exec, LiteTx, Row, Val, lite_run, lite_settle};
use crate::{args, err, path};

const SCHEMA: &str = include_str!("sqlite_schema.sql");

pub struct SqliteStore {
    name: String,
    file: std::path::PathBuf,
    /// The one writer: mutations queue here instead of failing with SQLITE_BUSY.
    writer: Arc<tokio::sync::Mutex<Writer>>,
    readers: Vec<parking_lot::Mutex<Connection>>,
    next_reader: AtomicUsize,
    opts: StoreOptions,
    _checkpointer: checkpoint::Checkpointer,
}

macro_rules! entry_sql {
    ($($part:expr),* $(,)?) => {
        concat!($($part),*)
    };
}

/// stat: ?1 path, ?2 tenant, ?3 parent path, ?4 leaf name.
const STAT_SQL: &str = entry_sql!(
    "SELECT NULL AS name, 1 AS is_dir, r.REG_VERSION AS version, r.REG_UUID AS uuid, ",
    "r.REG_MEDIA_TYPE AS media_type, r.REG_CREATED_TIME AS created, ",
    "r.REG_LAST_UPDATED_TIME AS updated, 0 AS size, a.MODE AS mode, a.UID AS uid, a.GID AS gid, ",
    "a.RDEV AS rdev, a.ATIME_NS AS atime_ns, a.MTIME_NS AS mtime_ns, a.CTIME_NS AS ctime_ns, ",
    "a.REG_VERSION AS attr_version ",
    "FROM REG_PATH p JOIN REG_RESOURCE r ON r.REG_PATH_ID = p.REG_PATH_ID ",
    "AND r.REG_TENANT_ID = p.REG_TENANT_ID AND r.REG_NAME IS NULL ",
    "LEFT JOIN REGFS_ATTR a ON a.REG_UUID = r.REG_UUID AND a.REG_TENANT_ID = r.REG_TENANT_ID ",
    "WHERE p.REG_PATH_VALUE = ?1 AND p.REG_TENANT_ID = ?2 ",
    "UNION ALL ",
    "SELECT r.REG_NAME AS name, 0 AS is_dir, r.REG_VERSION AS version, r.REG_UUID AS uuid, ",
    "r.REG_MEDIA_TYPE AS media_type, r.REG_CREATED_TIME AS created, ",
    "r.REG_LAST_UPDATED_TIME AS updated, COALESCE(length(c.REG_CONTENT_DATA), 0) AS size, ",
    "a.MODE AS mode, a.UID AS uid, a.GID AS gid, ",
    "a.RDEV AS rdev, a.ATIME_NS AS atime_ns, a.MTIME_NS AS mtime_ns, a.CTIME_NS AS ctime_ns, ",
    "a.REG_VERSION AS attr_version ",
    "FROM REG_PATH p JOIN REG_RESOURCE r ON r.REG_PATH_ID = p.REG_PATH_ID ",
    "AND r.REG_TENANT_ID = p.REG_TENANT_ID AND r.REG_NAME = ?4 ",
    "LEFT JOIN REG_CONTENT c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID AND c.REG_TENANT_ID = r.REG_TENANT_ID ",
    "LEFT JOIN REGFS_ATTR a ON a.REG_UUID = r.REG_UUID AND a.REG_TENANT_ID = r.REG_TENANT_ID ",
    "WHERE p.REG_PATH_VALUE = ?3 AND p.REG_TENANT_ID = ?2 ",
    "LIMIT 1"
);

/// One listing page, paged by name: ?1 dir path, ?2 tenant, ?3 name to start after ('' for the
/// first page), ?4 first character of the child name in a child collection's path,
/// ?5 dir prefix + ?3 (children collections' paths sort the same as their names), ?6 limit.
const LIST_SQL: &str = entry_sql!(
    "SELECT * FROM (",
    "SELECT r.REG_NAME AS name, 0 AS is_dir, r.REG_VERSION AS version, r.REG_UUID AS uuid, ",
    "r.REG_MEDIA_TYPE AS media_type, r.REG_CREATED_TIME AS created, ",
    "r.REG_LAST_UPDATED_TIME AS updated, COALESCE(length(c.REG_CONTENT_DATA), 0) AS size, ",
    "a.MODE AS mode, a.UID AS uid, a.GID AS gid, ",
    "a.RDEV AS rdev, a.ATIME_NS AS atime_ns, a.MTIME_NS AS mtime_ns, a.CTIME_NS AS ctime_ns, ",
    "a.REG_VERSION AS attr_version ",
    "FROM REG_RESOURCE r ",
    "LEFT JOIN REG_CONTENT c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID AND c.REG_TENANT_ID = r.REG_TENANT_ID ",
    "LEFT JOIN REGFS_ATTR a ON a.REG_UUID = r.REG_UUID AND a.REG_TENANT_ID = r.REG_TENANT_ID ",
    "WHERE r.REG_PATH_ID = (SELECT REG_PATH_ID FROM REG_PATH WHERE REG_PATH_VALUE = ?1 AND REG_TENANT_ID = ?2) ",
    "AND r.REG_TENANT_ID = ?2 AND r.REG_NAME IS NOT NULL AND r.REG_NAME > ?3 ",
    "UNION ALL ",
    "SELECT substr(p.REG_PATH_VALUE, ?4) AS name, 1 AS is_dir, r.REG_VERSION AS version, r.REG_UUID AS uuid, ",
    "r.REG_MEDIA_TYPE AS media_type, r.REG_CREATED_TIME AS created, ",
    "r.REG_LAST_UPDATED_TIME AS updated, 0 AS size, a.MODE AS mode, a.UID AS uid, a.GID AS gid, ",
    "a.RDEV AS rdev, a.ATIME_NS AS atime_ns, a.MTIME_NS AS mtime_ns, a.CTIME_NS AS ctime_ns, ",
    "a.REG_VERSION AS attr_version ",
    "FROM REG_PATH p JOIN REG_RESOURCE r ON r.REG_PATH_ID = p.REG_PATH_ID ",
    "AND r.REG_TENANT_ID = p.REG_TENANT_ID AND r.REG_NAME IS NULL ",
    "LEFT JOIN REGFS_ATTR a ON a.REG_UUID = r.REG_UUID AND a.REG_TENANT_ID = r.REG_TENANT_ID ",
    "WHERE p.REG_PATH_PARENT_ID = (SELECT REG_PATH_ID FROM REG_PATH WHERE REG_PATH_VALUE = ?1 AND REG_TENANT_ID = ?2) ",
    "AND p.REG_TENANT_ID = ?2 AND p.REG_PATH_VALUE > ?5 ",
    ") ORDER BY name LIMIT ?6"
);

/// Runs the `;`-separated statements of `batch` in order, each bound to the first of `args` it
/// numbers (`?N` is `args[N-1]`); returns the first column of the last row a statement returned
/// (a `RETURNING`). Our batches have no `;` inside literals.
fn run_batch(c: &Connection, batch: &str, args: &[Val<'_>]) -> Result<Option<i64>> {
    let mut returned = None;
    for sql in batch.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (_, rows) = lite_run(c, sql, args, true)?;
        if let Some(r) = rows.last() {
            returned = r.int(0)?;
        }
    }
    Ok(returned)
}

/// Carbon's update of a resource. ?1 old version, ?2 tenant, ?3 old content id, ?4 new content
/// id (inserted just before),
/// ?5 path id, ?6 name, ?7 media type, ?8 creator, ?9 created, ?10 user, ?11 now, ?12
/// description, ?13 uuid, ?14-?18 mode, uid, gid, rdev, atime, ?19 now (ns), ?20 path.
/// Returns the new REG_VERSION.
macro_rules! write_tail_sql {
    () => {
        "\
INSERT INTO REG_RESOURCE (REG_PATH_ID, REG_NAME, REG_MEDIA_TYPE, REG_CREATOR, REG_CREATED_TIME, \
 REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, REG_DESCRIPTION, REG_CONTENT_ID, REG_TENANT_ID, REG_UUID) \
 VALUES (?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?4, ?2, ?13) RETURNING REG_VERSION; \
INSERT OR REPLACE INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, ATIME_NS, \
 MTIME_NS, CTIME_NS, REG_VERSION) VALUES (?13, ?2, ?14, ?15, ?16, ?17, ?18, ?19, ?19, \
 last_insert_rowid()); \
INSERT INTO REG_LOG (REG_PATH, REG_USER_ID, REG_LOGGED_TIME, REG_ACTION, REG_ACTION_DATA, \
 REG_TENANT_ID) VALUES (?20, ?10, ?11, 1, NULL, ?2)"
    };
}
const WRITE_BATCH: &str = concat!(
    "DELETE FROM REG_RESOURCE WHERE REG_VERSION = ?1 AND REG_TENANT_ID = ?2; \
     DELETE FROM REG_CONTENT WHERE REG_CONTENT_ID = ?3 AND REG_TENANT_ID = ?2; ",
    write_tail_sql!()
);
/// [`WRITE_BATCH`] for a resource that had no content row (a new file's first write).
const WRITE_FRESH_BATCH: &str = concat!(
    "DELETE FROM REG_RESOURCE WHERE REG_VERSION = ?1 AND REG_TENANT_ID = ?2; ",
    write_tail_sql!()
);

/// The end of a batch that adds or removes an entry: the parent collection's REGFS_ATTR times
/// become `now` (the row is made, with the collection's default mode, if Carbon made the
/// collection), and the log entry. Arguments, placeholders or literals: the parent's uuid, its
/// default mode, its creation time (ns), now (ns), its version, the path, the user, the log
/// time, the log action. The tenant is always ?2.
macro_rules! touched_and_logged_sql {
    ($uuid:literal, $mode:literal, $created:literal, $now:literal, $version:literal,
     $path:literal, $user:literal, $time:literal, $action:literal) => {
        concat!(
            "INSERT INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, ATIME_NS, \
             MTIME_NS, CTIME_NS, REG_VERSION) VALUES (",
            $uuid,
            ", ?2, ",
            $mode,
            ", 0, 0, 0, ",
            $created,
            ", ",
            $now,
            ", ",
            $now,
            ", ",
            $version,
            ") \
             ON CONFLICT (REG_UUID, REG_TENANT_ID) DO UPDATE SET MTIME_NS = excluded.MTIME_NS, \
             CTIME_NS = excluded.CTIME_NS, REG_VERSION = excluded.REG_VERSION; \
             INSERT INTO REG_LOG (REG_PATH, REG_USER_ID, REG_LOGGED_TIME, REG_ACTION, \
             REG_ACTION_DATA, REG_TENANT_ID) VALUES (",
            $path,
            ", ",
            $user,
            ", ",
            $time,
            ", ",
            $action,
            ", NULL, ?2)"
        )
    };
}

/// A new resource (not a collection). ?1 content id (inserted before, or NULL), ?2 tenant, ?3 parent path id, ?4 name,
/// ?5 media type, ?6 user, ?7 now, ?8 uuid, ?9-?12 mode, uid, gid, rdev, ?13 now (ns),
/// ?14 parent uuid, ?15 parent's default mode, ?16 parent created (ns), ?17 parent version,
/// ?18 path. Returns the new REG_VERSION.
const CREATE_BATCH: &str = concat!(
    "INSERT INTO REG_RESOURCE (REG_PATH_ID, REG_NAME, REG_MEDIA_TYPE, REG_CREATOR, \
     REG_CREATED_TIME, REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, REG_DESCRIPTION, REG_CONTENT_ID, \
     REG_TENANT_ID, REG_UUID) VALUES (?3, ?4, ?5, ?6, ?7, ?6, ?7, NULL, ?1, ?2, ?8) \
     RETURNING REG_VERSION; \
     INSERT INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, ATIME_NS, MTIME_NS, \
     CTIME_NS, REG_VERSION) VALUES (?8, ?2, ?9, ?10, ?11, ?12, ?13, ?13, ?13, last_insert_rowid()); ",
    touched_and_logged_sql!("?14", "?15", "?16", "?13", "?17", "?18", "?6", "?7", "0")
);

/// unlink/rmdir of `row` (Carbon's mappings, if any, went first: see [`ops::delete_mappings`]):
/// the row, its content and attributes, then the parent's times and the log entry.
/// ?1 version, ?2 tenant, ?3 content id, ?4 uuid; ?5 parent uuid, ?6 parent's default mode,
/// ?7 parent created (ns), ?8 now (ns), ?9 parent version, ?10 path, ?11 user, ?12 now.
///
/// No `PRAGMA defer_foreign_keys` here, nor anywhere on the writer: setting a flag pragma
/// expires every prepared statement of the connection, so each one would be compiled again.
const REMOVE_BATCH: &str = concat!(
    "DELETE FROM REG_RESOURCE WHERE REG_VERSION = ?1 AND REG_TENANT_ID = ?2; \
     DELETE FROM REG_CONTENT WHERE REG_CONTENT_ID = ?3 AND REG_TENANT_ID = ?2; \
     DELETE FROM REGFS_ATTR WHERE REG_UUID = ?4 AND REG_TENANT_ID = ?2; ",
    touched_and_logged_sql!("?5", "?6", "?7", "?8", "?9", "?10", "?11", "?12", "7")
);

/// The writer connection. Its transactions are [`LiteTx`] guards, rolled back when dropped
/// uncommitted (an error, a cancelled future).
struct Writer {
    conn: Connection,
    /// The checkpoint trigger on this connection's commits (see [`checkpoint::install`]).
    hook: Option<checkpoint::Hook>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(hook) = self.hook.take() {
            hook.remove(&self.conn);
        }
    }
}

/// Runs `$body` (which uses `$c: &mut Connection`) in one `BEGIN IMMEDIATE` transaction,
/// rolled back on error and run again after a transient conflict as [`crate::retry::run`]
/// decides (at most `max_retries` times); then EIO with a log line.
macro_rules! transaction {
    ($self:ident, $what:expr, |$c:ident| $body:block) => {
        crate::retry::run(
            Retry::new(&$self.name, $what, Bound::Retries($self.opts.max_retries)),
            || async {
                let mut writer = $self.writer.lock().await;
                let result: Result<_> = async {
                    let mut tx = LiteTx::begin(&mut writer.conn)?;
                    let value = {
                        let $c: &mut Connection = tx.conn();
                        $body
                    };
                    tx.commit()?;
                    Ok(value)
                }
                .await;
                result
            },
        )
        .await
    };
}

/// One connection to `file` with the store's settings (also the user-management tables'
/// connection when they are in an SQLite database).
pub(crate) fn connect(file: &Path, opts: &StoreOptions) -> Result<Connection> {
    walbuf::register().map_err(|e| err!(EIO, "cannot set up SQLite's WAL writer: {e}"))?;
    let open = || -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags_and_vfs(
            file,
            rusqlite::OpenFlags::default(),
            walbuf::NAME,
        )?;
        c.busy_timeout(opts.busy_timeout)?;
        // A large write leaves a large WAL; once it is checkpointed, the file is cut back.
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA foreign_keys = ON; PRAGMA journal_size_limit = 67108864",
        )?;
        c.set_prepared_statement_cache_capacity(128);
        // Plans never depend on bound values, so a cached statement is compiled once. Without
        // this, SQLite treats `LIMIT ?` as a constant and recompiles a listing at every
        // execution (each binding of that parameter expires the plan). regfs has no statistics
        // tables and binds no LIKE patterns, the other users of bound values.
        c.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        Ok(c)
    };
    open().map_err(|e| err!(EIO, "cannot open SQLite database {}: {e}", file.display()))
}

/// The SQLite store's fast paths: content through blob handles, and one batch of prepared
/// statements for each of Carbon's update, add and remove (see [`WRITE_BATCH`],
/// [`CREATE_BATCH`], [`REMOVE_BATCH`]).
struct Batches;

/// The connection under `c`, which on this store is always rusqlite's.
fn conn<'a>(c: &'a mut Exec<'_>) -> &'a Connection {
    match c {
        Exec::Rus(conn) => conn,
        _ => unreachable!("the SQLite store runs its transactions on rusqlite"),
    }
}

#[async_trait]
impl ops::Encoding for Batches {
    async fn content(&self, c: &mut Exec<'_>, t: i64, data: &Content) -> Result<Option<i64>> {
        insert_content(conn(c), t, data)
    }

    async fn replace(&self, c: &mut Exec<'_>, t: i64, u: &ops::Update<'_>) -> Result<i64> {
        let c = conn(c);
        let content_id = insert_content(c, t, u.data)?;
        let batch = match u.old.content_id {
            Some(_) => WRITE_BATCH,
            None => WRITE_FRESH_BATCH,
        };
        let content = Val::from(content_id);
        let args = ops::update_args(t, u.old, u.attrs, content, u.user, u.now, u.path);
        run_batch(c, batch, &args)?
            .ok_or_else(|| err!(EIO, "write of {} stored no version", u.path))
    }

    async fn add(&self, c: &mut Exec<'_>, t: i64, a: &ops::Addition<'_>) -> Result<i64> {
        let new = a.new;
        let args = args![
            a.content_id,
            t,
            a.dir.path_id,
            path::name(a.path),
            a.media,
            a.user,
            naive_from_ns(a.now),
            a.uuid,
            (new.kind.type_bits() | (new.perm & 0o7777)) as i64,
            new.uid as i64,
            new.gid as i64,
            new.rdev as i64,
            a.now,
            &a.dir.uuid,
            (libc::S_IFDIR | DEFAULT_DIR_PERM) as i64,
            a.dir.updated_ns(),
            a.dir.version,
            a.path
        ];
        run_batch(conn(c), CREATE_BATCH, &args)?
            .ok_or_else(|| err!(EIO, "create of {} stored no version", a.path))
    }

    async fn remove(&self, c: &mut Exec<'_>, t: i64, r: &ops::Removal<'_>) -> Result<()> {
        if r.mapped {
            ops::delete_mappings(c, t, r.row).await?;
        }
        run_batch(conn(c), REMOVE_BATCH, &remove_args(t, r))?;
        Ok(())
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the SQLite database at `file`.
    pub async fn open(file: &Path, opts: StoreOptions) -> Result<Self> {
        let writer = Arc::new(tokio::sync::Mutex::new(Writer {
            conn: connect(file, &opts)?,
            hook: None,
        }));
        let checkpointer =
            checkpoint::install(&writer, connect(file, &opts)?, file.display().to_string()).await?;
        let mut readers = Vec::new();
        for _ in 0..opts.max_connections.max(1) {
            readers.push(parking_lot::Mutex::new(connect(file, &opts)?));
        }
        Ok(Self {
            name: file.display().to_string(),
            file: file.to_path_buf(),
            writer,
            readers,
            next_reader: Default::default(),
            opts,
            _checkpointer: checkpointer,
        })
    }

    fn t(&self) -> i64 {
        self.opts.tenant_id
    }

    /// The database file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// A reader connection: the first idle one, else the next in turn. Held only for
    /// synchronous work, never across an await.
    fn reader(&self) -> parking_lot::MutexGuard<'_, Connection> {
        for r in &self.readers {
            if let Some(guard) = r.try_lock() {
                return guard;
            }
        }
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.readers[i % self.readers.len()].lock()
    }

    /// The connection for a short read: the writer's when no mutation holds it, else a
    /// reader. A connection's page cache is dropped whenever another connection has committed
    /// since its last read, so after every write a reader re-reads each page it touches; the
    /// writer's cache stays warm across its own commits.
    fn quick_reader(&self) -> ReadConn<'_> {
        if let Ok(w) = self.writer.try_lock()
            && w.conn.is_autocommit()
        {
            return ReadConn::Writer(w);
        }
        ReadConn::Reader(self.reader())
    }
}

/// A connection held for one synchronous read (see [`SqliteStore::quick_reader`]).
enum ReadConn<'a> {
    Writer(tokio::sync::MutexGuard<'a, Writer>),
    Reader(parking_lot::MutexGuard<'a, Connection>),
}

impl std::ops::Deref for ReadConn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            ReadConn::Writer(w) => &w.conn,
            ReadConn::Reader(r) => r,
        }
    }
}

fn stat_params(p: &str) -> (&str, &str) {
    match path::parent(p) {
        Some(parent) => (parent, path::name(p)),
        None => ("", ""),
    }
}

fn stat_on(c: &Connection, t: i64, p: &str) -> Result<Option<Entry>> {
    let (parent, name) = stat_params(p);
    let (_, rows) = lite_run(c, STAT_SQL, &args![p, t, parent, name], true)?;
    match rows.first() {
        Some(r) => Ok(Some(ops::entry_row(r)?.into_entry())),
        None => Ok(None),
    }
}

/// What a create or an unlink needs, in one query: the live collection `parent`, its live
/// resource at `p` if any, and whether a live collection is at `p`. `None` when `parent` is not
/// a live collection.
/// A new `REG_CONTENT` row for `data`: bound as a parameter when small, else inserted as
/// `zeroblob(N)` and filled in chunks (see [`blob`]).
fn insert_content(c: &Connection, t: i64, data: &Content) -> Result<Option<i64>> {
    if data.is_empty() {
        return Ok(None);
    }
    let sql = match data.as_slice() {
        Some(bytes) if bytes.len() <= CHUNK => {
            return run_batch(
                c,
                "INSERT INTO REG_CONTENT (REG_CONTENT_DATA, REG_TENANT_ID) VALUES (?1, ?2) \
                 RETURNING REG_CONTENT_ID",
                &args![bytes, t],
            );
        }
        _ => {
            "INSERT INTO REG_CONTENT (REG_CONTENT_DATA, REG_TENANT_ID) VALUES (zeroblob(?1), ?2) \
              RETURNING REG_CONTENT_ID"
        }
    };
    let id = run_batch(c, sql, &args![data.len() as i64, t])?
        .ok_or_else(|| err!(EIO, "insert of content returned no id"))?;
    blob::fill(c, id, data)?;
    Ok(Some(id))
}

/// The values [`REMOVE_BATCH`] binds.
fn remove_args<'a>(t: i64, r: &ops::Removal<'a>) -> [Val<'a>; 12] {
    args![
        r.row.version,
        t,
        r.row.content_id,
        &r.row.uuid,
        &r.parent.uuid,
        (libc::S_IFDIR | DEFAULT_DIR_PERM) as i64,
        r.parent.updated_ns(),
        r.now,
        r.parent.version,
        r.path,
        r.user,
        naive_from_ns(r.now)
    ]
}

#[async_trait]
impl Store for SqliteStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn init(&self) -> Result<()> {
        self.writer
            .lock()
            .await
            .conn
            .execute_batch(SCHEMA)
            .map_err(|e| err!(EIO, "cannot create the schema in {}: {e}", self.name))?;
        self.apply(Change::BaseCollections).await?.nothing()
    }

    async fn apply(&self, change: Change<'_>) -> Result<Done> {
        let (t, versioning) = (self.t(), self.opts.version_on_change);
        transaction!(self, change.what(), |c| {
            ops::apply(&mut Exec::Rus(c), t, &change, versioning, &Batches).await?
        })
    }

    async fn stat(&self, p: &str) -> Result<Option<Entry>> {
        stat_on(&self.quick_reader(), self.t(), p)
    }

    async fn list(&self, dir: &str, after: Option<&str>, limit: u32) -> Result<Vec<DirEntry>> {
        let after = after.unwrap_or("");
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        let from = format!("{prefix}{after}");
        let (_, rows) = lite_run(
            &self.quick_reader(),
            LIST_SQL,
            &args![
                dir,
                self.t(),
                after,
                prefix.chars().count() as i64 + 1,
                &from,
                limit as i64
            ],
            true,
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let r = ops::entry_row(r)?;
            if let Some(name) = r.name.clone() {
                out.push(DirEntry {
                    name,
                    entry: r.into_entry(),
                });
            }
        }
        Ok(out)
    }

    async fn read_content(&self, p: &str, policy: &SpoolPolicy) -> Result<(i64, Content)> {
        let Some(parent) = path::parent(p) else {
            return Err(err!(EISDIR, "the root is a collection"));
        };
        // One query; a value over the policy's memory limit is left out and streamed after.
        // length() of a blob does not read it.
        let limit = i64::try_from(policy.memory_limit).unwrap_or(i64::MAX);
        let sql = "SELECT r.REG_VERSION, c.REG_CONTENT_ID, CASE WHEN \
             length(c.REG_CONTENT_DATA) <= ?4 THEN c.REG_CONTENT_DATA END \
             FROM REG_PATH p JOIN REG_RESOURCE r \
             ON r.REG_PATH_ID = p.REG_PATH_ID AND r.REG_TENANT_ID = p.REG_TENANT_ID \
             AND r.REG_NAME = ?3 LEFT JOIN REG_CONTENT c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID \
             AND c.REG_TENANT_ID = r.REG_TENANT_ID \
             WHERE p.REG_PATH_VALUE = ?1 AND p.REG_TENANT_ID = ?2 LIMIT 1";
        // The first query may run on the writer's connection (see `quick_reader`). A value
        // that must be streamed is read on a reader instead, which runs the query again
        // first: a blob handle does not check that the connection's schema is current, and a
        // query does.
        let mut conn = self.quick_reader();
        for _ in 0..4 {
            let (_, rows) = lite_run(
                &conn,
                sql,
                &args![parent, self.t(), path::name(p), limit],
                true,
            )?;
            let Some(row) = rows.first() else {
                return Err(err!(ENOENT, "resource {p} does not exist"));
            };
            let version = row.req_int(0)?;
            let Some(id) = row.int(1)? else {
                return Ok((version, Content::default()));
            };
            if let Some(data) = row.blob(2)? {
                return Ok((version, data.into()));
            }
            if let ReadConn::Writer(_) = conn {
                drop(conn);
                conn = ReadConn::Reader(self.reader());
                continue;
            }
            match blob::load(&conn, id, policy) {
                Ok(content) => return Ok((version, content)),
                // Content rows are never reused: a missing row means a writer replaced this
                // version between the query and the read. Read the new one.
                Err(e) => debug!(store = %self.name, "{p}: {e}; reading again"),
            }
        }
        Err(err!(EIO, "{p} kept changing while it was read"))
    }

    // Archived versions are read rarely: on the writer's connection, outside a transaction
    // (history rows never change), so the shared query code can run on it.
    async fn stat_version(&self, p: &str, snapshot: i64) -> Result<Option<Entry>> {
        let mut w = self.writer.lock().await;
        lite_settle(&w.conn);
        let found = ops::version_row(&mut Exec::Rus(&mut w.conn), self.t(), p, snapshot).await?;
        Ok(found.map(|(row, size)| ops::version_entry(&row, size)))
    }

    async fn read_version(&self, p: &str, snapshot: i64) -> Result<(i64, Content)> {
        let mut w = self.writer.lock().await;
        lite_settle(&w.conn);
        let c = &mut Exec::Rus(&mut w.conn);
        let Some((row, _)) = ops::version_row(c, self.t(), p, snapshot).await? else {
            return Err(err!(ENOENT, "{p} has no version {snapshot}"));
        };
        Ok((row.version, ops::version_content(c, self.t(), &row).await?))
    }

    async fn versions(&self, p: &str) -> Result<Vec<VersionInfo>> {
        let mut w = self.writer.lock().await;
        lite_settle(&w.conn);
        ops::versions(&mut Exec::Rus(&mut w.conn), self.t(), p).await
    }

    async fn activity(&self, q: &LogQuery) -> Result<Vec<LogEntry>> {
        let mut w = self.writer.lock().await;
        lite_settle(&w.conn);
        ops::activity(&mut Exec::Rus(&mut w.conn), self.t(), q).await
    }

    async fn metadata(&self, p: &str) -> Result<Option<Metadata>> {
        let mut w = self.writer.lock().await;
        lite_settle(&w.conn);
        ops::metadata(&mut Exec::Rus(&mut w.conn), self.t(), p).await
    }

    async fn link_restoration(&self, p: &str) -> Result<Option<String>> {
        let mut w = self.writer.lock().await;
        lite_settle(&w.conn);
        ops::link_restoration(&mut Exec::Rus(&mut w.conn), self.t(), p).await
    }

    async fn foreign_commits(&self) -> Result<Option<i64>> {
        // The writer's data_version moves with every commit but its own: the readers and the
        // checkpointer never commit, so what moves it is another process.
        let w = self.writer.lock().await;
        let v = w
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get::<_, i64>(0))?;
        Ok(Some(v))
    }

    async fn space(&self) -> Result<SpaceInfo> {
        let (_, rows) = lite_run(
            &self.reader(),
            "SELECT (SELECT COALESCE(SUM(length(REG_CONTENT_DATA)), 0) FROM REG_CONTENT \
             WHERE REG_TENANT_ID = ?1), (SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_TENANT_ID = ?1)",
            &args![self.t()],
            true,
        )?;
        let row: &Row = rows
            .first()
            .ok_or_else(|| err!(EIO, "space query returned no row"))?;
        Ok(SpaceInfo {
            bytes_used: row.req_int(0)?.max(0) as u64,
            entries: row.req_int(1)?.max(0) as u64,
        })
    }
}

mod blob;
mod checkpoint;
#[cfg(test)]
mod tests;
mod walbuf;
