//! `[[sinks]]`: where a tenant's events are delivered besides the SQLite outbox.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{http_url, lenient, Problems, SecretShape};
use crate::signing::SigningKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RejectPolicy {
    /// A 4xx (other than 408/429) is retried like any failure, and reported.
    #[default]
    Retry,
    /// Delivery stops with the cursor held until an operator acts.
    Park,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    url: Option<String>,
    secret_file: Option<PathBuf>,
    path: Option<PathBuf>,
    batch_size: Option<usize>,
    on_reject: Option<RejectPolicy>,
    timeout_seconds: Option<u64>,
    max_backoff_seconds: Option<u64>,
    max_attempts: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct WebhookSinkConfig {
    pub url: String,
    /// From `secret_file`, parsed once here.
    pub key: SigningKey,
    pub timeout: Duration,
    pub on_reject: RejectPolicy,
}

#[derive(Debug, Clone)]
pub struct JsonlSinkConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub enum SinkKind {
    Webhook(WebhookSinkConfig),
    Jsonl(JsonlSinkConfig),
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Unique within the tenant; names the delivery cursor. Default: `type` + position.
    pub name: String,
    /// 1 sends one event per request (the body is the event object); more sends a JSON array.
    pub batch_size: usize,
    /// The ceiling of the exponential backoff between failed attempts.
    pub max_backoff: Duration,
    /// Failed attempts of one batch before the sink is parked; `None` retries forever.
    pub max_attempts: Option<u32>,
    pub kind: SinkKind,
}

impl SinkConfig {
    /// What a rejection (4xx other than 408/429) does; files never reject.
    pub fn on_reject(&self) -> RejectPolicy {
        match &self.kind {
            SinkKind::Webhook(webhook) => webhook.on_reject,
            SinkKind::Jsonl(_) => RejectPolicy::Retry,
        }
    }
}

pub(super) fn validate(values: Vec<toml::Value>, p: &mut Problems<'_>) -> Option<Vec<SinkConfig>> {
    let mut sinks: Vec<SinkConfig> = Vec::new();
    let before = p.count();
    for (index, value) in values.into_iter().enumerate() {
        let key = format!("sinks[{index}]");
        let Some(raw) = lenient::table::<RawSink>(value, &key, "a [[sinks]] entry", &[], p) else {
            continue;
        };
        let kind_name = raw.kind.clone().unwrap_or_default();
        // Keys of the other sink type are as unknown here as a typo.
        let foreign: &[(&str, bool)] = match kind_name.as_str() {
            "webhook" => &[("path", raw.path.is_some())],
            "jsonl" => &[
                ("url", raw.url.is_some()),
                ("secret_file", raw.secret_file.is_some()),
                ("timeout_seconds", raw.timeout_seconds.is_some()),
                // A file never rejects an event: there is nothing for it to decide.
                ("on_reject", raw.on_reject.is_some()),
            ],
            _ => &[],
        };
        for (name, _) in foreign.iter().filter(|(_, present)| *present) {
            p.add(
                format!("{key}.{name}"),
                format!("not a key of a {kind_name} sink: remove it (or fix `type`)"),
            );
        }
        let kind = match kind_name.as_str() {
            "webhook" => {
                let url = match &raw.url {
                    Some(url) => http_url(url, &format!("{key}.url"), p),
                    None => {
                        p.add(format!("{key}.url"), "missing: where to POST events");
                        None
                    }
                };
                let secret = match &raw.secret_file {
                    Some(path) => {
                        p.read_secret(&format!("{key}.secret_file"), path, SecretShape::Text)
                    }
                    None => {
                        p.add(
                            format!("{key}.secret_file"),
                            "missing: a file holding a Standard Webhooks secret (whsec_…)",
                        );
                        None
                    }
                };
                let signing_key =
                    secret.and_then(|secret| match SigningKey::from_secret(secret.expose()) {
                        Ok(signing_key) => Some(signing_key),
                        Err(err) => {
                            p.add(format!("{key}.secret_file"), err.to_string());
                            None
                        }
                    });
                match (url, signing_key) {
                    (Some(_), Some(signing_key)) => Some(SinkKind::Webhook(WebhookSinkConfig {
                        // As written: a trailing slash may matter to the receiver.
                        url: raw.url.clone().unwrap_or_default(),
                        key: signing_key,
                        timeout: Duration::from_secs(raw.timeout_seconds.unwrap_or(30)),
                        on_reject: raw.on_reject.unwrap_or_default(),
                    })),
                    _ => None,
                }
            }
            "jsonl" => match &raw.path {
                Some(path) => Some(SinkKind::Jsonl(JsonlSinkConfig {
                    path: p.resolve(path),
                })),
                None => {
                    p.add(
                        format!("{key}.path"),
                        "missing: the file to append events to",
                    );
                    None
                }
            },
            other => {
                p.add(
                    format!("{key}.type"),
                    format!("{other:?}: use \"webhook\" or \"jsonl\""),
                );
                None
            }
        };
        let name = raw
            .name
            .clone()
            .unwrap_or_else(|| format!("{kind_name}-{}", index + 1));
        if sinks.iter().any(|sink| sink.name == name) {
            p.add(
                format!("{key}.name"),
                format!("{name:?} is used by another sink of this tenant"),
            );
        }
        if raw.max_attempts == Some(0) {
            p.add(
                format!("{key}.max_attempts"),
                "must be at least 1 (leave it out to retry forever)",
            );
        }
        if raw.max_backoff_seconds == Some(0) {
            p.add(
                format!("{key}.max_backoff_seconds"),
                "must be at least 1 second",
            );
        }
        if let Some(kind) = kind {
            // A file is cheap to append to but each batch is fsynced: batch by default.
            let default_batch = match kind {
                SinkKind::Webhook(_) => 1,
                SinkKind::Jsonl(_) => 500,
            };
            sinks.push(SinkConfig {
                name,
                batch_size: raw.batch_size.unwrap_or(default_batch).max(1),
                max_backoff: Duration::from_secs(raw.max_backoff_seconds.unwrap_or(300).max(1)),
                max_attempts: raw.max_attempts.filter(|n| *n > 0),
                kind,
            })
        }
    }
    (p.count() == before).then_some(sinks)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Problem;

    fn validate_text(dir: &std::path::Path, text: &str) -> (Option<Vec<SinkConfig>>, Vec<Problem>) {
        let file = dir.join("acme.toml");
        let table: toml::Table = toml::from_str(text).unwrap();
        let sinks = table["sinks"].as_array().unwrap().clone();
        let mut found = crate::config::Findings::default();
        let mut p = Problems::new(&file, &mut found);
        let validated = validate(sinks, &mut p);
        (validated, found.problems)
    }

    #[test]
    fn defaults_and_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("secret"),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
        )
        .unwrap();
        let (sinks, problems) = validate_text(
            dir.path(),
            "[[sinks]]\ntype = \"webhook\"\nurl = \"https://app.example/h\"\nsecret_file = \"secret\"\n\
             [[sinks]]\ntype = \"jsonl\"\npath = \"events.jsonl\"\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let sinks = sinks.unwrap();
        assert_eq!(sinks[0].name, "webhook-1");
        assert_eq!(sinks[0].batch_size, 1);
        assert_eq!(sinks[0].max_attempts, None);
        assert_eq!(sinks[0].on_reject(), RejectPolicy::Retry);
        assert_eq!(sinks[1].name, "jsonl-2");
        assert_eq!(sinks[1].batch_size, 500);
        assert!(
            matches!(&sinks[1].kind, SinkKind::Jsonl(j) if j.path == dir.path().join("events.jsonl"))
        );
    }

    #[test]
    fn a_bad_secret_and_zero_limits_are_reported_with_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "whsec_not base64!").unwrap();
        let (sinks, problems) = validate_text(
            dir.path(),
            "[[sinks]]\ntype = \"webhook\"\nurl = \"https://app.example/h\"\nsecret_file = \"secret\"\nmax_attempts = 0\nmax_backoff_seconds = 0\n",
        );
        assert!(sinks.is_none());
        let keys: Vec<&str> = problems.iter().filter_map(|p| p.key.as_deref()).collect();
        assert_eq!(
            keys,
            vec![
                "sinks[0].secret_file",
                "sinks[0].max_attempts",
                "sinks[0].max_backoff_seconds"
            ],
            "{problems:?}"
        );
    }
}
