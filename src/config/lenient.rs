//! Reading a TOML table into a `Raw*` struct so that one mistake hides no other: every unknown
//! key and every key whose value has the wrong type is its own problem, named by its full key,
//! and the struct is then built from the keys that are right so the section's own checks still
//! run. The known keys come from the struct itself (its serde field names), so the list in a
//! message can never drift from what the struct accepts.
//!
//! Must not: know any section's keys by name.

use std::collections::BTreeMap;

use serde::de::{self, DeserializeOwned, Visitor};

use super::Problems;

/// The serde field names of a struct deriving `Deserialize` (empty for anything else).
pub(crate) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(Introspect(&mut fields));
    fields.unwrap_or(&[])
}

/// Deserializes `value`, the table at `key` ("" for a file's top level), into `T`. `known_extra`
/// are keys the caller handled itself (e.g. `type`); `what` names the table in messages.
/// `None` only when `value` is not a table; otherwise every problem is recorded and `T` holds
/// the keys that were right (so a caller must still check whether problems were recorded).
pub(crate) fn table<T: DeserializeOwned>(
    value: toml::Value,
    key: &str,
    what: &str,
    known_extra: &[&str],
    p: &mut Problems<'_>,
) -> Option<T> {
    let mut table = match value {
        toml::Value::Table(table) => table,
        other => {
            p.add(
                if key.is_empty() { "(file)" } else { key },
                format!("must be a table, not a {}", other.type_str()),
            );
            return None;
        }
    };
    let fields = field_names::<T>();
    let known: Vec<&str> = fields.iter().chain(known_extra).copied().collect();
    let unknown: Vec<String> = table
        .keys()
        .filter(|name| !known.contains(&name.as_str()))
        .cloned()
        .collect();
    for name in unknown {
        table.remove(&name);
        let hint = match closest(&name, &known) {
            Some(close) => format!("did you mean `{close}`? "),
            None => String::new(),
        };
        p.add(
            join(key, &name),
            format!(
                "unknown key: {hint}remove it or fix its spelling (the keys of {what}: {})",
                known.join(", ")
            ),
        );
    }
    if let Ok(parsed) = T::deserialize(toml::Value::Table(table.clone())) {
        return Some(parsed);
    }
    // Find each key that `T` cannot take on its own; every field is optional, so one key alone
    // fails only because of its own value.
    let names: Vec<String> = table.keys().cloned().collect();
    for name in names {
        let Some(item) = table.get(&name).cloned() else {
            continue;
        };
        let mut alone = toml::Table::new();
        alone.insert(name.clone(), item);
        if let Err(err) = T::deserialize(toml::Value::Table(alone)) {
            p.add(join(key, &name), err.message().to_owned());
            table.remove(&name);
        }
    }
    match T::deserialize(toml::Value::Table(table)) {
        Ok(parsed) => Some(parsed),
        Err(err) => {
            p.add(
                if key.is_empty() { "(file)" } else { key },
                err.message().to_owned(),
            );
            None
        }
    }
}

/// A table of strings (`[roles]`, `[attributes]`): each value that is not a string is its own
/// problem; the others are kept.
pub(crate) fn string_map(
    value: toml::Value,
    key: &str,
    what: &str,
    p: &mut Problems<'_>,
) -> Option<BTreeMap<String, String>> {
    let toml::Value::Table(table) = value else {
        p.add(key, format!("must be a table: [{key}]"));
        return None;
    };
    let mut map = BTreeMap::new();
    for (name, value) in table {
        match value {
            toml::Value::String(text) => {
                map.insert(name, text);
            }
            other => p.add(
                format!("{key}.\"{name}\""),
                format!("must be a string ({what}), not a {}", other.type_str()),
            ),
        }
    }
    Some(map)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The known key a typo most likely meant: at most two edits away.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// A deserializer that only records the field names a struct asks for.
struct Introspect<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for Introspect<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("only the field names were wanted"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        #[serde(rename = "type")]
        kind: Option<String>,
        min_deletes: Option<u64>,
    }

    #[test]
    fn field_names_come_from_the_struct() {
        assert_eq!(field_names::<Sample>(), &["type", "min_deletes"]);
        assert!(field_names::<u32>().is_empty());
    }

    #[test]
    fn a_typo_is_matched_to_the_key_it_meant() {
        assert_eq!(
            closest("min_delete", &["max_delete_percent", "min_deletes"]),
            Some("min_deletes")
        );
        assert_eq!(closest("colour", &["state_dir", "log_format"]), None);
    }
}
