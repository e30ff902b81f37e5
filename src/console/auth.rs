//! Who may see what: the operator's session (signed in with the `console_token_file` token,
//! then an HttpOnly, SameSite=Strict cookie naming a server-side session with its own CSRF
//! token) and the IT admin's link (a tenant-scoped token with an expiry, HMAC-signed with a
//! key derived from the console token: rotating the token revokes every link).
//!
//! Every comparison of a secret is constant-time. Must not: render pages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{constant_time, digest, hmac, rand as lc_rand};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::config::{valid_tenant_id, Secret};
use crate::mutex::lock;

/// The session cookie's name.
pub const COOKIE: &str = "dirsync_console";
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once; the oldest goes first.
const MAX_SESSIONS: usize = 1000;
/// Links name their format, so a later one can be told apart.
const LINK_VERSION: &str = "v1";

/// What a request may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A signed-in operator: every tenant, and the actions (with this CSRF token).
    Operator { csrf: String },
    /// An IT admin's link: this tenant's health, onboarding and inspect pages only.
    Tenant { tenant: String, expires: u64 },
}

impl Access {
    /// Whether this access may see `tenant`.
    pub fn allows(&self, tenant: &str) -> bool {
        match self {
            Access::Operator { .. } => true,
            Access::Tenant { tenant: own, .. } => own == tenant,
        }
    }
}

struct Session {
    csrf: String,
    expires: SystemTime,
}

/// The console's secrets and live sessions.
pub struct Auth {
    token: Secret,
    link_key: hmac::Key,
    sessions: Mutex<HashMap<String, Session>>,
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // The system's random source failing is not something a console can recover from; an
    // all-zero id is refused below rather than handed out.
    if lc_rand::fill(&mut buffer).is_err() {
        return String::new();
    }
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal, in time that depends only on the lengths.
pub fn same_secret(given: &str, expected: &str) -> bool {
    constant_time::verify_slices_are_equal(given.as_bytes(), expected.as_bytes()).is_ok()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not a dirsync console link (or it was cut short): ask for a new one")]
    Malformed,
    #[error("this link's signature does not match: it was changed, or the console token was rotated since; ask for a new one")]
    BadSignature,
    #[error(
        "this link expired on {0}: ask the operator for a new one (`dirsync console-link TENANT`)"
    )]
    Expired(String),
}

impl Auth {
    pub fn new(token: Secret) -> Self {
        let derived = digest::digest(
            &digest::SHA256,
            format!("dirsync console link key v1\n{}", token.expose()).as_bytes(),
        );
        Self {
            link_key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            token,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Signs in with the operator token: the new session's id, or `None` for a wrong token.
    pub fn sign_in(&self, given: &str) -> Option<String> {
        if !same_secret(given.trim(), self.token.expose()) {
            return None;
        }
        let (id, csrf) = (random_hex(32), random_hex(32));
        if id.is_empty() || csrf.is_empty() {
            return None;
        }
        let mut sessions = lock(&self.sessions);
        let now = SystemTime::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf,
                expires: now + SESSION_TTL,
            },
        );
        Some(id)
    }

    pub fn sign_out(&self, session: &str) {
        lock(&self.sessions).remove(session);
    }

    /// The operator's access for a session cookie's value, while the session lasts.
    pub fn session(&self, id: &str) -> Option<Access> {
        let sessions = lock(&self.sessions);
        // The map is keyed by the id, so finding it is not a comparison an attacker can time
        // byte by byte beyond the hash; the id is 256 random bits.
        let session = sessions.get(id)?;
        (session.expires > SystemTime::now()).then(|| Access::Operator {
            csrf: session.csrf.clone(),
        })
    }

    /// A tenant-scoped link token valid until `expires` (Unix seconds).
    pub fn sign_link(&self, tenant: &str, expires: u64) -> String {
        let payload = format!("{LINK_VERSION}.{tenant}.{expires}");
        let tag = hmac::sign(&self.link_key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The access a link token grants at `now`.
    pub fn verify_link(&self, token: &str, now: u64) -> Result<Access, LinkError> {
        let mut parts = token.split('.');
        let (Some(version), Some(tenant), Some(expires), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(LinkError::Malformed);
        };
        if version != LINK_VERSION || !valid_tenant_id(tenant) {
            return Err(LinkError::Malformed);
        }
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| LinkError::Malformed)?;
        let payload = format!("{version}.{tenant}.{expires}");
        hmac::verify(&self.link_key, payload.as_bytes(), &tag)
            .map_err(|_| LinkError::BadSignature)?;
        let expires: u64 = expires.parse().map_err(|_| LinkError::Malformed)?;
        if now >= expires {
            let at = chrono::DateTime::from_timestamp(expires as i64, 0)
                .map(crate::event::format_timestamp)
                .unwrap_or_else(|| expires.to_string());
            return Err(LinkError::Expired(at));
        }
        Ok(Access::Tenant {
            tenant: tenant.to_owned(),
            expires,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn auth() -> Auth {
        Auth::new(Secret::new("the-operator-console-token"))
    }

    #[test]
    fn the_operator_signs_in_with_the_token_only() {
        let auth = auth();
        assert!(auth.sign_in("wrong-token-of-some-length").is_none());
        assert!(auth.sign_in("").is_none());
        let id = auth.sign_in("the-operator-console-token\n").unwrap();
        let Some(Access::Operator { csrf }) = auth.session(&id) else {
            panic!("no session")
        };
        assert_eq!(csrf.len(), 64);
        assert!(auth.session("not-a-session").is_none());
        auth.sign_out(&id);
        assert!(auth.session(&id).is_none());
    }

    #[test]
    fn a_link_grants_its_tenant_until_it_expires_and_cannot_be_altered() {
        let auth = auth();
        let link = auth.sign_link("acme", 1_000);
        assert_eq!(
            auth.verify_link(&link, 999).unwrap(),
            Access::Tenant {
                tenant: "acme".into(),
                expires: 1_000
            }
        );
        assert!(matches!(
            auth.verify_link(&link, 1_000),
            Err(LinkError::Expired(_))
        ));
        let other = link.replacen("acme", "globex", 1);
        assert_eq!(auth.verify_link(&other, 1), Err(LinkError::BadSignature));
        let later = link.replacen("1000", "9999", 1);
        assert_eq!(auth.verify_link(&later, 1), Err(LinkError::BadSignature));
        assert_eq!(auth.verify_link("v1.acme", 1), Err(LinkError::Malformed));
        let rotated = Auth::new(Secret::new("a-new-operator-console-token"));
        assert_eq!(rotated.verify_link(&link, 1), Err(LinkError::BadSignature));
        assert!(Access::Tenant {
            tenant: "acme".into(),
            expires: 1
        }
        .allows("acme"));
        assert!(!Access::Tenant {
            tenant: "acme".into(),
            expires: 1
        }
        .allows("globex"));
    }
}
