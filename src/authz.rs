//! The permission cache a running mount keeps: one [`PermissionTree`] per tenant and each
//! user's [`Subject`], loaded from the `UM_*` tables and dropped when they change. The policy
//! itself is [`crate::policy`]'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::err;
use crate::error::Result;
use crate::path::TargetPath;
pub use crate::policy::{
    ANONYMOUS_ROLE, Action, Decision, EVERYONE_ROLE, PermissionTree, SYSTEM_USER, Subject,
};
use crate::um::UmDb;

/// Authorizes registry operations for a running mount: one permission tree per tenant, loaded
/// whole from the UM database, plus each user's roles; both dropped when the UM tables change
/// (checked every `refresh` by a background task, and on demand).
pub struct Authorizer {
    um: Arc<UmDb>,
    admin_user: String,
    state: Mutex<Cached>,
    /// How many times the cache was dropped for a change in the UM tables.
    epoch: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Cached {
    /// The state of the UM tables every cached value was read in.
    fingerprint: Option<String>,
    tree: Option<Arc<PermissionTree>>,
    subjects: HashMap<String, Arc<Subject>>,
}

impl Authorizer {
    pub fn new(um: Arc<UmDb>, admin_user: impl Into<String>) -> Self {
        Self {
            um,
            admin_user: admin_user.into(),
            state: Mutex::new(Cached::default()),
            epoch: Default::default(),
        }
    }

    /// Drops every cached tree and subject if the UM tables changed since they were loaded.
    pub async fn refresh(&self) -> Result<()> {
        let fp = self.um.fingerprint().await?;
        let mut st = self.state.lock();
        if st.fingerprint.as_deref() != Some(fp.as_str()) {
            self.reset(&mut st, fp);
        }
        Ok(())
    }

    /// Moves each time a change in the UM tables drops the cache: decisions cached elsewhere
    /// (the kernel's lookups) are out of date from then on.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Keeps the cache in step with the database: polls every `every`.
    pub fn spawn_refresher(self: &Arc<Self>, every: Duration) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                if let Err(e) = me.refresh().await {
                    warn!("cannot check the user-management tables for changes: {e}");
                }
            }
        });
    }

    async fn tree(&self) -> Result<Arc<PermissionTree>> {
        if let Some(t) = self.state.lock().tree.clone() {
            return Ok(t);
        }
        let (tree, fp) = self.consistent(self.um.load_tree()).await?;
        let tree = Arc::new(tree);
        if let Some(mut st) = self.adopt(fp) {
            st.tree = Some(tree.clone());
        }
        Ok(tree)
    }

    async fn subject(&self, user: &str) -> Result<Arc<Subject>> {
        let key = user.to_ascii_lowercase();
        if let Some(s) = self.state.lock().subjects.get(&key).cloned() {
            return Ok(s);
        }
        let (s, fp) = self.consistent(self.um.subject(user)).await?;
        let s = Arc::new(s);
        if let Some(mut st) = self.adopt(fp) {
            st.subjects.insert(key, s.clone());
        }
        Ok(s)
    }

    /// Runs `load` between two fingerprints of the UM tables: the value read is known to be
    /// the state of that fingerprint only if both agree (`None` otherwise: nothing to cache).
    /// The fingerprint is not monotonic (a revoke takes the counts back to before the grant),
    /// so a value cached without the exact state it was read in could outlive a grant and its
    /// revoke that both fell between two polls (seen: a revoked grant kept working).
    async fn consistent<T>(
        &self,
        load: impl std::future::Future<Output = Result<T>>,
    ) -> Result<(T, Option<String>)> {
        let before = self.um.fingerprint().await?;
        let value = load.await?;
        let after = self.um.fingerprint().await?;
        Ok((value, (before == after).then_some(after)))
    }

    /// The cache, ready to take a value read in the UM state `fp`: emptied first if it holds
    /// another state's values (this load saw a change before the poll did). `None` if the
    /// value must not be cached.
    fn adopt(&self, fp: Option<String>) -> Option<parking_lot::MutexGuard<'_, Cached>> {
        let fp = fp?;
        let mut st = self.state.lock();
        if st.fingerprint.as_deref() != Some(fp.as_str()) {
            self.reset(&mut st, fp);
        }
        Some(st)
    }

    /// Drops every cached value: the UM tables are now in state `fp`.
    fn reset(&self, st: &mut Cached, fp: String) {
        if st.fingerprint.is_some() {
            info!("user-management tables changed: permission cache dropped");
            self.epoch
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        *st = Cached {
            fingerprint: Some(fp),
            ..Default::default()
        };
    }

    /// The decision with its reasoning, for `regfs perm check`.
    pub async fn explain(
        &self,
        user: &str,
        target: &TargetPath,
        action: Action,
    ) -> Result<Decision> {
        let target = target.as_str();
        if user == SYSTEM_USER {
            return Ok(Decision {
                allowed: true,
                steps: vec![format!("{SYSTEM_USER} is always allowed")],
            });
        }
        if user.eq_ignore_ascii_case(&self.admin_user) {
            return Ok(Decision {
                allowed: true,
                steps: vec![format!(
                    "{user} is the realm's admin user: always allowed (Carbon 4.12 SkipAuthzCheckForSuperAdmin)"
                )],
            });
        }
        let subject = self.subject(user).await?;
        let tree = self.tree().await?;
        let mut d = tree.decide(&subject, target, action);
        if !subject.registered {
            d.steps.insert(
                0,
                format!("{user} is not a registry user: treated as the anonymous user"),
            );
        }
        Ok(d)
    }

    /// EACCES unless `user` may do `action` on the target path `target`; `shown` is the path the
    /// caller used (for the log line).
    pub async fn check(
        &self,
        user: &str,
        target: &TargetPath,
        shown: &str,
        action: Action,
    ) -> Result<()> {
        let d = self.explain(user, target, action).await?;
        if d.allowed {
            debug!(user, path = shown, %action, "allowed");
            return Ok(());
        }
        Err(err!(
            EACCES,
            "registry denies {action} on {shown} to user {user} ({})",
            d.steps.last().cloned().unwrap_or_default()
        ))
    }

    /// Removes the grants of a deleted target path (a database write only if it has any).
    pub async fn clear_path(&self, target: &TargetPath) -> Result<()> {
        if !self.tree().await?.nodes.contains_key(target.as_str()) {
            return Ok(());
        }
        self.um.clear_path(target.as_str()).await
    }

    /// Whether `user` may get `target` (listing filters).
    pub async fn can(&self, user: &str, target: &TargetPath, action: Action) -> Result<bool> {
        Ok(self.explain(user, target, action).await?.allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grant and its revoke that both fall between two polls of the UM tables: a tree
    /// loaded while the grant stood must not stay cached after the revoke, although the
    /// revoke takes the tables' counts and highest ids back to what they were before.
    #[tokio::test]
    async fn a_grant_revoked_between_two_polls_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let um = Arc::new(UmDb::open(&dir.path().join("um.db"), -1234).await.unwrap());
        um.seed().await.unwrap();
        um.user_add("bob", "pw-bob-1234").await.unwrap();
        um.role_add("ops").await.unwrap();
        um.role_membership("ops", "bob", true).await.unwrap();
        let authz = Authorizer::new(um.clone(), "admin");
        authz.refresh().await.unwrap();
        let ops = crate::um::Grantee::Role("ops".into());
        let add = |allowed| um.set_permission("/proj", Action::Add, &ops, allowed);
        // Polled with nothing cached yet; the grant comes, and is read while it stands (the
        // poll that would notice it comes only after the revoke).
        authz.refresh().await.unwrap();
        add(Some(true)).await.unwrap();
        assert!(
            authz
                .can("bob", &TargetPath::new("/proj/f"), Action::Add)
                .await
                .unwrap()
        );
        add(None).await.unwrap();
        authz.refresh().await.unwrap();
        assert!(
            !authz
                .can("bob", &TargetPath::new("/proj/f"), Action::Add)
                .await
                .unwrap(),
            "the revoked grant is still cached"
        );
    }
}
