//! A push tenant's directory as a source: what its IdP provisioned, read from the store. A
//! run of a push tenant (forced, or after a reload changed its policy) applies policy to the
//! whole pushed directory; a push write applies it to the part the write touched. Both turn
//! stored SCIM resources into fetched users and groups here, the same way a SCIM pull does.

use std::collections::BTreeMap;

use serde_json::Value;

use super::scim::normalize;
use super::{Fetched, FetchedUser, MemberRef, SourceError};
use crate::config::EmailFrom;
use crate::event::SourceKind;
use crate::model::{Group, Id};
use crate::store::push::{load_pushed_directory, ScimKind, ScimMember, ScimRow};
use crate::store::Store;

/// The resource of a stored row, with its `id`, as a SCIM pull would have listed it.
fn resource_of(row: &ScimRow) -> Value {
    let mut resource = match serde_json::from_str(&row.data) {
        Ok(Value::Object(data)) => data,
        _ => serde_json::Map::new(),
    };
    resource.insert("id".into(), Value::from(row.id.clone()));
    Value::Object(resource)
}

/// A pushed user as a fetched one; `email_from` picks its `email`.
pub fn user_of(row: &ScimRow, email_from: EmailFrom) -> Result<FetchedUser, String> {
    let resource = resource_of(row);
    let mut fetched = normalize::user(&resource).map_err(|bad| bad.0)?;
    if email_from == EmailFrom::UserName {
        let user_name = fetched.user.username.to_lowercase();
        if user_name.contains('@') {
            fetched.user.email = user_name;
        }
    }
    Ok(fetched)
}

pub fn group_of(row: &ScimRow) -> Result<Group, String> {
    normalize::group(&resource_of(row)).map_err(|bad| bad.0)
}

pub fn member_ref(member: &ScimMember) -> MemberRef {
    match member.kind {
        ScimKind::User => MemberRef::User(Id::from(member.id.as_str())),
        ScimKind::Group => MemberRef::Group(Id::from(member.id.as_str())),
    }
}

/// The whole pushed directory of `tenant`.
pub async fn fetch(
    store: &Store,
    tenant: &str,
    email_from: EmailFrom,
) -> Result<Fetched, SourceError> {
    let tenant_id = tenant.to_owned();
    let directory = store
        .run(move |conn| load_pushed_directory(conn, &tenant_id))
        .await
        .map_err(|err| SourceError::Protocol(format!("cannot read the pushed directory: {err}")))?;
    let mut fetched = Fetched {
        source: SourceKind::ScimPush,
        users: Vec::with_capacity(directory.users.len()),
        groups: Vec::with_capacity(directory.groups.len()),
        members: BTreeMap::new(),
    };
    for row in &directory.users {
        fetched.users.push(user_of(row, email_from).map_err(|err| {
            SourceError::Protocol(format!("stored pushed user {} of {tenant}: {err}", row.id))
        })?);
    }
    for row in &directory.groups {
        fetched.groups.push(group_of(row).map_err(|err| {
            SourceError::Protocol(format!("stored pushed group {} of {tenant}: {err}", row.id))
        })?);
        let members = directory
            .members
            .get(&row.id)
            .map(|members| members.iter().map(member_ref).collect())
            .unwrap_or_default();
        fetched.members.insert(Id::from(row.id.as_str()), members);
    }
    Ok(fetched)
}
