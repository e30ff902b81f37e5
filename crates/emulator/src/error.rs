//! Errors of the emulator: [`ApiError`] is a Google-shaped API error (the JSON envelope of
//! google-directory-api.md §3, or a non-JSON body), returned by HTTP handlers and by the library
//! write API alike; [`EmulatorError`] is a problem starting the emulator (bad flags, fixture,
//! key file, address).

use std::path::PathBuf;

use serde_json::{json, Value};

/// A Directory API error as Google sends it: HTTP status plus the `{"error": {...}}` envelope.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {reason}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// `errors[0].reason`, e.g. `notFound`, `backendError`.
    pub reason: String,
    /// `errors[0].domain`: `global` or `usageLimits`.
    pub domain: &'static str,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// The rarer parts, boxed to keep `Result<_, ApiError>` small.
    pub extra: Option<Box<ErrorExtra>>,
}

/// Parts of an [`ApiError`] only some errors have.
#[derive(Debug, Clone, Default)]
pub struct ErrorExtra {
    /// `errors[0].message` when it differs from `message` (the 401s).
    pub item_message: Option<String>,
    /// `errors[0].location` and `locationType`, on parameter and auth errors.
    pub location: Option<(&'static str, &'static str)>,
    /// The front end's `status` string (`UNAUTHENTICATED`, ...), only on front-end classes.
    pub status_text: Option<&'static str>,
    pub details: Option<Value>,
    /// A non-JSON body (content type, body) sent instead of the envelope.
    pub raw_body: Option<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            reason: reason.to_owned(),
            domain: "global",
            retry_after: None,
            extra: None,
        }
    }

    fn extra_mut(&mut self) -> &mut ErrorExtra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// The non-JSON body to send instead of the envelope, if any.
    pub fn raw_body(&self) -> Option<&(&'static str, String)> {
        self.extra.as_ref().and_then(|e| e.raw_body.as_ref())
    }

    /// 400 badRequest "Bad Request": neither `customer` nor `domain`, `customer` with `userKey`.
    pub fn bad_request() -> Self {
        Self::new(400, "badRequest", "Bad Request")
    }

    /// 400 invalid "Invalid Input: {what}".
    pub fn invalid_input(what: &str) -> Self {
        Self::new(400, "invalid", format!("Invalid Input: {what}"))
    }

    /// 400 invalidParameter for a query parameter whose value is out of range or not allowed.
    pub fn invalid_parameter(name: &'static str, value: &str, rule: &str) -> Self {
        let mut err = Self::new(
            400,
            "invalidParameter",
            format!("Invalid value '{value}'. {rule}"),
        );
        err.extra_mut().location = Some((name, "parameter"));
        err
    }

    /// 400 invalid "Invalid Value" on `pageToken` (garbage, for another query, or expired).
    pub fn invalid_page_token() -> Self {
        let mut err = Self::new(400, "invalid", "Invalid Value");
        err.extra_mut().location = Some(("pageToken", "parameter"));
        err
    }

    /// 404 notFound "Resource Not Found: {key}" (`userKey`, `groupKey`, `memberKey`).
    pub fn not_found(key: &str) -> Self {
        Self::new(404, "notFound", format!("Resource Not Found: {key}"))
    }

    /// 403 forbidden: the subject is not an admin, or the customer is not its own.
    pub fn forbidden() -> Self {
        Self::new(
            403,
            "forbidden",
            "Not Authorized to access this resource/api",
        )
    }

    /// 409 duplicate, on inserts of something that exists.
    pub fn duplicate(message: impl Into<String>) -> Self {
        Self::new(409, "duplicate", message)
    }

    /// 412 conditionNotMet, e.g. a cyclic group membership.
    pub fn condition_not_met(message: impl Into<String>) -> Self {
        Self::new(412, "conditionNotMet", message)
    }

    /// 401 authError: an expired, revoked or garbage bearer token.
    pub fn invalid_credentials() -> Self {
        let mut err = Self::new(
            401,
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        );
        err.extra_mut().location = Some(("Authorization", "header"));
        err.extra_mut().status_text = Some("UNAUTHENTICATED");
        err.extra_mut().item_message = Some("Invalid Credentials".into());
        err
    }

    /// 401 required: no credentials at all.
    pub fn login_required() -> Self {
        let mut err = Self::new(
            401,
            "required",
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        );
        err.extra_mut().location = Some(("Authorization", "header"));
        err.extra_mut().status_text = Some("UNAUTHENTICATED");
        err.extra_mut().item_message = Some("Login Required.".into());
        err
    }

    /// 403 insufficientPermissions: the token lacks every scope that allows the method.
    pub fn insufficient_scopes(method: &str) -> Self {
        let mut err = Self::new(
            403,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        );
        err.extra_mut().status_text = Some("PERMISSION_DENIED");
        err.extra_mut().details = Some(json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            "domain": "googleapis.com",
            "metadata": {"service": "admin.googleapis.com", "method": format!("ccc.hosted.frontend.directory.v1.Directory{}", method_camel(method))}
        }]));
        err
    }

    /// 403 userRateLimitExceeded in domain `usageLimits`: the per-user queries-per-minute quota.
    pub fn user_rate_limit() -> Self {
        let mut err = Self::new(
            403,
            "userRateLimitExceeded",
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service 'admin.googleapis.com' for consumer 'project_number:123456789012'.",
        );
        err.domain = "usageLimits";
        err.extra_mut().status_text = Some("PERMISSION_DENIED");
        err
    }

    /// 429 rateLimitExceeded: the per-account concurrency limit.
    pub fn rate_limit() -> Self {
        let mut err = Self::new(429, "rateLimitExceeded", "Rate Limit Exceeded");
        err.domain = "usageLimits";
        err.extra_mut().status_text = Some("RESOURCE_EXHAUSTED");
        err
    }

    /// 500 internalError.
    pub fn internal() -> Self {
        Self::new(500, "internalError", "Internal error encountered.")
    }

    /// 503 backendError.
    pub fn backend_error() -> Self {
        Self::new(503, "backendError", "Service unavailable. Please try again")
    }

    /// The error a fault rule sends for `status` when it names no reason: Google's usual one.
    pub fn for_status(status: u16) -> Self {
        match status {
            400 => Self::bad_request(),
            401 => Self::invalid_credentials(),
            403 => Self::user_rate_limit(),
            404 => Self::new(404, "notFound", "Resource Not Found"),
            429 => Self::rate_limit(),
            500 => Self::internal(),
            502 => Self::new(502, "badGateway", "Bad Gateway"),
            503 => Self::backend_error(),
            504 => Self::new(504, "gatewayTimeout", "Gateway Timeout"),
            other => Self::new(other, "backendError", "Backend Error"),
        }
    }

    /// The same status with a non-JSON body, like Google's front ends send now and then.
    pub fn non_json(status: u16) -> Self {
        let mut err = Self::for_status(status);
        err.extra_mut().raw_body = Some(match status {
            503 => ("text/plain; charset=UTF-8", "Quota exceeded for the current request".to_owned()),
            403 => (
                "text/plain; charset=UTF-8",
                "Request rate higher than configured.".to_owned(),
            ),
            _ => (
                "text/html; charset=UTF-8",
                format!(
                    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error {status} ({reason})!!1</title>\n  <p><b>{status}.</b> <ins>That’s an error.</ins>\n  <p>The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.  <ins>That’s all we know.</ins>\n",
                    reason = http_reason(status)
                ),
            ),
        });
        err
    }

    /// The JSON envelope.
    pub fn to_json(&self) -> Value {
        let extra = self.extra.as_deref();
        let item_message = extra
            .and_then(|e| e.item_message.as_deref())
            .unwrap_or(&self.message);
        let mut item =
            json!({"message": item_message, "domain": self.domain, "reason": self.reason});
        if let Some((location, kind)) = extra.and_then(|e| e.location) {
            item["location"] = json!(location);
            item["locationType"] = json!(kind);
        }
        let mut error = json!({"code": self.status, "message": self.message, "errors": [item]});
        if let Some(status) = extra.and_then(|e| e.status_text) {
            error["status"] = json!(status);
        }
        if let Some(details) = extra.and_then(|e| e.details.as_ref()) {
            error["details"] = details.clone();
        }
        json!({ "error": error })
    }
}

fn http_reason(status: u16) -> &'static str {
    match status {
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        429 => "Too Many Requests",
        403 => "Forbidden",
        _ => "Error",
    }
}

/// `members.list` → `MembersList`, for the ErrorInfo metadata.
fn method_camel(method: &str) -> String {
    method
        .split('.')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().collect::<String>() + chars.as_str()
            })
        })
        .collect()
}

/// A problem starting or configuring the emulator. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("fixture {path}: {problem}")]
    Fixture { path: PathBuf, problem: String },
    #[error("service-account key {path}: {problem}")]
    Key { path: PathBuf, problem: String },
    #[error("fault rules: {0}")]
    Faults(String),
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source} (pick another address or port, e.g. --listen 127.0.0.1:0)")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate an RSA key: {0}")]
    Crypto(String),
    #[error("the emulator's HTTP server failed: {0}")]
    Serve(std::io::Error),
}

impl EmulatorError {
    /// True when the operator's input (flags, files) is at fault: exit code 2, not 1.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Fixture { .. } | Self::Key { .. } | Self::Faults(_) | Self::Config(_)
        )
    }
}
