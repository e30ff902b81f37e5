//! Reading SCIM ListResponses to the end, and telling a complete listing from a torn one.
//! Pure: the source makes the requests and feeds each page to a `Collector`.
//!
//! Index paging (`startIndex`/`count`) is fragile when the directory changes mid-listing: a
//! delete before our offset shifts the rest left, so one resource is never returned; an insert
//! shifts it right, so one comes twice. Duplicates are dropped by id. Skips cannot be seen
//! directly, so a listing counts as torn when `totalResults` changed between pages or differs
//! from what was collected at the end; the source then lists again (bounded).

use std::collections::HashSet;

use serde_json::Value;

use super::normalize::{get, resource_id};

/// One ListResponse page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub resources: Vec<Value>,
    pub total: Option<u64>,
    pub next_cursor: Option<String>,
}

fn count(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// Reads a ListResponse, tolerating `resources` in any case and a missing `totalResults`.
/// `Resources` may be absent only when there is nothing to list (RFC 7644 §3.4.2).
pub fn parse_page(body: &Value) -> Result<Page, String> {
    let object = body
        .as_object()
        .ok_or("it is not a JSON object (a SCIM ListResponse is)")?;
    let total = count(get(object, "totalResults"));
    let next_cursor = get(object, "nextCursor")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|cursor| !cursor.is_empty())
        .map(str::to_owned);
    let resources = match get(object, "Resources") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => {
            let is_list = get(object, "schemas")
                .and_then(Value::as_array)
                .is_some_and(|schemas| {
                    schemas
                        .iter()
                        .filter_map(Value::as_str)
                        .any(|schema| schema.to_ascii_lowercase().ends_with(":listresponse"))
                });
            match total {
                Some(0) => Vec::new(),
                Some(total) => {
                    return Err(format!(
                        "it has no `Resources` although `totalResults` is {total}"
                    ))
                }
                None if is_list => Vec::new(),
                None => {
                    return Err(
                        "it is not a SCIM ListResponse (no `Resources`, no `totalResults`)".into(),
                    )
                }
            }
        }
        Some(other) => return Err(format!("`Resources` is not an array but {other}")),
    };
    Ok(Page {
        resources,
        total,
        next_cursor,
    })
}

/// Why a listing cannot be trusted (and is worth repeating).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    pub reason: String,
    /// `totalResults` moved while listing: the directory surely changed under us. Otherwise
    /// only the final count disagreed, which a server with a wrong count also causes.
    pub changed: bool,
}

/// A page that makes the whole listing wrong (not worth repeating).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// The server answered the previous page again: it ignores the paging parameters.
    SameAgain,
    /// A listed resource without `id`.
    NoId(String),
}

/// Accumulates the pages of one listing.
#[derive(Debug, Default)]
pub struct Collector {
    ids: HashSet<String>,
    resources: Vec<Value>,
    previous_page: Vec<String>,
    first_total: Option<u64>,
    last_total: Option<u64>,
    totals_changed: bool,
    pub pages: u64,
}

impl Collector {
    /// Adds a page; returns how many of its resources were new.
    pub fn add(&mut self, page: Page) -> Result<usize, PageError> {
        self.pages += 1;
        if let Some(total) = page.total {
            if self.first_total.is_none() {
                self.first_total = Some(total);
            }
            if self.last_total.is_some_and(|last| last != total) {
                self.totals_changed = true;
            }
            self.last_total = Some(total);
        }
        let mut page_ids = Vec::with_capacity(page.resources.len());
        for resource in &page.resources {
            let id = resource_id(resource)
                .ok_or_else(|| PageError::NoId(resource.to_string().chars().take(200).collect()))?;
            page_ids.push(id.to_owned());
        }
        if !page_ids.is_empty() && page_ids == self.previous_page {
            return Err(PageError::SameAgain);
        }
        let mut added = 0;
        for (id, resource) in page_ids.iter().zip(page.resources) {
            if self.ids.insert(id.clone()) {
                self.resources.push(resource);
                added += 1;
            }
        }
        self.previous_page = page_ids;
        Ok(added)
    }

    pub fn ids(&self) -> &HashSet<String> {
        &self.ids
    }

    /// The listing, or why it may have missed something.
    pub fn finish(self) -> Result<Vec<Value>, (Torn, Vec<Value>)> {
        let collected = self.resources.len() as u64;
        let torn = if self.totals_changed {
            Some(format!(
                "totalResults changed from {} to {} while listing",
                self.first_total.unwrap_or(0),
                self.last_total.unwrap_or(0)
            ))
        } else {
            match self.last_total {
                Some(total) if total != collected => Some(format!(
                    "the server reported {total} resources but returned {collected} distinct ones"
                )),
                _ => None,
            }
        };
        match torn {
            Some(reason) => Err((
                Torn {
                    reason,
                    changed: self.totals_changed,
                },
                self.resources,
            )),
            None => Ok(self.resources),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(ids: &[&str], total: Option<u64>) -> Page {
        Page {
            resources: ids.iter().map(|id| json!({"id": id})).collect(),
            total,
            next_cursor: None,
        }
    }

    #[test]
    fn parses_real_world_list_responses() {
        let lower = json!({"resources": [{"id": "a"}], "itemsPerPage": 1, "nextCursor": "c2"});
        let parsed = parse_page(&lower).unwrap();
        assert_eq!(parsed.resources.len(), 1);
        assert_eq!(parsed.total, None);
        assert_eq!(parsed.next_cursor.as_deref(), Some("c2"));
        let as_string = json!({"totalResults": "2", "Resources": []});
        assert_eq!(parse_page(&as_string).unwrap().total, Some(2));
        let empty = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0});
        assert!(parse_page(&empty).unwrap().resources.is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_list() {
        let missing = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 3});
        assert!(parse_page(&missing)
            .unwrap_err()
            .contains("totalResults` is 3"));
        assert!(parse_page(&json!({"id": "a"}))
            .unwrap_err()
            .contains("not a SCIM ListResponse"));
        assert!(parse_page(&json!({"Resources": {"id": "a"}})).is_err());
        assert!(parse_page(&json!("x")).is_err());
    }

    #[test]
    fn a_complete_listing() {
        let mut collector = Collector::default();
        assert_eq!(collector.add(page(&["a", "b"], Some(3))).unwrap(), 2);
        assert_eq!(collector.add(page(&["c"], Some(3))).unwrap(), 1);
        assert_eq!(collector.finish().unwrap().len(), 3);
    }

    #[test]
    fn duplicates_from_an_insert_are_dropped() {
        let mut collector = Collector::default();
        collector.add(page(&["a", "b"], Some(3))).unwrap();
        assert_eq!(collector.add(page(&["b", "c"], Some(3))).unwrap(), 1);
        assert_eq!(collector.finish().unwrap().len(), 3);
    }

    #[test]
    fn a_skip_from_a_delete_tears_the_listing() {
        // Page 1 = [a, b]; a is deleted; page 2 (startIndex 3) = [d]: c was never returned.
        let mut collector = Collector::default();
        collector.add(page(&["a", "b"], Some(4))).unwrap();
        collector.add(page(&["d"], Some(3))).unwrap();
        let (torn, _) = collector.finish().unwrap_err();
        assert!(torn.reason.contains("changed from 4 to 3"), "{torn:?}");
        assert!(torn.changed);
    }

    #[test]
    fn a_total_that_does_not_match_tears_the_listing() {
        let mut collector = Collector::default();
        collector.add(page(&["a"], Some(2))).unwrap();
        collector.add(page(&[], Some(2))).unwrap();
        let (torn, _) = collector.finish().unwrap_err();
        assert!(!torn.changed);
    }

    #[test]
    fn the_same_page_again_is_an_error() {
        let mut collector = Collector::default();
        collector.add(page(&["a", "b"], None)).unwrap();
        assert_eq!(
            collector.add(page(&["a", "b"], None)),
            Err(PageError::SameAgain)
        );
        let mut collector = Collector::default();
        assert!(matches!(
            collector.add(Page {
                resources: vec![json!({"x": 1})],
                total: None,
                next_cursor: None
            }),
            Err(PageError::NoId(_))
        ));
    }
}
