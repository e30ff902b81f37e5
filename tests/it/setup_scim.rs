//! `dirsync setup scim` end to end: the real binary against a real SCIM 2.0 server
//! (scim2-server from PyPI, via `DIRSYNC_TEST_PYTHON` or the repo's `.venv`) on loopback.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dirsync_testkit::scim::{ScimServer, Spc, TOKEN};
use dirsync_testkit::ConfigDir;

/// A fresh host's config folder: `dirsync setup` creates `tenants/`.
fn config_dir() -> ConfigDir {
    ConfigDir::builder(crate::support::dirsync())
        .without_tenants_dir()
        .build()
}

/// Runs the binary off the async runtime (it blocks until setup ends).
async fn setup_scim(dir: &Path, base_url: &str, token: &str) -> (i32, String) {
    let token_file = dir.join("given-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut command = crate::support::dirsync()
        .with_config(dir.join("dirsync.toml"))
        .command(&[
            "setup",
            "scim",
            "hr",
            "--non-interactive",
            "--base-url",
            base_url,
            "--token-file",
            token_file.to_str().unwrap(),
        ]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test]
async fn setup_scim_reports_what_the_server_offers_and_writes_the_tenant() {
    let server = ScimServer::start(Spc::Cursor).await;
    server.seed().await;
    let dir = config_dir();
    let (code, output) = setup_scim(dir.path(), &server.base_url, TOKEN).await;
    assert_eq!(code, 0, "{output}");
    // The source's check describes the server's paging and filtering and dirsync's choice.
    assert!(output.contains("cursor"), "{output}");
    assert!(output.contains("filter"), "{output}");
    assert!(
        output.contains("would store 5 users, 2 groups and 5 memberships"),
        "{output}"
    );
    let token_file = dir.path().join("tenants/hr-scim-token");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), TOKEN);
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!output.contains(TOKEN), "the token is never printed");
    let tenant = std::fs::read_to_string(dir.path().join("tenants/hr.toml")).unwrap();
    assert!(tenant.contains("type = \"scim\""), "{tenant}");
}

#[tokio::test]
async fn a_refused_token_fails_verification_and_writes_nothing() {
    let server = ScimServer::start(Spc::Default).await;
    let dir = config_dir();
    let (code, output) = setup_scim(dir.path(), &server.base_url, "wrong-token").await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("refused the token"), "{output}");
    assert!(!dir.path().join("tenants/hr.toml").exists());
}
