//! Removing rows as Carbon removes them: a resource and what hangs off it, a subtree, and the
//! checks an unlink or rmdir makes first.

use super::*;

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
