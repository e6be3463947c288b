//! The SQL side of hookwise (read models, checkpoints, the outbox), on the
//! same database as the event log: SQLite or PostgreSQL behind one small API.
//!
//! Statements are written once in the common dialect of both engines with `?`
//! placeholders (rewritten to `$n` for PostgreSQL). Conventions that keep one
//! statement valid on both: integers are `BIGINT`, text is `TEXT`, floats are
//! `DOUBLE PRECISION`, booleans are `BIGINT` 0/1, upserts use
//! `INSERT … ON CONFLICT … DO UPDATE`, and aggregates that PostgreSQL would
//! return as `NUMERIC` are cast (`CAST(SUM(x) AS BIGINT)`).
//!
//! The lowest layer of the crate: it imports nothing of hookwise, and the
//! log's stores (`crate::store`) use its engine plumbing (migrations, the
//! PostgreSQL pool, error codes).

mod coalesce;
mod error;
pub(crate) mod postgres;
pub(crate) mod sqlite;
mod value;

use std::borrow::Cow;
use std::sync::Arc;

pub use coalesce::coalesce_inserts;
pub use error::{ErrorCode, SqlError};
pub use postgres::{connect_pool, BACKGROUND_LEASE_LOCK};
pub use value::{FromSqlValue, SqlRow, SqlValue};

/// One statement and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: Cow<'static, str>,
    pub params: Vec<SqlValue>,
}

impl Statement {
    pub fn new(sql: impl Into<Cow<'static, str>>, params: Vec<SqlValue>) -> Self {
        Statement { sql: sql.into(), params }
    }
}

/// Which engine a [`SqlDb`] talks to, for the rare statement that must differ
/// (e.g. `FOR UPDATE SKIP LOCKED`, which only PostgreSQL has or needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A migration: `(version, statements)`, applied once per component, in
/// order, each in its own transaction, recorded in `schema_migrations` (one
/// runner per engine: `sqlite::apply_migrations`, `postgres::apply_migrations`,
/// used by the log's stores too).
pub type Migration = (i64, &'static str);

#[derive(Clone)]
pub struct SqlDb {
    inner: Arc<Engine>,
}

enum Engine {
    Sqlite { db: sqlite::SqliteDb, lease_path: String },
    Postgres(postgres::PostgresDb),
}

impl SqlDb {
    /// Connects to the database `database_url` names (the same URL as the store's).
    pub async fn connect(database_url: &str) -> Result<Self, SqlError> {
        let engine = if let Some(path) = database_url.strip_prefix("sqlite://") {
            Engine::Sqlite {
                db: sqlite::SqliteDb::open(&sqlite_read_side_path(path)).await?,
                lease_path: sqlite_lease_path(path),
            }
        } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            Engine::Postgres(postgres::PostgresDb::connect(database_url)?)
        } else {
            return Err(SqlError::Unavailable("expected sqlite://PATH or postgres://…".into()));
        };
        Ok(SqlDb { inner: Arc::new(engine) })
    }

    pub fn dialect(&self) -> Dialect {
        match &*self.inner {
            Engine::Sqlite { .. } => Dialect::Sqlite,
            Engine::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Applies `component`'s migrations that have not run yet, each in its own transaction.
    pub async fn migrate(&self, component: &'static str, migrations: &'static [Migration]) -> Result<(), SqlError> {
        match &*self.inner {
            Engine::Sqlite { db, .. } => db.migrate(component, migrations).await,
            Engine::Postgres(db) => db.migrate(component, migrations).await,
        }
    }

    /// Runs `statements` in one transaction; returns the rows each changed.
    pub async fn write(&self, statements: Vec<Statement>) -> Result<Vec<u64>, SqlError> {
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        match &*self.inner {
            Engine::Sqlite { db, .. } => db.write(statements).await,
            Engine::Postgres(db) => db.write(statements).await,
        }
    }

    /// On PostgreSQL, calls `on_notify` for every `NOTIFY` on `channel` from
    /// any instance, until the returned task is aborted (a hint: what listens
    /// also polls). `None` on SQLite, which has no such thing.
    pub fn listen(
        &self,
        channel: &'static str,
        on_notify: impl Fn() + Send + Sync + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match &*self.inner {
            Engine::Sqlite { .. } => None,
            Engine::Postgres(_) => {
                let db = self.clone();
                Some(tokio::spawn(async move {
                    if let Engine::Postgres(postgres) = &*db.inner {
                        postgres.listen(channel, on_notify).await
                    }
                }))
            }
        }
    }

    /// Runs one statement that returns rows (a `SELECT`, or a write with `RETURNING`).
    pub async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<Vec<SqlRow>, SqlError> {
        match &*self.inner {
            Engine::Sqlite { db, .. } => db.query(sql, params).await,
            Engine::Postgres(db) => db.query(sql, params).await,
        }
    }

    /// Takes the background lease if no other instance holds it (`None` if one does).
    pub async fn try_take_background_lease(&self) -> Result<Option<BackgroundLease>, SqlError> {
        let hold = match &*self.inner {
            Engine::Sqlite { lease_path, .. } => {
                sqlite::try_lock_file(lease_path).await?.map(|file| LeaseHold::File { _locked: file })
            }
            Engine::Postgres(db) => db.try_take_advisory_lease().await?.map(LeaseHold::Postgres),
        };
        Ok(hold.map(|hold| BackgroundLease { hold }))
    }

    /// Who holds the background lease, as its holder described itself
    /// ([`lease_holder_description`]), when that can be known.
    pub async fn background_lease_holder(&self) -> Option<String> {
        let holder = match &*self.inner {
            Engine::Sqlite { lease_path, .. } => sqlite::read_lease_holder(lease_path).await,
            Engine::Postgres(db) => db.advisory_lease_holder().await,
        };
        // Another process wrote it: bounded and printable before it is logged.
        holder.map(|h| h.chars().filter(|c| !c.is_control()).take(200).collect())
    }

    /// Runs `statements` in one transaction, the last of which returns rows
    /// (e.g. claiming an outbox row with `UPDATE … RETURNING`).
    pub async fn write_returning(&self, statements: Vec<Statement>) -> Result<Vec<SqlRow>, SqlError> {
        match &*self.inner {
            Engine::Sqlite { db, .. } => db.write_returning(statements).await,
            Engine::Postgres(db) => db.write_returning(statements).await,
        }
    }
}

/// The SQLite file of the read side, beside the log's: `data/hookwise.db` →
/// `data/hookwise.read.db`. SQLite has one writer per file; with read models,
/// checkpoints and the outbox in a file of their own, their transactions never
/// make intake's group commit wait for the write lock.
pub fn sqlite_read_side_path(log_path: &str) -> String {
    let path = std::path::Path::new(log_path);
    let name = match (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|e| e.to_str())) {
        (Some(stem), Some(extension)) => format!("{stem}.read.{extension}"),
        (Some(stem), None) => format!("{stem}.read"),
        _ => "hookwise.read.db".to_owned(),
    };
    path.with_file_name(name).to_string_lossy().into_owned()
}

/// The file whose lock is the background lease on SQLite, beside the log's:
/// `data/hookwise.db` → `data/hookwise.lease`. A file of its own: SQLite's
/// locks on its database files must not be touched by other handles.
pub fn sqlite_lease_path(log_path: &str) -> String {
    let path = std::path::Path::new(log_path);
    let name = format!("{}.lease", path.file_stem().and_then(|s| s.to_str()).unwrap_or("hookwise"));
    path.with_file_name(name).to_string_lossy().into_owned()
}

/// Held by the one instance that runs the work following the log (the
/// process manager, read models, forwarders, reconciliation) while several
/// share a database. Whatever ends the holder's process ends the lease with
/// it: the operating system drops a dead process's file lock, PostgreSQL a
/// dead session's advisory lock. Dropping it releases it.
pub struct BackgroundLease {
    hold: LeaseHold,
}

enum LeaseHold {
    /// An exclusive lock on [`sqlite_lease_path`]'s file, held while it is open.
    File { _locked: std::fs::File },
    /// A session-level advisory lock on a connection of its own.
    Postgres(deadpool_postgres::ClientWrapper),
}

impl BackgroundLease {
    /// Whether the lease is still held: a PostgreSQL session that can no longer
    /// answer may already have lost its lock on the server.
    pub async fn check(&self) -> Result<(), SqlError> {
        match &self.hold {
            LeaseHold::File { .. } => Ok(()),
            LeaseHold::Postgres(client) => postgres::check_lease(client).await,
        }
    }
}

/// How the lease's holder names itself to a standby: `pid 123 on host-a`.
pub(crate) fn lease_holder_description() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let host = if host.is_empty() { "unknown host" } else { host };
    format!("pid {} on {host}", std::process::id())
}

/// Rewrites `?` placeholders to PostgreSQL's `$1, $2, …`, leaving quoted text alone.
pub(crate) fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (None, '?') => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::numbered_placeholders;

    #[test]
    fn the_read_side_lives_beside_the_log() {
        assert_eq!(super::sqlite_read_side_path("data/hookwise.db"), "data/hookwise.read.db");
        assert_eq!(super::sqlite_lease_path("data/hookwise.db"), "data/hookwise.lease");
        assert_eq!(super::sqlite_read_side_path("/tmp/x/log"), "/tmp/x/log.read");
    }

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            numbered_placeholders("SELECT ? , '?' , \"a?\" FROM t WHERE x = ? AND y = ?"),
            "SELECT $1 , '?' , \"a?\" FROM t WHERE x = $2 AND y = $3"
        );
    }
}
