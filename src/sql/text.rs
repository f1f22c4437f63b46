//! How the registry's text columns store and compare names, as the database's catalog says.
//!
//! Carbon's MySQL scripts leave most text columns (`REG_RESOURCE.REG_NAME`, `REG_LOG.REG_PATH`,
//! and in 4.4.x `REG_PATH.REG_PATH_VALUE` too) at the database's default character set and
//! collation: `latin1_swedish_ci` or `utf8mb4_general_ci` on a default MariaDB, which are
//! case-insensitive and PAD SPACE. A plain `REG_NAME = ?` there finds `Case.txt` for `case.txt`
//! and `sp.txt` for `"sp.txt "`, and a write through the wrong name overwrote another file. So
//! every comparison of a name on MySQL is made byte-exact ([`TextColumns::eq`]) while keeping
//! the column's own collation on one conjunct, so that Carbon's indexes still find the
//! candidates; and a name a column's character set cannot hold is refused with EILSEQ before
//! anything is written ([`TextColumns::unstorable`]).
//!
//! PostgreSQL compares text byte-exactly under the deterministic collations Carbon's scripts
//! use, so only its database encoding matters there. SQLite is regfs's own schema: every name
//! fits and comparisons are exact.

use std::collections::HashMap;

use crate::error::Result;
use crate::sql::{Dialect, Exec};

/// A character set, by what it can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Any Unicode text (utf8mb4, utf16, utf32, PostgreSQL UTF8; binary columns).
    Unicode,
    /// The Basic Multilingual Plane only: MySQL's utf8mb3 (`utf8`) and ucs2.
    Bmp,
    /// MySQL's `latin1`, which is Windows-1252 (with its five unassigned bytes kept as the C1
    /// controls they stand for).
    Cp1252,
    /// ISO 8859-1: PostgreSQL's LATIN1.
    Latin1,
    /// ASCII only; also what regfs assumes of a character set it does not know.
    Ascii,
}

/// The characters Windows-1252 has at 0x80-0x9F, which MySQL's latin1 stores.
const CP1252_HIGH: &str = "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ\u{81}\u{8d}\u{8f}\u{90}\u{9d}";

impl Charset {
    /// The class of a MySQL/MariaDB character set name, or of a PostgreSQL encoding.
    pub fn named(name: &str) -> Charset {
        match name.to_ascii_lowercase().as_str() {
            "utf8mb4" | "utf16" | "utf16le" | "utf32" | "binary" | "utf8_pg" | "sql_ascii" => {
                Charset::Unicode
            }
            "utf8" | "utf8mb3" | "ucs2" => Charset::Bmp,
            "latin1" => Charset::Cp1252,
            "ascii" => Charset::Ascii,
            _ => Charset::Ascii,
        }
    }

    /// The class of a PostgreSQL database encoding (`pg_encoding_to_char`).
    pub fn pg_encoding(name: &str) -> Charset {
        match name.to_ascii_uppercase().as_str() {
            // SQL_ASCII stores any bytes unchecked.
            "UTF8" | "SQL_ASCII" => Charset::Unicode,
            "LATIN1" => Charset::Latin1,
            _ => Charset::Ascii,
        }
    }

    pub fn holds(self, c: char) -> bool {
        let u = c as u32;
        match self {
            Charset::Unicode => true,
            Charset::Bmp => u <= 0xFFFF,
            Charset::Latin1 => u <= 0xFF,
            Charset::Cp1252 => u < 0x80 || (0xA0..=0xFF).contains(&u) || CP1252_HIGH.contains(c),
            Charset::Ascii => u < 0x80,
        }
    }
}

/// One text column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextColumn {
    pub table: String,
    pub column: String,
    /// The catalog's name for the character set (`latin1`, `utf8mb4`, `UTF8`).
    pub charset_name: String,
    pub charset: Charset,
    /// MySQL's collation name; empty on PostgreSQL and SQLite.
    pub collation: String,
}

/// The columns a collection path is stored in: REG_PATH and the activity log.
pub const PATH_COLUMNS: &[(&str, &str)] =
    &[("REG_PATH", "REG_PATH_VALUE"), ("REG_LOG", "REG_PATH")];

/// The column a resource's full path is stored in: the activity log.
pub const LOG_COLUMNS: &[(&str, &str)] = &[("REG_LOG", "REG_PATH")];

/// The columns a resource's name is stored in (its full path goes to [`LOG_COLUMNS`]).
pub const NAME_COLUMNS: &[(&str, &str)] = &[
    ("REG_RESOURCE", "REG_NAME"),
    ("REG_RESOURCE_HISTORY", "REG_NAME"),
    ("REG_SNAPSHOT", "REG_RESOURCE_NAME"),
    ("REG_RESOURCE_PROPERTY", "REG_RESOURCE_NAME"),
    ("REG_RESOURCE_TAG", "REG_RESOURCE_NAME"),
    ("REG_RESOURCE_COMMENT", "REG_RESOURCE_NAME"),
    ("REG_RESOURCE_RATING", "REG_RESOURCE_NAME"),
];

/// The columns a registry property is stored in: its name and each value.
pub const PROPERTY_COLUMNS: &[(&str, &str)] =
    &[("REG_PROPERTY", "REG_NAME"), ("REG_PROPERTY", "REG_VALUE")];

/// The row fields an extended attribute writes (`user.regfs.media-type`, `.description`).
pub const FIELD_COLUMNS: &[(&str, &str)] = &[
    ("REG_RESOURCE", "REG_MEDIA_TYPE"),
    ("REG_RESOURCE", "REG_DESCRIPTION"),
];

/// The association paths, compared when a version's associations are copied.
const ASSOCIATION_COLUMNS: &[(&str, &str)] = &[
    ("REG_ASSOCIATION", "REG_SOURCEPATH"),
    ("REG_ASSOCIATION", "REG_TARGETPATH"),
];

/// Whether regfs compares names or stores them in `table.column`.
fn probed(table: &str, column: &str) -> bool {
    [
        PATH_COLUMNS,
        NAME_COLUMNS,
        ASSOCIATION_COLUMNS,
        PROPERTY_COLUMNS,
        FIELD_COLUMNS,
    ]
    .iter()
    .flat_map(|cols| cols.iter())
    .any(|(t, c)| *t == table && *c == column)
}

/// The text columns of one database.
#[derive(Debug, Clone)]
pub struct TextColumns {
    /// MySQL: one entry per probed column.
    columns: HashMap<(String, String), TextColumn>,
    /// PostgreSQL: the database encoding, which every column has.
    encoding: Option<TextColumn>,
    dialect: Dialect,
}

static EXACT: std::sync::LazyLock<TextColumns> =
    std::sync::LazyLock::new(|| TextColumns::empty(Dialect::Sqlite));

impl TextColumns {
    /// Every character fits and `=` is exact: SQLite.
    pub fn exact() -> &'static TextColumns {
        &EXACT
    }

    /// What is known of a `dialect` database before its catalog is read: nothing of its
    /// columns, so every character fits and comparisons are plain.
    pub fn empty(dialect: Dialect) -> TextColumns {
        TextColumns {
            columns: HashMap::new(),
            encoding: None,
            dialect,
        }
    }

    fn mysql(&self) -> bool {
        self.dialect == Dialect::MySql
    }

    /// Reads the catalog: the probed columns' character sets and collations on MySQL, the
    /// database encoding on PostgreSQL. Columns of tables that do not exist are left out.
    pub async fn probe(c: &mut Exec<'_>) -> Result<TextColumns> {
        match c.dialect() {
            Dialect::Sqlite => Ok(TextColumns::empty(Dialect::Sqlite)),
            Dialect::Postgres => {
                let row = c
                    .fetch_opt(
                        "SELECT pg_encoding_to_char(encoding) FROM pg_database \
                         WHERE datname = current_database()",
                        &[],
                    )
                    .await?;
                let name = row
                    .map(|r| r.text(0))
                    .transpose()?
                    .flatten()
                    .unwrap_or_else(|| "UTF8".into());
                Ok(TextColumns {
                    encoding: Some(TextColumn {
                        table: String::new(),
                        column: String::new(),
                        charset: Charset::pg_encoding(&name),
                        charset_name: name,
                        collation: String::new(),
                    }),
                    ..TextColumns::empty(Dialect::Postgres)
                })
            }
            Dialect::MySql => {
                let rows = c
                    .fetch(
                        "SELECT UPPER(TABLE_NAME), UPPER(COLUMN_NAME), CHARACTER_SET_NAME, \
                         COLLATION_NAME FROM information_schema.COLUMNS \
                         WHERE TABLE_SCHEMA = DATABASE() AND CHARACTER_SET_NAME IS NOT NULL",
                        &[],
                    )
                    .await?;
                let mut columns = HashMap::new();
                for r in &rows {
                    let (table, column) = (r.req_text(0)?, r.req_text(1)?);
                    if !probed(&table, &column) {
                        continue;
                    }
                    let charset_name = r.req_text(2)?;
                    let charset = Charset::named(&charset_name);
                    if charset == Charset::Ascii && !charset_name.eq_ignore_ascii_case("ascii") {
                        tracing::warn!(
                            "{table}.{column} uses the character set {charset_name}, which regfs \
                             does not know: names there are limited to ASCII"
                        );
                    }
                    columns.insert(
                        (table.clone(), column.clone()),
                        TextColumn {
                            table,
                            column,
                            charset_name,
                            charset,
                            collation: r.req_text(3)?,
                        },
                    );
                }
                Ok(TextColumns {
                    columns,
                    ..TextColumns::empty(Dialect::MySql)
                })
            }
        }
    }

    fn column(&self, table: &str, column: &str) -> Option<&TextColumn> {
        self.columns
            .get(&(table.to_string(), column.to_string()))
            .or(self.encoding.as_ref())
    }

    /// The first of `columns` whose character set cannot hold `s`, if any.
    pub fn unstorable(&self, s: &str, columns: &[(&str, &str)]) -> Option<&TextColumn> {
        columns
            .iter()
            .filter_map(|(t, c)| self.column(t, c))
            .find(|col| !s.chars().all(|ch| col.charset.holds(ch)))
    }

    /// Whether `s` fits in every one of `columns`.
    pub fn fits(&self, s: &str, columns: &[(&str, &str)]) -> bool {
        self.unstorable(s, columns).is_none()
    }

    /// The bound parameter as the column `table.column` compares it: on MySQL converted to the
    /// column's character set and collation, so that the comparison can use the column's index
    /// (a utf8mb4 parameter against a latin1 column converts the column instead).
    pub fn param(&self, table: &str, column: &str) -> String {
        match self.columns.get(&(table.to_string(), column.to_string())) {
            Some(col) if self.mysql() => format!(
                "CONVERT(? USING {}) COLLATE {}",
                col.charset_name, col.collation
            ),
            _ => "?".to_string(),
        }
    }

    /// `expr = ?`, byte-exact: `expr` is `table.column` (with an alias). On MySQL the column's
    /// collation finds the candidates through its index and a binary comparison of the same
    /// parameter (`?^`, see [`super::db`]) keeps only the exact one.
    pub fn eq(&self, expr: &str, table: &str, column: &str) -> String {
        self.compare(expr, table, column, "=")
    }

    /// [`Self::eq`] that also matches NULL to NULL.
    pub fn null_safe_eq(&self, expr: &str, table: &str, column: &str) -> String {
        self.compare(expr, table, column, self.dialect.null_eq())
    }

    fn compare(&self, expr: &str, table: &str, column: &str, op: &str) -> String {
        match self.columns.get(&(table.to_string(), column.to_string())) {
            Some(col) if self.mysql() => format!(
                "({expr} {op} CONVERT(? USING {cs}) COLLATE {coll} AND CAST({expr} AS BINARY) {op} \
                 CAST(CONVERT(?^ USING {cs}) AS BINARY))",
                cs = col.charset_name,
                coll = col.collation
            ),
            _ => format!("{expr} {op} ?"),
        }
    }

    /// The collation of `table.column` when it treats names that differ in bytes as one (every
    /// MySQL collation but the binary and NO PAD binary ones: case, accents or trailing spaces).
    pub fn merging(&self, table: &str, column: &str) -> Option<&TextColumn> {
        let col = self.columns.get(&(table.to_string(), column.to_string()))?;
        let exact = col.collation == "binary" || col.collation.ends_with("_nopad_bin");
        (self.mysql() && !exact).then_some(col)
    }

    /// `expr = ?` in the column's own collation (what Carbon's queries match), for finding a
    /// name the database would confuse with another.
    pub fn collated_eq(&self, expr: &str, table: &str, column: &str) -> String {
        format!("{expr} = {}", self.param(table, column))
    }

    /// `expr` differs in bytes from the bound parameter (as the column stores it).
    pub fn bytes_differ(&self, expr: &str, table: &str, column: &str) -> String {
        match self.columns.get(&(table.to_string(), column.to_string())) {
            Some(col) if self.mysql() => format!(
                "CAST({expr} AS BINARY) <> CAST(CONVERT(? USING {}) AS BINARY)",
                col.charset_name
            ),
            _ => format!("{expr} <> ?"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mysql(cols: &[(&str, &str, &str, &str)]) -> TextColumns {
        TextColumns {
            columns: cols
                .iter()
                .map(|(t, c, cs, coll)| {
                    (
                        (t.to_string(), c.to_string()),
                        TextColumn {
                            table: t.to_string(),
                            column: c.to_string(),
                            charset_name: cs.to_string(),
                            charset: Charset::named(cs),
                            collation: coll.to_string(),
                        },
                    )
                })
                .collect(),
            encoding: None,
            dialect: Dialect::MySql,
        }
    }

    #[test]
    fn character_sets_hold_what_they_can_store() {
        assert!(Charset::Cp1252.holds('é') && Charset::Cp1252.holds('€'));
        assert!(!Charset::Cp1252.holds('日') && !Charset::Cp1252.holds('\u{80}'));
        assert!(Charset::Latin1.holds('\u{80}') && !Charset::Latin1.holds('€'));
        assert!(Charset::Bmp.holds('日') && !Charset::Bmp.holds('😀'));
        assert!(Charset::Unicode.holds('😀'));
        assert_eq!(Charset::named("utf8mb3"), Charset::Bmp);
        assert_eq!(Charset::named("koi8r"), Charset::Ascii);
    }

    #[test]
    fn mysql_comparisons_are_exact_and_keep_the_column_collation() {
        let t = mysql(&[("REG_RESOURCE", "REG_NAME", "latin1", "latin1_swedish_ci")]);
        assert_eq!(
            t.eq("r.REG_NAME", "REG_RESOURCE", "REG_NAME"),
            "(r.REG_NAME = CONVERT(? USING latin1) COLLATE latin1_swedish_ci AND \
             CAST(r.REG_NAME AS BINARY) = CAST(CONVERT(?^ USING latin1) AS BINARY))"
        );
        assert!(t.merging("REG_RESOURCE", "REG_NAME").is_some());
        assert_eq!(
            t.unstorable("file-日本.txt", NAME_COLUMNS)
                .map(|c| c.charset_name.as_str()),
            Some("latin1")
        );
        assert!(t.fits("café.txt", NAME_COLUMNS));
        let exact = TextColumns::exact();
        assert_eq!(
            exact.eq("r.REG_NAME", "REG_RESOURCE", "REG_NAME"),
            "r.REG_NAME = ?"
        );
        assert!(exact.fits("😀", NAME_COLUMNS));
        assert!(exact.merging("REG_RESOURCE", "REG_NAME").is_none());
    }
}
