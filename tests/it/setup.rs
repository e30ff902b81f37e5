//! `dirsync setup google` end to end: the real binary against the real emulator (`dirsync
//! emulator`) on loopback, once for success and once for each way Google refuses, in
//! non-interactive mode; and once interactively through a pseudo-terminal (Python's `pty`).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dirsync::setup::messages;
use dirsync::source::google::SCOPES;
use dirsync_testkit::emulator::EmulatorProcess;
use dirsync_testkit::runner::scrub;
use dirsync_testkit::{closed_port, python, ConfigDir, Run};
use serde_json::{json, Value};

use crate::support::{dirsync as dirsync_bin, BIN};

const ADMIN: &str = "admin@example.com";

/// A running `dirsync emulator` (30 users, 4 groups) whose key is downloaded into the config
/// folder, killed on drop.
struct Emulator {
    base: String,
    key_file: PathBuf,
    _process: EmulatorProcess,
}

impl Emulator {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let key_file = dir.join("downloaded-key.json");
        let mut args = vec!["--users", "30", "--groups", "4"];
        args.extend_from_slice(extra);
        let process = EmulatorProcess::spawn(&dirsync_bin(), &key_file, &args, Stdio::null());
        Self {
            base: process.base_url.clone(),
            key_file,
            _process: process,
        }
    }

    fn with_faults(dir: &Path, rules: &Value) -> Self {
        let file = dir.join("faults.json");
        std::fs::write(&file, rules.to_string()).unwrap();
        Self::start(dir, &["--faults", file.to_str().unwrap()])
    }

    fn key(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(&self.key_file).unwrap()).unwrap()
    }

    fn client_id(&self) -> String {
        self.key()["client_id"].as_str().unwrap().to_owned()
    }
}

/// A fresh host's config folder: `dirsync setup` creates `tenants/`.
fn config_dir() -> ConfigDir {
    ConfigDir::builder(dirsync_bin())
        .control_socket("dirsync.sock")
        .without_tenants_dir()
        .build()
}

fn dirsync(dir: &Path, args: &[&str]) -> Run {
    dirsync_bin()
        .with_config(dir.join("dirsync.toml"))
        .run(args)
}

fn setup_google(dir: &Path, key_file: &Path, subject: &str, api_base: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "setup",
        "google",
        "acme",
        "--non-interactive",
        "--key-file",
        key_file.to_str().unwrap(),
        "--subject",
        subject,
        "--api-base",
        api_base,
    ];
    args.extend_from_slice(extra);
    dirsync(dir, &args)
}

fn tenant_file(dir: &Path) -> PathBuf {
    dir.join("tenants/acme.toml")
}

/// A verification failure: exit 1, the fix shown, and nothing written.
fn assert_failed_with(run: &Run, dir: &Path, step: &str, fix: &str) {
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("verification failed at {step}")),
        "{}",
        run.all()
    );
    assert!(
        run.all().contains(fix),
        "expected {fix:?} in:\n{}",
        run.all()
    );
    assert!(
        !tenant_file(dir).exists(),
        "nothing is written when verification fails"
    );
    assert!(!dir.join("tenants/acme-service-account.json").exists());
}

#[test]
fn success_writes_a_valid_tenant_and_a_private_key_and_prints_the_dry_run() {
    let dir = config_dir();
    let emulator = Emulator::start(dir.path(), &[]);
    let run = setup_google(dir.path(), &emulator.key_file, ADMIN, &emulator.base, &[]);
    assert_eq!(run.code, 0, "{}", run.all());

    // What the admin must do, with this key's values.
    assert!(
        run.stdout
            .contains(&format!("Client ID:    {}", emulator.client_id())),
        "{}",
        run.stdout
    );
    let printed: Vec<&str> = run
        .stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("OAuth scopes: "))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(
        printed, SCOPES,
        "the scopes printed are the scopes requested"
    );

    // The summary: counts, requests, the quota estimate and the next command.
    assert!(
        run.stdout.contains("would store 30 users, 4 groups and"),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains("under the quota of 2400 requests/min (40/s)"));
    let next = format!(
        "`dirsync --config {} sync acme`",
        dir.path().join("dirsync.toml").display()
    );
    assert!(run.stdout.contains(&next), "{}", run.stdout);

    // The files: the tenant validates, the key is a private copy.
    let key_copy = dir.path().join("tenants/acme-service-account.json");
    assert_eq!(
        std::fs::read(&key_copy).unwrap(),
        std::fs::read(&emulator.key_file).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&key_copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(tenant_file(dir.path())).unwrap();
    assert!(text.starts_with("# Tenant \"acme\""), "{text}");
    let check = dirsync(dir.path(), &["check-config", "--connect"]);
    assert_eq!(check.code, 0, "{}", check.all());

    // The next command works, and stores what the dry run announced.
    let sync = dirsync(dir.path(), &["sync", "acme", "--json"]);
    assert_eq!(sync.code, 0, "{}", sync.all());
    let report: Value = serde_json::from_str(sync.stdout.trim()).unwrap();
    assert_eq!(report["users"], json!(30));
    assert_eq!(report["groups"], json!(4));

    // A second setup does not overwrite it...
    let again = setup_google(dir.path(), &emulator.key_file, ADMIN, &emulator.base, &[]);
    assert_eq!(again.code, 2, "{}", again.all());
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    // ...unless told to.
    let forced = setup_google(
        dir.path(),
        &key_copy,
        ADMIN,
        &emulator.base,
        &["--force", "--schedule", "0 0 * * * *"],
    );
    assert_eq!(forced.code, 0, "{}", forced.all());
    assert!(std::fs::read_to_string(tenant_file(dir.path()))
        .unwrap()
        .contains("schedule = \"0 0 * * * *\""));
}

#[test]
fn delegation_without_every_scope_names_the_client_id_and_the_scopes() {
    let dir = config_dir();
    // The org-unit scope is missing from the allow-list: Google refuses the whole token.
    let emulator = Emulator::start(
        dir.path(),
        &[
            "--dwd-scopes",
            "admin.directory.user.readonly,admin.directory.group.readonly",
        ],
    );
    let run = setup_google(dir.path(), &emulator.key_file, ADMIN, &emulator.base, &[]);
    assert_failed_with(
        &run,
        dir.path(),
        "access token",
        &format!(
            "domain-wide delegation is not granted for client ID {} with these scopes: {}",
            emulator.client_id(),
            messages::delegation_scopes()
        ),
    );
}

#[test]
fn refused_delegation_knob() {
    let dir = config_dir();
    let emulator = Emulator::with_faults(
        dir.path(),
        &json!({"method": "oauth.token", "fault": "refuse_delegation", "times": 0}),
    );
    let run = setup_google(dir.path(), &emulator.key_file, ADMIN, &emulator.base, &[]);
    assert_failed_with(
        &run,
        dir.path(),
        "access token",
        &format!(
            "domain-wide delegation is not granted for client ID {}",
            emulator.client_id()
        ),
    );
}

#[test]
fn an_unknown_subject_is_no_such_user() {
    let dir = config_dir();
    let emulator = Emulator::with_faults(
        dir.path(),
        &json!({"method": "oauth.token", "fault": "reject_subject", "times": 0}),
    );
    let run = setup_google(dir.path(), &emulator.key_file, ADMIN, &emulator.base, &[]);
    assert_failed_with(
        &run,
        dir.path(),
        "access token",
        &format!("no such user: {ADMIN}"),
    );
}

#[test]
fn a_non_admin_subject_needs_the_read_privileges() {
    let dir = config_dir();
    let emulator = Emulator::with_faults(
        dir.path(),
        &json!({"method": "users.list", "fault": "not_admin", "times": 0}),
    );
    let run = setup_google(dir.path(), &emulator.key_file, ADMIN, &emulator.base, &[]);
    assert_failed_with(
        &run,
        dir.path(),
        "users.list",
        &format!("the impersonated user {ADMIN} is not an admin with the Users and Groups read privileges"),
    );
}

#[test]
fn a_disabled_admin_sdk_api_names_the_api_and_the_project() {
    let dir = config_dir();
    let emulator = Emulator::with_faults(
        dir.path(),
        &json!({"method": "users.list", "fault": "error", "status": 403, "times": 0,
               "reason": "accessNotConfigured",
               "message": "Admin SDK API has not been used in project 123456789012 before or it is disabled."}),
    );
    let project = emulator.key()["project_id"].as_str().unwrap().to_owned();
    let run = setup_google(dir.path(), &emulator.key_file, ADMIN, &emulator.base, &[]);
    assert_failed_with(
        &run,
        dir.path(),
        "users.list",
        &format!("enable the Admin SDK API (admin.googleapis.com) in Google Cloud project {project}: https://console.cloud.google.com/apis/library/admin.googleapis.com?project={project}"),
    );
}

/// A loopback port with nothing listening.
#[test]
fn an_unreachable_token_endpoint_names_its_host() {
    let dir = config_dir();
    let emulator = Emulator::start(dir.path(), &[]);
    let closed = closed_port();
    let port = closed.port;
    let mut key = emulator.key();
    key["token_uri"] = json!(format!("http://127.0.0.1:{port}/token"));
    let key_file = dir.path().join("moved-key.json");
    std::fs::write(&key_file, key.to_string()).unwrap();
    let run = setup_google(dir.path(), &key_file, ADMIN, &emulator.base, &[]);
    assert_failed_with(
        &run,
        dir.path(),
        "access token",
        &format!("127.0.0.1:{port} could not be reached (the token endpoint"),
    );
}

#[test]
fn an_unreachable_api_names_its_host_and_write_anyway_writes() {
    let dir = config_dir();
    let emulator = Emulator::start(dir.path(), &[]);
    let closed = closed_port();
    let port = closed.port;
    let run = setup_google(
        dir.path(),
        &emulator.key_file,
        ADMIN,
        &format!("http://127.0.0.1:{port}"),
        &["--write-anyway"],
    );
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.all().contains(&format!(
            "127.0.0.1:{port} could not be reached (the Directory API"
        )),
        "{}",
        run.all()
    );
    assert!(tenant_file(dir.path()).exists(), "--write-anyway writes it");
    assert!(run.stdout.contains("written anyway"), "{}", run.stdout);
}

#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    let dir = config_dir();
    let run = dirsync(
        dir.path(),
        &[
            "setup",
            "google",
            "acme",
            "--non-interactive",
            "--key-file",
            "/nonexistent.json",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("--key-file"), "{}", run.stderr);
    let run = dirsync(
        dir.path(),
        &["setup", "google", "Not A Tenant", "--non-interactive"],
    );
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("[a-z0-9_-]+"), "{}", run.stderr);
}

/// Answers each prompt as a person would, in a pseudo-terminal; prints the transcript and
/// exits with dirsync's exit code.
const PTY_DRIVER: &str = r#"
import os, pty, subprocess, sys, time, json
argv, answers = json.loads(sys.argv[1]), json.loads(sys.argv[2])
master, slave = pty.openpty()
proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
os.close(slave)
seen, deadline = b"", time.time() + 60
def read_until(marker):
    global seen
    while marker.encode() not in seen:
        if time.time() > deadline:
            sys.stdout.write(seen.decode(errors="replace")); sys.exit(98)
        try:
            chunk = os.read(master, 4096)
        except OSError:
            sys.stdout.write(seen.decode(errors="replace")); sys.exit(97)
        if not chunk:
            sys.stdout.write(seen.decode(errors="replace")); sys.exit(97)
        seen += chunk
for marker, answer in answers:
    read_until(marker)
    seen = seen.replace(marker.encode(), b"<" + marker.encode() + b">", 1)
    os.write(master, answer.encode() + b"\r")
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
code = proc.wait()
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(code)
"#;

#[test]
fn interactive_setup_through_a_terminal() {
    let dir = config_dir();
    let emulator = Emulator::start(dir.path(), &[]);
    let config = dir.path().join("dirsync.toml");
    let argv = json!([
        BIN,
        "--config",
        config,
        "setup",
        "google",
        "acme",
        "--api-base",
        emulator.base
    ]);
    let answers = json!([
        ["Service-account key file", "/no/such/key.json"],
        // A wrong path is asked again, not fatal.
        ["Service-account key file", emulator.key_file],
        [
            "Admin email the service account impersonates",
            "not-an-email"
        ],
        ["Admin email the service account impersonates", ADMIN],
        ["Customer ID or domain", ""],
        ["Schedule", ""],
        ["Press Enter once the super admin has done this", ""],
    ]);
    // The driver runs dirsync itself: it gets the scrubbed environment the testkit gives.
    let output = scrub(&mut Command::new(python()))
        .args(["-c", PTY_DRIVER, &argv.to_string(), &answers.to_string()])
        .output()
        .unwrap();
    let transcript = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{transcript}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        transcript.contains("cannot read /no/such/key.json"),
        "{transcript}"
    );
    assert!(
        transcript.contains("\"not-an-email\" is not an email address"),
        "{transcript}"
    );
    assert!(transcript.contains(&format!("Client ID:    {}", emulator.client_id())));
    assert!(
        transcript.contains("Tenant acme is connected"),
        "{transcript}"
    );
    let text = std::fs::read_to_string(tenant_file(dir.path())).unwrap();
    assert!(text.contains("customer = \"my_customer\""), "{text}");
    assert!(text.contains("schedule = \"0 */15 * * * *\""), "{text}");
}
