//! The `query` search syntax of users.list and groups.list (google-directory-api.md §1.8):
//! space-separated clauses joined by AND, `field=value` (exact), `field:value` (word),
//! `field:prefix*` (prefix), quoted values, bare words. Parsing and matching only.

use serde_json::Value;

use super::directory::{normalise_ou_path, Directory, Group, User};
use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Exact,
    Word,
    Prefix,
}

#[derive(Debug, Clone)]
struct Clause {
    /// Lower-case field name; empty for a bare word.
    field: String,
    op: Op,
    /// Lower-case value without quotes and without a trailing `*`.
    value: String,
}

fn invalid_query() -> ApiError {
    ApiError::invalid_input("query")
}

fn parse_clauses(query: &str) -> Result<Vec<Clause>, ApiError> {
    let chars: Vec<char> = query.chars().collect();
    let mut clauses = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && !matches!(chars[i], '=' | ':' | '<' | '>')
            && !chars[i].is_whitespace()
        {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        if i >= chars.len() || chars[i].is_whitespace() {
            let (value, op) = strip_star(name.to_lowercase(), Op::Word);
            clauses.push(Clause {
                field: String::new(),
                op,
                value,
            });
            continue;
        }
        let op = match chars[i] {
            '=' => Op::Exact,
            ':' => Op::Word,
            // Comparisons on dates and numbers are not emulated.
            _ => return Err(invalid_query()),
        };
        i += 1;
        let mut value = String::new();
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            let mut closed = false;
            while i < chars.len() {
                match chars[i] {
                    '\\' if i + 1 < chars.len() => {
                        value.push(chars[i + 1]);
                        i += 2;
                    }
                    '\'' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    c => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            if !closed {
                return Err(invalid_query());
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                value.push(chars[i]);
                i += 1;
            }
        }
        if name.is_empty() {
            return Err(invalid_query());
        }
        let (value, op) = strip_star(value.to_lowercase(), op);
        clauses.push(Clause {
            field: name.to_lowercase(),
            op,
            value,
        });
    }
    Ok(clauses)
}

fn strip_star(value: String, op: Op) -> (String, Op) {
    if op == Op::Word {
        if let Some(prefix) = value.strip_suffix('*') {
            return (prefix.to_owned(), Op::Prefix);
        }
    }
    (value, op)
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

fn text_matches(text: &str, op: Op, value: &str) -> bool {
    let text = text.to_lowercase();
    match op {
        Op::Exact => text == value,
        Op::Prefix => text.starts_with(value) || words(&text).any(|w| w.starts_with(value)),
        Op::Word => {
            text == value
                || text.contains(value) && words(value).all(|v| words(&text).any(|w| w == v))
        }
    }
}

fn bool_value(value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid_query()),
    }
}

const USER_FIELDS: &[&str] = &[
    "",
    "email",
    "givenname",
    "familyname",
    "name",
    "isadmin",
    "isdelegatedadmin",
    "issuspended",
    "isarchived",
    "orgunitpath",
    "externalid",
    "manager",
    "directmanager",
    "managerid",
    "directmanagerid",
    "orgname",
    "orgtitle",
    "orgdepartment",
    "orgdescription",
    "orgcostcenter",
    "phone",
];

/// A parsed users.list query.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    clauses: Vec<Clause>,
}

impl UserQuery {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let clauses = parse_clauses(query)?;
        for clause in &clauses {
            if !USER_FIELDS.contains(&clause.field.as_str()) && !clause.field.contains('.') {
                return Err(invalid_query());
            }
            if matches!(
                clause.field.as_str(),
                "isadmin" | "isdelegatedadmin" | "issuspended" | "isarchived"
            ) {
                bool_value(&clause.value)?;
            }
        }
        Ok(Self { clauses })
    }

    pub fn matches(&self, dir: &Directory, user: &User) -> bool {
        self.clauses
            .iter()
            .all(|clause| clause_matches(dir, user, clause))
    }
}

fn array<'a>(
    body: &'a serde_json::Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a Value> {
    body.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn manager_of<'a>(dir: &'a Directory, user: &User) -> Option<&'a User> {
    user.manager()
        .and_then(|key| dir.resolve_user(key))
        .and_then(|id| dir.user(&id))
}

fn is_manager(manager: &User, value: &str, by_id: bool) -> bool {
    if by_id {
        &*manager.id == value
    } else {
        manager.primary_email().eq_ignore_ascii_case(value)
    }
}

fn clause_matches(dir: &Directory, user: &User, clause: &Clause) -> bool {
    let value = clause.value.as_str();
    let op = clause.op;
    match clause.field.as_str() {
        "" => {
            text_matches(user.name_part("givenName"), op, value)
                || text_matches(user.name_part("familyName"), op, value)
                || email_matches(user, op, value)
        }
        "email" => email_matches(user, op, value),
        "givenname" => text_matches(user.name_part("givenName"), op, value),
        "familyname" => text_matches(user.name_part("familyName"), op, value),
        "name" => text_matches(user.name_part("fullName"), op, value),
        "isadmin" => user.flag("isAdmin") == (value == "true"),
        "isdelegatedadmin" => user.flag("isDelegatedAdmin") == (value == "true"),
        "issuspended" => user.flag("suspended") == (value == "true"),
        "isarchived" => user.flag("archived") == (value == "true"),
        "orgunitpath" => {
            let wanted = normalise_ou_path(value);
            let path = user.org_unit().to_lowercase();
            wanted == "/" || path == wanted || path.starts_with(&format!("{wanted}/"))
        }
        "externalid" => array(&user.body(), "externalIds").any(|e| {
            e.get("value")
                .and_then(Value::as_str)
                .is_some_and(|v| text_matches(v, op, value))
        }),
        "phone" => array(&user.body(), "phones").any(|e| {
            e.get("value")
                .and_then(Value::as_str)
                .is_some_and(|v| text_matches(v, op, value))
        }),
        "directmanager" | "directmanagerid" => {
            let by_id = clause.field.ends_with("id");
            manager_of(dir, user).is_some_and(|m| is_manager(m, value, by_id))
        }
        "manager" | "managerid" => {
            let by_id = clause.field.ends_with("id");
            let mut current = manager_of(dir, user);
            for _ in 0..32 {
                let Some(manager) = current else {
                    return false;
                };
                if is_manager(manager, value, by_id) {
                    return true;
                }
                current = manager_of(dir, manager);
            }
            false
        }
        field if field.starts_with("org") => {
            let key = match field {
                "orgname" => "name",
                "orgtitle" => "title",
                "orgdepartment" => "department",
                "orgdescription" => "description",
                _ => "costCenter",
            };
            array(&user.body(), "organizations").any(|o| {
                o.get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|v| text_matches(v, op, value))
            })
        }
        custom => {
            let Some((schema, field)) = custom.split_once('.') else {
                return false;
            };
            let Some(schemas) = user.custom_schemas() else {
                return false;
            };
            let Some(fields) = schemas
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(schema))
                .and_then(|(_, fields)| fields.as_object())
            else {
                return false;
            };
            let Some(found) = fields
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(field))
                .map(|(_, v)| v)
            else {
                return false;
            };
            custom_value_matches(found, op, value)
        }
    }
}

fn custom_value_matches(found: &Value, op: Op, value: &str) -> bool {
    match found {
        Value::String(text) => text_matches(text, op, value),
        Value::Array(items) => items
            .iter()
            .any(|item| custom_value_matches(item.get("value").unwrap_or(item), op, value)),
        Value::Null => false,
        other => other.to_string().eq_ignore_ascii_case(value),
    }
}

fn email_matches(user: &User, op: Op, value: &str) -> bool {
    std::iter::once(user.primary_email())
        .chain(user.aliases())
        .any(|email| {
            let email = email.to_lowercase();
            match op {
                Op::Exact => email == value,
                Op::Prefix => email.starts_with(value),
                Op::Word => email == value || words(&email).any(|w| w == value),
            }
        })
}

/// A parsed groups.list query: `email`, `name` (exact or prefix) and `memberKey` (exact).
#[derive(Debug, Clone, Default)]
pub struct GroupQuery {
    clauses: Vec<Clause>,
    /// `memberKey=...`: the caller resolves it to the groups that contain it.
    pub member_key: Option<String>,
}

impl GroupQuery {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let mut clauses = Vec::new();
        let mut member_key = None;
        for clause in parse_clauses(query)? {
            match clause.field.as_str() {
                "email" | "name" => clauses.push(clause),
                "memberkey" if clause.op == Op::Exact => member_key = Some(clause.value),
                _ => return Err(invalid_query()),
            }
        }
        if member_key.is_some() && !clauses.is_empty() {
            return Err(invalid_query());
        }
        Ok(Self {
            clauses,
            member_key,
        })
    }

    pub fn matches(&self, group: &Group) -> bool {
        self.clauses.iter().all(|clause| {
            let text = if clause.field == "email" {
                group.email()
            } else {
                group.name()
            };
            let text = text.to_lowercase();
            match clause.op {
                Op::Exact => text == clause.value,
                Op::Prefix => text.starts_with(&clause.value),
                Op::Word => text == clause.value || words(&text).any(|w| w == clause.value),
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_matches_users() {
        let mut dir = Directory::new("C0abc1234", "example.com", 1);
        dir.add_org_unit("/Sales/EMEA", "").unwrap();
        let now = chrono::Utc::now();
        let id = dir
            .insert_user(
                &json!({"primaryEmail": "ann.lee@example.com", "name": {"givenName": "Ann", "familyName": "Lee"},
                        "orgUnitPath": "/Sales/EMEA", "customSchemas": {"HR": {"CostCenter": "CC-7"}}}),
                now,
            )
            .unwrap();
        let user = dir.user(&id).unwrap().clone();
        let check = |q: &str| UserQuery::parse(q).unwrap().matches(&dir, &user);
        assert!(check("email:ann*"));
        assert!(check("email=ANN.LEE@example.com"));
        assert!(!check("email=ann@example.com"));
        assert!(check("orgUnitPath=/Sales"));
        assert!(check("orgUnitPath='/Sales/EMEA' isSuspended=false"));
        assert!(!check("orgUnitPath=/Sal"));
        assert!(!check("isArchived=true"));
        assert!(check("HR.CostCenter=cc-7"));
        assert!(check("ann"));
        assert!(UserQuery::parse("isSuspended=maybe").is_err());
        assert!(UserQuery::parse("bogus=1").is_err());
        assert!(UserQuery::parse("name='open").is_err());
    }

    #[test]
    fn group_query_rules() {
        assert!(GroupQuery::parse("memberKey=a@b.c name=x").is_err());
        assert_eq!(
            GroupQuery::parse("memberKey=a@b.c")
                .unwrap()
                .member_key
                .as_deref(),
            Some("a@b.c")
        );
    }
}
