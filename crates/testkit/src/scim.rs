//! A real SCIM 2.0 server for tests: `scim2-server` (PyPI, from the test venv) on loopback,
//! with the ServiceProviderConfig a test asks for, seeded through its own SCIM API.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

pub const TOKEN: &str = "s3cret-test-token";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn server_command() -> Command {
    let python = crate::python();
    assert!(
        python.exists(),
        "{} does not exist: {}",
        python.display(),
        crate::python::HOW_TO_CREATE
    );
    let script = python.with_file_name("scim2-server");
    if script.exists() {
        let mut command = Command::new(python);
        command.arg(script);
        command
    } else {
        let mut command = Command::new(python);
        command.args([
            "-c",
            "import sys; sys.argv = ['scim2-server'] + sys.argv[1:]; from scim2_server.testserver.cli import main; main()",
        ]);
        command
    }
}

/// Which ServiceProviderConfig the server announces.
#[derive(Debug, Clone, Copy)]
pub enum Spc {
    /// The server's own: index paging, no pagination block.
    Default,
    /// Index paging capped at 2 per page (spc-small-pages.json).
    SmallPages,
    /// Index and cursor, 2 per page by default (spc-cursor.json).
    Cursor,
    /// Cursor only, like the Entra ID SCIM API (spc-cursor-only.json).
    CursorOnly,
}

fn spc_json(spc: Spc) -> Option<Value> {
    let pagination = match spc {
        Spc::Default => return None,
        Spc::SmallPages => {
            json!({"cursor": false, "index": true, "defaultPaginationMethod": "index",
                                  "defaultPageSize": 2, "maxPageSize": 2})
        }
        Spc::Cursor => json!({"cursor": true, "index": true, "defaultPaginationMethod": "index",
                              "defaultPageSize": 2, "maxPageSize": 100, "cursorTimeout": 3600}),
        Spc::CursorOnly => {
            json!({"cursor": true, "index": false, "defaultPaginationMethod": "cursor",
                                  "defaultPageSize": 2, "maxPageSize": 100, "cursorTimeout": 3600})
        }
    };
    Some(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": true, "maxOperations": 1000, "maxPayloadSize": 1048576},
        "filter": {"supported": true, "maxResults": 1000},
        "changePassword": {"supported": true},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "pagination": pagination
    }))
}

/// A running scim2-server, killed on drop.
pub struct ScimServer {
    child: Child,
    pub base_url: String,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ScimServer {
    pub async fn start(spc: Spc) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spc_path = spc_json(spc).map(|value| {
            let path = dir.path().join("spc.json");
            std::fs::write(&path, value.to_string()).unwrap();
            path
        });
        let http = reqwest::Client::new();
        // The port is picked before the server binds it; another process may win the race, so
        // a server that exits at once is started again on another port.
        for _ in 0..5 {
            let port = crate::free_port();
            let mut command = server_command();
            command
                .args(["--hostname", "127.0.0.1", "--port", &port.to_string()])
                .args(["--bearer-token", TOKEN])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Some(path) = &spc_path {
                command.arg("--service-provider-config").arg(path);
            }
            let mut child = command.spawn().expect("start scim2-server");
            let base_url = format!("http://127.0.0.1:{port}/v2");
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut exited = false;
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    exited = true;
                    break;
                }
                let ready = http
                    .get(format!("{base_url}/ServiceProviderConfig"))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    return Self {
                        child,
                        base_url,
                        _dir: dir,
                        http,
                    };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(exited, "scim2-server did not answer within 30 s");
        }
        panic!("scim2-server exited at start five times");
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base_url))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, operations: Value) -> Value {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": operations
        });
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) {
        self.call(reqwest::Method::DELETE, path, None).await;
    }

    pub async fn create_user(&self, name: &str) -> String {
        let capitalized = format!("{}{}", name[..1].to_uppercase(), &name[1..]);
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "userName": format!("{name}@example.com"),
            "externalId": format!("ext-{name}"),
            "active": true,
            "name": {"givenName": capitalized, "familyName": "Test", "formatted": format!("{capitalized} Test")},
            "displayName": format!("{capitalized} Test"),
            "emails": [{"value": format!("{capitalized}@Example.com"), "type": "work", "primary": true}],
            ENTERPRISE: {"employeeNumber": format!("E-{name}"), "department": "Eng"}
        });
        self.post("/Users", body).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn create_group(&self, name: &str, members: Value) -> String {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": name,
            "externalId": format!("ext-{name}"),
            "members": members
        });
        self.post("/Groups", body).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The seed of the reference `seed.sh`: five users, `engineering` {alice, bob, carol} and
    /// `admins` {alice (typed), erin}. Returns name → id.
    pub async fn seed(&self) -> BTreeMap<String, String> {
        let mut ids = BTreeMap::new();
        for name in ["alice", "bob", "carol", "dave", "erin"] {
            ids.insert(name.to_owned(), self.create_user(name).await);
        }
        let engineering = self
            .create_group(
                "engineering",
                json!([{"value": ids["alice"]}, {"value": ids["bob"]}, {"value": ids["carol"]}]),
            )
            .await;
        let admins = self
            .create_group(
                "admins",
                json!([{"value": ids["alice"], "type": "User"}, {"value": ids["erin"]}]),
            )
            .await;
        ids.insert("engineering".into(), engineering);
        ids.insert("admins".into(), admins);
        ids
    }
}
