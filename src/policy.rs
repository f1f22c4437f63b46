//! WSO2's registry authorization policy: the permission tree and how a decision is reached
//! (`JDBCAuthorizationManager` / `PermissionTree` in Carbon 4.12.x). Pure: no database, no
//! cache; [`crate::um`] loads a tree and subjects from the `UM_*` tables, and
//! [`crate::authz`] keeps them for a running mount.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::path;

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

#[cfg(test)]
mod tests {
    use super::*;

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
