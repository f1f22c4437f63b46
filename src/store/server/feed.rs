//! The change feed of a server database: what other processes (regfs nodes, Carbon nodes)
//! commit, heard while it happens, so that this node drops what it cached of it.
//!
//! Two sources, one [`Heard`] stream:
//! - PostgreSQL with `regfs init`'s triggers: `LISTEN regfs_changes`. Each row added to REG_LOG
//!   or REGFS_CHANGE is announced at its commit with its tenant, path (and a rename's other
//!   path) and the sender's `application_name` (a node skips its own). The listening session
//!   is a connection of its own, straight to the server: a pooler in transaction mode
//!   (pgbouncer's default) does not keep a `LISTEN`.
//! - Everywhere else, and on PostgreSQL while the `LISTEN` connection is down: REG_LOG and
//!   REGFS_CHANGE polled every [`POLL_EVERY`] with a [`Cursor`], which also catches Carbon
//!   nodes' writes (Carbon logs every change in REG_LOG).
//!
//! Whenever the feed may have missed something (the `LISTEN` connection came back, polling
//! took over from it), it says [`Heard::Everything`].
//!
//! The feed keeps a [`FeedHealth`]: each poll that answers confirms it; while listening, the
//! node sends itself a heartbeat `NOTIFY` every [`HEARTBEAT_EVERY`], and its arrival confirms
//! it (PostgreSQL delivers notifications in commit order: whatever committed before the
//! heartbeat was heard before it). A `LISTEN` session whose heartbeats stop coming back for
//! [`DEAF_AFTER`] (a dead peer the socket has not noticed) is given up for polling.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::args;
use crate::error::Result;
use crate::sql::{self as db, Exec, Pool};
use crate::store::{FeedHealth, FeedSink, Heard};

/// The channel `regfs init`'s triggers notify (see `postgres_regfs.sql`).
pub const CHANNEL: &str = "regfs_changes";

/// How often REG_LOG and REGFS_CHANGE are polled when nothing pushes changes.
pub const POLL_EVERY: Duration = Duration::from_millis(100);

/// How often a listening node sends itself a heartbeat notification.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// A `LISTEN` session that has not brought a heartbeat back for this long is taken for deaf:
/// polling takes over until it hears again.
pub const DEAF_AFTER: Duration = Duration::from_secs(5);

/// How long an id skipped by the ids after it is asked for again: the row of a transaction
/// still in flight shows up later; the id of one that rolled back (or a sequence's cache
/// lost at a restart) never does.
const GAP_WAIT: Duration = Duration::from_secs(30);

/// At most this many skipped ids are remembered per table (the newest).
const MAX_GAPS: usize = 256;

/// Rows read per table and poll; a poll that gets this many polls again at once.
const BATCH: usize = 500;

/// REGFS_CHANGE rows older than this are deleted (every [`PRUNE_EVERY`], by each node).
const PRUNE_AFTER_MS: i64 = 10 * 60 * 1000;
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Where a poll of one table has got to. Ids are handed out at insert but become visible at
/// commit, so a row may appear below ids already seen: every id skipped over is a gap, asked
/// for again until it shows up or [`GAP_WAIT`] has passed, so that no committed row is missed.
#[derive(Debug, Default, Clone)]
pub struct Cursor {
    max: i64,
    gaps: BTreeMap<i64, Instant>,
}

impl Cursor {
    /// A cursor after every row up to `max`.
    pub fn at(max: i64) -> Self {
        Cursor {
            max,
            gaps: BTreeMap::new(),
        }
    }

    /// The highest id seen.
    pub fn max(&self) -> i64 {
        self.max
    }

    /// The ids skipped and still awaited.
    pub fn gaps(&self) -> impl Iterator<Item = i64> + '_ {
        self.gaps.keys().copied()
    }

    /// Takes in the row `id`, seen at `now`: whether it is new (not seen before).
    pub fn saw(&mut self, id: i64, now: Instant) -> bool {
        if id > self.max {
            let from = (self.max + 1).max(id - MAX_GAPS as i64);
            for gap in from..id {
                self.gaps.insert(gap, now);
            }
            while self.gaps.len() > MAX_GAPS {
                self.gaps.pop_first();
            }
            self.max = id;
            true
        } else {
            self.gaps.remove(&id).is_some()
        }
    }

    /// Gives up on gaps older than [`GAP_WAIT`] at `now`.
    pub fn expire(&mut self, now: Instant) {
        self.gaps
            .retain(|_, since| now.duration_since(*since) < GAP_WAIT);
    }
}

/// One polled table: its name, id column and what else a row says.
struct Table {
    name: &'static str,
    id: &'static str,
    /// A second path column (REG_LOG's action data: a rename's other end), or `NULL`.
    other: &'static str,
}

const TABLES: [Table; 2] = [
    Table {
        name: "REG_LOG",
        id: "REG_LOG_ID",
        other: "REG_ACTION_DATA",
    },
    Table {
        name: "REGFS_CHANGE",
        id: "REGFS_CHANGE_ID",
        other: "NULL",
    },
];

/// The highest id of each polled table now: the cursors a feed starts from.
async fn cursors_now(c: &mut Exec<'_>) -> Result<Vec<Cursor>> {
    let mut out = Vec::with_capacity(TABLES.len());
    for t in &TABLES {
        let sql = format!("SELECT COALESCE(MAX({}), 0) FROM {}", t.id, t.name);
        let max = c
            .fetch_opt(&sql, &[])
            .await?
            .map_or(Ok(0), |r| r.req_int(0))?;
        out.push(Cursor::at(max));
    }
    Ok(out)
}

/// The paths of tenant `tenant` changed in rows not seen yet; `more`: a table gave a full
/// batch.
async fn poll(
    c: &mut Exec<'_>,
    cursors: &mut [Cursor],
    tenant: i64,
) -> Result<(Vec<String>, bool)> {
    let now = Instant::now();
    let mut paths = Vec::new();
    let mut more = false;
    for (t, cursor) in TABLES.iter().zip(cursors.iter_mut()) {
        cursor.expire(now);
        let gaps: Vec<String> = cursor.gaps().map(|g| g.to_string()).collect();
        let awaited = if gaps.is_empty() {
            String::new()
        } else {
            format!(" OR {} IN ({})", t.id, gaps.join(", "))
        };
        let sql = format!(
            "SELECT {id}, REG_TENANT_ID, REG_PATH, {other} FROM {name} WHERE {id} > ?{awaited} \
             ORDER BY {id} LIMIT {BATCH}",
            id = t.id,
            other = t.other,
            name = t.name,
        );
        let rows = c.fetch(&sql, &args![cursor.max()]).await?;
        more |= rows.len() >= BATCH;
        for row in rows {
            if !cursor.saw(row.req_int(0)?, now) || row.int(1)? != Some(tenant) {
                continue;
            }
            if let Some(p) = row.text(2)? {
                paths.push(p);
            }
            if let Some(p) = row.text(3)?.filter(|p| p.starts_with('/')) {
                paths.push(p);
            }
        }
    }
    Ok((paths, more))
}

/// A notification's payload (see `postgres_regfs.sql`).
#[derive(serde::Deserialize)]
struct Payload {
    t: i64,
    p: Option<String>,
    #[serde(default)]
    d: Option<String>,
    #[serde(default)]
    n: Option<String>,
    /// A heartbeat (see [`HEARTBEAT_EVERY`]): no change.
    #[serde(default)]
    hb: bool,
    /// The user-management tables changed (see [`crate::um`]): no path.
    #[serde(default)]
    um: bool,
}

/// Whether PostgreSQL's triggers from `regfs init` are there to push changes.
async fn has_triggers(c: &mut Exec<'_>) -> Result<bool> {
    let row = c
        .fetch_opt(
            "SELECT COUNT(*) FROM pg_trigger WHERE NOT tgisinternal \
             AND tgname IN ('regfs_log_notify', 'regfs_change_notify')",
            &[],
        )
        .await?;
    Ok(row.map_or(Ok(0), |r| r.req_int(0))? == 2)
}

/// Starts the feed of the database behind `pool` for tenant `tenant`; `store` names it in the
/// log. Returns how it hears changes. The tasks end when `sink` says nobody listens.
pub async fn start(
    pool: &Pool,
    tenant: i64,
    store: &str,
    timeout: Duration,
    sink: FeedSink,
    health: FeedHealth,
) -> Result<String> {
    let (cursors, pushes) = {
        let mut held = pool.acquire().await?;
        let mut c = held.exec();
        let cursors = cursors_now(&mut c).await?;
        let pushes = c.dialect() == db::Dialect::Postgres && has_triggers(&mut c).await?;
        (cursors, pushes)
    };
    let listening = Arc::new(AtomicBool::new(false));
    let how = if pushes {
        match pool.listener(CHANNEL).await? {
            Some(listener) => {
                listening.store(true, Ordering::SeqCst);
                tokio::spawn(listen(
                    listener,
                    tenant,
                    store.to_string(),
                    sink.clone(),
                    listening.clone(),
                    health.clone(),
                ));
                format!("LISTEN {CHANNEL} (REG_LOG polled while it is down)")
            }
            None => format!("REG_LOG and REGFS_CHANGE polled every {POLL_EVERY:?}"),
        }
    } else {
        if pool.dialect() == db::Dialect::Postgres {
            warn!(
                store,
                "the change-feed triggers (regfs_log_notify, regfs_change_notify) are missing: \
                 changes made elsewhere are polled every {POLL_EVERY:?} instead of pushed; \
                 `regfs init` creates them"
            );
        }
        format!("REG_LOG and REGFS_CHANGE polled every {POLL_EVERY:?}")
    };
    tokio::spawn(poll_loop(
        pool.clone(),
        tenant,
        store.to_string(),
        timeout,
        cursors,
        sink,
        Liveness { listening, health },
    ));
    Ok(how)
}

/// The `LISTEN` half: every notification from another process becomes [`Heard::Paths`].
async fn listen(
    mut listener: sqlx::postgres::PgListener,
    tenant: i64,
    store: String,
    sink: FeedSink,
    listening: Arc<AtomicBool>,
    health: FeedHealth,
) {
    let me = db::node_name();
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => {
                if !listening.swap(true, Ordering::SeqCst) {
                    info!(store, "change feed: listening again");
                }
                let payload: Payload = match serde_json::from_str(n.payload()) {
                    Ok(p) => p,
                    Err(e) => {
                        debug!(
                            store,
                            "change feed: a notification regfs cannot read ({e}): dropping everything cached"
                        );
                        if !sink(Heard::Everything) {
                            return;
                        }
                        continue;
                    }
                };
                let mine = payload.n.as_deref() == Some(me);
                if payload.hb {
                    if mine {
                        health.confirm();
                    }
                    continue;
                }
                if payload.t != tenant || mine {
                    continue;
                }
                if payload.um {
                    if !sink(Heard::Permissions) {
                        return;
                    }
                    continue;
                }
                let paths: Vec<String> = payload
                    .p
                    .into_iter()
                    .chain(payload.d.filter(|d| d.starts_with('/')))
                    .collect();
                if !sink(Heard::Paths(paths)) {
                    return;
                }
            }
            Ok(None) => {
                warn!(
                    store,
                    "change feed: the LISTEN connection was lost and is back; what changed \
                     meanwhile is unknown, so every cached entry is dropped"
                );
                listening.store(true, Ordering::SeqCst);
                if !sink(Heard::Everything) {
                    return;
                }
            }
            Err(e) => {
                health.lost();
                if listening.swap(false, Ordering::SeqCst) {
                    warn!(
                        store,
                        "change feed: the LISTEN connection failed ({e}); polling REG_LOG until \
                         it is back"
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Whether the pushed feed is listening, and what the feed knows of itself.
struct Liveness {
    listening: Arc<AtomicBool>,
    health: FeedHealth,
}

/// The polling half: runs while nothing pushes (always on MySQL), sends the heartbeats while
/// something does, and deletes old REGFS_CHANGE rows.
async fn poll_loop(
    pool: Pool,
    tenant: i64,
    store: String,
    timeout: Duration,
    cursors: Vec<Cursor>,
    sink: FeedSink,
    live: Liveness,
) {
    let Liveness { listening, health } = live;
    let mut cursors = Some(cursors);
    let mut failing = false;
    let mut pruned = Instant::now();
    // Since when, while listening, no heartbeat came back.
    let mut unanswered: Option<Instant> = None;
    let mut beat = Instant::now() - HEARTBEAT_EVERY;
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Nobody listens any more: the mount is gone.
        if !sink(Heard::Paths(Vec::new())) {
            return;
        }
        if pruned.elapsed() >= PRUNE_EVERY {
            pruned = Instant::now();
            prune(&pool, &store, timeout).await;
        }
        if listening.load(Ordering::SeqCst) {
            // The pushed feed has it; polling starts afresh (and says Everything) if it fails.
            cursors = None;
            if health.fresh(HEARTBEAT_EVERY) {
                unanswered = None;
            }
            let since = *unanswered.get_or_insert_with(Instant::now);
            if since.elapsed() >= DEAF_AFTER {
                warn!(
                    store,
                    "change feed: the LISTEN session brought no heartbeat back for {DEAF_AFTER:?}; \
                     polling REG_LOG until it hears again"
                );
                health.lost();
                listening.store(false, Ordering::SeqCst);
                unanswered = None;
            } else if beat.elapsed() >= HEARTBEAT_EVERY {
                beat = Instant::now();
                heartbeat(&pool, tenant, &store, timeout).await;
            }
            continue;
        }
        let run = async {
            let mut held = pool.acquire().await?;
            let mut c = held.exec();
            match cursors.as_mut() {
                None => {
                    cursors = Some(cursors_now(&mut c).await?);
                    Ok(None)
                }
                Some(cur) => {
                    let mut all = Vec::new();
                    loop {
                        let (paths, more) = poll(&mut c, cur, tenant).await?;
                        all.extend(paths);
                        if !more {
                            break;
                        }
                    }
                    Ok::<_, crate::Error>(Some(all))
                }
            }
        };
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(crate::err!(EIO, "no answer within {timeout:?}")),
        };
        match result {
            Ok(heard) => {
                if std::mem::take(&mut failing) {
                    info!(store, "change feed: reading REG_LOG again");
                }
                let heard = match heard {
                    // Polling took over from the pushed feed: what fell between is unknown.
                    None => Heard::Everything,
                    Some(paths) if paths.is_empty() => {
                        health.confirm();
                        continue;
                    }
                    Some(paths) => Heard::Paths(paths),
                };
                if !sink(heard) {
                    return;
                }
                health.confirm();
            }
            Err(e) => {
                health.lost();
                if !std::mem::replace(&mut failing, true) {
                    warn!(store, "change feed: cannot read REG_LOG: {e}");
                }
            }
        }
    }
}

/// Sends this node a heartbeat through the `LISTEN` channel (see [`HEARTBEAT_EVERY`]). A
/// failure only shows as heartbeats that do not come back.
async fn heartbeat(pool: &Pool, tenant: i64, store: &str, timeout: Duration) {
    let payload = serde_json::json!({ "t": tenant, "n": db::node_name(), "hb": true }).to_string();
    let run = async {
        let mut held = pool.acquire().await?;
        held.exec()
            .execute("SELECT pg_notify(?, ?)", &args![CHANNEL, payload.as_str()])
            .await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => debug!(store, "change feed: heartbeat not sent: {e}"),
        Err(_) => debug!(store, "change feed: heartbeat not sent within {timeout:?}"),
    }
}

/// Deletes REGFS_CHANGE rows every node has long read.
async fn prune(pool: &Pool, store: &str, timeout: Duration) {
    let before = crate::store::rows::now_ns() / 1_000_000 - PRUNE_AFTER_MS;
    let run = async {
        let mut held = pool.acquire().await?;
        held.exec()
            .execute(
                "DELETE FROM REGFS_CHANGE WHERE REGFS_TIME_MS < ?",
                &args![before],
            )
            .await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(n)) if n > 0 => debug!(
            store,
            rows = n,
            "change feed: old REGFS_CHANGE rows deleted"
        ),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => debug!(
            store,
            "change feed: cannot delete old REGFS_CHANGE rows: {e}"
        ),
        Err(_) => debug!(
            store,
            "change feed: deleting old REGFS_CHANGE rows took too long"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_committed_out_of_id_order_are_all_seen_once() {
        let now = Instant::now();
        let mut c = Cursor::at(10);
        // 12 and 14 commit first; 11 and 13 are still in flight.
        assert!(c.saw(12, now));
        assert!(c.saw(14, now));
        assert_eq!(c.gaps().collect::<Vec<_>>(), vec![11, 13]);
        // They show up later, below the ids already seen: new, once.
        assert!(c.saw(13, now));
        assert!(!c.saw(13, now));
        assert!(!c.saw(12, now));
        assert!(c.saw(11, now));
        assert_eq!(c.gaps().count(), 0);
        assert_eq!(c.max(), 14);
    }

    #[test]
    fn gaps_are_bounded_in_number_and_time() {
        let now = Instant::now();
        let mut c = Cursor::at(0);
        assert!(c.saw(100_000, now));
        assert_eq!(c.gaps().count(), MAX_GAPS);
        assert_eq!(c.gaps().next(), Some(100_000 - MAX_GAPS as i64));
        c.expire(now + GAP_WAIT);
        assert_eq!(c.gaps().count(), 0);
    }
}
