//! `dirsync setup scim-push` end to end: the real binary writes a push tenant and its token,
//! prints the base URL, the token and the IdP's steps, refuses to overwrite, and (with a wait)
//! checks for a daemon first.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

use dirsync_testkit::daemon::Daemon;
use dirsync_testkit::{ConfigDir, Run};

fn config_dir(http: bool) -> ConfigDir {
    let builder = ConfigDir::builder(crate::support::dirsync()).without_tenants_dir();
    if http {
        builder.http_listen().build()
    } else {
        builder.build()
    }
}

async fn setup(dir: &ConfigDir, args: &[&str]) -> Run {
    let mut all = vec!["setup", "scim-push"];
    all.extend_from_slice(args);
    dir.run_async(&all).await
}

fn token_of(dir: &ConfigDir, tenant: &str) -> String {
    let path = dir.tenants_dir().join(format!("{tenant}-scim-token"));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600,
        "the token file is private"
    );
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

#[tokio::test]
async fn setup_writes_a_private_token_and_prints_the_okta_steps_with_the_values() {
    let dir = config_dir(true);
    let run = setup(&dir, &["okta-corp", "--idp", "okta", "--wait", "0"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let token = token_of(&dir, "okta-corp");
    assert_eq!(token.len(), 64);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    let base_url = format!("http://{}/scim/v2/okta-corp", dir.http.unwrap());
    let out = &run.stdout;
    assert!(out.contains(&format!("Base URL:  {base_url}")), "{out}");
    assert!(out.contains(&format!("Token:     {token}")), "{out}");
    assert!(
        out.contains(&format!("SCIM connector base URL:             {base_url}")),
        "{out}"
    );
    assert!(
        out.contains("Unique identifier field for users:   userName"),
        "{out}"
    );
    assert!(out.contains(&format!("Bearer {token}")), "{out}");
    assert!(out.contains("Test Connector Configuration"), "{out}");
    // A loopback URL cannot be reached from Okta's cloud: said, with the way out.
    assert!(out.contains("--url-base"), "{out}");
    let tenant = std::fs::read_to_string(dir.tenant_file("okta-corp")).unwrap();
    assert!(tenant.contains("type = \"scim_push\""), "{tenant}");
    assert!(!tenant.contains(&token), "the token stays in its own file");

    // The files are a valid tenant for the real loader.
    let check = dir.run_async(&["check-config"]).await;
    assert_eq!(check.code, 0, "{}\n{}", check.stdout, check.stderr);

    // Run again: refused, nothing replaced.
    let again = setup(&dir, &["okta-corp", "--idp", "okta", "--wait", "0"]).await;
    assert_eq!(again.code, 2, "{}\n{}", again.stdout, again.stderr);
    assert!(again.stderr.contains("already exist"), "{}", again.stderr);
    assert!(again.stderr.contains("--yes"), "{}", again.stderr);
    assert_eq!(token_of(&dir, "okta-corp"), token);

    // Asked to: replaced, with a new token.
    let replaced = setup(
        &dir,
        &["okta-corp", "--idp", "okta", "--wait", "0", "--yes"],
    )
    .await;
    assert_eq!(replaced.code, 0, "{}\n{}", replaced.stdout, replaced.stderr);
    assert_ne!(token_of(&dir, "okta-corp"), token);
    let left: Vec<String> = std::fs::read_dir(dir.tenants_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "no staging folder left: {left:?}");
}

#[tokio::test]
async fn entra_gets_the_public_url_with_its_scim_flag() {
    let dir = config_dir(true);
    let run = setup(
        &dir,
        &[
            "entra-corp",
            "--idp",
            "entra",
            "--url-base",
            "https://dirsync.example.com/",
            "--wait",
            "0",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let token = token_of(&dir, "entra-corp");
    let out = &run.stdout;
    assert!(
        out.contains(
            "Tenant URL:    https://dirsync.example.com/scim/v2/entra-corp?aadOptscim062020"
        ),
        "{out}"
    );
    assert!(out.contains(&format!("Secret Token:  {token}")), "{out}");
    assert!(out.contains("Test Connection"), "{out}");
    assert!(
        !out.contains("--url-base"),
        "a public HTTPS URL needs no note: {out}"
    );
}

#[tokio::test]
async fn every_idp_has_its_steps_and_bad_input_writes_nothing() {
    let dir = config_dir(true);
    for (tenant, idp, field) in [
        ("one", "onelogin", "SCIM Bearer Token:"),
        ("jump", "jumpcloud", "Token Key:"),
        ("own", "generic", "Authorization:  Bearer "),
    ] {
        let run = setup(&dir, &[tenant, "--idp", idp, "--wait", "0"]).await;
        assert_eq!(run.code, 0, "{idp}: {}\n{}", run.stdout, run.stderr);
        let token = token_of(&dir, tenant);
        assert!(run.stdout.contains(field), "{idp}: {}", run.stdout);
        assert!(run.stdout.contains(&token), "{idp}: {}", run.stdout);
    }
    let unknown = setup(&dir, &["x", "--idp", "google", "--wait", "0"]).await;
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("okta, entra"), "{}", unknown.stderr);
    assert!(!dir.tenant_file("x").exists());

    // No http_listen and no --url-base: no URL to give the IdP.
    let bare = config_dir(false);
    let run = setup(&bare, &["okta-corp", "--idp", "okta", "--wait", "0"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("http_listen"), "{}", run.stderr);
    assert!(!bare.tenant_file("okta-corp").exists());
}

#[tokio::test]
async fn the_wait_needs_the_daemon_and_says_so() {
    let dir = config_dir(true);
    let run = setup(&dir, &["okta-corp", "--idp", "okta", "--wait", "30"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("no daemon answers on the control socket"),
        "{}",
        run.stdout
    );
    // The files are written all the same.
    assert!(dir.tenant_file("okta-corp").exists());
}

#[tokio::test]
async fn the_wait_asks_for_a_reload_when_the_daemon_does_not_serve_the_tenant_yet() {
    let dir = ConfigDir::builder(crate::support::dirsync())
        .http_listen()
        .build();
    let daemon = Daemon::start(&dir, None).await;
    let run = setup(&dir, &["okta-corp", "--idp", "okta", "--wait", "1"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("does not serve tenant okta-corp yet"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("No request from Okta arrived within 1 s"),
        "{}",
        run.stdout
    );
    drop(daemon);
}

#[tokio::test]
async fn the_wait_reports_the_idps_first_request_once_the_daemon_serves_the_tenant() {
    let dir = ConfigDir::builder(crate::support::dirsync())
        .http_listen()
        .build();
    let daemon = Daemon::start(&dir, None).await;
    let setup = dir
        .tokio_command(&[
            "setup",
            "scim-push",
            "okta-corp",
            "--idp",
            "okta",
            "--wait",
            "60",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let token_file = dir.tenants_dir().join("okta-corp-scim-token");
    dirsync_testkit::wait_for(20, "setup to write the token", || {
        let path = token_file.clone();
        async move { std::fs::read_to_string(path).is_ok_and(|t| t.trim().len() == 64) }
    })
    .await;
    let token = token_of(&dir, "okta-corp");
    daemon.signal("HUP");

    // Okta's lookup before a create, sent as Okta sends it, until the reloaded daemon serves
    // the tenant (before that it is an unknown tenant: 401, and not logged).
    let url = format!(
        "http://{}/scim/v2/okta-corp/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100",
        dir.http.unwrap()
    );
    let client = reqwest::Client::new();
    let wrong = client
        .get(&url)
        .bearer_auth("not-the-token-at-all")
        .header("User-Agent", "Okta SCIM Client 1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    dirsync_testkit::wait_for(20, "the daemon to serve the tenant", || {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        async move {
            client
                .get(&url)
                .bearer_auth(&token)
                .header("User-Agent", "Okta SCIM Client 1.0.0")
                .send()
                .await
                .is_ok_and(|answer| answer.status().as_u16() == 200)
        }
    })
    .await;

    let output = setup.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "received GET /Users?filter=userName eq \"test.user@okta.local\"&startIndex=1&count=100 \
             from Okta (User-Agent Okta SCIM Client 1.0.0): the connection works"
        ),
        "{stdout}"
    );
    drop(daemon);
}
