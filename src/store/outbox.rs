//! The transactional outbox: a sync's new snapshot rows, every event it emits (with gap-free
//! per-tenant `seq`) and the record of the run commit in one transaction, or not at all.

use std::collections::BTreeMap;

use super::sql::{params, Backend, Connection, OptionalExtension, TransactionBehavior};

use super::lock::{check_lease, Lease};
use super::runs::{insert_run, next_run_id};
use super::snapshot::{text, write_changes};
use super::{now_ms, StoreError};
use crate::event::{format_timestamp, new_event_id, Change, Event, EventRenderer, SourceKind};
use crate::model::{DirectGraph, MemberKind, Snapshot};
use crate::run::{Millis, RunOutcome, RunSummary};

/// What a sync hands the store to commit.
pub struct NewEvents<'a> {
    pub tenant: &'a str,
    pub source: SourceKind,
    pub lease: &'a Lease,
    /// The stored objects the changes render from their stored state (deleted, updated, in a
    /// removed membership): the whole stored snapshot, or only those (`diff::needed_previous`).
    pub before: &'a Snapshot,
    pub after: &'a Snapshot,
    pub changes: &'a [Change],
    pub run: RunSummary,
    /// Users and groups left out by policy.
    pub exclusions: Vec<NewExclusion>,
    /// The direct group graph to store; `None` leaves the stored one as it is.
    pub direct: Option<&'a DirectGraph>,
    /// The digest of the fetch this was planned from, when a later run of an equal fetch may
    /// skip planning (`digest`); `None` forgets the tenant's digest.
    pub digest: Option<&'a super::FetchDigest>,
}

/// A user or group that policy left out of the stored directory, and why (for `inspect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewExclusion {
    pub id: String,
    /// The user's primary email, or the group's config key (email, else name).
    pub key: String,
    pub kind: MemberKind,
    /// A stable code, e.g. `org_unit`, `suspended`, `group_filter`.
    pub reason: &'static str,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    pub sync_id: i64,
    pub first_seq: Option<u64>,
    pub last_seq: u64,
    pub events: u64,
}

pub fn last_seq(conn: &Connection, tenant: &str) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .query_row(
            "SELECT last_seq FROM tenants WHERE tenant = ?1",
            [tenant],
            |row| row.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or(0) as u64)
}

/// The event of one change as the contract's object, for a dry run (which commits nothing,
/// so its events are rendered here rather than stored).
pub fn build_event(
    change: &Change,
    input: &NewEvents<'_>,
    seq: u64,
    sync_id: i64,
    occurred_at: &str,
) -> Result<Event, StoreError> {
    let text = EventRenderer::new(input.before, input.after)
        .render(
            change,
            &new_event_id(),
            input.tenant,
            seq,
            sync_id,
            input.source,
            occurred_at,
        )
        .and_then(|text| serde_json::from_str(&text))
        .map_err(|err| StoreError::Corrupt(format!("rendering an event: {err}")))?;
    Ok(text)
}

fn subject_id(change: &Change) -> &str {
    match change {
        Change::UserCreated(id) | Change::UserDeleted(id) | Change::UserUpdated { id, .. } => id,
        Change::GroupCreated(id) | Change::GroupDeleted(id) | Change::GroupUpdated { id, .. } => id,
        Change::UserAdded { user, .. } | Change::UserRemoved { user, .. } => user,
    }
}

/// Commits a sync: checks the lease, records the run, appends every event, writes the changed
/// rows and moves the tenant's `last_seq`, all in one transaction.
pub fn commit(conn: &mut Connection, input: NewEvents<'_>) -> Result<CommitSummary, StoreError> {
    // A large commit writes more pages than SQLite's default 2 MB cache holds, and indexes it
    // keeps (see `set_aside_indexes`) take inserts at random places: with a small cache it
    // spills and rereads pages all along. A bigger cache for this transaction only: a caller's
    // connection may live on.
    const LARGE: usize = 10_000;
    const LARGE_CACHE_KIB: i64 = 128 * 1024;
    let large = input.changes.len() > LARGE && conn.backend() == Backend::Sqlite;
    if let Some(sqlite) = conn.as_sqlite().filter(|_| large) {
        sqlite.pragma_update(None, "cache_size", -LARGE_CACHE_KIB)?;
        // Index rebuilds sort a million entries: in temporary files, not in memory.
        sqlite.pragma_update(None, "temp_store", "FILE")?;
    }
    let result = commit_transaction(conn, input);
    if let Some(sqlite) = conn.as_sqlite().filter(|_| large) {
        // Frees the pages; the default size again for whatever the connection does next.
        sqlite.pragma_update(None, "cache_size", -super::CACHE_KIB)?;
        sqlite.pragma_update(None, "temp_store", "MEMORY")?;
    }
    result
}

fn commit_transaction(
    conn: &mut Connection,
    mut input: NewEvents<'_>,
) -> Result<CommitSummary, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.lock_tenant(input.tenant)?;
    check_lease(&tx, input.lease)?;
    let previous_seq = last_seq(&tx, input.tenant)?;
    let events = input.changes.len() as u64;
    input.run.outcome = if events == 0 {
        RunOutcome::NoChanges
    } else {
        RunOutcome::Committed
    };
    input.run.first_seq = (events > 0).then_some(previous_seq + 1);
    input.run.last_seq = (events > 0).then_some(previous_seq + events);
    input.run.events = events;
    let sync_id = next_run_id(&tx)?;

    let now = now_ms();
    let occurred_at = format_timestamp(
        chrono::DateTime::from_timestamp_millis(now).unwrap_or_else(chrono::Utc::now),
    );
    // SQLite only. On PostgreSQL, DROP INDEX holds an ACCESS EXCLUSIVE lock on the table,
    // which every tenant shares, until the commit ends: every other tenant's reads, deliveries
    // and commits would wait behind one tenant's first sync (indefinitely behind a node
    // paused mid-commit), so there the indexes take the rows as they come.
    let set_aside = match tx.backend() {
        Backend::Sqlite => set_aside_indexes(&tx, &bulk_inserts(&input), BULK_INSERT)?,
        Backend::Postgres => Vec::new(),
    };
    append_events(
        &tx,
        EventsOf {
            tenant: input.tenant,
            source: input.source,
            before: input.before,
            after: input.after,
            changes: input.changes,
        },
        previous_seq,
        sync_id,
        now,
        &occurred_at,
    )?;
    write_changes(&tx, input.tenant, input.changes, input.after)?;
    if events > 0 {
        tx.execute(
            "INSERT INTO tenants (tenant, last_seq) VALUES (?1, ?2)
             ON CONFLICT (tenant) DO UPDATE SET last_seq = excluded.last_seq",
            params![input.tenant, (previous_seq + events) as i64],
        )?;
    }
    write_exclusions(&tx, input.tenant, &input.exclusions, sync_id)?;
    super::digest::write_digest(&tx, input.tenant, input.digest, previous_seq + events)?;
    if let Some(direct) = input.direct {
        write_direct_graph(&tx, input.tenant, direct)?;
    }
    for definition in &set_aside {
        tx.execute_batch(definition)?;
    }
    // Recorded last, so its finish time and duration include writing the events.
    input.run.finish(Millis::now());
    insert_run(&tx, &input.run, Some(sync_id))?;
    if events > 0 {
        super::cluster::notify_commit(&tx, input.tenant)?;
    }
    tx.commit()?;
    Ok(CommitSummary {
        sync_id,
        first_seq: input.run.first_seq,
        last_seq: previous_seq + events,
        events,
    })
}

/// The events of one change set, and what they render from.
#[derive(Clone, Copy)]
struct EventsOf<'a> {
    tenant: &'a str,
    source: SourceKind,
    before: &'a Snapshot,
    after: &'a Snapshot,
    changes: &'a [Change],
}

/// Inside a caller's transaction: appends the events of `changes` after `previous_seq` and
/// writes the stored rows they change (a push write's part of a commit). Returns the first
/// and last seq. `changes` must not be empty.
#[allow(clippy::too_many_arguments)]
pub(super) fn append_change_set(
    tx: &Connection,
    tenant: &str,
    source: SourceKind,
    before: &Snapshot,
    after: &Snapshot,
    changes: &[Change],
    previous_seq: u64,
    sync_id: i64,
) -> Result<(u64, u64), StoreError> {
    let now = now_ms();
    let occurred_at = format_timestamp(
        chrono::DateTime::from_timestamp_millis(now).unwrap_or_else(chrono::Utc::now),
    );
    append_events(
        tx,
        EventsOf {
            tenant,
            source,
            before,
            after,
            changes,
        },
        previous_seq,
        sync_id,
        now,
        &occurred_at,
    )?;
    write_changes(tx, tenant, changes, after)?;
    let last = previous_seq + changes.len() as u64;
    tx.prepare_cached(
        "INSERT INTO tenants (tenant, last_seq) VALUES (?1, ?2)
         ON CONFLICT (tenant) DO UPDATE SET last_seq = excluded.last_seq",
    )?
    .execute(params![tenant, last as i64])?;
    Ok((previous_seq + 1, last))
}

/// Inserts into one table below which keeping its indexes costs less than rebuilding them.
const BULK_INSERT: usize = 50_000;

/// How many rows a commit is about to insert, per table with secondary indexes.
fn bulk_inserts(input: &NewEvents<'_>) -> [(&'static str, usize); 5] {
    let count = |wanted: fn(&Change) -> bool| input.changes.iter().filter(|c| wanted(c)).count();
    let created_users = count(|c| matches!(c, Change::UserCreated(_)));
    [
        ("events", input.changes.len()),
        ("users", created_users),
        // About one secondary address (an alias) per user in a typical Workspace.
        ("user_addresses", created_users),
        (
            "memberships",
            count(|c| matches!(c, Change::UserAdded { .. })),
        ),
        ("group_edges", input.direct.map_or(0, DirectGraph::len)),
    ]
}

/// Drops the secondary indexes of every table this commit inserts more rows into than the
/// table holds, and returns their definitions for the commit to recreate once the rows are in.
///
/// A first sync of a large tenant inserts a million rows into tables indexed by subject, user
/// and member: row by row, each insert lands at a random place in those indexes. Building an
/// index afterwards sorts once and writes it in order, a fraction of the work. Inside the
/// transaction, so a failed commit gets its indexes back with the rollback; readers keep
/// seeing the last committed schema meanwhile (SQLite's WAL; PostgreSQL would lock the table
/// against every tenant, so commits there do not call this).
pub(super) fn set_aside_indexes(
    tx: &Connection,
    inserts: &[(&'static str, usize)],
    bulk: usize,
) -> Result<Vec<String>, StoreError> {
    let mut definitions = Vec::new();
    for &(table, inserting) in inserts {
        if inserting < bulk {
            continue;
        }
        let held: i64 = tx.query_row(&format!("SELECT count(*) FROM {table}"), (), |row| {
            row.get(0)
        })?;
        if inserting as i64 <= held {
            continue;
        }
        // Indexes that back a constraint (primary keys) stay: they are how rows are found.
        let indexes_sql = match tx.backend() {
            Backend::Sqlite => {
                "SELECT name, sql FROM sqlite_schema
                 WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL"
            }
            Backend::Postgres => {
                "SELECT i.indexname, i.indexdef FROM pg_indexes i
                 WHERE i.schemaname = current_schema() AND i.tablename = ?1
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
            }
        };
        let indexes: Vec<(String, String)> = tx
            .prepare(indexes_sql)?
            .query_map([table], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (name, definition) in indexes {
            tx.execute_batch(&format!("DROP INDEX \"{name}\""))?;
            definitions.push(definition);
        }
    }
    Ok(definitions)
}

/// Appends one event per change, `seq` from `previous_seq + 1` on.
///
/// Rendering an event's JSON and inserting it into SQLite each take about as long, so a second
/// thread renders batches of bodies while this one inserts them: a first sync of a large
/// directory commits a million events, and the commit is the part of it no API latency hides.
#[allow(clippy::too_many_arguments)]
fn append_events(
    tx: &Connection,
    events: EventsOf<'_>,
    previous_seq: u64,
    sync_id: i64,
    now: i64,
    occurred_at: &str,
) -> Result<(), StoreError> {
    const BATCH: usize = 1024;
    /// Batches rendered ahead of the inserts: enough to keep both threads busy, few enough to
    /// hold only a few megabytes of bodies.
    const AHEAD: usize = 4;
    struct Rendered {
        seq: u64,
        id: String,
        body: String,
    }
    let EventsOf {
        tenant,
        source,
        before,
        after,
        changes,
    } = events;
    let mut insert = tx.batch_insert(
        "INSERT INTO events (tenant, seq, id, type, subject_id, occurred_at, sync_id, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        8,
    )?;
    // A small change set (a push write, most syncs) is not worth a thread.
    if changes.len() <= BATCH {
        let mut renderer = EventRenderer::new(before, after);
        for (offset, change) in changes.iter().enumerate() {
            let seq = previous_seq + 1 + offset as u64;
            let id = new_event_id();
            let body = renderer
                .render(change, &id, tenant, seq, sync_id, source, occurred_at)
                .map_err(|err| StoreError::Corrupt(err.to_string()))?;
            insert.push(params![
                tenant,
                seq as i64,
                id,
                change.event_type().as_str(),
                subject_id(change),
                now,
                sync_id,
                body
            ])?;
        }
        insert.finish()?;
        return Ok(());
    }
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<Rendered>>(AHEAD);
        let renderer = scope.spawn(move || -> Result<(), serde_json::Error> {
            let mut renderer = EventRenderer::new(before, after);
            for (batch_index, batch) in changes.chunks(BATCH).enumerate() {
                let first_seq = previous_seq + 1 + (batch_index * BATCH) as u64;
                let mut rendered = Vec::with_capacity(batch.len());
                for (offset, change) in batch.iter().enumerate() {
                    let seq = first_seq + offset as u64;
                    let id = new_event_id();
                    let body =
                        renderer.render(change, &id, tenant, seq, sync_id, source, occurred_at)?;
                    rendered.push(Rendered { seq, id, body });
                }
                // The inserting side hung up: it failed, and says why.
                if sender.send(rendered).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut changes = changes.iter();
        for batch in receiver {
            for (event, change) in batch.into_iter().zip(changes.by_ref()) {
                insert.push(params![
                    tenant,
                    event.seq as i64,
                    event.id,
                    change.event_type().as_str(),
                    subject_id(change),
                    now,
                    sync_id,
                    event.body
                ])?;
            }
        }
        insert.finish()?;
        match renderer.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(StoreError::Corrupt(err.to_string())),
            Err(_) => Err(StoreError::Corrupt(
                "rendering the events of the commit panicked".into(),
            )),
        }
    })
}

/// Replaces the tenant's exclusions only when they changed, so a no-change sync rewrites no
/// rows.
fn write_exclusions(
    conn: &Connection,
    tenant: &str,
    exclusions: &[NewExclusion],
    run_id: i64,
) -> Result<(), StoreError> {
    let mut stored: BTreeMap<String, (String, String, String, Option<String>)> = BTreeMap::new();
    {
        let mut statement = conn.prepare_cached(
            "SELECT id, email, kind, reason, detail FROM exclusions WHERE tenant = ?1",
        )?;
        let mut rows = statement.query([tenant])?;
        while let Some(row) = rows.next()? {
            stored.insert(
                row.get(0)?,
                (row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?),
            );
        }
    }
    let wanted: BTreeMap<String, (String, String, String, Option<String>)> = exclusions
        .iter()
        .map(|exclusion| {
            (
                exclusion.id.clone(),
                (
                    exclusion.key.clone(),
                    exclusion.kind.as_str().to_owned(),
                    exclusion.reason.to_owned(),
                    exclusion.detail.clone(),
                ),
            )
        })
        .collect();
    let mut delete = conn.prepare_cached("DELETE FROM exclusions WHERE tenant = ?1 AND id = ?2")?;
    for id in stored.keys().filter(|id| !wanted.contains_key(*id)) {
        delete.execute(params![tenant, id])?;
    }
    let mut upsert = conn.prepare_cached(
        "INSERT INTO exclusions (tenant, id, email, kind, reason, detail, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (tenant, id) DO UPDATE SET email = excluded.email, kind = excluded.kind, reason = excluded.reason,
             detail = excluded.detail, run_id = excluded.run_id",
    )?;
    for (id, value) in &wanted {
        if stored.get(id) != Some(value) {
            upsert.execute(params![
                tenant, id, value.0, value.1, value.2, value.3, run_id
            ])?;
        }
    }
    Ok(())
}

/// Brings the stored direct group graph to `wanted`, touching only the edges that changed.
///
/// The stored edges are streamed and looked up in `wanted`, never collected: at 1M edges a
/// copy of the stored graph would cost about 170 MB. Per group, when every wanted edge was
/// found stored, nothing is inserted; when none was, its edges are inserted as they are;
/// otherwise its wanted edges are inserted with `ON CONFLICT DO NOTHING`, which writes only
/// the missing ones.
fn write_direct_graph(
    conn: &Connection,
    tenant: &str,
    wanted: &DirectGraph,
) -> Result<(), StoreError> {
    let kind = |text: &str| match text {
        "group" => MemberKind::Group,
        _ => MemberKind::User,
    };
    let mut found_per_group: BTreeMap<String, usize> = BTreeMap::new();
    let mut stale: Vec<(String, String, String)> = Vec::new();
    {
        let mut statement = conn.prepare_cached(
            "SELECT group_id, member_kind, member_id FROM group_edges WHERE tenant = ?1",
        )?;
        let mut rows = statement.query([tenant])?;
        while let Some(row) = rows.next()? {
            let group = text(row, 0)?;
            let member_kind = text(row, 1)?;
            let member = text(row, 2)?;
            if wanted.contains(group, kind(member_kind), member) {
                match found_per_group.get_mut(group) {
                    Some(found) => *found += 1,
                    None => {
                        found_per_group.insert(group.to_owned(), 1);
                    }
                }
            } else {
                stale.push((group.to_owned(), member_kind.to_owned(), member.to_owned()));
            }
        }
    }
    let mut delete = conn.prepare_cached(
        "DELETE FROM group_edges WHERE tenant = ?1 AND group_id = ?2 AND member_kind = ?3 AND member_id = ?4",
    )?;
    for (group, member_kind, member) in &stale {
        delete.execute(params![tenant, group, member_kind, member])?;
    }
    // A group none of whose edges is stored (every group of a first sync) takes its edges
    // without the conflict check, which costs PostgreSQL half as much again per row.
    let mut insert_new = conn.batch_insert(
        "INSERT INTO group_edges (tenant, group_id, member_kind, member_id) VALUES (?1, ?2, ?3, ?4)",
        4,
    )?;
    let mut insert_missing = conn.batch_insert(
        "INSERT INTO group_edges (tenant, group_id, member_kind, member_id) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        4,
    )?;
    for (group, members) in wanted.groups() {
        let insert = match found_per_group.get(&**group).copied().unwrap_or(0) {
            found if found == members.len() => continue,
            0 => &mut insert_new,
            _ => &mut insert_missing,
        };
        for (kind, member) in members {
            insert.push(params![tenant, &**group, kind.as_str(), &**member])?;
        }
    }
    insert_new.finish()?;
    insert_missing.finish()?;
    Ok(())
}

/// Stored events of a tenant with `seq > after`, oldest first, as their JSON text.
pub fn events_after(
    conn: &Connection,
    tenant: &str,
    after: u64,
    limit: Option<u64>,
) -> Result<Vec<(u64, String)>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, body FROM events WHERE tenant = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let limit = limit
        .map(|l| l.min(i64::MAX as u64) as i64)
        .unwrap_or(i64::MAX);
    let rows = statement.query_map(params![tenant, after as i64, limit], |row| {
        Ok((row.get::<_, i64>(0)? as u64, row.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
