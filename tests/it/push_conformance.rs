//! Outside conformance suites against the SCIM push receiver of the real `dirsync run`:
//! `scim2-tester`'s `check_server` (every check it has: discovery, CRUD of each resource type,
//! PATCH add/remove/replace of every simple, complex and extension attribute, projections,
//! errors) and `scim-sanity`'s probe (lifecycle, search, paging, error handling). Whatever
//! they did, the folded event stream is what the receiver serves afterwards.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;

use dirsync_testkit::python;
use dirsync_testkit::python::HOW_TO_CREATE;
use serde_json::Value;

use crate::push_support::{assert_pushed, Push, Rules, TOKEN};

/// scim2-tester checks that may be `SKIPPED`, and why.
const MAY_SKIP: &[(&str, &str)] = &[(
    // POST /.search at the base URL searches several resource types at once; dirsync answers
    // 501 (RFC 7644 §3.12), which scim2-tester reports as a skip. IdPs query per type.
    "search_with_attributes",
    "POST /.search",
)];

/// scim-sanity results that are not failures of dirsync, and why.
const SANITY_EXCLUDED: &[(&str, &str)] = &[(
    // It adds the member "fake-member-id", which is no user or group of the tenant: dirsync
    // refuses such a member (400 invalidValue) rather than keep a membership of nobody, which
    // would be a membership event about an object that does not exist.
    "PATCH /Groups/{id} add member",
    "refuses a member that does not exist",
)];

fn run_python(args: &[&str]) -> std::process::Output {
    Command::new(python())
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {} ({err}): {HOW_TO_CREATE}", python().display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_check_server_passes_every_check() {
    let push = Push::start("conformance", "", "").await;
    let script = dirsync_testkit::workspace_root().join("tests/python/scim_conformance.py");
    let base = push.base.clone();
    let output =
        tokio::task::spawn_blocking(move || run_python(&[script.to_str().unwrap(), &base, TOKEN]))
            .await
            .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scim2-tester failed ({HOW_TO_CREATE}):\n{stderr}"
    );
    let results: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for result in &results {
        let status = result["status"].as_str().unwrap();
        *by_status.entry(status.to_owned()).or_default() += 1;
        let title = result["title"].as_str().unwrap();
        let reason = result["reason"].as_str().unwrap_or_default();
        let allowed_skip = status == "SKIPPED"
            && MAY_SKIP
                .iter()
                .any(|(name, why)| *name == title && reason.contains(why));
        if status != "SUCCESS" && !allowed_skip {
            failures.push(format!(
                "{status} {title} {}: {reason}",
                result["resource_type"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "scim2-tester checks failed:\n{}\n{}",
        failures.join("\n"),
        push.log()
    );
    // It ran the whole suite: discovery, and CRUD and PATCH of both resource types.
    assert!(by_status["SUCCESS"] > 100, "{by_status:?}");
    for title in [
        "check_add_attribute",
        "check_replace_attribute",
        "check_remove_attribute",
    ] {
        for kind in ["User", "Group"] {
            assert!(
                results
                    .iter()
                    .any(|r| r["title"] == title && r["resource_type"] == kind),
                "{title} on {kind} did not run"
            );
        }
    }
    let events = push.events().await;
    assert!(!events.is_empty());
    assert_pushed(&events);
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_sanity_probe_passes() {
    let push = Push::start("sanity", "", "").await;
    let base = push.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        run_python(&[
            "-m",
            "scim_sanity",
            "probe",
            &base,
            "--token",
            TOKEN,
            "--i-accept-side-effects",
            "--json-output",
            "--timeout",
            "60",
        ])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| {
        panic!(
            "scim-sanity printed no report ({err}; {HOW_TO_CREATE}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let results = report["results"].as_array().unwrap();
    let failures: Vec<&Value> = results
        .iter()
        .filter(|r| !matches!(r["status"].as_str(), Some("pass" | "skip")))
        .filter(|r| !SANITY_EXCLUDED.iter().any(|(name, _)| r["name"] == *name))
        .collect();
    assert!(
        failures.is_empty(),
        "scim-sanity: {failures:#?}\n{report:#}"
    );
    let passed = results.iter().filter(|r| r["status"] == "pass").count();
    assert!(passed >= 25, "{report:#}");
    // The skips are the agent extensions dirsync does not serve.
    for skipped in results.iter().filter(|r| r["status"] == "skip") {
        assert!(
            skipped["name"].as_str().unwrap().contains("Agent"),
            "{skipped}"
        );
    }
    assert_pushed(&push.events().await);
    push.assert_fold_matches(Rules::default()).await;
}
