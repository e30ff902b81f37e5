//! A tiny SCIM-shaped HTTP server on loopback whose every answer a test scripts: for the
//! faults and quirks a conforming server (scim2-server) never produces.
// Scripts read more easily passing `json!(..)` values straight in.
#![allow(clippy::needless_pass_by_value)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The base path the fixture serves SCIM under.
pub const BASE_PATH: &str = "/scim/v2";

/// A scripted answer.
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub fn json(value: Value) -> Self {
        Self::status_json(200, value)
    }

    pub fn status_json(status: u16, value: Value) -> Self {
        Self {
            status,
            content_type: "application/scim+json",
            body: value.to_string(),
            headers: Vec::new(),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type,
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    pub fn not_found() -> Self {
        Self::status_json(
            404,
            serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                               "status": "404", "detail": "not found"}),
        )
    }
}

/// One request as the script sees it: the path below `BASE_PATH` and the decoded query.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    pub fn number(&self, name: &str) -> Option<usize> {
        self.param(name).and_then(|v| v.parse().ok())
    }
}

type Script = Arc<dyn Fn(&Request) -> Answer + Send + Sync>;

#[derive(Clone)]
struct Shared {
    script: Script,
    requests: Arc<AtomicU64>,
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let path = uri
        .path()
        .strip_prefix(BASE_PATH)
        .unwrap_or(uri.path())
        .to_owned();
    let query = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let answer = (shared.script)(&Request {
        method,
        path,
        query,
    });
    let mut response = (
        StatusCode::from_u16(answer.status).unwrap(),
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static(answer.content_type),
        )],
        answer.body,
    )
        .into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}

/// A running fixture; stops when dropped.
pub struct Fixture {
    pub base_url: String,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fixture {
    pub async fn start(script: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Self {
        let requests = Arc::new(AtomicU64::new(0));
        let shared = Shared {
            script: Arc::new(script),
            requests: requests.clone(),
        };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base_url: format!("http://{address}{BASE_PATH}"),
            requests,
            task,
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// A ListResponse of `resources` from 1-based `start`, `count` at most, with `totalResults`.
pub fn index_page(all: &[Value], request: &Request) -> Value {
    let start = request.number("startIndex").unwrap_or(1).max(1);
    let count = request.number("count").unwrap_or(all.len());
    let page: Vec<Value> = all.iter().skip(start - 1).take(count).cloned().collect();
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": all.len(), "startIndex": start, "itemsPerPage": page.len(),
        "Resources": page
    })
}

pub fn spc(pagination: Value, filter: bool) -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "filter": {"supported": filter, "maxResults": 200},
        "pagination": pagination
    })
}

pub fn user(id: &str, active: Value) -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": id, "userName": format!("{id}@example.com"), "active": active,
        "emails": [{"value": format!("{id}@example.com"), "primary": "True"}],
        "meta": {"resourceType": "user", "location": format!("/users/{id}")}
    })
}
