//! Row shapes and time conversions shared by the SQL stores: a live REG_RESOURCE row, its
//! REGFS_ATTR row, and how the two become the [`Entry`] the filesystem sees.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{Local, NaiveDateTime, TimeZone};

use super::*;
/// One row of the stat/list queries: a live REG_RESOURCE row with its REGFS_ATTR row, if any.
#[derive(sqlx::FromRow)]
pub(crate) struct EntryRow {
    pub(crate) name: Option<String>,
    pub(crate) is_dir: i64,
    pub(crate) version: i64,
    pub(crate) uuid: String,
    pub(crate) media_type: Option<String>,
    pub(crate) created: NaiveDateTime,
    pub(crate) updated: NaiveDateTime,
    pub(crate) size: i64,
    #[sqlx(flatten)]
    pub(crate) attrs: AttrColumns,
}

/// The REGFS_ATTR columns of a LEFT JOIN: all NULL for a row Carbon wrote.
#[derive(sqlx::FromRow)]
pub(crate) struct AttrColumns {
    pub(crate) mode: Option<i64>,
    pub(crate) uid: Option<i64>,
    pub(crate) gid: Option<i64>,
    pub(crate) rdev: Option<i64>,
    pub(crate) atime_ns: Option<i64>,
    pub(crate) mtime_ns: Option<i64>,
    pub(crate) ctime_ns: Option<i64>,
    pub(crate) attr_version: Option<i64>,
}

impl AttrColumns {
    pub(crate) fn from_row(a: AttrRow) -> Self {
        AttrColumns {
            mode: Some(a.mode),
            uid: Some(a.uid),
            gid: Some(a.gid),
            rdev: Some(a.rdev),
            atime_ns: Some(a.atime_ns),
            mtime_ns: Some(a.mtime_ns),
            ctime_ns: Some(a.ctime_ns),
            attr_version: Some(a.version),
        }
    }

    /// The stored attributes, or the documented defaults for `row`.
    pub(crate) fn or_default(self, row: &ResourceRow) -> AttrRow {
        match (
            self.mode,
            self.uid,
            self.gid,
            self.atime_ns,
            self.mtime_ns,
            self.ctime_ns,
            self.attr_version,
        ) {
            (
                Some(mode),
                Some(uid),
                Some(gid),
                Some(atime_ns),
                Some(mtime_ns),
                Some(ctime_ns),
                Some(version),
            ) => AttrRow {
                mode,
                uid,
                gid,
                rdev: self.rdev.unwrap_or(0),
                atime_ns,
                mtime_ns,
                ctime_ns,
                version,
            },
            _ => default_attrs(row),
        }
    }
}

/// The columns of a live REG_RESOURCE row a mutation needs.
#[derive(sqlx::FromRow, Clone)]
pub(crate) struct ResourceRow {
    pub(crate) path_id: i64,
    pub(crate) name: Option<String>,
    pub(crate) version: i64,
    pub(crate) content_id: Option<i64>,
    pub(crate) creator: String,
    pub(crate) created: NaiveDateTime,
    pub(crate) media_type: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) uuid: String,
    /// REG_LAST_UPDATED_TIME: what a stat shows as the times of a row without attributes of
    /// its own version.
    pub(crate) updated: NaiveDateTime,
}

/// A REGFS_ATTR row.
#[derive(sqlx::FromRow, Clone, Copy)]
pub(crate) struct AttrRow {
    pub(crate) mode: i64,
    pub(crate) uid: i64,
    pub(crate) gid: i64,
    pub(crate) rdev: i64,
    pub(crate) atime_ns: i64,
    pub(crate) mtime_ns: i64,
    pub(crate) ctime_ns: i64,
    pub(crate) version: i64,
}

pub(crate) fn now_naive() -> NaiveDateTime {
    Local::now().naive_local()
}

pub(crate) fn now_ns() -> i64 {
    to_ns(SystemTime::now())
}

pub(crate) fn to_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

pub(crate) fn from_ns(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// Carbon writes JVM-local wall time into TIMESTAMP columns.
pub(crate) fn naive_to_system(t: NaiveDateTime) -> SystemTime {
    match Local.from_local_datetime(&t).earliest() {
        Some(dt) => SystemTime::from(dt),
        None => SystemTime::from(t.and_utc()),
    }
}

pub(crate) fn naive_from_ns(ns: i64) -> NaiveDateTime {
    chrono::DateTime::<Local>::from(from_ns(ns)).naive_local()
}

/// The entry of the resource `row` at `version` with attributes `a` and `size` bytes, as a stat
/// would return it right after a mutation (built without asking the database).
pub(crate) fn resource_entry(row: &ResourceRow, version: i64, size: u64, a: AttrRow) -> Entry {
    EntryRow::from_parts(
        false,
        version,
        row.uuid.clone(),
        row.media_type.clone(),
        row.created,
        size,
        a,
    )
    .into_entry()
}

impl AttrRow {
    /// A new entry's attributes: its type and permissions, owner, all times `now_ns`.
    pub(crate) fn for_new(new: &NewEntry, now_ns: i64, version: i64) -> AttrRow {
        AttrRow {
            mode: (new.kind.type_bits() | (new.perm & 0o7777)) as i64,
            uid: new.uid as i64,
            gid: new.gid as i64,
            rdev: new.rdev as i64,
            atime_ns: now_ns,
            mtime_ns: now_ns,
            ctime_ns: now_ns,
            version,
        }
    }

    /// The attributes after a content update: the new version, modified and changed `now`.
    pub(crate) fn rewritten(mut self, version: i64, now_ns: i64) -> AttrRow {
        self.mtime_ns = now_ns;
        self.ctime_ns = now_ns;
        self.version = version;
        self
    }
}

impl EntryRow {
    /// The row a stat would return right after a mutation, built without asking the database.
    pub(crate) fn from_parts(
        is_dir: bool,
        version: i64,
        uuid: String,
        media_type: Option<String>,
        created: NaiveDateTime,
        size: u64,
        a: AttrRow,
    ) -> EntryRow {
        EntryRow {
            name: None,
            is_dir: is_dir as i64,
            version,
            uuid,
            media_type,
            created,
            updated: naive_from_ns(a.mtime_ns),
            size: size as i64,
            attrs: AttrColumns::from_row(a),
        }
    }

    pub(crate) fn into_entry(self) -> Entry {
        let created = naive_to_system(self.created);
        let updated = naive_to_system(self.updated);
        let kind = if self.is_dir != 0 {
            Kind::Directory
        } else {
            match self.attrs.mode.map(|m| Kind::from_mode(m as u32)) {
                Some(Kind::Directory) | None => Kind::File,
                Some(k) => k,
            }
        };
        let perm = match self.attrs.mode {
            Some(m) => (m as u32) & 0o7777,
            None if kind == Kind::Directory => DEFAULT_DIR_PERM,
            None => DEFAULT_FILE_PERM,
        };
        // Our precise times hold while the row is the version we wrote them for; a newer
        // version written by Carbon brings its own REG_LAST_UPDATED_TIME.
        let ours = self.attrs.attr_version == Some(self.version);
        let mtime = match (ours, self.attrs.mtime_ns) {
            (true, Some(ns)) => from_ns(ns),
            _ => updated,
        };
        let ctime = match (ours, self.attrs.ctime_ns) {
            (true, Some(ns)) => from_ns(ns),
            _ => mtime,
        };
        let atime = self.attrs.atime_ns.map(from_ns).unwrap_or(mtime);
        Entry {
            kind,
            perm,
            uid: self.attrs.uid.unwrap_or(0) as u32,
            gid: self.attrs.gid.unwrap_or(0) as u32,
            rdev: self.attrs.rdev.unwrap_or(0) as u32,
            size: self.size.max(0) as u64,
            atime,
            mtime,
            ctime,
            crtime: created,
            version: self.version,
            uuid: self.uuid,
            media_type: self.media_type,
        }
    }
}

impl ResourceRow {
    /// REG_LAST_UPDATED_TIME in nanoseconds.
    pub(crate) fn updated_ns(&self) -> i64 {
        to_ns(naive_to_system(self.updated))
    }
}

/// The documented defaults for a row Carbon wrote (no REGFS_ATTR row).
pub(crate) fn default_attrs(row: &ResourceRow) -> AttrRow {
    let is_dir = row.name.is_none();
    let mode = if is_dir {
        libc::S_IFDIR | DEFAULT_DIR_PERM
    } else {
        libc::S_IFREG | DEFAULT_FILE_PERM
    };
    // The times a stat shows for the row now (see EntryRow::into_entry), so that writing
    // these defaults moves nothing the change itself does not move.
    let ns = row.updated_ns();
    AttrRow {
        mode: mode as i64,
        uid: 0,
        gid: 0,
        rdev: 0,
        atime_ns: ns,
        mtime_ns: ns,
        ctime_ns: ns,
        version: row.version,
    }
}

/// Tables whose rows hang off a path id and resource name (unversioned mode).
pub(crate) const PATH_KEYED_TABLES: [&str; 4] = [
    "REG_RESOURCE_PROPERTY",
    "REG_RESOURCE_TAG",
    "REG_RESOURCE_COMMENT",
    "REG_RESOURCE_RATING",
];

/// Carbon's mappings kept by `REG_VERSION` rather than by path id and name when registry.xml's
/// `staticConfiguration` turns versioning of properties, tags, comments or ratings on (the
/// default of Carbon 4.4.x; 4.5 and later default to off). Per kind: the mapping table, its
/// column naming the entity row, the entity table and the entity's own columns.
pub(crate) const VERSIONED_MAPPINGS: [(&str, &str, &str, &str); 4] = [
    (
        "REG_RESOURCE_PROPERTY",
        "REG_PROPERTY_ID",
        "REG_PROPERTY",
        "REG_NAME, REG_VALUE",
    ),
    (
        "REG_RESOURCE_TAG",
        "REG_TAG_ID",
        "REG_TAG",
        "REG_TAG_NAME, REG_USER_ID, REG_TAGGED_TIME",
    ),
    (
        "REG_RESOURCE_COMMENT",
        "REG_COMMENT_ID",
        "REG_COMMENT",
        "REG_COMMENT_TEXT, REG_USER_ID, REG_COMMENTED_TIME",
    ),
    (
        "REG_RESOURCE_RATING",
        "REG_RATING_ID",
        "REG_RATING",
        "REG_RATING, REG_USER_ID, REG_RATED_TIME",
    ),
];

/// Base collections Carbon creates on a tenant's first start, with their descriptions.
pub(crate) const BASE_COLLECTIONS: [(&str, Option<&str>); 8] = [
    ("/", None),
    (
        "/_system",
        Some("System collection of the Registry. Do not delete or modify."),
    ),
    ("/_system/local", Some("Local data repository.")),
    ("/_system/config", Some("Configuration registry.")),
    ("/_system/governance", Some("Governance registry.")),
    ("/_system/local/repository", None),
    ("/_system/governance/repository", None),
    ("/_system/config/repository", None),
];
