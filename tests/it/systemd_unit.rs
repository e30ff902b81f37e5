//! The shipped unit (`systemd/dirsync.service`) and the example config (`config/`) agree:
//! every path the example config has dirsync write (the state directory, the control socket,
//! JSON-lines sink files) is inside a path the unit makes writable under
//! `ProtectSystem=strict` — `StateDirectory=`, `LogsDirectory=`, `RuntimeDirectory=`,
//! `CacheDirectory=` or `ReadWritePaths=`. Otherwise a sink retries forever on EROFS.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The writable roots the unit's `[Service]` section grants.
fn writable_roots(unit: &str) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    let mut in_service = false;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !in_service || line.starts_with('#') {
            continue;
        }
        let base = match key.trim() {
            "StateDirectory" => "/var/lib",
            "LogsDirectory" => "/var/log",
            "RuntimeDirectory" => "/run",
            "CacheDirectory" => "/var/cache",
            "ReadWritePaths" => "",
            _ => continue,
        };
        for entry in value.split_whitespace() {
            // `-` (ignore if missing) and `+` prefixes of ReadWritePaths=; `:` sharing.
            let entry = entry.trim_start_matches(['-', '+']);
            let entry = entry.split(':').next().unwrap();
            roots.push(if base.is_empty() {
                PathBuf::from(entry)
            } else {
                Path::new(base).join(entry)
            });
        }
    }
    roots
}

/// Every path dirsync writes, as the example files name them: (file, key, path). Relative
/// paths resolve against where the files are installed (/etc/dirsync, /etc/dirsync/tenants).
fn written_paths() -> Vec<(PathBuf, String, PathBuf)> {
    let config = workspace().join("config");
    let mut files = vec![(config.join("dirsync.toml"), PathBuf::from("/etc/dirsync"))];
    for entry in std::fs::read_dir(config.join("tenants")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".toml") || name.ends_with(".toml.example") {
            files.push((path, PathBuf::from("/etc/dirsync/tenants")));
        }
    }
    let mut written = Vec::new();
    for (file, installed_in) in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let value: toml::Value =
            toml::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", file.display()));
        let mut push = |key: &str, path: &str| {
            written.push((file.clone(), key.to_owned(), installed_in.join(path)));
        };
        for key in ["state_dir", "control_socket"] {
            if let Some(path) = value.get(key).and_then(toml::Value::as_str) {
                push(key, path);
            }
        }
        for sink in value
            .get("sinks")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(path) = sink.get("path").and_then(toml::Value::as_str) {
                push("[[sinks]] path", path);
            }
        }
    }
    written
}

#[test]
fn every_path_the_example_config_writes_is_writable_under_the_units_sandbox() {
    let unit = std::fs::read_to_string(workspace().join("systemd/dirsync.service")).unwrap();
    assert!(
        unit.contains("ProtectSystem=strict"),
        "the premise of this test"
    );
    let roots = writable_roots(&unit);
    let written = written_paths();
    assert!(
        written.iter().any(|(_, key, _)| key == "[[sinks]] path"),
        "the example config has a JSON-lines sink: {written:?}"
    );
    assert!(written.iter().any(|(_, key, _)| key == "state_dir"));
    for (file, key, path) in &written {
        assert!(
            roots.iter().any(|root| path.starts_with(root)),
            "{} `{key}` = {} is not writable under systemd/dirsync.service's ProtectSystem=strict \
             (writable: {roots:?}): add a StateDirectory=/LogsDirectory=/RuntimeDirectory= or \
             ReadWritePaths= for it",
            file.display(),
            path.display()
        );
    }
}

#[test]
fn the_unit_parser_reads_the_directory_settings() {
    let roots = writable_roots(
        "[Unit]\nStateDirectory=nope\n[Service]\nStateDirectory=a b\nLogsDirectory=dirsync\n\
         # LogsDirectory=commented\nReadWritePaths=-/srv/out +/data:/x\nRuntimeDirectory=r\n",
    );
    let expected: Vec<PathBuf> = [
        "/var/lib/a",
        "/var/lib/b",
        "/var/log/dirsync",
        "/srv/out",
        "/data",
        "/run/r",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(roots, expected);
}
