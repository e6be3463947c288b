use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::{Object, OpenApi, Tags};

use super::{iso, limit_of, ok, Answer, ApiAuth};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::projections::installations::{self, InstallationFilter, InstallationRow};

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

/// A repository's `.github/hookwise.yml` as last read from its default branch.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct RepositorySettingsStatus {
    pub repository_id: u64,
    pub full_name: String,
    /// The file's blob sha (absent: there is no file).
    pub blob_sha: Option<String>,
    /// `in_force`, `invalid` (the operator's defaults apply; see `problem`) or `absent`.
    pub status: String,
    /// What is wrong with the file.
    pub problem: Option<String>,
    pub read_at: String,
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
    /// Each repository's settings file, as last read (repositories not yet seen are not listed).
    pub repository_settings: Vec<RepositorySettingsStatus>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InstallationPage {
    pub items: Vec<Installation>,
    pub next_cursor: Option<u64>,
}

impl From<InstallationRow> for Installation {
    fn from(row: InstallationRow) -> Self {
        Installation {
            id: row.installation_id,
            position: row.position,
            account: row.account,
            account_type: row.account_type,
            status: row.status,
            repository_selection: row.repository_selection,
            repositories: row
                .repositories
                .into_iter()
                .map(|r| InstallationRepository { id: r.repository_id, full_name: r.full_name })
                .collect(),
            repository_settings: row
                .repository_settings
                .into_iter()
                .map(|r| RepositorySettingsStatus {
                    repository_id: r.repository_id,
                    full_name: r.full_name,
                    blob_sha: r.blob_sha,
                    status: r.status,
                    problem: r.problem,
                    read_at: iso(r.read_at),
                })
                .collect(),
            created_at: iso(row.created_at),
            updated_at: iso(row.updated_at),
        }
    }
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
    ) -> Answer<InstallationPage> {
        let filter = InstallationFilter { after: after.0.unwrap_or(0), status: status.0, account: account.0 };
        let page = installations::list(&state.db, filter, limit_of(limit.0)).await?;
        ok(InstallationPage {
            items: page.items.into_iter().map(Installation::from).collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// One installation.
    #[oai(path = "/installations/:id", method = "get", operation_id = "get_installation")]
    async fn get(&self, state: Data<&AppState>, _auth: ApiAuth, id: Path<u64>) -> Answer<Installation> {
        match installations::get(&state.db, id.0).await? {
            Some(row) => ok(row.into()),
            None => Err(ApiError::not_found(format!("no installation {}", id.0))),
        }
    }
}
