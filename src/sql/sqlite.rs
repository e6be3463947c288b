use std::sync::{Arc, Mutex};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::error::from_sqlite;
use super::value::Columns;
use super::{Migration, SqlError, SqlRow, SqlValue, Statement};

/// Read models beside the log in the same SQLite file: one write connection
/// (SQLite has one writer at a time anyway) and a pool of readers.
pub struct SqliteDb {
    writer: Arc<Mutex<Connection>>,
    readers: r2d2::Pool<SqliteConnectionManager>,
}

/// A failure around the engine (a folder, a pool, a thread), not in it.
fn unavailable(e: impl std::fmt::Display) -> SqlError {
    SqlError::Unavailable(e.to_string())
}

/// Applies `component`'s migrations that `conn` has not recorded yet, each
/// in its own `BEGIN IMMEDIATE` transaction with its row in
/// `schema_migrations`. The one migration runner on SQLite: the read side's
/// [`SqliteDb`] and the log's store both use it.
pub(crate) fn apply_migrations(
    conn: &mut Connection,
    component: &str,
    migrations: &[Migration],
) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            component TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (component, version))",
    )?;
    for (version, sql) in migrations {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let applied: Option<i64> = tx
            .query_row(
                "SELECT version FROM schema_migrations WHERE component = ?1 AND version = ?2",
                rusqlite::params![component, version],
                |r| r.get(0),
            )
            .optional()?;
        if applied.is_none() {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (component, version) VALUES (?1, ?2)",
                rusqlite::params![component, version],
            )?;
        }
        tx.commit()?;
    }
    Ok(())
}

impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            SqlValue::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            SqlValue::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            SqlValue::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            SqlValue::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

fn read_row(row: &rusqlite::Row<'_>, columns: &Columns, count: usize) -> rusqlite::Result<SqlRow> {
    let mut values = Vec::with_capacity(count);
    for i in 0..count {
        values.push(match row.get_ref(i)? {
            ValueRef::Null => SqlValue::Null,
            ValueRef::Integer(v) => SqlValue::Int(v),
            ValueRef::Real(v) => SqlValue::Real(v),
            ValueRef::Text(v) => SqlValue::Text(String::from_utf8_lossy(v).into_owned()),
            ValueRef::Blob(v) => SqlValue::Blob(v.to_vec()),
        });
    }
    Ok(SqlRow(values, columns.clone()))
}

fn run_query(conn: &Connection, sql: &str, params: &[SqlValue]) -> rusqlite::Result<Vec<SqlRow>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let count = stmt.column_count();
    let columns = Columns::new(stmt.column_names());
    let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| read_row(r, &columns, count))?;
    rows.collect()
}

/// Locks `path` (created if missing) for this process alone, or `None` if
/// another holds it. The lock lasts as long as the returned file is open.
pub async fn try_lock_file(path: &str) -> Result<Option<std::fs::File>, SqlError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| SqlError::Unavailable(format!("opening {path}: {e}")))?;
        match file.try_lock() {
            Ok(()) => {
                // For a standby's log line; the lock, not the text, is the lease.
                use std::io::Write;
                let mut file = file;
                let described = file.set_len(0).and_then(|()| {
                    writeln!(file, "{}", super::lease_holder_description())?;
                    file.flush()
                });
                if let Err(e) = described {
                    tracing::debug!(error = %e, "could not describe this instance in {path}");
                }
                Ok(Some(file))
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(SqlError::Unavailable(format!("locking {path}: {e}"))),
        }
    })
    .await
    .map_err(unavailable)?
}

/// What the lease's holder wrote into `path` (at most 256 bytes of it).
pub async fn read_lease_holder(path: &str) -> Option<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut text = Vec::new();
        std::fs::File::open(&path).ok()?.take(256).read_to_end(&mut text).ok()?;
        let text = String::from_utf8_lossy(&text).trim().to_owned();
        (!text.is_empty()).then_some(text)
    })
    .await
    .ok()
    .flatten()
}

impl SqliteDb {
    pub async fn open(path: &str) -> Result<Self, SqlError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = std::path::Path::new(&path).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(unavailable)?;
            }
            let writer = Connection::open(&path).map_err(from_sqlite)?;
            // NORMAL: a power loss may undo the last few commits here, never
            // tear one. Everything here is derived from the log, and each
            // handler's rows commit with its checkpoint, so what is undone is
            // simply applied again; the log itself stays fully durable.
            writer
                .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000;")
                .map_err(from_sqlite)?;
            let manager = SqliteConnectionManager::file(&path)
                .with_flags(rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .with_init(|c| c.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA cache_size = -1024;"));
            let readers = r2d2::Pool::builder().max_size(8).min_idle(Some(1)).build(manager).map_err(unavailable)?;
            Ok(SqliteDb { writer: Arc::new(Mutex::new(writer)), readers })
        })
        .await
        .map_err(unavailable)?
    }

    async fn with_writer<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, SqlError> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = writer.lock().map_err(|_| SqlError::Unavailable("writer connection poisoned".into()))?;
            work(&mut conn).map_err(from_sqlite)
        })
        .await
        .map_err(unavailable)?
    }

    pub async fn migrate(&self, component: &'static str, migrations: &'static [Migration]) -> Result<(), SqlError> {
        self.with_writer(move |conn| apply_migrations(conn, component, migrations)).await
    }

    pub async fn write(&self, statements: Vec<Statement>) -> Result<Vec<u64>, SqlError> {
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut changed = Vec::with_capacity(statements.len());
            for statement in &statements {
                let mut stmt = tx.prepare_cached(&statement.sql)?;
                changed.push(stmt.execute(rusqlite::params_from_iter(statement.params.iter()))? as u64);
            }
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    pub async fn write_returning(&self, mut statements: Vec<Statement>) -> Result<Vec<SqlRow>, SqlError> {
        let Some(last) = statements.pop() else {
            return Ok(Vec::new());
        };
        self.with_writer(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for statement in &statements {
                tx.prepare_cached(&statement.sql)?.execute(rusqlite::params_from_iter(statement.params.iter()))?;
            }
            let rows = run_query(&tx, &last.sql, &last.params)?;
            tx.commit()?;
            Ok(rows)
        })
        .await
    }

    pub async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<Vec<SqlRow>, SqlError> {
        let pool = self.readers.clone();
        let sql = sql.to_owned();
        tokio::task::spawn_blocking(move || {
            let conn = pool.get().map_err(|e| SqlError::Unavailable(e.to_string()))?;
            run_query(&conn, &sql, &params).map_err(from_sqlite)
        })
        .await
        .map_err(unavailable)?
    }
}
