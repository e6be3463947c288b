//! A fresh, empty database per test: a SQLite file in its own temporary
//! directory, or a PostgreSQL database created on the server that
//! `HOOKWISE_TEST_POSTGRES_URL` names (`scripts/test` starts a throwaway one),
//! or — with the cargo feature `kurrentdb` and `EVENTSTORE_URL` set — a stream
//! scope of its own on that KurrentDB server.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hookwise::store::{self, EventStore};
use tempfile::TempDir;
use tokio_postgres::NoTls;
use uuid::Uuid;

/// Admin URL of the PostgreSQL server the tests create their databases on,
/// e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
pub const POSTGRES_URL_VAR: &str = "HOOKWISE_TEST_POSTGRES_URL";

const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// The server `EVENTSTORE_URL` names (event store tests only).
    KurrentDb,
}

impl Backend {
    /// Whether the store refuses an event id already stored in another stream
    /// (KurrentDB has no index of event ids across streams).
    pub fn checks_event_ids_across_streams(self) -> bool {
        self != Backend::KurrentDb
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::KurrentDb => "kurrentdb",
        })
    }
}

/// A database no other test uses. The SQLite directory is removed and the
/// PostgreSQL database dropped when this is dropped (a failed test keeps its
/// PostgreSQL database and prints its URL).
pub struct TestDatabase {
    /// What `hookwise::store::open` and the service's `--database-url` take.
    pub url: String,
    pub backend: Backend,
    _dir: Option<TempDir>,
    postgres: Option<PostgresDatabase>,
    /// KurrentDB: the stream-name prefix that isolates this test's log.
    kurrent_scope: Option<String>,
}

struct PostgresDatabase {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// A fresh database, or `None` when PostgreSQL is asked for but
    /// `HOOKWISE_TEST_POSTGRES_URL` is not set (outside CI: the test is skipped).
    pub async fn create(backend: Backend) -> Option<TestDatabase> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres().await,
            Backend::KurrentDb => Self::kurrentdb(),
        }
    }

    /// Another handle on this database, for a second instance beside the
    /// first; dropping it removes nothing (this one still does).
    pub fn share(&self) -> TestDatabase {
        TestDatabase {
            url: self.url.clone(),
            backend: self.backend,
            _dir: None,
            postgres: None,
            kurrent_scope: self.kurrent_scope.clone(),
        }
    }

    fn sqlite() -> TestDatabase {
        let dir = tempfile::Builder::new()
            .prefix("hookwise-test-")
            .tempdir()
            .expect("creating a temporary directory for the SQLite database");
        let url = format!("sqlite://{}", dir.path().join("hookwise.db").display());
        TestDatabase { url, backend: Backend::Sqlite, _dir: Some(dir), postgres: None, kurrent_scope: None }
    }

    /// The KurrentDB server of `EVENTSTORE_URL`, with a fresh stream scope.
    /// Skipped (never failed, not even in CI) when there is no server: none can
    /// be installed from the package registries this project builds with.
    fn kurrentdb() -> Option<TestDatabase> {
        if !cfg!(feature = "kurrentdb") {
            eprintln!("skipped: built without the kurrentdb feature (cargo test --features kurrentdb)");
            return None;
        }
        let url = match std::env::var(super::kurrent::EVENTSTORE_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                eprintln!(
                    "skipped: EVENTSTORE_URL not set (e.g. EVENTSTORE_URL='esdb://localhost:2113?tls=false'; \
                     see docs/backends.md)"
                );
                return None;
            }
        };
        Some(TestDatabase {
            url,
            backend: Backend::KurrentDb,
            _dir: None,
            postgres: None,
            kurrent_scope: Some(format!("hookwise-test-{}.", Uuid::new_v4().simple())),
        })
    }

    async fn postgres() -> Option<TestDatabase> {
        let admin_url = match std::env::var(POSTGRES_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                    panic!(
                        "{POSTGRES_URL_VAR} is not set, and CI=true forbids skipping the \
                         PostgreSQL tests: run them through scripts/test"
                    );
                }
                eprintln!("skipped: {POSTGRES_URL_VAR} not set (run scripts/test)");
                return None;
            }
        };
        let name = format!("hookwise_test_{}", Uuid::new_v4().simple());
        let url = database_url(&admin_url, &name);
        let create = async {
            let client = admin_connect(&admin_url).await?;
            client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await
        };
        match tokio::time::timeout(ADMIN_TIMEOUT, create).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("creating database {name} via {POSTGRES_URL_VAR}={admin_url}: {e}"),
            Err(_) => panic!(
                "creating database {name} via {POSTGRES_URL_VAR}={admin_url}: \
                 no answer within {ADMIN_TIMEOUT:?}"
            ),
        }
        Some(TestDatabase {
            url,
            backend: Backend::Postgres,
            _dir: None,
            postgres: Some(PostgresDatabase { admin_url, name }),
            kurrent_scope: None,
        })
    }

    /// The stream-name prefix of a KurrentDB test's log.
    #[cfg(feature = "kurrentdb")]
    pub fn kurrent_scope(&self) -> Option<&str> {
        self.kurrent_scope.as_deref()
    }

    /// PostgreSQL only: refuses (and cuts) every connection to this database,
    /// or allows them again, as if the database server went away and came back.
    pub async fn set_reachable(&self, reachable: bool) {
        let db = self.postgres.as_ref().expect("only a PostgreSQL database can be made unreachable");
        let client = admin_connect(&db.admin_url).await.expect("admin connection");
        client
            .batch_execute(&format!("ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {reachable}", db.name))
            .await
            .expect("changing ALLOW_CONNECTIONS");
        if !reachable {
            client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&db.name],
                )
                .await
                .expect("terminating connections");
        }
    }

    /// Runs `sql` on the log's own database (SQLite: its file; PostgreSQL:
    /// this database), as an operator at a `psql`/`sqlite3` prompt would.
    pub async fn execute_on_log(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => {
                let path = self.url.strip_prefix("sqlite://").expect("a sqlite:// URL").to_owned();
                let sql = sql.to_owned();
                tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(&path).expect("opening the log's file");
                    conn.execute_batch(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
                })
                .await
                .expect("join");
            }
            Backend::Postgres => {
                let client = admin_connect(&self.url).await.expect("connecting to the test database");
                client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            Backend::KurrentDb => panic!("KurrentDB has no SQL"),
        }
    }

    /// PostgreSQL only: makes every new session of this database read-only
    /// (or writable again) and ends the current ones, as a server failing
    /// over to a standby, or an operator's `default_transaction_read_only`, would.
    pub async fn set_read_only(&self, read_only: bool) {
        let db = self.postgres.as_ref().expect("only a PostgreSQL database can be made read-only");
        let client = admin_connect(&db.admin_url).await.expect("admin connection");
        client
            .batch_execute(&format!("ALTER DATABASE \"{}\" SET default_transaction_read_only = {read_only}", db.name))
            .await
            .expect("changing default_transaction_read_only");
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&db.name],
            )
            .await
            .expect("ending the sessions");
    }

    /// Opens (and migrates) the event store on this database.
    pub async fn open_store(&self) -> Arc<dyn EventStore> {
        if let Some(scope) = &self.kurrent_scope {
            return super::kurrent::open_dense(&self.url, scope).await;
        }
        store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("opening the {} store at {}: {e}", self.backend, self.url))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(db) = self.postgres.take() else {
            return;
        };
        if std::thread::panicking() {
            eprintln!("kept the failed test's database: {}", self.url);
            return;
        }
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // drop the database from a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let drop_database = async {
                    let client = admin_connect(&db.admin_url).await?;
                    // FORCE: stores still open in the test lose their connections.
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", db.name)).await
                };
                match tokio::time::timeout(ADMIN_TIMEOUT, drop_database).await {
                    Ok(result) => result.map_err(|e| format!("dropping {}: {e}", db.name)),
                    Err(_) => Err(format!("dropping {}: timed out", db.name)),
                }
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: {e}"),
            Err(_) => eprintln!("warning: dropping the test database panicked"),
        }
    }
}

async fn admin_connect(admin_url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(admin_url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `admin_url` with its database name replaced by `name` (query kept).
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let Some((scheme, rest)) = base.split_once("://") else {
        panic!("{POSTGRES_URL_VAR} must be a postgres://USER@HOST:PORT/DB URL, got {admin_url}");
    };
    let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_only_the_database_name() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            database_url("postgresql://u:p@h:1/db?sslmode=disable", "t2"),
            "postgresql://u:p@h:1/t2?sslmode=disable"
        );
        assert_eq!(database_url("postgres://u@h", "t3"), "postgres://u@h/t3");
    }
}
