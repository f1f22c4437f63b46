//! Server connections: a pool per database (PostgreSQL or MySQL/MariaDB), connections checked
//! before use after one broke, and a clear error for a database that cannot be reached.

use std::time::Duration;

use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection, Postgres};
use sqlx::{Connection as _, Executor};

use super::text::TextColumns;
use super::{Dialect, Exec};
use crate::err;
use crate::error::{Error, Result};

/// A pool of server connections, with what its database's catalog says of the text columns
/// ([`Pool::read_text_columns`]).
#[derive(Clone)]
pub struct Pool {
    kind: PoolKind,
    text: std::sync::Arc<parking_lot::RwLock<std::sync::Arc<TextColumns>>>,
    /// How to open a PostgreSQL connection of its own, for the change feed's `LISTEN`.
    listen: Option<Box<PgConnectOptions>>,
}

/// The `application_name` of this process's PostgreSQL connections: the change feed's
/// notifications carry it, so that a node skips the changes it made itself.
pub fn node_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| format!("regfs-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))
}

#[derive(Clone)]
enum PoolKind {
    Pg(sqlx::PgPool),
    My(sqlx::MySqlPool),
}

impl PoolKind {
    fn dialect(&self) -> Dialect {
        match self {
            PoolKind::Pg(_) => Dialect::Postgres,
            PoolKind::My(_) => Dialect::MySql,
        }
    }
}

/// A connection taken from the pool.
pub struct Held {
    conn: HeldConn,
    text: std::sync::Arc<TextColumns>,
}

enum HeldConn {
    Pg(sqlx::pool::PoolConnection<Postgres>),
    My(sqlx::pool::PoolConnection<MySql>),
}

/// An open transaction.
pub struct Tx {
    tx: TxConn,
    text: std::sync::Arc<TextColumns>,
}

enum TxConn {
    Pg(sqlx::Transaction<'static, Postgres>),
    My(sqlx::Transaction<'static, MySql>),
}

impl Held {
    pub fn exec(&mut self) -> Exec<'_> {
        match &mut self.conn {
            HeldConn::Pg(c) => Exec::Pg(&mut *c, &self.text),
            HeldConn::My(c) => Exec::My(&mut *c, &self.text),
        }
    }
}

impl Tx {
    pub fn exec(&mut self) -> Exec<'_> {
        match &mut self.tx {
            TxConn::Pg(t) => Exec::Pg(&mut *t, &self.text),
            TxConn::My(t) => Exec::My(&mut *t, &self.text),
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self.tx {
            TxConn::Pg(t) => t.commit().await?,
            TxConn::My(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// How to reach a server and how long to wait for it.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub url: String,
    pub password: Option<String>,
    pub max_connections: u32,
    /// The bound on waiting for a connection and on one statement.
    pub timeout: Duration,
}

impl Pool {
    /// Connects to the server the URL names (`postgres://`, `postgresql://`, `mysql://`,
    /// `mariadb://`). Serializable isolation, so that concurrent nodes cannot both create the
    /// same name; conflicts are retried by the caller.
    pub async fn connect(o: &ServerOptions) -> Result<Pool> {
        let ms = o.timeout.as_millis().max(1) as u64;
        let secs = o.timeout.as_secs().max(1);
        let scheme = o.url.split(':').next().unwrap_or("");
        let safe = redact(&o.url);
        match scheme {
            "postgres" | "postgresql" => {
                let mut opts: PgConnectOptions = o
                    .url
                    .parse()
                    .map_err(|e| err!(EINVAL, "bad PostgreSQL URL {safe}: {e}"))?;
                if let Some(p) = &o.password {
                    opts = opts.password(p);
                }
                let statement_timeout = ms.to_string();
                let lock_timeout = ms.to_string();
                let listen = opts.clone().application_name(node_name());
                opts = opts.application_name(node_name()).options([
                    ("default_transaction_isolation", "serializable"),
                    ("statement_timeout", statement_timeout.as_str()),
                    ("lock_timeout", lock_timeout.as_str()),
                ]);
                probe_connect(o, PgConnection::connect_with(&opts), "PostgreSQL").await?;
                let pool = pool_options::<Postgres>(o)
                    .connect_with(opts)
                    .await
                    .map_err(|e| err!(EIO, "cannot connect to PostgreSQL at {safe}: {e}"))?;
                let mut pool = Pool::new(PoolKind::Pg(pool));
                pool.listen = Some(Box::new(listen));
                Ok(pool)
            }
            "mysql" | "mariadb" => {
                let url = o.url.replacen("mariadb:", "mysql:", 1);
                let mut opts: MySqlConnectOptions = url
                    .parse()
                    .map_err(|e| err!(EINVAL, "bad MySQL URL {safe}: {e}"))?;
                if let Some(p) = &o.password {
                    opts = opts.password(p);
                }
                opts = opts.charset("utf8mb4");
                let init = format!("SET SESSION innodb_lock_wait_timeout = {secs}");
                probe_connect(o, MySqlConnection::connect_with(&opts), "MySQL").await?;
                let pool = pool_options::<MySql>(o)
                    .after_connect(move |conn, _| {
                        let init = init.clone();
                        Box::pin(async move {
                            conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                                .await?;
                            conn.execute(sqlx::AssertSqlSafe(init)).await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await
                    .map_err(|e| err!(EIO, "cannot connect to MySQL at {safe}: {e}"))?;
                Ok(Pool::new(PoolKind::My(pool)))
            }
            other => Err(err!(
                EINVAL,
                "unsupported database URL scheme {other:?} in {safe}"
            )),
        }
    }

    fn new(kind: PoolKind) -> Pool {
        let empty = TextColumns::empty(kind.dialect());
        Pool {
            kind,
            text: std::sync::Arc::new(parking_lot::RwLock::new(std::sync::Arc::new(empty))),
            listen: None,
        }
    }

    /// A `LISTEN` on `channel` over a connection of its own, outside the pool (a
    /// notification needs a session that stays, not one a transaction-mode pooler hands
    /// around); `None` on MySQL. It reconnects by itself (see [`sqlx::postgres::PgListener`]).
    pub async fn listener(&self, channel: &str) -> Result<Option<sqlx::postgres::PgListener>> {
        let Some(opts) = &self.listen else {
            return Ok(None);
        };
        let pool = sqlx::pool::PoolOptions::<Postgres>::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with((**opts).clone());
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
            .await
            .map_err(unreachable_db)?;
        listener.listen(channel).await.map_err(unreachable_db)?;
        Ok(Some(listener))
    }

    pub fn dialect(&self) -> Dialect {
        self.kind.dialect()
    }

    /// What [`Pool::read_text_columns`] read last.
    pub fn text_columns(&self) -> std::sync::Arc<TextColumns> {
        self.text.read().clone()
    }

    /// Reads the text columns' character sets and collations from the catalog (see
    /// [`TextColumns`]); every connection taken after this compares and checks names by them.
    /// Call again after the schema changed (`regfs init`).
    pub async fn read_text_columns(&self) -> Result<std::sync::Arc<TextColumns>> {
        let mut held = self.acquire().await?;
        let text = std::sync::Arc::new(TextColumns::probe(&mut held.exec()).await?);
        *self.text.write() = text.clone();
        Ok(text)
    }

    /// Runs a DDL script ([`Exec::script`]), retried a few times: nodes starting together race
    /// on `CREATE ... IF NOT EXISTS` (PostgreSQL reports a duplicate catalog row, MySQL a
    /// deadlock on metadata locks), and the loser's next attempt finds the objects there.
    pub async fn run_ddl(&self, script: &str, what: &str) -> Result<()> {
        let mut attempt = 0u32;
        loop {
            let result = async {
                let mut held = self.acquire().await?;
                held.exec().script(script).await
            }
            .await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 4 && !e.message().contains("unreachable") => {
                    attempt += 1;
                    tracing::debug!(attempt, "retrying {what}: {e}");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(err!(EIO, "cannot create {what}: {}", e.message())),
            }
        }
    }

    pub async fn acquire(&self) -> Result<Held> {
        let conn = match &self.kind {
            PoolKind::Pg(p) => HeldConn::Pg(p.acquire().await.map_err(unreachable_db)?),
            PoolKind::My(p) => HeldConn::My(p.acquire().await.map_err(unreachable_db)?),
        };
        Ok(Held {
            conn,
            text: self.text.read().clone(),
        })
    }

    pub async fn begin(&self) -> Result<Tx> {
        let tx = match &self.kind {
            PoolKind::Pg(p) => TxConn::Pg(p.begin().await.map_err(unreachable_db)?),
            PoolKind::My(p) => TxConn::My(p.begin().await.map_err(unreachable_db)?),
        };
        Ok(Tx {
            tx,
            text: self.text.read().clone(),
        })
    }
}

/// The pool settings both servers share: the size, the bound on waiting for a connection, and
/// a ping only for connections that have been idle.
fn pool_options<DB: sqlx::Database>(o: &ServerOptions) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(o.max_connections.max(1))
        .acquire_timeout(o.timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| Box::pin(ping_if_idle(conn, meta)))
}

/// A pooled connection is pinged before use only when it has been idle for a while: one in
/// steady use answered a moment ago, and a ping per statement would double every round trip.
/// A connection the server dropped (a restart) fails the ping and is replaced.
async fn ping_if_idle<C: sqlx::Connection>(
    conn: &mut C,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> std::result::Result<bool, sqlx::Error> {
    if meta.idle_for > Duration::from_millis(500) || recently_broken() {
        conn.ping().await?;
    }
    Ok(true)
}

/// When (ms since the Unix epoch) a connection last failed under a statement ([`note_broken`]).
static BROKEN_AT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long after a broken connection every connection is pinged before use.
const SUSPECT_FOR_MS: u64 = 30_000;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Takes note of an error that means the connection under it is gone (the server restarted
/// or dropped it). Its siblings in the pool are likely gone too, and a connection in steady
/// use is not pinged before it is handed out (see [`ping_if_idle`]): for a while every one is,
/// so that each dead one is replaced instead of failing an operation with EIO after the
/// server is back.
pub fn note_broken(e: &sqlx::Error) {
    // SQLSTATE class 08 (connection exception) and 57P (the server shut down or crashed:
    // "terminating connection due to unexpected postmaster exit") end the session too.
    let ended = match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    };
    if ended {
        BROKEN_AT_MS.store(unix_ms(), std::sync::atomic::Ordering::Relaxed);
    }
}

fn recently_broken() -> bool {
    let at = BROKEN_AT_MS.load(std::sync::atomic::Ordering::Relaxed);
    at != 0 && unix_ms().saturating_sub(at) < SUSPECT_FOR_MS
}

/// One direct connection first: a pool only reports "timed out" when connecting fails, and the
/// operator needs the server's own reason (refused, bad password, no such database).
async fn probe_connect<C: sqlx::Connection>(
    o: &ServerOptions,
    connect: impl std::future::Future<Output = std::result::Result<C, sqlx::Error>>,
    what: &str,
) -> Result<()> {
    let safe = redact(&o.url);
    match tokio::time::timeout(o.timeout, connect).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(err!(EIO, "cannot connect to {what} at {safe}: {e}")),
        Err(_) => Err(err!(
            EIO,
            "cannot connect to {what} at {safe}: no answer within {:?}",
            o.timeout
        )),
    }
}

/// A pool error: the server is down or does not answer. Never retried inside one operation
/// (the wait is already bounded by the acquire timeout).
fn unreachable_db(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::PoolTimedOut => err!(
            EIO,
            "database unreachable: no connection within the timeout"
        ),
        other => {
            let e = Error::from(other);
            if e.is_transient() {
                e
            } else {
                err!(EIO, "database unreachable: {}", e.message())
            }
        }
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
