//! How directory objects look on the wire: Google's field names, `kind`, quoted `etag`,
//! `directMembersCount` as a string, projections and views. Serialised straight from the store
//! (no intermediate JSON tree) so that big pages stay cheap.

use serde::ser::{Serialize, SerializeMap, Serializer};
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

impl Serialize for UserView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", "admin#directory#user")?;
        map.serialize_entry("id", &*self.user.id)?;
        map.serialize_entry("etag", &self.dir.etag(&self.user.id, self.user.version))?;
        for (key, value) in &self.user.body {
            if self.public_view && !PUBLIC_FIELDS.contains(&key.as_str()) {
                continue;
            }
            if key == "customSchemas" {
                match self.projection {
                    Projection::Basic => {}
                    Projection::Full => map.serialize_entry(key, value)?,
                    Projection::Custom(names) => {
                        let picked: serde_json::Map<String, Value> = value
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter(|(schema, _)| names.iter().any(|n| n == *schema))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        if !picked.is_empty() {
                            map.serialize_entry(key, &picked)?;
                        }
                    }
                }
                continue;
            }
            map.serialize_entry(key, value)?;
        }
        map.end()
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
