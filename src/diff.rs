//! The pure diff: compares the stored directory with a fetched one and lists the changes in
//! the order the contract requires, so that every event refers only to objects that exist at
//! its point of the stream:
//!
//! 1. `user.created`, `group.created`
//! 2. `user.updated`, `group.updated`
//! 3. `group.user_added`
//! 4. `group.user_removed` (including every membership of a group or user about to go)
//! 5. `group.deleted`, `user.deleted`
//!
//! The stored side is either a whole `Snapshot` (`diff`) or, for a sync of a large directory,
//! a `StoredIndex` (digests of the stored rows plus the memberships) and the few stored objects
//! the changes need in full (`needed_previous`, then `diff_indexed`): the two give the same
//! changes, and the second never holds the stored directory twice.
//!
//! No I/O, no clock; deterministic order (ids ascending within each step).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::Change;
use crate::model::{digest_of, Id, Snapshot, StoredIndex};

/// The changes that turn `before` into `after`.
pub fn diff(before: &Snapshot, after: &Snapshot) -> Vec<Change> {
    diff_stored(
        &before.users,
        &before.groups,
        &before.members,
        before,
        after,
    )
}

/// Stored ids whose stored object the diff against `after` must read in full: users and
/// groups whose row changed (for `previous_attributes`), that are deleted (their event carries
/// the stored object) or that are in a removed membership (its event carries their stored
/// summary).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needed {
    pub users: BTreeSet<Id>,
    pub groups: BTreeSet<Id>,
}

impl Needed {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

pub fn needed_previous(stored: &StoredIndex, after: &Snapshot) -> Needed {
    let mut needed = Needed::default();
    for (id, digest) in &stored.users {
        if after
            .users
            .get(id)
            .is_none_or(|new| digest_of(new) != *digest)
        {
            needed.users.insert(id.clone());
        }
    }
    for (id, digest) in &stored.groups {
        if after
            .groups
            .get(id)
            .is_none_or(|new| digest_of(new) != *digest)
        {
            needed.groups.insert(id.clone());
        }
    }
    let empty = BTreeSet::new();
    for (group, members) in &stored.members {
        let new = after.members.get(group).unwrap_or(&empty);
        for user in members.difference(new) {
            needed.users.insert(user.clone());
            needed.groups.insert(group.clone());
        }
    }
    needed
}

/// The changes from the stored directory (`stored`) to `after`. `previous` must hold the stored
/// object of every id `needed_previous(stored, after)` names (it may hold more): a stored id
/// also in `after` but absent from `previous` has an unchanged row.
pub fn diff_indexed(stored: &StoredIndex, previous: &Snapshot, after: &Snapshot) -> Vec<Change> {
    diff_stored(
        &stored.users,
        &stored.groups,
        &stored.members,
        previous,
        after,
    )
}

/// The diff over the stored ids (`users`, `groups`: keys only), the stored memberships and
/// the stored objects at hand (`previous`), which decide whether an object changed.
fn diff_stored<U, G>(
    users: &BTreeMap<Id, U>,
    groups: &BTreeMap<Id, G>,
    members: &BTreeMap<Id, BTreeSet<Id>>,
    previous: &Snapshot,
    after: &Snapshot,
) -> Vec<Change> {
    let mut changes = Vec::new();

    for id in after.users.keys().filter(|id| !users.contains_key(*id)) {
        changes.push(Change::UserCreated(id.clone()));
    }
    for id in after.groups.keys().filter(|id| !groups.contains_key(*id)) {
        changes.push(Change::GroupCreated(id.clone()));
    }
    for (id, new) in &after.users {
        if !users.contains_key(id) {
            continue;
        }
        if let Some(old) = previous.users.get(id) {
            if old != new {
                changes.push(Change::UserUpdated {
                    id: id.clone(),
                    previous: previous_attributes(old, new),
                });
            }
        }
    }
    for (id, new) in &after.groups {
        if !groups.contains_key(id) {
            continue;
        }
        if let Some(old) = previous.groups.get(id) {
            if old != new {
                changes.push(Change::GroupUpdated {
                    id: id.clone(),
                    previous: previous_attributes(old, new),
                });
            }
        }
    }

    let empty = BTreeSet::new();
    for (group, new) in &after.members {
        let old = members.get(group).unwrap_or(&empty);
        for user in new.difference(old) {
            changes.push(Change::UserAdded {
                group: group.clone(),
                user: user.clone(),
            });
        }
    }
    for (group, old) in members {
        let new = after.members.get(group).unwrap_or(&empty);
        for user in old.difference(new) {
            changes.push(Change::UserRemoved {
                group: group.clone(),
                user: user.clone(),
            });
        }
    }

    for id in groups.keys().filter(|id| !after.groups.contains_key(*id)) {
        changes.push(Change::GroupDeleted(id.clone()));
    }
    for id in users.keys().filter(|id| !after.users.contains_key(*id)) {
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
