//! Configuration: the global file and one TOML file per tenant, in two stages. `Raw*` structs
//! mirror the files exactly (unknown keys are errors); `load` turns them into validated,
//! resolved types with no "Option means default" left, collecting every problem in every file
//! so an operator sees them all at once. Secrets are read here and held in `Secret`.
//!
//! Must not: touch the network or the database.

mod lenient;
mod policy;
mod sink;
mod source;

pub use policy::{default_attributes, AttributeMapping, FiltersConfig, RolesConfig, UserScope};
pub use sink::{JsonlSinkConfig, RejectPolicy, SinkConfig, SinkKind, WebhookSinkConfig};
pub use source::{
    read_service_account_key, EmailFrom, GoogleSourceConfig, NestedGroups, ScimAuth,
    ScimPagination, ScimPushConfig, ScimSourceConfig, ServiceAccountKey, SourceConfig,
    SuspendedUsers, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_QUEUED_WRITES,
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

/// What validating found: problems (the file is refused) and warnings (it is used, but an
/// operator should act, e.g. a secret file others can read).
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub(crate) problems: Vec<Problem>,
    pub(crate) warnings: Vec<Problem>,
}

/// Collects problems while validating one file.
pub(crate) struct Problems<'a> {
    file: &'a Path,
    found: &'a mut Findings,
}

/// What a secret file must hold, beyond being non-empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretShape {
    /// A bearer token: visible ASCII without spaces (it goes into an `Authorization` header).
    Token,
    /// A whole HTTP header value: visible ASCII, spaces allowed inside.
    HeaderValue,
    /// Any text on one line (a password, a signing secret): no control characters.
    Text,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(file: &'a Path, found: &'a mut Findings) -> Self {
        Self { file, found }
    }

    /// Records a problem with `key`. One problem per key: a key already reported (say, as
    /// having the wrong type) is not reported again as missing.
    pub(crate) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let file = self.file;
        if self
            .found
            .problems
            .iter()
            .any(|p| p.file == file && p.key.as_deref() == Some(key.as_str()))
        {
            return;
        }
        self.found.problems.push(Problem {
            file: file.to_owned(),
            key: Some(key),
            message: message.into(),
        });
    }

    pub(crate) fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.found.warnings.push(Problem {
            file: self.file.to_owned(),
            key: Some(key.into()),
            message: message.into(),
        });
    }

    /// How many problems (in every file) have been recorded so far.
    pub(crate) fn count(&self) -> usize {
        self.found.problems.len()
    }

    /// Resolves `path` against the folder of the file being validated.
    pub(crate) fn resolve(&self, path: &Path) -> PathBuf {
        resolve_relative(self.file, path)
    }

    /// Reads a secret file (trimmed), or records why it cannot be read or does not hold what
    /// `shape` says; warns when users other than its owner may read it.
    pub(crate) fn read_secret(
        &mut self,
        key: &str,
        path: &Path,
        shape: SecretShape,
    ) -> Option<Secret> {
        let resolved = self.resolve(path);
        match std::fs::read_to_string(&resolved) {
            Ok(text) if text.trim().is_empty() => {
                self.add(
                    key,
                    format!("{} is empty; put the secret in it", resolved.display()),
                );
                None
            }
            Ok(text) => {
                self.warn_if_shared(key, &resolved);
                let secret = text.trim();
                match secret_shape_problem(secret, shape) {
                    Some(problem) => {
                        self.add(key, format!("{} {problem}", resolved.display()));
                        None
                    }
                    None => Some(Secret(secret.to_owned())),
                }
            }
            Err(err) => {
                self.add(key, format!("cannot read {}: {err}", resolved.display()));
                None
            }
        }
    }

    /// Warns when a secret file may be read by users other than its owner.
    pub(crate) fn warn_if_shared(&mut self, key: &str, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let Ok(metadata) = std::fs::metadata(path) else {
            return;
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            self.warn(
                key,
                format!(
                    "{} holds a secret but users other than its owner may read it (mode {mode:04o}): run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ),
            );
        }
    }
}

/// What is wrong with a (trimmed) secret for its use, if anything. Never quotes the secret.
fn secret_shape_problem(secret: &str, shape: SecretShape) -> Option<String> {
    let (position, c) = secret.char_indices().find(|(_, c)| match shape {
        SecretShape::Token => !c.is_ascii_graphic(),
        SecretShape::HeaderValue => !(c.is_ascii_graphic() || *c == ' ' || *c == '\t'),
        SecretShape::Text => c.is_control(),
    })?;
    let what = match shape {
        SecretShape::Token => "a token must be visible ASCII characters without spaces",
        SecretShape::HeaderValue => "an HTTP header value must be visible ASCII characters",
        SecretShape::Text => "a secret must be one line without control characters",
    };
    let found = if c.is_control() {
        format!("a control character (U+{:04X})", u32::from(c))
    } else if c == ' ' {
        "a space".to_owned()
    } else {
        format!("a non-ASCII character (U+{:04X})", u32::from(c))
    };
    Some(format!(
        "holds {found} at byte {position}: {what}; write only the secret (a trailing newline is fine)"
    ))
}

/// `text` as an http(s) URL with a host, without a trailing slash; or the problem, recorded.
pub(crate) fn http_url(text: &str, key: &str, p: &mut Problems<'_>) -> Option<String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Some(text.trim_end_matches('/').to_owned())
        }
        Ok(url) => {
            p.add(
                key,
                format!(
                    "{text:?} is a {}: URL; use an http:// or https:// URL with a host",
                    url.scheme()
                ),
            );
            None
        }
        Err(err) => {
            p.add(
                key,
                format!("{text:?} is not a URL ({err}); use an http:// or https:// URL"),
            );
            None
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
    /// The operators' sign-in token for the web console at `/console/` on `http_listen`.
    console_token_file: Option<PathBuf>,
    /// Delete events acknowledged by every sink once older than this many days.
    event_retention_days: Option<u64>,
    /// Runs of all tenants at once in one daemon; due runs beyond it wait, oldest first.
    max_concurrent_runs: Option<usize>,
    /// Runs kept in each tenant's history.
    run_history: Option<u32>,
    /// A PostgreSQL store shared by several nodes, instead of the SQLite file in `state_dir`.
    database_url: Option<String>,
    /// The database password, read from this file (instead of one in `database_url`).
    database_password_file: Option<PathBuf>,
    /// PostgreSQL connections one node opens at most.
    database_pool_size: Option<u32>,
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
    /// The web console's operator token (`console_token_file`); `None`: no console.
    pub console_token: Option<Secret>,
    /// Events older than this, once every sink of their tenant acknowledged them, are pruned
    /// from the outbox. `None` (the default) keeps every event forever.
    pub event_retention: Option<std::time::Duration>,
    /// Run slots of one daemon (default [`DEFAULT_MAX_CONCURRENT_RUNS`]; `daemon::slots`).
    pub max_concurrent_runs: usize,
    /// Runs kept per tenant in the run history (default [`DEFAULT_RUN_HISTORY`]).
    pub run_history: u32,
    /// The PostgreSQL store (`database_url`); `None`: SQLite in `state_dir`.
    pub database: Option<DatabaseConfig>,
}

/// A PostgreSQL store: `database_url`, `database_password_file`, `database_pool_size`.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub password: Option<Secret>,
    pub pool_size: u32,
}

/// PostgreSQL connections per node: a run, its lease renewal, the deliverers and the push
/// writers share them; beyond it callers wait for one to be free.
pub const DEFAULT_DATABASE_POOL_SIZE: u32 = 10;

/// Runs at once in one daemon: enough to keep a few slow IdPs from holding up everyone, few
/// enough that a burst of due runs does not starve the control socket on a small machine.
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 64;
/// The shortest `console_token_file` accepted.
pub const MIN_CONSOLE_TOKEN_LEN: usize = 16;
/// Runs kept per tenant: a few days of a 15-minute schedule.
pub const DEFAULT_RUN_HISTORY: u32 = 1000;

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
    guard: Option<toml::Value>,
    filters: Option<toml::Value>,
    roles: Option<toml::Value>,
    attributes: Option<toml::Value>,
    sinks: Option<Vec<toml::Value>>,
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
    /// Whether the daemon runs the tenant on `schedule`. A push tenant without a `schedule`
    /// key is not: its IdP's writes keep it current, and a run (force, or a reload that
    /// changed its policy) only re-applies policy to what was pushed.
    pub scheduled: bool,
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
/// problem is left out of `tenants` (the daemon keeps its previous version on reload); a global
/// file with a problem leaves `global` empty (its tenant files are still checked).
pub struct Loaded {
    pub global: Option<GlobalConfig>,
    pub tenants: BTreeMap<String, TenantConfig>,
    pub problems: Vec<Problem>,
    /// Not problems (nothing is refused) but worth an operator's attention: secret files that
    /// other users may read, an example key still in place.
    pub warnings: Vec<Problem>,
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
    let mut found = Findings::default();
    let global = load_global(path, &mut found);
    let mut tenants = BTreeMap::new();
    if let Some((global, _)) = &global {
        for file in tenant_files(global, &mut found.problems) {
            if let Some(tenant) = tenant(&file, &mut found) {
                tenants.insert(tenant.id.clone(), tenant);
            }
        }
    }
    Loaded {
        global: global.and_then(|(global, valid)| valid.then_some(global)),
        tenants,
        problems: found.problems,
        warnings: found.warnings,
    }
}

/// Loads and validates strictly: any problem anywhere is an error.
pub fn load_strict(path: &Path) -> Result<Config, ConfigError> {
    load(path).into_result()
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

/// The file as a TOML table; a syntax error is reported with its line.
fn parse_toml(file: &Path, text: &str, problems: &mut Vec<Problem>) -> Option<toml::Value> {
    match toml::from_str::<toml::Table>(text) {
        Ok(table) => Some(toml::Value::Table(table)),
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

/// The global file, as far as it could be read, and whether it had no problem. Even a file
/// with problems yields its `tenants_dir`, so the tenant files are checked too.
fn load_global(file: &Path, found: &mut Findings) -> Option<(GlobalConfig, bool)> {
    if let Err(err) = std::fs::metadata(file) {
        if err.kind() == std::io::ErrorKind::NotFound {
            found.problems.push(Problem {
                file: file.to_owned(),
                key: None,
                message: format!(
                    "no such config file; pass --config FILE or set DIRSYNC_CONFIG (without either, dirsync reads {DEFAULT_CONFIG_PATH}); config/dirsync.toml in the source tree is a documented example"
                ),
            });
            return None;
        }
    }
    let before = found.problems.len();
    let text = read_text(file, &mut found.problems)?;
    let value = parse_toml(file, &text, &mut found.problems)?;
    let mut p = Problems::new(file, found);
    let raw: RawGlobal = lenient::table(value, "", "the global file", &[], &mut p)?;
    let state_dir = p.resolve(
        raw.state_dir
            .as_deref()
            .unwrap_or(Path::new("/var/lib/dirsync")),
    );
    if state_dir.exists() && !state_dir.is_dir() {
        p.add(
            "state_dir",
            format!(
                "{} is not a directory: point state_dir at a directory dirsync may write (it is created when missing)",
                state_dir.display()
            ),
        );
    }
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
        .and_then(|path| p.read_secret("events_api_token_file", path, SecretShape::Token));
    let console_token = raw
        .console_token_file
        .as_deref()
        .and_then(|path| p.read_secret("console_token_file", path, SecretShape::Token))
        .filter(|token| {
            // It is a password typed into a login form, and the key of the signed links.
            let long_enough = token.expose().len() >= MIN_CONSOLE_TOKEN_LEN;
            if !long_enough {
                p.add(
                    "console_token_file",
                    format!("the token is shorter than {MIN_CONSOLE_TOKEN_LEN} characters: write a long random one (e.g. `openssl rand -hex 32`)"),
                );
            }
            long_enough
        });
    if raw.console_token_file.is_some() && raw.http_listen.is_none() {
        p.add(
            "console_token_file",
            "the web console is served on http_listen: set http_listen (e.g. \"127.0.0.1:9187\") or remove console_token_file",
        );
    }
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
    if raw.max_concurrent_runs == Some(0) {
        p.add("max_concurrent_runs", "must be at least 1");
    }
    if raw.run_history == Some(0) {
        p.add(
            "run_history",
            "must be at least 1: the last run is what `status` shows",
        );
    }
    let database = database_config(&raw, &mut p);
    let global = GlobalConfig {
        database,
        file: file.to_owned(),
        state_dir,
        tenants_dir,
        control_socket,
        http_listen,
        log_format: raw.log_format.unwrap_or_default(),
        events_api_token,
        console_token,
        event_retention,
        max_concurrent_runs: raw
            .max_concurrent_runs
            .unwrap_or(DEFAULT_MAX_CONCURRENT_RUNS)
            .clamp(1, 100_000),
        run_history: raw.run_history.unwrap_or(DEFAULT_RUN_HISTORY).max(1),
    };
    let valid = found.problems.len() == before;
    Some((global, valid))
}

fn database_config(raw: &RawGlobal, p: &mut Problems<'_>) -> Option<DatabaseConfig> {
    if raw.database_url.is_none() {
        for key in ["database_password_file", "database_pool_size"] {
            let set = match key {
                "database_password_file" => raw.database_password_file.is_some(),
                _ => raw.database_pool_size.is_some(),
            };
            if set {
                p.add(key, "only applies with database_url (a PostgreSQL store); set database_url or remove it");
            }
        }
        return None;
    }
    let url = raw.database_url.as_deref()?.trim();
    let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let parsed = url.parse::<tokio_postgres::Config>();
    if !scheme_ok || parsed.is_err() {
        let why = parsed
            .err()
            .map(|err| format!(" ({err})"))
            .unwrap_or_default();
        p.add(
            "database_url",
            format!("not a PostgreSQL URL{why}: write it as \"postgres://USER@HOST:5432/DATABASE\" (add ?sslmode=require for TLS)"),
        );
        return None;
    }
    if raw.database_pool_size == Some(0) {
        p.add("database_pool_size", "must be at least 1");
    }
    let password = raw
        .database_password_file
        .as_deref()
        .and_then(|path| p.read_secret("database_password_file", path, SecretShape::Text));
    Some(DatabaseConfig {
        url: url.to_owned(),
        password,
        pool_size: raw
            .database_pool_size
            .unwrap_or(DEFAULT_DATABASE_POOL_SIZE)
            .clamp(1, 1000),
    })
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

/// Loads and validates one tenant file (its warnings are dropped: `load` reports them).
pub fn load_tenant(file: &Path, problems: &mut Vec<Problem>) -> Option<TenantConfig> {
    let mut found = Findings::default();
    let tenant = tenant(file, &mut found);
    problems.append(&mut found.problems);
    tenant
}

fn tenant(file: &Path, found: &mut Findings) -> Option<TenantConfig> {
    let before = found.problems.len();
    let id = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    if !valid_tenant_id(&id) {
        found.problems.push(Problem {
            file: file.to_owned(),
            key: None,
            message: format!(
                "tenant id {id:?} (the file name) must match [a-z0-9_-]+; rename the file"
            ),
        });
    }
    let text = read_text(file, &mut found.problems)?;
    let value = parse_toml(file, &text, &mut found.problems)?;
    let mut p = Problems::new(file, found);
    let raw: RawTenant = lenient::table(value, "", "a tenant file", &[], &mut p)?;

    let schedule_given = raw.schedule.is_some();
    let schedule_text = raw.schedule.unwrap_or_else(|| "0 */15 * * * *".to_owned());
    let schedule = validate_schedule(&schedule_text, &mut p);
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
    let raw_guard: RawGuard = match raw.guard {
        Some(value) => lenient::table(value, "guard", "[guard]", &[], &mut p).unwrap_or_default(),
        None => RawGuard::default(),
    };
    let guard = GuardConfig {
        max_delete_percent: raw_guard.max_delete_percent.unwrap_or(20.0),
        min_deletes: raw_guard.min_deletes.unwrap_or(10),
    };
    if !(0.0..=100.0).contains(&guard.max_delete_percent) {
        p.add("guard.max_delete_percent", "must be between 0 and 100");
    }
    let source_kind = source.as_ref().map(SourceConfig::kind);
    let filters = policy::validate_filters(raw.filters, source_kind, &mut p);
    let roles = policy::validate_roles(raw.roles, &mut p);
    if let (Some(filters), Some(roles)) = (&filters, &roles) {
        policy::check_roles_against_filters(filters, roles, &mut p);
    }
    let attributes = policy::validate_attributes(raw.attributes, source_kind, &mut p);
    let sinks = sink::validate(raw.sinks.unwrap_or_default(), &mut p);

    if found.problems.len() != before {
        return None;
    }
    Some(TenantConfig {
        id,
        file: file.to_owned(),
        scheduled: schedule_given || !source.as_ref().is_some_and(SourceConfig::is_push),
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

/// A cron expression with seconds that fires at least once more.
fn validate_schedule(text: &str, p: &mut Problems<'_>) -> Option<cron::Schedule> {
    match cron::Schedule::from_str(text) {
        Ok(schedule) if schedule.upcoming(chrono::Utc).next().is_none() => {
            p.add(
                "schedule",
                format!("{text:?} never fires again (every time it names is in the past or does not exist): fix the date fields"),
            );
            None
        }
        Ok(schedule) => Some(schedule),
        Err(err) => {
            // The cron crate's bound is inclusive though it words it "less than".
            let err = err
                .to_string()
                .replace(" must be less than ", " must be at most ");
            p.add(
                "schedule",
                format!("{text:?} is not a cron expression with seconds (e.g. \"0 */15 * * * *\"): {err}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests;
