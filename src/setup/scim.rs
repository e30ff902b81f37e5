//! `dirsync setup scim TENANT`: a SCIM 2.0 server's base URL and bearer token; the source's
//! own check reads `/ServiceProviderConfig` and says what paging and filtering the server
//! offers and which settings dirsync chose; then a dry run.

use super::args::ScimSetupArgs;
use super::console::Console;
use super::google::host_of;
use super::{
    ask_schedule, check_target, toml_string, verify_and_write, Context, Diagnosis, Explain,
    Prepared, SetupError,
};
use crate::source::SourceError;

pub async fn run(
    context: &Context,
    args: ScimSetupArgs,
    console: &mut Console<'_>,
) -> Result<u8, SetupError> {
    let tenant = args.common.tenant.clone();
    let token_name = format!("{tenant}-scim-token");
    check_target(context, &tenant, Some(&token_name), args.common.force)?;
    console.say(format!(
        "Setting up tenant {tenant} (SCIM 2.0) in {}",
        context.global.tenants_dir.display()
    ));
    let base_url = console.valid(
        args.base_url,
        "--base-url",
        "SCIM base URL (e.g. https://idp.example/scim/v2)",
        None,
        check_base_url,
    )?;
    let token = match &args.token_file {
        Some(path) => read_token(path)
            .map_err(|message| SetupError::Usage(format!("--token-file: {message}")))?,
        None => console.valid(
            None,
            "--token-file",
            "Bearer token (it is stored in a file readable only by you)",
            None,
            |text| Ok::<_, String>(text.to_owned()),
        )?,
    };
    let schedule = ask_schedule(console, args.common.schedule.clone())?;
    let explain = ScimExplain {
        base_url: base_url.clone(),
    };
    let prepared = Prepared {
        tenant: &tenant,
        toml: tenant_toml(&tenant, &base_url, &token_name, &schedule),
        secret: Some((token_name.clone(), format!("{token}\n").into_bytes())),
        common: &args.common,
    };
    verify_and_write(context, prepared, &explain, console).await
}

fn check_base_url(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(text.trim_end_matches('/').to_owned())
        }
        _ => Err(format!(
            "{text:?} is not an http(s) URL such as https://idp.example/scim/v2"
        )),
    }
}

fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "{} is empty: put the bearer token in it",
            path.display()
        ));
    }
    Ok(token.to_owned())
}

pub fn tenant_toml(tenant: &str, base_url: &str, token_name: &str, schedule: &str) -> String {
    format!(
        r#"# Tenant "{tenant}": a SCIM 2.0 service provider, read (pull mode).
# Written by `dirsync setup scim {tenant}`; check it with `dirsync check-config --connect`.

# When to sync: cron with seconds, in UTC.
schedule = {schedule}
enabled  = true

[source]
type = "scim"
base_url = {base_url}
# The bearer token, next to this file with mode 0600.
token_file = {token_name}
# Paging and filtering follow what /ServiceProviderConfig advertises; override if it is wrong:
# pagination = "auto"                  # or "index", "cursor"
# page_size = 100
# filter_supported = true
# suspended_users = "inactive"         # or "delete": drop inactive users instead
# nested_groups   = "flatten"          # or "direct": only direct members count

# The deletion guard (defaults shown): refuse a run that deletes more than this share.
# [guard]
# max_delete_percent = 20
# min_deletes = 10
"#,
        schedule = toml_string(schedule),
        base_url = toml_string(base_url),
        token_name = toml_string(token_name),
    )
}

pub struct ScimExplain {
    pub base_url: String,
}

impl Explain for ScimExplain {
    fn explain(&self, err: &SourceError) -> Diagnosis {
        let host = host_of(&self.base_url);
        let fix = match err {
            SourceError::Http { status: 401, .. } | SourceError::Auth { .. } => format!(
                "{host} refused the token: use a bearer token the IdP issued for SCIM provisioning \
                 (--token-file), and check it has not expired"
            ),
            SourceError::Http { status: 403, .. } => format!(
                "{host} accepted the token but does not let it read Users and Groups: grant the \
                 token's client read access"
            ),
            SourceError::Http {
                status: 404, url, ..
            } => format!(
                "{url} does not exist: --base-url must be the SCIM root, the URL that \
                 /ServiceProviderConfig, /Users and /Groups hang off (often ending in /scim/v2)"
            ),
            SourceError::Network { url, .. } => format!(
                "{} could not be reached: check the URL, DNS, the firewall and any proxy \
                 (HTTPS_PROXY)",
                host_of(url)
            ),
            SourceError::InvalidResponse { url, .. } => {
                format!("{url} does not answer like a SCIM 2.0 server: check --base-url")
            }
            _ => err
                .hint()
                .unwrap_or_else(|| "check the SCIM server's URL and token".to_owned()),
        };
        Diagnosis {
            step: "SCIM server".to_owned(),
            problem: err.to_string(),
            fix,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_tenant_file_parses() {
        let text = tenant_toml(
            "hr",
            "https://idp.example/scim/v2",
            "hr-scim-token",
            "0 0 * * * *",
        );
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let source = parsed["source"].as_table().unwrap();
        assert_eq!(source["type"].as_str(), Some("scim"));
        assert_eq!(source["token_file"].as_str(), Some("hr-scim-token"));
    }

    #[test]
    fn a_refused_token_and_a_wrong_base_url_say_which() {
        let explain = ScimExplain {
            base_url: "https://idp.example/scim/v2".into(),
        };
        let http = |status| SourceError::Http {
            method: "GET".into(),
            url: "https://idp.example/scim/v2/ServiceProviderConfig".into(),
            status,
            reason: None,
            message: "no".into(),
        };
        assert!(explain
            .explain(&http(401))
            .fix
            .contains("refused the token"));
        assert!(explain
            .explain(&http(404))
            .fix
            .contains("--base-url must be the SCIM root"));
        assert!(check_base_url("idp.example").is_err());
        assert_eq!(
            check_base_url("https://idp.example/scim/v2/").unwrap(),
            "https://idp.example/scim/v2"
        );
    }
}
