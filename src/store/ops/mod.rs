//! The registry operations written once over [`Exec`], for every SQL store: row lookups, Carbon's
//! way of creating, deleting, moving and linking rows, and `apply`, the generic store: the body
//! of every [`Change`], which each store runs in its own transaction. A store's fast paths for
//! the hottest rows are an `Encoding` (`apply.rs`).
//!
//! This module keeps the column lists, row parsers and byte-exact name comparisons every query
//! shares; the operations are split by concern: `apply` (one transaction body per change),
//! `lookup` (reading rows), `write` (Carbon's inserts and updates, attributes, times, REG_LOG),
//! `remove`, `rename`, `versions` (snapshots, `PATH;version:N`, version-keyed mappings) and
//! `links` (mounts, symbolic links). Callers name them all as `ops::...`.

use chrono::NaiveDateTime;

use super::rows::*;
use super::*;
use crate::error::Result;
use crate::sql::text::{LOG_COLUMNS, NAME_COLUMNS, PATH_COLUMNS, PROPERTY_COLUMNS, TextColumns};
use crate::sql::{Dialect, Exec, Row, Val};
use crate::{args, err, path};

mod activity;
mod apply;
mod links;
mod load;
mod lookup;
mod props;
mod remove;
mod rename;
mod versions;
mod write;

pub(crate) use activity::*;
pub(crate) use apply::*;
pub(crate) use links::*;
pub(crate) use load::*;
pub(crate) use lookup::*;
pub(crate) use props::*;
pub(crate) use remove::*;
pub(crate) use rename::*;
pub(crate) use versions::*;
pub(crate) use write::*;

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
