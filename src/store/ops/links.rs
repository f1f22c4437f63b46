//! Carbon's mount links and records, and its symbolic links.

use super::*;

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
