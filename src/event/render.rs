//! The one renderer of events: the stored JSON text of each event of a commit, written
//! straight from the snapshots. A dry run and the events API parse this same text; nothing
//! else builds event JSON.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::value::RawValue;

use super::{Change, EventType, SourceKind};
use crate::model::{Id, Snapshot};

/// Renders the stored JSON text of a commit's events: byte for byte what serializing the
/// `Event` of `Change::render` gives, but written straight from the snapshots, because a first
/// sync of a large directory renders a million events and building each as a
/// `serde_json::Value` first cost about as much as inserting it. It keeps the JSON of every
/// user and group summary it wrote: those million membership events name the same 100k users
/// and 10k groups over and over, and each is serialized once.
pub struct EventRenderer<'a> {
    before: Summaries<'a>,
    after: Summaries<'a>,
}

impl<'a> EventRenderer<'a> {
    pub fn new(before: &'a Snapshot, after: &'a Snapshot) -> Self {
        Self {
            before: Summaries::new(before),
            after: Summaries::new(after),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn render(
        &mut self,
        change: &Change,
        id: &str,
        tenant: &str,
        seq: u64,
        sync_id: i64,
        source: SourceKind,
        occurred_at: &str,
    ) -> Result<String, serde_json::Error> {
        use body::{Data, GroupData, UserData};
        let (before, after) = (self.before.snapshot, self.after.snapshot);
        let (data, previous_attributes) = match change {
            Change::UserCreated(id) => (Data::User(after.users.get(id).map(UserData)), None),
            Change::UserUpdated { id, previous } => (
                Data::User(after.users.get(id).map(UserData)),
                Some(previous),
            ),
            Change::UserDeleted(id) => (Data::User(before.users.get(id).map(UserData)), None),
            Change::GroupCreated(id) => (Data::Group(after.groups.get(id).map(GroupData)), None),
            Change::GroupUpdated { id, previous } => (
                Data::Group(after.groups.get(id).map(GroupData)),
                Some(previous),
            ),
            Change::GroupDeleted(id) => (Data::Group(before.groups.get(id).map(GroupData)), None),
            Change::UserAdded { group, user } => {
                (Data::Membership(self.after.membership(group, user)?), None)
            }
            Change::UserRemoved { group, user } => {
                (Data::Membership(self.before.membership(group, user)?), None)
            }
        };
        serde_json::to_string(&body::Body {
            id,
            tenant,
            seq,
            event_type: change.event_type(),
            occurred_at,
            sync_id,
            source,
            data,
            previous_attributes,
        })
    }
}

/// The user and group summaries of one snapshot, each rendered once.
struct Summaries<'a> {
    snapshot: &'a Snapshot,
    /// Summary JSON by id; `None`: the snapshot has no such object.
    users: HashMap<Id, Option<Box<RawValue>>>,
    groups: HashMap<Id, Option<Box<RawValue>>>,
}

impl<'a> Summaries<'a> {
    fn new(snapshot: &'a Snapshot) -> Self {
        Self {
            snapshot,
            users: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    fn membership(
        &mut self,
        group: &Id,
        user: &Id,
    ) -> Result<body::Membership<'_>, serde_json::Error> {
        let snapshot = self.snapshot;
        let group = cached(&mut self.groups, group, |id| {
            snapshot.groups.get(id).map(body::GroupSummaryData)
        })?;
        let user = cached(&mut self.users, user, |id| {
            snapshot.users.get(id).map(body::UserSummaryData)
        })?;
        Ok(body::Membership { group, user })
    }
}

/// The JSON of `id` from `cache`, rendered with `view` the first time.
fn cached<'c, T: Serialize>(
    cache: &'c mut HashMap<Id, Option<Box<RawValue>>>,
    id: &Id,
    view: impl FnOnce(&Id) -> Option<T>,
) -> Result<Option<&'c RawValue>, serde_json::Error> {
    if !cache.contains_key(id) {
        let rendered = view(id)
            .map(|view| serde_json::value::to_raw_value(&view))
            .transpose()?;
        cache.insert(id.clone(), rendered);
    }
    Ok(cache.get(id).and_then(|rendered| rendered.as_deref()))
}

/// Borrowed views of the model that serialize as their `serde_json::Value` form does: object
/// keys in sorted order (the `Value` form of a struct is a sorted map), so the fields of each
/// view below are declared alphabetically. `Body` keeps `Event`'s declared order, as `Event`
/// itself serializes. `tests::event_bodies_match_the_value_rendering` holds them to an independent rendering
/// through `serde_json::Value`.
mod body {
    use serde::{Serialize, Serializer};
    use serde_json::value::RawValue;
    use serde_json::{Map, Value};

    use super::{EventType, SourceKind};
    use crate::model::{CustomAttributes, Email, Group, RawAttributes, User, UserState};

    #[derive(Serialize)]
    pub(super) struct Body<'a> {
        pub id: &'a str,
        pub tenant: &'a str,
        pub seq: u64,
        #[serde(rename = "type")]
        pub event_type: EventType,
        pub occurred_at: &'a str,
        pub sync_id: i64,
        pub source: SourceKind,
        pub data: Data<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub previous_attributes: Option<&'a Map<String, Value>>,
    }

    #[derive(Serialize)]
    #[serde(untagged)]
    pub(super) enum Data<'a> {
        User(Option<UserData<'a>>),
        Group(Option<GroupData<'a>>),
        Membership(Membership<'a>),
    }

    /// The summaries, already rendered (`EventRenderer` keeps them).
    #[derive(Serialize)]
    pub(super) struct Membership<'a> {
        pub group: Option<&'a RawValue>,
        pub user: Option<&'a RawValue>,
    }

    pub(super) struct UserData<'a>(pub &'a User);
    pub(super) struct GroupData<'a>(pub &'a Group);
    pub(super) struct UserSummaryData<'a>(pub &'a User);
    pub(super) struct GroupSummaryData<'a>(pub &'a Group);
    struct Emails<'a>(&'a [Email]);

    impl Serialize for UserData<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            #[derive(Serialize)]
            struct Sorted<'a> {
                custom_attributes: &'a CustomAttributes,
                display_name: &'a Option<String>,
                email: &'a str,
                emails: Emails<'a>,
                first_name: &'a Option<String>,
                id: &'a str,
                last_name: &'a Option<String>,
                raw_attributes: &'a RawAttributes,
                roles: &'a [String],
                state: UserState,
                username: &'a str,
            }
            let user = self.0;
            Sorted {
                custom_attributes: &user.custom_attributes,
                display_name: &user.display_name,
                email: &user.email,
                emails: Emails(&user.emails),
                first_name: &user.first_name,
                id: &user.id,
                last_name: &user.last_name,
                raw_attributes: &user.raw_attributes,
                roles: &user.roles,
                state: user.state,
                username: &user.username,
            }
            .serialize(serializer)
        }
    }

    impl Serialize for Emails<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            #[derive(Serialize)]
            struct Sorted<'a> {
                primary: bool,
                value: &'a str,
            }
            serializer.collect_seq(self.0.iter().map(|email| Sorted {
                primary: email.primary,
                value: &email.value,
            }))
        }
    }

    impl Serialize for GroupData<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            #[derive(Serialize)]
            struct Sorted<'a> {
                description: &'a Option<String>,
                email: &'a Option<String>,
                id: &'a str,
                name: &'a str,
                raw_attributes: &'a RawAttributes,
            }
            let group = self.0;
            Sorted {
                description: &group.description,
                email: &group.email,
                id: &group.id,
                name: &group.name,
                raw_attributes: &group.raw_attributes,
            }
            .serialize(serializer)
        }
    }

    /// `UserSummary`'s fields.
    impl Serialize for UserSummaryData<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            #[derive(Serialize)]
            struct Sorted<'a> {
                display_name: &'a Option<String>,
                email: &'a str,
                first_name: &'a Option<String>,
                id: &'a str,
                last_name: &'a Option<String>,
                state: UserState,
                username: &'a str,
            }
            let user = self.0;
            Sorted {
                display_name: &user.display_name,
                email: &user.email,
                first_name: &user.first_name,
                id: &user.id,
                last_name: &user.last_name,
                state: user.state,
                username: &user.username,
            }
            .serialize(serializer)
        }
    }

    /// `GroupSummary`'s fields.
    impl Serialize for GroupSummaryData<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            #[derive(Serialize)]
            struct Sorted<'a> {
                email: &'a Option<String>,
                id: &'a str,
                name: &'a str,
            }
            let group = self.0;
            Sorted {
                email: &group.email,
                id: &group.id,
                name: &group.name,
            }
            .serialize(serializer)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::json;

    use serde::Serialize;
    use serde_json::{Map, Value};

    use super::*;
    use crate::event::Event;
    use crate::model::{
        CustomAttributes, Email, Group, GroupSummary, RawAttributes, User, UserState, UserSummary,
    };

    /// The event's `data` and `previous_attributes` through `serde_json::Value`, written
    /// independently of the renderer: the oracle it is checked against.
    fn value_rendering(
        change: &Change,
        before: &Snapshot,
        after: &Snapshot,
    ) -> (Value, Option<Value>) {
        fn json<T: Serialize>(value: &T) -> Value {
            serde_json::to_value(value).unwrap_or(Value::Null)
        }
        fn membership(snapshot: &Snapshot, group: &Id, user: &Id) -> Value {
            let user = snapshot.users.get(user).map(UserSummary::from);
            let group = snapshot.groups.get(group).map(GroupSummary::from);
            serde_json::json!({ "user": user, "group": group })
        }
        match change {
            Change::UserCreated(id) => (json(&after.users.get(id)), None),
            Change::UserUpdated { id, previous } => (
                json(&after.users.get(id)),
                Some(Value::Object(previous.clone())),
            ),
            Change::UserDeleted(id) => (json(&before.users.get(id)), None),
            Change::GroupCreated(id) => (json(&after.groups.get(id)), None),
            Change::GroupUpdated { id, previous } => (
                json(&after.groups.get(id)),
                Some(Value::Object(previous.clone())),
            ),
            Change::GroupDeleted(id) => (json(&before.groups.get(id)), None),
            Change::UserAdded { group, user } => (membership(after, group, user), None),
            Change::UserRemoved { group, user } => (membership(before, group, user), None),
        }
    }

    fn user(id: &str, full: bool) -> User {
        User {
            id: Id::from(id),
            email: format!("{id}@example.com"),
            username: format!("{id}@example.com"),
            first_name: full.then(|| "Zoë \"Q\"".to_owned()),
            last_name: full.then(|| "Ünïcode\n".to_owned()),
            display_name: None,
            emails: vec![
                Email {
                    value: format!("{id}@example.com"),
                    primary: true,
                },
                Email {
                    value: format!("{id}@alias.example.com"),
                    primary: false,
                },
            ],
            state: if full {
                UserState::Active
            } else {
                UserState::Inactive
            },
            roles: if full {
                vec!["admin".into(), "dev".into()]
            } else {
                Vec::new()
            },
            custom_attributes: if full {
                CustomAttributes::from(BTreeMap::from([
                    (
                        "zeta".to_owned(),
                        json!({"b": [1, 2.5, -3e-7, null], "a": true}),
                    ),
                    ("alpha".to_owned(), json!("x")),
                ]))
            } else {
                CustomAttributes::default()
            },
            raw_attributes: if full {
                RawAttributes::from_value(&json!({
                    "id": id, "name": {"givenName": "Zoë", "familyName": "U"},
                    "n": 12345678901234567u64, "f": 0.1, "list": [{"b": 1, "a": 2}]
                }))
            } else {
                RawAttributes::empty()
            },
        }
    }

    fn group(id: &str, full: bool) -> Group {
        Group {
            id: Id::from(id),
            email: full.then(|| format!("{id}@example.com")),
            name: format!("Group {id}"),
            description: full.then(|| "a \u{1F600} group".to_owned()),
            raw_attributes: RawAttributes::from_value(&json!({"id": id, "adminCreated": full})),
        }
    }

    /// The direct serialization writes exactly the text of the `Value` rendering, for every
    /// kind of change, with missing objects (`null`) and optional fields either way.
    #[test]
    fn event_bodies_match_the_value_rendering() {
        let mut before = Snapshot::default();
        let mut after = Snapshot::default();
        for (n, full) in [("u1", true), ("u2", false)] {
            before.users.insert(Id::from(n), user(n, full));
            after.users.insert(Id::from(n), user(n, !full));
        }
        for (n, full) in [("g1", true), ("g2", false)] {
            before.groups.insert(Id::from(n), group(n, full));
            after.groups.insert(Id::from(n), group(n, !full));
        }
        before
            .members
            .insert(Id::from("g1"), BTreeSet::from([Id::from("u1")]));
        let previous = Map::from_iter([
            ("first_name".to_owned(), json!("old")),
            (
                "emails".to_owned(),
                json!([{"value": "x", "primary": true}]),
            ),
        ]);
        let mut changes = Vec::new();
        for id in ["u1", "u2", "nobody"] {
            let id = Id::from(id);
            changes.push(Change::UserCreated(id.clone()));
            changes.push(Change::UserDeleted(id.clone()));
            changes.push(Change::UserUpdated {
                id: id.clone(),
                previous: previous.clone(),
            });
        }
        for id in ["g1", "g2", "nothing"] {
            let id = Id::from(id);
            changes.push(Change::GroupCreated(id.clone()));
            changes.push(Change::GroupDeleted(id.clone()));
            changes.push(Change::GroupUpdated {
                id: id.clone(),
                previous: Map::new(),
            });
        }
        for (g, u) in [
            ("g1", "u1"),
            ("g2", "u2"),
            ("g1", "nobody"),
            ("nothing", "u1"),
        ] {
            let (group, user) = (Id::from(g), Id::from(u));
            changes.push(Change::UserAdded {
                group: group.clone(),
                user: user.clone(),
            });
            changes.push(Change::UserRemoved { group, user });
        }
        // One renderer for every change, twice over, as a commit uses it: its summaries come
        // from the cache the second time, and `u1` renders differently before and after.
        let mut shared = EventRenderer::new(&before, &after);
        let twice = changes.iter().chain(changes.iter());
        for (seq, change) in twice.enumerate() {
            let (data, previous_attributes) = value_rendering(change, &before, &after);
            let event = Event {
                id: "evt_1".into(),
                tenant: "acme".into(),
                seq: seq as u64,
                event_type: change.event_type(),
                occurred_at: "2026-01-01T00:00:00.000Z".into(),
                sync_id: 7,
                source: SourceKind::Google,
                data,
                previous_attributes,
            };
            let render = |renderer: &mut EventRenderer<'_>| {
                renderer
                    .render(
                        change,
                        "evt_1",
                        "acme",
                        seq as u64,
                        7,
                        SourceKind::Google,
                        "2026-01-01T00:00:00.000Z",
                    )
                    .unwrap()
            };
            let direct = render(&mut EventRenderer::new(&before, &after));
            assert_eq!(direct, serde_json::to_string(&event).unwrap(), "{change:?}");
            let cached = render(&mut shared);
            assert_eq!(cached, direct, "{change:?}");
        }
    }
}
