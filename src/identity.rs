//! Who is calling: the kernel gives a uid; the registry knows users by name. A local account maps
//! to the registry user of the same name unless the configured map says otherwise; root maps to
//! the admin user. A uid with no local account maps to `uid-<n>`,
//! which no registry user has, so it is the anonymous user: it gets only what
//! `system/wso2.anonymous.role` is granted (nothing, by default). See SEMANTICS.md.

use std::collections::HashMap;

use parking_lot::Mutex;

#[derive(Debug, Default)]
pub struct Identity {
    /// Explicit overrides: local account name, or numeric uid, → registry user.
    map: HashMap<String, String>,
    admin: String,
    cache: Mutex<HashMap<u32, String>>,
}

impl Identity {
    pub fn new(admin: impl Into<String>, map: HashMap<String, String>) -> Self {
        Self {
            map,
            admin: admin.into(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The registry user name for a local uid.
    pub fn registry_user(&self, uid: u32) -> String {
        if let Some(name) = self.cache.lock().get(&uid) {
            return name.clone();
        }
        if let Some(mapped) = self.map.get(&uid.to_string()) {
            self.cache.lock().insert(uid, mapped.clone());
            return mapped.clone();
        }
        let account = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name);
        let name = match account {
            Some(account) => match self.map.get(&account) {
                Some(mapped) => mapped.clone(),
                None if uid == 0 => self.admin.clone(),
                None => account,
            },
            None if uid == 0 => self.admin.clone(),
            None => format!("uid-{uid}"),
        };
        self.cache.lock().insert(uid, name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_admin_and_unknown_uids_get_a_placeholder() {
        let id = Identity::new("admin", HashMap::new());
        assert_eq!(id.registry_user(0), "admin");
        assert_eq!(id.registry_user(4_000_000), "uid-4000000");
    }

    #[test]
    fn uids_without_accounts_can_be_mapped() {
        let id = Identity::new(
            "admin",
            HashMap::from([("4000001".to_string(), "alice".to_string())]),
        );
        assert_eq!(id.registry_user(4_000_001), "alice");
    }

    #[test]
    fn the_map_overrides_account_names() {
        let id = Identity::new(
            "admin",
            HashMap::from([("root".to_string(), "ops".to_string())]),
        );
        assert_eq!(id.registry_user(0), "ops");
    }
}
