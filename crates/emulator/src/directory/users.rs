//! Users: the compact user record (its JSON body and the decoded fields lookups need), the
//! rules of users.insert/update/patch/delete/undelete/makeAdmin (read-only fields, email
//! uniqueness, what a change does to etags and memberships), the user indexes, and simulated
//! logins.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::*;
use crate::error::ApiError;

/// A user. The body is kept as compact JSON (memory: 100k users must fit comfortably) with
/// the fields that lookups, queries and pages need decoded beside it.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Id,
    /// Bumped on every change; the etag is derived from it.
    pub version: u64,
    /// Every Google field except `kind`, `id`, `etag` and `customSchemas`, as a JSON object.
    core: Box<str>,
    /// `customSchemas` as a JSON object, when the user has any.
    custom: Option<Box<str>>,
    primary: Box<str>,
    aliases: Box<[Box<str>]>,
    given: Box<str>,
    family: Box<str>,
    full: Box<str>,
    org_unit: Box<str>,
    manager: Option<Box<str>>,
    flags: u8,
}

pub(super) const SUSPENDED: u8 = 1;
pub(super) const ARCHIVED: u8 = 2;
pub(super) const ADMIN: u8 = 4;
pub(super) const DELEGATED: u8 = 8;

impl User {
    /// Encodes a body (every field except `kind`, `id`, `etag`).
    pub fn new(id: Id, version: u64, mut body: Map<String, Value>) -> Self {
        let text =
            |v: Option<&Value>| -> Box<str> { v.and_then(Value::as_str).unwrap_or("").into() };
        let flag = |key: &str, bit: u8| {
            if body.get(key).and_then(Value::as_bool) == Some(true) {
                bit
            } else {
                0
            }
        };
        let flags = flag("suspended", SUSPENDED)
            | flag("archived", ARCHIVED)
            | flag("isAdmin", ADMIN)
            | flag("isDelegatedAdmin", DELEGATED);
        let name = body.get("name");
        let manager = body
            .get("relations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| r.get("type").and_then(Value::as_str) == Some("manager"))
            .and_then(|r| r.get("value").and_then(Value::as_str))
            .map(Box::from);
        let aliases = body
            .get("aliases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(Box::from)
            .collect();
        let primary = text(body.get("primaryEmail"));
        let given = text(name.and_then(|n| n.get("givenName")));
        let family = text(name.and_then(|n| n.get("familyName")));
        let full = text(name.and_then(|n| n.get("fullName")));
        let org_unit = text(body.get("orgUnitPath"));
        let custom = body
            .remove("customSchemas")
            .filter(|c| c.as_object().is_some_and(|c| !c.is_empty()))
            .map(|c| c.to_string().into_boxed_str());
        Self {
            id,
            version,
            core: Value::Object(body).to_string().into_boxed_str(),
            custom,
            primary,
            aliases,
            given,
            family,
            full,
            org_unit,
            manager,
            flags,
        }
    }

    /// The decoded body (every field except `kind`, `id`, `etag`).
    pub fn body(&self) -> Map<String, Value> {
        let mut body: Map<String, Value> = serde_json::from_str(&self.core).unwrap_or_default();
        if let Some(custom) = self.custom_schemas() {
            body.insert("customSchemas".into(), Value::Object(custom));
        }
        body
    }

    /// Changes the body; bumps nothing (the caller sets the version).
    pub fn modify(&mut self, version: u64, change: impl FnOnce(&mut Map<String, Value>)) {
        let mut body = self.body();
        change(&mut body);
        *self = Self::new(self.id.clone(), version, body);
    }

    /// The body without `customSchemas`, as JSON object text.
    pub fn core_json(&self) -> &str {
        &self.core
    }

    /// `customSchemas` as JSON object text.
    pub fn custom_json(&self) -> Option<&str> {
        self.custom.as_deref()
    }

    pub fn custom_schemas(&self) -> Option<Map<String, Value>> {
        self.custom
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
    }

    pub fn primary_email(&self) -> &str {
        &self.primary
    }
    pub fn flag(&self, name: &str) -> bool {
        let bit = match name {
            "suspended" => SUSPENDED,
            "archived" => ARCHIVED,
            "isAdmin" => ADMIN,
            "isDelegatedAdmin" => DELEGATED,
            _ => {
                return self
                    .body()
                    .get(name)
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            }
        };
        self.flags & bit != 0
    }
    pub fn org_unit(&self) -> &str {
        &self.org_unit
    }
    /// The manager's email (the first `relations` entry of type `manager`).
    pub fn manager(&self) -> Option<&str> {
        self.manager.as_deref()
    }
    pub fn name_part(&self, part: &str) -> &str {
        match part {
            "givenName" => &self.given,
            "familyName" => &self.family,
            _ => &self.full,
        }
    }
    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        self.aliases.iter().map(|a| &**a)
    }
    pub fn is_admin(&self) -> bool {
        self.flags & (ADMIN | DELEGATED) != 0
    }
}

/// Fields of a user an admin cannot set through users.insert/update/patch.
pub(super) const USER_READ_ONLY: &[&str] = &[
    "kind",
    "id",
    "etag",
    "customerId",
    "creationTime",
    "lastLoginTime",
    "deletionTime",
    "nonEditableAliases",
    "isMailboxSetup",
    "isEnrolledIn2Sv",
    "isEnforcedIn2Sv",
    "thumbnailPhotoEtag",
    "suspensionTime",
    "archivalTime",
    "agreedToTerms",
    "password",
    "hashFunction",
];

/// Rebuilds `emails` from the primary address, aliases and non-editable aliases, keeping any
/// other typed addresses the admin set.
pub fn normalise_user_emails(body: &mut Map<String, Value>) {
    let primary = body
        .get("primaryEmail")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let list = |key: &str| -> Vec<String> {
        body.get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let aliases = list("aliases");
    let fixed = list("nonEditableAliases");
    let mut emails = vec![json!({"address": primary, "primary": true})];
    let mut known: HashSet<String> = HashSet::from([lower(&primary)]);
    for address in aliases.iter().chain(fixed.iter()) {
        if known.insert(lower(address)) {
            emails.push(json!({ "address": address }));
        }
    }
    if let Some(existing) = body.get("emails").and_then(Value::as_array) {
        for entry in existing {
            let address = entry.get("address").and_then(Value::as_str).unwrap_or("");
            if !address.is_empty() && known.insert(lower(address)) {
                // Only the primary address is flagged primary.
                let mut entry = entry.clone();
                if let Some(fields) = entry.as_object_mut() {
                    fields.remove("primary");
                }
                emails.push(entry);
            }
        }
    }
    body.insert("emails".into(), Value::Array(emails));
    if aliases.is_empty() {
        body.remove("aliases");
    }
    if fixed.is_empty() {
        body.remove("nonEditableAliases");
    }
}

impl Directory {
    /// Inserts a prepared user body (already normalised), indexing it. Used by the generator
    /// and by [`Directory::insert_user`].
    pub(crate) fn add_user_body(&mut self, id: Option<Id>, mut body: Map<String, Value>) -> Id {
        let id = id.unwrap_or_else(|| self.new_user_id());
        normalise_user_emails(&mut body);
        let version = self.next_version();
        let user = User::new(id.clone(), version, body);
        self.index_user(&user);
        self.users.insert(id.clone(), user);
        id
    }

    pub(super) fn index_user(&mut self, user: &User) {
        let primary = lower(user.primary_email());
        self.users_by_email.insert(primary.clone(), user.id.clone());
        self.user_keys.insert(primary, user.id.clone());
        for alias in user.aliases() {
            self.user_keys.insert(lower(alias), user.id.clone());
        }
    }

    pub(super) fn unindex_user(&mut self, user: &User) {
        let primary = lower(user.primary_email());
        self.users_by_email.remove(&primary);
        self.user_keys.remove(&primary);
        let aliases: Vec<String> = user.aliases().map(lower).collect();
        for alias in aliases {
            self.user_keys.remove(&alias);
        }
    }

    pub(crate) fn add_deleted_user(&mut self, id: Option<Id>, mut body: Map<String, Value>) -> Id {
        let id = id.unwrap_or_else(|| self.new_user_id());
        normalise_user_emails(&mut body);
        let version = self.next_version();
        self.deleted
            .insert(id.clone(), User::new(id.clone(), version, body));
        id
    }

    /// users.insert: a new user from a Google `User` object. Needs `primaryEmail` and
    /// `name.givenName`/`name.familyName`; read-only fields are ignored.
    pub fn insert_user(&mut self, input: &Value, now: DateTime<Utc>) -> Result<Id, ApiError> {
        let object = input
            .as_object()
            .ok_or_else(|| ApiError::invalid_input("user"))?;
        let email = object
            .get("primaryEmail")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::new(400, "required", "Required"))?
            .to_owned();
        self.check_new_email(&email, "primary_user_email")?;
        let given = object.get("name").and_then(|n| n.get("givenName"));
        let family = object.get("name").and_then(|n| n.get("familyName"));
        if !given.is_some_and(Value::is_string) || !family.is_some_and(Value::is_string) {
            return Err(ApiError::new(400, "required", "Required"));
        }
        let mut body = Map::new();
        body.insert("primaryEmail".into(), json!(email));
        body.insert("isAdmin".into(), json!(false));
        body.insert("isDelegatedAdmin".into(), json!(false));
        body.insert("lastLoginTime".into(), json!(NEVER));
        body.insert("creationTime".into(), json!(timestamp(now)));
        body.insert("agreedToTerms".into(), json!(false));
        body.insert("suspended".into(), json!(false));
        body.insert("archived".into(), json!(false));
        body.insert("changePasswordAtNextLogin".into(), json!(false));
        body.insert("ipWhitelisted".into(), json!(false));
        body.insert("customerId".into(), json!(self.customer_id));
        body.insert("orgUnitPath".into(), json!("/"));
        body.insert("isMailboxSetup".into(), json!(true));
        body.insert("isEnrolledIn2Sv".into(), json!(false));
        body.insert("isEnforcedIn2Sv".into(), json!(false));
        body.insert("includeInGlobalAddressList".into(), json!(true));
        body.insert(
            "nonEditableAliases".into(),
            json!([format!("{}.test-google-a.com", lower(&email))]),
        );
        let id = self.new_user_id();
        self.apply_user_patch(&id, &mut body, object, now)?;
        self.add_user_body(Some(id.clone()), body);
        Ok(id)
    }

    /// Applies patch semantics to a user body: present fields replace, `null` clears.
    pub(super) fn apply_user_patch(
        &mut self,
        id: &str,
        body: &mut Map<String, Value>,
        patch: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        for (key, value) in patch {
            if USER_READ_ONLY.contains(&key.as_str()) {
                continue;
            }
            match key.as_str() {
                "primaryEmail" => {
                    let email = value
                        .as_str()
                        .ok_or_else(|| ApiError::invalid_input("primary_user_email"))?;
                    let current = body.get("primaryEmail").and_then(Value::as_str);
                    if current.is_some_and(|c| c.eq_ignore_ascii_case(email)) {
                        body.insert(key.clone(), json!(email));
                        continue;
                    }
                    let owner = self.user_keys.get(&lower(email));
                    if owner.is_some_and(|owner| &**owner == id) {
                        // Promoting an own alias to primary is allowed.
                    } else {
                        self.check_new_email(email, "primary_user_email")?;
                    }
                    // Google keeps a renamed user's old address as an alias.
                    if let Some(old) = current.map(str::to_owned) {
                        let mut aliases: Vec<Value> = body
                            .get("aliases")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        aliases.retain(|alias| {
                            !alias
                                .as_str()
                                .is_some_and(|a| a.eq_ignore_ascii_case(email))
                        });
                        if !aliases.iter().any(|alias| {
                            alias.as_str().is_some_and(|a| a.eq_ignore_ascii_case(&old))
                        }) {
                            aliases.push(json!(old));
                        }
                        body.insert("aliases".into(), Value::Array(aliases));
                    }
                    body.insert(key.clone(), json!(email));
                }
                "orgUnitPath" => {
                    let path = value
                        .as_str()
                        .ok_or_else(|| ApiError::invalid_input("INVALID_OU_ID"))?;
                    let canonical = if normalise_ou_path(path) == "/" {
                        "/".to_owned()
                    } else {
                        self.org_unit(path)
                            .ok_or_else(|| ApiError::invalid_input("INVALID_OU_ID"))?
                            .path
                            .clone()
                    };
                    body.insert(key.clone(), json!(canonical));
                }
                "name" => {
                    let mut name = body
                        .get("name")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    if let Some(parts) = value.as_object() {
                        for (part, text) in parts {
                            if part == "fullName" {
                                continue;
                            }
                            if text.is_null() {
                                name.remove(part);
                            } else {
                                name.insert(part.clone(), text.clone());
                            }
                        }
                    }
                    let given = name.get("givenName").and_then(Value::as_str).unwrap_or("");
                    let family = name.get("familyName").and_then(Value::as_str).unwrap_or("");
                    let full = format!("{given} {family}").trim().to_owned();
                    name.insert("fullName".into(), json!(full));
                    body.insert("name".into(), Value::Object(name));
                }
                "aliases" => {
                    let list: Vec<String> = value
                        .as_array()
                        .map(|items| {
                            items
                                .iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    for alias in &list {
                        let owner = self.user_keys.get(&lower(alias));
                        if owner.is_none_or(|owner| &**owner != id) {
                            self.check_new_email(alias, "alias")?;
                        }
                    }
                    if list.is_empty() {
                        body.remove("aliases");
                    } else {
                        body.insert("aliases".into(), json!(list));
                    }
                }
                "suspended" => {
                    let suspended = value.as_bool().unwrap_or(false);
                    let was = body.get("suspended").and_then(Value::as_bool) == Some(true);
                    body.insert(key.clone(), json!(suspended));
                    if suspended && !was {
                        let reason = patch
                            .get("suspensionReason")
                            .and_then(Value::as_str)
                            .unwrap_or("ADMIN");
                        body.insert("suspensionReason".into(), json!(reason));
                        body.insert("suspensionTime".into(), json!(timestamp(now)));
                    } else if !suspended {
                        body.remove("suspensionReason");
                        body.remove("suspensionTime");
                    }
                }
                "suspensionReason" => {}
                "archived" => {
                    let archived = value.as_bool().unwrap_or(false);
                    let was = body.get("archived").and_then(Value::as_bool) == Some(true);
                    body.insert(key.clone(), json!(archived));
                    if archived && !was {
                        body.insert("archivalTime".into(), json!(timestamp(now)));
                    } else if !archived {
                        body.remove("archivalTime");
                    }
                }
                "customSchemas" => {
                    let mut schemas = body
                        .get("customSchemas")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    if let Some(incoming) = value.as_object() {
                        for (schema, fields) in incoming {
                            match fields.as_object() {
                                Some(fields) => {
                                    let entry =
                                        schemas.entry(schema.clone()).or_insert_with(|| json!({}));
                                    if let Some(entry) = entry.as_object_mut() {
                                        for (field, v) in fields {
                                            if v.is_null() {
                                                entry.remove(field);
                                            } else {
                                                entry.insert(field.clone(), v.clone());
                                            }
                                        }
                                    }
                                }
                                None => {
                                    schemas.remove(schema);
                                }
                            }
                        }
                    } else if value.is_null() {
                        schemas.clear();
                    }
                    schemas.retain(|_, fields| fields.as_object().is_some_and(|f| !f.is_empty()));
                    if schemas.is_empty() {
                        body.remove("customSchemas");
                    } else {
                        body.insert("customSchemas".into(), Value::Object(schemas));
                    }
                }
                _ => {
                    if value.is_null() {
                        body.remove(key);
                    } else {
                        body.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// users.update / users.patch (both have patch semantics in Google's API).
    pub fn update_user(
        &mut self,
        key: &str,
        patch: &Value,
        now: DateTime<Utc>,
    ) -> Result<Id, ApiError> {
        let id = self
            .resolve_user(key)
            .ok_or_else(|| self.user_key_error(key))?;
        let patch = patch
            .as_object()
            .ok_or_else(|| ApiError::invalid_input("user"))?;
        let Some(old) = self.users.remove(&id) else {
            return Err(ApiError::not_found("userKey"));
        };
        self.unindex_user(&old);
        let mut body = old.body();
        if let Err(err) = self.apply_user_patch(&id, &mut body, patch, now) {
            self.index_user(&old);
            self.users.insert(id.clone(), old);
            return Err(err);
        }
        normalise_user_emails(&mut body);
        let version = self.next_version();
        let user = User::new(id.clone(), version, body);
        self.index_user(&user);
        self.users.insert(id.clone(), user);
        self.bump_memberships_of(&id);
        Ok(id)
    }

    pub(super) fn user_key_error(&self, key: &str) -> ApiError {
        if self.resolve_group(key).is_some() {
            ApiError::new(400, "badRequest", "Type not supported: userKey")
        } else {
            ApiError::not_found("userKey")
        }
    }

    /// users.delete: the user moves to the deleted list (`showDeleted=true`) and leaves
    /// every group.
    pub fn delete_user(&mut self, key: &str, now: DateTime<Utc>) -> Result<Id, ApiError> {
        let id = self
            .resolve_user(key)
            .ok_or_else(|| self.user_key_error(key))?;
        let Some(mut user) = self.users.remove(&id) else {
            return Err(ApiError::not_found("userKey"));
        };
        self.unindex_user(&user);
        self.remove_from_all_groups(&id);
        let version = self.next_version();
        user.modify(version, |body| {
            body.insert("deletionTime".into(), json!(timestamp(now)));
        });
        self.deleted.insert(id.clone(), user);
        Ok(id)
    }

    /// users.undelete: a deleted user (by id) comes back, without its old memberships.
    pub fn undelete_user(&mut self, id: &str) -> Result<Id, ApiError> {
        let Some(mut user) = self.deleted.remove(id) else {
            return Err(ApiError::not_found("userKey"));
        };
        if self.email_taken(user.primary_email()) {
            self.deleted.insert(user.id.clone(), user);
            return Err(ApiError::duplicate("Entity already exists."));
        }
        let version = self.next_version();
        user.modify(version, |body| {
            body.remove("deletionTime");
        });
        let id = user.id.clone();
        self.index_user(&user);
        self.users.insert(id.clone(), user);
        Ok(id)
    }

    /// users.makeAdmin-like switch used by `--admin` and tests.
    pub fn set_admin(&mut self, key: &str, admin: bool) -> Result<Id, ApiError> {
        let id = self
            .resolve_user(key)
            .ok_or_else(|| ApiError::not_found("userKey"))?;
        let version = self.next_version();
        if let Some(user) = self.users.get_mut(&id) {
            user.modify(version, |body| {
                body.insert("isAdmin".into(), json!(admin));
            });
        }
        Ok(id)
    }

    /// Simulates `count` users logging in at `now`: their volatile `lastLoginTime` and their
    /// etag change, nothing else. Walks through active users round-robin.
    pub fn record_logins(&mut self, count: usize, now: DateTime<Utc>) -> usize {
        if self.users.is_empty() {
            return 0;
        }
        let total = self.users.len();
        let count = count.min(total);
        let start = usize::try_from(self.login_cursor % total as u64).unwrap_or(0);
        let ids: Vec<Id> = self
            .users
            .keys()
            .skip(start)
            .chain(self.users.keys())
            .take(count)
            .cloned()
            .collect();
        self.login_cursor += count as u64;
        let stamp = timestamp(now);
        for id in &ids {
            let version = self.next_version();
            if let Some(user) = self.users.get_mut(id) {
                user.modify(version, |body| {
                    body.insert("lastLoginTime".into(), json!(stamp.clone()));
                });
            }
        }
        ids.len()
    }
}
