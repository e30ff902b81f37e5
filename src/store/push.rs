//! What the SCIM push receiver keeps: the resources an IdP provisioned (`scim_resources`), the
//! direct members of its groups (`scim_members`), and the per-tenant request log
//! (`push_requests`). The stored directory (users, groups, memberships) and the events a push
//! write produces go through the same snapshot and outbox functions as a sync, in the same
//! transaction as these rows ([`PushTx`]).

use std::collections::{BTreeMap, BTreeSet};

use super::sql::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::Serialize;

use super::outbox::append_change_set;
use super::snapshot::text;
use super::{now_ms, NewExclusion, StoreError};
use crate::event::{Change, SourceKind};
use crate::model::{Group, Id, Snapshot, User};

/// The two SCIM resource types dirsync serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ScimKind {
    User,
    Group,
}

impl ScimKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScimKind::User => "User",
            ScimKind::Group => "Group",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "User" => Ok(ScimKind::User),
            "Group" => Ok(ScimKind::Group),
            other => Err(StoreError::Corrupt(format!("SCIM resource kind {other:?}"))),
        }
    }
}

/// One stored SCIM resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimRow {
    pub kind: ScimKind,
    pub id: String,
    /// Lower-case `userName` (users only): unique per tenant.
    pub user_name: Option<String>,
    pub external_id: Option<String>,
    /// Lower-case `displayName`, for lookups by name (Entra finds groups that way).
    pub display_name: Option<String>,
    pub created: i64,
    pub modified: i64,
    pub version: i64,
    /// The resource's JSON object without `id`, `meta`, `password` and group `members`.
    pub data: String,
}

/// A direct member of a pushed group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimMember {
    pub id: String,
    pub kind: ScimKind,
    pub display: Option<String>,
}

/// Where a lookup looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Id,
    /// Compared lower-case.
    UserName,
    ExternalId,
    /// Compared lower-case.
    DisplayName,
}

const ROW_COLUMNS: &str =
    "kind, id, user_name, external_id, display_name, created, modified, version, data";

fn row_of(row: Row<'_>) -> Result<ScimRow, StoreError> {
    Ok(ScimRow {
        kind: ScimKind::parse(text(row, 0)?)?,
        id: row.get(1)?,
        user_name: row.get(2)?,
        external_id: row.get(3)?,
        display_name: row.get(4)?,
        created: row.get(5)?,
        modified: row.get(6)?,
        version: row.get(7)?,
        data: row.get(8)?,
    })
}

/// Runs a cached statement and maps every row.
fn collect<T, P: super::sql::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    map: impl Fn(Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(map(row)?);
    }
    Ok(found)
}

pub fn get_resource(
    conn: &Connection,
    tenant: &str,
    kind: ScimKind,
    id: &str,
) -> Result<Option<ScimRow>, StoreError> {
    Ok(collect(
        conn,
        &format!(
            "SELECT {ROW_COLUMNS} FROM scim_resources WHERE tenant = ?1 AND kind = ?2 AND id = ?3"
        ),
        params![tenant, kind.as_str(), id],
        row_of,
    )?
    .pop())
}

/// Resources whose `lookup` column equals `value` (lower-cased for the case-insensitive ones),
/// in creation order.
pub fn find_resources(
    conn: &Connection,
    tenant: &str,
    kind: ScimKind,
    lookup: Lookup,
    value: &str,
) -> Result<Vec<ScimRow>, StoreError> {
    let (column, value) = match lookup {
        Lookup::Id => ("id", value.to_owned()),
        Lookup::UserName => ("user_name", value.to_lowercase()),
        Lookup::ExternalId => ("external_id", value.to_owned()),
        Lookup::DisplayName => ("display_name", value.to_lowercase()),
    };
    collect(
        conn,
        &format!("SELECT {ROW_COLUMNS} FROM scim_resources WHERE tenant = ?1 AND kind = ?2 AND {column} = ?3 ORDER BY rowid"),
        params![tenant, kind.as_str(), value],
        row_of,
    )
}

/// Every resource of `kind`, in creation order.
pub fn all_resources(
    conn: &Connection,
    tenant: &str,
    kind: ScimKind,
) -> Result<Vec<ScimRow>, StoreError> {
    page_resources(conn, tenant, kind, 0, i64::MAX)
}

/// `limit` resources of `kind` after the first `offset`, in creation order.
pub fn page_resources(
    conn: &Connection,
    tenant: &str,
    kind: ScimKind,
    offset: i64,
    limit: i64,
) -> Result<Vec<ScimRow>, StoreError> {
    collect(
        conn,
        &format!("SELECT {ROW_COLUMNS} FROM scim_resources WHERE tenant = ?1 AND kind = ?2 ORDER BY rowid LIMIT ?3 OFFSET ?4"),
        params![tenant, kind.as_str(), limit, offset],
        row_of,
    )
}

pub fn count_resources(conn: &Connection, tenant: &str, kind: ScimKind) -> Result<u64, StoreError> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM scim_resources WHERE tenant = ?1 AND kind = ?2")?
        .query_row(params![tenant, kind.as_str()], |row| row.get(0))?;
    Ok(count as u64)
}

/// The direct members of `group`, in id order.
pub fn members_of(
    conn: &Connection,
    tenant: &str,
    group: &str,
) -> Result<Vec<ScimMember>, StoreError> {
    collect(
        conn,
        "SELECT member_id, kind, display FROM scim_members WHERE tenant = ?1 AND group_id = ?2 ORDER BY member_id",
        params![tenant, group],
        member_of,
    )
}

fn member_of(row: Row<'_>) -> Result<ScimMember, StoreError> {
    Ok(ScimMember {
        id: row.get(0)?,
        kind: ScimKind::parse(text(row, 1)?)?,
        display: row.get(2)?,
    })
}

/// Whether the tenant has a resource of `kind` with this id.
pub fn resource_exists(
    conn: &Connection,
    tenant: &str,
    kind: ScimKind,
    id: &str,
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM scim_resources WHERE tenant = ?1 AND kind = ?2 AND id = ?3")?
        .query_row(params![tenant, kind.as_str(), id], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn is_member(
    conn: &Connection,
    tenant: &str,
    group: &str,
    member: &str,
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM scim_members WHERE tenant = ?1 AND group_id = ?2 AND member_id = ?3",
        )?
        .query_row(params![tenant, group, member], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The groups `member` (a user or a group) is a direct member of.
pub fn groups_of_member(
    conn: &Connection,
    tenant: &str,
    member: &str,
) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT group_id FROM scim_members WHERE tenant = ?1 AND member_id = ?2 ORDER BY group_id",
    )?;
    let groups = statement
        .query_map(params![tenant, member], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(groups)
}

/// `groups` and every group that contains one of them, directly or through other groups.
pub fn with_ancestors(
    conn: &Connection,
    tenant: &str,
    groups: impl IntoIterator<Item = String>,
) -> Result<BTreeSet<String>, StoreError> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut stack: Vec<String> = Vec::new();
    for group in groups {
        if seen.insert(group.clone()) {
            stack.push(group);
        }
    }
    while let Some(group) = stack.pop() {
        for parent in groups_of_member(conn, tenant, &group)? {
            if seen.insert(parent.clone()) {
                stack.push(parent);
            }
        }
    }
    Ok(seen)
}

/// The users reachable from `group` through its members (groups in member groups included,
/// cycles too), when `nested`; else its direct user members.
pub fn member_users(
    conn: &Connection,
    tenant: &str,
    group: &str,
    nested: bool,
) -> Result<BTreeSet<String>, StoreError> {
    let mut users = BTreeSet::new();
    let mut seen = BTreeSet::from([group.to_owned()]);
    let mut stack = vec![group.to_owned()];
    while let Some(current) = stack.pop() {
        for member in members_of(conn, tenant, &current)? {
            match member.kind {
                ScimKind::User => {
                    users.insert(member.id);
                }
                ScimKind::Group if nested => {
                    if seen.insert(member.id.clone()) {
                        stack.push(member.id);
                    }
                }
                ScimKind::Group => {}
            }
        }
    }
    Ok(users)
}

/// Every pushed resource and member of a tenant, for a run over the whole pushed directory.
pub struct PushedDirectory {
    pub users: Vec<ScimRow>,
    pub groups: Vec<ScimRow>,
    pub members: BTreeMap<String, Vec<ScimMember>>,
}

pub fn load_pushed_directory(
    conn: &Connection,
    tenant: &str,
) -> Result<PushedDirectory, StoreError> {
    let users = all_resources(conn, tenant, ScimKind::User)?;
    let groups = all_resources(conn, tenant, ScimKind::Group)?;
    let mut members: BTreeMap<String, Vec<ScimMember>> = BTreeMap::new();
    let mut statement = conn.prepare_cached(
        "SELECT group_id, member_id, kind, display FROM scim_members WHERE tenant = ?1 ORDER BY group_id, member_id",
    )?;
    let mut rows = statement.query([tenant])?;
    while let Some(row) = rows.next()? {
        let group: String = row.get(0)?;
        members.entry(group).or_default().push(ScimMember {
            id: row.get(1)?,
            kind: ScimKind::parse(text(row, 2)?)?,
            display: row.get(3)?,
        });
    }
    Ok(PushedDirectory {
        users,
        groups,
        members,
    })
}

/// The stored (policy-applied) users and groups named, and the stored memberships between
/// them: the part of the stored directory a push write can change.
pub fn load_stored_part(
    conn: &Connection,
    tenant: &str,
    users: &BTreeSet<String>,
    groups: &BTreeSet<String>,
) -> Result<Snapshot, StoreError> {
    let mut snapshot = Snapshot::default();
    let mut user_row =
        conn.prepare_cached("SELECT data FROM users WHERE tenant = ?1 AND id = ?2")?;
    for id in users {
        if let Some(data) = user_row
            .query_row(params![tenant, id], |row| row.get::<_, String>(0))
            .optional()?
        {
            let user: User = serde_json::from_str(&data).map_err(|err| {
                StoreError::Corrupt(format!("user {id} of tenant {tenant}: {err}"))
            })?;
            snapshot.users.insert(Id::from(id.as_str()), user);
        }
    }
    let mut group_row =
        conn.prepare_cached("SELECT data FROM groups WHERE tenant = ?1 AND id = ?2")?;
    for id in groups {
        if let Some(data) = group_row
            .query_row(params![tenant, id], |row| row.get::<_, String>(0))
            .optional()?
        {
            let group: Group = serde_json::from_str(&data).map_err(|err| {
                StoreError::Corrupt(format!("group {id} of tenant {tenant}: {err}"))
            })?;
            snapshot.groups.insert(Id::from(id.as_str()), group);
        }
    }
    let mut memberships =
        conn.prepare_cached("SELECT group_id FROM memberships WHERE tenant = ?1 AND user_id = ?2")?;
    for user in users {
        let mut rows = memberships.query(params![tenant, user])?;
        while let Some(row) = rows.next()? {
            let group = text(row, 0)?;
            if groups.contains(group) {
                snapshot
                    .members
                    .entry(Id::from(group))
                    .or_default()
                    .insert(Id::from(user.as_str()));
            }
        }
    }
    Ok(snapshot)
}

/// The stored groups the users are (effective) members of.
pub fn stored_groups_of_users(
    conn: &Connection,
    tenant: &str,
    users: &BTreeSet<String>,
) -> Result<BTreeSet<String>, StoreError> {
    let mut statement =
        conn.prepare_cached("SELECT group_id FROM memberships WHERE tenant = ?1 AND user_id = ?2")?;
    let mut groups = BTreeSet::new();
    for user in users {
        let mut rows = statement.query(params![tenant, user])?;
        while let Some(row) = rows.next()? {
            groups.insert(row.get(0)?);
        }
    }
    Ok(groups)
}

/// How many users and groups the tenant stores (for the deletion guard).
pub fn stored_user_and_group_counts(
    conn: &Connection,
    tenant: &str,
) -> Result<(usize, usize), StoreError> {
    let count = |sql: &str| -> Result<usize, StoreError> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row([tenant], |row| row.get::<_, i64>(0))? as usize)
    };
    Ok((
        count("SELECT count(*) FROM users WHERE tenant = ?1")?,
        count("SELECT count(*) FROM groups WHERE tenant = ?1")?,
    ))
}

/// One request as the push receiver logs it.
#[derive(Debug, Clone, Default)]
pub struct NewPushRequest {
    pub tenant: String,
    pub at_ms: i64,
    pub method: String,
    /// The path below the tenant's base URL, with its query (`/Users?filter=…`).
    pub path: String,
    pub status: u16,
    pub latency_us: i64,
    pub user_agent: Option<String>,
    pub resource_kind: Option<ScimKind>,
    pub resource_id: Option<String>,
    /// The error's detail, for a refused request.
    pub detail: Option<String>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The request body with secrets (`password`) redacted.
    pub body: Option<String>,
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushRequest {
    pub id: i64,
    pub at_ms: i64,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub latency_ms: f64,
    pub user_agent: Option<String>,
    pub resource_kind: Option<String>,
    pub resource_id: Option<String>,
    pub detail: Option<String>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub body: Option<String>,
}

/// Logs a request; returns its id.
pub fn insert_request(conn: &Connection, request: &NewPushRequest) -> Result<i64, StoreError> {
    Ok(conn.prepare_cached(
        "INSERT INTO push_requests (tenant, at, method, path, status, latency_us, user_agent, resource_kind,
                                    resource_id, detail, first_seq, last_seq, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING id",
    )?
    .query_row(params![
        request.tenant,
        request.at_ms,
        request.method,
        request.path,
        request.status,
        request.latency_us,
        request.user_agent,
        request.resource_kind.map(ScimKind::as_str),
        request.resource_id,
        request.detail,
        request.first_seq.map(|seq| seq as i64),
        request.last_seq.map(|seq| seq as i64),
        request.body,
    ], |row| row.get(0))?)
}

const REQUEST_COLUMNS: &str = "id, at, method, path, status, latency_us, user_agent, resource_kind, resource_id, detail, first_seq, last_seq, body";

fn request_of(row: Row<'_>) -> Result<PushRequest, StoreError> {
    Ok(PushRequest {
        id: row.get(0)?,
        at_ms: row.get(1)?,
        method: row.get(2)?,
        path: row.get(3)?,
        status: row.get::<_, i64>(4)? as u16,
        latency_ms: row.get::<_, i64>(5)? as f64 / 1000.0,
        user_agent: row.get(6)?,
        resource_kind: row.get(7)?,
        resource_id: row.get(8)?,
        detail: row.get(9)?,
        first_seq: row.get::<_, Option<i64>>(10)?.map(|seq| seq as u64),
        last_seq: row.get::<_, Option<i64>>(11)?.map(|seq| seq as u64),
        body: row.get(12)?,
    })
}

/// Logged requests with `id > after_id`, oldest first.
pub fn requests_after(
    conn: &Connection,
    tenant: &str,
    after_id: i64,
    limit: usize,
) -> Result<Vec<PushRequest>, StoreError> {
    collect(
        conn,
        &format!("SELECT {REQUEST_COLUMNS} FROM push_requests WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3"),
        params![tenant, after_id, limit as i64],
        request_of,
    )
}

/// The latest `limit` logged requests, newest first.
pub fn latest_requests(
    conn: &Connection,
    tenant: &str,
    limit: usize,
) -> Result<Vec<PushRequest>, StoreError> {
    collect(
        conn,
        &format!("SELECT {REQUEST_COLUMNS} FROM push_requests WHERE tenant = ?1 ORDER BY id DESC LIMIT ?2"),
        params![tenant, limit as i64],
        request_of,
    )
}

/// The latest `limit` logged requests older than `before_id` (all when `None`), newest
/// first: a page of the log, going back (the console's "older").
pub fn requests_before(
    conn: &Connection,
    tenant: &str,
    before_id: Option<i64>,
    limit: usize,
) -> Result<Vec<PushRequest>, StoreError> {
    collect(
        conn,
        &format!("SELECT {REQUEST_COLUMNS} FROM push_requests WHERE tenant = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"),
        params![tenant, before_id.unwrap_or(i64::MAX), limit as i64],
        request_of,
    )
}

/// The latest `limit` logged requests that touched `resource_id`, newest first.
pub fn requests_touching(
    conn: &Connection,
    tenant: &str,
    resource_id: &str,
    limit: usize,
) -> Result<Vec<PushRequest>, StoreError> {
    collect(
        conn,
        &format!("SELECT {REQUEST_COLUMNS} FROM push_requests WHERE tenant = ?1 AND resource_id = ?2 ORDER BY id DESC LIMIT ?3"),
        params![tenant, resource_id, limit as i64],
        request_of,
    )
}

pub fn request_by_id(
    conn: &Connection,
    tenant: &str,
    id: i64,
) -> Result<Option<PushRequest>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {REQUEST_COLUMNS} FROM push_requests WHERE tenant = ?1 AND id = ?2"
    ))?;
    let mut rows = statement.query(params![tenant, id])?;
    match rows.next()? {
        Some(row) => Ok(Some(request_of(row)?)),
        None => Ok(None),
    }
}

/// Requests and refusals (status 400 and up) logged since `since_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub requests: u64,
    pub errors: u64,
}

pub fn request_counts(
    conn: &Connection,
    tenant: &str,
    since_ms: i64,
) -> Result<RequestCounts, StoreError> {
    let (requests, errors): (i64, i64) = conn
        .prepare_cached(
            "SELECT count(*), coalesce(sum(status >= 400), 0) FROM push_requests WHERE tenant = ?1 AND at >= ?2",
        )?
        .query_row(params![tenant, since_ms], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(RequestCounts {
        requests: requests as u64,
        errors: errors as u64,
    })
}

/// Keeps the latest `keep` logged requests of the tenant.
pub fn prune_requests(conn: &Connection, tenant: &str, keep: u64) -> Result<u64, StoreError> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM push_requests WHERE tenant = ?1 AND id <= (
                 SELECT id FROM push_requests WHERE tenant = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        )?
        .execute(params![tenant, keep as i64])?;
    Ok(deleted as u64)
}

/// The stored direct graph's name of a member kind.
fn edge_kind(kind: ScimKind) -> &'static str {
    match kind {
        ScimKind::User => "user",
        ScimKind::Group => "group",
    }
}

/// The first `limit` direct members of `group`, or `None` when it has more.
pub fn members_up_to(
    conn: &Connection,
    tenant: &str,
    group: &str,
    limit: usize,
) -> Result<Option<Vec<ScimMember>>, StoreError> {
    let members = collect(
        conn,
        "SELECT member_id, kind, display FROM scim_members WHERE tenant = ?1 AND group_id = ?2 ORDER BY member_id LIMIT ?3",
        params![tenant, group, limit as i64 + 1],
        member_of,
    )?;
    Ok((members.len() <= limit).then_some(members))
}

/// The statement that inserts a member's row, with what a present row gets: a literal, so
/// the statement cache is keyed without a string built per member.
macro_rules! insert_member {
    ($on_conflict:literal) => {
        concat!(
            "INSERT INTO scim_members (tenant, group_id, member_id, kind, display) VALUES (?1, ?2, ?3, ?4, ?5) ",
            $on_conflict
        )
    };
}

/// Why a push write cannot take the tenant now.
#[derive(Debug, thiserror::Error)]
pub enum PushTxError {
    #[error("tenant {tenant} is being synced by {holder} (until {until})")]
    Busy {
        tenant: String,
        holder: String,
        until: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<super::sql::Error> for PushTxError {
    fn from(err: super::sql::Error) -> Self {
        PushTxError::Store(err.into())
    }
}

/// One transaction of push writes to one tenant: the writes of a batch, each applied in a
/// savepoint of its own (a refused write leaves the others), committed together.
///
/// It holds SQLite's write lock from the start, and begins only when no sync holds the
/// tenant's lease, so a push write and a sync of one tenant never interleave: a sync takes
/// the lease (a write) before it fetches and checks it at its commit.
pub struct PushTx<'c> {
    tx: Transaction<'c>,
    tenant: String,
    source: SourceKind,
    last_seq: u64,
}

impl<'c> PushTx<'c> {
    pub fn begin(conn: &'c mut Connection, tenant: &str) -> Result<Self, PushTxError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.lock_tenant(tenant)?;
        let holder: Option<(String, i64)> = tx
            .prepare_cached("SELECT holder, expires_at FROM leases WHERE tenant = ?1")?
            .query_row([tenant], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        if let Some((holder, expires_at)) = holder {
            if expires_at > now_ms() {
                return Err(PushTxError::Busy {
                    tenant: tenant.to_owned(),
                    holder,
                    until: super::lock::format_ms(expires_at),
                });
            }
        }
        let last_seq = super::last_seq(&tx, tenant)?;
        Ok(Self {
            tx,
            tenant: tenant.to_owned(),
            source: SourceKind::ScimPush,
            last_seq,
        })
    }

    /// The connection, for the read functions of this module.
    pub fn conn(&self) -> &Connection {
        &self.tx
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn savepoint(&self) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("SAVEPOINT push_write")?
            .execute(())?;
        Ok(())
    }

    pub fn release_savepoint(&self) -> Result<(), StoreError> {
        self.tx.prepare_cached("RELEASE push_write")?.execute(())?;
        Ok(())
    }

    /// Undoes everything since [`PushTx::savepoint`].
    pub fn rollback_savepoint(&mut self, seq_before: u64) -> Result<(), StoreError> {
        self.tx
            .execute_batch("ROLLBACK TO push_write; RELEASE push_write")?;
        self.last_seq = seq_before;
        Ok(())
    }

    pub fn insert_resource(&self, row: &ScimRow) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO scim_resources (tenant, kind, id, user_name, external_id, display_name, created, modified, version, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                self.tenant,
                row.kind.as_str(),
                row.id,
                row.user_name,
                row.external_id,
                row.display_name,
                row.created,
                row.modified,
                row.version,
                row.data
            ])?;
        Ok(())
    }

    pub fn update_resource(&self, row: &ScimRow) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE scim_resources SET user_name = ?4, external_id = ?5, display_name = ?6, modified = ?7, version = ?8, data = ?9
                 WHERE tenant = ?1 AND kind = ?2 AND id = ?3",
            )?
            .execute(params![
                self.tenant,
                row.kind.as_str(),
                row.id,
                row.user_name,
                row.external_id,
                row.display_name,
                row.modified,
                row.version,
                row.data
            ])?;
        Ok(())
    }

    /// Deletes the resource, its members, and its memberships in other groups; returns the
    /// groups it was a direct member of.
    pub fn delete_resource(&self, kind: ScimKind, id: &str) -> Result<Vec<String>, StoreError> {
        let parents = groups_of_member(&self.tx, &self.tenant, id)?;
        self.tx
            .prepare_cached(
                "DELETE FROM scim_resources WHERE tenant = ?1 AND kind = ?2 AND id = ?3",
            )?
            .execute(params![self.tenant, kind.as_str(), id])?;
        self.tx
            .prepare_cached("DELETE FROM scim_members WHERE tenant = ?1 AND member_id = ?2")?
            .execute(params![self.tenant, id])?;
        self.tx
            .prepare_cached("DELETE FROM group_edges WHERE tenant = ?1 AND member_id = ?2")?
            .execute(params![self.tenant, id])?;
        if kind == ScimKind::Group {
            self.tx
                .prepare_cached("DELETE FROM scim_members WHERE tenant = ?1 AND group_id = ?2")?
                .execute(params![self.tenant, id])?;
            self.tx
                .prepare_cached("DELETE FROM group_edges WHERE tenant = ?1 AND group_id = ?2")?
                .execute(params![self.tenant, id])?;
        }
        Ok(parents)
    }

    /// Adds (or re-labels) a direct member, in the pushed graph and in the stored direct
    /// graph `inspect` reads.
    pub fn add_member(&self, group: &str, member: &ScimMember) -> Result<(), StoreError> {
        self.insert_edge(group, member)?;
        self.insert_member(
            insert_member!(
                "ON CONFLICT (tenant, group_id, member_id) DO UPDATE SET display = excluded.display"
            ),
            group,
            member,
        )?;
        Ok(())
    }

    /// Runs `sql`, an `insert_member!`, for the member's row; returns the rows written.
    fn insert_member(
        &self,
        sql: &str,
        group: &str,
        member: &ScimMember,
    ) -> Result<usize, StoreError> {
        Ok(self.tx.prepare_cached(sql)?.execute(params![
            self.tenant,
            group,
            member.id,
            member.kind.as_str(),
            member.display
        ])?)
    }

    /// The member in the stored direct graph `inspect` reads.
    fn insert_edge(&self, group: &str, member: &ScimMember) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO group_edges (tenant, group_id, member_kind, member_id) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            )?
            .execute(params![self.tenant, group, edge_kind(member.kind), member.id])?;
        Ok(())
    }

    /// [`PushTx::add_member`] that says whether the member is new: two statements for a new
    /// member (its row, its edge) where looking first and upserting both took three, and no
    /// rewrite of a present member whose label did not change.
    pub fn add_new_member(&self, group: &str, member: &ScimMember) -> Result<bool, StoreError> {
        let added = self.insert_member(
            insert_member!("ON CONFLICT (tenant, group_id, member_id) DO NOTHING"),
            group,
            member,
        )? == 1;
        if !added {
            self.tx
                .prepare_cached(
                    "UPDATE scim_members SET display = ?4
                     WHERE tenant = ?1 AND group_id = ?2 AND member_id = ?3 AND display IS DISTINCT FROM ?4",
                )?
                .execute(params![self.tenant, group, member.id, member.display])?;
        }
        self.insert_edge(group, member)?;
        Ok(added)
    }

    pub fn remove_member(&self, group: &str, member: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "DELETE FROM group_edges WHERE tenant = ?1 AND group_id = ?2 AND member_id = ?3",
            )?
            .execute(params![self.tenant, group, member])?;
        self.tx
            .prepare_cached(
                "DELETE FROM scim_members WHERE tenant = ?1 AND group_id = ?2 AND member_id = ?3",
            )?
            .execute(params![self.tenant, group, member])?;
        Ok(())
    }

    /// Appends the events of `changes` and writes the stored rows they change; returns the
    /// seqs they got.
    pub fn append(
        &mut self,
        before: &Snapshot,
        after: &Snapshot,
        changes: &[Change],
        sync_id: i64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        if changes.is_empty() {
            return Ok(None);
        }
        let range = append_change_set(
            &self.tx,
            &self.tenant,
            self.source,
            before,
            after,
            changes,
            self.last_seq,
            sync_id,
        )?;
        self.last_seq = range.1;
        Ok(Some(range))
    }

    /// Replaces the exclusions of `ids` with `exclusions`.
    pub fn write_exclusions(
        &self,
        ids: &BTreeSet<String>,
        exclusions: &[NewExclusion],
        request_id: i64,
    ) -> Result<(), StoreError> {
        let mut delete = self
            .tx
            .prepare_cached("DELETE FROM exclusions WHERE tenant = ?1 AND id = ?2")?;
        for id in ids {
            delete.execute(params![self.tenant, id])?;
        }
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO exclusions (tenant, id, email, kind, reason, detail, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (tenant, id) DO UPDATE SET email = excluded.email, kind = excluded.kind, reason = excluded.reason,
                 detail = excluded.detail, run_id = excluded.run_id",
        )?;
        for exclusion in exclusions.iter().filter(|e| ids.contains(&e.id)) {
            insert.execute(params![
                self.tenant,
                exclusion.id,
                exclusion.key,
                exclusion.kind.as_str(),
                exclusion.reason,
                exclusion.detail,
                request_id
            ])?;
        }
        Ok(())
    }

    pub fn log_request(&self, request: &NewPushRequest) -> Result<i64, StoreError> {
        insert_request(&self.tx, request)
    }

    /// Fills in what a logged request produced, once known.
    pub fn finish_request(
        &self,
        id: i64,
        status: u16,
        detail: Option<&str>,
        seqs: Option<(u64, u64)>,
        latency_us: i64,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE push_requests SET status = ?2, detail = ?3, first_seq = ?4, last_seq = ?5, latency_us = ?6 WHERE id = ?1",
            )?
            .execute(params![
                id,
                status,
                detail,
                seqs.map(|(first, _)| first as i64),
                seqs.map(|(_, last)| last as i64),
                latency_us
            ])?;
        Ok(())
    }

    /// Names the resource a create made, once its id is known.
    pub fn set_request_resource(&self, id: i64, resource_id: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE push_requests SET resource_id = ?2 WHERE id = ?1")?
            .execute(params![id, resource_id])?;
        Ok(())
    }

    pub fn commit(self) -> Result<u64, StoreError> {
        let last_seq = self.last_seq;
        super::cluster::notify_commit(&self.tx, &self.tenant)?;
        self.tx.commit()?;
        Ok(last_seq)
    }
}
