//! The stored directory of each tenant: read it whole, write only the rows a diff changed.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};

use super::StoreError;
use crate::event::Change;
use crate::model::{Group, Id, Snapshot, User};

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
    // Reuse the users' and groups' `Arc`s: a million memberships then cost two pointers each.
    let mut statement = conn.prepare_cached(
        "SELECT group_id, user_id FROM memberships WHERE tenant = ?1 ORDER BY group_id",
    )?;
    let mut rows = statement.query([tenant])?;
    let mut members: BTreeMap<Id, std::collections::BTreeSet<Id>> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let group: String = row.get(0)?;
        let user: String = row.get(1)?;
        let group_id = snapshot
            .groups
            .get_key_value(group.as_str())
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Id::from(group.as_str()));
        let user_id = snapshot
            .users
            .get_key_value(user.as_str())
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Id::from(user.as_str()));
        members.entry(group_id).or_default().insert(user_id);
    }
    snapshot.members = members;
    Ok(snapshot)
}

/// Writes the rows `changes` touch, taking new objects from `after`.
pub(super) fn write_changes(
    conn: &Connection,
    tenant: &str,
    changes: &[Change],
    after: &Snapshot,
) -> Result<(), StoreError> {
    let mut upsert_user = conn.prepare_cached(
        "INSERT INTO users (tenant, id, email, data) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant, id) DO UPDATE SET email = excluded.email, data = excluded.data",
    )?;
    let mut delete_user = conn.prepare_cached("DELETE FROM users WHERE tenant = ?1 AND id = ?2")?;
    let mut upsert_group = conn.prepare_cached(
        "INSERT INTO groups (tenant, id, email, name, data) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, id) DO UPDATE SET email = excluded.email, name = excluded.name, data = excluded.data",
    )?;
    let mut delete_group =
        conn.prepare_cached("DELETE FROM groups WHERE tenant = ?1 AND id = ?2")?;
    let mut add_member = conn.prepare_cached(
        "INSERT OR IGNORE INTO memberships (tenant, group_id, user_id) VALUES (?1, ?2, ?3)",
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
                upsert_user.execute(params![tenant, &**id, user.email, to_json(user)?])?;
            }
            Change::UserDeleted(id) => {
                delete_user.execute(params![tenant, &**id])?;
            }
            Change::GroupCreated(id) | Change::GroupUpdated { id, .. } => {
                let group = after.groups.get(id).ok_or_else(|| {
                    StoreError::Corrupt(format!("change names unknown group {id}"))
                })?;
                upsert_group.execute(params![
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
                add_member.execute(params![tenant, &**group, &**user])?;
            }
            Change::UserRemoved { group, user } => {
                remove_member.execute(params![tenant, &**group, &**user])?;
            }
        }
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(err.to_string()))
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
