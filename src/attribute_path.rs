//! Attribute paths: where a custom attribute comes from in the IdP's user object.
//!
//! Syntax: dotted keys (`organizations.title`), `[N]` indexes, `[primary]` (the element whose
//! `primary` is true, else the first) and `[field=value]` selectors on arrays; the SCIM filter
//! form `[type eq "work"]` that Entra's attribute mappings use is the same selector. Keys match
//! exactly, else case-insensitively (SCIM attribute names are case-insensitive).
//!
//! A leading SCIM schema URN names an extension object, and URNs contain dots (`2.0`) and
//! colons, so where the URN ends is decided against the object itself: the longest `urn:` key
//! of the object that prefixes the path, followed by `:` (RFC 7644 and Entra:
//! `urn:…:2.0:User:employeeNumber`, `urn:…:User:manager.value`) or `.` (the joined form some
//! IdPs and apps write: `urn:…:2.0:User.employeeNumber`). A server that stored the flattened
//! key literally (`"urn:…:User:employeeNumber": "E-1"` at the top level) resolves too.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
    Primary,
    Select { field: String, value: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributePath {
    pub text: String,
    /// For a URN path, the first segment is the URN up to its last `:`; resolution also tries
    /// the object's own URN keys (see the module comment).
    pub segments: Vec<Segment>,
    urn: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(String);

impl AttributePath {
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(PathError("an empty path names nothing".into()));
        }
        let mut segments = Vec::new();
        let mut rest = trimmed;
        if rest.len() > 4 && rest[..4].eq_ignore_ascii_case("urn:") {
            // `urn:...:User:field.sub` → key `urn:...:User`, then `field.sub`.
            let before_selectors = &rest[..rest.find('[').unwrap_or(rest.len())];
            let urn_end = before_selectors.rfind(':').unwrap_or(rest.len());
            let (urn, tail) = rest.split_at(urn_end);
            segments.push(Segment::Key(urn.to_owned()));
            rest = tail.trim_start_matches(':');
            if rest.is_empty() {
                return Ok(Self {
                    text: trimmed.to_owned(),
                    segments,
                    urn: true,
                });
            }
        }
        let urn = !segments.is_empty();
        segments.extend(parse_dotted(rest, trimmed)?);
        Ok(Self {
            text: trimmed.to_owned(),
            segments,
            urn,
        })
    }

    /// The value at this path, or `None` where it does not resolve.
    pub fn resolve<'a>(&self, root: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        if self.urn {
            if let Some(found) = self.resolve_urn(root) {
                return Some(found);
            }
        }
        resolve_segments(root, &self.segments)
    }

    /// Matches the path against the object's own `urn:` keys, longest first.
    fn resolve_urn<'a>(&self, root: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        let object = root.as_object()?;
        let lowered = self.text.to_lowercase();
        let mut keys: Vec<&String> = object
            .keys()
            .filter(|key| key.len() >= 4 && key[..4].eq_ignore_ascii_case("urn:"))
            .collect();
        keys.sort_by_key(|key| std::cmp::Reverse(key.len()));
        for key in keys {
            let key_lowered = key.to_lowercase();
            if lowered == key_lowered {
                return non_null(&object[key.as_str()]);
            }
            let Some(rest) = lowered.strip_prefix(&key_lowered) else {
                continue;
            };
            if !rest.starts_with(':') && !rest.starts_with('.') {
                continue;
            }
            // Keep the original case of the tail: keys match exactly first.
            let tail = &self.text[key.len() + 1..];
            let Ok(segments) = parse_dotted(tail, &self.text) else {
                continue;
            };
            if let Some(found) = resolve_segments(&object[key.as_str()], &segments) {
                return Some(found);
            }
        }
        None
    }
}

fn non_null(value: &serde_json::Value) -> Option<&serde_json::Value> {
    (!value.is_null()).then_some(value)
}

fn get_key<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    let object = value.as_object()?;
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn resolve_segments<'a>(
    root: &'a serde_json::Value,
    segments: &[Segment],
) -> Option<&'a serde_json::Value> {
    let mut current = root;
    for segment in segments {
        current = match segment {
            Segment::Key(key) => get_key(current, key)?,
            Segment::Index(index) => current.as_array()?.get(*index)?,
            Segment::Primary => {
                let items = current.as_array()?;
                items
                    .iter()
                    .find(|item| is_true(get_key(item, "primary")))
                    .or_else(|| items.first())?
            }
            Segment::Select { field, value } => current.as_array()?.iter().find(|item| {
                get_key(item, field).is_some_and(|found| match found {
                    serde_json::Value::String(s) => s.eq_ignore_ascii_case(value),
                    other => {
                        serde_json::from_str::<serde_json::Value>(value).is_ok_and(|v| &v == other)
                    }
                })
            })?,
        };
    }
    non_null(current)
}

/// `a.b[0].c[type=work]` (no URN) into segments. Dots inside `[...]` (an email in a selector)
/// do not split.
fn parse_dotted(rest: &str, trimmed: &str) -> Result<Vec<Segment>, PathError> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut begin) = (0usize, None::<char>, 0usize);
    for (at, c) in rest.char_indices() {
        match (c, quote) {
            ('"' | '\'', None) if depth > 0 => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            (_, Some(_)) => {}
            ('[', None) => depth += 1,
            (']', None) => depth = depth.saturating_sub(1),
            ('.', None) if depth == 0 => {
                parts.push(&rest[begin..at]);
                begin = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&rest[begin..]);
    let mut segments = Vec::new();
    for part in parts {
        let (key, mut selectors) = match part.find('[') {
            Some(open) => (&part[..open], &part[open..]),
            None => (part, ""),
        };
        if key.is_empty() && selectors.is_empty() {
            return Err(PathError(format!(
                "empty segment in {trimmed:?} (two dots in a row?)"
            )));
        }
        if key.contains(']') {
            return Err(PathError(format!("unexpected ']' in {trimmed:?}")));
        }
        if !key.is_empty() {
            segments.push(Segment::Key(key.to_owned()));
        }
        while !selectors.is_empty() {
            let close = closing_bracket(selectors)
                .ok_or_else(|| PathError(format!("unclosed '[' in {trimmed:?}")))?;
            let inner = &selectors[1..close];
            segments.push(parse_selector(inner, trimmed)?);
            selectors = &selectors[close + 1..];
            if !selectors.is_empty() && !selectors.starts_with('[') {
                return Err(PathError(format!(
                    "unexpected {selectors:?} after ']' in {trimmed:?}"
                )));
            }
        }
    }
    Ok(segments)
}

/// The index of the `]` closing the `[` at 0, skipping quoted text.
fn closing_bracket(text: &str) -> Option<usize> {
    let mut quote = None;
    for (at, c) in text.char_indices().skip(1) {
        match (c, quote) {
            (c, Some(q)) if c == q => quote = None,
            (_, Some(_)) => {}
            ('"' | '\'', None) => quote = Some(c),
            (']', None) => return Some(at),
            _ => {}
        }
    }
    None
}

fn is_true(value: Option<&serde_json::Value>) -> bool {
    match value {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn parse_selector(inner: &str, whole: &str) -> Result<Segment, PathError> {
    if inner == "primary" {
        return Ok(Segment::Primary);
    }
    if let Ok(index) = inner.parse::<usize>() {
        return Ok(Segment::Index(index));
    }
    // `[type eq "work"]`, the SCIM filter form, is `[type=work]`.
    let split = inner.split_once('=').or_else(|| {
        let lowered = inner.to_ascii_lowercase();
        lowered
            .find(" eq ")
            .map(|at| (&inner[..at], &inner[at + 4..]))
    });
    match split {
        Some((field, value))
            if !field.trim().is_empty()
                && !value.trim().is_empty()
                && !field.trim().contains(char::is_whitespace) =>
        {
            Ok(Segment::Select {
                field: field.trim().to_owned(),
                value: value
                    .trim()
                    .trim_matches(|c| c == '"' || c == '\'')
                    .to_owned(),
            })
        }
        _ => Err(PathError(format!(
            "[{inner}] in {whole:?} is not a selector: use [N], [primary], [field=value] or [field eq \"value\"]"
        ))),
    }
}

impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
