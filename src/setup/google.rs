//! `dirsync setup google TENANT`: the service-account key, the admin to impersonate, the
//! customer or domain; the Admin console steps with this key's client ID; the tenant file; and
//! each way Google refuses turned into what to fix.

use std::path::{Path, PathBuf};

use super::args::GoogleSetupArgs;
use super::console::Console;
use super::{
    ask_schedule, check_target, messages, toml_string, verify_and_write, Context, Diagnosis,
    Explain, Prepared, SetupError,
};
use crate::config::read_service_account_key;
use crate::source::SourceError;

pub const DEFAULT_API_BASE: &str = "https://admin.googleapis.com";

/// What the key file says about the service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// The numeric "Unique ID" the admin allow-lists (falls back to the email when absent).
    pub client_id: String,
    pub client_email: String,
    pub project_id: Option<String>,
    pub token_uri: String,
}

/// Which account the lists cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    Customer(String),
    Domain(String),
}

impl Account {
    /// An answer to "customer id or domain": a dot makes it a domain.
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        if text.contains('.') {
            Account::Domain(text.to_ascii_lowercase())
        } else {
            Account::Customer(text.to_owned())
        }
    }
}

/// Everything the tenant file is made of.
#[derive(Debug, Clone)]
pub struct GoogleAnswers {
    pub key_file: PathBuf,
    pub key: KeyFacts,
    pub subject: String,
    pub account: Account,
    pub schedule: String,
    pub api_base: Option<String>,
}

pub async fn run(
    context: &Context,
    args: GoogleSetupArgs,
    console: &mut Console<'_>,
) -> Result<u8, SetupError> {
    let tenant = args.common.tenant.clone();
    let key_name = format!("{tenant}-service-account.json");
    check_target(context, &tenant, Some(&key_name), args.common.force)?;
    console.say(format!(
        "Setting up tenant {tenant} (Google Workspace) in {}",
        context.global.tenants_dir.display()
    ));

    let (key_file, key, key_bytes) = console.valid(
        args.key_file.map(|p| p.display().to_string()),
        "--key-file",
        "Service-account key file (JSON, from Google Cloud console)",
        None,
        |text| read_key(Path::new(text.trim_matches(['"', '\'']))),
    )?;
    console.say(format!(
        "  service account {} (client ID {}{})",
        key.client_email,
        key.client_id,
        key.project_id
            .as_deref()
            .map(|p| format!(", project {p}"))
            .unwrap_or_default()
    ));
    let subject = console.valid(
        args.subject,
        "--subject",
        "Admin email the service account impersonates",
        None,
        |text| {
            if text.contains('@') && !text.contains(char::is_whitespace) {
                Ok(text.to_owned())
            } else {
                Err(format!("{text:?} is not an email address"))
            }
        },
    )?;
    let account = match (args.customer, args.domain) {
        (_, Some(domain)) => Account::Domain(domain.trim().to_ascii_lowercase()),
        (Some(customer), None) => Account::Customer(customer.trim().to_owned()),
        (None, None) => Account::parse(&console.value(
            None,
            "--customer",
            "Customer ID or domain to read (my_customer: the admin's whole account)",
            Some("my_customer"),
        )?),
    };
    let schedule = ask_schedule(console, args.common.schedule.clone())?;
    let answers = GoogleAnswers {
        key_file,
        key,
        subject,
        account,
        schedule,
        api_base: args
            .api_base
            .map(|base| base.trim_end_matches('/').to_owned())
            .filter(|base| base != DEFAULT_API_BASE),
    };

    console.say(format!(
        "\n{}\n",
        messages::admin_instructions(
            &answers.key.client_id,
            &answers.key.client_email,
            answers.key.project_id.as_deref(),
            &answers.subject,
        )
    ));
    console.pause("Press Enter once the super admin has done this (Ctrl-C to stop)")?;

    let explain = GoogleExplain {
        key: answers.key.clone(),
        subject: answers.subject.clone(),
    };
    let prepared = Prepared {
        tenant: &tenant,
        toml: tenant_toml(&tenant, &answers, &key_name),
        secret: Some((key_name.clone(), key_bytes)),
        common: &args.common,
    };
    verify_and_write(context, prepared, &explain, console).await
}

/// Reads and checks a key file: its facts and its bytes (copied as they are).
pub fn read_key(path: &Path) -> Result<(PathBuf, KeyFacts, Vec<u8>), String> {
    let key = read_service_account_key(path)?;
    let bytes =
        std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let facts = KeyFacts {
        client_id: key
            .client_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| key.client_email.clone()),
        client_email: key.client_email.clone(),
        project_id: key.project_id.clone().filter(|p| !p.is_empty()),
        token_uri: key.token_uri.clone(),
    };
    Ok((path.to_owned(), facts, bytes))
}

/// The commented tenant file.
pub fn tenant_toml(tenant: &str, answers: &GoogleAnswers, key_name: &str) -> String {
    let (customer_line, domain_line) = match &answers.account {
        Account::Customer(customer) => (
            format!("customer = {}", toml_string(customer)),
            "# domain = \"example.com\"             # read one domain instead of the whole account"
                .to_owned(),
        ),
        Account::Domain(domain) => (
            "# customer = \"my_customer\"".to_owned(),
            format!("domain = {}", toml_string(domain)),
        ),
    };
    let api_base_line = match &answers.api_base {
        Some(base) => format!("api_base = {}", toml_string(base)),
        None => format!("# api_base = \"{DEFAULT_API_BASE}\""),
    };
    format!(
        r#"# Tenant "{tenant}": a Google Workspace account, read through the Admin SDK Directory API.
# Written by `dirsync setup google {tenant}`; check it with `dirsync check-config --connect`.

# When to sync: cron with seconds, in UTC.
schedule = {schedule}
enabled  = true

[source]
type = "google"
# The service-account key (client ID {client_id}), copied next to this file with mode 0600.
# Domain-wide delegation must grant that client ID the read-only scopes dirsync requests.
credentials_file = {key_name}
# The admin the service account impersonates: needs the Users and Groups read privileges.
subject = {subject}
# Which account to read: "my_customer" is the subject's own account.
{customer_line}
{domain_line}
{api_base_line}
# suspended_users = "inactive"         # or "delete": drop suspended users instead
# nested_groups   = "flatten"          # or "direct": only direct members count
# requests_per_minute = 2400           # the Admin SDK's default per-user quota

# The deletion guard (defaults shown): refuse a run that deletes more than this share.
# [guard]
# max_delete_percent = 20
# min_deletes = 10

# Optional: sync only some groups or org units.
# [filters]
# groups    = ["eng-*@example.com"]
# org_units = ["/Engineering"]
"#,
        schedule = toml_string(&answers.schedule),
        client_id = answers.key.client_id,
        key_name = toml_string(key_name),
        subject = toml_string(&answers.subject),
    )
}

/// Turns Google's refusals into what to fix, with this key's values.
pub struct GoogleExplain {
    pub key: KeyFacts,
    pub subject: String,
}

impl Explain for GoogleExplain {
    fn explain(&self, err: &SourceError) -> Diagnosis {
        let (step, fix) = match err {
            // The source keeps the OAuth error code only in the message ("refused: <code>: …").
            SourceError::Auth { message, hint } => {
                let fix = if message.contains("unauthorized_client") {
                    messages::delegation_not_granted(&self.key.client_id)
                } else if message.contains("invalid_grant")
                    && message.contains("Invalid email or User ID")
                {
                    format!(
                        "no such user: {} is not a user of the Workspace account; check the \
                         address (--subject) and use an existing admin's email",
                        self.subject
                    )
                } else {
                    hint.clone().unwrap_or_else(|| {
                        format!(
                            "the token endpoint {} refused the service account {}",
                            host_of(&self.key.token_uri),
                            self.key.client_email
                        )
                    })
                };
                ("access token".to_owned(), fix)
            }
            SourceError::Network { url, .. } => {
                let (step, what) = if url.starts_with(&self.key.token_uri) {
                    (
                        "access token".to_owned(),
                        "the token endpoint, the key's token_uri",
                    )
                } else {
                    (api_method(url), "the Directory API, --api-base")
                };
                (
                    step,
                    format!(
                        "{} could not be reached ({what}): check DNS, the firewall and any proxy \
                         (HTTPS_PROXY) between this machine and it",
                        host_of(url)
                    ),
                )
            }
            SourceError::Http {
                url,
                status,
                reason,
                message,
                ..
            } => {
                let reason = reason.as_deref().unwrap_or("");
                let fix = match *status {
                    403 if reason == "accessNotConfigured"
                        || message.contains("SERVICE_DISABLED")
                        || message.contains("has not been used in project") =>
                    {
                        messages::api_not_enabled(self.key.project_id.as_deref())
                    }
                    403 if reason == "forbidden" => {
                        messages::subject_not_admin(Some(&self.subject))
                    }
                    403 if reason == "insufficientPermissions" => messages::insufficient_scopes(),
                    400 | 404
                        if message.contains("Domain not found")
                            || reason == "badRequest"
                            || reason == "notFound" =>
                    {
                        "the customer id or domain is wrong: use my_customer (--customer), the \
                         account's customer id, or one of its domains (--domain)"
                            .to_owned()
                    }
                    _ => err.hint().unwrap_or_else(|| {
                        format!(
                            "the Directory API at {} answered HTTP {status}: see the message above",
                            host_of(url)
                        )
                    }),
                };
                (api_method(url), fix)
            }
            SourceError::InvalidResponse { url, .. } => (
                api_method(url),
                format!(
                    "{} does not answer like Google's Directory API: check --api-base (or the key's token_uri)",
                    host_of(url)
                ),
            ),
            SourceError::Protocol(_) | SourceError::Cancelled | SourceError::PushTenant => (
                "connection".to_owned(),
                err.hint()
                    .unwrap_or_else(|| "check the values given to setup".to_owned()),
            ),
        };
        Diagnosis {
            step,
            problem: err.to_string(),
            fix,
        }
    }
}

/// `host[:port]` of a URL, for "could not reach".
pub fn host_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => url.to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

/// The Directory method a URL calls.
fn api_method(url: &str) -> String {
    let path = url::Url::parse(url)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    let method = if path.ends_with("/members") {
        "members.list"
    } else if path.ends_with("/users") {
        "users.list"
    } else if path.ends_with("/groups") {
        "groups.list"
    } else {
        "Directory API"
    };
    method.to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn explain() -> GoogleExplain {
        GoogleExplain {
            key: KeyFacts {
                client_id: "118000000000000000001".into(),
                client_email: "dirsync@acme-project.iam.gserviceaccount.com".into(),
                project_id: Some("acme-project".into()),
                token_uri: "https://oauth2.googleapis.com/token".into(),
            },
            subject: "admin@acme.example".into(),
        }
    }

    fn http(status: u16, reason: Option<&str>, message: &str) -> SourceError {
        SourceError::Http {
            method: "GET".into(),
            url: "https://admin.googleapis.com/admin/directory/v1/users?customer=my_customer"
                .into(),
            status,
            reason: reason.map(str::to_owned),
            message: message.into(),
        }
    }

    #[test]
    fn refused_delegation_names_the_client_id_and_the_scopes() {
        let err = SourceError::Auth {
            message: "the token endpoint oauth2.googleapis.com refused: unauthorized_client: Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.".into(),
            hint: None,
        };
        let d = explain().explain(&err);
        assert_eq!(d.step, "access token");
        assert!(d.fix.starts_with("domain-wide delegation is not granted for client ID 118000000000000000001 with these scopes"));
        assert!(d.fix.contains(&messages::delegation_scopes()));
    }

    #[test]
    fn unknown_subject_is_no_such_user() {
        let err = SourceError::Auth {
            message: "the token endpoint oauth2.googleapis.com refused: invalid_grant: Invalid email or User ID".into(),
            hint: None,
        };
        let d = explain().explain(&err);
        assert!(
            d.fix.starts_with("no such user: admin@acme.example"),
            "{}",
            d.fix
        );
    }

    #[test]
    fn a_403_on_users_list_is_a_subject_without_admin_privileges() {
        let d = explain().explain(&http(
            403,
            Some("forbidden"),
            "Not Authorized to access this resource/api",
        ));
        assert_eq!(d.step, "users.list");
        assert!(d.fix.contains(
            "admin@acme.example is not an admin with the Users and Groups read privileges"
        ));
    }

    #[test]
    fn a_disabled_api_names_the_api_and_the_project() {
        // Google's body: errors[0].reason accessNotConfigured, details reason SERVICE_DISABLED.
        let body = r#"{"error":{"code":403,"message":"Admin SDK API has not been used in project 123456789012 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/admin.googleapis.com/overview?project=123456789012 then retry.","errors":[{"message":"Admin SDK API has not been used in project 123456789012 before or it is disabled.","domain":"usageLimits","reason":"accessNotConfigured","extendedHelp":"https://console.developers.google.com"}],"status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"SERVICE_DISABLED","domain":"googleapis.com"}]}}"#;
        let (reason, message) = crate::source::http::error_details(body);
        let d = explain().explain(&http(403, reason.as_deref(), &message));
        assert!(
            d.fix.contains("Admin SDK API (admin.googleapis.com)"),
            "{}",
            d.fix
        );
        assert!(d.fix.contains("project acme-project"), "{}", d.fix);
        assert!(d.fix.contains(
            "console.cloud.google.com/apis/library/admin.googleapis.com?project=acme-project"
        ));
        // The newer body without errors[] is recognised by its message.
        let d = explain().explain(&http(
            403,
            None,
            "Admin SDK API has not been used in project 1 before or it is disabled. SERVICE_DISABLED",
        ));
        assert!(d.fix.contains("enable the Admin SDK API"), "{}", d.fix);
    }

    #[test]
    fn network_errors_name_the_host() {
        let err = SourceError::Network {
            url: "https://oauth2.googleapis.com/token".into(),
            message: "token endpoint host oauth2.googleapis.com unreachable: dns error".into(),
        };
        let d = explain().explain(&err);
        assert_eq!(d.step, "access token");
        assert!(d
            .fix
            .starts_with("oauth2.googleapis.com could not be reached (the token endpoint"));
        let err = SourceError::Network {
            url: "http://127.0.0.1:9/admin/directory/v1/groups?customer=my_customer".into(),
            message: "connection refused".into(),
        };
        let d = explain().explain(&err);
        assert_eq!(d.step, "groups.list");
        assert!(d
            .fix
            .starts_with("127.0.0.1:9 could not be reached (the Directory API"));
    }

    #[test]
    fn the_tenant_file_validates_and_keeps_values_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let answers = GoogleAnswers {
            key_file: dir.path().join("k.json"),
            key: explain().key,
            subject: "admin@acme.example".into(),
            account: Account::Domain("acme.example".into()),
            schedule: "0 0 * * * *".into(),
            api_base: Some("http://127.0.0.1:8085".into()),
        };
        let text = tenant_toml("acme", &answers, "acme-service-account.json");
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["schedule"].as_str(), Some("0 0 * * * *"));
        let source = parsed["source"].as_table().unwrap();
        assert_eq!(source["domain"].as_str(), Some("acme.example"));
        assert!(!source.contains_key("customer"));
        assert_eq!(source["api_base"].as_str(), Some("http://127.0.0.1:8085"));
        assert_eq!(
            source["credentials_file"].as_str(),
            Some("acme-service-account.json")
        );
    }

    #[test]
    fn an_answer_with_a_dot_is_a_domain() {
        assert_eq!(
            Account::parse("Acme.Example"),
            Account::Domain("acme.example".into())
        );
        assert_eq!(
            Account::parse("C01abc234"),
            Account::Customer("C01abc234".into())
        );
    }
}
