//! `dirsync setup google|scim|scim-push TENANT`: loads the global file (for `tenants_dir`), wires the
//! terminal, and maps setup's outcome to exit codes: 0 connected, 1 verification failed, 2
//! usage or configuration error.

use std::path::{Path, PathBuf};

use super::{Failure, Outcome};
use crate::config;
use crate::setup::args::{SetupArgs, SetupSource};
use crate::setup::{self, Console, Context, SetupError};

pub async fn run(path: &Path, config_flag: Option<PathBuf>, args: SetupArgs) -> Outcome {
    let loaded = config::load(path);
    let Some(global) = loaded.global else {
        let problems: Vec<String> = loaded.problems.iter().map(|p| p.to_string()).collect();
        let create = if path.exists() {
            String::new()
        } else {
            format!(
                "\ncreate {} first, e.g. with the two lines\n  state_dir = \"state\"\n  tenants_dir = \"tenants\"\n(relative paths resolve against the file's folder)",
                path.display()
            )
        };
        return Err(Failure::usage(anyhow::anyhow!(
            "{}{create}",
            problems.join("\n")
        )));
    };
    let context = Context {
        global,
        config_flag,
    };
    let non_interactive = match &args.source {
        SetupSource::Google(google) => google.common.non_interactive,
        SetupSource::Scim(scim) => scim.common.non_interactive,
        SetupSource::ScimPush(push) => push.yes,
    };
    let mut stdout = std::io::stdout();
    let mut stdin = std::io::stdin().lock();
    let mut console = if non_interactive {
        Console::non_interactive(&mut stdout)
    } else {
        Console::interactive(&mut stdin, &mut stdout)
    };
    let result = match args.source {
        SetupSource::Google(google) => setup::google::run(&context, google, &mut console).await,
        SetupSource::Scim(scim) => setup::scim::run(&context, scim, &mut console).await,
        SetupSource::ScimPush(push) => setup::scim_push::run(&context, push, &mut console).await,
    };
    result.map_err(|err: SetupError| Failure::new(err.exit_code(), err))
}
