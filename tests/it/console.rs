//! The web console in a real browser: headless Chromium from Debian's packages, driven over
//! WebDriver (`dirsync_testkit::browser`), against the real `dirsync run` syncing two tenants
//! from the Google emulator — one healthy (`acme`, with an org-unit filter and a user whose
//! name is an XSS attempt with ANSI escapes), one whose delegation is refused (`globex`) —
//! and a SCIM push tenant (`okta`) that an Okta-like client provisions over HTTP.
//! Each page visited is saved as a screenshot under `target/console-screenshots/`.

use std::path::PathBuf;

use dirsync_emulator::{FaultKind, FaultRule};
use dirsync_testkit::browser::Browser;
use dirsync_testkit::daemon::Daemon;
use dirsync_testkit::emulator::GoogleEmulator;
use dirsync_testkit::{wait_for, ConfigDir};
use serde_json::{json, Value};

use crate::support::dirsync;

const TOKEN: &str = "console-operator-token-0123456789";
const XSS_NAME: &str = "<script>document.title='pwned'</script>";
const PUSH_TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// Sent in a push request's body; never on a page.
const PASSWORD: &str = "Tr0ub4dor&3-never-shown";
const OKTA_AGENT: &str = "Okta SCIM Client 1.0.0";

fn screenshots() -> PathBuf {
    dirsync_testkit::workspace_root().join("target/console-screenshots")
}

fn user(email: &str, given: &str, family: &str, org_unit: &str) -> Value {
    json!({"primaryEmail": email, "name": {"givenName": given, "familyName": family},
           "orgUnitPath": org_unit})
}

/// acme: Engineering is synced (`[filters] org_units`); frank is in /Support but a member of
/// an Engineering group, so he is seen and left out; mallory's name is an XSS attempt.
fn acme_fixture() -> Value {
    json!({
        "domain": "example.com",
        "org_units": ["/Engineering", "/Support"],
        "users": [
            user("admin@example.com", "Ada", "Admin", "/Engineering"),
            user("alice@example.com", "Alice", "Liddell", "/Engineering"),
            user("bob@example.com", "Bob", "Builder", "/Engineering"),
            user("mallory@example.com", XSS_NAME, "Red\u{1b}[31mText", "/Engineering"),
            user("frank@example.com", "Frank", "Outside", "/Support")
        ],
        "groups": [
            {"email": "eng@example.com", "name": "Engineering", "members": [
                {"email": "alice@example.com"}, {"email": "bob@example.com"},
                {"email": "mallory@example.com"}, {"email": "frank@example.com"}]}
        ]
    })
}

fn globex_fixture() -> Value {
    json!({
        "domain": "globex.example",
        "users": [user("admin@globex.example", "Gus", "Admin", "/"),
                  user("hank@globex.example", "Hank", "Scorpio", "/")],
        "groups": []
    })
}

struct Env {
    setup: ConfigDir,
    acme: GoogleEmulator,
    /// Where initech's webhook points: never shown (a URL can carry a token).
    closed: dirsync_testkit::ClosedPort,
    _globex: GoogleEmulator,
    _daemon: Daemon,
    base: String,
}

impl Env {
    async fn start() -> Self {
        let acme = GoogleEmulator::start(&acme_fixture());
        let globex = GoogleEmulator::start(&globex_fixture());
        globex
            .faults()
            .add(FaultRule {
                method: Some("oauth.token".into()),
                fault: FaultKind::RefuseDelegation,
                times: 0,
                ..FaultRule::default()
            })
            .unwrap();
        let setup = ConfigDir::builder(dirsync())
            .http_listen()
            .global("console_token_file = \"console-token\"\n")
            .build();
        setup.write("console-token", format!("{TOKEN}\n"));
        let yearly = "schedule = \"0 0 0 1 1 *\"\n";
        setup.emulator_tenant(
            "acme",
            &acme,
            "",
            "[filters]\norg_units = [\"/Engineering\"]\n[[sinks]]\ntype = \"jsonl\"\npath = \"acme.jsonl\"\n",
        );
        setup.emulator_tenant("globex", &globex, "retry_max_seconds = 1\n", "");
        // initech reads acme's directory and delivers to a webhook that refuses connections:
        // its sink parks after one attempt.
        let closed = dirsync_testkit::closed_port();
        setup.write(
            "tenants/initech-webhook-secret",
            dirsync_testkit::webhook::SECRET,
        );
        setup.emulator_tenant(
            "initech",
            &acme,
            "",
            &format!(
                "[[sinks]]\ntype = \"webhook\"\nname = \"app\"\nurl = \"http://127.0.0.1:{}/hook\"\nsecret_file = \"initech-webhook-secret\"\nmax_attempts = 1\ntimeout_seconds = 2\n",
                closed.port
            ),
        );
        // okta is provisioned by push: no schedule, no run, its IdP's requests are its health.
        setup.write("tenants/okta-scim-token", format!("{PUSH_TOKEN}\n"));
        setup.write(
            "tenants/okta.toml",
            "[source]\ntype = \"scim_push\"\ntoken_file = \"okta-scim-token\"\n",
        );
        for id in ["acme", "globex", "initech"] {
            let path = setup.tenant_file(id);
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, text.replace("schedule = \"0 0 * * * *\"\n", yearly)).unwrap();
        }
        let daemon = Daemon::start(&setup, None).await;
        assert_eq!(setup.sync_async("acme", &[]).await.0, 0);
        assert_eq!(setup.sync_async("globex", &[]).await.0, 1);
        assert_eq!(setup.sync_async("initech", &[]).await.0, 0);
        wait_for(30, "initech's sink to park", || async {
            setup.status_async("initech").await["sinks"][0]["parked"] == true
        })
        .await;
        let base = format!("http://{}", setup.http.unwrap());
        Self {
            setup,
            acme,
            closed,
            _globex: globex,
            _daemon: daemon,
            base,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One request of the Okta-like client to the push tenant; the status and the answer.
    async fn push(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, self.url(&format!("/scim/v2/okta{path}")))
            .bearer_auth(PUSH_TOKEN)
            .header("user-agent", OKTA_AGENT);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn sign_in(&self, browser: &Browser) {
        browser.goto(&self.url("/console/")).await;
        assert!(browser.current_url().await.ends_with("/console/login"));
        let field = browser.find("#token").await;
        browser.type_into(&field, TOKEN).await;
        browser
            .click_and_wait(&browser.find("#sign-in").await)
            .await;
        assert!(
            browser.current_url().await.ends_with("/console/"),
            "{}",
            browser.text("body").await
        );
    }

    /// `dirsync console-link acme`'s URL.
    fn link(&self, tenant: &str, expires: &str) -> String {
        let out = self
            .setup
            .output(&["console-link", tenant, "--expires", expires]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

async fn shot(browser: &Browser, name: &str) {
    browser
        .screenshot(&screenshots().join(format!("{name}.png")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_signs_in_triages_inspects_and_forces_a_sync() {
    let env = Env::start().await;
    let browser = Browser::start().await;

    // A wrong token is refused, and says where the right one is.
    browser.goto(&env.url("/console/t/acme")).await;
    assert!(browser.current_url().await.ends_with("/console/login"));
    shot(&browser, "login").await;
    browser
        .type_into(&browser.find("#token").await, "not-the-operator-token")
        .await;
    browser
        .click_and_wait(&browser.find("#sign-in").await)
        .await;
    assert!(
        browser.text("#login-error").await.contains("wrong token"),
        "{}",
        browser.text("body").await
    );
    env.sign_in(&browser).await;
    let cookie = browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "dirsync_console")
        .unwrap();
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");

    // The failing tenant comes first, with its fix in words.
    let first_row = browser.text("#tenants tbody tr:first-child").await;
    assert!(first_row.starts_with("globex"), "{first_row}");
    let problems = browser.text("#problems").await;
    assert!(
        problems.contains("globex")
            && problems.contains("Fix: domain-wide delegation is not granted for client ID"),
        "{problems}"
    );
    shot(&browser, "tenants").await;
    browser
        .click_and_wait(&browser.find("a[href='/console/t/globex']").await)
        .await;
    let errors = browser.text("#errors").await;
    assert!(
        errors.contains("unauthorized_client") && errors.contains("Fix: domain-wide delegation"),
        "{errors}"
    );
    shot(&browser, "tenant-failing").await;

    // A user left out by the org-unit filter: the reason.
    browser.goto(&env.url("/console/t/acme")).await;
    browser
        .type_into(
            &browser.find("#inspect-form input[name=q]").await,
            "frank@example.com",
        )
        .await;
    browser
        .click_and_wait(&browser.find("#inspect-form button").await)
        .await;
    let why = browser.text("#why").await;
    assert!(why.starts_with("outside the org-unit filter"), "{why}");
    shot(&browser, "inspect-filtered").await;

    // An XSS attempt in a user's name is text, and ANSI escapes are visible.
    browser
        .goto(&env.url("/console/t/acme/inspect?q=mallory%40example.com"))
        .await;
    let name = browser.text("#inspect-user .user-name").await;
    assert!(
        name.contains(XSS_NAME) && name.contains("Red\\x1b[31mText"),
        "{name}"
    );
    assert!(browser.find_all("main script").await.is_empty());
    assert_eq!(browser.title().await, "Inspect acme · dirsync console");
    shot(&browser, "inspect-xss").await;

    // Force a sync: a new user upstream shows up in the run's events.
    env.acme
        .directory()
        .insert_user(&user("zed@example.com", "Zed", "New", "/Engineering"))
        .unwrap();
    browser.goto(&env.url("/console/t/acme")).await;
    browser
        .click_and_wait(&browser.find("#dry-run").await)
        .await;
    let dry = browser.text("#dry-run-events").await;
    assert!(
        dry.contains("user.created") && dry.contains("zed@example.com"),
        "{dry}"
    );
    browser.goto(&env.url("/console/t/acme")).await;
    browser
        .click_and_wait(&browser.find("#force-sync").await)
        .await;
    assert!(browser.text("#sync-result").await.contains("committed"));
    let committed = browser.text("#committed-events").await;
    assert!(
        committed.contains("user.created") && committed.contains("zed@example.com"),
        "{committed}"
    );
    shot(&browser, "sync-result").await;

    // The tenant's page draws every run, coloured by outcome: 1 + 1 committed, 1 dry, and
    // a few more changes synced from the command line.
    for n in 0..4 {
        env.acme
            .directory()
            .insert_user(&user(
                &format!("new{n}@example.com"),
                "New",
                "Hire",
                "/Engineering",
            ))
            .unwrap();
        assert_eq!(env.setup.sync_async("acme", &[]).await.0, 0);
    }
    browser.set_window(1280, 2200).await;
    browser.goto(&env.url("/console/t/acme")).await;
    assert_eq!(browser.find_all("svg.chart rect.bar.ok").await.len(), 3 * 6);
    assert_eq!(browser.find_all("svg.chart rect.bar.dry").await.len(), 3);
    // A tenant that pulls has no push request log.
    assert!(browser.find_all("#push-requests").await.is_empty());
    shot(&browser, "tenant").await;
    browser.set_window(1280, 1000).await;

    // The event stream, filtered by type.
    browser
        .goto(&env.url("/console/t/acme/events?type=user.created"))
        .await;
    let rows = browser.find_all("table.events tbody tr").await.len();
    assert_eq!(rows, 9, "{}", browser.text("main").await);
    shot(&browser, "events").await;

    // A parked sink: its problem and fix on the tenants page, and the Unpark button.
    browser.goto(&env.url("/console/")).await;
    let problems = browser.text("#problems").await;
    assert!(
        problems.contains("sink app is parked") && problems.contains("unpark"),
        "{problems}"
    );
    let hook = format!("127.0.0.1:{}/hook", env.closed.port);
    assert!(!browser.source().await.contains(&hook));
    browser.goto(&env.url("/console/t/initech")).await;
    assert!(browser
        .text("#sinks")
        .await
        .contains("<the URL of sink app>"));
    assert!(!browser.source().await.contains(&hook));
    browser
        .click_and_wait(&browser.find("#sinks button.unpark").await)
        .await;
    assert!(
        browser.text("#notice").await.contains("sink app unparked"),
        "{}",
        browser.text("main").await
    );

    // An action without the form's CSRF token is refused, signed in or not.
    let session = cookie["value"].as_str().unwrap();
    let http = reqwest::Client::new();
    for (cookie, form) in [
        (Some(session), vec![]),
        (Some(session), vec![("csrf", "forged")]),
        (None, vec![]),
    ] {
        let mut request = http.post(env.url("/console/t/acme/sync")).form(&form);
        if let Some(session) = cookie {
            request = request.header("cookie", format!("dirsync_console={session}"));
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert!(
            status == 403 || status == 401,
            "{cookie:?} {form:?}: {status}"
        );
    }
    let runs = env.setup.status_async("acme").await;
    assert_eq!(runs["last_run"]["outcome"], "committed", "{runs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_it_admin_link_shows_its_tenant_only_until_it_expires() {
    let env = Env::start().await;
    let link = env.link("acme", "1h");
    assert!(link.starts_with(&env.url("/console/l/v1.acme.")), "{link}");
    let browser = Browser::start().await;

    browser.goto(&link).await;
    assert!(browser.text("h1").await.contains("acme"));
    let steps = browser.text("#onboarding").await;
    assert!(
        steps.contains("Client ID:") && steps.contains("admin@example.com"),
        "{steps}"
    );
    assert!(browser
        .find_all("#actions, #sinks, #force-sync")
        .await
        .is_empty());
    shot(&browser, "link").await;
    browser
        .type_into(
            &browser.find("#inspect-form input[name=q]").await,
            "frank@example.com",
        )
        .await;
    browser
        .click_and_wait(&browser.find("#inspect-form button").await)
        .await;
    assert!(browser
        .text("#why")
        .await
        .starts_with("outside the org-unit filter"));
    shot(&browser, "link-inspect").await;

    // Another tenant's user through the link: this tenant never saw them.
    browser
        .goto(&format!("{link}inspect?q=hank%40globex.example"))
        .await;
    assert!(browser.text("#why").await.starts_with("never seen"));
    // The operator pages are not reachable with a link.
    browser.goto(&env.url("/console/t/globex")).await;
    assert!(browser.current_url().await.ends_with("/console/login"));
    // A link edited to name another tenant fails its signature.
    browser
        .goto(&link.replacen("v1.acme.", "v1.globex.", 1))
        .await;
    assert!(browser
        .text("#message")
        .await
        .contains("signature does not match"));
    shot(&browser, "link-forged").await;

    let short = env.link("acme", "1s");
    wait_for(10, "the one-second link to expire", || async {
        browser.goto(&short).await;
        browser.text("#message").await.contains("expired")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_console_token_file_there_is_no_console_and_no_link() {
    let setup = crate::support::config_dir(true);
    let emulator = GoogleEmulator::start(&globex_fixture());
    setup.emulator_tenant("acme", &emulator, "", "");
    let _daemon = Daemon::start(&setup, None).await;
    for path in ["/console/", "/console/login", "/console/style.css"] {
        let (status, _) = dirsync_testkit::http_get(setup.http.unwrap(), path)
            .await
            .unwrap();
        assert_eq!(status, 404, "{path}");
    }
    let out = setup.output(&["console-link", "acme"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("console_token_file"));
    let out = setup.output(&["console-link", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

fn scim_user(user_name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Pat", "familyName": "Push"},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "password": PASSWORD,
        "active": true
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_tenants_requests_show_with_their_refusals_redacted_bodies_and_events() {
    let env = Env::start().await;

    // Okta's usual opening: a lookup, the create, then (a retry) the same create again,
    // refused; then a group with the user in it.
    let filter = "/Users?filter=userName%20eq%20%22pat%40example.com%22";
    assert_eq!(env.push(reqwest::Method::GET, filter, None).await.0, 200);
    let (status, created) = env
        .push(
            reqwest::Method::POST,
            "/Users",
            Some(scim_user("pat@example.com")),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, refused) = env
        .push(
            reqwest::Method::POST,
            "/Users",
            Some(scim_user("pat@example.com")),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Sales",
        "members": [{"value": created["id"]}]
    });
    assert_eq!(
        env.push(reqwest::Method::POST, "/Groups", Some(group))
            .await
            .0,
        201
    );
    // Reads are logged off the request path: wait until all four are.
    wait_for(30, "the four requests in okta's log", || async {
        env.setup.status_async("okta").await["push"]["last_hour"]["requests"] == 4
    })
    .await;

    let browser = Browser::start().await;
    env.sign_in(&browser).await;

    // The tenants list: the push tenant's last request and its error rate in its health.
    let row = browser.text("#tenants tr[data-tenant=okta]").await;
    assert!(
        row.contains("last request") && row.contains("25% errors in the last hour"),
        "{row}"
    );

    browser.goto(&env.url("/console/t/okta")).await;
    let health = browser.text("#push-health").await;
    assert!(
        health.contains("POST /Groups") && health.contains("from Okta"),
        "{health}"
    );
    assert!(
        health.contains("1 of 4 requests refused in the last hour"),
        "{health}"
    );
    let rows = browser.find_all("#push-requests tbody tr").await;
    assert_eq!(rows.len(), 4, "{}", browser.text("#push-requests").await);
    let mut newest_first = Vec::new();
    for row in &rows {
        newest_first.push(browser.element_text(row).await);
    }
    assert!(
        newest_first[0].contains("POST") && newest_first[0].contains("/Groups"),
        "{newest_first:?}"
    );
    // (Arrival order, to the millisecond: the lookup and the first create may share one.)
    assert!(
        newest_first[2..]
            .iter()
            .any(|row| row.contains("GET") && row.contains("userName eq")),
        "{newest_first:?}"
    );
    assert!(newest_first.iter().all(|row| row.contains("Okta")));

    // The refused one is highlighted, with its detail.
    let refused = browser.find_all("#push-requests tr.refused").await;
    assert_eq!(refused.len(), 1);
    let refused_text = browser.element_text(&refused[0]).await;
    assert!(
        refused_text.contains("409")
            && refused_text.contains("userName \"pat@example.com\" is already taken"),
        "{refused_text}"
    );

    // The body on demand: the userName, never the password.
    assert!(!browser.source().await.contains(PASSWORD));
    browser
        .click(
            &browser
                .find("#push-requests tr.refused details.body summary")
                .await,
        )
        .await;
    let body = browser
        .text("#push-requests tr.refused details.body pre")
        .await;
    assert!(
        body.contains("\"userName\": \"pat@example.com\"") && body.contains("[redacted]"),
        "{body}"
    );
    assert!(!body.contains(PASSWORD), "{body}");
    browser.set_window(1280, 1500).await;
    shot(&browser, "tenant-push").await;
    browser.set_window(1280, 1000).await;

    // The create's events link lands on the events it produced.
    let create = browser
        .find("#push-requests tr[data-path='/Users'][data-status='201'] a.request-events")
        .await;
    browser.click_and_wait(&create).await;
    assert!(
        browser
            .current_url()
            .await
            .contains("/console/t/okta/events?from="),
        "{}",
        browser.current_url().await
    );
    let events = browser.text("table.events tbody").await;
    assert!(
        events.contains("user.created") && events.contains("pat@example.com"),
        "{events}"
    );
    assert!(
        !events.contains("group."),
        "only that request's events: {events}"
    );
    // And the group's: the group and its member.
    browser.goto(&env.url("/console/t/okta")).await;
    browser
        .click_and_wait(
            &browser
                .find("#push-requests tr[data-path='/Groups'][data-status='201'] a.request-events")
                .await,
        )
        .await;
    let events = browser.text("table.events tbody").await;
    assert!(
        events.contains("group.created") && events.contains("group.user_added"),
        "{events}"
    );
    assert!(!events.contains("user.created"), "{events}");

    // Paged: 50 a page, "Older" shows the rest.
    for n in 0..50 {
        let path = format!("/Users?filter=userName%20eq%20%22n{n}%40example.com%22");
        assert_eq!(env.push(reqwest::Method::GET, &path, None).await.0, 200);
    }
    wait_for(30, "the 54 requests in okta's log", || async {
        env.setup.status_async("okta").await["push"]["last_hour"]["requests"] == 54
    })
    .await;
    browser.goto(&env.url("/console/t/okta")).await;
    assert_eq!(browser.find_all("#push-requests tbody tr").await.len(), 50);
    browser
        .click_and_wait(&browser.find("#older-requests").await)
        .await;
    let older = browser.find_all("#push-requests tbody tr").await;
    assert_eq!(older.len(), 4, "{}", browser.text("#push-requests").await);
    assert!(browser
        .text("#push-requests tbody")
        .await
        .contains("userName eq \"pat@example.com\""));
    assert!(browser.find_all("#older-requests").await.is_empty());

    // The IT admin's link: the health line, not the log (no bodies there).
    browser.goto(&env.link("okta", "1h")).await;
    assert!(browser
        .text("#push-health")
        .await
        .contains("requests refused in the last hour"));
    assert!(browser.find_all("#push-requests").await.is_empty());
    assert!(!browser.source().await.contains("[redacted]"));

    // The IdP's token is wrong: a problem, with its fix, for the operator and the IT admin.
    let wrong = reqwest::Client::new()
        .get(env.url("/scim/v2/okta/Users"))
        .bearer_auth("not-the-token")
        .header("user-agent", OKTA_AGENT)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    wait_for(30, "the refused request in okta's log", || async {
        env.setup.status_async("okta").await["push"]["last_hour"]["requests"] == 55
    })
    .await;
    browser.goto(&env.link("okta", "1h")).await;
    let problem = browser.text("#health .problem").await;
    assert!(
        problem.contains("the IdP's last request (GET /Users")
            && problem.contains("Fix: set the Bearer token"),
        "{problem}"
    );
    browser.goto(&env.url("/console/")).await;
    let problems = browser.text("#problems").await;
    assert!(
        problems.contains("okta") && problems.contains("missing or wrong bearer token"),
        "{problems}"
    );
    assert!(!browser.source().await.contains(PUSH_TOKEN));
}
