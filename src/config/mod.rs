//! Configuration: the global file and one TOML file per tenant, in two stages. `Raw*` structs
//! mirror the files exactly (unknown keys are errors); `load` turns them into validated,
//! resolved types with no "Option means default" left, collecting every problem in every file
//! so an operator sees them all at once. Secrets are read here and held in `Secret`.
//!
//! Must not: touch the network or the database.

mod policy;
mod sink;
mod source;

pub use policy::{default_attributes, AttributeMapping, FiltersConfig, RolesConfig, UserScope};
pub use sink::{JsonlSinkConfig, RejectPolicy, SinkConfig, SinkKind, WebhookSinkConfig};
pub use source::{
    read_service_account_key, GoogleSourceConfig, NestedGroups, ScimAuth, ScimPagination,
    ScimSourceConfig, SourceConfig, SuspendedUsers,
};

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/dirsync/dirsync.toml";

/// One problem in one file: what is wrong with which key, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}: `{}`: {}", self.file.display(), key, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(|p| p.to_string()).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// Collects problems while validating one file.
pub(crate) struct Problems<'a> {
    file: &'a Path,
    found: &'a mut Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(file: &'a Path, found: &'a mut Vec<Problem>) -> Self {
        Self { file, found }
    }

    pub(crate) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.found.push(Problem {
            file: self.file.to_owned(),
            key: Some(key.into()),
            message: message.into(),
        });
    }

    /// Resolves `path` against the folder of the file being validated.
    pub(crate) fn resolve(&self, path: &Path) -> PathBuf {
        resolve_relative(self.file, path)
    }

    /// Reads a secret file (trimmed), or records why it cannot be read.
    pub(crate) fn read_secret(&mut self, key: &str, path: &Path) -> Option<Secret> {
        let resolved = self.resolve(path);
        match std::fs::read_to_string(&resolved) {
            Ok(text) if text.trim().is_empty() => {
                self.add(
                    key,
                    format!("{} is empty; put the secret in it", resolved.display()),
                );
                None
            }
            Ok(text) => Some(Secret(text.trim().to_owned())),
            Err(err) => {
                self.add(key, format!("cannot read {}: {err}", resolved.display()));
                None
            }
        }
    }
}

pub(crate) fn resolve_relative(file: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(path)
    }
}

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    state_dir: Option<PathBuf>,
    tenants_dir: Option<PathBuf>,
    control_socket: Option<PathBuf>,
    http_listen: Option<String>,
    log_format: Option<LogFormat>,
    /// Bearer token for the events API, read from this file.
    events_api_token_file: Option<PathBuf>,
    /// Delete events acknowledged by every sink once older than this many days.
    event_retention_days: Option<u64>,
}

/// The validated global file.
#[derive(Debug, Clone)]
pub struct GlobalConfig {
    pub file: PathBuf,
    pub state_dir: PathBuf,
    pub tenants_dir: PathBuf,
    pub control_socket: PathBuf,
    pub http_listen: Option<SocketAddr>,
    pub log_format: LogFormat,
    pub events_api_token: Option<Secret>,
    /// Events older than this, once every sink of their tenant acknowledged them, are pruned
    /// from the outbox. `None` (the default) keeps every event forever.
    pub event_retention: Option<std::time::Duration>,
}

impl GlobalConfig {
    pub fn database_path(&self) -> PathBuf {
        self.state_dir.join("dirsync.db")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    schedule: Option<String>,
    enabled: Option<bool>,
    source: Option<toml::Value>,
    #[serde(default)]
    guard: RawGuard,
    filters: Option<toml::Value>,
    roles: Option<toml::Value>,
    attributes: Option<toml::Value>,
    #[serde(default)]
    sinks: Vec<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    max_delete_percent: Option<f64>,
    min_deletes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    pub max_delete_percent: f64,
    pub min_deletes: u64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_delete_percent: 20.0,
            min_deletes: 10,
        }
    }
}

/// A tenant id: `[a-z0-9_-]+`, the stem of its file.
pub fn valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// One validated tenant file.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub id: String,
    pub file: PathBuf,
    pub schedule: cron::Schedule,
    pub schedule_text: String,
    pub enabled: bool,
    pub source: SourceConfig,
    pub guard: GuardConfig,
    pub filters: FiltersConfig,
    pub roles: RolesConfig,
    pub attributes: AttributeMapping,
    pub sinks: Vec<SinkConfig>,
}

/// Everything: the global file and every tenant file that validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub global: GlobalConfig,
    pub tenants: BTreeMap<String, TenantConfig>,
}

impl Config {
    pub fn tenant(&self, id: &str) -> Option<&TenantConfig> {
        self.tenants.get(id)
    }
}

/// The config file to use: `--config`, else `$DIRSYNC_CONFIG`, else the default path.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    if let Some(path) = flag {
        return path.to_owned();
    }
    match std::env::var_os("DIRSYNC_CONFIG") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

/// Outcome of loading: the config that is valid, and every problem found. A tenant file with a
/// problem is left out of `tenants` (the daemon keeps its previous version on reload).
pub struct Loaded {
    pub global: Option<GlobalConfig>,
    pub tenants: BTreeMap<String, TenantConfig>,
    pub problems: Vec<Problem>,
}

impl Loaded {
    /// All or nothing: the config if there was no problem at all.
    pub fn into_result(self) -> Result<Config, ConfigError> {
        match (self.global, self.problems.is_empty()) {
            (Some(global), true) => Ok(Config {
                global,
                tenants: self.tenants,
            }),
            (_, _) => Err(ConfigError {
                problems: self.problems,
            }),
        }
    }
}

/// Loads and validates the global file and every tenant file, reporting every problem.
pub fn load(path: &Path) -> Loaded {
    let mut problems = Vec::new();
    let global = load_global(path, &mut problems);
    let mut tenants = BTreeMap::new();
    if let Some(global) = &global {
        for file in tenant_files(global, &mut problems) {
            if let Some(tenant) = load_tenant(&file, &mut problems) {
                tenants.insert(tenant.id.clone(), tenant);
            }
        }
    }
    Loaded {
        global,
        tenants,
        problems,
    }
}

/// Loads and validates strictly: any problem anywhere is an error.
pub fn load_strict(path: &Path) -> Result<Config, ConfigError> {
    load(path).into_result()
}

/// The top-level keys of the global file and of a tenant file: anything else is reported, one
/// problem per key, and the rest of the file is still checked (so one stray key does not hide
/// the other problems, nor, in the global file, every tenant file's).
const GLOBAL_KEYS: &[&str] = &[
    "state_dir",
    "tenants_dir",
    "control_socket",
    "http_listen",
    "log_format",
    "events_api_token_file",
    "event_retention_days",
];
const TENANT_KEYS: &[&str] = &[
    "schedule",
    "enabled",
    "source",
    "guard",
    "filters",
    "roles",
    "attributes",
    "sinks",
];

/// Reads a TOML file whose top-level keys must be among `known`. Each unknown key is its own
/// problem, and the file is then checked without them; the second value is how many there were.
fn read_toml_known<T: serde::de::DeserializeOwned>(
    file: &Path,
    known: &[&str],
    problems: &mut Vec<Problem>,
) -> Option<(T, usize)> {
    let text = read_text(file, problems)?;
    let mut table: toml::Table = parse_toml(file, &text, problems)?;
    let unknown: Vec<String> = table
        .keys()
        .filter(|key| !known.contains(&key.as_str()))
        .cloned()
        .collect();
    if unknown.is_empty() {
        // The whole text again, for errors that carry their line.
        return parse_toml(file, &text, problems).map(|raw| (raw, 0));
    }
    for key in &unknown {
        table.remove(key);
        problems.push(Problem {
            file: file.to_owned(),
            key: Some(key.clone()),
            message: format!(
                "unknown key; remove it or fix its spelling (the keys of this file: {})",
                known.join(", ")
            ),
        });
    }
    match T::deserialize(toml::Value::Table(table)) {
        Ok(raw) => Some((raw, unknown.len())),
        Err(err) => {
            problems.push(Problem {
                file: file.to_owned(),
                key: None,
                message: format!("invalid TOML: {}", err.message()),
            });
            None
        }
    }
}

fn read_text(file: &Path, problems: &mut Vec<Problem>) -> Option<String> {
    match std::fs::read_to_string(file) {
        Ok(text) => Some(text),
        Err(err) => {
            problems.push(Problem {
                file: file.to_owned(),
                key: None,
                message: format!("cannot read the file: {err}"),
            });
            None
        }
    }
}

fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &Path,
    text: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match toml::from_str::<T>(text) {
        Ok(raw) => Some(raw),
        Err(err) => {
            let message = err.message().to_owned();
            let location = err
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            problems.push(Problem {
                file: file.to_owned(),
                key: None,
                message: format!("invalid TOML{location}: {message}"),
            });
            None
        }
    }
}

fn load_global(file: &Path, problems: &mut Vec<Problem>) -> Option<GlobalConfig> {
    if let Err(err) = std::fs::metadata(file) {
        if err.kind() == std::io::ErrorKind::NotFound {
            problems.push(Problem {
                file: file.to_owned(),
                key: None,
                message: format!(
                    "no such config file; pass --config FILE or set DIRSYNC_CONFIG (without either, dirsync reads {DEFAULT_CONFIG_PATH}); config/dirsync.toml in the source tree is a documented example"
                ),
            });
            return None;
        }
    }
    // Unknown keys are reported but do not stop the tenant files from being checked.
    let (raw, _unknown): (RawGlobal, usize) = read_toml_known(file, GLOBAL_KEYS, problems)?;
    let before = problems.len();
    let mut p = Problems::new(file, problems);
    let state_dir = p.resolve(
        raw.state_dir
            .as_deref()
            .unwrap_or(Path::new("/var/lib/dirsync")),
    );
    let tenants_dir = p.resolve(raw.tenants_dir.as_deref().unwrap_or(Path::new("tenants")));
    let control_socket = p.resolve(
        raw.control_socket
            .as_deref()
            .unwrap_or(Path::new("/run/dirsync/control.sock")),
    );
    let http_listen =
        raw.http_listen
            .as_deref()
            .and_then(|text| match SocketAddr::from_str(text) {
                Ok(addr) => Some(addr),
                Err(_) => {
                    p.add(
                        "http_listen",
                        format!("{text:?} is not an address:port such as \"127.0.0.1:9187\""),
                    );
                    None
                }
            });
    let events_api_token = raw
        .events_api_token_file
        .as_deref()
        .and_then(|path| p.read_secret("events_api_token_file", path));
    if raw.event_retention_days == Some(0) {
        p.add(
            "event_retention_days",
            "must be at least 1 (leave it out to keep every event forever)",
        );
    }
    let event_retention = raw
        .event_retention_days
        .filter(|days| *days > 0)
        .map(|days| std::time::Duration::from_secs(days.saturating_mul(86_400)));
    let global = GlobalConfig {
        file: file.to_owned(),
        state_dir,
        tenants_dir,
        control_socket,
        http_listen,
        log_format: raw.log_format.unwrap_or_default(),
        events_api_token,
        event_retention,
    };
    (problems.len() == before).then_some(global)
}

fn tenant_files(global: &GlobalConfig, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(&global.tenants_dir) {
        Ok(entries) => entries,
        Err(err) => {
            problems.push(Problem {
                file: global.file.clone(),
                key: Some("tenants_dir".into()),
                message: format!("cannot read {}: {err}", global.tenants_dir.display()),
            });
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

/// Loads and validates one tenant file.
pub fn load_tenant(file: &Path, problems: &mut Vec<Problem>) -> Option<TenantConfig> {
    let before = problems.len();
    let id = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    if !valid_tenant_id(&id) {
        problems.push(Problem {
            file: file.to_owned(),
            key: None,
            message: format!(
                "tenant id {id:?} (the file name) must match [a-z0-9_-]+; rename the file"
            ),
        });
    }
    let (raw, _unknown): (RawTenant, usize) = read_toml_known(file, TENANT_KEYS, problems)?;
    let mut p = Problems::new(file, problems);

    let schedule_text = raw.schedule.unwrap_or_else(|| "0 */15 * * * *".to_owned());
    let schedule = match cron::Schedule::from_str(&schedule_text) {
        Ok(schedule) => Some(schedule),
        Err(err) => {
            p.add("schedule", format!("{schedule_text:?} is not a cron expression with seconds (e.g. \"0 */15 * * * *\"): {err}"));
            None
        }
    };
    let source = match raw.source {
        Some(value) => source::validate(value, &mut p),
        None => {
            p.add(
                "source",
                "missing: add a [source] table with type = \"google\" or \"scim\"",
            );
            None
        }
    };
    let guard = GuardConfig {
        max_delete_percent: raw.guard.max_delete_percent.unwrap_or(20.0),
        min_deletes: raw.guard.min_deletes.unwrap_or(10),
    };
    if !(0.0..=100.0).contains(&guard.max_delete_percent) {
        p.add("guard.max_delete_percent", "must be between 0 and 100");
    }
    let filters = policy::validate_filters(raw.filters, &mut p);
    let roles = policy::validate_roles(raw.roles, &mut p);
    if let (Some(filters), Some(roles)) = (&filters, &roles) {
        policy::check_roles_against_filters(filters, roles, &mut p);
    }
    let source_kind = source.as_ref().map(SourceConfig::kind);
    let attributes = policy::validate_attributes(raw.attributes, source_kind, &mut p);
    let sinks = sink::validate(raw.sinks, &mut p);

    if problems.len() != before {
        return None;
    }
    Some(TenantConfig {
        id,
        file: file.to_owned(),
        schedule: schedule?,
        schedule_text,
        enabled: raw.enabled.unwrap_or(true),
        source: source?,
        guard,
        filters: filters?,
        roles: roles?,
        attributes: attributes?,
        sinks: sinks?,
    })
}

/// Deserializes a section given as a `toml::Value`, recording a problem on failure.
pub(crate) fn section<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    key: &str,
    p: &mut Problems<'_>,
) -> Option<T> {
    match T::deserialize(value) {
        Ok(parsed) => Some(parsed),
        Err(err) => {
            p.add(key, err.message().to_owned());
            None
        }
    }
}

#[cfg(test)]
mod tests;
