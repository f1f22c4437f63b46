//! The user-management database (`UM_*` tables, WSO2's layout): users, roles and permission
//! grants, as Carbon's `JDBCUserStoreManager` and `JDBCAuthorizationManager` store them.
//! SQLite for now, like the embedded default's shared database where these tables live.

use std::path::Path;

use base64::Engine;
use chrono::{Local, NaiveDateTime};
use sha2::Digest;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use tokio::sync::Mutex;

use crate::authz::{Action, PermissionTree, Subject, role_key};
use crate::err;
use crate::error::{Error, Result};
use crate::path;

const UM_SCHEMA: &str = include_str!("store/sqlite_um_schema.sql");

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

pub struct UmDb {
    conn: Mutex<SqliteConnection>,
    tenant: i64,
}

impl UmDb {
    /// Opens the UM tables in the SQLite database `file`, creating and seeding them as Carbon
    /// seeds a fresh realm if they are missing.
    pub async fn open(file: &Path, tenant: i64) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true);
        let mut conn = SqliteConnection::connect_with(&opts).await.map_err(|e| {
            err!(
                EIO,
                "cannot open the user-management database {}: {e}",
                file.display()
            )
        })?;
        sqlx::raw_sql(UM_SCHEMA).execute(&mut conn).await?;
        let db = Self {
            conn: Mutex::new(conn),
            tenant,
        };
        db.seed().await?;
        Ok(db)
    }

    async fn seed(&self) -> Result<()> {
        let t = self.tenant;
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let seeded: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM UM_DOMAIN WHERE UM_TENANT_ID = ?")
                .bind(t)
                .fetch_one(&mut *tx)
                .await?;
        if seeded > 0 {
            return Ok(());
        }
        for d in DOMAINS {
            sqlx::query("INSERT INTO UM_DOMAIN (UM_DOMAIN_NAME, UM_TENANT_ID) VALUES (?, ?)")
                .bind(d)
                .bind(t)
                .execute(&mut *tx)
                .await?;
        }
        let salt = new_salt()?;
        let user_id: i64 = sqlx::query_scalar(
            "INSERT INTO UM_USER (UM_USER_ID, UM_USER_NAME, UM_USER_PASSWORD, UM_SALT_VALUE, \
             UM_REQUIRE_CHANGE, UM_CHANGED_TIME, UM_TENANT_ID) VALUES (?, ?, ?, ?, FALSE, ?, ?) \
             RETURNING UM_ID",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(ADMIN_USER)
        .bind(hash_password(DEFAULT_ADMIN_PASSWORD, &salt))
        .bind(&salt)
        .bind(now())
        .bind(t)
        .fetch_one(&mut *tx)
        .await?;
        let role_id: i64 = sqlx::query_scalar(
            "INSERT INTO UM_ROLE (UM_ROLE_UUID, UM_ROLE_NAME, UM_TENANT_ID, UM_SHARED_ROLE, \
             UM_CREATED_TIME, UM_LAST_MODIFIED) VALUES (?, ?, ?, FALSE, ?, ?) RETURNING UM_ID",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(ADMIN_ROLE)
        .bind(t)
        .bind(now())
        .bind(now())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO UM_USER_ROLE (UM_ROLE_ID, UM_USER_ID, UM_TENANT_ID) VALUES (?, ?, ?)",
        )
        .bind(role_id)
        .bind(user_id)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO UM_HYBRID_ROLE (UM_ROLE_NAME, UM_TENANT_ID, UM_UUID) VALUES ('everyone', ?, ?)",
        )
        .bind(t)
        .bind(uuid::Uuid::new_v4().to_string())
        .execute(&mut *tx)
        .await?;
        let anon_role: i64 = sqlx::query_scalar(
            "INSERT INTO UM_SYSTEM_ROLE (UM_ROLE_NAME, UM_TENANT_ID) VALUES ('wso2.anonymous.role', ?) \
             RETURNING UM_ID",
        )
        .bind(t)
        .fetch_one(&mut *tx)
        .await?;
        let anon_salt = new_salt()?;
        sqlx::query(
            "INSERT INTO UM_SYSTEM_USER (UM_USER_NAME, UM_USER_PASSWORD, UM_SALT_VALUE, \
             UM_CHANGED_TIME, UM_TENANT_ID) VALUES ('wso2.anonymous.user', ?, ?, ?, ?)",
        )
        .bind(hash_password(&uuid::Uuid::new_v4().to_string(), &anon_salt))
        .bind(&anon_salt)
        .bind(now())
        .bind(t)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO UM_SYSTEM_USER_ROLE (UM_USER_NAME, UM_ROLE_ID, UM_TENANT_ID) \
             VALUES ('wso2.anonymous.user', ?, ?)",
        )
        .bind(anon_role)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        // AuthorizationUtils.setRootAuthorizations + addInitialData.
        for action in Action::ALL {
            set_rule(
                &mut tx,
                t,
                "/",
                action.um_action(),
                &Grantee::Role(ADMIN_ROLE.into()),
                Some(true),
            )
            .await?;
        }
        set_rule(
            &mut tx,
            t,
            "/",
            Action::Get.um_action(),
            &Grantee::Role("Internal/everyone".into()),
            Some(true),
        )
        .await?;
        set_rule(
            &mut tx,
            t,
            "/permission",
            "ui.execute",
            &Grantee::Role(ADMIN_ROLE.into()),
            Some(true),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes whenever a user, role, membership or grant is added, removed or flipped.
    pub async fn fingerprint(&self) -> Result<String> {
        let mut conn = self.conn.lock().await;
        // Counts, highest ids and allow sums: Carbon changes grants by delete + insert.
        let fp: String = sqlx::query_scalar(concat!(
            "SELECT ",
            "(SELECT COUNT(*) FROM UM_USER) || ',' || ",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_USER) || ',' || ",
            "(SELECT COUNT(*) FROM UM_ROLE) || ',' || ",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_ROLE) || ',' || ",
            "(SELECT COUNT(*) FROM UM_USER_ROLE) || ',' || ",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_USER_ROLE) || ',' || ",
            "(SELECT COUNT(*) FROM UM_HYBRID_ROLE) || ',' || ",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_HYBRID_ROLE) || ',' || ",
            "(SELECT COUNT(*) FROM UM_HYBRID_USER_ROLE) || ',' || ",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_HYBRID_USER_ROLE) || ',' || ",
            "(SELECT COUNT(*) FROM UM_ROLE_PERMISSION) || ',' || ",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_ROLE_PERMISSION) || ',' || ",
            "(SELECT COALESCE(SUM(UM_IS_ALLOWED), 0) FROM UM_ROLE_PERMISSION) || ',' || ",
            "(SELECT COUNT(*) FROM UM_USER_PERMISSION) || ',' || ",
            "(SELECT COALESCE(MAX(UM_ID), 0) FROM UM_USER_PERMISSION) || ',' || ",
            "(SELECT COALESCE(SUM(UM_IS_ALLOWED), 0) FROM UM_USER_PERMISSION)",
        ))
        .fetch_one(&mut *conn)
        .await?;
        Ok(fp)
    }

    /// Every grant of the tenant. Rows whose domain is missing are ignored, as Carbon's tree
    /// loader (an inner join on UM_DOMAIN) ignores them.
    pub async fn load_tree(&self) -> Result<PermissionTree> {
        let mut conn = self.conn.lock().await;
        let roles: Vec<(String, String, String, i64, String)> = sqlx::query_as(
            "SELECT p.UM_RESOURCE_ID, p.UM_ACTION, rp.UM_ROLE_NAME, rp.UM_IS_ALLOWED, d.UM_DOMAIN_NAME \
             FROM UM_ROLE_PERMISSION rp JOIN UM_PERMISSION p ON p.UM_ID = rp.UM_PERMISSION_ID \
             AND p.UM_TENANT_ID = rp.UM_TENANT_ID JOIN UM_DOMAIN d ON d.UM_DOMAIN_ID = rp.UM_DOMAIN_ID \
             AND d.UM_TENANT_ID = rp.UM_TENANT_ID WHERE rp.UM_TENANT_ID = ?",
        )
        .bind(self.tenant)
        .fetch_all(&mut *conn)
        .await?;
        let users: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT p.UM_RESOURCE_ID, p.UM_ACTION, up.UM_USER_NAME, up.UM_IS_ALLOWED \
             FROM UM_USER_PERMISSION up JOIN UM_PERMISSION p ON p.UM_ID = up.UM_PERMISSION_ID \
             AND p.UM_TENANT_ID = up.UM_TENANT_ID WHERE up.UM_TENANT_ID = ?",
        )
        .bind(self.tenant)
        .fetch_all(&mut *conn)
        .await?;
        let mut tree = PermissionTree::default();
        for (res, action, role, allowed, domain) in roles {
            if let Some(a) = Action::parse(&action) {
                let key = if domain.eq_ignore_ascii_case("APPLICATION") {
                    role.clone()
                } else {
                    role_key(&domain, &role)
                };
                tree.add_role_rule(&res, a, &key, allowed != 0);
            }
        }
        for (res, action, user, allowed) in users {
            if let Some(a) = Action::parse(&action) {
                tree.add_user_rule(&res, a, &user, allowed != 0);
            }
        }
        Ok(tree)
    }

    /// A user's roles. Users not in UM_USER are anonymous: only `system/wso2.anonymous.role`.
    pub async fn subject(&self, user: &str) -> Result<Subject> {
        let mut conn = self.conn.lock().await;
        let t = self.tenant;
        let registered: Option<i64> = sqlx::query_scalar(
            "SELECT UM_ID FROM UM_USER WHERE lower(UM_USER_NAME) = lower(?) AND UM_TENANT_ID = ?",
        )
        .bind(user)
        .bind(t)
        .fetch_optional(&mut *conn)
        .await?;
        let mut roles = std::collections::HashSet::new();
        let Some(uid) = registered else {
            roles.insert(crate::authz::ANONYMOUS_ROLE.to_ascii_lowercase());
            return Ok(Subject {
                name: user.into(),
                roles,
                registered: false,
            });
        };
        roles.insert(crate::authz::EVERYONE_ROLE.to_ascii_lowercase());
        let primary: Vec<String> = sqlx::query_scalar(
            "SELECT r.UM_ROLE_NAME FROM UM_USER_ROLE ur JOIN UM_ROLE r ON r.UM_ID = ur.UM_ROLE_ID \
             AND r.UM_TENANT_ID = ur.UM_TENANT_ID WHERE ur.UM_USER_ID = ? AND ur.UM_TENANT_ID = ?",
        )
        .bind(uid)
        .bind(t)
        .fetch_all(&mut *conn)
        .await?;
        for r in primary {
            roles.insert(role_key("PRIMARY", &r).to_ascii_lowercase());
        }
        let hybrid: Vec<String> = sqlx::query_scalar(
            "SELECT r.UM_ROLE_NAME FROM UM_HYBRID_USER_ROLE ur JOIN UM_HYBRID_ROLE r ON r.UM_ID = ur.UM_ROLE_ID \
             AND r.UM_TENANT_ID = ur.UM_TENANT_ID WHERE lower(ur.UM_USER_NAME) = lower(?) AND ur.UM_TENANT_ID = ?",
        )
        .bind(user)
        .bind(t)
        .fetch_all(&mut *conn)
        .await?;
        for r in hybrid {
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
        let mut conn = self.conn.lock().await;
        let r = sqlx::query(
            "INSERT INTO UM_USER (UM_USER_ID, UM_USER_NAME, UM_USER_PASSWORD, UM_SALT_VALUE, \
             UM_REQUIRE_CHANGE, UM_CHANGED_TIME, UM_TENANT_ID) VALUES (?, ?, ?, ?, FALSE, ?, ?)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(name)
        .bind(hash_password(password, &salt))
        .bind(&salt)
        .bind(now())
        .bind(self.tenant)
        .execute(&mut *conn)
        .await;
        unique(r, || format!("user {name} already exists"))
    }

    pub async fn user_passwd(&self, name: &str, password: &str) -> Result<()> {
        let salt = new_salt()?;
        let mut conn = self.conn.lock().await;
        let r = sqlx::query(
            "UPDATE UM_USER SET UM_USER_PASSWORD = ?, UM_SALT_VALUE = ?, UM_CHANGED_TIME = ? \
             WHERE lower(UM_USER_NAME) = lower(?) AND UM_TENANT_ID = ?",
        )
        .bind(hash_password(password, &salt))
        .bind(&salt)
        .bind(now())
        .bind(name)
        .bind(self.tenant)
        .execute(&mut *conn)
        .await?;
        if r.rows_affected() == 0 {
            return Err(err!(ENOENT, "no user {name}"));
        }
        Ok(())
    }

    /// Checks a password against the stored salted hash.
    pub async fn user_verify(&self, name: &str, password: &str) -> Result<bool> {
        let mut conn = self.conn.lock().await;
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT UM_USER_PASSWORD, UM_SALT_VALUE FROM UM_USER WHERE lower(UM_USER_NAME) = lower(?) \
             AND UM_TENANT_ID = ?",
        )
        .bind(name)
        .bind(self.tenant)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(match row {
            Some((hash, salt)) => hash == hash_password(password, salt.as_deref().unwrap_or("")),
            None => false,
        })
    }

    pub async fn user_delete(&self, name: &str) -> Result<()> {
        if name.eq_ignore_ascii_case(ADMIN_USER) {
            return Err(err!(EPERM, "the admin user cannot be deleted"));
        }
        let t = self.tenant;
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT UM_ID FROM UM_USER WHERE lower(UM_USER_NAME) = lower(?) AND UM_TENANT_ID = ?",
        )
        .bind(name)
        .bind(t)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Err(err!(ENOENT, "no user {name}"));
        };
        for sql in [
            "DELETE FROM UM_USER_ROLE WHERE UM_USER_ID = ?1 AND UM_TENANT_ID = ?2",
            "DELETE FROM UM_USER WHERE UM_ID = ?1 AND UM_TENANT_ID = ?2",
        ] {
            sqlx::query(sql).bind(id).bind(t).execute(&mut *tx).await?;
        }
        for sql in [
            "DELETE FROM UM_HYBRID_USER_ROLE WHERE lower(UM_USER_NAME) = lower(?1) AND UM_TENANT_ID = ?2",
            "DELETE FROM UM_USER_PERMISSION WHERE lower(UM_USER_NAME) = lower(?1) AND UM_TENANT_ID = ?2",
        ] {
            sqlx::query(sql)
                .bind(name)
                .bind(t)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn user_list(&self) -> Result<Vec<String>> {
        let mut conn = self.conn.lock().await;
        Ok(sqlx::query_scalar(
            "SELECT UM_USER_NAME FROM UM_USER WHERE UM_TENANT_ID = ? ORDER BY UM_USER_NAME",
        )
        .bind(self.tenant)
        .fetch_all(&mut *conn)
        .await?)
    }

    pub async fn role_add(&self, role: &str) -> Result<()> {
        let r = RoleRef::parse(role)?;
        let mut conn = self.conn.lock().await;
        let result = match &r {
            RoleRef::Primary(name) => sqlx::query(
                "INSERT INTO UM_ROLE (UM_ROLE_UUID, UM_ROLE_NAME, UM_TENANT_ID, UM_SHARED_ROLE, \
                     UM_CREATED_TIME, UM_LAST_MODIFIED) VALUES (?, ?, ?, FALSE, ?, ?)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(name)
            .bind(self.tenant)
            .bind(now())
            .bind(now())
            .execute(&mut *conn)
            .await,
            RoleRef::Hybrid { stored, .. } => sqlx::query(
                "INSERT INTO UM_HYBRID_ROLE (UM_ROLE_NAME, UM_TENANT_ID, UM_UUID) VALUES (?, ?, ?)",
            )
            .bind(stored)
            .bind(self.tenant)
            .bind(uuid::Uuid::new_v4().to_string())
            .execute(&mut *conn)
            .await,
        };
        unique(result, || format!("role {} already exists", r.display()))
    }

    async fn role_id(conn: &mut SqliteConnection, t: i64, r: &RoleRef) -> Result<i64> {
        let id: Option<i64> =
            match r {
                RoleRef::Primary(name) => {
                    sqlx::query_scalar(
                        "SELECT UM_ID FROM UM_ROLE WHERE UM_ROLE_NAME = ? AND UM_TENANT_ID = ?",
                    )
                    .bind(name)
                    .bind(t)
                    .fetch_optional(&mut *conn)
                    .await?
                }
                RoleRef::Hybrid { stored, .. } => sqlx::query_scalar(
                    "SELECT UM_ID FROM UM_HYBRID_ROLE WHERE UM_ROLE_NAME = ? AND UM_TENANT_ID = ?",
                )
                .bind(stored)
                .bind(t)
                .fetch_optional(&mut *conn)
                .await?,
            };
        id.ok_or_else(|| err!(ENOENT, "no role {}", r.display()))
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
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let id = Self::role_id(&mut tx, t, &r).await?;
        let (perm_name, domain) = r.permission_name();
        sqlx::query(
            "DELETE FROM UM_ROLE_PERMISSION WHERE UM_ROLE_NAME = ? AND UM_TENANT_ID = ? AND UM_DOMAIN_ID = \
             (SELECT UM_DOMAIN_ID FROM UM_DOMAIN WHERE UM_TENANT_ID = ? AND UM_DOMAIN_NAME = ?)",
        )
        .bind(perm_name)
        .bind(t)
        .bind(t)
        .bind(domain)
        .execute(&mut *tx)
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
            sqlx::query(sql).bind(id).bind(t).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds (`member = true`) or removes a user from a role.
    pub async fn role_membership(&self, role: &str, user: &str, member: bool) -> Result<()> {
        let r = RoleRef::parse(role)?;
        let t = self.tenant;
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let role_id = Self::role_id(&mut tx, t, &r).await?;
        let user_id: Option<i64> = sqlx::query_scalar(
            "SELECT UM_ID FROM UM_USER WHERE lower(UM_USER_NAME) = lower(?) AND UM_TENANT_ID = ?",
        )
        .bind(user)
        .bind(t)
        .fetch_optional(&mut *tx)
        .await?;
        let user_id = user_id.ok_or_else(|| err!(ENOENT, "no user {user}"))?;
        let result = match (&r, member) {
            (RoleRef::Primary(_), true) => {
                sqlx::query("INSERT INTO UM_USER_ROLE (UM_ROLE_ID, UM_USER_ID, UM_TENANT_ID) VALUES (?, ?, ?)")
                    .bind(role_id)
                    .bind(user_id)
                    .bind(t)
                    .execute(&mut *tx)
                    .await
            }
            (RoleRef::Primary(_), false) => {
                sqlx::query("DELETE FROM UM_USER_ROLE WHERE UM_ROLE_ID = ? AND UM_USER_ID = ? AND UM_TENANT_ID = ?")
                    .bind(role_id)
                    .bind(user_id)
                    .bind(t)
                    .execute(&mut *tx)
                    .await
            }
            (RoleRef::Hybrid { .. }, true) => {
                sqlx::query(
                    "INSERT INTO UM_HYBRID_USER_ROLE (UM_USER_NAME, UM_ROLE_ID, UM_TENANT_ID, UM_DOMAIN_ID) \
                     VALUES (?, ?, ?, (SELECT UM_DOMAIN_ID FROM UM_DOMAIN WHERE UM_TENANT_ID = ? AND UM_DOMAIN_NAME = 'PRIMARY'))",
                )
                .bind(user)
                .bind(role_id)
                .bind(t)
                .bind(t)
                .execute(&mut *tx)
                .await
            }
            (RoleRef::Hybrid { .. }, false) => {
                sqlx::query(
                    "DELETE FROM UM_HYBRID_USER_ROLE WHERE lower(UM_USER_NAME) = lower(?) AND UM_ROLE_ID = ? \
                     AND UM_TENANT_ID = ?",
                )
                .bind(user)
                .bind(role_id)
                .bind(t)
                .execute(&mut *tx)
                .await
            }
        };
        unique(result, || {
            format!("{user} already has role {}", r.display())
        })?;
        tx.commit().await?;
        Ok(())
    }

    /// Roles with their members.
    pub async fn role_list(&self) -> Result<Vec<(String, Vec<String>)>> {
        let mut conn = self.conn.lock().await;
        let t = self.tenant;
        let mut out = Vec::new();
        let primary: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT r.UM_ROLE_NAME, u.UM_USER_NAME FROM UM_ROLE r LEFT JOIN UM_USER_ROLE ur \
             ON ur.UM_ROLE_ID = r.UM_ID AND ur.UM_TENANT_ID = r.UM_TENANT_ID LEFT JOIN UM_USER u \
             ON u.UM_ID = ur.UM_USER_ID WHERE r.UM_TENANT_ID = ? ORDER BY r.UM_ROLE_NAME, u.UM_USER_NAME",
        )
        .bind(t)
        .fetch_all(&mut *conn)
        .await?;
        let hybrid: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT r.UM_ROLE_NAME, ur.UM_USER_NAME FROM UM_HYBRID_ROLE r LEFT JOIN UM_HYBRID_USER_ROLE ur \
             ON ur.UM_ROLE_ID = r.UM_ID AND ur.UM_TENANT_ID = r.UM_TENANT_ID WHERE r.UM_TENANT_ID = ? \
             ORDER BY r.UM_ROLE_NAME, ur.UM_USER_NAME",
        )
        .bind(t)
        .fetch_all(&mut *conn)
        .await?;
        let rows = primary
            .into_iter()
            .map(|(r, u)| (role_key("PRIMARY", &r), u))
            .chain(hybrid.into_iter().map(|(r, u)| {
                let key = if r.starts_with("Application/") {
                    r
                } else {
                    role_key("INTERNAL", &r)
                };
                (key, u)
            }));
        for (role, user) in rows {
            if out
                .last()
                .map(|(r, _): &(String, Vec<String>)| r != &role)
                .unwrap_or(true)
            {
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
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        match grantee {
            Grantee::Role(role) => {
                let r = RoleRef::parse(role)?;
                Self::role_id(&mut tx, t, &r).await?;
            }
            Grantee::User(user) => {
                let known: Option<i64> = sqlx::query_scalar(
                    "SELECT UM_ID FROM UM_USER WHERE lower(UM_USER_NAME) = lower(?) AND UM_TENANT_ID = ?",
                )
                .bind(user)
                .bind(t)
                .fetch_optional(&mut *tx)
                .await?;
                if known.is_none() {
                    return Err(err!(ENOENT, "no user {user}"));
                }
            }
        }
        set_rule(&mut tx, t, &p, action.um_action(), grantee, allowed).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The rules stored at exactly `p`.
    pub async fn rules_at(&self, p: &str) -> Result<Vec<Rule>> {
        let p = path::normalize(p);
        let mut conn = self.conn.lock().await;
        let roles: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
            "SELECT p.UM_ACTION, rp.UM_ROLE_NAME, rp.UM_IS_ALLOWED, d.UM_DOMAIN_NAME FROM UM_ROLE_PERMISSION rp \
             JOIN UM_PERMISSION p ON p.UM_ID = rp.UM_PERMISSION_ID AND p.UM_TENANT_ID = rp.UM_TENANT_ID \
             LEFT JOIN UM_DOMAIN d ON d.UM_DOMAIN_ID = rp.UM_DOMAIN_ID AND d.UM_TENANT_ID = rp.UM_TENANT_ID \
             WHERE p.UM_RESOURCE_ID = ? AND p.UM_TENANT_ID = ? ORDER BY p.UM_ACTION, rp.UM_ROLE_NAME",
        )
        .bind(&p)
        .bind(self.tenant)
        .fetch_all(&mut *conn)
        .await?;
        let users: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT p.UM_ACTION, up.UM_USER_NAME, up.UM_IS_ALLOWED FROM UM_USER_PERMISSION up \
             JOIN UM_PERMISSION p ON p.UM_ID = up.UM_PERMISSION_ID AND p.UM_TENANT_ID = up.UM_TENANT_ID \
             WHERE p.UM_RESOURCE_ID = ? AND p.UM_TENANT_ID = ? ORDER BY p.UM_ACTION, up.UM_USER_NAME",
        )
        .bind(&p)
        .bind(self.tenant)
        .fetch_all(&mut *conn)
        .await?;
        let action_name = |a: &str| {
            Action::parse(a)
                .map(|a| a.to_string())
                .unwrap_or(a.to_string())
        };
        let mut out: Vec<Rule> = roles
            .into_iter()
            .map(|(a, role, allowed, domain)| Rule {
                path: p.clone(),
                action: action_name(&a),
                grantee: match domain {
                    Some(d) if d.eq_ignore_ascii_case("APPLICATION") => role,
                    Some(d) => role_key(&d, &role),
                    None => format!("{role} (no valid domain: ignored by Carbon)"),
                },
                allowed: allowed != 0,
            })
            .collect();
        out.extend(users.into_iter().map(|(a, user, allowed)| Rule {
            path: p.clone(),
            action: action_name(&a),
            grantee: format!("user {user}"),
            allowed: allowed != 0,
        }));
        Ok(out)
    }

    /// Carbon clears a path's grants when the resource is deleted (`clearResourceAuthorizations`).
    pub async fn clear_path(&self, p: &str) -> Result<()> {
        let mut conn = self.conn.lock().await;
        sqlx::query("DELETE FROM UM_PERMISSION WHERE UM_RESOURCE_ID = ? AND UM_TENANT_ID = ?")
            .bind(path::normalize(p))
            .bind(self.tenant)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
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

fn unique(
    r: std::result::Result<sqlx::sqlite::SqliteQueryResult, sqlx::Error>,
    what: impl FnOnce() -> String,
) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(err!(EEXIST, "{}", what())),
        Err(e) => Err(Error::from(e)),
    }
}

/// Writes one grant row the way `JDBCAuthorizationManager` does: the UM_PERMISSION row on
/// demand, then delete-and-insert of the role's (or user's) row with the domain id looked up.
async fn set_rule(
    conn: &mut SqliteConnection,
    t: i64,
    p: &str,
    um_action: &str,
    grantee: &Grantee,
    allowed: Option<bool>,
) -> Result<()> {
    sqlx::query(
        "INSERT OR IGNORE INTO UM_PERMISSION (UM_RESOURCE_ID, UM_ACTION, UM_TENANT_ID) VALUES (?, ?, ?)",
    )
    .bind(p)
    .bind(um_action)
    .bind(t)
    .execute(&mut *conn)
    .await?;
    let perm_id: i64 = sqlx::query_scalar(
        "SELECT UM_ID FROM UM_PERMISSION WHERE UM_RESOURCE_ID = ? AND UM_ACTION = ? AND UM_TENANT_ID = ?",
    )
    .bind(p)
    .bind(um_action)
    .bind(t)
    .fetch_one(&mut *conn)
    .await?;
    match grantee {
        Grantee::Role(role) => {
            let r = RoleRef::parse(role)?;
            let (name, domain) = r.permission_name();
            sqlx::query(
                "DELETE FROM UM_ROLE_PERMISSION WHERE UM_PERMISSION_ID = ? AND UM_ROLE_NAME = ? \
                 AND UM_TENANT_ID = ? AND UM_DOMAIN_ID = (SELECT UM_DOMAIN_ID FROM UM_DOMAIN \
                 WHERE UM_TENANT_ID = ? AND UM_DOMAIN_NAME = ?)",
            )
            .bind(perm_id)
            .bind(name)
            .bind(t)
            .bind(t)
            .bind(domain)
            .execute(&mut *conn)
            .await?;
            if let Some(allowed) = allowed {
                sqlx::query(
                    "INSERT INTO UM_ROLE_PERMISSION (UM_PERMISSION_ID, UM_ROLE_NAME, UM_IS_ALLOWED, \
                     UM_TENANT_ID, UM_DOMAIN_ID) VALUES (?, ?, ?, ?, (SELECT UM_DOMAIN_ID FROM UM_DOMAIN \
                     WHERE UM_TENANT_ID = ? AND UM_DOMAIN_NAME = ?))",
                )
                .bind(perm_id)
                .bind(name)
                .bind(allowed as i64)
                .bind(t)
                .bind(t)
                .bind(domain)
                .execute(&mut *conn)
                .await?;
            }
        }
        Grantee::User(user) => {
            sqlx::query(
                "DELETE FROM UM_USER_PERMISSION WHERE UM_PERMISSION_ID = ? AND lower(UM_USER_NAME) = lower(?) \
                 AND UM_TENANT_ID = ?",
            )
            .bind(perm_id)
            .bind(user)
            .bind(t)
            .execute(&mut *conn)
            .await?;
            if let Some(allowed) = allowed {
                sqlx::query(
                    "INSERT INTO UM_USER_PERMISSION (UM_PERMISSION_ID, UM_USER_NAME, UM_IS_ALLOWED, UM_TENANT_ID) \
                     VALUES (?, ?, ?, ?)",
                )
                .bind(perm_id)
                .bind(user)
                .bind(allowed as i64)
                .bind(t)
                .execute(&mut *conn)
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
        assert!(db.user_verify("admin", "admin").await.unwrap());
        let tree = db.load_tree().await.unwrap();
        let everyone = db.subject("nobody-registered").await.unwrap();
        assert!(!everyone.registered);
        assert!(!tree.decide(&everyone, "/x", Action::Get).allowed);
        db.user_add("alice", "secret1").await.unwrap();
        assert_eq!(
            db.user_add("alice", "x").await.unwrap_err().errno(),
            libc::EEXIST
        );
        let alice = db.subject("alice").await.unwrap();
        assert!(tree.decide(&alice, "/x", Action::Get).allowed);
        assert!(!tree.decide(&alice, "/x", Action::Add).allowed);
        db.role_add("devs").await.unwrap();
        db.role_membership("devs", "alice", true).await.unwrap();
        let fp = db.fingerprint().await.unwrap();
        db.set_permission("/x", Action::Add, &Grantee::Role("devs".into()), Some(true))
            .await
            .unwrap();
        assert_ne!(db.fingerprint().await.unwrap(), fp);
        let tree = db.load_tree().await.unwrap();
        let alice = db.subject("alice").await.unwrap();
        assert!(tree.decide(&alice, "/x/y", Action::Add).allowed);
        let fp = db.fingerprint().await.unwrap();
        db.set_permission(
            "/x",
            Action::Add,
            &Grantee::Role("devs".into()),
            Some(false),
        )
        .await
        .unwrap();
        assert_ne!(db.fingerprint().await.unwrap(), fp);
        assert!(
            !db.load_tree()
                .await
                .unwrap()
                .decide(&alice, "/x/y", Action::Add)
                .allowed
        );
        let rules = db.rules_at("/x").await.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].grantee, "PRIMARY/devs");
        assert!(!rules[0].allowed);
    }
}
