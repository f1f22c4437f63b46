//! What sqlx's errors mean to regfs: the errno a caller sees, whether a retry may get past
//! one (see [`crate::retry`]), and a connection that is gone ([`super::note_broken`]). Kept
//! with the SQL layer so that the crate's error type needs nothing from it.

use crate::error::Error;

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        super::note_broken(&e);
        let transient = is_retryable(&e);
        // MySQL's 1301 (a result over max_allowed_packet) and 1153 (a packet over it); its
        // code() is the SQLSTATE (HY000 / 08S01), the number tells them apart.
        if let Some(1301 | 1153) = mysql_number(&e) {
            return Error::new(
                libc::EFBIG,
                format!(
                    "database error: {e}; a value this large needs a larger max_allowed_packet \
                     on the server (as it would for Carbon)"
                ),
            );
        }
        // A unique key another writer took first: EEXIST if it is not retried away.
        let errno = match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => libc::EEXIST,
            _ => libc::EIO,
        };
        let err = Error::new(errno, format!("database error: {e}"));
        if transient { err.transient() } else { err }
    }
}

/// Whether a database error is worth retrying: lock contention, serialization failures,
/// deadlocks and duplicate-key races between concurrent writers (SQLite busy/locked,
/// PostgreSQL 40001/40P01/23505, MySQL/MariaDB 1213/1062).
pub fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            // MySQL's code() is the SQLSTATE, which lumps a duplicate key together with every
            // other integrity error (23000); its error number tells them apart. A lock wait
            // timeout (1205) is not retried: the attempt already waited its whole bound.
            if let Some(number) = mysql_number(e) {
                // ER_LOCK_DEADLOCK, ER_DUP_ENTRY
                return matches!(number, 1213 | 1062);
            }
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            matches!(
                code.as_str(),
                // SQLite: BUSY, LOCKED, BUSY_RECOVERY, BUSY_SNAPSHOT, LOCKED_SHAREDCACHE
                "5" | "6" | "261" | "517" | "262"
                // PostgreSQL
                | "40001" | "40P01" | "23505"
            )
        }
        sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}

/// A MySQL/MariaDB error's number (its `code()` is only the SQLSTATE).
fn mysql_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    }
}
