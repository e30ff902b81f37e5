//! `[filters]`, `[roles]` and `[attributes]`: which part of the directory a tenant syncs, how
//! groups become app roles, and which custom attributes users carry.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use serde::Deserialize;

use super::{lenient, Problems};
use crate::attribute_path::AttributePath;
use crate::event::SourceKind;
use crate::glob::glob_matches;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UserScope {
    /// Every user that passes the org-unit filter.
    #[default]
    All,
    /// Only users who are effective members of a synced group.
    GroupMembers,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilters {
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    org_units: Vec<String>,
    #[serde(default)]
    users: UserScope,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FiltersConfig {
    /// Globs (`*`, `?`) on group email (or name when it has none), case-insensitive. Empty:
    /// every group.
    pub groups: Vec<String>,
    /// Org-unit paths, each with its subtree. Empty: every user.
    pub org_units: Vec<String>,
    pub users: UserScope,
}

impl FiltersConfig {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.org_units.is_empty() && self.users == UserScope::All
    }
}

pub(super) fn validate_filters(
    value: Option<toml::Value>,
    source: Option<SourceKind>,
    p: &mut Problems<'_>,
) -> Option<FiltersConfig> {
    let raw: RawFilters = match value {
        Some(value) => lenient::table(value, "filters", "[filters]", &[], p)?,
        None => RawFilters::default(),
    };
    let mut ok = true;
    if matches!(source, Some(SourceKind::Scim | SourceKind::ScimPush)) && !raw.org_units.is_empty()
    {
        p.add(
            "filters.org_units",
            "a SCIM source has no org units (its users carry no org-unit path), so this filter would drop every user: remove it and filter by [filters] groups instead",
        );
        ok = false;
    }
    for (index, org_unit) in raw.org_units.iter().enumerate() {
        if !org_unit.starts_with('/') {
            p.add(
                format!("filters.org_units[{index}]"),
                format!("{org_unit:?} must be an org-unit path starting with '/'"),
            );
            ok = false;
        }
    }
    for (index, glob) in raw.groups.iter().enumerate() {
        if glob.trim().is_empty() {
            p.add(
                format!("filters.groups[{index}]"),
                "an empty pattern matches no group",
            );
            ok = false;
        }
    }
    let org_units = raw
        .org_units
        .into_iter()
        .map(|path| {
            if path.len() > 1 {
                path.trim_end_matches('/').to_owned()
            } else {
                path
            }
        })
        .collect();
    ok.then_some(FiltersConfig {
        groups: raw.groups,
        org_units,
        users: raw.users,
    })
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolesConfig {
    /// Group email (or name) → role, matched case-insensitively.
    pub by_group: BTreeMap<String, String>,
    /// The role of a user in no mapped group.
    pub default_role: Option<String>,
}

pub(super) fn validate_roles(
    value: Option<toml::Value>,
    p: &mut Problems<'_>,
) -> Option<RolesConfig> {
    let table: BTreeMap<String, String> = match value {
        Some(value) => lenient::string_map(value, "roles", "the role name", p)?,
        None => return Some(RolesConfig::default()),
    };
    let mut roles = RolesConfig::default();
    for (group, role) in table {
        if role.trim().is_empty() {
            p.add(format!("roles.\"{group}\""), "the role name is empty");
            continue;
        }
        if group == "default_role" {
            roles.default_role = Some(role);
        } else {
            roles.by_group.insert(group.to_lowercase(), role);
        }
    }
    Some(roles)
}

/// A `[roles]` group that `[filters] groups` leaves out can never grant its role: almost
/// certainly a typo in one of the two.
pub(super) fn check_roles_against_filters(
    filters: &FiltersConfig,
    roles: &RolesConfig,
    p: &mut Problems<'_>,
) {
    if filters.groups.is_empty() {
        return;
    }
    for group in roles.by_group.keys() {
        if !filters.groups.iter().any(|glob| glob_matches(glob, group)) {
            p.add(
                format!("roles.\"{group}\""),
                format!(
                    "no [filters] groups pattern ({}) matches this group, so it can grant no role: add it to [filters] groups or fix the name",
                    filters.groups.join(", ")
                ),
            );
        }
    }
}

/// Custom attribute name → where it comes from in the IdP's user object.
///
/// Shared: most tenants keep their source's defaults, and a node of ten thousand tenants held
/// ten thousand parsed copies of the same five paths (about 2 KiB each). A tenant's own
/// `[attributes]` copies the table on its first entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeMapping {
    pub paths: Arc<BTreeMap<String, AttributePath>>,
}

impl AttributeMapping {
    pub fn insert(&mut self, name: String, path: AttributePath) {
        Arc::make_mut(&mut self.paths).insert(name, path);
    }
}

pub(super) fn validate_attributes(
    value: Option<toml::Value>,
    source: Option<SourceKind>,
    p: &mut Problems<'_>,
) -> Option<AttributeMapping> {
    let table: BTreeMap<String, String> = match value {
        Some(value) => lenient::string_map(value, "attributes", "an attribute path", p)?,
        None => BTreeMap::new(),
    };
    let mut mapping = default_attributes(source);
    let mut ok = true;
    for (name, text) in table {
        match AttributePath::parse(&text) {
            Ok(path) => {
                mapping.insert(name, path);
            }
            Err(err) => {
                p.add(format!("attributes.{name}"), format!("{text:?}: {err}"));
                ok = false;
            }
        }
    }
    ok.then_some(mapping)
}

/// The attributes every tenant of a source gets unless its `[attributes]` says otherwise.
pub fn default_attributes(source: Option<SourceKind>) -> AttributeMapping {
    static GOOGLE: LazyLock<AttributeMapping> =
        LazyLock::new(|| parse_default_attributes(Some(SourceKind::Google)));
    static SCIM: LazyLock<AttributeMapping> =
        LazyLock::new(|| parse_default_attributes(Some(SourceKind::Scim)));
    match source {
        Some(SourceKind::Google) => GOOGLE.clone(),
        Some(SourceKind::Scim | SourceKind::ScimPush) => SCIM.clone(),
        None => AttributeMapping::default(),
    }
}

fn parse_default_attributes(source: Option<SourceKind>) -> AttributeMapping {
    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let defaults: Vec<(&str, String)> = match source {
        Some(SourceKind::Google) => vec![
            ("job_title", "organizations[primary].title".into()),
            ("department", "organizations[primary].department".into()),
            ("cost_center", "organizations[primary].costCenter".into()),
            ("employee_id", "externalIds[type=organization].value".into()),
            ("manager_email", "relations[type=manager].value".into()),
        ],
        Some(SourceKind::Scim | SourceKind::ScimPush) => vec![
            ("job_title", "title".into()),
            ("department", format!("{ENTERPRISE}:department")),
            ("cost_center", format!("{ENTERPRISE}:costCenter")),
            ("employee_id", format!("{ENTERPRISE}:employeeNumber")),
            ("manager_id", format!("{ENTERPRISE}:manager.value")),
        ],
        None => Vec::new(),
    };
    let mut mapping = AttributeMapping::default();
    for (name, text) in defaults {
        if let Ok(path) = AttributePath::parse(&text) {
            mapping.insert(name.to_owned(), path);
        }
    }
    mapping
}
