//! Forgetting a tenant (`dirsync forget`): every row of it, in every table that has a
//! `tenant` column, in one transaction — so a table added by a later migration is forgotten
//! too. Refused while the tenant's lease is held by a live holder (a sync would write it back).

use super::sql::{params, Backend, Connection, OptionalExtension, TransactionBehavior};

use super::lock::LeaseError;
use super::{now_ms, StoreError};

/// What `forget_tenant` deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    pub users: u64,
    pub groups: u64,
    pub events: u64,
    /// Every row of every table.
    pub rows: u64,
}

pub fn forget_tenant(conn: &mut Connection, tenant: &str) -> Result<Forgotten, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.lock_tenant(tenant)?;
    let lease: Option<(String, i64)> = tx
        .query_row(
            "SELECT holder, expires_at FROM leases WHERE tenant = ?1",
            [tenant],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((holder, expires_at)) = lease {
        if expires_at > now_ms() {
            return Err(LeaseError::Held {
                tenant: tenant.to_owned(),
                holder,
                until: super::lock::format_ms(expires_at),
            }
            .into());
        }
    }
    let tables: Vec<String> = {
        let mut statement = tx.prepare(match tx.backend() {
            Backend::Sqlite => {
                "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p
                 WHERE m.type = 'table' AND p.name = 'tenant' ORDER BY m.name"
            }
            Backend::Postgres => {
                "SELECT table_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND column_name = 'tenant'
                 ORDER BY table_name"
            }
        })?;
        let names = statement.query_map((), |row| row.get(0))?;
        names.collect::<Result<_, _>>()?
    };
    let mut forgotten = Forgotten::default();
    for table in &tables {
        // Names come from the schema itself, not from input.
        let deleted = tx.execute(
            &format!(
                "DELETE FROM \"{}\" WHERE tenant = ?1",
                table.replace('"', "\"\"")
            ),
            params![tenant],
        )? as u64;
        forgotten.rows += deleted;
        match table.as_str() {
            "users" => forgotten.users = deleted,
            "groups" => forgotten.groups = deleted,
            "events" => forgotten.events = deleted,
            _ => {}
        }
    }
    tx.commit()?;
    Ok(forgotten)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn forgets_every_row_of_one_tenant_only() {
        let mut conn = Connection::from_sqlite(rusqlite::Connection::open_in_memory().unwrap());
        super::super::migrations::migrate(
            &mut conn,
            &super::super::Location::Sqlite(":memory:".into()),
        )
        .unwrap();
        for tenant in ["gone", "kept"] {
            conn.execute(
                "INSERT INTO users (tenant, id, email, data) VALUES (?1, 'u1', 'a@b.c', '{}')",
                [tenant],
            )
            .unwrap();
        }
        let forgotten = forget_tenant(&mut conn, "gone").unwrap();
        assert_eq!((forgotten.users, forgotten.rows), (1, 1));
        let left: Vec<String> = conn
            .prepare("SELECT tenant FROM users")
            .unwrap()
            .query_map((), |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, ["kept"]);
    }
}
