use poem::web::Data;
use poem_openapi::{Object, OpenApi, Tags};

use super::{ok, Answer, ApiAuth};
use crate::api::AppState;
use crate::forward::SinkView;

#[derive(Tags)]
enum Tag {
    /// Where the log is forwarded (`HOOKWISE_FORWARD`).
    Sinks,
}

/// Every configured sink, beside the log's head.
#[derive(Debug, Clone, Object)]
pub struct SinkList {
    /// The log's last position.
    pub head: u64,
    pub sinks: Vec<SinkView>,
}

pub struct SinksApi;

#[OpenApi(tag = "Tag::Sinks")]
impl SinksApi {
    /// Each forwarding sink's state, position, lag behind the log and last error.
    #[oai(path = "/sinks", method = "get", operation_id = "list_sinks")]
    async fn list(&self, state: Data<&AppState>, _auth: ApiAuth) -> Answer<SinkList> {
        let head = state.store.head().await?;
        ok(SinkList { head: head.0, sinks: state.sinks.iter().map(|s| s.view(head)).collect() })
    }
}
