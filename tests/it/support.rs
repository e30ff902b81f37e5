//! What the integration tests share that needs dirsync's own library types (the testkit
//! depends on no dirsync crate): the binary's path, config folders for the daemon and the
//! sink tests, the daemon's typed status over its control socket, SCIM source configs, and
//! synthetic commits through the store.

use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dirsync::config::{ScimAuth, ScimPagination, ScimSourceConfig, Secret};
use dirsync::daemon::control::{self, Request, Response};
use dirsync::daemon::tenant::TenantState;
use dirsync::event::SourceKind;
use dirsync::model::{Email, Id, RawAttributes, Snapshot, User, UserState};
use dirsync::run::{Millis, RunSummary};
use dirsync::source::scim::ScimSource;
use dirsync::source::FetchStats;
use dirsync::store::{self, Lease, NewEvents, Store};
use dirsync_testkit::scim::{ScimServer, TOKEN};
use dirsync_testkit::webhook::SECRET;
use dirsync_testkit::{ConfigDir, Dirsync};
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dirsync");

/// The binary under test, with a scrubbed environment.
pub fn dirsync() -> Dirsync {
    Dirsync::new(BIN)
}

/// A config folder; `with_http`: with `http_listen` on a free port.
pub fn config_dir(with_http: bool) -> ConfigDir {
    let builder = ConfigDir::builder(dirsync());
    if with_http {
        builder.http_listen().build()
    } else {
        builder.build()
    }
}

/// The sink tests' folder: `global_extra` in `dirsync.toml`, a SCIM token (`scim-token`) and
/// a webhook secret (`secret`) in `tenants/`, runs logging at `info`.
pub fn sink_dir(global_extra: &str) -> ConfigDir {
    let dir = ConfigDir::builder(dirsync().env("RUST_LOG", "info"))
        .global(global_extra)
        .build();
    dir.write("tenants/scim-token", "token");
    dir.write("tenants/secret", SECRET);
    dir
}

/// The daemon's view of its tenants, straight from the control socket.
#[allow(async_fn_in_trait)]
pub trait DaemonControl {
    async fn daemon_states(&self) -> Option<Vec<TenantState>>;

    async fn daemon_state(&self, tenant: &str) -> Option<TenantState> {
        self.daemon_states()
            .await?
            .into_iter()
            .find(|s| s.tenant == tenant)
    }
}

impl DaemonControl for ConfigDir {
    async fn daemon_states(&self) -> Option<Vec<TenantState>> {
        match control::request(&self.socket(), &Request::Status { tenant: None }).await {
            Ok(Some(Response {
                ok: true, tenants, ..
            })) => Some(tenants),
            _ => None,
        }
    }
}

/// A config for `base_url` with short retries, so fault tests end quickly.
pub fn scim_config(base_url: &str, token: Option<&str>) -> ScimSourceConfig {
    ScimSourceConfig {
        base_url: base_url.trim_end_matches('/').to_owned(),
        auth: match token {
            Some(token) => ScimAuth::Bearer(Secret::new(token)),
            None => ScimAuth::None,
        },
        page_size: None,
        pagination: ScimPagination::Auto,
        filter_supported: None,
        suspended_users: Default::default(),
        nested_groups: Default::default(),
        max_concurrency: 4,
        requests_per_minute: 0,
        retry_max: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        max_run: Duration::from_secs(3600),
    }
}

/// dirsync's SCIM source reading a running `scim2-server`.
pub trait ScimServerExt {
    fn config(&self) -> ScimSourceConfig;
    fn source(&self) -> ScimSource;
}

impl ScimServerExt for ScimServer {
    fn config(&self) -> ScimSourceConfig {
        scim_config(&self.base_url, Some(TOKEN))
    }

    fn source(&self) -> ScimSource {
        ScimSource::new(self.config(), Arc::new(FetchStats::default())).unwrap()
    }
}

/// The sink tests' verbs on a [`sink_dir`].
pub trait SinkDir {
    /// Writes a tenant whose source is never reached (events come from `commit_users`) with
    /// the given `[[sinks]]` TOML.
    fn tenant(&self, id: &str, sinks: &str);
    fn store(&self) -> Store;
    /// Commits a sync that creates users `range` (one `user.created` event each).
    fn commit_users(&self, tenant: &str, range: std::ops::Range<u32>) -> u64;
    /// Starts `dirsync deliver ARGS` (continuous) with its logs in `deliver.log`.
    fn spawn_deliver(&self, args: &[&str]) -> Child;
    /// `deliver.log` so far.
    fn log(&self) -> String;
    /// One sink's entry of `dirsync status TENANT --json`.
    fn sink_status(&self, tenant: &str, sink: &str) -> Value;
}

impl SinkDir for ConfigDir {
    fn tenant(&self, id: &str, sinks: &str) {
        self.write_tenant(
            id,
            &format!("[source]\ntype = \"scim\"\nbase_url = \"http://127.0.0.1:9/scim/v2\"\ntoken_file = \"scim-token\"\n\n{sinks}"),
        );
    }

    fn store(&self) -> Store {
        Store::open(&self.state_dir()).unwrap()
    }

    fn commit_users(&self, tenant: &str, range: std::ops::Range<u32>) -> u64 {
        commit_users(&self.store(), tenant, range)
    }

    fn spawn_deliver(&self, args: &[&str]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("deliver.log"))
            .unwrap();
        let mut all = vec!["deliver"];
        all.extend_from_slice(args);
        self.command(&all)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("deliver.log")).unwrap_or_default()
    }

    fn sink_status(&self, tenant: &str, sink: &str) -> Value {
        self.status(tenant)["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == sink)
            .cloned()
            .unwrap()
    }
}

fn user(n: u32) -> User {
    let email = format!("user{n}@example.com");
    User {
        id: Id::from(format!("u{n}")),
        email: email.clone(),
        username: email.clone(),
        first_name: Some("First".into()),
        last_name: Some(format!("Last{n}")),
        display_name: None,
        emails: vec![Email {
            value: email,
            primary: true,
        }],
        state: UserState::Active,
        roles: Vec::new(),
        custom_attributes: Default::default(),
        raw_attributes: RawAttributes::from_value(&serde_json::json!({ "id": format!("u{n}") })),
    }
}

/// Commits, like a sync would, the stored snapshot plus users `range`; returns the last seq.
pub fn commit_users(store: &Store, tenant: &str, range: std::ops::Range<u32>) -> u64 {
    let mut conn = store.connect().unwrap();
    let holder = store::new_holder();
    let lease: Lease =
        store::acquire_lease(&mut conn, tenant, &holder, Duration::from_secs(60)).unwrap();
    let before = store::load_snapshot(&conn, tenant).unwrap();
    let mut after: Snapshot = before.clone();
    for n in range {
        let u = user(n);
        after.users.insert(u.id.clone(), u);
    }
    let changes = dirsync::diff::diff(&before, &after);
    let now = store::now_ms();
    let summary = store::commit(
        &mut conn,
        NewEvents {
            tenant,
            source: SourceKind::Scim,
            lease: &lease,
            before: &before,
            after: &after,
            changes: &changes,
            run: RunSummary::begun(tenant, Millis(now)),
            exclusions: Vec::new(),
            direct: None,
            digest: None,
        },
    )
    .unwrap();
    store::release_lease(&conn, &lease).unwrap();
    summary.last_seq
}
