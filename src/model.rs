//! The normalized directory: users, groups and effective memberships, as the contract's event
//! objects describe them. Every source produces these; the store persists them; the diff
//! compares them. Pure data: no I/O, nothing source-specific.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};

/// An immutable IdP identifier. Shared (`Arc`) because a large directory repeats every id in
/// many memberships.
pub type Id = Arc<str>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserState {
    Active,
    Inactive,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub value: String,
    pub primary: bool,
}

/// The IdP's own object, canonical JSON (sorted keys, compact) without volatile fields, kept
/// as text because a large directory holds hundreds of thousands of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawAttributes(Box<RawValue>);

impl RawAttributes {
    /// `value` must already be stripped of volatile fields. `serde_json::Value` keeps object
    /// keys sorted, so equal objects give equal text.
    pub fn from_value(value: &serde_json::Value) -> Self {
        // Serialized straight into the raw value: `RawValue::from_string` would parse the
        // text again to check what serde_json itself just wrote (a tenth of a no-change run).
        Self(serde_json::value::to_raw_value(value).unwrap_or_else(|_| Self::empty_object()))
    }

    pub fn from_canonical_text(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self)
    }

    pub fn empty() -> Self {
        Self(Self::empty_object())
    }

    fn empty_object() -> Box<RawValue> {
        RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!("{{}} is JSON"))
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl PartialEq for RawAttributes {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}
impl Eq for RawAttributes {}

/// The custom attributes policy mapped for a user, as canonical JSON text (sorted keys,
/// compact) like `RawAttributes`: a map per user costs about 900 bytes at five attributes, the
/// text about 150, and a large directory holds hundreds of thousands of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomAttributes(Box<RawValue>);

impl CustomAttributes {
    pub fn from_map(map: &BTreeMap<String, serde_json::Value>) -> Self {
        // A map of string keys always serializes; `BTreeMap` and `serde_json::Value` keep keys
        // sorted, so equal maps give equal text.
        Self(serde_json::value::to_raw_value(map).unwrap_or_else(|_| RawAttributes::empty_object()))
    }

    pub fn to_map(&self) -> BTreeMap<String, serde_json::Value> {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.get() == "{}"
    }

    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl Default for CustomAttributes {
    fn default() -> Self {
        Self(RawAttributes::empty_object())
    }
}

impl From<BTreeMap<String, serde_json::Value>> for CustomAttributes {
    fn from(map: BTreeMap<String, serde_json::Value>) -> Self {
        Self::from_map(&map)
    }
}

impl PartialEq for CustomAttributes {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}
impl Eq for CustomAttributes {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: Id,
    pub email: String,
    pub username: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub emails: Vec<Email>,
    pub state: UserState,
    pub roles: Vec<String>,
    pub custom_attributes: CustomAttributes,
    pub raw_attributes: RawAttributes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: Id,
    pub email: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub raw_attributes: RawAttributes,
}

impl Group {
    /// The name config uses for this group: its email, or its name when it has none.
    pub fn config_key(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.name)
    }
}

/// The summary of a user carried by membership events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub id: Id,
    pub email: String,
    pub username: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub state: UserState,
}

impl From<&User> for UserSummary {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.clone(),
            email: user.email.clone(),
            username: user.username.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            display_name: user.display_name.clone(),
            state: user.state,
        }
    }
}

/// The summary of a group carried by membership events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub id: Id,
    pub email: Option<String>,
    pub name: String,
}

impl From<&Group> for GroupSummary {
    fn from(group: &Group) -> Self {
        Self {
            id: group.id.clone(),
            email: group.email.clone(),
            name: group.name.clone(),
        }
    }
}

/// Whether a direct member is a user or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberKind {
    User,
    Group,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::User => "user",
            MemberKind::Group => "group",
        }
    }
}

/// One edge of the direct group graph: a group, and one of its direct members.
pub type DirectEdge = (Id, MemberKind, Id);

/// The direct group graph that explains effective memberships; `policy` decides which edges
/// it holds, the store keeps it for `inspect`. Per group, its members as a sorted slice
/// without duplicates: a large directory has a million edges, which cost 24 bytes each here
/// and about 65 in a `BTreeSet` of edges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectGraph(BTreeMap<Id, Box<[(MemberKind, Id)]>>);

impl DirectGraph {
    /// The graph of `edges`, in any order, duplicates allowed.
    pub fn from_edges(edges: Vec<DirectEdge>) -> Self {
        let mut by_group: BTreeMap<Id, Vec<(MemberKind, Id)>> = BTreeMap::new();
        for (group, kind, member) in edges {
            by_group.entry(group).or_default().push((kind, member));
        }
        let mut graph = Self::default();
        for (group, members) in by_group {
            graph.set_members(group, members);
        }
        graph
    }

    /// Sets the direct members of `group` (any order, duplicates allowed); none removes it.
    pub fn set_members(&mut self, group: Id, mut members: Vec<(MemberKind, Id)>) {
        members.sort_unstable();
        members.dedup();
        if members.is_empty() {
            self.0.remove(&group);
        } else {
            self.0.insert(group, members.into_boxed_slice());
        }
    }

    pub fn contains(&self, group: &str, kind: MemberKind, member: &str) -> bool {
        self.0.get(group).is_some_and(|members| {
            members
                .binary_search_by(|(k, m)| (*k, &**m).cmp(&(kind, member)))
                .is_ok()
        })
    }

    /// Every group with edges, and its members in order (users before groups, then by id).
    pub fn groups(&self) -> impl Iterator<Item = (&Id, &[(MemberKind, Id)])> {
        self.0.iter().map(|(group, members)| (group, &**members))
    }

    /// The edges in order: by group, then users before groups, then member id.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, MemberKind, &Id)> {
        self.groups().flat_map(|(group, members)| {
            members
                .iter()
                .map(move |(kind, member)| (group, *kind, member))
        })
    }

    pub fn len(&self) -> usize {
        self.0.values().map(|members| members.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<DirectEdge> for DirectGraph {
    fn from_iter<I: IntoIterator<Item = DirectEdge>>(edges: I) -> Self {
        Self::from_edges(edges.into_iter().collect())
    }
}

/// A complete normalized directory of one tenant: what the store holds and what a sync
/// fetched. `members` maps a group id to the ids of its (effective) user members; every id in
/// it names a user and a group of the same snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub users: BTreeMap<Id, User>,
    pub groups: BTreeMap<Id, Group>,
    pub members: BTreeMap<Id, BTreeSet<Id>>,
}

impl Snapshot {
    pub fn membership_count(&self) -> usize {
        self.members.values().map(BTreeSet::len).sum()
    }

    /// Drops memberships whose group or user is not in the snapshot, and empty member sets,
    /// so the invariant above holds whatever a source sent.
    pub fn prune_dangling_memberships(&mut self) {
        let users = &self.users;
        self.members.retain(|group, members| {
            members.retain(|user| users.contains_key(user));
            !members.is_empty() && self.groups.contains_key(group)
        });
    }
}

/// A fingerprint of an object's stored JSON row (the first 128 bits of its SHA-256): equal
/// digests mean equal rows, so a resync compares fingerprints instead of holding the stored
/// directory a second time.
pub type Digest = [u8; 16];

/// The JSON text the store keeps for a user or group (`serde_json`'s compact form of the
/// struct); `digest` of it equals `digest_of` the object.
pub fn stored_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(value)
}

/// The digest of a stored JSON row.
pub fn digest(text: &str) -> Digest {
    truncate(Sha256::digest(text.as_bytes()).into())
}

/// The digest of `stored_json(value)`, computed without building the text.
pub fn digest_of<T: Serialize>(value: &T) -> Digest {
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    // Serializing these structs cannot fail (string keys only); should it, the all-zero
    // digest differs from every stored row's and the diff compares the objects in full.
    if serde_json::to_writer(&mut hashing, value).is_err() {
        return [0; 16];
    }
    truncate(hashing.0.finalize().into())
}

fn truncate(full: [u8; 32]) -> Digest {
    let mut digest = [0; 16];
    digest.copy_from_slice(&full[..16]);
    digest
}

/// What a resync needs of the stored directory to diff against a fetch: the digest of every
/// stored user and group row, and the memberships. The objects themselves are read only for
/// the few ids the diff must render from their stored state (`diff::needed_previous`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredIndex {
    pub users: BTreeMap<Id, Digest>,
    pub groups: BTreeMap<Id, Digest>,
    pub members: BTreeMap<Id, BTreeSet<Id>>,
}

impl StoredIndex {
    /// The index of a whole snapshot, as `store::load_index` would read it once stored.
    pub fn of(snapshot: &Snapshot) -> Self {
        Self {
            users: snapshot
                .users
                .iter()
                .map(|(id, user)| (id.clone(), digest_of(user)))
                .collect(),
            groups: snapshot
                .groups
                .iter()
                .map(|(id, group)| (id.clone(), digest_of(group)))
                .collect(),
            members: snapshot.members.clone(),
        }
    }
}
