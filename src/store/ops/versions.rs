//! Carbon's versions: snapshots of a resource before it is overwritten (`versionResourcesOnChange`),
//! reading `PATH;version:N`, and the version-keyed mappings of 4.4.x databases.

use super::*;

/// `key` `n` times over: the arguments of `n` queries joined by UNION ALL.
pub(super) fn repeat_args<'a>(key: &[Val<'a>], n: usize) -> Vec<Val<'a>> {
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

/// The versions a snapshot's REG_RESOURCE_VIDS lists: 8 bytes each, big-endian, a 0 (or the
/// end) ends the list (Carbon's `VersionRetriever`).
fn decode_vids(blob: &[u8]) -> Vec<i64> {
    blob.chunks_exact(8)
        .map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")))
        .take_while(|v| *v != 0)
        .collect()
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
    let vids = decode_vids(&snap.blob(1)?.unwrap_or_default());
    let sql = format!(
        "SELECT {RESOURCE_COLUMNS}, {} FROM REG_RESOURCE_HISTORY r LEFT JOIN \
         REG_CONTENT_HISTORY c ON c.REG_CONTENT_ID = r.REG_CONTENT_ID \
         AND c.REG_TENANT_ID = r.REG_TENANT_ID WHERE r.REG_VERSION = ? \
         AND r.REG_TENANT_ID = ? AND r.REG_PATH_ID = ? AND {}",
        d.int64("COALESCE(LENGTH(c.REG_CONTENT_DATA), 0)"),
        c.text()
            .eq("r.REG_NAME", "REG_RESOURCE_HISTORY", "REG_NAME")
    );
    for version in vids {
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

/// The snapshot ids of the resource at `p`, oldest first.
pub(crate) async fn snapshot_ids(c: &mut Exec<'_>, t: i64, p: &str) -> Result<Vec<i64>> {
    let Some(parent) = path::parent(p) else {
        return Ok(Vec::new());
    };
    if !storable(c.text(), parent) || !storable_name(c.text(), p) {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT s.REG_SNAPSHOT_ID FROM REG_SNAPSHOT s JOIN REG_PATH p \
         ON p.REG_PATH_ID = s.REG_PATH_ID AND p.REG_TENANT_ID = s.REG_TENANT_ID \
         WHERE s.REG_TENANT_ID = ? AND {} AND {} ORDER BY s.REG_SNAPSHOT_ID",
        path_eq(c.text(), "p.REG_PATH_VALUE"),
        c.text()
            .eq("s.REG_RESOURCE_NAME", "REG_SNAPSHOT", "REG_RESOURCE_NAME")
    );
    c.fetch(&sql, &args![t, parent, path::name(p)])
        .await?
        .iter()
        .map(|r| r.req_int(0))
        .collect()
}

/// The checkpoints of the collection at `p` (Carbon's `createVersion` of a collection: a
/// REG_SNAPSHOT row with no resource name whose VIDS list the collection's archived version,
/// then every descendant's), oldest first: each with the collection's archived row's
/// version, time and last updater, and how many entries it holds.
async fn checkpoints(c: &mut Exec<'_>, t: i64, p: &str) -> Result<Vec<VersionInfo>> {
    if !storable(c.text(), p) {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT s.REG_SNAPSHOT_ID, s.REG_PATH_ID, s.REG_RESOURCE_VIDS FROM REG_SNAPSHOT s \
         JOIN REG_PATH p ON p.REG_PATH_ID = s.REG_PATH_ID AND p.REG_TENANT_ID = s.REG_TENANT_ID \
         WHERE s.REG_TENANT_ID = ? AND {} AND s.REG_RESOURCE_NAME IS NULL \
         ORDER BY s.REG_SNAPSHOT_ID",
        path_eq(c.text(), "p.REG_PATH_VALUE")
    );
    let mut out = Vec::new();
    for snap in c.fetch(&sql, &args![t, p]).await? {
        let (snapshot, path_id) = (snap.req_int(0)?, snap.req_int(1)?);
        let vids = decode_vids(&snap.blob(2)?.unwrap_or_default());
        // The collection's own archived row: the first of the list under its path id.
        let mut found = None;
        for v in &vids {
            let row = c
                .fetch_opt(
                    "SELECT REG_VERSION, REG_LAST_UPDATED_TIME, REG_LAST_UPDATOR \
                     FROM REG_RESOURCE_HISTORY WHERE REG_VERSION = ? AND REG_TENANT_ID = ? \
                     AND REG_PATH_ID = ? AND REG_NAME IS NULL",
                    &args![*v, t, path_id],
                )
                .await?;
            if let Some(row) = row {
                found = Some((row.req_int(0)?, row.time(1)?, row.text(2)?));
                break;
            }
        }
        let Some((version, time, author)) = found else {
            continue;
        };
        out.push(VersionInfo {
            snapshot,
            version,
            time,
            author,
            size: 0,
            entries: Some(vids.len() as u64),
        });
    }
    Ok(out)
}

/// The archived versions of the resource at `p`, oldest first: each snapshot id with the
/// archived row's version, time, last updater and content length. Of a collection: its
/// checkpoints.
pub(crate) async fn versions(c: &mut Exec<'_>, t: i64, p: &str) -> Result<Vec<VersionInfo>> {
    if collection_row(c, t, p).await?.is_some() {
        return checkpoints(c, t, p).await;
    }
    let ids = snapshot_ids(c, t, p).await?;
    let mut out = Vec::with_capacity(ids.len());
    for snapshot in ids {
        let Some((row, size)) = version_row(c, t, p, snapshot).await? else {
            continue;
        };
        let author = c
            .fetch_opt(
                "SELECT REG_LAST_UPDATOR FROM REG_RESOURCE_HISTORY WHERE REG_VERSION = ? \
                 AND REG_TENANT_ID = ?",
                &args![row.version, t],
            )
            .await?
            .map(|r| r.text(0))
            .transpose()?
            .flatten();
        out.push(VersionInfo {
            snapshot,
            version: row.version,
            time: row.updated,
            author,
            size,
            entries: None,
        });
    }
    Ok(out)
}

/// [`Change::Restore`]: Carbon's `restoreVersion`: the resource at `p` takes the content of
/// its version `snapshot` by Carbon's update (archiving what it replaces when `versioning`),
/// and RESTORE is logged with the snapshot id.
pub(crate) async fn restore(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    snapshot: i64,
    user: &str,
    versioning: bool,
    enc: &dyn Encoding,
) -> Result<Entry> {
    let Some((row, _)) = version_row(c, t, p, snapshot).await? else {
        return Err(err!(ENOENT, "{p} has no version {snapshot}"));
    };
    let data = version_content(c, t, &row).await?;
    let entry = write(c, t, p, &data, user, None, versioning, enc).await?;
    insert_log(
        c,
        t,
        p,
        user,
        LogAction::Restore,
        Some(&snapshot.to_string()),
    )
    .await?;
    Ok(entry)
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
pub(super) async fn versioned_mappings(
    c: &mut Exec<'_>,
    t: i64,
    version: i64,
) -> Result<Vec<(usize, i64)>> {
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
