use std::sync::atomic::Ordering;

use poem::web::Data;
use poem_openapi::{Object, OpenApi, Tags};

use super::{ok, Answer, ApiAuth};
use crate::api::AppState;

#[derive(Tags)]
enum Tag {
    /// This instance, the log's head and who runs the background work.
    Status,
}

/// What the answering instance knows about itself and the log.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct InstanceStatus {
    /// hookwise's version.
    pub version: String,
    /// The log's last position.
    pub head: u64,
    /// Whether this instance holds the background lease (runs the process manager, read models and forwarders).
    pub holds_background_lease: bool,
    /// Who holds the background lease, as the database names it: on PostgreSQL the lock's session, on SQLite
    /// what the last holder wrote beside the database. Absent when unknown.
    pub background_lease_holder: Option<String>,
    /// GitHub's web address (`GITHUB_WEB_URL`, else derived from `GITHUB_API_URL`), e.g. `https://github.com`.
    pub github_web_url: String,
}

pub struct StatusApi;

#[OpenApi(tag = "Tag::Status")]
impl StatusApi {
    /// The log's head, and whether this instance or which other holds the background lease.
    #[oai(path = "/status", method = "get", operation_id = "get_status")]
    async fn status(&self, state: Data<&AppState>, _auth: ApiAuth) -> Answer<InstanceStatus> {
        let head = state.store.head().await?;
        ok(InstanceStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            head: head.0,
            holds_background_lease: state.leading.load(Ordering::Relaxed),
            background_lease_holder: state.db.background_lease_holder().await,
            github_web_url: state.github_web_url.clone(),
        })
    }
}
