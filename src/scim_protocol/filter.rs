//! The SCIM filter language (RFC 7644 §3.4.2.2): parsed into a [`Filter`] and evaluated over
//! a resource as JSON. Keywords, operators and attribute names are case-insensitive; string
//! comparisons are too, except on `id` and `externalId` (case-exact in RFC 7643). Besides the
//! RFC grammar it accepts what Entra sends: a value path followed by a sub-attribute and a
//! comparison, `emails[type eq "work"].value eq "ada@example.com"`.
//!
//! Precedence: `not` binds tightest, then `and`, then `or`; parentheses group. A filter
//! nested deeper than [`MAX_DEPTH`] is refused rather than parsed with unbounded recursion.

use serde_json::{Number, Value};

use super::path::{get_ci, AttrPath};
use super::ScimError;

/// How deep parentheses, `not` and value paths may nest.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Present(AttrPath),
    Compare(AttrPath, CompareOp, Value),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`: some element of `attr` matches `filter` (and `then`, when the value
    /// path is followed by a sub-attribute comparison).
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
        then: Option<Box<Filter>>,
    },
}

impl Filter {
    pub fn parse(text: &str) -> Result<Self, ScimError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            tokens: &tokens,
            at: 0,
            depth: 0,
        };
        let filter = parser.or_expr()?;
        if let Some(token) = parser.peek() {
            return Err(ScimError::invalid_filter(format!(
                "unexpected {} after a complete filter",
                token.describe()
            )));
        }
        Ok(filter)
    }

    /// Whether `resource` (a JSON object) satisfies the filter.
    pub fn matches(&self, resource: &Value) -> bool {
        match self {
            Filter::Present(path) => candidates(path, resource).iter().any(|v| is_present(v)),
            Filter::Compare(path, CompareOp::Ne, value) => !candidates(path, resource)
                .iter()
                .any(|candidate| compare(path, CompareOp::Eq, candidate, value)),
            Filter::Compare(path, op, value) => candidates(path, resource)
                .iter()
                .any(|candidate| compare(path, *op, candidate, value)),
            Filter::And(a, b) => a.matches(resource) && b.matches(resource),
            Filter::Or(a, b) => a.matches(resource) || b.matches(resource),
            Filter::Not(inner) => !inner.matches(resource),
            Filter::ValuePath { path, filter, then } => elements(path.attr_value(resource))
                .into_iter()
                .any(|element| {
                    filter.matches(element)
                        && then.as_ref().is_none_or(|then| then.matches(element))
                }),
        }
    }

    /// For a filter that is a conjunction of `eq` comparisons on plain attributes, those
    /// (attribute, value) pairs: what a PATCH that adds through a value path with no match
    /// puts in the element it creates (`emails[type eq "work"].value`).
    pub fn equalities(&self) -> Option<Vec<(String, Value)>> {
        match self {
            Filter::Compare(path, CompareOp::Eq, value)
                if path.urn.is_none() && path.sub.is_none() =>
            {
                Some(vec![(path.attr.clone(), value.clone())])
            }
            Filter::And(a, b) => {
                let mut pairs = a.equalities()?;
                pairs.extend(b.equalities()?);
                Some(pairs)
            }
            _ => None,
        }
    }
}

/// The values a path selects in `resource`: the attribute's value, each element of a
/// multi-valued one, and for a sub-attribute the sub-attribute of each.
fn candidates<'a>(path: &AttrPath, resource: &'a Value) -> Vec<&'a Value> {
    let values = elements(path.attr_value(resource));
    match &path.sub {
        Some(sub) => values
            .into_iter()
            .filter_map(|value| value.as_object().and_then(|object| get_ci(object, sub)))
            .collect(),
        // A multi-valued complex attribute compared as a whole compares its `value`s.
        None => values
            .into_iter()
            .map(|value| match value.as_object() {
                Some(object) => get_ci(object, "value").unwrap_or(&Value::Null),
                None => value,
            })
            .collect(),
    }
}

fn elements(value: Option<&Value>) -> Vec<&Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(value) => vec![value],
    }
}

fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(object) => !object.is_empty(),
        _ => true,
    }
}

fn case_exact(path: &AttrPath) -> bool {
    path.sub.is_none()
        && path.urn.is_none()
        && (path.attr.eq_ignore_ascii_case("id") || path.attr.eq_ignore_ascii_case("externalId"))
}

fn compare(path: &AttrPath, op: CompareOp, candidate: &Value, value: &Value) -> bool {
    match (candidate, value) {
        (Value::String(have), Value::String(want)) => {
            let (have, want) = if case_exact(path) {
                (have.clone(), want.clone())
            } else {
                (have.to_lowercase(), want.to_lowercase())
            };
            match op {
                CompareOp::Eq => have == want,
                CompareOp::Ne => have != want,
                CompareOp::Co => have.contains(&want),
                CompareOp::Sw => have.starts_with(&want),
                CompareOp::Ew => have.ends_with(&want),
                CompareOp::Gt => have > want,
                CompareOp::Ge => have >= want,
                CompareOp::Lt => have < want,
                CompareOp::Le => have <= want,
            }
        }
        (Value::Number(have), Value::Number(want)) => {
            let (Some(have), Some(want)) = (have.as_f64(), want.as_f64()) else {
                return false;
            };
            match op {
                CompareOp::Eq => have == want,
                CompareOp::Ne => have != want,
                CompareOp::Gt => have > want,
                CompareOp::Ge => have >= want,
                CompareOp::Lt => have < want,
                CompareOp::Le => have <= want,
                CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
            }
        }
        // Booleans arrive as strings from some IdPs ("True"); compare them as booleans.
        (Value::Bool(have), want) => match (op, as_bool(want)) {
            (CompareOp::Eq, Some(want)) => *have == want,
            (CompareOp::Ne, Some(want)) => *have != want,
            _ => false,
        },
        (Value::Null, Value::Null) => op == CompareOp::Eq,
        _ => op == CompareOp::Ne,
    }
}

fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    /// An attribute path, keyword or literal word (`true`, `null`); a word right after `]`
    /// that starts with `.` is a sub-attribute.
    Word(String),
    Str(String),
    Num(Number),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Open => "\"(\"".into(),
            Token::Close => "\")\"".into(),
            Token::OpenBracket => "\"[\"".into(),
            Token::CloseBracket => "\"]\"".into(),
            Token::Word(word) => format!("{word:?}"),
            Token::Str(text) => format!("the string {text:?}"),
            Token::Num(number) => format!("the number {number}"),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, ScimError> {
    let mut tokens = Vec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => at += 1,
            b'(' => {
                tokens.push(Token::Open);
                at += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                at += 1;
            }
            b'[' => {
                tokens.push(Token::OpenBracket);
                at += 1;
            }
            b']' => {
                tokens.push(Token::CloseBracket);
                at += 1;
            }
            b'"' => {
                let (string, end) = string_literal(text, at)?;
                tokens.push(Token::Str(string));
                at = end;
            }
            b'-' | b'0'..=b'9' => {
                let end = scan(bytes, at + 1, |b| {
                    b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')
                });
                let word = &text[at..end];
                let number: Number = serde_json::from_str(word)
                    .map_err(|_| ScimError::invalid_filter(format!("{word:?} is not a number")))?;
                tokens.push(Token::Num(number));
                at = end;
            }
            _ if byte.is_ascii_alphabetic() || byte == b'$' || byte == b'.' => {
                let end = scan(bytes, at + 1, |b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$' | b':' | b'.')
                });
                tokens.push(Token::Word(text[at..end].to_owned()));
                at = end;
            }
            _ => {
                let character = text[at..].chars().next().unwrap_or('?');
                return Err(ScimError::invalid_filter(format!(
                    "unexpected character {character:?} at position {at}"
                )));
            }
        }
    }
    Ok(tokens)
}

fn scan(bytes: &[u8], mut at: usize, more: impl Fn(u8) -> bool) -> usize {
    while at < bytes.len() && more(bytes[at]) {
        at += 1;
    }
    at
}

/// A JSON string literal starting at `start` (the opening quote); the string and the index
/// after the closing quote.
fn string_literal(text: &str, start: usize) -> Result<(String, usize), ScimError> {
    let bytes = text.as_bytes();
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => {
                let literal = &text[start..=at];
                let string: String = serde_json::from_str(literal).map_err(|err| {
                    ScimError::invalid_filter(format!("the string {literal} is not valid: {err}"))
                })?;
                return Ok((string, at + 1));
            }
            _ => at += 1,
        }
    }
    Err(ScimError::invalid_filter(format!(
        "the string starting at position {start} is not closed"
    )))
}

/// A chain of `and`s (or of `or`s) as a balanced tree: the same filter, both being
/// associative, evaluated in the same order, but as deep as the log of its length. A chain as
/// deep as it is long overflowed the stack of whatever evaluated, printed or dropped it (a
/// PATCH path with 5,000 `and`s aborted the daemon).
fn balanced(
    mut terms: Vec<Filter>,
    join: fn(Box<Filter>, Box<Filter>) -> Filter,
) -> Result<Filter, ScimError> {
    if terms.len() <= 1 {
        return terms
            .pop()
            .ok_or_else(|| ScimError::invalid_filter("expected a comparison, found nothing"));
    }
    let right = terms.split_off(terms.len() / 2);
    Ok(join(
        Box::new(balanced(terms, join)?),
        Box::new(balanced(right, join)?),
    ))
}

struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.at);
        self.at += 1;
        token
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn nest(&mut self) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ScimError::invalid_filter(format!(
                "the filter nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn expect(&mut self, want: &Token, what: &str) -> Result<(), ScimError> {
        match self.next() {
            Some(token) if token == want => Ok(()),
            Some(token) => Err(ScimError::invalid_filter(format!(
                "expected {what}, found {}",
                token.describe()
            ))),
            None => Err(ScimError::invalid_filter(format!(
                "expected {what}, the filter ended"
            ))),
        }
    }

    fn or_expr(&mut self) -> Result<Filter, ScimError> {
        let mut terms = vec![self.and_expr()?];
        while self.keyword("or") {
            self.at += 1;
            terms.push(self.and_expr()?);
        }
        balanced(terms, Filter::Or)
    }

    fn and_expr(&mut self) -> Result<Filter, ScimError> {
        let mut terms = vec![self.unary()?];
        while self.keyword("and") {
            self.at += 1;
            terms.push(self.unary()?);
        }
        balanced(terms, Filter::And)
    }

    fn unary(&mut self) -> Result<Filter, ScimError> {
        if self.keyword("not") {
            self.at += 1;
            self.nest()?;
            self.expect(&Token::Open, "\"(\" after \"not\"")?;
            let inner = self.or_expr()?;
            self.expect(&Token::Close, "\")\"")?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            self.nest()?;
            let inner = self.or_expr()?;
            self.expect(&Token::Close, "\")\"")?;
            self.depth -= 1;
            return Ok(inner);
        }
        self.attr_expr()
    }

    fn attr_expr(&mut self) -> Result<Filter, ScimError> {
        let path = match self.next() {
            Some(Token::Word(word)) => {
                AttrPath::parse(word).map_err(|err| ScimError::invalid_filter(err.detail))?
            }
            Some(token) => {
                return Err(ScimError::invalid_filter(format!(
                    "expected an attribute name, found {}",
                    token.describe()
                )))
            }
            None => {
                return Err(ScimError::invalid_filter(
                    "expected an attribute name, the filter ended",
                ))
            }
        };
        if self.peek() == Some(&Token::OpenBracket) {
            self.at += 1;
            self.nest()?;
            let filter = self.or_expr()?;
            self.expect(&Token::CloseBracket, "\"]\"")?;
            self.depth -= 1;
            let then = match self.peek() {
                Some(Token::Word(word)) if word.starts_with('.') => {
                    let sub = AttrPath::parse(&word[1..])
                        .map_err(|err| ScimError::invalid_filter(err.detail))?;
                    self.at += 1;
                    Some(Box::new(self.comparison(sub)?))
                }
                _ => None,
            };
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(filter),
                then,
            });
        }
        self.comparison(path)
    }

    /// `pr`, or an operator and a value, after `path`.
    fn comparison(&mut self, path: AttrPath) -> Result<Filter, ScimError> {
        let op = match self.next() {
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("pr") => {
                return Ok(Filter::Present(path))
            }
            Some(Token::Word(word)) => CompareOp::parse(word).ok_or_else(|| {
                ScimError::invalid_filter(format!(
                    "{word:?} is not an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)"
                ))
            })?,
            Some(token) => {
                return Err(ScimError::invalid_filter(format!(
                    "expected an operator after {path}, found {}",
                    token.describe()
                )))
            }
            None => {
                return Err(ScimError::invalid_filter(format!(
                    "expected an operator after {path}, the filter ended"
                )))
            }
        };
        let value = match self.next() {
            Some(Token::Str(text)) => Value::String(text.clone()),
            Some(Token::Num(number)) => Value::Number(number.clone()),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("false") => Value::Bool(false),
            Some(Token::Word(word)) if word.eq_ignore_ascii_case("null") => Value::Null,
            Some(token) => {
                return Err(ScimError::invalid_filter(format!(
                "expected a value (a string, number, true, false or null) after {path}, found {}",
                token.describe()
            )))
            }
            None => {
                return Err(ScimError::invalid_filter(format!(
                    "expected a value after {path}, the filter ended"
                )))
            }
        };
        let ordering = matches!(
            op,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        );
        let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
        if (ordering && matches!(value, Value::Bool(_) | Value::Null))
            || (substring && !value.is_string())
        {
            return Err(ScimError::invalid_filter(format!(
                "{path}: this operator cannot compare with {value}"
            )));
        }
        Ok(Filter::Compare(path, op, value))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::scim_protocol::{ScimType, ENTERPRISE_USER_SCHEMA};

    #[test]
    fn a_chain_of_a_hundred_thousand_terms_is_evaluated_printed_and_dropped_without_deep_recursion()
    {
        // A PATCH path's filter is bounded only by the body size: `and`/`or` chains of any
        // length must not recurse as deep as they are long (5,000 terms overflowed the stack
        // of a daemon worker, aborting the daemon).
        for join in [" and ", " or "] {
            let text = (0..100_000)
                .map(|n| format!("value eq \"m{n}\""))
                .collect::<Vec<_>>()
                .join(join);
            let filter = Filter::parse(&text).unwrap();
            let copy = filter.clone();
            assert_eq!(copy, filter);
            assert!(format!("{filter:?}").len() > 100_000);
            assert_eq!(filter.matches(&json!({"value": "m99999"})), join == " or ");
            assert!(!filter.matches(&json!({"value": "nobody"})));
            let pairs = filter.equalities();
            if join == " and " {
                let pairs = pairs.unwrap();
                assert_eq!(pairs.len(), 100_000);
                // In the order written.
                assert_eq!(pairs[0].1, json!("m0"));
                assert_eq!(pairs[99_999].1, json!("m99999"));
            } else {
                assert!(pairs.is_none());
            }
        }
    }

    fn user() -> Value {
        json!({
            "id": "2819c223",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "userName": "Ada.Lovelace@example.com",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "active": true,
            "emails": [
                {"value": "ada@work.example", "type": "work", "primary": true},
                {"value": "ada@home.example", "type": "home"}
            ],
            "title": "",
            "meta": {"lastModified": "2026-11-01T10:00:00Z"},
            ENTERPRISE_USER_SCHEMA: {"employeeNumber": "701984", "manager": {"value": "26118915"}},
        })
    }

    fn check(filter: &str) -> bool {
        Filter::parse(filter).unwrap().matches(&user())
    }

    #[test]
    fn the_filters_idps_send_match_as_the_rfc_says() {
        // Okta, in another letter case than stored.
        assert!(check(r#"userName eq "ada.lovelace@EXAMPLE.com""#));
        assert!(!check(r#"userName eq "someone@example.com""#));
        // Entra: `eq` and `and`, the value-path form, the enterprise URN.
        assert!(check(
            r#"externalId eq "00ujl29u0le5T6Aj10h7" and active eq true"#
        ));
        assert!(check(
            r#"emails[type eq "work"].value eq "ADA@work.example""#
        ));
        assert!(!check(
            r#"emails[type eq "home"].value eq "ada@work.example""#
        ));
        assert!(check(&format!(
            r#"{ENTERPRISE_USER_SCHEMA}:employeeNumber eq "701984""#
        )));
        assert!(check(&format!(
            r#"{ENTERPRISE_USER_SCHEMA}:manager.value eq "26118915""#
        )));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "ada""#
        ));
    }

    #[test]
    fn operators_presence_and_logic() {
        assert!(check(r#"name.familyName co "love""#));
        assert!(check(r#"userName ew "@example.com""#));
        assert!(check("emails pr"));
        assert!(!check("title pr"), "an empty string is not present");
        assert!(!check("nickName pr"));
        assert!(
            check(r#"nickName ne "x""#),
            "ne holds for an absent attribute"
        );
        assert!(check(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#));
        assert!(!check(r#"meta.lastModified lt "2026-01-01T00:00:00Z""#));
        assert!(
            check(r#"emails eq "ada@home.example""#),
            "a multi-valued attribute matches any value"
        );
        assert!(check(r#"emails.type eq "home""#));
        assert!(check(r#"active eq "True""#), "booleans sent as strings");
        assert!(check(
            r#"not (userName eq "x") and (title pr or active eq true)"#
        ));
        assert!(!check(r#"userName eq "x" or not(active eq true)"#));
        // `and` binds tighter than `or`.
        assert!(check(
            r#"userName eq "x" and active eq false or active eq true"#
        ));
        assert!(check(r#"EMAILS[TYPE EQ "work" AND primary EQ true]"#));
        // id and externalId compare exactly.
        assert!(!check(r#"externalId eq "00UJL29U0LE5T6AJ10H7""#));
        assert!(!check(r#"id eq "2819C223""#));
    }

    #[test]
    fn malformed_filters_are_invalid_filter_errors() {
        for bad in [
            "",
            "userName",
            r#"userName eq"#,
            r#"userName xx "a""#,
            r#"userName eq "a" and"#,
            r#"(userName eq "a""#,
            r#"userName eq "a")"#,
            r#"emails[type eq "work""#,
            r#"userName eq "unterminated"#,
            r#"userName gt true"#,
            r#"userName co 5"#,
            r#"userName eq "a" junk"#,
            "1abc eq 1",
            r#"userName eq "a" ; drop"#,
        ] {
            let err = Filter::parse(bad).unwrap_err();
            assert_eq!(
                err.scim_type,
                Some(ScimType::InvalidFilter),
                "{bad:?}: {err}"
            );
            assert_eq!(err.status, 400);
        }
        let deep = format!("{}userName pr{}", "(".repeat(1000), ")".repeat(1000));
        let err = Filter::parse(&deep).unwrap_err();
        assert!(err.detail.contains("deeper"), "{err}");
    }

    #[test]
    fn equalities_of_a_value_path_filter_seed_a_new_element() {
        let filter = Filter::parse(r#"type eq "work" and primary eq true"#).unwrap();
        assert_eq!(
            filter.equalities(),
            Some(vec![
                ("type".into(), json!("work")),
                ("primary".into(), json!(true))
            ])
        );
        assert_eq!(
            Filter::parse(r#"type ne "work""#).unwrap().equalities(),
            None
        );
    }
}
