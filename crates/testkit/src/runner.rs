//! The real `dirsync` binary, run the way an operator would, with a scrubbed environment:
//! nothing of the caller's environment reaches it (no `DIRSYNC_CONFIG`, `NOTIFY_SOCKET`,
//! `RUST_LOG`, `NO_COLOR`, proxies …) but `PATH`, `HOME` and `TMPDIR`; a test that needs a
//! variable sets it explicitly ([`Dirsync::env`], or `.env()` on the command).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// The variables of the caller's environment a child keeps.
const KEPT: &[&str] = &["PATH", "HOME", "TMPDIR"];

/// Clears a command's environment down to [`KEPT`]. For children that are not `dirsync`
/// itself (a shell that execs it, a Python driver that runs it).
pub fn scrub(command: &mut Command) -> &mut Command {
    command.env_clear();
    for name in KEPT {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

/// The same for a tokio command.
pub fn scrub_tokio(command: &mut tokio::process::Command) -> &mut tokio::process::Command {
    command.env_clear();
    for name in KEPT {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

/// How to run the binary: its path, the `--config` to pass (if any) and explicit variables.
#[derive(Debug, Clone)]
pub struct Dirsync {
    bin: PathBuf,
    config: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
}

impl Dirsync {
    /// `bin`: the caller's `env!("CARGO_BIN_EXE_dirsync")`.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            config: None,
            envs: Vec::new(),
        }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Passes `--config FILE` first on every run.
    #[must_use]
    pub fn with_config(&self, config: impl Into<PathBuf>) -> Self {
        Self {
            config: Some(config.into()),
            ..self.clone()
        }
    }

    /// Sets a variable for every run.
    #[must_use]
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    fn leading_args(&self) -> Vec<OsString> {
        match &self.config {
            Some(config) => vec!["--config".into(), config.clone().into_os_string()],
            None => Vec::new(),
        }
    }

    /// `dirsync [--config FILE] ARGS` with the scrubbed environment and stdin closed.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(&self.bin);
        scrub(&mut command)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .args(self.leading_args())
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// The same as a tokio command (killed when dropped).
    pub fn tokio_command<S: AsRef<OsStr>>(&self, args: &[S]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.bin);
        scrub_tokio(&mut command)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .args(self.leading_args())
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs to completion, capturing stdout and stderr.
    pub fn output<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command(args).output().unwrap()
    }

    pub async fn output_async<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.tokio_command(args).output().await.unwrap()
    }

    /// Runs to completion: exit code and text.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        Run::from(self.output(args))
    }

    pub async fn run_async<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        Run::from(self.output_async(args).await)
    }
}

/// `ConfigDir::new(env!("CARGO_BIN_EXE_dirsync"))`.
impl From<&str> for Dirsync {
    fn from(bin: &str) -> Self {
        Dirsync::new(bin)
    }
}

impl From<&Dirsync> for Dirsync {
    fn from(dirsync: &Dirsync) -> Self {
        dirsync.clone()
    }
}

/// The output of one `dirsync` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Stdout and stderr, for failure messages.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Every stdout line parsed as JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
            .collect()
    }
}

/// Stops a child process on drop so a failing test leaves nothing running.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
