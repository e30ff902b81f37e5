//! What the SCIM push tests share: a `dirsync run` serving one `scim_push` tenant on
//! `http_listen`, an IdP's HTTP client for its base URL, one-line summaries of events, and the
//! fold of a tenant's event stream compared with what `GET /Users` and `GET /Groups` return.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use dirsync_testkit::daemon::Daemon;
use dirsync_testkit::{wait_for, ConfigDir};
use reqwest::header::HeaderMap;
use reqwest::{Client, Method};
use serde_json::{json, Value};

use crate::support::config_dir;

/// The bearer token of every push tenant here.
pub const TOKEN: &str = "push-test-token-0123456789abcdef";
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Writes `tenants/{tenant}.toml` for a push tenant (token file 0600 beside it).
pub fn write_push_tenant(setup: &ConfigDir, tenant: &str, source_extra: &str, policy: &str) {
    let token_file = setup.write(format!("tenants/{tenant}-token"), TOKEN);
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    setup.write_tenant(
        tenant,
        &format!(
            "[source]\ntype = \"scim_push\"\ntoken_file = \"{tenant}-token\"\n{source_extra}\n{policy}\n"
        ),
    );
}

/// An answer of the receiver.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// `null` for an empty body.
    pub body: Value,
}

impl Reply {
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {self:?}"))
            .to_owned()
    }
}

/// A daemon serving one push tenant, and the IdP's client.
pub struct Push {
    pub setup: ConfigDir,
    pub daemon: Option<Daemon>,
    pub tenant: String,
    /// `http://{http_listen}/scim/v2/{tenant}`.
    pub base: String,
    pub client: Client,
}

impl Push {
    /// A config folder with `http_listen` and the push tenant `tenant`, and its daemon.
    pub async fn start(tenant: &str, source_extra: &str, policy: &str) -> Self {
        let setup = config_dir(true);
        write_push_tenant(&setup, tenant, source_extra, policy);
        let mut push = Self::new(setup, tenant);
        push.start_daemon().await;
        push
    }

    /// The client side for a folder whose daemon is started separately.
    pub fn new(setup: ConfigDir, tenant: &str) -> Self {
        let base = format!("http://{}/scim/v2/{tenant}", setup.http.unwrap());
        Self {
            setup,
            daemon: None,
            tenant: tenant.to_owned(),
            base,
            // Many connections at once in the storm tests: no idle-pool limit to queue behind.
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    /// Starts `dirsync run` and waits until the tenant's base URL answers.
    pub async fn start_daemon(&mut self) {
        self.daemon = Some(Daemon::start(&self.setup, None).await);
        let url = format!("{}/ServiceProviderConfig", self.base);
        let client = self.client.clone();
        wait_for(20, "the push tenant's ServiceProviderConfig", || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .get(&url)
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        })
        .await;
    }

    pub fn log(&self) -> String {
        self.daemon
            .as_ref()
            .map(Daemon::log_text)
            .unwrap_or_default()
    }

    /// One request with the tenant's token; `path` is relative to the base URL.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.raw(method, path, Some(TOKEN), body.map(|b| b.to_string()))
            .await
    }

    /// One request with any token (or none) and any body text.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method.clone(), &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/scim+json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|err| panic!("{method} {url}: {err}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{method} {url}: {status} {err}: {text}"))
        };
        if status != 204 && !text.is_empty() {
            assert_eq!(
                headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default(),
                "application/scim+json",
                "{method} {url}"
            );
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None).await
    }

    /// A request that must answer `status`; its body.
    pub async fn expect(
        &self,
        status: u16,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let reply = self.request(method.clone(), path, body.clone()).await;
        assert_eq!(
            reply.status,
            status,
            "{method} {path} {}: {}",
            body.map(|b| b.to_string()).unwrap_or_default(),
            reply.body
        );
        reply.body
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.expect(201, Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.expect(200, Method::PUT, path, Some(body)).await
    }

    /// A PATCH of `operations` that must succeed: the resource as it is now (`200`), or
    /// `null` for a group too large to echo (`204`).
    pub async fn patch(&self, path: &str, operations: Value) -> Value {
        let body = json!({"schemas": [PATCH_SCHEMA], "Operations": operations});
        let reply = self.request(Method::PATCH, path, Some(body.clone())).await;
        assert!(
            matches!(reply.status, 200 | 204),
            "PATCH {path} {body}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    pub async fn delete(&self, path: &str) {
        self.expect(204, Method::DELETE, path, None).await;
    }

    /// Every resource of `/Users` or `/Groups`, page by page.
    pub async fn list_all(&self, endpoint: &str) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let page = self
                .expect(
                    200,
                    Method::GET,
                    &format!("/{endpoint}?startIndex={}&count=100", all.len() + 1),
                    None,
                )
                .await;
            let resources = page["Resources"].as_array().unwrap().clone();
            let done = resources.is_empty();
            all.extend(resources);
            if done || all.len() as u64 >= page["totalResults"].as_u64().unwrap() {
                return all;
            }
        }
    }

    /// Every stored event of the tenant.
    pub async fn events(&self) -> Vec<Value> {
        self.setup.events_async(&self.tenant, 0).await
    }

    /// The events after `after`.
    pub async fn events_after(&self, after: u64) -> Vec<Value> {
        self.setup.events_async(&self.tenant, after).await
    }

    /// The tenant's last seq.
    pub async fn last_seq(&self) -> u64 {
        self.events()
            .await
            .last()
            .map_or(0, |e| e["seq"].as_u64().unwrap())
    }

    /// Folds every event from seq 1 and checks the result is what the receiver serves; then
    /// a forced sync of the tenant (policy over the whole pushed directory) finds nothing the
    /// writes' own events missed.
    pub async fn assert_fold_matches(&self, rules: Rules) -> Folded {
        let events = self.events().await;
        let folded = fold(&events);
        let users = self.list_all("Users").await;
        let groups = self.list_all("Groups").await;
        assert_folded_is(&folded, &users, &groups, rules);
        let (code, report) = self.setup.sync_async(&self.tenant, &[]).await;
        if (code, report["outcome"].as_str()) != (0, Some("no_changes")) {
            let seq = events.last().map_or(0, |e| e["seq"].as_u64().unwrap());
            panic!(
                "a full sync of {} corrects what the pushed writes emitted: {report}\n{:#?}",
                self.tenant,
                self.events_after(seq).await
            );
        }
        folded
    }
}

/// How the tenant's policy turns the pushed resources into the directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    /// `suspended_users = "delete"`: inactive users are not in the directory.
    pub drop_inactive: bool,
    /// `nested_groups = "direct"`: only direct user members count.
    pub direct: bool,
}

/// A tenant's directory as its event stream builds it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Folded {
    pub users: BTreeMap<String, Value>,
    pub groups: BTreeMap<String, Value>,
    /// (group id, user id).
    pub members: BTreeSet<(String, String)>,
}

/// Folds a whole stream, checking on the way what the contract promises: `seq` from 1 without
/// gaps, every event about objects that exist at that point, no membership event that changes
/// nothing, memberships removed before their user or group is deleted.
pub fn fold(events: &[Value]) -> Folded {
    let mut folded = Folded::default();
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event["seq"].as_u64(),
            Some(index as u64 + 1),
            "seq gap or repeat at {event}"
        );
        let data = &event["data"];
        let id = |value: &Value| value["id"].as_str().unwrap().to_owned();
        match event["type"].as_str().unwrap() {
            "user.created" => {
                assert!(
                    folded.users.insert(id(data), data.clone()).is_none(),
                    "{event}"
                );
            }
            "user.updated" => {
                assert!(event["previous_attributes"].is_object(), "{event}");
                let slot = folded
                    .users
                    .get_mut(&id(data))
                    .unwrap_or_else(|| panic!("{event}"));
                *slot = data.clone();
            }
            "user.deleted" => {
                let user = id(data);
                assert!(folded.users.remove(&user).is_some(), "{event}");
                assert!(
                    folded.members.iter().all(|(_, u)| *u != user),
                    "user.deleted before its memberships were removed: {event}"
                );
            }
            "group.created" => {
                assert!(
                    folded.groups.insert(id(data), data.clone()).is_none(),
                    "{event}"
                );
            }
            "group.updated" => {
                assert!(event["previous_attributes"].is_object(), "{event}");
                let slot = folded
                    .groups
                    .get_mut(&id(data))
                    .unwrap_or_else(|| panic!("{event}"));
                *slot = data.clone();
            }
            "group.deleted" => {
                let group = id(data);
                assert!(folded.groups.remove(&group).is_some(), "{event}");
                assert!(
                    folded.members.iter().all(|(g, _)| *g != group),
                    "group.deleted before its memberships were removed: {event}"
                );
            }
            "group.user_added" => {
                let (group, user) = (id(&data["group"]), id(&data["user"]));
                assert!(folded.groups.contains_key(&group), "{event}");
                assert!(folded.users.contains_key(&user), "{event}");
                assert!(folded.members.insert((group, user)), "added twice: {event}");
            }
            "group.user_removed" => {
                let pair = (id(&data["group"]), id(&data["user"]));
                assert!(
                    folded.members.remove(&pair),
                    "removed a non-member: {event}"
                );
            }
            other => panic!("unknown event type {other}: {event}"),
        }
    }
    folded
}

/// A pushed resource as `raw_attributes` keeps it: without `schemas`, `meta` and the
/// memberships (`members`, `groups`).
fn raw_of(resource: &Value) -> Value {
    let mut raw = resource.as_object().unwrap().clone();
    for key in ["schemas", "meta", "members", "groups"] {
        raw.remove(key);
    }
    Value::Object(raw)
}

/// The folded directory equals the directory the receiver serves, under `rules`.
pub fn assert_folded_is(folded: &Folded, users: &[Value], groups: &[Value], rules: Rules) {
    let kept: BTreeMap<String, &Value> = users
        .iter()
        .filter(|u| !(rules.drop_inactive && u["active"] == false))
        .map(|u| (u["id"].as_str().unwrap().to_owned(), u))
        .collect();
    assert_eq!(
        folded.users.keys().collect::<Vec<_>>(),
        kept.keys().collect::<Vec<_>>(),
        "the folded users are not the served ones"
    );
    for (id, user) in &kept {
        let data = &folded.users[id];
        assert_eq!(
            data["username"].as_str().unwrap(),
            user["userName"].as_str().unwrap(),
            "{id}"
        );
        let state = if user["active"] == false {
            "inactive"
        } else {
            "active"
        };
        assert_eq!(data["state"], state, "{id}: {data}");
        assert_eq!(data["raw_attributes"], raw_of(user), "{id}");
    }
    assert_eq!(
        folded.groups.keys().collect::<Vec<_>>(),
        groups
            .iter()
            .map(|g| g["id"].as_str().unwrap())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        "the folded groups are not the served ones"
    );
    let by_id: BTreeMap<&str, &Value> = groups
        .iter()
        .map(|g| (g["id"].as_str().unwrap(), g))
        .collect();
    for (id, group) in &by_id {
        let data = &folded.groups[*id];
        assert_eq!(data["name"], group["displayName"], "{id}");
        assert_eq!(data["raw_attributes"], raw_of(group), "{id}");
    }
    // Effective membership: direct user members, and (flattened) those of member groups.
    let mut expected = BTreeSet::new();
    for id in by_id.keys() {
        let mut seen = BTreeSet::new();
        let mut stack = vec![*id];
        while let Some(group) = stack.pop() {
            if !seen.insert(group) {
                continue;
            }
            for member in by_id[group]["members"].as_array().into_iter().flatten() {
                let member_id = member["value"].as_str().unwrap();
                if member["type"] == "Group" {
                    if !rules.direct {
                        stack.push(member_id);
                    }
                } else if kept.contains_key(member_id) {
                    expected.insert(((*id).to_owned(), member_id.to_owned()));
                }
            }
        }
    }
    assert_eq!(
        folded.members, expected,
        "the folded memberships are not the served ones"
    );
}

/// One line per event: its type, what it is about (a user's username, a group's name, both
/// for a membership) and the old values of `previous_attributes` (`raw` for raw_attributes).
pub fn summary(event: &Value) -> String {
    let kind = event["type"].as_str().unwrap();
    let data = &event["data"];
    let about = if kind.starts_with("group.user_") {
        format!(
            "{} {}",
            data["group"]["name"].as_str().unwrap(),
            data["user"]["username"].as_str().unwrap()
        )
    } else if kind.starts_with("user.") {
        data["username"].as_str().unwrap().to_owned()
    } else {
        data["name"].as_str().unwrap().to_owned()
    };
    let mut line = format!("{kind} {about}");
    if let Some(previous) = event.get("previous_attributes").and_then(Value::as_object) {
        for (key, value) in previous {
            if key == "raw_attributes" {
                line.push_str(" raw");
            } else {
                line.push_str(&format!(" {key}={value}"));
            }
        }
    }
    line
}

/// The summaries of `events`. Within one request's events of one type the diff orders by id,
/// which dirsync assigns: such runs are sorted by summary, so expectations need no ids.
pub fn summaries(events: &[Value]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::with_capacity(events.len());
    let mut start = 0;
    for (index, event) in events.iter().enumerate() {
        let same_run = index > 0
            && events[index - 1]["sync_id"] == event["sync_id"]
            && events[index - 1]["type"] == event["type"];
        if !same_run {
            lines[start..].sort();
            start = index;
        }
        lines.push(summary(event));
    }
    lines[start..].sort();
    lines
}

/// Asserts every event came from a push request, and each request's events share its
/// `sync_id`.
pub fn assert_pushed(events: &[Value]) {
    for event in events {
        assert_eq!(event["source"], "scim_push", "{event}");
        assert!(
            event["sync_id"].as_u64().is_some_and(|id| id > 0),
            "{event}"
        );
    }
}
