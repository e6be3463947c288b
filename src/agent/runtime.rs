//! The agent-runtime port: what the executor asks of an agent runtime,
//! whichever OpenHands a team runs. Adapters live beside it
//! ([`super::app_server`], [`super::agent_server`], [`super::openhands_v0`]);
//! [`super::build`] picks one from `AGENT_RUNTIME`.
//!
//! The executor records its intent (`ConversationRequested`) before
//! [`AgentRuntime::start`], so exactly-once never depends on a runtime
//! deduplicating: after an unknown outcome the executor calls `start` again
//! with `retrying: true`, and the adapter looks the conversation up before it
//! posts anything.

use async_trait::async_trait;
use uuid::Uuid;

pub use crate::secret::Secret;

/// The conversation a trigger asks for.
#[derive(Debug, Clone)]
pub struct ConversationRequest {
    /// Chosen by hookwise and derived from the trigger, so every attempt asks
    /// for the same conversation. Runtimes that take a caller's id use it
    /// (V1); the V0 API picks its own and ignores it.
    pub conversation_id: Uuid,
    /// `owner/name`.
    pub repository: String,
    /// The branch to work on: the pull request's head for PR triggers.
    pub branch: Option<String>,
    /// The pull request, for PR triggers.
    pub pr_number: Option<u64>,
    /// A short title for the runtime's list of conversations.
    pub title: String,
    /// The request as the user wrote it.
    pub message: String,
    /// What the agent is told about the request: the issue or pull request,
    /// its latest comments, the inline comment's file and line.
    pub instructions: String,
    /// An installation token for the repository: the agent server clones with
    /// it and hands it to the agent as `GITHUB_TOKEN` (the App Server and V0
    /// hold their own GitHub credentials and ignore it).
    pub github_token: Option<Secret>,
}

impl ConversationRequest {
    /// The first message of the conversation: the request, then its context.
    pub fn initial_message(&self) -> String {
        format!("{}\n\n{}", self.message, self.instructions)
    }
}

/// What `start` achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The runtime has the conversation (new, or found from an earlier
    /// attempt). `conversation_id` is the runtime's id for it: the requested
    /// one for V1, the server's own for V0.
    Started { conversation_id: String },
    /// The runtime answered and said no (e.g. no LLM configured). Final.
    Refused { reason: String },
}

/// Where a conversation stands, as the runtime tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    /// Not running yet: the start task or the sandbox is still on its way.
    Starting,
    /// The agent is working (or idle between turns, or waiting).
    Running,
    /// The run ended; `result` is the `finish` action's message, else the
    /// agent's last message, when the runtime has one.
    Finished { result: Option<String> },
    /// The run ended without a result. `state` is a short stable name
    /// (`error`, `stuck`, `start_failed`, `sandbox_error`, `sandbox_missing`,
    /// …) and `detail` the runtime's words, when it gave some.
    Failed { state: String, detail: Option<String> },
    /// The runtime does not know this conversation.
    Unknown,
}

impl RunStatus {
    pub fn is_terminal(&self) -> bool {
        matches!(self, RunStatus::Finished { .. } | RunStatus::Failed { .. })
    }
}

/// What `stop` achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// The runtime paused or stopped the run.
    Stopped,
    /// The runtime has no way to stop it (or no longer knows it): `reason` says which.
    CannotStop { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No answer or an unreadable one: the runtime may or may not have acted.
    #[error("the agent runtime did not answer: {0}")]
    Transport(String),
    #[error("the agent runtime answered {status}: {message}")]
    Status { status: u16, message: String },
    /// The runtime's answer did not have the expected shape.
    #[error("the agent runtime's answer was not understood: {0}")]
    Protocol(String),
}

impl AgentError {
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Transport(_) | AgentError::Protocol(_) => true,
            AgentError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        }
    }
}

/// One line of `hookwise check-agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckLine {
    /// What was checked, e.g. `AGENT_API_URL reachable`.
    pub check: String,
    pub ok: bool,
    /// What was found; on failure, which setting to fix. Never a secret.
    pub detail: String,
}

/// What the executor needs of an agent runtime.
#[async_trait]
pub trait AgentRuntime: Send + Sync {
    /// The `AGENT_RUNTIME` value that selects this adapter.
    fn name(&self) -> &'static str;

    /// Starts the conversation, or finds the one an earlier attempt started.
    /// With `retrying`, an earlier attempt's outcome is unknown: the adapter
    /// must look the conversation up (by id, and the App Server's start tasks
    /// by their requested id) before it posts again.
    async fn start(&self, request: &ConversationRequest, retrying: bool) -> Result<StartOutcome, AgentError>;

    /// Where the conversation stands now. Called by the executor until the
    /// run ends (at `AGENT_POLL_INTERVAL`), also for runtimes that push their
    /// results, so that a lost callback cannot strand a trigger.
    async fn status(&self, conversation_id: &str) -> Result<RunStatus, AgentError>;

    /// The link people open to watch the conversation.
    fn conversation_url(&self, conversation_id: &str) -> String;

    /// Stops a running conversation at someone's request (`{handle} stop`):
    /// the agent server pauses it, the App Server pauses its sandbox, V0
    /// stops its agent loop. Asking twice is harmless.
    async fn stop(&self, conversation_id: &str) -> Result<StopOutcome, AgentError> {
        let _ = conversation_id;
        Ok(StopOutcome::CannotStop { reason: format!("the {} runtime offers no way to stop a run", self.name()) })
    }

    /// Whether the runtime gives the conversation the requested id (V1), so
    /// that hookwise knows it before the start answers.
    fn takes_conversation_id(&self) -> bool {
        true
    }

    /// Whether [`ConversationRequest::github_token`] is needed (the runtime
    /// clones and pushes with hookwise's installation token).
    fn needs_github_token(&self) -> bool {
        false
    }

    /// Calls the runtime once with the configured credentials, starting
    /// nothing, and says what works (`hookwise check-agent`).
    async fn check(&self) -> Vec<CheckLine>;
}
