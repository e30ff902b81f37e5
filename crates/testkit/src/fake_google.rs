//! An independent fake of Google's Directory API and OAuth token endpoint, written from the
//! public contract and Google's documented behaviour rather than from dirsync's emulator, so
//! the contract tests see the quirks another test suite's fake would throw at dirsync: pages of
//! two items whatever `maxResults` says, opaque page tokens, list pages without their items key,
//! `directMembersCount` as a string, members without `status`, a CUSTOMER member without
//! email, and a token endpoint that verifies the JWT assertion's RS256 signature, `iss`, `aud`,
//! `scope` and `sub` against the key this fake generated. `Mode::Html` answers every API call
//! with HTTP 200 `text/html` garbage. Used by the contract tests.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};

pub const SUBJECT: &str = "boss@fake.example";
pub const CLIENT_EMAIL: &str = "syncer@fake-project.iam.gserviceaccount.com";
const PAGE: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Every Directory API call: HTTP 200, `Content-Type: text/html`, not JSON.
    Html,
}

/// The fake's directory: Google-shaped JSON objects, mutable by the test between syncs.
#[derive(Debug, Default)]
pub struct Directory {
    pub users: Vec<Value>,
    pub groups: Vec<Value>,
    /// Group id → its member objects as members.list shows them.
    pub members: BTreeMap<String, Vec<Value>>,
}

struct Shared {
    directory: Mutex<Directory>,
    mode: Mutex<Mode>,
    token_uri: String,
    public_key: Vec<u8>,
    /// What the token endpoint or the API found wrong with dirsync's requests.
    violations: Mutex<Vec<String>>,
    tokens_issued: Mutex<Vec<String>>,
    requests: Mutex<u64>,
}

pub struct FakeGoogle {
    pub base_url: String,
    pub key_json: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeGoogle {
    pub async fn start(directory: Directory) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let der = key.as_der().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        // An `oauth2` path, not the emulator's `/token`: the key file's token_uri is the truth.
        let token_uri = format!("{base_url}/oauth2/v4/token");
        let key_json = json!({
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "113300000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
        .to_string();
        let shared = Arc::new(Shared {
            directory: Mutex::new(directory),
            mode: Mutex::new(Mode::Normal),
            token_uri,
            public_key: key.public_key().as_ref().to_vec(),
            violations: Mutex::new(Vec::new()),
            tokens_issued: Mutex::new(Vec::new()),
            requests: Mutex::new(0),
        });
        let app = Router::new()
            .route("/oauth2/v4/token", post(token))
            .route("/admin/directory/v1/users", get(users))
            .route("/admin/directory/v1/groups", get(groups))
            .route("/admin/directory/v1/groups/{group}/members", get(members))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url,
            key_json,
            shared,
            server,
        }
    }

    pub fn edit(&self, change: impl FnOnce(&mut Directory)) {
        change(&mut self.shared.directory.lock().unwrap());
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }

    pub fn tokens_issued(&self) -> usize {
        self.shared.tokens_issued.lock().unwrap().len()
    }

    pub fn requests(&self) -> u64 {
        *self.shared.requests.lock().unwrap()
    }
}

fn b64url(text: &str) -> Option<Vec<u8>> {
    // Accept padded and unpadded base64url (yup-oauth2 pads).
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let mut problems = Vec::new();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        problems.push(format!("grant_type {:?}", form.get("grant_type")));
    }
    let assertion = form.get("assertion").cloned().unwrap_or_default();
    let parts: Vec<&str> = assertion.split('.').collect();
    let claims: Value = match parts.as_slice() {
        [header, claims, signature] => {
            let header: Value = b64url(header)
                .and_then(|h| serde_json::from_slice(&h).ok())
                .unwrap_or(Value::Null);
            if header["alg"] != "RS256" {
                problems.push(format!("JWT header {header}"));
            }
            let signed = format!("{}.{}", parts[0], parts[1]);
            let verified = b64url(signature).is_some_and(|sig| {
                UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &shared.public_key)
                    .verify(signed.as_bytes(), &sig)
                    .is_ok()
            });
            if !verified {
                problems.push("the RS256 signature does not verify".into());
            }
            b64url(claims)
                .and_then(|c| serde_json::from_slice(&c).ok())
                .unwrap_or(Value::Null)
        }
        _ => {
            problems.push("the assertion is not a JWT".into());
            Value::Null
        }
    };
    if claims["iss"] != CLIENT_EMAIL {
        problems.push(format!("iss {}", claims["iss"]));
    }
    if claims["aud"] != shared.token_uri.as_str() {
        problems.push(format!(
            "aud {} (expected the key's token_uri)",
            claims["aud"]
        ));
    }
    if claims["sub"] != SUBJECT {
        problems.push(format!("sub {}", claims["sub"]));
    }
    let scopes: Vec<&str> = claims["scope"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .collect();
    for needed in [
        "admin.directory.user.readonly",
        "admin.directory.group.readonly",
    ] {
        if !scopes
            .iter()
            .any(|s| *s == format!("https://www.googleapis.com/auth/{needed}"))
        {
            problems.push(format!("scope {:?} lacks {needed}", claims["scope"]));
        }
    }
    // Delegation granted for exactly the two scopes a user/group sync needs: asking for any
    // other is refused, as Google refuses scopes missing from the allow-list.
    for scope in &scopes {
        if !scope.ends_with("admin.directory.user.readonly")
            && !scope.ends_with("admin.directory.group.readonly")
        {
            problems.push(format!("scope {scope} is not granted to this client"));
        }
    }
    let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
    match (iat, exp) {
        (Some(iat), Some(exp)) if exp > iat && exp - iat <= 3600 => {}
        _ => problems.push(format!("iat {iat:?} exp {exp:?}")),
    }
    if !problems.is_empty() {
        shared.violations.lock().unwrap().extend(problems.clone());
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            &problems.join("; "),
        );
    }
    let mut issued = shared.tokens_issued.lock().unwrap();
    let token = format!("ya29.fake-{}", issued.len() + 1);
    issued.push(token.clone());
    Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

/// Checks the bearer token and counts the request; `Err` is the response to send instead.
fn admit(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    *shared.requests.lock().unwrap() += 1;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !shared
        .tokens_issued
        .lock()
        .unwrap()
        .iter()
        .any(|t| t == bearer)
    {
        shared
            .violations
            .lock()
            .unwrap()
            .push(format!("API call with bearer {bearer:?}"));
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": 401, "message": "Login Required.",
                "errors": [{"message": "Login Required.", "domain": "global", "reason": "required"}]}})),
        )
            .into_response());
    }
    if *shared.mode.lock().unwrap() == Mode::Html {
        return Err((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
            "<!DOCTYPE html><html><head><title>Sign in - Google Accounts</title></head><body>captive portal</body></html>",
        )
            .into_response());
    }
    Ok(())
}

/// Page tokens unlike the emulator's: an opaque prefix and the offset, base64url-encoded.
fn page_token(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("~fake:{offset}:CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA"))
}

fn offset_of(token: Option<&String>) -> Option<usize> {
    let Some(token) = token else { return Some(0) };
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    String::from_utf8(text)
        .ok()?
        .split(':')
        .nth(1)?
        .parse()
        .ok()
}

/// Two items per page whatever `maxResults` asks; a list whose length is a multiple of the
/// page size ends with an empty page that has no items key at all.
fn page(kind: &str, key: &str, items: &[Value], query: &BTreeMap<String, String>) -> Response {
    let Some(offset) = offset_of(query.get("pageToken")) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"code": 400, "message": "Invalid Input", "errors": [{"reason": "invalid"}]}})),
        )
            .into_response();
    };
    let mut body = json!({"kind": kind, "etag": format!("\"etag-{}\"", rand::random::<u32>())});
    let chunk: Vec<Value> = items.iter().skip(offset).take(PAGE).cloned().collect();
    if !chunk.is_empty() {
        body[key] = Value::Array(chunk);
    }
    if offset < items.len() {
        body["nextPageToken"] = json!(page_token(offset + PAGE));
    }
    Json(body).into_response()
}

async fn users(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(response) = admit(&shared, &headers) {
        return response;
    }
    let users = shared.directory.lock().unwrap().users.clone();
    page("admin#directory#users", "users", &users, &query)
}

async fn groups(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(response) = admit(&shared, &headers) {
        return response;
    }
    let groups = shared.directory.lock().unwrap().groups.clone();
    page("admin#directory#groups", "groups", &groups, &query)
}

async fn members(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(group): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Err(response) = admit(&shared, &headers) {
        return response;
    }
    let members = shared
        .directory
        .lock()
        .unwrap()
        .members
        .get(&group)
        .cloned();
    match members {
        Some(members) => page("admin#directory#members", "members", &members, &query),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"code": 404, "message": "Resource Not Found: groupKey",
                "errors": [{"message": "Resource Not Found: groupKey", "domain": "global", "reason": "notFound"}]}})),
        )
            .into_response(),
    }
}

/// A Google user object with volatile fields that change on every call.
pub fn user(id: &str, email: &str, given: &str, family: &str) -> Value {
    json!({
        "kind": "admin#directory#user",
        "id": id,
        "etag": format!("\"u-{}\"", rand::random::<u32>()),
        "primaryEmail": email,
        "name": {"givenName": given, "familyName": family, "fullName": format!("{given} {family}")},
        "isAdmin": false,
        "suspended": false,
        "lastLoginTime": format!("2026-11-{:02}T08:00:00.000Z", 1 + rand::random::<u8>() % 27),
        "thumbnailPhotoEtag": format!("\"p-{}\"", rand::random::<u32>()),
        "emails": [{"address": email, "primary": true}],
        "orgUnitPath": "/",
        "customerId": "C0fake01",
    })
}

pub fn group(id: &str, email: &str, name: &str, members: usize) -> Value {
    json!({
        "kind": "admin#directory#group",
        "id": id,
        "etag": format!("\"g-{}\"", rand::random::<u32>()),
        "email": email,
        "name": name,
        "description": format!("the {name} group"),
        "directMembersCount": members.to_string(),
        "adminCreated": true,
    })
}

/// A member as members.list shows it, with no `status` (Google omits it for some members).
pub fn member(id: &str, email: &str, kind: &str) -> Value {
    json!({"kind": "admin#directory#member", "etag": format!("\"m-{}\"", rand::random::<u32>()),
           "id": id, "email": email, "role": "MEMBER", "type": kind})
}

/// The whole customer as a member: no email.
pub fn customer_member() -> Value {
    json!({"kind": "admin#directory#member", "id": "C0fake01", "role": "MEMBER", "type": "CUSTOMER"})
}
