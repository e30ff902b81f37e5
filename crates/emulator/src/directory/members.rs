//! Memberships: member kinds and roles, the direct-member record, resolving a member key (user,
//! group, external address or the customer), the rules of members.insert/update/delete and
//! hasMember (nested groups included), the reverse index from a member to its groups, and the
//! etag bumps a user change causes in the groups it belongs to.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::*;
use crate::error::ApiError;

/// A direct member's kind; externals are users outside the directory, shown as `USER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberType {
    User,
    Group,
    Customer,
    External,
}

impl MemberType {
    pub fn api_name(self) -> &'static str {
        match self {
            Self::User | Self::External => "USER",
            Self::Group => "GROUP",
            Self::Customer => "CUSTOMER",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Owner,
    Manager,
    Member,
}

impl Role {
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Owner => "OWNER",
            Self::Manager => "MANAGER",
            Self::Member => "MEMBER",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_uppercase().as_str() {
            "OWNER" => Some(Self::Owner),
            "MANAGER" => Some(Self::Manager),
            "MEMBER" => Some(Self::Member),
            _ => None,
        }
    }
}

pub(super) const DELIVERY: [&str; 5] = ["ALL_MAIL", "DAILY", "DIGEST", "DISABLED", "NONE"];

#[derive(Debug, Clone)]
pub struct Member {
    pub id: Id,
    pub kind: MemberType,
    pub role: Role,
    pub delivery: u8,
    pub version: u64,
}

impl Member {
    pub fn delivery_settings(&self) -> &'static str {
        DELIVERY[usize::from(self.delivery) % DELIVERY.len()]
    }
}

/// What a member key resolved to.
#[derive(Debug, Clone)]
pub enum Resolved {
    User(Id),
    Group(Id),
    External(Id),
    Customer,
}

impl Directory {
    /// Anything that can be a member: user, group, known external, the customer.
    pub fn resolve_member(&self, key: &str) -> Option<Resolved> {
        if let Some(id) = self.resolve_user(key) {
            return Some(Resolved::User(id));
        }
        if let Some(id) = self.resolve_group(key) {
            return Some(Resolved::Group(id));
        }
        if key.eq_ignore_ascii_case(&self.customer_id) {
            return Some(Resolved::Customer);
        }
        if let Some((id, _)) = self.externals.get_key_value(key) {
            return Some(Resolved::External(id.clone()));
        }
        self.external_keys
            .get(&lower(key))
            .map(|id| Resolved::External(id.clone()))
    }

    /// The email a member shows: the user's or group's current one, none for the customer.
    pub fn member_email(&self, member: &Member) -> Option<&str> {
        match member.kind {
            MemberType::User => self.users.get(&member.id).map(User::primary_email),
            MemberType::Group => self.groups.get(&member.id).map(Group::email),
            MemberType::External => self.externals.get(&member.id).map(String::as_str),
            MemberType::Customer => None,
        }
    }

    /// `status` of a member: users ACTIVE/SUSPENDED, groups ACTIVE; absent for externals and
    /// the customer, as Google has been observed to do.
    pub fn member_status(&self, member: &Member) -> Option<&'static str> {
        match member.kind {
            MemberType::User => self.users.get(&member.id).map(|user| {
                if user.flag("suspended") {
                    "SUSPENDED"
                } else {
                    "ACTIVE"
                }
            }),
            MemberType::Group => Some("ACTIVE"),
            MemberType::External | MemberType::Customer => None,
        }
    }

    /// Groups that `member` is a direct member of.
    pub fn groups_of(&self, member: &str) -> impl Iterator<Item = &Id> {
        self.member_of.get(member).into_iter().flatten()
    }

    /// True when `member` is in `group` directly or through nested groups.
    pub fn has_member(&self, group: &str, member: &str) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![group.to_owned()];
        while let Some(current) = stack.pop() {
            if !seen.insert(current.clone()) {
                continue;
            }
            let Some(group) = self.groups.get(current.as_str()) else {
                continue;
            };
            if group.members.contains_key(member) {
                return true;
            }
            stack.extend(
                group
                    .members
                    .values()
                    .filter(|m| m.kind == MemberType::Group)
                    .map(|m| m.id.to_string()),
            );
        }
        false
    }

    /// Direct and derived members of a group (nested groups expanded, each member once, the
    /// closest role kept), by member id.
    pub fn derived_members(&self, group: &str) -> BTreeMap<Id, Member> {
        let mut out: BTreeMap<Id, Member> = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut queue = std::collections::VecDeque::from([group.to_owned()]);
        while let Some(current) = queue.pop_front() {
            if !seen.insert(current.clone()) {
                continue;
            }
            let Some(group) = self.groups.get(current.as_str()) else {
                continue;
            };
            for member in group.members.values() {
                out.entry(member.id.clone())
                    .or_insert_with(|| member.clone());
                if member.kind == MemberType::Group {
                    queue.push_back(member.id.to_string());
                }
            }
        }
        out
    }

    /// The id an external address has (registered on first use).
    pub(crate) fn external(&mut self, email: &str) -> Id {
        let key = lower(email);
        if let Some(id) = self.external_keys.get(&key) {
            return id.clone();
        }
        let id = self.external_id_for(&key);
        self.externals.insert(id.clone(), key.clone());
        self.external_keys.insert(key, id.clone());
        id
    }

    /// Adds a direct member without checks (the caller knows it is new and acyclic).
    pub(crate) fn add_member_raw(
        &mut self,
        group: &Id,
        id: Id,
        kind: MemberType,
        role: Role,
        delivery: u8,
    ) {
        let version = self.next_version();
        let Some(entry) = self.groups.get_mut(group) else {
            return;
        };
        let member = Member {
            id: id.clone(),
            kind,
            role,
            delivery,
            version,
        };
        if entry.members.insert(id.clone(), member).is_none()
            && matches!(kind, MemberType::User | MemberType::External)
        {
            entry.direct_users += 1;
        }
        self.member_of.entry(id).or_default().insert(group.clone());
    }

    /// A member's shown email or status changes with the user: bump the member etags.
    pub(super) fn bump_memberships_of(&mut self, member: &Id) {
        let groups: Vec<Id> = self.groups_of(member).cloned().collect();
        for group in groups {
            let version = self.next_version();
            if let Some(entry) = self
                .groups
                .get_mut(&group)
                .and_then(|g| g.members.get_mut(member))
            {
                entry.version = version;
            }
        }
    }

    pub(super) fn remove_from_all_groups(&mut self, member: &Id) {
        let groups = self.member_of.remove(member).unwrap_or_default();
        for group in groups {
            let version = self.next_version();
            if let Some(entry) = self.groups.get_mut(&group) {
                if let Some(removed) = entry.members.remove(member) {
                    if matches!(removed.kind, MemberType::User | MemberType::External) {
                        entry.direct_users -= 1;
                    }
                    entry.version = version;
                }
            }
        }
    }

    /// members.insert: `email` or `id` of a user, group or external address, or
    /// `type: CUSTOMER`; `role` defaults to MEMBER.
    pub fn insert_member(&mut self, group_key: &str, input: &Value) -> Result<Id, ApiError> {
        let group = self
            .resolve_group(group_key)
            .ok_or_else(|| ApiError::not_found("groupKey"))?;
        let object = input
            .as_object()
            .ok_or_else(|| ApiError::invalid_input("member"))?;
        let role = match object.get("role").and_then(Value::as_str) {
            Some(role) => Role::parse(role).ok_or_else(|| ApiError::invalid_input("role"))?,
            None => Role::Member,
        };
        let delivery = match object.get("delivery_settings").and_then(Value::as_str) {
            Some(value) => DELIVERY
                .iter()
                .position(|d| d.eq_ignore_ascii_case(value))
                .ok_or_else(|| ApiError::invalid_input("delivery_settings"))?,
            None => 0,
        };
        let delivery = u8::try_from(delivery).unwrap_or(0);
        let wants_customer = object
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("CUSTOMER"));
        let key = object
            .get("email")
            .or_else(|| object.get("id"))
            .and_then(Value::as_str);
        let (member, kind) = if wants_customer {
            (Id::from(self.customer_id.as_str()), MemberType::Customer)
        } else {
            let key = key.ok_or_else(|| {
                ApiError::new(400, "required", "Missing required field: memberKey")
            })?;
            match self.resolve_member(key) {
                Some(Resolved::User(id)) => (id, MemberType::User),
                Some(Resolved::Group(id)) => (id, MemberType::Group),
                Some(Resolved::External(id)) => (id, MemberType::External),
                Some(Resolved::Customer) => {
                    (Id::from(self.customer_id.as_str()), MemberType::Customer)
                }
                None => {
                    if !valid_email(key) || domain_of(&lower(key)) == self.domain {
                        return Err(ApiError::not_found("memberKey"));
                    }
                    (self.external(key), MemberType::External)
                }
            }
        };
        if self
            .groups
            .get(&group)
            .is_some_and(|g| g.members.contains_key(&member))
        {
            return Err(ApiError::duplicate("Member already exists."));
        }
        if kind == MemberType::Group && (member == group || self.has_member(&member, &group)) {
            return Err(ApiError::condition_not_met(
                "Cyclic memberships not allowed",
            ));
        }
        self.add_member_raw(&group, member.clone(), kind, role, delivery);
        if let Some(entry) = self.groups.get_mut(&group) {
            entry.version = self.version_counter;
        }
        Ok(member)
    }

    pub(super) fn member_in_group(
        &self,
        group_key: &str,
        member_key: &str,
    ) -> Result<(Id, Id), ApiError> {
        let group = self
            .resolve_group(group_key)
            .ok_or_else(|| ApiError::not_found("groupKey"))?;
        let member = match self.resolve_member(member_key) {
            Some(Resolved::User(id) | Resolved::Group(id) | Resolved::External(id)) => id,
            Some(Resolved::Customer) => Id::from(self.customer_id.as_str()),
            None => return Err(ApiError::not_found("memberKey")),
        };
        if !self
            .groups
            .get(&group)
            .is_some_and(|g| g.members.contains_key(&member))
        {
            return Err(ApiError::not_found("memberKey"));
        }
        Ok((group, member))
    }

    /// members.update / members.patch: `role` and `delivery_settings`.
    pub fn update_member(
        &mut self,
        group_key: &str,
        member_key: &str,
        patch: &Value,
    ) -> Result<(Id, Id), ApiError> {
        let (group, member) = self.member_in_group(group_key, member_key)?;
        let role = match patch.get("role").and_then(Value::as_str) {
            Some(role) => Some(Role::parse(role).ok_or_else(|| ApiError::invalid_input("role"))?),
            None => None,
        };
        let delivery = match patch.get("delivery_settings").and_then(Value::as_str) {
            Some(value) => Some(
                DELIVERY
                    .iter()
                    .position(|d| d.eq_ignore_ascii_case(value))
                    .ok_or_else(|| ApiError::invalid_input("delivery_settings"))?,
            ),
            None => None,
        };
        let version = self.next_version();
        if let Some(entry) = self
            .groups
            .get_mut(&group)
            .and_then(|g| g.members.get_mut(&member))
        {
            if let Some(role) = role {
                entry.role = role;
            }
            if let Some(delivery) = delivery {
                entry.delivery = u8::try_from(delivery).unwrap_or(0);
            }
            entry.version = version;
        }
        Ok((group, member))
    }

    /// members.delete.
    pub fn delete_member(&mut self, group_key: &str, member_key: &str) -> Result<(), ApiError> {
        let (group, member) = self.member_in_group(group_key, member_key)?;
        let version = self.next_version();
        if let Some(entry) = self.groups.get_mut(&group) {
            if let Some(removed) = entry.members.remove(&member) {
                if matches!(removed.kind, MemberType::User | MemberType::External) {
                    entry.direct_users -= 1;
                }
            }
            entry.version = version;
        }
        if let Some(groups) = self.member_of.get_mut(&member) {
            groups.remove(&group);
            if groups.is_empty() {
                self.member_of.remove(&member);
            }
        }
        Ok(())
    }
}
