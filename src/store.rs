//! The storage layer: one [`Store`] per database, speaking WSO2's `REG_*` schema plus regfs's own
//! `REGFS_*` table for what the WSO2 tables have no column for (POSIX mode, owner, precise times).
//!
//! Paths given to a store are *target* paths inside that database (the mount table has already
//! translated them, see [`crate::path::TargetPath`]). Every mutation is a [`Change`] that
//! [`Store::apply`] runs as one transaction, retried on lock/serialization conflicts as
//! [`crate::retry::run`] decides; its body is written once for every database in
//! `ops::apply`, with the store's fast paths as an `ops::Encoding`.

pub(crate) mod ops;
pub mod rows;
pub mod server;
pub mod sqlite;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::content::{Content, SpoolPolicy};
use crate::error::Result;

/// The super tenant's id, which every row regfs writes carries.
pub const SUPER_TENANT_ID: i64 = -1234;
/// The user Carbon writes the base collections as.
pub const SYSTEM_USER: &str = "wso2.system.user";
/// Media type of a mount link collection in the node's local database.
pub const LINK_MEDIA_TYPE: &str = "application/vnd.wso2-link";
/// Media type of a mount record under the mount bookkeeping collection.
pub const MOUNT_MEDIA_TYPE: &str = "application/vnd.wso2.mount";
/// Where Carbon keeps one record per mount, in the node's local database.
pub const MOUNT_RECORDS_PATH: &str =
    "/_system/local/repository/components/org.wso2.carbon.registry/mount";

/// `REG_LOG.REG_ACTION` codes (Carbon's `Activity` constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum LogAction {
    Add = 0,
    Update = 1,
    DeleteResource = 7,
    Restore = 8,
    Rename = 9,
    Move = 10,
    CreateRemoteLink = 12,
    CreateSymbolicLink = 13,
    RemoveLink = 14,
}

/// The media type Carbon gives a new resource from its file extension: its own mappings for
/// the artifacts the registry governs first, then the common MIME table.
pub fn media_type_for(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    let carbon = match ext.as_str() {
        "xml" => Some("application/xml"),
        "wsdl" => Some("application/wsdl+xml"),
        "xsd" => Some("application/x-xsd+xml"),
        "wadl" => Some("application/wadl+xml"),
        "policy" => Some("application/policy+xml"),
        "json" => Some("application/json"),
        "rxt" => Some("application/vnd.wso2.registry-ext-type+xml"),
        "properties" => Some("text/plain"),
        _ => None,
    };
    carbon.or_else(|| mime_guess::from_ext(&ext).first_raw())
}

/// What kind of file an entry is. Collections are directories; everything else is a resource,
/// with the POSIX type kept in `REGFS_ATTR.MODE` (a resource Carbon wrote is a regular file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Directory,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl Kind {
    pub fn from_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Directory,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDevice,
            libc::S_IFBLK => Kind::BlockDevice,
            _ => Kind::File,
        }
    }

    pub fn type_bits(self) -> u32 {
        match self {
            Kind::Directory => libc::S_IFDIR,
            Kind::File => libc::S_IFREG,
            Kind::Symlink => libc::S_IFLNK,
            Kind::Fifo => libc::S_IFIFO,
            Kind::Socket => libc::S_IFSOCK,
            Kind::CharDevice => libc::S_IFCHR,
            Kind::BlockDevice => libc::S_IFBLK,
        }
    }
}

/// Default permission bits for entries that have no `REGFS_ATTR` row (written by Carbon): wide
/// open, so that the registry's own permissions decide (see SEMANTICS.md).
pub const DEFAULT_DIR_PERM: u32 = 0o777;
pub const DEFAULT_FILE_PERM: u32 = 0o666;

/// One collection or resource as the filesystem sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits only (no type bits).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub size: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
    /// `REG_RESOURCE.REG_VERSION` of the live row: changes on every content update.
    pub version: i64,
    pub uuid: String,
    pub media_type: Option<String>,
}

/// A directory listing item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub entry: Entry,
}

/// What a new entry is made of.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub kind: Kind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    /// Initial content (symlink target, or a file's bytes).
    pub content: Vec<u8>,
}

/// Attribute changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AttrChange {
    pub perm: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
    /// Set ctime explicitly; otherwise any change bumps it to now.
    pub ctime: Option<SystemTime>,
}

impl AttrChange {
    pub fn is_empty(&self) -> bool {
        self.perm.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.atime.is_none()
            && self.mtime.is_none()
            && self.ctime.is_none()
    }
}

/// How a rename treats an existing destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace a compatible destination atomically (POSIX `rename`).
    Replace,
    /// Fail with EEXIST if the destination exists (`RENAME_NOREPLACE`).
    NoReplace,
}

/// Space figures for `statfs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpaceInfo {
    pub bytes_used: u64,
    pub entries: u64,
}

/// Store-level configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub tenant_id: i64,
    /// How long one statement may wait for a lock or a connection before the operation fails.
    pub busy_timeout: Duration,
    /// How many times an SQLite transaction is retried on a conflict before EIO. (Server
    /// stores retry conflicts until the operation's time bound instead.)
    pub max_retries: u32,
    pub max_connections: u32,
    /// Carbon's `versionResourcesOnChange`: before a resource (not a collection) is
    /// overwritten, removed or replaced by a rename, its row and content are archived as a
    /// version (`REG_RESOURCE_HISTORY`, `REG_CONTENT_HISTORY`, `REG_SNAPSHOT`), as Carbon does.
    pub version_on_change: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            tenant_id: SUPER_TENANT_ID,
            busy_timeout: Duration::from_secs(10),
            max_retries: 5,
            max_connections: 4,
            version_on_change: false,
        }
    }
}

/// A registry database. One implementation per SQL dialect.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs: the data source's name or file.
    fn name(&self) -> &str;

    /// Creates what the database lacks of the schema (`regfs init`, by a user who may create
    /// tables): on a server, Carbon's registry tables only where there are none, and regfs's
    /// own `REGFS_*` objects. The embedded SQLite store makes its schema when it opens.
    async fn install(&self) -> Result<()> {
        Ok(())
    }

    /// Checks, from the catalog only, that the database has every table a mount uses; the
    /// error names what is missing and `regfs init`. Writes nothing.
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Readies the database for a mount with rows only, once [`Store::check`] passed: creates
    /// the base collections Carbon creates on first start (`/`, `/_system`,
    /// `/_system/{local,config,governance}` and their `repository` children).
    async fn init(&self) -> Result<()>;

    /// The entry at `path`, or `None`.
    async fn stat(&self, path: &str) -> Result<Option<Entry>>;

    /// Up to `limit` children of the collection `dir` whose names sort after `after` (byte order).
    async fn list(&self, dir: &str, after: Option<&str>, limit: u32) -> Result<Vec<DirEntry>>;

    /// The content of a resource with the `REG_VERSION` it belongs to; content larger than the
    /// policy's memory limit comes back in a spool file.
    async fn read_content(&self, path: &str, policy: &SpoolPolicy) -> Result<(i64, Content)>;

    /// An archived version of the resource at `path`, Carbon's `path;version:N` (N a
    /// REG_SNAPSHOT id, see [`crate::path::split_version`]): a read-only regular file with the
    /// archived row's times and content length. `None` if there is no such version.
    async fn stat_version(&self, path: &str, snapshot: i64) -> Result<Option<Entry>>;

    /// The content of an archived version, in memory, with its `REG_VERSION`.
    async fn read_version(&self, path: &str, snapshot: i64) -> Result<(i64, Content)>;

    /// The content of a resource, in memory (symlink targets, small files).
    async fn read(&self, path: &str) -> Result<Vec<u8>> {
        let (_, content) = self.read_content(path, &SpoolPolicy::in_memory()).await?;
        content.into_vec()
    }

    /// Runs one mutation as one transaction, retried on conflicts as the store's database
    /// needs. The generic body of every change is `ops::apply`; a store runs it in its
    /// transaction, with its own `ops::Encoding`, and may answer some changes by a fast path
    /// of its own first. The methods below are this, typed.
    async fn apply(&self, change: Change<'_>) -> Result<Done>;

    /// Creates a new collection or resource; its parent must exist. EEXIST if `path` exists.
    async fn create(&self, path: &str, new: NewEntry, user: &str) -> Result<Entry> {
        let change = Change::Create {
            path,
            new,
            data: None,
            user,
        };
        self.apply(change).await?.entry()
    }

    /// [`Store::create`] of a file whose content is `data` (spooled or large: not in
    /// `new.content`), in the same transaction: the row and its content go in together or not
    /// at all (a disk that fills up leaves no empty resource behind).
    async fn create_file(
        &self,
        path: &str,
        new: NewEntry,
        data: &Content,
        user: &str,
    ) -> Result<Entry> {
        let change = Change::Create {
            path,
            new,
            data: Some(data),
            user,
        };
        self.apply(change).await?.entry()
    }

    /// Whether a new file at `path` could be stored under that name, asked when a create's
    /// insert waits for its first commit: EILSEQ for characters the database's columns cannot
    /// hold, EEXIST for a name its collation cannot tell from one already there. Whether the
    /// name itself is free is not asked. Nothing is written.
    async fn check_new_name(&self, _path: &str) -> Result<()> {
        Ok(())
    }

    /// Replaces a resource's content: a new `REG_RESOURCE` row with a new `REG_VERSION`.
    async fn write(&self, path: &str, data: &Content, user: &str) -> Result<Entry> {
        let change = Change::Write {
            path,
            data,
            user,
            expected: None,
        };
        self.apply(change).await?.entry()
    }

    /// [`Store::write`] only if the resource is still at `REG_VERSION` `expected` (in the same
    /// transaction); `ESTALE` if another writer (a node, Carbon) replaced it meanwhile, and
    /// nothing is written. Appends from several nodes merge through it.
    async fn write_if(
        &self,
        path: &str,
        data: &Content,
        user: &str,
        expected: i64,
    ) -> Result<Entry> {
        let change = Change::Write {
            path,
            data,
            user,
            expected: Some(expected),
        };
        self.apply(change).await?.entry()
    }

    /// Removes a resource (`dir == false`) or an empty collection (`dir == true`). Returns the
    /// collection's new mtime and ctime. ([`Store::create`]'s collection takes the new entry's
    /// ctime as both.)
    async fn remove(&self, path: &str, dir: bool, user: &str) -> Result<SystemTime> {
        self.apply(Change::Remove { path, dir, user })
            .await?
            .touched()
    }

    /// Moves `from` to `to` inside this database, with its subtree for a collection. Returns
    /// the new mtime and ctime of both collections; `None` if nothing moved (`to` is `from`).
    async fn rename(
        &self,
        from: &str,
        to: &str,
        mode: RenameMode,
        user: &str,
    ) -> Result<Option<SystemTime>> {
        let change = Change::Rename {
            from,
            to,
            mode,
            user,
        };
        self.apply(change).await?.moved()
    }

    /// The registry metadata of `path` (its properties, media type, description, UUID, ...),
    /// or `None` when nothing is there.
    async fn metadata(&self, path: &str) -> Result<Option<Metadata>>;

    /// Entries of the activity log (`REG_LOG`), see [`LogQuery`].
    async fn activity(&self, q: &LogQuery) -> Result<Vec<LogEntry>>;

    /// The archived versions of the resource at `path`, oldest first; of a collection, its
    /// checkpoints.
    async fn versions(&self, path: &str) -> Result<Vec<VersionInfo>>;

    /// Carbon's `restoreVersion`: the resource at `path` takes the content of its version
    /// `snapshot` as a new version (the one it replaces archived when versioning is on), and
    /// RESTORE is logged. One transaction.
    async fn restore(&self, path: &str, snapshot: i64, user: &str) -> Result<Entry> {
        self.apply(Change::Restore {
            path,
            snapshot,
            user,
        })
        .await?
        .entry()
    }

    /// Sets the property `name` of `path` to `values` (removes it: `None`), as Carbon's put
    /// of the resource with that property changed: its version and content stay, the row's
    /// last updater and time move, UPDATE is logged. One transaction.
    async fn set_property(
        &self,
        path: &str,
        name: &str,
        values: Option<&[String]>,
        mode: SetMode,
        user: &str,
    ) -> Result<()> {
        self.apply(Change::SetProperty {
            path,
            name,
            values,
            mode,
            user,
        })
        .await?
        .nothing()
    }

    /// Sets (`None`: clears) the media type or description of `path`, as Carbon's put with
    /// that field changed: version and content stay, UPDATE is logged. One transaction.
    async fn set_field(
        &self,
        path: &str,
        field: Field,
        value: Option<&str>,
        user: &str,
    ) -> Result<()> {
        self.apply(Change::SetField {
            path,
            field,
            value,
            user,
        })
        .await?
        .nothing()
    }

    /// Writes the dump `node` at `path` as Carbon's restore does (see `ops/load.rs`):
    /// missing ancestors are made, collections already there are merged into, a resource
    /// already there is EEXIST unless `overwrite` (then replaced, archived first when
    /// versioning is on); one RESTORE is logged. Association paths in `node` are absolute
    /// target paths of this database. One transaction.
    async fn load(
        &self,
        path: &str,
        node: &crate::dump::Node,
        user: &str,
        overwrite: bool,
        progress: Option<&Progress>,
    ) -> Result<Loaded> {
        self.apply(Change::Load {
            path,
            node,
            user,
            overwrite,
            progress,
        })
        .await?
        .loaded()
    }

    /// Changes POSIX attributes kept in `REGFS_ATTR`.
    async fn set_attr(&self, path: &str, change: AttrChange) -> Result<Entry> {
        self.apply(Change::SetAttr { path, change }).await?.entry()
    }

    /// Makes `mount_path` a mount link in this (local) database, as Carbon does when it sets up a
    /// `registry.xml` mount, and records it under [`MOUNT_RECORDS_PATH`]. With `replace`
    /// (overwrite="true") whatever was at the path goes; without it (overwrite="virtual") an
    /// existing local resource stays, hidden while the mount is there.
    async fn ensure_mount_link(
        &self,
        mount_path: &str,
        instance_id: &str,
        target_path: &str,
        replace: bool,
    ) -> Result<()> {
        let change = Change::MountLink {
            mount_path,
            instance_id,
            target_path,
            replace,
        };
        self.apply(change).await?.nothing()
    }

    /// The `registry.linkrestoration` value of the Carbon symbolic link at `path` (a
    /// collection or resource of media type [`LINK_MEDIA_TYPE`] whose value has three parts,
    /// `path;target;user`), or `None` when `path` is no such link. Mount links (four parts)
    /// are `None` too.
    async fn link_restoration(&self, path: &str) -> Result<Option<String>>;

    /// A Carbon symbolic link at `path`, as `EmbeddedRegistry.createLink(path, target)` puts it:
    /// a collection (a resource when `as_resource`, the target being one) of media type
    /// [`LINK_MEDIA_TYPE`] with `registry.nonrecursive` and `registry.linkrestoration` =
    /// `restoration`, and REG_LOG CREATE_SYMBOLIC_LINK with `target`; `attrs` give its POSIX
    /// owner and times. EEXIST if `path` exists. One transaction.
    async fn create_link(
        &self,
        path: &str,
        restoration: &str,
        target: &str,
        as_resource: bool,
        new: NewEntry,
        user: &str,
    ) -> Result<Entry> {
        let change = Change::CreateLink {
            path,
            restoration,
            target,
            as_resource,
            new,
            user,
        };
        self.apply(change).await?.entry()
    }

    /// Removes the Carbon symbolic link at `path` as `removeLink` does: the link's row goes
    /// (DELETE_RESOURCE), then REMOVE_LINK is logged. Returns the collection's new times.
    async fn remove_link(&self, path: &str, user: &str) -> Result<SystemTime> {
        self.apply(Change::RemoveLink { path, user })
            .await?
            .touched()
    }

    /// Writes (`props` given) or removes (`None`) the record `name` under
    /// [`MOUNT_RECORDS_PATH`], as Carbon's `RegistryUtils.addMountEntry` writes one for every
    /// link; this is the node's own database.
    async fn mount_record(&self, name: &str, props: Option<&[(&str, &str)]>) -> Result<()> {
        self.apply(Change::MountRecord { name, props })
            .await?
            .nothing()
    }

    /// Creates the collection `path` and any missing ancestors (Carbon's addEmptyCollection).
    async fn create_path(&self, path: &str, user: &str) -> Result<()> {
        self.apply(Change::CreatePath { path, user })
            .await?
            .nothing()
    }

    /// Space used, for `statfs`.
    async fn space(&self) -> Result<SpaceInfo>;

    /// A value that differs from the one the last call returned when a connection other than
    /// this store's own committed to the database in between (another process, another
    /// node); `None` when the store cannot tell. SQLite's `data_version` does this; for the
    /// servers it would be a `REG_LOG` feed, which is not built.
    async fn foreign_commits(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    /// Starts this database's change feed (see `server/feed.rs`): `sink` hears of what other
    /// processes commit, as paths in this database. Returns how the feed hears changes, or
    /// `None` when the store has no feed ([`Store::foreign_commits`] tells instead). The feed
    /// keeps `health` up to date: when it last knew it had heard everything committed.
    async fn start_feed(&self, _sink: FeedSink, _health: FeedHealth) -> Result<Option<String>> {
        Ok(None)
    }
}

/// One mutation of a registry database, run as one transaction by [`Store::apply`]. Paths
/// are target paths in the store's database; `user` is who the registry logs it as.
#[derive(Debug)]
pub enum Change<'a> {
    /// The base collections Carbon creates on first start ([`Store::init`]).
    BaseCollections,
    /// [`Store::create`], or [`Store::create_file`] with `data`.
    Create {
        path: &'a str,
        new: NewEntry,
        data: Option<&'a Content>,
        user: &'a str,
    },
    /// [`Store::write`], or [`Store::write_if`] with `expected`.
    Write {
        path: &'a str,
        data: &'a Content,
        user: &'a str,
        expected: Option<i64>,
    },
    /// [`Store::remove`].
    Remove {
        path: &'a str,
        dir: bool,
        user: &'a str,
    },
    /// [`Store::rename`].
    Rename {
        from: &'a str,
        to: &'a str,
        mode: RenameMode,
        user: &'a str,
    },
    /// [`Store::set_attr`].
    SetAttr { path: &'a str, change: AttrChange },
    /// [`Store::create_link`].
    CreateLink {
        path: &'a str,
        restoration: &'a str,
        target: &'a str,
        as_resource: bool,
        new: NewEntry,
        user: &'a str,
    },
    /// [`Store::remove_link`].
    RemoveLink { path: &'a str, user: &'a str },
    /// [`Store::mount_record`].
    MountRecord {
        name: &'a str,
        props: Option<&'a [(&'a str, &'a str)]>,
    },
    /// [`Store::ensure_mount_link`].
    MountLink {
        mount_path: &'a str,
        instance_id: &'a str,
        target_path: &'a str,
        replace: bool,
    },
    /// [`Store::create_path`].
    CreatePath { path: &'a str, user: &'a str },
    /// [`Store::set_field`].
    SetField {
        path: &'a str,
        field: Field,
        value: Option<&'a str>,
        user: &'a str,
    },
    /// [`Store::restore`].
    Restore {
        path: &'a str,
        snapshot: i64,
        user: &'a str,
    },
    /// [`Store::load`].
    Load {
        path: &'a str,
        node: &'a crate::dump::Node,
        user: &'a str,
        overwrite: bool,
        progress: Option<&'a Progress>,
    },
    /// [`Store::set_property`].
    SetProperty {
        path: &'a str,
        name: &'a str,
        values: Option<&'a [String]>,
        mode: SetMode,
        user: &'a str,
    },
}

/// What a load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Collections and resources written.
    pub created: u64,
    /// Resources that were there and were replaced (`overwrite`).
    pub replaced: u64,
    /// Collections that were there: kept as they are, the dump's children loaded into them.
    pub merged: u64,
    /// UUIDs of the dump already taken in the database, given new ones.
    pub new_uuids: u64,
}

/// Where a load stands, read by whoever shows progress: entries done of the dump.
#[derive(Debug, Default)]
pub struct Progress {
    /// Entries done in the part (the transaction) being written, or of a dump.
    pub done: std::sync::atomic::AtomicU64,
    /// Entries of the parts already committed (a load that spans several databases).
    pub before: std::sync::atomic::AtomicU64,
}

impl Progress {
    /// Entries done so far.
    pub fn now(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        self.before.load(Relaxed) + self.done.load(Relaxed)
    }
}

/// A field of a registry row that [`Store::set_field`] changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    MediaType,
    Description,
}

/// How [`Store::set_property`] treats a property that is there, or not (`setxattr`'s flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// Set it either way.
    Any,
    /// Only if it is not there (EEXIST otherwise): `XATTR_CREATE`.
    Create,
    /// Only if it is there (ENODATA otherwise): `XATTR_REPLACE`.
    Replace,
}

/// One archived version of a resource ([`Store::versions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Carbon's snapshot id: the N of `PATH;version:N`.
    pub snapshot: i64,
    /// The archived row's `REG_VERSION`.
    pub version: i64,
    /// When that version was written (its `REG_LAST_UPDATED_TIME`).
    pub time: chrono::NaiveDateTime,
    pub author: Option<String>,
    /// A resource version's content length; 0 for a collection checkpoint.
    pub size: u64,
    /// A collection checkpoint (Carbon's `createVersion` of a collection): how many
    /// collections and resources it archived, the collection included. `None` for a
    /// resource's version.
    pub entries: Option<u64>,
}

/// Which `REG_LOG` entries [`Store::activity`] reads.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    /// Only paths at or below this target path.
    pub below: Option<String>,
    pub since: Option<chrono::NaiveDateTime>,
    pub user: Option<String>,
    /// Only entries older than this id (the next page, newest first).
    pub before: Option<i64>,
    /// Only entries newer than this id, oldest first (following the log).
    pub after: Option<i64>,
    pub limit: u32,
}

/// One `REG_LOG` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub id: i64,
    /// A target path in the store's database.
    pub path: String,
    pub user: String,
    pub time: chrono::NaiveDateTime,
    /// Carbon's action code (see [`log_action_name`]).
    pub action: i64,
    pub data: Option<String>,
}

/// The name of Carbon's `REG_LOG` action `code` (`Activity.java`).
pub fn log_action_name(code: i64) -> &'static str {
    match code {
        0 => "ADD",
        1 => "UPDATE",
        2 => "COMMENT",
        3 => "DELETE_COMMENT",
        4 => "TAG",
        5 => "REMOVE_TAG",
        6 => "RATING",
        7 => "DELETE_RESOURCE",
        8 => "RESTORE",
        9 => "RENAME",
        10 => "MOVE",
        11 => "COPY",
        12 => "CREATE_REMOTE_LINK",
        13 => "CREATE_SYMBOLIC_LINK",
        14 => "REMOVE_LINK",
        15 => "ADD_ASSOCIATION",
        16 => "REMOVE_ASSOCIATION",
        17 => "ASSOCIATE_ASPECT",
        _ => "UNKNOWN",
    }
}

/// A resource's or collection's registry metadata ([`Store::metadata`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Carbon's properties, each with its values (several for a multi-valued one), in the
    /// order they were added.
    pub properties: Vec<(String, Vec<String>)>,
    pub media_type: Option<String>,
    pub description: Option<String>,
    pub uuid: String,
    pub creator: String,
    pub created: chrono::NaiveDateTime,
    pub last_updater: Option<String>,
    pub version: i64,
    pub social: Social,
}

/// A comment or a tagging: who, when, and what (the text, or the tag name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remark {
    pub user: String,
    pub time: chrono::NaiveDateTime,
    pub text: String,
}

/// A user's rating of a resource (1 to 5), and when it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating {
    pub user: String,
    pub time: chrono::NaiveDateTime,
    pub rate: i64,
}

/// What users said of a resource in Carbon's console ([`Metadata`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Social {
    /// Tag names, each once.
    pub tags: Vec<String>,
    /// Every tagging (the tag name, who, when), oldest first: a tag two users gave is two.
    pub taggings: Vec<Remark>,
    /// Comments, oldest first.
    pub comments: Vec<Remark>,
    /// Each user's rating, oldest first.
    pub ratings: Vec<Rating>,
    /// Associations from this resource: (type, target path in its database).
    pub associations: Vec<(String, String)>,
    /// Its archived versions' snapshot ids, oldest first (`PATH;version:N`).
    pub versions: Vec<i64>,
}

impl Change<'_> {
    /// The operation's name in logs (what a user did).
    pub fn what(&self) -> &'static str {
        match self {
            Change::BaseCollections => "init",
            Change::Create { .. } => "create",
            Change::Write { .. } => "write",
            Change::Remove { dir: true, .. } => "rmdir",
            Change::Remove { dir: false, .. } | Change::RemoveLink { .. } => "unlink",
            Change::Rename { .. } => "rename",
            Change::SetAttr { .. } => "setattr",
            Change::CreateLink { .. } => "symlink",
            Change::MountRecord { .. } => "mount record",
            Change::MountLink { .. } => "mount link",
            Change::CreatePath { .. } => "create path",
            Change::Restore { .. } => "restore",
            Change::SetField { .. } => "setxattr",
            Change::SetProperty { values: None, .. } => "removexattr",
            Change::SetProperty { .. } => "setxattr",
            Change::Load { .. } => "load",
        }
    }

    /// Whether the change adds or removes a resource (the servers count those, see
    /// `ServerStore::changed`).
    pub fn adds_or_removes(&self) -> bool {
        matches!(
            self,
            Change::Create { .. }
                | Change::Load { .. }
                | Change::Remove { .. }
                | Change::CreateLink { .. }
                | Change::RemoveLink { .. }
        )
    }
}

/// What a [`Change`] answers.
#[derive(Debug)]
pub enum Done {
    /// The entry as it is now (create, write, setattr, symlink).
    Entry(Entry),
    /// The collection's new mtime and ctime (unlink, rmdir).
    Touched(SystemTime),
    /// Both collections' new times, `None` if nothing moved (rename).
    Moved(Option<SystemTime>),
    /// What a load wrote.
    Loaded(Loaded),
    Nothing,
}

impl Done {
    fn mismatch(self, wanted: &str) -> crate::Error {
        crate::err!(EIO, "a store answered {self:?} where {wanted} was due")
    }

    pub fn entry(self) -> Result<Entry> {
        match self {
            Done::Entry(e) => Ok(e),
            other => Err(other.mismatch("an entry")),
        }
    }

    pub fn touched(self) -> Result<SystemTime> {
        match self {
            Done::Touched(t) => Ok(t),
            other => Err(other.mismatch("a collection's times")),
        }
    }

    pub fn moved(self) -> Result<Option<SystemTime>> {
        match self {
            Done::Moved(t) => Ok(t),
            other => Err(other.mismatch("a rename's times")),
        }
    }

    pub fn loaded(self) -> Result<Loaded> {
        match self {
            Done::Loaded(l) => Ok(l),
            other => Err(other.mismatch("a load's counts")),
        }
    }

    pub fn nothing(self) -> Result<()> {
        match self {
            Done::Nothing => Ok(()),
            other => Err(other.mismatch("nothing")),
        }
    }
}

/// What a store's change feed heard another process commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// These paths of the store's database changed: created, written, removed, renamed (both
    /// ends) or their attributes. Empty: nothing, only a sign that the feed is alive.
    Paths(Vec<String>),
    /// Anything may have changed: the feed lost track for a while.
    Everything,
    /// The user-management tables changed (users, roles, grants): a regfs admin command
    /// announced it in its transaction (PostgreSQL, when the UM tables share the database).
    Permissions,
}

/// Where a change feed says what it heard; `false` when nobody listens any more (the feed
/// then stops).
pub type FeedSink = std::sync::Arc<dyn Fn(Heard) -> bool + Send + Sync>;

/// When a change feed last knew it had heard everything other processes committed until
/// then: a poll of `REG_LOG` that answered, or on PostgreSQL this node's own heartbeat
/// `NOTIFY` come back through the `LISTEN` session (notifications arrive in commit order, so
/// every change committed before the heartbeat arrived before it). Shared by the feed, which
/// confirms, and the registry, which asks [`FeedHealth::fresh`].
#[derive(Debug, Clone, Default)]
pub struct FeedHealth(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl FeedHealth {
    /// The feed has heard everything committed until now.
    pub fn confirm(&self) {
        self.0
            .store(Self::now_ms(), std::sync::atomic::Ordering::SeqCst);
    }

    /// The feed may miss changes from now on (its connection failed).
    pub fn lost(&self) {
        self.0.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the feed confirmed within `within`.
    pub fn fresh(&self, within: std::time::Duration) -> bool {
        let at = self.0.load(std::sync::atomic::Ordering::SeqCst);
        at != 0 && Self::now_ms().saturating_sub(at) <= within.as_millis() as u64
    }

    /// Milliseconds on a monotonic clock that starts with the process.
    fn now_ms() -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
            + 1
    }
}
