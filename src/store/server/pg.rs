//! PostgreSQL fast paths: a file's create, write and unlink as one data-modifying statement
//! each (`WITH ... INSERT/DELETE ... RETURNING`), after one query that reads what the change
//! needs. The generic path takes 7-10 round trips per operation (BEGIN, each statement,
//! COMMIT); these take 2-3.
//!
//! There is no transaction around the two: the statement is guarded instead. It changes
//! nothing unless the rows it was computed from are still there (the old version for a write
//! or unlink, the live parent and the free name for a create), and it returns no row then, so
//! the caller retries from the read. Each statement runs SERIALIZABLE (every session's
//! default), so two nodes creating one name cannot both pass the guard.

use crate::content::Content;
use crate::error::Result;
use crate::sql::{Exec, Val};
use crate::store::rows::*;
use crate::store::{AttrChange, DEFAULT_DIR_PERM, Entry, LogAction};
use crate::{args, err};

/// The parent collection's REGFS_ATTR times move with a change in it (as `touch_dir` does).
/// Parameters continue the statement's numbering: parent uuid, default mode, created (ns),
/// now (ns), parent version; `FROM` names the CTE whose row makes it happen.
fn touch_parent(from: &str, first: usize) -> String {
    touch_parent_as("touch", from, first)
}

/// [`touch_parent`] as the CTE `alias` (a statement that touches two collections).
fn touch_parent_as(alias: &str, from: &str, first: usize) -> String {
    let n = |i: usize| format!("${}", first + i);
    format!(
        "{alias} AS (INSERT INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, \
         ATIME_NS, MTIME_NS, CTIME_NS, REG_VERSION) SELECT {}, $2, {}, 0, 0, 0, {}, {}, {}, {} \
         FROM {from} ON CONFLICT (REG_UUID, REG_TENANT_ID) DO UPDATE SET \
         MTIME_NS = excluded.MTIME_NS, CTIME_NS = excluded.CTIME_NS, \
         REG_VERSION = excluded.REG_VERSION)",
        n(0),
        n(1),
        n(2),
        n(3),
        n(3),
        n(4)
    )
}

fn touch_args<'a>(dir: &'a ResourceRow, now: i64) -> [Val<'a>; 5] {
    args![
        &dir.uuid,
        (libc::S_IFDIR | DEFAULT_DIR_PERM) as i64,
        dir.updated_ns(),
        now,
        dir.version
    ]
}

/// SQL: the collection row read as (`version`, `path_id`) is still the live collection at its
/// path. This is the guard of every statement here that takes a collection's row from an
/// earlier read (see [`unlink`]).
fn live_collection(version: &str, path_id: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM REG_RESOURCE WHERE REG_VERSION = {version} \
         AND REG_PATH_ID = {path_id} AND REG_NAME IS NULL AND REG_TENANT_ID = $2)"
    )
}

/// SQL: a live collection is at the path bound to `path`.
fn collection_at(path: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM REG_PATH cp JOIN REG_RESOURCE cr \
         ON cr.REG_PATH_ID = cp.REG_PATH_ID AND cr.REG_TENANT_ID = cp.REG_TENANT_ID \
         AND cr.REG_NAME IS NULL WHERE cp.REG_PATH_VALUE = {path} AND cp.REG_TENANT_ID = $2)"
    )
}

/// CTEs that delete the resource `name` in the collection `path_id` when `when` holds, and
/// what hangs off it: the row (CTE `{alias}`, returning its content id and UUID), its content
/// and attributes, Carbon's property, tag, comment and rating mappings, and the properties.
fn delete_resource(alias: &str, path_id: &str, name: &str, when: &str) -> String {
    let mappings: Vec<String> = PATH_KEYED_TABLES
        .iter()
        .enumerate()
        .map(|(i, table)| {
            format!(
                "{alias}_map{i} AS (DELETE FROM {table} WHERE REG_PATH_ID = {path_id} \
                 AND REG_RESOURCE_NAME = {name} AND REG_TENANT_ID = $2 \
                 AND EXISTS (SELECT 1 FROM {alias}){})",
                if *table == "REG_RESOURCE_PROPERTY" {
                    " RETURNING REG_PROPERTY_ID"
                } else {
                    ""
                }
            )
        })
        .collect();
    let properties = PATH_KEYED_TABLES
        .iter()
        .position(|table| *table == "REG_RESOURCE_PROPERTY")
        .expect("REG_RESOURCE_PROPERTY is a path-keyed table");
    format!(
        "{alias} AS (DELETE FROM REG_RESOURCE WHERE REG_PATH_ID = {path_id} \
         AND REG_NAME = {name} AND REG_TENANT_ID = $2 AND {when} \
         RETURNING REG_CONTENT_ID, REG_UUID), \
         {alias}_con AS (DELETE FROM REG_CONTENT WHERE REG_CONTENT_ID IN \
         (SELECT REG_CONTENT_ID FROM {alias}) AND REG_TENANT_ID = $2), \
         {alias}_attr AS (DELETE FROM REGFS_ATTR WHERE REG_UUID IN (SELECT REG_UUID FROM {alias}) \
         AND REG_TENANT_ID = $2), \
         {}, \
         {alias}_props AS (DELETE FROM REG_PROPERTY WHERE REG_TENANT_ID = $2 \
         AND REG_ID IN (SELECT REG_PROPERTY_ID FROM {alias}_map{properties}))",
        mappings.join(", ")
    )
}

/// A new resource named `name` in `dir` with content `data` (no content row when empty), its
/// attributes, the parent's times and the log entry. `None` if the guard failed: `dir` is no
/// longer the live collection at its path (see [`unlink`]), or the path is taken (by a
/// resource or a collection).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn create_file(
    c: &mut Exec<'_>,
    t: i64,
    dir: &ResourceRow,
    p: &str,
    name: &str,
    media: Option<&str>,
    user: &str,
    uuid: &str,
    attrs: &AttrRow,
    data: &[u8],
) -> Result<Option<i64>> {
    let now = attrs.ctime_ns;
    let created = naive_from_ns(now);
    let sql = format!(
        "WITH ok AS (SELECT 1 AS go WHERE {} \
         AND NOT EXISTS (SELECT 1 FROM REG_RESOURCE WHERE REG_PATH_ID = $1 AND REG_NAME = $3 \
         AND REG_TENANT_ID = $2) AND NOT {}), \
         con AS (INSERT INTO REG_CONTENT (REG_CONTENT_DATA, REG_TENANT_ID) \
         SELECT $15, $2 FROM ok WHERE octet_length($15) > 0 RETURNING REG_CONTENT_ID), \
         res AS (INSERT INTO REG_RESOURCE (REG_PATH_ID, REG_NAME, REG_MEDIA_TYPE, \
         REG_CREATOR, REG_CREATED_TIME, REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, \
         REG_DESCRIPTION, REG_CONTENT_ID, REG_TENANT_ID, REG_UUID) \
         SELECT $1, $3, $4, $5, $6, $5, $6, NULL, (SELECT REG_CONTENT_ID FROM con), $2, $7 \
         FROM ok RETURNING REG_VERSION), \
         attr AS (INSERT INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, \
         ATIME_NS, MTIME_NS, CTIME_NS, REG_VERSION) \
         SELECT $7, $2, $10, $11, $12, $13, $14, $14, $14, REG_VERSION FROM res), \
         log AS (INSERT INTO REG_LOG (REG_PATH, REG_USER_ID, REG_LOGGED_TIME, REG_ACTION, \
         REG_ACTION_DATA, REG_TENANT_ID) SELECT $9, $5, $6, {}, NULL, $2 FROM res), {} \
         SELECT REG_VERSION FROM res",
        live_collection("$8", "$1"),
        collection_at("$9"),
        LogAction::Add as i32,
        touch_parent("res", 16)
    );
    let mut all = args![
        dir.path_id,
        t,
        name,
        media,
        user,
        created,
        uuid,
        dir.version,
        p,
        attrs.mode,
        attrs.uid,
        attrs.gid,
        attrs.rdev,
        now,
        data
    ]
    .to_vec();
    all.extend(touch_args(dir, now));
    match c.fetch_opt(&sql, &all).await? {
        Some(row) => Ok(Some(row.req_int(0)?)),
        None => Ok(None),
    }
}

/// Carbon's update of the resource `old` (delete the row and its content, insert a new row
/// with a new REG_VERSION that keeps creator, creation time and UUID), its attributes and the
/// log entry. `None` if `old` is no longer the live version.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write(
    c: &mut Exec<'_>,
    t: i64,
    old: &ResourceRow,
    attrs: &AttrRow,
    data: &[u8],
    p: &str,
    user: &str,
    now: i64,
) -> Result<Option<i64>> {
    let sql = format!(
        "WITH old AS (DELETE FROM REG_RESOURCE WHERE REG_VERSION = $1 AND REG_TENANT_ID = $2 \
         RETURNING REG_VERSION), \
         oldc AS (DELETE FROM REG_CONTENT WHERE REG_CONTENT_ID = $3 AND REG_TENANT_ID = $2 \
         AND EXISTS (SELECT 1 FROM old)), \
         con AS (INSERT INTO REG_CONTENT (REG_CONTENT_DATA, REG_TENANT_ID) \
         SELECT $4, $2 FROM old WHERE octet_length($4) > 0 RETURNING REG_CONTENT_ID), \
         res AS (INSERT INTO REG_RESOURCE (REG_PATH_ID, REG_NAME, REG_MEDIA_TYPE, REG_CREATOR, \
         REG_CREATED_TIME, REG_LAST_UPDATOR, REG_LAST_UPDATED_TIME, REG_DESCRIPTION, \
         REG_CONTENT_ID, REG_TENANT_ID, REG_UUID) \
         SELECT $5, $6, $7, $8, $9, $10, $11, $12, (SELECT REG_CONTENT_ID FROM con), $2, $13 \
         FROM old RETURNING REG_VERSION), \
         attr AS (INSERT INTO REGFS_ATTR (REG_UUID, REG_TENANT_ID, MODE, UID, GID, RDEV, \
         ATIME_NS, MTIME_NS, CTIME_NS, REG_VERSION) \
         SELECT $13, $2, $14, $15, $16, $17, $18, $19, $19, REG_VERSION FROM res \
         ON CONFLICT (REG_UUID, REG_TENANT_ID) DO UPDATE SET MODE = excluded.MODE, \
         UID = excluded.UID, GID = excluded.GID, RDEV = excluded.RDEV, \
         ATIME_NS = excluded.ATIME_NS, MTIME_NS = excluded.MTIME_NS, \
         CTIME_NS = excluded.CTIME_NS, REG_VERSION = excluded.REG_VERSION), \
         log AS (INSERT INTO REG_LOG (REG_PATH, REG_USER_ID, REG_LOGGED_TIME, REG_ACTION, \
         REG_ACTION_DATA, REG_TENANT_ID) SELECT $20, $10, $11, {}, NULL, $2 FROM res), {} \
         SELECT REG_VERSION FROM res",
        LogAction::Update as i32,
        carry_versioned_mappings("res")
    );
    let row = c
        .fetch_opt(
            &sql,
            &crate::store::ops::update_args(t, old, attrs, Val::from(data), user, now, p),
        )
        .await?;
    match row {
        Some(row) => Ok(Some(row.req_int(0)?)),
        None => Ok(None),
    }
}

/// [`crate::store::ops::carry_versioned_mappings`] as common table expressions of a write
/// statement: the entity rows mapped to the old version ($1) are copied and mapped to the
/// version `res` inserted, in REG_ID order. Nothing is read or written unless `res` has a row.
fn carry_versioned_mappings(res: &str) -> String {
    VERSIONED_MAPPINGS
        .iter()
        .enumerate()
        .map(|(i, (map, id, entity, columns))| {
            let from_e = columns
                .split(", ")
                .map(|col| format!("e.{col}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "vcopy{i} AS (INSERT INTO {entity} ({columns}, REG_TENANT_ID) \
                 SELECT {from_e}, $2 FROM {entity} e JOIN {map} m ON e.REG_ID = m.{id} \
                 AND e.REG_TENANT_ID = m.REG_TENANT_ID WHERE m.REG_VERSION = $1 \
                 AND m.REG_TENANT_ID = $2 AND EXISTS (SELECT 1 FROM {res}) ORDER BY e.REG_ID \
                 RETURNING REG_ID), \
                 vmap{i} AS (INSERT INTO {map} ({id}, REG_VERSION, REG_TENANT_ID) \
                 SELECT vcopy{i}.REG_ID, {res}.REG_VERSION, $2 FROM vcopy{i}, {res})"
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Unlink of the resource `name` in `dir`: the row, its content and attributes, Carbon's
/// property, tag, comment and rating mappings (and the properties), the parent's times (which
/// become `now`) and the log entry. `false` if nothing was deleted: no resource of that name,
/// or `dir` is no longer the live collection at its path.
///
/// The guard is the pair (`REG_VERSION`, `REG_PATH_ID`) of the collection's row: a collection
/// updated by Carbon has a new version, one renamed away a new path id, one removed neither;
/// so a `dir` remembered from an earlier operation is safe to try (see `ServerStore::dirs`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn unlink(
    c: &mut Exec<'_>,
    t: i64,
    dir: &ResourceRow,
    name: &str,
    p: &str,
    user: &str,
    now: i64,
) -> Result<bool> {
    let sql = format!(
        "WITH {}, \
         log AS (INSERT INTO REG_LOG (REG_PATH, REG_USER_ID, REG_LOGGED_TIME, REG_ACTION, \
         REG_ACTION_DATA, REG_TENANT_ID) SELECT $5, $6, $7, {}, NULL, $2 FROM old), {} \
         SELECT COUNT(*) FROM old",
        delete_resource("old", "$1", "$3", &live_collection("$4", "$1")),
        LogAction::DeleteResource as i32,
        touch_parent("old", 8)
    );
    let mut all = args![
        dir.path_id,
        t,
        name,
        dir.version,
        p,
        user,
        naive_from_ns(now)
    ]
    .to_vec();
    all.extend(touch_args(dir, now));
    let row = c
        .fetch_opt(&sql, &all)
        .await?
        .ok_or_else(|| err!(EIO, "unlink of {p} returned no count"))?;
    Ok(row.req_int(0)? > 0)
}

/// The rename of the resource `src_name` in `src_dir` to the free name `dst_name` in `dst_dir`
/// (whose path is `to`) in one statement: the row and its mappings move, the resource's ctime
/// and both collections' times become `now`, and the log entry.
///
/// `false` if it did nothing, and the caller's general path then decides: a collection row
/// that fails its guard (see [`unlink`]), no such resource, anything at `to` (a replacement
/// keeps the replaced resource's registry identity: see `ops::rename`), or attributes that
/// are not the resource's own yet (none, or written for an older version: that needs the
/// general path's defaults).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn rename_resource(
    c: &mut Exec<'_>,
    t: i64,
    src_dir: &ResourceRow,
    src_name: &str,
    dst_dir: &ResourceRow,
    dst_name: &str,
    from: &str,
    to: &str,
    user: &str,
    now: i64,
) -> Result<bool> {
    let moved_maps: Vec<String> = PATH_KEYED_TABLES
        .iter()
        .enumerate()
        .map(|(i, table)| {
            format!(
                "mmap{i} AS (UPDATE {table} SET REG_PATH_ID = $5, REG_RESOURCE_NAME = $6 \
                 WHERE REG_PATH_ID = $1 AND REG_RESOURCE_NAME = $3 AND REG_TENANT_ID = $2 \
                 AND EXISTS (SELECT 1 FROM moved))"
            )
        })
        .collect();
    let action = if src_dir.uuid == dst_dir.uuid {
        LogAction::Rename
    } else {
        LogAction::Move
    };
    // One row may be touched once per statement: the second collection only when it is
    // another one.
    let dst_touch = if src_dir.uuid == dst_dir.uuid {
        String::new()
    } else {
        format!(", {}", touch_parent_as("dtouch", "moved", 18))
    };
    let sql = format!(
        "WITH ok AS (SELECT 1 AS go WHERE {} AND {} \
         AND EXISTS (SELECT 1 FROM REG_RESOURCE s JOIN REGFS_ATTR a ON a.REG_UUID = s.REG_UUID \
         AND a.REG_TENANT_ID = s.REG_TENANT_ID AND a.REG_VERSION = s.REG_VERSION \
         WHERE s.REG_PATH_ID = $1 AND s.REG_NAME = $3 AND s.REG_TENANT_ID = $2) \
         AND NOT {} \
         AND NOT EXISTS (SELECT 1 FROM REG_RESOURCE WHERE REG_PATH_ID = $5 \
         AND REG_NAME = $6 AND REG_TENANT_ID = $2)), \
         moved AS (UPDATE REG_RESOURCE SET REG_PATH_ID = $5, REG_NAME = $6 \
         WHERE REG_PATH_ID = $1 AND REG_NAME = $3 AND REG_TENANT_ID = $2 \
         AND EXISTS (SELECT 1 FROM ok) RETURNING REG_UUID), \
         {}, \
         ctime AS (UPDATE REGFS_ATTR SET CTIME_NS = $9 WHERE REG_UUID IN \
         (SELECT REG_UUID FROM moved) AND REG_TENANT_ID = $2), \
         log AS (INSERT INTO REG_LOG (REG_PATH, REG_USER_ID, REG_LOGGED_TIME, REG_ACTION, \
         REG_ACTION_DATA, REG_TENANT_ID) SELECT $8, $10, $11, {}, $12, $2 FROM moved), \
         {}{} \
         SELECT COUNT(*) FROM moved",
        live_collection("$4", "$1"),
        live_collection("$7", "$5"),
        collection_at("$8"),
        moved_maps.join(", "),
        action as i32,
        touch_parent_as("stouch", "moved", 13),
        dst_touch,
    );
    let mut all = args![
        src_dir.path_id,
        t,
        src_name,
        src_dir.version,
        dst_dir.path_id,
        dst_name,
        dst_dir.version,
        to,
        now,
        user,
        naive_from_ns(now),
        from
    ]
    .to_vec();
    all.extend(touch_args(src_dir, now));
    if src_dir.uuid != dst_dir.uuid {
        all.extend(touch_args(dst_dir, now));
    }
    let row = c
        .fetch_opt(&sql, &all)
        .await?
        .ok_or_else(|| err!(EIO, "rename of {from} returned no count"))?;
    Ok(row.req_int(0)? > 0)
}

/// `change` applied to the resource `name` in the collection `parent` in one statement, and
/// the entry as it is now; `None` if it did nothing and the general path must decide: no such
/// resource (a collection, or nothing), or attributes that are not the resource's own yet
/// (see [`rename_resource`]). The rules are [`crate::store::ops::apply_change`]'s.
pub(crate) async fn set_attr_resource(
    c: &mut Exec<'_>,
    t: i64,
    parent: &str,
    name: &str,
    change: &AttrChange,
    now: i64,
) -> Result<Option<Entry>> {
    let sql = format!(
        "WITH r AS (SELECT r.REG_NAME, r.REG_VERSION, r.REG_UUID, r.REG_MEDIA_TYPE, \
         r.REG_CREATED_TIME, r.REG_LAST_UPDATED_TIME, r.REG_CONTENT_ID, r.REG_TENANT_ID \
         FROM REG_PATH p JOIN REG_RESOURCE r ON r.REG_PATH_ID = p.REG_PATH_ID \
         AND r.REG_TENANT_ID = p.REG_TENANT_ID AND r.REG_NAME = $3 \
         WHERE p.REG_PATH_VALUE = $1 AND p.REG_TENANT_ID = $2), \
         a AS (UPDATE REGFS_ATTR x SET \
         MODE = CASE WHEN $4::BIGINT IS NULL THEN x.MODE ELSE (x.MODE & {}) | $4 END, \
         UID = COALESCE($5, x.UID), GID = COALESCE($6, x.GID), \
         ATIME_NS = COALESCE($7, x.ATIME_NS), MTIME_NS = COALESCE($8, x.MTIME_NS), \
         CTIME_NS = $9 FROM r WHERE x.REG_UUID = r.REG_UUID AND x.REG_TENANT_ID = $2 \
         AND x.REG_VERSION = r.REG_VERSION \
         RETURNING x.MODE, x.UID, x.GID, x.RDEV, x.ATIME_NS, x.MTIME_NS, x.CTIME_NS, \
         x.REG_VERSION), \
         n AS (INSERT INTO REGFS_CHANGE (REG_TENANT_ID, REG_PATH, REGFS_TIME_MS) \
         SELECT $2, $10, $11 FROM a) \
         {}FROM r JOIN a ON TRUE LEFT JOIN REG_CONTENT c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID \
         AND c.REG_TENANT_ID = r.REG_TENANT_ID",
        libc::S_IFMT,
        crate::store::ops::entry_select(c.dialect(), false)
    );
    let changed = crate::path::join(parent, name);
    let args = args![
        parent,
        t,
        name,
        change.perm.map(|p| (p & 0o7777) as i64),
        change.uid.map(i64::from),
        change.gid.map(i64::from),
        change.atime.map(to_ns),
        change.mtime.map(to_ns),
        change.ctime.map(to_ns).unwrap_or(now),
        changed.as_str(),
        now / 1_000_000
    ];
    match c.fetch_opt(&sql, &args).await? {
        Some(row) => Ok(Some(crate::store::ops::entry_row(&row)?.into_entry())),
        None => Ok(None),
    }
}

/// A content row too large for one statement, sent once with `COPY ... FROM STDIN` in binary
/// format: the bytes go straight into REG_CONTENT in pieces of `piece` bytes (the driver holds
/// one piece at a time), and the server stores them once. Returns the new REG_CONTENT_ID.
///
/// The row's id comes from the column's default (the table's sequence, whatever its name), and
/// `lastval()` reads it back; the row is then checked by id, tenant and length.
/// REG_TENANT_ID goes as a binary `int4`, WSO2's `INTEGER`.
pub(crate) async fn copy_content(
    conn: &mut sqlx::PgConnection,
    t: i64,
    data: &Content,
    piece: usize,
) -> Result<i64> {
    let len = data.len();
    let field = i32::try_from(len).map_err(|_| {
        err!(
            EFBIG,
            "{len} bytes is more than a PostgreSQL bytea can hold"
        )
    })?;
    let tenant = i32::try_from(t).map_err(|_| err!(EINVAL, "tenant id {t} is not an INTEGER"))?;
    let mut copy = conn
        .copy_in_raw(
            "COPY REG_CONTENT (REG_CONTENT_DATA, REG_TENANT_ID) FROM STDIN (FORMAT binary)",
        )
        .await?;
    // Header (signature, flags, no extension), then the one tuple: two fields, the bytea's
    // length and bytes, the tenant; then the trailer.
    let mut head = b"PGCOPY\n\xff\r\n\0".to_vec();
    head.extend_from_slice(&0i32.to_be_bytes());
    head.extend_from_slice(&0i32.to_be_bytes());
    head.extend_from_slice(&2i16.to_be_bytes());
    head.extend_from_slice(&field.to_be_bytes());
    let mut tail = 4i32.to_be_bytes().to_vec();
    tail.extend_from_slice(&tenant.to_be_bytes());
    tail.extend_from_slice(&(-1i16).to_be_bytes());
    let sent: Result<()> = async {
        copy.send(head).await?;
        match data.as_slice() {
            Some(bytes) => {
                for chunk in bytes.chunks(piece) {
                    copy.send(chunk).await?;
                }
            }
            None => {
                let mut buf = vec![0; piece];
                for (offset, n) in crate::content::pieces(len, piece) {
                    data.read_exact_at(offset, &mut buf[..n])?;
                    copy.send(&buf[..n]).await?;
                }
            }
        }
        copy.send(tail).await?;
        Ok(())
    }
    .await;
    if let Err(e) = sent {
        // Ends the COPY on the server, so that the connection can roll the transaction back.
        if let Err(abort) = copy.abort(e.to_string()).await {
            tracing::warn!("aborting the content COPY failed: {abort}");
        }
        return Err(e);
    }
    copy.finish().await?;
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT REG_CONTENT_ID::BIGINT FROM REG_CONTENT WHERE REG_CONTENT_ID = lastval() \
         AND REG_TENANT_ID = $1 AND octet_length(REG_CONTENT_DATA) = $2",
    )
    .bind(t)
    .bind(len as i64)
    .fetch_optional(&mut *conn)
    .await?;
    id.ok_or_else(|| {
        err!(
            EIO,
            "the content row COPY stored ({len} bytes) is not where lastval() says"
        )
    })
}
