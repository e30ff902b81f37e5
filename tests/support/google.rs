//! Test support for end-to-end tests against the Google Directory API emulator: starts it
//! in-process (library API, on its own thread and runtime, so a test may block on the real
//! `dirsync` binary while the emulator keeps serving) or as a `dirsync emulator` subprocess,
//! and writes a temp dirsync config with Google and SCIM tenants that the real binary syncs.
//! Used by `tests/parity*.rs` and `tests/policy_google.rs` via `#[path]`.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use dirsync::emulator::{DirectoryHandle, Emulator, FaultsHandle, Fixture};
use serde_json::Value;

/// The emulator running in this process, stopped on drop.
pub struct GoogleEmulator {
    pub base_url: String,
    pub admin: String,
    pub key_json: String,
    directory: DirectoryHandle,
    faults: FaultsHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GoogleEmulator {
    /// Starts the emulator on 127.0.0.1 with the organisation of `fixture` (the `--fixture`
    /// JSON format of docs/emulator.md).
    pub fn start(fixture: &Value) -> Self {
        let fixture: Fixture = serde_json::from_value(fixture.clone()).expect("a valid fixture");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let handle = Emulator::builder()
                    .fixture(fixture)
                    .build()
                    .expect("the fixture builds")
                    .start("127.0.0.1:0".parse().unwrap())
                    .await
                    .expect("the emulator starts");
                ready_tx
                    .send((
                        handle.base_url.clone(),
                        handle.admin_email().to_owned(),
                        handle.service_account_key_json(),
                        handle.directory(),
                        handle.faults(),
                    ))
                    .unwrap();
                let _ = handle
                    .serve_until(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let (base_url, admin, key_json, directory, faults) = ready_rx
            .recv()
            .expect("the emulator thread failed before serving");
        Self {
            base_url,
            admin,
            key_json,
            directory,
            faults,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Admin writes and reads, as the Directory API methods do them.
    pub fn directory(&self) -> &DirectoryHandle {
        &self.directory
    }

    pub fn faults(&self) -> &FaultsHandle {
        &self.faults
    }

    /// The user as the API shows it (full projection); panics when there is none.
    pub fn user(&self, key: &str) -> Value {
        self.directory
            .user(key)
            .unwrap_or_else(|| panic!("the emulator has no user {key}"))
    }

    pub fn group(&self, key: &str) -> Value {
        self.directory
            .group(key)
            .unwrap_or_else(|| panic!("the emulator has no group {key}"))
    }
}

impl Drop for GoogleEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `dirsync emulator --fixture FILE` as a subprocess, killed on drop.
pub struct EmulatorProcess {
    child: Child,
    pub base_url: String,
    pub key_json: String,
    _dir: tempfile::TempDir,
}

impl EmulatorProcess {
    pub fn start(fixture: &Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fixture_path = dir.path().join("org.json");
        let key_path = dir.path().join("sa.json");
        std::fs::write(&fixture_path, fixture.to_string()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dirsync"))
            .args(["emulator", "--listen", "127.0.0.1:0", "--fixture"])
            .arg(&fixture_path)
            .arg("--key-out")
            .arg(&key_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The listening line is printed (and flushed) once the socket is bound; EOF means the
        // emulator exited.
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut base_url = None;
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap() > 0 {
            if let Some(rest) = line.trim().strip_prefix("dirsync emulator listening on ") {
                base_url = rest.split_whitespace().next().map(str::to_owned);
                break;
            }
            line.clear();
        }
        let Some(base_url) = base_url else {
            let status = child.wait().unwrap();
            panic!("dirsync emulator exited ({status}) without listening");
        };
        // Keep draining stdout so the emulator never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let key_json = std::fs::read_to_string(&key_path).unwrap();
        Self {
            child,
            base_url,
            key_json,
            _dir: dir,
        }
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The output of one `dirsync` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A temp config folder (`dirsync.toml`, `tenants/`, state) for the real binary.
pub struct Config {
    dir: tempfile::TempDir,
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

impl Config {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tenants")).unwrap();
        std::fs::write(
            dir.path().join("dirsync.toml"),
            "state_dir = \"state\"\ntenants_dir = \"tenants\"\ncontrol_socket = \"control.sock\"\n",
        )
        .unwrap();
        Self { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("dirsync.toml")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `tenants/NAME.toml` for a Google source at `base_url`, with the service-account
    /// key beside it. `source_extra`: more `[source]` keys; `policy`: TOML sections.
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
        std::fs::write(self.dir.path().join("tenants").join(&key_file), key_json).unwrap();
        let text = format!(
            "schedule = \"0 0 * * * *\"\n[source]\ntype = \"google\"\ncredentials_file = \"{key_file}\"\nsubject = \"{subject}\"\napi_base = \"{base_url}\"\n{source_extra}\n{policy}\n"
        );
        std::fs::write(
            self.dir.path().join("tenants").join(format!("{name}.toml")),
            text,
        )
        .unwrap();
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

    /// Writes `tenants/NAME.toml` for a SCIM source at `base_url` with a bearer token.
    pub fn scim_tenant(
        &self,
        name: &str,
        base_url: &str,
        token: &str,
        source_extra: &str,
        policy: &str,
    ) {
        let token_file = format!("{name}-token");
        std::fs::write(self.dir.path().join("tenants").join(&token_file), token).unwrap();
        let text = format!(
            "schedule = \"0 0 * * * *\"\n[source]\ntype = \"scim\"\nbase_url = \"{base_url}\"\ntoken_file = \"{token_file}\"\n{source_extra}\n{policy}\n"
        );
        std::fs::write(
            self.dir.path().join("tenants").join(format!("{name}.toml")),
            text,
        )
        .unwrap();
    }

    pub fn dirsync(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_dirsync"))
            .arg("--config")
            .arg(self.path())
            .args(args)
            .output()
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `dirsync sync TENANT --json [extra]`: the exit code and the JSON report.
    pub fn sync(&self, tenant: &str, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["sync", tenant, "--json"];
        args.extend_from_slice(extra);
        let run = self.dirsync(&args);
        let line = run
            .stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("sync {tenant}: no output; stderr: {}", run.stderr));
        let report = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("sync {tenant}: {err}: {line}; stderr: {}", run.stderr));
        (run.code, report)
    }

    /// A sync that must commit; returns its report.
    pub fn sync_committed(&self, tenant: &str) -> Value {
        let (code, report) = self.sync(tenant, &[]);
        assert_eq!(code, 0, "sync {tenant}: {report}");
        assert_eq!(report["outcome"], "committed", "sync {tenant}: {report}");
        report
    }

    /// Stored events with `seq > after`, oldest first.
    pub fn events(&self, tenant: &str, after: u64) -> Vec<Value> {
        let run = self.dirsync(&["events", tenant, "--after", &after.to_string()]);
        assert_eq!(run.code, 0, "events {tenant}: {}", run.stderr);
        run.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// `dirsync inspect TENANT WHO --json`.
    pub fn inspect(&self, tenant: &str, who: &str) -> Value {
        let run = self.dirsync(&["inspect", tenant, who, "--json"]);
        serde_json::from_str(&run.stdout).unwrap_or_else(|err| {
            panic!(
                "inspect {tenant} {who}: {err}: {} {}",
                run.stdout, run.stderr
            )
        })
    }
}
