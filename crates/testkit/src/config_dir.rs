//! The one throw-away config folder: `dirsync.toml` (state dir, tenants dir, control socket,
//! optionally `http_listen` and more global keys), `tenants/` with Google, SCIM or any other
//! tenant files and their secrets beside them, and the runs of the real binary against it.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::emulator::GoogleEmulator;
use crate::runner::{Dirsync, Run};

/// Options of a [`ConfigDir`]; [`ConfigDir::new`] takes the defaults.
#[derive(Debug, Clone)]
pub struct Builder {
    dirsync: Dirsync,
    http: bool,
    control_socket: String,
    global: String,
    tenants_dir: bool,
}

impl Builder {
    /// Adds `http_listen` on a free loopback port ([`ConfigDir::http`]).
    #[must_use]
    pub fn http_listen(mut self) -> Self {
        self.http = true;
        self
    }

    /// The control socket's file name in the folder (default `control.sock`).
    #[must_use]
    pub fn control_socket(mut self, name: &str) -> Self {
        name.clone_into(&mut self.control_socket);
        self
    }

    /// More global keys, appended to `dirsync.toml` as given.
    #[must_use]
    pub fn global(mut self, text: &str) -> Self {
        self.global.push_str(text);
        self
    }

    /// Leaves `tenants/` for the binary to create (as `dirsync setup` does on a fresh host).
    #[must_use]
    pub fn without_tenants_dir(mut self) -> Self {
        self.tenants_dir = false;
        self
    }

    pub fn build(self) -> ConfigDir {
        let dir = tempfile::tempdir().unwrap();
        if self.tenants_dir {
            std::fs::create_dir(dir.path().join("tenants")).unwrap();
        }
        let http = self
            .http
            .then(|| SocketAddr::from(([127, 0, 0, 1], crate::free_port())));
        let mut global = format!(
            "state_dir = \"state\"\ntenants_dir = \"tenants\"\ncontrol_socket = \"{}\"\n",
            self.control_socket
        );
        if let Some(addr) = http {
            global.push_str(&format!("http_listen = \"{addr}\"\n"));
        }
        global.push_str(&self.global);
        let config = dir.path().join("dirsync.toml");
        std::fs::write(&config, global).unwrap();
        ConfigDir {
            dirsync: self.dirsync.with_config(&config),
            socket: dir.path().join(&self.control_socket),
            dir,
            http,
        }
    }
}

/// A temp folder with `dirsync.toml`, `tenants/`, the state dir and the control socket.
pub struct ConfigDir {
    dir: tempfile::TempDir,
    dirsync: Dirsync,
    socket: PathBuf,
    /// `http_listen`, when asked for.
    pub http: Option<SocketAddr>,
}

impl ConfigDir {
    /// `bin`: the caller's `env!("CARGO_BIN_EXE_dirsync")`, or a [`Dirsync`].
    pub fn new(dirsync: impl Into<Dirsync>) -> Self {
        Self::builder(dirsync).build()
    }

    pub fn builder(dirsync: impl Into<Dirsync>) -> Builder {
        Builder {
            dirsync: dirsync.into(),
            http: false,
            control_socket: "control.sock".to_owned(),
            global: String::new(),
            tenants_dir: true,
        }
    }

    /// Keeps the folder on disk (it is removed on drop otherwise); its path.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `dirsync.toml`.
    pub fn config(&self) -> PathBuf {
        self.path().join("dirsync.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn tenants_dir(&self) -> PathBuf {
        self.path().join("tenants")
    }

    pub fn socket(&self) -> PathBuf {
        self.socket.clone()
    }

    /// `tenants/{id}.toml`.
    pub fn tenant_file(&self, id: &str) -> PathBuf {
        self.tenants_dir().join(format!("{id}.toml"))
    }

    /// Writes a file at `relative` (to the folder), creating its parent.
    pub fn write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Writes `tenants/{id}.toml` as given.
    pub fn write_tenant(&self, id: &str, text: &str) {
        std::fs::write(self.tenant_file(id), text).unwrap();
    }

    pub fn remove_tenant(&self, id: &str) {
        std::fs::remove_file(self.tenant_file(id)).unwrap();
    }

    /// Writes `tenants/NAME.toml` for a Google source at `base_url` (hourly schedule), with
    /// the service-account key beside it. `source_extra`: more `[source]` keys; `policy`: TOML
    /// sections.
    pub fn google_tenant(
        &self,
        name: &str,
        base_url: &str,
        key_json: &str,
        subject: &str,
        source_extra: &str,
        policy: &str,
    ) {
        let key_file = format!("{name}-service-account.json");
        std::fs::write(self.tenants_dir().join(&key_file), key_json).unwrap();
        self.write_tenant(
            name,
            &format!(
                "schedule = \"0 0 * * * *\"\n[source]\ntype = \"google\"\ncredentials_file = \"{key_file}\"\nsubject = \"{subject}\"\napi_base = \"{base_url}\"\n{source_extra}\n{policy}\n"
            ),
        );
    }

    /// The same for an in-process emulator.
    pub fn emulator_tenant(
        &self,
        name: &str,
        emulator: &GoogleEmulator,
        source_extra: &str,
        policy: &str,
    ) {
        self.google_tenant(
            name,
            &emulator.base_url,
            &emulator.key_json,
            &emulator.admin,
            source_extra,
            policy,
        );
    }

    /// Writes `tenants/NAME.toml` for a SCIM source at `base_url` (hourly schedule) with the
    /// bearer token in `tenants/NAME-token`.
    pub fn scim_tenant(
        &self,
        name: &str,
        base_url: &str,
        token: &str,
        source_extra: &str,
        policy: &str,
    ) {
        let token_file = format!("{name}-token");
        std::fs::write(self.tenants_dir().join(&token_file), token).unwrap();
        self.write_tenant(
            name,
            &format!(
                "schedule = \"0 0 * * * *\"\n[source]\ntype = \"scim\"\nbase_url = \"{base_url}\"\ntoken_file = \"{token_file}\"\n{source_extra}\n{policy}\n"
            ),
        );
    }

    /// Writes `tenants/{id}.toml` for a SCIM source on `schedule` with bearer `token` (in
    /// `tenants/{id}.token`) and one-second retries (daemon tests), `extra` appended.
    pub fn scheduled_scim_tenant(
        &self,
        id: &str,
        base_url: &str,
        token: &str,
        schedule: &str,
        extra: &str,
    ) {
        std::fs::write(self.tenants_dir().join(format!("{id}.token")), token).unwrap();
        self.write_tenant(
            id,
            &format!(
                "schedule = \"{schedule}\"\n[source]\ntype = \"scim\"\nbase_url = \"{base_url}\"\ntoken_file = \"{id}.token\"\nretry_max_seconds = 1\n{extra}"
            ),
        );
    }

    /// The binary with `--config` this folder's `dirsync.toml`.
    pub fn dirsync(&self) -> &Dirsync {
        &self.dirsync
    }

    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        self.dirsync.command(args)
    }

    pub fn tokio_command<S: AsRef<OsStr>>(&self, args: &[S]) -> tokio::process::Command {
        self.dirsync.tokio_command(args)
    }

    pub fn output<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.dirsync.output(args)
    }

    pub async fn output_async<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.dirsync.output_async(args).await
    }

    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        self.dirsync.run(args)
    }

    pub async fn run_async<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        self.dirsync.run_async(args).await
    }

    /// `dirsync sync TENANT --json [extra]`: the exit code and the JSON report (the last
    /// stdout line).
    pub fn sync(&self, tenant: &str, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["sync", tenant, "--json"];
        args.extend_from_slice(extra);
        sync_report(tenant, &self.run(&args))
    }

    pub async fn sync_async(&self, tenant: &str, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["sync", tenant, "--json"];
        args.extend_from_slice(extra);
        sync_report(tenant, &self.run_async(&args).await)
    }

    /// A sync that must commit; returns its report.
    pub fn sync_committed(&self, tenant: &str) -> Value {
        let (code, report) = self.sync(tenant, &[]);
        assert_eq!(code, 0, "sync {tenant}: {report}");
        assert_eq!(report["outcome"], "committed", "sync {tenant}: {report}");
        report
    }

    /// Stored events with `seq > after`, oldest first (`dirsync events`).
    pub fn events(&self, tenant: &str, after: u64) -> Vec<Value> {
        let run = self.run(&["events", tenant, "--after", &after.to_string()]);
        assert_eq!(run.code, 0, "events {tenant}: {}", run.stderr);
        run.json_lines()
    }

    pub async fn events_async(&self, tenant: &str, after: u64) -> Vec<Value> {
        let run = self
            .run_async(&["events", tenant, "--after", &after.to_string()])
            .await;
        assert_eq!(run.code, 0, "events {tenant}: {}", run.stderr);
        run.json_lines()
    }

    /// `dirsync inspect TENANT WHO --json`.
    pub fn inspect(&self, tenant: &str, who: &str) -> Value {
        let run = self.run(&["inspect", tenant, who, "--json"]);
        serde_json::from_str(&run.stdout).unwrap_or_else(|err| {
            panic!(
                "inspect {tenant} {who}: {err}: {} {}",
                run.stdout, run.stderr
            )
        })
    }

    /// `dirsync status TENANT --json`, which must succeed.
    pub fn status(&self, tenant: &str) -> Value {
        status_report(&self.run(&["status", tenant, "--json"]))
    }

    pub async fn status_async(&self, tenant: &str) -> Value {
        status_report(&self.run_async(&["status", tenant, "--json"]).await)
    }
}

fn sync_report(tenant: &str, run: &Run) -> (i32, Value) {
    let line = run.stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "sync {tenant}: no output (exit {}); stderr: {}",
            run.code, run.stderr
        )
    });
    let report = serde_json::from_str(line).unwrap_or_else(|err| {
        panic!(
            "sync {tenant}: {err}: {line} (exit {}); stderr: {}",
            run.code, run.stderr
        )
    });
    (run.code, report)
}

fn status_report(run: &Run) -> Value {
    assert_eq!(run.code, 0, "status: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("status: {err}: {}", run.stdout))
}
