//! The agent runtime's settings, as `hookwise serve` validated them from
//! `AGENT_*` (see `config::ProcessArgs`).

use crate::secret::Secret;

/// Which OpenHands `AGENT_API_URL` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentRuntimeKind {
    /// The V1 App Server (OpenHands Cloud or a self-hosted app).
    #[value(name = "openhands")]
    Openhands,
    /// The agent server directly.
    #[value(name = "openhands-agent-server")]
    OpenhandsAgentServer,
    /// The V0 app API of OpenHands 1.6 and older (legacy).
    #[value(name = "openhands-v0")]
    OpenhandsV0,
}

impl AgentRuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentRuntimeKind::Openhands => "openhands",
            AgentRuntimeKind::OpenhandsAgentServer => "openhands-agent-server",
            AgentRuntimeKind::OpenhandsV0 => "openhands-v0",
        }
    }
}

/// The LLM the agent server's agent uses.
#[derive(Clone)]
pub struct LlmSettings {
    pub model: String,
    pub api_key: Option<Secret>,
    pub base_url: Option<String>,
}

impl std::fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmSettings")
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The agent runtime: which one, where, and how to follow its runs.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub runtime: AgentRuntimeKind,
    /// Without a trailing `/`.
    pub api_url: String,
    pub api_key: Option<Secret>,
    /// `{conversation_id}` is replaced.
    pub conversation_url: String,
    pub poll_interval: std::time::Duration,
    pub run_timeout: std::time::Duration,
    /// One call to the runtime, every phase included.
    pub request_timeout: std::time::Duration,
    /// `openhands-agent-server` only; `None` when `AGENT_LLM_MODEL` is unset.
    pub llm: Option<LlmSettings>,
    pub workspace_root: String,
    pub max_iterations: u32,
    /// Without a trailing `/`, e.g. `https://github.com`.
    pub github_web_url: String,
}

/// GitHub's web root for an API root: `https://api.github.com` → `https://github.com`;
/// an Enterprise Server's `https://HOST/api/v3` → `https://HOST`.
pub fn github_web_url(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    if let Some(rest) = api.strip_prefix("https://api.") {
        return format!("https://{rest}");
    }
    api.strip_suffix("/api/v3").unwrap_or(api).to_owned()
}
