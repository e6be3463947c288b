use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::NoTls;

use super::error::from_postgres as db_error;
use super::value::Columns;
use super::{numbered_placeholders, Migration, SqlError, SqlRow, SqlValue, Statement};

pub struct PostgresDb {
    pool: Pool,
    /// For connections of their own (`LISTEN` cannot share the pool's).
    config: Box<tokio_postgres::Config>,
}

/// A connection pool for `url`, shared by the log's store and the SQL side.
pub fn connect_pool(url: &str) -> Result<Pool, SqlError> {
    let config = tokio_postgres::Config::from_str(url).map_err(|e| SqlError::InvalidUrl(e.to_string()))?;
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(16)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| SqlError::Unavailable(e.to_string()))
}

/// Which advisory lock keeps instances that start together from migrating
/// a component at the same time.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MigrationLock {
    /// `hashtext(component)`.
    NamedAfterComponent,
    /// A fixed key (the log's, which releases before this runner used).
    Key(i64),
}

/// Applies `component`'s migrations that are not recorded yet, each in its
/// own transaction under the advisory lock `lock` (instances starting
/// together migrate one at a time), with its row in `schema_migrations`. The
/// one migration runner on PostgreSQL: the SQL side's [`PostgresDb`] and the
/// log's store both use it.
pub(crate) async fn apply_migrations(
    client: &mut deadpool_postgres::Object,
    component: &str,
    migrations: &[Migration],
    lock: MigrationLock,
) -> Result<(), SqlError> {
    for (version, sql) in migrations {
        let tx = client.transaction().await.map_err(db_error)?;
        match lock {
            MigrationLock::NamedAfterComponent => {
                tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&component]).await.map_err(db_error)?
            }
            MigrationLock::Key(key) => {
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).await.map_err(db_error)?
            }
        };
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                component TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (component, version))",
        )
        .await
        .map_err(db_error)?;
        let version32 = i32::try_from(*version)
            .map_err(|_| SqlError::Database(format!("migration version {version} too large")))?;
        let applied = tx
            .query_opt(
                "SELECT version FROM schema_migrations WHERE component = $1 AND version = $2",
                &[&component, &version32],
            )
            .await
            .map_err(db_error)?;
        if applied.is_none() {
            tx.batch_execute(sql).await.map_err(db_error)?;
            tx.execute("INSERT INTO schema_migrations (component, version) VALUES ($1, $2)", &[&component, &version32])
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
    }
    Ok(())
}

fn params_of(values: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn read_row(row: &tokio_postgres::Row, columns: &Columns) -> Result<SqlRow, SqlError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let problem = |e: tokio_postgres::Error| SqlError::Column { column: i, problem: e.to_string() };
        let value = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(problem)?.map(SqlValue::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i).map_err(problem)?.map(|v| SqlValue::Int(v.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i).map_err(problem)?.map(|v| SqlValue::Int(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i).map_err(problem)?.map(|v| SqlValue::Int(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(problem)?.map(SqlValue::Real),
            Type::FLOAT4 => row.try_get::<_, Option<f32>>(i).map_err(problem)?.map(|v| SqlValue::Real(v.into())),
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(problem)?.map(SqlValue::Blob),
            Type::UUID => {
                row.try_get::<_, Option<uuid::Uuid>>(i).map_err(problem)?.map(|v| SqlValue::Text(v.to_string()))
            }
            _ => row.try_get::<_, Option<String>>(i).map_err(problem)?.map(SqlValue::Text),
        };
        values.push(value.unwrap_or(SqlValue::Null));
    }
    Ok(SqlRow(values, columns.clone()))
}

/// Every row of one statement's result, sharing its column names.
fn read_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<SqlRow>, SqlError> {
    let columns = rows.first().map(|r| Columns::new(r.columns().iter().map(|c| c.name()))).unwrap_or_default();
    rows.iter().map(|row| read_row(row, &columns)).collect()
}

/// The advisory lock whose session holds the background lease ("hookbgnd";
/// the store's append locks are other keys).
pub const BACKGROUND_LEASE_LOCK: i64 = 0x686f_6f6b_6267_6e64;

/// Holding the lease is holding this connection: a server that no longer
/// hears from it ends the session, and the lock with it.
pub async fn check_lease(client: &deadpool_postgres::ClientWrapper) -> Result<(), SqlError> {
    client.simple_query("SELECT 1").await.map(|_| ()).map_err(db_error)
}

impl PostgresDb {
    /// Takes the background lease's advisory lock on a connection taken out of
    /// the pool for as long as the lease is held; `None` if another session
    /// holds it. Keepalives make the server notice a holder whose host vanished
    /// within about half a minute instead of the system default of hours.
    pub async fn try_take_advisory_lease(&self) -> Result<Option<deadpool_postgres::ClientWrapper>, SqlError> {
        let client = self.client().await?;
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&BACKGROUND_LEASE_LOCK])
            .await
            .map_err(db_error)?
            .get(0);
        if !taken {
            return Ok(None);
        }
        let client = deadpool_postgres::Object::take(client);
        // The session's name tells a standby who holds the lease.
        let name = format!("hookwise background lease holder, {}", super::lease_holder_description());
        client
            .batch_execute(&format!(
                "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3; \
                 SET application_name = '{}'",
                name.replace('\'', "")
            ))
            .await
            .map_err(db_error)?;
        Ok(Some(client))
    }

    /// The holder's session, as the server shows it: its name and address.
    /// Advisory locks are cluster-wide: only this database's counts.
    pub async fn advisory_lease_holder(&self) -> Option<String> {
        let client = self.client().await.ok()?;
        let row = client
            .query_opt(
                "SELECT a.application_name, COALESCE(host(a.client_addr), 'local socket')
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.classid::bigint = $1 AND l.objid::bigint = $2",
                &[&(BACKGROUND_LEASE_LOCK >> 32), &(BACKGROUND_LEASE_LOCK & 0xffff_ffff)],
            )
            .await
            .map_err(|e| tracing::debug!(error = %e, "could not read who holds the background lease"))
            .ok()??;
        let name: Option<String> = row.get(0);
        let address: String = row.get(1);
        Some(format!(
            "{} (session from {address})",
            name.filter(|n| !n.is_empty()).unwrap_or_else(|| "a session".into())
        ))
    }

    pub fn connect(url: &str) -> Result<Self, SqlError> {
        let pool = connect_pool(url)?;
        let config = tokio_postgres::Config::from_str(url).map_err(|e| SqlError::InvalidUrl(e.to_string()))?;
        Ok(PostgresDb { pool, config: Box::new(config) })
    }

    /// Calls `on_notify` for every `NOTIFY` on `channel` from any session, on
    /// a connection of its own, reconnecting after a lost one (and calling it
    /// once on each connect, for what was sent meanwhile). Runs until aborted.
    pub async fn listen(&self, channel: &'static str, on_notify: impl Fn() + Send + Sync + 'static) {
        use futures_util::future::poll_fn;
        let on_notify = std::sync::Arc::new(on_notify);
        loop {
            match self.config.connect(NoTls).await {
                Ok((client, mut connection)) => {
                    let notified = on_notify.clone();
                    let driver = tokio::spawn(async move {
                        while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                            match message {
                                Ok(tokio_postgres::AsyncMessage::Notification(_)) => notified(),
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                    });
                    if client.batch_execute(&format!("LISTEN {channel}")).await.is_ok() {
                        on_notify();
                        let _ = driver.await;
                    } else {
                        driver.abort();
                    }
                }
                Err(e) => tracing::debug!(error = %e, channel, "LISTEN connection failed; polling meanwhile"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, SqlError> {
        self.pool.get().await.map_err(|e| SqlError::Unavailable(e.to_string()))
    }

    pub async fn migrate(&self, component: &'static str, migrations: &'static [Migration]) -> Result<(), SqlError> {
        let mut client = self.client().await?;
        apply_migrations(&mut client, component, migrations, MigrationLock::NamedAfterComponent).await
    }

    pub async fn write(&self, statements: Vec<Statement>) -> Result<Vec<u64>, SqlError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let mut prepared = Vec::with_capacity(statements.len());
        for statement in &statements {
            prepared.push(tx.prepare_cached(&numbered_placeholders(&statement.sql)).await.map_err(db_error)?);
        }
        // Pipelined: every statement is sent without waiting for the previous
        // answer (the server still runs them in order), so a batch costs one
        // round trip instead of one per statement.
        let params: Vec<_> = statements.iter().map(|s| params_of(&s.params)).collect();
        let executions = prepared.iter().zip(&params).map(|(statement, params)| tx.execute(statement, params));
        let changed = futures_util::future::try_join_all(executions).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(changed)
    }

    pub async fn write_returning(&self, mut statements: Vec<Statement>) -> Result<Vec<SqlRow>, SqlError> {
        let Some(last) = statements.pop() else {
            return Ok(Vec::new());
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        for statement in &statements {
            let prepared = tx.prepare_cached(&numbered_placeholders(&statement.sql)).await.map_err(db_error)?;
            tx.execute(&prepared, &params_of(&statement.params)).await.map_err(db_error)?;
        }
        let prepared = tx.prepare_cached(&numbered_placeholders(&last.sql)).await.map_err(db_error)?;
        let rows = tx.query(&prepared, &params_of(&last.params)).await.map_err(db_error)?;
        let rows = read_rows(&rows)?;
        tx.commit().await.map_err(db_error)?;
        Ok(rows)
    }

    pub async fn query(&self, sql: &str, params: Vec<SqlValue>) -> Result<Vec<SqlRow>, SqlError> {
        let client = self.client().await?;
        let prepared = client.prepare_cached(&numbered_placeholders(sql)).await.map_err(db_error)?;
        let rows = client.query(&prepared, &params_of(&params)).await.map_err(db_error)?;
        read_rows(&rows)
    }
}
