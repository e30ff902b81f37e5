//! Groups: the group record, the rules of groups.insert/update/patch/delete (the writable
//! fields, email uniqueness, aliases) and the group indexes.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::*;
use crate::error::ApiError;

#[derive(Debug, Clone)]
pub struct Group {
    pub id: Id,
    /// Every Google field except `kind`, `id`, `etag` and `directMembersCount`.
    pub body: Map<String, Value>,
    pub version: u64,
    /// Direct members by member id (the stable page order).
    pub members: BTreeMap<Id, Member>,
    /// Direct members that are users (directory or external): `directMembersCount`.
    pub direct_users: usize,
}

impl Group {
    pub fn email(&self) -> &str {
        self.body.get("email").and_then(Value::as_str).unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.body.get("name").and_then(Value::as_str).unwrap_or("")
    }
    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        self.body
            .get("aliases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }
}

pub(super) const GROUP_WRITABLE: &[&str] = &["email", "name", "description", "aliases"];

impl Directory {
    pub(crate) fn add_group_body(&mut self, id: Option<Id>, body: Map<String, Value>) -> Id {
        let id = id.unwrap_or_else(|| self.new_group_id());
        let version = self.next_version();
        let group = Group {
            id: id.clone(),
            body,
            version,
            members: BTreeMap::new(),
            direct_users: 0,
        };
        self.index_group(&group);
        self.groups.insert(id.clone(), group);
        id
    }

    pub(super) fn index_group(&mut self, group: &Group) {
        let email = lower(group.email());
        self.groups_by_email.insert(email.clone(), group.id.clone());
        self.group_keys.insert(email, group.id.clone());
        for alias in group.aliases() {
            self.group_keys.insert(lower(alias), group.id.clone());
        }
    }

    pub(super) fn unindex_group(&mut self, group: &Group) {
        let email = lower(group.email());
        self.groups_by_email.remove(&email);
        self.group_keys.remove(&email);
        let aliases: Vec<String> = group.aliases().map(lower).collect();
        for alias in aliases {
            self.group_keys.remove(&alias);
        }
    }

    /// groups.insert: needs `email`; `name` defaults to it, `description` to "".
    pub fn insert_group(&mut self, input: &Value) -> Result<Id, ApiError> {
        let object = input
            .as_object()
            .ok_or_else(|| ApiError::invalid_input("group"))?;
        let email = object
            .get("email")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::new(400, "required", "Missing required field: email"))?
            .to_owned();
        self.check_new_email(&email, "email")?;
        let mut body = Map::new();
        body.insert("email".into(), json!(email));
        body.insert(
            "name".into(),
            object.get("name").cloned().unwrap_or_else(|| json!(email)),
        );
        body.insert(
            "description".into(),
            object
                .get("description")
                .cloned()
                .unwrap_or_else(|| json!("")),
        );
        body.insert("adminCreated".into(), json!(true));
        if let Some(aliases) = object.get("aliases").and_then(Value::as_array) {
            for alias in aliases.iter().filter_map(Value::as_str) {
                self.check_new_email(alias, "alias")?;
            }
            if !aliases.is_empty() {
                body.insert("aliases".into(), json!(aliases));
            }
        }
        body.insert(
            "nonEditableAliases".into(),
            json!([format!("{}.test-google-a.com", lower(&email))]),
        );
        Ok(self.add_group_body(None, body))
    }

    /// groups.update / groups.patch: `email`, `name`, `description`, `aliases`.
    pub fn update_group(&mut self, key: &str, patch: &Value) -> Result<Id, ApiError> {
        let id = self
            .resolve_group(key)
            .ok_or_else(|| ApiError::not_found("groupKey"))?;
        let patch = patch
            .as_object()
            .ok_or_else(|| ApiError::invalid_input("group"))?;
        let Some(mut group) = self.groups.remove(&id) else {
            return Err(ApiError::not_found("groupKey"));
        };
        self.unindex_group(&group);
        let mut body = group.body.clone();
        let mut failure = None;
        for (field, value) in patch {
            if !GROUP_WRITABLE.contains(&field.as_str()) {
                continue;
            }
            if field == "email" || field == "aliases" {
                let wanted: Vec<&str> = match value {
                    Value::String(email) => vec![email.as_str()],
                    Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                for email in wanted {
                    let same = field == "email" && group.email().eq_ignore_ascii_case(email);
                    if !same && !group.aliases().any(|a| a.eq_ignore_ascii_case(email)) {
                        if let Err(err) = self.check_new_email(email, field) {
                            failure = Some(err);
                        }
                    }
                }
            }
            if value.is_null() || value.as_array().is_some_and(Vec::is_empty) {
                if field == "email" || field == "name" {
                    failure = Some(ApiError::invalid_input(field));
                } else if field == "description" {
                    body.insert(field.clone(), json!(""));
                } else {
                    body.remove(field);
                }
            } else {
                body.insert(field.clone(), value.clone());
            }
        }
        if let Some(err) = failure {
            self.index_group(&group);
            self.groups.insert(id, group);
            return Err(err);
        }
        group.body = body;
        group.version = self.next_version();
        self.index_group(&group);
        self.groups.insert(id.clone(), group);
        self.bump_memberships_of(&id);
        Ok(id)
    }

    /// groups.delete: the group and its memberships, in both directions, disappear.
    pub fn delete_group(&mut self, key: &str) -> Result<Id, ApiError> {
        let id = self
            .resolve_group(key)
            .ok_or_else(|| ApiError::not_found("groupKey"))?;
        let Some(group) = self.groups.remove(&id) else {
            return Err(ApiError::not_found("groupKey"));
        };
        self.unindex_group(&group);
        for member in group.members.keys() {
            if let Some(groups) = self.member_of.get_mut(member) {
                groups.remove(&id);
                if groups.is_empty() {
                    self.member_of.remove(member);
                }
            }
        }
        self.remove_from_all_groups(&id);
        Ok(id)
    }
}
