//! The Google Directory API emulator for tests: in-process (the `dirsync_emulator` library,
//! on its own thread and runtime, so a test may block on the real `dirsync` binary while the
//! emulator keeps serving) or as a `dirsync emulator` subprocess.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use dirsync_emulator::{DirectoryHandle, Emulator, EmulatorBuilder, FaultsHandle, Fixture};
use serde_json::Value;

use crate::Dirsync;

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
        Self::start_built(move |builder| builder.fixture(fixture))
    }

    /// Starts the emulator with a generated organisation of `users` users and `groups`
    /// groups (the emulator's default membership count; `seed` fixed, so runs repeat).
    pub fn start_generated(users: usize, groups: usize) -> Self {
        Self::start_built(move |builder| builder.users(users).groups(groups).seed(16))
    }

    /// Starts the emulator that `configure` makes of the default builder.
    pub fn start_built(
        configure: impl FnOnce(EmulatorBuilder) -> EmulatorBuilder + Send + 'static,
    ) -> Self {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let handle = configure(Emulator::builder())
                    .build()
                    .expect("the organisation builds")
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

/// `dirsync emulator` as a subprocess, killed on drop.
pub struct EmulatorProcess {
    child: Child,
    /// The API root, `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The service-account key it wrote (`--key-out`).
    pub key_file: PathBuf,
    pub key_json: String,
    _dir: Option<tempfile::TempDir>,
}

impl EmulatorProcess {
    /// `dirsync emulator --fixture FILE` with the organisation of `fixture`.
    pub fn start(dirsync: &Dirsync, fixture: &Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fixture_path = dir.path().join("org.json");
        std::fs::write(&fixture_path, fixture.to_string()).unwrap();
        let fixture_arg = fixture_path.display().to_string();
        let mut emulator = Self::spawn(
            dirsync,
            &dir.path().join("sa.json"),
            &["--fixture", &fixture_arg],
            Stdio::null(),
        );
        emulator._dir = Some(dir);
        emulator
    }

    /// `dirsync emulator --listen 127.0.0.1:0 ARGS --key-out KEY_FILE`, its stderr to
    /// `stderr`; returns once it listens.
    pub fn spawn(dirsync: &Dirsync, key_file: &Path, args: &[&str], stderr: Stdio) -> Self {
        let mut child = dirsync
            .command(&["emulator", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--key-out")
            .arg(key_file)
            .stdout(Stdio::piped())
            .stderr(stderr)
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
        let key_json = std::fs::read_to_string(key_file).unwrap();
        Self {
            child,
            base_url,
            key_file: key_file.to_owned(),
            key_json,
            _dir: None,
        }
    }

    /// The service-account key, parsed.
    pub fn key(&self) -> Value {
        serde_json::from_str(&self.key_json).unwrap()
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
