#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use super::*;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

#[test]
fn the_example_files_parse() {
    let loaded = load(&example_dir().join("dirsync.toml"));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let config = loaded.into_result().unwrap();
    let acme = config.tenant("acme").unwrap();
    assert_eq!(acme.schedule_text, "0 */15 * * * *");
    assert_eq!(acme.guard, GuardConfig::default());
    assert_eq!(acme.filters.groups, vec!["*@acme.example".to_owned()]);
    assert_eq!(acme.roles.default_role.as_deref(), Some("member"));
    assert!(acme.attributes.paths.contains_key("cost_center"));
    assert!(
        matches!(&acme.source, SourceConfig::Google(g) if g.customer == "my_customer" && g.max_concurrency == 8)
    );
}

#[test]
fn the_push_tenant_example_parses() {
    // config/tenants/okta-corp.toml.example, enabled as the README says (renamed, with a token).
    let dir = tempfile::tempdir().unwrap();
    let tenants = dir.path().join("tenants");
    std::fs::create_dir(&tenants).unwrap();
    write(
        dir.path(),
        "dirsync.toml",
        "state_dir = \"state\"\ntenants_dir = \"tenants\"\n",
    );
    std::fs::copy(
        example_dir().join("tenants/okta-corp.toml.example"),
        tenants.join("okta-corp.toml"),
    )
    .unwrap();
    write(
        &tenants,
        "okta-corp-scim-token",
        &format!("{}\n", "ab".repeat(32)),
    );
    let loaded = load(&dir.path().join("dirsync.toml"));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let tenant = &loaded.tenants["okta-corp"];
    assert!(!tenant.scheduled);
    let SourceConfig::ScimPush(push) = &tenant.source else {
        panic!("not a push source: {:?}", tenant.source);
    };
    assert_eq!(push.suspended_users, SuspendedUsers::Inactive);
    assert_eq!(push.max_queued_writes, DEFAULT_MAX_QUEUED_WRITES);
    assert_eq!(tenant.roles.default_role.as_deref(), Some("member"));
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn setup(tenant: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tenants")).unwrap();
    write(
        dir.path(),
        "dirsync.toml",
        "state_dir = \"state\"\ntenants_dir = \"tenants\"\n",
    );
    std::fs::copy(
        example_dir().join("tenants/acme-service-account.json"),
        dir.path().join("tenants/key.json"),
    )
    .unwrap();
    write(&dir.path().join("tenants"), "acme.toml", tenant);
    dir
}

fn problems(tenant: &str) -> Vec<String> {
    let dir = setup(tenant);
    load(&dir.path().join("dirsync.toml"))
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect()
}

const SOURCE: &str = "[source]\ntype = \"google\"\ncredentials_file = \"key.json\"\nsubject = \"admin@acme.example\"\n";

#[test]
fn every_problem_is_reported_with_file_and_key() {
    // An unknown key is reported, and the rest of the file is still checked.
    let found = problems(&format!("schedule = \"every day\"\nbogus = 1\n{SOURCE}"));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains("acme.toml") && found[0].contains("bogus"),
        "{found:?}"
    );
    assert!(found[1].contains("`schedule`"), "{found:?}");

    let found = problems(&format!(
        "schedule = \"every day\"\n{SOURCE}[guard]\nmax_delete_percent = 200\n"
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().any(|p| p.contains("`schedule`")), "{found:?}");
    assert!(
        found.iter().any(|p| p.contains("guard.max_delete_percent")),
        "{found:?}"
    );
}

#[test]
fn malformed_toml_names_the_line() {
    let found = problems("schedule = \"0 * * * * *\"\n[source\n");
    assert!(
        found[0].contains("acme.toml") && found[0].contains("line 2"),
        "{found:?}"
    );
}

#[test]
fn a_missing_or_malformed_key_file_is_a_config_error() {
    let found = problems(
        "[source]\ntype = \"google\"\ncredentials_file = \"nope.json\"\nsubject = \"a@b.c\"\n",
    );
    assert!(
        found[0].contains("source.credentials_file") && found[0].contains("nope.json"),
        "{found:?}"
    );
    let dir = setup(
        "[source]\ntype = \"google\"\ncredentials_file = \"bad.json\"\nsubject = \"a@b.c\"\n",
    );
    write(
        &dir.path().join("tenants"),
        "bad.json",
        "{\"type\": \"service_account\"",
    );
    let found: Vec<String> = load(&dir.path().join("dirsync.toml"))
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(found[0].contains("is not JSON"), "{found:?}");
}

#[test]
fn an_unparseable_attribute_path_names_the_key() {
    let found = problems(&format!(
        "{SOURCE}[attributes]\nbadge = \"emails[primary\"\n"
    ));
    assert!(found[0].contains("attributes.badge"), "{found:?}");
}

#[test]
fn a_bad_tenant_file_name_is_reported() {
    let dir = setup(SOURCE);
    write(&dir.path().join("tenants"), "Bad Name.toml", SOURCE);
    let found: Vec<String> = load(&dir.path().join("dirsync.toml"))
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert!(found.iter().any(|p| p.contains("Bad Name")), "{found:?}");
}

#[test]
fn policy_sections_report_bad_paths_org_units_and_unsynced_role_groups() {
    let found = problems(&format!(
        "schedule = \"0 * * * * *\"\n{SOURCE}[filters]\ngroups = [\"eng-*@acme.example\"]\norg_units = [\"/Engineering\"]\n[roles]\n\"admins@acme.example\" = \"admin\"\n\"eng-leads@acme.example\" = \"lead\"\n[attributes]\nbadge = \"emails[type=work\"\n"
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .any(|p| p.contains("roles.\"admins@acme.example\"")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.contains("attributes.badge")),
        "{found:?}"
    );
    let found = problems(&format!(
        "schedule = \"0 * * * * *\"\n{SOURCE}[filters]\norg_units = [\"Engineering\"]\n"
    ));
    assert!(found[0].contains("filters.org_units[0]"), "{found:?}");
}

// ---------------------------------------------------------------------------------------------
// Every problem at once, in every section.

fn keys_of(found: &[Problem]) -> Vec<String> {
    found
        .iter()
        .map(|p| p.key.clone().unwrap_or_default())
        .collect()
}

fn loaded(tenant: &str) -> (tempfile::TempDir, Loaded) {
    let dir = setup(tenant);
    let loaded = load(&dir.path().join("dirsync.toml"));
    (dir, loaded)
}

#[test]
fn a_bad_cron_a_missing_key_and_an_unknown_guard_key_are_all_reported() {
    let (_dir, loaded) = loaded(
        "schedule = \"not a cron\"\n[source]\ntype = \"google\"\nsubject = \"admin@acme.example\"\n[guard]\nmin_delete = 3\n",
    );
    let keys = keys_of(&loaded.problems);
    for key in ["schedule", "source.credentials_file", "guard.min_delete"] {
        assert!(
            keys.contains(&key.to_owned()),
            "{key}: {:?}",
            loaded.problems
        );
    }
    assert_eq!(keys.len(), 3, "{:?}", loaded.problems);
    assert!(loaded
        .problems
        .iter()
        .all(|p| p.file.ends_with("acme.toml")));
    // A typo is matched to the key it meant.
    let guard = &loaded.problems[keys.iter().position(|k| k == "guard.min_delete").unwrap()];
    assert!(guard.message.contains("min_deletes"), "{guard}");
}

#[test]
fn unknown_keys_in_the_source_hide_none_of_its_other_checks() {
    let (_dir, loaded) = loaded(
        "[source]\ntype = \"google\"\ncredentials_file = \"key.json\"\nflavour = 1\ncolour = 2\napi_base = \"ftp://x\"\nmax_concurrency = \"many\"\n",
    );
    let mut keys = keys_of(&loaded.problems);
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "source.api_base",
            "source.colour",
            "source.flavour",
            "source.max_concurrency",
            "source.subject"
        ],
        "{:?}",
        loaded.problems
    );
}

#[test]
fn every_unknown_key_of_every_section_is_reported() {
    let (_dir, loaded) = loaded(&format!(
        "one = 1\ntwo = 2\n{SOURCE}[filters]\ngroup = []\nusers_ = \"all\"\n[[sinks]]\ntype = \"jsonl\"\npath = \"x\"\nbatch = 1\nsize = 2\n"
    ));
    let mut keys = keys_of(&loaded.problems);
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "filters.group",
            "filters.users_",
            "one",
            "sinks[0].batch",
            "sinks[0].size",
            "two"
        ],
        "{:?}",
        loaded.problems
    );
}

#[test]
fn a_global_file_with_a_problem_is_not_valid_but_its_tenants_are_checked() {
    let dir = setup("schedule = \"nope\"\n");
    write(
        dir.path(),
        "dirsync.toml",
        "state_dir = \"state\"\ntenants_dir = \"tenants\"\ncolour = \"blue\"\nflavour = 1\n",
    );
    let loaded = load(&dir.path().join("dirsync.toml"));
    assert!(loaded.global.is_none());
    let keys = keys_of(&loaded.problems);
    assert!(keys.contains(&"colour".to_owned()), "{keys:?}");
    assert!(keys.contains(&"flavour".to_owned()), "{keys:?}");
    assert!(keys.contains(&"schedule".to_owned()), "{keys:?}");
}

#[test]
fn a_state_dir_that_is_a_file_is_a_problem() {
    let dir = setup(SOURCE);
    write(dir.path(), "state", "not a directory");
    let loaded = load(&dir.path().join("dirsync.toml"));
    assert!(loaded.global.is_none());
    let found = loaded.problems;
    assert!(
        found.len() == 1
            && found[0].key.as_deref() == Some("state_dir")
            && found[0].message.contains("not a directory"),
        "{found:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Schedules.

#[test]
fn a_cron_that_never_fires_again_is_refused() {
    let found = problems(&format!("schedule = \"0 0 0 30 2 * 2020\"\n{SOURCE}"));
    assert!(
        found.len() == 1 && found[0].contains("`schedule`") && found[0].contains("never fires"),
        "{found:?}"
    );
}

#[test]
fn an_out_of_range_cron_field_names_the_real_bound() {
    let found = problems(&format!("schedule = \"61 * * * * *\"\n{SOURCE}"));
    assert!(
        found.len() == 1 && found[0].contains("at most 59") && !found[0].contains("less than 59"),
        "{found:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Sources.

const SCIM: &str = "[source]\ntype = \"scim\"\nbase_url = \"https://idp.example/scim/v2\"\ntoken_file = \"token\"\n";

#[test]
fn org_units_on_a_scim_tenant_are_refused() {
    let dir = setup(&format!("{SCIM}[filters]\norg_units = [\"/\"]\n"));
    write(&dir.path().join("tenants"), "token", "t0ken\n");
    let found = load(&dir.path().join("dirsync.toml")).problems;
    assert!(
        found.len() == 1
            && found[0].key.as_deref() == Some("filters.org_units")
            && found[0].message.contains("SCIM"),
        "{found:?}"
    );
}

#[test]
fn a_scim_token_with_control_characters_inside_is_refused() {
    for token in ["abc\ndef\n", "abc\0def", "abc def", "tökén"] {
        let dir = setup(SCIM);
        write(&dir.path().join("tenants"), "token", token);
        let found = load(&dir.path().join("dirsync.toml")).problems;
        assert!(
            found.len() == 1
                && found[0].key.as_deref() == Some("source.token_file")
                && found[0].message.contains("tenants/token")
                && !found[0].message.contains("abc"),
            "{token:?}: {found:?}"
        );
    }
    // A trailing newline is what editors write: fine.
    let dir = setup(SCIM);
    write(&dir.path().join("tenants"), "token", "abc.def-ghi\n");
    let found = load(&dir.path().join("dirsync.toml")).problems;
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn header_auth_needs_a_valid_header_name() {
    let dir = setup(
        "[source]\ntype = \"scim\"\nbase_url = \"https://idp.example\"\nauth = \"header\"\nheader_name = \"X Api Key\"\ntoken_file = \"token\"\n",
    );
    write(&dir.path().join("tenants"), "token", "value with spaces\n");
    let found = load(&dir.path().join("dirsync.toml")).problems;
    assert_eq!(keys_of(&found), vec!["source.header_name"], "{found:?}");
}

#[test]
fn a_scim_base_url_must_be_http() {
    let dir = setup(&SCIM.replace("https://idp.example/scim/v2", "not a url"));
    write(&dir.path().join("tenants"), "token", "t0ken\n");
    let found = load(&dir.path().join("dirsync.toml")).problems;
    assert_eq!(keys_of(&found), vec!["source.base_url"], "{found:?}");
}

/// A service-account key JSON holding `private_key`, with `token_uri`.
fn key_json(private_key: &str, token_uri: &str) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "k",
        "private_key": private_key,
        "client_email": "dirsync@p.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    })
    .to_string()
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn rsa_pem() -> String {
    use aws_lc_rs::encoding::AsDer;
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    pem("PRIVATE KEY", key.as_der().unwrap().as_ref())
}

/// The problems of a Google tenant whose key file holds `key`.
fn key_problems(key: &str) -> Vec<Problem> {
    let dir = setup(SOURCE);
    write(&dir.path().join("tenants"), "key.json", key);
    load(&dir.path().join("dirsync.toml")).problems
}

#[test]
fn a_token_uri_that_is_not_an_http_url_is_refused() {
    let good = rsa_pem();
    assert!(
        key_problems(&key_json(&good, "https://oauth2.googleapis.com/token")).is_empty(),
        "a valid key must pass"
    );
    for uri in [
        "file:///etc/passwd",
        "not a url",
        "https://exa mple.com/token",
    ] {
        let found = key_problems(&key_json(&good, uri));
        assert!(
            found.len() == 1
                && found[0].key.as_deref() == Some("source.credentials_file")
                && found[0].message.contains("token_uri")
                && found[0].message.contains("key.json"),
            "{uri}: {found:?}"
        );
    }
}

#[test]
fn a_private_key_that_is_not_a_usable_rsa_key_is_refused() {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let ec = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    let ed = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let rsa = rsa_pem();
    let truncated = format!("{}\n-----END PRIVATE KEY-----\n", &rsa[..rsa.len() / 2]);
    let no_end = rsa[..rsa.len() / 2].to_owned();
    for (name, key, needle) in [
        ("EC", pem("PRIVATE KEY", ec.as_ref()), "EC key"),
        ("Ed25519", pem("PRIVATE KEY", ed.as_ref()), "Ed25519"),
        ("truncated", truncated, "private_key"),
        ("no END line", no_end, "truncated"),
        ("certificate", pem("CERTIFICATE", b"x"), "CERTIFICATE"),
    ] {
        let found = key_problems(&key_json(&key, "https://oauth2.googleapis.com/token"));
        assert!(
            found.len() == 1
                && found[0].key.as_deref() == Some("source.credentials_file")
                && found[0].message.contains(needle),
            "{name}: {found:?}"
        );
    }
}

#[test]
fn the_example_placeholder_key_is_a_warning_not_a_problem() {
    let loaded = load(&example_dir().join("dirsync.toml"));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.key.as_deref() == Some("source.credentials_file")
                && w.message.contains("placeholder")),
        "{:?}",
        loaded.warnings
    );
    // Where a key is used for real (setup), the placeholder is an error.
    assert!(
        read_service_account_key(&example_dir().join("tenants/acme-service-account.json")).is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// Secret files others can read.

#[test]
fn a_secret_file_others_can_read_is_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = setup(SCIM);
    let token = dir.path().join("tenants/token");
    write(&dir.path().join("tenants"), "token", "t0ken\n");
    let key = dir.path().join("tenants/key.json");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false), (0o400, false)] {
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(mode)).unwrap();
        let loaded = load(&dir.path().join("dirsync.toml"));
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let warnings: Vec<&Problem> = loaded
            .warnings
            .iter()
            .filter(|w| w.key.as_deref() == Some("source.token_file"))
            .collect();
        assert_eq!(!warnings.is_empty(), warned, "{mode:o}: {warnings:?}");
        if warned {
            assert!(
                warnings[0].message.contains(&format!("{mode:04o}"))
                    && warnings[0].message.contains("chmod 600"),
                "{warnings:?}"
            );
        }
    }
    // The service-account key and the events API token too.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    write(dir.path(), "api-token", "t0ken");
    std::fs::set_permissions(
        dir.path().join("api-token"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    write(
        dir.path(),
        "dirsync.toml",
        "state_dir = \"state\"\ntenants_dir = \"tenants\"\nevents_api_token_file = \"api-token\"\n",
    );
    write(&dir.path().join("tenants"), "acme.toml", SOURCE);
    let loaded = load(&dir.path().join("dirsync.toml"));
    let keys = keys_of(&loaded.warnings);
    assert!(
        keys.contains(&"events_api_token_file".to_owned())
            && keys.contains(&"source.credentials_file".to_owned()),
        "{:?}",
        loaded.warnings
    );
}

// ---------------------------------------------------------------------------------------------
// Sinks.

#[test]
fn on_reject_on_a_jsonl_sink_is_refused() {
    let found = problems(&format!(
        "{SOURCE}[[sinks]]\ntype = \"jsonl\"\npath = \"x.jsonl\"\non_reject = \"park\"\n"
    ));
    assert!(
        found.len() == 1 && found[0].contains("sinks[0].on_reject"),
        "{found:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Push tenants.

const PUSH: &str = "[source]\ntype = \"scim_push\"\ntoken_file = \"push-token\"\n";

#[test]
fn a_push_tenants_token_file_resolves_once_under_a_relative_config_path() {
    // A relative --config (`dirsync --config dirsync.toml …`) gives relative tenant paths; the
    // token file was resolved twice (tenants/tenants/push-token).
    std::fs::create_dir_all("target").unwrap();
    let dir = tempfile::Builder::new().tempdir_in("target").unwrap();
    let relative = dir
        .path()
        .strip_prefix(std::env::current_dir().unwrap())
        .unwrap_or(dir.path())
        .to_owned();
    assert!(relative.is_relative(), "{}", relative.display());
    std::fs::create_dir(relative.join("tenants")).unwrap();
    write(&relative.join("tenants"), "acme.toml", PUSH);
    write(
        &relative.join("tenants"),
        "push-token",
        "0123456789abcdef0123\n",
    );
    let mut problems = Vec::new();
    let tenant = load_tenant(&relative.join("tenants/acme.toml"), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert!(tenant.is_some());
}

#[test]
fn a_push_tenant_needs_no_schedule_and_is_not_scheduled_without_one() {
    let dir = setup(PUSH);
    write(
        &dir.path().join("tenants"),
        "push-token",
        "0123456789abcdef0123\n",
    );
    let loaded = load(&dir.path().join("dirsync.toml"));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let tenant = &loaded.tenants["acme"];
    assert!(!tenant.scheduled);
    let SourceConfig::ScimPush(push) = &tenant.source else {
        panic!("not a push source: {:?}", tenant.source);
    };
    assert_eq!(push.token.expose(), "0123456789abcdef0123");
    assert_eq!(push.max_queued_writes, DEFAULT_MAX_QUEUED_WRITES);

    let dir = setup(&format!("schedule = \"0 0 * * * *\"\n{PUSH}"));
    write(
        &dir.path().join("tenants"),
        "push-token",
        "0123456789abcdef0123\n",
    );
    let loaded = load(&dir.path().join("dirsync.toml"));
    assert!(loaded.tenants["acme"].scheduled);
}

#[test]
fn a_push_tenant_refuses_a_short_token_a_missing_file_and_unknown_keys() {
    let dir = setup(PUSH);
    write(&dir.path().join("tenants"), "push-token", "short\n");
    let found = load(&dir.path().join("dirsync.toml")).problems;
    assert_eq!(keys_of(&found), vec!["source.token_file"], "{found:?}");
    assert!(found[0].message.contains("16 characters"), "{found:?}");

    let found = load(
        &setup(&format!("{PUSH}base_url = \"https://x\"\n"))
            .path()
            .join("dirsync.toml"),
    )
    .problems;
    let keys = keys_of(&found);
    assert!(keys.contains(&"source.base_url".to_owned()), "{found:?}");
    assert!(keys.contains(&"source.token_file".to_owned()), "{found:?}");
}

// ---------------------------------------------------------------------------------------------
// The web console.

fn global_problems(global: &str, token: Option<&str>) -> (Vec<String>, Option<GlobalConfig>) {
    let dir = setup(SOURCE);
    if let Some(token) = token {
        write(dir.path(), "console-token", token);
    }
    write(
        dir.path(),
        "dirsync.toml",
        &format!("state_dir = \"state\"\ntenants_dir = \"tenants\"\n{global}"),
    );
    let loaded = load(&dir.path().join("dirsync.toml"));
    (
        loaded.problems.iter().map(|p| p.to_string()).collect(),
        loaded.global,
    )
}

#[test]
fn console_token_file_enables_the_console_and_is_checked_like_every_secret() {
    let listen = "http_listen = \"127.0.0.1:9187\"\nconsole_token_file = \"console-token\"\n";
    let (found, global) = global_problems(listen, Some("a-long-enough-console-token\n"));
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(
        global.unwrap().console_token.unwrap().expose(),
        "a-long-enough-console-token"
    );

    let (found, global) = global_problems("", None);
    assert!(found.is_empty() && global.unwrap().console_token.is_none());

    for (global, token, expect) in [
        (listen, None, "cannot read"),
        (listen, Some("short"), "shorter than 16"),
        (listen, Some("has a space in the middle"), "a space"),
        (
            "console_token_file = \"console-token\"\n",
            Some("a-long-enough-console-token"),
            "set http_listen",
        ),
    ] {
        let (found, _) = global_problems(global, token);
        assert!(
            found.len() == 1
                && found[0].contains("dirsync.toml")
                && found[0].contains("console_token_file")
                && found[0].contains(expect),
            "{token:?}: {found:?}"
        );
    }
}
