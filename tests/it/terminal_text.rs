//! IdP text never drives the operator's terminal: names with NUL, CR/LF and ANSI escape
//! sequences, and an API error body that tries to forge a "committed" line, clear the screen
//! and retitle the window, are escaped in every human-readable output of the real binary
//! (inspect, the sync summary, status, text logs), while `--json` keeps them exact. Logs
//! carry no colour when stderr is not a terminal.

use dirsync_emulator::FaultRule;
use dirsync_testkit::emulator::GoogleEmulator;
use dirsync_testkit::Run;
use serde_json::json;

/// A display name that tries everything at once.
const HOSTILE: &str = "Eve\u{0}\r\ntenant acme: committed OK\u{1b}[2J\u{1b}]0;pwned\u{7}\u{202e}";

/// No raw control character (other than the line breaks dirsync writes itself) and no bidi
/// override reaches the terminal.
fn assert_inert(text: &str, what: &str) {
    for (index, ch) in text.char_indices() {
        let raw = (ch.is_control() && ch != '\n') || ch == '\u{202e}';
        assert!(
            !raw,
            "{what} has a raw {ch:?} at byte {index}:\n{}",
            text.escape_debug()
        );
    }
    assert!(
        !text
            .lines()
            .any(|line| line.starts_with("tenant acme: committed OK")),
        "{what} has a forged line:\n{text}"
    );
}

fn fixture() -> serde_json::Value {
    json!({
        "domain": "example.com",
        "users": [
            {"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"}},
            {"primaryEmail": "eve@example.com", "name": {"givenName": HOSTILE, "familyName": "X\u{1b}[31m"}},
        ],
        "groups": [
            {"email": "staff@example.com", "name": format!("Staff{HOSTILE}"),
             "members": [{"email": "eve@example.com"}]},
        ],
    })
}

#[test]
fn inspect_escapes_idp_names_in_text_and_keeps_them_exact_in_json() {
    let emulator = GoogleEmulator::start(&fixture());
    let dir = crate::support::config_dir(false);
    dir.emulator_tenant("acme", &emulator, "requests_per_minute = 0", "");
    let (code, summary) = dir.sync("acme", &[]);
    assert_eq!(code, 0, "{summary}");

    for who in ["eve@example.com", "staff@example.com"] {
        let run = dir.run(&["inspect", "acme", who]);
        assert_eq!(run.code, 0, "{}", run.all());
        assert_inert(&run.stdout, "inspect's text");
    }
    let user = dir.run(&["inspect", "acme", "eve@example.com"]).stdout;
    assert!(
        user.contains("Eve\\0\\r\\ntenant acme: committed OK\\x1b[2J"),
        "escaped, still visible: {user}"
    );
    let json = dir.inspect("acme", "eve@example.com");
    assert_eq!(json["user"]["first_name"], HOSTILE, "{json}");
}

#[test]
fn a_hostile_error_body_is_escaped_in_the_sync_summary_status_and_logs() {
    let emulator = GoogleEmulator::start(&fixture());
    emulator
        .faults()
        .add(FaultRule {
            method: Some("users.list".into()),
            status: Some(400),
            message: Some(format!("bad request{HOSTILE}")),
            times: 0,
            ..FaultRule::default()
        })
        .unwrap();
    let dir = crate::support::config_dir(false);
    dir.emulator_tenant("acme", &emulator, "requests_per_minute = 0", "");

    let text = dir.run(&["sync", "acme"]);
    assert_eq!(text.code, 1, "{}", text.all());
    assert!(text.stderr.contains("error:"), "{}", text.all());
    assert_inert(&text.stdout, "the sync summary (stdout)");
    assert_inert(&text.stderr, "the sync summary (stderr)");

    // Text logs at every level: the warning of the failed run carries the body.
    let logged = dir
        .dirsync()
        .clone()
        .env("RUST_LOG", "debug")
        .run(&["sync", "acme", "--json"]);
    assert_eq!(logged.code, 1, "{}", logged.all());
    assert!(logged.stderr.contains("sync failed"), "{}", logged.stderr);
    assert_inert(&logged.stderr, "the text log");
    let summary: serde_json::Value =
        serde_json::from_str(logged.stdout.lines().last().unwrap()).unwrap();
    assert!(
        summary["error"].as_str().unwrap().contains(HOSTILE),
        "the JSON keeps the body exact: {summary}"
    );

    let Run { code, stdout, .. } = dir.run(&["status", "acme"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("last error:"), "{stdout}");
    assert_inert(&stdout, "status");
    let status = dir.status("acme");
    assert!(
        status["last_run"]["error"]
            .as_str()
            .unwrap()
            .contains(HOSTILE),
        "{status}"
    );
}

#[test]
fn logs_have_no_colour_when_stderr_is_not_a_terminal() {
    // A failed run logs a warning; stderr is a pipe here, as for `dirsync run > daemon.log 2>&1`.
    let emulator = GoogleEmulator::start(&fixture());
    emulator
        .faults()
        .add(FaultRule {
            method: Some("users.list".into()),
            status: Some(400),
            times: 0,
            ..FaultRule::default()
        })
        .unwrap();
    let dir = crate::support::config_dir(false);
    dir.emulator_tenant("acme", &emulator, "requests_per_minute = 0", "");
    let run = dir
        .dirsync()
        .clone()
        .env("RUST_LOG", "info")
        .run(&["sync", "acme"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("WARN"), "{}", run.stderr);
    assert!(
        !run.stderr.contains('\u{1b}'),
        "ANSI codes in a piped log: {}",
        run.stderr.escape_debug()
    );
}
