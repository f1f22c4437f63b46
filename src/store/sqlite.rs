//! The SQLite store: regfs's embedded default. WAL mode, one writer connection (so writers queue
//! in-process instead of failing with SQLITE_BUSY), a small pool of readers, a busy timeout for
//! other processes sharing the file, and `BEGIN IMMEDIATE` for every mutation.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use tracing::{debug, warn};

use super::ops;
use super::rows::*;
use super::server::db::{self, Exec};
use super::*;
use crate::content::{CHUNK, Content, SpoolPolicy};
use crate::err;
use crate::error::Result;
use crate::path;

const SCHEMA: &str = include_str!("sqlite_schema.sql");

/// Connections are held directly rather than in a `sqlx::Pool`: a pool acquire/release round
/// trip costs ~50 µs here, against ~3 µs for a statement on a held connection.
pub struct SqliteStore {
    name: String,
    file: std::path::PathBuf,
    /// The one writer: mutations queue here instead of failing with SQLITE_BUSY.
    writer: Arc<tokio::sync::Mutex<Writer>>,
    readers: Vec<tokio::sync::Mutex<SqliteConnection>>,
    next_reader: std::sync::atomic::AtomicUsize,
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

const RESOURCE_COLUMNS: &str = "r.REG_PATH_ID AS path_id, r.REG_NAME AS name, \
     r.REG_VERSION AS version, r.REG_CONTENT_ID AS content_id, r.REG_CREATOR AS creator, \
     r.REG_CREATED_TIME AS created, r.REG_MEDIA_TYPE AS media_type, \
     r.REG_DESCRIPTION AS description, r.REG_UUID AS uuid";

// Multi-statement batches: sqlx runs every statement of one query string in a single trip to
// its SQLite worker thread, binding numbered parameters (?N) across statements. A trip costs
// 30-70 us on a small VM (two thread wake-ups), far more than the statements themselves.
//
// sqlx quirk (0.9): a statement that does not use every number below its highest one has
// "gaps"; sqlx binds each gap from a running argument counter shared by all statements and
// stops binding that statement once the counter passes the argument count, leaving later
// parameters NULL. `BATCH_PADDING` extra NULL arguments keep the counter in range; the gaps
// themselves are never read.
const BATCH_PADDING: usize = 256;

macro_rules! padded {
    ($q:expr) => {{
        let mut q = $q;
        for _ in 0..BATCH_PADDING {
            q = q.bind(None::<i64>);
        }
        q
    }};
}

/// Carbon's update of a resource. ?1 old version, ?2 tenant, ?3 old content id, ?4 new content
/// id (inserted just before, in its own statement, so the blob is bound once),
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
/// [`WRITE_BATCH`] for a resource that had no content row (a new file's first write): one
/// statement, and one message from the worker thread, fewer.
const WRITE_FRESH_BATCH: &str = concat!(
    "DELETE FROM REG_RESOURCE WHERE REG_VERSION = ?1 AND REG_TENANT_ID = ?2; ",
    write_tail_sql!()
);

/// A new resource (not a collection). ?1 content id (inserted before, or NULL), ?2 tenant, ?3 parent path id, ?4 name,
/// ?5 media type, ?6 user, ?7 now, ?8 uuid, ?9-?12 mode, uid, gid, rdev, ?13 now (ns),
/// ?14 parent uuid, ?15 parent's default mode, ?16 parent created (ns), ?17 parent version,
/// ?18 path. Returns the new REG_VERSION.
const CREATE_BATCH: &str = "\
INSERT INTO REG_RESOURCE (REG_PATH_ID, REG_NAME, REG_MEDIA_TYPE, REG_CREATOR, REG_CREATED_TIME, \
 REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, REG_DESCRIPTION, REG_CONTENT_ID, REG_TENANT_ID, REG_UUID) \
 VALUES (?3, ?4, ?5, ?6, ?7, ?6, ?7, NULL, ?1, ?2, ?8) RETURNING REG_VERSION; \
INSERT INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, ATIME_NS, MTIME_NS, \
 CTIME_NS, REG_VERSION) VALUES (?8, ?2, ?9, ?10, ?11, ?12, ?13, ?13, ?13, last_insert_rowid()); \
INSERT INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, ATIME_NS, MTIME_NS, \
 CTIME_NS, REG_VERSION) VALUES (?14, ?2, ?15, 0, 0, 0, ?16, ?13, ?13, ?17) \
 ON CONFLICT (REG_UUID, REG_TENANT_ID) DO UPDATE SET MTIME_NS = excluded.MTIME_NS, \
 CTIME_NS = excluded.CTIME_NS, REG_VERSION = excluded.REG_VERSION; \
INSERT INTO REG_LOG (REG_PATH, REG_USER_ID, REG_LOGGED_TIME, REG_ACTION, REG_ACTION_DATA, \
 REG_TENANT_ID) VALUES (?18, ?6, ?7, 0, NULL, ?2)";

/// Deletes one live row and what hangs off it; foreign keys are checked at commit.
/// ?1 version, ?2 tenant, ?3 content id, ?4 path id, ?5 name (NULL: collection), ?6 uuid.
macro_rules! delete_batch_sql {
    () => {
        "\
PRAGMA defer_foreign_keys = ON; \
DELETE FROM REG_RESOURCE WHERE REG_VERSION = ?1 AND REG_TENANT_ID = ?2; \
DELETE FROM REG_CONTENT WHERE REG_CONTENT_ID = ?3 AND REG_TENANT_ID = ?2; \
DELETE FROM REG_PROPERTY WHERE REG_TENANT_ID = ?2 AND REG_ID IN (SELECT REG_PROPERTY_ID \
 FROM REG_RESOURCE_PROPERTY WHERE REG_PATH_ID = ?4 AND REG_RESOURCE_NAME IS ?5 AND REG_TENANT_ID = ?2); \
DELETE FROM REG_RESOURCE_PROPERTY WHERE REG_PATH_ID = ?4 AND REG_RESOURCE_NAME IS ?5 AND REG_TENANT_ID = ?2; \
DELETE FROM REG_RESOURCE_TAG WHERE REG_PATH_ID = ?4 AND REG_RESOURCE_NAME IS ?5 AND REG_TENANT_ID = ?2; \
DELETE FROM REG_RESOURCE_COMMENT WHERE REG_PATH_ID = ?4 AND REG_RESOURCE_NAME IS ?5 AND REG_TENANT_ID = ?2; \
DELETE FROM REG_RESOURCE_RATING WHERE REG_PATH_ID = ?4 AND REG_RESOURCE_NAME IS ?5 AND REG_TENANT_ID = ?2; \
DELETE FROM REGFS_ATTR WHERE REG_UUID = ?6 AND REG_TENANT_ID = ?2"
    };
}

/// The parent's times and the log entry of an unlink/rmdir, after the row's deletes.
/// Parameters: ?7 parent uuid, ?8 parent's default mode, ?9 parent created (ns), ?10 now (ns),
/// ?11 parent version, ?12 path, ?13 user, ?14 now.
macro_rules! remove_tail_sql {
    () => {
        "; INSERT INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, ATIME_NS, MTIME_NS, \
     CTIME_NS, REG_VERSION) VALUES (?7, ?2, ?8, 0, 0, 0, ?9, ?10, ?10, ?11) \
     ON CONFLICT (REG_UUID, REG_TENANT_ID) DO UPDATE SET MTIME_NS = excluded.MTIME_NS, \
     CTIME_NS = excluded.CTIME_NS, REG_VERSION = excluded.REG_VERSION; \
     INSERT INTO REG_LOG (REG_PATH, REG_USER_ID, REG_LOGGED_TIME, REG_ACTION, REG_ACTION_DATA, \
     REG_TENANT_ID) VALUES (?12, ?13, ?14, 7, NULL, ?2)"
    };
}

/// unlink/rmdir: the delete batch, then the parent's times and the log entry.
const REMOVE_BATCH: &str = concat!(delete_batch_sql!(), remove_tail_sql!());

/// unlink of a resource that has no properties, tags, comments or ratings (the common case):
/// five statements instead of eleven. Each statement's result is a message from sqlx's worker
/// thread, and each message can cost a thread wake-up, which is most of an unlink's time.
const REMOVE_PLAIN_BATCH: &str = concat!(
    "DELETE FROM REG_RESOURCE WHERE REG_VERSION = ?1 AND REG_TENANT_ID = ?2; \
     DELETE FROM REG_CONTENT WHERE REG_CONTENT_ID = ?3 AND REG_TENANT_ID = ?2; \
     DELETE FROM REGFS_ATTR WHERE REG_UUID = ?6 AND REG_TENANT_ID = ?2",
    remove_tail_sql!()
);

/// A resource's REGFS_ATTR row, written whole.
const PUT_ATTR_SQL: &str = "INSERT OR REPLACE INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, \
     UID, GID, RDEV, ATIME_NS, MTIME_NS, CTIME_NS, REG_VERSION) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// The writer connection, and whether a transaction may be open on it: BEGIN and COMMIT ride
/// on a mutation's first and last statement batches, so an error (or a cancelled future) can
/// leave one open, and the next mutation rolls it back first.
struct Writer {
    conn: SqliteConnection,
    in_tx: bool,
}

/// One write transaction on the writer. The hot paths put `BEGIN IMMEDIATE` in front of their
/// first batch ([`WriteTx::first`]) and `COMMIT` after their last ([`WriteTx::last`]): each
/// trip to sqlx's SQLite worker thread costs more than the statements, so a mutation that
/// would take BEGIN + 2 batches + COMMIT takes 2 trips. Everything else calls
/// [`WriteTx::conn`], which begins with a trip of its own if need be.
struct WriteTx<'w> {
    w: &'w mut Writer,
}

impl WriteTx<'_> {
    /// `sql`, preceded by `BEGIN IMMEDIATE` if the transaction has not begun.
    fn first(&mut self, sql: &str) -> sqlx::AssertSqlSafe<String> {
        if self.w.in_tx {
            sqlx::AssertSqlSafe(sql.to_string())
        } else {
            self.w.in_tx = true;
            sqlx::AssertSqlSafe(format!("BEGIN IMMEDIATE; {sql}"))
        }
    }

    /// `sql` followed by `COMMIT`; call [`WriteTx::committed`] once it has run.
    fn last(&mut self, sql: &str) -> sqlx::AssertSqlSafe<String> {
        let first = self.first(sql).0;
        sqlx::AssertSqlSafe(format!("{first}; COMMIT"))
    }

    fn committed(&mut self) {
        self.w.in_tx = false;
    }

    /// The connection, inside the transaction.
    async fn conn(&mut self) -> Result<&mut SqliteConnection> {
        if !self.w.in_tx {
            self.w.in_tx = true;
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut self.w.conn)
                .await?;
        }
        Ok(&mut self.w.conn)
    }

    /// The connection for a statement of a transaction already begun by [`WriteTx::first`].
    fn raw(&mut self) -> &mut SqliteConnection {
        &mut self.w.conn
    }

    async fn finish(&mut self) -> Result<()> {
        if self.w.in_tx {
            sqlx::query("COMMIT").execute(&mut self.w.conn).await?;
            self.w.in_tx = false;
        }
        Ok(())
    }
}

impl Writer {
    async fn rollback_if_open(&mut self) {
        if self.in_tx {
            // "no transaction is active" is fine: BEGIN itself may have been what failed.
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
            self.in_tx = false;
        }
    }
}

/// Runs `$body` (which uses `$tx: &mut WriteTx`) in one `BEGIN IMMEDIATE` transaction, rolled
/// back on error and retried a bounded number of times when the database reports a transient
/// conflict; then EIO with a log line.
macro_rules! transaction {
    ($self:ident, $what:expr, |$tx:ident| $body:block) => {{
        let mut attempt: u32 = 0;
        loop {
            let mut writer = $self.writer.lock().await;
            writer.rollback_if_open().await;
            let result: Result<_> = async {
                let mut tx = WriteTx { w: &mut writer };
                let value = {
                    let $tx: &mut WriteTx<'_> = &mut tx;
                    $body
                };
                tx.finish().await?;
                Ok(value)
            }
            .await;
            if result.is_err() {
                writer.rollback_if_open().await;
            }
            drop(writer);
            match result {
                Err(e) if e.is_transient() && attempt < $self.opts.max_retries => {
                    attempt += 1;
                    debug!(store = %$self.name, op = $what, attempt, "retrying after conflict: {e}");
                    tokio::time::sleep(Duration::from_millis(5u64 << attempt.min(6))).await;
                }
                Err(e) if e.is_transient() => {
                    warn!(store = %$self.name, op = $what, "giving up after {attempt} retries: {e}");
                    break Err(err!(EIO, "{}: gave up after {attempt} retries: {}", $what, e.message()));
                }
                other => break other,
            }
        }
    }};
}

impl SqliteStore {
    /// Opens (creating if missing) the SQLite database at `file`.
    pub async fn open(file: &Path, opts: StoreOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(opts.busy_timeout)
            // A large write leaves a large WAL; once it is checkpointed, the file is cut back.
            .pragma("journal_size_limit", "67108864")
            .foreign_keys(true);
        let connect_one = || async {
            SqliteConnection::connect_with(&connect)
                .await
                .map_err(|e| err!(EIO, "cannot open SQLite database {}: {e}", file.display()))
        };
        let writer = Arc::new(tokio::sync::Mutex::new(Writer {
            conn: connect_one().await?,
            in_tx: false,
        }));
        let checkpointer =
            checkpoint::install(&writer, connect_one().await?, file.display().to_string()).await?;
        let mut readers = Vec::new();
        for _ in 0..opts.max_connections.max(1) {
            readers.push(tokio::sync::Mutex::new(connect_one().await?));
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

    /// A reader connection: the first idle one, else the next in turn.
    async fn reader(&self) -> tokio::sync::MutexGuard<'_, SqliteConnection> {
        for r in &self.readers {
            if let Ok(guard) = r.try_lock() {
                return guard;
            }
        }
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.readers[i % self.readers.len()].lock().await
    }
}

fn stat_params(p: &str) -> (&str, &str) {
    match path::parent(p) {
        Some(parent) => (parent, path::name(p)),
        None => ("", ""),
    }
}

async fn stat_on(conn: &mut SqliteConnection, t: i64, p: &str) -> Result<Option<Entry>> {
    let (parent, name) = stat_params(p);
    let row: Option<EntryRow> = sqlx::query_as(STAT_SQL)
        .bind(p)
        .bind(t)
        .bind(parent)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(EntryRow::into_entry))
}

/// What a create or an unlink needs, in one query (and the transaction's first trip): the live
/// collection `parent`, its live resource at `p` if any, and whether a live collection is at
/// `p`. `None` when `parent` is not a live collection.
async fn parent_and_entry(
    tx: &mut WriteTx<'_>,
    t: i64,
    parent: &str,
    p: &str,
) -> Result<Option<Found>> {
    let sql = tx.first(
        "SELECT pr.REG_PATH_ID, pr.REG_NAME, pr.REG_VERSION, pr.REG_CONTENT_ID, pr.REG_CREATOR, \
         pr.REG_CREATED_TIME, pr.REG_MEDIA_TYPE, pr.REG_DESCRIPTION, pr.REG_UUID, \
         fr.REG_PATH_ID, fr.REG_NAME, fr.REG_VERSION, fr.REG_CONTENT_ID, fr.REG_CREATOR, \
         fr.REG_CREATED_TIME, fr.REG_MEDIA_TYPE, fr.REG_DESCRIPTION, fr.REG_UUID, \
         EXISTS (SELECT 1 FROM REG_PATH cp JOIN REG_RESOURCE cr ON cr.REG_PATH_ID = cp.REG_PATH_ID \
         AND cr.REG_TENANT_ID = cp.REG_TENANT_ID AND cr.REG_NAME IS NULL \
         WHERE cp.REG_PATH_VALUE = ?4 AND cp.REG_TENANT_ID = ?2), \
         EXISTS (SELECT 1 FROM REG_RESOURCE_PROPERTY m WHERE m.REG_PATH_ID = pp.REG_PATH_ID \
         AND m.REG_RESOURCE_NAME = ?3 AND m.REG_TENANT_ID = ?2 \
         UNION ALL SELECT 1 FROM REG_RESOURCE_TAG m WHERE m.REG_PATH_ID = pp.REG_PATH_ID \
         AND m.REG_RESOURCE_NAME = ?3 AND m.REG_TENANT_ID = ?2 \
         UNION ALL SELECT 1 FROM REG_RESOURCE_COMMENT m WHERE m.REG_PATH_ID = pp.REG_PATH_ID \
         AND m.REG_RESOURCE_NAME = ?3 AND m.REG_TENANT_ID = ?2 \
         UNION ALL SELECT 1 FROM REG_RESOURCE_RATING m WHERE m.REG_PATH_ID = pp.REG_PATH_ID \
         AND m.REG_RESOURCE_NAME = ?3 AND m.REG_TENANT_ID = ?2) \
         FROM REG_PATH pp JOIN REG_RESOURCE pr ON pr.REG_PATH_ID = pp.REG_PATH_ID \
         AND pr.REG_TENANT_ID = pp.REG_TENANT_ID AND pr.REG_NAME IS NULL \
         LEFT JOIN REG_RESOURCE fr ON fr.REG_PATH_ID = pp.REG_PATH_ID \
         AND fr.REG_TENANT_ID = pp.REG_TENANT_ID AND fr.REG_NAME = ?3 \
         WHERE pp.REG_PATH_VALUE = ?1 AND pp.REG_TENANT_ID = ?2 LIMIT 1",
    );
    let row = sqlx::query(sql)
        .bind(parent)
        .bind(t)
        .bind(path::name(p))
        .bind(p)
        .fetch_optional(tx.raw())
        .await?;
    let Some(row) = row.map(db::Row::Lite) else {
        return Ok(None);
    };
    let file = match row.int(11)? {
        Some(_) => Some(ops::resource_row(&row, 9)?),
        None => None,
    };
    Ok(Some(Found {
        parent: ops::resource_row(&row, 0)?,
        file,
        dir_exists: row.req_int(18)? != 0,
        mapped: row.req_int(19)? != 0,
    }))
}

/// What [`parent_and_entry`] found.
struct Found {
    parent: ResourceRow,
    file: Option<ResourceRow>,
    /// A live collection is at the path.
    dir_exists: bool,
    /// The resource at the path has property, tag, comment or rating mappings.
    mapped: bool,
}

/// The live non-collection row at `p` with its attributes, in one query.
/// A new `REG_CONTENT` row for `data`: bound as a parameter when small, else inserted as
/// `zeroblob(N)` and filled in chunks (see [`blob`]).
async fn insert_content(tx: &mut WriteTx<'_>, t: i64, data: &Content) -> Result<Option<i64>> {
    match data.as_slice() {
        Some(bytes) if bytes.len() <= CHUNK => {
            ops::insert_content(&mut Exec::Lite(tx.raw()), t, bytes).await
        }
        _ => {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO REG_CONTENT (REG_CONTENT_DATA, REG_TENANT_ID) VALUES (zeroblob(?), ?) \
                 RETURNING REG_CONTENT_ID",
            )
            .bind(data.len() as i64)
            .bind(t)
            .fetch_one(tx.raw())
            .await?;
            blob::fill(tx.raw(), id, data).await?;
            Ok(Some(id))
        }
    }
}

async fn file_row_with_attrs(
    tx: &mut WriteTx<'_>,
    t: i64,
    p: &str,
) -> Result<Option<(ResourceRow, AttrRow, u64)>> {
    #[derive(sqlx::FromRow)]
    struct Joined {
        #[sqlx(flatten)]
        row: ResourceRow,
        #[sqlx(flatten)]
        attrs: AttrColumns,
        size: i64,
    }
    let Some(parent) = path::parent(p) else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT {RESOURCE_COLUMNS}, a.MODE AS mode, a.UID AS uid, a.GID AS gid, a.RDEV AS rdev, \
         a.ATIME_NS AS atime_ns, a.MTIME_NS AS mtime_ns, a.CTIME_NS AS ctime_ns, \
         a.REG_VERSION AS attr_version, COALESCE(length(c.REG_CONTENT_DATA), 0) AS size \
         FROM REG_PATH p JOIN REG_RESOURCE r \
         ON r.REG_PATH_ID = p.REG_PATH_ID AND r.REG_TENANT_ID = p.REG_TENANT_ID \
         AND r.REG_NAME = ?3 LEFT JOIN REGFS_ATTR a ON a.REG_UUID = r.REG_UUID \
         AND a.REG_TENANT_ID = r.REG_TENANT_ID LEFT JOIN REG_CONTENT c \
         ON c.REG_CONTENT_ID = r.REG_CONTENT_ID AND c.REG_TENANT_ID = r.REG_TENANT_ID \
         WHERE p.REG_PATH_VALUE = ?1 AND p.REG_TENANT_ID = ?2 LIMIT 1"
    );
    let joined: Option<Joined> = sqlx::query_as(tx.first(&sql))
        .bind(parent)
        .bind(t)
        .bind(path::name(p))
        .fetch_optional(tx.raw())
        .await?;
    Ok(joined.map(|j| {
        let attrs = j.attrs.or_default(&j.row);
        (j.row, attrs, j.size.max(0) as u64)
    }))
}

/// `sql` (a batch starting with [`DELETE_BATCH`]'s statements) with their six parameters bound.
fn delete_query<'q>(
    sql: impl sqlx::SqlSafeStr,
    t: i64,
    row: &'q ResourceRow,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(sql)
        .bind(row.version)
        .bind(t)
        .bind(row.content_id)
        .bind(row.path_id)
        .bind(row.name.as_deref())
        .bind(&row.uuid)
}

#[async_trait]
impl Store for SqliteStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn init(&self) -> Result<()> {
        sqlx::raw_sql(SCHEMA)
            .execute(&mut self.writer.lock().await.conn)
            .await
            .map_err(|e| err!(EIO, "cannot create the schema in {}: {e}", self.name))?;
        let t = self.t();
        transaction!(self, "init", |tx| {
            let conn = tx.conn().await?;
            ops::base_collections(&mut Exec::Lite(conn), t).await?;
        })
    }

    async fn stat(&self, p: &str) -> Result<Option<Entry>> {
        let mut conn = self.reader().await;
        stat_on(&mut conn, self.t(), p).await
    }

    async fn list(&self, dir: &str, after: Option<&str>, limit: u32) -> Result<Vec<DirEntry>> {
        let after = after.unwrap_or("");
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        let rows: Vec<EntryRow> = sqlx::query_as(LIST_SQL)
            .bind(dir)
            .bind(self.t())
            .bind(after)
            .bind(prefix.chars().count() as i64 + 1)
            .bind(format!("{prefix}{after}"))
            .bind(limit as i64)
            .fetch_all(&mut *self.reader().await)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let name = r.name.clone()?;
                Some(DirEntry {
                    name,
                    entry: r.into_entry(),
                })
            })
            .collect())
    }

    async fn read_content(&self, p: &str, policy: &SpoolPolicy) -> Result<(i64, Content)> {
        let Some(parent) = path::parent(p) else {
            return Err(err!(EISDIR, "the root is a collection"));
        };
        // One query; a value over the policy's memory limit is left out and streamed after.
        // length() of a blob does not read it.
        let limit = i64::try_from(policy.memory_limit).unwrap_or(i64::MAX);
        for _ in 0..3 {
            let mut conn = self.reader().await;
            let row: Option<(i64, Option<i64>, Option<Vec<u8>>)> = sqlx::query_as(
                "SELECT r.REG_VERSION, c.REG_CONTENT_ID, CASE WHEN \
                 length(c.REG_CONTENT_DATA) <= ?4 THEN c.REG_CONTENT_DATA END \
                 FROM REG_PATH p JOIN REG_RESOURCE r \
                 ON r.REG_PATH_ID = p.REG_PATH_ID AND r.REG_TENANT_ID = p.REG_TENANT_ID \
                 AND r.REG_NAME = ?3 LEFT JOIN REG_CONTENT c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID \
                 AND c.REG_TENANT_ID = r.REG_TENANT_ID \
                 WHERE p.REG_PATH_VALUE = ?1 AND p.REG_TENANT_ID = ?2 LIMIT 1",
            )
            .bind(parent)
            .bind(self.t())
            .bind(path::name(p))
            .bind(limit)
            .fetch_optional(&mut *conn)
            .await?;
            match row {
                None => return Err(err!(ENOENT, "resource {p} does not exist")),
                Some((version, None, _)) => return Ok((version, Content::default())),
                Some((version, Some(_), Some(data))) => return Ok((version, data.into())),
                Some((version, Some(id), None)) => match blob::load(&mut conn, id, policy).await {
                    Ok(content) => return Ok((version, content)),
                    // Content rows are never reused: a missing row means a writer replaced
                    // this version between the query and the read. Read the new one.
                    Err(e) => debug!(store = %self.name, "{p}: {e}; reading again"),
                },
            }
        }
        Err(err!(EIO, "{p} kept changing while it was read"))
    }

    async fn create(&self, p: &str, new: NewEntry, user: &str) -> Result<Entry> {
        let t = self.t();
        let Some(parent) = path::parent(p) else {
            return Err(err!(EEXIST, "the root always exists"));
        };
        let name = path::name(p);
        transaction!(self, "create", |tx| {
            let dir = match parent_and_entry(tx, t, parent, p).await? {
                Some(f) if f.file.is_some() || f.dir_exists => {
                    return Err(err!(EEXIST, "{p} already exists"));
                }
                Some(f) => f.parent,
                // Not a live collection: the slow path says which errno.
                None => ops::require_dir(&mut Exec::Lite(tx.conn().await?), t, parent).await?,
            };
            let now = now_ns();
            let created = naive_from_ns(now);
            let mut media = None;
            let (version, uuid) = if new.kind == Kind::Directory {
                let (_, version, uuid) = ops::create_collection(
                    &mut Exec::Lite(tx.conn().await?),
                    t,
                    p,
                    dir.path_id,
                    user,
                    None,
                    None,
                    created,
                )
                .await?;
                (version, uuid)
            } else {
                let media_type = if new.kind == Kind::File {
                    media_type_for(name)
                } else {
                    None
                };
                media = media_type;
                let uuid = uuid::Uuid::new_v4().to_string();
                let content_id =
                    ops::insert_content(&mut Exec::Lite(tx.conn().await?), t, &new.content).await?;
                let version: i64 = padded!(
                    sqlx::query_scalar(tx.last(CREATE_BATCH))
                        .bind(content_id)
                        .bind(t)
                        .bind(dir.path_id)
                        .bind(name)
                        .bind(media_type)
                        .bind(user)
                        .bind(created)
                        .bind(&uuid)
                        .bind((new.kind.type_bits() | (new.perm & 0o7777)) as i64)
                        .bind(new.uid as i64)
                        .bind(new.gid as i64)
                        .bind(new.rdev as i64)
                        .bind(now)
                        .bind(&dir.uuid)
                        .bind((libc::S_IFDIR | DEFAULT_DIR_PERM) as i64)
                        .bind(to_ns(naive_to_system(dir.created)))
                        .bind(dir.version)
                        .bind(p)
                )
                .fetch_all(tx.raw())
                .await?
                .pop()
                .ok_or_else(|| err!(EIO, "create of {p} stored no version"))?;
                tx.committed();
                (version, uuid)
            };
            let attrs = AttrRow {
                mode: (new.kind.type_bits() | (new.perm & 0o7777)) as i64,
                uid: new.uid as i64,
                gid: new.gid as i64,
                rdev: new.rdev as i64,
                atime_ns: now,
                mtime_ns: now,
                ctime_ns: now,
                version,
            };
            if new.kind == Kind::Directory {
                let conn = tx.conn().await?;
                ops::put_attr(&mut Exec::Lite(&mut *conn), t, &uuid, attrs).await?;
                ops::touch_dir(&mut Exec::Lite(&mut *conn), t, &dir).await?;
            }
            EntryRow::from_parts(
                new.kind == Kind::Directory,
                version,
                uuid,
                media.map(str::to_string),
                created,
                new.content.len() as u64,
                attrs,
            )
            .into_entry()
        })
    }

    async fn write(&self, p: &str, data: &Content, user: &str) -> Result<Entry> {
        let t = self.t();
        transaction!(self, "write", |tx| {
            let Some((old, attrs, _)) = file_row_with_attrs(tx, t, p).await? else {
                if ops::collection_row(&mut Exec::Lite(tx.conn().await?), t, p)
                    .await?
                    .is_some()
                {
                    return Err(err!(EISDIR, "{p} is a collection"));
                }
                return Err(err!(ENOENT, "resource {p} does not exist"));
            };
            // Carbon's update: delete the old row and its content, insert a new row (new
            // REG_VERSION) that keeps creator, creation time and UUID; the content, then one batch.
            let now = now_ns();
            let now_naive = naive_from_ns(now);
            let content_id = insert_content(tx, t, data).await?;
            let version: i64 = padded!(
                sqlx::query_scalar(tx.last(if old.content_id.is_some() {
                    WRITE_BATCH
                } else {
                    WRITE_FRESH_BATCH
                }))
                .bind(old.version)
                .bind(t)
                .bind(old.content_id)
                .bind(content_id)
                .bind(old.path_id)
                .bind(old.name.as_deref())
                .bind(old.media_type.as_deref())
                .bind(&old.creator)
                .bind(old.created)
                .bind(user)
                .bind(now_naive)
                .bind(old.description.as_deref())
                .bind(&old.uuid)
                .bind(attrs.mode)
                .bind(attrs.uid)
                .bind(attrs.gid)
                .bind(attrs.rdev)
                .bind(attrs.atime_ns)
                .bind(now)
                .bind(p)
            )
            .fetch_all(tx.raw())
            .await?
            .pop()
            .ok_or_else(|| err!(EIO, "write of {p} stored no version"))?;
            tx.committed();
            let attrs = attrs.rewritten(version, now);
            resource_entry(&old, version, data.len(), attrs)
        })
    }

    async fn remove(&self, p: &str, dir: bool, user: &str) -> Result<()> {
        let t = self.t();
        let Some(parent) = path::parent(p) else {
            return Err(err!(EBUSY, "the root cannot be removed"));
        };
        transaction!(self, if dir { "rmdir" } else { "unlink" }, |tx| {
            // One query (which also begins the transaction) finds the parent and the file; the
            // slow path only runs for rmdir and to tell which errno applies.
            let found = if dir {
                None
            } else {
                parent_and_entry(tx, t, parent, p).await?
            };
            let (parent_row, row, batch) = match found {
                Some(Found {
                    parent,
                    file: Some(row),
                    mapped,
                    ..
                }) => (
                    parent,
                    row,
                    if mapped {
                        REMOVE_BATCH
                    } else {
                        REMOVE_PLAIN_BATCH
                    },
                ),
                _ => {
                    let conn = tx.conn().await?;
                    let (parent, row) =
                        ops::remove_checks(&mut Exec::Lite(conn), t, p, parent, dir).await?;
                    (parent, row, REMOVE_BATCH)
                }
            };
            let now = now_ns();
            padded!(
                delete_query(tx.last(batch), t, &row)
                    .bind(&parent_row.uuid)
                    .bind((libc::S_IFDIR | DEFAULT_DIR_PERM) as i64)
                    .bind(to_ns(naive_to_system(parent_row.created)))
                    .bind(now)
                    .bind(parent_row.version)
                    .bind(p)
                    .bind(user)
                    .bind(naive_from_ns(now))
            )
            .execute(tx.raw())
            .await?;
            tx.committed();
        })
    }

    async fn rename(&self, from: &str, to: &str, mode: RenameMode, user: &str) -> Result<()> {
        let t = self.t();
        transaction!(self, "rename", |tx| {
            let conn = tx.conn().await?;
            ops::rename(&mut Exec::Lite(conn), t, from, to, mode, user).await?;
        })
    }

    async fn set_attr(&self, p: &str, change: AttrChange) -> Result<Entry> {
        let t = self.t();
        transaction!(self, "setattr", |tx| {
            // A resource (chmod, utimens after a write: the common case) in two trips; the
            // generic path for collections and for the errors.
            match file_row_with_attrs(tx, t, p).await? {
                Some((row, attrs, size)) => {
                    let a = ops::apply_change(&row, attrs, &change);
                    sqlx::query(tx.last(PUT_ATTR_SQL))
                        .bind(&row.uuid)
                        .bind(t)
                        .bind(a.mode)
                        .bind(a.uid)
                        .bind(a.gid)
                        .bind(a.rdev)
                        .bind(a.atime_ns)
                        .bind(a.mtime_ns)
                        .bind(a.ctime_ns)
                        .bind(a.version)
                        .execute(tx.raw())
                        .await?;
                    tx.committed();
                    resource_entry(&row, row.version, size, a)
                }
                None => {
                    let conn = tx.conn().await?;
                    ops::set_attr(&mut Exec::Lite(conn), t, p, &change).await?
                }
            }
        })
    }

    async fn ensure_mount_link(
        &self,
        mount_path: &str,
        instance_id: &str,
        target_path: &str,
        replace: bool,
    ) -> Result<()> {
        let t = self.t();
        transaction!(self, "mount link", |tx| {
            let conn = tx.conn().await?;
            ops::mount_link(
                &mut Exec::Lite(conn),
                t,
                mount_path,
                instance_id,
                target_path,
                replace,
            )
            .await?;
        })
    }

    async fn create_path(&self, p: &str, user: &str) -> Result<()> {
        let t = self.t();
        transaction!(self, "create path", |tx| {
            let conn = tx.conn().await?;
            ops::ensure_collections(&mut Exec::Lite(conn), t, p, user).await?;
        })
    }

    async fn space(&self) -> Result<SpaceInfo> {
        let (bytes, entries): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COALESCE(SUM(length(REG_CONTENT_DATA)), 0) FROM REG_CONTENT \
             WHERE REG_TENANT_ID = ?1), (SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_TENANT_ID = ?1)",
        )
        .bind(self.t())
        .fetch_one(&mut *self.reader().await)
        .await?;
        Ok(SpaceInfo {
            bytes_used: bytes.max(0) as u64,
            entries: entries.max(0) as u64,
        })
    }
}

mod blob;
mod checkpoint;
#[cfg(test)]
mod tests;
