//! One push write, inside the tenant's write transaction ([`PushTx`]): the change to the
//! pushed resources, then policy and the diff over the part of the directory the change
//! touched — the users whose memberships or attributes it changed, and every group those
//! users are (or were) in, ancestors included — and the events, in the same transaction.
//!
//! Cost follows the request, not the directory: one member added to a group of 100k users
//! reads that member, that group and its ancestors, never the group's other members.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::resource::{self, Canonical, MemberIn};
use crate::config::{NestedGroups, ScimPushConfig, TenantConfig, UserScope};
use crate::diff;
use crate::model::Id;
use crate::policy;
use crate::scim_protocol::patch::{self, OpKind, PatchOp};
use crate::scim_protocol::ScimError;
use crate::source::{scim_push, Fetched, MemberRef};
use crate::store::push::{
    find_resources, get_resource, groups_of_member, is_member, load_stored_part, member_users,
    members_of, members_up_to, resource_exists, stored_groups_of_users,
    stored_user_and_group_counts, with_ancestors, Lookup, PushTx, ScimKind, ScimMember, ScimRow,
};
use crate::store::{now_ms, StoreError};
use crate::sync::plan::{exclusions_of, guard_refuses, StoredCounts};

/// A group answered after a PATCH with up to this many members; a larger one gets `204`.
pub const ECHOED_MEMBERS: usize = 100;

/// A write request, parsed.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Create {
        kind: ScimKind,
        body: Value,
    },
    Replace {
        kind: ScimKind,
        id: String,
        body: Value,
    },
    Patch {
        kind: ScimKind,
        id: String,
        body: Value,
    },
    Delete {
        kind: ScimKind,
        id: String,
    },
}

impl WriteOp {
    pub fn kind(&self) -> ScimKind {
        match self {
            WriteOp::Create { kind, .. }
            | WriteOp::Replace { kind, .. }
            | WriteOp::Patch { kind, .. }
            | WriteOp::Delete { kind, .. } => *kind,
        }
    }

    pub fn target(&self) -> Option<&str> {
        match self {
            WriteOp::Create { .. } => None,
            WriteOp::Replace { id, .. }
            | WriteOp::Patch { id, .. }
            | WriteOp::Delete { id, .. } => Some(id),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone)]
pub struct Written {
    pub status: u16,
    pub resource_id: String,
    /// The resource as stored after the write (none after a delete), with a group's members.
    pub row: Option<ScimRow>,
    pub members: Option<Vec<ScimMember>>,
    /// The seqs of the events it produced.
    pub seqs: Option<(u64, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Scim(#[from] ScimError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Applies one write. On an error the caller rolls the write's savepoint back.
pub fn apply(
    tx: &mut PushTx<'_>,
    tenant: &TenantConfig,
    push: &ScimPushConfig,
    op: WriteOp,
    request_id: i64,
) -> Result<Written, WriteError> {
    let now = now_ms();
    let kind = op.kind();
    let patched = matches!(op, WriteOp::Patch { .. });
    let mut touched = Touched::default();
    // The events of a write that only added users to a group, made without `recompute`.
    let mut added_users: Option<Option<(u64, u64)>> = None;
    let (status, resource_id) = match op {
        WriteOp::Create { kind, body } => {
            let canonical = resource::canonical(kind, body)?;
            let id = new_id();
            check_unique(tx, kind, &canonical, None)?;
            let members = match kind {
                ScimKind::Group => {
                    resolve_members(tx, canonical.members.clone().unwrap_or_default())?
                }
                ScimKind::User => Vec::new(),
            };
            let row = row_of(kind, &id, &canonical, now, now, 1)?;
            tx.insert_resource(&row)?;
            for member in &members {
                tx.add_member(&id, member)?;
                touched.member_changed(member);
                touched.gained.insert(id.clone());
            }
            touched.resource(kind, &id);
            (201, id)
        }
        WriteOp::Replace { kind, id, body } => {
            let existing = existing(tx, kind, &id)?;
            check_body_id(&body, &id)?;
            let canonical = resource::canonical(kind, body)?;
            check_unique(tx, kind, &canonical, Some(&id))?;
            if kind == ScimKind::Group {
                let wanted = resolve_members(tx, canonical.members.clone().unwrap_or_default())?;
                set_members(tx, &id, wanted, &mut touched)?;
            }
            update_row(tx, &existing, &canonical, now, &mut touched)?;
            (200, id)
        }
        WriteOp::Patch { kind, id, body } => {
            let existing = existing(tx, kind, &id)?;
            let operations = patch::parse_request(&body)?;
            match users_added_only(tx, tenant, &existing, &operations)? {
                Some(users) => added_users = Some(add_users(tx, tenant, &id, &users, request_id)?),
                None => patch_resource(tx, &existing, &operations, now, &mut touched)?,
            }
            (200, id)
        }
        WriteOp::Delete { kind, id } => {
            existing(tx, kind, &id)?;
            if kind == ScimKind::Group {
                let nested = tenant.source.nested_groups() == NestedGroups::Flatten;
                touched
                    .users
                    .extend(member_users(tx.conn(), tx.tenant(), &id, nested)?);
            }
            let parents = tx.delete_resource(kind, &id)?;
            touched.resource(kind, &id);
            touched.full_context = true;
            drop(parents);
            (204, id)
        }
    };
    let seqs = match added_users {
        Some(seqs) => seqs,
        None => recompute(tx, tenant, push, touched, request_id)?,
    };
    let row = match status {
        204 => None,
        _ => get_resource(tx.conn(), tx.tenant(), kind, &resource_id)?,
    };
    // A PATCH to a large group is answered 204 (RFC 7644 §3.5.2 allows it): echoing every
    // member would make one member's change cost the whole group.
    let (status, row, members) = match row {
        Some(row) if row.kind == ScimKind::Group => {
            match members_up_to(tx.conn(), tx.tenant(), &row.id, ECHOED_MEMBERS)? {
                Some(members) => (status, Some(row), Some(members)),
                None if patched => (204, None, None),
                None => (
                    status,
                    Some(row.clone()),
                    Some(members_of(tx.conn(), tx.tenant(), &row.id)?),
                ),
            }
        }
        other => (status, other, None),
    };
    Ok(Written {
        status,
        resource_id,
        row,
        members,
        seqs,
    })
}

/// What a write changed, for [`recompute`].
#[derive(Debug, Default)]
struct Touched {
    /// Users whose attributes or memberships may have changed.
    users: BTreeSet<String>,
    /// Groups whose own row may have changed.
    groups: BTreeSet<String>,
    /// Member groups added or removed somewhere: their users' memberships changed.
    member_groups: BTreeSet<String>,
    /// Groups that gained direct members.
    gained: BTreeSet<String>,
    /// Whether a touched user may have lost a membership or changed itself (so every group it
    /// is in must be judged again), rather than only gained members through `gained`.
    full_context: bool,
    /// Groups whose name or email changed, so policy that names groups may judge their
    /// members differently.
    renamed: BTreeSet<String>,
}

impl Touched {
    fn resource(&mut self, kind: ScimKind, id: &str) {
        match kind {
            ScimKind::User => {
                self.full_context = true;
                self.users.insert(id.to_owned())
            }
            ScimKind::Group => self.groups.insert(id.to_owned()),
        };
    }

    fn member_changed(&mut self, member: &ScimMember) {
        match member.kind {
            ScimKind::User => self.users.insert(member.id.clone()),
            ScimKind::Group => self.member_groups.insert(member.id.clone()),
        };
    }
}

fn existing(tx: &PushTx<'_>, kind: ScimKind, id: &str) -> Result<ScimRow, WriteError> {
    get_resource(tx.conn(), tx.tenant(), kind, id)?.ok_or_else(|| {
        WriteError::Scim(ScimError::not_found(format!(
            "no {} with id {id:?}",
            kind.as_str()
        )))
    })
}

/// A body's `id` may repeat the resource's (Okta sends it), not change it.
fn check_body_id(body: &Value, id: &str) -> Result<(), ScimError> {
    check_object_id(body.as_object(), id)
}

fn check_object_id(body: Option<&Map<String, Value>>, id: &str) -> Result<(), ScimError> {
    let given = body.and_then(|object| crate::scim_protocol::path::get_ci(object, "id"));
    match given {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(given)) if given == id => Ok(()),
        Some(other) => Err(ScimError::mutability(format!(
            "id is read-only: the body's id {other} is not the resource's {id:?}"
        ))),
    }
}

/// `userName` (case-insensitively) and `externalId` are unique among a tenant's resources of
/// one type.
fn check_unique(
    tx: &PushTx<'_>,
    kind: ScimKind,
    canonical: &Canonical,
    except: Option<&str>,
) -> Result<(), ScimError> {
    let taken = |lookup: Lookup, value: &str| -> Result<Option<String>, ScimError> {
        let found = find_resources(tx.conn(), tx.tenant(), kind, lookup, value)
            .map_err(|err| ScimError::internal(err.to_string()))?;
        Ok(found
            .into_iter()
            .map(|row| row.id)
            .find(|id| Some(id.as_str()) != except))
    };
    if kind == ScimKind::User {
        if let Some(name) = &canonical.user_name {
            if let Some(other) = taken(Lookup::UserName, name)? {
                return Err(ScimError::uniqueness(format!(
                    "userName {name:?} is already taken (case-insensitively) by User {other}"
                )));
            }
        }
    }
    if let Some(external_id) = &canonical.external_id {
        if let Some(other) = taken(Lookup::ExternalId, external_id)? {
            return Err(ScimError::uniqueness(format!(
                "externalId {external_id:?} is already taken by {} {other}",
                kind.as_str()
            )));
        }
    }
    Ok(())
}

fn row_of(
    kind: ScimKind,
    id: &str,
    canonical: &Canonical,
    created: i64,
    modified: i64,
    version: i64,
) -> Result<ScimRow, StoreError> {
    Ok(ScimRow {
        kind,
        id: id.to_owned(),
        user_name: match kind {
            ScimKind::User => canonical.user_name.clone(),
            ScimKind::Group => None,
        },
        external_id: canonical.external_id.clone(),
        display_name: canonical.display_name.clone(),
        created,
        modified,
        version,
        data: serde_json::to_string(&Value::Object(canonical.data.clone()))
            .map_err(|err| StoreError::Corrupt(err.to_string()))?,
    })
}

/// Rewrites the row when its data changed; marks what policy must look at again.
fn update_row(
    tx: &PushTx<'_>,
    existing: &ScimRow,
    canonical: &Canonical,
    now: i64,
    touched: &mut Touched,
) -> Result<(), StoreError> {
    let row = row_of(
        existing.kind,
        &existing.id,
        canonical,
        existing.created,
        now,
        existing.version + 1,
    )?;
    let unchanged = row.data == existing.data
        && row.user_name == existing.user_name
        && row.external_id == existing.external_id
        && row.display_name == existing.display_name;
    if unchanged {
        return Ok(());
    }
    tx.update_resource(&row)?;
    touched.resource(existing.kind, &existing.id);
    if existing.kind == ScimKind::Group {
        let key_of = |row: &ScimRow| {
            scim_push::group_of(row)
                .map(|g| g.config_key().to_owned())
                .ok()
        };
        if key_of(existing) != key_of(&row) {
            touched.renamed.insert(existing.id.clone());
            // Renamed, a group may leave (or enter) the group filter, and its members lose
            // (or gain) the groups above it unless another path leads there.
            touched.full_context = true;
        }
    }
    Ok(())
}

/// Each member must be a User or Group of the tenant.
fn resolve_members(tx: &PushTx<'_>, members: Vec<MemberIn>) -> Result<Vec<ScimMember>, WriteError> {
    let mut resolved: BTreeMap<String, ScimMember> = BTreeMap::new();
    for member in members {
        let member = resolve_member(tx, member)?;
        resolved.insert(member.id.clone(), member);
    }
    Ok(resolved.into_values().collect())
}

fn resolve_member(tx: &PushTx<'_>, member: MemberIn) -> Result<ScimMember, WriteError> {
    let kinds: &[ScimKind] = match member.kind {
        Some(ScimKind::User) => &[ScimKind::User],
        Some(ScimKind::Group) => &[ScimKind::Group],
        None => &[ScimKind::User, ScimKind::Group],
    };
    for kind in kinds {
        if get_resource(tx.conn(), tx.tenant(), *kind, &member.id)?.is_some() {
            return Ok(ScimMember {
                id: member.id,
                kind: *kind,
                display: member.display,
            });
        }
    }
    Err(WriteError::Scim(ScimError::invalid_value(format!(
        "member {:?} is no {} of this tenant: create it first",
        member.id,
        member.kind.map_or("User or Group", ScimKind::as_str)
    ))))
}

/// Makes the group's direct members exactly `wanted`.
fn set_members(
    tx: &PushTx<'_>,
    group: &str,
    wanted: Vec<ScimMember>,
    touched: &mut Touched,
) -> Result<(), WriteError> {
    let current: BTreeMap<String, ScimMember> = members_of(tx.conn(), tx.tenant(), group)?
        .into_iter()
        .map(|member| (member.id.clone(), member))
        .collect();
    let wanted: BTreeMap<String, ScimMember> = wanted
        .into_iter()
        .map(|member| (member.id.clone(), member))
        .collect();
    // As the member fast path refuses it: a PUT or an engine PATCH naming the group itself.
    if wanted
        .get(group)
        .is_some_and(|member| member.kind == ScimKind::Group)
    {
        return Err(WriteError::Scim(ScimError::invalid_value(
            "a group cannot be a member of itself",
        )));
    }
    for (id, member) in &current {
        if !wanted.contains_key(id) {
            tx.remove_member(group, id)?;
            touched.member_changed(member);
            touched.full_context = true;
        }
    }
    for (id, member) in &wanted {
        match current.get(id) {
            Some(known) if known.display == member.display => {}
            Some(_) => tx.add_member(group, member)?,
            None => {
                tx.add_member(group, member)?;
                touched.member_changed(member);
                touched.gained.insert(group.to_owned());
            }
        }
    }
    Ok(())
}

/// PATCH: the member operations of a group go straight to its member rows (so one member's
/// change costs one row whatever the group's size); everything else goes through the PATCH
/// engine on the resource. A member operation the fast path cannot express (a filter other
/// than `value eq`, a sub-attribute of members) loads the members into the resource and
/// lets the engine do all of it.
fn patch_resource(
    tx: &PushTx<'_>,
    existing: &ScimRow,
    operations: &[PatchOp],
    now: i64,
    touched: &mut Touched,
) -> Result<(), WriteError> {
    let mut resource = resource::data_of(existing);
    resource.insert("id".into(), Value::from(existing.id.clone()));
    let group = existing.kind == ScimKind::Group;
    if !group {
        refuse_user_groups(operations)?;
    }
    let member_ops: Option<Vec<MemberOp>> = if group {
        operations.iter().map(member_op).collect()
    } else {
        Some(Vec::new())
    };
    // Whether the resource holds the group's members for the engine: then a resource
    // without `members` afterwards means none are left (the engine drops an emptied list).
    let members_loaded = member_ops.is_none();
    match member_ops {
        Some(member_ops) => {
            let attribute_ops: Vec<PatchOp> = operations
                .iter()
                .zip(member_ops.iter())
                .filter(|(_, member)| matches!(member, MemberOp::NotMembers))
                .map(|(op, _)| op.clone())
                .collect();
            let attribute_ops = if group {
                attribute_ops
            } else {
                operations.to_vec()
            };
            patch::apply(&mut resource, &attribute_ops)?;
            apply_member_ops(tx, &existing.id, member_ops, touched)?;
        }
        None => {
            let members = members_of(tx.conn(), tx.tenant(), &existing.id)?;
            resource.insert(
                "members".into(),
                Value::Array(
                    members
                        .iter()
                        .map(|member| {
                            let mut fields = Map::new();
                            fields.insert("value".into(), Value::from(member.id.clone()));
                            fields.insert("type".into(), Value::from(member.kind.as_str()));
                            if let Some(display) = &member.display {
                                fields.insert("display".into(), Value::from(display.clone()));
                            }
                            Value::Object(fields)
                        })
                        .collect(),
                ),
            );
            patch::apply(&mut resource, operations)?;
        }
    }
    check_object_id(Some(&resource), &existing.id)?;
    let canonical = resource::canonical(existing.kind, Value::Object(resource))?;
    check_unique(tx, existing.kind, &canonical, Some(&existing.id))?;
    let members = match canonical.members.clone() {
        Some(members) => Some(members),
        None if members_loaded => Some(Vec::new()),
        None => None,
    };
    if let Some(members) = members {
        let wanted = resolve_members(tx, members)?;
        set_members(tx, &existing.id, wanted, touched)?;
    }
    update_row(tx, existing, &canonical, now, touched)?;
    Ok(())
}

/// A user's `groups` is read-only (RFC 7643 §4.1.2: derived from the groups' members). A PUT
/// may carry it and is not about it; a PATCH that asks to change it would otherwise be a
/// silent 200 that changed nothing.
fn refuse_user_groups(operations: &[PatchOp]) -> Result<(), ScimError> {
    let names_groups = |key: &str| {
        key.eq_ignore_ascii_case("groups") || key.to_ascii_lowercase().starts_with("groups.")
    };
    for op in operations {
        let touches = match &op.path {
            Some(path) => path.attr.urn.is_none() && path.attr.attr.eq_ignore_ascii_case("groups"),
            None => op
                .value
                .as_ref()
                .and_then(Value::as_object)
                .is_some_and(|object| object.keys().any(|key| names_groups(key))),
        };
        if touches {
            return Err(ScimError::mutability(
                "a user's groups are read-only: add or remove the user in the group's members (PATCH /Groups/{id})",
            ));
        }
    }
    Ok(())
}

/// A PATCH operation seen from a group's members.
#[derive(Debug, Clone)]
enum MemberOp {
    /// Does not touch `members`.
    NotMembers,
    Add(Vec<MemberIn>),
    /// Remove these ids.
    Remove(Vec<String>),
    RemoveAll,
    Replace(Vec<MemberIn>),
}

/// How the fast path applies `op`, or `None` when only the engine can.
fn member_op(op: &PatchOp) -> Option<MemberOp> {
    let names_members = |key: &str| key.eq_ignore_ascii_case("members");
    match &op.path {
        None => {
            // A no-path value naming members ("members" or "members.value") goes to the engine.
            let object = op.value.as_ref()?.as_object()?;
            if object
                .keys()
                .any(|key| names_members(key) || key.to_ascii_lowercase().starts_with("members."))
            {
                return None;
            }
            Some(MemberOp::NotMembers)
        }
        Some(path) if path.attr.urn.is_some() || !names_members(&path.attr.attr) => {
            Some(MemberOp::NotMembers)
        }
        Some(path) if path.attr.sub.is_some() => None,
        Some(path) => match (&path.filter, op.op) {
            (None, OpKind::Add) => Some(MemberOp::Add(members_of_value(op.value.as_ref()?)?)),
            (None, OpKind::Replace) => {
                Some(MemberOp::Replace(members_of_value(op.value.as_ref()?)?))
            }
            (None, OpKind::Remove) => match &op.value {
                None | Some(Value::Null) => Some(MemberOp::RemoveAll),
                Some(value) => Some(MemberOp::Remove(
                    members_of_value(value)?.into_iter().map(|m| m.id).collect(),
                )),
            },
            (Some(filter), OpKind::Remove) => {
                let pairs = filter.equalities()?;
                match pairs.as_slice() {
                    [(attr, Value::String(id))] if attr.eq_ignore_ascii_case("value") => {
                        Some(MemberOp::Remove(vec![id.clone()]))
                    }
                    _ => None,
                }
            }
            (Some(_), _) => None,
        },
    }
}

/// A member value: a list of members, or one member object. `None` when malformed (the
/// engine then gives the precise error).
fn members_of_value(value: &Value) -> Option<Vec<MemberIn>> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| resource::member_in(item).ok())
            .collect(),
        Value::Object(_) => Some(vec![resource::member_in(value).ok()?]),
        _ => None,
    }
}

fn apply_member_ops(
    tx: &PushTx<'_>,
    group: &str,
    ops: Vec<MemberOp>,
    touched: &mut Touched,
) -> Result<(), WriteError> {
    for op in ops {
        match op {
            MemberOp::NotMembers => {}
            MemberOp::Add(members) => {
                for member in members {
                    let member = resolve_member(tx, member)?;
                    if member.id == group && member.kind == ScimKind::Group {
                        return Err(WriteError::Scim(ScimError::invalid_value(
                            "a group cannot be a member of itself",
                        )));
                    }
                    if is_member(tx.conn(), tx.tenant(), group, &member.id)? {
                        tx.add_member(group, &member)?;
                        continue;
                    }
                    tx.add_member(group, &member)?;
                    touched.member_changed(&member);
                    touched.gained.insert(group.to_owned());
                }
            }
            MemberOp::Remove(ids) => {
                for id in ids {
                    if !is_member(tx.conn(), tx.tenant(), group, &id)? {
                        continue;
                    }
                    let kind = match get_resource(tx.conn(), tx.tenant(), ScimKind::Group, &id)? {
                        Some(_) => ScimKind::Group,
                        None => ScimKind::User,
                    };
                    tx.remove_member(group, &id)?;
                    touched.member_changed(&ScimMember {
                        id,
                        kind,
                        display: None,
                    });
                    touched.full_context = true;
                }
            }
            MemberOp::RemoveAll => set_members(tx, group, Vec::new(), touched)?,
            MemberOp::Replace(members) => {
                let wanted = resolve_members(tx, members)?;
                set_members(tx, group, wanted, touched)?;
            }
        }
    }
    Ok(())
}

/// Whether policy may judge a user by the groups it is in: roles named by group, or only
/// members of synced groups kept. Otherwise a user's stored row depends on its own
/// attributes alone.
fn user_rows_follow_groups(tenant: &TenantConfig) -> bool {
    !tenant.roles.by_group.is_empty() || tenant.filters.users == UserScope::GroupMembers
}

/// The users a PATCH adds to a group, when adding existing users to it is all the PATCH does
/// and policy judges users by their own attributes alone; `None` sends the write down the
/// general path (which also gives the precise error for a member that is no user).
///
/// This is the write an IdP's first provisioning sends a hundred thousand times, and
/// [`add_users`] makes its events with a few lookups per user where [`recompute`] runs
/// policy and the diff over every touched user.
fn users_added_only(
    tx: &PushTx<'_>,
    tenant: &TenantConfig,
    group: &ScimRow,
    operations: &[PatchOp],
) -> Result<Option<Vec<ScimMember>>, WriteError> {
    if group.kind != ScimKind::Group || user_rows_follow_groups(tenant) {
        return Ok(None);
    }
    #[cfg(test)]
    if GENERAL_PATH_ONLY.get() {
        return Ok(None);
    }
    // By id, the last mention winning, as the general path's one upsert after another.
    let mut users: BTreeMap<String, ScimMember> = BTreeMap::new();
    for op in operations {
        let Some(MemberOp::Add(members)) = member_op(op) else {
            return Ok(None);
        };
        for member in members {
            if member.kind == Some(ScimKind::Group)
                || !resource_exists(tx.conn(), tx.tenant(), ScimKind::User, &member.id)?
            {
                return Ok(None);
            }
            users.insert(
                member.id.clone(),
                ScimMember {
                    id: member.id,
                    kind: ScimKind::User,
                    display: member.display,
                },
            );
        }
    }
    Ok(Some(users.into_values().collect()))
}

/// Adds `users` to `group` and appends the memberships they gain. A user's row cannot
/// change by gaining a group (see [`users_added_only`]), nor can a group's: the only changes
/// are memberships, in the group and, with nested groups flattened, every group above it —
/// those of them policy keeps (stored) for the users it keeps, that are not stored already.
fn add_users(
    tx: &mut PushTx<'_>,
    tenant: &TenantConfig,
    group: &str,
    users: &[ScimMember],
    request_id: i64,
) -> Result<Option<(u64, u64)>, WriteError> {
    let mut gained = BTreeSet::new();
    for user in users {
        if tx.add_new_member(group, user)? {
            gained.insert(user.id.clone());
        }
    }
    if gained.is_empty() {
        return Ok(None);
    }
    let conn_tenant = tx.tenant().to_owned();
    let groups = if tenant.source.nested_groups() == NestedGroups::Flatten {
        with_ancestors(tx.conn(), &conn_tenant, [group.to_owned()])?
    } else {
        BTreeSet::from([group.to_owned()])
    };
    let before = load_stored_part(tx.conn(), &conn_tenant, &gained, &groups)?;
    let mut after = before.clone();
    for group in before.groups.keys() {
        after
            .members
            .entry(group.clone())
            .or_default()
            .extend(before.users.keys().cloned());
    }
    let changes = diff::diff(&before, &after);
    Ok(tx.append(&before, &after, &changes, request_id)?)
}

/// Policy and the diff over the part of the directory the write touched; appends the
/// events. Returns their seqs.
fn recompute(
    tx: &mut PushTx<'_>,
    tenant: &TenantConfig,
    push: &ScimPushConfig,
    mut touched: Touched,
    request_id: i64,
) -> Result<Option<(u64, u64)>, WriteError> {
    let conn_tenant = tx.tenant().to_owned();
    let nested = tenant.source.nested_groups() == NestedGroups::Flatten;
    {
        let conn = tx.conn();
        // A member group's users gained or lost every group above it.
        if nested {
            for group in &touched.member_groups {
                touched
                    .users
                    .extend(member_users(conn, &conn_tenant, group, true)?);
            }
        }
        // A renamed group's members may be judged differently by policy naming groups.
        let names_groups = !tenant.filters.groups.is_empty() || !tenant.roles.by_group.is_empty();
        if names_groups {
            for group in &touched.renamed {
                touched
                    .users
                    .extend(member_users(conn, &conn_tenant, group, nested)?);
            }
        }
    }
    let conn = tx.conn();
    let users = touched.users;
    // A user whose row depends on its groups (roles, a group-members scope) is judged with
    // every group it is in; so is one that may have lost a membership. One that only gained
    // members of some groups, under a policy that does not look at groups, can only gain
    // memberships of those groups and their ancestors: only they are read.
    let mut context = if touched.full_context || user_rows_follow_groups(tenant) {
        let mut direct_groups: BTreeSet<String> = touched.groups.clone();
        for user in &users {
            direct_groups.extend(groups_of_member(conn, &conn_tenant, user)?);
        }
        let mut context = if nested {
            with_ancestors(conn, &conn_tenant, direct_groups)?
        } else {
            direct_groups
        };
        context.extend(stored_groups_of_users(conn, &conn_tenant, &users)?);
        context
    } else {
        let targets = touched.groups.iter().chain(touched.gained.iter()).cloned();
        let mut context = if nested {
            with_ancestors(conn, &conn_tenant, targets)?
        } else {
            targets.collect()
        };
        // A member group's users reach the groups above it through it and the groups below
        // it: those paths must be in the part policy sees.
        if nested {
            for group in &touched.member_groups {
                context.extend(member_groups_below(conn, &conn_tenant, group)?);
            }
        }
        context
    };
    context.extend(touched.groups.iter().cloned());

    let mut fetched = Fetched {
        source: crate::event::SourceKind::ScimPush,
        users: Vec::new(),
        groups: Vec::new(),
        members: BTreeMap::new(),
    };
    for user in &users {
        if let Some(row) = get_resource(conn, &conn_tenant, ScimKind::User, user)? {
            let fetched_user =
                scim_push::user_of(&row, push.email_from).map_err(ScimError::invalid_value)?;
            fetched.users.push(fetched_user);
        }
    }
    let mut existing_groups = BTreeSet::new();
    for group in &context {
        if let Some(row) = get_resource(conn, &conn_tenant, ScimKind::Group, group)? {
            fetched
                .groups
                .push(scim_push::group_of(&row).map_err(ScimError::invalid_value)?);
            fetched.members.insert(Id::from(group.as_str()), Vec::new());
            existing_groups.insert(group.clone());
        }
    }
    // Only the edges into the touched part: from each of its users and groups up.
    for (member, kind) in users
        .iter()
        .map(|id| (id, ScimKind::User))
        .chain(existing_groups.iter().map(|id| (id, ScimKind::Group)))
    {
        for parent in groups_of_member(conn, &conn_tenant, member)? {
            if let Some(list) = fetched.members.get_mut(parent.as_str()) {
                list.push(match kind {
                    ScimKind::User => MemberRef::User(Id::from(member.as_str())),
                    ScimKind::Group => MemberRef::Group(Id::from(member.as_str())),
                });
            }
        }
    }

    let applied = policy::apply(fetched, tenant);
    let before = load_stored_part(conn, &conn_tenant, &users, &context)?;
    let mut after = applied.snapshot;
    after.prune_dangling_memberships();
    let changes = diff::diff(&before, &after);
    // The stored counts cost a scan: only a write deleting more than `min_deletes` needs them.
    let deletions = crate::diff::deletion_counts(&changes);
    let may_trip = deletions.users.max(deletions.groups) as u64 > tenant.guard.min_deletes;
    let refusal = if may_trip {
        let (users, groups) = stored_user_and_group_counts(conn, &conn_tenant)?;
        guard_refuses(&changes, StoredCounts { users, groups }, &tenant.guard)
    } else {
        None
    };
    if let Some(refusal) = refusal {
        return Err(WriteError::Scim(ScimError {
            status: 409,
            scim_type: None,
            detail: format!(
                "the deletion guard refused this write: it would delete {} of {} users and {} of {} groups (max_delete_percent = {}, min_deletes = {} in [guard]); an operator can raise the limits",
                refusal.deletions.users,
                refusal.stored.users,
                refusal.deletions.groups,
                refusal.stored.groups,
                refusal.max_percent,
                refusal.min_deletes
            ),
        }));
    }
    let exclusions = exclusions_of(applied.excluded_users, applied.excluded_groups);
    let seqs = tx.append(&before, &after, &changes, request_id)?;
    // Only the touched users and groups can change exclusion: an untouched group of the
    // context keeps its name, so the group filter judges it as before.
    let ids: BTreeSet<String> = users.iter().chain(touched.groups.iter()).cloned().collect();
    tx.write_exclusions(&ids, &exclusions, request_id)?;
    Ok(seqs)
}

/// `group` and every group below it (members of members), cycles included.
fn member_groups_below(
    conn: &crate::store::Connection,
    tenant: &str,
    group: &str,
) -> Result<BTreeSet<String>, StoreError> {
    let mut seen = BTreeSet::from([group.to_owned()]);
    let mut stack = vec![group.to_owned()];
    while let Some(current) = stack.pop() {
        for member in members_of(conn, tenant, &current)? {
            if member.kind == ScimKind::Group && seen.insert(member.id.clone()) {
                stack.push(member.id);
            }
        }
    }
    Ok(seen)
}

#[cfg(test)]
thread_local! {
    /// Set, every write takes the general path: tests compare it with [`add_users`].
    pub static GENERAL_PATH_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Set, the next ids [`new_id`] gives count up from it: two stores given the same
    /// writes give their resources the same ids.
    pub static NEXT_ID: std::cell::Cell<Option<u128>> = const { std::cell::Cell::new(None) };
}

/// A new resource id: 128 random-looking bits in the UUID text form IdPs expect.
pub fn new_id() -> String {
    let bits = ulid::Ulid::new().0;
    #[cfg(test)]
    let bits = match NEXT_ID.get() {
        Some(next) => {
            NEXT_ID.set(Some(next + 1));
            next
        }
        None => bits,
    };
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
