//! OAuth 2.0 as the emulator plays it: the service-account key it issues (RSA, PKCS#8 PEM),
//! the JWT bearer grant at `POST /token` (RS256 signature, `iss`, `aud`, `iat`/`exp`, scopes
//! against the domain-wide delegation allow-list, `sub`), and the bearer tokens it hands out.
//! It decides who may call; which scopes each API method needs is here too.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rand::Rng as _;
use serde_json::{json, Value};

use super::directory::{hash_str, mix64};
use super::error::EmulatorError;

pub const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// The audiences Google's token endpoint answers to, besides the emulator's own URL.
pub const GOOGLE_AUDIENCES: &[&str] = &[
    "https://oauth2.googleapis.com/token",
    "https://accounts.google.com/o/oauth2/token",
    "https://www.googleapis.com/oauth2/v4/token",
];

/// Every scope the emulator's methods use; the default delegation allow-list.
pub const ALL_SCOPES: &[&str] = &[
    "admin.directory.user",
    "admin.directory.user.readonly",
    "admin.directory.group",
    "admin.directory.group.readonly",
    "admin.directory.group.member",
    "admin.directory.group.member.readonly",
    "admin.directory.orgunit",
    "admin.directory.orgunit.readonly",
    "cloud-platform",
];

/// The scopes (without prefix) any one of which allows `method`.
pub fn method_scopes(method: &str) -> &'static [&'static str] {
    match method {
        "users.list" => &[
            "admin.directory.user",
            "admin.directory.user.readonly",
            "cloud-platform",
        ],
        "users.get" => &["admin.directory.user", "admin.directory.user.readonly"],
        "users.insert" | "users.update" | "users.patch" | "users.delete" | "users.undelete" => {
            &["admin.directory.user"]
        }
        "groups.list" | "groups.get" => {
            &["admin.directory.group", "admin.directory.group.readonly"]
        }
        "groups.insert" | "groups.update" | "groups.patch" | "groups.delete" => {
            &["admin.directory.group"]
        }
        "members.list" | "members.get" | "members.hasMember" => &[
            "admin.directory.group",
            "admin.directory.group.member",
            "admin.directory.group.member.readonly",
            "admin.directory.group.readonly",
        ],
        "members.insert" | "members.update" | "members.patch" | "members.delete" => {
            &["admin.directory.group", "admin.directory.group.member"]
        }
        "orgunits.list" | "orgunits.get" => &[
            "admin.directory.orgunit",
            "admin.directory.orgunit.readonly",
        ],
        _ => &[],
    }
}

/// The emulator's service account: the RSA key pair and the identity fields of its key file.
pub struct ServiceAccount {
    key_pair: KeyPair,
    pkcs8_pem: String,
    pub client_email: String,
    pub client_id: String,
    pub private_key_id: String,
    pub project_id: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn pem_encode(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

fn pem_decode(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    if !pem.contains("BEGIN PRIVATE KEY") {
        return None;
    }
    STANDARD.decode(body.trim()).ok()
}

impl ServiceAccount {
    /// A fresh RSA-2048 key and identity.
    pub fn generate() -> Result<Self, EmulatorError> {
        let key_pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| EmulatorError::Crypto("RSA key generation failed".into()))?;
        let der = key_pair
            .as_der()
            .map_err(|_| EmulatorError::Crypto("PKCS#8 encoding failed".into()))?;
        let pem = pem_encode(der.as_ref());
        Ok(Self::with_identity(key_pair, pem, None))
    }

    fn with_identity(key_pair: KeyPair, pkcs8_pem: String, identity: Option<&Value>) -> Self {
        let public_hash = hash_str(&STANDARD.encode(key_pair.public_key().as_ref()));
        let field = |name: &str| {
            identity
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let project_id = field("project_id").unwrap_or_else(|| "dirsync-emulator".to_owned());
        Self {
            client_email: field("client_email")
                .unwrap_or_else(|| format!("dirsync@{project_id}.iam.gserviceaccount.com")),
            client_id: field("client_id").unwrap_or_else(|| {
                format!("1{:020}", mix64(public_hash) % 10_000_000_000_000_000_000)
            }),
            private_key_id: field("private_key_id").unwrap_or_else(|| {
                format!(
                    "{:016x}{:016x}{:08x}",
                    public_hash,
                    mix64(public_hash),
                    public_hash >> 32
                )
            }),
            project_id,
            key_pair,
            pkcs8_pem,
        }
    }

    /// Loads a key file written by `--key-out` (or any service-account key JSON with a PKCS#8
    /// RSA key), so a restarted emulator keeps its identity.
    pub fn from_key_file(path: &Path) -> Result<Self, EmulatorError> {
        let problem = |problem: String| EmulatorError::Key {
            path: path.to_owned(),
            problem,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|err| problem(format!("cannot read it: {err}")))?;
        Self::from_key_json(&text).map_err(problem)
    }

    pub fn from_key_json(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|err| {
            format!("not valid JSON ({err}); expected a service-account key file")
        })?;
        let pem = value
            .get("private_key")
            .and_then(Value::as_str)
            .ok_or("no \"private_key\" string: expected a service-account key file")?;
        let der = pem_decode(pem)
            .ok_or("\"private_key\" is not a PEM \"BEGIN PRIVATE KEY\" (PKCS#8) block")?;
        let key_pair = KeyPair::from_pkcs8(&der)
            .map_err(|err| format!("\"private_key\" is not an RSA PKCS#8 key: {err}"))?;
        Ok(Self::with_identity(key_pair, pem.to_owned(), Some(&value)))
    }

    /// The key file JSON, with every field of a real one, `token_uri` pointing at `token_uri`.
    pub fn key_json(&self, token_uri: &str) -> Value {
        json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.pkcs8_pem,
            "client_email": self.client_email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                self.client_email.replace('@', "%40")
            ),
            "universe_domain": "googleapis.com"
        })
    }

    /// Signs `header.claims` like a client would (tests, `/_emulator` helpers).
    pub fn sign_jwt(&self, header: &Value, claims: &Value) -> Result<String, EmulatorError> {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let signing_input = format!(
            "{}.{}",
            engine.encode(header.to_string()),
            engine.encode(claims.to_string())
        );
        let signature = self.sign(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", engine.encode(signature)))
    }

    /// RS256 (RSASSA-PKCS1-v1_5 with SHA-256) over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, EmulatorError> {
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| EmulatorError::Crypto("signing failed".into()))?;
        Ok(signature)
    }

    fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.key_pair.public_key().as_ref(),
        )
        .verify(signing_input, signature)
        .is_ok()
    }
}

/// An OAuth error of the token endpoint: `{"error", "error_description"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {error}: {description}")]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", description)
    }
    pub fn unauthorized_client() -> Self {
        Self::new(
            401,
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
        )
    }
    pub fn invalid_subject() -> Self {
        Self::invalid_grant("Invalid email or User ID")
    }
    pub fn to_json(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

/// What a verified assertion asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub subject: Option<String>,
    /// Scopes without the `https://www.googleapis.com/auth/` prefix.
    pub scopes: BTreeSet<String>,
}

/// Leeway for clocks that disagree, as Google allows a little.
const SKEW_SECS: i64 = 300;

fn lenient_b64() -> GeneralPurpose {
    GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// Checks a JWT bearer assertion: signature, `iss`, `aud`, `iat`/`exp`, `scope`. The subject
/// and the delegation allow-list are checked by the caller, which knows the directory.
pub fn verify_assertion(
    account: &ServiceAccount,
    assertion: &str,
    own_token_uri: &str,
    now: i64,
) -> Result<Grant, OAuthError> {
    let engine = lenient_b64();
    let mut parts = assertion.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OAuthError::invalid_grant(
            "Invalid JWT: the assertion is not three base64url segments.",
        ));
    };
    let decode_json = |segment: &str| -> Option<Value> {
        engine
            .decode(segment)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
    };
    let header = decode_json(header_b64).ok_or_else(|| {
        OAuthError::invalid_grant("Invalid JWT: the header is not base64url JSON.")
    })?;
    let claims = decode_json(claims_b64).ok_or_else(|| {
        OAuthError::invalid_grant("Invalid JWT: the claims are not base64url JSON.")
    })?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(OAuthError::invalid_grant(
            "Invalid JWT: only RS256 signatures are accepted.",
        ));
    }
    if claims.get("iss").and_then(Value::as_str) != Some(account.client_email.as_str()) {
        return Err(OAuthError::invalid_grant(
            "Invalid JWT: No valid verifier found for issuer.",
        ));
    }
    if let Some(kid) = header.get("kid").and_then(Value::as_str) {
        if kid != account.private_key_id {
            return Err(OAuthError::invalid_grant("Invalid JWT Signature."));
        }
    }
    let signature = engine
        .decode(signature_b64)
        .map_err(|_| OAuthError::invalid_grant("Invalid JWT Signature."))?;
    let signing_input = &assertion[..header_b64.len() + 1 + claims_b64.len()];
    if !account.verify(signing_input.as_bytes(), &signature) {
        return Err(OAuthError::invalid_grant("Invalid JWT Signature."));
    }
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
    if aud != own_token_uri && !GOOGLE_AUDIENCES.contains(&aud) {
        return Err(OAuthError::invalid_grant(format!(
            "Invalid JWT: Failed audience check. The expected value was {own_token_uri} or https://oauth2.googleapis.com/token, got '{aud}'."
        )));
    }
    let iat = claims.get("iat").and_then(Value::as_i64);
    let exp = claims.get("exp").and_then(Value::as_i64);
    let short_lived = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
    let (Some(iat), Some(exp)) = (iat, exp) else {
        return Err(OAuthError::invalid_grant(short_lived));
    };
    if exp <= iat || exp - iat > 3600 || iat > now + SKEW_SECS || exp < now - SKEW_SECS {
        return Err(OAuthError::invalid_grant(short_lived));
    }
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
    let scopes: BTreeSet<String> = scope
        .split_whitespace()
        .map(|s| s.strip_prefix(SCOPE_PREFIX).unwrap_or(s).to_owned())
        .collect();
    if scopes.is_empty() {
        return Err(OAuthError::new(
            400,
            "invalid_scope",
            "Empty or missing scope not allowed.",
        ));
    }
    let subject = match claims.get("sub") {
        None | Some(Value::Null) => None,
        Some(Value::String(sub)) => Some(sub.clone()),
        Some(_) => {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                "Invalid impersonation \"sub\" field.",
            ))
        }
    };
    Ok(Grant { subject, scopes })
}

/// A bearer token the emulator issued.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub subject: Option<String>,
    pub scopes: BTreeSet<String>,
    pub client_id: String,
    pub expires_at: Instant,
}

/// Issued bearer tokens and how long new ones live.
#[derive(Debug)]
pub struct Tokens {
    tokens: Mutex<HashMap<String, TokenInfo>>,
    ttl: Mutex<Duration>,
}

impl Tokens {
    pub fn new(ttl: Duration) -> Self {
        Self {
            tokens: Mutex::new(HashMap::new()),
            ttl: Mutex::new(ttl),
        }
    }

    pub fn ttl(&self) -> Duration {
        *self
            .ttl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_ttl(&self, ttl: Duration) {
        *self
            .ttl
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ttl;
    }

    /// Issues a token; returns it with its lifetime in seconds (`expires_in`).
    pub fn issue(
        &self,
        subject: Option<String>,
        scopes: BTreeSet<String>,
        client_id: &str,
    ) -> (String, u64) {
        let ttl = self.ttl();
        let random: [u8; 24] = rand::rng().random();
        let token = format!(
            "ya29.emu.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
        );
        let now = Instant::now();
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.retain(|_, info| info.expires_at > now);
        tokens.insert(
            token.clone(),
            TokenInfo {
                subject,
                scopes,
                client_id: client_id.to_owned(),
                expires_at: now + ttl,
            },
        );
        // Google answers 3599 for a one-hour token.
        (token, ttl.as_secs().saturating_sub(1).max(1))
    }

    /// The token's grant, unless unknown or expired.
    pub fn check(&self, token: &str) -> Option<TokenInfo> {
        let tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens
            .get(token)
            .filter(|info| info.expires_at > Instant::now())
            .cloned()
    }

    /// Makes every issued token expired now (tests of the refresh path).
    pub fn expire_all(&self) {
        let now = Instant::now();
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for info in tokens.values_mut() {
            info.expires_at = now;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Value {
        json!({"iss": "x", "aud": "http://127.0.0.1:1/token", "iat": now, "exp": now + 3600,
               "scope": "https://www.googleapis.com/auth/admin.directory.user.readonly", "sub": null})
    }

    #[test]
    fn key_round_trip_and_jwt_checks() {
        let account = ServiceAccount::generate().unwrap();
        let key = account.key_json("http://127.0.0.1:1/token");
        let again = ServiceAccount::from_key_json(&key.to_string()).unwrap();
        assert_eq!(again.client_id, account.client_id);
        assert_eq!(again.private_key_id, account.private_key_id);
        let now = 1_800_000_000;
        let mut c = claims(now);
        c["iss"] = json!(account.client_email);
        let jwt = again
            .sign_jwt(&json!({"alg": "RS256", "typ": "JWT"}), &c)
            .unwrap();
        let grant = verify_assertion(&account, &jwt, "http://127.0.0.1:1/token", now).unwrap();
        assert_eq!(grant.subject, None);
        assert!(grant.scopes.contains("admin.directory.user.readonly"));
        // Padded base64url, as yup-oauth2 sends (and signs) it.
        let engine = base64::engine::general_purpose::URL_SAFE;
        let input = format!(
            "{}.{}",
            engine.encode(json!({"alg": "RS256"}).to_string()),
            engine.encode(c.to_string())
        );
        let padded = format!(
            "{input}.{}",
            engine.encode(again.sign(input.as_bytes()).unwrap())
        );
        assert!(padded.contains('='));
        assert!(verify_assertion(&account, &padded, "http://127.0.0.1:1/token", now).is_ok());
        let other = ServiceAccount::generate().unwrap();
        let forged = other.sign_jwt(&json!({"alg": "RS256"}), &c).unwrap();
        let err = verify_assertion(&account, &forged, "http://127.0.0.1:1/token", now).unwrap_err();
        assert_eq!(err.description, "Invalid JWT Signature.");
        let err =
            verify_assertion(&account, &jwt, "http://127.0.0.1:1/token", now + 4000).unwrap_err();
        assert_eq!(err.error, "invalid_grant");
    }
}
