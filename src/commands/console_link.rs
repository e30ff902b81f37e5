//! `dirsync console-link TENANT [--expires DURATION] [--base-url URL]`: prints the URL of a
//! signed, expiring link to one tenant's console pages (health, onboarding steps, inspect),
//! for the customer's IT admin. The daemon checks the signature, the expiry and the tenant.

use super::{tenant, Failure, Outcome};
use crate::cli::ConsoleLinkArgs;
use crate::config::Config;

pub fn run(config: &Config, args: &ConsoleLinkArgs) -> Outcome {
    let tenant = tenant(config, &args.tenant)?;
    let url = crate::console::link_url(&config.global, &tenant.id, args.expires)
        .map_err(|message| Failure::usage(anyhow::anyhow!(message)))?;
    let url = match &args.base_url {
        Some(base) => {
            let path = url.find("/console/").map_or("", |at| &url[at..]);
            format!("{}{path}", base.trim_end_matches('/'))
        }
        None => url,
    };
    println!("{url}");
    let until = chrono::Utc::now()
        + chrono::Duration::from_std(args.expires).unwrap_or(chrono::Duration::days(7));
    eprintln!(
        "dirsync: this link shows tenant {}'s health, onboarding steps and inspect page until {} (rotating console_token_file revokes it)",
        tenant.id,
        crate::event::format_timestamp(until)
    );
    Ok(super::exit::SUCCESS)
}
