//! Fault injection and load simulation: rules that make chosen requests fail the way Google
//! fails (errors, non-JSON bodies, `Retry-After`, latency, expiring page tokens, a group
//! deleted mid-sync, refused delegation, rejected or non-admin subjects), plus the global
//! knobs (latency, a per-minute quota per subject, a concurrency limit). This module decides
//! what should happen to a request; the server carries it out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// The method id of the token endpoint, for rules and counters.
pub const TOKEN_METHOD: &str = "oauth.token";

/// A fault rule as written in JSON (`POST /_emulator/faults`, `--faults FILE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// A name to find or delete the rule by; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Method id (`members.list`), a family (`members.*`) or `*`; `oauth.token` is the token
    /// endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Glob on the percent-decoded request path; `*` matches any run of characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only this page of a paginated list (1 = the request without `pageToken`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Let this many matching requests through before firing (nth call = after + 1).
    #[serde(default)]
    pub after: u32,
    /// Fire this many times, then retire; 0 = forever. Default 1.
    #[serde(default = "one")]
    pub times: u32,
    /// What to do: `error`, `delay`, `expire_page_token`, `delete_group`,
    /// `refuse_delegation`, `reject_subject`, `not_admin`, `truncate`.
    pub fault: FaultKind,
    /// HTTP status for `error`: 400-599 (429, 403, 500, 502, 503, 504 get Google's bodies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Override `errors[0].reason` of an `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Override the message of an `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Send a non-JSON body (HTML or text) instead of the JSON envelope.
    #[serde(default)]
    pub html: bool,
    /// Add a `Retry-After: N` header (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Delay the response by this many milliseconds when the rule fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

impl Default for FaultRule {
    /// An `error` rule that fires once (set `status`); the same defaults as the JSON form.
    fn default() -> Self {
        Self {
            name: None,
            method: None,
            path: None,
            page: None,
            after: 0,
            times: 1,
            fault: FaultKind::Error,
            status: None,
            reason: None,
            message: None,
            html: false,
            retry_after: None,
            latency_ms: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// An error response (see `status`, `reason`, `message`, `html`).
    #[default]
    Error,
    /// Only `latency_ms`.
    Delay,
    /// A request carrying a `pageToken` gets 400 invalid, as for an expired token.
    ExpirePageToken,
    /// members.* on a group: the group is deleted first, so the call gets 404 groupKey.
    DeleteGroup,
    /// The token endpoint answers 401 unauthorized_client.
    RefuseDelegation,
    /// The token endpoint answers 400 invalid_grant "Invalid email or User ID".
    RejectSubject,
    /// API calls get 403 forbidden, as for a subject that is not an admin.
    NotAdmin,
    /// The call succeeds but its 200 body is cut in half, as when a connection drops.
    Truncate,
}

impl FaultKind {
    fn for_token_endpoint(self) -> bool {
        matches!(self, Self::RefuseDelegation | Self::RejectSubject)
    }
    fn for_api(self) -> bool {
        matches!(
            self,
            Self::ExpirePageToken | Self::DeleteGroup | Self::NotAdmin | Self::Truncate
        )
    }
}

impl FaultRule {
    /// Checks a rule, saying what is wrong with it.
    pub fn validate(&self) -> Result<(), String> {
        match self.fault {
            FaultKind::Error => match self.status {
                Some(status) if (400..=599).contains(&status) => {}
                Some(status) => {
                    return Err(format!(
                        "\"status\": {status} is not an HTTP error status (400-599)"
                    ))
                }
                None => return Err("a fault \"error\" needs \"status\" (e.g. 503)".into()),
            },
            FaultKind::Delay if self.latency_ms.is_none() => {
                return Err("a fault \"delay\" needs \"latency_ms\"".into())
            }
            _ if self.status.is_some() => {
                return Err("\"status\" only goes with fault \"error\"".into())
            }
            _ => {}
        }
        if let Some(method) = &self.method {
            if method.is_empty() {
                return Err(
                    "\"method\" is empty: use e.g. \"members.list\", \"members.*\" or \"*\"".into(),
                );
            }
        }
        if self.page == Some(0) {
            return Err("\"page\" counts from 1".into());
        }
        Ok(())
    }

    /// The error this rule sends, when it sends one.
    pub fn error(&self) -> Option<ApiError> {
        let mut err = match self.fault {
            FaultKind::Error => {
                let status = self.status.unwrap_or(503);
                if self.html {
                    ApiError::non_json(status)
                } else {
                    ApiError::for_status(status)
                }
            }
            FaultKind::ExpirePageToken => ApiError::invalid_page_token(),
            FaultKind::NotAdmin => ApiError::forbidden(),
            _ => return None,
        };
        if let Some(reason) = &self.reason {
            err.reason.clone_from(reason);
        }
        if let Some(message) = &self.message {
            err.message.clone_from(message);
        }
        err.retry_after = self.retry_after;
        Some(err)
    }
}

/// Glob match with `*` only.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (index, part) in parts.iter().enumerate() {
        if index == 0 {
            match rest.strip_prefix(part) {
                Some(tail) => rest = tail,
                None => return false,
            }
        } else if index == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn method_matches(pattern: &str, method: &str) -> bool {
    pattern == "*"
        || pattern == method
        || pattern
            .strip_suffix(".*")
            .is_some_and(|family| method.split('.').next() == Some(family))
}

/// A request as fault rules see it.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub page: u32,
    pub has_page_token: bool,
}

#[derive(Debug)]
struct RuleState {
    rule: FaultRule,
    seen: u32,
    fired: u32,
}

/// The current global knobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Latency added to every API and token request, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Requests per minute allowed per (service account, subject); beyond: 403
    /// userRateLimitExceeded. `null` = unlimited.
    #[serde(default)]
    pub quota_per_minute: Option<u32>,
    /// API requests in flight at once; beyond: 429 rateLimitExceeded. `null` = unlimited.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
}

/// Fault rules, knobs and their state. Shared by the server and [`super::FaultsHandle`].
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<RuleState>>,
    settings: Mutex<Settings>,
    quota: Mutex<HashMap<String, (Instant, u32)>>,
    next_name: AtomicUsize,
    pub(crate) in_flight: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Faults {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings: Mutex::new(settings),
            ..Self::default()
        }
    }

    pub fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    pub fn set_settings(&self, settings: Settings) {
        *lock(&self.settings) = settings;
    }

    pub fn update_settings(&self, change: impl FnOnce(&mut Settings)) {
        change(&mut lock(&self.settings));
    }

    /// Adds a rule; returns its name.
    pub fn add(&self, mut rule: FaultRule) -> Result<String, String> {
        rule.validate()?;
        let name = rule.name.clone().unwrap_or_else(|| {
            format!(
                "rule-{}",
                self.next_name.fetch_add(1, Ordering::Relaxed) + 1
            )
        });
        rule.name = Some(name.clone());
        let mut rules = lock(&self.rules);
        rules.retain(|state| state.rule.name.as_deref() != Some(name.as_str()));
        rules.push(RuleState {
            rule,
            seen: 0,
            fired: 0,
        });
        Ok(name)
    }

    pub fn remove(&self, name: &str) -> bool {
        let mut rules = lock(&self.rules);
        let before = rules.len();
        rules.retain(|state| state.rule.name.as_deref() != Some(name));
        rules.len() != before
    }

    pub fn clear(&self) {
        lock(&self.rules).clear();
        lock(&self.quota).clear();
    }

    /// The active rules with how often each has fired.
    pub fn list(&self) -> Vec<(FaultRule, u32)> {
        lock(&self.rules)
            .iter()
            .map(|state| (state.rule.clone(), state.fired))
            .collect()
    }

    /// The rules that fire for this request, in order; each counts the request.
    pub fn fire(&self, facts: &RequestFacts<'_>) -> Vec<FaultRule> {
        let token = facts.method == TOKEN_METHOD;
        let mut fired = Vec::new();
        let mut rules = lock(&self.rules);
        for state in rules.iter_mut() {
            let rule = &state.rule;
            if (token && rule.fault.for_api()) || (!token && rule.fault.for_token_endpoint()) {
                continue;
            }
            let method_ok = match &rule.method {
                Some(pattern) => method_matches(pattern, facts.method),
                // Without a method, API rules skip the token endpoint.
                None => !token || rule.fault.for_token_endpoint(),
            };
            if !method_ok
                || rule
                    .path
                    .as_deref()
                    .is_some_and(|p| !glob_match(p, facts.path))
                || rule.page.is_some_and(|p| p != facts.page)
                || (rule.fault == FaultKind::ExpirePageToken && !facts.has_page_token)
            {
                continue;
            }
            state.seen += 1;
            if state.seen <= rule.after || (rule.times != 0 && state.fired >= rule.times) {
                continue;
            }
            state.fired += 1;
            fired.push(rule.clone());
        }
        rules.retain(|state| state.rule.times == 0 || state.fired < state.rule.times);
        fired
    }

    /// Counts a request against the per-minute quota of `key`; false when over it.
    pub fn take_quota(&self, key: &str) -> bool {
        let Some(limit) = lock(&self.settings).quota_per_minute else {
            return true;
        };
        let now = Instant::now();
        let mut quota = lock(&self.quota);
        let entry = quota.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= limit
    }

    /// Forgets quota use (e.g. after changing the quota).
    pub fn reset_quota(&self) {
        lock(&self.quota).clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn facts<'a>(method: &'a str, path: &'a str, page: u32) -> RequestFacts<'a> {
        RequestFacts {
            method,
            path,
            page,
            has_page_token: page > 1,
        }
    }

    #[test]
    fn nth_and_page_matching() {
        let faults = Faults::default();
        let rule: FaultRule = serde_json::from_str(
            r#"{"method": "members.*", "path": "/admin/directory/v1/groups/*/members", "after": 1, "times": 2, "fault": "error", "status": 503}"#,
        )
        .unwrap();
        faults.add(rule).unwrap();
        let f = facts("members.list", "/admin/directory/v1/groups/g@x/members", 1);
        assert!(faults.fire(&f).is_empty());
        assert_eq!(faults.fire(&f).len(), 1);
        assert_eq!(faults.fire(&f).len(), 1);
        assert!(faults.fire(&f).is_empty());
        assert!(faults.list().is_empty());
        let rule: FaultRule =
            serde_json::from_str(r#"{"page": 2, "fault": "expire_page_token"}"#).unwrap();
        faults.add(rule).unwrap();
        assert!(faults.fire(&facts("users.list", "/u", 1)).is_empty());
        assert_eq!(faults.fire(&facts("users.list", "/u", 2)).len(), 1);
    }

    #[test]
    fn rules_are_validated() {
        assert!(serde_json::from_str::<FaultRule>(r#"{"fault": "error", "stauts": 5}"#).is_err());
        let rule: FaultRule = serde_json::from_str(r#"{"fault": "error"}"#).unwrap();
        assert!(rule.validate().is_err());
        let rule: FaultRule = serde_json::from_str(r#"{"fault": "delay"}"#).unwrap();
        assert!(rule.validate().is_err());
        assert!(glob_match("/a/*/c*", "/a/b/cd"));
        assert!(!glob_match("/a/*/c", "/a/b/d"));
    }
}
