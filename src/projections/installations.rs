//! `installations`: the GitHub App's installations and their repositories,
//! from `installation` and `installation_repositories` deliveries, and each
//! repository's `.github/hookwise.yml` as last read (`RepositorySettingsRead`).

use serde::Deserialize;

use super::query::{next_cursor, Filter, Page};
use super::read_model::{ReadModel, Tables};
use crate::events::{DomainEvent, RepositorySettingsRead, WebhookReceived};
use crate::runner::HandlerError;
use crate::sql::{SqlDb, SqlError, SqlRow, Statement};
use crate::sql_params;
use crate::store::RecordedEvent;

pub struct Installations;

const TABLES: &[&str] = &["installations", "installation_repositories", "repository_settings"];

const CREATE_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {p}installations (
    installation_id BIGINT PRIMARY KEY,
    position BIGINT NOT NULL UNIQUE,
    account TEXT,
    account_type TEXT,
    status TEXT NOT NULL,
    repository_selection TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_position BIGINT NOT NULL
)",
    "CREATE TABLE IF NOT EXISTS {p}installation_repositories (
    installation_id BIGINT NOT NULL,
    repository_id BIGINT NOT NULL,
    full_name TEXT NOT NULL,
    PRIMARY KEY (installation_id, repository_id)
)",
    "CREATE TABLE IF NOT EXISTS {p}repository_settings (
    repository_id BIGINT PRIMARY KEY,
    installation_id BIGINT NOT NULL,
    full_name TEXT NOT NULL,
    blob_sha TEXT,
    status TEXT NOT NULL,
    problem TEXT,
    read_at BIGINT NOT NULL
)",
];

const CREATE_INDEXES: &[&str] = &[];

#[derive(Deserialize)]
struct Payload {
    installation: Installation,
    #[serde(default)]
    repositories: Option<Vec<Repository>>,
    #[serde(default)]
    repositories_added: Vec<Repository>,
    #[serde(default)]
    repositories_removed: Vec<Repository>,
}

#[derive(Deserialize)]
struct Installation {
    id: u64,
    account: Option<Account>,
    repository_selection: Option<String>,
}

#[derive(Deserialize)]
struct Account {
    login: String,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    id: u64,
    full_name: String,
}

impl ReadModel for Installations {
    fn name(&self) -> &'static str {
        "installations"
    }

    fn schema_version(&self) -> i64 {
        // 2: repositories' settings files.
        2
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn create_tables(&self) -> &'static [&'static str] {
        CREATE_TABLES
    }

    fn create_indexes(&self) -> &'static [&'static str] {
        CREATE_INDEXES
    }

    fn apply(&self, t: &Tables, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError> {
        if event.event_type == RepositorySettingsRead::TYPE {
            let read = RepositorySettingsRead::decode(event).map_err(|e| HandlerError::decode(event, e))?;
            let status = match (&read.blob_sha, &read.problem) {
                (_, Some(_)) => "invalid",
                (None, None) => "absent",
                (Some(_), None) => "in_force",
            };
            return Ok(vec![Statement::new(
                t.sql(
                    "INSERT INTO {p}repository_settings (repository_id, installation_id, full_name, blob_sha, status,
                        problem, read_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (repository_id) DO UPDATE SET installation_id = excluded.installation_id,
                        full_name = excluded.full_name, blob_sha = excluded.blob_sha, status = excluded.status,
                        problem = excluded.problem, read_at = excluded.read_at",
                ),
                sql_params![
                    read.repository_id,
                    read.installation_id,
                    read.repository.as_str(),
                    read.blob_sha.as_deref(),
                    status,
                    read.problem.as_deref(),
                    event.recorded_at_micros
                ],
            )]);
        }
        if event.event_type != WebhookReceived::TYPE {
            return Ok(vec![]);
        }
        let Ok(delivery) = WebhookReceived::decode(event) else {
            return Ok(vec![]);
        };
        if delivery.event != "installation" && delivery.event != "installation_repositories" {
            return Ok(vec![]);
        }
        let Some(payload) = event.payload.as_deref().and_then(|p| serde_json::from_slice::<Payload>(p).ok()) else {
            return Ok(vec![]);
        };
        let action = delivery.action.as_deref().unwrap_or("");
        let status = match (delivery.event.as_str(), action) {
            ("installation", "deleted") => Some("deleted"),
            ("installation", "suspend") => Some("suspended"),
            ("installation", "created" | "unsuspend") => Some("active"),
            _ => None,
        };
        let id = payload.installation.id;
        let account = payload.installation.account.as_ref();
        let mut statements = vec![Statement::new(
            t.sql(
                "INSERT INTO {p}installations (installation_id, position, account, account_type, status,
                    repository_selection, created_at, updated_at, last_position)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (installation_id) DO UPDATE SET
                    account = COALESCE(excluded.account, {p}installations.account),
                    account_type = COALESCE(excluded.account_type, {p}installations.account_type),
                    status = CASE WHEN ? THEN excluded.status ELSE {p}installations.status END,
                    repository_selection = COALESCE(excluded.repository_selection, {p}installations.repository_selection),
                    updated_at = excluded.updated_at,
                    last_position = excluded.last_position",
            ),
            sql_params![
                id,
                event.position.0,
                account.map(|a| a.login.as_str()),
                account.and_then(|a| a.kind.as_deref()),
                status.unwrap_or("active"),
                payload.installation.repository_selection.as_deref(),
                event.recorded_at_micros,
                event.recorded_at_micros,
                event.position.0,
                status.is_some()
            ],
        )];
        if status == Some("deleted") {
            statements.push(Statement::new(
                t.sql("DELETE FROM {p}installation_repositories WHERE installation_id = ?"),
                sql_params![id],
            ));
        }
        let added = payload.repositories.iter().flatten().chain(&payload.repositories_added);
        for repository in added.filter(|_| status != Some("deleted")) {
            statements.push(Statement::new(
                t.sql(
                    "INSERT INTO {p}installation_repositories (installation_id, repository_id, full_name)
                     VALUES (?, ?, ?) ON CONFLICT (installation_id, repository_id) DO UPDATE SET full_name = excluded.full_name",
                ),
                sql_params![id, repository.id, repository.full_name.as_str()],
            ));
        }
        for repository in &payload.repositories_removed {
            statements.push(Statement::new(
                t.sql("DELETE FROM {p}installation_repositories WHERE installation_id = ? AND repository_id = ?"),
                sql_params![id, repository.id],
            ));
        }
        Ok(statements)
    }
}

// Queries.

/// One row of `installations`, with its repositories from `installation_repositories`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallationRow {
    pub installation_id: u64,
    /// Log position of the first event about it.
    pub position: u64,
    pub account: Option<String>,
    pub account_type: Option<String>,
    /// `active`, `suspended` or `deleted`.
    pub status: String,
    pub repository_selection: Option<String>,
    /// By full name.
    pub repositories: Vec<InstallationRepositoryRow>,
    /// Each repository's `.github/hookwise.yml` as last read, by full name.
    pub repository_settings: Vec<RepositorySettingsRow>,
    /// Microseconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

/// One row of `installation_repositories`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallationRepositoryRow {
    pub repository_id: u64,
    pub full_name: String,
}

/// One row of `repository_settings`.
#[derive(Debug, Clone, PartialEq)]
pub struct RepositorySettingsRow {
    pub repository_id: u64,
    pub full_name: String,
    pub blob_sha: Option<String>,
    /// `in_force`, `invalid` (the operator's defaults apply) or `absent`.
    pub status: String,
    pub problem: Option<String>,
    pub read_at: i64,
}

const COLUMNS: &str =
    "installation_id, position, account, account_type, status, repository_selection, created_at, updated_at";

impl InstallationRow {
    fn from_row(row: &SqlRow) -> Result<Self, SqlError> {
        Ok(InstallationRow {
            installation_id: row.get_by_name("installation_id")?,
            position: row.get_by_name("position")?,
            account: row.get_by_name("account")?,
            account_type: row.get_by_name("account_type")?,
            status: row.get_by_name("status")?,
            repository_selection: row.get_by_name("repository_selection")?,
            repositories: Vec::new(),
            repository_settings: Vec::new(),
            created_at: row.get_by_name("created_at")?,
            updated_at: row.get_by_name("updated_at")?,
        })
    }
}

async fn with_repositories(db: &SqlDb, mut items: Vec<InstallationRow>) -> Result<Vec<InstallationRow>, SqlError> {
    for item in &mut items {
        let rows = db
            .query(
                "SELECT repository_id, full_name FROM installation_repositories WHERE installation_id = ?
                 ORDER BY full_name",
                sql_params![item.installation_id],
            )
            .await?;
        item.repositories = rows
            .iter()
            .map(|r| {
                Ok(InstallationRepositoryRow {
                    repository_id: r.get_by_name("repository_id")?,
                    full_name: r.get_by_name("full_name")?,
                })
            })
            .collect::<Result<_, SqlError>>()?;
        let rows = db
            .query(
                "SELECT repository_id, full_name, blob_sha, status, problem, read_at FROM repository_settings
                 WHERE installation_id = ? ORDER BY full_name",
                sql_params![item.installation_id],
            )
            .await?;
        item.repository_settings = rows
            .iter()
            .map(|r| {
                Ok(RepositorySettingsRow {
                    repository_id: r.get_by_name("repository_id")?,
                    full_name: r.get_by_name("full_name")?,
                    blob_sha: r.get_by_name("blob_sha")?,
                    status: r.get_by_name("status")?,
                    problem: r.get_by_name("problem")?,
                    read_at: r.get_by_name("read_at")?,
                })
            })
            .collect::<Result<_, SqlError>>()?;
    }
    Ok(items)
}

/// Which installations a [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct InstallationFilter {
    /// Only rows after this position (the cursor).
    pub after: u64,
    pub status: Option<String>,
    pub account: Option<String>,
}

/// A page of installations in log order.
pub async fn list(db: &SqlDb, f: InstallationFilter, limit: u32) -> Result<Page<InstallationRow>, SqlError> {
    let mut filter = Filter::default();
    filter.and("position > ?", f.after);
    filter.and_some("status = ?", f.status);
    filter.and_some("account = ?", f.account);
    let sql = format!("SELECT {COLUMNS} FROM installations{} ORDER BY position LIMIT {limit}", filter.sql());
    let rows = db.query(&sql, filter.params).await?;
    let items = rows.iter().map(InstallationRow::from_row).collect::<Result<Vec<_>, _>>()?;
    let items = with_repositories(db, items).await?;
    let next_cursor = next_cursor(items.iter().map(|item| item.position), items.len(), limit);
    Ok(Page { items, next_cursor })
}

/// Installation `id`.
pub async fn get(db: &SqlDb, id: u64) -> Result<Option<InstallationRow>, SqlError> {
    let rows =
        db.query(&format!("SELECT {COLUMNS} FROM installations WHERE installation_id = ?"), sql_params![id]).await?;
    let items = rows.iter().map(InstallationRow::from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(with_repositories(db, items).await?.into_iter().next())
}
