//! The pure diff: compares the stored snapshot with a fetched one and lists the changes in the
//! order the contract requires, so that every event refers only to objects that exist at its
//! point of the stream:
//!
//! 1. `user.created`, `group.created`
//! 2. `user.updated`, `group.updated`
//! 3. `group.user_added`
//! 4. `group.user_removed` (including every membership of a group or user about to go)
//! 5. `group.deleted`, `user.deleted`
//!
//! No I/O, no clock; deterministic order (ids ascending within each step).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::Change;
use crate::model::Snapshot;

pub fn diff(before: &Snapshot, after: &Snapshot) -> Vec<Change> {
    let mut changes = Vec::new();

    for id in after
        .users
        .keys()
        .filter(|id| !before.users.contains_key(*id))
    {
        changes.push(Change::UserCreated(id.clone()));
    }
    for id in after
        .groups
        .keys()
        .filter(|id| !before.groups.contains_key(*id))
    {
        changes.push(Change::GroupCreated(id.clone()));
    }
    for (id, new) in &after.users {
        if let Some(old) = before.users.get(id) {
            if old != new {
                changes.push(Change::UserUpdated {
                    id: id.clone(),
                    previous: previous_attributes(old, new),
                });
            }
        }
    }
    for (id, new) in &after.groups {
        if let Some(old) = before.groups.get(id) {
            if old != new {
                changes.push(Change::GroupUpdated {
                    id: id.clone(),
                    previous: previous_attributes(old, new),
                });
            }
        }
    }

    let empty = BTreeSet::new();
    for (group, members) in &after.members {
        let old = before.members.get(group).unwrap_or(&empty);
        for user in members.difference(old) {
            changes.push(Change::UserAdded {
                group: group.clone(),
                user: user.clone(),
            });
        }
    }
    for (group, members) in &before.members {
        let new = after.members.get(group).unwrap_or(&empty);
        for user in members.difference(new) {
            changes.push(Change::UserRemoved {
                group: group.clone(),
                user: user.clone(),
            });
        }
    }

    for id in before
        .groups
        .keys()
        .filter(|id| !after.groups.contains_key(*id))
    {
        changes.push(Change::GroupDeleted(id.clone()));
    }
    for id in before
        .users
        .keys()
        .filter(|id| !after.users.contains_key(*id))
    {
        changes.push(Change::UserDeleted(id.clone()));
    }
    changes
}

/// The old value of every top-level field that differs (`null` where the old object lacked it).
fn previous_attributes<T: Serialize>(old: &T, new: &T) -> Map<String, Value> {
    let as_map = |value: &T| match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let (old, new) = (as_map(old), as_map(new));
    let mut previous = Map::new();
    for (key, new_value) in &new {
        let old_value = old.get(key).cloned().unwrap_or(Value::Null);
        if &old_value != new_value {
            previous.insert(key.clone(), old_value);
        }
    }
    for (key, old_value) in &old {
        if !new.contains_key(key) {
            previous.insert(key.clone(), old_value.clone());
        }
    }
    previous
}

/// Applies `changes` (as produced by `diff(before, after)`) to `before`, taking new objects
/// from `after`. `apply(before, diff(before, after), after) == after`; the store uses the same
/// plan to write only the rows that changed.
pub fn apply(before: &mut Snapshot, changes: &[Change], after: &Snapshot) {
    for change in changes {
        match change {
            Change::UserCreated(id) | Change::UserUpdated { id, .. } => {
                if let Some(user) = after.users.get(id) {
                    before.users.insert(id.clone(), user.clone());
                }
            }
            Change::GroupCreated(id) | Change::GroupUpdated { id, .. } => {
                if let Some(group) = after.groups.get(id) {
                    before.groups.insert(id.clone(), group.clone());
                }
            }
            Change::UserDeleted(id) => {
                before.users.remove(id);
            }
            Change::GroupDeleted(id) => {
                before.groups.remove(id);
            }
            Change::UserAdded { group, user } => {
                before
                    .members
                    .entry(group.clone())
                    .or_default()
                    .insert(user.clone());
            }
            Change::UserRemoved { group, user } => {
                if let Some(members) = before.members.get_mut(group) {
                    members.remove(user);
                    if members.is_empty() {
                        before.members.remove(group);
                    }
                }
            }
        }
    }
}

/// Counts of deletions a change list would make, for the deletion guard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeletionCounts {
    pub users: usize,
    pub groups: usize,
}

pub fn deletion_counts(changes: &[Change]) -> DeletionCounts {
    let mut counts = DeletionCounts::default();
    for change in changes {
        match change {
            Change::UserDeleted(_) => counts.users += 1,
            Change::GroupDeleted(_) => counts.groups += 1,
            _ => {}
        }
    }
    counts
}

/// Counts of changes by event type name, for summaries.
pub fn counts_by_type(changes: &[Change]) -> BTreeMap<&'static str, u64> {
    let mut counts = BTreeMap::new();
    for change in changes {
        *counts.entry(change.event_type().as_str()).or_insert(0) += 1;
    }
    counts
}
