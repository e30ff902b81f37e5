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
