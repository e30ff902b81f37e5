//! The Google source against a loopback fixture server that serves canned Directory API pages,
//! error bodies and an OAuth token endpoint. Source-level: calls the library directly.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Value};

use dirsync::attribute_path::AttributePath;
use dirsync::config::{
    AttributeMapping, FiltersConfig, GoogleSourceConfig, NestedGroups, SuspendedUsers,
};
use dirsync::model::UserState;
use dirsync::source::google::{GoogleSource, SCOPES};
use dirsync::source::http::RetryPolicy;
use dirsync::source::{FetchStats, MemberRef, OtherMember, SourceError};

const SUBJECT: &str = "admin@example.com";
const CLIENT_ID: &str = "118000000000000000001";

fn private_key_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    })
}

/// A canned reply served before the normal page for a path.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Canned {
    fn google(status: u16, reason: &str, message: &str) -> Self {
        Self {
            status,
            headers: vec![],
            body: json!({"error": {"code": status, "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}]}})
            .to_string(),
        }
    }
    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![],
            body: body.to_owned(),
        }
    }
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

#[derive(Default)]
struct Server {
    /// (path, pageToken) → JSON page.
    pages: HashMap<(String, Option<String>), Value>,
    /// path → replies served first, in order.
    faults: HashMap<String, VecDeque<Canned>>,
    /// Set: the token endpoint answers this (status, body) instead of a token.
    token_error: Option<(u16, Value)>,
    /// Served by the token endpoint first, in order, before `token_error` or a token.
    token_faults: VecDeque<(u16, String)>,
    tokens_issued: u32,
    valid_tokens: HashSet<String>,
    /// Claims of every JWT assertion received.
    assertions: Vec<Value>,
    /// (path, query) of every API request.
    requests: Vec<(String, HashMap<String, String>)>,
    in_flight: usize,
    max_in_flight: usize,
    /// Set: this path answers empty pages with a new `nextPageToken` for ever.
    endless: Option<String>,
    endless_pages: u64,
}

#[derive(Clone)]
struct Shared {
    server: Arc<Mutex<Server>>,
    /// Members requests wait here until this many are in flight at once.
    members_barrier: Option<(usize, Arc<tokio::sync::Barrier>)>,
    barrier_uses: Arc<Mutex<usize>>,
}

struct Fixture {
    addr: SocketAddr,
    shared: Shared,
}

impl Fixture {
    async fn start() -> Self {
        Self::start_with_barrier(None).await
    }

    async fn start_with_barrier(parties: Option<usize>) -> Self {
        let shared = Shared {
            server: Arc::new(Mutex::new(Server::default())),
            members_barrier: parties.map(|n| (n, Arc::new(tokio::sync::Barrier::new(n)))),
            barrier_uses: Arc::new(Mutex::new(0)),
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, shared }
    }

    fn server(&self) -> std::sync::MutexGuard<'_, Server> {
        self.shared.server.lock().unwrap()
    }

    fn page(&self, path: &str, token: Option<&str>, body: Value) {
        self.server()
            .pages
            .insert((path.to_owned(), token.map(str::to_owned)), body);
    }

    fn fault(&self, path: &str, canned: Canned) {
        self.server()
            .faults
            .entry(path.to_owned())
            .or_default()
            .push_back(canned);
    }

    fn requests_to(&self, path: &str) -> Vec<HashMap<String, String>> {
        self.server()
            .requests
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, q)| q.clone())
            .collect()
    }

    fn config(&self) -> GoogleSourceConfig {
        self.config_with_token_uri(&format!("http://{}/token", self.addr))
    }

    fn config_with_token_uri(&self, token_uri: &str) -> GoogleSourceConfig {
        let key: dirsync::config::ServiceAccountKey = serde_json::from_value(json!({
            "type": "service_account",
            "project_id": "dirsync-test",
            "private_key_id": "k1",
            "private_key": private_key_pem(),
            "client_email": "dirsync@dirsync-test.iam.gserviceaccount.com",
            "client_id": CLIENT_ID,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }))
        .unwrap();
        GoogleSourceConfig {
            credentials_file: "key.json".into(),
            service_account_key: std::sync::Arc::new(key),
            subject: SUBJECT.into(),
            customer: "my_customer".into(),
            domain: None,
            api_base: format!("http://{}", self.addr),
            suspended_users: SuspendedUsers::Inactive,
            nested_groups: NestedGroups::Flatten,
            max_concurrency: 8,
            requests_per_minute: 0,
            retry_max: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_run: Duration::from_secs(3600),
            all_scopes: false,
        }
    }

    async fn source(&self, config: GoogleSourceConfig) -> (GoogleSource, Arc<FetchStats>) {
        self.source_with(
            config,
            &FiltersConfig::default(),
            &AttributeMapping::default(),
        )
        .await
    }

    async fn source_with(
        &self,
        config: GoogleSourceConfig,
        filters: &FiltersConfig,
        attributes: &AttributeMapping,
    ) -> (GoogleSource, Arc<FetchStats>) {
        let stats = Arc::new(FetchStats::default());
        let source = GoogleSource::new(config, filters, attributes, stats.clone())
            .await
            .unwrap()
            .with_retry_policy(fast_retries(Duration::from_secs(5)));
        (source, stats)
    }
}

fn fast_retries(max_elapsed: Duration) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(10),
        max_elapsed,
    }
}

fn reply(status: u16, headers: &[(&'static str, String)], body: String) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json; charset=UTF-8");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(Body::from(body)).unwrap()
}

fn jwt_claims(assertion: &str) -> Value {
    let payload = assertion.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = uri.path().to_owned();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if path == "/token" {
        assert_eq!(method, Method::POST);
        let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let mut server = shared.server.lock().unwrap();
        server.assertions.push(jwt_claims(&form["assertion"]));
        if let Some((status, body)) = server.token_faults.pop_front() {
            return reply(status, &[], body);
        }
        if let Some((status, body)) = &server.token_error {
            return reply(*status, &[], body.to_string());
        }
        server.tokens_issued += 1;
        let token = format!("ya29.fixture-{}", server.tokens_issued);
        server.valid_tokens.insert(token.clone());
        return reply(
            200,
            &[],
            json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).to_string(),
        );
    }

    let is_members = path.ends_with("/members");
    {
        let mut server = shared.server.lock().unwrap();
        server.requests.push((path.clone(), query.clone()));
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !server.valid_tokens.contains(bearer) {
            return reply(
                401,
                &[],
                Canned::google(401, "authError", "Invalid Credentials").body,
            );
        }
        if let Some(canned) = server.faults.get_mut(&path).and_then(VecDeque::pop_front) {
            return reply(canned.status, &canned.headers, canned.body);
        }
        if is_members {
            server.in_flight += 1;
            server.max_in_flight = server.max_in_flight.max(server.in_flight);
        }
    }
    if is_members {
        if let Some((parties, barrier)) = &shared.members_barrier {
            let first_round = {
                let mut uses = shared.barrier_uses.lock().unwrap();
                *uses += 1;
                *uses <= *parties
            };
            if first_round {
                barrier.wait().await;
            }
        }
    }
    let mut server = shared.server.lock().unwrap();
    if is_members {
        server.in_flight -= 1;
    }
    if server.endless.as_deref() == Some(path.as_str()) {
        server.endless_pages += 1;
        let next = format!("endless-{}", server.endless_pages);
        return reply(
            200,
            &[],
            json!({"kind": "admin#directory#users", "nextPageToken": next}).to_string(),
        );
    }
    let key = (path.clone(), query.get("pageToken").cloned());
    match server.pages.get(&key) {
        Some(page) => reply(200, &[], page.to_string()),
        None => {
            let what = if is_members { "groupKey" } else { "resource" };
            let canned = Canned::google(404, "notFound", &format!("Resource Not Found: {what}"));
            reply(404, &[], canned.body)
        }
    }
}

const USERS: &str = "/admin/directory/v1/users";
const GROUPS: &str = "/admin/directory/v1/groups";
const ORG_UNITS: &str = "/admin/directory/v1/customer/my_customer/orgunits";

fn org_units_page(paths: &[&str]) -> Value {
    let units: Vec<Value> = paths
        .iter()
        .map(|path| {
            json!({"kind": "admin#directory#orgUnit", "orgUnitPath": path,
                           "name": path.rsplit('/').next().unwrap(), "parentOrgUnitPath": "/"})
        })
        .collect();
    json!({"kind": "admin#directory#orgUnits", "etag": "\"ou\"", "organizationUnits": units})
}

fn members_path(group: &str) -> String {
    format!("/admin/directory/v1/groups/{group}/members")
}

fn user_json(id: &str, email: &str, org_unit: &str) -> Value {
    json!({
        "kind": "admin#directory#user", "id": id, "etag": format!("\"etag-{id}\""),
        "primaryEmail": email,
        "name": {"givenName": "Given", "familyName": id, "fullName": format!("Given {id}")},
        "isAdmin": false, "suspended": false, "archived": false,
        "lastLoginTime": "2026-11-27T08:14:03.000Z",
        "emails": [{"address": email, "primary": true}],
        "orgUnitPath": org_unit, "customerId": "C03az79cb",
    })
}

fn group_json(id: &str, email: &str) -> Value {
    json!({"kind": "admin#directory#group", "id": id, "etag": "\"g\"", "email": email,
           "name": id, "description": "", "directMembersCount": "1", "adminCreated": true})
}

fn member_json(id: &str, kind: &str, email: Option<&str>) -> Value {
    let mut member = json!({"kind": "admin#directory#member", "etag": "\"m\"", "id": id,
                            "role": "MEMBER", "type": kind});
    if let Some(email) = email {
        member["email"] = json!(email);
        member["status"] = json!("ACTIVE");
    }
    member
}

/// A small directory: three users over two pages, two groups (one nested in the other), an
/// external member, a customer member, and an empty group with no `members` key.
fn small_directory(fx: &Fixture) {
    fx.page(
        USERS,
        None,
        json!({"kind": "admin#directory#users", "etag": "\"l1\"",
               "users": [user_json("u1", "Alice@Example.com", "/Engineering"),
                         user_json("u2", "bob@example.com", "/Sales")],
               "nextPageToken": "users-2"}),
    );
    let mut carol = user_json("u3", "carol@example.com", "/");
    carol["suspended"] = json!(true);
    fx.page(
        USERS,
        Some("users-2"),
        json!({"kind": "admin#directory#users", "etag": "\"l2\"", "users": [carol]}),
    );
    fx.page(
        GROUPS,
        None,
        json!({"kind": "admin#directory#groups",
               "groups": [group_json("g1", "Eng@example.com"), group_json("g2", "platform@example.com")],
               "nextPageToken": "groups-2"}),
    );
    fx.page(
        GROUPS,
        Some("groups-2"),
        json!({"kind": "admin#directory#groups", "groups": [group_json("g3", "empty@example.com")]}),
    );
    fx.page(
        &members_path("g1"),
        None,
        json!({"kind": "admin#directory#members",
               "members": [member_json("u1", "USER", Some("alice@example.com")),
                           member_json("g2", "GROUP", Some("platform@example.com"))],
               "nextPageToken": "m-2"}),
    );
    fx.page(
        &members_path("g1"),
        Some("m-2"),
        json!({"kind": "admin#directory#members",
               "members": [member_json("x9", "USER", None),
                           member_json("C03az79cb", "CUSTOMER", None)]}),
    );
    fx.page(
        &members_path("g2"),
        None,
        json!({"kind": "admin#directory#members",
               "members": [member_json("u2", "USER", Some("bob@example.com"))]}),
    );
    fx.page(
        &members_path("g3"),
        None,
        json!({"kind": "admin#directory#members", "etag": "\"e\""}),
    );
}

#[tokio::test]
async fn fetches_and_normalizes_a_whole_directory() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    let (source, stats) = fx.source(fx.config()).await;
    let fetched = source.fetch().await.unwrap();

    let ids: Vec<&str> = fetched.users.iter().map(|u| &*u.user.id).collect();
    assert_eq!(ids, ["u1", "u2", "u3"]);
    let alice = &fetched.users[0];
    assert_eq!(alice.user.email, "alice@example.com");
    assert_eq!(alice.user.username, "alice@example.com");
    assert_eq!(alice.org_unit_path.as_deref(), Some("/Engineering"));
    assert!(!alice.user.raw_attributes.as_str().contains("etag"));
    assert!(!alice.user.raw_attributes.as_str().contains("lastLoginTime"));
    assert_eq!(fetched.users[2].user.state, UserState::Inactive);

    let groups: Vec<&str> = fetched.groups.iter().map(|g| &*g.id).collect();
    assert_eq!(groups, ["g1", "g2", "g3"]);
    assert_eq!(fetched.groups[0].email.as_deref(), Some("eng@example.com"));
    assert_eq!(fetched.groups[0].description, None);

    assert_eq!(
        fetched.members["g1"],
        [
            MemberRef::User("u1".into()),
            MemberRef::Group("g2".into()),
            MemberRef::Other(Box::new(OtherMember {
                kind: "EXTERNAL".into(),
                id: Some("x9".into()),
                email: None
            })),
            MemberRef::Other(Box::new(OtherMember {
                kind: "CUSTOMER".into(),
                id: Some("C03az79cb".into()),
                email: None
            })),
        ]
    );
    assert_eq!(fetched.members["g2"], [MemberRef::User("u2".into())]);
    assert!(fetched.members["g3"].is_empty(), "no `members` key: empty");

    // 2 users pages + 2 groups pages + 2 + 1 + 1 members pages.
    assert_eq!(stats.requests(), 8);
    assert_eq!(stats.retries(), 0);

    let users_query = &fx.requests_to(USERS)[0];
    assert_eq!(users_query["customer"], "my_customer");
    assert_eq!(users_query["maxResults"], "500");
    assert_eq!(users_query["projection"], "basic");
    assert_eq!(fx.requests_to(GROUPS)[0]["maxResults"], "200");
    assert_eq!(fx.requests_to(&members_path("g1"))[1]["pageToken"], "m-2");

    // The token is fetched once, for the subject, with the read-only scopes it needs only (no
    // org-unit scope without an org-unit filter).
    let server = fx.server();
    assert_eq!(server.tokens_issued, 1);
    let claims = &server.assertions[0];
    assert_eq!(claims["sub"], SUBJECT);
    assert_eq!(
        claims["scope"],
        dirsync::source::google::scopes_for(&FiltersConfig::default()).join(" ")
    );
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/admin.directory.user.readonly https://www.googleapis.com/auth/admin.directory.group.readonly"
    );
    assert!(SCOPES.iter().all(|s| s.ends_with(".readonly")));
}

#[tokio::test]
async fn custom_schema_attributes_ask_for_the_full_projection() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    let mut attributes = AttributeMapping::default();
    attributes.insert(
        "cost_center".into(),
        AttributePath::parse("customSchemas.HR.CostCenter").unwrap(),
    );
    let (source, _) = fx
        .source_with(fx.config(), &FiltersConfig::default(), &attributes)
        .await;
    source.fetch().await.unwrap();
    assert_eq!(fx.requests_to(USERS)[0]["projection"], "full");
}

#[tokio::test]
async fn a_group_deleted_before_members_list_is_dropped() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.server().pages.remove(&(members_path("g2"), None));
    let (source, _) = fx.source(fx.config()).await;
    let fetched = source.fetch().await.unwrap();
    let groups: Vec<&str> = fetched.groups.iter().map(|g| &*g.id).collect();
    assert_eq!(groups, ["g1", "g3"]);
    assert!(!fetched.members.contains_key("g2"));
    assert_eq!(fetched.members.len(), 2);
    // g1 nested the vanished g2: that is no nesting any more.
    assert_eq!(
        fetched.members["g1"][1],
        MemberRef::Other(Box::new(OtherMember {
            kind: "GROUP".into(),
            id: Some("g2".into()),
            email: None
        }))
    );
}

#[tokio::test]
async fn transient_errors_are_retried() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.fault(
        USERS,
        Canned::google(429, "rateLimitExceeded", "Too many").header("retry-after", "0"),
    );
    fx.fault(
        USERS,
        Canned::google(
            403,
            "userRateLimitExceeded",
            "Quota exceeded for quota metric",
        ),
    );
    fx.fault(
        GROUPS,
        Canned::text(502, "<html><body>Bad Gateway</body></html>"),
    );
    fx.fault(
        GROUPS,
        Canned::google(503, "backendError", "Service unavailable. Please try again"),
    );
    fx.fault(
        &members_path("g1"),
        Canned::text(403, "Request rate higher than configured."),
    );
    fx.fault(
        &members_path("g2"),
        Canned::google(500, "internalError", "x"),
    );
    let (source, stats) = fx.source(fx.config()).await;
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.users.len(), 3);
    assert_eq!(fetched.groups.len(), 3);
    assert_eq!(stats.retries(), 6);
    assert_eq!(stats.requests(), 8 + 6);
}

#[tokio::test]
async fn retries_stop_when_the_budget_is_spent() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    for _ in 0..10_000 {
        fx.fault(
            USERS,
            Canned::google(503, "backendError", "Service unavailable"),
        );
    }
    let stats = Arc::new(FetchStats::default());
    let source = GoogleSource::new(
        fx.config(),
        &FiltersConfig::default(),
        &AttributeMapping::default(),
        stats.clone(),
    )
    .await
    .unwrap()
    .with_retry_policy(fast_retries(Duration::from_millis(300)));
    let err = source.fetch().await.unwrap_err();
    assert!(
        matches!(err, SourceError::Http { status: 503, .. }),
        "{err}"
    );
    assert!(stats.retries() >= 1);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    for (canned, status) in [
        (Canned::google(400, "badRequest", "Bad Request"), 400),
        (
            Canned::google(
                403,
                "forbidden",
                "Not Authorized to access this resource/api",
            ),
            403,
        ),
        (Canned::google(404, "notFound", "Domain not found."), 404),
    ] {
        let fx = Fixture::start().await;
        small_directory(&fx);
        fx.fault(USERS, canned);
        let (source, stats) = fx.source(fx.config()).await;
        let err = source.fetch().await.unwrap_err();
        match &err {
            SourceError::Http { status: got, .. } => assert_eq!(*got, status, "{err}"),
            other => panic!("expected HTTP {status}, got {other}"),
        }
        assert_eq!(fx.requests_to(USERS).len(), 1, "HTTP {status} retried");
        assert_eq!(stats.retries(), 0);
        if status == 403 {
            assert!(err.hint().unwrap().contains("admin"));
        }
    }
}

#[tokio::test]
async fn unreadable_bodies_are_invalid_responses() {
    for body in [
        "<html>hello</html>",
        "{\"users\": [",
        "",
        "[1, 2]",
        "{\"users\": 5}",
    ] {
        let fx = Fixture::start().await;
        small_directory(&fx);
        fx.fault(USERS, Canned::text(200, body));
        let (source, _) = fx.source(fx.config()).await;
        let err = source.fetch().await.unwrap_err();
        assert!(
            matches!(err, SourceError::InvalidResponse { .. }),
            "{body:?}: {err}"
        );
    }
}

#[tokio::test]
async fn a_repeated_page_token_is_an_error_not_a_loop() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.page(
        &members_path("g2"),
        None,
        json!({"members": [member_json("u2", "USER", Some("bob@example.com"))],
               "nextPageToken": "again"}),
    );
    fx.page(
        &members_path("g2"),
        Some("again"),
        json!({"members": [], "nextPageToken": "again"}),
    );
    let (source, _) = fx.source(fx.config()).await;
    let err = source.fetch().await.unwrap_err();
    match err {
        SourceError::Protocol(message) => assert!(message.contains("members.list"), "{message}"),
        other => panic!("expected a protocol error, got {other}"),
    }
}

#[tokio::test]
async fn a_401_refreshes_the_token_once() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.fault(
        GROUPS,
        Canned::google(401, "authError", "Invalid Credentials"),
    );
    let (source, _) = fx.source(fx.config()).await;
    source.fetch().await.unwrap();
    assert_eq!(fx.server().tokens_issued, 2);

    // Two in a row: the refreshed token is refused too, and the fetch fails.
    fx.fault(
        GROUPS,
        Canned::google(401, "authError", "Invalid Credentials"),
    );
    fx.fault(
        GROUPS,
        Canned::google(401, "authError", "Invalid Credentials"),
    );
    let err = source.fetch().await.unwrap_err();
    assert!(
        matches!(err, SourceError::Http { status: 401, .. }),
        "{err}"
    );
    assert!(err.hint().is_some());
}

#[tokio::test]
async fn token_errors_say_what_to_fix() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.server().token_error = Some((
        401,
        json!({"error": "unauthorized_client",
               "error_description": "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."}),
    ));
    let (source, _) = fx.source(fx.config()).await;
    let err = source.fetch().await.unwrap_err();
    let SourceError::Auth { hint, .. } = &err else {
        panic!("expected an auth error, got {err}");
    };
    let hint = hint.clone().unwrap();
    assert!(hint.contains(CLIENT_ID), "{hint}");
    assert!(hint.contains("Domain-wide delegation"), "{hint}");
    assert!(hint.contains(SCOPES[0]), "{hint}");
    assert!(
        fx.requests_to(USERS).is_empty(),
        "no API call without a token"
    );

    fx.server().token_error = Some((
        400,
        json!({"error": "invalid_grant", "error_description": "Invalid email or User ID"}),
    ));
    let err = source.check().await.unwrap_err();
    assert!(err.hint().unwrap().contains("no such user"), "{err}");

    fx.server().token_error = Some((
        400,
        json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
    ));
    let err = source.check().await.unwrap_err();
    assert!(err.hint().unwrap().contains("new key"), "{err}");

    // A 502 is retried like an API error, and its status and host are said when it persists.
    fx.server().token_error = Some((502, json!("<html>")));
    let source = source.with_retry_policy(fast_retries(Duration::from_millis(100)));
    let err = source.check().await.unwrap_err();
    assert!(
        matches!(err, SourceError::Http { status: 502, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&fx.addr.to_string()), "{err}");
}

#[tokio::test]
async fn transient_token_endpoint_failures_are_retried() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.server()
        .token_faults
        .extend([(503, String::new()), (500, "<html>oops</html>".to_owned())]);
    let (source, _) = fx.source(fx.config()).await;
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.users.len(), 3);
    assert!(fx.server().token_faults.is_empty());
}

/// A token endpoint on loopback that accepts connections and then misbehaves for ever: with
/// `drip`, it sends a response head and then one body byte at a time, never finishing.
async fn stalling_token_endpoint(drip: bool) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                if drip {
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{";
                    let _ = stream.write_all(head.as_bytes()).await;
                    let mut tick = tokio::time::interval(Duration::from_millis(100));
                    loop {
                        tick.tick().await;
                        if stream.write_all(b" ").await.is_err() {
                            return;
                        }
                    }
                }
                std::future::pending::<()>().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_token_endpoint_that_never_answers_or_drips_is_bounded_by_the_request_timeout() {
    for drip in [false, true] {
        let fx = Fixture::start().await;
        let stalling = stalling_token_endpoint(drip).await;
        let mut config = fx.config_with_token_uri(&format!("http://{stalling}/token"));
        config.request_timeout = Duration::from_millis(500);
        let (source, _) = fx.source(config).await;
        let source = source.with_retry_policy(fast_retries(Duration::from_millis(300)));
        let err = tokio::time::timeout(Duration::from_secs(30), source.check())
            .await
            .unwrap_or_else(|_| panic!("the token request hung (drip: {drip})"))
            .unwrap_err();
        assert!(
            err.to_string().contains(&stalling.to_string()),
            "drip {drip}: {err}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_token_endpoint_names_its_host() {
    let fx = Fixture::start().await;
    // A port nothing listens on: bind, note it, close.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let config = fx.config_with_token_uri(&format!("http://{closed}/token"));
    let (source, _) = fx.source(config).await;
    let err = source.check().await.unwrap_err();
    match &err {
        SourceError::Network { message, .. } => {
            assert!(message.contains(&closed.to_string()), "{err}")
        }
        other => panic!("expected a network error, got {other}"),
    }
}

#[tokio::test]
async fn check_reads_one_page_of_each() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    let (source, stats) = fx.source(fx.config()).await;
    let line = source.check().await.unwrap();
    assert!(line.contains(SUBJECT) && line.contains(CLIENT_ID), "{line}");
    assert!(line.contains("users.list OK") && line.contains("groups.list OK"));
    assert_eq!(stats.requests(), 2);
    assert_eq!(fx.requests_to(USERS)[0]["maxResults"], "1");
}

#[tokio::test]
async fn org_unit_filters_are_pushed_down() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    let filters = FiltersConfig {
        org_units: vec!["/Engineering".into(), "/Sales".into()],
        ..FiltersConfig::default()
    };
    fx.page(
        ORG_UNITS,
        None,
        org_units_page(&["/Engineering", "/Engineering/Platform", "/Sales"]),
    );
    // The fixture ignores `query`, so both org units return every user: ids are deduplicated.
    let (source, _) = fx
        .source_with(fx.config(), &filters, &AttributeMapping::default())
        .await;
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.users.len(), 3);
    let queries: Vec<String> = fx
        .requests_to(USERS)
        .iter()
        .filter(|q| !q.contains_key("pageToken"))
        .map(|q| q["query"].clone())
        .collect();
    assert_eq!(
        queries,
        ["orgUnitPath='/Engineering'", "orgUnitPath='/Sales'"]
    );
}

#[tokio::test]
async fn members_are_listed_concurrently_within_the_limit() {
    let fx = Fixture::start_with_barrier(Some(4)).await;
    small_directory(&fx);
    let mut groups = Vec::new();
    for n in 0..20 {
        let id = format!("c{n}");
        groups.push(group_json(&id, &format!("{id}@example.com")));
        fx.page(
            &members_path(&id),
            None,
            json!({"members": [member_json("u1", "USER", Some("alice@example.com"))]}),
        );
    }
    fx.page(GROUPS, None, json!({"groups": groups}));
    let mut config = fx.config();
    config.max_concurrency = 4;
    let (source, _) = fx.source(config).await;
    // The first four members requests only complete once four are in flight together.
    let fetched = tokio::time::timeout(Duration::from_secs(30), source.fetch())
        .await
        .expect("members.list did not run 4 at a time")
        .unwrap();
    assert_eq!(fetched.groups.len(), 20);
    assert!(fetched
        .members
        .values()
        .all(|m| m == &[MemberRef::User("u1".into())]));
    assert_eq!(fx.server().max_in_flight, 4);
}

#[tokio::test]
async fn the_rate_limit_paces_every_request() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    let mut config = fx.config();
    config.requests_per_minute = 1200; // one request per 50 ms
    let (source, stats) = fx.source(config).await;
    let started = std::time::Instant::now();
    source.fetch().await.unwrap();
    let requests = stats.requests();
    assert_eq!(requests, 8);
    // The limiter hands out one slot per 50 ms, so the last request cannot start earlier.
    assert!(started.elapsed() >= Duration::from_millis(50 * (requests - 1)));
}

// The CA-bundle check (`an_https_token_endpoint_needs_ca_certificates_or_says_so`) runs the
// binary with SSL_CERT_FILE set both ways: tests/it/sync_e2e.rs.

#[tokio::test]
async fn a_404_that_is_not_google_s_group_not_found_fails_the_fetch() {
    // A proxy's or wrong path's 404 must not make every group look deleted.
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.fault(
        &members_path("g2"),
        Canned::text(404, "<html>Not Found</html>"),
    );
    let (source, _) = fx.source(fx.config()).await;
    let err = source.fetch().await.unwrap_err();
    assert!(
        matches!(err, SourceError::Http { status: 404, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_misspelt_org_unit_fails_the_fetch_naming_the_key() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.page(ORG_UNITS, None, org_units_page(&["/Engineering", "/Sales"]));
    let filters = FiltersConfig {
        org_units: vec!["/Engineering".into(), "/Enginering/Platform".into()],
        ..FiltersConfig::default()
    };
    let (source, _) = fx
        .source_with(fx.config(), &filters, &AttributeMapping::default())
        .await;
    let err = source.fetch().await.unwrap_err().to_string();
    assert!(err.contains("[filters] org_units[1]"), "{err}");
    assert!(err.contains("/Enginering/Platform"), "{err}");
    assert!(err.contains("/Engineering, /Sales"), "{err}");
    assert_eq!(fx.requests_to(ORG_UNITS)[0]["type"], "all");
    // Without an org-unit filter orgunits.list is never called.
    let fx = Fixture::start().await;
    small_directory(&fx);
    let (source, _) = fx.source(fx.config()).await;
    source.fetch().await.unwrap();
    assert!(fx.requests_to(ORG_UNITS).is_empty());
}

#[tokio::test]
async fn users_missing_from_a_filtered_listing_are_read_by_id() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.page(ORG_UNITS, None, org_units_page(&["/Engineering", "/Sales"]));
    fx.page(
        "/admin/directory/v1/users/u7",
        None,
        user_json("u7", "moved@example.com", "/Sales"),
    );
    let filters = FiltersConfig {
        org_units: vec!["/Engineering".into()],
        ..FiltersConfig::default()
    };
    let (source, _) = fx
        .source_with(fx.config(), &filters, &AttributeMapping::default())
        .await;
    let ids: Vec<dirsync::model::Id> = vec!["u7".into(), "u8".into()];
    let found = source.locate_users(&ids).await.unwrap();
    assert_eq!(found.len(), 1, "u8 is gone (404)");
    assert_eq!(&*found[0].user.id, "u7");
    assert_eq!(found[0].org_unit_path.as_deref(), Some("/Sales"));
    // An unfiltered listing is complete: nothing to look up.
    let (source, _) = fx.source(fx.config()).await;
    assert!(source.locate_users(&ids).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_null_or_missing_user_list_is_an_error_not_an_empty_directory() {
    for body in [
        json!({"kind": "admin#directory#users", "users": null}),
        json!({}),
        json!({"etag": "\"e\""}),
    ] {
        let fx = Fixture::start().await;
        small_directory(&fx);
        fx.page(USERS, None, body.clone());
        let (source, _) = fx.source(fx.config()).await;
        let err = source.fetch().await.unwrap_err();
        assert!(
            matches!(err, SourceError::InvalidResponse { .. }),
            "{body}: {err}"
        );
        assert!(err.to_string().contains("users"), "{err}");
    }
    // A well-formed empty last page is an empty listing.
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.page(
        USERS,
        None,
        json!({"kind": "admin#directory#users", "etag": "\"e\""}),
    );
    let (source, _) = fx.source(fx.config()).await;
    assert!(source.fetch().await.unwrap().users.is_empty());
}

#[tokio::test]
async fn a_user_listed_twice_with_different_data_tears_the_listing() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    let mut alice_renamed = user_json("u1", "alice.new@example.com", "/Engineering");
    alice_renamed["name"]["givenName"] = json!("Alicia");
    fx.page(
        USERS,
        Some("users-2"),
        json!({"kind": "admin#directory#users", "users": [alice_renamed]}),
    );
    let (source, _) = fx.source(fx.config()).await;
    let err = source.fetch().await.unwrap_err();
    assert!(err.to_string().contains("torn listing"), "{err}");
    assert!(err.to_string().contains("u1"), "{err}");

    // The same user again, unchanged (overlapping pages), is one user.
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.page(
        USERS,
        Some("users-2"),
        json!({"kind": "admin#directory#users",
               "users": [user_json("u1", "Alice@Example.com", "/Engineering")]}),
    );
    let (source, _) = fx.source(fx.config()).await;
    assert_eq!(source.fetch().await.unwrap().users.len(), 2);
}

#[tokio::test]
async fn a_listing_whose_page_tokens_never_end_stops_with_an_error() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    fx.server().endless = Some(USERS.to_owned());
    let (source, _) = fx.source(fx.config()).await;
    let err = tokio::time::timeout(Duration::from_secs(60), source.fetch())
        .await
        .expect("the endless listing was followed for ever")
        .unwrap_err();
    assert!(err.to_string().contains("did not end"), "{err}");
    assert!(
        fx.server().endless_pages <= 101,
        "{}",
        fx.server().endless_pages
    );
}

#[tokio::test]
async fn a_response_body_over_the_cap_is_refused_and_not_retried() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    let huge = format!(
        "{{\"kind\": \"admin#directory#users\", \"pad\": \"{}\"}}",
        "x".repeat(dirsync::source::http::MAX_RESPONSE_BYTES + 1)
    );
    fx.fault(USERS, Canned::text(200, &huge));
    let (source, stats) = fx.source(fx.config()).await;
    let err = source.fetch().await.unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    assert_eq!(stats.retries(), 0);
}

#[tokio::test]
async fn a_user_over_the_object_size_cap_refuses_the_run_naming_the_user() {
    let fx = Fixture::start().await;
    small_directory(&fx);
    let mut bloated = user_json("u3", "carol@example.com", "/");
    bloated["notes"] = json!({"value": "x".repeat(dirsync::source::MAX_OBJECT_BYTES + 10)});
    fx.page(
        USERS,
        Some("users-2"),
        json!({"kind": "admin#directory#users", "users": [bloated]}),
    );
    let (source, _) = fx.source(fx.config()).await;
    let err = source.fetch().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("u3") && text.contains("carol@example.com"),
        "{text}"
    );
    assert!(text.contains("`notes`"), "{text}");
}
