//! Carbon's properties of a resource or collection (`REG_PROPERTY` rows, mapped to it by
//! `REG_RESOURCE_PROPERTY`: by path and name as Carbon 4.12.x and regfs write them, or by
//! version as Carbon 4.4.x writes some), and the row's own metadata: what regfs shows as
//! extended attributes.

use super::*;

/// The properties of `row`, in the order they were added: (REG_PROPERTY id, name, value).
async fn properties_of(
    c: &mut Exec<'_>,
    t: i64,
    row: &ResourceRow,
) -> Result<Vec<(i64, String, String)>> {
    let sql = format!(
        "SELECT pr.REG_ID, pr.REG_NAME, pr.REG_VALUE FROM REG_RESOURCE_PROPERTY rp \
         JOIN REG_PROPERTY pr ON pr.REG_ID = rp.REG_PROPERTY_ID AND pr.REG_TENANT_ID = rp.REG_TENANT_ID \
         WHERE rp.REG_TENANT_ID = ? AND ((rp.REG_PATH_ID = ? AND {}) OR rp.REG_VERSION = ?) \
         ORDER BY pr.REG_ID",
        mapped_name_eq(c.text(), "REG_RESOURCE_PROPERTY", "rp.REG_RESOURCE_NAME")
    );
    let rows = c
        .fetch(
            &sql,
            &args![t, row.path_id, row.name.as_deref(), row.version],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id = r.req_int(0)?;
        // Both mappings may name one property (a 4.4.x row copied by path): once is enough.
        if out.iter().any(|(seen, _, _)| *seen == id) {
            continue;
        }
        out.push((id, r.req_text(1)?, r.text(2)?.unwrap_or_default()));
    }
    Ok(out)
}

/// The tags, comments and ratings of `row` (REG_TAG, REG_COMMENT, REG_RATING through their
/// REG_RESOURCE_* mappings, by path and name or by version), in one query, oldest first.
async fn social_of(c: &mut Exec<'_>, t: i64, row: &ResourceRow) -> Result<Social> {
    let sql = {
        let part = |kind: &str,
                    table: &str,
                    mapping: &str,
                    fk: &str,
                    (text, rating, time): (&str, &str, &str)| {
            format!(
                "SELECT '{kind}', {text}, x.REG_USER_ID, x.REG_ID, {rating}, {time} FROM {mapping} m \
             JOIN {table} x ON x.REG_ID = m.{fk} AND x.REG_TENANT_ID = m.REG_TENANT_ID \
             WHERE m.REG_TENANT_ID = ? AND ((m.REG_PATH_ID = ? AND {}) OR m.REG_VERSION = ?)",
                mapped_name_eq(c.text(), mapping, "m.REG_RESOURCE_NAME")
            )
        };
        [
            part(
                "t",
                "REG_TAG",
                "REG_RESOURCE_TAG",
                "REG_TAG_ID",
                ("x.REG_TAG_NAME", "0", "x.REG_TAGGED_TIME"),
            ),
            part(
                "c",
                "REG_COMMENT",
                "REG_RESOURCE_COMMENT",
                "REG_COMMENT_ID",
                ("x.REG_COMMENT_TEXT", "0", "x.REG_COMMENTED_TIME"),
            ),
            part(
                "r",
                "REG_RATING",
                "REG_RESOURCE_RATING",
                "REG_RATING_ID",
                ("x.REG_USER_ID", "x.REG_RATING", "x.REG_RATED_TIME"),
            ),
        ]
        .join(" UNION ALL ")
    };
    let key = args![t, row.path_id, row.name.as_deref(), row.version];
    let rows = c
        .fetch(&format!("{sql} ORDER BY 4"), &repeat_args(&key, 3))
        .await?;
    // A row mapped both by path and by version shows once.
    let mut seen: std::collections::HashSet<(String, i64)> = std::collections::HashSet::new();
    let mut social = Social::default();
    for r in rows {
        let (kind, text, user) = (
            r.req_text(0)?,
            r.text(1)?.unwrap_or_default(),
            r.req_text(2)?,
        );
        if !seen.insert((kind.clone(), r.req_int(3)?)) {
            continue;
        }
        let time = r.time(5)?;
        match kind.as_str() {
            "t" => {
                if !social.tags.contains(&text) {
                    social.tags.push(text.clone());
                }
                social.taggings.push(Remark { user, time, text });
            }
            "c" => social.comments.push(Remark { user, time, text }),
            "r" => social.ratings.push(Rating {
                user,
                time,
                rate: r.req_int(4)?,
            }),
            _ => {}
        }
    }
    Ok(social)
}

/// The metadata of the resource or collection at `p`, `None` if nothing is there.
pub(crate) async fn metadata(c: &mut Exec<'_>, t: i64, p: &str) -> Result<Option<Metadata>> {
    let Some(row) = any_row(c, t, p).await? else {
        return Ok(None);
    };
    let last_updater = c
        .fetch_opt(
            "SELECT REG_LAST_UPDATOR FROM REG_RESOURCE WHERE REG_VERSION = ? AND REG_TENANT_ID = ?",
            &args![row.version, t],
        )
        .await?
        .map(|r| r.text(0))
        .transpose()?
        .flatten();
    let mut properties: Vec<(String, Vec<String>)> = Vec::new();
    for (_, name, value) in properties_of(c, t, &row).await? {
        match properties.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => properties.push((name, vec![value])),
        }
    }
    let mut social = social_of(c, t, &row).await?;
    let sql = format!(
        "SELECT REG_ASSOCIATION_TYPE, REG_TARGETPATH FROM REG_ASSOCIATION \
         WHERE REG_TENANT_ID = ? AND {} ORDER BY REG_ASSOCIATION_ID",
        c.text()
            .eq("REG_SOURCEPATH", "REG_ASSOCIATION", "REG_SOURCEPATH")
    );
    for r in c.fetch(&sql, &args![t, p]).await? {
        social.associations.push((r.req_text(0)?, r.req_text(1)?));
    }
    if row.name.is_some() {
        social.versions = snapshot_ids(c, t, p).await?;
    }
    Ok(Some(Metadata {
        properties,
        social,
        media_type: row.media_type,
        description: row.description,
        uuid: row.uuid,
        creator: row.creator,
        created: row.created,
        last_updater,
        version: row.version,
    }))
}

/// [`Change::SetField`]: sets (or clears) the media type or the description of `p` as a
/// Carbon put with that field changed does: the row is updated in place (version and
/// content stay), its last updater and time move, an UPDATE is logged.
pub(crate) async fn set_field(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    field: Field,
    value: Option<&str>,
    user: &str,
) -> Result<()> {
    let (column, width) = match field {
        Field::MediaType => ("REG_MEDIA_TYPE", 500),
        Field::Description => ("REG_DESCRIPTION", 1000),
    };
    if let Some(v) = value {
        if v.chars().count() > width {
            return Err(err!(
                E2BIG,
                "{column} of {p}: {} characters; Carbon's column holds {width}",
                v.chars().count()
            ));
        }
        if let Some(col) = c.text().unstorable(v, &[("REG_RESOURCE", column)]) {
            return Err(err!(
                EILSEQ,
                "{column} of {p}: {} ({}) cannot hold its characters",
                col.column,
                col.charset_name
            ));
        }
    }
    let Some(row) = any_row(c, t, p).await? else {
        return Err(err!(ENOENT, "{p} does not exist"));
    };
    if field == Field::MediaType
        && (row.media_type.as_deref() == Some(LINK_MEDIA_TYPE) || value == Some(LINK_MEDIA_TYPE))
    {
        return Err(err!(
            EPERM,
            "{p}: {LINK_MEDIA_TYPE} marks Carbon's links, which ln -s and rm make"
        ));
    }
    updated_in_place(c, t, p, &row, user, Some((column, value))).await
}

/// [`Change::SetProperty`]: sets (`values`) or removes (`None`) the property `name` of `p` as
/// Carbon's put of a resource with changed properties does: its REG_PROPERTY rows are
/// replaced, the row's last updater and time move, and an UPDATE is logged. The resource's
/// version (and so its content) stays.
pub(crate) async fn set_property(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    name: &str,
    values: Option<&[String]>,
    mode: SetMode,
    user: &str,
) -> Result<()> {
    let text = c.text();
    if let Some(col) = std::iter::once(name)
        .chain(values.unwrap_or_default().iter().map(String::as_str))
        .find_map(|s| text.unstorable(s, PROPERTY_COLUMNS))
    {
        return Err(err!(
            EILSEQ,
            "property {name} of {p}: {}.{} ({}) cannot hold its characters",
            col.table,
            col.column,
            col.charset_name
        ));
    }
    let Some(row) = any_row(c, t, p).await? else {
        return Err(err!(ENOENT, "{p} does not exist"));
    };
    let ids: Vec<i64> = properties_of(c, t, &row)
        .await?
        .into_iter()
        .filter(|(_, n, _)| n == name)
        .map(|(id, _, _)| id)
        .collect();
    match (ids.is_empty(), values.is_some(), mode) {
        (false, true, SetMode::Create) => {
            return Err(err!(EEXIST, "{p} already has the property {name}"));
        }
        (true, true, SetMode::Replace) | (true, false, _) => {
            return Err(err!(ENODATA, "{p} has no property {name}"));
        }
        _ => {}
    }
    for id in ids {
        c.execute(
            "DELETE FROM REG_RESOURCE_PROPERTY WHERE REG_PROPERTY_ID = ? AND REG_TENANT_ID = ?",
            &args![id, t],
        )
        .await?;
        c.execute(
            "DELETE FROM REG_PROPERTY WHERE REG_ID = ? AND REG_TENANT_ID = ?",
            &args![id, t],
        )
        .await?;
    }
    for value in values.unwrap_or_default() {
        insert_property(c, t, row.path_id, row.name.as_deref(), name, value).await?;
    }
    updated_in_place(c, t, p, &row, user, None).await
}

/// The rest of Carbon's put of `row` (at `p`) changed in place, by `user`: `field` (a column
/// and its new value) if given, the last updater and time moved, the ctime moved (an
/// extended attribute's change moves it, as on any filesystem), UPDATE logged.
async fn updated_in_place(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    row: &ResourceRow,
    user: &str,
    field: Option<(&str, Option<&str>)>,
) -> Result<()> {
    let now = now_ns();
    let set = field.map_or(String::new(), |(column, _)| format!("{column} = ?, "));
    let mut values: Vec<Val<'_>> = Vec::new();
    if let Some((_, value)) = field {
        values.extend(args![value]);
    }
    values.extend(args![user, naive_from_ns(now), row.version, t]);
    c.execute(
        &format!(
            "UPDATE REG_RESOURCE SET {set}REG_LAST_UPDATOR = ?, REG_LAST_UPDATED_TIME = ? \
             WHERE REG_VERSION = ? AND REG_TENANT_ID = ?"
        ),
        &values,
    )
    .await?;
    touch_ctime(c, t, row, now).await?;
    insert_log(c, t, p, user, LogAction::Update, None).await
}
