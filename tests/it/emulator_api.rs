//! The emulator over real HTTP on 127.0.0.1, started in-process through the library API:
//! the token endpoint's JWT checks, API auth, paging, shapes, queries, writes, every fault
//! kind, counters and the admin endpoints.
#![allow(clippy::unwrap_used)]

use dirsync_emulator::{
    Emulator, EmulatorBuilder, EmulatorHandle, FaultRule, Fixture, ServiceAccount,
};
use serde_json::{json, Value};

const ADMIN: &str = "admin@example.com";
const RO: &[&str] = &[
    "admin.directory.user.readonly",
    "admin.directory.group.readonly",
    "admin.directory.orgunit.readonly",
];

struct Env {
    handle: EmulatorHandle,
    http: reqwest::Client,
    token: String,
}

impl Env {
    async fn start(builder: EmulatorBuilder) -> Self {
        let handle = builder.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let token = handle.issue_token(Some(ADMIN), RO);
        Self {
            handle,
            http: reqwest::Client::new(),
            token,
        }
    }

    async fn small() -> Self {
        Self::start(Emulator::builder().users(60).groups(8).seed(3)).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.base_url)
    }

    async fn get_with(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.get_with(path, Some(&self.token)).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn token_request(&self, assertion: &str) -> (u16, Value) {
        let response = self
            .http
            .post(&self.handle.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    fn claims(&self) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.handle.service_account().0,
            "aud": self.handle.token_uri,
            "iat": now,
            "exp": now + 3600,
            "sub": ADMIN,
            "scope": "https://www.googleapis.com/auth/admin.directory.user.readonly https://www.googleapis.com/auth/admin.directory.group.readonly",
        })
    }

    fn jwt(&self, claims: &Value) -> String {
        self.handle
            .sign_jwt(&json!({"alg": "RS256", "typ": "JWT"}), claims)
            .unwrap()
    }
}

fn reason(body: &Value) -> &str {
    body["error"]["errors"][0]["reason"].as_str().unwrap_or("")
}

/// Fetches every page of a list; returns the items and the number of pages.
async fn list_all(env: &Env, path: &str, key: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &token {
            Some(t) => format!("{path}{sep}pageToken={t}"),
            None => path.to_owned(),
        };
        let (status, body) = env.get(&url).await;
        assert_eq!(status, 200, "{url}: {body}");
        pages += 1;
        if let Some(list) = body.get(key) {
            let list = list.as_array().unwrap();
            assert!(!list.is_empty(), "an empty items array must be omitted");
            items.extend(list.iter().cloned());
        }
        match body.get("nextPageToken") {
            Some(t) => token = Some(t.as_str().unwrap().to_owned()),
            None => return (items, pages),
        }
    }
}

// ----- token endpoint --------------------------------------------------------------------------

#[tokio::test]
async fn token_endpoint_accepts_real_assertions() {
    let env = Env::small().await;
    let (status, body) = env.token_request(&env.jwt(&env.claims())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    let (status, _) = env
        .get_with(
            "/admin/directory/v1/users?customer=my_customer",
            Some(token),
        )
        .await;
    assert_eq!(status, 200);

    // google-auth: aud is Google's URL, header carries kid.
    let mut claims = env.claims();
    claims["aud"] = json!("https://oauth2.googleapis.com/token");
    let key: Value = serde_json::from_str(&env.handle.service_account_key_json()).unwrap();
    let with_kid = env
        .handle
        .sign_jwt(
            &json!({"alg": "RS256", "typ": "JWT", "kid": key["private_key_id"]}),
            &claims,
        )
        .unwrap();
    let (status, body) = env.token_request(&with_kid).await;
    assert_eq!(status, 200, "{body}");

    // yup-oauth2: padded base64url segments.
    let padded = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE;
        let input = format!(
            "{}.{}",
            engine.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string()),
            engine.encode(env.claims().to_string())
        );
        let key = ServiceAccount::from_key_json(&env.handle.service_account_key_json()).unwrap();
        format!(
            "{input}.{}",
            engine.encode(key.sign(input.as_bytes()).unwrap())
        )
    };
    assert!(padded.contains('='));
    assert_eq!(env.token_request(&padded).await.0, 200);

    // sub null: a token for the service account itself, which is no admin.
    let mut claims = env.claims();
    claims["sub"] = Value::Null;
    let (status, body) = env.token_request(&env.jwt(&claims)).await;
    assert_eq!(status, 200);
    let (status, body) = env
        .get_with(
            "/admin/directory/v1/users?customer=my_customer",
            body["access_token"].as_str(),
        )
        .await;
    assert_eq!((status, reason(&body)), (403, "forbidden"));
}

#[tokio::test]
async fn token_endpoint_rejects_bad_assertions() {
    let env = Env::small().await;
    let check = |expected_status: u16, expected_error: &'static str| {
        move |(status, body): (u16, Value)| {
            assert_eq!(status, expected_status, "{body}");
            assert_eq!(body["error"], expected_error, "{body}");
            body["error_description"].as_str().unwrap().to_owned()
        }
    };
    // Signed by another key.
    let other = ServiceAccount::generate().unwrap();
    let forged = other
        .sign_jwt(&json!({"alg": "RS256", "typ": "JWT"}), &env.claims())
        .unwrap();
    let text = check(400, "invalid_grant")(env.token_request(&forged).await);
    assert_eq!(text, "Invalid JWT Signature.");
    // A tampered payload.
    let good = env.jwt(&env.claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut claims = env.claims();
    claims["sub"] = json!("someone@example.com");
    let swapped = base64_url(&claims.to_string());
    parts[1] = &swapped;
    check(400, "invalid_grant")(env.token_request(&parts.join(".")).await);
    // Unknown subject.
    let mut claims = env.claims();
    claims["sub"] = json!("nobody@example.com");
    let text = check(400, "invalid_grant")(env.token_request(&env.jwt(&claims)).await);
    assert_eq!(text, "Invalid email or User ID");
    // Expired.
    let mut claims = env.claims();
    let past = chrono::Utc::now().timestamp() - 7200;
    claims["iat"] = json!(past);
    claims["exp"] = json!(past + 3600);
    let text = check(400, "invalid_grant")(env.token_request(&env.jwt(&claims)).await);
    assert!(text.contains("short-lived"), "{text}");
    // Longer than one hour.
    let mut claims = env.claims();
    claims["exp"] = json!(claims["iat"].as_i64().unwrap() + 3601);
    check(400, "invalid_grant")(env.token_request(&env.jwt(&claims)).await);
    // Wrong audience.
    let mut claims = env.claims();
    claims["aud"] = json!("https://example.com/token");
    let text = check(400, "invalid_grant")(env.token_request(&env.jwt(&claims)).await);
    assert!(text.contains("audience"), "{text}");
    // Wrong issuer.
    let mut claims = env.claims();
    claims["iss"] = json!("someone-else@p.iam.gserviceaccount.com");
    check(400, "invalid_grant")(env.token_request(&env.jwt(&claims)).await);
    // A scope outside the delegation allow-list.
    env.handle
        .set_dwd_scopes(&["admin.directory.user.readonly"]);
    check(401, "unauthorized_client")(env.token_request(&env.jwt(&env.claims())).await);
    env.handle.set_dwd_scopes(dirsync_emulator::ALL_SCOPES);
    // Garbage and wrong grant type.
    check(400, "invalid_grant")(env.token_request("not.a.jwt").await);
    let response = env
        .http
        .post(&env.handle.token_uri)
        .form(&[("grant_type", "client_credentials"), ("assertion", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn yup_oauth2_gets_a_token_that_works() {
    let env = Env::small().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    env.handle.write_key(&path).unwrap();
    let key = yup_oauth2::read_service_account_key(&path).await.unwrap();
    let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
        .subject(ADMIN)
        .build()
        .await
        .unwrap();
    let token = auth
        .token(&["https://www.googleapis.com/auth/admin.directory.user.readonly"])
        .await
        .unwrap();
    let (status, body) = env
        .get_with(
            "/admin/directory/v1/users?customer=my_customer&maxResults=5",
            token.token(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["users"].as_array().unwrap().len(), 5);
    assert_eq!(env.handle.counters().get("oauth.token"), 1);
}

// ----- API auth --------------------------------------------------------------------------------

#[tokio::test]
async fn api_calls_need_a_valid_token_scope_and_admin() {
    let env = Env::small().await;
    let path = "/admin/directory/v1/users?customer=my_customer";
    let (status, body) = env.get_with(path, None).await;
    assert_eq!((status, reason(&body)), (401, "required"));
    let (status, body) = env.get_with(path, Some("ya29.garbage")).await;
    assert_eq!((status, reason(&body)), (401, "authError"));
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(body["error"]["errors"][0]["message"], "Invalid Credentials");
    // Only the group scope: users.list is refused.
    let group_only = env
        .handle
        .issue_token(Some(ADMIN), &["admin.directory.group.readonly"]);
    let (status, body) = env.get_with(path, Some(&group_only)).await;
    assert_eq!((status, reason(&body)), (403, "insufficientPermissions"));
    // A non-admin subject.
    let someone = env.handle.directory().user_emails()[1].clone();
    let plain = env.handle.issue_token(Some(&someone), RO);
    let (status, body) = env.get_with(path, Some(&plain)).await;
    assert_eq!((status, reason(&body)), (403, "forbidden"));
    assert_eq!(
        body["error"]["message"],
        "Not Authorized to access this resource/api"
    );
    // Expired tokens.
    env.handle.expire_tokens();
    let (status, body) = env.get(path).await;
    assert_eq!((status, reason(&body)), (401, "authError"));
    // access_token in the query string works too.
    let fresh = env.handle.issue_token(Some(ADMIN), RO);
    let (status, _) = env
        .get_with(&format!("{path}&access_token={fresh}"), None)
        .await;
    assert_eq!(status, 200);
}

// ----- paging and parameters -------------------------------------------------------------------

#[tokio::test]
async fn paging_walks_every_list_exactly_once() {
    let env = Env::start(Emulator::builder().users(230).groups(25).seed(11)).await;
    let stats = env.handle.directory().stats();
    let (users, pages) = list_all(
        &env,
        "/admin/directory/v1/users?customer=my_customer&maxResults=7",
        "users",
    )
    .await;
    assert_eq!(users.len(), stats.users);
    assert_eq!(pages, stats.users.div_ceil(7));
    let ids: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, ids, "stable id order, no repeats");
    let (_, default_page) = env
        .get("/admin/directory/v1/users?customer=my_customer")
        .await;
    assert_eq!(default_page["users"].as_array().unwrap().len(), 100);
    let (_, max_page) = env
        .get("/admin/directory/v1/users?domain=example.com&maxResults=500")
        .await;
    assert_eq!(max_page["users"].as_array().unwrap().len(), stats.users);
    assert!(max_page.get("nextPageToken").is_none());

    let (groups, _) = list_all(
        &env,
        "/admin/directory/v1/groups?customer=my_customer&maxResults=4",
        "groups",
    )
    .await;
    assert_eq!(groups.len(), stats.groups);
    let mut members = 0;
    for group in &groups {
        let email = group["email"].as_str().unwrap().replace('@', "%40");
        let (items, _) = list_all(
            &env,
            &format!("/admin/directory/v1/groups/{email}/members?maxResults=13"),
            "members",
        )
        .await;
        members += items.len();
    }
    assert_eq!(members, stats.memberships);
    let (by_email, _) = list_all(
        &env,
        "/admin/directory/v1/users?customer=my_customer&maxResults=50&orderBy=email&sortOrder=DESCENDING",
        "users",
    )
    .await;
    let emails: Vec<&str> = by_email
        .iter()
        .map(|u| u["primaryEmail"].as_str().unwrap())
        .collect();
    let mut expected = emails.clone();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(emails, expected);
    assert_eq!(emails.len(), stats.users);
}

#[tokio::test]
async fn parameters_are_checked_like_google() {
    let env = Env::small().await;
    let cases = [
        ("/admin/directory/v1/users", 400, "badRequest"),
        ("/admin/directory/v1/groups", 400, "badRequest"),
        (
            "/admin/directory/v1/users?customer=my_customer&maxResults=501",
            400,
            "invalidParameter",
        ),
        (
            "/admin/directory/v1/users?customer=my_customer&maxResults=0",
            400,
            "invalidParameter",
        ),
        (
            "/admin/directory/v1/groups?customer=my_customer&maxResults=201",
            400,
            "invalidParameter",
        ),
        (
            "/admin/directory/v1/users?customer=my_customer&pageToken=garbage",
            400,
            "invalid",
        ),
        (
            "/admin/directory/v1/users?customer=C0nottheirs",
            403,
            "forbidden",
        ),
        (
            "/admin/directory/v1/users?domain=other.example",
            400,
            "notFound",
        ),
        (
            "/admin/directory/v1/users?customer=my_customer&projection=custom",
            400,
            "invalid",
        ),
        (
            "/admin/directory/v1/users?customer=my_customer&projection=weird",
            400,
            "invalidParameter",
        ),
        (
            "/admin/directory/v1/users?customer=my_customer&query=bogusField%3D1",
            400,
            "invalid",
        ),
        (
            "/admin/directory/v1/users?customer=my_customer&fields=users(id",
            400,
            "invalidParameter",
        ),
        (
            "/admin/directory/v1/groups?customer=my_customer&userKey=admin%40example.com",
            400,
            "badRequest",
        ),
    ];
    for (path, status, why) in cases {
        let (got, body) = env.get(path).await;
        assert_eq!((got, reason(&body)), (status, why), "{path}: {body}");
    }
    let group = env.handle.directory().group_emails()[0].clone();
    let (status, body) = env
        .get(&format!(
            "/admin/directory/v1/groups/{group}/members?maxResults=201"
        ))
        .await;
    assert_eq!((status, reason(&body)), (400, "invalidParameter"));
    let (status, body) = env
        .get(&format!(
            "/admin/directory/v1/groups/{group}/members?roles=BOSS"
        ))
        .await;
    assert_eq!((status, reason(&body)), (400, "invalidParameter"));
    // A token of one query does not work for another.
    let (_, first) = env
        .get("/admin/directory/v1/users?customer=my_customer&maxResults=5")
        .await;
    let token = first["nextPageToken"].as_str().unwrap();
    let (status, _) = env
        .get(&format!("/admin/directory/v1/users?customer=my_customer&maxResults=5&query=isSuspended%3Dtrue&pageToken={token}"))
        .await;
    assert_eq!(status, 400);
    let (status, _) = env
        .get(&format!(
            "/admin/directory/v1/users?customer=my_customer&maxResults=9&pageToken={token}"
        ))
        .await;
    assert_eq!(status, 200, "maxResults may change between pages");
}

// ----- shapes ----------------------------------------------------------------------------------

fn fixture() -> Fixture {
    serde_json::from_value(json!({
        "domain": "example.com",
        "customer_id": "C0abc1234",
        "org_units": ["/Sales/EMEA", {"orgUnitPath": "/Engineering", "description": "Builders"}],
        "users": [
            {"primaryEmail": "admin@example.com", "isAdmin": true, "name": {"givenName": "Ada", "familyName": "Admin"}},
            {"id": "100000000000000000002", "primaryEmail": "ann@example.com", "aliases": ["a.nn@example.com"],
             "name": {"givenName": "Ann", "familyName": "Lee"}, "orgUnitPath": "/Sales/EMEA",
             "customSchemas": {"HR": {"CostCenter": "CC-7", "EmployeeId": "E7"}, "Other": {"X": "y"}},
             "relations": [{"type": "manager", "value": "admin@example.com"}]},
            {"primaryEmail": "sam@example.com", "name": {"givenName": "Sam", "familyName": "Stone"},
             "suspended": true, "orgUnitPath": "/Engineering"},
            {"primaryEmail": "arch@example.com", "archived": true, "orgUnitPath": "/Engineering"}
        ],
        "deleted_users": [{"primaryEmail": "gone@example.com"}],
        "groups": [
            {"email": "eng@example.com", "name": "Engineering", "aliases": ["engineering@example.com"], "members": [
                {"email": "ann@example.com", "role": "OWNER"},
                {"email": "team@example.com", "type": "GROUP"},
                {"email": "partner@othercorp.example"},
                {"type": "CUSTOMER"}]},
            {"email": "team@example.com", "name": "Team", "members": [
                {"email": "sam@example.com", "role": "MANAGER", "delivery_settings": "DIGEST"}]},
            {"email": "empty@example.com"}
        ]
    }))
    .unwrap()
}

async fn fixture_env() -> Env {
    Env::start(Emulator::builder().fixture(fixture())).await
}

#[tokio::test]
async fn objects_have_googles_shapes() {
    let env = fixture_env().await;
    let (_, ann) = env
        .get("/admin/directory/v1/users/A.NN%40EXAMPLE.com")
        .await;
    assert_eq!(ann["id"], "100000000000000000002");
    assert_eq!(ann["kind"], "admin#directory#user");
    let etag = ann["etag"].as_str().unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.contains('/'),
        "{etag}"
    );
    assert_eq!(ann["lastLoginTime"], "1970-01-01T00:00:00.000Z");
    assert!(ann.get("customSchemas").is_none(), "basic projection");
    assert!(ann.get("suspensionReason").is_none());
    assert_eq!(ann["aliases"], json!(["a.nn@example.com"]));
    assert_eq!(
        ann["emails"][0],
        json!({"address": "ann@example.com", "primary": true})
    );
    assert_eq!(ann["name"]["fullName"], "Ann Lee");
    let (_, full) = env
        .get("/admin/directory/v1/users/ann@example.com?projection=full")
        .await;
    assert_eq!(full["customSchemas"]["Other"]["X"], "y");
    let (_, custom) = env
        .get("/admin/directory/v1/users/100000000000000000002?projection=custom&customFieldMask=HR")
        .await;
    assert_eq!(
        custom["customSchemas"],
        json!({"HR": {"CostCenter": "CC-7", "EmployeeId": "E7"}})
    );
    let (_, public) = env
        .get("/admin/directory/v1/users/ann@example.com?viewType=domain_public")
        .await;
    assert!(public.get("isAdmin").is_none() && public.get("primaryEmail").is_some());
    let (_, sam) = env.get("/admin/directory/v1/users/sam@example.com").await;
    assert_eq!(sam["suspensionReason"], "ADMIN");
    let (status, body) = env.get("/admin/directory/v1/users/eng@example.com").await;
    assert_eq!(
        (status, body["error"]["message"].as_str().unwrap()),
        (400, "Type not supported: userKey")
    );
    let (status, body) = env
        .get("/admin/directory/v1/users/nobody@example.com")
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str().unwrap()),
        (404, "Resource Not Found: userKey")
    );

    let (_, group) = env
        .get("/admin/directory/v1/groups/engineering%40example.com")
        .await;
    assert_eq!(group["directMembersCount"], "2", "users only, as a string");
    assert_eq!(group["kind"], "admin#directory#group");
    let (_, members) = env
        .get("/admin/directory/v1/groups/eng@example.com/members")
        .await;
    let members = members["members"].as_array().unwrap();
    assert_eq!(members.len(), 4);
    let customer = members.iter().find(|m| m["type"] == "CUSTOMER").unwrap();
    assert!(customer.get("email").is_none());
    assert_eq!(customer["id"], "C0abc1234");
    let external = members
        .iter()
        .find(|m| m["email"] == "partner@othercorp.example")
        .unwrap();
    assert_eq!(external["type"], "USER");
    assert!(external.get("status").is_none());
    assert!(members.iter().all(|m| m.get("delivery_settings").is_none()));
    let nested = members.iter().find(|m| m["type"] == "GROUP").unwrap();
    assert_eq!(nested["status"], "ACTIVE");
    let (_, one) = env
        .get("/admin/directory/v1/groups/team@example.com/members/sam@example.com")
        .await;
    assert_eq!(
        (
            one["role"].as_str(),
            one["delivery_settings"].as_str(),
            one["status"].as_str()
        ),
        (Some("MANAGER"), Some("DIGEST"), Some("SUSPENDED"))
    );
    let (status, _) = env
        .get("/admin/directory/v1/groups/team@example.com/members/ann@example.com")
        .await;
    assert_eq!(status, 404);

    let (_, empty) = env
        .get("/admin/directory/v1/groups/empty@example.com/members")
        .await;
    assert_eq!(
        empty.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["etag", "kind"]
    );
    let (_, none) = env
        .get("/admin/directory/v1/users?customer=my_customer&query=email%3Dnone%40example.com")
        .await;
    assert!(none.get("users").is_none() && none.get("nextPageToken").is_none());

    let (_, deleted) = env
        .get("/admin/directory/v1/users?customer=my_customer&showDeleted=true")
        .await;
    let deleted = deleted["users"].as_array().unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["primaryEmail"], "gone@example.com");
    assert!(deleted[0]["deletionTime"].as_str().unwrap().ends_with('Z'));

    let (_, units) = env
        .get("/admin/directory/v1/customer/my_customer/orgunits")
        .await;
    let paths: Vec<&str> = units["organizationUnits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["orgUnitPath"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/Engineering", "/Sales"],
        "children only by default"
    );
    let (_, all) = env
        .get("/admin/directory/v1/customer/C0abc1234/orgunits?type=all")
        .await;
    assert_eq!(all["organizationUnits"].as_array().unwrap().len(), 3);
    let (_, unit) = env
        .get("/admin/directory/v1/customer/my_customer/orgunits/Sales/EMEA")
        .await;
    assert_eq!(unit["parentOrgUnitPath"], "/Sales");
    assert!(unit["orgUnitId"].as_str().unwrap().starts_with("id:"));

    let (_, partial) = env
        .get("/admin/directory/v1/users?customer=my_customer&maxResults=2&fields=nextPageToken,users(id,name/fullName)")
        .await;
    let first = partial["users"][0].as_object().unwrap();
    assert_eq!(first.keys().collect::<Vec<_>>(), ["id", "name"]);
    assert_eq!(partial["users"][0]["name"].as_object().unwrap().len(), 1);
    assert!(partial.get("kind").is_none() && partial.get("nextPageToken").is_some());
    let response = env
        .http
        .get(env.url("/admin/directory/v1/groups/eng@example.com?prettyPrint=false"))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/json; charset=UTF-8"
    );
    assert!(!response.text().await.unwrap().contains('\n'));
}

#[tokio::test]
async fn queries_roles_and_nesting() {
    let env = fixture_env().await;
    let emails = |body: &Value| -> Vec<String> {
        body["users"].as_array().map_or_else(Vec::new, |users| {
            users
                .iter()
                .map(|u| u["primaryEmail"].as_str().unwrap().to_owned())
                .collect()
        })
    };
    let q = |query: &str| {
        format!(
            "/admin/directory/v1/users?customer=my_customer&orderBy=email&query={}",
            urlencode(query)
        )
    };
    assert_eq!(
        emails(&env.get(&q("email:a*")).await.1),
        ["admin@example.com", "ann@example.com", "arch@example.com"]
    );
    assert_eq!(
        emails(&env.get(&q("email=a.nn@example.com")).await.1),
        ["ann@example.com"]
    );
    assert_eq!(
        emails(&env.get(&q("orgUnitPath=/Sales")).await.1),
        ["ann@example.com"]
    );
    assert_eq!(
        emails(
            &env.get(&q("orgUnitPath='/Engineering' isSuspended=false"))
                .await
                .1
        ),
        ["arch@example.com"]
    );
    assert_eq!(
        emails(&env.get(&q("isArchived=true")).await.1),
        ["arch@example.com"]
    );
    assert_eq!(
        emails(&env.get(&q("isSuspended=true")).await.1),
        ["sam@example.com"]
    );
    assert_eq!(
        emails(&env.get(&q("directManager=admin@example.com")).await.1),
        ["ann@example.com"]
    );
    assert_eq!(
        emails(&env.get(&q("HR.CostCenter=CC-7")).await.1),
        ["ann@example.com"]
    );

    let member_emails = |body: &Value| -> Vec<String> {
        body["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["email"].as_str().map(str::to_owned))
            .collect()
    };
    let (_, owners) = env
        .get("/admin/directory/v1/groups/eng@example.com/members?roles=OWNER,MANAGER")
        .await;
    assert_eq!(member_emails(&owners), ["ann@example.com"]);
    let (_, derived) = env
        .get("/admin/directory/v1/groups/eng@example.com/members?includeDerivedMembership=true")
        .await;
    let mut derived = member_emails(&derived);
    derived.sort();
    assert_eq!(
        derived,
        [
            "ann@example.com",
            "partner@othercorp.example",
            "sam@example.com",
            "team@example.com"
        ]
    );

    let has =
        |member: &str| format!("/admin/directory/v1/groups/eng@example.com/hasMember/{member}");
    assert_eq!(
        env.get(&has("sam%40example.com")).await.1,
        json!({"isMember": true}),
        "nested"
    );
    assert_eq!(
        env.get(&has("admin@example.com")).await.1,
        json!({"isMember": false})
    );
    let (status, body) = env.get(&has("nobody@example.com")).await;
    assert_eq!(
        (status, body["error"]["message"].as_str().unwrap()),
        (400, "Invalid Input: memberKey")
    );

    let (_, of_sam) = env
        .get("/admin/directory/v1/groups?userKey=sam@example.com")
        .await;
    assert_eq!(of_sam["groups"][0]["email"], "team@example.com");
    assert_eq!(of_sam["groups"].as_array().unwrap().len(), 1);
    let (_, by_member) = env
        .get(&format!(
            "/admin/directory/v1/groups?customer=my_customer&query={}",
            urlencode("memberKey=ann@example.com")
        ))
        .await;
    assert_eq!(by_member["groups"][0]["email"], "eng@example.com");
    let (_, by_name) = env
        .get(&format!(
            "/admin/directory/v1/groups?customer=my_customer&query={}",
            urlencode("name:Te*")
        ))
        .await;
    assert_eq!(by_name["groups"][0]["email"], "team@example.com");
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

// ----- writes ----------------------------------------------------------------------------------

#[tokio::test]
async fn write_methods_change_the_directory() {
    use reqwest::Method;
    let env = fixture_env().await;
    let rw = env.handle.issue_token(
        Some(ADMIN),
        &[
            "admin.directory.user",
            "admin.directory.group",
            "admin.directory.group.member",
        ],
    );
    let new_user = json!({"primaryEmail": "new@example.com", "name": {"givenName": "New", "familyName": "Hire"}, "password": "x", "orgUnitPath": "/Sales/EMEA"});
    let (status, body) = env
        .send(
            Method::POST,
            "/admin/directory/v1/users",
            &env.token,
            Some(new_user.clone()),
        )
        .await;
    assert_eq!(
        (status, reason(&body)),
        (403, "insufficientPermissions"),
        "read-only scopes cannot write"
    );
    let (status, created) = env
        .send(
            Method::POST,
            "/admin/directory/v1/users",
            &rw,
            Some(new_user.clone()),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    assert!(created.get("password").is_none());
    let (status, _) = env
        .send(
            Method::POST,
            "/admin/directory/v1/users",
            &rw,
            Some(new_user),
        )
        .await;
    assert_eq!(status, 409);
    let (_, before) = env.get("/admin/directory/v1/users/new@example.com").await;
    let (status, patched) = env
        .send(
            Method::PATCH,
            "/admin/directory/v1/users/new@example.com",
            &rw,
            Some(json!({"suspended": true, "name": {"familyName": "Moved"}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["suspensionReason"], "ADMIN");
    assert_eq!(patched["name"]["fullName"], "New Moved");
    assert_ne!(
        patched["etag"], before["etag"],
        "etag changes on modification"
    );
    let (status, renamed) = env
        .send(
            Method::PUT,
            "/admin/directory/v1/users/new@example.com",
            &rw,
            Some(json!({"primaryEmail": "newer@example.com", "orgUnitPath": "/Nowhere"})),
        )
        .await;
    assert_eq!(
        (status, renamed["error"]["message"].as_str()),
        (400, Some("Invalid Input: INVALID_OU_ID"))
    );
    let (status, renamed) = env
        .send(
            Method::PUT,
            "/admin/directory/v1/users/new@example.com",
            &rw,
            Some(json!({"primaryEmail": "newer@example.com"})),
        )
        .await;
    assert_eq!(
        (status, renamed["id"].clone()),
        (200, created["id"].clone())
    );

    let (status, group) = env
        .send(
            Method::POST,
            "/admin/directory/v1/groups",
            &rw,
            Some(json!({"email": "new-team@example.com", "name": "New team"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(group["directMembersCount"], "0");
    let (status, member) = env
        .send(
            Method::POST,
            "/admin/directory/v1/groups/new-team@example.com/members",
            &rw,
            Some(json!({"email": "newer@example.com", "role": "OWNER"})),
        )
        .await;
    assert_eq!(
        (
            status,
            member["role"].as_str(),
            member["delivery_settings"].as_str()
        ),
        (200, Some("OWNER"), Some("ALL_MAIL"))
    );
    let (status, _) = env
        .send(
            Method::POST,
            "/admin/directory/v1/groups/team@example.com/members",
            &rw,
            Some(json!({"email": "eng@example.com"})),
        )
        .await;
    assert_eq!(status, 412, "cycles are refused");
    let (status, member) = env
        .send(
            Method::PATCH,
            "/admin/directory/v1/groups/new-team@example.com/members/newer@example.com",
            &rw,
            Some(json!({"role": "MEMBER"})),
        )
        .await;
    assert_eq!((status, member["role"].as_str()), (200, Some("MEMBER")));
    let (_, group) = env
        .get("/admin/directory/v1/groups/new-team@example.com")
        .await;
    assert_eq!(group["directMembersCount"], "1");
    let (status, _) = env
        .send(
            Method::DELETE,
            "/admin/directory/v1/groups/new-team@example.com/members/newer@example.com",
            &rw,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, renamed_group) = env
        .send(
            Method::PATCH,
            "/admin/directory/v1/groups/new-team@example.com",
            &rw,
            Some(json!({"description": "Renamed"})),
        )
        .await;
    assert_eq!(
        (status, renamed_group["description"].as_str()),
        (200, Some("Renamed"))
    );
    let (status, _) = env
        .send(
            Method::DELETE,
            "/admin/directory/v1/groups/new-team@example.com",
            &rw,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = env
        .get("/admin/directory/v1/groups/new-team@example.com")
        .await;
    assert_eq!(status, 404);

    // Deleting a user removes its memberships and lists it under showDeleted only.
    let (status, _) = env
        .send(
            Method::DELETE,
            "/admin/directory/v1/users/sam@example.com",
            &rw,
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        env.get("/admin/directory/v1/users/sam@example.com").await.0,
        404
    );
    let (_, team) = env
        .get("/admin/directory/v1/groups/team@example.com/members")
        .await;
    assert!(team.get("members").is_none());
    let (_, deleted) = env
        .get("/admin/directory/v1/users?customer=my_customer&showDeleted=true&orderBy=email")
        .await;
    let deleted: Vec<&str> = deleted["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["primaryEmail"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, ["gone@example.com", "sam@example.com"]);
}

#[tokio::test]
async fn library_writes_show_up_over_http() {
    let env = fixture_env().await;
    let dir = env.handle.directory();
    let created = dir
        .insert_user(&json!({"primaryEmail": "lib@example.com", "name": {"givenName": "Lib", "familyName": "Rary"}}))
        .unwrap();
    dir.add_member(
        "eng@example.com",
        &json!({"email": "lib@example.com", "role": "MANAGER"}),
    )
    .unwrap();
    let (_, user) = env
        .get(&format!(
            "/admin/directory/v1/users/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(user["primaryEmail"], "lib@example.com");
    let (_, has) = env
        .get("/admin/directory/v1/groups/eng@example.com/hasMember/lib@example.com")
        .await;
    assert_eq!(has["isMember"], true);
    // Volatile fields: a login changes lastLoginTime and the etag, nothing else.
    let before = dir.user("admin@example.com").unwrap();
    assert_eq!(dir.record_logins(10), 5);
    let after = dir.user("admin@example.com").unwrap();
    assert_ne!(before["lastLoginTime"], after["lastLoginTime"]);
    assert_ne!(before["etag"], after["etag"]);
    let strip = |mut v: Value| {
        v.as_object_mut()
            .unwrap()
            .retain(|k, _| k != "etag" && k != "lastLoginTime");
        v
    };
    assert_eq!(strip(before), strip(after));
    dir.update_user("lib@example.com", &json!({"archived": true}))
        .unwrap();
    assert_eq!(dir.user("lib@example.com").unwrap()["archived"], true);
    dir.remove_member("eng@example.com", "lib@example.com")
        .unwrap();
    dir.delete_user("lib@example.com").unwrap();
    let err = dir.delete_user("lib@example.com").unwrap_err();
    assert_eq!(err.status, 404);
    assert!(dir
        .members("eng@example.com")
        .unwrap()
        .iter()
        .all(|m| m["email"] != "lib@example.com"));
}

// ----- faults ----------------------------------------------------------------------------------

fn rule(json: Value) -> FaultRule {
    serde_json::from_value(json).unwrap()
}

#[tokio::test]
async fn error_faults_answer_like_google() {
    let env = Env::small().await;
    let group = env.handle.directory().group_emails()[0].clone();
    let members = format!("/admin/directory/v1/groups/{group}/members?maxResults=2");
    let faults = env.handle.faults();
    faults
        .add(rule(
            json!({"method": "members.list", "page": 2, "fault": "error", "status": 503}),
        ))
        .unwrap();
    let (status, first) = env.get(&members).await;
    assert_eq!(status, 200);
    let second = format!(
        "{members}&pageToken={}",
        first["nextPageToken"].as_str().unwrap()
    );
    let (status, body) = env.get(&second).await;
    assert_eq!((status, reason(&body)), (503, "backendError"));
    assert_eq!(env.get(&second).await.0, 200, "fires once by default");

    let users = "/admin/directory/v1/users?customer=my_customer";
    faults
        .add(rule(
            json!({"method": "users.list", "fault": "error", "status": 429, "retry_after": 7}),
        ))
        .unwrap();
    let response = env
        .http
        .get(env.url(users))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(reason(&body), "rateLimitExceeded");

    faults
        .add(rule(
            json!({"method": "users.*", "fault": "error", "status": 403}),
        ))
        .unwrap();
    let (status, body) = env.get(users).await;
    assert_eq!((status, reason(&body)), (403, "userRateLimitExceeded"));
    assert_eq!(body["error"]["errors"][0]["domain"], "usageLimits");

    faults
        .add(rule(
            json!({"path": "/admin/directory/v1/users", "fault": "error", "status": 500}),
        ))
        .unwrap();
    let (status, body) = env.get(users).await;
    assert_eq!((status, reason(&body)), (500, "internalError"));

    for (status, content_type) in [(502, "text/html"), (504, "text/html"), (503, "text/plain")] {
        faults
            .add(rule(
                json!({"method": "users.list", "fault": "error", "status": status, "html": true}),
            ))
            .unwrap();
        let response = env
            .http
            .get(env.url(users))
            .bearer_auth(&env.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(content_type));
        let text = response.text().await.unwrap();
        assert!(
            serde_json::from_str::<Value>(&text).is_err(),
            "not JSON: {text}"
        );
    }

    // The 3rd call on a path, twice; paths are matched percent-decoded.
    faults
        .add(rule(json!({"name": "third", "path": format!("/admin/directory/v1/groups/{group}*"), "after": 2, "times": 2, "fault": "error", "status": 500, "reason": "backendError"})))
        .unwrap();
    let get_group = format!("/admin/directory/v1/groups/{}", group.replace('@', "%40"));
    let statuses = [
        env.get(&get_group).await.0,
        env.get(&get_group).await.0,
        env.get(&get_group).await.0,
        env.get(&get_group).await.0,
        env.get(&get_group).await.0,
    ];
    assert_eq!(statuses, [200, 200, 500, 500, 200]);
    assert!(faults.list().is_empty(), "spent rules retire");

    faults.add(rule(json!({"name": "slow", "method": "groups.get", "fault": "delay", "latency_ms": 30, "times": 0}))).unwrap();
    assert_eq!(env.get(&get_group).await.0, 200);
    assert_eq!(faults.list()[0].1, 1);
    assert!(faults.remove("slow"));
}

#[tokio::test]
async fn sync_disruptions_page_token_expiry_deleted_group_and_subjects() {
    let env = Env::small().await;
    let faults = env.handle.faults();
    // A page token that expires.
    faults
        .add(rule(
            json!({"method": "users.list", "fault": "expire_page_token"}),
        ))
        .unwrap();
    let (_, first) = env
        .get("/admin/directory/v1/users?customer=my_customer&maxResults=5")
        .await;
    let token = first["nextPageToken"].as_str().unwrap();
    let (status, body) = env
        .get(&format!(
            "/admin/directory/v1/users?customer=my_customer&maxResults=5&pageToken={token}"
        ))
        .await;
    assert_eq!((status, reason(&body)), (400, "invalid"));

    // A group deleted between groups.list and members.list.
    let victim = env.handle.directory().group_emails()[2].clone();
    faults
        .add(rule(json!({"method": "members.list", "path": format!("/admin/directory/v1/groups/{victim}/members"), "fault": "delete_group"})))
        .unwrap();
    let (status, body) = env
        .get(&format!("/admin/directory/v1/groups/{victim}/members"))
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (404, Some("Resource Not Found: groupKey"))
    );
    assert!(env.handle.directory().group(&victim).is_none());

    // Token endpoint refusals.
    faults
        .add(rule(json!({"fault": "refuse_delegation"})))
        .unwrap();
    let (status, body) = env.token_request(&env.jwt(&env.claims())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized_client"))
    );
    faults
        .add(rule(json!({"fault": "reject_subject"})))
        .unwrap();
    let (status, body) = env.token_request(&env.jwt(&env.claims())).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("Invalid email or User ID"))
    );
    assert_eq!(env.token_request(&env.jwt(&env.claims())).await.0, 200);

    // The subject loses its admin role.
    faults
        .add(rule(
            json!({"fault": "not_admin", "times": 0, "name": "demoted"}),
        ))
        .unwrap();
    let (status, body) = env
        .get("/admin/directory/v1/groups?customer=my_customer")
        .await;
    assert_eq!((status, reason(&body)), (403, "forbidden"));
    faults.clear();
    assert_eq!(
        env.get("/admin/directory/v1/groups?customer=my_customer")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn quota_and_concurrency_limits() {
    let env = Env::start(Emulator::builder().users(20).groups(3).quota_per_minute(3)).await;
    let path = "/admin/directory/v1/users?customer=my_customer";
    for _ in 0..3 {
        assert_eq!(env.get(path).await.0, 200);
    }
    let (status, body) = env.get(path).await;
    assert_eq!((status, reason(&body)), (403, "userRateLimitExceeded"));
    assert_eq!(body["error"]["errors"][0]["domain"], "usageLimits");
    env.handle.faults().set_quota_per_minute(None);
    assert_eq!(env.get(path).await.0, 200);

    // One request held in flight by a delay rule; a second one is over the limit.
    env.handle.faults().set_max_concurrent(Some(1));
    env.handle
        .faults()
        .add(rule(
            json!({"method": "groups.list", "fault": "delay", "latency_ms": 1500}),
        ))
        .unwrap();
    let slow = {
        let http = env.http.clone();
        let url = env.url("/admin/directory/v1/groups?customer=my_customer");
        let token = env.token.clone();
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    dirsync_testkit::wait_for(10, "the slow request to arrive", || async {
        let (_, stats) = env.get_with("/_emulator/stats", None).await;
        stats["in_flight"] == 1
    })
    .await;
    let (status, body) = env.get(path).await;
    assert_eq!((status, reason(&body)), (429, "rateLimitExceeded"));
    assert_eq!(slow.await.unwrap(), 200);
}

// ----- counters and admin endpoints ------------------------------------------------------------

#[tokio::test]
async fn counters_count_calls_by_method_and_status() {
    let env = Env::small().await;
    let counters = env.handle.counters();
    counters.reset();
    for _ in 0..3 {
        env.get("/admin/directory/v1/users?customer=my_customer")
            .await;
    }
    env.get("/admin/directory/v1/users").await;
    env.get("/admin/directory/v1/groups?customer=my_customer")
        .await;
    env.get("/admin/directory/v1/nothing-here").await;
    let snapshot = counters.snapshot();
    assert_eq!(snapshot.method("users.list"), 4);
    assert_eq!(snapshot.status("users.list", 200), 3);
    assert_eq!(snapshot.status("users.list", 400), 1);
    assert_eq!(snapshot.method("groups.list"), 1);
    assert_eq!(snapshot.method("unknown"), 1);
    assert_eq!(snapshot.total, 6);
    let (_, http) = env.get_with("/_emulator/counters", None).await;
    assert_eq!(http["methods"]["users.list"]["by_status"]["200"], 3);
    assert_eq!(http["total"], 6);
    let reset = env
        .http
        .post(env.url("/_emulator/counters/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status().as_u16(), 200);
    assert_eq!(counters.snapshot().total, 0);
}

#[tokio::test]
async fn admin_endpoints_manage_faults_settings_and_tokens() {
    let env = Env::small().await;
    let post = |path: &str, body: &str| {
        env.http
            .post(env.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let response = post("/_emulator/faults", r#"[{"name": "a", "method": "users.list", "fault": "error", "status": 502, "times": 0}, {"fault": "not_admin", "method": "groups.get"}]"#)
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let names: Value = response.json().await.unwrap();
    assert_eq!(names["names"][0], "a");
    let (_, listed) = env.get_with("/_emulator/faults", None).await;
    assert_eq!(listed["rules"].as_array().unwrap().len(), 2);
    assert_eq!(
        env.get("/admin/directory/v1/users?customer=my_customer")
            .await
            .0,
        502
    );
    let removed = env
        .http
        .delete(env.url("/_emulator/faults/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status().as_u16(), 200);
    assert_eq!(
        env.get("/admin/directory/v1/users?customer=my_customer")
            .await
            .0,
        200
    );
    for bad in [
        r#"{"fault": "explode"}"#,
        r#"{"fault": "error"}"#,
        r#"{"fault": "error", "status": 503, "stauts": 1}"#,
        "not json",
    ] {
        let response = post("/_emulator/faults", bad).await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(!body["error"].as_str().unwrap().is_empty());
    }
    let cleared = env
        .http
        .delete(env.url("/_emulator/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status().as_u16(), 200);
    assert!(env.handle.faults().list().is_empty());

    let settings = env
        .http
        .patch(env.url("/_emulator/settings"))
        .body(r#"{"quota_per_minute": 1, "latency_ms": 1}"#)
        .send()
        .await
        .unwrap();
    let settings: Value = settings.json().await.unwrap();
    assert_eq!(
        (
            settings["quota_per_minute"].as_u64(),
            settings["token_ttl_secs"].as_u64()
        ),
        (Some(1), Some(3600))
    );
    assert_eq!(
        env.get("/admin/directory/v1/groups?customer=my_customer")
            .await
            .0,
        200
    );
    assert_eq!(
        env.get("/admin/directory/v1/groups?customer=my_customer")
            .await
            .0,
        403
    );
    let bad = env
        .http
        .patch(env.url("/_emulator/settings"))
        .body(r#"{"latency": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    env.handle.faults().set_quota_per_minute(None);

    let token: Value = post(
        "/_emulator/token",
        r#"{"subject": "admin@example.com", "scopes": ["admin.directory.user.readonly"]}"#,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        env.get_with(
            "/admin/directory/v1/users?customer=my_customer",
            Some(&token)
        )
        .await
        .0,
        200
    );
    post("/_emulator/tokens/expire", "").await.unwrap();
    assert_eq!(
        env.get_with(
            "/admin/directory/v1/users?customer=my_customer",
            Some(&token)
        )
        .await
        .0,
        401
    );

    let (_, key) = env.get_with("/_emulator/key", None).await;
    assert_eq!(key["token_uri"], env.handle.token_uri.as_str());
    assert!(key["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(key["client_id"]
        .as_str()
        .unwrap()
        .chars()
        .all(|c| c.is_ascii_digit()));
    let (_, stats) = env.get_with("/_emulator/stats", None).await;
    assert_eq!(stats["stats"]["users"], 60);
    let logins: Value = post("/_emulator/logins", r#"{"count": 3}"#)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(logins["users"], 3);
}

#[tokio::test]
async fn a_key_file_keeps_the_identity_across_restarts() {
    let first = Env::small().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    first.handle.write_key(&path).unwrap();
    let second = Env::start(Emulator::builder().users(10).groups(1).key_file(&path)).await;
    assert_eq!(
        first.handle.service_account(),
        second.handle.service_account()
    );
    // An assertion signed with the first emulator's key is good at the second.
    let mut claims = second.claims();
    claims["aud"] = json!(second.handle.token_uri);
    assert_eq!(second.token_request(&first.jwt(&claims)).await.0, 200);
    std::fs::write(&path, "{\"private_key\": \"nope\"}").unwrap();
    let err = Emulator::builder().key_file(&path).build().unwrap_err();
    assert!(err.is_usage());
    assert!(err.to_string().contains("PKCS#8"), "{err}");
}
