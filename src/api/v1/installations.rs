use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi, Tags};

use super::{iso, limit_of, next_cursor, ApiAuth, ApiResult, Filter};
use crate::api::AppState;
use crate::sql::{SqlDb, SqlError, SqlRow};
use crate::sql_params;

#[derive(Tags)]
enum Tag {
    /// The GitHub App's installations.
    Installations,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InstallationRepository {
    pub id: u64,
    pub full_name: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Installation {
    pub id: u64,
    /// Log position of the first event about it; the pagination cursor.
    pub position: u64,
    pub account: Option<String>,
    pub account_type: Option<String>,
    /// `active`, `suspended` or `deleted`.
    pub status: String,
    /// `all` or `selected`.
    pub repository_selection: Option<String>,
    pub repositories: Vec<InstallationRepository>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InstallationPage {
    pub items: Vec<Installation>,
    pub next_cursor: Option<u64>,
}

fn installation(row: &SqlRow) -> Result<Installation, SqlError> {
    Ok(Installation {
        id: row.get(0)?,
        position: row.get(1)?,
        account: row.get(2)?,
        account_type: row.get(3)?,
        status: row.get(4)?,
        repository_selection: row.get(5)?,
        repositories: Vec::new(),
        created_at: iso(row.get(6)?),
        updated_at: iso(row.get(7)?),
    })
}

const COLUMNS: &str =
    "installation_id, position, account, account_type, status, repository_selection, created_at, updated_at";

async fn with_repositories(db: &SqlDb, mut items: Vec<Installation>) -> Result<Vec<Installation>, SqlError> {
    for item in &mut items {
        let rows = db
            .query(
                "SELECT repository_id, full_name FROM installation_repositories WHERE installation_id = ?
                 ORDER BY full_name",
                sql_params![item.id],
            )
            .await?;
        item.repositories = rows
            .iter()
            .map(|r| Ok(InstallationRepository { id: r.get(0)?, full_name: r.get(1)? }))
            .collect::<Result<_, SqlError>>()?;
    }
    Ok(items)
}

pub struct InstallationsApi;

#[OpenApi(tag = "Tag::Installations")]
impl InstallationsApi {
    /// List installations.
    #[oai(path = "/installations", method = "get", operation_id = "list_installations")]
    async fn list(
        &self,
        state: Data<&AppState>,
        _auth: ApiAuth,
        /// Only rows after this cursor.
        after: Query<Option<u64>>,
        /// Page size (1–500, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `active`, `suspended` or `deleted`.
        status: Query<Option<String>>,
        account: Query<Option<String>>,
    ) -> ApiResult<InstallationPage> {
        let limit = limit_of(limit.0);
        let mut filter = Filter::default();
        filter.and("position > ?", after.0.unwrap_or(0));
        filter.and_some("status = ?", status.0);
        filter.and_some("account = ?", account.0);
        let sql = format!("SELECT {COLUMNS} FROM installations{} ORDER BY position LIMIT {limit}", filter.sql());
        let result = async {
            let rows = state.db.query(&sql, filter.params).await?;
            let items = rows.iter().map(installation).collect::<Result<Vec<_>, _>>()?;
            with_repositories(&state.db, items).await
        }
        .await;
        match result {
            Ok(items) => {
                let next_cursor = next_cursor(items.iter().map(|d| d.position), items.len(), limit);
                ApiResult::Ok(Json(InstallationPage { items, next_cursor }))
            }
            Err(e) => e.into(),
        }
    }

    /// One installation.
    #[oai(path = "/installations/:id", method = "get", operation_id = "get_installation")]
    async fn get(&self, state: Data<&AppState>, _auth: ApiAuth, id: Path<u64>) -> ApiResult<Installation> {
        let result = async {
            let rows = state
                .db
                .query(&format!("SELECT {COLUMNS} FROM installations WHERE installation_id = ?"), sql_params![id.0])
                .await?;
            let items = rows.iter().map(installation).collect::<Result<Vec<_>, _>>()?;
            with_repositories(&state.db, items).await
        }
        .await;
        match result.map(|items| items.into_iter().next()) {
            Ok(Some(item)) => ApiResult::Ok(Json(item)),
            Ok(None) => ApiResult::not_found(format!("no installation {}", id.0)),
            Err(e) => e.into(),
        }
    }
}
