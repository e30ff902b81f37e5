//! How directory objects look on the wire: Google's field names, `kind`, quoted `etag`,
//! `directMembersCount` as a string, projections and views. Serialised straight from the store
//! (no intermediate JSON tree) so that big pages stay cheap.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::directory::{Directory, Group, Member, OrgUnit, User};

/// `projection` (+ `customFieldMask`) of users.list / users.get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    Basic,
    /// Only the named custom schemas.
    Custom(Vec<String>),
    Full,
}

/// Fields `viewType=domain_public` shows.
const PUBLIC_FIELDS: &[&str] = &[
    "primaryEmail",
    "name",
    "emails",
    "phones",
    "organizations",
    "relations",
    "addresses",
    "thumbnailPhotoUrl",
];

pub struct UserView<'a> {
    pub dir: &'a Directory,
    pub user: &'a User,
    pub projection: &'a Projection,
    pub public_view: bool,
}

fn push_json_str(out: &mut String, text: &str) {
    // Serialising a &str to JSON cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

impl UserView<'_> {
    /// `customSchemas` as this projection shows it, as JSON text.
    fn custom_schemas(&self) -> Option<String> {
        let custom = self.user.custom_json()?;
        match self.projection {
            Projection::Basic => None,
            Projection::Full => Some(custom.to_owned()),
            Projection::Custom(names) => {
                let picked: serde_json::Map<String, Value> = self
                    .user
                    .custom_schemas()?
                    .into_iter()
                    .filter(|(schema, _)| names.iter().any(|n| n == schema))
                    .collect();
                (!picked.is_empty()).then(|| Value::Object(picked).to_string())
            }
        }
    }
}

impl Serialize for UserView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let etag = self.dir.etag(&self.user.id, self.user.version);
        if self.public_view {
            let mut map = serializer.serialize_map(None)?;
            map.serialize_entry("kind", "admin#directory#user")?;
            map.serialize_entry("id", &*self.user.id)?;
            map.serialize_entry("etag", &etag)?;
            for (key, value) in self.user.body() {
                if PUBLIC_FIELDS.contains(&key.as_str()) {
                    map.serialize_entry(&key, &value)?;
                }
            }
            return map.end();
        }
        // The stored body is JSON already: splice it rather than rebuild a tree per request.
        let core = self.user.core_json();
        let custom = self.custom_schemas();
        let mut out =
            String::with_capacity(core.len() + custom.as_ref().map_or(0, String::len) + 160);
        out.push_str("{\"kind\":\"admin#directory#user\",\"id\":");
        push_json_str(&mut out, &self.user.id);
        out.push_str(",\"etag\":");
        push_json_str(&mut out, &etag);
        if core.len() > 2 {
            out.push(',');
            out.push_str(&core[1..core.len() - 1]);
        }
        if let Some(custom) = custom {
            out.push_str(",\"customSchemas\":");
            out.push_str(&custom);
        }
        out.push('}');
        RawValue::from_string(out)
            .map_err(S::Error::custom)?
            .serialize(serializer)
    }
}

pub struct GroupView<'a> {
    pub dir: &'a Directory,
    pub group: &'a Group,
}

impl Serialize for GroupView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", "admin#directory#group")?;
        map.serialize_entry("id", &*self.group.id)?;
        map.serialize_entry("etag", &self.dir.etag(&self.group.id, self.group.version))?;
        for (key, value) in &self.group.body {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("directMembersCount", &self.group.direct_users.to_string())?;
        map.end()
    }
}

pub struct MemberView<'a> {
    pub dir: &'a Directory,
    pub group: &'a str,
    pub member: &'a Member,
    /// members.get, insert and update show `delivery_settings`; list does not.
    pub with_delivery: bool,
}

impl Serialize for MemberView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", "admin#directory#member")?;
        map.serialize_entry("etag", &self.dir.member_etag(self.group, self.member))?;
        map.serialize_entry("id", &*self.member.id)?;
        if let Some(email) = self.dir.member_email(self.member) {
            map.serialize_entry("email", email)?;
        }
        map.serialize_entry("role", self.member.role.api_name())?;
        map.serialize_entry("type", self.member.kind.api_name())?;
        if let Some(status) = self.dir.member_status(self.member) {
            map.serialize_entry("status", status)?;
        }
        if self.with_delivery {
            map.serialize_entry("delivery_settings", self.member.delivery_settings())?;
        }
        map.end()
    }
}

pub struct OrgUnitView<'a> {
    pub dir: &'a Directory,
    pub unit: &'a OrgUnit,
}

impl Serialize for OrgUnitView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", "admin#directory#orgUnit")?;
        map.serialize_entry("etag", &self.dir.etag(&self.unit.id, self.unit.version))?;
        map.serialize_entry("name", &self.unit.name)?;
        map.serialize_entry("description", &self.unit.description)?;
        map.serialize_entry("orgUnitPath", &self.unit.path)?;
        map.serialize_entry("orgUnitId", &self.unit.id)?;
        if let Some(parent) = &self.unit.parent_path {
            map.serialize_entry("parentOrgUnitPath", parent)?;
        }
        if let Some(parent) = &self.unit.parent_id {
            map.serialize_entry("parentOrgUnitId", parent)?;
        }
        map.end()
    }
}

/// A list response: `kind`, `etag`, the items (key omitted when empty) and `nextPageToken`
/// (omitted on the last page).
pub struct ListView<'a, T> {
    pub kind: &'static str,
    pub etag: String,
    pub items_key: &'static str,
    pub items: &'a [T],
    pub next_page_token: Option<String>,
}

impl<T: Serialize> Serialize for ListView<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", self.kind)?;
        map.serialize_entry("etag", &self.etag)?;
        if !self.items.is_empty() {
            map.serialize_entry(self.items_key, self.items)?;
        }
        if let Some(token) = &self.next_page_token {
            map.serialize_entry("nextPageToken", token)?;
        }
        map.end()
    }
}
