//! Moving a resource or a collection with its subtree inside one database.

use super::*;

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
