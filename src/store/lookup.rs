//! Point lookups for triage (`inspect`) and status: one object, its memberships, its events,
//! and why something is missing.

use super::sql::{params, Backend, Connection, OptionalExtension, Row};

use super::StoreError;
use crate::model::{Group, User};

fn parse<T: serde::de::DeserializeOwned>(data: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(data).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
}

/// A stored user by id, primary email or any of its emails and aliases (case-insensitive).
/// Each step is an index search (`user_addresses` holds the secondary emails and aliases).
pub fn find_user(conn: &Connection, tenant: &str, key: &str) -> Result<Option<User>, StoreError> {
    let lowered = key.to_lowercase();
    let mut data: Option<String> = conn
        .query_row(
            "SELECT data FROM users WHERE tenant = ?1 AND id = ?2",
            params![tenant, key],
            |row| row.get(0),
        )
        .optional()?;
    if data.is_none() {
        data = conn
            .query_row(
                "SELECT data FROM users WHERE tenant = ?1 AND email = ?2 LIMIT 1",
                params![tenant, lowered],
                |row| row.get(0),
            )
            .optional()?;
    }
    if let Some(data) = data {
        return parse(&data, "user").map(Some);
    }
    // Only the user's own addresses count: other strings of the raw object can name someone
    // else (a manager relation holds the manager's email).
    let mut statement = conn.prepare_cached(match conn.backend() {
        // CROSS JOIN keeps this order: the address index first, then the few users it names.
        Backend::Sqlite => {
            "SELECT u.data FROM user_addresses a CROSS JOIN users u ON u.tenant = a.tenant AND u.id = a.user_id
             WHERE a.tenant = ?1 AND a.address = ?2 ORDER BY a.user_id"
        }
        Backend::Postgres => {
            "SELECT u.data FROM user_addresses a JOIN users u ON u.tenant = a.tenant AND u.id = a.user_id
             WHERE a.tenant = ?1 AND a.address = ?2 ORDER BY a.user_id"
        }
    })?;
    let mut rows = statement.query(params![tenant, lowered])?;
    while let Some(row) = rows.next()? {
        let user: User = parse(&row.get::<_, String>(0)?, "user")?;
        if user
            .emails
            .iter()
            .any(|e| e.value.eq_ignore_ascii_case(key))
            || has_alias(&user, key)
        {
            return Ok(Some(user));
        }
    }
    Ok(None)
}

/// Whether `key` is one of the user's Google aliases (`aliases`, `nonEditableAliases`).
fn has_alias(user: &User, key: &str) -> bool {
    let raw = user.raw_attributes.to_value();
    ["aliases", "nonEditableAliases"].iter().any(|field| {
        raw.get(field)
            .and_then(serde_json::Value::as_array)
            .is_some_and(|aliases| {
                aliases
                    .iter()
                    .filter_map(serde_json::Value::as_str)
                    .any(|alias| alias.eq_ignore_ascii_case(key))
            })
    })
}

/// A stored group by id, email or name (case-insensitive).
pub fn find_group(conn: &Connection, tenant: &str, key: &str) -> Result<Option<Group>, StoreError> {
    let data: Option<String> = conn
        .query_row(
            "SELECT data FROM groups WHERE tenant = ?1 AND (id = ?2 OR lower(email) = lower(?2) OR lower(name) = lower(?2)) LIMIT 1",
            params![tenant, key],
            |row| row.get(0),
        )
        .optional()?;
    data.map(|d| parse(&d, "group")).transpose()
}

pub fn groups_of_user(
    conn: &Connection,
    tenant: &str,
    user_id: &str,
) -> Result<Vec<Group>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT g.data FROM memberships m JOIN groups g ON g.tenant = m.tenant AND g.id = m.group_id
         WHERE m.tenant = ?1 AND m.user_id = ?2 ORDER BY g.email, g.name",
    )?;
    let rows = statement.query_map(params![tenant, user_id], |row| row.get::<_, String>(0))?;
    rows.map(|data| parse(&data?, "group")).collect()
}

/// The group's effective members: all of them by email, or (with `limit`) the first `limit`
/// in id order, which reads no more rows than it returns.
pub fn members_of_group(
    conn: &Connection,
    tenant: &str,
    group_id: &str,
    limit: Option<u32>,
) -> Result<Vec<User>, StoreError> {
    let mut statement = conn.prepare_cached(match limit {
        None => "SELECT u.data FROM memberships m JOIN users u ON u.tenant = m.tenant AND u.id = m.user_id
         WHERE m.tenant = ?1 AND m.group_id = ?2 ORDER BY u.email LIMIT ?3",
        Some(_) => "SELECT u.data FROM memberships m JOIN users u ON u.tenant = m.tenant AND u.id = m.user_id
         WHERE m.tenant = ?1 AND m.group_id = ?2 ORDER BY m.user_id LIMIT ?3",
    })?;
    let limit = limit.map_or(-1, i64::from);
    let rows = statement.query_map(params![tenant, group_id, limit], |row| {
        row.get::<_, String>(0)
    })?;
    rows.map(|data| parse(&data?, "user")).collect()
}

/// How many effective members the group has.
pub fn count_members(conn: &Connection, tenant: &str, group_id: &str) -> Result<u64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM memberships WHERE tenant = ?1 AND group_id = ?2",
        params![tenant, group_id],
        |row| row.get::<_, i64>(0),
    )? as u64)
}

/// The most recent events about an object (its id as user, group or member), newest first.
pub fn events_about(
    conn: &Connection,
    tenant: &str,
    id: &str,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare_cached(
        // Without INDEXED BY the planner walks the whole stream backwards by seq.
        "SELECT body FROM events INDEXED BY events_by_subject WHERE tenant = ?1 AND subject_id = ?2
         ORDER BY seq DESC LIMIT ?3",
    )?;
    let rows = statement.query_map(params![tenant, id, limit], |row| row.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The last deletion event whose object had this id or email, if any.
pub fn last_deletion(
    conn: &Connection,
    tenant: &str,
    key: &str,
) -> Result<Option<String>, StoreError> {
    let lowered = key.to_lowercase();
    // Through the partial index of deletion events: the outbox itself is never scanned.
    Ok(conn
        .query_row(
            "SELECT body FROM events INDEXED BY events_deletions
             WHERE tenant = ?1 AND type IN ('user.deleted', 'group.deleted')
               AND (subject_id = ?2 OR json_extract(body, '$.data.email') = ?3)
             ORDER BY seq DESC LIMIT 1",
            params![tenant, key, lowered],
            |row| row.get(0),
        )
        .optional()?)
}

/// Why policy left an object out: (kind, reason, detail, run id).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exclusion {
    pub id: String,
    pub email: String,
    pub kind: String,
    pub reason: String,
    pub detail: Option<String>,
    pub run_id: i64,
}

/// Why `key` (an id or email, or a group's name) was left out, if it was. By id, then by the
/// exact or lower-case email through the index; only then case-insensitively over the
/// tenant's exclusions (a group excluded under a mixed-case name).
pub fn find_exclusion(
    conn: &Connection,
    tenant: &str,
    key: &str,
) -> Result<Option<Exclusion>, StoreError> {
    const COLUMNS: &str = "SELECT id, email, kind, reason, detail, run_id FROM exclusions";
    let read = |row: Row<'_>| {
        Ok(Exclusion {
            id: row.get(0)?,
            email: row.get(1)?,
            kind: row.get(2)?,
            reason: row.get(3)?,
            detail: row.get(4)?,
            run_id: row.get(5)?,
        })
    };
    let lowered = key.to_lowercase();
    for (sql, value) in [
        ("WHERE tenant = ?1 AND id = ?2", key),
        ("WHERE tenant = ?1 AND email = ?2 LIMIT 1", key),
        ("WHERE tenant = ?1 AND email = ?2 LIMIT 1", &lowered),
        ("WHERE tenant = ?1 AND lower(email) = ?2 LIMIT 1", &lowered),
    ] {
        let found = conn
            .prepare_cached(&format!("{COLUMNS} {sql}"))?
            .query_row(params![tenant, value], read)
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Direct members of a group in the stored direct graph: (kind, id), users first; at most
/// `limit` (`None`: all).
pub fn direct_members(
    conn: &Connection,
    tenant: &str,
    group_id: &str,
    limit: Option<u32>,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT member_kind, member_id FROM group_edges WHERE tenant = ?1 AND group_id = ?2
         ORDER BY member_kind DESC, member_id LIMIT ?3",
    )?;
    let limit = limit.map_or(-1, i64::from);
    let rows = statement.query_map(params![tenant, group_id, limit], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Groups that have `member_id` (a `"user"` or `"group"`) as a direct member.
pub fn direct_parents(
    conn: &Connection,
    tenant: &str,
    member_kind: &str,
    member_id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT group_id FROM group_edges WHERE tenant = ?1 AND member_id = ?2 AND member_kind = ?3
         ORDER BY group_id",
    )?;
    let rows = statement.query_map(params![tenant, member_id, member_kind], |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How to show a group id: its email or name from the store, else the key it was filtered out
/// under, else the id itself; and whether it is stored.
pub fn group_label(
    conn: &Connection,
    tenant: &str,
    id: &str,
) -> Result<(String, bool), StoreError> {
    let stored: Option<(Option<String>, String)> = conn
        .query_row(
            "SELECT email, name FROM groups WHERE tenant = ?1 AND id = ?2",
            params![tenant, id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((email, name)) = stored {
        return Ok((email.unwrap_or(name), true));
    }
    let excluded: Option<String> = conn
        .query_row(
            "SELECT email FROM exclusions WHERE tenant = ?1 AND id = ?2 AND kind = 'group'",
            params![tenant, id],
            |row| row.get(0),
        )
        .optional()?;
    Ok((excluded.unwrap_or_else(|| id.to_owned()), false))
}

/// Tenants that have anything stored (runs or events), for `status` without config.
pub fn known_tenants(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare("SELECT DISTINCT tenant FROM runs ORDER BY tenant")?;
    let rows = statement.query_map((), |row| row.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
