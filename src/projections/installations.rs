//! `installations`: the GitHub App's installations and their repositories,
//! from `installation` and `installation_repositories` deliveries.

use serde::Deserialize;

use super::read_model::{ReadModel, Tables};
use crate::events::{DomainEvent, WebhookReceived};
use crate::runner::HandlerError;
use crate::sql::Statement;
use crate::sql_params;
use crate::store::RecordedEvent;

pub struct Installations;

const TABLES: &[&str] = &["installations", "installation_repositories"];

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
        1
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
