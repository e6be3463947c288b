//! What can go wrong on the SQL side, with the engine's own error and code kept.

use std::fmt;

use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The engine turned a statement or a transaction down: its own error,
    /// and its code when it gave one (see [`SqlError::code`]).
    #[error("database error{}: {source}", code_suffix(.code.as_ref()))]
    Engine {
        code: Option<ErrorCode>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// What the database holds or answered cannot be used (a row that does
    /// not parse, a row that vanished).
    #[error("database error: {0}")]
    Database(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    #[error("column {column}: {problem}")]
    Column { column: usize, problem: String },
}

/// An engine's code for an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// PostgreSQL's SQLSTATE, e.g. `23505`.
    Postgres(SqlState),
    /// SQLite's extended result code, e.g. 2067 (`SQLITE_CONSTRAINT_UNIQUE`).
    Sqlite(i32),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Postgres(state) => write!(f, "SQLSTATE {}", state.code()),
            ErrorCode::Sqlite(code) => write!(f, "SQLite code {code}"),
        }
    }
}

fn code_suffix(code: Option<&ErrorCode>) -> String {
    code.map(|code| format!(" ({code})")).unwrap_or_default()
}

impl SqlError {
    /// The engine's code for this error, if it came from the engine with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            SqlError::Engine { code, .. } => code.as_ref(),
            _ => None,
        }
    }

    /// A `UNIQUE` or primary key constraint was violated.
    pub fn is_unique_violation(&self) -> bool {
        match self.code() {
            Some(ErrorCode::Postgres(state)) => *state == SqlState::UNIQUE_VIOLATION,
            Some(ErrorCode::Sqlite(code)) => {
                *code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE || *code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            None => false,
        }
    }

    /// A `CHECK` constraint was violated.
    pub fn is_check_violation(&self) -> bool {
        match self.code() {
            Some(ErrorCode::Postgres(state)) => *state == SqlState::CHECK_VIOLATION,
            Some(ErrorCode::Sqlite(code)) => *code == rusqlite::ffi::SQLITE_CONSTRAINT_CHECK,
            None => false,
        }
    }

    /// The transaction lost to a concurrent one and may simply be tried
    /// again (PostgreSQL: a serialization failure or a deadlock; SQLite: the
    /// database was busy or locked).
    pub fn is_serialization_failure(&self) -> bool {
        match self.code() {
            Some(ErrorCode::Postgres(state)) => {
                *state == SqlState::T_R_SERIALIZATION_FAILURE || *state == SqlState::T_R_DEADLOCK_DETECTED
            }
            Some(ErrorCode::Sqlite(code)) => {
                let primary = code & 0xff;
                primary == rusqlite::ffi::SQLITE_BUSY || primary == rusqlite::ffi::SQLITE_LOCKED
            }
            None => false,
        }
    }
}

/// A rusqlite error as an [`SqlError`], with SQLite's extended result code
/// when SQLite gave one.
pub(crate) fn from_sqlite(e: rusqlite::Error) -> SqlError {
    let code = e.sqlite_error().map(|failure| ErrorCode::Sqlite(failure.extended_code));
    SqlError::Engine { code, source: Box::new(e) }
}

/// A tokio-postgres error as an [`SqlError`]: one the server answered keeps
/// its SQLSTATE; any other (a lost connection, a timeout) is the database
/// being unavailable.
pub(crate) fn from_postgres(e: tokio_postgres::Error) -> SqlError {
    match e.code() {
        Some(state) => SqlError::Engine { code: Some(ErrorCode::Postgres(state.clone())), source: Box::new(e) },
        None => SqlError::Unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_errors_keep_their_extended_code() {
        let conn = rusqlite::Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch("CREATE TABLE t (a BIGINT PRIMARY KEY, b BIGINT UNIQUE, c BIGINT CHECK (c = 1))")
            .expect("table");
        conn.execute("INSERT INTO t VALUES (1, 1, 1)", []).expect("first row");
        let unique = from_sqlite(conn.execute("INSERT INTO t VALUES (2, 1, 1)", []).expect_err("duplicate b"));
        assert!(unique.is_unique_violation(), "{unique}");
        assert!(!unique.is_check_violation());
        let key = from_sqlite(conn.execute("INSERT INTO t VALUES (1, 2, 1)", []).expect_err("duplicate a"));
        assert!(key.is_unique_violation(), "{key}");
        let check = from_sqlite(conn.execute("INSERT INTO t VALUES (3, 3, 0)", []).expect_err("check"));
        assert!(check.is_check_violation(), "{check}");
        assert!(!check.is_unique_violation());
        assert!(!check.is_serialization_failure());
        assert_eq!(check.code(), Some(&ErrorCode::Sqlite(rusqlite::ffi::SQLITE_CONSTRAINT_CHECK)));
        assert!(std::error::Error::source(&check).is_some());
    }
}
