//! A hostile or broken IdP, end to end through the real binary: a panic inside a run (the
//! test-only fault `DIRSYNC_TEST_PANIC_IN_RUN`, and a key whose token_uri is not a URL), a
//! token endpoint that never answers, a run longer than `max_run_seconds`, a persistent 503
//! shown while it is retried, and `RUST_LOG=trace` printing no token or assertion.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dirsync_emulator::{FaultKind, FaultRule};
use dirsync_testkit::daemon::Daemon;
use dirsync_testkit::emulator::GoogleEmulator;
use dirsync_testkit::{http_get, ConfigDir, Run};
use serde_json::{json, Value};

use crate::support::{config_dir, dirsync, DaemonControl};

const PANIC_FAULT: &str = "DIRSYNC_TEST_PANIC_IN_RUN";

fn fixture() -> Value {
    json!({
        "domain": "example.com",
        "users": [
            {"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"}},
            {"primaryEmail": "bob@example.com", "name": {"givenName": "Bob", "familyName": "Builder"}},
        ],
        "groups": [
            {"email": "staff@example.com", "name": "Staff", "members": [{"email": "bob@example.com"}]},
        ]
    })
}

fn setup_with(dir: ConfigDir, emulator: &GoogleEmulator, source_extra: &str) -> ConfigDir {
    dir.emulator_tenant(
        "acme",
        emulator,
        &format!("requests_per_minute = 0\n{source_extra}"),
        "",
    );
    dir
}

/// No backtrace, no panic hook's default text: one clear error.
fn assert_no_backtrace(stderr: &str) {
    for noise in ["stack backtrace", "RUST_BACKTRACE", "note: run with"] {
        assert!(!stderr.contains(noise), "{noise:?} in:\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_in_a_standalone_sync_is_one_clear_error_exit_1_and_the_lease_is_released() {
    let emulator = GoogleEmulator::start(&fixture());
    let plain = setup_with(config_dir(false), &emulator, "");
    let panicking = plain.dirsync().clone().env(PANIC_FAULT, "acme");
    let run = panicking
        .with_config(plain.config())
        .run_async(&["sync", "acme"])
        .await;
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        run.stderr.contains("nothing was committed"),
        "{}",
        run.stderr
    );
    assert_no_backtrace(&run.stderr);

    // The lease was given back: the next run starts at once, not after the lease's 60 s.
    let started = Instant::now();
    let Run { code, stderr, .. } = plain.run_async(&["sync", "acme"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "{stderr}");
    let status = plain.status_async("acme").await;
    assert_eq!(status["stored"]["users"], 2, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_whose_token_uri_is_not_a_url_fails_cleanly_without_a_panic() {
    let emulator = GoogleEmulator::start(&fixture());
    let dir = config_dir(false);
    for token_uri in ["not a url", "file:///etc/passwd"] {
        let mut key: Value = serde_json::from_str(&emulator.key_json).unwrap();
        key["token_uri"] = json!(token_uri);
        dir.google_tenant(
            "acme",
            &emulator.base_url,
            &key.to_string(),
            &emulator.admin,
            "requests_per_minute = 0",
            "",
        );
        let run = dir.run_async(&["sync", "acme"]).await;
        // 1 (the run fails) or 2 (config validation refuses the key): never 101.
        assert!(matches!(run.code, 1 | 2), "{token_uri}: {}", run.all());
        assert!(run.stderr.contains("token_uri"), "{}", run.stderr);
        assert!(!run.stderr.contains("panicked at"), "{}", run.stderr);
        assert_no_backtrace(&run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_daemon_run_fails_that_run_and_the_tenant_goes_on() {
    let emulator = GoogleEmulator::start(&fixture());
    let setup = setup_with(config_dir(true), &emulator, "");
    let mut daemon = Daemon::start_with_env(&setup, None, &[(PANIC_FAULT, "acme")]).await;

    // A force sync is answered (not "the daemon is stopping"), as a failed run, twice.
    for _ in 0..2 {
        let run = setup.run_async(&["sync", "acme"]).await;
        assert_eq!(run.code, 1, "{}\n{}", run.all(), daemon.log_text());
        assert!(run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let state = setup.daemon_state("acme").await.unwrap();
    assert!(state.running.is_none(), "{state:?}");
    assert_eq!(state.runs, 2, "{state:?}");
    assert!(
        state.last_error.as_deref().unwrap().contains("panicked"),
        "{state:?}"
    );
    // Scheduled again.
    assert!(state.next_run.is_some(), "{state:?}");
    let (code, body) = http_get(setup.http.unwrap(), "/healthz").await.unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));

    // The lease was released: a run in another process (without the fault) commits at once.
    let started = Instant::now();
    let run = setup.run_async(&["sync", "acme", "--local"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(started.elapsed() < Duration::from_secs(30));

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(20).await, 0, "{}", daemon.log_text());
}

/// A loopback token endpoint that accepts connections and never answers.
async fn silent_endpoint() -> SocketAddr {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while stream.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_that_never_answers_fails_the_sync_within_the_request_timeout() {
    let emulator = GoogleEmulator::start(&fixture());
    let silent = silent_endpoint().await;
    let dir = config_dir(false);
    let mut key: Value = serde_json::from_str(&emulator.key_json).unwrap();
    key["token_uri"] = json!(format!("http://{silent}/token"));
    dir.google_tenant(
        "acme",
        &emulator.base_url,
        &key.to_string(),
        &emulator.admin,
        "requests_per_minute = 0\nrequest_timeout_seconds = 1\nretry_max_seconds = 2",
        "",
    );
    let run = tokio::time::timeout(Duration::from_secs(60), dir.run_async(&["sync", "acme"]))
        .await
        .expect("dirsync sync hung on a silent token endpoint");
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains(&silent.to_string()), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_longer_than_max_run_seconds_is_abandoned_and_says_so() {
    let emulator = GoogleEmulator::start(&fixture());
    emulator
        .faults()
        .add(FaultRule {
            method: Some("users.list".into()),
            fault: FaultKind::Delay,
            latency_ms: Some(40_000),
            times: 0,
            ..FaultRule::default()
        })
        .unwrap();
    let dir = setup_with(
        config_dir(false),
        &emulator,
        "request_timeout_seconds = 120\nmax_run_seconds = 2",
    );
    let started = Instant::now();
    let run = dir.run_async(&["sync", "acme"]).await;
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("max_run_seconds = 2"), "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
    // Nothing committed, and the lease is free for the next run.
    emulator.faults().clear();
    let run = dir.run_async(&["sync", "acme"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_persistent_503_is_shown_per_retry_by_default_and_gives_up() {
    let emulator = GoogleEmulator::start(&fixture());
    emulator
        .faults()
        .add(FaultRule {
            method: Some("users.list".into()),
            status: Some(503),
            times: 0,
            ..FaultRule::default()
        })
        .unwrap();
    // No RUST_LOG: the default filter of `dirsync sync`.
    let dir = setup_with(config_dir(false), &emulator, "retry_max_seconds = 4");
    let run = dir.run_async(&["sync", "acme"]).await;
    assert_eq!(run.code, 1, "{}", run.all());
    let retry_lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("retry "))
        .collect();
    assert!(!retry_lines.is_empty(), "{}", run.stderr);
    let first = retry_lines[0];
    for part in ["GET", "/users", "503", "retry 1 in"] {
        assert!(first.contains(part), "{part:?} not in {first}");
    }
}

#[test]
fn the_default_retry_budget_of_one_request_is_about_a_minute() {
    let emulator = GoogleEmulator::start(&fixture());
    let dir = setup_with(config_dir(false), &emulator, "");
    let loaded = dirsync::config::load(&dir.config());
    let tenant = loaded.tenants.get("acme").unwrap();
    let dirsync::config::SourceConfig::Google(google) = &tenant.source else {
        panic!("a google tenant");
    };
    assert_eq!(google.retry_max, Duration::from_secs(60));
    assert_eq!(tenant.source.max_run(), Duration::from_secs(3600));
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_log_trace_prints_no_access_token_or_assertion() {
    let emulator = GoogleEmulator::start(&fixture());
    let dir = setup_with(
        ConfigDir::builder(dirsync().env("RUST_LOG", "trace")).build(),
        &emulator,
        "",
    );
    let run = dir.run_async(&["sync", "acme"]).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stderr.contains("TRACE") || run.stderr.contains("DEBUG"));
    for secret in ["ya29.", "eyJ", "assertion=", "access_token"] {
        assert!(
            !run.stderr.contains(secret),
            "{secret:?} in the log:\n{}",
            run.stderr
        );
    }
}
