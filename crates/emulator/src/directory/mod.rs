//! The emulated organisation, in memory: users (live and deleted), groups with their direct
//! members, org units, and the indexes that make every lookup and page cheap. It owns the write
//! rules (what an admin may change, and what that does to etags and memberships) shared by the
//! HTTP write methods, the library API, the generator and the fixture loader. It does no I/O.
//!
//! One concept per file: `users`, `groups`, `members` (memberships), `org_units`, and `ids`
//! (ids, versions, etags); this file holds the directory itself, its key lookups and sizes.

mod groups;
mod ids;
mod members;
mod org_units;
mod users;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::error::ApiError;

pub use groups::Group;
use ids::{b64_of, base36};
pub use ids::{hash_str, mix64};
pub use members::{Member, MemberType, Resolved, Role};
pub use org_units::{normalise_ou_path, OrgUnit};
pub use users::User;

/// An immutable id shared by indexes, members and the reverse membership index.
pub type Id = Arc<str>;

/// The timestamp Google sends for "never logged in".
pub const NEVER: &str = "1970-01-01T00:00:00.000Z";

/// RFC 3339 with milliseconds and `Z`, the Directory API's timestamp format.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Sizes of the directory, for logs, tests and `/_emulator/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DirectoryStats {
    pub users: usize,
    pub deleted_users: usize,
    pub suspended_users: usize,
    pub archived_users: usize,
    pub groups: usize,
    /// Direct members of every kind, summed over groups.
    pub memberships: usize,
    pub org_units: usize,
    /// The fewest members.list requests that list every group's direct members: pages of
    /// 200, at least one per group (benchmarks compare a sync's request count with it).
    pub member_pages: usize,
}

#[derive(Debug)]
pub struct Directory {
    pub customer_id: String,
    pub domain: String,
    seed: u64,
    pub(crate) etag_prefix: String,
    version_counter: u64,
    id_counter: u64,
    login_cursor: u64,
    pub(crate) users: BTreeMap<Id, User>,
    pub(crate) deleted: BTreeMap<Id, User>,
    /// Lower-case primary emails and aliases of live users.
    user_keys: HashMap<String, Id>,
    /// Lower-case primary email → id, the order of `orderBy=email`.
    pub(crate) users_by_email: BTreeMap<String, Id>,
    pub(crate) groups: BTreeMap<Id, Group>,
    group_keys: HashMap<String, Id>,
    pub(crate) groups_by_email: BTreeMap<String, Id>,
    /// Member id → the groups it is a direct member of.
    member_of: HashMap<Id, BTreeSet<Id>>,
    externals: HashMap<Id, String>,
    external_keys: HashMap<String, Id>,
    /// Lower-case path → unit; the root `/` is implicit.
    pub(crate) org_units: BTreeMap<String, OrgUnit>,
}

fn lower(text: &str) -> String {
    text.to_ascii_lowercase()
}

fn domain_of(email: &str) -> &str {
    email.rsplit_once('@').map_or("", |(_, domain)| domain)
}

fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !email.contains(char::is_whitespace)
        }
        None => false,
    }
}

impl Directory {
    /// An empty directory of one customer and primary domain.
    pub fn new(customer_id: &str, domain: &str, seed: u64) -> Self {
        let seed_hash = mix64(seed ^ 0x5eed);
        Self {
            customer_id: customer_id.to_owned(),
            domain: lower(domain),
            seed,
            etag_prefix: b64_of(seed_hash, mix64(seed_hash), 27),
            version_counter: 0,
            id_counter: 0,
            login_cursor: 0,
            users: BTreeMap::new(),
            deleted: BTreeMap::new(),
            user_keys: HashMap::new(),
            users_by_email: BTreeMap::new(),
            groups: BTreeMap::new(),
            group_keys: HashMap::new(),
            groups_by_email: BTreeMap::new(),
            member_of: HashMap::new(),
            externals: HashMap::new(),
            external_keys: HashMap::new(),
            org_units: BTreeMap::new(),
        }
    }

    /// A customer id such as `C0abc1234`, derived from a seed.
    pub fn customer_id_for_seed(seed: u64) -> String {
        format!("C0{}", base36(mix64(seed ^ 0xC057) % 36u64.pow(7), 7))
    }

    /// A live user by id, primary email or alias (case-insensitive).
    pub fn resolve_user(&self, key: &str) -> Option<Id> {
        if let Some((id, _)) = self.users.get_key_value(key) {
            return Some(id.clone());
        }
        self.user_keys.get(&lower(key)).cloned()
    }

    /// A group by id, email or alias (case-insensitive).
    pub fn resolve_group(&self, key: &str) -> Option<Id> {
        if let Some((id, _)) = self.groups.get_key_value(key) {
            return Some(id.clone());
        }
        self.group_keys.get(&lower(key)).cloned()
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    pub fn is_admin(&self, key: &str) -> bool {
        self.resolve_user(key)
            .and_then(|id| self.users.get(&id))
            .is_some_and(User::is_admin)
    }

    pub fn stats(&self) -> DirectoryStats {
        DirectoryStats {
            users: self.users.len(),
            deleted_users: self.deleted.len(),
            suspended_users: self.users.values().filter(|u| u.flag("suspended")).count(),
            archived_users: self.users.values().filter(|u| u.flag("archived")).count(),
            groups: self.groups.len(),
            memberships: self.groups.values().map(|g| g.members.len()).sum(),
            org_units: self.org_units.len(),
            member_pages: self
                .groups
                .values()
                .map(|g| g.members.len().div_ceil(200).max(1))
                .sum(),
        }
    }

    fn email_taken(&self, email: &str) -> bool {
        let key = lower(email);
        self.user_keys.contains_key(&key) || self.group_keys.contains_key(&key)
    }

    fn check_new_email(&self, email: &str, field: &str) -> Result<(), ApiError> {
        if !valid_email(email) {
            return Err(ApiError::invalid_input(field));
        }
        if domain_of(&lower(email)) != self.domain {
            return Err(ApiError::new(400, "notFound", "Domain not found."));
        }
        if self.email_taken(email) {
            return Err(ApiError::duplicate("Entity already exists."));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn dir() -> Directory {
        let mut dir = Directory::new("C0abc1234", "example.com", 1);
        dir.add_org_unit("/Sales/EMEA", "").unwrap();
        dir
    }

    fn user(email: &str) -> Value {
        json!({"primaryEmail": email, "name": {"givenName": "A", "familyName": "B"}})
    }

    #[test]
    fn insert_resolve_rename_delete_user() {
        let mut dir = dir();
        let now = Utc::now();
        let id = dir.insert_user(&user("a@example.com"), now).unwrap();
        assert_eq!(
            dir.resolve_user("A%40example.com".replace("%40", "@").as_str()),
            Some(id.clone())
        );
        assert!(dir.insert_user(&user("A@example.com"), now).is_err());
        let before = dir.etag(&id, dir.users[&id].version);
        dir.update_user(
            "a@example.com",
            &json!({"primaryEmail": "b@example.com", "aliases": ["a2@example.com"]}),
            now,
        )
        .unwrap();
        assert_ne!(before, dir.etag(&id, dir.users[&id].version));
        // As Google does, the old primary address stays as an alias.
        assert_eq!(dir.resolve_user("a@example.com"), Some(id.clone()));
        assert_eq!(dir.resolve_user("A2@example.com"), Some(id.clone()));
        dir.delete_user(&id, now).unwrap();
        assert!(dir.resolve_user("b@example.com").is_none());
        assert!(dir.deleted[&id].body().contains_key("deletionTime"));
    }

    #[test]
    fn members_and_cycles() {
        let mut dir = dir();
        let now = Utc::now();
        let u = dir.insert_user(&user("u@example.com"), now).unwrap();
        let g1 = dir
            .insert_group(&json!({"email": "g1@example.com"}))
            .unwrap();
        let g2 = dir
            .insert_group(&json!({"email": "g2@example.com"}))
            .unwrap();
        dir.insert_member(&g1, &json!({"email": "g2@example.com"}))
            .unwrap();
        dir.insert_member(&g2, &json!({"email": "u@example.com", "role": "OWNER"}))
            .unwrap();
        assert!(dir.has_member(&g1, &u));
        let err = dir
            .insert_member(&g2, &json!({"email": "g1@example.com"}))
            .unwrap_err();
        assert_eq!(err.status, 412);
        let ext = dir
            .insert_member(&g1, &json!({"email": "x@partner.example.net"}))
            .unwrap();
        assert_eq!(dir.groups[&g1].direct_users, 1);
        assert_eq!(
            dir.insert_member(&g1, &json!({"email": "x@partner.example.net"}))
                .unwrap_err()
                .status,
            409
        );
        dir.delete_user(&u, now).unwrap();
        assert!(!dir.has_member(&g1, &u));
        dir.delete_member(&g1, "x@partner.example.net").unwrap();
        assert!(!dir.groups[&g1].members.contains_key(&ext));
        dir.delete_group(&g2).unwrap();
        assert!(dir.groups[&g1].members.is_empty());
    }
}
