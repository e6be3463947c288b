//! Placeholder until the adapter lands (being built in parallel).

use async_trait::async_trait;

use super::runtime::{AgentError, AgentRuntime, CheckLine, ConversationRequest, RunStatus, StartOutcome};
use crate::config::AgentSettings;

pub struct AgentServer {
    settings: AgentSettings,
}

impl AgentServer {
    pub fn new(settings: AgentSettings) -> Self {
        AgentServer { settings }
    }
}

#[async_trait]
impl AgentRuntime for AgentServer {
    fn name(&self) -> &'static str {
        self.settings.runtime.as_str()
    }

    async fn start(&self, _request: &ConversationRequest, _retrying: bool) -> Result<StartOutcome, AgentError> {
        Err(AgentError::Protocol("not built yet".into()))
    }

    async fn status(&self, _conversation_id: &str) -> Result<RunStatus, AgentError> {
        Err(AgentError::Protocol("not built yet".into()))
    }

    fn conversation_url(&self, conversation_id: &str) -> String {
        self.settings.conversation_url.replace("{conversation_id}", conversation_id)
    }

    async fn check(&self) -> Vec<CheckLine> {
        Vec::new()
    }
}
