//! `dirsync setup` arguments. Parsing only.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(subcommand)]
    pub source: SetupSource,
}

#[derive(Debug, Subcommand)]
pub enum SetupSource {
    /// Connect a Google Workspace account: key file, delegation, verification, dry run
    Google(GoogleSetupArgs),
    /// Connect a SCIM 2.0 server: base URL, token, verification, dry run
    Scim(ScimSetupArgs),
    /// Let an IdP provision into dirsync (SCIM push): tenant file, token, the IdP's steps, and
    /// a wait for its first request
    ScimPush(ScimPushSetupArgs),
}

/// Flags every `setup` shares.
#[derive(Debug, Args)]
pub struct CommonSetupArgs {
    /// The tenant id, [a-z0-9_-]+: the tenant file is TENANTS_DIR/TENANT.toml
    pub tenant: String,
    /// Ask nothing: every value comes from flags (for automation)
    #[arg(long)]
    pub non_interactive: bool,
    /// When to sync: cron with seconds, UTC [default: "0 */15 * * * *"]
    #[arg(long, value_name = "CRON")]
    pub schedule: Option<String>,
    /// Replace an existing tenant file (and its key or token file)
    #[arg(long)]
    pub force: bool,
    /// Write the tenant file even when verification fails (it is still reported, exit code 1)
    #[arg(long)]
    pub write_anyway: bool,
}

#[derive(Debug, Args)]
pub struct GoogleSetupArgs {
    #[command(flatten)]
    pub common: CommonSetupArgs,
    /// The service-account key (JSON) downloaded from Google Cloud
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// The admin email the service account impersonates
    #[arg(long, value_name = "EMAIL")]
    pub subject: Option<String>,
    /// The Workspace customer id (e.g. C01abc234) [default: my_customer, the subject's account]
    #[arg(long, conflicts_with = "domain")]
    pub customer: Option<String>,
    /// Read one domain of the account instead of the whole customer
    #[arg(long)]
    pub domain: Option<String>,
    /// The Directory API base URL (an emulator in tests) [default: https://admin.googleapis.com]
    #[arg(long, value_name = "URL")]
    pub api_base: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScimSetupArgs {
    #[command(flatten)]
    pub common: CommonSetupArgs,
    /// The SCIM service provider's base URL, e.g. https://idp.example/scim/v2
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// A file holding the bearer token (else it is asked for)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ScimPushSetupArgs {
    /// The tenant id, [a-z0-9_-]+: the tenant file is TENANTS_DIR/TENANT.toml
    pub tenant: String,
    /// The IdP that provisions: okta, entra, onelogin, jumpcloud or generic (any SCIM 2.0 client)
    #[arg(long, value_name = "IDP")]
    pub idp: String,
    /// The public URL the IdP reaches dirsync at (an HTTPS reverse proxy), e.g.
    /// https://dirsync.example.com; /scim/v2/TENANT is added [default: http://{http_listen}]
    #[arg(long, value_name = "URL")]
    pub url_base: Option<String>,
    /// How long to wait for the IdP's first request, in seconds; 0: do not wait
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub wait: u64,
    /// Ask nothing; replace an existing tenant of that id (and its token) without asking
    #[arg(long)]
    pub yes: bool,
    /// Replace an existing tenant file and its token file (as --yes does for them)
    #[arg(long)]
    pub force: bool,
}
