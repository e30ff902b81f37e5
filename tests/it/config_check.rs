//! `check-config` and `status` on broken configuration, through the real binary: every problem
//! of every file at once with file and key, exit 2, warnings that do not fail, and `status`
//! still showing the tenants whose files are fine.

use dirsync_testkit::ConfigDir;

use crate::support::config_dir;

/// A SCIM tenant that validates (nothing listens at its URL; nothing here connects).
fn scim_tenant(setup: &ConfigDir, id: &str, extra: &str) {
    setup.scim_tenant(id, "http://127.0.0.1:9/scim/v2", "t0ken\n", extra, "");
}

#[test]
fn check_config_reports_every_problem_of_a_tenant_and_no_ok_for_a_broken_global() {
    let setup = config_dir(false);
    scim_tenant(&setup, "good", "");
    setup.write_tenant(
        "acme",
        "schedule = \"not a cron\"\n[source]\ntype = \"google\"\nsubject = \"admin@acme.example\"\n[guard]\nmin_delete = 3\n",
    );
    let global = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), format!("{global}colour = \"blue\"\n")).unwrap();

    let run = setup.run(&["check-config"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let acme = setup.tenant_file("acme");
    for key in [
        "`schedule`",
        "`source.credentials_file`",
        "`guard.min_delete`",
    ] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with(&acme.display().to_string()) && l.contains(key)),
            "{key} not reported:\n{}",
            run.stderr
        );
    }
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("dirsync.toml") && l.contains("`colour`")),
        "{}",
        run.stderr
    );
    // The global file has a problem: it is not "OK"; the good tenant still is.
    assert!(!run.stdout.contains("dirsync.toml: OK"), "{}", run.stdout);
    assert!(run.stdout.contains("tenant good OK"), "{}", run.stdout);
    assert!(!run.stdout.contains("tenant acme OK"), "{}", run.stdout);
}

#[test]
fn status_shows_the_valid_tenants_and_the_problems_of_the_broken_files() {
    let setup = config_dir(false);
    scim_tenant(&setup, "good", "");
    setup.write_tenant("broken", "schedule = \"nope\"\n");

    let run = setup.run(&["status"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stdout.starts_with("good\n") && run.stdout.contains("last run:"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("broken.toml") && run.stderr.contains("`schedule`"),
        "{}",
        run.stderr
    );
    let run = setup.run(&["status", "--json"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let statuses: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(statuses.as_array().unwrap().len(), 1, "{statuses}");
    assert_eq!(statuses[0]["tenant"], "good");
    assert!(run.stderr.contains("broken.toml"), "{}", run.stderr);
}

#[test]
fn a_state_dir_that_is_a_file_fails_status_and_check_config() {
    let setup = config_dir(false);
    scim_tenant(&setup, "good", "");
    setup.write("state", "a file, not a directory");
    for args in [&["status"][..], &["status", "good"], &["check-config"]] {
        let run = setup.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(
            run.stderr.contains("`state_dir`") && run.stderr.contains("not a directory"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stdout.contains("never"), "{args:?}: {}", run.stdout);
    }
}

#[test]
fn a_secret_file_others_can_read_is_a_warning_not_a_failure() {
    use std::os::unix::fs::PermissionsExt;
    let setup = config_dir(false);
    scim_tenant(&setup, "good", "");
    let token = setup.tenants_dir().join("good-token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = setup.run(&["check-config"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.lines().any(|l| l.starts_with("warning:")
            && l.contains("`source.token_file`")
            && l.contains("0644")
            && l.contains("chmod 600")),
        "{}",
        run.stderr
    );
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = setup.run(&["check-config"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}

#[test]
fn a_token_file_with_a_line_feed_inside_is_a_config_error_naming_the_key() {
    let setup = config_dir(false);
    setup.scim_tenant("acme", "http://127.0.0.1:9/scim/v2", "abc\ndef\n", "", "");
    for args in [&["check-config"][..], &["sync", "acme"]] {
        let run = setup.run(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.all());
        assert!(
            run.stderr.contains("`source.token_file`") && run.stderr.contains("acme-token"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn org_units_on_a_scim_tenant_are_refused_before_any_sync() {
    let setup = config_dir(false);
    scim_tenant(
        &setup,
        "acme",
        "[filters]\norg_units = [\"/Engineering\"]\n",
    );
    let run = setup.run(&["sync", "acme"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("`filters.org_units`") && run.stderr.contains("SCIM"),
        "{}",
        run.stderr
    );
}

#[test]
fn on_reject_on_a_jsonl_sink_is_refused() {
    let setup = config_dir(false);
    scim_tenant(
        &setup,
        "acme",
        "[[sinks]]\ntype = \"jsonl\"\npath = \"events.jsonl\"\non_reject = \"park\"\n",
    );
    let run = setup.run(&["check-config"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("`sinks[0].on_reject`"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_token_uri_is_not_http_is_a_config_error_not_a_panic() {
    let emulator = dirsync_emulator::Emulator::builder()
        .build()
        .unwrap()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut key: serde_json::Value =
        serde_json::from_str(&emulator.service_account_key_json()).unwrap();
    let setup = config_dir(false);
    for uri in ["file:///etc/passwd", "not a url"] {
        key["token_uri"] = uri.into();
        setup.google_tenant(
            "acme",
            &emulator.base_url,
            &key.to_string(),
            emulator.admin_email(),
            "",
            "",
        );
        for args in [&["check-config"][..], &["sync", "acme"]] {
            let run = setup.run_async(args).await;
            assert_eq!(run.code, 2, "{uri} {args:?}: {}", run.all());
            assert!(
                run.stderr.contains("`source.credentials_file`")
                    && run.stderr.contains("token_uri")
                    && run.stderr.contains("acme-service-account.json")
                    && !run.stderr.contains("panicked"),
                "{uri} {args:?}: {}",
                run.stderr
            );
        }
    }
    emulator.shutdown().await;
}
