//! The SQL layer every store and the user-management tables use: one value-level query API over
//! PostgreSQL, MySQL/MariaDB and SQLite connections, so that what they say is written once. SQL
//! is written with `?` placeholders in order; for PostgreSQL they become `$1..$n`. Values are
//! bound with their Rust type, and rows are read by position, with integer widths widened to
//! `i64` (PostgreSQL's INTEGER columns are 32-bit).
//!
//! `pool` opens and keeps server connections (and tells a dead connection from a conflict);
//! `text` reads from the catalog how each text column stores and compares names.

use chrono::NaiveDateTime;
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Column, Executor, Row as _, TypeInfo};

use crate::err;
use crate::error::{Error, Result};

mod errors;
mod pool;
pub mod text;

pub use errors::is_retryable;
pub use pool::{Held, Pool, ServerOptions, Tx, node_name, note_broken, redact};
use text::TextColumns;

/// Longest collection path on SQLite (see [`Dialect::max_path`]).
pub const SQLITE_MAX_PATH: usize = 32 * 1024;

/// The SQL dialect of a server data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl Dialect {
    /// Null-safe equality.
    pub fn null_eq(self) -> &'static str {
        match self {
            Dialect::Postgres => "IS NOT DISTINCT FROM",
            Dialect::MySql => "<=>",
            Dialect::Sqlite => "IS",
        }
    }

    /// `expr` compared and sorted by bytes, whatever the column's collation. On MySQL as the
    /// UTF-8 bytes (code point order), since every `_bin` collation there pads with spaces and
    /// would sort `a` and `a ` as one.
    pub fn bytewise(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("({expr}) COLLATE \"C\""),
            Dialect::MySql => format!("CAST(CONVERT({expr} USING utf8mb4) AS BINARY)"),
            Dialect::Sqlite => format!("({expr})"),
        }
    }

    /// The catalog's name for the schema this connection works in, for `information_schema`
    /// queries (`table_schema = ...`).
    pub fn current_schema(self) -> &'static str {
        match self {
            Dialect::Postgres | Dialect::Sqlite => "current_schema()",
            Dialect::MySql => "DATABASE()",
        }
    }

    /// `expr` as a 64-bit integer (MySQL's SUM gives DECIMAL).
    pub fn int64(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("CAST({expr} AS BIGINT)"),
            Dialect::MySql => format!("CAST({expr} AS SIGNED)"),
            Dialect::Sqlite => format!("CAST({expr} AS INTEGER)"),
        }
    }

    /// Upsert of REGFS_ATTR's times: the clause after `INSERT ... VALUES (...)`.
    pub fn on_attr_conflict(self, all: bool) -> &'static str {
        match (self, all) {
            (Dialect::Postgres | Dialect::Sqlite, false) => {
                " ON CONFLICT (REG_UUID, REG_TENANT_ID) DO UPDATE SET MTIME_NS = excluded.MTIME_NS, \
                 CTIME_NS = excluded.CTIME_NS, REG_VERSION = excluded.REG_VERSION"
            }
            (Dialect::Postgres | Dialect::Sqlite, true) => {
                " ON CONFLICT (REG_UUID, REG_TENANT_ID) DO UPDATE SET MODE = excluded.MODE, \
                 UID = excluded.UID, GID = excluded.GID, RDEV = excluded.RDEV, \
                 ATIME_NS = excluded.ATIME_NS, MTIME_NS = excluded.MTIME_NS, \
                 CTIME_NS = excluded.CTIME_NS, REG_VERSION = excluded.REG_VERSION"
            }
            (Dialect::MySql, false) => {
                " ON DUPLICATE KEY UPDATE MTIME_NS = VALUES(MTIME_NS), CTIME_NS = VALUES(CTIME_NS), \
                 REG_VERSION = VALUES(REG_VERSION)"
            }
            (Dialect::MySql, true) => {
                " ON DUPLICATE KEY UPDATE MODE = VALUES(MODE), UID = VALUES(UID), GID = VALUES(GID), \
                 RDEV = VALUES(RDEV), ATIME_NS = VALUES(ATIME_NS), MTIME_NS = VALUES(MTIME_NS), \
                 CTIME_NS = VALUES(CTIME_NS), REG_VERSION = VALUES(REG_VERSION)"
            }
        }
    }

    /// The longest collection path the schema can hold: `REG_PATH_VALUE`'s width in Carbon's
    /// schema on the servers, where a Carbon node may share the database. SQLite does not
    /// enforce a declared width and no Carbon node runs on it, so there the limit is regfs's
    /// own: room for a path as long as the kernel hands over in one call (PATH_MAX, 4096 bytes)
    /// below directories already several levels deep, as POSIX tools expect, and bounded
    /// because every collection stores its whole path (a chain costs the square of its depth).
    pub fn max_path(self) -> usize {
        match self {
            Dialect::Postgres => 2000,
            Dialect::MySql => 750,
            Dialect::Sqlite => SQLITE_MAX_PATH,
        }
    }

    /// Why [`Self::max_path`] is what it is, for the ENAMETOOLONG log line.
    pub fn max_path_reason(self) -> &'static str {
        match self {
            Dialect::Postgres => "the width of REG_PATH_VALUE in Carbon's PostgreSQL schema",
            Dialect::MySql => "the width of REG_PATH_VALUE in Carbon's MySQL schema",
            Dialect::Sqlite => "regfs's limit for the embedded database",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL",
            Dialect::Sqlite => "SQLite",
        }
    }
}

/// A value to bind.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(&'a [u8]),
    Time(NaiveDateTime),
}

impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Val::Int(Some(v))
    }
}
impl From<Option<i64>> for Val<'_> {
    fn from(v: Option<i64>) -> Self {
        Val::Int(v)
    }
}
impl<'a> From<&'a str> for Val<'a> {
    fn from(v: &'a str) -> Self {
        Val::Text(Some(v))
    }
}
impl<'a> From<&'a String> for Val<'a> {
    fn from(v: &'a String) -> Self {
        Val::Text(Some(v))
    }
}
impl<'a> From<Option<&'a str>> for Val<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Val::Text(v)
    }
}
impl<'a> From<&'a [u8]> for Val<'a> {
    fn from(v: &'a [u8]) -> Self {
        Val::Blob(v)
    }
}
impl From<NaiveDateTime> for Val<'_> {
    fn from(v: NaiveDateTime) -> Self {
        Val::Time(v)
    }
}

/// `args![a, b, c]` builds a `[Val; N]`.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        [$($crate::sql::Val::from($v)),*]
    };
}

/// A result row.
pub enum Row {
    Pg(PgRow),
    My(MySqlRow),
    /// A row read through rusqlite (every SQLite connection: the store's and UM's), copied out.
    Vals(Vec<rusqlite::types::Value>),
}

fn vals_type_error(i: usize, want: &str, got: &rusqlite::types::Value) -> Error {
    err!(
        EIO,
        "database returned {:?} in column {i}, expected {want}",
        got.data_type()
    )
}

/// sqlx's text form of a timestamp in SQLite, which rusqlite's binding keeps.
const SQLITE_TIME_FORMAT: &str = "%F %T%.f";

/// [`SQLITE_TIME_FORMAT`] parsed once: chrono otherwise parses the format string at every
/// timestamp, and every create, write and removal binds two and every stat reads two.
static SQLITE_TIME_ITEMS: std::sync::LazyLock<Vec<chrono::format::Item<'static>>> =
    std::sync::LazyLock::new(|| {
        chrono::format::StrftimeItems::new(SQLITE_TIME_FORMAT)
            .parse_to_owned()
            .expect("SQLITE_TIME_FORMAT is a valid format")
    });

impl Row {
    pub fn int(&self, i: usize) -> Result<Option<i64>> {
        match self {
            Row::Pg(r) => {
                let ty = r.columns()[i].type_info().name().to_string();
                Ok(match ty.as_str() {
                    "INT2" => r.try_get::<Option<i16>, _>(i)?.map(i64::from),
                    "INT4" => r.try_get::<Option<i32>, _>(i)?.map(i64::from),
                    _ => r.try_get::<Option<i64>, _>(i)?,
                })
            }
            Row::My(r) => Ok(r.try_get::<Option<i64>, _>(i)?),
            Row::Vals(v) => match &v[i] {
                rusqlite::types::Value::Null => Ok(None),
                rusqlite::types::Value::Integer(n) => Ok(Some(*n)),
                other => Err(vals_type_error(i, "an integer", other)),
            },
        }
    }

    pub fn req_int(&self, i: usize) -> Result<i64> {
        self.int(i)?
            .ok_or_else(|| err!(EIO, "database returned NULL in column {i}"))
    }

    pub fn text(&self, i: usize) -> Result<Option<String>> {
        Ok(match self {
            Row::Pg(r) => r.try_get(i)?,
            Row::My(r) => r.try_get(i)?,
            Row::Vals(v) => match &v[i] {
                rusqlite::types::Value::Null => None,
                rusqlite::types::Value::Text(s) => Some(s.clone()),
                other => return Err(vals_type_error(i, "text", other)),
            },
        })
    }

    pub fn req_text(&self, i: usize) -> Result<String> {
        self.text(i)?
            .ok_or_else(|| err!(EIO, "database returned NULL in column {i}"))
    }

    pub fn blob(&self, i: usize) -> Result<Option<Vec<u8>>> {
        Ok(match self {
            Row::Pg(r) => r.try_get(i)?,
            Row::My(r) => r.try_get(i)?,
            Row::Vals(v) => match &v[i] {
                rusqlite::types::Value::Null => None,
                rusqlite::types::Value::Blob(b) => Some(b.clone()),
                rusqlite::types::Value::Text(s) => Some(s.clone().into_bytes()),
                other => return Err(vals_type_error(i, "a blob", other)),
            },
        })
    }

    pub fn time(&self, i: usize) -> Result<NaiveDateTime> {
        Ok(match self {
            Row::Pg(r) => r.try_get(i)?,
            // sqlx reads MySQL's TIMESTAMP as UTC; the server sends it in the session's time
            // zone, which is the wall time Carbon (and regfs) wrote.
            Row::My(r) if r.columns()[i].type_info().name() == "TIMESTAMP" => r
                .try_get::<chrono::DateTime<chrono::Utc>, _>(i)?
                .naive_utc(),
            Row::My(r) => r.try_get(i)?,
            Row::Vals(v) => match &v[i] {
                rusqlite::types::Value::Text(s) => parse_sqlite_time(s)
                    .ok_or_else(|| err!(EIO, "unreadable timestamp {s:?} in column {i}"))?,
                other => return Err(vals_type_error(i, "a timestamp", other)),
            },
        })
    }
}

/// A TIMESTAMP as SQLite holds it: text, `2024-01-02 03:04:05[.fff]` (sqlx's and rusqlite's
/// form) or with a `T`.
fn parse_sqlite_time(s: &str) -> Option<NaiveDateTime> {
    let mut parsed = chrono::format::Parsed::new();
    match chrono::format::parse(&mut parsed, s, SQLITE_TIME_ITEMS.iter()) {
        Ok(()) => parsed.to_naive_datetime_with_offset(0).ok(),
        // `FromStr` reads the form with a `T`.
        Err(_) => s.parse().ok(),
    }
}

impl rusqlite::ToSql for Val<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match *self {
            Val::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(v)),
            Val::Int(None) | Val::Text(None) => ToSqlOutput::Owned(Value::Null),
            Val::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Val::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            Val::Time(t) => ToSqlOutput::Owned(Value::Text(
                t.format_with_items(SQLITE_TIME_ITEMS.iter()).to_string(),
            )),
        })
    }
}

/// One `BEGIN IMMEDIATE` transaction on an SQLite connection, rolled back when dropped
/// uncommitted (an error, an early return, a cancelled future): the SQLite store's writer and
/// the user-management tables on SQLite both run their transactions in one.
pub(crate) struct LiteTx<'a>(&'a mut rusqlite::Connection);

impl<'a> LiteTx<'a> {
    pub(crate) fn begin(c: &'a mut rusqlite::Connection) -> Result<Self> {
        lite_settle(c);
        c.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Self(c))
    }

    pub(crate) fn conn(&mut self) -> &mut rusqlite::Connection {
        self.0
    }

    pub(crate) fn commit(self) -> Result<()> {
        self.0.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

impl Drop for LiteTx<'_> {
    fn drop(&mut self) {
        lite_settle(self.0);
    }
}

/// Rolls back whatever transaction is open on `c` (none normally: [`LiteTx`] ends each one).
pub(crate) fn lite_settle(c: &rusqlite::Connection) {
    if !c.is_autocommit() {
        // "no transaction is active" is fine: BEGIN itself may have been what failed.
        let _ = c.execute_batch("ROLLBACK");
    }
}

/// Runs one statement on a rusqlite connection (from its statement cache), binding `args` by
/// position: the n-th value to `?n`, so numbered and plain placeholders both work. A statement
/// that uses fewer numbers than `args` has gets the first ones. Rows are copied out.
pub fn lite_run(
    c: &rusqlite::Connection,
    sql: &str,
    args: &[Val<'_>],
    want_rows: bool,
) -> Result<(u64, Vec<Row>)> {
    let mut st = c.prepare_cached(sql)?;
    let n = st.parameter_count();
    if n > args.len() {
        return Err(err!(
            EIO,
            "statement takes {n} values, {} given: {sql}",
            args.len()
        ));
    }
    for (i, a) in args[..n].iter().enumerate() {
        st.raw_bind_parameter(i + 1, a)?;
    }
    if !want_rows || st.column_count() == 0 {
        return Ok((st.raw_execute()? as u64, Vec::new()));
    }
    let cols = st.column_count();
    let mut rows = st.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut vals = Vec::with_capacity(cols);
        for i in 0..cols {
            vals.push(r.get::<_, rusqlite::types::Value>(i)?);
        }
        out.push(Row::Vals(vals));
    }
    Ok((0, out))
}

/// A connection (or a transaction's connection) to run statements on.
pub enum Exec<'c> {
    Pg(&'c mut PgConnection, &'c TextColumns),
    My(&'c mut MySqlConnection, &'c TextColumns),
    /// An SQLite connection (rusqlite): statements run synchronously on the calling thread.
    Rus(&'c mut rusqlite::Connection),
}

/// Binds `args` to a query of any of the three drivers.
macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match *a {
                Val::Int(v) => q.bind(v),
                Val::Text(v) => q.bind(v),
                Val::Blob(v) => q.bind(v),
                Val::Time(v) => q.bind(v),
            };
        }
        q
    }};
}

/// `?` placeholders → `$1..$n`; `?^` (the previous parameter again) → the previous number.
fn pg_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '?' {
            if chars.peek() == Some(&'^') {
                chars.next();
            } else {
                n += 1;
            }
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(ch);
        }
    }
    out
}

/// `?^` in SQL stands for the parameter before it, bound again (see
/// [`TextColumns::eq`](super::text::TextColumns::eq)): for the drivers with plain positional
/// `?`, the SQL with `?` in its place and the arguments with that value repeated.
fn repeat_placeholders<'s, 'a>(
    sql: &'s str,
    args: &'s [Val<'a>],
) -> (std::borrow::Cow<'s, str>, std::borrow::Cow<'s, [Val<'a>]>) {
    use std::borrow::Cow;
    if !sql.contains("?^") {
        return (Cow::Borrowed(sql), Cow::Borrowed(args));
    }
    let mut out = String::with_capacity(sql.len());
    let mut vals = Vec::with_capacity(args.len() + 2);
    let mut next: usize = 0;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        out.push(ch);
        if ch != '?' {
            continue;
        }
        if chars.peek() == Some(&'^') {
            chars.next();
            if let Some(v) = next.checked_sub(1).and_then(|i| args.get(i)) {
                vals.push(*v);
            }
        } else {
            if let Some(v) = args.get(next) {
                vals.push(*v);
            }
            next += 1;
        }
    }
    vals.extend_from_slice(args.get(next..).unwrap_or(&[]));
    (Cow::Owned(out), Cow::Owned(vals))
}

impl Exec<'_> {
    pub fn dialect(&self) -> Dialect {
        match self {
            Exec::Pg(..) => Dialect::Postgres,
            Exec::My(..) => Dialect::MySql,
            Exec::Rus(_) => Dialect::Sqlite,
        }
    }

    /// How this database's text columns store and compare names.
    pub fn text(&self) -> &TextColumns {
        match self {
            Exec::Pg(_, t) | Exec::My(_, t) => t,
            Exec::Rus(_) => TextColumns::exact(),
        }
    }

    /// Runs one statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, args: &[Val<'_>]) -> Result<u64> {
        let (sql, args) = repeat_placeholders(sql, args);
        let (sql, args) = (&*sql, &*args);
        Ok(match self {
            Exec::Pg(c, _) => {
                let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(pg_placeholders(sql))), args);
                c.execute(q).await?.rows_affected()
            }
            Exec::My(c, _) => {
                let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.to_string())), args);
                c.execute(q).await?.rows_affected()
            }
            Exec::Rus(c) => lite_run(c, sql, args, false)?.0,
        })
    }

    /// Runs one query and returns all its rows.
    pub async fn fetch(&mut self, sql: &str, args: &[Val<'_>]) -> Result<Vec<Row>> {
        let (sql, args) = repeat_placeholders(sql, args);
        let (sql, args) = (&*sql, &*args);
        Ok(match self {
            Exec::Pg(c, _) => {
                let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(pg_placeholders(sql))), args);
                c.fetch_all(q).await?.into_iter().map(Row::Pg).collect()
            }
            Exec::My(c, _) => {
                let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.to_string())), args);
                c.fetch_all(q).await?.into_iter().map(Row::My).collect()
            }
            Exec::Rus(c) => lite_run(c, sql, args, true)?.1,
        })
    }

    /// The first row, if any.
    pub async fn fetch_opt(&mut self, sql: &str, args: &[Val<'_>]) -> Result<Option<Row>> {
        Ok(self.fetch(sql, args).await?.into_iter().next())
    }

    /// Inserts one row and returns the id the database generated for `id_column`.
    pub async fn insert_id(&mut self, sql: &str, id_column: &str, args: &[Val<'_>]) -> Result<i64> {
        match self {
            Exec::Pg(..) | Exec::Rus(_) => {
                let sql = format!("{sql} RETURNING {id_column}");
                let row = self
                    .fetch_opt(&sql, args)
                    .await?
                    .ok_or_else(|| err!(EIO, "insert returned no id"))?;
                row.req_int(0)
            }
            Exec::My(c, _) => {
                let (sql, args) = repeat_placeholders(sql, args);
                let q = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.into_owned())), &*args);
                Ok(c.execute(q).await?.last_insert_id() as i64)
            }
        }
    }

    /// Runs a script of `;`-separated statements without parameters (DDL).
    /// The tables of `wanted` (upper-case names) that the catalog does not list in this
    /// connection's schema, in `wanted`'s order.
    pub async fn missing_tables(&mut self, wanted: &[&'static str]) -> Result<Vec<&'static str>> {
        let sql = format!(
            "SELECT UPPER(table_name) FROM information_schema.tables WHERE table_schema = {}",
            self.dialect().current_schema()
        );
        let present = self
            .fetch(&sql, &[])
            .await?
            .iter()
            .map(|r| r.req_text(0))
            .collect::<Result<std::collections::HashSet<_>>>()?;
        Ok(wanted
            .iter()
            .copied()
            .filter(|t| !present.contains(*t))
            .collect())
    }

    /// Runs each statement of `sql` (see [`statements`]).
    pub async fn script(&mut self, sql: &str) -> Result<()> {
        for body in statements(sql) {
            self.execute(&body, &[]).await?;
        }
        Ok(())
    }
}

/// The statements of a DDL script: split at `;`, except inside a `$$`-quoted body (a
/// PostgreSQL function's); comment lines (`--`) go first, so that a `;` in a comment ends no
/// statement.
pub fn statements(sql: &str) -> Vec<String> {
    let code: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut quoted = false;
    let mut current = String::new();
    for (i, piece) in code.split("$$").enumerate() {
        if i > 0 {
            current.push_str("$$");
        }
        if quoted {
            current.push_str(piece);
        } else {
            let mut parts = piece.split(';');
            if let Some(first) = parts.next() {
                current.push_str(first);
            }
            for part in parts {
                out.push(std::mem::take(&mut current));
                current.push_str(part);
            }
        }
        quoted = !quoted;
    }
    out.push(current);
    out.retain(|s| !s.trim().is_empty());
    out
}

#[cfg(test)]
mod script_tests {
    #[test]
    fn statements_split_at_semicolons_outside_dollar_quotes() {
        let sql = "-- a; comment\nCREATE TABLE a (x INT);\nCREATE FUNCTION f() RETURNS trigger \
                   AS $$ BEGIN PERFORM 1; RETURN NULL; END $$;\n\nCREATE INDEX i ON a(x);\n";
        let got = super::statements(sql);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[1].contains("PERFORM 1; RETURN NULL; END $$"), "{got:?}");
        assert!(got[2].trim() == "CREATE INDEX i ON a(x)", "{got:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_redaction() {
        assert_eq!(pg_placeholders("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(
            pg_placeholders("a = ? AND b = ?^ AND c = ?"),
            "a = $1 AND b = $1 AND c = $2"
        );
        let args = [Val::Int(Some(1)), Val::Int(Some(2))];
        let (sql, vals) = repeat_placeholders("a = ? AND b = ?^ AND c = ?", &args);
        assert_eq!(sql, "a = ? AND b = ? AND c = ?");
        let ints: Vec<_> = vals
            .iter()
            .map(|v| match v {
                Val::Int(i) => i.unwrap(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ints, [1, 1, 2]);
        assert_eq!(
            redact("postgres://regfs:secret@127.0.0.1:5432/reg"),
            "postgres://regfs:***@127.0.0.1:5432/reg"
        );
        assert_eq!(
            redact("mysql://root@localhost/x"),
            "mysql://root@localhost/x"
        );
    }

    /// SQLite timestamps: what a binding writes reads back the same, and the text forms sqlx,
    /// rusqlite and Carbon's JDBC driver leave (space or `T`, with or without a fraction) read.
    #[test]
    fn sqlite_timestamps_round_trip() {
        use rusqlite::ToSql;
        use rusqlite::types::{ToSqlOutput, Value};
        let t = chrono::DateTime::from_timestamp(1_795_702_532, 747_114_782)
            .unwrap()
            .naive_utc();
        let ToSqlOutput::Owned(Value::Text(text)) = Val::Time(t).to_sql().unwrap() else {
            panic!("a timestamp binds as text");
        };
        assert_eq!(text, "2026-11-26 14:15:32.747114782");
        assert_eq!(parse_sqlite_time(&text), Some(t));
        for (s, nanos) in [
            ("2026-11-26 14:15:32", 0),
            ("2026-11-26 14:15:32.5", 500_000_000),
            ("2026-11-26T14:15:32.747114782", 747_114_782),
            ("2026-11-26T14:15:32", 0),
        ] {
            let want = chrono::DateTime::from_timestamp(1_795_702_532, nanos)
                .unwrap()
                .naive_utc();
            assert_eq!(parse_sqlite_time(s), Some(want), "{s}");
        }
        assert_eq!(parse_sqlite_time("yesterday"), None);
    }
}
