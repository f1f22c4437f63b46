//! Loading a dump ([`Change::Load`], `regfs load`): a subtree written as Carbon's `restore`
//! writes one, with the dump's creators, times, UUIDs, properties, tags, comments, ratings
//! and associations, and regfs's POSIX attributes where the dump has them; one RESTORE entry
//! in REG_LOG for the whole load.

use std::sync::atomic::Ordering;

use super::*;
use crate::dump::Node;

/// The context of one load's transaction.
struct Loading<'a> {
    t: i64,
    user: &'a str,
    overwrite: bool,
    versioning: bool,
    progress: Option<&'a Progress>,
    done: Loaded,
    seen: u64,
}

/// [`Change::Load`]: `node`'s subtree at `p` (its ancestors made as needed), with its
/// association paths already absolute target paths of this database.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn load(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    node: &Node,
    user: &str,
    overwrite: bool,
    versioning: bool,
    progress: Option<&Progress>,
) -> Result<Loaded> {
    let mut l = Loading {
        t,
        user,
        overwrite,
        versioning,
        progress,
        done: Loaded::default(),
        seen: 0,
    };
    let parent_id = match path::parent(p) {
        Some(parent) => Some(ensure_collections(c, t, parent, user).await?),
        None => None,
    };
    load_node(c, &mut l, p, parent_id, false, node).await?;
    insert_log(c, t, p, user, LogAction::Restore, None).await?;
    Ok(l.done)
}

fn ms_naive(ms: Option<i64>) -> NaiveDateTime {
    match ms {
        Some(ms) => naive_from_ns(ms.saturating_mul(1_000_000)),
        None => now_naive(),
    }
}

/// `node` at `p`, whose collection has the path id `parent_id` (`None`: `p` is the root) and
/// was there before the load (`into_existing`: what the other nodes may have cached of it
/// changes, so they are told of `p`, as of every resource replaced; what is new under a new
/// collection they cannot have cached).
fn load_node<'a>(
    c: &'a mut Exec<'_>,
    l: &'a mut Loading<'_>,
    p: &'a str,
    parent_id: Option<i64>,
    into_existing: bool,
    node: &'a Node,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>> {
    Box::pin(async move {
        let t = l.t;
        let name = path::name(p);
        l.seen += 1;
        if let Some(progress) = l.progress {
            progress.done.store(l.seen, Ordering::Relaxed);
        }
        let collection = collection_row(c, t, p).await?;
        let file = match parent_id {
            Some(_) => file_row(c, t, p).await?,
            None => None,
        };
        let existing = match (&collection, &file) {
            (Some(_), _) => Some(true),
            (None, Some(_)) => Some(false),
            (None, None) => None,
        };
        check_conflict(p, existing, node.collection, l.overwrite)?;
        if node.collection {
            let existed = collection.is_some();
            if into_existing && !existed {
                note_change(c, t, p).await?;
            }
            let path_id = match collection {
                Some(row) => {
                    l.done.merged += 1;
                    row.path_id
                }
                None => {
                    let parent_id = parent_id.expect("the root always exists");
                    let path_id = ensure_path_row(c, t, p, parent_id).await?;
                    insert_row(c, l, path_id, None, node).await?;
                    l.done.created += 1;
                    path_id
                }
            };
            for child in &node.children {
                let child_path = path::join(p, &child.name);
                load_node(c, l, &child_path, Some(path_id), existed, child).await?;
            }
            return Ok(());
        }
        let Some(parent_id) = parent_id else {
            return Err(err!(
                EISDIR,
                "/ is a collection: a resource cannot be loaded there"
            ));
        };
        check_storable(c.text(), p, false)?;
        refuse_confused(c, t, DirKey::Id(parent_id), p, None).await?;
        if let Some(old) = file {
            if l.versioning {
                archive(c, t, &old, p).await?;
            }
            delete_row(c, t, &old).await?;
            // Its associations are the dump's now (those of other resources to it stay).
            let sql = format!(
                "DELETE FROM REG_ASSOCIATION WHERE {} AND REG_TENANT_ID = ?",
                c.text()
                    .eq("REG_SOURCEPATH", "REG_ASSOCIATION", "REG_SOURCEPATH")
            );
            c.execute(&sql, &args![p, t]).await?;
            l.done.replaced += 1;
            note_change(c, t, p).await?;
        } else {
            l.done.created += 1;
            if into_existing {
                note_change(c, t, p).await?;
            }
        }
        insert_row(c, l, parent_id, Some(name), node).await
    })
}

/// Whether a load may put an entry of the dump (a collection when `dump_collection`) at `p`
/// over what is there (`existing`: a collection `Some(true)`, a resource `Some(false)`):
/// collections merge, a resource is replaced only with `overwrite`, kinds never change. The
/// rule of a load's own transaction, which the registry also asks of every part first when a
/// load spans several databases.
pub(crate) fn check_conflict(
    p: &str,
    existing: Option<bool>,
    dump_collection: bool,
    overwrite: bool,
) -> Result<()> {
    match (existing, dump_collection) {
        (None, _) | (Some(true), true) => Ok(()),
        (Some(false), false) if overwrite => Ok(()),
        (Some(false), false) => Err(err!(
            EEXIST,
            "{p} exists: a load replaces resources only with --overwrite"
        )),
        (Some(true), false) => Err(err!(
            EISDIR,
            "{p} is a collection in the registry but a resource in the dump: remove it first"
        )),
        (Some(false), true) => Err(err!(
            EEXIST,
            "{p} is a resource in the registry but a collection in the dump: remove it first"
        )),
    }
}

/// The row of `node` in the collection `path_id` (`name` for a resource; a collection's own
/// path id and `None`), with what hangs off it.
async fn insert_row(
    c: &mut Exec<'_>,
    l: &mut Loading<'_>,
    path_id: i64,
    name: Option<&str>,
    node: &Node,
) -> Result<()> {
    let t = l.t;
    let uuid = match &node.uuid {
        Some(u) if !uuid_taken(c, t, u).await? => u.clone(),
        Some(_) => {
            l.done.new_uuids += 1;
            uuid::Uuid::new_v4().to_string()
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let content_id = match &node.content {
        Some(bytes) if name.is_some() => insert_content(c, t, bytes).await?,
        _ => None,
    };
    let creator = node.creator.as_deref().unwrap_or(l.user);
    let version = insert_resource(
        c,
        t,
        path_id,
        name,
        node.media_type.as_deref(),
        creator,
        ms_naive(node.created_ms),
        node.last_updater.as_deref().unwrap_or(creator),
        ms_naive(node.last_modified_ms.or(node.created_ms)),
        node.description.as_deref(),
        content_id,
        &uuid,
    )
    .await?;
    if let Some(px) = &node.posix {
        let attrs = AttrRow {
            mode: px.mode as i64,
            uid: px.uid as i64,
            gid: px.gid as i64,
            rdev: px.rdev as i64,
            atime_ns: px.atime_ns,
            mtime_ns: px.mtime_ns,
            ctime_ns: now_ns(),
            version,
        };
        put_attr(c, t, &uuid, attrs).await?;
    }
    for (key, value) in &node.properties {
        insert_property(c, t, path_id, name, key, value).await?;
    }
    let kinds = [
        (
            "REG_TAG",
            "REG_TAG_NAME, REG_USER_ID, REG_TAGGED_TIME",
            "REG_RESOURCE_TAG",
            "REG_TAG_ID",
        ),
        (
            "REG_COMMENT",
            "REG_COMMENT_TEXT, REG_USER_ID, REG_COMMENTED_TIME",
            "REG_RESOURCE_COMMENT",
            "REG_COMMENT_ID",
        ),
        (
            "REG_RATING",
            "REG_RATING, REG_USER_ID, REG_RATED_TIME",
            "REG_RESOURCE_RATING",
            "REG_RATING_ID",
        ),
    ];
    for (i, (table, columns, mapping, fk)) in kinds.iter().enumerate() {
        let remarks: Vec<(Val<'_>, &str, Option<i64>)> = match i {
            0 => node
                .taggings
                .iter()
                .map(|s| (Val::from(s.text.as_str()), s.user.as_str(), s.time_ms))
                .collect(),
            1 => node
                .comments
                .iter()
                .map(|s| (Val::from(s.text.as_str()), s.user.as_str(), s.time_ms))
                .collect(),
            _ => node
                .ratings
                .iter()
                .map(|r| (Val::from(r.rate), r.user.as_str(), r.time_ms))
                .collect(),
        };
        for (what, who, when) in remarks {
            let id = c
                .insert_id(
                    &format!("INSERT INTO {table} ({columns}, REG_TENANT_ID) VALUES (?, ?, ?, ?)"),
                    "REG_ID",
                    &[
                        what,
                        Val::from(who),
                        Val::from(ms_naive(when)),
                        Val::from(t),
                    ],
                )
                .await?;
            c.execute(
                &format!(
                    "INSERT INTO {mapping} ({fk}, REG_PATH_ID, REG_RESOURCE_NAME, REG_TENANT_ID) \
                     VALUES (?, ?, ?, ?)"
                ),
                &args![id, path_id, name, t],
            )
            .await?;
        }
    }
    for a in &node.associations {
        c.execute(
            "INSERT INTO REG_ASSOCIATION (REG_SOURCEPATH, REG_TARGETPATH, REG_ASSOCIATION_TYPE, \
             REG_TENANT_ID) VALUES (?, ?, ?, ?)",
            &args![&a.source, &a.destination, &a.kind, t],
        )
        .await?;
    }
    Ok(())
}

/// Whether a row (live or archived) of this tenant has the UUID `uuid`.
async fn uuid_taken(c: &mut Exec<'_>, t: i64, uuid: &str) -> Result<bool> {
    Ok(c.fetch_opt(
        "SELECT 1 FROM REG_RESOURCE WHERE REG_UUID = ? AND REG_TENANT_ID = ?",
        &args![uuid, t],
    )
    .await?
    .is_some())
}
