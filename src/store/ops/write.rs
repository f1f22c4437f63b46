//! Writing rows as Carbon writes them: paths, resources, content, REG_LOG entries, regfs's
//! attributes and a collection's times, the base collections, and attribute changes.

use super::*;

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
pub(super) const TOUCH_ROW: &str = "(?, ?, ?, 0, 0, 0, ?, ?, ?, ?)";

pub(super) fn touch_args(t: i64, dir: &ResourceRow, now: i64) -> [Val<'_>; 7] {
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
pub(super) async fn create_collection_unlogged(
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
