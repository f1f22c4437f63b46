//! WSO2's registry authorization: the permission tree and how a decision is reached
//! (`JDBCAuthorizationManager` / `PermissionTree` in Carbon 4.12.x), plus the per-tenant cache
//! that a running mount keeps and refreshes when the `UM_*` tables change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::err;
use crate::error::Result;
use crate::path;
use crate::um::UmDb;

/// The user Carbon's own system code runs as: always allowed.
pub const SYSTEM_USER: &str = "wso2.system.user";
/// The role every registered (non-anonymous) user has.
pub const EVERYONE_ROLE: &str = "Internal/everyone";
/// The only role an anonymous caller has.
pub const ANONYMOUS_ROLE: &str = "system/wso2.anonymous.role";

/// A registry action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Get,
    Add,
    Delete,
    Authorize,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Get, Action::Add, Action::Delete, Action::Authorize];

    /// The `UM_ACTION` value Carbon stores (`ActionConstants`).
    pub fn um_action(self) -> &'static str {
        match self {
            Action::Get => "http://www.wso2.org/projects/registry/actions/get",
            Action::Add => "http://www.wso2.org/projects/registry/actions/add",
            Action::Delete => "http://www.wso2.org/projects/registry/actions/delete",
            Action::Authorize => "authorize",
        }
    }

    /// Parses what users type and what Carbon stores (`PermissionTreeUtil.actionToPermission`).
    pub fn parse(s: &str) -> Option<Action> {
        match s.to_ascii_lowercase().as_str() {
            "get" | "read" | "http://www.wso2.org/projects/registry/actions/get" => {
                Some(Action::Get)
            }
            "add" | "write" | "put" | "http://www.wso2.org/projects/registry/actions/add" => {
                Some(Action::Add)
            }
            "delete" | "http://www.wso2.org/projects/registry/actions/delete" => {
                Some(Action::Delete)
            }
            "authorize" => Some(Action::Authorize),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Get => "get",
            Action::Add => "add",
            Action::Delete => "delete",
            Action::Authorize => "authorize",
        })
    }
}

/// A role with its user-store domain, written `DOMAIN/name` (`PRIMARY/admin`,
/// `Internal/everyone`). Compared case-insensitively, as Carbon does.
pub fn role_key(domain: &str, name: &str) -> String {
    let domain = match domain.to_ascii_uppercase().as_str() {
        "INTERNAL" => "Internal".to_string(),
        "SYSTEM" => "system".to_string(),
        "APPLICATION" => "Application".to_string(),
        other => other.to_string(),
    };
    format!("{domain}/{name}")
}

/// The rules at one path.
#[derive(Debug, Default, Clone)]
pub struct Node {
    /// action → role (lower-cased key) → allowed?
    pub roles: HashMap<Action, BTreeMap<String, bool>>,
    /// action → user (lower-cased) → allowed?
    pub users: HashMap<Action, BTreeMap<String, bool>>,
}

/// Every rule of one tenant, by path (`UM_RESOURCE_ID`).
#[derive(Debug, Default, Clone)]
pub struct PermissionTree {
    pub nodes: HashMap<String, Node>,
}

/// What a user is, for authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub name: String,
    /// Lower-cased role keys.
    pub roles: HashSet<String>,
    pub registered: bool,
}

/// A decision with the reasoning behind it (for logs and `regfs perm check`).
#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    pub steps: Vec<String>,
}

/// The paths from `/` down to `p`.
fn ancestry(p: &str) -> Vec<String> {
    let mut out = vec!["/".to_string()];
    let mut cur = String::new();
    for seg in p.split('/').filter(|s| !s.is_empty()) {
        cur.push('/');
        cur.push_str(seg);
        out.push(cur.clone());
    }
    out
}

impl PermissionTree {
    pub fn add_role_rule(&mut self, p: &str, action: Action, role: &str, allowed: bool) {
        let node = self.nodes.entry(path::normalize(p)).or_default();
        let rules = node.roles.entry(action).or_default();
        let key = role.to_ascii_lowercase();
        // Within one node deny beats allow.
        let v = rules.entry(key).or_insert(allowed);
        *v = *v && allowed;
    }

    pub fn add_user_rule(&mut self, p: &str, action: Action, user: &str, allowed: bool) {
        let node = self.nodes.entry(path::normalize(p)).or_default();
        let rules = node.users.entry(action).or_default();
        let v = rules.entry(user.to_ascii_lowercase()).or_insert(allowed);
        *v = *v && allowed;
    }

    /// Carbon's decision for `subject` doing `action` on `p` (a target path):
    /// 1. user-level rules, the deepest explicit one wins;
    /// 2. otherwise walk from the root: at each node add the roles allowed the action and remove
    ///    the denied ones; allowed if the subject has any role left.
    pub fn decide(&self, subject: &Subject, p: &str, action: Action) -> Decision {
        let mut steps = Vec::new();
        let chain = ancestry(p);
        let user = subject.name.to_ascii_lowercase();
        let mut user_rule = None;
        for node_path in &chain {
            if let Some(v) = self
                .nodes
                .get(node_path)
                .and_then(|n| n.users.get(&action))
                .and_then(|r| r.get(&user))
            {
                steps.push(format!(
                    "{node_path}: user rule {} for {}",
                    if *v { "allows" } else { "denies" },
                    subject.name
                ));
                user_rule = Some(*v);
            }
        }
        if let Some(allowed) = user_rule {
            steps.push("the deepest user rule decides".to_string());
            return Decision { allowed, steps };
        }
        let mut allowed_roles: BTreeMap<String, ()> = BTreeMap::new();
        for node_path in &chain {
            let Some(rules) = self.nodes.get(node_path).and_then(|n| n.roles.get(&action)) else {
                continue;
            };
            let mut added = Vec::new();
            let mut removed = Vec::new();
            for (role, allow) in rules {
                if *allow {
                    allowed_roles.insert(role.clone(), ());
                    added.push(role.as_str());
                } else {
                    allowed_roles.remove(role);
                    removed.push(role.as_str());
                }
            }
            let mut line = format!("{node_path}:");
            if !added.is_empty() {
                line.push_str(&format!(" allows {}", added.join(", ")));
            }
            if !removed.is_empty() {
                line.push_str(&format!(" denies {}", removed.join(", ")));
            }
            steps.push(line);
        }
        let matching: Vec<&String> = allowed_roles
            .keys()
            .filter(|r| subject.roles.contains(*r))
            .collect();
        let allowed = !matching.is_empty();
        let mut roles: Vec<&String> = subject.roles.iter().collect();
        roles.sort();
        steps.push(format!(
            "{}'s roles: {}",
            subject.name,
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if allowed {
            steps.push(format!(
                "allowed through {}",
                matching
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        } else {
            steps.push(format!(
                "no role of {} is allowed {action} here",
                subject.name
            ));
        }
        Decision { allowed, steps }
    }
}

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
    pub async fn explain(&self, user: &str, target: &str, action: Action) -> Result<Decision> {
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
    pub async fn check(&self, user: &str, target: &str, shown: &str, action: Action) -> Result<()> {
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
    pub async fn clear_path(&self, target: &str) -> Result<()> {
        if !self.tree().await?.nodes.contains_key(target) {
            return Ok(());
        }
        self.um.clear_path(target).await
    }

    /// Whether `user` may get `target` (listing filters).
    pub async fn can(&self, user: &str, target: &str, action: Action) -> Result<bool> {
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
        assert!(authz.can("bob", "/proj/f", Action::Add).await.unwrap());
        add(None).await.unwrap();
        authz.refresh().await.unwrap();
        assert!(
            !authz.can("bob", "/proj/f", Action::Add).await.unwrap(),
            "the revoked grant is still cached"
        );
    }

    fn subject(name: &str, roles: &[&str]) -> Subject {
        Subject {
            name: name.into(),
            roles: roles.iter().map(|r| r.to_ascii_lowercase()).collect(),
            registered: true,
        }
    }

    #[test]
    fn inheritance_deny_and_deeper_override() {
        let mut t = PermissionTree::default();
        t.add_role_rule("/", Action::Get, "Internal/everyone", true);
        t.add_role_rule("/a", Action::Get, "PRIMARY/devs", true);
        t.add_role_rule("/a/secret", Action::Get, "Internal/everyone", false);
        t.add_role_rule("/a/secret/open", Action::Get, "Internal/everyone", true);
        let alice = subject("alice", &["Internal/everyone"]);
        let dev = subject("dev", &["Internal/everyone", "PRIMARY/devs"]);
        assert!(t.decide(&alice, "/a/b", Action::Get).allowed);
        assert!(!t.decide(&alice, "/a/secret/x", Action::Get).allowed);
        // Deny on one role does not block a user who has another allowed role.
        assert!(t.decide(&dev, "/a/secret/x", Action::Get).allowed);
        assert!(t.decide(&alice, "/a/secret/open/y", Action::Get).allowed);
        assert!(!t.decide(&alice, "/a/b", Action::Add).allowed);
    }

    #[test]
    fn deny_wins_within_a_node_and_user_rules_come_first() {
        let mut t = PermissionTree::default();
        t.add_role_rule("/x", Action::Add, "PRIMARY/r", true);
        t.add_role_rule("/x", Action::Add, "PRIMARY/r", false);
        let u = subject("u", &["PRIMARY/r"]);
        assert!(!t.decide(&u, "/x/y", Action::Add).allowed);
        t.add_user_rule("/x", Action::Add, "u", true);
        assert!(t.decide(&u, "/x/y", Action::Add).allowed);
        t.add_user_rule("/x/y", Action::Add, "U", false);
        assert!(!t.decide(&u, "/x/y/z", Action::Add).allowed);
    }

    #[test]
    fn actions_parse_both_spellings() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.um_action()), Some(a));
            assert_eq!(Action::parse(&a.to_string()), Some(a));
        }
        assert_eq!(Action::parse("read"), Some(Action::Get));
        assert_eq!(Action::parse("bogus"), None);
    }
}
