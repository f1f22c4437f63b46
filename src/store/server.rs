//! The PostgreSQL and MySQL/MariaDB store: the databases Carbon clusters share. One
//! implementation over both dialects ([`db`]), writing the same rows as the SQLite store.
//!
//! Every mutation is one SERIALIZABLE transaction, so that two nodes creating the same name at
//! once cannot both succeed; the loser's conflict (PostgreSQL 40001/40P01, InnoDB deadlock) is
//! retried a bounded number of times. Every attempt is bounded in time: a server that is down or
//! stops answering gives EIO with a log line after `timeout`, and the pool reconnects by itself
//! once the server is back.

pub mod feed;
mod pg;

use std::time::Duration;

use async_trait::async_trait;
use tracing::{debug, warn};

use super::ops::{self, *};
use super::rows::*;
use super::*;
use crate::content::{Content, SpoolPolicy};
use crate::error::Result;
use crate::retry::{Bound, Retry};
use crate::sql::{Dialect, Exec, Pool, ServerOptions};
use crate::{args, err, path};

const POSTGRES_SCHEMA: &str = include_str!("server/postgres_schema.sql");
const MYSQL_SCHEMA: &str = include_str!("server/mysql_schema.sql");
const POSTGRES_REGFS: &str = include_str!("server/postgres_regfs.sql");
const MYSQL_REGFS: &str = include_str!("server/mysql_regfs.sql");

/// The tables a mount reads and writes: Carbon's registry tables and regfs's own.
pub const REGISTRY_TABLES: &[&str] = &[
    "REG_CLUSTER_LOCK",
    "REG_LOG",
    "REG_PATH",
    "REG_CONTENT",
    "REG_CONTENT_HISTORY",
    "REG_RESOURCE",
    "REG_RESOURCE_HISTORY",
    "REG_COMMENT",
    "REG_RESOURCE_COMMENT",
    "REG_RATING",
    "REG_RESOURCE_RATING",
    "REG_TAG",
    "REG_RESOURCE_TAG",
    "REG_PROPERTY",
    "REG_RESOURCE_PROPERTY",
    "REG_ASSOCIATION",
    "REG_SNAPSHOT",
    "REGFS_ATTR",
    "REGFS_CHANGE",
];

pub struct ServerStore {
    name: String,
    pool: Pool,
    d: Dialect,
    opts: StoreOptions,
    timeout: Duration,
    /// Resources this store created or removed, for [`ServerStore::changed`].
    changes: std::sync::atomic::AtomicU64,
    /// Collection rows by path, read by earlier creates and unlinks on PostgreSQL, so that the
    /// next one in the same collection is one statement instead of a read and a statement.
    /// Never trusted: those statements are guarded by the row's (REG_VERSION, REG_PATH_ID),
    /// which any change to the collection (an update by Carbon, a rename, a removal) moves; a
    /// row that fails its guard is forgotten and read again.
    dirs: parking_lot::Mutex<lru::LruCache<String, ResourceRow>>,
}

/// How many collection rows [`ServerStore::dirs`] keeps.
const DIR_ROWS: usize = 256;

/// Runs the future `$run` (made anew for each attempt), bounded in time, and again after a
/// transient conflict, as [`crate::retry::run`] decides; then EIO with a log line.
///
/// Conflicts between nodes (serialization failures, deadlocks, a row that changed under a
/// guarded statement) are the normal case in a cluster: they are retried until the
/// operation's time bound, not a fixed number of times. The whole operation, attempts and
/// pauses, stays within the bound; EIO is for a database that is down, or past it.
macro_rules! retrying {
    ($self:ident, $what:expr, $run:expr) => {
        crate::retry::run(
            Retry::new(&$self.name, $what, Bound::Within($self.timeout)),
            || $run,
        )
        .await
    };
}

/// Runs `$body` (with `$c: &mut Exec`) in one transaction, with [`retrying`]'s bounds.
macro_rules! transaction {
    ($self:ident, $what:expr, |$c:ident| $body:block) => {
        retrying!($self, $what, async {
            let mut tx = $self.pool.begin().await?;
            let value = {
                let mut exec = tx.exec();
                let $c: &mut Exec<'_> = &mut exec;
                $body
            };
            tx.commit().await?;
            Ok(value)
        })
    };
}

/// Runs `$body` on a pooled connection without BEGIN/COMMIT (each statement is its own
/// transaction, SERIALIZABLE like every session's), with [`retrying`]'s bounds. For the
/// PostgreSQL fast paths, whose changes are one statement guarded by what it reads.
macro_rules! autocommit {
    ($self:ident, $what:expr, |$c:ident| $body:block) => {
        retrying!($self, $what, async {
            let mut held = $self.pool.acquire().await?;
            let mut exec = held.exec();
            let $c: &mut Exec<'_> = &mut exec;
            Ok($body)
        })
    };
}

/// A read on a pooled connection, bounded in time and retried like a transaction: sessions
/// are serializable, and PostgreSQL may cancel even a read-only statement with a
/// serialization failure (40001) when it sits between concurrent writers. A read is safe to
/// run again; that failure is never the caller's EIO.
macro_rules! read {
    ($self:ident, $what:expr, |$c:ident| $body:block) => {
        retrying!($self, $what, async {
            let mut held = $self.pool.acquire().await?;
            let mut exec = held.exec();
            let $c: &mut Exec<'_> = &mut exec;
            $body
        })
    };
}

/// The servers' content path: a large value goes in pieces (see [`content_row`]); the rest
/// of each mutation is the generic statements.
struct Pieces;

#[async_trait]
impl ops::Encoding for Pieces {
    async fn content(&self, c: &mut Exec<'_>, t: i64, data: &Content) -> Result<Option<i64>> {
        content_row(c, t, data).await
    }
}

impl ServerStore {
    /// The fast paths: a change PostgreSQL can make in one guarded statement, outside a
    /// transaction; `None` when the generic transaction must run. Also refuses, before
    /// anything runs, a name the database's character sets cannot hold, and moves a small
    /// file's content into its create's own statement.
    async fn fast_path(&self, change: &mut Change<'_>) -> Result<Option<Done>> {
        let versioning = self.opts.version_on_change;
        let pg = self.d == Dialect::Postgres;
        match change {
            Change::Create {
                path: p,
                new,
                data,
                user,
            } => {
                check_storable(&self.pool.text_columns(), p, new.kind == Kind::Directory)?;
                if let Some(small) = data.filter(|d| d.len() <= PIECE as u64) {
                    new.content = small.bytes()?.to_vec();
                    *data = None;
                }
                if let Some(parent) = path::parent(p)
                    && pg
                    && new.kind != Kind::Directory
                    && data.is_none()
                    && new.content.len() <= PIECE
                {
                    let name = path::name(p);
                    return Ok(Some(Done::Entry(
                        self.pg_create(p, parent, name, new, user).await?,
                    )));
                }
            }
            Change::Write {
                path: p,
                data,
                user,
                expected,
            } if pg && data.len() <= PIECE as u64 && !versioning => {
                let entry = self.pg_write(p, &data.bytes()?, user, *expected).await?;
                return Ok(Some(Done::Entry(entry)));
            }
            Change::Remove {
                path: p,
                dir: false,
                user,
            } if pg && !versioning => {
                if let Some(parent) = path::parent(p) {
                    let touched = self.pg_unlink(p, parent, user).await?;
                    return Ok(Some(Done::Touched(touched)));
                }
            }
            Change::Rename { from, to, user, .. }
                if pg
                    && !versioning
                    && check_storable(&self.pool.text_columns(), to, false).is_ok() =>
            {
                if let Some(done) = self.pg_rename(from, to, user).await? {
                    return Ok(Some(Done::Moved(Some(done))));
                }
            }
            // A resource's own attributes on PostgreSQL: one statement (chmod, chown, utimens).
            Change::SetAttr { path: p, change } if pg => {
                if let Some(parent) = path::parent(p) {
                    let (t, name) = (self.t(), path::name(p));
                    let done = autocommit!(self, "setattr", |c| {
                        pg::set_attr_resource(c, t, parent, name, change, now_ns()).await?
                    })?;
                    if let Some(entry) = done {
                        return Ok(Some(Done::Entry(entry)));
                    }
                }
            }
            _ => {}
        }
        Ok(None)
    }

    /// Carbon's update of a small resource on PostgreSQL in one statement (see [`pg::write`]).
    async fn pg_write(
        &self,
        p: &str,
        data: &[u8],
        user: &str,
        expected: Option<i64>,
    ) -> Result<Entry> {
        let t = self.t();
        autocommit!(self, "write", |c| {
            let Some((old, attrs)) = ops::file_row_with_attrs(c, t, p).await? else {
                return Err(missing_resource(c, t, p).await);
            };
            check_expected(&old, expected, p)?;
            let now = now_ns();
            let Some(version) = pg::write(c, t, &old, &attrs, data, p, user, now).await? else {
                return Err(err!(EIO, "{p} changed while it was written").transient());
            };
            resource_entry(
                &old,
                version,
                data.len() as u64,
                attrs.rewritten(version, now),
            )
        })
    }

    /// An unlink on PostgreSQL: one statement with the collection's row from an earlier
    /// operation; when that deletes nothing, the checks say why (or read the row again for
    /// the retry).
    async fn pg_unlink(&self, p: &str, parent: &str, user: &str) -> Result<SystemTime> {
        let (t, name) = (self.t(), path::name(p));
        autocommit!(self, "unlink", |c| {
            let now = now_ns();
            if let Some(dir) = self.remembered_dir(parent) {
                if pg::unlink(c, t, &dir, name, p, user, now).await? {
                    self.changed();
                    return Ok(from_ns(now));
                }
                self.forget_dir(parent);
            }
            let (parent_row, _, _) = ops::unlink_checks(c, t, p, parent).await?;
            self.remember_dir(parent, &parent_row);
            if !pg::unlink(c, t, &parent_row, name, p, user, now).await? {
                return Err(err!(EIO, "{p} changed while it was removed").transient());
            }
            self.changed();
            from_ns(now)
        })
    }

    /// Connects to a PostgreSQL or MySQL/MariaDB server.
    pub async fn open(name: &str, server: ServerOptions, opts: StoreOptions) -> Result<Self> {
        let pool = Pool::connect(&server).await?;
        pool.read_text_columns().await?;
        Ok(Self {
            name: format!("{name} ({})", crate::sql::redact(&server.url)),
            d: pool.dialect(),
            pool,
            opts,
            timeout: server.timeout,
            changes: Default::default(),
            dirs: parking_lot::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(DIR_ROWS).expect("DIR_ROWS > 0"),
            )),
        })
    }

    /// `run` bounded by the store's timeout; an EIO (that one included) gets a log line.
    async fn bounded<T>(
        &self,
        what: &str,
        run: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = match tokio::time::timeout(self.timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(err!(
                EIO,
                "{what}: the database did not answer within {:?}",
                self.timeout
            )),
        };
        if let Err(e) = &result
            && e.errno() == libc::EIO
        {
            warn!(store = %self.name, op = what, "{e}");
        }
        result
    }

    fn remembered_dir(&self, p: &str) -> Option<ResourceRow> {
        self.dirs.lock().get(p).cloned()
    }

    fn remember_dir(&self, p: &str, row: &ResourceRow) {
        self.dirs.lock().put(p.to_string(), row.clone());
    }

    fn forget_dir(&self, p: &str) {
        self.dirs.lock().pop(p);
    }

    fn t(&self) -> i64 {
        self.opts.tenant_id
    }

    /// Counts a resource created or removed. On PostgreSQL, at 1024 changes and each doubling
    /// after, the tables regfs looks names up in and joins are analyzed in the background: the
    /// planner picks its index for a name lookup from table statistics, and with statistics
    /// from when a table was small it scans every row of the tenant instead (measured:
    /// creating 10,000 files in a fresh database slowed from 2 to 8 ms per file). A listing
    /// joins REG_CONTENT and REGFS_ATTR: with their row counts stale it hashed both tables
    /// whole for every directory (20-30 ms a page instead of 1; `ls -lR` of 10,000 files took
    /// 3 s instead of 0.2). REG_CONTENT is analyzed on its keys only, so the sample never reads
    /// content. Autovacuum gets there too, but only once a minute. Without the right to
    /// analyze, PostgreSQL skips it with a warning to the server log, and nothing else changes.
    fn changed(&self) {
        use std::sync::atomic::Ordering;
        let n = self.changes.fetch_add(1, Ordering::Relaxed) + 1;
        if self.d != Dialect::Postgres || n < 1024 || !n.is_power_of_two() {
            return;
        }
        let (pool, name, timeout) = (self.pool.clone(), self.name.clone(), self.timeout);
        tokio::spawn(async move {
            let run = async {
                let mut held = pool.acquire().await?;
                held.exec()
                    .execute(
                        "ANALYZE REG_RESOURCE, REG_PATH, REGFS_ATTR, \
                         REG_CONTENT (REG_CONTENT_ID, REG_TENANT_ID)",
                        &[],
                    )
                    .await
            };
            match tokio::time::timeout(timeout * 10, run).await {
                Ok(Ok(_)) => {
                    debug!(store = %name, changes = n, "analyzed the tables of names, content and attributes")
                }
                Ok(Err(e)) => debug!(store = %name, "ANALYZE failed: {e}"),
                Err(_) => debug!(store = %name, "ANALYZE did not finish in time"),
            }
        });
    }

    /// A resource's rename on PostgreSQL in one statement (see [`pg::rename_resource`]) with
    /// the collections' rows remembered or read once; `None` when the general path must decide
    /// (a collection, an error, attributes that need defaults).
    async fn pg_rename(&self, from: &str, to: &str, user: &str) -> Result<Option<SystemTime>> {
        let t = self.t();
        let (Some(src_parent), Some(dst_parent)) = (path::parent(from), path::parent(to)) else {
            return Ok(None);
        };
        if from == to {
            return Ok(None);
        }
        autocommit!(self, "rename", |c| {
            let mut dirs = Vec::with_capacity(2);
            for p in [src_parent, dst_parent] {
                dirs.push(match self.remembered_dir(p) {
                    Some(row) => row,
                    None => match ops::collection_row(c, t, p).await? {
                        Some(row) => {
                            self.remember_dir(p, &row);
                            row
                        }
                        None => return Ok(None),
                    },
                });
            }
            let now = now_ns();
            let done = pg::rename_resource(
                c,
                t,
                &dirs[0],
                path::name(from),
                &dirs[1],
                path::name(to),
                from,
                to,
                user,
                now,
            )
            .await?;
            if !done {
                // Maybe a remembered row went stale: the general path reads everything anew.
                self.forget_dir(src_parent);
                self.forget_dir(dst_parent);
                return Ok(None);
            }
            Some(from_ns(now))
        })
    }

    /// A new empty file (or FIFO, socket, device node) on PostgreSQL: see [`pg`].
    async fn pg_create(
        &self,
        p: &str,
        parent: &str,
        name: &str,
        new: &NewEntry,
        user: &str,
    ) -> Result<Entry> {
        let t = self.t();
        let media = if new.kind == Kind::File {
            media_type_for(name)
        } else {
            None
        };
        autocommit!(self, "create", |c| {
            let now = now_ns();
            let uuid = uuid::Uuid::new_v4().to_string();
            let mut attrs = AttrRow::for_new(new, now, 0);
            // The collection's row as an earlier operation read it, if any; once more from
            // the database if that one fails its guard.
            let mut remembered = self.remembered_dir(parent);
            let version = loop {
                let fresh = remembered.is_none();
                let dir = match remembered.take() {
                    Some(row) => row,
                    None => {
                        let row = require_dir(c, t, parent).await?;
                        self.remember_dir(parent, &row);
                        row
                    }
                };
                let created = pg::create_file(
                    c,
                    t,
                    &dir,
                    p,
                    name,
                    media,
                    user,
                    &uuid,
                    &attrs,
                    &new.content,
                )
                .await?;
                if let Some(version) = created {
                    break version;
                }
                self.forget_dir(parent);
                if !fresh {
                    continue;
                }
                if any_row(c, t, p).await?.is_some() {
                    return Err(err!(EEXIST, "{p} already exists"));
                }
                return Err(err!(EIO, "{parent} changed while {p} was created").transient());
            };
            attrs.version = version;
            self.changed();
            EntryRow::from_parts(
                false,
                version,
                uuid,
                media.map(str::to_string),
                naive_from_ns(now),
                new.content.len() as u64,
                attrs,
            )
            .into_entry()
        })
    }

    /// What the catalog says about a schema Carbon's own scripts made: 4.4.x mapping tables have
    /// no ID column and REG_PATH_VALUE is not unique there.
    pub async fn probe(&self) -> Result<SchemaFlavor> {
        let schema_filter = format!("table_schema = {}", self.d.current_schema());
        // One query, three catalog counts.
        let d = self.d;
        let sql = format!(
            "SELECT {}, {}, {}",
            d.int64(&format!(
                "(SELECT COUNT(*) FROM information_schema.tables WHERE {schema_filter} \
                 AND LOWER(table_name) = 'reg_path')"
            )),
            d.int64(&format!(
                "(SELECT COUNT(*) FROM information_schema.columns WHERE {schema_filter} \
                 AND LOWER(table_name) = 'reg_resource_property' AND LOWER(column_name) = 'id')"
            )),
            d.int64(&format!(
                "(SELECT COUNT(*) FROM information_schema.table_constraints WHERE {schema_filter} \
                 AND LOWER(table_name) = 'reg_path' AND constraint_type = 'UNIQUE')"
            )),
        );
        read!(self, "probe", |c| {
            let row = c
                .fetch_opt(&sql, &[])
                .await?
                .ok_or_else(|| err!(EIO, "the catalog query returned nothing"))?;
            let count = |i| row.int(i).map(|n| n.unwrap_or(0) > 0);
            let (exists, has_id, unique_path) = (count(0)?, count(1)?, count(2)?);
            Ok(SchemaFlavor {
                exists,
                mapping_ids: has_id,
                unique_paths: unique_path,
            })
        })
    }
}

impl ServerStore {
    /// What a mount needs of the catalog: the [`REGISTRY_TABLES`] missing, and whether the
    /// index PostgreSQL's REG_CONTENT deletes need is there (MySQL has one for the foreign key).
    async fn catalog(&self) -> Result<(Vec<&'static str>, bool)> {
        let index_sql = (self.d != Dialect::MySql).then_some(
            "SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() \
             AND UPPER(indexname) = 'REGFS_RESOURCE_IND_BY_CONTENT_ID'",
        );
        read!(self, "catalog", |c| {
            let missing = c.missing_tables(REGISTRY_TABLES).await?;
            let index = match index_sql {
                Some(sql) => c.fetch_opt(sql, &[]).await?.is_some(),
                None => true,
            };
            Ok((missing, index))
        })
    }
}

/// What [`ServerStore::probe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaFlavor {
    /// The registry tables exist already.
    pub exists: bool,
    /// REG_RESOURCE_PROPERTY (and its siblings) have the ID column of 4.12.x.
    pub mapping_ids: bool,
    /// REG_PATH has 4.12.x's UNIQUE(REG_PATH_VALUE, REG_TENANT_ID).
    pub unique_paths: bool,
}

/// Content up to this size goes to and from a server in one statement. Larger content moves in
/// pieces of this size, so that the drivers, which hold a value whole, never hold more than a
/// piece.
const PIECE: usize = 4 << 20;

/// A new `REG_CONTENT` row for `data`, in pieces when it is large: on PostgreSQL the pieces
/// stream into the row through one binary `COPY` (see [`pg::copy_content`]); on MySQL they
/// are joined in a user variable on the server and inserted once, and the row's length is
/// checked, because MySQL answers a `CONCAT` over `max_allowed_packet` with NULL and a warning.
async fn content_row(c: &mut Exec<'_>, t: i64, data: &Content) -> Result<Option<i64>> {
    let len = data.len();
    if len <= PIECE as u64 {
        return insert_content(c, t, &data.bytes()?).await;
    }
    let id = match c.dialect() {
        Dialect::Postgres => match c {
            Exec::Pg(conn, _) => pg::copy_content(conn, t, data, PIECE).await?,
            _ => unreachable!("a PostgreSQL dialect on another driver"),
        },
        _ => {
            // The value is put together in a user variable on the server and inserted once.
            // Growing the row by CONCAT rewrote it whole at every piece: a 64 MiB file wrote
            // 544 MiB to InnoDB.
            let mut buf = vec![0; PIECE];
            let built = async {
                for (i, (offset, n)) in crate::content::pieces(len, PIECE).enumerate() {
                    data.read_exact_at(offset, &mut buf[..n])?;
                    let sql = if i == 0 {
                        "SET @regfs_content = ?"
                    } else {
                        "SET @regfs_content = CONCAT(@regfs_content, ?)"
                    };
                    c.execute(sql, &args![&buf[..n]]).await?;
                }
                c.insert_id(
                    "INSERT INTO REG_CONTENT (REG_CONTENT_DATA, REG_TENANT_ID) \
                     VALUES (@regfs_content, ?)",
                    "REG_CONTENT_ID",
                    &args![t],
                )
                .await
            }
            .await;
            // The variable lives as long as the pooled connection: free it in any case.
            let freed = c.execute("SET @regfs_content = NULL", &[]).await;
            let id = built?;
            freed?;
            let stored = c
                .fetch_opt(
                    "SELECT LENGTH(REG_CONTENT_DATA) FROM REG_CONTENT \
                     WHERE REG_CONTENT_ID = ? AND REG_TENANT_ID = ?",
                    &args![id, t],
                )
                .await?
                .and_then(|r| r.int(0).ok().flatten());
            if stored != Some(len as i64) {
                return Err(err!(
                    EFBIG,
                    "the server kept {stored:?} of {len} bytes: a value this large needs a \
                     larger max_allowed_packet on the server (as it would for Carbon)"
                ));
            }
            id
        }
    };
    Ok(Some(id))
}

#[async_trait]
impl Store for ServerStore {
    fn name(&self) -> &str {
        &self.name
    }

    async fn install(&self) -> Result<()> {
        let before = self.probe().await?;
        let (carbon, regfs) = match self.d {
            Dialect::Postgres | Dialect::Sqlite => (POSTGRES_SCHEMA, POSTGRES_REGFS),
            Dialect::MySql => (MYSQL_SCHEMA, MYSQL_REGFS),
        };
        let bound = self.timeout * 4;
        let ddl = |script: &'static str, what: &'static str| async move {
            tokio::time::timeout(bound, self.pool.run_ddl(script, what))
                .await
                .map_err(|_| err!(EIO, "creating {what} did not finish within {bound:?}"))?
        };
        if before.exists {
            tracing::info!(
                store = %self.name,
                "Carbon's registry tables are there ({}); adding only regfs's own objects",
                if before.mapping_ids { "4.12.x style" } else { "4.4.x style" },
            );
        } else {
            ddl(carbon, "the registry schema").await?;
        }
        ddl(regfs, "regfs's tables").await?;
        self.pool.read_text_columns().await?;
        Ok(())
    }

    async fn init(&self) -> Result<()> {
        self.apply(Change::BaseCollections).await?.nothing()
    }

    async fn apply(&self, mut change: Change<'_>) -> Result<Done> {
        if let Some(done) = self.fast_path(&mut change).await? {
            return Ok(done);
        }
        let (t, versioning) = (self.t(), self.opts.version_on_change);
        let done = transaction!(self, change.what(), |c| {
            ops::apply(c, t, &change, versioning, &Pieces).await?
        })?;
        if change.adds_or_removes() {
            self.changed();
        }
        Ok(done)
    }

    async fn check(&self) -> Result<()> {
        let (missing, index) = self.catalog().await?;
        if !missing.is_empty() {
            return Err(err!(
                ENOENT,
                "the database has no {} table{}: create {} with `regfs init` and the same \
                 --config or --wso2-conf (run once, by a database user who may create tables; \
                 a mount only reads and writes rows)",
                missing.join(", "),
                if missing.len() == 1 { "" } else { "s" },
                if missing.len() == 1 { "it" } else { "them" }
            ));
        }
        if !index {
            warn!(
                store = %self.name,
                "index REGFS_RESOURCE_IND_BY_CONTENT_ID on REG_RESOURCE is missing: removing \
                 files checks a foreign key by scanning REG_RESOURCE; `regfs init` creates it"
            );
        }
        let flavor = self.probe().await?;
        tracing::info!(
            store = %self.name,
            "registry schema: {} (mapping tables {} an ID column, REG_PATH_VALUE {})",
            if flavor.mapping_ids { "Carbon 4.12.x style" } else { "Carbon 4.4.x style" },
            if flavor.mapping_ids { "have" } else { "have no" },
            if flavor.unique_paths { "unique" } else { "not unique" },
        );
        Ok(())
    }

    async fn stat(&self, p: &str) -> Result<Option<Entry>> {
        let t = self.t();
        read!(self, "stat", |c| { stat_on(c, t, p).await })
    }

    async fn list(&self, dir: &str, after: Option<&str>, limit: u32) -> Result<Vec<DirEntry>> {
        let t = self.t();
        let d = self.d;
        let text = self.pool.text_columns();
        if !storable(&text, dir) {
            return Ok(Vec::new());
        }
        let after = after.unwrap_or("");
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        let dir_id_sql = format!(
            "(SELECT REG_PATH_ID FROM REG_PATH dp WHERE {} AND REG_TENANT_ID = ?)",
            path_eq(&text, "dp.REG_PATH_VALUE")
        );
        let name = d.bytewise("r.REG_NAME");
        let files_sql = format!(
            "{} FROM REG_RESOURCE r \
             LEFT JOIN REG_CONTENT c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID AND c.REG_TENANT_ID = r.REG_TENANT_ID \
             LEFT JOIN REGFS_ATTR a ON a.REG_UUID = r.REG_UUID AND a.REG_TENANT_ID = r.REG_TENANT_ID \
             WHERE r.REG_PATH_ID = {dir_id_sql} AND r.REG_TENANT_ID = ? AND r.REG_NAME IS NOT NULL \
             AND {name} > ? ORDER BY {name} LIMIT {limit}",
            entry_select(d, false)
        );
        let value = d.bytewise("p.REG_PATH_VALUE");
        let dirs_sql = format!(
            "SELECT p.REG_PATH_VALUE, 1, r.REG_VERSION, r.REG_UUID, r.REG_MEDIA_TYPE, \
             r.REG_CREATED_TIME, r.REG_LAST_UPDATED_TIME, 0, {ATTR_COLUMNS} \
             FROM REG_PATH p JOIN REG_RESOURCE r ON r.REG_PATH_ID = p.REG_PATH_ID \
             AND r.REG_TENANT_ID = p.REG_TENANT_ID AND r.REG_NAME IS NULL \
             LEFT JOIN REGFS_ATTR a ON a.REG_UUID = r.REG_UUID AND a.REG_TENANT_ID = r.REG_TENANT_ID \
             WHERE p.REG_PATH_PARENT_ID = {dir_id_sql} AND p.REG_TENANT_ID = ? \
             AND {value} > ? ORDER BY {value} LIMIT {limit}"
        );
        let start = format!("{prefix}{after}");
        let (files, dirs) = read!(self, "list", |c| {
            let files = c.fetch(&files_sql, &args![dir, t, t, after]).await?;
            let dirs = c.fetch(&dirs_sql, &args![dir, t, t, &start]).await?;
            Ok((files, dirs))
        })?;
        let mut out = Vec::with_capacity(files.len() + dirs.len());
        for r in &files {
            let e = entry_row(r)?;
            if let Some(name) = e.name.clone() {
                out.push(DirEntry {
                    name,
                    entry: e.into_entry(),
                });
            }
        }
        for r in &dirs {
            let mut e = entry_row(r)?;
            let Some(full) = e.name.take() else { continue };
            let Some(name) = full.strip_prefix(&prefix) else {
                continue;
            };
            if name.is_empty() || name.contains('/') {
                continue;
            }
            out.push(DirEntry {
                name: name.to_string(),
                entry: e.into_entry(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn read_content(&self, p: &str, policy: &SpoolPolicy) -> Result<(i64, Content)> {
        let Some(parent) = path::parent(p) else {
            return Err(err!(EISDIR, "the root is a collection"));
        };
        let t = self.t();
        let d = self.d;
        let text = self.pool.text_columns();
        if !storable(&text, parent) || !storable_name(&text, p) {
            return Err(err!(ENOENT, "resource {p} does not exist"));
        }
        // The version, the content row and its length, and the value itself when it is at most
        // a piece; a larger value is read in pieces after.
        let length = d.int64("LENGTH(c.REG_CONTENT_DATA)");
        let sql = format!(
            "SELECT r.REG_VERSION, c.REG_CONTENT_ID, {length}, \
             CASE WHEN LENGTH(c.REG_CONTENT_DATA) <= {PIECE} THEN c.REG_CONTENT_DATA END \
             FROM REG_PATH p JOIN REG_RESOURCE r \
             ON r.REG_PATH_ID = p.REG_PATH_ID AND r.REG_TENANT_ID = p.REG_TENANT_ID \
             AND {} LEFT JOIN REG_CONTENT c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID \
             AND c.REG_TENANT_ID = r.REG_TENANT_ID \
             WHERE {} AND p.REG_TENANT_ID = ?",
            name_eq(&text, "r.REG_NAME"),
            path_eq(&text, "p.REG_PATH_VALUE")
        );
        let position = match d {
            Dialect::Postgres => "CAST(? AS INTEGER)",
            _ => "?",
        };
        let piece_sql = format!(
            "SELECT SUBSTR(REG_CONTENT_DATA, {position}, {position}) FROM REG_CONTENT \
             WHERE REG_CONTENT_ID = ? AND REG_TENANT_ID = ?"
        );
        for _ in 0..3 {
            let row = read!(self, "read", |c| {
                c.fetch_opt(&sql, &args![path::name(p), parent, t]).await
            })?;
            let Some(row) = row else {
                return Err(err!(ENOENT, "resource {p} does not exist"));
            };
            let version = row.req_int(0)?;
            let Some(id) = row.int(1)? else {
                return Ok((version, Content::default()));
            };
            let len = row.req_int(2)?.max(0) as u64;
            if let Some(data) = row.blob(3)? {
                if !policy.spools(len) {
                    return Ok((version, data.into()));
                }
                let mut content = policy.content_for(len)?;
                content.write_at(policy, 0, &data)?;
                return Ok((version, content));
            }
            // Content rows are never changed, only replaced: a piece that is gone means a
            // writer replaced this version meanwhile, and the read starts over. All pieces
            // come over one connection: the driver keeps a buffer the size of the largest
            // row it has read, so spreading them over the pool would grow one per connection.
            let mut content = policy.content_for(len)?;
            let mut complete = true;
            // Each attempt of a piece takes the one connection anew from here.
            let held = tokio::sync::Mutex::new(self.bounded("read", self.pool.acquire()).await?);
            for (offset, n) in crate::content::pieces(len, PIECE) {
                let piece = retrying!(self, "read", async {
                    let args = args![offset as i64 + 1, n as i64, id, t];
                    held.lock().await.exec().fetch_opt(&piece_sql, &args).await
                })?;
                match piece.map(|r| r.blob(0)).transpose()?.flatten() {
                    Some(bytes) if bytes.len() == n => content.write_at(policy, offset, &bytes)?,
                    _ => {
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                return Ok((version, content));
            }
            debug!(store = %self.name, "{p} changed while it was read; reading again");
        }
        Err(err!(EIO, "{p} kept changing while it was read"))
    }

    async fn stat_version(&self, p: &str, snapshot: i64) -> Result<Option<Entry>> {
        let t = self.t();
        let found = read!(self, "stat version", |c| {
            version_row(c, t, p, snapshot).await
        })?;
        Ok(found.map(|(row, size)| version_entry(&row, size)))
    }

    async fn read_version(&self, p: &str, snapshot: i64) -> Result<(i64, Content)> {
        let t = self.t();
        read!(self, "read version", |c| {
            let Some((row, _)) = version_row(c, t, p, snapshot).await? else {
                return Err(err!(ENOENT, "{p} has no version {snapshot}"));
            };
            Ok((row.version, version_content(c, t, &row).await?))
        })
    }

    async fn check_new_name(&self, p: &str) -> Result<()> {
        let text = self.pool.text_columns();
        check_storable(&text, p, false)?;
        let merging = text.merging("REG_RESOURCE", "REG_NAME").is_some()
            || text.merging("REG_PATH", "REG_PATH_VALUE").is_some();
        let Some(parent) = path::parent(p).filter(|_| merging) else {
            return Ok(());
        };
        let t = self.t();
        read!(self, "create", |c| {
            ops::refuse_confused(c, t, ops::DirKey::Path(parent), p, None).await
        })
    }

    async fn start_feed(&self, sink: FeedSink, health: FeedHealth) -> Result<Option<String>> {
        let how = self
            .bounded(
                "change feed",
                feed::start(&self.pool, self.t(), &self.name, self.timeout, sink, health),
            )
            .await?;
        Ok(Some(how))
    }

    async fn versions(&self, p: &str) -> Result<Vec<VersionInfo>> {
        let t = self.t();
        read!(self, "versions", |c| { ops::versions(c, t, p).await })
    }

    async fn activity(&self, q: &LogQuery) -> Result<Vec<LogEntry>> {
        let t = self.t();
        read!(self, "activity log", |c| { ops::activity(c, t, q).await })
    }

    async fn metadata(&self, p: &str) -> Result<Option<Metadata>> {
        let t = self.t();
        read!(self, "getxattr", |c| { ops::metadata(c, t, p).await })
    }

    async fn link_restoration(&self, p: &str) -> Result<Option<String>> {
        let t = self.t();
        read!(self, "readlink", |c| {
            ops::link_restoration(c, t, p).await
        })
    }

    async fn space(&self) -> Result<SpaceInfo> {
        let t = self.t();
        let d = self.d;
        let sql = format!(
            "SELECT {}, {}",
            d.int64(
                "(SELECT COALESCE(SUM(LENGTH(REG_CONTENT_DATA)), 0) FROM REG_CONTENT WHERE REG_TENANT_ID = ?)"
            ),
            d.int64("(SELECT COUNT(*) FROM REG_RESOURCE WHERE REG_TENANT_ID = ?)")
        );
        let row = read!(self, "statfs", |c| {
            c.fetch_opt(&sql, &args![t, t]).await
        })?
        .ok_or_else(|| err!(EIO, "statfs query returned nothing"))?;
        Ok(SpaceInfo {
            bytes_used: row.req_int(0)?.max(0) as u64,
            entries: row.req_int(1)?.max(0) as u64,
        })
    }
}
