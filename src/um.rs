//! The user-management database (`UM_*` tables, WSO2's layout): users, roles and permission
//! grants, as Carbon's `JDBCUserStoreManager` and `JDBCAuthorizationManager` store them.
//! In SQLite (the embedded default keeps them in its shared database) or on a PostgreSQL or
//! MySQL server (Carbon's shared UM database), through one query layer.

use std::path::Path;

use base64::Engine;
use chrono::{Local, NaiveDateTime};
use sha2::Digest;
use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::path;
use crate::policy::{Action, PermissionTree, Subject, role_key};
use crate::retry::{Bound, Retry};
use crate::sql::{Dialect, Exec, LiteTx, Pool, Val};
use crate::{args, err};

const UM_SCHEMA: &str = include_str!("store/sqlite_um_schema.sql");
const POSTGRES_UM_SCHEMA: &str = include_str!("store/server/postgres_um_schema.sql");
const MYSQL_UM_SCHEMA: &str = include_str!("store/server/mysql_um_schema.sql");

/// User-store domains Carbon creates for every tenant, in its order (ids 1..5 for -1234).
const DOMAINS: [&str; 5] = ["PRIMARY", "SYSTEM", "INTERNAL", "APPLICATION", "WORKFLOW"];
/// Longest `UM_PERMISSION.UM_RESOURCE_ID`.
const RESOURCE_ID_MAX: usize = 255;

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_ROLE: &str = "admin";
const DEFAULT_ADMIN_PASSWORD: &str = "admin";

/// Who a grant is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    Role(String),
    User(String),
}

/// One rule as stored, for `perm show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: String,
    pub action: String,
    pub grantee: String,
    pub allowed: bool,
}

/// A role as WSO2 stores it: which table and domain.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RoleRef {
    /// `UM_ROLE`, domain PRIMARY.
    Primary(String),
    /// `UM_HYBRID_ROLE`: `Internal/x` stored as `x`; `Application/x` kept whole.
    Hybrid {
        stored: String,
        domain: &'static str,
    },
}

impl RoleRef {
    fn parse(role: &str) -> Result<RoleRef> {
        let (domain, name) = match role.split_once('/') {
            Some((d, n)) => (d.to_ascii_uppercase(), n),
            None => ("PRIMARY".to_string(), role),
        };
        if name.is_empty() {
            return Err(err!(EINVAL, "role name {role:?} is empty"));
        }
        match domain.as_str() {
            "PRIMARY" => Ok(RoleRef::Primary(name.to_string())),
            "INTERNAL" => Ok(RoleRef::Hybrid {
                stored: name.to_string(),
                domain: "INTERNAL",
            }),
            "APPLICATION" => Ok(RoleRef::Hybrid {
                stored: format!("Application/{name}"),
                domain: "APPLICATION",
            }),
            other => Err(err!(
                EINVAL,
                "role {role:?}: domain {other} is not one regfs manages (PRIMARY, Internal, Application)"
            )),
        }
    }

    /// The name and domain stored in `UM_ROLE_PERMISSION`.
    fn permission_name(&self) -> (&str, &'static str) {
        match self {
            RoleRef::Primary(n) => (n, "PRIMARY"),
            RoleRef::Hybrid { stored, domain } => (stored, domain),
        }
    }

    fn display(&self) -> String {
        match self {
            RoleRef::Primary(n) => role_key("PRIMARY", n),
            RoleRef::Hybrid { stored, domain } => match *domain {
                "INTERNAL" => role_key("INTERNAL", stored),
                _ => stored.clone(),
            },
        }
    }
}

/// Carbon's salted password: Base64(SHA-256(UTF-8(password + salt))), salt = Base64(16 random
/// bytes) (`JDBCUserStoreManager.preparePassword`).
pub fn hash_password(password: &str, salt: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{password}{salt}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn new_salt() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| err!(EIO, "no randomness for a salt: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn now() -> NaiveDateTime {
    Local::now().naive_local()
}

enum Backend {
    /// One connection, opened as the SQLite store opens its own (the same driver, VFS and
    /// settings): the CLI and the authorizer's refresher are the only users.
    Sqlite(Mutex<rusqlite::Connection>),
    Server(Pool),
}

pub struct UmDb {
    backend: Backend,
    tenant: i64,
    flavor: Flavor,
}

/// Which of Carbon 4.12.x's user-management columns the database has: a realm Carbon 4.4.x
/// made has none of them, and its `JDBCRealmConstants` write rows without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor {
    /// `UM_USER.UM_USER_ID` (the user's UUID, UniqueID user stores).
    pub user_uuid: bool,
    /// `UM_ROLE.UM_ROLE_UUID`.
    pub role_uuid: bool,
    /// `UM_ROLE.UM_CREATED_TIME` and `UM_LAST_MODIFIED`.
    pub role_times: bool,
    /// `UM_HYBRID_ROLE.UM_UUID`.
    pub hybrid_uuid: bool,
}

impl Flavor {
    /// Carbon 4.12.x's realm, which regfs's own schema follows.
    pub const CURRENT: Flavor = Flavor {
        user_uuid: true,
        role_uuid: true,
        role_times: true,
        hybrid_uuid: true,
    };

    pub fn label(self) -> &'static str {
        if self == Flavor::CURRENT {
            "Carbon 4.12.x style"
        } else if !self.user_uuid && !self.role_uuid && !self.hybrid_uuid {
            "Carbon 4.4.x style"
        } else {
            "mixed"
        }
    }
}

/// The tables regfs reads and writes users, roles and grants in.
pub const UM_TABLES: &[&str] = &[
    "UM_DOMAIN",
    "UM_USER",
    "UM_ROLE",
    "UM_USER_ROLE",
    "UM_HYBRID_ROLE",
    "UM_HYBRID_USER_ROLE",
    "UM_SYSTEM_ROLE",
    "UM_SYSTEM_USER",
    "UM_SYSTEM_USER_ROLE",
    "UM_PERMISSION",
    "UM_ROLE_PERMISSION",
    "UM_USER_PERMISSION",
];

/// What the catalog of a server's UM database says: the [`UM_TABLES`] missing, and the flavor.
async fn probe_server(pool: &Pool) -> Result<(Vec<&'static str>, Flavor)> {
    let mut held = pool.acquire().await?;
    let mut c = held.exec();
    let missing = c.missing_tables(UM_TABLES).await?;
    let columns = c
        .fetch(
            &format!(
                "SELECT UPPER(table_name), UPPER(column_name) FROM information_schema.columns \
                 WHERE table_schema = {} \
                 AND UPPER(table_name) IN ('UM_USER', 'UM_ROLE', 'UM_HYBRID_ROLE')",
                pool.dialect().current_schema()
            ),
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok(format!("{}.{}", r.req_text(0)?, r.req_text(1)?)))
        .collect::<Result<std::collections::HashSet<_>>>()?;
    let has = |c: &str| columns.contains(c);
    Ok((
        missing,
        Flavor {
            user_uuid: has("UM_USER.UM_USER_ID"),
            role_uuid: has("UM_ROLE.UM_ROLE_UUID"),
            role_times: has("UM_ROLE.UM_CREATED_TIME") && has("UM_ROLE.UM_LAST_MODIFIED"),
            hybrid_uuid: has("UM_HYBRID_ROLE.UM_UUID"),
        },
    ))
}

/// Inserts a user as the realm's `ADD_USER_SQL` does; returns its `UM_ID`.
async fn insert_user(
    c: &mut Exec<'_>,
    flavor: Flavor,
    t: i64,
    name: &str,
    hash: &str,
    salt: &str,
) -> Result<i64> {
    let now = now();
    if flavor.user_uuid {
        let uuid = uuid::Uuid::new_v4().to_string();
        c.insert_id(
            "INSERT INTO UM_USER (UM_USER_ID, UM_USER_NAME, UM_USER_PASSWORD, UM_SALT_VALUE, \
             UM_REQUIRE_CHANGE, UM_CHANGED_TIME, UM_TENANT_ID) VALUES (?, ?, ?, ?, FALSE, ?, ?)",
            "UM_ID",
            &args![&uuid, name, hash, salt, now, t],
        )
        .await
    } else {
        c.insert_id(
            "INSERT INTO UM_USER (UM_USER_NAME, UM_USER_PASSWORD, UM_SALT_VALUE, \
             UM_REQUIRE_CHANGE, UM_CHANGED_TIME, UM_TENANT_ID) VALUES (?, ?, ?, FALSE, ?, ?)",
            "UM_ID",
            &args![name, hash, salt, now, t],
        )
        .await
    }
}

/// Inserts a PRIMARY-store role as the realm's `ADD_ROLE_SQL` does; returns its `UM_ID`.
async fn insert_role(c: &mut Exec<'_>, flavor: Flavor, t: i64, name: &str) -> Result<i64> {
    let mut columns = vec!["UM_ROLE_NAME", "UM_TENANT_ID", "UM_SHARED_ROLE"];
    let mut values = vec!["?", "?", "FALSE"];
    let uuid = uuid::Uuid::new_v4().to_string();
    let now = now();
    let mut args = args![name, t].to_vec();
    if flavor.role_uuid {
        columns.push("UM_ROLE_UUID");
        values.push("?");
        args.push(Val::from(uuid.as_str()));
    }
    if flavor.role_times {
        columns.extend(["UM_CREATED_TIME", "UM_LAST_MODIFIED"]);
        values.extend(["?", "?"]);
        args.extend(args![now, now]);
    }
    let sql = format!(
        "INSERT INTO UM_ROLE ({}) VALUES ({})",
        columns.join(", "),
        values.join(", ")
    );
    c.insert_id(&sql, "UM_ID", &args).await
}

/// Inserts an Internal/Application role into UM_HYBRID_ROLE; returns its `UM_ID`.
async fn insert_hybrid_role(c: &mut Exec<'_>, flavor: Flavor, t: i64, name: &str) -> Result<i64> {
    if flavor.hybrid_uuid {
        let uuid = uuid::Uuid::new_v4().to_string();
        c.insert_id(
            "INSERT INTO UM_HYBRID_ROLE (UM_ROLE_NAME, UM_TENANT_ID, UM_UUID) VALUES (?, ?, ?)",
            "UM_ID",
            &args![name, t, &uuid],
        )
        .await
    } else {
        c.insert_id(
            "INSERT INTO UM_HYBRID_ROLE (UM_ROLE_NAME, UM_TENANT_ID) VALUES (?, ?)",
            "UM_ID",
            &args![name, t],
        )
        .await
    }
}

/// How many times a statement outside a transaction is tried again after a transient
/// failure (a serialization failure or deadlock between nodes) before the error stands.
const UM_RETRIES: u32 = 20;

/// Runs `$body` (an expression of type `Result<T>` using `$c: &mut Exec`) on a connection.
/// On a server, sessions are serializable and PostgreSQL may cancel even a read-only statement
/// that sits between concurrent writers (40001): such an attempt runs again after a short,
/// growing pause. The statements run this way are reads or one idempotent update.
macro_rules! on_conn {
    ($self:ident, |$c:ident| async $body:block) => {
        on_conn!($self, |$c| typed(async $body).await)
    };
    ($self:ident, |$c:ident| $body:expr) => {{
        match &$self.backend {
            Backend::Sqlite(m) => {
                let mut guard = m.lock().await;
                let mut exec = Exec::Rus(&mut guard);
                let $c: &mut Exec<'_> = &mut exec;
                $body
            }
            Backend::Server(pool) => {
                crate::retry::run(
                    Retry::new("user management", "query", Bound::Retries(UM_RETRIES)),
                    || {
                        typed(async {
                            let mut held = pool.acquire().await?;
                            let mut exec = held.exec();
                            let $c: &mut Exec<'_> = &mut exec;
                            $body
                        })
                    },
                )
                .await
            }
        }
    }};
}

/// Runs `$body` in one transaction, committed when it returns `Ok`. An early `?` or `return`
/// leaves the enclosing function and rolls the transaction back.
macro_rules! in_tx {
    ($self:ident, |$c:ident| async $body:block) => {
        in_tx!($self, |$c| typed(async $body).await)
    };
    ($self:ident, |$c:ident| $body:expr) => {{
        match &$self.backend {
            Backend::Sqlite(m) => {
                let mut guard = m.lock().await;
                let mut tx = LiteTx::begin(&mut guard)?;
                let value = {
                    let mut exec = Exec::Rus(tx.conn());
                    let $c: &mut Exec<'_> = &mut exec;
                    $body
                }?;
                tx.commit()?;
                Ok(value)
            }
            Backend::Server(pool) => {
                let mut tx = pool.begin().await?;
                let value = {
                    let mut exec = tx.exec();
                    let $c: &mut Exec<'_> = &mut exec;
                    let value = $body?;
                    announce(&mut exec, $self.tenant).await?;
                    value
                };
                tx.commit().await?;
                Ok(value)
            }
        }
    }};
}

/// Tells the change feeds of the nodes on this database that the UM tables changed, in the
/// transaction that changes them (delivered at its commit, not at all if it rolls back):
/// PostgreSQL's `NOTIFY`, on the channel the feeds `LISTEN` to (see `store/server/feed.rs`).
/// A node whose feed listens on another database, and MySQL, see the change at the
/// permission cache's next poll (`permission_refresh_ms`).
async fn announce(c: &mut Exec<'_>, tenant: i64) -> Result<()> {
    if c.dialect() != crate::sql::Dialect::Postgres {
        return Ok(());
    }
    let payload =
        serde_json::json!({ "t": tenant, "n": crate::sql::node_name(), "um": true }).to_string();
    c.execute(
        "SELECT pg_notify(?, ?)",
        &crate::args![crate::store::server::feed::CHANNEL, payload.as_str()],
    )
    .await?;
    Ok(())
}

/// Whether the realm of tenant `t` has been seeded (its domains are there).
async fn seeded(c: &mut Exec<'_>, t: i64) -> Result<bool> {
    let n = scalar(
        c,
        "SELECT COUNT(*) FROM UM_DOMAIN WHERE UM_TENANT_ID = ?",
        &args![t],
    )
    .await?;
    Ok(n.unwrap_or(0) > 0)
}

/// Pins an async block's output to this crate's `Result`, so `?` and `return Ok(..)` inside it
/// need no annotations.
fn typed<T>(
    f: impl std::future::Future<Output = Result<T>>,
) -> impl std::future::Future<Output = Result<T>> {
    f
}

const USER_ID_BY_NAME: &str =
    "SELECT UM_ID FROM UM_USER WHERE lower(UM_USER_NAME) = lower(?) AND UM_TENANT_ID = ?";

async fn scalar(c: &mut Exec<'_>, sql: &str, args: &[Val<'_>]) -> Result<Option<i64>> {
    match c.fetch_opt(sql, args).await? {
        Some(r) => r.int(0),
        None => Ok(None),
    }
}

impl UmDb {
    /// Opens the UM tables in the SQLite database `file`, creating them if they are missing;
    /// not seeded yet (see [`UmDb::seed`], which the wiring runs once every database is
    /// checked).
    pub async fn open(file: &Path, tenant: i64) -> Result<Self> {
        let conn = crate::store::sqlite::connect(file, &crate::store::StoreOptions::default())
            .map_err(|e| {
                err!(
                    EIO,
                    "cannot open the user-management database {}: {}",
                    file.display(),
                    e.message()
                )
            })?;
        conn.execute_batch(UM_SCHEMA)?;
        let db = Self {
            backend: Backend::Sqlite(Mutex::new(conn)),
            tenant,
            flavor: Flavor::CURRENT,
        };
        Ok(db)
    }

    /// Creates the user-management tables on a server where they are missing (`regfs init`,
    /// run by a user who may create tables). A database with Carbon's UM tables (4.4.x or
    /// 4.12.x) is left as it is.
    pub async fn install_server(pool: &Pool) -> Result<()> {
        let (missing, _) = probe_server(pool).await?;
        if missing.is_empty() {
            return Ok(());
        }
        let schema = match pool.dialect() {
            Dialect::MySql => MYSQL_UM_SCHEMA,
            _ => POSTGRES_UM_SCHEMA,
        };
        pool.run_ddl(schema, "the user-management tables").await
    }

    /// Opens the UM tables on a PostgreSQL or MySQL server (Carbon's shared UM database), as
    /// they are: the catalog is only read (a DML-only user is enough), and a realm with no
    /// users yet is seeded as Carbon seeds it. Missing tables are an error that names them
    /// and `regfs init`.
    pub async fn open_server(pool: Pool, tenant: i64) -> Result<Self> {
        let db = Self::check_server(pool, tenant).await?;
        db.seed().await?;
        Ok(db)
    }

    /// [`Self::open_server`] without seeding: reads the catalog only.
    pub async fn check_server(pool: Pool, tenant: i64) -> Result<Self> {
        let (missing, flavor) = probe_server(&pool).await?;
        if !missing.is_empty() {
            return Err(err!(
                ENOENT,
                "the user-management database has no {} table{}: create {} with `regfs init` \
                 (run once, by a database user who may create tables), or load Carbon's \
                 dbscripts",
                missing.join(", "),
                if missing.len() == 1 { "" } else { "s" },
                if missing.len() == 1 { "it" } else { "them" }
            ));
        }
        tracing::info!("user-management tables: {}", flavor.label());
        Ok(Self {
            backend: Backend::Server(pool),
            tenant,
            flavor,
        })
    }

    /// Seeds a realm that has no user-store domains yet as Carbon seeds a new one: the
    /// domains, `admin` (password `admin`) in role `admin`, `Internal/everyone`, the anonymous
    /// user and role, and the root permissions. A seeded realm is left as it is.
    pub async fn seed(&self) -> Result<()> {
        let t = self.tenant;
        let flavor = self.flavor;
        // Most starts find the realm seeded: asked outside a transaction, so that they write
        // nothing (and announce no change to the other nodes, see `announce`).
        if on_conn!(self, |c| async { seeded(c, t).await })? {
            return Ok(());
        }
        in_tx!(self, |c| async {
            if seeded(c, t).await? {
                return Ok(());
            }
            for d in DOMAINS {
                c.execute(
                    "INSERT INTO UM_DOMAIN (UM_DOMAIN_NAME, UM_TENANT_ID) VALUES (?, ?)",
                    &args![d, t],
                )
                .await?;
            }
            let salt = new_salt()?;
            let hash = hash_password(DEFAULT_ADMIN_PASSWORD, &salt);
            let user_id = insert_user(c, flavor, t, ADMIN_USER, &hash, &salt).await?;
            let role_id = insert_role(c, flavor, t, ADMIN_ROLE).await?;
            c.execute(
                "INSERT INTO UM_USER_ROLE (UM_ROLE_ID, UM_USER_ID, UM_TENANT_ID) VALUES (?, ?, ?)",
                &args![role_id, user_id, t],
            )
            .await?;
            insert_hybrid_role(c, flavor, t, "everyone").await?;
            let anon_role = c
                .insert_id(
                    "INSERT INTO UM_SYSTEM_ROLE (UM_ROLE_NAME, UM_TENANT_ID) VALUES ('wso2.anonymous.role', ?)",
                    "UM_ID",
                    &args![t],
                )
                .await?;
            let anon_salt = new_salt()?;
            let anon_hash = hash_password(&uuid::Uuid::new_v4().to_string(), &anon_salt);
            c.execute(
                "INSERT INTO UM_SYSTEM_USER (UM_USER_NAME, UM_USER_PASSWORD, UM_SALT_VALUE, \
                 UM_CHANGED_TIME, UM_TENANT_ID) VALUES ('wso2.anonymous.user', ?, ?, ?, ?)",
                &args![&anon_hash, &anon_salt, now(), t],
            )
            .await?;
            c.execute(
                "INSERT INTO UM_SYSTEM_USER_ROLE (UM_USER_NAME, UM_ROLE_ID, UM_TENANT_ID) \
                 VALUES ('wso2.anonymous.user', ?, ?)",
                &args![anon_role, t],
            )
            .await?;
            // AuthorizationUtils.setRootAuthorizations + addInitialData.
            for action in Action::ALL {
                set_rule(
                    c,
                    t,
                    "/",
                    action.um_action(),
                    &Grantee::Role(ADMIN_ROLE.into()),
                    Some(true),
                )
                .await?;
            }
            set_rule(
                c,
                t,
                "/",
                Action::Get.um_action(),
                &Grantee::Role("Internal/everyone".into()),
                Some(true),
            )
            .await?;
            set_rule(
                c,
                t,
                "/permission",
                "ui.execute",
                &Grantee::Role(ADMIN_ROLE.into()),
                Some(true),
            )
            .await?;
            Ok(())
        })
    }

    /// Changes whenever a user, role, membership or grant is added, removed or flipped.
    pub async fn fingerprint(&self) -> Result<String> {
        // Counts, highest ids and allow sums: Carbon changes grants by delete + insert.
        const PARTS: [&str; 16] = [
            "(SELECT COUNT(*) FROM UM_USER)",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_USER)",
            "(SELECT COUNT(*) FROM UM_ROLE)",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_ROLE)",
            "(SELECT COUNT(*) FROM UM_USER_ROLE)",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_USER_ROLE)",
            "(SELECT COUNT(*) FROM UM_HYBRID_ROLE)",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_HYBRID_ROLE)",
            "(SELECT COUNT(*) FROM UM_HYBRID_USER_ROLE)",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_HYBRID_USER_ROLE)",
            "(SELECT COUNT(*) FROM UM_ROLE_PERMISSION)",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_ROLE_PERMISSION)",
            "(SELECT COALESCE(SUM(UM_IS_ALLOWED), 0) FROM UM_ROLE_PERMISSION)",
            "(SELECT COUNT(*) FROM UM_USER_PERMISSION)",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_USER_PERMISSION)",
            "(SELECT COALESCE(SUM(UM_IS_ALLOWED), 0) FROM UM_USER_PERMISSION)",
        ];
        on_conn!(self, |c| async {
            let d = c.dialect();
            let cols: Vec<String> = PARTS.iter().map(|p| d.int64(p)).collect();
            let sql = format!("SELECT {}", cols.join(", "));
            let row = c
                .fetch_opt(&sql, &[])
                .await?
                .ok_or_else(|| err!(EIO, "fingerprint query returned nothing"))?;
            let mut fp = Vec::with_capacity(PARTS.len());
            for i in 0..PARTS.len() {
                fp.push(row.int(i)?.unwrap_or(0).to_string());
            }
            Ok(fp.join(","))
        })
    }

    /// Every grant of the tenant. Rows whose domain is missing are ignored, as Carbon's tree
    /// loader (an inner join on UM_DOMAIN) ignores them.
    pub async fn load_tree(&self) -> Result<PermissionTree> {
        let t = self.tenant;
        let (roles, users) = on_conn!(self, |c| async {
            let roles = c
                .fetch(
                    "SELECT p.UM_RESOURCE_ID, p.UM_ACTION, rp.UM_ROLE_NAME, rp.UM_IS_ALLOWED, d.UM_DOMAIN_NAME \
                     FROM UM_ROLE_PERMISSION rp JOIN UM_PERMISSION p ON p.UM_ID = rp.UM_PERMISSION_ID \
                     AND p.UM_TENANT_ID = rp.UM_TENANT_ID JOIN UM_DOMAIN d ON d.UM_DOMAIN_ID = rp.UM_DOMAIN_ID \
                     AND d.UM_TENANT_ID = rp.UM_TENANT_ID WHERE rp.UM_TENANT_ID = ?",
                    &args![t],
                )
                .await?;
            let users = c
                .fetch(
                    "SELECT p.UM_RESOURCE_ID, p.UM_ACTION, up.UM_USER_NAME, up.UM_IS_ALLOWED \
                     FROM UM_USER_PERMISSION up JOIN UM_PERMISSION p ON p.UM_ID = up.UM_PERMISSION_ID \
                     AND p.UM_TENANT_ID = up.UM_TENANT_ID WHERE up.UM_TENANT_ID = ?",
                    &args![t],
                )
                .await?;
            Ok((roles, users))
        })?;
        let mut tree = PermissionTree::default();
        for r in roles {
            let (res, action, role, allowed, domain) = (
                r.req_text(0)?,
                r.req_text(1)?,
                r.req_text(2)?,
                r.req_int(3)?,
                r.req_text(4)?,
            );
            if let Some(a) = Action::parse(&action) {
                let key = if domain.eq_ignore_ascii_case("APPLICATION") {
                    role.clone()
                } else {
                    role_key(&domain, &role)
                };
                tree.add_role_rule(&res, a, &key, allowed != 0);
            }
        }
        for r in users {
            let (res, action, user, allowed) = (
                r.req_text(0)?,
                r.req_text(1)?,
                r.req_text(2)?,
                r.req_int(3)?,
            );
            if let Some(a) = Action::parse(&action) {
                tree.add_user_rule(&res, a, &user, allowed != 0);
            }
        }
        Ok(tree)
    }

    /// A user's roles. Users not in UM_USER are anonymous: only `system/wso2.anonymous.role`.
    pub async fn subject(&self, user: &str) -> Result<Subject> {
        let t = self.tenant;
        let found = on_conn!(self, |c| async {
            let Some(uid) = scalar(c, USER_ID_BY_NAME, &args![user, t]).await? else {
                return Ok(None);
            };
            let primary = c
                .fetch(
                    "SELECT r.UM_ROLE_NAME FROM UM_USER_ROLE ur JOIN UM_ROLE r ON r.UM_ID = ur.UM_ROLE_ID \
                     AND r.UM_TENANT_ID = ur.UM_TENANT_ID WHERE ur.UM_USER_ID = ? AND ur.UM_TENANT_ID = ?",
                    &args![uid, t],
                )
                .await?;
            let hybrid = c
                .fetch(
                    "SELECT r.UM_ROLE_NAME FROM UM_HYBRID_USER_ROLE ur JOIN UM_HYBRID_ROLE r ON r.UM_ID = ur.UM_ROLE_ID \
                     AND r.UM_TENANT_ID = ur.UM_TENANT_ID WHERE lower(ur.UM_USER_NAME) = lower(?) AND ur.UM_TENANT_ID = ?",
                    &args![user, t],
                )
                .await?;
            Ok(Some((primary, hybrid)))
        })?;
        let mut roles = std::collections::HashSet::new();
        let Some((primary, hybrid)) = found else {
            roles.insert(crate::policy::ANONYMOUS_ROLE.to_ascii_lowercase());
            return Ok(Subject {
                name: user.into(),
                roles,
                registered: false,
            });
        };
        roles.insert(crate::policy::EVERYONE_ROLE.to_ascii_lowercase());
        for r in primary {
            roles.insert(role_key("PRIMARY", &r.req_text(0)?).to_ascii_lowercase());
        }
        for r in hybrid {
            let r = r.req_text(0)?;
            let key = if r.starts_with("Application/") {
                r
            } else {
                role_key("INTERNAL", &r)
            };
            roles.insert(key.to_ascii_lowercase());
        }
        Ok(Subject {
            name: user.into(),
            roles,
            registered: true,
        })
    }

    pub async fn user_add(&self, name: &str, password: &str) -> Result<()> {
        check_user_name(name)?;
        let salt = new_salt()?;
        let hash = hash_password(password, &salt);
        let t = self.tenant;
        let flavor = self.flavor;
        in_tx!(self, |c| async {
            if scalar(c, USER_ID_BY_NAME, &args![name, t]).await?.is_some() {
                return Err(err!(EEXIST, "user {name} already exists"));
            }
            insert_user(c, flavor, t, name, &hash, &salt)
                .await
                .map_err(|e| exists(e, || format!("user {name} already exists")))?;
            Ok(())
        })
    }

    pub async fn user_passwd(&self, name: &str, password: &str) -> Result<()> {
        let salt = new_salt()?;
        let hash = hash_password(password, &salt);
        let t = self.tenant;
        let changed = on_conn!(self, |c| c
            .execute(
                "UPDATE UM_USER SET UM_USER_PASSWORD = ?, UM_SALT_VALUE = ?, UM_CHANGED_TIME = ? \
                 WHERE lower(UM_USER_NAME) = lower(?) AND UM_TENANT_ID = ?",
                &args![&hash, &salt, now(), name, t],
            )
            .await)?;
        if changed == 0 {
            return Err(err!(ENOENT, "no user {name}"));
        }
        Ok(())
    }

    /// Checks a password against the stored salted hash.
    pub async fn user_verify(&self, name: &str, password: &str) -> Result<bool> {
        let t = self.tenant;
        let row = on_conn!(self, |c| {
            c
            .fetch_opt(
                "SELECT UM_USER_PASSWORD, UM_SALT_VALUE FROM UM_USER WHERE lower(UM_USER_NAME) = lower(?) \
                 AND UM_TENANT_ID = ?",
                &args![name, t],
            )
            .await
        })?;
        Ok(match row {
            Some(r) => {
                let salt = r.text(1)?;
                r.req_text(0)? == hash_password(password, salt.as_deref().unwrap_or(""))
            }
            None => false,
        })
    }

    pub async fn user_delete(&self, name: &str) -> Result<()> {
        if name.eq_ignore_ascii_case(ADMIN_USER) {
            return Err(err!(EPERM, "the admin user cannot be deleted"));
        }
        let t = self.tenant;
        in_tx!(self, |c| async {
            let Some(id) = scalar(c, USER_ID_BY_NAME, &args![name, t]).await? else {
                return Err(err!(ENOENT, "no user {name}"));
            };
            for sql in [
                "DELETE FROM UM_USER_ROLE WHERE UM_USER_ID = ? AND UM_TENANT_ID = ?",
                "DELETE FROM UM_USER WHERE UM_ID = ? AND UM_TENANT_ID = ?",
            ] {
                c.execute(sql, &args![id, t]).await?;
            }
            for sql in [
                "DELETE FROM UM_HYBRID_USER_ROLE WHERE lower(UM_USER_NAME) = lower(?) AND UM_TENANT_ID = ?",
                "DELETE FROM UM_USER_PERMISSION WHERE lower(UM_USER_NAME) = lower(?) AND UM_TENANT_ID = ?",
            ] {
                c.execute(sql, &args![name, t]).await?;
            }
            Ok(())
        })
    }

    pub async fn user_list(&self) -> Result<Vec<String>> {
        let t = self.tenant;
        let rows = on_conn!(self, |c| c
            .fetch(
                "SELECT UM_USER_NAME FROM UM_USER WHERE UM_TENANT_ID = ? ORDER BY UM_USER_NAME",
                &args![t],
            )
            .await)?;
        rows.iter().map(|r| r.req_text(0)).collect()
    }

    pub async fn role_add(&self, role: &str) -> Result<()> {
        let r = RoleRef::parse(role)?;
        let t = self.tenant;
        let flavor = self.flavor;
        in_tx!(self, |c| async {
            if role_id(c, t, &r).await.is_ok() {
                return Err(err!(EEXIST, "role {} already exists", r.display()));
            }
            match &r {
                RoleRef::Primary(name) => insert_role(c, flavor, t, name).await,
                RoleRef::Hybrid { stored, .. } => insert_hybrid_role(c, flavor, t, stored).await,
            }
            .map_err(|e| exists(e, || format!("role {} already exists", r.display())))?;
            Ok(())
        })
    }

    pub async fn role_delete(&self, role: &str) -> Result<()> {
        let r = RoleRef::parse(role)?;
        if r == RoleRef::Primary(ADMIN_ROLE.into())
            || r == (RoleRef::Hybrid {
                stored: "everyone".into(),
                domain: "INTERNAL",
            })
        {
            return Err(err!(
                EPERM,
                "role {} is built in and cannot be deleted",
                r.display()
            ));
        }
        let t = self.tenant;
        in_tx!(self, |c| async {
            let id = role_id(c, t, &r).await?;
            let (perm_name, domain) = r.permission_name();
            c.execute(
                "DELETE FROM UM_ROLE_PERMISSION WHERE UM_ROLE_NAME = ? AND UM_TENANT_ID = ? AND UM_DOMAIN_ID = \
                 (SELECT UM_DOMAIN_ID FROM UM_DOMAIN WHERE UM_TENANT_ID = ? AND UM_DOMAIN_NAME = ?)",
                &args![perm_name, t, t, domain],
            )
            .await?;
            let stmts: [&str; 2] = match r {
                RoleRef::Primary(_) => [
                    "DELETE FROM UM_USER_ROLE WHERE UM_ROLE_ID = ? AND UM_TENANT_ID = ?",
                    "DELETE FROM UM_ROLE WHERE UM_ID = ? AND UM_TENANT_ID = ?",
                ],
                RoleRef::Hybrid { .. } => [
                    "DELETE FROM UM_HYBRID_USER_ROLE WHERE UM_ROLE_ID = ? AND UM_TENANT_ID = ?",
                    "DELETE FROM UM_HYBRID_ROLE WHERE UM_ID = ? AND UM_TENANT_ID = ?",
                ],
            };
            for sql in stmts {
                c.execute(sql, &args![id, t]).await?;
            }
            Ok(())
        })
    }

    /// Adds (`member = true`) or removes a user from a role.
    pub async fn role_membership(&self, role: &str, user: &str, member: bool) -> Result<()> {
        let r = RoleRef::parse(role)?;
        let t = self.tenant;
        in_tx!(self, |c| async {
            let role_id = role_id(c, t, &r).await?;
            let user_id = scalar(c, USER_ID_BY_NAME, &args![user, t])
                .await?
                .ok_or_else(|| err!(ENOENT, "no user {user}"))?;
            let already = |what: &str| format!("{user} {what} role {}", r.display());
            match (&r, member) {
                (RoleRef::Primary(_), true) => {
                    let sql = "SELECT UM_ID FROM UM_USER_ROLE WHERE UM_ROLE_ID = ? AND UM_USER_ID = ? \
                               AND UM_TENANT_ID = ?";
                    if scalar(c, sql, &args![role_id, user_id, t]).await?.is_some() {
                        return Err(err!(EEXIST, "{}", already("already has")));
                    }
                    c.execute(
                        "INSERT INTO UM_USER_ROLE (UM_ROLE_ID, UM_USER_ID, UM_TENANT_ID) VALUES (?, ?, ?)",
                        &args![role_id, user_id, t],
                    )
                    .await
                    .map_err(|e| exists(e, || already("already has")))?;
                }
                (RoleRef::Primary(_), false) => {
                    c.execute(
                        "DELETE FROM UM_USER_ROLE WHERE UM_ROLE_ID = ? AND UM_USER_ID = ? AND UM_TENANT_ID = ?",
                        &args![role_id, user_id, t],
                    )
                    .await?;
                }
                (RoleRef::Hybrid { .. }, true) => {
                    let sql = "SELECT UM_ID FROM UM_HYBRID_USER_ROLE WHERE lower(UM_USER_NAME) = lower(?) \
                               AND UM_ROLE_ID = ? AND UM_TENANT_ID = ?";
                    if scalar(c, sql, &args![user, role_id, t]).await?.is_some() {
                        return Err(err!(EEXIST, "{}", already("already has")));
                    }
                    c.execute(
                        "INSERT INTO UM_HYBRID_USER_ROLE (UM_USER_NAME, UM_ROLE_ID, UM_TENANT_ID, UM_DOMAIN_ID) \
                         VALUES (?, ?, ?, (SELECT UM_DOMAIN_ID FROM UM_DOMAIN WHERE UM_TENANT_ID = ? AND UM_DOMAIN_NAME = 'PRIMARY'))",
                        &args![user, role_id, t, t],
                    )
                    .await
                    .map_err(|e| exists(e, || already("already has")))?;
                }
                (RoleRef::Hybrid { .. }, false) => {
                    c.execute(
                        "DELETE FROM UM_HYBRID_USER_ROLE WHERE lower(UM_USER_NAME) = lower(?) AND UM_ROLE_ID = ? \
                         AND UM_TENANT_ID = ?",
                        &args![user, role_id, t],
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }

    /// Roles with their members.
    pub async fn role_list(&self) -> Result<Vec<(String, Vec<String>)>> {
        let t = self.tenant;
        let (primary, hybrid) = on_conn!(self, |c| async {
            let primary = c
                .fetch(
                    "SELECT r.UM_ROLE_NAME, u.UM_USER_NAME FROM UM_ROLE r LEFT JOIN UM_USER_ROLE ur \
                     ON ur.UM_ROLE_ID = r.UM_ID AND ur.UM_TENANT_ID = r.UM_TENANT_ID LEFT JOIN UM_USER u \
                     ON u.UM_ID = ur.UM_USER_ID WHERE r.UM_TENANT_ID = ? ORDER BY r.UM_ROLE_NAME, u.UM_USER_NAME",
                    &args![t],
                )
                .await?;
            let hybrid = c
                .fetch(
                    "SELECT r.UM_ROLE_NAME, ur.UM_USER_NAME FROM UM_HYBRID_ROLE r LEFT JOIN UM_HYBRID_USER_ROLE ur \
                     ON ur.UM_ROLE_ID = r.UM_ID AND ur.UM_TENANT_ID = r.UM_TENANT_ID WHERE r.UM_TENANT_ID = ? \
                     ORDER BY r.UM_ROLE_NAME, ur.UM_USER_NAME",
                    &args![t],
                )
                .await?;
            Ok((primary, hybrid))
        })?;
        let mut rows = Vec::new();
        for r in &primary {
            rows.push((role_key("PRIMARY", &r.req_text(0)?), r.text(1)?));
        }
        for r in &hybrid {
            let name = r.req_text(0)?;
            let key = if name.starts_with("Application/") {
                name
            } else {
                role_key("INTERNAL", &name)
            };
            rows.push((key, r.text(1)?));
        }
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (role, user) in rows {
            if out.last().map(|(r, _)| r != &role).unwrap_or(true) {
                out.push((role.clone(), Vec::new()));
            }
            if let Some(u) = user {
                out.last_mut().unwrap().1.push(u);
            }
        }
        Ok(out)
    }

    /// Grants (`Some(true)`), denies (`Some(false)`) or revokes (`None`) `action` on the target
    /// path `p`, as Carbon's authorization manager writes it.
    pub async fn set_permission(
        &self,
        p: &str,
        action: Action,
        grantee: &Grantee,
        allowed: Option<bool>,
    ) -> Result<()> {
        let p = path::normalize(p);
        if p.len() > RESOURCE_ID_MAX {
            return Err(err!(
                ENAMETOOLONG,
                "{p} is longer than the {RESOURCE_ID_MAX} characters UM_PERMISSION.UM_RESOURCE_ID holds"
            ));
        }
        let t = self.tenant;
        in_tx!(self, |c| async {
            match grantee {
                Grantee::Role(role) => {
                    let r = RoleRef::parse(role)?;
                    role_id(c, t, &r).await?;
                }
                Grantee::User(user) => {
                    if scalar(c, USER_ID_BY_NAME, &args![user.as_str(), t])
                        .await?
                        .is_none()
                    {
                        return Err(err!(ENOENT, "no user {user}"));
                    }
                }
            }
            set_rule(c, t, &p, action.um_action(), grantee, allowed).await
        })
    }

    /// The paths at or below `p` that hold rules (UM_PERMISSION resource ids), sorted.
    pub async fn rule_paths_below(&self, p: &str) -> Result<Vec<String>> {
        let p = path::normalize(p);
        let t = self.tenant;
        let rows = on_conn!(self, |c| async {
            c.fetch(
                "SELECT DISTINCT UM_RESOURCE_ID FROM UM_PERMISSION WHERE UM_TENANT_ID = ?",
                &args![t],
            )
            .await
        })?;
        let mut out = Vec::new();
        for r in &rows {
            if let Some(id) = r.text(0)?
                && path::is_within(&id, &p)
            {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// The rules stored at exactly `p`.
    pub async fn rules_at(&self, p: &str) -> Result<Vec<Rule>> {
        let p = path::normalize(p);
        let t = self.tenant;
        let (roles, users) = on_conn!(self, |c| async {
            let roles = c
                .fetch(
                    "SELECT p.UM_ACTION, rp.UM_ROLE_NAME, rp.UM_IS_ALLOWED, d.UM_DOMAIN_NAME FROM UM_ROLE_PERMISSION rp \
                     JOIN UM_PERMISSION p ON p.UM_ID = rp.UM_PERMISSION_ID AND p.UM_TENANT_ID = rp.UM_TENANT_ID \
                     LEFT JOIN UM_DOMAIN d ON d.UM_DOMAIN_ID = rp.UM_DOMAIN_ID AND d.UM_TENANT_ID = rp.UM_TENANT_ID \
                     WHERE p.UM_RESOURCE_ID = ? AND p.UM_TENANT_ID = ? ORDER BY p.UM_ACTION, rp.UM_ROLE_NAME",
                    &args![&p, t],
                )
                .await?;
            let users = c
                .fetch(
                    "SELECT p.UM_ACTION, up.UM_USER_NAME, up.UM_IS_ALLOWED FROM UM_USER_PERMISSION up \
                     JOIN UM_PERMISSION p ON p.UM_ID = up.UM_PERMISSION_ID AND p.UM_TENANT_ID = up.UM_TENANT_ID \
                     WHERE p.UM_RESOURCE_ID = ? AND p.UM_TENANT_ID = ? ORDER BY p.UM_ACTION, up.UM_USER_NAME",
                    &args![&p, t],
                )
                .await?;
            Ok((roles, users))
        })?;
        let action_name = |a: &str| {
            Action::parse(a)
                .map(|a| a.to_string())
                .unwrap_or(a.to_string())
        };
        let mut out = Vec::new();
        for r in &roles {
            let (a, role, allowed, domain) =
                (r.req_text(0)?, r.req_text(1)?, r.req_int(2)?, r.text(3)?);
            out.push(Rule {
                path: p.clone(),
                action: action_name(&a),
                grantee: match domain {
                    Some(d) if d.eq_ignore_ascii_case("APPLICATION") => role,
                    Some(d) => role_key(&d, &role),
                    None => format!("{role} (no valid domain: ignored by Carbon)"),
                },
                allowed: allowed != 0,
            });
        }
        for r in &users {
            let (a, user, allowed) = (r.req_text(0)?, r.req_text(1)?, r.req_int(2)?);
            out.push(Rule {
                path: p.clone(),
                action: action_name(&a),
                grantee: format!("user {user}"),
                allowed: allowed != 0,
            });
        }
        Ok(out)
    }

    /// Carbon clears a path's grants when the resource is deleted (`clearResourceAuthorizations`).
    pub async fn clear_path(&self, p: &str) -> Result<()> {
        let p = path::normalize(p);
        let t = self.tenant;
        // The rows that reference the permission go first: MySQL checks foreign keys per row.
        in_tx!(self, |c| async {
            for table in ["UM_ROLE_PERMISSION", "UM_USER_PERMISSION"] {
                let sql = format!(
                    "DELETE FROM {table} WHERE UM_TENANT_ID = ? AND UM_PERMISSION_ID IN \
                     (SELECT UM_ID FROM UM_PERMISSION WHERE UM_RESOURCE_ID = ? AND UM_TENANT_ID = ?)"
                );
                c.execute(&sql, &args![t, &p, t]).await?;
            }
            c.execute(
                "DELETE FROM UM_PERMISSION WHERE UM_RESOURCE_ID = ? AND UM_TENANT_ID = ?",
                &args![&p, t],
            )
            .await?;
            Ok(())
        })
    }
}

async fn role_id(c: &mut Exec<'_>, t: i64, r: &RoleRef) -> Result<i64> {
    let id = match r {
        RoleRef::Primary(name) => {
            scalar(
                c,
                "SELECT UM_ID FROM UM_ROLE WHERE UM_ROLE_NAME = ? AND UM_TENANT_ID = ?",
                &args![name, t],
            )
            .await?
        }
        RoleRef::Hybrid { stored, .. } => {
            scalar(
                c,
                "SELECT UM_ID FROM UM_HYBRID_ROLE WHERE UM_ROLE_NAME = ? AND UM_TENANT_ID = ?",
                &args![stored, t],
            )
            .await?
        }
    };
    id.ok_or_else(|| err!(ENOENT, "no role {}", r.display()))
}

fn check_user_name(name: &str) -> Result<()> {
    // user-mgt.xml's default UsernameJavaRegEx: ^[\S]{3,30}$
    let n = name.chars().count();
    if !(3..=30).contains(&n) || name.chars().any(char::is_whitespace) {
        return Err(err!(
            EINVAL,
            "user name {name:?} must be 3 to 30 characters without spaces (Carbon's default UsernameJavaRegEx)"
        ));
    }
    Ok(())
}

/// A unique-key violation (a concurrent writer won) as EEXIST with `what` as the message.
fn exists(e: Error, what: impl FnOnce() -> String) -> Error {
    if e.errno() == libc::EEXIST {
        err!(EEXIST, "{}", what())
    } else {
        e
    }
}

/// Writes one grant row the way `JDBCAuthorizationManager` does: the UM_PERMISSION row on
/// demand, then delete-and-insert of the role's (or user's) row with the domain id looked up.
async fn set_rule(
    c: &mut Exec<'_>,
    t: i64,
    p: &str,
    um_action: &str,
    grantee: &Grantee,
    allowed: Option<bool>,
) -> Result<()> {
    const PERMISSION_ID: &str = "SELECT UM_ID FROM UM_PERMISSION WHERE UM_RESOURCE_ID = ? \
         AND UM_ACTION = ? AND UM_TENANT_ID = ?";
    let perm_id = match scalar(c, PERMISSION_ID, &args![p, um_action, t]).await? {
        Some(id) => id,
        None => {
            c.insert_id(
                "INSERT INTO UM_PERMISSION (UM_RESOURCE_ID, UM_ACTION, UM_TENANT_ID) VALUES (?, ?, ?)",
                "UM_ID",
                &args![p, um_action, t],
            )
            .await?
        }
    };
    match grantee {
        Grantee::Role(role) => {
            let r = RoleRef::parse(role)?;
            let (name, domain) = r.permission_name();
            c.execute(
                "DELETE FROM UM_ROLE_PERMISSION WHERE UM_PERMISSION_ID = ? AND UM_ROLE_NAME = ? \
                 AND UM_TENANT_ID = ? AND UM_DOMAIN_ID = (SELECT UM_DOMAIN_ID FROM UM_DOMAIN \
                 WHERE UM_TENANT_ID = ? AND UM_DOMAIN_NAME = ?)",
                &args![perm_id, name, t, t, domain],
            )
            .await?;
            if let Some(allowed) = allowed {
                c.execute(
                    "INSERT INTO UM_ROLE_PERMISSION (UM_PERMISSION_ID, UM_ROLE_NAME, UM_IS_ALLOWED, \
                     UM_TENANT_ID, UM_DOMAIN_ID) VALUES (?, ?, ?, ?, (SELECT UM_DOMAIN_ID FROM UM_DOMAIN \
                     WHERE UM_TENANT_ID = ? AND UM_DOMAIN_NAME = ?))",
                    &args![perm_id, name, allowed as i64, t, t, domain],
                )
                .await?;
            }
        }
        Grantee::User(user) => {
            c.execute(
                "DELETE FROM UM_USER_PERMISSION WHERE UM_PERMISSION_ID = ? AND lower(UM_USER_NAME) = lower(?) \
                 AND UM_TENANT_ID = ?",
                &args![perm_id, user.as_str(), t],
            )
            .await?;
            if let Some(allowed) = allowed {
                c.execute(
                    "INSERT INTO UM_USER_PERMISSION (UM_PERMISSION_ID, UM_USER_NAME, UM_IS_ALLOWED, UM_TENANT_ID) \
                     VALUES (?, ?, ?, ?)",
                    &args![perm_id, user.as_str(), allowed as i64, t],
                )
                .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_matches_carbon() {
        // From a real Carbon 4.4 database: admin/admin with this salt.
        assert_eq!(
            hash_password("admin", "aebqtOpVD+GXPIP2Lnk/iw=="),
            "+2byvSbbD0X+T/nqrk2TJkqTX3it20X7VF7nKOumAhE="
        );
        assert_eq!(new_salt().unwrap().len(), 24);
    }

    #[tokio::test]
    async fn seeded_like_carbon_and_grants_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let db = UmDb::open(&dir.path().join("um.db"), -1234).await.unwrap();
        db.seed().await.unwrap();
        crate::conformance::um_round_trip(&db).await;
    }

    /// A change refused inside its transaction (an early return from `in_tx!`) leaves no
    /// transaction, and so no write lock on the shared database, behind.
    #[tokio::test]
    async fn a_refused_change_on_sqlite_leaves_no_lock_behind() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("um.db");
        let db = UmDb::open(&file, -1234).await.unwrap();
        db.user_add("ursula", "pw-1").await.unwrap();
        let e = db.user_add("ursula", "pw-2").await.unwrap_err();
        assert_eq!(e.errno(), libc::EEXIST, "{e}");
        // Another writer gets the lock at once (no busy timeout: it would fail, not wait).
        let other = rusqlite::Connection::open(&file).unwrap();
        other.execute_batch("BEGIN IMMEDIATE; ROLLBACK").unwrap();
        assert!(db.user_verify("ursula", "pw-1").await.unwrap());
        assert!(!db.user_verify("ursula", "pw-2").await.unwrap());
    }
}
