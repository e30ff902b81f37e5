//! The emulated organisation, in memory: users (live and deleted), groups with their direct
//! members, org units, and the indexes that make every lookup and page cheap. It owns the write
//! rules (what an admin may change, and what that does to etags and memberships) shared by the
//! HTTP write methods, the library API, the generator and the fixture loader. It does no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::error::ApiError;

/// An immutable id shared by indexes, members and the reverse membership index.
pub type Id = Arc<str>;

/// The timestamp Google sends for "never logged in".
pub const NEVER: &str = "1970-01-01T00:00:00.000Z";

/// RFC 3339 with milliseconds and `Z`, the Directory API's timestamp format.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

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

const DELIVERY: [&str; 5] = ["ALL_MAIL", "DAILY", "DIGEST", "DISABLED", "NONE"];

/// A user. The body is kept as compact JSON (memory: 100k users must fit comfortably) with
/// the fields that lookups, queries and pages need decoded beside it.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Id,
    /// Bumped on every change; the etag is derived from it.
    pub version: u64,
    /// Every Google field except `kind`, `id`, `etag` and `customSchemas`, as a JSON object.
    core: Box<str>,
    /// `customSchemas` as a JSON object, when the user has any.
    custom: Option<Box<str>>,
    primary: Box<str>,
    aliases: Box<[Box<str>]>,
    given: Box<str>,
    family: Box<str>,
    full: Box<str>,
    org_unit: Box<str>,
    manager: Option<Box<str>>,
    flags: u8,
}

const SUSPENDED: u8 = 1;
const ARCHIVED: u8 = 2;
const ADMIN: u8 = 4;
const DELEGATED: u8 = 8;

impl User {
    /// Encodes a body (every field except `kind`, `id`, `etag`).
    pub fn new(id: Id, version: u64, mut body: Map<String, Value>) -> Self {
        let text =
            |v: Option<&Value>| -> Box<str> { v.and_then(Value::as_str).unwrap_or("").into() };
        let flag = |key: &str, bit: u8| {
            if body.get(key).and_then(Value::as_bool) == Some(true) {
                bit
            } else {
                0
            }
        };
        let flags = flag("suspended", SUSPENDED)
            | flag("archived", ARCHIVED)
            | flag("isAdmin", ADMIN)
            | flag("isDelegatedAdmin", DELEGATED);
        let name = body.get("name");
        let manager = body
            .get("relations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| r.get("type").and_then(Value::as_str) == Some("manager"))
            .and_then(|r| r.get("value").and_then(Value::as_str))
            .map(Box::from);
        let aliases = body
            .get("aliases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(Box::from)
            .collect();
        let primary = text(body.get("primaryEmail"));
        let given = text(name.and_then(|n| n.get("givenName")));
        let family = text(name.and_then(|n| n.get("familyName")));
        let full = text(name.and_then(|n| n.get("fullName")));
        let org_unit = text(body.get("orgUnitPath"));
        let custom = body
            .remove("customSchemas")
            .filter(|c| c.as_object().is_some_and(|c| !c.is_empty()))
            .map(|c| c.to_string().into_boxed_str());
        Self {
            id,
            version,
            core: Value::Object(body).to_string().into_boxed_str(),
            custom,
            primary,
            aliases,
            given,
            family,
            full,
            org_unit,
            manager,
            flags,
        }
    }

    /// The decoded body (every field except `kind`, `id`, `etag`).
    pub fn body(&self) -> Map<String, Value> {
        let mut body: Map<String, Value> = serde_json::from_str(&self.core).unwrap_or_default();
        if let Some(custom) = self.custom_schemas() {
            body.insert("customSchemas".into(), Value::Object(custom));
        }
        body
    }

    /// Changes the body; bumps nothing (the caller sets the version).
    pub fn modify(&mut self, version: u64, change: impl FnOnce(&mut Map<String, Value>)) {
        let mut body = self.body();
        change(&mut body);
        *self = Self::new(self.id.clone(), version, body);
    }

    /// The body without `customSchemas`, as JSON object text.
    pub fn core_json(&self) -> &str {
        &self.core
    }

    /// `customSchemas` as JSON object text.
    pub fn custom_json(&self) -> Option<&str> {
        self.custom.as_deref()
    }

    pub fn custom_schemas(&self) -> Option<Map<String, Value>> {
        self.custom
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
    }

    pub fn primary_email(&self) -> &str {
        &self.primary
    }
    pub fn flag(&self, name: &str) -> bool {
        let bit = match name {
            "suspended" => SUSPENDED,
            "archived" => ARCHIVED,
            "isAdmin" => ADMIN,
            "isDelegatedAdmin" => DELEGATED,
            _ => {
                return self
                    .body()
                    .get(name)
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            }
        };
        self.flags & bit != 0
    }
    pub fn org_unit(&self) -> &str {
        &self.org_unit
    }
    /// The manager's email (the first `relations` entry of type `manager`).
    pub fn manager(&self) -> Option<&str> {
        self.manager.as_deref()
    }
    pub fn name_part(&self, part: &str) -> &str {
        match part {
            "givenName" => &self.given,
            "familyName" => &self.family,
            _ => &self.full,
        }
    }
    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        self.aliases.iter().map(|a| &**a)
    }
    pub fn is_admin(&self) -> bool {
        self.flags & (ADMIN | DELEGATED) != 0
    }
}

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

#[derive(Debug, Clone)]
pub struct Group {
    pub id: Id,
    /// Every Google field except `kind`, `id`, `etag` and `directMembersCount`.
    pub body: Map<String, Value>,
    pub version: u64,
    /// Direct members by member id (the stable page order).
    pub members: BTreeMap<Id, Member>,
    /// Direct members that are users (directory or external): `directMembersCount`.
    pub direct_users: usize,
}

impl Group {
    pub fn email(&self) -> &str {
        self.body.get("email").and_then(Value::as_str).unwrap_or("")
    }
    pub fn name(&self) -> &str {
        self.body.get("name").and_then(Value::as_str).unwrap_or("")
    }
    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        self.body
            .get("aliases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }
}

#[derive(Debug, Clone)]
pub struct OrgUnit {
    pub id: String,
    pub path: String,
    pub name: String,
    pub description: String,
    pub parent_path: Option<String>,
    pub parent_id: Option<String>,
    pub version: u64,
}

/// Sizes of the directory, for logs, tests and `/_emulator/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DirectoryStats {
    pub users: usize,
    pub deleted_users: usize,
    pub suspended_users: usize,
    pub archived_users: usize,
    pub groups: usize,
    /// Direct members of every kind, summed over groups.
    pub memberships: usize,
    pub org_units: usize,
    /// The fewest members.list requests that list every group's direct members: pages of
    /// 200, at least one per group (benchmarks compare a sync's request count with it).
    pub member_pages: usize,
}

/// What a member key resolved to.
#[derive(Debug, Clone)]
pub enum Resolved {
    User(Id),
    Group(Id),
    External(Id),
    Customer,
}

#[derive(Debug)]
pub struct Directory {
    pub customer_id: String,
    pub domain: String,
    seed: u64,
    pub(crate) etag_prefix: String,
    version_counter: u64,
    id_counter: u64,
    login_cursor: u64,
    pub(crate) users: BTreeMap<Id, User>,
    pub(crate) deleted: BTreeMap<Id, User>,
    /// Lower-case primary emails and aliases of live users.
    user_keys: HashMap<String, Id>,
    /// Lower-case primary email → id, the order of `orderBy=email`.
    pub(crate) users_by_email: BTreeMap<String, Id>,
    pub(crate) groups: BTreeMap<Id, Group>,
    group_keys: HashMap<String, Id>,
    pub(crate) groups_by_email: BTreeMap<String, Id>,
    /// Member id → the groups it is a direct member of.
    member_of: HashMap<Id, BTreeSet<Id>>,
    externals: HashMap<Id, String>,
    external_keys: HashMap<String, Id>,
    /// Lower-case path → unit; the root `/` is implicit.
    pub(crate) org_units: BTreeMap<String, OrgUnit>,
}

/// splitmix64's finaliser: a cheap, well-mixed deterministic hash step.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a over a string, fed through [`mix64`].
pub fn hash_str(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    mix64(hash)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_of(a: u64, b: u64, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut state = a ^ b.rotate_left(17);
    let mut bits = a;
    for i in 0..len {
        if i % 10 == 0 && i > 0 {
            state = mix64(state);
            bits = state;
        }
        out.push(char::from(B64[(bits & 63) as usize]));
        bits >>= 6;
    }
    out
}

fn base36(mut value: u64, len: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; len];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value % 36) as usize];
        value /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn lower(text: &str) -> String {
    text.to_ascii_lowercase()
}

fn domain_of(email: &str) -> &str {
    email.rsplit_once('@').map_or("", |(_, domain)| domain)
}

fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !email.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Fields of a user an admin cannot set through users.insert/update/patch.
const USER_READ_ONLY: &[&str] = &[
    "kind",
    "id",
    "etag",
    "customerId",
    "creationTime",
    "lastLoginTime",
    "deletionTime",
    "nonEditableAliases",
    "isMailboxSetup",
    "isEnrolledIn2Sv",
    "isEnforcedIn2Sv",
    "thumbnailPhotoEtag",
    "suspensionTime",
    "archivalTime",
    "agreedToTerms",
    "password",
    "hashFunction",
];

const GROUP_WRITABLE: &[&str] = &["email", "name", "description", "aliases"];

impl Directory {
    /// An empty directory of one customer and primary domain.
    pub fn new(customer_id: &str, domain: &str, seed: u64) -> Self {
        let seed_hash = mix64(seed ^ 0x5eed);
        Self {
            customer_id: customer_id.to_owned(),
            domain: lower(domain),
            seed,
            etag_prefix: b64_of(seed_hash, mix64(seed_hash), 27),
            version_counter: 0,
            id_counter: 0,
            login_cursor: 0,
            users: BTreeMap::new(),
            deleted: BTreeMap::new(),
            user_keys: HashMap::new(),
            users_by_email: BTreeMap::new(),
            groups: BTreeMap::new(),
            group_keys: HashMap::new(),
            groups_by_email: BTreeMap::new(),
            member_of: HashMap::new(),
            externals: HashMap::new(),
            external_keys: HashMap::new(),
            org_units: BTreeMap::new(),
        }
    }

    /// A customer id such as `C0abc1234`, derived from a seed.
    pub fn customer_id_for_seed(seed: u64) -> String {
        format!("C0{}", base36(mix64(seed ^ 0xC057) % 36u64.pow(7), 7))
    }

    pub(crate) fn next_version(&mut self) -> u64 {
        self.version_counter += 1;
        self.version_counter
    }

    /// The quoted etag of an object at a version: it changes whenever the object does.
    pub fn etag(&self, id: &str, version: u64) -> String {
        let h = mix64(hash_str(id) ^ version.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ self.seed);
        format!("\"{}/{}\"", self.etag_prefix, b64_of(h, mix64(h), 27))
    }

    /// The etag of a member, which depends on the group too.
    pub fn member_etag(&self, group: &str, member: &Member) -> String {
        let h = mix64(hash_str(group) ^ hash_str(&member.id) ^ member.version);
        format!("\"{}/{}\"", self.etag_prefix, b64_of(h, mix64(h), 27))
    }

    pub(crate) fn new_user_id(&mut self) -> Id {
        loop {
            self.id_counter += 1;
            let h = mix64(self.seed.wrapping_mul(0x1000_0001) ^ mix64(self.id_counter));
            let id: Id = format!("1{:020}", h % 10_000_000_000_000_000_000).into();
            if !self.users.contains_key(&id)
                && !self.deleted.contains_key(&id)
                && !self.externals.contains_key(&id)
            {
                return id;
            }
        }
    }

    pub(crate) fn new_group_id(&mut self) -> Id {
        loop {
            self.id_counter += 1;
            let h = mix64(self.seed.wrapping_mul(0x2000_0003) ^ mix64(self.id_counter));
            let prefix = ["00", "01", "02", "03", "04"][(h % 5) as usize];
            let id: Id = format!("{prefix}{}", base36(h / 5, 13)).into();
            if !self.groups.contains_key(&id) {
                return id;
            }
        }
    }

    fn external_id_for(&self, email: &str) -> Id {
        let mut attempt = 0u64;
        loop {
            let h = mix64(hash_str(email) ^ attempt);
            let id: Id = format!("1{:020}", h % 10_000_000_000_000_000_000).into();
            if !self.users.contains_key(&id) && !self.deleted.contains_key(&id) {
                return id;
            }
            attempt += 1;
        }
    }

    // ----- lookups -------------------------------------------------------------------------

    /// A live user by id, primary email or alias (case-insensitive).
    pub fn resolve_user(&self, key: &str) -> Option<Id> {
        if let Some((id, _)) = self.users.get_key_value(key) {
            return Some(id.clone());
        }
        self.user_keys.get(&lower(key)).cloned()
    }

    /// A group by id, email or alias (case-insensitive).
    pub fn resolve_group(&self, key: &str) -> Option<Id> {
        if let Some((id, _)) = self.groups.get_key_value(key) {
            return Some(id.clone());
        }
        self.group_keys.get(&lower(key)).cloned()
    }

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

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
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

    pub fn is_admin(&self, key: &str) -> bool {
        self.resolve_user(key)
            .and_then(|id| self.users.get(&id))
            .is_some_and(User::is_admin)
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

    pub fn stats(&self) -> DirectoryStats {
        DirectoryStats {
            users: self.users.len(),
            deleted_users: self.deleted.len(),
            suspended_users: self.users.values().filter(|u| u.flag("suspended")).count(),
            archived_users: self.users.values().filter(|u| u.flag("archived")).count(),
            groups: self.groups.len(),
            memberships: self.groups.values().map(|g| g.members.len()).sum(),
            org_units: self.org_units.len(),
            member_pages: self
                .groups
                .values()
                .map(|g| g.members.len().div_ceil(200).max(1))
                .sum(),
        }
    }

    pub fn org_unit(&self, path_or_id: &str) -> Option<&OrgUnit> {
        let key = normalise_ou_path(path_or_id);
        self.org_units.get(&lower(&key)).or_else(|| {
            let id = path_or_id.trim_start_matches('/');
            let id = id.strip_prefix("id:").unwrap_or(id);
            self.org_units
                .values()
                .find(|ou| ou.id.strip_prefix("id:") == Some(id))
        })
    }

    fn root_ou_id(&self) -> String {
        format!("id:{}", base36(mix64(self.seed ^ 0x0_0007), 13))
    }

    // ----- raw building (generator, fixture) -----------------------------------------------

    /// Adds an org unit and its missing parents; returns its canonical path.
    pub fn add_org_unit(&mut self, path: &str, description: &str) -> Result<String, ApiError> {
        let path = normalise_ou_path(path);
        if path == "/" {
            return Ok(path);
        }
        if path.split('/').skip(1).any(str::is_empty) {
            return Err(ApiError::invalid_input("orgUnitPath"));
        }
        let mut parent_path = "/".to_owned();
        let mut parent_id = self.root_ou_id();
        let mut current = String::new();
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        for (index, part) in parts.iter().enumerate() {
            current.push('/');
            current.push_str(part);
            let key = lower(&current);
            if let Some(existing) = self.org_units.get_mut(&key) {
                if index + 1 == parts.len() && !description.is_empty() {
                    existing.description = description.to_owned();
                }
                parent_path = existing.path.clone();
                parent_id = existing.id.clone();
                continue;
            }
            let version = self.next_version();
            let id = format!(
                "id:03{}",
                base36(mix64(hash_str(&key) ^ self.seed) % 36u64.pow(11), 11)
            );
            let unit = OrgUnit {
                id: id.clone(),
                path: current.clone(),
                name: (*part).to_owned(),
                description: if index + 1 == parts.len() {
                    description.to_owned()
                } else {
                    String::new()
                },
                parent_path: Some(parent_path.clone()),
                parent_id: Some(parent_id.clone()),
                version,
            };
            self.org_units.insert(key, unit);
            parent_path = current.clone();
            parent_id = id;
        }
        Ok(current)
    }

    /// Inserts a prepared user body (already normalised), indexing it. Used by the generator
    /// and by [`Directory::insert_user`].
    pub(crate) fn add_user_body(&mut self, id: Option<Id>, mut body: Map<String, Value>) -> Id {
        let id = id.unwrap_or_else(|| self.new_user_id());
        normalise_user_emails(&mut body);
        let version = self.next_version();
        let user = User::new(id.clone(), version, body);
        self.index_user(&user);
        self.users.insert(id.clone(), user);
        id
    }

    fn index_user(&mut self, user: &User) {
        let primary = lower(user.primary_email());
        self.users_by_email.insert(primary.clone(), user.id.clone());
        self.user_keys.insert(primary, user.id.clone());
        for alias in user.aliases() {
            self.user_keys.insert(lower(alias), user.id.clone());
        }
    }

    fn unindex_user(&mut self, user: &User) {
        let primary = lower(user.primary_email());
        self.users_by_email.remove(&primary);
        self.user_keys.remove(&primary);
        let aliases: Vec<String> = user.aliases().map(lower).collect();
        for alias in aliases {
            self.user_keys.remove(&alias);
        }
    }

    pub(crate) fn add_deleted_user(&mut self, id: Option<Id>, mut body: Map<String, Value>) -> Id {
        let id = id.unwrap_or_else(|| self.new_user_id());
        normalise_user_emails(&mut body);
        let version = self.next_version();
        self.deleted
            .insert(id.clone(), User::new(id.clone(), version, body));
        id
    }

    pub(crate) fn add_group_body(&mut self, id: Option<Id>, body: Map<String, Value>) -> Id {
        let id = id.unwrap_or_else(|| self.new_group_id());
        let version = self.next_version();
        let group = Group {
            id: id.clone(),
            body,
            version,
            members: BTreeMap::new(),
            direct_users: 0,
        };
        self.index_group(&group);
        self.groups.insert(id.clone(), group);
        id
    }

    fn index_group(&mut self, group: &Group) {
        let email = lower(group.email());
        self.groups_by_email.insert(email.clone(), group.id.clone());
        self.group_keys.insert(email, group.id.clone());
        for alias in group.aliases() {
            self.group_keys.insert(lower(alias), group.id.clone());
        }
    }

    fn unindex_group(&mut self, group: &Group) {
        let email = lower(group.email());
        self.groups_by_email.remove(&email);
        self.group_keys.remove(&email);
        let aliases: Vec<String> = group.aliases().map(lower).collect();
        for alias in aliases {
            self.group_keys.remove(&alias);
        }
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

    // ----- admin writes (HTTP write methods and the library API) ---------------------------

    fn email_taken(&self, email: &str) -> bool {
        let key = lower(email);
        self.user_keys.contains_key(&key) || self.group_keys.contains_key(&key)
    }

    fn check_new_email(&self, email: &str, field: &str) -> Result<(), ApiError> {
        if !valid_email(email) {
            return Err(ApiError::invalid_input(field));
        }
        if domain_of(&lower(email)) != self.domain {
            return Err(ApiError::new(400, "notFound", "Domain not found."));
        }
        if self.email_taken(email) {
            return Err(ApiError::duplicate("Entity already exists."));
        }
        Ok(())
    }

    /// users.insert: a new user from a Google `User` object. Needs `primaryEmail` and
    /// `name.givenName`/`name.familyName`; read-only fields are ignored.
    pub fn insert_user(&mut self, input: &Value, now: DateTime<Utc>) -> Result<Id, ApiError> {
        let object = input
            .as_object()
            .ok_or_else(|| ApiError::invalid_input("user"))?;
        let email = object
            .get("primaryEmail")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::new(400, "required", "Required"))?
            .to_owned();
        self.check_new_email(&email, "primary_user_email")?;
        let given = object.get("name").and_then(|n| n.get("givenName"));
        let family = object.get("name").and_then(|n| n.get("familyName"));
        if !given.is_some_and(Value::is_string) || !family.is_some_and(Value::is_string) {
            return Err(ApiError::new(400, "required", "Required"));
        }
        let mut body = Map::new();
        body.insert("primaryEmail".into(), json!(email));
        body.insert("isAdmin".into(), json!(false));
        body.insert("isDelegatedAdmin".into(), json!(false));
        body.insert("lastLoginTime".into(), json!(NEVER));
        body.insert("creationTime".into(), json!(timestamp(now)));
        body.insert("agreedToTerms".into(), json!(false));
        body.insert("suspended".into(), json!(false));
        body.insert("archived".into(), json!(false));
        body.insert("changePasswordAtNextLogin".into(), json!(false));
        body.insert("ipWhitelisted".into(), json!(false));
        body.insert("customerId".into(), json!(self.customer_id));
        body.insert("orgUnitPath".into(), json!("/"));
        body.insert("isMailboxSetup".into(), json!(true));
        body.insert("isEnrolledIn2Sv".into(), json!(false));
        body.insert("isEnforcedIn2Sv".into(), json!(false));
        body.insert("includeInGlobalAddressList".into(), json!(true));
        body.insert(
            "nonEditableAliases".into(),
            json!([format!("{}.test-google-a.com", lower(&email))]),
        );
        let id = self.new_user_id();
        self.apply_user_patch(&id, &mut body, object, now)?;
        self.add_user_body(Some(id.clone()), body);
        Ok(id)
    }

    /// Applies patch semantics to a user body: present fields replace, `null` clears.
    fn apply_user_patch(
        &mut self,
        id: &str,
        body: &mut Map<String, Value>,
        patch: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        for (key, value) in patch {
            if USER_READ_ONLY.contains(&key.as_str()) {
                continue;
            }
            match key.as_str() {
                "primaryEmail" => {
                    let email = value
                        .as_str()
                        .ok_or_else(|| ApiError::invalid_input("primary_user_email"))?;
                    let current = body.get("primaryEmail").and_then(Value::as_str);
                    if current.is_some_and(|c| c.eq_ignore_ascii_case(email)) {
                        body.insert(key.clone(), json!(email));
                        continue;
                    }
                    let owner = self.user_keys.get(&lower(email));
                    if owner.is_some_and(|owner| &**owner == id) {
                        // Promoting an own alias to primary is allowed.
                    } else {
                        self.check_new_email(email, "primary_user_email")?;
                    }
                    // Google keeps a renamed user's old address as an alias.
                    if let Some(old) = current.map(str::to_owned) {
                        let mut aliases: Vec<Value> = body
                            .get("aliases")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        aliases.retain(|alias| {
                            !alias
                                .as_str()
                                .is_some_and(|a| a.eq_ignore_ascii_case(email))
                        });
                        if !aliases.iter().any(|alias| {
                            alias.as_str().is_some_and(|a| a.eq_ignore_ascii_case(&old))
                        }) {
                            aliases.push(json!(old));
                        }
                        body.insert("aliases".into(), Value::Array(aliases));
                    }
                    body.insert(key.clone(), json!(email));
                }
                "orgUnitPath" => {
                    let path = value
                        .as_str()
                        .ok_or_else(|| ApiError::invalid_input("INVALID_OU_ID"))?;
                    let canonical = if normalise_ou_path(path) == "/" {
                        "/".to_owned()
                    } else {
                        self.org_unit(path)
                            .ok_or_else(|| ApiError::invalid_input("INVALID_OU_ID"))?
                            .path
                            .clone()
                    };
                    body.insert(key.clone(), json!(canonical));
                }
                "name" => {
                    let mut name = body
                        .get("name")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    if let Some(parts) = value.as_object() {
                        for (part, text) in parts {
                            if part == "fullName" {
                                continue;
                            }
                            if text.is_null() {
                                name.remove(part);
                            } else {
                                name.insert(part.clone(), text.clone());
                            }
                        }
                    }
                    let given = name.get("givenName").and_then(Value::as_str).unwrap_or("");
                    let family = name.get("familyName").and_then(Value::as_str).unwrap_or("");
                    let full = format!("{given} {family}").trim().to_owned();
                    name.insert("fullName".into(), json!(full));
                    body.insert("name".into(), Value::Object(name));
                }
                "aliases" => {
                    let list: Vec<String> = value
                        .as_array()
                        .map(|items| {
                            items
                                .iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default();
                    for alias in &list {
                        let owner = self.user_keys.get(&lower(alias));
                        if owner.is_none_or(|owner| &**owner != id) {
                            self.check_new_email(alias, "alias")?;
                        }
                    }
                    if list.is_empty() {
                        body.remove("aliases");
                    } else {
                        body.insert("aliases".into(), json!(list));
                    }
                }
                "suspended" => {
                    let suspended = value.as_bool().unwrap_or(false);
                    let was = body.get("suspended").and_then(Value::as_bool) == Some(true);
                    body.insert(key.clone(), json!(suspended));
                    if suspended && !was {
                        let reason = patch
                            .get("suspensionReason")
                            .and_then(Value::as_str)
                            .unwrap_or("ADMIN");
                        body.insert("suspensionReason".into(), json!(reason));
                        body.insert("suspensionTime".into(), json!(timestamp(now)));
                    } else if !suspended {
                        body.remove("suspensionReason");
                        body.remove("suspensionTime");
                    }
                }
                "suspensionReason" => {}
                "archived" => {
                    let archived = value.as_bool().unwrap_or(false);
                    let was = body.get("archived").and_then(Value::as_bool) == Some(true);
                    body.insert(key.clone(), json!(archived));
                    if archived && !was {
                        body.insert("archivalTime".into(), json!(timestamp(now)));
                    } else if !archived {
                        body.remove("archivalTime");
                    }
                }
                "customSchemas" => {
                    let mut schemas = body
                        .get("customSchemas")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    if let Some(incoming) = value.as_object() {
                        for (schema, fields) in incoming {
                            match fields.as_object() {
                                Some(fields) => {
                                    let entry =
                                        schemas.entry(schema.clone()).or_insert_with(|| json!({}));
                                    if let Some(entry) = entry.as_object_mut() {
                                        for (field, v) in fields {
                                            if v.is_null() {
                                                entry.remove(field);
                                            } else {
                                                entry.insert(field.clone(), v.clone());
                                            }
                                        }
                                    }
                                }
                                None => {
                                    schemas.remove(schema);
                                }
                            }
                        }
                    } else if value.is_null() {
                        schemas.clear();
                    }
                    schemas.retain(|_, fields| fields.as_object().is_some_and(|f| !f.is_empty()));
                    if schemas.is_empty() {
                        body.remove("customSchemas");
                    } else {
                        body.insert("customSchemas".into(), Value::Object(schemas));
                    }
                }
                _ => {
                    if value.is_null() {
                        body.remove(key);
                    } else {
                        body.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// users.update / users.patch (both have patch semantics in Google's API).
    pub fn update_user(
        &mut self,
        key: &str,
        patch: &Value,
        now: DateTime<Utc>,
    ) -> Result<Id, ApiError> {
        let id = self
            .resolve_user(key)
            .ok_or_else(|| self.user_key_error(key))?;
        let patch = patch
            .as_object()
            .ok_or_else(|| ApiError::invalid_input("user"))?;
        let Some(old) = self.users.remove(&id) else {
            return Err(ApiError::not_found("userKey"));
        };
        self.unindex_user(&old);
        let mut body = old.body();
        if let Err(err) = self.apply_user_patch(&id, &mut body, patch, now) {
            self.index_user(&old);
            self.users.insert(id.clone(), old);
            return Err(err);
        }
        normalise_user_emails(&mut body);
        let version = self.next_version();
        let user = User::new(id.clone(), version, body);
        self.index_user(&user);
        self.users.insert(id.clone(), user);
        self.bump_memberships_of(&id);
        Ok(id)
    }

    fn user_key_error(&self, key: &str) -> ApiError {
        if self.resolve_group(key).is_some() {
            ApiError::new(400, "badRequest", "Type not supported: userKey")
        } else {
            ApiError::not_found("userKey")
        }
    }

    /// A member's shown email or status changes with the user: bump the member etags.
    fn bump_memberships_of(&mut self, member: &Id) {
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

    /// users.delete: the user moves to the deleted list (`showDeleted=true`) and leaves
    /// every group.
    pub fn delete_user(&mut self, key: &str, now: DateTime<Utc>) -> Result<Id, ApiError> {
        let id = self
            .resolve_user(key)
            .ok_or_else(|| self.user_key_error(key))?;
        let Some(mut user) = self.users.remove(&id) else {
            return Err(ApiError::not_found("userKey"));
        };
        self.unindex_user(&user);
        self.remove_from_all_groups(&id);
        let version = self.next_version();
        user.modify(version, |body| {
            body.insert("deletionTime".into(), json!(timestamp(now)));
        });
        self.deleted.insert(id.clone(), user);
        Ok(id)
    }

    /// users.undelete: a deleted user (by id) comes back, without its old memberships.
    pub fn undelete_user(&mut self, id: &str) -> Result<Id, ApiError> {
        let Some(mut user) = self.deleted.remove(id) else {
            return Err(ApiError::not_found("userKey"));
        };
        if self.email_taken(user.primary_email()) {
            self.deleted.insert(user.id.clone(), user);
            return Err(ApiError::duplicate("Entity already exists."));
        }
        let version = self.next_version();
        user.modify(version, |body| {
            body.remove("deletionTime");
        });
        let id = user.id.clone();
        self.index_user(&user);
        self.users.insert(id.clone(), user);
        Ok(id)
    }

    fn remove_from_all_groups(&mut self, member: &Id) {
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

    /// users.makeAdmin-like switch used by `--admin` and tests.
    pub fn set_admin(&mut self, key: &str, admin: bool) -> Result<Id, ApiError> {
        let id = self
            .resolve_user(key)
            .ok_or_else(|| ApiError::not_found("userKey"))?;
        let version = self.next_version();
        if let Some(user) = self.users.get_mut(&id) {
            user.modify(version, |body| {
                body.insert("isAdmin".into(), json!(admin));
            });
        }
        Ok(id)
    }

    /// groups.insert: needs `email`; `name` defaults to it, `description` to "".
    pub fn insert_group(&mut self, input: &Value) -> Result<Id, ApiError> {
        let object = input
            .as_object()
            .ok_or_else(|| ApiError::invalid_input("group"))?;
        let email = object
            .get("email")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::new(400, "required", "Missing required field: email"))?
            .to_owned();
        self.check_new_email(&email, "email")?;
        let mut body = Map::new();
        body.insert("email".into(), json!(email));
        body.insert(
            "name".into(),
            object.get("name").cloned().unwrap_or_else(|| json!(email)),
        );
        body.insert(
            "description".into(),
            object
                .get("description")
                .cloned()
                .unwrap_or_else(|| json!("")),
        );
        body.insert("adminCreated".into(), json!(true));
        if let Some(aliases) = object.get("aliases").and_then(Value::as_array) {
            for alias in aliases.iter().filter_map(Value::as_str) {
                self.check_new_email(alias, "alias")?;
            }
            if !aliases.is_empty() {
                body.insert("aliases".into(), json!(aliases));
            }
        }
        body.insert(
            "nonEditableAliases".into(),
            json!([format!("{}.test-google-a.com", lower(&email))]),
        );
        Ok(self.add_group_body(None, body))
    }

    /// groups.update / groups.patch: `email`, `name`, `description`, `aliases`.
    pub fn update_group(&mut self, key: &str, patch: &Value) -> Result<Id, ApiError> {
        let id = self
            .resolve_group(key)
            .ok_or_else(|| ApiError::not_found("groupKey"))?;
        let patch = patch
            .as_object()
            .ok_or_else(|| ApiError::invalid_input("group"))?;
        let Some(mut group) = self.groups.remove(&id) else {
            return Err(ApiError::not_found("groupKey"));
        };
        self.unindex_group(&group);
        let mut body = group.body.clone();
        let mut failure = None;
        for (field, value) in patch {
            if !GROUP_WRITABLE.contains(&field.as_str()) {
                continue;
            }
            if field == "email" || field == "aliases" {
                let wanted: Vec<&str> = match value {
                    Value::String(email) => vec![email.as_str()],
                    Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                for email in wanted {
                    let same = field == "email" && group.email().eq_ignore_ascii_case(email);
                    if !same && !group.aliases().any(|a| a.eq_ignore_ascii_case(email)) {
                        if let Err(err) = self.check_new_email(email, field) {
                            failure = Some(err);
                        }
                    }
                }
            }
            if value.is_null() || value.as_array().is_some_and(Vec::is_empty) {
                if field == "email" || field == "name" {
                    failure = Some(ApiError::invalid_input(field));
                } else if field == "description" {
                    body.insert(field.clone(), json!(""));
                } else {
                    body.remove(field);
                }
            } else {
                body.insert(field.clone(), value.clone());
            }
        }
        if let Some(err) = failure {
            self.index_group(&group);
            self.groups.insert(id, group);
            return Err(err);
        }
        group.body = body;
        group.version = self.next_version();
        self.index_group(&group);
        self.groups.insert(id.clone(), group);
        self.bump_memberships_of(&id);
        Ok(id)
    }

    /// groups.delete: the group and its memberships, in both directions, disappear.
    pub fn delete_group(&mut self, key: &str) -> Result<Id, ApiError> {
        let id = self
            .resolve_group(key)
            .ok_or_else(|| ApiError::not_found("groupKey"))?;
        let Some(group) = self.groups.remove(&id) else {
            return Err(ApiError::not_found("groupKey"));
        };
        self.unindex_group(&group);
        for member in group.members.keys() {
            if let Some(groups) = self.member_of.get_mut(member) {
                groups.remove(&id);
                if groups.is_empty() {
                    self.member_of.remove(member);
                }
            }
        }
        self.remove_from_all_groups(&id);
        Ok(id)
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

    fn member_in_group(&self, group_key: &str, member_key: &str) -> Result<(Id, Id), ApiError> {
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

    /// Simulates `count` users logging in at `now`: their volatile `lastLoginTime` and their
    /// etag change, nothing else. Walks through active users round-robin.
    pub fn record_logins(&mut self, count: usize, now: DateTime<Utc>) -> usize {
        if self.users.is_empty() {
            return 0;
        }
        let total = self.users.len();
        let count = count.min(total);
        let start = usize::try_from(self.login_cursor % total as u64).unwrap_or(0);
        let ids: Vec<Id> = self
            .users
            .keys()
            .skip(start)
            .chain(self.users.keys())
            .take(count)
            .cloned()
            .collect();
        self.login_cursor += count as u64;
        let stamp = timestamp(now);
        for id in &ids {
            let version = self.next_version();
            if let Some(user) = self.users.get_mut(id) {
                user.modify(version, |body| {
                    body.insert("lastLoginTime".into(), json!(stamp.clone()));
                });
            }
        }
        ids.len()
    }
}

/// `/Sales/EMEA`, `Sales/EMEA/` and `sales/emea` name the same unit (case aside).
pub fn normalise_ou_path(path: &str) -> String {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}")
    }
}

/// Rebuilds `emails` from the primary address, aliases and non-editable aliases, keeping any
/// other typed addresses the admin set.
pub fn normalise_user_emails(body: &mut Map<String, Value>) {
    let primary = body
        .get("primaryEmail")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let list = |key: &str| -> Vec<String> {
        body.get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let aliases = list("aliases");
    let fixed = list("nonEditableAliases");
    let mut emails = vec![json!({"address": primary, "primary": true})];
    let mut known: HashSet<String> = HashSet::from([lower(&primary)]);
    for address in aliases.iter().chain(fixed.iter()) {
        if known.insert(lower(address)) {
            emails.push(json!({ "address": address }));
        }
    }
    if let Some(existing) = body.get("emails").and_then(Value::as_array) {
        for entry in existing {
            let address = entry.get("address").and_then(Value::as_str).unwrap_or("");
            if !address.is_empty() && known.insert(lower(address)) {
                // Only the primary address is flagged primary.
                let mut entry = entry.clone();
                if let Some(fields) = entry.as_object_mut() {
                    fields.remove("primary");
                }
                emails.push(entry);
            }
        }
    }
    body.insert("emails".into(), Value::Array(emails));
    if aliases.is_empty() {
        body.remove("aliases");
    }
    if fixed.is_empty() {
        body.remove("nonEditableAliases");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir() -> Directory {
        let mut dir = Directory::new("C0abc1234", "example.com", 1);
        dir.add_org_unit("/Sales/EMEA", "").unwrap();
        dir
    }

    fn user(email: &str) -> Value {
        json!({"primaryEmail": email, "name": {"givenName": "A", "familyName": "B"}})
    }

    #[test]
    fn insert_resolve_rename_delete_user() {
        let mut dir = dir();
        let now = Utc::now();
        let id = dir.insert_user(&user("a@example.com"), now).unwrap();
        assert_eq!(
            dir.resolve_user("A%40example.com".replace("%40", "@").as_str()),
            Some(id.clone())
        );
        assert!(dir.insert_user(&user("A@example.com"), now).is_err());
        let before = dir.etag(&id, dir.users[&id].version);
        dir.update_user(
            "a@example.com",
            &json!({"primaryEmail": "b@example.com", "aliases": ["a2@example.com"]}),
            now,
        )
        .unwrap();
        assert_ne!(before, dir.etag(&id, dir.users[&id].version));
        // As Google does, the old primary address stays as an alias.
        assert_eq!(dir.resolve_user("a@example.com"), Some(id.clone()));
        assert_eq!(dir.resolve_user("A2@example.com"), Some(id.clone()));
        dir.delete_user(&id, now).unwrap();
        assert!(dir.resolve_user("b@example.com").is_none());
        assert!(dir.deleted[&id].body().contains_key("deletionTime"));
    }

    #[test]
    fn members_and_cycles() {
        let mut dir = dir();
        let now = Utc::now();
        let u = dir.insert_user(&user("u@example.com"), now).unwrap();
        let g1 = dir
            .insert_group(&json!({"email": "g1@example.com"}))
            .unwrap();
        let g2 = dir
            .insert_group(&json!({"email": "g2@example.com"}))
            .unwrap();
        dir.insert_member(&g1, &json!({"email": "g2@example.com"}))
            .unwrap();
        dir.insert_member(&g2, &json!({"email": "u@example.com", "role": "OWNER"}))
            .unwrap();
        assert!(dir.has_member(&g1, &u));
        let err = dir
            .insert_member(&g2, &json!({"email": "g1@example.com"}))
            .unwrap_err();
        assert_eq!(err.status, 412);
        let ext = dir
            .insert_member(&g1, &json!({"email": "x@partner.example.net"}))
            .unwrap();
        assert_eq!(dir.groups[&g1].direct_users, 1);
        assert_eq!(
            dir.insert_member(&g1, &json!({"email": "x@partner.example.net"}))
                .unwrap_err()
                .status,
            409
        );
        dir.delete_user(&u, now).unwrap();
        assert!(!dir.has_member(&g1, &u));
        dir.delete_member(&g1, "x@partner.example.net").unwrap();
        assert!(!dir.groups[&g1].members.contains_key(&ext));
        dir.delete_group(&g2).unwrap();
        assert!(dir.groups[&g1].members.is_empty());
    }
}
