//! `dirsync emulator` as a process: help, bad input (exit 2, one clear line, no panic), the
//! start line, key files across restarts, graceful shutdown on SIGTERM.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use dirsync_testkit::wait_until;
use serde_json::Value;

fn dirsync() -> Command {
    crate::support::dirsync().command(&["emulator"])
}

fn fails_with_usage(args: &[&str]) -> String {
    let output = dirsync().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn help_documents_every_flag() {
    let output = dirsync().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--users",
        "--groups",
        "--members",
        "--seed",
        "--domain",
        "--customer-id",
        "--fixture",
        "--admin",
        "--key-out",
        "--key-in",
        "--latency-ms",
        "--quota-per-minute",
        "--max-concurrent",
        "--token-ttl-secs",
        "--dwd-scopes",
        "--faults",
        "/_emulator/",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn bad_input_is_a_usage_error_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    fails_with_usage(&["--users", "many"]);
    fails_with_usage(&["--listen", "nowhere"]);
    fails_with_usage(&["--fixture", "x.json", "--users", "3"]);
    let stderr = fails_with_usage(&["--users", "0"]);
    assert!(stderr.contains("--users"), "{stderr}");

    let missing = dir.path().join("missing.json");
    let stderr = fails_with_usage(&["--fixture", missing.to_str().unwrap()]);
    assert!(
        stderr.contains("missing.json") && stderr.contains("cannot read"),
        "{stderr}"
    );

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"users\": [").unwrap();
    let stderr = fails_with_usage(&["--fixture", broken.to_str().unwrap()]);
    assert!(
        stderr.contains("broken.json") && stderr.contains("line 1"),
        "{stderr}"
    );

    let wrong = dir.path().join("wrong.json");
    std::fs::write(
        &wrong,
        r#"{"users": [{"primaryEmail": "admin@example.com"}], "groups": [{"email": "g@example.com", "members": [{"email": "ghost@example.com"}]}]}"#,
    )
    .unwrap();
    let stderr = fails_with_usage(&["--fixture", wrong.to_str().unwrap()]);
    assert!(
        stderr.contains("groups[0].members[0]") && stderr.contains("ghost@example.com"),
        "{stderr}"
    );

    let unknown = dir.path().join("unknown.json");
    std::fs::write(&unknown, r#"{"userz": []}"#).unwrap();
    let stderr = fails_with_usage(&["--fixture", unknown.to_str().unwrap()]);
    assert!(stderr.contains("userz"), "{stderr}");

    let faults = dir.path().join("faults.json");
    std::fs::write(
        &faults,
        r#"[{"fault": "error", "status": 503}, {"fault": "error"}]"#,
    )
    .unwrap();
    let stderr = fails_with_usage(&["--faults", faults.to_str().unwrap()]);
    assert!(
        stderr.contains("rule 1") && stderr.contains("status"),
        "{stderr}"
    );

    let key = dir.path().join("key.json");
    std::fs::write(&key, "{}").unwrap();
    let stderr = fails_with_usage(&["--key-in", key.to_str().unwrap()]);
    assert!(stderr.contains("private_key"), "{stderr}");

    let stderr = fails_with_usage(&["--admin", "boss@elsewhere.example"]);
    assert!(stderr.contains("boss@elsewhere.example"), "{stderr}");
}

struct Running {
    child: std::process::Child,
    base_url: String,
}

fn start(args: &[&str]) -> Running {
    let mut child = dirsync()
        .args(["--listen", "127.0.0.1:0", "--users", "30", "--groups", "3"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base_url = line
        .strip_prefix("dirsync emulator listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"))
        .to_owned();
    Running { child, base_url }
}

fn terminate(mut running: Running) -> Option<i32> {
    let pid = running.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let mut code = None;
    wait_until(
        "the emulator to stop on SIGTERM",
        Duration::from_secs(20),
        || match running.child.try_wait().unwrap() {
            Some(status) => {
                code = status.code();
                true
            }
            None => false,
        },
    );
    code
}

#[test]
fn key_files_survive_restarts_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let first_key = dir.path().join("first.json");
    let second_key = dir.path().join("second.json");
    let first = start(&["--key-out", first_key.to_str().unwrap()]);
    let first_url = first.base_url.clone();
    assert_eq!(terminate(first), Some(0));
    let second = start(&[
        "--key-in",
        first_key.to_str().unwrap(),
        "--key-out",
        second_key.to_str().unwrap(),
    ]);
    let a: Value = serde_json::from_str(&std::fs::read_to_string(&first_key).unwrap()).unwrap();
    let b: Value = serde_json::from_str(&std::fs::read_to_string(&second_key).unwrap()).unwrap();
    for field in ["private_key", "client_id", "client_email", "private_key_id"] {
        assert_eq!(a[field], b[field], "{field}");
    }
    assert_eq!(a["token_uri"], format!("{first_url}/token"));
    assert_eq!(b["token_uri"], format!("{}/token", second.base_url));
    assert_eq!(b["type"], "service_account");
    assert!(b["client_id"]
        .as_str()
        .unwrap()
        .chars()
        .all(|c| c.is_ascii_digit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&second_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(terminate(second), Some(0));
}
