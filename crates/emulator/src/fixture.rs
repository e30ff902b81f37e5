//! Fixture files: a directory written by hand in JSON (users as Google `User` objects, groups
//! with their members, org units, deleted users, admins), loaded instead of a generated one.
//! Every problem is reported with the JSON path of the offending entry.

use std::path::Path;

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::directory::{normalise_ou_path, Directory, Id, Role};
use super::error::EmulatorError;

/// The fixture file format. Unknown keys are errors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Primary domain; default `example.com`.
    #[serde(default)]
    pub domain: Option<String>,
    /// Customer id; default derived from the seed (`C0` + 7 characters).
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Emails of users that may be impersonated (made `isAdmin: true`).
    #[serde(default)]
    pub admins: Vec<String>,
    /// Org unit paths (`"/Sales/EMEA"`) or `{"orgUnitPath", "description"}` objects.
    #[serde(default)]
    pub org_units: Vec<Value>,
    /// Google `User` objects; `primaryEmail` required, `id` optional.
    #[serde(default)]
    pub users: Vec<Value>,
    /// Users in the deleted list (`showDeleted=true`).
    #[serde(default)]
    pub deleted_users: Vec<Value>,
    /// Google `Group` objects plus `members`: `[{"email"|"id", "role", "type"}]`.
    #[serde(default)]
    pub groups: Vec<Value>,
}

impl Fixture {
    pub fn from_file(path: &Path) -> Result<Self, EmulatorError> {
        let problem = |problem: String| EmulatorError::Fixture {
            path: path.to_owned(),
            problem,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|err| problem(format!("cannot read it: {err}")))?;
        serde_json::from_str(&text).map_err(|err| {
            problem(format!(
                "{err} (expected an object with \"users\", \"groups\", \"org_units\", \"deleted_users\", \"admins\", \"domain\", \"customer_id\")"
            ))
        })
    }

    /// Builds the directory. `seed` only shapes generated ids and etags.
    pub fn build(&self, seed: u64) -> Result<Directory, String> {
        let domain = self.domain.clone().unwrap_or_else(|| "example.com".into());
        let customer = self
            .customer_id
            .clone()
            .unwrap_or_else(|| Directory::customer_id_for_seed(seed));
        let mut dir = Directory::new(&customer, &domain, seed);
        let now = Utc::now();
        for (i, unit) in self.org_units.iter().enumerate() {
            let at = format!("org_units[{i}]");
            let (path, description) = match unit {
                Value::String(path) => (path.clone(), String::new()),
                Value::Object(object) => (
                    object
                        .get("orgUnitPath")
                        .and_then(Value::as_str)
                        .ok_or(format!("{at}: needs \"orgUnitPath\""))?
                        .to_owned(),
                    object
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                ),
                _ => return Err(format!("{at}: expected a path string or an object")),
            };
            dir.add_org_unit(&path, &description)
                .map_err(|_| format!("{at}: {path:?} is not a valid org unit path"))?;
        }
        for (i, user) in self.users.iter().enumerate() {
            let at = format!("users[{i}]");
            let (id, body) = user_body(user, &at, &dir)?;
            if let Some(id) = &id {
                if dir.user(id).is_some() {
                    return Err(format!("{at}: id {id} is used twice"));
                }
            }
            let email = body
                .get("primaryEmail")
                .and_then(Value::as_str)
                .unwrap_or("");
            for address in std::iter::once(email).chain(
                body.get("aliases")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str),
            ) {
                if dir.resolve_user(address).is_some() {
                    return Err(format!("{at}: {address} is used by another user"));
                }
            }
            let ou = body
                .get("orgUnitPath")
                .and_then(Value::as_str)
                .unwrap_or("/");
            dir.add_org_unit(ou, "")
                .map_err(|_| format!("{at}.orgUnitPath: {ou:?} is not a valid org unit path"))?;
            dir.add_user_body(id, body);
        }
        for (i, user) in self.deleted_users.iter().enumerate() {
            let at = format!("deleted_users[{i}]");
            let (id, mut body) = user_body(user, &at, &dir)?;
            body.entry("deletionTime")
                .or_insert_with(|| json!(super::directory::timestamp(now)));
            dir.add_deleted_user(id, body);
        }
        let mut group_ids = Vec::new();
        for (i, group) in self.groups.iter().enumerate() {
            let at = format!("groups[{i}]");
            let object = group
                .as_object()
                .ok_or(format!("{at}: expected a Group object"))?;
            let mut input = object.clone();
            input.remove("members");
            let id = input
                .remove("id")
                .map(|v| {
                    v.as_str()
                        .map(Id::from)
                        .ok_or(format!("{at}.id: expected a string"))
                })
                .transpose()?;
            let created = dir
                .insert_group(&Value::Object(input))
                .map_err(|err| format!("{at}: {}", err.message))?;
            let created = match id {
                Some(id) => {
                    // Keep the fixture's own id: re-add the group under it.
                    let body = dir
                        .group(&created)
                        .map(|g| g.body.clone())
                        .unwrap_or_default();
                    dir.delete_group(&created).map_err(|e| e.to_string())?;
                    if dir.group(&id).is_some() {
                        return Err(format!("{at}: id {id} is used twice"));
                    }
                    dir.add_group_body(Some(id), body)
                }
                None => created,
            };
            group_ids.push(created);
        }
        for (i, group) in self.groups.iter().enumerate() {
            let members = match group.get("members") {
                None => continue,
                Some(Value::Array(members)) => members,
                Some(_) => return Err(format!("groups[{i}].members: expected an array")),
            };
            for (j, member) in members.iter().enumerate() {
                let at = format!("groups[{i}].members[{j}]");
                add_member(&mut dir, &group_ids[i], member, &at)?;
            }
        }
        let admins = if self.admins.is_empty() {
            vec![format!("admin@{}", dir.domain)]
        } else {
            self.admins.clone()
        };
        for admin in &admins {
            if self.admins.is_empty() && dir.resolve_user(admin).is_none() {
                continue;
            }
            dir.set_admin(admin, true)
                .map_err(|_| format!("admins: {admin} is not one of the fixture's users"))?;
        }
        Ok(dir)
    }
}

fn user_body(
    user: &Value,
    at: &str,
    dir: &Directory,
) -> Result<(Option<Id>, Map<String, Value>), String> {
    let object = user
        .as_object()
        .ok_or(format!("{at}: expected a User object"))?;
    let mut body = object.clone();
    body.remove("kind");
    body.remove("etag");
    let id = body
        .remove("id")
        .map(|v| {
            v.as_str()
                .map(Id::from)
                .ok_or(format!("{at}.id: expected a string"))
        })
        .transpose()?;
    let email = body
        .get("primaryEmail")
        .and_then(Value::as_str)
        .ok_or(format!("{at}: needs \"primaryEmail\""))?
        .to_owned();
    if !email.contains('@') {
        return Err(format!(
            "{at}.primaryEmail: {email:?} is not an email address"
        ));
    }
    let name = body
        .entry("name")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or(format!("{at}.name: expected an object"))?;
    let local = email.split('@').next().unwrap_or("").to_owned();
    name.entry("givenName").or_insert_with(|| json!(local));
    name.entry("familyName").or_insert_with(|| json!(""));
    let full = format!(
        "{} {}",
        name.get("givenName").and_then(Value::as_str).unwrap_or(""),
        name.get("familyName").and_then(Value::as_str).unwrap_or("")
    );
    name.entry("fullName").or_insert_with(|| json!(full.trim()));
    let defaults = [
        ("isAdmin", json!(false)),
        ("isDelegatedAdmin", json!(false)),
        ("lastLoginTime", json!(super::directory::NEVER)),
        ("creationTime", json!("2020-01-01T00:00:00.000Z")),
        ("agreedToTerms", json!(true)),
        ("suspended", json!(false)),
        ("archived", json!(false)),
        ("changePasswordAtNextLogin", json!(false)),
        ("ipWhitelisted", json!(false)),
        ("customerId", json!(dir.customer_id)),
        ("orgUnitPath", json!("/")),
        ("isMailboxSetup", json!(true)),
        ("isEnrolledIn2Sv", json!(false)),
        ("isEnforcedIn2Sv", json!(false)),
        ("includeInGlobalAddressList", json!(true)),
    ];
    for (key, value) in defaults {
        body.entry(key).or_insert(value);
    }
    for flag in ["isAdmin", "suspended", "archived"] {
        if !body.get(flag).is_some_and(Value::is_boolean) {
            return Err(format!("{at}.{flag}: expected true or false"));
        }
    }
    if body.get("suspended") == Some(&json!(true)) {
        body.entry("suspensionReason")
            .or_insert_with(|| json!("ADMIN"));
    } else {
        body.remove("suspensionReason");
    }
    let ou = body
        .get("orgUnitPath")
        .and_then(Value::as_str)
        .unwrap_or("/");
    let ou = normalise_ou_path(ou);
    body.insert("orgUnitPath".into(), json!(ou));
    Ok((id, body))
}

fn add_member(dir: &mut Directory, group: &Id, member: &Value, at: &str) -> Result<(), String> {
    let object = member
        .as_object()
        .ok_or(format!("{at}: expected {{\"email\", \"role\", \"type\"}}"))?;
    for key in object.keys() {
        if !["email", "id", "role", "type", "delivery_settings"].contains(&key.as_str()) {
            return Err(format!(
                "{at}: unknown key {key:?} (allowed: email, id, role, type, delivery_settings)"
            ));
        }
    }
    let kind = object.get("type").and_then(Value::as_str).unwrap_or("USER");
    if !["USER", "GROUP", "CUSTOMER", "EXTERNAL"].contains(&kind.to_ascii_uppercase().as_str()) {
        return Err(format!(
            "{at}.type: {kind:?} is not USER, GROUP or CUSTOMER"
        ));
    }
    if let Some(role) = object.get("role").and_then(Value::as_str) {
        if Role::parse(role).is_none() {
            return Err(format!(
                "{at}.role: {role:?} is not OWNER, MANAGER or MEMBER"
            ));
        }
    }
    if !kind.eq_ignore_ascii_case("CUSTOMER") {
        let key = object
            .get("email")
            .or_else(|| object.get("id"))
            .and_then(Value::as_str)
            .ok_or(format!("{at}: needs \"email\" or \"id\""))?;
        let own_domain = key
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&dir.domain));
        if dir.resolve_member(key).is_none() && (own_domain || !key.contains('@')) {
            return Err(format!(
                "{at}: {key} is neither a user nor a group of the fixture (only addresses outside {} can be external members)",
                dir.domain
            ));
        }
        let expected = match dir.resolve_member(key) {
            Some(super::directory::Resolved::Group(_)) => "GROUP",
            _ => "USER",
        };
        if !kind.eq_ignore_ascii_case(expected) && !kind.eq_ignore_ascii_case("EXTERNAL") {
            return Err(format!("{at}.type: {key} is a {expected}, not {kind}"));
        }
    }
    dir.insert_member(group, member)
        .map(|_| ())
        .map_err(|err| format!("{at}: {}", err.message))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_reports_paths() {
        let fixture: Fixture = serde_json::from_value(json!({
            "domain": "acme.test",
            "org_units": ["/Eng"],
            "users": [
                {"primaryEmail": "boss@acme.test", "isAdmin": true},
                {"id": "100000000000000000042", "primaryEmail": "dev@acme.test", "orgUnitPath": "/Eng/Core",
                 "name": {"givenName": "Dev", "familyName": "One"}, "suspended": true}
            ],
            "deleted_users": [{"primaryEmail": "gone@acme.test"}],
            "groups": [
                {"email": "eng@acme.test", "members": [
                    {"email": "dev@acme.test", "role": "OWNER"},
                    {"email": "team@acme.test", "type": "GROUP"},
                    {"email": "friend@other.example"},
                    {"type": "CUSTOMER"}]},
                {"email": "team@acme.test", "members": [{"email": "boss@acme.test"}]}
            ]
        }))
        .unwrap();
        let dir = fixture.build(1).unwrap();
        assert_eq!(dir.stats().users, 2);
        assert_eq!(dir.stats().deleted_users, 1);
        assert_eq!(dir.stats().memberships, 5);
        assert!(dir.user("100000000000000000042").is_some());
        assert!(dir.org_unit("/Eng/Core").is_some());
        let bad: Fixture = serde_json::from_value(json!({
            "users": [{"primaryEmail": "a@example.com"}],
            "groups": [{"email": "g@example.com", "members": [{"email": "nobody@example.com"}]}]
        }))
        .unwrap();
        let err = bad.build(1).unwrap_err();
        assert!(err.starts_with("groups[0].members[0]"), "{err}");
        assert!(serde_json::from_value::<Fixture>(json!({"userz": []})).is_err());
    }
}
