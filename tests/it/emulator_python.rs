//! An independent client against the real binary: Google's own Python client
//! (google-api-python-client + google-auth) lists users, groups and members through every page
//! of `dirsync emulator`, unchanged but for the root URL and the key file's token URI.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use dirsync_testkit::python;
use serde_json::Value;

struct Emulator {
    child: Child,
    base_url: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `dirsync emulator` on a free port and reads its "listening on" line.
fn start(args: &[&str]) -> Emulator {
    let mut child = crate::support::dirsync()
        .command(&["emulator", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let base_url = line
        .strip_prefix("dirsync emulator listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    assert!(
        line.contains(&format!("(token_uri {base_url}/token)")),
        "{line}"
    );
    Emulator { child, base_url }
}

#[test]
fn googles_python_client_lists_everything() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    let emulator = start(&[
        "--users",
        "260",
        "--groups",
        "24",
        "--seed",
        "5",
        "--key-out",
        key.to_str().unwrap(),
    ]);
    let stats: Value = http::blocking_get(&format!("{}/_emulator/stats", emulator.base_url));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/emulator_client.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(&key)
        .arg(&emulator.base_url)
        .arg("admin@example.com")
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run {} ({err}): set DIRSYNC_TEST_PYTHON or create .venv with `pip install -r tests/requirements.txt`",
                python().display()
            )
        });
    assert!(
        output.status.success(),
        "python client failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    let stats = &stats["stats"];
    assert_eq!(result["users"], stats["users"]);
    assert_eq!(result["distinct_users"], stats["users"]);
    assert_eq!(result["groups"], stats["groups"]);
    assert_eq!(result["members"], stats["memberships"]);
    assert_eq!(result["deleted"], 0);
    assert_eq!(result["org_units"], stats["org_units"]);
    let users = stats["users"].as_u64().unwrap();
    assert_eq!(result["pages"]["users"], users.div_ceil(37));
    assert!(result["pages"]["members"].as_u64().unwrap() > stats["groups"].as_u64().unwrap());
    assert_eq!(result["member_types"]["CUSTOMER"], 1);
    assert_eq!(result["get_matches"], true);
    assert_eq!(result["is_member_type"], "bool");
    assert_eq!(result["direct_members_count_type"], "str");
    assert_eq!(result["missing_status"], 404);
    // The client authenticated once (google-auth caches the token) and made every call.
    let counters: Value = http::blocking_get(&format!("{}/_emulator/counters", emulator.base_url));
    assert_eq!(counters["methods"]["oauth.token"]["by_status"]["200"], 1);
    assert_eq!(
        counters["methods"]["members.list"]["total"],
        result["pages"]["members"]
    );
}

mod http {
    /// A tiny blocking GET for JSON over a throwaway runtime (the test itself is sync).
    pub fn blocking_get(url: &str) -> serde_json::Value {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { ::reqwest::get(url).await.unwrap().json().await.unwrap() })
    }
}
