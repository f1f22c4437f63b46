//! One error type for the whole crate: every error carries the errno a FUSE caller will see and a
//! message that says why, so the adapter can log the reason next to the errno it returns.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    errno: i32,
    message: String,
    /// A database conflict that a retry of the whole transaction may get past.
    transient: bool,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        Self {
            errno,
            message: message.into(),
            transient: false,
        }
    }

    /// Marks a conflict that a retry of the whole transaction may get past.
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }

    pub fn is_transient(&self) -> bool {
        self.transient
    }

    pub fn errno(&self) -> i32 {
        self.errno
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// `err!(ENOENT, "no such thing: {}", path)` builds an [`Error`] with an errno from `libc`.
#[macro_export]
macro_rules! err {
    ($errno:ident, $($arg:tt)*) => {
        $crate::error::Error::new(libc::$errno, format!($($arg)*))
    };
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        crate::sql::note_broken(&e);
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
        let mut err = Error::new(errno, format!("database error: {e}"));
        err.transient = transient;
        err
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let (errno, transient) = match e.sqlite_error() {
            Some(f) => match f.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => (libc::EIO, true),
                // A unique key another writer took first.
                ErrorCode::ConstraintViolation
                    if matches!(
                        f.extended_code,
                        rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    ) =>
                {
                    (libc::EEXIST, false)
                }
                ErrorCode::DiskFull => (libc::ENOSPC, false),
                _ => (libc::EIO, false),
            },
            None => (libc::EIO, false),
        };
        let mut err = Error::new(errno, format!("database error: {e}"));
        err.transient = transient;
        err
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(e.raw_os_error().unwrap_or(libc::EIO), e.to_string())
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
