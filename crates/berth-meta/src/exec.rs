//! One text for the statements of a write, run either through sqlx (PostgreSQL, and SQLite
//! outside the hot paths) or inline on the embedded database's writer thread (`writer.rs`).
//!
//! sqlx hands every SQLite statement to a thread of its own over a channel, and a manifest
//! push is about fifteen statements: on this 2-core VM those hand-overs (two thread wake-ups
//! each) were most of the server's time in a tag-push load, with SQLite itself under 2 % of
//! the samples. The write paths that a push takes are therefore written once against
//! [`Exec`], which both a sqlx connection and the writer thread's `rusqlite` connection
//! implement; on the writer thread every future is ready at once, and [`ready`] takes its
//! value without a runtime.

use std::future::Future;

use futures::FutureExt;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::MetaError;
use crate::sql::Backend;

/// A value bound to a statement's placeholder (`$n`, or `?` in order).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
    OptText(Option<&'a str>),
    Bytes(&'a [u8]),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}
impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptText(v)
    }
}
impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::OptText(v.as_deref())
    }
}
impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Bytes(v)
    }
}

/// `&[Arg]` from values: `args![repo.as_str(), now]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::exec::Arg::from($v)),*][..] };
}
pub(crate) use args;

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match *self {
            Arg::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(v)),
            Arg::OptInt(v) => {
                v.map_or(ToSqlOutput::Borrowed(ValueRef::Null), |v| ToSqlOutput::Borrowed(ValueRef::Integer(v)))
            }
            Arg::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Arg::OptText(v) => {
                v.map_or(ToSqlOutput::Borrowed(ValueRef::Null), |v| ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())))
            }
            Arg::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

/// A column a statement returns, read from either connection.
pub(crate) trait Col: Sized + Send {
    fn any(r: &AnyRow, i: usize) -> Result<Self, sqlx::Error>;
    fn lite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self>;
}

macro_rules! col {
    ($($t:ty),*) => {$(
        impl Col for $t {
            fn any(r: &AnyRow, i: usize) -> Result<Self, sqlx::Error> {
                r.try_get(i)
            }
            fn lite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                r.get(i)
            }
        }
    )*};
}
col!(i64, String, Option<i64>, Option<String>);

/// A row a statement returns: one column, or a tuple of them.
pub(crate) trait Cols: Sized + Send {
    fn any(r: &AnyRow) -> Result<Self, sqlx::Error>;
    fn lite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

impl<A: Col> Cols for A {
    fn any(r: &AnyRow) -> Result<Self, sqlx::Error> {
        A::any(r, 0)
    }
    fn lite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        A::lite(r, 0)
    }
}

macro_rules! cols {
    ($($t:ident $i:tt),*) => {
        impl<$($t: Col),*> Cols for ($($t,)*) {
            fn any(r: &AnyRow) -> Result<Self, sqlx::Error> {
                Ok(($($t::any(r, $i)?,)*))
            }
            fn lite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($($t::lite(r, $i)?,)*))
            }
        }
    };
}
cols!(A 0, B 1);
cols!(A 0, B 1, C 2);
cols!(A 0, B 1, C 2, D 3);
cols!(A 0, B 1, C 2, D 3, E 4);
cols!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);

/// A connection, or a transaction, that write statements run on.
pub(crate) trait Exec: Send {
    /// The database behind it.
    fn backend(&self) -> Backend;

    /// Run a statement; the rows it changed.
    fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Result<u64, MetaError>> + Send;

    /// Run a query; every row it returns.
    fn query_all<T: Cols>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<T>, MetaError>> + Send;

    /// Run a query; its first row, if any.
    fn query_opt<T: Cols>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<T>, MetaError>> + Send {
        async move { Ok(self.query_all(sql, args).await?.into_iter().next()) }
    }

    /// Run a query that returns a row.
    fn query_one<T: Cols>(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Result<T, MetaError>> + Send {
        async move { self.query_opt(sql, args).await?.ok_or(MetaError::Db(sqlx::Error::RowNotFound)) }
    }
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &'q [Arg<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match *a {
            Arg::Int(v) => q.bind(v),
            Arg::OptInt(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::Bytes(v) => q.bind(v),
        };
    }
    q
}

impl Exec for AnyConnection {
    fn backend(&self) -> Backend {
        Backend::of(self)
    }

    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, MetaError> {
        Ok(bind(sqlx::query(sql), args).execute(self).await?.rows_affected())
    }

    async fn query_all<T: Cols>(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<T>, MetaError> {
        let rows = bind(sqlx::query(sql), args).fetch_all(self).await?;
        Ok(rows.iter().map(T::any).collect::<Result<_, _>>()?)
    }
}

impl Exec for sqlx::Transaction<'_, sqlx::Any> {
    fn backend(&self) -> Backend {
        Backend::of(self)
    }

    fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Result<u64, MetaError>> + Send {
        (**self).exec(sql, args)
    }

    fn query_all<T: Cols>(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<T>, MetaError>> + Send {
        (**self).query_all(sql, args)
    }
}

/// The embedded database's writing connection (`rusqlite`), used on the writer thread only.
pub(crate) struct SyncDb {
    pub(crate) conn: rusqlite::Connection,
}

/// Bind `args` to a `rusqlite` statement: `$n` by its number, `?` in order.
pub(crate) fn bind_lite(st: &mut rusqlite::Statement<'_>, args: &[Arg<'_>]) -> rusqlite::Result<()> {
    for i in 1..=st.parameter_count() {
        // SQLite numbers `$n` by first appearance, not by n: bind by the name.
        let at = match st.parameter_name(i) {
            Some(name) => name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).map(|n| n.wrapping_sub(1)),
            None => Some(i - 1),
        };
        let arg = at.and_then(|at| args.get(at)).ok_or(rusqlite::Error::InvalidParameterCount(i, args.len()))?;
        st.raw_bind_parameter(i, arg)?;
    }
    Ok(())
}

/// Every row of a bound `rusqlite` statement.
pub(crate) fn rows_lite<T: Cols>(st: &mut rusqlite::Statement<'_>) -> rusqlite::Result<Vec<T>> {
    let mut rows = st.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(T::lite(r)?);
    }
    Ok(out)
}

impl SyncDb {
    /// Prepare `sql` (cached) with `args` bound.
    fn prepared(&self, sql: &str, args: &[Arg<'_>]) -> rusqlite::Result<rusqlite::CachedStatement<'_>> {
        let mut st = self.conn.prepare_cached(sql)?;
        bind_lite(&mut st, args)?;
        Ok(st)
    }
}

impl Exec for SyncDb {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, MetaError> {
        Ok(self.prepared(sql, args)?.raw_execute()? as u64)
    }

    async fn query_all<T: Cols>(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<T>, MetaError> {
        Ok(rows_lite(&mut *self.prepared(sql, args)?)?)
    }
}

/// The value of a future that is ready at once: a write run on [`SyncDb`].
pub(crate) fn ready<T>(f: impl Future<Output = Result<T, MetaError>>) -> Result<T, MetaError> {
    f.now_or_never().unwrap_or_else(|| Err(MetaError::Corrupt("a write on the writer thread had to wait".into())))
}

/// A SQLite failure from `rusqlite`, as sqlx reports one: the extended result code as the
/// error's code, so that a full disk or a constraint is told apart the same way.
#[derive(Debug)]
struct LiteError {
    code: i32,
    message: String,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for LiteError {}

impl sqlx::error::DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }
    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        use sqlx::error::ErrorKind;
        match self.code {
            1555 | 2067 => ErrorKind::UniqueViolation,
            787 => ErrorKind::ForeignKeyViolation,
            1299 => ErrorKind::NotNullViolation,
            275 => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

impl From<rusqlite::Error> for MetaError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(f, message) => {
                let message = message.unwrap_or_else(|| f.to_string());
                MetaError::from(sqlx::Error::Database(Box::new(LiteError { code: f.extended_code, message })))
            }
            other => MetaError::Corrupt(format!("embedded database: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_placeholders_bind_by_number_not_by_first_appearance() {
        let mut db = SyncDb { conn: rusqlite::Connection::open_in_memory().unwrap() };
        ready(db.exec("CREATE TABLE t (a INTEGER, b TEXT, c BLOB)", args![])).unwrap();
        let n = ready(db.exec("INSERT INTO t (b, a, c) VALUES ($2, $1, $3)", args![7, "seven", &b"7"[..]])).unwrap();
        assert_eq!(n, 1);
        ready(db.exec("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)", args![8, "eight", 9, None::<&str>])).unwrap();
        let rows: Vec<(i64, Option<String>)> = ready(db.query_all("SELECT a, b FROM t ORDER BY a", args![])).unwrap();
        assert_eq!(rows, [(7, Some("seven".into())), (8, Some("eight".into())), (9, None)]);
        // One number used twice is one value.
        let same: i64 = ready(db.query_one("SELECT COUNT(*) FROM t WHERE a = $1 OR a + 1 = $1", args![8])).unwrap();
        assert_eq!(same, 2);
        let none: Option<i64> = ready(db.query_opt("SELECT a FROM t WHERE a = $1", args![100])).unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn sqlite_failures_keep_their_code() {
        let mut db = SyncDb { conn: rusqlite::Connection::open_in_memory().unwrap() };
        ready(db.exec("CREATE TABLE t (a INTEGER PRIMARY KEY)", args![])).unwrap();
        ready(db.exec("INSERT INTO t (a) VALUES ($1)", args![1])).unwrap();
        let err = ready(db.exec("INSERT INTO t (a) VALUES ($1)", args![1])).unwrap_err();
        let MetaError::Db(sqlx::Error::Database(d)) = &err else { panic!("{err:?}") };
        assert_eq!(d.kind(), sqlx::error::ErrorKind::UniqueViolation);
        assert_eq!(d.code().as_deref(), Some("1555"));
        // Too few values is an error, not a NULL.
        assert!(ready(db.exec("INSERT INTO t (a) VALUES ($2)", args![1])).is_err());
    }
}
