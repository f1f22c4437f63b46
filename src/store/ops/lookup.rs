//! Reading rows: an entry, a collection, a resource with its attributes, what is at a path and
//! its parent in one query, and the names a case-insensitive collation would take for another.

use super::*;

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
pub(super) fn collection_or_file<'a>(
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
pub(super) fn collection_sql(text: &TextColumns) -> String {
    format!(
        "SELECT {RESOURCE_COLUMNS} FROM REG_PATH p JOIN REG_RESOURCE r \
         ON r.REG_PATH_ID = p.REG_PATH_ID AND r.REG_TENANT_ID = p.REG_TENANT_ID \
         AND r.REG_NAME IS NULL WHERE {} AND p.REG_TENANT_ID = ?",
        path_eq(text, "p.REG_PATH_VALUE")
    )
}

/// The live resource of a name in a collection: binds the name, the parent path and the tenant.
pub(super) fn file_sql(text: &TextColumns) -> String {
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

pub(super) async fn file_row_query(
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

/// A REG_PATH row (live or not) whose value the column's collation takes for `p` though its
/// bytes differ; `None` where the collation is exact.
pub(super) async fn confused_path(c: &mut Exec<'_>, t: i64, p: &str) -> Result<Option<String>> {
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
