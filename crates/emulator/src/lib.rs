//! A local emulator of Google's Admin SDK Directory API and OAuth token endpoint, for tests,
//! benchmarks and `dirsync demo`. It owns a generated (or fixture-loaded) organisation in
//! memory, serves the Directory read and write methods dirsync and Google's own clients use,
//! the JWT bearer token flow of a service account with domain-wide delegation, fault
//! injection and request counters. It must not depend on the rest of dirsync: it plays the
//! part of Google, and nothing in it knows how dirsync syncs.
//!
//! # Library API
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use dirsync_emulator::{Emulator, FaultRule, FaultKind};
//! use serde_json::json;
//!
//! let emulator = Emulator::builder().users(500).groups(40).seed(7).build()?;
//! let handle = emulator.start("127.0.0.1:0".parse()?).await?;
//! // handle.base_url = "http://127.0.0.1:PORT" (the API root: paths /admin/directory/v1/...)
//! // handle.token_uri = "http://127.0.0.1:PORT/token"
//! handle.write_key(std::path::Path::new("/tmp/key.json"))?; // subject: handle.admin_email()
//!
//! // Change the organisation like an admin would:
//! let dir = handle.directory();
//! dir.insert_user(&json!({"primaryEmail": "new@example.com",
//!                         "name": {"givenName": "New", "familyName": "Hire"}}))?;
//! dir.update_user("new@example.com", &json!({"suspended": true}))?;
//! dir.add_member("all-staff@example.com", &json!({"email": "new@example.com"}))?;
//!
//! // Make the 2nd page of any members.list fail once with a 503:
//! handle.faults().add(FaultRule { method: Some("members.list".into()), page: Some(2),
//!     fault: FaultKind::Error, status: Some(503), ..FaultRule::default() })?;
//! assert_eq!(handle.counters().snapshot().method("users.list"), 0);
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Defaults: domain `example.com`, customer id derived from the seed (`C0` + 7 characters,
//! alias `my_customer`), the admin `admin@example.com` (the subject to impersonate), tokens
//! that live one hour, every Directory scope allow-listed for delegation, no latency, no
//! quota. See `docs/emulator.md` for the HTTP admin endpoints and the fault rule format.

pub mod cli;

mod api;
mod auth;
mod counters;
mod directory;
mod error;
mod faults;
mod fields;
mod fixture;
mod generate;
mod paging;
mod query;
mod server;
mod views;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use auth::{OAuthError, ServiceAccount, ALL_SCOPES, SCOPE_PREFIX};
pub use counters::{CounterSnapshot, MethodCounts};
pub use directory::{Directory, DirectoryStats};
pub use error::{ApiError, EmulatorError};
pub use faults::{FaultKind, FaultRule, Settings};
pub use fixture::Fixture;
pub use generate::default_members;

use server::Shared;
use views::{GroupView, MemberView, Projection, UserView};

/// Configures an [`Emulator`]. Start with [`Emulator::builder`].
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    users: usize,
    groups: usize,
    members: Option<usize>,
    seed: u64,
    domain: String,
    customer_id: Option<String>,
    admins: Vec<String>,
    fixture: Option<PathBuf>,
    fixture_value: Option<Fixture>,
    key_file: Option<PathBuf>,
    settings: Settings,
    token_ttl: Duration,
    dwd_scopes: Option<Vec<String>>,
    faults: Vec<FaultRule>,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        Self {
            users: 100,
            groups: 10,
            members: None,
            seed: 1,
            domain: "example.com".into(),
            customer_id: None,
            admins: Vec::new(),
            fixture: None,
            fixture_value: None,
            key_file: None,
            settings: Settings::default(),
            token_ttl: Duration::from_secs(3600),
            dwd_scopes: None,
            faults: Vec::new(),
        }
    }
}

impl EmulatorBuilder {
    /// Users of the generated organisation (the admin included). Default 100.
    pub fn users(mut self, users: usize) -> Self {
        self.users = users;
        self
    }
    /// Groups of the generated organisation. Default 10.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
    /// Direct user memberships in total; default [`default_members`] (~100 per group).
    pub fn members(mut self, members: usize) -> Self {
        self.members = Some(members);
        self
    }
    /// Generator seed: same seed and sizes, same organisation. Default 1.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Primary domain. Default `example.com`.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = domain.into();
        self
    }
    /// Customer id (`C…`). Default derived from the seed.
    pub fn customer_id(mut self, customer_id: impl Into<String>) -> Self {
        self.customer_id = Some(customer_id.into());
        self
    }
    /// A subject that may be impersonated: made an admin (created if missing). Default
    /// `admin@<domain>`, which the generator always creates.
    pub fn admin(mut self, email: impl Into<String>) -> Self {
        self.admins.push(email.into());
        self
    }
    /// Load the organisation from a fixture file instead of generating one.
    pub fn fixture_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.fixture = Some(path.into());
        self
    }
    /// Load the organisation from a fixture value instead of generating one.
    pub fn fixture(mut self, fixture: Fixture) -> Self {
        self.fixture_value = Some(fixture);
        self
    }
    /// Reuse the service-account key of a key file (written by an earlier `--key-out`).
    pub fn key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key_file = Some(path.into());
        self
    }
    /// Latency added to every API and token request.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.settings.latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self
    }
    /// Requests per minute per (service account, subject); beyond: 403 userRateLimitExceeded.
    pub fn quota_per_minute(mut self, quota: u32) -> Self {
        self.settings.quota_per_minute = Some(quota);
        self
    }
    /// API requests in flight at once; beyond: 429 rateLimitExceeded.
    pub fn max_concurrent(mut self, max: u32) -> Self {
        self.settings.max_concurrent = Some(max);
        self
    }
    /// Lifetime of issued bearer tokens. Default one hour.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }
    /// The domain-wide delegation allow-list (scopes with or without the
    /// `https://www.googleapis.com/auth/` prefix). Default: [`ALL_SCOPES`].
    pub fn dwd_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.dwd_scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }
    /// A fault rule active from the start.
    pub fn fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }

    /// Builds the organisation and the key (no I/O besides reading the fixture or key file).
    pub fn build(self) -> Result<Emulator, EmulatorError> {
        let customer_id = self
            .customer_id
            .clone()
            .unwrap_or_else(|| Directory::customer_id_for_seed(self.seed));
        if !customer_id.starts_with('C') || customer_id.len() < 3 {
            return Err(EmulatorError::Config(format!(
                "customer id {customer_id:?} must look like C0abc1234 (\"C\" and letters or digits)"
            )));
        }
        if self.domain.is_empty() || !self.domain.contains('.') || self.domain.contains('@') {
            return Err(EmulatorError::Config(format!(
                "domain {:?} is not a domain name (e.g. example.com)",
                self.domain
            )));
        }
        for rule in &self.faults {
            rule.validate().map_err(EmulatorError::Faults)?;
        }
        let fixture = match (&self.fixture, &self.fixture_value) {
            (Some(path), _) => Some((Fixture::from_file(path)?, Some(path.clone()))),
            (None, Some(fixture)) => Some((fixture.clone(), None)),
            (None, None) => None,
        };
        let mut directory = match fixture {
            Some((fixture, path)) => {
                fixture
                    .build(self.seed)
                    .map_err(|problem| EmulatorError::Fixture {
                        path: path.unwrap_or_else(|| PathBuf::from("<fixture>")),
                        problem,
                    })?
            }
            None => generate::generate(&generate::GenerateSpec {
                users: self.users.max(1),
                groups: self.groups,
                members: self.members,
                seed: self.seed,
                domain: self.domain.clone(),
                customer_id: customer_id.clone(),
            }),
        };
        generate::ensure_admins(&mut directory, &self.admins).map_err(EmulatorError::Config)?;
        let account = match &self.key_file {
            Some(path) => ServiceAccount::from_key_file(path)?,
            None => ServiceAccount::generate()?,
        };
        let admin = self
            .admins
            .first()
            .cloned()
            .unwrap_or_else(|| format!("admin@{}", directory.domain));
        let dwd_scopes: BTreeSet<String> = match &self.dwd_scopes {
            Some(scopes) => scopes
                .iter()
                .map(|s| s.strip_prefix(SCOPE_PREFIX).unwrap_or(s).to_owned())
                .collect(),
            None => ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        };
        Ok(Emulator {
            directory,
            account,
            admin,
            settings: self.settings,
            token_ttl: self.token_ttl,
            dwd_scopes,
            faults: self.faults,
        })
    }

    /// [`EmulatorBuilder::build`] then [`Emulator::start`].
    pub async fn start(self, addr: SocketAddr) -> Result<EmulatorHandle, EmulatorError> {
        self.build()?.start(addr).await
    }
}

/// A built, not yet serving, emulator.
#[derive(Debug)]
pub struct Emulator {
    directory: Directory,
    account: ServiceAccount,
    admin: String,
    settings: Settings,
    token_ttl: Duration,
    dwd_scopes: BTreeSet<String>,
    faults: Vec<FaultRule>,
}

impl Emulator {
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    pub fn stats(&self) -> DirectoryStats {
        self.directory.stats()
    }

    /// Binds `addr` (port 0 picks a free port) and serves on the current tokio runtime until
    /// [`EmulatorHandle::shutdown`].
    pub async fn start(self, addr: SocketAddr) -> Result<EmulatorHandle, EmulatorError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let base_url = format!("http://{local}");
        let token_uri = format!("{base_url}/token");
        let faults = faults::Faults::new(self.settings);
        for rule in self.faults {
            faults.add(rule).map_err(EmulatorError::Faults)?;
        }
        let secret: [u8; 32] = rand::random();
        let shared = Arc::new(Shared {
            directory: RwLock::new(self.directory),
            account: self.account,
            tokens: auth::Tokens::new(self.token_ttl),
            faults,
            counters: counters::Counters::default(),
            page_tokens: paging::PageTokens::new(secret),
            dwd_scopes: RwLock::new(self.dwd_scopes),
            token_uri: token_uri.clone(),
            base_url: base_url.clone(),
        });
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        Ok(EmulatorHandle {
            base_url,
            token_uri,
            addr: local,
            admin: self.admin,
            shared,
            cancel,
            task,
        })
    }
}

/// A running emulator.
#[derive(Debug)]
pub struct EmulatorHandle {
    /// The API root, e.g. `http://127.0.0.1:PORT` (methods live under `/admin/directory/v1/`).
    pub base_url: String,
    /// The token endpoint, e.g. `http://127.0.0.1:PORT/token` (the key file's `token_uri`).
    pub token_uri: String,
    pub addr: SocketAddr,
    admin: String,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl EmulatorHandle {
    /// The service-account key JSON (a real key's fields, `token_uri` = [`Self::token_uri`]).
    pub fn service_account_key_json(&self) -> String {
        serde_json::to_string_pretty(&self.shared.key_json()).unwrap_or_default()
    }

    /// Writes [`Self::service_account_key_json`] to `path` (mode 0600 on Unix).
    pub fn write_key(&self, path: &Path) -> Result<(), EmulatorError> {
        let write = || -> std::io::Result<()> {
            std::fs::write(path, self.service_account_key_json())?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(())
        };
        write().map_err(|source| EmulatorError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// The subject to impersonate (the first `--admin`, else `admin@<domain>`).
    pub fn admin_email(&self) -> &str {
        &self.admin
    }

    pub fn customer_id(&self) -> String {
        self.shared.read().customer_id.clone()
    }

    pub fn domain(&self) -> String {
        self.shared.read().domain.clone()
    }

    /// The service account's `client_email` and numeric `client_id`.
    pub fn service_account(&self) -> (&str, &str) {
        (
            &self.shared.account.client_email,
            &self.shared.account.client_id,
        )
    }

    /// Signs a JWT with the service account's key (for tests of the token endpoint).
    pub fn sign_jwt(&self, header: &Value, claims: &Value) -> Result<String, EmulatorError> {
        self.shared.account.sign_jwt(header, claims)
    }

    pub fn faults(&self) -> FaultsHandle {
        FaultsHandle(self.shared.clone())
    }

    pub fn counters(&self) -> CountersHandle {
        CountersHandle(self.shared.clone())
    }

    pub fn directory(&self) -> DirectoryHandle {
        DirectoryHandle(self.shared.clone())
    }

    /// Issues a bearer token without the JWT dance (`scopes` with or without prefix).
    pub fn issue_token(&self, subject: Option<&str>, scopes: &[&str]) -> String {
        let scopes = scopes
            .iter()
            .map(|s| s.strip_prefix(SCOPE_PREFIX).unwrap_or(s).to_owned())
            .collect();
        self.shared
            .tokens
            .issue(
                subject.map(str::to_owned),
                scopes,
                &self.shared.account.client_id,
            )
            .0
    }

    /// Makes every issued token expire now: the next API call with one gets 401.
    pub fn expire_tokens(&self) {
        self.shared.tokens.expire_all();
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.tokens.set_ttl(ttl);
    }

    /// Replaces the domain-wide delegation allow-list.
    pub fn set_dwd_scopes(&self, scopes: &[&str]) {
        let mut allowed = self
            .shared
            .dwd_scopes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *allowed = scopes
            .iter()
            .map(|s| s.strip_prefix(SCOPE_PREFIX).unwrap_or(s).to_owned())
            .collect();
    }

    /// Stops serving (in-flight requests finish) and waits for the server to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn serve_until(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), EmulatorError> {
        let cancel = self.cancel.clone();
        let mut task = self.task;
        tokio::select! {
            () = signal => {
                cancel.cancel();
                match task.await {
                    Ok(result) => result.map_err(EmulatorError::Serve),
                    Err(_) => Ok(()),
                }
            }
            result = &mut task => match result {
                Ok(result) => result.map_err(EmulatorError::Serve),
                Err(_) => Ok(()),
            },
        }
    }
}

/// Fault rules and load knobs of a running emulator.
#[derive(Debug, Clone)]
pub struct FaultsHandle(Arc<Shared>);

impl FaultsHandle {
    /// Adds a rule (replacing one of the same name); returns its name.
    pub fn add(&self, rule: FaultRule) -> Result<String, EmulatorError> {
        self.0.faults.add(rule).map_err(EmulatorError::Faults)
    }
    /// Removes the rule named `name`; false if there is none.
    pub fn remove(&self, name: &str) -> bool {
        self.0.faults.remove(name)
    }
    /// Removes every rule and forgets quota use.
    pub fn clear(&self) {
        self.0.faults.clear();
    }
    /// Active rules with how often each has fired.
    pub fn list(&self) -> Vec<(FaultRule, u32)> {
        self.0.faults.list()
    }
    pub fn settings(&self) -> Settings {
        self.0.faults.settings()
    }
    pub fn set_latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.0.faults.update_settings(|s| s.latency_ms = ms);
    }
    pub fn set_quota_per_minute(&self, quota: Option<u32>) {
        self.0
            .faults
            .update_settings(|s| s.quota_per_minute = quota);
        self.0.faults.reset_quota();
    }
    pub fn set_max_concurrent(&self, max: Option<u32>) {
        self.0.faults.update_settings(|s| s.max_concurrent = max);
    }
}

/// Request counters of a running emulator.
#[derive(Debug, Clone)]
pub struct CountersHandle(Arc<Shared>);

impl CountersHandle {
    pub fn snapshot(&self) -> CounterSnapshot {
        self.0.counters.snapshot()
    }
    /// Requests to `method` (`users.list`, `members.list`, `oauth.token`, ...).
    pub fn get(&self, method: &str) -> u64 {
        self.snapshot().method(method)
    }
    pub fn reset(&self) {
        self.0.counters.reset();
    }
}

/// Admin access to the organisation of a running emulator: the same rules and effects as the
/// Directory write methods over HTTP. Objects come back as the API shows them (full
/// projection).
#[derive(Debug, Clone)]
pub struct DirectoryHandle(Arc<Shared>);

impl DirectoryHandle {
    /// Runs `f` with read access (consistent view; keep it short: requests wait on writers).
    pub fn read<T>(&self, f: impl FnOnce(&Directory) -> T) -> T {
        f(&self.0.read())
    }

    pub fn stats(&self) -> DirectoryStats {
        self.0.read().stats()
    }

    fn user_value(dir: &Directory, id: &str) -> Option<Value> {
        let user = dir.user(id)?;
        serde_json::to_value(UserView {
            dir,
            user,
            projection: &Projection::Full,
            public_view: false,
        })
        .ok()
    }

    fn group_value(dir: &Directory, id: &str) -> Option<Value> {
        let group = dir.group(id)?;
        serde_json::to_value(GroupView { dir, group }).ok()
    }

    /// A user by id, primary email or alias.
    pub fn user(&self, key: &str) -> Option<Value> {
        let dir = self.0.read();
        let id = dir.resolve_user(key)?;
        Self::user_value(&dir, &id)
    }

    /// A group by id, email or alias.
    pub fn group(&self, key: &str) -> Option<Value> {
        let dir = self.0.read();
        let id = dir.resolve_group(key)?;
        Self::group_value(&dir, &id)
    }

    /// Direct members of a group as members.get shows them.
    pub fn members(&self, group_key: &str) -> Option<Vec<Value>> {
        let dir = self.0.read();
        let id = dir.resolve_group(group_key)?;
        let group = dir.group(&id)?;
        Some(
            group
                .members
                .values()
                .filter_map(|member| {
                    serde_json::to_value(MemberView {
                        dir: &dir,
                        group: &id,
                        member,
                        with_delivery: true,
                    })
                    .ok()
                })
                .collect(),
        )
    }

    /// Primary emails of live users, in id order.
    pub fn user_emails(&self) -> Vec<String> {
        self.0
            .read()
            .users
            .values()
            .map(|u| u.primary_email().to_owned())
            .collect()
    }

    /// Emails of groups, in id order.
    pub fn group_emails(&self) -> Vec<String> {
        self.0
            .read()
            .groups
            .values()
            .map(|g| g.email().to_owned())
            .collect()
    }

    pub fn insert_user(&self, user: &Value) -> Result<Value, ApiError> {
        let mut dir = self.0.write();
        let id = dir.insert_user(user, Utc::now())?;
        Self::user_value(&dir, &id).ok_or_else(ApiError::internal)
    }

    /// Patch semantics: present fields replace, `null` clears (users.update/patch).
    pub fn update_user(&self, key: &str, patch: &Value) -> Result<Value, ApiError> {
        let mut dir = self.0.write();
        let id = dir.update_user(key, patch, Utc::now())?;
        Self::user_value(&dir, &id).ok_or_else(ApiError::internal)
    }

    /// Moves the user to the deleted list and out of every group.
    pub fn delete_user(&self, key: &str) -> Result<(), ApiError> {
        self.0.write().delete_user(key, Utc::now()).map(|_| ())
    }

    pub fn undelete_user(&self, id: &str) -> Result<(), ApiError> {
        self.0.write().undelete_user(id).map(|_| ())
    }

    pub fn set_admin(&self, key: &str, admin: bool) -> Result<(), ApiError> {
        self.0.write().set_admin(key, admin).map(|_| ())
    }

    pub fn insert_group(&self, group: &Value) -> Result<Value, ApiError> {
        let mut dir = self.0.write();
        let id = dir.insert_group(group)?;
        Self::group_value(&dir, &id).ok_or_else(ApiError::internal)
    }

    pub fn update_group(&self, key: &str, patch: &Value) -> Result<Value, ApiError> {
        let mut dir = self.0.write();
        let id = dir.update_group(key, patch)?;
        Self::group_value(&dir, &id).ok_or_else(ApiError::internal)
    }

    pub fn delete_group(&self, key: &str) -> Result<(), ApiError> {
        self.0.write().delete_group(key).map(|_| ())
    }

    /// `member`: `{"email"|"id", "role", "type", "delivery_settings"}` as members.insert takes.
    pub fn add_member(&self, group_key: &str, member: &Value) -> Result<Value, ApiError> {
        let mut dir = self.0.write();
        let id = dir.insert_member(group_key, member)?;
        let group = dir
            .resolve_group(group_key)
            .ok_or_else(|| ApiError::not_found("groupKey"))?;
        let entry = dir
            .group(&group)
            .and_then(|g| g.members.get(&id))
            .ok_or_else(ApiError::internal)?;
        serde_json::to_value(MemberView {
            dir: &dir,
            group: &group,
            member: entry,
            with_delivery: true,
        })
        .map_err(|_| ApiError::internal())
    }

    /// `patch`: `{"role", "delivery_settings"}`.
    pub fn update_member(
        &self,
        group_key: &str,
        member_key: &str,
        patch: &Value,
    ) -> Result<(), ApiError> {
        self.0
            .write()
            .update_member(group_key, member_key, patch)
            .map(|_| ())
    }

    pub fn remove_member(&self, group_key: &str, member_key: &str) -> Result<(), ApiError> {
        self.0.write().delete_member(group_key, member_key)
    }

    /// Adds an org unit (and missing parents); returns its path.
    pub fn add_org_unit(&self, path: &str, description: &str) -> Result<String, ApiError> {
        self.0.write().add_org_unit(path, description)
    }

    /// `count` users "log in": only their volatile `lastLoginTime` and etag change.
    pub fn record_logins(&self, count: usize) -> usize {
        self.0.write().record_logins(count, Utc::now())
    }
}
