//! Numbered, forward-only migrations, a list per backend. SQLite's `PRAGMA user_version`, or
//! PostgreSQL's `dirsync_schema` row, is the number applied; a database with a higher number
//! than this binary knows is refused, never touched.

use std::path::{Path, PathBuf};

use super::sql::{Connection, TransactionBehavior};
use super::{Location, StoreError};

const MIGRATIONS: &[&str] = &[
    // 1: snapshot, outbox, runs, leases, sink cursors.
    r#"
    CREATE TABLE tenants (
        tenant   TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE users (
        tenant TEXT NOT NULL,
        id     TEXT NOT NULL,
        email  TEXT NOT NULL,
        data   TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    ) WITHOUT ROWID;
    CREATE INDEX users_by_email ON users (tenant, email);
    CREATE TABLE groups (
        tenant TEXT NOT NULL,
        id     TEXT NOT NULL,
        email  TEXT,
        name   TEXT NOT NULL,
        data   TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    ) WITHOUT ROWID;
    CREATE INDEX groups_by_email ON groups (tenant, email);
    CREATE TABLE memberships (
        tenant   TEXT NOT NULL,
        group_id TEXT NOT NULL,
        user_id  TEXT NOT NULL,
        PRIMARY KEY (tenant, group_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX memberships_by_user ON memberships (tenant, user_id);
    CREATE TABLE events (
        tenant      TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        id          TEXT NOT NULL UNIQUE,
        type        TEXT NOT NULL,
        subject_id  TEXT NOT NULL,
        occurred_at INTEGER NOT NULL,
        sync_id     INTEGER NOT NULL,
        body        TEXT NOT NULL,
        PRIMARY KEY (tenant, seq)
    ) WITHOUT ROWID;
    CREATE INDEX events_by_subject ON events (tenant, subject_id);
    CREATE TABLE runs (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant       TEXT NOT NULL,
        started_at   INTEGER NOT NULL,
        finished_at  INTEGER NOT NULL,
        outcome      TEXT NOT NULL,
        duration_ms  INTEGER NOT NULL,
        events       INTEGER NOT NULL,
        counts       TEXT NOT NULL,
        users        INTEGER,
        groups       INTEGER,
        memberships  INTEGER,
        api_requests INTEGER NOT NULL,
        retries      INTEGER NOT NULL,
        first_seq    INTEGER,
        last_seq     INTEGER,
        error        TEXT
    );
    CREATE INDEX runs_by_tenant ON runs (tenant, id);
    CREATE TABLE leases (
        tenant     TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE sink_cursors (
        tenant        TEXT NOT NULL,
        sink          TEXT NOT NULL,
        delivered_seq INTEGER NOT NULL DEFAULT 0,
        updated_at    INTEGER NOT NULL,
        last_error    TEXT,
        last_error_at INTEGER,
        parked        INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, sink)
    ) WITHOUT ROWID;
    CREATE TABLE exclusions (
        tenant  TEXT NOT NULL,
        id      TEXT NOT NULL,
        email   TEXT NOT NULL,
        kind    TEXT NOT NULL,
        reason  TEXT NOT NULL,
        detail  TEXT,
        run_id  INTEGER NOT NULL,
        PRIMARY KEY (tenant, id)
    ) WITHOUT ROWID;
    CREATE INDEX exclusions_by_email ON exclusions (tenant, email);
    "#,
    // 2: the direct group graph (group -> direct user members and child groups), so `inspect`
    // can show the path of a nested membership.
    r#"
    CREATE TABLE group_edges (
        tenant      TEXT NOT NULL,
        group_id    TEXT NOT NULL,
        member_kind TEXT NOT NULL,
        member_id   TEXT NOT NULL,
        PRIMARY KEY (tenant, group_id, member_kind, member_id)
    ) WITHOUT ROWID;
    CREATE INDEX group_edges_by_member ON group_edges (tenant, member_id, member_kind);
    "#,
    // 3: users and events as rowid tables. A user's JSON row or an event body runs to one or
    // two kilobytes; a WITHOUT ROWID table keeps at most about 1 KB of a row in its B-tree and
    // moves the rest to an overflow page of its own, which at 100k users made the database
    // twice the size of its data and a first sync's commit write all of it twice over.
    // Event ids keep their uniqueness as a named UNIQUE index rather than a column constraint,
    // so that a bulk commit can set it aside and rebuild it (`outbox::set_aside_indexes`).
    r#"
    CREATE TABLE users_v3 (
        tenant TEXT NOT NULL,
        id     TEXT NOT NULL,
        email  TEXT NOT NULL,
        data   TEXT NOT NULL,
        UNIQUE (tenant, id)
    );
    INSERT INTO users_v3 (tenant, id, email, data)
        SELECT tenant, id, email, data FROM users ORDER BY tenant, id;
    DROP TABLE users;
    ALTER TABLE users_v3 RENAME TO users;
    CREATE INDEX users_by_email ON users (tenant, email);
    CREATE TABLE events_v3 (
        tenant      TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        id          TEXT NOT NULL,
        type        TEXT NOT NULL,
        subject_id  TEXT NOT NULL,
        occurred_at INTEGER NOT NULL,
        sync_id     INTEGER NOT NULL,
        body        TEXT NOT NULL,
        UNIQUE (tenant, seq)
    );
    INSERT INTO events_v3 (tenant, seq, id, type, subject_id, occurred_at, sync_id, body)
        SELECT tenant, seq, id, type, subject_id, occurred_at, sync_id, body
        FROM events ORDER BY tenant, seq;
    DROP TABLE events;
    ALTER TABLE events_v3 RENAME TO events;
    CREATE INDEX events_by_subject ON events (tenant, subject_id);
    CREATE UNIQUE INDEX events_by_id ON events (id);
    "#,
    // 4: the SCIM push receiver. `scim_resources` holds what the IdP provisioned (the
    // resource JSON without `id`, `meta`, `password` and group `members`), `scim_members` the
    // direct members of its groups (a row per member, so one member's PATCH writes one row
    // whatever the group's size), `push_requests` the per-tenant request log.
    r#"
    CREATE TABLE scim_resources (
        tenant       TEXT NOT NULL,
        kind         TEXT NOT NULL,
        id           TEXT NOT NULL,
        user_name    TEXT,
        external_id  TEXT,
        display_name TEXT,
        created      INTEGER NOT NULL,
        modified     INTEGER NOT NULL,
        version      INTEGER NOT NULL,
        data         TEXT NOT NULL,
        UNIQUE (tenant, kind, id)
    );
    CREATE UNIQUE INDEX scim_resources_by_user_name ON scim_resources (tenant, kind, user_name)
        WHERE user_name IS NOT NULL;
    CREATE INDEX scim_resources_by_external_id ON scim_resources (tenant, kind, external_id)
        WHERE external_id IS NOT NULL;
    CREATE INDEX scim_resources_by_display_name ON scim_resources (tenant, kind, display_name);
    CREATE TABLE scim_members (
        tenant    TEXT NOT NULL,
        group_id  TEXT NOT NULL,
        member_id TEXT NOT NULL,
        kind      TEXT NOT NULL,
        display   TEXT,
        PRIMARY KEY (tenant, group_id, member_id)
    ) WITHOUT ROWID;
    CREATE INDEX scim_members_by_member ON scim_members (tenant, member_id);
    CREATE TABLE push_requests (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant        TEXT NOT NULL,
        at            INTEGER NOT NULL,
        method        TEXT NOT NULL,
        path          TEXT NOT NULL,
        status        INTEGER NOT NULL,
        latency_us    INTEGER NOT NULL,
        user_agent    TEXT,
        resource_kind TEXT,
        resource_id   TEXT,
        detail        TEXT,
        first_seq     INTEGER,
        last_seq      INTEGER,
        body          TEXT
    );
    CREATE INDEX push_requests_by_tenant ON push_requests (tenant, id);
    CREATE INDEX push_requests_by_resource ON push_requests (tenant, resource_id)
        WHERE resource_id IS NOT NULL;
    "#,
    // 5: lookups that stay fast at 100k users (`inspect`, the web console). A user's
    // addresses besides the primary email (secondary emails, Google aliases), lower-case, so
    // finding someone by an alias is an index search rather than a read of every user's JSON;
    // and the deletion events alone, so "deleted upstream on sync N" does not read the outbox.
    r#"
    CREATE TABLE user_addresses (
        tenant  TEXT NOT NULL,
        user_id TEXT NOT NULL,
        address TEXT NOT NULL,
        PRIMARY KEY (tenant, user_id, address)
    ) WITHOUT ROWID;
    CREATE INDEX user_addresses_by_address ON user_addresses (tenant, address);
    INSERT OR IGNORE INTO user_addresses (tenant, user_id, address)
        SELECT u.tenant, u.id, lower(json_extract(e.value, '$.value'))
        FROM users u, json_each(u.data, '$.emails') e
        WHERE json_extract(e.value, '$.value') IS NOT NULL
          AND lower(json_extract(e.value, '$.value')) != u.email
        UNION ALL
        SELECT u.tenant, u.id, lower(a.value)
        FROM users u, json_each(u.data, '$.raw_attributes.aliases') a WHERE a.type = 'text'
        UNION ALL
        SELECT u.tenant, u.id, lower(a.value)
        FROM users u, json_each(u.data, '$.raw_attributes.nonEditableAliases') a WHERE a.type = 'text';
    CREATE INDEX events_deletions ON events (tenant, seq)
        WHERE type IN ('user.deleted', 'group.deleted');
    "#,
    // 6: several nodes. A lease's fencing token (bumped by every new holder, checked by every
    // commit); one deliverer per (tenant, sink) at a time; the scheduled slot a node claimed
    // for a tenant, so a slot runs once whichever node sees it first; and the nodes seen.
    r#"
    ALTER TABLE leases ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE delivery_leases (
        tenant     TEXT NOT NULL,
        sink       TEXT NOT NULL,
        holder     TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        token      INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, sink)
    ) WITHOUT ROWID;
    CREATE TABLE schedule_claims (
        tenant     TEXT PRIMARY KEY,
        slot       INTEGER NOT NULL,
        node       TEXT NOT NULL,
        claimed_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE nodes (
        node       TEXT PRIMARY KEY,
        host       TEXT NOT NULL,
        pid        INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        seen_at    INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 7: the digest of the fetch a tenant's last commit was planned from (`digest`), so a run
    // of an unchanged directory records itself without parsing or planning it again.
    r#"
    CREATE TABLE fetch_digests (
        tenant   TEXT PRIMARY KEY,
        digest   TEXT NOT NULL,
        last_seq INTEGER NOT NULL,
        counts   TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
];

/// PostgreSQL's schema: the same tables as SQLite's at its version 6, typed for PostgreSQL
/// (`BIGINT` for every integer, identity columns for ids). `rowid` of `scim_resources` keeps
/// the insertion order SQLite's rowid gives.
const POSTGRES_MIGRATIONS: &[&str] = &[
    // 1: everything of SQLite's 1 to 6.
    r#"
    CREATE TABLE tenants (
        tenant   TEXT PRIMARY KEY,
        last_seq BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE users (
        tenant TEXT NOT NULL,
        id     TEXT NOT NULL,
        email  TEXT NOT NULL,
        data   TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE INDEX users_by_email ON users (tenant, email);
    CREATE TABLE groups (
        tenant TEXT NOT NULL,
        id     TEXT NOT NULL,
        email  TEXT,
        name   TEXT NOT NULL,
        data   TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE INDEX groups_by_email ON groups (tenant, email);
    CREATE TABLE memberships (
        tenant   TEXT NOT NULL,
        group_id TEXT NOT NULL,
        user_id  TEXT NOT NULL,
        PRIMARY KEY (tenant, group_id, user_id)
    );
    CREATE INDEX memberships_by_user ON memberships (tenant, user_id);
    CREATE TABLE events (
        tenant      TEXT NOT NULL,
        seq         BIGINT NOT NULL,
        id          TEXT NOT NULL,
        type        TEXT NOT NULL,
        subject_id  TEXT NOT NULL,
        occurred_at BIGINT NOT NULL,
        sync_id     BIGINT NOT NULL,
        body        TEXT NOT NULL,
        PRIMARY KEY (tenant, seq)
    );
    CREATE INDEX events_by_subject ON events (tenant, subject_id);
    CREATE UNIQUE INDEX events_by_id ON events (id);
    CREATE INDEX events_deletions ON events (tenant, seq)
        WHERE type IN ('user.deleted', 'group.deleted');
    CREATE TABLE runs (
        id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        tenant       TEXT NOT NULL,
        started_at   BIGINT NOT NULL,
        finished_at  BIGINT NOT NULL,
        outcome      TEXT NOT NULL,
        duration_ms  BIGINT NOT NULL,
        events       BIGINT NOT NULL,
        counts       TEXT NOT NULL,
        users        BIGINT,
        groups       BIGINT,
        memberships  BIGINT,
        api_requests BIGINT NOT NULL,
        retries      BIGINT NOT NULL,
        first_seq    BIGINT,
        last_seq     BIGINT,
        error        TEXT
    );
    CREATE INDEX runs_by_tenant ON runs (tenant, id);
    CREATE TABLE leases (
        tenant     TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        token      BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE sink_cursors (
        tenant        TEXT NOT NULL,
        sink          TEXT NOT NULL,
        delivered_seq BIGINT NOT NULL DEFAULT 0,
        updated_at    BIGINT NOT NULL,
        last_error    TEXT,
        last_error_at BIGINT,
        parked        BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, sink)
    );
    CREATE TABLE exclusions (
        tenant  TEXT NOT NULL,
        id      TEXT NOT NULL,
        email   TEXT NOT NULL,
        kind    TEXT NOT NULL,
        reason  TEXT NOT NULL,
        detail  TEXT,
        run_id  BIGINT NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE INDEX exclusions_by_email ON exclusions (tenant, email);
    CREATE TABLE group_edges (
        tenant      TEXT NOT NULL,
        group_id    TEXT NOT NULL,
        member_kind TEXT NOT NULL,
        member_id   TEXT NOT NULL,
        PRIMARY KEY (tenant, group_id, member_kind, member_id)
    );
    CREATE INDEX group_edges_by_member ON group_edges (tenant, member_id, member_kind);
    CREATE TABLE scim_resources (
        rowid        BIGINT GENERATED ALWAYS AS IDENTITY,
        tenant       TEXT NOT NULL,
        kind         TEXT NOT NULL,
        id           TEXT NOT NULL,
        user_name    TEXT,
        external_id  TEXT,
        display_name TEXT,
        created      BIGINT NOT NULL,
        modified     BIGINT NOT NULL,
        version      BIGINT NOT NULL,
        data         TEXT NOT NULL,
        UNIQUE (tenant, kind, id)
    );
    CREATE UNIQUE INDEX scim_resources_by_user_name ON scim_resources (tenant, kind, user_name)
        WHERE user_name IS NOT NULL;
    CREATE INDEX scim_resources_by_external_id ON scim_resources (tenant, kind, external_id)
        WHERE external_id IS NOT NULL;
    CREATE INDEX scim_resources_by_display_name ON scim_resources (tenant, kind, display_name);
    CREATE TABLE scim_members (
        tenant    TEXT NOT NULL,
        group_id  TEXT NOT NULL,
        member_id TEXT NOT NULL,
        kind      TEXT NOT NULL,
        display   TEXT,
        PRIMARY KEY (tenant, group_id, member_id)
    );
    CREATE INDEX scim_members_by_member ON scim_members (tenant, member_id);
    CREATE TABLE push_requests (
        id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        tenant        TEXT NOT NULL,
        at            BIGINT NOT NULL,
        method        TEXT NOT NULL,
        path          TEXT NOT NULL,
        status        BIGINT NOT NULL,
        latency_us    BIGINT NOT NULL,
        user_agent    TEXT,
        resource_kind TEXT,
        resource_id   TEXT,
        detail        TEXT,
        first_seq     BIGINT,
        last_seq      BIGINT,
        body          TEXT
    );
    CREATE INDEX push_requests_by_tenant ON push_requests (tenant, id);
    CREATE INDEX push_requests_by_resource ON push_requests (tenant, resource_id)
        WHERE resource_id IS NOT NULL;
    CREATE TABLE user_addresses (
        tenant  TEXT NOT NULL,
        user_id TEXT NOT NULL,
        address TEXT NOT NULL,
        PRIMARY KEY (tenant, user_id, address)
    );
    CREATE INDEX user_addresses_by_address ON user_addresses (tenant, address);
    CREATE TABLE delivery_leases (
        tenant     TEXT NOT NULL,
        sink       TEXT NOT NULL,
        holder     TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        token      BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, sink)
    );
    CREATE TABLE schedule_claims (
        tenant     TEXT PRIMARY KEY,
        slot       BIGINT NOT NULL,
        node       TEXT NOT NULL,
        claimed_at BIGINT NOT NULL
    );
    CREATE TABLE nodes (
        node       TEXT PRIMARY KEY,
        host       TEXT NOT NULL,
        pid        BIGINT NOT NULL,
        started_at BIGINT NOT NULL,
        seen_at    BIGINT NOT NULL
    );
    "#,
    // 2: SQLite's json_extract for a text result at a '$.a.b' path, so the store's queries
    // over event bodies are written once for both backends (a SQL function, inlined by the
    // planner).
    r#"
    CREATE FUNCTION json_extract(document TEXT, path TEXT) RETURNS TEXT
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        AS 'SELECT document::jsonb #>> string_to_array(substr(path, 3), ''.'')';
    "#,
    // 3: hash indexes for the lookups by a key that arrives in random order (a member's
    // groups, an email, a subject's events). A first sync inserts a million such keys in one
    // transaction, on one backend: into a B-tree each costs a descent and text comparisons
    // on every level (measured at 100k users: 6-7 s of the backend's CPU for the events'
    // subjects alone, 6 s for memberships by user); into a hash index, about half. Every
    // query on them is an equality; the tenant is checked on the rows.
    r#"
    DROP INDEX events_by_subject;
    CREATE INDEX events_by_subject ON events USING hash (subject_id);
    DROP INDEX memberships_by_user;
    CREATE INDEX memberships_by_user ON memberships USING hash (user_id);
    DROP INDEX group_edges_by_member;
    CREATE INDEX group_edges_by_member ON group_edges USING hash (member_id);
    DROP INDEX users_by_email;
    CREATE INDEX users_by_email ON users USING hash (email);
    DROP INDEX user_addresses_by_address;
    CREATE INDEX user_addresses_by_address ON user_addresses USING hash (address);
    "#,
    // 4: SQLite's 7, the digest of the fetch a tenant's last commit was planned from.
    r#"
    CREATE TABLE fetch_digests (
        tenant   TEXT PRIMARY KEY,
        digest   TEXT NOT NULL,
        last_seq BIGINT NOT NULL,
        counts   TEXT NOT NULL
    );
    "#,
];

/// Serializes nodes migrating one PostgreSQL database at once (a transaction-scoped lock,
/// which works behind PgBouncer in transaction mode).
const POSTGRES_MIGRATION_LOCK: i64 = 0x0064_6972_7379_6e63; // "dirsync"

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// PostgreSQL's schema version this binary writes.
pub const POSTGRES_SCHEMA_VERSION: i64 = POSTGRES_MIGRATIONS.len() as i64;

pub fn migrate(conn: &mut Connection, location: &Location) -> Result<(), StoreError> {
    match location {
        Location::Sqlite(path) => migrate_to(conn, path, SCHEMA_VERSION),
        Location::Postgres { config, .. } => migrate_postgres(conn, config.display()),
    }
}

fn migrate_postgres(conn: &mut Connection, url: &str) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.query_row(
        "SELECT pg_advisory_xact_lock(?1)",
        [POSTGRES_MIGRATION_LOCK],
        |_| Ok(()),
    )?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS dirsync_schema (version BIGINT NOT NULL)")?;
    let found: Option<i64> =
        tx.query_row("SELECT MAX(version) FROM dirsync_schema", (), |row| {
            row.get(0)
        })?;
    let found = found.unwrap_or(0);
    if found > POSTGRES_SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: PathBuf::from(url),
            found,
            known: POSTGRES_SCHEMA_VERSION,
        });
    }
    for (index, sql) in POSTGRES_MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.execute("DELETE FROM dirsync_schema", ())?;
        tx.execute(
            "INSERT INTO dirsync_schema (version) VALUES (?1)",
            [index as i64 + 1],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Applies the migrations up to version `target` (tests build older databases with it).
pub(super) fn migrate_to(
    conn: &mut Connection,
    path: &Path,
    target: i64,
) -> Result<(), StoreError> {
    let user_version = |conn: &Connection| -> Result<i64, StoreError> {
        let sqlite = conn
            .as_sqlite()
            .ok_or_else(|| StoreError::Corrupt("SQLite migrations on another backend".into()))?;
        Ok(sqlite.pragma_query_value(None, "user_version", |row| row.get(0))?)
    };
    let found = user_version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(found as usize)
    {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the write lock.
        if user_version(&tx)? > index as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", index as i64 + 1))?;
        tx.commit()?;
    }
    Ok(())
}
