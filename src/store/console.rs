//! Reads for the web console: the event stream of one tenant, paged newest first and filtered
//! by type, user or group id and seq range, with every query bounded so that no page reads a
//! whole directory or outbox: a filter that matches rarely searches a window of at most
//! [`SCAN_WINDOW`] seqs per page and says where the next page goes on searching.

use super::sql::{params, Connection};

use super::StoreError;

/// The most seqs one page of a filtered stream looks at.
pub const SCAN_WINDOW: u64 = 10_000;

/// One page of a tenant's events.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// An event type (`user.created`) or a family (`user.`, `group.`).
    pub event_type: Option<String>,
    /// A user or group id: the events about it, and for a group also its membership events.
    pub subject: Option<String>,
    /// Only seqs at least this.
    pub from_seq: Option<u64>,
    /// Only seqs at most this (and the page starts here, going back).
    pub to_seq: Option<u64>,
    pub limit: u32,
}

/// One event of a page: the indexed columns and the body as stored.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: u64,
    pub event_type: String,
    pub subject_id: String,
    pub occurred_at: i64,
    pub sync_id: i64,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct EventPage {
    /// Newest first.
    pub events: Vec<EventRow>,
    /// The seqs this page searched, inclusive (`None` when the stream is empty or the range
    /// holds nothing).
    pub searched: Option<(u64, u64)>,
    /// Where the next (older) page starts: `to_seq` for it; `None` at the stream's start.
    pub next_to: Option<u64>,
}

/// A page of `tenant`'s events, newest first.
pub fn events_page(
    conn: &Connection,
    tenant: &str,
    query: &EventQuery,
) -> Result<EventPage, StoreError> {
    let last = super::last_seq(conn, tenant)?;
    let first = query.from_seq.unwrap_or(1).max(1);
    let top = query.to_seq.unwrap_or(last).min(last);
    if top < first {
        return Ok(EventPage {
            events: Vec::new(),
            searched: None,
            next_to: None,
        });
    }
    let filtered = query.event_type.is_some() || query.subject.is_some();
    let bottom = if filtered {
        top.saturating_sub(SCAN_WINDOW - 1).max(first)
    } else {
        first
    };
    let limit = query.limit.clamp(1, 1000);
    let kind = query.event_type.clone().unwrap_or_default();
    let family = kind.ends_with('.');
    let subject = query.subject.clone().unwrap_or_default();
    // Seqs are stored as i64; the range keeps the (tenant, seq) index in use.
    let mut statement = conn.prepare_cached(
        "SELECT seq, type, subject_id, occurred_at, sync_id, body FROM events
         WHERE tenant = ?1 AND seq BETWEEN ?2 AND ?3
           AND (?4 = '' OR (?5 AND substr(type, 1, length(?4)) = ?4) OR (NOT ?5 AND type = ?4))
           AND (?6 = '' OR subject_id = ?6
                OR (type IN ('group.user_added', 'group.user_removed')
                    AND json_extract(body, '$.data.group.id') = ?6))
         ORDER BY seq DESC LIMIT ?7",
    )?;
    let rows = statement.query_map(
        params![
            tenant,
            bottom as i64,
            top as i64,
            kind,
            family,
            subject,
            limit
        ],
        |row| {
            Ok(EventRow {
                seq: row.get::<_, i64>(0)? as u64,
                event_type: row.get(1)?,
                subject_id: row.get(2)?,
                occurred_at: row.get(3)?,
                sync_id: row.get(4)?,
                body: row.get(5)?,
            })
        },
    )?;
    let events: Vec<EventRow> = rows.collect::<Result<_, _>>()?;
    // A full page goes on below its last event; a short one below the window it searched.
    let (searched_from, next) = match events.last() {
        Some(oldest) if events.len() as u32 == limit => (oldest.seq, oldest.seq.checked_sub(1)),
        _ => (bottom, bottom.checked_sub(1)),
    };
    Ok(EventPage {
        events,
        searched: Some((searched_from, top)),
        next_to: next.filter(|seq| *seq >= first),
    })
}

/// Users and groups stored for the tenant (the tenants list: memberships, the largest table,
/// are counted on the tenant's own page only).
pub fn user_and_group_counts(conn: &Connection, tenant: &str) -> Result<(u64, u64), StoreError> {
    let count = |sql: &str| -> Result<u64, StoreError> {
        Ok(conn
            .query_row(sql, [tenant], |row| row.get::<_, i64>(0))?
            .max(0) as u64)
    };
    Ok((
        count("SELECT count(*) FROM users WHERE tenant = ?1")?,
        count("SELECT count(*) FROM groups WHERE tenant = ?1")?,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store_with_events(count: u64) -> Connection {
        let conn = Connection::from_sqlite(rusqlite::Connection::open_in_memory().unwrap());
        let mut conn = conn;
        super::super::migrations::migrate(
            &mut conn,
            &super::super::Location::Sqlite(":memory:".into()),
        )
        .unwrap();
        conn.execute(
            "INSERT INTO tenants (tenant, last_seq) VALUES ('t', ?1)",
            [count as i64],
        )
        .unwrap();
        for seq in 1..=count {
            let (kind, subject, body) = if seq % 3 == 0 {
                (
                    "group.user_added",
                    format!("u{seq}"),
                    format!(r#"{{"data":{{"group":{{"id":"g{}"}}}}}}"#, seq % 2),
                )
            } else {
                ("user.created", format!("u{seq}"), "{}".to_owned())
            };
            conn.execute(
                "INSERT INTO events (tenant, seq, id, type, subject_id, occurred_at, sync_id, body)
                 VALUES ('t', ?1, ?2, ?3, ?4, 0, 1, ?5)",
                params![seq as i64, format!("e{seq}"), kind, subject, body],
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn pages_go_back_from_the_newest_and_filters_search_a_bounded_window() {
        let conn = store_with_events(30);
        let query = EventQuery {
            limit: 10,
            ..EventQuery::default()
        };
        let page = events_page(&conn, "t", &query).unwrap();
        let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (21..=30).rev().collect::<Vec<_>>());
        assert_eq!(page.next_to, Some(20));

        let page = events_page(
            &conn,
            "t",
            &EventQuery {
                to_seq: Some(5),
                ..query.clone()
            },
        )
        .unwrap();
        assert_eq!(page.events.len(), 5);
        assert_eq!(page.next_to, None);

        let memberships = events_page(
            &conn,
            "t",
            &EventQuery {
                event_type: Some("group.".into()),
                subject: Some("g0".into()),
                ..query.clone()
            },
        )
        .unwrap();
        let seqs: Vec<u64> = memberships.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![30, 24, 18, 12, 6]);

        let one_user = events_page(
            &conn,
            "t",
            &EventQuery {
                subject: Some("u7".into()),
                from_seq: Some(2),
                ..query
            },
        )
        .unwrap();
        assert_eq!(one_user.events.len(), 1);
        assert_eq!(one_user.searched, Some((2, 30)));
        assert_eq!(one_user.next_to, None);
    }
}
