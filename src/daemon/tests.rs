#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::*;

const TENANT: &str = "schedule = \"*/5 * * * * *\"\n[source]\ntype = \"scim\"\nbase_url = \"http://127.0.0.1:9/scim/v2\"\ntoken_file = \"token\"\n";

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tenants")).unwrap();
    std::fs::write(
        dir.path().join("dirsync.toml"),
        "state_dir = \"state\"\ntenants_dir = \"tenants\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("tenants/token"), "secret-token\n").unwrap();
    dir
}

fn write_tenant(dir: &Path, id: &str, text: &str) {
    std::fs::write(dir.join("tenants").join(format!("{id}.toml")), text).unwrap();
}

fn previous(dir: &Path) -> BTreeMap<String, Arc<TenantConfig>> {
    let loaded = config::load(&dir.join("dirsync.toml"));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded
        .tenants
        .into_iter()
        .map(|(id, t)| (id, Arc::new(t)))
        .collect()
}

#[test]
fn a_broken_tenant_file_keeps_its_previous_config_and_others_apply() {
    let dir = setup();
    write_tenant(dir.path(), "acme", TENANT);
    write_tenant(dir.path(), "globex", TENANT);
    write_tenant(dir.path(), "gone", TENANT);
    let before = previous(dir.path());

    write_tenant(dir.path(), "acme", "schedule = \"not cron\"\n");
    write_tenant(
        dir.path(),
        "globex",
        &TENANT.replace("*/5 * * * * *", "0 0 * * * *"),
    );
    std::fs::remove_file(dir.path().join("tenants/gone.toml")).unwrap();
    write_tenant(dir.path(), "newbie", TENANT);
    write_tenant(dir.path(), "broken-new", "[source]\ntype = \"nope\"\n");

    let config_path = dir.path().join("dirsync.toml");
    let plan = plan_reload(&config_path, &before, config::load(&config_path)).unwrap();
    let ids: Vec<&str> = plan.tenants.keys().map(String::as_str).collect();
    assert_eq!(ids, ["acme", "globex", "newbie"]);
    assert_eq!(plan.tenants["acme"].schedule_text, "*/5 * * * * *");
    assert_eq!(plan.tenants["globex"].schedule_text, "0 0 * * * *");
    assert_eq!(plan.kept_previous, ["acme"]);
    assert!(plan
        .problems
        .iter()
        .any(|p| p.file.ends_with("broken-new.toml")));
}

#[test]
fn a_broken_global_file_keeps_everything() {
    let dir = setup();
    write_tenant(dir.path(), "acme", TENANT);
    let before = previous(dir.path());
    let config_path = dir.path().join("dirsync.toml");
    std::fs::write(&config_path, "state_dir = \"state\"\nbogus = 1\n").unwrap();
    let problems = plan_reload(&config_path, &before, config::load(&config_path)).unwrap_err();
    assert!(problems.iter().any(|p| p.file == config_path));
}

#[test]
fn commits_wake_subscribers_only_when_the_seq_moves_forward() {
    let commits = Commits::default();
    let mut feed = commits.subscribe("acme");
    assert_eq!(*feed.borrow_and_update(), 0);
    commits.publish("acme", 5);
    assert!(feed.has_changed().unwrap());
    assert_eq!(*feed.borrow_and_update(), 5);
    commits.publish("acme", 5);
    commits.publish("acme", 3);
    assert!(!feed.has_changed().unwrap());
    assert_eq!(*commits.subscribe("acme").borrow(), 5);
}
