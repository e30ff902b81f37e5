//! Out of file descriptors (EMFILE): whatever dirsync was opening when the limit hit, it says
//! so and points at `LimitNOFILE=` / `ulimit -n`, never at a non-writable `state_dir`.

use std::process::Command;

use dirsync_testkit::emulator::GoogleEmulator;
use serde_json::json;

/// `dirsync ARGS` with at most `limit` open descriptors (`ulimit -n` in a shell that then
/// execs it), as a service under systemd's default soft limit would be, only lower.
fn with_fd_limit(command: &Command, limit: u32) -> std::process::Output {
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg("ulimit -n \"$1\" && shift && exec \"$@\"")
        .arg("sh")
        .arg(limit.to_string())
        .arg(command.get_program())
        .args(command.get_args())
        .env_clear()
        .stdin(std::process::Stdio::null());
    for (name, value) in command.get_envs() {
        if let Some(value) = value {
            shell.env(name, value);
        }
    }
    shell.output().unwrap()
}

#[test]
fn running_out_of_descriptors_says_so_and_names_the_limit_to_raise() {
    let emulator = GoogleEmulator::start(&json!({
        "domain": "example.com",
        "users": [{"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"}}],
        "groups": [],
    }));
    let dir = crate::support::config_dir(false);
    dir.emulator_tenant("acme", &emulator, "requests_per_minute = 0", "");
    let (code, first) = dir.sync("acme", &[]);
    assert_eq!(code, 0, "{first}");

    let command = dir.command(&["sync", "acme", "--local"]);
    // Low limits fail at each thing the run opens in turn: the runtime, the database and
    // its WAL files, the connection to the IdP. Every one of those failures must say what
    // happened; one high enough lets the run through.
    let mut advised = 0;
    let mut passed = false;
    for limit in 6..=64 {
        let output = with_fd_limit(&command, limit);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !text.contains("is writable"),
            "limit {limit}: the wrong hint: {text}"
        );
        if output.status.success() {
            passed = true;
            break;
        }
        let lower = text.to_lowercase();
        if lower.contains("too many open files") || lower.contains("os error 24") {
            assert!(
                text.contains("LimitNOFILE") && text.contains("ulimit -n"),
                "limit {limit}: out of descriptors without the limit to raise: {}",
                text.lines()
                    .filter(|line| !line.contains("rustls_platform_verifier"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            advised += 1;
        }
        if lower.contains("database") {
            assert!(
                lower.contains("too many open files"),
                "limit {limit}: a database failure for lack of descriptors must say so: {text}"
            );
        }
    }
    assert!(advised > 0, "no limit ran dirsync out of descriptors");
    assert!(passed, "no limit up to 64 let the run through");
}
