//! The IdPs' console facts for a push tenant (`type = "scim_push"`): every message dirsync
//! shows that names a field, tab or button of Okta's, Entra ID's, OneLogin's or JumpCloud's
//! admin console, or tells a customer's own SCIM client what to send — `dirsync setup
//! scim-push` and anything else that shows onboarding steps (the web console). Kept in one
//! place, as the Google ones are in `source::google::console`, so that a console the IdP
//! renames is changed once. The names follow the IdPs' documentation as of 2026.
//!
//! Must not: do I/O or decide anything; callers pick the message.

use std::fmt;

/// The query flag that switches Entra ID's SCIM client to RFC-conforming requests
/// (lower-case ops, booleans as booleans, PATCH paths as the RFC writes them).
pub const ENTRA_SCIM_FLAG: &str = "aadOptscim062020";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idp {
    Okta,
    Entra,
    OneLogin,
    JumpCloud,
    /// Any RFC 7644 client: the customer's own, or an IdP without a page here.
    Generic,
}

impl Idp {
    pub const ALL: [Idp; 5] = [
        Idp::Okta,
        Idp::Entra,
        Idp::OneLogin,
        Idp::JumpCloud,
        Idp::Generic,
    ];

    /// The `--idp` value.
    pub fn id(self) -> &'static str {
        match self {
            Idp::Okta => "okta",
            Idp::Entra => "entra",
            Idp::OneLogin => "onelogin",
            Idp::JumpCloud => "jumpcloud",
            Idp::Generic => "generic",
        }
    }

    pub fn parse(text: &str) -> Option<Idp> {
        let text = text.trim().to_ascii_lowercase();
        match text.as_str() {
            "azure" | "azuread" | "aad" | "entra-id" | "entraid" => Some(Idp::Entra),
            _ => Idp::ALL.into_iter().find(|idp| idp.id() == text),
        }
    }

    /// The product's name, as a sentence says it.
    pub fn name(self) -> &'static str {
        match self {
            Idp::Okta => "Okta",
            Idp::Entra => "Microsoft Entra ID",
            Idp::OneLogin => "OneLogin",
            Idp::JumpCloud => "JumpCloud",
            Idp::Generic => "the SCIM client",
        }
    }

    /// The IdP a request's `User-Agent` names, if any (Okta sends `Okta SCIM Client 1.0.0`;
    /// the others name themselves less uniformly, so this matches on the vendor's name).
    pub fn from_user_agent(user_agent: &str) -> Option<Idp> {
        let agent = user_agent.to_ascii_lowercase();
        if agent.contains("okta") {
            Some(Idp::Okta)
        } else if ["microsoft", "azure", "aad", "entra"]
            .iter()
            .any(|name| agent.contains(name))
        {
            Some(Idp::Entra)
        } else if agent.contains("onelogin") {
            Some(Idp::OneLogin)
        } else if agent.contains("jumpcloud") {
            Some(Idp::JumpCloud)
        } else {
            None
        }
    }

    /// The URL to paste into the IdP's URL field: the base URL, and for Entra ID with the
    /// flag that makes its requests RFC-conforming.
    pub fn url_to_paste(self, base_url: &str) -> String {
        match self {
            Idp::Entra => {
                let join = if base_url.contains('?') { '&' } else { '?' };
                format!("{base_url}{join}{ENTRA_SCIM_FLAG}")
            }
            _ => base_url.to_owned(),
        }
    }
}

impl fmt::Display for Idp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The comma-separated `--idp` values, for usage errors.
pub fn idp_ids() -> String {
    Idp::ALL.map(Idp::id).join(", ")
}

/// What the IdP's admin must do, with this tenant's base URL and token filled in.
pub fn admin_steps(idp: Idp, base_url: &str, token: &str) -> String {
    let url = idp.url_to_paste(base_url);
    match idp {
        Idp::Okta => format!(
            "In the Okta Admin Console (an app integration made with Create App Integration,\n\
             SAML 2.0 or SWA):\n\
             \n\
             1. Applications → Applications → your app → General → App Settings → Edit:\n\
             \x20  Provisioning: SCIM → Save. A Provisioning tab appears.\n\
             2. Provisioning → Integration → Edit:\n\
             \x20    SCIM connector base URL:             {url}\n\
             \x20    Unique identifier field for users:   userName\n\
             \x20    Supported provisioning actions:      Import New Users and Profile Updates,\n\
             \x20                                         Push New Users, Push Profile Updates,\n\
             \x20                                         Push Groups\n\
             \x20    Authentication Mode:                 HTTP Header\n\
             \x20    Authorization:                       Bearer {token}\n\
             \x20  (\"Bearer\", a space, the token; where the field already shows Bearer, the\n\
             \x20  token alone.)\n\
             \x20  Click Test Connector Configuration (Okta reads /ServiceProviderConfig, a\n\
             \x20  user list and a group list), close it, then Save.\n\
             3. Provisioning → To App → Edit: enable Create Users, Update User Attributes and\n\
             \x20  Deactivate Users → Save.\n\
             4. Assignments → Assign → Assign to People / Assign to Groups: the users dirsync\n\
             \x20  should see. Okta creates each one (GET /Users?filter=userName eq \"…\", then POST).\n\
             5. Push Groups → + Push Groups → Find groups by name: the groups dirsync should\n\
             \x20  see (with Push group memberships immediately) → Save.\n\
             \n\
             Okta deactivates a user with PATCH active=false and never deletes one."
        ),
        Idp::Entra => format!(
            "In the Microsoft Entra admin center (entra.microsoft.com):\n\
             \n\
             1. Entra ID → Enterprise apps → New application → Create your own application:\n\
             \x20  a name, and \"Integrate any other application you don't find in the gallery\n\
             \x20  (Non-gallery)\" → Create.\n\
             2. In the app: Provisioning → Get started (or New configuration); Provisioning Mode:\n\
             \x20  Automatic. Under Admin Credentials:\n\
             \x20    Tenant URL:    {url}\n\
             \x20    Secret Token:  {token}\n\
             \x20  (keep ?{ENTRA_SCIM_FLAG} at the end of the Tenant URL: it makes Entra's SCIM\n\
             \x20  requests follow the RFC.) Click Test Connection (Entra looks up a random user\n\
             \x20  and group by filter), then Save (or Create).\n\
             3. Mappings: keep Provision Microsoft Entra ID Users and Provision Microsoft Entra\n\
             \x20  ID Groups enabled. The default user mapping sends userPrincipalName as userName\n\
             \x20  and mail as emails[type eq \"work\"].value; dirsync's email is the work email\n\
             \x20  when there is one, so users whose UPN differs from their mail keep their mail.\n\
             4. Settings → Scope: Sync only assigned users and groups. Users and groups → Add\n\
             \x20  user/group: the users and groups dirsync should see.\n\
             5. Provisioning Status: On → Save (or Overview → Start provisioning). The first\n\
             \x20  cycle starts within minutes and later cycles run about every 40 minutes;\n\
             \x20  Provision on demand pushes one user now.\n\
             \n\
             Entra ID soft-deletes with PATCH active=false and deletes with DELETE /Users/{{id}}."
        ),
        Idp::OneLogin => format!(
            "In the OneLogin admin portal:\n\
             \n\
             1. Applications → Applications → Add App → search \"SCIM Provisioner with SAML\n\
             \x20  (SCIM v2 Enterprise)\" → a display name → Save.\n\
             2. Configuration tab, under API Connection:\n\
             \x20    SCIM Base URL:      {url}\n\
             \x20    SCIM Bearer Token:  {token}\n\
             \x20  keep the default SCIM JSON Template, then API Status → Enable (OneLogin makes\n\
             \x20  a first request to the base URL) → Save.\n\
             3. Provisioning tab: tick Enable provisioning; under \"When users are deleted in\n\
             \x20  OneLogin…\" pick Delete (dirsync emits user.deleted) or Suspend (user.updated,\n\
             \x20  inactive), and under \"When user accounts are suspended…\" pick Suspend → Save.\n\
             4. Parameters tab → Groups: tick Include in User Provisioning → Save, to send\n\
             \x20  group memberships (PATCH /Groups).\n\
             5. Users: assign the app to the users dirsync should see (Users → a user →\n\
             \x20  Applications → +, or a role that has the app)."
        ),
        Idp::JumpCloud => format!(
            "In the JumpCloud Admin Portal:\n\
             \n\
             1. SSO Applications → + Add New Application → Custom Application; select Export\n\
             \x20  users to this app (Identity Management) → a name → Save Application →\n\
             \x20  Configure Application.\n\
             2. Identity Management tab:\n\
             \x20    SCIM Version:     SCIM 2.0\n\
             \x20    Base URL:         {url}\n\
             \x20    Token Key:        {token}\n\
             \x20    Test User Email:  the address of a user in your JumpCloud directory\n\
             \x20  Click Test Connection (JumpCloud creates a test user and group, then removes\n\
             \x20  them), then Activate → Save.\n\
             3. User Groups tab: tick the groups whose users (and the groups themselves)\n\
             \x20  dirsync should see → Save."
        ),
        Idp::Generic => format!(
            "Point the SCIM 2.0 client (RFC 7644) at the base URL with the token:\n\
             \n\
             \x20    Base URL:       {url}\n\
             \x20    Authorization:  Bearer {token}\n\
             \x20    Content-Type:   application/scim+json\n\
             \n\
             It serves /ServiceProviderConfig, /ResourceTypes, /Schemas, /Users and /Groups\n\
             (list with filter, startIndex, count; GET, POST, PUT, PATCH, DELETE by id).\n\
             A first request to try by hand:\n\
             \n\
             \x20    curl -H 'Authorization: Bearer {token}' '{url}/Users?count=1'"
        ),
    }
}

/// Said when the base URL is plain HTTP or a loopback address: the IdP's cloud cannot reach it.
pub fn reachability_note(idp: Idp, base_url: &str) -> Option<String> {
    let local = [
        "://127.",
        "://localhost",
        "://[::1]",
        "://0.0.0.0",
        "://[::]",
    ]
    .iter()
    .any(|host| base_url.contains(host));
    let plain = base_url.starts_with("http://");
    if idp == Idp::Generic && !local {
        return None;
    }
    (local || plain).then(|| {
        format!(
            "Note: {} calls the base URL from the internet{}.\n\
             Put dirsync behind an HTTPS reverse proxy and run setup again with\n\
             --url-base https://<public host> (the path /scim/v2/<tenant> is added),\n\
             or give the IdP that URL yourself.",
            idp.name(),
            if idp == Idp::Generic {
                " (unless it runs on this machine)"
            } else {
                ", over HTTPS only"
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://dirsync.example.com/scim/v2/okta-corp";
    const TOKEN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    #[test]
    fn every_idp_gets_its_fields_with_the_values_filled_in() {
        for idp in Idp::ALL {
            let steps = admin_steps(idp, URL, TOKEN);
            assert!(steps.contains(TOKEN), "{idp}: {steps}");
            assert!(steps.contains(&idp.url_to_paste(URL)), "{idp}: {steps}");
            assert_eq!(Idp::parse(idp.id()), Some(idp));
        }
        let okta = admin_steps(Idp::Okta, URL, TOKEN);
        for field in [
            "SCIM connector base URL:             https://dirsync.example.com/scim/v2/okta-corp",
            "Unique identifier field for users:   userName",
            "Push Groups",
            "Test Connector Configuration",
            "HTTP Header",
        ] {
            assert!(okta.contains(field), "{field:?} in {okta}");
        }
        let entra = admin_steps(Idp::Entra, URL, TOKEN);
        assert!(
            entra.contains(&format!("Tenant URL:    {URL}?aadOptscim062020")),
            "{entra}"
        );
        for field in [
            "Secret Token:  ",
            "Test Connection",
            "Provisioning Mode:",
            "Mappings",
        ] {
            assert!(entra.contains(field), "{field:?} in {entra}");
        }
    }

    #[test]
    fn only_entra_gets_the_flag_on_its_url() {
        assert_eq!(
            Idp::Entra.url_to_paste("https://h/scim/v2/t"),
            "https://h/scim/v2/t?aadOptscim062020"
        );
        assert_eq!(
            Idp::Entra.url_to_paste("https://h/scim/v2/t?x=1"),
            "https://h/scim/v2/t?x=1&aadOptscim062020"
        );
        assert_eq!(Idp::Okta.url_to_paste(URL), URL);
        assert_eq!(Idp::parse("Azure"), Some(Idp::Entra));
        assert_eq!(Idp::parse("google"), None);
    }

    #[test]
    fn user_agents_name_their_idp() {
        assert_eq!(
            Idp::from_user_agent("Okta SCIM Client 1.0.0"),
            Some(Idp::Okta)
        );
        assert_eq!(
            Idp::from_user_agent("Microsoft.AAD.Provisioning/1.0"),
            Some(Idp::Entra)
        );
        assert_eq!(Idp::from_user_agent("curl/8.5.0"), None);
    }

    #[test]
    fn a_local_or_plain_http_url_is_flagged_for_a_cloud_idp() {
        let note = reachability_note(Idp::Okta, "http://127.0.0.1:8080/scim/v2/t");
        assert!(note.is_some_and(|n| n.contains("--url-base")));
        assert!(reachability_note(Idp::Okta, URL).is_none());
        assert!(reachability_note(Idp::Generic, "http://10.0.0.5:8080/scim/v2/t").is_none());
        assert!(reachability_note(Idp::Generic, "http://localhost:8080/scim/v2/t").is_some());
    }
}
