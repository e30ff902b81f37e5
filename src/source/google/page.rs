//! One page of a Directory API listing: its shape checked the same way whether the page is
//! parsed whole (`serde_json::Value`) or only read through (`head`), and a digest of what it
//! says about the directory.
//!
//! Reading a page through is what lets a fetch keep a small directory's pages unparsed: the
//! head gives the next page token and the item count the listing's bounds need, and the digest
//! tells a run whether the directory is the one its last commit already stored (`PageLedger`).
//! The digest covers every item with the fields `normalize` drops left out (`etag` at any
//! depth outside `customSchemas`, and each kind's volatile top-level fields), so a sign-in that
//! moves `lastLoginTime` does not count as a change. Key order and duplicate keys count, which
//! only ever makes two equal directories differ, never the other way round.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::normalize::{VOLATILE_GROUP_FIELDS, VOLATILE_USER_FIELDS};
use crate::source::http;
use crate::source::SourceError;

/// What a page holds under its list key.
enum Items<T> {
    /// No list key: an empty page when the page names its `kind`.
    Absent {
        has_kind: bool,
    },
    Null,
    List(T),
    NotAList,
}

/// What a page holds under `nextPageToken`.
enum Token {
    Absent,
    Text(String),
    NotText,
}

/// A page's list and next page token, checked. `Ok((None, _))` is an empty page.
fn checked<T>(
    method: &str,
    url: &url::Url,
    page: u64,
    items_key: &str,
    items: Items<T>,
    token: Token,
) -> Result<(Option<T>, Option<String>), SourceError> {
    let invalid = |message: String| SourceError::InvalidResponse {
        url: url.to_string(),
        message,
    };
    let items = match items {
        // Google leaves the list out of an empty page; a page that is not even a Directory
        // API answer (no `kind`) must not pass for an empty directory.
        Items::Absent { has_kind: true } => None,
        Items::Absent { has_kind: false } => {
            return Err(invalid(format!(
                "{method} page {page} has no `{items_key}` and no `kind`: not a Directory API list page"
            )))
        }
        Items::Null => {
            return Err(invalid(format!(
                "{method} page {page}: `{items_key}` is null"
            )))
        }
        Items::List(items) => Some(items),
        Items::NotAList => {
            return Err(invalid(format!(
                "{method}: `{items_key}` is not an array"
            )))
        }
    };
    let next = match token {
        Token::Absent => None,
        Token::Text(token) if token.is_empty() => None,
        Token::Text(token) => Some(token),
        Token::NotText => {
            return Err(invalid(format!(
                "{method}: `nextPageToken` is not a string"
            )))
        }
    };
    Ok((items, next))
}

fn not_an_object(method: &str, reply: &http::Reply) -> SourceError {
    SourceError::InvalidResponse {
        url: reply.url.clone(),
        message: format!("{method} answered JSON that is not an object"),
    }
}

/// A page parsed whole: its items and next page token.
pub fn items(
    method: &str,
    url: &url::Url,
    page: u64,
    items_key: &str,
    reply: &http::Reply,
) -> Result<(Vec<Value>, Option<String>), SourceError> {
    let Value::Object(mut body) = http::parse_json::<Value>(reply)? else {
        return Err(not_an_object(method, reply));
    };
    let items = match body.remove(items_key) {
        None => Items::Absent {
            has_kind: has_kind(&body),
        },
        Some(Value::Null) => Items::Null,
        Some(Value::Array(items)) => Items::List(items),
        Some(_) => Items::NotAList,
    };
    let token = match body.remove("nextPageToken") {
        None | Some(Value::Null) => Token::Absent,
        Some(Value::String(token)) => Token::Text(token),
        Some(_) => Token::NotText,
    };
    let (items, next) = checked(method, url, page, items_key, items, token)?;
    Ok((items.unwrap_or_default(), next))
}

fn has_kind(body: &Map<String, Value>) -> bool {
    body.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| !kind.is_empty())
}

/// A page read through without building it: how many items it has, its next page token, and
/// the digest of its items.
pub struct Head {
    pub items: usize,
    pub next: Option<String>,
    pub digest: [u8; 32],
}

/// Which top-level fields of an item `normalize` drops, by list method.
fn volatile_fields(method: &str) -> &'static [&'static str] {
    match method {
        "users.list" => VOLATILE_USER_FIELDS,
        "groups.list" => VOLATILE_GROUP_FIELDS,
        _ => &["kind", "etag"],
    }
}

pub fn head(
    method: &str,
    url: &url::Url,
    page: u64,
    items_key: &str,
    reply: &http::Reply,
) -> Result<Head, SourceError> {
    let mut deserializer = serde_json::Deserializer::from_str(&reply.body);
    let seed = HeadSeed {
        items_key,
        volatile: volatile_fields(method),
    };
    let read = seed
        .deserialize(&mut deserializer)
        .and_then(|read| deserializer.end().map(|()| read));
    let read = match read {
        Ok(Some(read)) => read,
        Ok(None) => return Err(not_an_object(method, reply)),
        Err(err) => {
            return Err(SourceError::InvalidResponse {
                url: reply.url.clone(),
                message: if reply.body.trim().is_empty() {
                    "empty body".to_owned()
                } else {
                    format!("not the expected JSON ({err})")
                },
            })
        }
    };
    let (items, next) = checked(method, url, page, items_key, read.items, read.token)?;
    Ok(Head {
        items: items.unwrap_or(0),
        next,
        digest: read.digest.finalize().into(),
    })
}

struct HeadRead {
    items: Items<usize>,
    token: Token,
    digest: Sha256,
}

struct HeadSeed<'a> {
    items_key: &'a str,
    volatile: &'static [&'static str],
}

/// Each reader here is a seed that visits the value itself.
macro_rules! seed_is_its_own_visitor {
    ($($seed:ident),*) => {$(
        impl<'de> DeserializeSeed<'de> for $seed<'_> {
            type Value = <Self as Visitor<'de>>::Value;

            fn deserialize<D: de::Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<Self::Value, D::Error> {
                deserializer.deserialize_any(self)
            }
        }
    )*};
}

seed_is_its_own_visitor!(HeadSeed, ListSeed, ValueDigest);

/// Visits every scalar as `$value`.
macro_rules! scalars_are {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

impl<'de> Visitor<'de> for HeadSeed<'_> {
    type Value = Option<HeadRead>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a Directory API list page")
    }

    // `None`: the page is JSON, but not an object.
    scalars_are!(None);

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut items = Items::Absent { has_kind: false };
        let mut has_kind = false;
        let mut token = Token::Absent;
        let mut digest = Sha256::new();
        // Duplicate keys: the last one counts, as in a parsed `Value`.
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.items_key {
                let mut list = Sha256::new();
                items = map.next_value_seed(ListSeed {
                    digest: &mut list,
                    volatile: self.volatile,
                })?;
                digest = list;
            } else if key == "nextPageToken" {
                token = match map.next_value::<Value>()? {
                    Value::Null => Token::Absent,
                    Value::String(text) => Token::Text(text),
                    _ => Token::NotText,
                };
            } else if key == "kind" {
                has_kind = map
                    .next_value::<Value>()?
                    .as_str()
                    .is_some_and(|kind| !kind.is_empty());
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if let Items::Absent { .. } = items {
            items = Items::Absent { has_kind };
        }
        Ok(Some(HeadRead {
            items,
            token,
            digest,
        }))
    }
}

/// A page's list: its items counted and digested.
struct ListSeed<'a> {
    digest: &'a mut Sha256,
    volatile: &'static [&'static str],
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = Items<usize>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a list of items")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Items::Null)
    }

    scalars_are!(Items::NotAList);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Items::NotAList)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut count = 0;
        while seq
            .next_element_seed(ValueDigest {
                digest: &mut *self.digest,
                skip: Skip::Item(self.volatile),
            })?
            .is_some()
        {
            count += 1;
        }
        Ok(Items::List(count))
    }
}

/// Which keys of a map the digest leaves out.
#[derive(Clone, Copy)]
enum Skip {
    /// An item's own fields: its kind's volatile fields.
    Item(&'static [&'static str]),
    /// Deeper: `etag`.
    Etags,
    /// Inside `customSchemas`, whose field names are the customer's: nothing.
    Nothing,
}

impl Skip {
    fn skips(self, key: &str) -> bool {
        match self {
            Skip::Item(fields) => fields.contains(&key),
            Skip::Etags => key == "etag",
            Skip::Nothing => false,
        }
    }

    fn below(self, key: &str) -> Skip {
        match self {
            Skip::Nothing => Skip::Nothing,
            _ if key == "customSchemas" => Skip::Nothing,
            _ => Skip::Etags,
        }
    }
}

/// Feeds one JSON value into the digest, tagged and length-prefixed so that no two different
/// values feed the same bytes.
struct ValueDigest<'a> {
    digest: &'a mut Sha256,
    skip: Skip,
}

impl ValueDigest<'_> {
    fn text(&mut self, tag: u8, text: &str) {
        self.digest.update([tag]);
        self.digest.update((text.len() as u64).to_le_bytes());
        self.digest.update(text.as_bytes());
    }
}

impl<'de> Visitor<'de> for ValueDigest<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.digest.update(b"n");
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<(), E> {
        self.digest.update(if value { b"t" } else { b"f" });
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.digest.update([b'i']);
        self.digest.update(value.to_le_bytes());
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.digest.update([b'u']);
        self.digest.update(value.to_le_bytes());
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        self.digest.update([b'd']);
        self.digest.update(value.to_bits().to_le_bytes());
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, value: &str) -> Result<(), E> {
        self.text(b's', value);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.digest.update(b"[");
        let skip = match self.skip {
            Skip::Nothing => Skip::Nothing,
            _ => Skip::Etags,
        };
        while seq
            .next_element_seed(ValueDigest {
                digest: &mut *self.digest,
                skip,
            })?
            .is_some()
        {}
        self.digest.update(b"]");
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.digest.update(b"{");
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if self.skip.skips(&key) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.text(b'k', &key);
            map.next_value_seed(ValueDigest {
                digest: &mut *self.digest,
                skip: self.skip.below(&key),
            })?;
        }
        self.digest.update(b"}");
        Ok(())
    }
}

/// The digests of every page one fetch read, and the bytes of pages it may still keep
/// unparsed (one budget for the whole fetch, so a large directory is parsed as it arrives).
pub struct PageLedger {
    pages: Mutex<Vec<(String, u64, [u8; 32])>>,
    keep_budget: AtomicUsize,
}

impl PageLedger {
    pub fn new(keep_bytes: usize) -> Self {
        Self {
            pages: Mutex::new(Vec::new()),
            keep_budget: AtomicUsize::new(keep_bytes),
        }
    }

    /// Page `page` of the listing `listing` (its method, URL and query without the page
    /// token) had items of `digest`.
    pub fn record(&self, listing: &str, page: u64, digest: [u8; 32]) {
        self.pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((listing.to_owned(), page, digest));
    }

    /// Whether a page of `bytes` may be kept unparsed; if so, it is taken from the budget.
    pub fn keep(&self, bytes: usize) -> bool {
        self.keep_budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }

    /// One digest of every page recorded, in the order of listing and page (member listings
    /// run concurrently, so arrival order says nothing).
    pub fn digest(&self) -> [u8; 32] {
        let mut pages = self
            .pages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        pages.sort_unstable();
        let mut digest = Sha256::new();
        for (listing, page, items) in &pages {
            digest.update((listing.len() as u64).to_le_bytes());
            digest.update(listing.as_bytes());
            digest.update(page.to_le_bytes());
            digest.update(items);
        }
        digest.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reply(body: &str) -> http::Reply {
        http::Reply {
            status: 200,
            body: body.to_owned(),
            url: "http://127.0.0.1/admin/directory/v1/users".to_owned(),
        }
    }

    fn url() -> url::Url {
        "http://127.0.0.1/admin/directory/v1/users".parse().unwrap()
    }

    fn head_of(body: &str) -> Result<Head, SourceError> {
        head("users.list", &url(), 1, "users", &reply(body))
    }

    fn items_of(body: &str) -> Result<(Vec<Value>, Option<String>), SourceError> {
        items("users.list", &url(), 1, "users", &reply(body))
    }

    #[test]
    fn head_and_whole_page_agree_on_shape_and_errors() {
        for body in [
            r#"{"kind":"admin#directory#users","users":[{"id":"1"},{"id":"2"}],"nextPageToken":"p2"}"#,
            r#"{"kind":"admin#directory#users"}"#,
            r#"{"kind":"admin#directory#users","users":[],"nextPageToken":""}"#,
            r#"{"kind":"admin#directory#users","users":[1],"nextPageToken":null}"#,
            r#"{"users":[{"id":"1"}],"users":[]}"#,
            r#"{}"#,
            r#"{"kind":""}"#,
            r#"{"users":null,"kind":"k"}"#,
            r#"{"users":{"id":"1"},"kind":"k"}"#,
            r#"{"users":[],"nextPageToken":7}"#,
            r#"[1,2]"#,
            r#""text""#,
            r#"null"#,
            r#""#,
            r#"{"users":["#,
            r#"{"users":[]} trailing"#,
        ] {
            let whole = items_of(body).map(|(items, next)| (items.len(), next));
            let read = head_of(body).map(|head| (head.items, head.next));
            assert_eq!(
                format!("{whole:?}"),
                format!("{read:?}"),
                "the head and the whole page disagree on {body:?}"
            );
        }
    }

    #[test]
    fn the_digest_leaves_out_what_normalize_drops_and_nothing_else() {
        let digest = |body: &str| head_of(body).unwrap().digest;
        let base = digest(
            r#"{"kind":"k","etag":"e1","users":[{"id":"1","etag":"a","lastLoginTime":"t1","name":{"etag":"x","givenName":"A"},"customSchemas":{"S":{"etag":"kept"}}}]}"#,
        );
        let volatile_moved = digest(
            r#"{"kind":"k","etag":"e2","users":[{"id":"1","etag":"b","lastLoginTime":"t2","name":{"etag":"y","givenName":"A"},"customSchemas":{"S":{"etag":"kept"}}}]}"#,
        );
        assert_eq!(base, volatile_moved);
        for changed in [
            r#"{"kind":"k","users":[{"id":"1","name":{"givenName":"B"},"customSchemas":{"S":{"etag":"kept"}}}]}"#,
            r#"{"kind":"k","users":[{"id":"1","name":{"givenName":"A"},"customSchemas":{"S":{"etag":"changed"}}}]}"#,
            r#"{"kind":"k","users":[{"id":"1","name":{"givenName":"A"},"customSchemas":{"S":{"etag":"kept"}}},{"id":"2"}]}"#,
            r#"{"kind":"k","users":[{"id":"1","name":{"givenName":"A","familyName":null},"customSchemas":{"S":{"etag":"kept"}}}]}"#,
        ] {
            assert_ne!(base, digest(changed), "{changed}");
        }
        // Values that would parse to different JSON never share a digest.
        assert_ne!(
            digest(r#"{"kind":"k","users":[{"a":"1"}]}"#),
            digest(r#"{"kind":"k","users":[{"a":1}]}"#)
        );
        assert_ne!(
            digest(r#"{"kind":"k","users":[{"a":1}]}"#),
            digest(r#"{"kind":"k","users":[{"a":1.0}]}"#)
        );
        assert_ne!(
            digest(r#"{"kind":"k","users":[{"ab":"c"}]}"#),
            digest(r#"{"kind":"k","users":[{"a":"bc"}]}"#)
        );
        assert_ne!(
            digest(r#"{"kind":"k","users":[[],[]]}"#),
            digest(r#"{"kind":"k","users":[[[]]]}"#)
        );
    }

    #[test]
    fn the_ledger_digest_ignores_arrival_order_but_not_pages() {
        let a = PageLedger::new(0);
        a.record("members.list g1", 1, [1; 32]);
        a.record("members.list g2", 1, [2; 32]);
        let b = PageLedger::new(0);
        b.record("members.list g2", 1, [2; 32]);
        b.record("members.list g1", 1, [1; 32]);
        assert_eq!(a.digest(), b.digest());
        let c = PageLedger::new(0);
        c.record("members.list g1", 1, [2; 32]);
        c.record("members.list g2", 1, [1; 32]);
        assert_ne!(a.digest(), c.digest());
        assert!(!a.keep(1));
        let budget = PageLedger::new(10);
        assert!(budget.keep(6));
        assert!(!budget.keep(6));
        assert!(budget.keep(4));
    }
}
