//! The store's one SQL interface over its two backends, SQLite (rusqlite) and PostgreSQL
//! (tokio-postgres): connections, transactions, statements, parameters and rows shaped like
//! rusqlite's, so every query of the store is written once.
//!
//! Statements are written in the dialect both engines share (`ON CONFLICT … DO NOTHING`,
//! `RETURNING`, `?N` parameters, which become `$N` for PostgreSQL). What differs (pragmas,
//! index rebuilds, JSON functions, row locks) is asked of [`Connection::backend`] at the few
//! places that need it.
//!
//! A PostgreSQL connection drives its socket on a current-thread runtime of its own, from the
//! blocking thread that runs the store's SQL: no async worker waits on the database, and a
//! query costs no hop between threads. Must not: know any table.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;

/// Which engine a connection speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlite(rusqlite::Error),
    #[error("{}", postgres_message(.0))]
    Postgres(tokio_postgres::Error),
    #[error("the query returned no rows")]
    NoRows,
    #[error("column {index}: {detail}")]
    Column { index: usize, detail: String },
    #[error("{0}")]
    Usage(String),
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        match err {
            rusqlite::Error::QueryReturnedNoRows => Error::NoRows,
            other => Error::Sqlite(other),
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(err: tokio_postgres::Error) -> Self {
        Error::Postgres(err)
    }
}

impl Error {
    /// The SQLSTATE of a PostgreSQL error, e.g. `40001` for a serialization failure.
    pub fn sql_state(&self) -> Option<&str> {
        match self {
            Error::Postgres(err) => err.code().map(|code| code.code()),
            _ => None,
        }
    }

    /// The connection is unusable (closed by the server, reset): it is not pooled again.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Error::Postgres(err) => {
                err.is_closed()
                    || err.as_db_error().is_none()
                        && err.code().is_none()
                        && !is_statement_error(err)
            }
            _ => false,
        }
    }
}

fn is_statement_error(err: &tokio_postgres::Error) -> bool {
    // Conversion errors of parameters or columns leave the connection intact.
    let text = err.to_string();
    text.starts_with("error serializing") || text.starts_with("error deserializing")
}

/// tokio-postgres prints a server error as `db error`; the server's message, detail and hint
/// are what an operator needs.
fn postgres_message(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut text = format!("PostgreSQL: {} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => match std::error::Error::source(err) {
            Some(source) => format!("PostgreSQL: {err}: {source}"),
            None => format!("PostgreSQL: {err}"),
        },
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `query_row(…).optional()`: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(Error::NoRows) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// One parameter's value, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

pub trait ToSql {
    fn to_value(&self) -> Value<'_>;
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_value(&self) -> Value<'_> {
        (**self).to_value()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_value(&self) -> Value<'_> {
        match self {
            Some(value) => value.to_value(),
            None => Value::Null,
        }
    }
}

macro_rules! integer_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_value(&self) -> Value<'_> {
                Value::Integer(*self as i64)
            }
        }
    )*};
}
integer_to_sql!(i64, i32, u32, u16, u8, usize, u64);

impl ToSql for bool {
    fn to_value(&self) -> Value<'_> {
        Value::Integer(i64::from(*self))
    }
}

impl ToSql for f64 {
    fn to_value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

impl ToSql for str {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToSql for String {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

impl ToSql for [u8] {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl ToSql for Vec<u8> {
    fn to_value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}

impl ToSql for std::sync::Arc<str> {
    fn to_value(&self) -> Value<'_> {
        Value::Text(self)
    }
}

/// The parameters of one statement: `params![a, b]`, `[a]`, `()` or [`params_from_iter`].
pub trait Params {
    fn values(&self) -> Vec<Value<'_>>;
}

impl Params for () {
    fn values(&self) -> Vec<Value<'_>> {
        Vec::new()
    }
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|param| param.to_value()).collect()
    }
}

impl<T: ToSql, const N: usize> Params for [T; N] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(ToSql::to_value).collect()
    }
}

/// Parameters from a list built at run time (an `IN (…)` of many ids).
pub struct ParamsFromIter<T>(pub Vec<T>);

pub fn params_from_iter<T: ToSql>(items: impl IntoIterator<Item = T>) -> ParamsFromIter<T> {
    ParamsFromIter(items.into_iter().collect())
}

impl<T: ToSql> Params for ParamsFromIter<T> {
    fn values(&self) -> Vec<Value<'_>> {
        self.0.iter().map(ToSql::to_value).collect()
    }
}

/// `params![a, b, c]`: a statement's parameters, of any mix of types.
#[macro_export]
macro_rules! sql_params {
    () => {
        &[] as &[&dyn $crate::store::sql::ToSql]
    };
    ($($param:expr),+ $(,)?) => {
        &[$(&$param as &dyn $crate::store::sql::ToSql),+] as &[&dyn $crate::store::sql::ToSql]
    };
}
pub use crate::sql_params as params;

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Integer(value) => ValueRef::Integer(value),
            Value::Real(value) => ValueRef::Real(value),
            Value::Text(value) => ValueRef::Text(value.as_bytes()),
            Value::Blob(value) => ValueRef::Blob(value),
        }))
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// Values are typed by the statement's parameter, as SQLite does: an integer binds to a
/// BIGINT, INTEGER, BOOLEAN or text parameter alike.
impl tokio_postgres::types::ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<tokio_postgres::types::IsNull, BoxError> {
        use tokio_postgres::types::{IsNull, Type};
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(value) => match *ty {
                Type::INT8 => value.to_sql(ty, out),
                Type::INT4 => i32::try_from(value)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(value)?.to_sql(ty, out),
                Type::BOOL => (value != 0).to_sql(ty, out),
                Type::FLOAT8 => (value as f64).to_sql(ty, out),
                Type::NUMERIC => Err(format!("cannot bind {value} to NUMERIC").into()),
                _ => value.to_string().as_str().to_sql(&Type::TEXT, out),
            },
            Value::Real(value) => match *ty {
                Type::FLOAT4 => (value as f32).to_sql(ty, out),
                _ => value.to_sql(&Type::FLOAT8, out),
            },
            Value::Text(value) => match *ty {
                Type::INT8 => value.parse::<i64>()?.to_sql(ty, out),
                Type::BYTEA => value.as_bytes().to_sql(ty, out),
                _ => value.to_sql(&Type::TEXT, out),
            },
            Value::Blob(value) => value.to_sql(&Type::BYTEA, out),
        }
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<tokio_postgres::types::IsNull, BoxError> {
        self.to_sql(ty, out)
    }
}

// ---------------------------------------------------------------------------------------------
// Rows

/// One row of a result, from either engine.
#[derive(Clone, Copy)]
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r tokio_postgres::Row),
}

pub trait RowIndex {
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

impl Row<'_> {
    pub fn get<I: RowIndex, T: FromSql>(&self, index: I) -> Result<T> {
        let index = index.index();
        let value = match self {
            Row::Sqlite(row) => T::from_sqlite(row.get_ref(index)?),
            Row::Postgres(row) => T::from_postgres(row, index),
        };
        match value {
            Ok(Some(value)) => Ok(value),
            Ok(None) => T::from_null().ok_or(Error::Column {
                index,
                detail: "unexpected NULL".into(),
            }),
            Err(detail) => Err(Error::Column { index, detail }),
        }
    }
}

impl<'r> Row<'r> {
    /// A text column, borrowed from the row.
    pub fn get_str(self, index: usize) -> Result<&'r str> {
        match self {
            Row::Sqlite(row) => row.get_ref(index)?.as_str().map_err(|err| Error::Column {
                index,
                detail: err.to_string(),
            }),
            Row::Postgres(row) => row.try_get::<_, &str>(index).map_err(|err| Error::Column {
                index,
                detail: err.to_string(),
            }),
        }
    }
}

/// A column's Rust type. `Ok(None)` is NULL, which only `Option` accepts.
pub trait FromSql: Sized {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Option<Self>, String>;
    fn from_postgres(row: &tokio_postgres::Row, index: usize) -> Result<Option<Self>, String>;
    fn from_null() -> Option<Self> {
        None
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Option<Self>, String> {
        T::from_sqlite(value).map(Some)
    }
    fn from_postgres(row: &tokio_postgres::Row, index: usize) -> Result<Option<Self>, String> {
        T::from_postgres(row, index).map(Some)
    }
    fn from_null() -> Option<Self> {
        Some(None)
    }
}

fn postgres_integer(row: &tokio_postgres::Row, index: usize) -> Result<Option<i64>, String> {
    use tokio_postgres::types::Type;
    let column = row
        .columns()
        .get(index)
        .ok_or_else(|| format!("no column {index}"))?;
    let error = |err: tokio_postgres::Error| err.to_string();
    match *column.type_() {
        Type::INT8 => row.try_get::<_, Option<i64>>(index).map_err(error),
        Type::INT4 => Ok(row
            .try_get::<_, Option<i32>>(index)
            .map_err(error)?
            .map(i64::from)),
        Type::INT2 => Ok(row
            .try_get::<_, Option<i16>>(index)
            .map_err(error)?
            .map(i64::from)),
        Type::BOOL => Ok(row
            .try_get::<_, Option<bool>>(index)
            .map_err(error)?
            .map(i64::from)),
        ref other => Err(format!("a {other} column read as an integer")),
    }
}

macro_rules! integer_from_sql {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Option<Self>, String> {
                match value {
                    rusqlite::types::ValueRef::Null => Ok(None),
                    rusqlite::types::ValueRef::Integer(value) => {
                        <$t>::try_from(value).map(Some).map_err(|err| err.to_string())
                    }
                    other => Err(format!("a {} read as an integer", other.data_type())),
                }
            }
            fn from_postgres(row: &tokio_postgres::Row, index: usize) -> Result<Option<Self>, String> {
                postgres_integer(row, index)?
                    .map(|value| <$t>::try_from(value).map_err(|err| err.to_string()))
                    .transpose()
            }
        }
    )*};
}
integer_from_sql!(i64, i32, u32, u64, usize);

impl FromSql for bool {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Option<Self>, String> {
        i64::from_sqlite(value).map(|value| value.map(|value| value != 0))
    }
    fn from_postgres(row: &tokio_postgres::Row, index: usize) -> Result<Option<Self>, String> {
        postgres_integer(row, index).map(|value| value.map(|value| value != 0))
    }
}

impl FromSql for f64 {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Option<Self>, String> {
        match value {
            rusqlite::types::ValueRef::Null => Ok(None),
            rusqlite::types::ValueRef::Real(value) => Ok(Some(value)),
            rusqlite::types::ValueRef::Integer(value) => Ok(Some(value as f64)),
            other => Err(format!("a {} read as a number", other.data_type())),
        }
    }
    fn from_postgres(row: &tokio_postgres::Row, index: usize) -> Result<Option<Self>, String> {
        use tokio_postgres::types::Type;
        match row
            .columns()
            .get(index)
            .map(|column| column.type_().clone())
        {
            Some(Type::FLOAT8) => row
                .try_get::<_, Option<f64>>(index)
                .map_err(|err| err.to_string()),
            Some(Type::FLOAT4) => Ok(row
                .try_get::<_, Option<f32>>(index)
                .map_err(|err| err.to_string())?
                .map(f64::from)),
            _ => Ok(postgres_integer(row, index)?.map(|value| value as f64)),
        }
    }
}

impl FromSql for String {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Option<Self>, String> {
        match value {
            rusqlite::types::ValueRef::Null => Ok(None),
            rusqlite::types::ValueRef::Text(text) => std::str::from_utf8(text)
                .map(|text| Some(text.to_owned()))
                .map_err(|err| err.to_string()),
            other => Err(format!("a {} read as text", other.data_type())),
        }
    }
    fn from_postgres(row: &tokio_postgres::Row, index: usize) -> Result<Option<Self>, String> {
        row.try_get::<_, Option<String>>(index)
            .map_err(|err| err.to_string())
    }
}

impl FromSql for Vec<u8> {
    fn from_sqlite(value: rusqlite::types::ValueRef<'_>) -> Result<Option<Self>, String> {
        match value {
            rusqlite::types::ValueRef::Null => Ok(None),
            rusqlite::types::ValueRef::Blob(bytes) | rusqlite::types::ValueRef::Text(bytes) => {
                Ok(Some(bytes.to_vec()))
            }
            other => Err(format!("a {} read as bytes", other.data_type())),
        }
    }
    fn from_postgres(row: &tokio_postgres::Row, index: usize) -> Result<Option<Self>, String> {
        row.try_get::<_, Option<Vec<u8>>>(index)
            .map_err(|err| err.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Connections

/// An open connection to the store's database.
pub struct Connection {
    inner: Inner,
}

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Postgres>),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("backend", &self.backend())
            .finish()
    }
}

struct Postgres {
    client: tokio_postgres::Client,
    runtime: OwnedRuntime,
    statements: Mutex<HashMap<String, tokio_postgres::Statement>>,
    /// The result still being read, if any: read to its end before another statement runs,
    /// since the connection answers statements in order.
    open_stream: Mutex<Weak<Mutex<PgStream>>>,
    open_copy: Mutex<Option<CopyPipe>>,
    transaction_depth: Mutex<u32>,
    notifications: Mutex<tokio::sync::mpsc::UnboundedReceiver<Notification>>,
}

/// A connection's runtime, shut down without waiting when dropped: a connection may be
/// dropped on an async thread, where a runtime must not block. Shared only with a
/// [`CopyPipe`]'s feeder thread, which drives it while a `COPY` is open.
struct OwnedRuntime(Option<Arc<tokio::runtime::Runtime>>);

impl std::ops::Deref for OwnedRuntime {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl OwnedRuntime {
    fn shared(&self) -> Arc<tokio::runtime::Runtime> {
        Arc::clone(self.0.as_ref().expect("present until dropped"))
    }
}

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        // Still shared: a feeder thread finishing its COPY drops the runtime after it.
        if let Some(Ok(runtime)) = self.0.take().map(Arc::try_unwrap) {
            runtime.shutdown_background();
        }
    }
}

/// A `COPY … FROM STDIN` left open between a [`BatchInsert`]'s chunks. A feeder thread of
/// its own hands the chunks to the connection, driving the connection's runtime all along,
/// so PostgreSQL inserts one chunk while the caller renders and formats the next (sent one
/// after the other, a first sync's commit waited for each side in turn). Any other statement
/// on the connection first ends the `COPY` (`finish_open_stream`), since the connection
/// answers in order.
struct CopyPipe {
    /// The [`BatchInsert`] it belongs to.
    owner: u64,
    chunks: tokio::sync::mpsc::Sender<bytes::Bytes>,
    feeder: std::thread::JoinHandle<Result<u64>>,
}

impl CopyPipe {
    fn open(pg: &Postgres, owner: u64, copy: &str) -> Result<Self> {
        let sink = block_on(&pg.runtime, pg.client.copy_in::<_, bytes::Bytes>(copy))?;
        // Two chunks in flight: the feeder never waits for the caller, and the caller's
        // rows are at most two chunks ahead of the server.
        let (chunks, mut received) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
        let runtime = pg.runtime.shared();
        let feeder = std::thread::Builder::new()
            .name("dirsync-copy".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    use futures_util::SinkExt;
                    let mut sink = std::pin::pin!(sink);
                    while let Some(chunk) = received.recv().await {
                        sink.send(chunk).await?;
                    }
                    Ok(sink.as_mut().finish().await?)
                })
            })
            .map_err(|err| Error::Usage(format!("cannot start a COPY thread: {err}")))?;
        Ok(Self {
            owner,
            chunks,
            feeder,
        })
    }

    /// Hands one chunk on; `Err` when the `COPY` already failed (its error comes with
    /// [`CopyPipe::finish`]).
    fn feed(&self, runtime: &tokio::runtime::Runtime, chunk: bytes::Bytes) -> bool {
        block_on(runtime, self.chunks.send(chunk)).is_ok()
    }

    /// Ends the `COPY` (PostgreSQL checks and inserts the last rows) and says how it went.
    fn finish(self) -> Result<()> {
        drop(self.chunks);
        match self.feeder.join() {
            Ok(result) => result.map(drop),
            Err(_) => Err(Error::Usage("the COPY thread panicked".to_owned())),
        }
    }
}

/// A `NOTIFY` received on a connection that `LISTEN`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
}

impl Connection {
    pub fn from_sqlite(conn: rusqlite::Connection) -> Self {
        Self {
            inner: Inner::Sqlite(conn),
        }
    }

    /// Connects to PostgreSQL. `password` overrides one in the URL (`database_password_file`).
    pub fn connect_postgres(config: &PostgresConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| Error::Usage(format!("cannot start a runtime: {err}")))?;
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let client = block_on(&runtime, async {
            let connect = async {
                if config.tls_wanted() {
                    let tls = super::postgres_tls::MakeRustlsConnect::new(&config.tls)
                        .map_err(Error::Usage)?;
                    let (client, connection) = config.inner.connect(tls).await?;
                    tokio::spawn(drive(connection, sender));
                    Ok::<_, Error>(client)
                } else {
                    let (client, connection) = config.inner.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(drive(connection, sender));
                    Ok(client)
                }
            };
            match tokio::time::timeout(config.connect_timeout, connect).await {
                Ok(result) => result,
                Err(_) => Err(Error::Usage(format!(
                    "no answer from PostgreSQL within {} s",
                    config.connect_timeout.as_secs()
                ))),
            }
        })?;
        Ok(Self {
            inner: Inner::Postgres(Box::new(Postgres {
                client,
                runtime: OwnedRuntime(Some(Arc::new(runtime))),
                statements: Mutex::new(HashMap::new()),
                open_stream: Mutex::new(Weak::new()),
                open_copy: Mutex::new(None),
                transaction_depth: Mutex::new(0),
                notifications: Mutex::new(receiver),
            })),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite(_) => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, its schema table).
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Sqlite(conn) => Some(conn),
            Inner::Postgres(_) => None,
        }
    }

    /// Whether the connection may be handed to the next caller: outside any transaction and,
    /// for PostgreSQL, still open.
    pub fn is_reusable(&self) -> bool {
        match &self.inner {
            Inner::Sqlite(conn) => conn.is_autocommit(),
            Inner::Postgres(pg) => !pg.client.is_closed() && *lock(&pg.transaction_depth) == 0,
        }
    }

    pub fn is_autocommit(&self) -> bool {
        match &self.inner {
            Inner::Sqlite(conn) => conn.is_autocommit(),
            Inner::Postgres(pg) => *lock(&pg.transaction_depth) == 0,
        }
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// Runs statements separated by `;`, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Inner::Postgres(pg) => {
                pg.finish_open_stream()?;
                Ok(block_on(&pg.runtime, pg.client.batch_execute(sql))?)
            }
        }
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        match &self.inner {
            Inner::Sqlite(conn) => Ok(Statement {
                inner: StatementInner::Sqlite(conn.prepare(sql)?),
            }),
            Inner::Postgres(pg) => pg.prepare(sql),
        }
    }

    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        match &self.inner {
            Inner::Sqlite(conn) => Ok(Statement {
                inner: StatementInner::SqliteCached(conn.prepare_cached(sql)?),
            }),
            Inner::Postgres(pg) => pg.prepare(sql),
        }
    }

    pub fn query_row<P: Params, T>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Begins a transaction. [`TransactionBehavior::Immediate`] takes SQLite's write lock at
    /// once; PostgreSQL locks rows as statements touch them (and [`Transaction::lock_tenant`]).
    pub fn transaction_with_behavior(
        &mut self,
        behavior: TransactionBehavior,
    ) -> Result<Transaction<'_>> {
        self.begin(behavior)
    }

    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        self.begin(TransactionBehavior::Deferred)
    }

    fn begin(&self, behavior: TransactionBehavior) -> Result<Transaction<'_>> {
        match &self.inner {
            Inner::Sqlite(conn) => conn.execute_batch(match behavior {
                TransactionBehavior::Deferred => "BEGIN DEFERRED",
                TransactionBehavior::Immediate => "BEGIN IMMEDIATE",
            })?,
            Inner::Postgres(pg) => {
                pg.finish_open_stream()?;
                block_on(&pg.runtime, pg.client.batch_execute("BEGIN"))?;
                *lock(&pg.transaction_depth) += 1;
            }
        }
        Ok(Transaction {
            conn: self,
            finished: false,
        })
    }

    fn end(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(conn) => Ok(conn.execute_batch(sql)?),
            Inner::Postgres(pg) => {
                let result = pg
                    .finish_open_stream()
                    .and_then(|()| Ok(block_on(&pg.runtime, pg.client.batch_execute(sql))?));
                let mut depth = lock(&pg.transaction_depth);
                *depth = depth.saturating_sub(1);
                result
            }
        }
    }

    /// Waits up to `timeout` for a `NOTIFY` on a channel this connection `LISTEN`s to.
    pub fn wait_for_notification(&self, timeout: Duration) -> Result<Option<Notification>> {
        match &self.inner {
            Inner::Sqlite(_) => Ok(None),
            Inner::Postgres(pg) => {
                let mut receiver = lock(&pg.notifications);
                if let Ok(notification) = receiver.try_recv() {
                    return Ok(Some(notification));
                }
                if pg.client.is_closed() {
                    return Err(Error::Usage("the PostgreSQL connection was closed".into()));
                }
                Ok(block_on(&pg.runtime, async {
                    tokio::time::timeout(timeout, receiver.recv()).await
                })
                .ok()
                .flatten())
            }
        }
    }
}

/// Drives a PostgreSQL connection, passing on the `NOTIFY`s it receives.
async fn drive(
    mut connection: tokio_postgres::Connection<
        tokio_postgres::Socket,
        impl tokio_postgres::tls::TlsStream + Unpin,
    >,
    notifications: tokio::sync::mpsc::UnboundedSender<Notification>,
) {
    loop {
        let message = futures_util::future::poll_fn(|cx| connection.poll_message(cx)).await;
        match message {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(notification))) => {
                let _ = notifications.send(Notification {
                    channel: notification.channel().to_owned(),
                    payload: notification.payload().to_owned(),
                });
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                tracing::debug!("PostgreSQL connection ended: {err}");
                return;
            }
            None => return,
        }
    }
}

impl Postgres {
    /// Sends one chunk of `COPY` text for `owner`, through its open `COPY` or a new one.
    fn feed_copy(&self, owner: u64, copy: &str, chunk: bytes::Bytes) -> Result<()> {
        let open = lock(&self.open_copy).take();
        let pipe = match open {
            Some(pipe) if pipe.owner == owner => pipe,
            other => {
                if let Some(other) = other {
                    other.finish()?;
                }
                self.finish_open_stream()?;
                CopyPipe::open(self, owner, copy)?
            }
        };
        if pipe.feed(&self.runtime, chunk) {
            *lock(&self.open_copy) = Some(pipe);
            Ok(())
        } else {
            // The feeder stopped early: the COPY failed, and its error says why.
            pipe.finish()?;
            Err(Error::Usage(
                "the COPY ended before its last rows".to_owned(),
            ))
        }
    }

    fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        let cached = lock(&self.statements).get(sql).cloned();
        let statement = match cached {
            Some(statement) => statement,
            None => {
                self.finish_open_stream()?;
                let statement = block_on(&self.runtime, self.client.prepare(&to_postgres(sql)))?;
                let mut statements = lock(&self.statements);
                // Statements built at run time (an `IN` list of some length) would otherwise
                // pile up for the connection's life.
                if statements.len() >= 512 {
                    statements.clear();
                }
                statements.insert(sql.to_owned(), statement.clone());
                statement
            }
        };
        Ok(Statement {
            inner: StatementInner::Postgres {
                pg: self,
                statement,
            },
        })
    }

    fn finish_open_stream(&self) -> Result<()> {
        let copy = lock(&self.open_copy).take();
        if let Some(copy) = copy {
            copy.finish()?;
        }
        let open = lock(&self.open_stream).upgrade();
        if let Some(open) = open {
            let mut stream = lock(&open);
            stream.read_to_end(&self.runtime)?;
        }
        Ok(())
    }
}

/// Rewrites `?N` and `?` parameters to PostgreSQL's `$N`, outside quoted text, and drops
/// SQLite's `INDEXED BY name` hints (PostgreSQL's planner takes none).
pub fn to_postgres(sql: &str) -> String {
    let sql = drop_index_hints(sql);
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    // As SQLite numbers them: a bare `?` is one more than the largest number so far.
    let mut largest = 0u32;
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(open) => {
                out.push(c);
                if c == open {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    out.push(c);
                }
                '?' => {
                    let mut digits = String::new();
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        digits.push(d);
                        chars.next();
                    }
                    let number = digits.parse().unwrap_or(largest + 1);
                    largest = largest.max(number);
                    out.push('$');
                    out.push_str(&number.to_string());
                }
                _ => out.push(c),
            },
        }
    }
    out
}

fn drop_index_hints(sql: &str) -> std::borrow::Cow<'_, str> {
    const HINT: &str = "INDEXED BY ";
    if !sql.contains(HINT) {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(HINT) {
        out.push_str(&rest[..at]);
        let after = &rest[at + HINT.len()..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        rest = &after[name_len..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionBehavior {
    Deferred,
    Immediate,
}

/// A transaction: rolled back when dropped uncommitted.
pub struct Transaction<'c> {
    conn: &'c Connection,
    finished: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.finished = true;
        self.conn.end("COMMIT")
    }

    pub fn rollback(mut self) -> Result<()> {
        self.finished = true;
        self.conn.end("ROLLBACK")
    }

    /// Serializes the writers of one tenant: SQLite's `BEGIN IMMEDIATE` already did; on
    /// PostgreSQL the tenant's counter row is locked until the transaction ends (it also holds
    /// the tenant's `last_seq`, so events stay gap-free).
    pub fn lock_tenant(&self, tenant: &str) -> Result<()> {
        if self.conn.backend() == Backend::Postgres {
            self.conn.execute(
                "INSERT INTO tenants (tenant, last_seq) VALUES (?1, 0) ON CONFLICT (tenant) DO NOTHING",
                [tenant],
            )?;
            self.conn.query_row(
                "SELECT last_seq FROM tenants WHERE tenant = ?1 FOR UPDATE",
                [tenant],
                |_| Ok(()),
            )?;
        }
        Ok(())
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(err) = self.conn.end("ROLLBACK") {
                tracing::debug!("rolling back: {err}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Statements

pub struct Statement<'c> {
    inner: StatementInner<'c>,
}

enum StatementInner<'c> {
    Sqlite(rusqlite::Statement<'c>),
    SqliteCached(rusqlite::CachedStatement<'c>),
    Postgres {
        pg: &'c Postgres,
        statement: tokio_postgres::Statement,
    },
}

impl<'c> Statement<'c> {
    // Taken by value as rusqlite takes them, so call sites read the same on both backends.
    #[allow(clippy::needless_pass_by_value)]
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let values = params.values();
        let (pg, statement) = match &mut self.inner {
            StatementInner::Sqlite(statement) => {
                return Ok(statement.execute(rusqlite::params_from_iter(values.iter()))?)
            }
            StatementInner::SqliteCached(statement) => {
                return Ok(statement.execute(rusqlite::params_from_iter(values.iter()))?)
            }
            StatementInner::Postgres { pg, statement } => (*pg, &*statement),
        };
        pg.finish_open_stream()?;
        let changed = block_on(&pg.runtime, pg.client.execute_raw(statement, values.iter()))?;
        Ok(changed as usize)
    }

    #[allow(clippy::needless_pass_by_value)]
    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        let values = params.values();
        let (pg, statement) = match &mut self.inner {
            StatementInner::Sqlite(statement) => {
                let rows = statement.query(rusqlite::params_from_iter(values.iter()))?;
                return Ok(Rows {
                    inner: RowsInner::Sqlite(rows),
                });
            }
            StatementInner::SqliteCached(statement) => {
                let rows = statement.query(rusqlite::params_from_iter(values.iter()))?;
                return Ok(Rows {
                    inner: RowsInner::Sqlite(rows),
                });
            }
            StatementInner::Postgres { pg, statement } => (*pg, &*statement),
        };
        pg.finish_open_stream()?;
        let stream = block_on(&pg.runtime, pg.client.query_raw(statement, values.iter()))?;
        let shared = Arc::new(Mutex::new(PgStream {
            stream: Some(Box::pin(stream)),
            buffered: VecDeque::new(),
            error: None,
        }));
        *lock(&pg.open_stream) = Arc::downgrade(&shared);
        Ok(Rows {
            inner: RowsInner::Postgres {
                pg,
                shared,
                current: None,
            },
        })
    }

    pub fn query_map<P: Params, T, F: FnMut(Row<'_>) -> Result<T>>(
        &mut self,
        params: P,
        f: F,
    ) -> Result<MappedRows<'_, F>> {
        Ok(MappedRows {
            rows: self.query(params)?,
            map: f,
        })
    }

    pub fn query_row<P: Params, T>(
        &mut self,
        params: P,
        f: impl FnOnce(Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(row) => f(row),
            None => Err(Error::NoRows),
        }
    }

    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool> {
        Ok(self.query(params)?.next()?.is_some())
    }
}

struct PgStream {
    stream: Option<Pin<Box<tokio_postgres::RowStream>>>,
    buffered: VecDeque<tokio_postgres::Row>,
    error: Option<tokio_postgres::Error>,
}

impl PgStream {
    fn read_to_end(&mut self, runtime: &tokio::runtime::Runtime) -> Result<()> {
        if let Some(mut stream) = self.stream.take() {
            block_on(runtime, async {
                while let Some(row) = stream.next().await {
                    match row {
                        Ok(row) => self.buffered.push_back(row),
                        Err(err) => {
                            self.error = Some(err);
                            break;
                        }
                    }
                }
            });
        }
        Ok(())
    }

    fn next(&mut self, runtime: &tokio::runtime::Runtime) -> Result<Option<tokio_postgres::Row>> {
        if let Some(row) = self.buffered.pop_front() {
            return Ok(Some(row));
        }
        if let Some(err) = self.error.take() {
            return Err(err.into());
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(None);
        };
        match block_on(runtime, stream.next()) {
            Some(row) => Ok(Some(row?)),
            None => {
                self.stream = None;
                Ok(None)
            }
        }
    }
}

pub struct Rows<'s> {
    inner: RowsInner<'s>,
}

enum RowsInner<'s> {
    Sqlite(rusqlite::Rows<'s>),
    Postgres {
        pg: &'s Postgres,
        shared: Arc<Mutex<PgStream>>,
        current: Option<tokio_postgres::Row>,
    },
}

impl Rows<'_> {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        match &mut self.inner {
            RowsInner::Sqlite(rows) => Ok(rows.next()?.map(Row::Sqlite)),
            RowsInner::Postgres {
                pg,
                shared,
                current,
            } => {
                *current = lock(shared).next(&pg.runtime)?;
                Ok(current.as_ref().map(Row::Postgres))
            }
        }
    }
}

pub struct MappedRows<'s, F> {
    rows: Rows<'s>,
    map: F,
}

impl<T, F: FnMut(Row<'_>) -> Result<T>> Iterator for MappedRows<'_, F> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(row)) => Some((self.map)(row)),
            Ok(None) => None,
            Err(err) => Some(Err(err)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Batched inserts

/// A parameter value owned by a [`BatchInsert`] until its batch is sent.
#[derive(Debug, Clone)]
enum OwnedValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl OwnedValue {
    fn of(value: Value<'_>) -> Self {
        match value {
            Value::Null => OwnedValue::Null,
            Value::Integer(value) => OwnedValue::Integer(value),
            Value::Real(value) => OwnedValue::Real(value),
            Value::Text(value) => OwnedValue::Text(value.to_owned()),
            Value::Blob(value) => OwnedValue::Blob(value.to_vec()),
        }
    }
}

impl ToSql for OwnedValue {
    fn to_value(&self) -> Value<'_> {
        match self {
            OwnedValue::Null => Value::Null,
            OwnedValue::Integer(value) => Value::Integer(*value),
            OwnedValue::Real(value) => Value::Real(*value),
            OwnedValue::Text(value) => Value::Text(value),
            OwnedValue::Blob(value) => Value::Blob(value),
        }
    }
}

/// Many rows of one `INSERT … VALUES (?1, …) [ON CONFLICT …]`: on SQLite each row is one
/// execution of the prepared statement (cheap: no round trip); on PostgreSQL rows go by
/// `COPY` — straight into the table (one `COPY` kept open across chunks, see
/// [`CopyPipe`]), or, when the statement has an `ON CONFLICT` clause, into a temporary table
/// that one `INSERT … SELECT` then applies with the clause — since a round trip per row made
/// a first sync of 100k users (three million rows) take minutes. Rows of one batch must not
/// conflict with each other; nothing is sent after an error. [`BatchInsert::finish`] sends
/// the last batch and ends its `COPY`.
pub struct BatchInsert<'c> {
    /// Tells its own open `COPY` ([`CopyPipe`]) from another's.
    id: u64,
    conn: &'c Connection,
    insert: String,
    columns: usize,
    single: Option<Statement<'c>>,
    /// PostgreSQL: the first rows not sent yet, as values: a batch of a few rows (a push
    /// write's) goes as one multi-row `INSERT`, cheaper than a `COPY` in round trips.
    held: Vec<OwnedValue>,
    /// Beyond [`FEW_ROWS`]: the rows not sent yet, in `COPY`'s text format.
    pending: String,
    pending_rows: usize,
    copy: Option<CopyPlan>,
}

/// How a [`BatchInsert`] sends its rows to PostgreSQL.
struct CopyPlan {
    /// `COPY target (columns) FROM STDIN`.
    copy: String,
    /// With an `ON CONFLICT` clause: the temporary table `copy` fills, and the statements that
    /// move its rows into the table and empty it.
    apply: Option<(String, String)>,
    staging: Option<String>,
}

const FEW_ROWS: usize = 100;
const COPY_ROWS: usize = 10_000;
const COPY_BYTES: usize = 4 << 20;
const PIPED_ROWS: usize = 4_000;
const PIPED_BYTES: usize = 1 << 20;

/// `INSERT INTO t (a, b) VALUES (?1, ?2) [tail]` → how to `COPY` its rows.
fn copy_plan(insert: &str) -> Result<CopyPlan> {
    let unusable = || Error::Usage(format!("not an INSERT INTO t (…) VALUES (…): {insert}"));
    let rest = insert
        .trim_start()
        .strip_prefix("INSERT INTO ")
        .ok_or_else(unusable)?;
    let open = rest.find('(').ok_or_else(unusable)?;
    let table = rest[..open].trim();
    let close = rest[open..]
        .find(')')
        .map(|at| open + at)
        .ok_or_else(unusable)?;
    let columns = rest[open + 1..close].trim();
    let values_at = rest.find("VALUES").ok_or_else(unusable)?;
    let group_end = rest[values_at..]
        .find(')')
        .map(|at| values_at + at + 1)
        .ok_or_else(unusable)?;
    let tail = rest[group_end..].trim();
    if tail.is_empty() {
        return Ok(CopyPlan {
            copy: format!("COPY {table} ({columns}) FROM STDIN"),
            apply: None,
            staging: None,
        });
    }
    let staging = format!("dirsync_copy_{table}");
    Ok(CopyPlan {
        copy: format!("COPY {staging} ({columns}) FROM STDIN"),
        apply: Some((
            format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging} {tail}"),
            format!("TRUNCATE {staging}"),
        )),
        staging: Some(format!(
            "CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table}) ON COMMIT DROP"
        )),
    })
}

/// One value in `COPY`'s text format.
fn copy_text(out: &mut String, value: Value<'_>) {
    use std::fmt::Write;
    match value {
        Value::Null => out.push_str("\\N"),
        Value::Integer(value) => {
            let _ = write!(out, "{value}");
        }
        Value::Real(value) => {
            let _ = write!(out, "{value}");
        }
        Value::Text(text) => {
            for c in text.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
        }
        Value::Blob(bytes) => {
            out.push_str("\\\\x");
            for byte in bytes {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
}

impl Connection {
    /// `insert` is one row's statement, `INSERT INTO t (a, b) VALUES (?1, ?2)` with an
    /// optional `ON CONFLICT …` after it; `columns` is its number of parameters.
    pub fn batch_insert(&self, insert: &str, columns: usize) -> Result<BatchInsert<'_>> {
        let (single, copy) = match self.backend() {
            Backend::Sqlite => (Some(self.prepare_cached(insert)?), None),
            Backend::Postgres => (None, Some(copy_plan(insert)?)),
        };
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(BatchInsert {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            conn: self,
            insert: insert.to_owned(),
            columns,
            single,
            held: Vec::new(),
            pending: String::new(),
            pending_rows: 0,
            copy,
        })
    }
}

impl BatchInsert<'_> {
    pub fn push<P: Params>(&mut self, params: P) -> Result<()> {
        if let Some(statement) = self.single.as_mut() {
            statement.execute(params)?;
            return Ok(());
        }
        let values = params.values();
        if values.len() != self.columns {
            return Err(Error::Usage(format!(
                "{} values for the {} columns of {}",
                values.len(),
                self.columns,
                self.insert
            )));
        }
        self.pending_rows += 1;
        if self.pending_rows <= FEW_ROWS {
            self.held.extend(values.into_iter().map(OwnedValue::of));
            return Ok(());
        }
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            for row in held.chunks(self.columns) {
                self.copy_row(row.iter().map(ToSql::to_value));
            }
        }
        self.copy_row(values.into_iter());
        // Chunks of an open COPY are smaller: the server starts on the rows sooner.
        let piped = self.copy.as_ref().is_some_and(|plan| plan.apply.is_none());
        let (rows, bytes) = if piped {
            (PIPED_ROWS, PIPED_BYTES)
        } else {
            (COPY_ROWS, COPY_BYTES)
        };
        if self.pending_rows >= rows || self.pending.len() >= bytes {
            self.send()?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.send()?;
        if let Inner::Postgres(pg) = &self.conn.inner {
            let mut open = lock(&pg.open_copy);
            if open.as_ref().is_some_and(|copy| copy.owner == self.id) {
                let copy = open.take().expect("checked");
                drop(open);
                copy.finish()?;
            }
        }
        Ok(())
    }

    fn copy_row<'v>(&mut self, values: impl Iterator<Item = Value<'v>>) {
        for (index, value) in values.enumerate() {
            if index > 0 {
                self.pending.push('\t');
            }
            copy_text(&mut self.pending, value);
        }
        self.pending.push('\n');
    }

    fn send(&mut self) -> Result<()> {
        if self.pending_rows == 0 {
            return Ok(());
        }
        if !self.held.is_empty() {
            let sql = multi_row_insert(&self.insert, self.columns, self.pending_rows)?;
            let values: Vec<&dyn ToSql> = self.held.iter().map(|v| v as &dyn ToSql).collect();
            self.conn.prepare_cached(&sql)?.execute(values.as_slice())?;
            self.held.clear();
            self.pending_rows = 0;
            return Ok(());
        }
        let (Some(plan), Inner::Postgres(pg)) = (self.copy.as_mut(), &self.conn.inner) else {
            return Ok(());
        };
        if plan.apply.is_none() {
            let data = bytes::Bytes::from(std::mem::take(&mut self.pending));
            self.pending_rows = 0;
            return pg.feed_copy(self.id, &plan.copy, data);
        }
        if let Some(staging) = plan.staging.take() {
            self.conn.execute_batch(&staging)?;
        }
        pg.finish_open_stream()?;
        let data = bytes::Bytes::from(std::mem::take(&mut self.pending));
        block_on(&pg.runtime, async {
            use futures_util::SinkExt;
            let sink = pg
                .client
                .copy_in::<_, bytes::Bytes>(plan.copy.as_str())
                .await?;
            let mut sink = std::pin::pin!(sink);
            sink.send(data).await?;
            sink.as_mut().finish().await?;
            Ok::<_, Error>(())
        })?;
        if let Some((apply, empty)) = &plan.apply {
            self.conn.execute_batch(apply)?;
            self.conn.execute_batch(empty)?;
        }
        self.pending_rows = 0;
        Ok(())
    }
}

/// One row's values, whatever their types, read to be written elsewhere (`migrate-store`).
pub struct OwnedRow(Vec<OwnedValue>);

impl OwnedRow {
    pub fn read(row: Row<'_>, columns: usize) -> Result<Self> {
        let mut values = Vec::with_capacity(columns);
        for index in 0..columns {
            let value = match row {
                Row::Sqlite(row) => match row.get_ref(index)? {
                    rusqlite::types::ValueRef::Null => OwnedValue::Null,
                    rusqlite::types::ValueRef::Integer(value) => OwnedValue::Integer(value),
                    rusqlite::types::ValueRef::Real(value) => OwnedValue::Real(value),
                    rusqlite::types::ValueRef::Text(text) => {
                        OwnedValue::Text(String::from_utf8_lossy(text).into_owned())
                    }
                    rusqlite::types::ValueRef::Blob(bytes) => OwnedValue::Blob(bytes.to_vec()),
                },
                Row::Postgres(pg) => {
                    use tokio_postgres::types::Type;
                    let column_type = pg.columns()[index].type_().clone();
                    let failed = |err: String| Error::Column { index, detail: err };
                    match column_type {
                        Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL => {
                            match postgres_integer(pg, index).map_err(failed)? {
                                Some(value) => OwnedValue::Integer(value),
                                None => OwnedValue::Null,
                            }
                        }
                        Type::FLOAT8 | Type::FLOAT4 => {
                            match f64::from_postgres(pg, index).map_err(failed)? {
                                Some(value) => OwnedValue::Real(value),
                                None => OwnedValue::Null,
                            }
                        }
                        Type::BYTEA => match Vec::<u8>::from_postgres(pg, index).map_err(failed)? {
                            Some(value) => OwnedValue::Blob(value),
                            None => OwnedValue::Null,
                        },
                        _ => match String::from_postgres(pg, index).map_err(failed)? {
                            Some(value) => OwnedValue::Text(value),
                            None => OwnedValue::Null,
                        },
                    }
                }
            };
            values.push(value);
        }
        Ok(Self(values))
    }

    pub fn values(&self) -> impl Iterator<Item = &dyn ToSql> {
        self.0.iter().map(|value| value as &dyn ToSql)
    }
}

/// `INSERT INTO t (a, b) VALUES (?1, ?2) tail` → `… VALUES (?1, ?2), (?3, ?4), … tail`.
fn multi_row_insert(insert: &str, columns: usize, rows: usize) -> Result<String> {
    let values_at = insert
        .find("VALUES")
        .ok_or_else(|| Error::Usage(format!("not an INSERT … VALUES: {insert}")))?;
    let group_end = insert[values_at..]
        .find(')')
        .map(|at| values_at + at + 1)
        .ok_or_else(|| Error::Usage(format!("no VALUES (…) in {insert}")))?;
    let mut sql = String::with_capacity(insert.len() + rows * columns * 6);
    sql.push_str(&insert[..values_at]);
    sql.push_str("VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
            sql.push_str(&(row * columns + column + 1).to_string());
        }
        sql.push(')');
    }
    sql.push_str(&insert[group_end..]);
    Ok(sql)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL settings

/// Where and how to connect to PostgreSQL: the `database_url` of the global config, and the
/// password from `database_password_file`.
#[derive(Clone)]
pub struct PostgresConfig {
    inner: tokio_postgres::Config,
    tls: TlsSettings,
    connect_timeout: Duration,
    /// The URL without its password, for messages.
    display: String,
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// How TLS to the server is checked, from libpq's `sslmode` and `sslrootcert`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// `verify-ca` / `verify-full`: the server's certificate must chain to a trusted root
    /// and name the host. `prefer` and `require` encrypt without checking it, as libpq does.
    pub verify: bool,
    /// `sslrootcert`: the roots to trust instead of the system's.
    pub root_cert: Option<std::path::PathBuf>,
}

/// Takes libpq's `sslmode` and `sslrootcert` out of the URL (tokio-postgres knows neither
/// `verify-ca`/`verify-full` nor `sslrootcert`) and puts back the mode it knows.
fn split_tls(url: &str) -> Result<(String, TlsSettings), String> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return Ok((url.to_owned(), TlsSettings::default()));
    };
    let mut tls = TlsSettings::default();
    let mut mode = None;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(key, value)| match &*key {
            "sslmode" => {
                mode = Some(value.into_owned());
                None
            }
            "sslrootcert" => {
                tls.root_cert = Some(value.into_owned().into());
                None
            }
            _ => Some((key.into_owned(), value.into_owned())),
        })
        .collect();
    let mapped = match mode.as_deref() {
        None => None,
        Some("disable") => Some("disable"),
        Some("allow" | "prefer") => Some("prefer"),
        Some("require") => Some("require"),
        Some("verify-ca" | "verify-full") => {
            tls.verify = true;
            Some("require")
        }
        Some(other) => {
            return Err(format!(
            "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
        ))
        }
    };
    {
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (key, value) in &kept {
            query.append_pair(key, value);
        }
        if let Some(mapped) = mapped {
            query.append_pair("sslmode", mapped);
        }
    }
    if parsed.query() == Some("") {
        parsed.set_query(None);
    }
    Ok((parsed.to_string(), tls))
}

impl PostgresConfig {
    pub fn parse(url: &str, password: Option<&str>) -> Result<Self, String> {
        let (url_for_client, tls) = split_tls(url)?;
        let mut inner: tokio_postgres::Config =
            url_for_client.parse().map_err(|err| format!("{err}"))?;
        if let Some(password) = password {
            inner.password(password);
        }
        if inner.get_application_name().is_none() {
            inner.application_name("dirsync");
        }
        let connect_timeout = inner
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(10));
        inner.connect_timeout(connect_timeout);
        inner.keepalives_idle(Duration::from_secs(30));
        Ok(Self {
            inner,
            tls,
            connect_timeout,
            display: redact_url(url),
        })
    }

    fn tls_wanted(&self) -> bool {
        !matches!(
            self.inner.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        ) && !self
            .inner
            .get_hosts()
            .iter()
            .all(|host| matches!(host, tokio_postgres::config::Host::Unix(_)))
    }

    /// The URL as it can be shown: without a password.
    pub fn display(&self) -> &str {
        &self.display
    }
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Runs a connection's future to completion on its runtime. Called on an async worker (a
/// command's `main`, a test), it first tells tokio that this thread blocks.
fn block_on<F: std::future::Future>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| runtime.block_on(future))
        }
        _ => runtime.block_on(future),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parameters_become_numbered_outside_quotes() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE b = ?1 AND c = '?' AND d IN (?, ?)"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d IN ($2, $3)"
        );
        assert_eq!(to_postgres("x = ?12"), "x = $12");
        assert_eq!(
            to_postgres("SELECT body FROM events INDEXED BY events_by_subject WHERE a = ?1"),
            "SELECT body FROM events  WHERE a = $1"
        );
    }

    #[test]
    fn one_rows_insert_becomes_a_multi_row_one() {
        assert_eq!(
            multi_row_insert(
                "INSERT INTO t (a, b) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                2,
                2
            )
            .unwrap(),
            "INSERT INTO t (a, b) VALUES (?1, ?2), (?3, ?4) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn libpq_ssl_modes_become_what_the_client_knows() {
        let (url, tls) = split_tls(
            "postgres://u@db/x?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(url, "postgres://u@db/x?connect_timeout=5&sslmode=require");
        assert!(tls.verify);
        assert_eq!(
            tls.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        let (url, tls) = split_tls("postgres://u@db/x?sslmode=require").unwrap();
        assert_eq!(
            (url.as_str(), tls.verify),
            ("postgres://u@db/x?sslmode=require", false)
        );
        assert_eq!(
            split_tls("postgres://u@db/x").unwrap().0,
            "postgres://u@db/x"
        );
        assert!(split_tls("postgres://u@db/x?sslmode=always").is_err());
    }

    #[test]
    fn a_password_is_not_shown() {
        assert_eq!(
            redact_url("postgres://dirsync:secret@db.internal:5432/dirsync"),
            "postgres://dirsync@db.internal:5432/dirsync"
        );
    }
}
