//! Change events: the closed set of changes a diff can find (`Change`), and the contract's
//! event JSON they become once the store gives them a `seq` (`Event`), rendered by the one
//! renderer (`render`). Pure: no I/O, no clock.

mod render;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::Id;

pub use render::EventRenderer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.updated")]
    UserUpdated,
    #[serde(rename = "user.deleted")]
    UserDeleted,
    #[serde(rename = "group.created")]
    GroupCreated,
    #[serde(rename = "group.updated")]
    GroupUpdated,
    #[serde(rename = "group.deleted")]
    GroupDeleted,
    #[serde(rename = "group.user_added")]
    GroupUserAdded,
    #[serde(rename = "group.user_removed")]
    GroupUserRemoved,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::UserCreated,
        EventType::UserUpdated,
        EventType::UserDeleted,
        EventType::GroupCreated,
        EventType::GroupUpdated,
        EventType::GroupDeleted,
        EventType::GroupUserAdded,
        EventType::GroupUserRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UserCreated => "user.created",
            EventType::UserUpdated => "user.updated",
            EventType::UserDeleted => "user.deleted",
            EventType::GroupCreated => "group.created",
            EventType::GroupUpdated => "group.updated",
            EventType::GroupDeleted => "group.deleted",
            EventType::GroupUserAdded => "group.user_added",
            EventType::GroupUserRemoved => "group.user_removed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown event type {s:?}"))
    }
}

/// One change between two snapshots. Objects are named by id; `render` looks them up in the
/// snapshot before (deletions, removals) or after (everything else) the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    UserCreated(Id),
    UserUpdated {
        id: Id,
        previous: Map<String, Value>,
    },
    UserDeleted(Id),
    GroupCreated(Id),
    GroupUpdated {
        id: Id,
        previous: Map<String, Value>,
    },
    GroupDeleted(Id),
    UserAdded {
        group: Id,
        user: Id,
    },
    UserRemoved {
        group: Id,
        user: Id,
    },
}

impl Change {
    pub fn event_type(&self) -> EventType {
        match self {
            Change::UserCreated(_) => EventType::UserCreated,
            Change::UserUpdated { .. } => EventType::UserUpdated,
            Change::UserDeleted(_) => EventType::UserDeleted,
            Change::GroupCreated(_) => EventType::GroupCreated,
            Change::GroupUpdated { .. } => EventType::GroupUpdated,
            Change::GroupDeleted(_) => EventType::GroupDeleted,
            Change::UserAdded { .. } => EventType::GroupUserAdded,
            Change::UserRemoved { .. } => EventType::GroupUserRemoved,
        }
    }
}

/// Which IdP produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Google,
    Scim,
    #[serde(rename = "scim_push")]
    ScimPush,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Google => "google",
            SourceKind::Scim => "scim",
            SourceKind::ScimPush => "scim_push",
        }
    }
}

/// A stored event, exactly the contract's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub tenant: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub occurred_at: String,
    pub sync_id: i64,
    pub source: SourceKind,
    pub data: Value,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous_attributes: Option<Value>,
}

/// A new globally unique, time-ordered event id (`evt_` + ULID).
pub fn new_event_id() -> String {
    // Monotonic within the process (a millisecond's ids count up from a random start), so
    // the ids of one commit are in order: PostgreSQL's unique index on them then takes each
    // at its rightmost page instead of searching for a random place in the millisecond.
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Overflow takes 2^80 ids in one millisecond; a fresh random id is still unique.
    let id = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
    format!("evt_{id}")
}

/// RFC 3339 UTC with milliseconds, the format of `occurred_at`.
pub fn format_timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
