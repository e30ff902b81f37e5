//! `dirsync setup scim-push TENANT --idp IDP`: a tenant the IdP provisions into (SCIM push).
//! Writes the tenant file and a fresh random bearer token (mode 0600) — no daemon needed for
//! that — then prints the base URL, the token and the IdP's console steps with both filled in,
//! and waits for the IdP's first request: the daemon serves it and records it in the tenant's
//! push request log, which the wait reads from the store (read-only), reporting what arrived.
//!
//! Must not: write to the store, or print the token anywhere but the terminal it was made for.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::args::ScimPushSetupArgs;
use super::console::Console;
use super::tenant_file::Staged;
use super::{exit, load_staged, toml_string, Context, SetupError};
use crate::config;
use crate::daemon::control::{self, Request};
use crate::source::push_console::{self, Idp};
use crate::store::push::{self, PushRequest};
use crate::store::{Store, StoreError};

/// How often the wait looks at the request log.
const POLL: Duration = Duration::from_millis(250);

pub async fn run(
    context: &Context,
    args: ScimPushSetupArgs,
    console: &mut Console<'_>,
) -> Result<u8, SetupError> {
    let tenant = args.tenant.clone();
    if !config::valid_tenant_id(&tenant) {
        return Err(SetupError::Usage(format!(
            "tenant id {tenant:?} must match [a-z0-9_-]+ (it becomes the file name {tenant}.toml)"
        )));
    }
    let idp = Idp::parse(&args.idp).ok_or_else(|| {
        SetupError::Usage(format!(
            "--idp {:?} is not an IdP dirsync knows: use one of {}",
            args.idp,
            push_console::idp_ids()
        ))
    })?;
    let base_url = base_url(context, &tenant, args.url_base.as_deref())?;
    let token_name = format!("{tenant}-scim-token");
    confirm_replace(context, &tenant, &token_name, &args, console)?;

    let token = new_token()?;
    let toml = tenant_toml(&tenant, idp, &base_url, &token_name);
    let staged = Staged::new(
        &context.global.tenants_dir,
        &tenant,
        &toml,
        Some((&token_name, format!("{token}\n").as_bytes())),
    )?;
    load_staged(&staged)?;
    let written = staged.commit()?;
    console.say(format!(
        "Wrote {} and {} (mode 0600).\n\
         \n\
         Base URL:  {}\n\
         Token:     {token}\n\
         (the token is shown only now; it is in the token file)\n",
        written.display(),
        written.with_file_name(&token_name).display(),
        idp.url_to_paste(&base_url),
    ));
    console.say(push_console::admin_steps(idp, &base_url, &token));
    if let Some(note) = push_console::reachability_note(idp, &base_url) {
        console.say(format!("\n{note}"));
    }
    console.say(
        "\nA running daemon serves the tenant after a reload (`systemctl reload dirsync`, or \
         SIGHUP to the `dirsync run` process).",
    );
    if args.wait == 0 {
        return Ok(exit::SUCCESS);
    }
    wait_for_first_request(
        context,
        &tenant,
        idp,
        Duration::from_secs(args.wait),
        console,
    )
    .await
}

/// `--url-base` with `/scim/v2/TENANT` added (unless it is there), else the daemon's
/// `http_listen`.
fn base_url(context: &Context, tenant: &str, url_base: Option<&str>) -> Result<String, SetupError> {
    let suffix = format!("/scim/v2/{tenant}");
    match url_base {
        Some(given) => {
            let url = url::Url::parse(given.trim()).ok().filter(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.query().is_none()
            });
            let Some(url) = url else {
                return Err(SetupError::Usage(format!(
                    "--url-base {given:?} is not an http(s) URL without a query, such as \
                     https://dirsync.example.com"
                )));
            };
            let text = url.as_str().trim_end_matches('/');
            Ok(if text.ends_with(&suffix) {
                text.to_owned()
            } else {
                format!("{text}{suffix}")
            })
        }
        None => match context.global.http_listen {
            Some(addr) => Ok(format!("http://{addr}{suffix}")),
            None => Err(SetupError::Usage(
                "http_listen is not set in the global config: the daemon serves push tenants on \
                 its HTTP listener, so set it (e.g. http_listen = \"127.0.0.1:9187\") and give \
                 the IdP its public URL with --url-base; nothing was written"
                    .into(),
            )),
        },
    }
}

/// An existing tenant (or token) of this id is replaced only when asked: `--yes`/`--force`,
/// or a yes in a terminal.
fn confirm_replace(
    context: &Context,
    tenant: &str,
    token_name: &str,
    args: &ScimPushSetupArgs,
    console: &mut Console<'_>,
) -> Result<(), SetupError> {
    let existing: Vec<String> = [
        context.tenant_path(tenant),
        context.global.tenants_dir.join(token_name),
    ]
    .into_iter()
    .filter(|path| path.exists())
    .map(|path| path.display().to_string())
    .collect();
    if existing.is_empty() || args.yes || args.force {
        return Ok(());
    }
    let question = format!(
        "{} already exist{}. Replace them (a new token: the IdP must be given it)?",
        existing.join(" and "),
        if existing.len() == 1 { "s" } else { "" }
    );
    if console.is_interactive() && std::io::stdin().is_terminal() {
        if console.confirm(&question, false)? {
            return Ok(());
        }
        return Err(SetupError::Usage(
            "nothing was written: the tenant is kept".into(),
        ));
    }
    Err(SetupError::Usage(format!(
        "{} already exist{}: setup never overwrites a tenant without --yes (or --force)",
        existing.join(" and "),
        if existing.len() == 1 { "s" } else { "" }
    )))
}

/// 32 random bytes, hex: 64 characters, safe in any header and config file.
fn new_token() -> Result<String, SetupError> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SetupError::Write("the system's random source failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn tenant_toml(tenant: &str, idp: Idp, base_url: &str, token_name: &str) -> String {
    format!(
        r#"# Tenant "{tenant}": provisioned by {name} over SCIM 2.0 (push mode).
# Written by `dirsync setup scim-push {tenant} --idp {idp}`; check it with `dirsync check-config`.
# {name} calls the daemon at {url}
# (the daemon's http_listen, or the public URL in front of it).
# A push tenant needs no schedule: every write the IdP makes is committed as it arrives.

[source]
type = "scim_push"
# The bearer token the IdP sends (`Authorization: Bearer <token>`), next to this file, mode 0600.
token_file = {token_name}
# suspended_users = "inactive"   # active = false -> state "inactive"; or "delete"
# nested_groups = "flatten"      # or "direct": only direct members count
# email_from = "emails"          # the primary, else the work email; "username": userName
# max_queued_writes = 1024       # writes waiting beyond this are answered 429 + Retry-After
# max_body_bytes = 1048576       # a request body over this is answered 413

# [filters], [roles], [attributes], [guard] and [[sinks]] apply as for any tenant.
"#,
        name = idp.name(),
        url = idp.url_to_paste(base_url),
        token_name = toml_string(token_name),
    )
}

/// How many logged requests one look at the log reads.
const PAGE: usize = 100;

/// The tenant's logged requests after `after_id`, oldest first (the push receiver's log).
async fn requests_after(
    store: &Store,
    tenant: &str,
    after_id: i64,
) -> Result<Vec<PushRequest>, StoreError> {
    let tenant = tenant.to_owned();
    store
        .run(move |conn| push::requests_after(conn, &tenant, after_id, PAGE))
        .await
}

/// The id of the tenant's latest logged request (0: none): requests before the wait (a
/// tenant set up again) do not count.
async fn latest_request_id(store: &Store, tenant: &str) -> Result<i64, StoreError> {
    let tenant = tenant.to_owned();
    store
        .run(move |conn| push::latest_requests(conn, &tenant, 1))
        .await
        .map(|latest| latest.first().map_or(0, |request| request.id))
}

async fn wait_for_first_request(
    context: &Context,
    tenant: &str,
    idp: Idp,
    wait: Duration,
    console: &mut Console<'_>,
) -> Result<u8, SetupError> {
    let deadline = Instant::now() + wait;
    let socket = &context.global.control_socket;
    match control::request(
        socket,
        &Request::Status {
            tenant: Some(tenant.to_owned()),
        },
    )
    .await
    {
        Ok(None) => {
            console.say(format!(
                "\nNot waiting for {}'s first request: no daemon answers on the control socket \
                 {}. Start it (`systemctl start dirsync` or `{}`); the tenant's files are written.",
                idp.name(),
                socket.display(),
                context.command("run")
            ));
            return Ok(exit::VERIFICATION_FAILED);
        }
        Err(err) => {
            console.say(format!(
                "\nNot waiting for {}'s first request: {err}",
                idp.name()
            ));
            return Ok(exit::VERIFICATION_FAILED);
        }
        Ok(Some(response)) if !response.ok => console.say(format!(
            "\nThe daemon does not serve tenant {tenant} yet: reload it (`systemctl reload \
             dirsync`, or SIGHUP) so that it reads the new file."
        )),
        Ok(Some(_)) => {}
    }
    console.say(format!(
        "\nWaiting up to {} s for {}'s first request (Ctrl-C stops waiting; the tenant stays)…",
        wait.as_secs(),
        idp.name()
    ));
    let mut after_id = None;
    while Instant::now() < deadline {
        // The daemon creates the database on its first start: until then there is no log.
        if let Some(store) = Store::open_existing_global(&context.global).ok().flatten() {
            let start = match after_id {
                Some(id) => Ok(id),
                None => latest_request_id(&store, tenant).await,
            };
            if let Ok(start) = start {
                after_id = Some(start);
                if let Ok(seen) = requests_after(&store, tenant, start).await {
                    for request in &seen {
                        after_id = Some(request.id);
                        console.say(describe(request, idp));
                        if (200..300).contains(&request.status) {
                            return Ok(exit::SUCCESS);
                        }
                    }
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
    console.say(format!(
        "No request from {} arrived within {} s. Check that the IdP has the base URL and token \
         above (and its connection test or provisioning was started), that the daemon was \
         reloaded, and that the URL is reachable from the IdP; the tenant's files are written. \
         `{}` shows the tenant's last request once one arrives.",
        idp.name(),
        wait.as_secs(),
        context.command(&format!("status {tenant}"))
    ));
    Ok(exit::VERIFICATION_FAILED)
}

/// "received GET /Users?filter=userName eq "…" from Okta (User-Agent …): the connection works".
pub fn describe(request: &PushRequest, expected: Idp) -> String {
    let from = request
        .user_agent
        .as_deref()
        .and_then(Idp::from_user_agent)
        .unwrap_or(expected);
    let agent = request
        .user_agent
        .as_deref()
        .map(|agent| format!(" (User-Agent {agent})"))
        .unwrap_or_default();
    let what = format!(
        "received {} {} from {}{agent}",
        request.method,
        percent_decoded(&request.path),
        from.name()
    );
    let detail = request
        .detail
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    match request.status {
        200..=299 => format!("{what}: the connection works"),
        401 => format!(
            "{what}: 401, dirsync refused its token{detail}. Paste the token above into the \
             IdP's token field again (all 64 characters; Okta's HTTP Header: \"Bearer \" and the \
             token); still waiting"
        ),
        404 => format!(
            "{what}: 404{detail}. Give the IdP the base URL above exactly (it ends in \
             /scim/v2/<tenant>); still waiting"
        ),
        status => format!("{what}: {status}{detail}; still waiting"),
    }
}

/// `%20` (and `+` in the query, as Entra ID writes spaces) decoded for reading; what does not
/// decode is kept as it came.
fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let query = path.find('?').unwrap_or(bytes.len());
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'+', _, _) if i > query => {
                out.push(b' ');
                i += 1;
            }
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(value as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_tenant_file_is_a_push_tenant_naming_its_token() {
        let text = tenant_toml(
            "okta-corp",
            Idp::Okta,
            "https://d.example/scim/v2/okta-corp",
            "okta-corp-scim-token",
        );
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let source = parsed["source"].as_table().unwrap();
        assert_eq!(source["type"].as_str(), Some("scim_push"));
        assert_eq!(source["token_file"].as_str(), Some("okta-corp-scim-token"));
        assert!(!parsed.contains_key("schedule"));
    }

    #[test]
    fn tokens_are_64_hex_characters_and_fresh() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_first_request_is_described_as_it_arrived() {
        let request = PushRequest {
            id: 1,
            at_ms: 0,
            method: "GET".into(),
            path:
                "/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100"
                    .into(),
            status: 200,
            latency_ms: 1.0,
            user_agent: Some("Okta SCIM Client 1.0.0".into()),
            resource_kind: None,
            resource_id: None,
            detail: None,
            first_seq: None,
            last_seq: None,
            body: None,
        };
        assert_eq!(
            describe(&request, Idp::Generic),
            "received GET /Users?filter=userName eq \"test.user@okta.local\"&startIndex=1&count=100 \
             from Okta (User-Agent Okta SCIM Client 1.0.0): the connection works"
        );
        let refused = PushRequest {
            status: 401,
            user_agent: None,
            ..request
        };
        let text = describe(&refused, Idp::Entra);
        assert!(text.contains("from Microsoft Entra ID: 401"), "{text}");
        assert!(text.contains("still waiting"), "{text}");
        assert_eq!(percent_decoded("/a%2"), "/a%2");
        assert_eq!(
            percent_decoded("/Groups?excludedAttributes=members&filter=displayName+eq+%22a+b%22"),
            "/Groups?excludedAttributes=members&filter=displayName eq \"a b\""
        );
        assert_eq!(percent_decoded("/Users/a+b"), "/Users/a+b");
    }
}
