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
