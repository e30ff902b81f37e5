//! The demo's simulated IdP: an Okta-like SCIM client, in the demo's process, that provisions
//! a small organisation into the demo's push tenant over real HTTP (`/scim/v2/{tenant}` on
//! the daemon's `http_listen`), the way Okta does it — a `GET` filter lookup before each
//! create, `POST /Users`, `POST /Groups` then `PATCH` to add members — and then makes a change
//! now and then: hires, deactivations (`PATCH active=false`), reactivations, renames, group
//! moves and group renames.
//!
//! Must not: reach into the store or the receiver; it knows dirsync only through HTTP, as an
//! IdP does.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;
use serde_json::{json, Value};

/// What Okta sends; the console names the IdP from it.
pub const USER_AGENT: &str = "Okta SCIM Client 1.0.0 (dirsync demo)";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const DOMAIN: &str = "okta-demo.example";

/// The organisation the IdP provisions first: (given name, family name, group).
const PEOPLE: [(&str, &str, &str); 6] = [
    ("Ana", "Lima", "Sales"),
    ("Ben", "Okafor", "Sales"),
    ("Chen", "Wei", "Support"),
    ("Dara", "Novak", "Support"),
    ("Eli", "Haddad", "Sales"),
    ("Fay", "Moreau", "Support"),
];

/// A query value percent-encoded as IdPs send it (`%20`, not `+`, for a space).
fn query_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A refusal or a failure of one request, in words.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("{method} {path}: {source}")]
    Http {
        method: &'static str,
        path: String,
        source: reqwest::Error,
    },
    #[error("{method} {path} answered {status}: {detail}")]
    Refused {
        method: &'static str,
        path: String,
        status: u16,
        detail: String,
    },
}

struct PushedUser {
    id: String,
    user_name: String,
    given: String,
    family: String,
    active: bool,
}

struct PushedGroup {
    id: String,
    name: String,
    members: Vec<String>,
}

/// The IdP's side: its client, and what it has provisioned.
pub struct SimulatedIdp {
    client: reqwest::Client,
    base_url: String,
    token: String,
    users: Vec<PushedUser>,
    groups: Vec<PushedGroup>,
    hires: u32,
}

impl SimulatedIdp {
    pub fn new(base_url: String, token: String) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            client,
            base_url,
            token,
            users: Vec::new(),
            groups: Vec::new(),
            hires: 0,
        }
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, IdpError> {
        let http_method = match method {
            "POST" => reqwest::Method::POST,
            "PATCH" => reqwest::Method::PATCH,
            "PUT" => reqwest::Method::PUT,
            "DELETE" => reqwest::Method::DELETE,
            _ => reqwest::Method::GET,
        };
        let mut request = self
            .client
            .request(http_method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.token)
            .header("accept", "application/scim+json");
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let http = |source| IdpError::Http {
            method,
            path: path.to_owned(),
            source,
        };
        let response = request.send().await.map_err(http)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(http)?;
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status >= 400 {
            return Err(IdpError::Refused {
                method,
                path: path.to_owned(),
                status,
                detail: answer["detail"].as_str().unwrap_or(&text).to_owned(),
            });
        }
        Ok(answer)
    }

    /// Waits (bounded) until the daemon answers at the base URL, as "Test Connector
    /// Configuration" does.
    pub async fn wait_until_reachable(&self, within: Duration) -> Result<(), IdpError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.call("GET", "/ServiceProviderConfig", None).await {
                Ok(_) => return Ok(()),
                Err(err) if tokio::time::Instant::now() >= deadline => return Err(err),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Okta's lookup before a create: the id of the user with this `userName`, if any.
    async fn find_user(&self, user_name: &str) -> Result<Option<String>, IdpError> {
        let filter = format!("userName eq \"{user_name}\"");
        let path = format!(
            "/Users?filter={}&startIndex=1&count=100",
            query_encode(&filter)
        );
        let answer = self.call("GET", &path, None).await?;
        Ok(answer["Resources"][0]["id"].as_str().map(str::to_owned))
    }

    async fn find_group(&self, name: &str) -> Result<Option<String>, IdpError> {
        let filter = format!("displayName eq \"{name}\"");
        let path = format!(
            "/Groups?filter={}&startIndex=1&count=100",
            query_encode(&filter)
        );
        let answer = self.call("GET", &path, None).await?;
        Ok(answer["Resources"][0]["id"].as_str().map(str::to_owned))
    }

    async fn create_user(&mut self, given: &str, family: &str) -> Result<String, IdpError> {
        let user_name = format!(
            "{}.{}@{DOMAIN}",
            given.to_lowercase(),
            family.to_lowercase()
        );
        let id = match self.find_user(&user_name).await? {
            Some(id) => id,
            None => {
                let created = self
                    .call(
                        "POST",
                        "/Users",
                        Some(json!({
                            "schemas": [USER_SCHEMA],
                            "userName": user_name,
                            "name": {"givenName": given, "familyName": family},
                            "emails": [{"primary": true, "value": user_name, "type": "work"}],
                            "displayName": format!("{given} {family}"),
                            "active": true,
                            // Okta sends one when it manages passwords: never stored or shown.
                            "password": format!("demo-{}", rand::random::<u32>())
                        })),
                    )
                    .await?;
                created["id"].as_str().unwrap_or_default().to_owned()
            }
        };
        self.users.push(PushedUser {
            id: id.clone(),
            user_name,
            given: given.to_owned(),
            family: family.to_owned(),
            active: true,
        });
        Ok(id)
    }

    async fn create_group(&mut self, name: &str) -> Result<usize, IdpError> {
        let id = match self.find_group(name).await? {
            Some(id) => id,
            None => {
                let created = self
                    .call(
                        "POST",
                        "/Groups",
                        Some(
                            json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": []}),
                        ),
                    )
                    .await?;
                created["id"].as_str().unwrap_or_default().to_owned()
            }
        };
        self.groups.push(PushedGroup {
            id,
            name: name.to_owned(),
            members: Vec::new(),
        });
        Ok(self.groups.len() - 1)
    }

    async fn patch(&self, kind: &str, id: &str, operations: Value) -> Result<(), IdpError> {
        self.call(
            "PATCH",
            &format!("/{kind}/{id}"),
            Some(json!({"schemas": [PATCH_OP], "Operations": operations})),
        )
        .await
        .map(|_| ())
    }

    async fn add_members(&mut self, group: usize, users: &[String]) -> Result<(), IdpError> {
        let values: Vec<Value> = users
            .iter()
            .map(|id| {
                let display = self
                    .users
                    .iter()
                    .find(|u| u.id == *id)
                    .map(|u| u.user_name.clone());
                json!({"value": id, "display": display})
            })
            .collect();
        let group_id = self.groups[group].id.clone();
        self.patch(
            "Groups",
            &group_id,
            json!([{"op": "add", "path": "members", "value": values}]),
        )
        .await?;
        self.groups[group].members.extend(users.iter().cloned());
        Ok(())
    }

    /// Provisions the organisation: people, then groups pushed with their members.
    pub async fn provision(&mut self) -> Result<String, IdpError> {
        let mut by_group: Vec<(&str, Vec<String>)> = Vec::new();
        for (given, family, group) in PEOPLE {
            let id = self.create_user(given, family).await?;
            match by_group.iter_mut().find(|(name, _)| *name == group) {
                Some((_, ids)) => ids.push(id),
                None => by_group.push((group, vec![id])),
            }
        }
        for (name, ids) in &by_group {
            let group = self.create_group(name).await?;
            self.add_members(group, ids).await?;
        }
        Ok(format!(
            "provisioned {} users and {} groups (Okta-style: GET filter lookup, POST, PATCH members)",
            self.users.len(),
            self.groups.len()
        ))
    }

    /// Makes one change an Okta admin would make; says what it did.
    pub async fn change(&mut self, rng: &mut SmallRng) -> Result<String, IdpError> {
        let active: Vec<usize> = (0..self.users.len())
            .filter(|&i| self.users[i].active)
            .collect();
        let inactive: Vec<usize> = (0..self.users.len())
            .filter(|&i| !self.users[i].active)
            .collect();
        let choice = if active.len() < 2 || self.groups.is_empty() {
            0
        } else {
            rng.random_range(0..6)
        };
        match choice {
            1 => {
                let user = &mut self.users[active[rng.random_range(0..active.len())]];
                user.active = false;
                let (id, name) = (user.id.clone(), user.user_name.clone());
                self.patch(
                    "Users",
                    &id,
                    json!([{"op": "replace", "value": {"active": false}}]),
                )
                .await?;
                Ok(format!("deactivated {name} (PATCH active=false)"))
            }
            2 if !inactive.is_empty() => {
                let user = &mut self.users[inactive[rng.random_range(0..inactive.len())]];
                user.active = true;
                let (id, name) = (user.id.clone(), user.user_name.clone());
                self.patch(
                    "Users",
                    &id,
                    json!([{"op": "replace", "value": {"active": true}}]),
                )
                .await?;
                Ok(format!("reactivated {name}"))
            }
            3 => {
                let user = &mut self.users[active[rng.random_range(0..active.len())]];
                user.family = format!("{}-{}", user.family, rng.random_range(10..100));
                let (id, name) = (user.id.clone(), user.user_name.clone());
                let value = json!({"name": {"givenName": user.given, "familyName": user.family}});
                let family = user.family.clone();
                self.patch("Users", &id, json!([{"op": "replace", "value": value}]))
                    .await?;
                Ok(format!("renamed {name}: family name {family}"))
            }
            4 => {
                let group = rng.random_range(0..self.groups.len());
                let name = format!(
                    "{} {}",
                    self.groups[group].name.split(' ').next().unwrap_or("Team"),
                    ["EMEA", "Americas", "APAC", "Tier 2"][rng.random_range(0..4)]
                );
                let id = self.groups[group].id.clone();
                self.patch(
                    "Groups",
                    &id,
                    json!([{"op": "replace", "value": {"displayName": name}}]),
                )
                .await?;
                let old = std::mem::replace(&mut self.groups[group].name, name.clone());
                Ok(format!("renamed group {old} to {name}"))
            }
            5 => {
                let user_id = self.users[active[rng.random_range(0..active.len())]]
                    .id
                    .clone();
                let to = rng.random_range(0..self.groups.len());
                let from = self
                    .groups
                    .iter()
                    .position(|g| g.members.contains(&user_id))
                    .filter(|&from| from != to);
                let name = self
                    .users
                    .iter()
                    .find(|u| u.id == user_id)
                    .map(|u| u.user_name.clone())
                    .unwrap_or_default();
                if let Some(from) = from {
                    let from_id = self.groups[from].id.clone();
                    self.patch(
                        "Groups",
                        &from_id,
                        json!([{"op": "remove", "path": format!("members[value eq \"{user_id}\"]")}]),
                    )
                    .await?;
                    self.groups[from].members.retain(|m| *m != user_id);
                }
                if self.groups[to].members.contains(&user_id) {
                    return Ok(format!("{name} stays in {}", self.groups[to].name));
                }
                self.add_members(to, std::slice::from_ref(&user_id)).await?;
                Ok(match from {
                    Some(from) => format!(
                        "moved {name} from {} to {}",
                        self.groups[from].name, self.groups[to].name
                    ),
                    None => format!("added {name} to {}", self.groups[to].name),
                })
            }
            _ => {
                self.hires += 1;
                let family = format!("Hire{}", self.hires);
                let id = self.create_user("New", &family).await?;
                let name = self
                    .users
                    .last()
                    .map(|u| u.user_name.clone())
                    .unwrap_or_default();
                if self.groups.is_empty() {
                    return Ok(format!("hired {name}"));
                }
                let group = rng.random_range(0..self.groups.len());
                self.add_members(group, &[id]).await?;
                Ok(format!("hired {name} into {}", self.groups[group].name))
            }
        }
    }
}
