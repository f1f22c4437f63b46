//! The generic store: every [`Change`] written once, as the body of one transaction over
//! [`Exec`]. A store runs [`apply`] inside its own transaction and retry loop (see
//! [`Store::apply`]); what differs between databases for the hottest mutations (how content
//! goes in, how a resource row is replaced, added or removed) is an [`Encoding`], whose
//! defaults are the generic statements and which a store overrides with its fast path (the
//! SQLite store's batches, the servers' large-content path).

use async_trait::async_trait;

use super::*;
use crate::content::Content;

/// Carbon's update of the resource `old` at `path` to `data`, as [`Encoding::replace`] gets it.
pub(crate) struct Update<'a> {
    pub old: &'a ResourceRow,
    /// Its attributes before the write.
    pub attrs: &'a AttrRow,
    pub data: &'a Content,
    pub path: &'a str,
    pub user: &'a str,
    /// The write's time (ns): the new mtime and ctime.
    pub now: i64,
}

/// A new resource (not a collection) `new` at `path` in the collection `dir`, as
/// [`Encoding::add`] gets it.
pub(crate) struct Addition<'a> {
    pub dir: &'a ResourceRow,
    pub path: &'a str,
    pub new: &'a NewEntry,
    pub media: Option<&'a str>,
    pub uuid: &'a str,
    pub content_id: Option<i64>,
    pub user: &'a str,
    /// Its creation time (ns): all its times, and the collection's new mtime and ctime.
    pub now: i64,
}

/// The removal of `row` at `path` from the collection `parent`, as [`Encoding::remove`] gets
/// it, once the checks passed.
pub(crate) struct Removal<'a> {
    pub row: &'a ResourceRow,
    pub parent: &'a ResourceRow,
    /// Whether Carbon's mappings may name the row (they go first).
    pub mapped: bool,
    pub path: &'a str,
    pub user: &'a str,
    /// The collection's new mtime and ctime (ns).
    pub now: i64,
}

/// How a store writes the rows of its hottest mutations. Each method runs inside the
/// mutation's transaction; the defaults are the generic statements of this module.
#[async_trait]
pub(crate) trait Encoding: Sync {
    /// A new `REG_CONTENT` row holding `data` (`None` for no content).
    async fn content(&self, c: &mut Exec<'_>, t: i64, data: &Content) -> Result<Option<i64>> {
        insert_content(c, t, &data.bytes()?).await
    }

    /// Carbon's update: the old row and its content go, a new row (new `REG_VERSION`) keeps
    /// creator, creation time and UUID, with the old attributes at the new version and the
    /// write's mtime and ctime, and an UPDATE log entry. Returns the new version.
    async fn replace(&self, c: &mut Exec<'_>, t: i64, u: &Update<'_>) -> Result<i64> {
        delete_row_and_content(c, t, u.old).await?;
        let content_id = self.content(c, t, u.data).await?;
        let old = u.old;
        let version = insert_resource(
            c,
            t,
            old.path_id,
            old.name.as_deref(),
            old.media_type.as_deref(),
            &old.creator,
            old.created,
            u.user,
            naive_from_ns(u.now),
            old.description.as_deref(),
            content_id,
            &old.uuid,
        )
        .await?;
        put_attr(c, t, &old.uuid, u.attrs.rewritten(version, u.now)).await?;
        insert_log(c, t, u.path, u.user, LogAction::Update, None).await?;
        Ok(version)
    }

    /// The new resource's row, its attributes, the collection's new times and an ADD log
    /// entry. Returns its version.
    async fn add(&self, c: &mut Exec<'_>, t: i64, a: &Addition<'_>) -> Result<i64> {
        let created = naive_from_ns(a.now);
        let version = insert_resource(
            c,
            t,
            a.dir.path_id,
            Some(path::name(a.path)),
            a.media,
            a.user,
            created,
            a.user,
            created,
            None,
            a.content_id,
            a.uuid,
        )
        .await?;
        insert_log(c, t, a.path, a.user, LogAction::Add, None).await?;
        let attrs = AttrRow::for_new(a.new, a.now, version);
        put_attr_touching(c, t, a.uuid, attrs, a.dir).await?;
        Ok(version)
    }

    /// Carbon's mappings when there may be some, the row, its content and attributes, the
    /// collection's new times and a DELETE_RESOURCE log entry.
    async fn remove(&self, c: &mut Exec<'_>, t: i64, r: &Removal<'_>) -> Result<()> {
        match r.mapped {
            true => delete_row(c, t, r.row).await?,
            false => delete_own_rows(c, t, r.row).await?,
        }
        touch_dir(c, t, r.parent, r.now).await?;
        insert_log(c, t, r.path, r.user, LogAction::DeleteResource, None).await
    }
}

/// Runs `change` against the database behind `c`, inside the caller's transaction.
pub(crate) async fn apply(
    c: &mut Exec<'_>,
    t: i64,
    change: &Change<'_>,
    versioning: bool,
    enc: &dyn Encoding,
) -> Result<Done> {
    Ok(match change {
        Change::BaseCollections => {
            base_collections(c, t).await?;
            Done::Nothing
        }
        Change::Create {
            path,
            new,
            data,
            user,
        } => Done::Entry(create(c, t, path, new, *data, user, enc).await?),
        Change::Write {
            path,
            data,
            user,
            expected,
        } => Done::Entry(write(c, t, path, data, user, *expected, versioning, enc).await?),
        Change::Remove { path, dir, user } => {
            Done::Touched(remove(c, t, path, *dir, user, versioning, enc).await?)
        }
        Change::Rename {
            from,
            to,
            mode,
            user,
        } => Done::Moved(rename(c, t, from, to, *mode, user, versioning).await?),
        Change::SetAttr { path, change } => Done::Entry(set_attr(c, t, path, change).await?),
        Change::CreateLink {
            path,
            restoration,
            target,
            as_resource,
            new,
            user,
        } => Done::Entry(
            create_link(c, t, path, restoration, target, *as_resource, new, user).await?,
        ),
        Change::RemoveLink { path, user } => Done::Touched(remove_link(c, t, path, user).await?),
        Change::MountRecord { name, props } => {
            mount_record(c, t, name, *props).await?;
            Done::Nothing
        }
        Change::MountLink {
            mount_path,
            instance_id,
            target_path,
            replace,
        } => {
            mount_link(c, t, mount_path, instance_id, target_path, *replace).await?;
            Done::Nothing
        }
        Change::CreatePath { path, user } => {
            ensure_collections(c, t, path, user).await?;
            Done::Nothing
        }
        Change::SetField {
            path,
            field,
            value,
            user,
        } => {
            set_field(c, t, path, *field, *value, user).await?;
            Done::Nothing
        }
        Change::Restore {
            path,
            snapshot,
            user,
        } => Done::Entry(restore(c, t, path, *snapshot, user, versioning, enc).await?),
        Change::Load {
            path,
            node,
            user,
            overwrite,
            progress,
        } => Done::Loaded(load(c, t, path, node, user, *overwrite, versioning, *progress).await?),
        Change::SetProperty {
            path,
            name,
            values,
            mode,
            user,
        } => {
            set_property(c, t, path, name, *values, *mode, user).await?;
            Done::Nothing
        }
    })
}

/// Why there is no resource at `p`: a collection is there (EISDIR) or nothing (ENOENT).
pub(crate) async fn missing_resource(c: &mut Exec<'_>, t: i64, p: &str) -> crate::Error {
    match collection_row(c, t, p).await {
        Ok(Some(_)) => err!(EISDIR, "{p} is a collection"),
        Ok(None) => err!(ENOENT, "resource {p} does not exist"),
        Err(e) => e,
    }
}

/// [`Change::Create`]: EEXIST if `p` is taken (or, under a MySQL collation, confused with a
/// name already there); the parent must be a live collection.
async fn create(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    new: &NewEntry,
    data: Option<&Content>,
    user: &str,
    enc: &dyn Encoding,
) -> Result<Entry> {
    let Some(parent) = path::parent(p) else {
        return Err(err!(EEXIST, "the root always exists"));
    };
    let dir = match dir_and_entry(c, t, parent, p).await? {
        Some(found) if found.file.is_some() || found.collection => {
            return Err(err!(EEXIST, "{p} already exists"));
        }
        Some(found) => found.dir,
        // Not a live collection: require_dir says which errno.
        None => require_dir(c, t, parent).await?,
    };
    refuse_confused(c, t, DirKey::Id(dir.path_id), p, None).await?;
    let now = now_ns();
    let created = naive_from_ns(now);
    let is_dir = new.kind == Kind::Directory;
    let media = match new.kind {
        Kind::File => media_type_for(path::name(p)),
        _ => None,
    };
    let (version, uuid) = if is_dir {
        let (_, version, uuid) =
            create_collection(c, t, p, dir.path_id, user, None, None, created).await?;
        let attrs = AttrRow::for_new(new, now, version);
        put_attr_touching(c, t, &uuid, attrs, &dir).await?;
        (version, uuid)
    } else {
        let uuid = uuid::Uuid::new_v4().to_string();
        let content_id = match data {
            Some(data) => enc.content(c, t, data).await?,
            None => insert_content(c, t, &new.content).await?,
        };
        let addition = Addition {
            dir: &dir,
            path: p,
            new,
            media,
            uuid: &uuid,
            content_id,
            user,
            now,
        };
        let version = enc.add(c, t, &addition).await?;
        (version, uuid)
    };
    Ok(EntryRow::from_parts(
        is_dir,
        version,
        uuid,
        media.map(str::to_string),
        created,
        data.map_or(new.content.len() as u64, Content::len),
        AttrRow::for_new(new, now, version),
    )
    .into_entry())
}

/// [`Change::Write`]: Carbon's update; with `expected`, only over that version (ESTALE
/// otherwise). With `versioning` the replaced version is archived first.
#[allow(clippy::too_many_arguments)]
pub(super) async fn write(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    data: &Content,
    user: &str,
    expected: Option<i64>,
    versioning: bool,
    enc: &dyn Encoding,
) -> Result<Entry> {
    let Some((old, attrs)) = file_row_with_attrs(c, t, p).await? else {
        return Err(missing_resource(c, t, p).await);
    };
    check_expected(&old, expected, p)?;
    if versioning {
        archive(c, t, &old, p).await?;
    }
    let now = now_ns();
    let update = Update {
        old: &old,
        attrs: &attrs,
        data,
        path: p,
        user,
        now,
    };
    let version = enc.replace(c, t, &update).await?;
    carry_versioned_mappings(c, t, old.version, version).await?;
    Ok(resource_entry(
        &old,
        version,
        data.len(),
        attrs.rewritten(version, now),
    ))
}

/// [`Change::Remove`]: unlink (`dir == false`) or rmdir; returns the collection's new times.
async fn remove(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    dir: bool,
    user: &str,
    versioning: bool,
    enc: &dyn Encoding,
) -> Result<SystemTime> {
    let Some(parent) = path::parent(p) else {
        return Err(err!(EBUSY, "the root cannot be removed"));
    };
    // One query finds the parent and the file, and whether Carbon's mappings name it; the
    // slow path only runs for rmdir and to tell which errno applies.
    let (parent_row, row, mapped) = match dir {
        true => {
            let (parent_row, row) = remove_checks(c, t, p, parent, true).await?;
            (parent_row, row, true)
        }
        false => unlink_checks(c, t, p, parent).await?,
    };
    if versioning && !dir {
        archive(c, t, &row, p).await?;
    }
    let now = now_ns();
    let removal = Removal {
        row: &row,
        parent: &parent_row,
        mapped,
        path: p,
        user,
        now,
    };
    enc.remove(c, t, &removal).await?;
    Ok(from_ns(now))
}
