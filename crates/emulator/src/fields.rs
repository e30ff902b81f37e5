//! The `fields` system parameter (partial response): `a,b(c,d)/e`, `*`. Parses the selector
//! and prunes a JSON response to it.

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::ApiError;

/// A parsed selector: for each selected key, what to keep below it (`None`: everything).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldMask {
    all: bool,
    keys: BTreeMap<String, Option<FieldMask>>,
}

fn bad(selector: &str) -> ApiError {
    ApiError::invalid_parameter(
        "fields",
        selector,
        "Invalid field selection: use names separated by commas, '/' for sub-fields and '( )' to group them.",
    )
}

impl FieldMask {
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        let chars: Vec<char> = selector.chars().filter(|c| !c.is_whitespace()).collect();
        let mut pos = 0;
        let mask = parse_list(&chars, &mut pos).ok_or_else(|| bad(selector))?;
        if pos != chars.len() {
            return Err(bad(selector));
        }
        Ok(mask)
    }

    fn insert(&mut self, path: &[String], sub: Option<FieldMask>) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if first == "*" && rest.is_empty() && sub.is_none() {
            self.all = true;
            return;
        }
        if rest.is_empty() {
            match (self.keys.get_mut(first), sub) {
                (Some(Some(existing)), Some(sub)) => existing.merge(sub),
                (Some(slot), None) => *slot = None,
                (Some(None), Some(_)) => {}
                (None, sub) => {
                    self.keys.insert(first.clone(), sub);
                }
            }
            return;
        }
        let entry = self
            .keys
            .entry(first.clone())
            .or_insert_with(|| Some(FieldMask::default()));
        if let Some(child) = entry {
            child.insert(rest, sub);
        }
    }

    fn merge(&mut self, other: FieldMask) {
        self.all |= other.all;
        for (key, sub) in other.keys {
            self.insert(&[key], sub);
        }
    }

    /// Prunes `value` to the selection (arrays: each element).
    pub fn apply(&self, value: &mut Value) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(|item| self.apply(item)),
            Value::Object(map) => {
                if self.all {
                    return;
                }
                map.retain(|key, _| self.keys.contains_key(key));
                for (key, child) in map.iter_mut() {
                    if let Some(Some(sub)) = self.keys.get(key) {
                        sub.apply(child);
                    }
                }
            }
            _ => {}
        }
    }
}

fn parse_list(chars: &[char], pos: &mut usize) -> Option<FieldMask> {
    let mut mask = FieldMask::default();
    loop {
        let mut path = Vec::new();
        loop {
            let start = *pos;
            while *pos < chars.len()
                && (chars[*pos].is_alphanumeric() || matches!(chars[*pos], '_' | '*' | '-' | '.'))
            {
                *pos += 1;
            }
            if start == *pos {
                return None;
            }
            path.push(chars[start..*pos].iter().collect::<String>());
            if *pos < chars.len() && chars[*pos] == '/' {
                *pos += 1;
                continue;
            }
            break;
        }
        let sub = if *pos < chars.len() && chars[*pos] == '(' {
            *pos += 1;
            let sub = parse_list(chars, pos)?;
            if *pos >= chars.len() || chars[*pos] != ')' {
                return None;
            }
            *pos += 1;
            Some(sub)
        } else {
            None
        };
        mask.insert(&path, sub);
        if *pos < chars.len() && chars[*pos] == ',' {
            *pos += 1;
            continue;
        }
        return Some(mask);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prunes_nested_selections() {
        let mut value = json!({"kind": "k", "nextPageToken": "t", "users": [
            {"id": "1", "primaryEmail": "a@x", "name": {"fullName": "A", "givenName": "a"}, "etag": "e"}]});
        FieldMask::parse("nextPageToken,users(id,name/fullName)")
            .unwrap()
            .apply(&mut value);
        assert_eq!(
            value,
            json!({"nextPageToken": "t", "users": [{"id": "1", "name": {"fullName": "A"}}]})
        );
        let mut value = json!({"a": {"b": 1, "c": 2}});
        FieldMask::parse("*").unwrap().apply(&mut value);
        assert_eq!(value, json!({"a": {"b": 1, "c": 2}}));
        assert!(FieldMask::parse("users(id").is_err());
        assert!(FieldMask::parse("a,,b").is_err());
        assert!(FieldMask::parse("").is_err());
    }
}
