//! Tenant policy: turns what a source fetched into the snapshot dirsync stores — filters
//! (groups, org units, user scope), suspended-user handling, nested-group flattening, roles
//! from groups and custom attributes. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{NestedGroups, SuspendedUsers, TenantConfig};
use crate::glob::glob_matches;
use crate::model::{CustomAttributes, Id, Snapshot, UserState};
use crate::source::{Fetched, MemberRef};

/// Why a user the source returned is not in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// `org_unit` is `None` for a user the source did not list because the org-unit filter was
    /// pushed down to the API, seen only as a member of a group.
    OutsideOrgUnits {
        org_unit: Option<String>,
    },
    /// `[filters] users = "group_members"` and the user is only in `groups` (keys of groups
    /// the group filter leaves out; empty: in no group at all).
    NotInSyncedGroup {
        groups: Vec<String>,
    },
    SuspendedDropped,
}

impl Exclusion {
    pub fn code(&self) -> &'static str {
        match self {
            Exclusion::OutsideOrgUnits { .. } => "outside_org_units",
            Exclusion::NotInSyncedGroup { .. } => "not_in_synced_group",
            Exclusion::SuspendedDropped => "suspended_dropped",
        }
    }

    /// What `inspect` shows beside the code.
    pub fn detail(&self) -> Option<String> {
        match self {
            Exclusion::OutsideOrgUnits { org_unit } => org_unit.clone(),
            Exclusion::NotInSyncedGroup { groups } if !groups.is_empty() => Some(groups.join(", ")),
            _ => None,
        }
    }
}

pub use crate::model::{DirectGraph, MemberKind};

/// A user left out by policy, kept so `inspect` can say why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludedUser {
    pub id: Id,
    pub email: String,
    pub reason: Exclusion,
}

/// A group left out by the group filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludedGroup {
    pub id: Id,
    pub key: String,
}

#[derive(Debug, Default)]
pub struct Applied {
    pub snapshot: Snapshot,
    pub direct: DirectGraph,
    pub excluded_users: Vec<ExcludedUser>,
    pub excluded_groups: Vec<ExcludedGroup>,
}

fn in_org_units(path: &str, org_units: &[String]) -> bool {
    org_units.iter().any(|unit| {
        unit == "/"
            || path == unit
            || path
                .strip_prefix(unit.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Applies the tenant's policy to a fetch.
pub fn apply(fetched: Fetched, tenant: &TenantConfig) -> Applied {
    let filters = &tenant.filters;
    let mut applied = Applied::default();
    let Fetched {
        users: fetched_users,
        groups: fetched_groups,
        members: mut direct_members,
        ..
    } = fetched;

    let mut groups = BTreeMap::new();
    let mut excluded_keys: BTreeMap<Id, String> = BTreeMap::new();
    for group in fetched_groups {
        let key = group.config_key().to_owned();
        if filters.groups.is_empty() || filters.groups.iter().any(|glob| glob_matches(glob, &key)) {
            groups.insert(group.id.clone(), group);
        } else {
            excluded_keys.insert(group.id.clone(), key.clone());
            applied.excluded_groups.push(ExcludedGroup {
                id: group.id.clone(),
                key,
            });
        }
    }

    let mut kept_users = Vec::with_capacity(fetched_users.len());
    for fetched_user in fetched_users {
        let user = fetched_user.user;
        if !filters.org_units.is_empty() {
            let org_unit = fetched_user
                .org_unit_path
                .clone()
                .unwrap_or_else(|| "/".into());
            if !in_org_units(&org_unit, &filters.org_units) {
                applied.excluded_users.push(ExcludedUser {
                    id: user.id.clone(),
                    email: user.email.clone(),
                    reason: Exclusion::OutsideOrgUnits {
                        org_unit: Some(org_unit),
                    },
                });
                continue;
            }
        }
        if user.state == UserState::Inactive
            && tenant.source.suspended_users() == SuspendedUsers::Delete
        {
            applied.excluded_users.push(ExcludedUser {
                id: user.id.clone(),
                email: user.email.clone(),
                reason: Exclusion::SuspendedDropped,
            });
            continue;
        }
        kept_users.push((user.id.clone(), user));
    }
    // Collected, not inserted one by one: a map built from all its entries at once has full
    // nodes, about half the memory of one grown by inserts (users are large values).
    let mut users: BTreeMap<Id, crate::model::User> = kept_users.into_iter().collect();

    // A member the listing missed but the sync fetched afterwards (a stored user confirmed by
    // id) is a user member after all.
    let listed: BTreeSet<Id> = users
        .keys()
        .cloned()
        .chain(applied.excluded_users.iter().map(|e| e.id.clone()))
        .collect();
    for member in direct_members.values_mut().flatten() {
        if let MemberRef::Other(other) = member {
            if let (Some(id), "USER_NOT_FETCHED") = (&other.id, other.kind.as_str()) {
                if listed.contains(&Id::from(id.as_str())) {
                    *member = MemberRef::User(Id::from(id.as_str()));
                }
            }
        }
    }
    // Users the source did not list because the org-unit filter was pushed down, seen only as
    // group members.
    if !filters.org_units.is_empty() {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for member in direct_members.values().flatten() {
            let MemberRef::Other(other) = member else {
                continue;
            };
            if let Some(id) = &other.id {
                if other.kind == "USER_NOT_FETCHED" && seen.insert(id) {
                    applied.excluded_users.push(ExcludedUser {
                        id: Id::from(id.as_str()),
                        email: other.email.clone().unwrap_or_default().to_lowercase(),
                        reason: Exclusion::OutsideOrgUnits { org_unit: None },
                    });
                }
            }
        }
    }

    let nested = tenant.source.nested_groups();
    let all_members = effective_members(&direct_members, &groups, nested);
    // Effective memberships in groups the filter left out, for `inspect`'s "only in unsynced
    // groups".
    let mut unsynced_of_user: BTreeMap<Id, Vec<String>> = BTreeMap::new();
    if filters.users == crate::config::UserScope::GroupMembers {
        for (group, set) in &all_members {
            if let Some(key) = excluded_keys.get(group) {
                for user in set {
                    unsynced_of_user
                        .entry(user.clone())
                        .or_default()
                        .push(key.clone());
                }
            }
        }
    }
    let mut members: BTreeMap<Id, BTreeSet<Id>> = all_members
        .into_iter()
        .filter(|(group, _)| groups.contains_key(group))
        .map(|(group, set)| {
            (
                group,
                set.into_iter()
                    .filter(|user| users.contains_key(user))
                    .collect::<BTreeSet<_>>(),
            )
        })
        .filter(|(_, set)| !set.is_empty())
        .collect();

    if filters.users == crate::config::UserScope::GroupMembers {
        let in_groups: BTreeSet<&Id> = members.values().flatten().collect();
        let (kept, dropped): (BTreeMap<_, _>, BTreeMap<_, _>) = users
            .into_iter()
            .partition(|(id, _)| in_groups.contains(id));
        for user in dropped.into_values() {
            let mut groups = unsynced_of_user.remove(&user.id).unwrap_or_default();
            groups.sort();
            applied.excluded_users.push(ExcludedUser {
                id: user.id.clone(),
                email: user.email.clone(),
                reason: Exclusion::NotInSyncedGroup { groups },
            });
        }
        users = kept;
    }
    // The direct members are done with once the graph is built: consuming them here, before
    // roles and attributes grow the users, keeps the peak of a large directory lower.
    applied.direct = direct_graph(direct_members, &groups, &users, nested);

    // Roles and custom attributes.
    let mut roles_by_user: BTreeMap<Id, BTreeSet<String>> = BTreeMap::new();
    for (group_id, set) in &members {
        let Some(group) = groups.get(group_id) else {
            continue;
        };
        if let Some(role) = tenant
            .roles
            .by_group
            .get(&group.config_key().to_lowercase())
        {
            for user in set {
                roles_by_user
                    .entry(user.clone())
                    .or_default()
                    .insert(role.clone());
            }
        }
    }
    for user in users.values_mut() {
        let mut roles: Vec<String> = roles_by_user
            .remove(&user.id)
            .map(|set| set.into_iter().collect())
            .unwrap_or_default();
        if roles.is_empty() {
            roles.extend(tenant.roles.default_role.clone());
        }
        user.roles = roles;
        if !tenant.attributes.paths.is_empty() {
            let raw = user.raw_attributes.to_value();
            let attributes: BTreeMap<String, serde_json::Value> = tenant
                .attributes
                .paths
                .iter()
                .filter_map(|(name, path)| Some((name.clone(), path.resolve(&raw)?.clone())))
                .collect();
            user.custom_attributes = CustomAttributes::from_map(&attributes);
        }
    }
    members.retain(|_, set| {
        set.retain(|user| users.contains_key(user));
        !set.is_empty()
    });

    applied.snapshot = Snapshot {
        users,
        groups,
        members,
    };
    applied
}

/// The direct edges worth keeping: from synced groups, and when flattening from every group
/// below one (the paths of nested memberships run through them, synced or not).
fn direct_graph(
    mut direct: BTreeMap<Id, Vec<MemberRef>>,
    groups: &BTreeMap<Id, crate::model::Group>,
    users: &BTreeMap<Id, crate::model::User>,
    nested: NestedGroups,
) -> DirectGraph {
    let mut relevant: BTreeSet<&Id> = BTreeSet::new();
    let mut stack: Vec<&Id> = groups.keys().collect();
    while let Some(group) = stack.pop() {
        if !relevant.insert(group) || nested == NestedGroups::Direct {
            continue;
        }
        for member in direct.get(group).into_iter().flatten() {
            if let MemberRef::Group(child) = member {
                if !relevant.contains(child) {
                    stack.push(child);
                }
            }
        }
    }
    let relevant: Vec<Id> = relevant.into_iter().cloned().collect();
    let mut graph = DirectGraph::default();
    for group in relevant {
        // Each group's list is freed as soon as its edges are taken.
        let Some(members) = direct.remove(&group) else {
            continue;
        };
        let edges = members
            .into_iter()
            .filter_map(|member| match member {
                MemberRef::User(id) if users.contains_key(&id) => Some((MemberKind::User, id)),
                MemberRef::Group(id) => Some((MemberKind::Group, id)),
                _ => None,
            })
            .collect();
        graph.set_members(group, edges);
    }
    graph
}

/// Effective user members of every group: direct user members, plus (when flattening) the
/// users of every group reachable through group members, cycles included.
pub fn effective_members(
    direct: &BTreeMap<Id, Vec<MemberRef>>,
    groups: &BTreeMap<Id, crate::model::Group>,
    nested: NestedGroups,
) -> BTreeMap<Id, BTreeSet<Id>> {
    let direct_users = |group: &Id| -> BTreeSet<Id> {
        direct
            .get(group)
            .into_iter()
            .flatten()
            .filter_map(|member| match member {
                MemberRef::User(id) => Some(id.clone()),
                _ => None,
            })
            .collect()
    };
    let mut result = BTreeMap::new();
    for group in direct.keys() {
        let mut users = direct_users(group);
        if nested == NestedGroups::Flatten {
            let mut seen: BTreeSet<&Id> = BTreeSet::from([group]);
            let mut stack: Vec<&Id> = vec![group];
            while let Some(current) = stack.pop() {
                for member in direct.get(current).into_iter().flatten() {
                    if let MemberRef::Group(child) = member {
                        if seen.insert(child) {
                            users.extend(direct_users(child));
                            stack.push(child);
                        }
                    }
                }
            }
        }
        let _ = groups;
        result.insert(group.clone(), users);
    }
    result
}

#[cfg(test)]
mod tests;
