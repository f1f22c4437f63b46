//! The registry operations written once over [`Exec`], for every SQL store: row lookups, Carbon's
//! way of creating, deleting, moving and linking rows. The SQLite store keeps its own batched fast
//! paths for the hottest operations and uses these for the rest.

use chrono::NaiveDateTime;

use super::rows::*;
use super::*;
use crate::error::Result;
use crate::sql::text::{LOG_COLUMNS, NAME_COLUMNS, PATH_COLUMNS, TextColumns};
use crate::sql::{Dialect, Exec, Row, Val};
use crate::{args, err, path};

/// The live REG_RESOURCE columns a mutation needs, in [`ResourceRow`]'s order.
pub(crate) const RESOURCE_COLUMNS: &str = "r.REG_PATH_ID, r.REG_NAME, r.REG_VERSION, r.REG_CONTENT_ID, \
     r.REG_CREATOR, r.REG_CREATED_TIME, r.REG_MEDIA_TYPE, r.REG_DESCRIPTION, r.REG_UUID, \
     r.REG_LAST_UPDATED_TIME";

/// How many columns [`RESOURCE_COLUMNS`] has: what follows them in a row starts here.
pub(crate) const RESOURCE_WIDTH: usize = 10;

/// The REGFS_ATTR columns of a LEFT JOIN, in [`AttrColumns`]' order.
pub(crate) const ATTR_COLUMNS: &str = "a.MODE, a.UID, a.GID, a.RDEV, a.ATIME_NS, a.MTIME_NS, a.CTIME_NS, \
     a.REG_VERSION";

/// The values Carbon's update of `old` binds, in the order the SQLite write batch and the
/// PostgreSQL write statement number them: old version, tenant, old content id, `content` (the
/// new content id, or the bytes), path id, name, media type, creator, created, user, now,
/// description, uuid, mode, uid, gid, rdev, atime, now (ns), path.
#[allow(clippy::too_many_arguments)]
pub(crate) fn update_args<'a>(
    t: i64,
    old: &'a ResourceRow,
    attrs: &AttrRow,
    content: Val<'a>,
    user: &'a str,
    now: i64,
    p: &'a str,
) -> [Val<'a>; 20] {
    args![
        old.version,
        t,
        old.content_id,
        content,
        old.path_id,
        old.name.as_deref(),
        old.media_type.as_deref(),
        &old.creator,
        old.created,
        user,
        naive_from_ns(now),
        old.description.as_deref(),
        &old.uuid,
        attrs.mode,
        attrs.uid,
        attrs.gid,
        attrs.rdev,
        attrs.atime_ns,
        now,
        p
    ]
}

pub(crate) fn resource_row(row: &Row, o: usize) -> Result<ResourceRow> {
    Ok(ResourceRow {
        path_id: row.req_int(o)?,
        name: row.text(o + 1)?,
        version: row.req_int(o + 2)?,
        content_id: row.int(o + 3)?,
        creator: row.req_text(o + 4)?,
        created: row.time(o + 5)?,
        media_type: row.text(o + 6)?,
        description: row.text(o + 7)?,
        uuid: row.req_text(o + 8)?,
        updated: row.time(o + 9)?,
    })
}

pub(crate) fn attr_columns(row: &Row, o: usize) -> Result<AttrColumns> {
    Ok(AttrColumns {
        mode: row.int(o)?,
        uid: row.int(o + 1)?,
        gid: row.int(o + 2)?,
        rdev: row.int(o + 3)?,
        atime_ns: row.int(o + 4)?,
        mtime_ns: row.int(o + 5)?,
        ctime_ns: row.int(o + 6)?,
        attr_version: row.int(o + 7)?,
    })
}

/// Columns: name, is_dir, version, uuid, media type, created, updated, size, then ATTR_COLUMNS.
pub(crate) fn entry_row(row: &Row) -> Result<EntryRow> {
    Ok(EntryRow {
        name: row.text(0)?,
        is_dir: row.req_int(1)?,
        version: row.req_int(2)?,
        uuid: row.req_text(3)?,
        media_type: row.text(4)?,
        created: row.time(5)?,
        updated: row.time(6)?,
        size: row.int(7)?.unwrap_or(0),
        attrs: attr_columns(row, 8)?,
    })
}

/// Whether the database's character sets can hold the collection path `p` (REG_PATH and
/// REG_LOG): a path they cannot hold names nothing there, and a lookup of it finds nothing.
pub(crate) fn storable(text: &TextColumns, p: &str) -> bool {
    text.fits(p, PATH_COLUMNS)
}

/// Whether the name of the resource at `p` can be a row's REG_NAME (and the mappings' names).
pub(crate) fn storable_name(text: &TextColumns, p: &str) -> bool {
    text.fits(path::name(p), NAME_COLUMNS)
}

/// EILSEQ, with the column and character set that cannot hold it, when an entry at `p` (a
/// collection when `dir`) cannot be stored in this database; checked before anything is
/// written.
pub(crate) fn check_storable(text: &TextColumns, p: &str, dir: bool) -> Result<()> {
    let parent = path::parent(p).unwrap_or("/");
    let (what, col) = if dir {
        ("path", text.unstorable(p, PATH_COLUMNS))
    } else {
        match text.unstorable(parent, PATH_COLUMNS) {
            Some(col) => ("collection path", Some(col)),
            None => match text.unstorable(path::name(p), NAME_COLUMNS) {
                Some(col) => ("name", Some(col)),
                None => ("path", text.unstorable(p, LOG_COLUMNS)),
            },
        }
    };
    match col {
        Some(col) if col.table.is_empty() => Err(err!(
            EILSEQ,
            "{p}: the {what} has characters the database's encoding {} cannot hold",
            col.charset_name
        )),
        Some(col) => Err(err!(
            EILSEQ,
            "{p}: the {what} has characters that {}.{} (character set {}) cannot hold",
            col.table,
            col.column,
            col.charset_name
        )),
        None => Ok(()),
    }
}

/// `expr = ?` for a collection path in REG_PATH_VALUE, byte-exact (see [`TextColumns::eq`]).
pub(crate) fn path_eq(text: &TextColumns, expr: &str) -> String {
    text.eq(expr, "REG_PATH", "REG_PATH_VALUE")
}

/// `expr = ?` for a resource name in REG_RESOURCE.REG_NAME, byte-exact.
pub(crate) fn name_eq(text: &TextColumns, expr: &str) -> String {
    text.eq(expr, "REG_RESOURCE", "REG_NAME")
}

/// `expr <=> ?` for a name in a mapping table's REG_RESOURCE_NAME (NULL for a collection).
pub(crate) fn mapped_name_eq(text: &TextColumns, table: &str, expr: &str) -> String {
    text.null_safe_eq(expr, table, "REG_RESOURCE_NAME")
}

pub(crate) fn entry_select(d: Dialect, collection: bool) -> String {
    let size = if collection {
        "0".to_string()
    } else {
        d.int64("COALESCE(LENGTH(c.REG_CONTENT_DATA), 0)")
    };
    let name = if collection {
        "CAST(NULL AS CHAR(1))".to_string()
    } else {
        "r.REG_NAME".to_string()
    };
    format!(
        "SELECT {name}, {}, r.REG_VERSION, r.REG_UUID, r.REG_MEDIA_TYPE, r.REG_CREATED_TIME, \
         r.REG_LAST_UPDATED_TIME, {size}, {ATTR_COLUMNS} ",
        if collection { 1 } else { 0 }
    )
}

/// The collection or the resource at `p`, in one query (one round trip).
pub(crate) async fn stat_on(c: &mut Exec<'_>, t: i64, p: &str) -> Result<Option<Entry>> {
    let d = c.dialect();
    let text = c.text();
    let collection = format!(
        "{} FROM REG_PATH p JOIN REG_RESOURCE r ON r.REG_PATH_ID = p.REG_PATH_ID \
         AND r.REG_TENANT_ID = p.REG_TENANT_ID AND r.REG_NAME IS NULL \
         LEFT JOIN REGFS_ATTR a ON a.REG_UUID = r.REG_UUID AND a.REG_TENANT_ID = r.REG_TENANT_ID \
         WHERE {} AND p.REG_TENANT_ID = ?",
        entry_select(d, true),
        path_eq(text, "p.REG_PATH_VALUE")
    );
    let file = format!(
        "{} FROM REG_PATH p JOIN REG_RESOURCE r ON r.REG_PATH_ID = p.REG_PATH_ID \
         AND r.REG_TENANT_ID = p.REG_TENANT_ID AND {} \
         LEFT JOIN REG_CONTENT c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID AND c.REG_TENANT_ID = r.REG_TENANT_ID \
         LEFT JOIN REGFS_ATTR a ON a.REG_UUID = r.REG_UUID AND a.REG_TENANT_ID = r.REG_TENANT_ID \
         WHERE {} AND p.REG_TENANT_ID = ?",
        entry_select(d, false),
        name_eq(text, "r.REG_NAME"),
        path_eq(text, "p.REG_PATH_VALUE")
    );
    let Some((sql, args)) = collection_or_file(text, t, p, collection, file) else {
        return Ok(None);
    };
    let row = c.fetch_opt(&sql, &args).await?;
    row.map(|r| entry_row(&r).map(EntryRow::into_entry))
        .transpose()
}

/// One query for the collection or the resource at `p`: `collection` binds (path, tenant) and
/// `file` binds (name, parent path, tenant); a part whose path the dialect cannot store is left
/// out. A path is a collection or a resource, never both, so at most one part has a row.
/// `None` when neither part can match.
fn collection_or_file<'a>(
    text: &TextColumns,
    t: i64,
    p: &'a str,
    collection: String,
    file: String,
) -> Option<(String, Vec<Val<'a>>)> {
    let mut parts = Vec::new();
    let mut args = Vec::new();
    if storable(text, p) {
        parts.push(collection);
        args.extend(args![p, t]);
    }
    if let Some(parent) =
        path::parent(p).filter(|parent| storable(text, parent) && storable_name(text, p))
    {
        parts.push(file);
        args.extend(args![path::name(p), parent, t]);
    }
    (!parts.is_empty()).then(|| (parts.join(" UNION ALL "), args))
}

/// The live collection at a path: binds the path and the tenant.
fn collection_sql(text: &TextColumns) -> String {
    format!(
        "SELECT {RESOURCE_COLUMNS} FROM REG_PATH p JOIN REG_RESOURCE r \
         ON r.REG_PATH_ID = p.REG_PATH_ID AND r.REG_TENANT_ID = p.REG_TENANT_ID \
         AND r.REG_NAME IS NULL WHERE {} AND p.REG_TENANT_ID = ?",
        path_eq(text, "p.REG_PATH_VALUE")
    )
}

/// The live resource of a name in a collection: binds the name, the parent path and the tenant.
fn file_sql(text: &TextColumns) -> String {
    format!(
        "SELECT {RESOURCE_COLUMNS} FROM REG_PATH p JOIN REG_RESOURCE r \
         ON r.REG_PATH_ID = p.REG_PATH_ID AND r.REG_TENANT_ID = p.REG_TENANT_ID \
         AND {} WHERE {} AND p.REG_TENANT_ID = ?",
        name_eq(text, "r.REG_NAME"),
        path_eq(text, "p.REG_PATH_VALUE")
    )
}

pub(crate) async fn collection_row(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
) -> Result<Option<ResourceRow>> {
    let sql = collection_sql(c.text());
    if !storable(c.text(), p) {
        return Ok(None);
    }
    c.fetch_opt(&sql, &args![p, t])
        .await?
        .map(|r| resource_row(&r, 0))
        .transpose()
}

pub(crate) async fn file_row(c: &mut Exec<'_>, t: i64, p: &str) -> Result<Option<ResourceRow>> {
    let Some(parent) = path::parent(p) else {
        return Ok(None);
    };
    if !storable(c.text(), parent) || !storable_name(c.text(), p) {
        return Ok(None);
    }
    let sql = file_sql(c.text());
    c.fetch_opt(&sql, &args![path::name(p), parent, t])
        .await?
        .map(|r| resource_row(&r, 0))
        .transpose()
}

/// The collection or the resource at `p`, in one query.
pub(crate) async fn any_row(c: &mut Exec<'_>, t: i64, p: &str) -> Result<Option<ResourceRow>> {
    let text = c.text();
    let Some((sql, args)) = collection_or_file(text, t, p, collection_sql(text), file_sql(text))
    else {
        return Ok(None);
    };
    c.fetch_opt(&sql, &args)
        .await?
        .map(|r| resource_row(&r, 0))
        .transpose()
}

/// The live resource at `p` with its attributes (stored or default), in one query.
pub(crate) async fn file_row_with_attrs(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
) -> Result<Option<(ResourceRow, AttrRow)>> {
    let found = file_row_query(c, t, p, false).await?;
    Ok(found.map(|(row, attrs, _)| (row, attrs)))
}

/// [`file_row_with_attrs`] and the content's size. Only for callers that need the size: on
/// MySQL, the length of content stored off-page is read from the content itself.
pub(crate) async fn file_row_with_attrs_and_size(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
) -> Result<Option<(ResourceRow, AttrRow, u64)>> {
    file_row_query(c, t, p, true).await
}

async fn file_row_query(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    size: bool,
) -> Result<Option<(ResourceRow, AttrRow, u64)>> {
    let d = c.dialect();
    let text = c.text();
    let Some(parent) = path::parent(p).filter(|parent| storable(text, parent)) else {
        return Ok(None);
    };
    if !storable_name(text, p) {
        return Ok(None);
    }
    let (size_column, content_join) = if size {
        (
            d.int64("COALESCE(LENGTH(c.REG_CONTENT_DATA), 0)"),
            " LEFT JOIN REG_CONTENT c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID \
             AND c.REG_TENANT_ID = r.REG_TENANT_ID",
        )
    } else {
        ("0".to_string(), "")
    };
    let sql = format!(
        "SELECT {RESOURCE_COLUMNS}, {ATTR_COLUMNS}, {size_column} FROM REG_PATH p \
         JOIN REG_RESOURCE r ON r.REG_PATH_ID = p.REG_PATH_ID \
         AND r.REG_TENANT_ID = p.REG_TENANT_ID AND {} LEFT JOIN REGFS_ATTR a \
         ON a.REG_UUID = r.REG_UUID AND a.REG_TENANT_ID = r.REG_TENANT_ID{content_join} \
         WHERE {} AND p.REG_TENANT_ID = ?",
        name_eq(text, "r.REG_NAME"),
        path_eq(text, "p.REG_PATH_VALUE")
    );
    let Some(r) = c.fetch_opt(&sql, &args![path::name(p), parent, t]).await? else {
        return Ok(None);
    };
    let row = resource_row(&r, 0)?;
    let attrs = attr_columns(&r, RESOURCE_WIDTH)?.or_default(&row);
    let size = r.req_int(RESOURCE_WIDTH + 8)?.max(0) as u64;
    Ok(Some((row, attrs, size)))
}

pub(crate) async fn require_dir(c: &mut Exec<'_>, t: i64, p: &str) -> Result<ResourceRow> {
    if let Some(row) = collection_row(c, t, p).await? {
        return Ok(row);
    }
    if file_row(c, t, p).await?.is_some() {
        return Err(err!(ENOTDIR, "{p} is a resource, not a collection"));
    }
    Err(err!(ENOENT, "collection {p} does not exist"))
}

/// The REG_PATH row for `p`, created if missing (REG_PATH rows are never deleted).
pub(crate) async fn ensure_path_row(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    parent_id: i64,
) -> Result<i64> {
    let d = c.dialect();
    if p.len() > d.max_path() {
        return Err(err!(
            ENAMETOOLONG,
            "{p}: the collection path is {} bytes; {} holds at most {} ({})",
            p.len(),
            d.label(),
            d.max_path(),
            d.max_path_reason()
        ));
    }
    check_storable(c.text(), p, true)?;
    let sql = format!(
        "SELECT REG_PATH_ID FROM REG_PATH p WHERE {} AND REG_TENANT_ID = ?",
        path_eq(c.text(), "p.REG_PATH_VALUE")
    );
    if let Some(row) = c.fetch_opt(&sql, &args![p, t]).await? {
        return row.req_int(0);
    }
    // A path the column's collation confuses with another one already there (trailing
    // spaces, or case on a case-insensitive 4.4.x column) cannot get a row of its own where
    // REG_PATH_VALUE is unique, and would be that other path to Carbon where it is not.
    if let Some(other) = confused_path(c, t, p).await? {
        return Err(err!(
            EEXIST,
            "{p}: the database compares collection paths with the collation of REG_PATH_VALUE, \
             which does not tell it from {other:?} (already there); choose a name that differs \
             in more than case or trailing spaces"
        ));
    }
    c.insert_id(
        "INSERT INTO REG_PATH (REG_PATH_VALUE, REG_PATH_PARENT_ID, REG_TENANT_ID) VALUES (?, ?, ?)",
        "REG_PATH_ID",
        &args![p, parent_id, t],
    )
    .await
}

/// A REG_PATH row (live or not) whose value the column's collation takes for `p` though its
/// bytes differ; `None` where the collation is exact.
async fn confused_path(c: &mut Exec<'_>, t: i64, p: &str) -> Result<Option<String>> {
    if c.text().merging("REG_PATH", "REG_PATH_VALUE").is_none() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT REG_PATH_VALUE FROM REG_PATH WHERE {} AND REG_TENANT_ID = ? LIMIT 1",
        c.text()
            .collated_eq("REG_PATH_VALUE", "REG_PATH", "REG_PATH_VALUE")
    );
    c.fetch_opt(&sql, &args![p, t])
        .await?
        .map(|r| r.req_text(0))
        .transpose()
}

/// A collection named by its path id or by its path.
#[derive(Clone, Copy)]
pub(crate) enum DirKey<'a> {
    Id(i64),
    Path(&'a str),
}

/// A live entry in the collection `dir` whose name the database's collations take for the
/// name of `p` though the bytes differ (`Case.txt` for `case.txt`, `a` for `"a "`), other
/// than `except` (the name a rename in the same collection moves away from): Carbon would
/// find that entry for `p`, so `p` cannot be created beside it. One query, where the
/// collations are exact none.
pub(crate) async fn confused_entry<'a>(
    c: &mut Exec<'_>,
    t: i64,
    dir: DirKey<'a>,
    p: &'a str,
    except: Option<&'a str>,
) -> Result<Option<String>> {
    let text = c.text();
    let names = text.merging("REG_RESOURCE", "REG_NAME").is_some();
    let paths = text.merging("REG_PATH", "REG_PATH_VALUE").is_some();
    if !names && !paths {
        return Ok(None);
    }
    let name = path::name(p);
    let excluded = except.unwrap_or(name);
    let excluded_path = path::join(path::parent(p).unwrap_or("/"), excluded);
    let dir_id = match dir {
        DirKey::Id(_) => "?".to_string(),
        DirKey::Path(_) => format!(
            "(SELECT dp.REG_PATH_ID FROM REG_PATH dp WHERE {} AND dp.REG_TENANT_ID = ?)",
            path_eq(text, "dp.REG_PATH_VALUE")
        ),
    };
    let dir_args: Vec<Val<'a>> = match dir {
        DirKey::Id(id) => vec![Val::from(id)],
        DirKey::Path(parent) => args![parent, t].to_vec(),
    };
    let mut parts = Vec::new();
    let mut args: Vec<Val<'_>> = Vec::new();
    if names {
        parts.push(format!(
            "(SELECT f.REG_NAME FROM REG_RESOURCE f WHERE f.REG_PATH_ID = {dir_id} \
             AND f.REG_TENANT_ID = ? AND {} AND {} LIMIT 1)",
            text.collated_eq("f.REG_NAME", "REG_RESOURCE", "REG_NAME"),
            text.bytes_differ("f.REG_NAME", "REG_RESOURCE", "REG_NAME")
        ));
        args.extend(dir_args.iter().copied());
        args.extend(args![t, name, excluded]);
    } else {
        parts.push("NULL".to_string());
    }
    if paths {
        parts.push(format!(
            "(SELECT cp.REG_PATH_VALUE FROM REG_PATH cp JOIN REG_RESOURCE cr \
             ON cr.REG_PATH_ID = cp.REG_PATH_ID AND cr.REG_TENANT_ID = cp.REG_TENANT_ID \
             AND cr.REG_NAME IS NULL WHERE cp.REG_PATH_PARENT_ID = {dir_id} \
             AND cp.REG_TENANT_ID = ? AND {} AND {} LIMIT 1)",
            text.collated_eq("cp.REG_PATH_VALUE", "REG_PATH", "REG_PATH_VALUE"),
            text.bytes_differ("cp.REG_PATH_VALUE", "REG_PATH", "REG_PATH_VALUE")
        ));
        args.extend(dir_args.iter().copied());
        args.extend(args![t, p, excluded_path.as_str()]);
    } else {
        parts.push("NULL".to_string());
    }
    let sql = format!("SELECT {}", parts.join(", "));
    let Some(row) = c.fetch_opt(&sql, &args).await? else {
        return Ok(None);
    };
    if let Some(other) = row.text(0)? {
        return Ok(Some(other));
    }
    Ok(row.text(1)?.map(|other| path::name(&other).to_string()))
}

/// EEXIST with a log line's reason when [`confused_entry`] finds one other than `except` (the
/// name a rename in the same collection moves away from).
pub(crate) async fn refuse_confused(
    c: &mut Exec<'_>,
    t: i64,
    dir: DirKey<'_>,
    p: &str,
    except: Option<&str>,
) -> Result<()> {
    match confused_entry(c, t, dir, p, except).await? {
        Some(other) => Err(err!(
            EEXIST,
            "{p}: the database's collation does not tell this name from {other:?}, which is \
             already in the collection (Carbon would read that entry for this name); choose a \
             name that differs in more than case or trailing spaces"
        )),
        None => Ok(()),
    }
}

/// Records in REGFS_CHANGE a change that REG_LOG does not (chmod, chown, utimens), so that
/// the other nodes' change feeds hear of it (see `server/feed.rs`). SQLite has no such
/// table: its feed is the database's own commit counter, which every commit moves.
pub(crate) async fn note_change(c: &mut Exec<'_>, t: i64, p: &str) -> Result<()> {
    if c.dialect() == Dialect::Sqlite {
        return Ok(());
    }
    c.execute(
        "INSERT INTO REGFS_CHANGE (REG_TENANT_ID, REG_PATH, REGFS_TIME_MS) VALUES (?, ?, ?)",
        &args![t, p, now_ns() / 1_000_000],
    )
    .await?;
    Ok(())
}

pub(crate) async fn insert_log(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    user: &str,
    action: LogAction,
    data: Option<&str>,
) -> Result<()> {
    // REG_LOG.REG_PATH is VARCHAR(750) on MySQL: a longer path is logged truncated.
    let max = c.dialect().max_path();
    let logged = if p.len() > max {
        &p[..p.floor_char_boundary(max)]
    } else {
        p
    };
    c.execute(
        "INSERT INTO REG_LOG (REG_PATH, REG_USER_ID, REG_LOGGED_TIME, REG_ACTION, \
         REG_ACTION_DATA, REG_TENANT_ID) VALUES (?, ?, ?, ?, ?, ?)",
        &args![logged, user, now_naive(), action as i64, data, t],
    )
    .await?;
    Ok(())
}

pub(crate) async fn insert_content(c: &mut Exec<'_>, t: i64, data: &[u8]) -> Result<Option<i64>> {
    if data.is_empty() {
        return Ok(None);
    }
    let id = c
        .insert_id(
            "INSERT INTO REG_CONTENT (REG_CONTENT_DATA, REG_TENANT_ID) VALUES (?, ?)",
            "REG_CONTENT_ID",
            &args![data, t],
        )
        .await?;
    Ok(Some(id))
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_resource(
    c: &mut Exec<'_>,
    t: i64,
    path_id: i64,
    name: Option<&str>,
    media_type: Option<&str>,
    creator: &str,
    created: NaiveDateTime,
    updator: &str,
    updated: NaiveDateTime,
    description: Option<&str>,
    content_id: Option<i64>,
    uuid: &str,
) -> Result<i64> {
    c.insert_id(
        "INSERT INTO REG_RESOURCE (REG_PATH_ID, REG_NAME, REG_MEDIA_TYPE, REG_CREATOR, \
         REG_CREATED_TIME, REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, REG_DESCRIPTION, \
         REG_CONTENT_ID, REG_TENANT_ID, REG_UUID) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        "REG_VERSION",
        &args![
            path_id,
            name,
            media_type,
            creator,
            created,
            updator,
            updated,
            description,
            content_id,
            t,
            uuid
        ],
    )
    .await
}

pub(crate) async fn attr_row(c: &mut Exec<'_>, t: i64, uuid: &str) -> Result<Option<AttrRow>> {
    let row = c
        .fetch_opt(
            "SELECT MODE, UID, GID, RDEV, ATIME_NS, MTIME_NS, CTIME_NS, REG_VERSION \
             FROM REGFS_ATTR WHERE REG_UUID = ? AND REG_TENANT_ID = ?",
            &args![uuid, t],
        )
        .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(AttrRow {
        mode: r.req_int(0)?,
        uid: r.req_int(1)?,
        gid: r.req_int(2)?,
        rdev: r.req_int(3)?,
        atime_ns: r.req_int(4)?,
        mtime_ns: r.req_int(5)?,
        ctime_ns: r.req_int(6)?,
        version: r.req_int(7)?,
    }))
}

pub(crate) async fn put_attr(c: &mut Exec<'_>, t: i64, uuid: &str, a: AttrRow) -> Result<()> {
    let sql = format!(
        "INSERT INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, ATIME_NS, \
         MTIME_NS, CTIME_NS, REG_VERSION) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?){}",
        c.dialect().on_attr_conflict(true)
    );
    c.execute(
        &sql,
        &args![
            uuid, t, a.mode, a.uid, a.gid, a.rdev, a.atime_ns, a.mtime_ns, a.ctime_ns, a.version
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn attrs_or_default(
    c: &mut Exec<'_>,
    t: i64,
    row: &ResourceRow,
) -> Result<AttrRow> {
    Ok(match attr_row(c, t, &row.uuid).await? {
        Some(a) => a,
        None => default_attrs(row),
    })
}

/// A new entry's attributes and its collection's new times ([`put_attr`] and [`touch_dir`])
/// in one statement: the new entry's fresh UUID has no row to collide with.
pub(crate) async fn put_attr_touching(
    c: &mut Exec<'_>,
    t: i64,
    uuid: &str,
    a: AttrRow,
    dir: &ResourceRow,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, ATIME_NS, \
         MTIME_NS, CTIME_NS, REG_VERSION) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?), {TOUCH_ROW}{}",
        c.dialect().on_attr_conflict(false)
    );
    let mut all = args![
        uuid, t, a.mode, a.uid, a.gid, a.rdev, a.atime_ns, a.mtime_ns, a.ctime_ns, a.version
    ]
    .to_vec();
    // The collection's times are the new entry's ctime (see Store::create).
    all.extend(touch_args(t, dir, a.ctime_ns));
    c.execute(&sql, &all).await?;
    Ok(())
}

/// The REGFS_ATTR row (VALUES tuple) that [`touch_dir`] writes, bound by [`touch_args`].
const TOUCH_ROW: &str = "(?, ?, ?, 0, 0, 0, ?, ?, ?, ?)";

fn touch_args(t: i64, dir: &ResourceRow, now: i64) -> [Val<'_>; 7] {
    args![
        &dir.uuid,
        t,
        (libc::S_IFDIR | DEFAULT_DIR_PERM) as i64,
        dir.updated_ns(),
        now,
        now,
        dir.version
    ]
}

/// A directory's mtime and ctime move when entries are added, removed or renamed in it.
/// Its times become `now` (ns), which the caller reports (see [`Store::remove`]).
pub(crate) async fn touch_dir(c: &mut Exec<'_>, t: i64, dir: &ResourceRow, now: i64) -> Result<()> {
    let sql = format!(
        "INSERT INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, ATIME_NS, \
         MTIME_NS, CTIME_NS, REG_VERSION) VALUES {TOUCH_ROW}{}",
        c.dialect().on_attr_conflict(false)
    );
    c.execute(&sql, &touch_args(t, dir, now)).await?;
    Ok(())
}

pub(crate) async fn touch_ctime(
    c: &mut Exec<'_>,
    t: i64,
    row: &ResourceRow,
    now: i64,
) -> Result<()> {
    let change = AttrChange {
        ctime: Some(from_ns(now)),
        ..Default::default()
    };
    let a = apply_change(row, attrs_or_default(c, t, row).await?, &change);
    put_attr(c, t, &row.uuid, a).await
}

pub(crate) async fn insert_property(
    c: &mut Exec<'_>,
    t: i64,
    path_id: i64,
    resource_name: Option<&str>,
    name: &str,
    value: &str,
) -> Result<()> {
    let id = c
        .insert_id(
            "INSERT INTO REG_PROPERTY (REG_NAME, REG_VALUE, REG_TENANT_ID) VALUES (?, ?, ?)",
            "REG_ID",
            &args![name, value, t],
        )
        .await?;
    c.execute(
        "INSERT INTO REG_RESOURCE_PROPERTY (REG_PROPERTY_ID, REG_PATH_ID, REG_RESOURCE_NAME, \
         REG_TENANT_ID) VALUES (?, ?, ?, ?)",
        &args![id, path_id, resource_name, t],
    )
    .await?;
    Ok(())
}

/// `key` `n` times over: the arguments of `n` queries joined by UNION ALL.
fn repeat_args<'a>(key: &[Val<'a>], n: usize) -> Vec<Val<'a>> {
    key.iter().cycle().take(key.len() * n).copied().collect()
}

/// Carbon's update in versioned-mappings mode (see [`VERSIONED_MAPPINGS`]): the properties,
/// tags, comments and ratings of version `old` are copied to version `new`, each as a new
/// entity row mapped to `new`, as Carbon's `addProperties` and `copyTags`/`copyComments`/
/// `copyRatings` do; `old`'s rows stay, as Carbon leaves them. Without it a Carbon node would
/// see the resource lose them at every write through regfs. One query when there are none.
pub(crate) async fn carry_versioned_mappings(
    c: &mut Exec<'_>,
    t: i64,
    old: i64,
    new: i64,
) -> Result<()> {
    for (kind, entity_id) in versioned_mappings(c, t, old).await? {
        let (map, id_column, entity, columns) = VERSIONED_MAPPINGS[kind];
        let copied = c
            .insert_id(
                &format!(
                    "INSERT INTO {entity} ({columns}, REG_TENANT_ID) SELECT {columns}, \
                     REG_TENANT_ID FROM {entity} WHERE REG_ID = ? AND REG_TENANT_ID = ?"
                ),
                "REG_ID",
                &args![entity_id, t],
            )
            .await?;
        c.execute(
            &format!(
                "INSERT INTO {map} ({id_column}, REG_VERSION, REG_TENANT_ID) VALUES (?, ?, ?)"
            ),
            &args![copied, new, t],
        )
        .await?;
    }
    Ok(())
}

/// Carbon's snapshot of a resource about to be overwritten, removed or replaced when
/// `versionResourcesOnChange` is on (`VersionRepository.createSnapshot` of a non-collection):
/// its content is copied to REG_CONTENT_HISTORY under the same id and its row to
/// REG_RESOURCE_HISTORY under the same version (each unless already there), a REG_SNAPSHOT row
/// lists the version (8 bytes, big-endian), and the associations whose source is `p` are copied
/// to `p;version:N`. The caller then deletes the live rows as it always does. Returns N, the
/// snapshot id (what Carbon shows as `p;version:N`).
pub(crate) async fn archive(c: &mut Exec<'_>, t: i64, row: &ResourceRow, p: &str) -> Result<i64> {
    if let Some(content) = row.content_id {
        c.execute(
            "INSERT INTO REG_CONTENT_HISTORY (REG_CONTENT_ID, REG_CONTENT_DATA, REG_TENANT_ID) \
             SELECT REG_CONTENT_ID, REG_CONTENT_DATA, REG_TENANT_ID FROM REG_CONTENT \
             WHERE REG_CONTENT_ID = ? AND REG_TENANT_ID = ? AND NOT EXISTS (SELECT 1 FROM \
             REG_CONTENT_HISTORY WHERE REG_CONTENT_ID = ? AND REG_TENANT_ID = ?)",
            &args![content, t, content, t],
        )
        .await?;
    }
    const COLUMNS: &str = "REG_PATH_ID, REG_NAME, REG_VERSION, REG_MEDIA_TYPE, REG_CREATOR, \
         REG_CREATED_TIME, REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, REG_DESCRIPTION, \
         REG_CONTENT_ID, REG_TENANT_ID, REG_UUID";
    c.execute(
        &format!(
            "INSERT INTO REG_RESOURCE_HISTORY ({COLUMNS}) SELECT {COLUMNS} FROM REG_RESOURCE \
             WHERE REG_VERSION = ? AND REG_TENANT_ID = ? AND NOT EXISTS (SELECT 1 FROM \
             REG_RESOURCE_HISTORY WHERE REG_VERSION = ? AND REG_TENANT_ID = ?)"
        ),
        &args![row.version, t, row.version, t],
    )
    .await?;
    let vids = row.version.to_be_bytes();
    let snapshot = c
        .insert_id(
            "INSERT INTO REG_SNAPSHOT (REG_PATH_ID, REG_RESOURCE_NAME, REG_RESOURCE_VIDS, \
             REG_TENANT_ID) VALUES (?, ?, ?, ?)",
            "REG_SNAPSHOT_ID",
            &args![row.path_id, row.name.as_deref(), &vids[..], t],
        )
        .await?;
    let versioned = format!("{p};version:{snapshot}");
    c.execute(
        &format!(
            "INSERT INTO REG_ASSOCIATION (REG_SOURCEPATH, REG_TARGETPATH, REG_ASSOCIATION_TYPE, \
         REG_TENANT_ID) SELECT ?, REG_TARGETPATH, REG_ASSOCIATION_TYPE, REG_TENANT_ID \
         FROM REG_ASSOCIATION WHERE {} AND REG_TENANT_ID = ?",
            c.text()
                .eq("REG_SOURCEPATH", "REG_ASSOCIATION", "REG_SOURCEPATH")
        ),
        &args![versioned.as_str(), p, t],
    )
    .await?;
    Ok(snapshot)
}

/// The archived row of `p;version:N` and its content length, read as Carbon reads it
/// (`JDBCResourceVersionDAO.get`): snapshot N of `p`'s path id and name lists versions in
/// REG_RESOURCE_VIDS (8 bytes each, big-endian, a 0 ends the list), and the first of them
/// archived in REG_RESOURCE_HISTORY under that path id and name is the one. `None` if `p` has
/// no snapshot N.
pub(crate) async fn version_row(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    snapshot: i64,
) -> Result<Option<(ResourceRow, u64)>> {
    let Some(parent) = path::parent(p) else {
        return Ok(None);
    };
    let d = c.dialect();
    let sql = format!(
        "SELECT s.REG_PATH_ID, s.REG_RESOURCE_VIDS FROM REG_SNAPSHOT s JOIN REG_PATH p \
         ON p.REG_PATH_ID = s.REG_PATH_ID AND p.REG_TENANT_ID = s.REG_TENANT_ID \
         WHERE s.REG_SNAPSHOT_ID = ? AND s.REG_TENANT_ID = ? AND {} AND {}",
        path_eq(c.text(), "p.REG_PATH_VALUE"),
        c.text()
            .eq("s.REG_RESOURCE_NAME", "REG_SNAPSHOT", "REG_RESOURCE_NAME")
    );
    if !storable(c.text(), parent) || !storable_name(c.text(), p) {
        return Ok(None);
    }
    let Some(snap) = c
        .fetch_opt(&sql, &args![snapshot, t, parent, path::name(p)])
        .await?
    else {
        return Ok(None);
    };
    let path_id = snap.req_int(0)?;
    let vids = snap.blob(1)?.unwrap_or_default();
    let sql = format!(
        "SELECT {RESOURCE_COLUMNS}, {} FROM REG_RESOURCE_HISTORY r LEFT JOIN \
         REG_CONTENT_HISTORY c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID \
         AND c.REG_TENANT_ID = r.REG_TENANT_ID WHERE r.REG_VERSION = ? \
         AND r.REG_TENANT_ID = ? AND r.REG_PATH_ID = ? AND {}",
        d.int64("COALESCE(LENGTH(c.REG_CONTENT_DATA), 0)"),
        c.text()
            .eq("r.REG_NAME", "REG_RESOURCE_HISTORY", "REG_NAME")
    );
    for chunk in vids.chunks_exact(8) {
        let version = i64::from_be_bytes(chunk.try_into().expect("8 bytes"));
        if version == 0 {
            break;
        }
        if let Some(row) = c
            .fetch_opt(&sql, &args![version, t, path_id, path::name(p)])
            .await?
        {
            let size = row.req_int(RESOURCE_WIDTH)?.max(0) as u64;
            return Ok(Some((resource_row(&row, 0)?, size)));
        }
    }
    Ok(None)
}

/// [`version_row`] as the read-only regular file `p;version:N` shows: the archived row's
/// times, mode 0444, owned by root.
pub(crate) fn version_entry(row: &ResourceRow, size: u64) -> Entry {
    let mut attrs = default_attrs(row);
    attrs.mode = (libc::S_IFREG | 0o444) as i64;
    resource_entry(row, row.version, size, attrs)
}

/// The archived content `row` (from [`version_row`]) points at.
pub(crate) async fn version_content(
    c: &mut Exec<'_>,
    t: i64,
    row: &ResourceRow,
) -> Result<Content> {
    let Some(id) = row.content_id else {
        return Ok(Content::default());
    };
    let data = c
        .fetch_opt(
            "SELECT REG_CONTENT_DATA FROM REG_CONTENT_HISTORY WHERE REG_CONTENT_ID = ? \
             AND REG_TENANT_ID = ?",
            &args![id, t],
        )
        .await?
        .map(|r| r.blob(0))
        .transpose()?
        .flatten()
        .unwrap_or_default();
    Ok(data.into())
}

/// Carbon's version-keyed mappings (see [`VERSIONED_MAPPINGS`]) of `version`, in one query:
/// (index into [`VERSIONED_MAPPINGS`], the entity row's id), in that order.
async fn versioned_mappings(c: &mut Exec<'_>, t: i64, version: i64) -> Result<Vec<(usize, i64)>> {
    let probe = VERSIONED_MAPPINGS
        .iter()
        .enumerate()
        .map(|(i, (map, id, _, _))| {
            format!("SELECT {i}, {id} FROM {map} WHERE REG_VERSION = ? AND REG_TENANT_ID = ?")
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let probe = format!("{probe} ORDER BY 1, 2");
    let all = repeat_args(&args![version, t], VERSIONED_MAPPINGS.len());
    let mut out = Vec::new();
    for row in c.fetch(&probe, &all).await? {
        out.push((row.req_int(0)? as usize, row.req_int(1)?));
    }
    Ok(out)
}

/// Deletes one live row and what hangs off it; REG_PATH rows stay, as in Carbon.
pub(crate) async fn delete_row(c: &mut Exec<'_>, t: i64, row: &ResourceRow) -> Result<()> {
    delete_mappings(c, t, row).await?;
    delete_own_rows(c, t, row).await
}

/// Carbon's property, tag, comment and rating mappings of `row`, and its properties.
pub(crate) async fn delete_mappings(c: &mut Exec<'_>, t: i64, row: &ResourceRow) -> Result<()> {
    let text = c.text();
    let name = row.name.as_deref();
    // The mapping rows point at the properties, and MySQL checks that foreign key at every
    // statement: the mappings go first, so the property ids are read before they go.
    // One query says whether there are mappings at all (most files have none) and reads the
    // property ids: -1 rows stand for tag, comment and rating mappings.
    let rows = {
        let probe = PATH_KEYED_TABLES
            .iter()
            .map(|table| {
                let id = if *table == "REG_RESOURCE_PROPERTY" {
                    "REG_PROPERTY_ID"
                } else {
                    "-1"
                };
                format!(
                    "SELECT {id} FROM {table} WHERE REG_PATH_ID = ? \
                     AND {} AND REG_TENANT_ID = ?",
                    mapped_name_eq(text, table, "REG_RESOURCE_NAME")
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let all = repeat_args(&args![row.path_id, name, t], PATH_KEYED_TABLES.len());
        c.fetch(&probe, &all).await?
    };
    let mut props = Vec::new();
    for r in &rows {
        let id = r.req_int(0)?;
        if id >= 0 {
            props.push(id);
        }
    }
    if !rows.is_empty() {
        for table in PATH_KEYED_TABLES {
            let sql = format!(
                "DELETE FROM {table} WHERE REG_PATH_ID = ? AND {} AND REG_TENANT_ID = ?",
                mapped_name_eq(c.text(), table, "REG_RESOURCE_NAME")
            );
            c.execute(&sql, &args![row.path_id, name, t]).await?;
        }
    }
    for id in props {
        c.execute(
            "DELETE FROM REG_PROPERTY WHERE REG_ID = ? AND REG_TENANT_ID = ?",
            &args![id, t],
        )
        .await?;
    }
    Ok(())
}

/// The resource row of `row`'s version and its content row (what Carbon's update replaces).
pub(crate) async fn delete_row_and_content(
    c: &mut Exec<'_>,
    t: i64,
    row: &ResourceRow,
) -> Result<()> {
    c.execute(
        "DELETE FROM REG_RESOURCE WHERE REG_VERSION = ? AND REG_TENANT_ID = ?",
        &args![row.version, t],
    )
    .await?;
    if let Some(content) = row.content_id {
        c.execute(
            "DELETE FROM REG_CONTENT WHERE REG_CONTENT_ID = ? AND REG_TENANT_ID = ?",
            &args![content, t],
        )
        .await?;
    }
    Ok(())
}

/// `row` itself: the resource row, its content and its attributes.
pub(crate) async fn delete_own_rows(c: &mut Exec<'_>, t: i64, row: &ResourceRow) -> Result<()> {
    delete_row_and_content(c, t, row).await?;
    c.execute(
        "DELETE FROM REGFS_ATTR WHERE REG_UUID = ? AND REG_TENANT_ID = ?",
        &args![&row.uuid, t],
    )
    .await?;
    Ok(())
}

pub(crate) async fn has_children(c: &mut Exec<'_>, t: i64, path_id: i64) -> Result<bool> {
    if c.fetch_opt(
        "SELECT 1 FROM REG_RESOURCE WHERE REG_PATH_ID = ? AND REG_TENANT_ID = ? \
             AND REG_NAME IS NOT NULL LIMIT 1",
        &args![path_id, t],
    )
    .await?
    .is_some()
    {
        return Ok(true);
    }
    Ok(c.fetch_opt(
        "SELECT 1 FROM REG_PATH p JOIN REG_RESOURCE r ON r.REG_PATH_ID = p.REG_PATH_ID \
             AND r.REG_TENANT_ID = p.REG_TENANT_ID AND r.REG_NAME IS NULL \
             WHERE p.REG_PATH_PARENT_ID = ? AND p.REG_TENANT_ID = ? LIMIT 1",
        &args![path_id, t],
    )
    .await?
    .is_some())
}

/// Live collections at or below `p`, parents before children: (path id, path).
pub(crate) async fn subtree_collections(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
) -> Result<Vec<(i64, String)>> {
    let d = c.dialect();
    let prefix = if p == "/" {
        "/".to_string()
    } else {
        format!("{p}/")
    };
    // Prefix match on bytes: LIKE would need escaping, and its collation may fold case.
    let value = d.bytewise("p.REG_PATH_VALUE");
    let sql = format!(
        "SELECT p.REG_PATH_ID, p.REG_PATH_VALUE FROM REG_PATH p JOIN REG_RESOURCE r \
         ON r.REG_PATH_ID = p.REG_PATH_ID AND r.REG_TENANT_ID = p.REG_TENANT_ID \
         AND r.REG_NAME IS NULL WHERE p.REG_TENANT_ID = ? \
         AND ({value} = ? OR ({value} >= ? AND {value} < ?))"
    );
    // Every path that starts with "p/" sorts in ["p/", "p0"): '0' follows '/'.
    let upper = format!("{}0", &prefix[..prefix.len() - 1]);
    let rows = c.fetch(&sql, &args![t, p, &prefix, &upper]).await?;
    let mut out = rows
        .iter()
        .map(|r| Ok((r.req_int(0)?, r.req_text(1)?)))
        .collect::<Result<Vec<_>>>()?;
    out.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| a.1.cmp(&b.1)));
    Ok(out)
}

pub(crate) async fn delete_subtree(c: &mut Exec<'_>, t: i64, p: &str) -> Result<()> {
    if let Some(row) = file_row(c, t, p).await? {
        return delete_row(c, t, &row).await;
    }
    let colls = subtree_collections(c, t, p).await?;
    for (id, _) in colls.iter().rev() {
        let sql = format!(
            "SELECT {RESOURCE_COLUMNS} FROM REG_RESOURCE r WHERE r.REG_PATH_ID = ? \
             AND r.REG_TENANT_ID = ?"
        );
        let rows = c.fetch(&sql, &args![*id, t]).await?;
        for row in &rows {
            delete_row(c, t, &resource_row(row, 0)?).await?;
        }
    }
    Ok(())
}

/// A new collection with its ADD entry in REG_LOG; returns (path id, version, UUID).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn create_collection(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    parent_id: i64,
    user: &str,
    media_type: Option<&str>,
    description: Option<&str>,
    created: NaiveDateTime,
) -> Result<(i64, i64, String)> {
    let made =
        create_collection_unlogged(c, t, p, parent_id, user, media_type, description, created)
            .await?;
    insert_log(c, t, p, user, LogAction::Add, None).await?;
    Ok(made)
}

/// [`create_collection`] without the REG_LOG entry (Carbon's puts with activity logging off).
#[allow(clippy::too_many_arguments)]
async fn create_collection_unlogged(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    parent_id: i64,
    user: &str,
    media_type: Option<&str>,
    description: Option<&str>,
    created: NaiveDateTime,
) -> Result<(i64, i64, String)> {
    let path_id = ensure_path_row(c, t, p, parent_id).await?;
    let uuid = uuid::Uuid::new_v4().to_string();
    let version = insert_resource(
        c,
        t,
        path_id,
        None,
        media_type,
        user,
        created,
        user,
        now_naive(),
        description,
        None,
        &uuid,
    )
    .await?;
    Ok((path_id, version, uuid))
}

pub(crate) async fn ensure_collections(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    user: &str,
) -> Result<i64> {
    if let Some(row) = collection_row(c, t, p).await? {
        return Ok(row.path_id);
    }
    let parent_id = match path::parent(p) {
        Some(parent) => Box::pin(ensure_collections(c, t, parent, user)).await?,
        None => -1,
    };
    if path::parent(p).is_some() && file_row(c, t, p).await?.is_some() {
        return Err(err!(ENOTDIR, "{p} is a resource, not a collection"));
    }
    let (id, _, _) = create_collection(c, t, p, parent_id, user, None, None, now_naive()).await?;
    Ok(id)
}

/// What one query finds at a path and its parent: see [`dir_and_entry`].
pub(crate) struct DirAndEntry {
    /// The live parent collection.
    pub dir: ResourceRow,
    /// The live resource at the path, if any.
    pub file: Option<ResourceRow>,
    /// A live collection is at the path.
    pub collection: bool,
    /// Carbon's property, tag, comment or rating mappings name the path's resource.
    pub mapped: bool,
}

/// The live collection `parent`, the live resource at `p` in it, and whether a collection is
/// at `p`: what an unlink or a create reads, in one query. `None` when `parent` is not a live
/// collection (the slow paths then say which errno).
pub(crate) async fn dir_and_entry(
    c: &mut Exec<'_>,
    t: i64,
    parent: &str,
    p: &str,
) -> Result<Option<DirAndEntry>> {
    let d = c.dialect();
    let text = c.text();
    if !storable(text, parent) {
        return Ok(None);
    }
    let name = path::name(p);
    // Arguments in the order their placeholders appear: the collection test, the mapping
    // tests, the resource's name, the parent.
    let mut args = Vec::new();
    let collection = if storable(text, p) {
        args.extend(args![p, t]);
        format!(
            "CASE WHEN EXISTS (SELECT 1 FROM REG_PATH cp JOIN REG_RESOURCE cr \
             ON cr.REG_PATH_ID = cp.REG_PATH_ID AND cr.REG_TENANT_ID = cp.REG_TENANT_ID \
             AND cr.REG_NAME IS NULL WHERE {} AND cp.REG_TENANT_ID = ?) \
             THEN 1 ELSE 0 END",
            path_eq(text, "cp.REG_PATH_VALUE")
        )
    } else {
        "0".to_string()
    };
    // A name the columns cannot hold matches no row; it is looked up as NULL, which no
    // resource has, so the query still reads the parent.
    let name = storable_name(text, p).then_some(name);
    let mut mapped = Vec::new();
    for table in PATH_KEYED_TABLES {
        mapped.push(format!(
            "EXISTS (SELECT 1 FROM {table} m WHERE m.REG_PATH_ID = p.REG_PATH_ID \
             AND {} AND m.REG_TENANT_ID = ?)",
            text.eq("m.REG_RESOURCE_NAME", table, "REG_RESOURCE_NAME")
        ));
        args.extend(args![name, t]);
    }
    let mapped = mapped.join(" OR ");
    args.extend(args![name, parent, t]);
    let sql = format!(
        "SELECT {RESOURCE_COLUMNS}, {}, {}, {} FROM REG_PATH p JOIN REG_RESOURCE r \
         ON r.REG_PATH_ID = p.REG_PATH_ID AND r.REG_TENANT_ID = p.REG_TENANT_ID \
         AND r.REG_NAME IS NULL LEFT JOIN REG_RESOURCE f ON f.REG_PATH_ID = p.REG_PATH_ID \
         AND f.REG_TENANT_ID = p.REG_TENANT_ID AND {} \
         WHERE {} AND p.REG_TENANT_ID = ?",
        RESOURCE_COLUMNS.replace("r.", "f."),
        d.int64(&collection),
        d.int64(&format!("CASE WHEN {mapped} THEN 1 ELSE 0 END")),
        name_eq(text, "f.REG_NAME"),
        path_eq(text, "p.REG_PATH_VALUE")
    );
    let Some(row) = c.fetch_opt(&sql, &args).await? else {
        return Ok(None);
    };
    // The resource's columns follow the collection's; REG_VERSION is the third.
    const W: usize = RESOURCE_WIDTH;
    let file = match row.int(W + 2)? {
        Some(_) => Some(resource_row(&row, W)?),
        None => None,
    };
    Ok(Some(DirAndEntry {
        dir: resource_row(&row, 0)?,
        file,
        collection: row.req_int(2 * W)? != 0,
        mapped: row.req_int(2 * W + 1)? != 0,
    }))
}

/// [`remove_checks`] of an unlink, and whether the resource has mappings to delete (`true`
/// when not known).
pub(crate) async fn unlink_checks(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    parent: &str,
) -> Result<(ResourceRow, ResourceRow, bool)> {
    if let Some(DirAndEntry {
        dir,
        file: Some(row),
        mapped,
        ..
    }) = dir_and_entry(c, t, parent, p).await?
    {
        return Ok((dir, row, mapped));
    }
    let (dir, row) = remove_checks(c, t, p, parent, false).await?;
    Ok((dir, row, true))
}

/// The parent collection and the row an unlink or rmdir removes, or the errno that applies.
pub(crate) async fn remove_checks(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    parent: &str,
    dir: bool,
) -> Result<(ResourceRow, ResourceRow)> {
    // The slow path: which errno applies.
    let parent_row = require_dir(c, t, parent).await?;
    let row = if dir {
        let Some(row) = collection_row(c, t, p).await? else {
            if file_row(c, t, p).await?.is_some() {
                return Err(err!(ENOTDIR, "{p} is a resource, not a collection"));
            }
            return Err(err!(ENOENT, "{p} does not exist"));
        };
        if has_children(c, t, row.path_id).await? {
            return Err(err!(ENOTEMPTY, "collection {p} is not empty"));
        }
        row
    } else {
        let Some(row) = file_row(c, t, p).await? else {
            if collection_row(c, t, p).await?.is_some() {
                return Err(err!(EISDIR, "{p} is a collection"));
            }
            return Err(err!(ENOENT, "{p} does not exist"));
        };
        row
    };
    Ok((parent_row, row))
}

/// The base collections Carbon creates on a tenant's first start, and the cluster lock row.
pub(crate) async fn base_collections(c: &mut Exec<'_>, t: i64) -> Result<()> {
    if collection_row(c, t, "/").await?.is_none() {
        for (p, description) in BASE_COLLECTIONS {
            let parent_id = match path::parent(p) {
                Some(parent) => require_dir(c, t, parent).await?.path_id,
                None => -1,
            };
            create_collection(
                c,
                t,
                p,
                parent_id,
                SYSTEM_USER,
                None,
                description,
                now_naive(),
            )
            .await?;
        }
    }
    if c.fetch_opt(
        "SELECT 1 FROM REG_CLUSTER_LOCK WHERE REG_LOCK_NAME = 'INITIALIZE'",
        &[],
    )
    .await?
    .is_none()
    {
        c.execute(
            "INSERT INTO REG_CLUSTER_LOCK (REG_LOCK_NAME, REG_LOCK_STATUS) \
                 VALUES ('INITIALIZE', 'UNLOCKED')",
            &[],
        )
        .await?;
    }
    Ok(())
}

/// Moves `from` to `to` inside one database, with its subtree for a collection. Returns the
/// collections' new times (see [`Store::rename`]). A resource it replaces is archived first
/// when `versioning` (Carbon's `versionResourcesOnChange`) is on.
pub(crate) async fn rename(
    c: &mut Exec<'_>,
    t: i64,
    from: &str,
    to: &str,
    mode: RenameMode,
    user: &str,
    versioning: bool,
) -> Result<Option<SystemTime>> {
    let (Some(from_parent), Some(to_parent)) = (path::parent(from), path::parent(to)) else {
        return Err(err!(EBUSY, "the root cannot be renamed"));
    };
    // A resource and its collection come in one query (with whether Carbon's mappings name
    // it); a collection, or an error, takes the general path.
    let (mut src, src_parent, src_mapped) = match dir_and_entry(c, t, from_parent, from).await? {
        Some(DirAndEntry {
            dir,
            file: Some(row),
            mapped,
            ..
        }) => (row, dir, mapped),
        _ => {
            let Some(src) = any_row(c, t, from).await? else {
                return Err(err!(ENOENT, "{from} does not exist"));
            };
            (src, require_dir(c, t, from_parent).await?, true)
        }
    };
    let src_is_dir = src.name.is_none();
    // The same for the destination's collection and whatever is at the destination.
    let (dst_parent, dst) = match dir_and_entry(c, t, to_parent, to).await? {
        Some(found) => {
            let dst = match (found.file, found.collection) {
                (Some(row), _) => Some(row),
                (None, true) => collection_row(c, t, to).await?,
                (None, false) => None,
            };
            (found.dir, dst)
        }
        None => (
            require_dir(c, t, to_parent).await?,
            any_row(c, t, to).await?,
        ),
    };
    if src_is_dir && path::is_within(to, from) {
        if to == from {
            return Ok(None);
        }
        return Err(err!(EINVAL, "cannot move {from} into its own subtree {to}"));
    }
    check_storable(c.text(), to, src_is_dir)?;
    if dst.is_none() {
        let own = (from_parent == to_parent).then(|| path::name(from));
        refuse_confused(c, t, DirKey::Id(dst_parent.path_id), to, own).await?;
    }
    let mut keep_identity = None;
    if let Some(dst) = dst {
        if dst.uuid == src.uuid {
            return Ok(None);
        }
        if mode == RenameMode::NoReplace {
            return Err(err!(EEXIST, "{to} exists (RENAME_NOREPLACE)"));
        }
        let dst_is_dir = dst.name.is_none();
        // A Carbon symbolic link is a collection (or resource) of the link media type; to
        // rename it is a symlink, neither a directory nor one to fill.
        let is_link = |r: &ResourceRow| r.media_type.as_deref() == Some(LINK_MEDIA_TYPE);
        let (src_dir, dst_dir) = (src_is_dir && !is_link(&src), dst_is_dir && !is_link(&dst));
        match (src_dir, dst_dir) {
            (true, false) => return Err(err!(ENOTDIR, "{to} is not a collection")),
            (false, true) => return Err(err!(EISDIR, "{to} is a collection")),
            (true, true) if has_children(c, t, dst.path_id).await? => {
                return Err(err!(ENOTEMPTY, "collection {to} is not empty"));
            }
            _ => {}
        }
        if versioning && !dst_is_dir {
            archive(c, t, &dst, to).await?;
        }
        let dst_link_collection = dst_is_dir && !dst_dir;
        if dst_link_collection {
            // A link collection goes with whatever hangs below it.
            delete_subtree(c, t, to).await?;
        }
        // A save by rename (sed -i, editors, rsync, Python's os.replace) writes a temporary
        // file and renames it over the resource: what the registry knows of the resource
        // (UUID, creator, creation time, description, media type, properties, tags, comments,
        // ratings) must not go with the old content. When the moved resource has none of that
        // of its own, it takes the replaced one's, as Carbon's update would keep them.
        if !src_is_dir
            && !dst_is_dir
            && !is_link(&dst)
            && !src_mapped
            && versioned_mappings(c, t, src.version).await?.is_empty()
        {
            carry_versioned_mappings(c, t, dst.version, src.version).await?;
            delete_own_rows(c, t, &dst).await?;
            keep_identity = Some(dst);
        } else if !dst_link_collection {
            delete_row(c, t, &dst).await?;
        }
    }
    if src_is_dir {
        let colls = subtree_collections(c, t, from).await?;
        let mut new_ids: std::collections::HashMap<String, i64> = Default::default();
        for (old_id, old_path) in colls {
            let new_path = format!("{to}{}", &old_path[from.len()..]);
            let parent_id = if old_path == from {
                dst_parent.path_id
            } else {
                let np = path::parent(&new_path).unwrap_or("/");
                *new_ids
                    .get(np)
                    .ok_or_else(|| err!(EIO, "rename: parent of {new_path} not moved"))?
            };
            let new_id = ensure_path_row(c, t, &new_path, parent_id).await?;
            new_ids.insert(new_path, new_id);
            c.execute(
                "UPDATE REG_RESOURCE SET REG_PATH_ID = ? WHERE REG_PATH_ID = ? \
                     AND REG_TENANT_ID = ?",
                &args![new_id, old_id, t],
            )
            .await?;
            for table in PATH_KEYED_TABLES {
                let sql = format!(
                    "UPDATE {table} SET REG_PATH_ID = ? WHERE REG_PATH_ID = ? \
                         AND REG_TENANT_ID = ?"
                );
                c.execute(&sql, &args![new_id, old_id, t]).await?;
            }
        }
    } else {
        let new_name = path::name(to);
        c.execute(
            "UPDATE REG_RESOURCE SET REG_PATH_ID = ?, REG_NAME = ? \
                 WHERE REG_VERSION = ? AND REG_TENANT_ID = ?",
            &args![dst_parent.path_id, new_name, src.version, t],
        )
        .await?;
        for table in PATH_KEYED_TABLES.iter().filter(|_| src_mapped) {
            let sql = format!(
                "UPDATE {table} SET REG_PATH_ID = ?, REG_RESOURCE_NAME = ? \
                     WHERE REG_PATH_ID = ? AND {} AND REG_TENANT_ID = ?",
                c.text().eq("REG_RESOURCE_NAME", table, "REG_RESOURCE_NAME")
            );
            c.execute(
                &sql,
                &args![
                    dst_parent.path_id,
                    new_name,
                    src.path_id,
                    src.name.as_deref(),
                    t
                ],
            )
            .await?;
        }
        if let Some(dst) = keep_identity {
            c.execute(
                "UPDATE REG_RESOURCE SET REG_UUID = ?, REG_CREATOR = ?, REG_CREATED_TIME = ?, \
                 REG_DESCRIPTION = ?, REG_MEDIA_TYPE = ? WHERE REG_VERSION = ? \
                 AND REG_TENANT_ID = ?",
                &args![
                    &dst.uuid,
                    &dst.creator,
                    dst.created,
                    dst.description.as_deref(),
                    dst.media_type.as_deref(),
                    src.version,
                    t
                ],
            )
            .await?;
            c.execute(
                "UPDATE REGFS_ATTR SET REG_UUID = ? WHERE REG_UUID = ? AND REG_TENANT_ID = ?",
                &args![&dst.uuid, &src.uuid, t],
            )
            .await?;
            src.uuid = dst.uuid;
        }
    }
    let now = now_ns();
    touch_ctime(c, t, &src, now).await?;
    touch_dir(c, t, &src_parent, now).await?;
    if dst_parent.uuid != src_parent.uuid {
        touch_dir(c, t, &dst_parent, now).await?;
    }
    let action = if from_parent == to_parent {
        LogAction::Rename
    } else {
        LogAction::Move
    };
    insert_log(c, t, to, user, action, Some(from)).await?;
    Ok(Some(from_ns(now)))
}

/// `a` (the attributes of `row`) with `change` applied; ctime moves to now unless given.
pub(crate) fn apply_change(row: &ResourceRow, mut a: AttrRow, change: &AttrChange) -> AttrRow {
    if a.version != row.version {
        a.mtime_ns = row.updated_ns();
        a.version = row.version;
    }
    if let Some(perm) = change.perm {
        a.mode = ((a.mode as u32 & libc::S_IFMT) | (perm & 0o7777)) as i64;
    }
    if let Some(uid) = change.uid {
        a.uid = uid as i64;
    }
    if let Some(gid) = change.gid {
        a.gid = gid as i64;
    }
    if let Some(at) = change.atime {
        a.atime_ns = to_ns(at);
    }
    if let Some(mt) = change.mtime {
        a.mtime_ns = to_ns(mt);
    }
    a.ctime_ns = change.ctime.map(to_ns).unwrap_or_else(now_ns);
    a
}

/// Changes POSIX attributes and returns the entry as it is now.
pub(crate) async fn set_attr(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    change: &AttrChange,
) -> Result<Entry> {
    // A resource (chmod, utimens after a write: the common case): its row, attributes and
    // size in one read, and the reply built from what was written.
    if let Some((row, attrs, size)) = file_row_with_attrs_and_size(c, t, p).await? {
        let a = apply_change(&row, attrs, change);
        put_attr(c, t, &row.uuid, a).await?;
        note_change(c, t, p).await?;
        return Ok(resource_entry(&row, row.version, size, a));
    }
    let Some(row) = any_row(c, t, p).await? else {
        return Err(err!(ENOENT, "{p} does not exist"));
    };
    let a = apply_change(&row, attrs_or_default(c, t, &row).await?, change);
    put_attr(c, t, &row.uuid, a).await?;
    note_change(c, t, p).await?;
    stat_on(c, t, p)
        .await?
        .ok_or_else(|| err!(EIO, "{p} vanished inside its own transaction"))
}

/// Makes `mount_path` a mount link in the node's own database, with its mount record.
pub(crate) async fn mount_link(
    c: &mut Exec<'_>,
    t: i64,
    mount_path: &str,
    instance_id: &str,
    target_path: &str,
    replace: bool,
) -> Result<()> {
    let restoration = format!("{mount_path};{instance_id};{target_path};{SYSTEM_USER}");
    let record = path::join(MOUNT_RECORDS_PATH, &mount_path.replace('/', "-"));
    let Some(parent) = path::parent(mount_path) else {
        return Err(err!(EINVAL, "cannot mount over the registry root"));
    };
    let current = collection_row(c, t, mount_path).await?;
    let already = match &current {
        Some(row) if row.media_type.as_deref() == Some(LINK_MEDIA_TYPE) => {
            let value = c
                .fetch_opt(
                    "SELECT pr.REG_VALUE FROM REG_RESOURCE_PROPERTY rp JOIN REG_PROPERTY pr \
                         ON pr.REG_ID = rp.REG_PROPERTY_ID AND pr.REG_TENANT_ID = rp.REG_TENANT_ID \
                         WHERE rp.REG_PATH_ID = ? AND rp.REG_RESOURCE_NAME IS NULL \
                         AND rp.REG_TENANT_ID = ? AND pr.REG_NAME = 'registry.linkrestoration'",
                    &args![row.path_id, t],
                )
                .await?
                .map(|r| r.text(0))
                .transpose()?
                .flatten();
            value.as_deref() == Some(restoration.as_str())
        }
        _ => false,
    };
    if already {
        return Ok(());
    }
    let existing = any_row(c, t, mount_path).await?;
    // Carbon's createLink puts the link with activity logging off: the only entry it logs is
    // CREATE_REMOTE_LINK (and, for overwrite="true", the DELETE_RESOURCE of what was there).
    let path_id = match existing {
        // overwrite="virtual" over a local collection: the collection itself becomes the link
        // and is marked as one that existed, so that removing the link keeps it.
        Some(row) if !replace && row.name.is_none() => {
            c.execute(
                "UPDATE REG_RESOURCE SET REG_MEDIA_TYPE = ? WHERE REG_VERSION = ? \
                 AND REG_TENANT_ID = ?",
                &args![LINK_MEDIA_TYPE, row.version, t],
            )
            .await?;
            insert_property(c, t, row.path_id, None, "registry.existingresource", "true").await?;
            row.path_id
        }
        // overwrite="virtual" over a local resource: it stays, hidden while the mount is there.
        Some(_) if !replace => return Ok(()),
        other => {
            if other.is_some() {
                delete_subtree(c, t, mount_path).await?;
                insert_log(
                    c,
                    t,
                    mount_path,
                    SYSTEM_USER,
                    LogAction::DeleteResource,
                    None,
                )
                .await?;
            }
            let parent_id = ensure_collections(c, t, parent, SYSTEM_USER).await?;
            let (path_id, _, _) = create_collection_unlogged(
                c,
                t,
                mount_path,
                parent_id,
                SYSTEM_USER,
                Some(LINK_MEDIA_TYPE),
                None,
                now_naive(),
            )
            .await?;
            path_id
        }
    };
    {
        insert_property(c, t, path_id, None, "registry.nonrecursive", "true").await?;
        insert_property(
            c,
            t,
            path_id,
            None,
            "registry.linkrestoration",
            &restoration,
        )
        .await?;
        insert_log(
            c,
            t,
            mount_path,
            SYSTEM_USER,
            LogAction::CreateRemoteLink,
            Some(&format!("{instance_id};{target_path}")),
        )
        .await?;
        mount_record(
            c,
            t,
            path::name(&record),
            Some(&[
                ("path", mount_path),
                ("target", instance_id),
                ("subPath", target_path),
                ("author", SYSTEM_USER),
                ("registry.fixedmount", "true"),
            ]),
        )
        .await?;
    }
    Ok(())
}

/// Writes (with `props`) or removes the resource `name` under [`MOUNT_RECORDS_PATH`]: Carbon's
/// record of a mount or link (`RegistryUtils.addMountEntry`), media type
/// [`MOUNT_MEDIA_TYPE`], no content, the properties given, an ADD in REG_LOG.
pub(crate) async fn mount_record(
    c: &mut Exec<'_>,
    t: i64,
    name: &str,
    props: Option<&[(&str, &str)]>,
) -> Result<()> {
    let record = path::join(MOUNT_RECORDS_PATH, name);
    if let Some(old) = file_row(c, t, &record).await? {
        delete_row(c, t, &old).await?;
        if props.is_none() {
            insert_log(c, t, &record, SYSTEM_USER, LogAction::DeleteResource, None).await?;
        }
    }
    let Some(props) = props else {
        return Ok(());
    };
    let records_id = ensure_collections(c, t, MOUNT_RECORDS_PATH, SYSTEM_USER).await?;
    let uuid = uuid::Uuid::new_v4().to_string();
    let now = now_naive();
    insert_resource(
        c,
        t,
        records_id,
        Some(name),
        Some(MOUNT_MEDIA_TYPE),
        SYSTEM_USER,
        now,
        SYSTEM_USER,
        now,
        None,
        None,
        &uuid,
    )
    .await?;
    for (k, v) in props {
        insert_property(c, t, records_id, Some(name), k, v).await?;
    }
    insert_log(c, t, &record, SYSTEM_USER, LogAction::Add, None).await?;
    Ok(())
}

/// The `registry.linkrestoration` value of the Carbon symbolic link at `p` (see
/// [`Store::link_restoration`]); properties keyed by path (4.12.x) or by version (4.4.x).
pub(crate) async fn link_restoration(c: &mut Exec<'_>, t: i64, p: &str) -> Result<Option<String>> {
    let Some(row) = any_row(c, t, p).await? else {
        return Ok(None);
    };
    if row.media_type.as_deref() != Some(LINK_MEDIA_TYPE) {
        return Ok(None);
    }
    let sql = format!(
        "SELECT pr.REG_VALUE FROM REG_RESOURCE_PROPERTY rp JOIN REG_PROPERTY pr \
         ON pr.REG_ID = rp.REG_PROPERTY_ID AND pr.REG_TENANT_ID = rp.REG_TENANT_ID \
         WHERE rp.REG_TENANT_ID = ? AND pr.REG_NAME = 'registry.linkrestoration' \
         AND ((rp.REG_PATH_ID = ? AND {}) OR rp.REG_VERSION = ?)",
        mapped_name_eq(c.text(), "REG_RESOURCE_PROPERTY", "rp.REG_RESOURCE_NAME")
    );
    let value = c
        .fetch_opt(
            &sql,
            &args![t, row.path_id, row.name.as_deref(), row.version],
        )
        .await?
        .map(|r| r.text(0))
        .transpose()?
        .flatten();
    Ok(value.filter(|v| v.split(';').count() == 3))
}

/// A Carbon symbolic link at `p` (see [`Store::create_link`]); returns the new row's entry
/// as stored (a collection or a resource, which the registry shows as a symlink).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn create_link(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    restoration: &str,
    target: &str,
    as_resource: bool,
    new: &NewEntry,
    user: &str,
) -> Result<Entry> {
    let Some(parent) = path::parent(p) else {
        return Err(err!(EEXIST, "the root always exists"));
    };
    check_storable(c.text(), p, !as_resource)?;
    let dir = require_dir(c, t, parent).await?;
    if any_row(c, t, p).await?.is_some() {
        return Err(err!(EEXIST, "{p} already exists"));
    }
    refuse_confused(c, t, DirKey::Id(dir.path_id), p, None).await?;
    let now = now_ns();
    let created = naive_from_ns(now);
    let (path_id, name, version, uuid) = if as_resource {
        let uuid = uuid::Uuid::new_v4().to_string();
        let name = path::name(p);
        let version = insert_resource(
            c,
            t,
            dir.path_id,
            Some(name),
            Some(LINK_MEDIA_TYPE),
            user,
            created,
            user,
            created,
            None,
            None,
            &uuid,
        )
        .await?;
        (dir.path_id, Some(name), version, uuid)
    } else {
        let (path_id, version, uuid) = create_collection_unlogged(
            c,
            t,
            p,
            dir.path_id,
            user,
            Some(LINK_MEDIA_TYPE),
            None,
            created,
        )
        .await?;
        (path_id, None, version, uuid)
    };
    insert_property(c, t, path_id, name, "registry.nonrecursive", "true").await?;
    insert_property(c, t, path_id, name, "registry.linkrestoration", restoration).await?;
    insert_log(c, t, p, user, LogAction::CreateSymbolicLink, Some(target)).await?;
    let attrs = AttrRow::for_new(new, now, version);
    put_attr_touching(c, t, &uuid, attrs, &dir).await?;
    Ok(EntryRow::from_parts(
        !as_resource,
        version,
        uuid,
        Some(LINK_MEDIA_TYPE.to_string()),
        created,
        0,
        attrs,
    )
    .into_entry())
}

/// Removes the Carbon symbolic link at `p` (see [`Store::remove_link`]).
pub(crate) async fn remove_link(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    user: &str,
) -> Result<SystemTime> {
    let Some(parent) = path::parent(p) else {
        return Err(err!(EBUSY, "the root cannot be removed"));
    };
    if link_restoration(c, t, p).await?.is_none() {
        return Err(err!(ENOENT, "{p} is not a symbolic link"));
    }
    let dir = require_dir(c, t, parent).await?;
    delete_subtree(c, t, p).await?;
    let now = now_ns();
    touch_dir(c, t, &dir, now).await?;
    insert_log(c, t, p, user, LogAction::DeleteResource, None).await?;
    insert_log(c, t, p, user, LogAction::RemoveLink, None).await?;
    Ok(from_ns(now))
}

/// `ESTALE` unless `old` is at the version a conditional write expects ([`Store::write_if`]).
pub(crate) fn check_expected(old: &ResourceRow, expected: Option<i64>, p: &str) -> Result<()> {
    match expected {
        Some(v) if v != old.version => Err(err!(
            ESTALE,
            "{p} changed (version {} is live, {v} was expected)",
            old.version
        )),
        _ => Ok(()),
    }
}
