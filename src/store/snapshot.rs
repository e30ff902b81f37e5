//! The stored directory of each tenant: read it whole (`load_snapshot`) or as digests of its
//! rows plus the memberships and then only the objects a diff needs (`load_index`,
//! `load_objects`); write only the rows a diff changed.

use std::collections::{BTreeMap, BTreeSet};

use super::sql::{params, Connection, Row};

use super::StoreError;
use crate::diff::Needed;
use crate::event::Change;
use crate::model::{digest, stored_json, Group, Id, Snapshot, StoredIndex, User};

pub fn load_snapshot(conn: &Connection, tenant: &str) -> Result<Snapshot, StoreError> {
    let mut snapshot = Snapshot::default();
    let mut statement = conn.prepare_cached("SELECT id, data FROM users WHERE tenant = ?1")?;
    let mut rows = statement.query([tenant])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let data: String = row.get(1)?;
        let user: User = serde_json::from_str(&data)
            .map_err(|err| StoreError::Corrupt(format!("user {id} of tenant {tenant}: {err}")))?;
        snapshot.users.insert(user.id.clone(), user);
    }
    let mut statement = conn.prepare_cached("SELECT id, data FROM groups WHERE tenant = ?1")?;
    let mut rows = statement.query([tenant])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let data: String = row.get(1)?;
        let group: Group = serde_json::from_str(&data)
            .map_err(|err| StoreError::Corrupt(format!("group {id} of tenant {tenant}: {err}")))?;
        snapshot.groups.insert(group.id.clone(), group);
    }
    snapshot.members = load_members(conn, tenant, &snapshot.users, &snapshot.groups)?;
    Ok(snapshot)
}

/// The digest of every stored user and group row, and the memberships: what a sync diffs
/// against, at a few dozen bytes per object instead of the object.
pub fn load_index(conn: &Connection, tenant: &str) -> Result<StoredIndex, StoreError> {
    let mut index = StoredIndex::default();
    for (table, map) in [("users", &mut index.users), ("groups", &mut index.groups)] {
        let mut statement =
            conn.prepare_cached(&format!("SELECT id, data FROM {table} WHERE tenant = ?1"))?;
        let mut rows = statement.query([tenant])?;
        while let Some(row) = rows.next()? {
            let id = text(row, 0)?;
            let data = text(row, 1)?;
            map.insert(Id::from(id), digest(data));
        }
    }
    index.members = load_members(conn, tenant, &index.users, &index.groups)?;
    Ok(index)
}

/// The stored users and groups `needed` names (those stored), as a partial snapshot without
/// memberships.
pub fn load_objects(
    conn: &Connection,
    tenant: &str,
    needed: &Needed,
) -> Result<Snapshot, StoreError> {
    let mut snapshot = Snapshot::default();
    let mut user_row =
        conn.prepare_cached("SELECT data FROM users WHERE tenant = ?1 AND id = ?2")?;
    for id in &needed.users {
        let mut rows = user_row.query(params![tenant, &**id])?;
        if let Some(row) = rows.next()? {
            let user: User = serde_json::from_str(text(row, 0)?).map_err(|err| {
                StoreError::Corrupt(format!("user {id} of tenant {tenant}: {err}"))
            })?;
            snapshot.users.insert(id.clone(), user);
        }
    }
    let mut group_row =
        conn.prepare_cached("SELECT data FROM groups WHERE tenant = ?1 AND id = ?2")?;
    for id in &needed.groups {
        let mut rows = group_row.query(params![tenant, &**id])?;
        if let Some(row) = rows.next()? {
            let group: Group = serde_json::from_str(text(row, 0)?).map_err(|err| {
                StoreError::Corrupt(format!("group {id} of tenant {tenant}: {err}"))
            })?;
            snapshot.groups.insert(id.clone(), group);
        }
    }
    Ok(snapshot)
}

/// The stored memberships, reusing the `Arc`s of `users` and `groups`: a million memberships
/// then cost two pointers each.
fn load_members<U, G>(
    conn: &Connection,
    tenant: &str,
    users: &BTreeMap<Id, U>,
    groups: &BTreeMap<Id, G>,
) -> Result<BTreeMap<Id, BTreeSet<Id>>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT group_id, user_id FROM memberships WHERE tenant = ?1 ORDER BY group_id",
    )?;
    let mut rows = statement.query([tenant])?;
    let mut members: BTreeMap<Id, BTreeSet<Id>> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let group = text(row, 0)?;
        let user = text(row, 1)?;
        let group_id = groups
            .get_key_value(group)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Id::from(group));
        let user_id = users
            .get_key_value(user)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Id::from(user));
        members.entry(group_id).or_default().insert(user_id);
    }
    Ok(members)
}

/// Column `index` of `row` as text, borrowed from the row's buffer (no copy).
pub(super) fn text<'a>(row: Row<'a>, index: usize) -> Result<&'a str, StoreError> {
    row.get_str(index)
        .map_err(|err| StoreError::Corrupt(format!("column {index} is not text: {err}")))
}

/// Writes the rows `changes` touch, taking new objects from `after`.
pub(super) fn write_changes(
    conn: &Connection,
    tenant: &str,
    changes: &[Change],
    after: &Snapshot,
) -> Result<(), StoreError> {
    // Rows of created objects and added members are not stored (the change set is the
    // difference from what is): they go in without a conflict clause, which on PostgreSQL
    // means straight into the table by COPY rather than through a staging table. A duplicate
    // fails the commit on either backend instead of being dropped unseen.
    let mut insert_user = conn.batch_insert(
        "INSERT INTO users (tenant, id, email, data) VALUES (?1, ?2, ?3, ?4)",
        4,
    )?;
    let mut update_user = conn.batch_insert(
        "INSERT INTO users (tenant, id, email, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant, id) DO UPDATE SET email = excluded.email, data = excluded.data",
        4,
    )?;
    let mut delete_user = conn.prepare_cached("DELETE FROM users WHERE tenant = ?1 AND id = ?2")?;
    let mut forget_addresses =
        conn.prepare_cached("DELETE FROM user_addresses WHERE tenant = ?1 AND user_id = ?2")?;
    let mut insert_address = conn.batch_insert(
        "INSERT INTO user_addresses (tenant, user_id, address) VALUES (?1, ?2, ?3)",
        3,
    )?;
    let mut readd_address = conn.batch_insert(
        "INSERT INTO user_addresses (tenant, user_id, address) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        3,
    )?;
    let mut insert_group = conn.batch_insert(
        "INSERT INTO groups (tenant, id, email, name, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        5,
    )?;
    let mut update_group = conn.batch_insert(
        "INSERT INTO groups (tenant, id, email, name, data) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, id) DO UPDATE SET email = excluded.email, name = excluded.name, data = excluded.data",
        5,
    )?;
    let mut delete_group =
        conn.prepare_cached("DELETE FROM groups WHERE tenant = ?1 AND id = ?2")?;
    let mut add_member = conn.batch_insert(
        "INSERT INTO memberships (tenant, group_id, user_id) VALUES (?1, ?2, ?3)",
        3,
    )?;
    let mut remove_member = conn.prepare_cached(
        "DELETE FROM memberships WHERE tenant = ?1 AND group_id = ?2 AND user_id = ?3",
    )?;
    for change in changes {
        match change {
            Change::UserCreated(id) | Change::UserUpdated { id, .. } => {
                let user = after.users.get(id).ok_or_else(|| {
                    StoreError::Corrupt(format!("change names unknown user {id}"))
                })?;
                let row = params![tenant, &**id, user.email, to_json(user)?];
                let addresses = if matches!(change, Change::UserCreated(_)) {
                    insert_user.push(row)?;
                    &mut insert_address
                } else {
                    update_user.push(row)?;
                    forget_addresses.execute(params![tenant, &**id])?;
                    &mut readd_address
                };
                for address in secondary_addresses(user) {
                    addresses.push(params![tenant, &**id, address])?;
                }
            }
            Change::UserDeleted(id) => {
                delete_user.execute(params![tenant, &**id])?;
                forget_addresses.execute(params![tenant, &**id])?;
            }
            Change::GroupCreated(id) | Change::GroupUpdated { id, .. } => {
                let group = after.groups.get(id).ok_or_else(|| {
                    StoreError::Corrupt(format!("change names unknown group {id}"))
                })?;
                let insert = if matches!(change, Change::GroupCreated(_)) {
                    &mut insert_group
                } else {
                    &mut update_group
                };
                insert.push(params![
                    tenant,
                    &**id,
                    group.email,
                    group.name,
                    to_json(group)?
                ])?;
            }
            Change::GroupDeleted(id) => {
                delete_group.execute(params![tenant, &**id])?;
            }
            Change::UserAdded { group, user } => {
                add_member.push(params![tenant, &**group, &**user])?;
            }
            Change::UserRemoved { group, user } => {
                remove_member.execute(params![tenant, &**group, &**user])?;
            }
        }
    }
    insert_user.finish()?;
    update_user.finish()?;
    insert_address.finish()?;
    readd_address.finish()?;
    insert_group.finish()?;
    update_group.finish()?;
    add_member.finish()?;
    Ok(())
}

/// A user's addresses besides the primary email, lower-case: secondary emails and Google's
/// aliases (`aliases`, `nonEditableAliases` of the raw object), for `lookup::find_user`.
pub(super) fn secondary_addresses(user: &crate::model::User) -> std::collections::BTreeSet<String> {
    #[derive(serde::Deserialize)]
    struct Aliases {
        #[serde(default)]
        aliases: Vec<serde_json::Value>,
        #[serde(default, rename = "nonEditableAliases")]
        non_editable_aliases: Vec<serde_json::Value>,
    }
    let mut addresses: std::collections::BTreeSet<String> = user
        .emails
        .iter()
        .map(|email| email.value.to_lowercase())
        .filter(|address| *address != user.email)
        .collect();
    let raw = user.raw_attributes.as_str();
    // Most users have no alias: their raw object is not parsed again.
    if raw.contains("liases\"") {
        if let Ok(found) = serde_json::from_str::<Aliases>(raw) {
            addresses.extend(
                found
                    .aliases
                    .iter()
                    .chain(&found.non_editable_aliases)
                    .filter_map(serde_json::Value::as_str)
                    .map(str::to_lowercase),
            );
        }
    }
    addresses.remove(&user.email);
    addresses
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    stored_json(value).map_err(|err| StoreError::Corrupt(err.to_string()))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoredCounts {
    pub users: u64,
    pub groups: u64,
    pub memberships: u64,
}

pub fn stored_counts(conn: &Connection, tenant: &str) -> Result<StoredCounts, StoreError> {
    let count = |sql: &str| -> Result<u64, StoreError> {
        Ok(conn.query_row(sql, [tenant], |row| row.get::<_, i64>(0))? as u64)
    };
    Ok(StoredCounts {
        users: count("SELECT count(*) FROM users WHERE tenant = ?1")?,
        groups: count("SELECT count(*) FROM groups WHERE tenant = ?1")?,
        memberships: count("SELECT count(*) FROM memberships WHERE tenant = ?1")?,
    })
}
