//! The verbs: each turns parsed arguments into work and maps failures to the contract's exit
//! codes. The only place with `anyhow`-style context.

mod check_config;
mod console_link;
mod deliver;
mod demo;
mod demo_idp;
mod events;
mod forget;
mod inspect;
mod migrate_store;
mod run;
mod setup;
mod status;
mod sync;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Cli, Command};
use crate::config::{self, Config, LogFormat};
use crate::store::Store;

/// Exit codes of the contract.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const RUN_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const GUARD_REFUSED: u8 = 3;
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: u8, error: impl Into<anyhow::Error>) -> Self {
        Self {
            code,
            error: error.into(),
        }
    }
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Self::new(exit::USAGE, error)
    }
    pub fn run(error: impl Into<anyhow::Error>) -> Self {
        Self::new(exit::RUN_FAILED, error)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::run(error)
    }
}

pub type Outcome = Result<u8, Failure>;

pub async fn dispatch(cli: Cli) -> Outcome {
    let config_flag = cli.config;
    let config_path = config::config_path(config_flag.as_deref());
    match cli.command {
        Command::Emulator(args) => {
            init_tracing(LogFormat::Text, "info");
            dirsync_emulator::cli::run(args)
                .await
                .map(|()| exit::SUCCESS)
                .map_err(|err| {
                    if err.is_usage() {
                        Failure::usage(err)
                    } else {
                        Failure::run(err)
                    }
                })
        }
        Command::CheckConfig(args) => {
            init_tracing(LogFormat::Text, "warn");
            check_config::run(&config_path, &args).await
        }
        Command::Sync(args) => {
            let config = load_config_for(&config_path, &args.tenant)?;
            init_tracing(config.global.log_format, "warn");
            sync::run(&config, &args).await
        }
        Command::Events(args) => {
            let config = load_config_for(&config_path, &args.tenant)?;
            init_tracing(config.global.log_format, "warn");
            events::run(&config, &args).await
        }
        Command::Status(args) => {
            let (config, problems) = match &args.tenant {
                Some(tenant) => (load_config_for(&config_path, tenant)?, Vec::new()),
                None => status::load_every_valid_tenant(&config_path)?,
            };
            init_tracing(config.global.log_format, "warn");
            status::run(&config, &args, &problems).await
        }
        Command::Inspect(args) => {
            let config = load_config_for(&config_path, &args.tenant)?;
            init_tracing(config.global.log_format, "warn");
            inspect::run(&config, &args).await
        }
        Command::ConsoleLink(args) => {
            let config = load_config_for(&config_path, &args.tenant)?;
            init_tracing(config.global.log_format, "warn");
            console_link::run(&config, &args)
        }
        Command::Deliver(args) => {
            let config = load_config(&config_path)?;
            init_tracing(config.global.log_format, "info");
            deliver::run(&config, &args).await
        }
        Command::MigrateStore(args) => {
            let config = load_config(&config_path)?;
            init_tracing(config.global.log_format, "warn");
            migrate_store::run(&config, &args).await
        }
        Command::Forget(args) => {
            init_tracing(LogFormat::Text, "warn");
            forget::run(&config_path, &args).await
        }
        Command::Setup(args) => {
            init_tracing(LogFormat::Text, "warn");
            setup::run(&config_path, config_flag, args).await
        }
        Command::Run(_) => run::run(&config_path).await,
        Command::Demo(args) => demo::run(&args).await,
    }
}

/// The parts that run inside the daemon besides scheduling (sink delivery, events API, the
/// web console when configured).
pub fn extensions(
    global: &config::GlobalConfig,
) -> Vec<std::sync::Arc<dyn crate::daemon::Extension>> {
    let mut extensions: Vec<std::sync::Arc<dyn crate::daemon::Extension>> = vec![
        std::sync::Arc::new(crate::daemon::sinks::SinkExtension::new(global)),
        std::sync::Arc::new(crate::push::PushExtension::default()),
    ];
    if let Some(console) = crate::console::ConsoleExtension::new(global) {
        extensions.push(std::sync::Arc::new(console));
    }
    extensions
}

/// Loads the whole configuration strictly: every problem is reported, exit code 2.
pub fn load_config(path: &Path) -> Result<Config, Failure> {
    config::load_strict(path).map_err(|err| {
        Failure::usage(anyhow::anyhow!("{err}\n(config file: {}; fix the problems above, `dirsync check-config` lists them all)", path.display()))
    })
}

/// Loads the configuration for a verb about one tenant: a problem in the global file or in
/// that tenant's file is an error (exit 2); problems in other tenants' files are printed as
/// warnings, so one tenant's typo does not stop operators from syncing or reading the others
/// (the daemon treats them the same way).
pub fn load_config_for(path: &Path, tenant: &str) -> Result<Config, Failure> {
    let loaded = config::load(path);
    let global = loaded.global.as_ref().map(|g| g.file.clone());
    let (blocking, elsewhere): (Vec<_>, Vec<_>) = loaded.problems.iter().partition(|problem| {
        global.as_ref().is_none_or(|file| problem.file == *file)
            || problem.file == path
            || problem.file.file_stem().and_then(|s| s.to_str()) == Some(tenant)
    });
    if !blocking.is_empty() || global.is_none() {
        return load_config(path);
    }
    for problem in elsewhere {
        eprintln!("dirsync: warning: {problem} (another tenant; `dirsync check-config` lists every problem)");
    }
    let mut loaded = loaded;
    loaded.problems.clear();
    loaded
        .into_result()
        .map_err(|err| Failure::usage(anyhow::anyhow!("{err}")))
}

/// The tenant's config, or a usage error naming the file it should be in.
pub fn tenant<'a>(config: &'a Config, id: &str) -> Result<&'a config::TenantConfig, Failure> {
    config.tenant(id).ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "no tenant {id:?}: expected a file {} (known tenants: {})",
            config
                .global
                .tenants_dir
                .join(format!("{id}.toml"))
                .display(),
            if config.tenants.is_empty() {
                "none".to_owned()
            } else {
                config
                    .tenants
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))
    })
}

/// Opens (creating if needed) the database under `state_dir`.
pub fn open_store(config: &Config) -> Result<Store, Failure> {
    Store::open_global(&config.global)
        .map(|store| store.keep_run_history(config.global.run_history))
        .with_context(|| {
            format!(
                "opening the store (state_dir in {})",
                config.global.file.display()
            )
        })
        .map_err(Failure::run)
}

/// Logs go to stderr; `RUST_LOG` overrides the level, except for the HTTP and OAuth libraries,
/// whose debug output can carry tokens and signed assertions: they log warnings at most,
/// whatever `RUST_LOG` says.
pub fn init_tracing(format: LogFormat, default_level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(crate::terminal::stderr_colour());
    let _ = match format {
        // IdP text in a message or field must not drive the terminal or forge a log line.
        LogFormat::Text => builder
            .fmt_fields(crate::terminal::EscapedFields)
            .finish()
            .with(no_secrets())
            .try_init(),
        LogFormat::Json => builder.json().finish().with(no_secrets()).try_init(),
    };
}

/// A global filter: nothing below WARN from the libraries that see credentials on the wire.
fn no_secrets<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber,
{
    const QUIET: &[&str] = &[
        "yup_oauth2",
        "hyper",
        "hyper_util",
        "h2",
        "reqwest",
        "rustls",
    ];
    tracing_subscriber::filter::filter_fn(|metadata| {
        let target = metadata.target();
        let crate_name = target.split("::").next().unwrap_or(target);
        *metadata.level() <= tracing::Level::WARN || !QUIET.contains(&crate_name)
    })
}

/// Prints a failure the contract's way: one readable line (or a few) on stderr, control
/// characters (from an IdP's error body) escaped.
pub fn report(failure: &Failure) -> ExitCode {
    let mut text = format!("{:#}", failure.error);
    // Whatever was being opened (a config file, the database, a socket), running out of
    // descriptors is the process's limit: say which one to raise.
    if crate::process_stats::mentions_out_of_descriptors(&text) && !text.contains("LimitNOFILE") {
        text.push_str(&format!(
            " ({})",
            crate::process_stats::descriptors_advice()
        ));
    }
    eprintln!("dirsync: {}", crate::terminal::escape_lines(&text));
    ExitCode::from(failure.code)
}
