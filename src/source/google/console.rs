//! Google's console facts: every message dirsync shows that names a Google console path, a
//! Google API, or the OAuth scopes — the source's error hints and `dirsync setup google` alike. Kept in one place so that a console menu Google renames, or a scope the source
//! starts requesting, is changed once and every message follows; the tests check that the
//! scopes an admin is told to grant are exactly `google::SCOPES`, the scopes the source asks for.
//!
//! Must not: do I/O or decide anything; callers pick the message.

use super::SCOPES;

/// Where domain-wide delegation is granted, in the Admin console.
pub const DELEGATION_PATH: &str =
    "Security → Access and data control → API controls → Domain-wide delegation";
/// The same page, direct.
pub const DELEGATION_URL: &str = "https://admin.google.com/ac/owl/domainwidedelegation";
/// Where admin roles and their privileges are assigned, in the Admin console.
pub const ADMIN_ROLES_PATH: &str = "Account → Admin roles";
/// Where service-account keys are made, in the Google Cloud console.
pub const SERVICE_ACCOUNT_KEYS_PATH: &str = "IAM & Admin → Service Accounts → Keys";
/// The Google Cloud API the Directory calls belong to.
pub const ADMIN_SDK_API: &str = "Admin SDK API (admin.googleapis.com)";

/// The scopes to paste into the delegation entry: `google::SCOPES`, comma-separated, as the
/// Admin console expects them.
pub fn delegation_scopes() -> String {
    SCOPES.join(",")
}

/// The Cloud console page that enables the Admin SDK API in `project`.
pub fn enable_api_url(project: Option<&str>) -> String {
    match project {
        Some(project) => format!(
            "https://console.cloud.google.com/apis/library/admin.googleapis.com?project={project}"
        ),
        None => "https://console.cloud.google.com/apis/library/admin.googleapis.com".to_owned(),
    }
}

/// What the customer's super admin must do once, with this tenant's values filled in.
pub fn admin_instructions(
    client_id: &str,
    client_email: &str,
    project: Option<&str>,
    subject: &str,
) -> String {
    let project_name = project.unwrap_or("the service account's project");
    format!(
        "What the Google Workspace super admin must do (once):\n\
         \n\
         1. In the Google Cloud console, project {project_name}: enable the {ADMIN_SDK_API}.\n\
         \x20  {enable}\n\
         \n\
         2. In the Admin console (admin.google.com): {DELEGATION_PATH} → Add new\n\
         \x20  ({DELEGATION_URL}):\n\
         \x20    Client ID:    {client_id}\n\
         \x20    OAuth scopes: {scopes}\n\
         \x20  (the client ID of the service account {client_email};\n\
         \x20  grant every scope: Google refuses the token when one is missing)\n\
         \n\
         3. Check that {subject}, the user dirsync impersonates, is an admin whose role has\n\
         \x20  the Users → Read and Groups → Read privileges (Admin console: {ADMIN_ROLES_PATH}).\n\
         \n\
         A new delegation usually works within minutes; Google says it can take up to 24 hours.",
        enable = enable_api_url(project),
        scopes = delegation_scopes(),
    )
}

/// The token endpoint answered `unauthorized_client`.
pub fn delegation_not_granted(client_id: &str) -> String {
    format!(
        "domain-wide delegation is not granted for client ID {client_id} with these scopes: {scopes} \
         (Admin console: {DELEGATION_PATH}; all of them must be in the entry for this client ID)",
        scopes = delegation_scopes()
    )
}

/// The token endpoint does not know one of the scopes.
pub fn unknown_scopes() -> String {
    format!(
        "the token endpoint does not know the scopes {}",
        delegation_scopes()
    )
}

/// The Directory API answered 403 `insufficientPermissions`.
pub fn insufficient_scopes() -> String {
    format!(
        "the access token lacks a scope this call needs: grant every one of {} in the domain-wide \
         delegation entry (Admin console: {DELEGATION_PATH})",
        delegation_scopes()
    )
}

/// The Directory API answered 403 `forbidden`: the subject is no admin with read privileges.
pub fn subject_not_admin(subject: Option<&str>) -> String {
    let who = subject
        .map(|s| format!("the impersonated user {s}"))
        .unwrap_or_else(|| "the impersonated user (source.subject)".to_owned());
    format!(
        "{who} is not an admin with the Users and Groups read privileges: give them an admin role \
         with Users → Read and Groups → Read (Admin console: {ADMIN_ROLES_PATH}), or impersonate \
         another admin; also check the customer id / domain"
    )
}

/// The Admin SDK API is not enabled in the service account's Cloud project.
pub fn api_not_enabled(project: Option<&str>) -> String {
    let project_text = project
        .map(|p| format!("project {p}"))
        .unwrap_or_else(|| "the service account's project".to_owned());
    format!(
        "enable the {ADMIN_SDK_API} in Google Cloud {project_text}: {} (then wait a minute and retry)",
        enable_api_url(project)
    )
}

/// The key itself was refused (deleted, expired, disabled service account).
pub fn key_rejected(client_email: &str) -> String {
    format!(
        "the key of {client_email} was rejected (deleted, expired or the service account is \
         disabled): create and download a new key in Google Cloud console → \
         {SERVICE_ACCOUNT_KEYS_PATH}, and point source.credentials_file at it"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_to_grant_are_exactly_the_scopes_requested() {
        let joined = delegation_scopes();
        let listed: Vec<String> = joined.split(',').map(str::to_owned).collect();
        let requested: Vec<String> = SCOPES.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(listed, requested);
        // Read-only: dirsync never asks for a scope that could write.
        assert!(SCOPES.iter().all(|scope| scope.ends_with(".readonly")));
    }

    #[test]
    fn instructions_carry_the_values_of_this_tenant() {
        let text = admin_instructions(
            "118000000000000000001",
            "dirsync@acme-project.iam.gserviceaccount.com",
            Some("acme-project"),
            "admin@acme.example",
        );
        assert!(
            text.contains("Client ID:    118000000000000000001"),
            "{text}"
        );
        let scopes_line = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("OAuth scopes: "))
            .unwrap_or_default();
        assert_eq!(scopes_line, delegation_scopes());
        assert!(text.contains(DELEGATION_PATH));
        assert!(text.contains("admin@acme.example"));
        assert!(text.contains("admin.googleapis.com?project=acme-project"));
    }

    #[test]
    fn fixes_name_the_values_to_act_on() {
        assert!(delegation_not_granted("42").contains("client ID 42"));
        assert!(delegation_not_granted("42").contains(&delegation_scopes()));
        assert!(insufficient_scopes().contains(&delegation_scopes()));
        assert!(api_not_enabled(Some("p-1")).contains("project p-1"));
        assert!(api_not_enabled(None).contains("admin.googleapis.com"));
        assert!(subject_not_admin(Some("a@b.example")).contains("a@b.example"));
    }
}
