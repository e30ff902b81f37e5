//! Attribute paths: where a custom attribute comes from in the IdP's user object.
//!
//! Syntax: dotted keys (`organizations.title`), `[N]` indexes, `[primary]` (the element whose
//! `primary` is true, else the first) and `[field=value]` selectors on arrays. A leading SCIM
//! schema URN (`urn:…:User:employeeNumber`) is one key, since URNs contain dots (`2.0`).

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
    pub segments: Vec<Segment>,
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
        if rest.starts_with("urn:") {
            // `urn:...:User:field.sub` → key `urn:...:User`, then `field.sub`.
            let urn_end = rest.rfind(':').unwrap_or(rest.len());
            let (urn, tail) = rest.split_at(urn_end);
            segments.push(Segment::Key(urn.to_owned()));
            rest = tail.trim_start_matches(':');
            if rest.is_empty() {
                return Ok(Self {
                    text: text.to_owned(),
                    segments,
                });
            }
        }
        for part in rest.split('.') {
            let (key, mut selectors) = match part.find('[') {
                Some(open) => (&part[..open], &part[open..]),
                None => (part, ""),
            };
            if key.is_empty() && selectors.is_empty() {
                return Err(PathError(format!(
                    "empty segment in {trimmed:?} (two dots in a row?)"
                )));
            }
            if !key.is_empty() {
                segments.push(Segment::Key(key.to_owned()));
            }
            while !selectors.is_empty() {
                let close = selectors
                    .find(']')
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
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The value at this path, or `None` where it does not resolve.
    pub fn resolve<'a>(&self, root: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        let mut current = root;
        for segment in &self.segments {
            current = match segment {
                Segment::Key(key) => current.as_object()?.get(key)?,
                Segment::Index(index) => current.as_array()?.get(*index)?,
                Segment::Primary => {
                    let items = current.as_array()?;
                    items
                        .iter()
                        .find(|item| is_true(item.get("primary")))
                        .or_else(|| items.first())?
                }
                Segment::Select { field, value } => current.as_array()?.iter().find(|item| {
                    item.get(field).is_some_and(|found| match found {
                        serde_json::Value::String(s) => s.eq_ignore_ascii_case(value),
                        other => serde_json::from_str::<serde_json::Value>(value)
                            .is_ok_and(|v| &v == other),
                    })
                })?,
            };
        }
        (!current.is_null()).then_some(current)
    }
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
    match inner.split_once('=') {
        Some((field, value)) if !field.is_empty() && !value.is_empty() => Ok(Segment::Select {
            field: field.trim().to_owned(),
            value: value
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_owned(),
        }),
        _ => Err(PathError(format!(
            "[{inner}] in {whole:?} is not a selector: use [N], [primary] or [field=value]"
        ))),
    }
}

impl fmt::Display for AttributePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
