//! `AGENT_RUNTIME=openhands-agent-server`: the OpenHands agent server
//! directly (`python -m openhands.agent_server`, checked against
//! openhands-agent-server 1.58.2).
//!
//! - Auth: `X-Session-API-Key: AGENT_API_KEY` on every `/api` call.
//! - Start: the working directory `{AGENT_WORKSPACE_ROOT}/{conversation_id}` is
//!   prepared through `POST /api/bash/execute_bash_command` (which waits for
//!   the command and answers its `BashOutput`): a clone of
//!   `{GITHUB_WEB_URL}/{owner}/{name}.git`, skipped when the directory already
//!   holds one. Then `POST /api/conversations` with the conversation id
//!   hookwise chose; the agent server is idempotent on it (201 new, 200 it
//!   exists, and the initial message is not sent again), so a retry after an
//!   unknown outcome simply posts again.
//! - The installation token never reaches the clone's config, a command line or
//!   the agent server's bash history: it is uploaded to a file
//!   (`POST /api/file/upload`) that a one-off `git -c credential.helper=…`
//!   reads and the same command removes. The agent gets it as the
//!   `GITHUB_TOKEN` secret.
//! - Results come back through the agent server's webhooks
//!   (`/agent-server/events/{id}`, see `api::agent_server_webhooks`);
//!   [`AgentRuntime::status`] asks `GET /api/conversations/{id}` so that a
//!   lost webhook cannot strand a trigger.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::runtime::{
    AgentError, AgentRuntime, CheckLine, ConversationRequest, RunStatus, Secret, StartOutcome, StopOutcome,
};
use super::settings::AgentSettings;
use super::transport;

/// The tools the agent gets: a shell, an editor and a task list.
pub const DEFAULT_TOOLS: &[&str] = &["terminal", "file_editor", "task_tracker"];

/// How long the clone may take on the agent server's host.
const CLONE_TIMEOUT_SECS: u64 = 600;

/// `POST /api/bash/execute_bash_command`'s answer (`BashOutput`).
#[derive(Debug, Deserialize)]
struct BashOutput {
    exit_code: Option<i64>,
    #[serde(default)]
    stdout: Option<String>,
    #[serde(default)]
    stderr: Option<String>,
}

/// The part of `ConversationInfo` hookwise reads.
#[derive(Debug, Deserialize)]
struct ConversationInfo {
    #[serde(default)]
    execution_status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AgentResponse {
    #[serde(default)]
    response: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EventPage {
    #[serde(default)]
    items: Vec<serde_json::Value>,
}

pub struct AgentServer {
    http: reqwest::Client,
    settings: AgentSettings,
}

/// Quotes `value` for a POSIX shell.
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Shortens a runtime's words for an error message, with `secret` cut out.
fn tail(text: &str, secret: Option<&Secret>) -> String {
    let mut text = text.trim().to_owned();
    if let Some(secret) = secret.filter(|s| !s.expose().is_empty()) {
        text = text.replace(secret.expose(), "<redacted>");
    }
    let chars: Vec<char> = text.chars().collect();
    let start = chars.len().saturating_sub(300);
    chars[start..].iter().collect()
}

/// A repository name as `owner/name`, each part a GitHub name.
fn valid_repository(repository: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(repository.split_once('/'), Some((owner, name)) if ok(owner) && ok(name))
}

impl AgentServer {
    pub fn new(settings: AgentSettings) -> Self {
        AgentServer { http: super::http_client(settings.request_timeout), settings }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.api_url)
    }

    fn authed(&self, call: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.settings.api_key {
            Some(key) => call.header("X-Session-API-Key", key.expose()),
            None => call,
        }
    }

    /// The working directory of a conversation on the agent server's host.
    pub fn working_dir(&self, conversation_id: &str) -> String {
        format!("{}/{conversation_id}", self.settings.workspace_root)
    }

    /// Reads an answer's body, failing with its status when it is not a success.
    async fn read(response: reqwest::Response, secret: Option<&Secret>) -> Result<(u16, String), AgentError> {
        let status = response.status().as_u16();
        let body = super::read_answer(response).await?;
        if !(200..300).contains(&status) {
            return Err(AgentError::Status { status, message: tail(&body, secret) });
        }
        Ok((status, body))
    }

    /// Runs `command` through the bash endpoint and waits for its output.
    async fn bash(&self, command: &str, timeout_secs: u64, secret: Option<&Secret>) -> Result<BashOutput, AgentError> {
        let call = self
            .http
            .post(self.url("/api/bash/execute_bash_command"))
            .timeout(std::time::Duration::from_secs(timeout_secs + 30))
            .json(&json!({ "command": command, "timeout": timeout_secs }));
        let response = self.authed(call).send().await.map_err(transport)?;
        let (_, body) = Self::read(response, secret).await?;
        serde_json::from_str(&body)
            .map_err(|_| AgentError::Protocol(format!("not a BashOutput: {}", tail(&body, secret))))
    }

    /// Uploads `content` to `path` on the agent server's host.
    async fn upload(&self, path: &str, content: &[u8], secret: Option<&Secret>) -> Result<(), AgentError> {
        let boundary = format!("hookwise-{}", uuid::Uuid::new_v4().simple());
        let mut body = Vec::with_capacity(content.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"credential\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let call = self
            .http
            .post(self.url("/api/file/upload"))
            .query(&[("path", path)])
            .header(reqwest::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .body(body);
        let response = self.authed(call).send().await.map_err(transport)?;
        Self::read(response, secret).await.map(|_| ())
    }

    /// Clones the repository into the conversation's working directory,
    /// unless an earlier attempt did. The clone goes to a temporary directory
    /// first and is moved into place whole, so a half-done clone is never
    /// taken for a finished one.
    async fn prepare_workspace(&self, request: &ConversationRequest, dir: &str) -> Result<(), AgentError> {
        if !valid_repository(&request.repository) {
            return Err(AgentError::Protocol(format!("not an owner/name repository: {:?}", request.repository)));
        }
        let token = request.github_token.as_ref().filter(|t| !t.expose().is_empty());
        let url = format!("{}/{}.git", self.settings.github_web_url, request.repository);
        let mut git = String::from("git");
        let mut credential_file = None;
        if let Some(token) = token {
            let path = format!("/tmp/hookwise-git-credential-{}", uuid::Uuid::new_v4().simple());
            let content = format!("username=x-access-token\npassword={}\n", token.expose());
            self.upload(&path, content.as_bytes(), Some(token)).await?;
            // For this one command only (`git -c`, not `git clone -c`): the
            // clone's config keeps a token-free remote and no helper.
            let helper = format!("!f() {{ if [ \"$1\" = get ]; then cat {}; fi; }}; f", sh_quote(&path));
            git.push_str(&format!(" -c credential.helper= -c credential.helper={}", sh_quote(&helper)));
            credential_file = Some(path);
        }
        let branch = match &request.branch {
            Some(branch) => format!(" --branch {}", sh_quote(branch)),
            None => String::new(),
        };
        let cleanup = match &credential_file {
            Some(path) => format!("trap 'rm -f {}' EXIT; ", sh_quote(path).replace('\'', r"'\''")),
            None => String::new(),
        };
        let (q_dir, q_tmp) = (sh_quote(dir), sh_quote(&format!("{dir}.partial")));
        let command = format!(
            "{cleanup}set -e; \
             if [ -d {q_dir}/.git ]; then echo hookwise:already-prepared; exit 0; fi; \
             mkdir -p {root}; rm -rf {q_tmp}; \
             GIT_TERMINAL_PROMPT=0 {git} clone --quiet{branch} -- {url} {q_tmp}; \
             mv {q_tmp} {q_dir}; echo hookwise:cloned",
            root = sh_quote(&self.settings.workspace_root),
            url = sh_quote(&url),
        );
        let output = self.bash(&command, CLONE_TIMEOUT_SECS, token).await?;
        match output.exit_code {
            Some(0) => Ok(()),
            code => Err(AgentError::Protocol(format!(
                "preparing the workspace {dir} (git clone {url}) failed with exit code {}: {}",
                code.map_or("unknown".to_owned(), |c| c.to_string()),
                tail(output.stderr.as_deref().or(output.stdout.as_deref()).unwrap_or(""), token)
            ))),
        }
    }

    /// The last `ConversationErrorEvent`'s `code: detail`, when there is one.
    async fn error_detail(&self, conversation_id: &str) -> Option<String> {
        let call = self.http.get(self.url(&format!("/api/conversations/{conversation_id}/events/search"))).query(&[
            ("kind", "ConversationErrorEvent"),
            ("sort_order", "TIMESTAMP_DESC"),
            ("limit", "1"),
        ]);
        let response = self.authed(call).send().await.ok()?;
        let (_, body) = Self::read(response, None).await.ok()?;
        let page: EventPage = serde_json::from_str(&body).ok()?;
        let event = page.items.into_iter().next()?;
        let code = event.get("code").and_then(|c| c.as_str()).unwrap_or("error");
        Some(match event.get("detail").and_then(|d| d.as_str()).filter(|d| !d.is_empty()) {
            Some(detail) => format!("{code}: {}", tail(detail, None)),
            None => code.to_owned(),
        })
    }
}

#[async_trait]
impl AgentRuntime for AgentServer {
    fn name(&self) -> &'static str {
        self.settings.runtime.as_str()
    }

    /// Idempotent on `request.conversation_id` whatever `retrying` says: the
    /// workspace is prepared once and the agent server starts a conversation
    /// id once.
    async fn start(&self, request: &ConversationRequest, _retrying: bool) -> Result<StartOutcome, AgentError> {
        let Some(llm) = &self.settings.llm else {
            return Ok(StartOutcome::Refused {
                reason: "no LLM is configured for the agent server: set AGENT_LLM_MODEL (and AGENT_LLM_API_KEY)".into(),
            });
        };
        let conversation_id = request.conversation_id.hyphenated().to_string();
        let dir = self.working_dir(&conversation_id);
        self.prepare_workspace(request, &dir).await?;

        let mut llm_json = json!({ "model": llm.model, "usage_id": "agent" });
        if let Some(key) = &llm.api_key {
            llm_json["api_key"] = json!(key.expose());
        }
        if let Some(base_url) = &llm.base_url {
            llm_json["base_url"] = json!(base_url);
        }
        let tools: Vec<_> = DEFAULT_TOOLS.iter().map(|name| json!({ "name": name })).collect();
        let mut body = json!({
            "conversation_id": conversation_id,
            "workspace": { "working_dir": dir },
            "initial_message": {
                "role": "user",
                "content": [{ "type": "text", "text": request.initial_message() }],
                "run": true,
            },
            "agent": { "kind": "Agent", "llm": llm_json, "tools": tools },
            "max_iterations": self.settings.max_iterations,
        });
        let token = request.github_token.as_ref().filter(|t| !t.expose().is_empty());
        if let Some(token) = token {
            body["secrets"] = json!({ "GITHUB_TOKEN": { "kind": "StaticSecret", "value": token.expose() } });
        }
        let call = self.http.post(self.url("/api/conversations")).json(&body);
        let response = self.authed(call).send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let text = super::read_answer(response).await?;
        // Neither the LLM key nor the token is ever echoed into an error.
        let redact = |text: &str| {
            let text = tail(text, token);
            match &llm.api_key {
                Some(key) if !key.expose().is_empty() => text.replace(key.expose(), "<redacted>"),
                _ => text,
            }
        };
        match status {
            200 | 201 => Ok(StartOutcome::Started { conversation_id }),
            // The agent server understood and said no (a request it cannot
            // run, e.g. an unknown tool or model settings it rejects): final.
            400 | 409 | 422 => {
                Ok(StartOutcome::Refused { reason: format!("the agent server refused: {}", redact(&text)) })
            }
            _ => Err(AgentError::Status { status, message: redact(&text) }),
        }
    }

    async fn status(&self, conversation_id: &str) -> Result<RunStatus, AgentError> {
        let call = self.http.get(self.url(&format!("/api/conversations/{conversation_id}")));
        let response = self.authed(call).send().await.map_err(transport)?;
        if response.status().as_u16() == 404 {
            return Ok(RunStatus::Unknown);
        }
        let (_, body) = Self::read(response, None).await?;
        let info: ConversationInfo = serde_json::from_str(&body)
            .map_err(|_| AgentError::Protocol("GET /api/conversations/{id}: not a ConversationInfo".into()))?;
        match info.execution_status.as_deref() {
            Some("finished") => {
                let call =
                    self.http.get(self.url(&format!("/api/conversations/{conversation_id}/agent_final_response")));
                let response = self.authed(call).send().await.map_err(transport)?;
                let (_, body) = Self::read(response, None).await?;
                let answer: AgentResponse = serde_json::from_str(&body)
                    .map_err(|_| AgentError::Protocol("agent_final_response: not {\"response\"}".into()))?;
                Ok(RunStatus::Finished { result: answer.response.filter(|r| !r.trim().is_empty()) })
            }
            Some(state @ ("error" | "stuck")) => {
                Ok(RunStatus::Failed { state: state.to_owned(), detail: self.error_detail(conversation_id).await })
            }
            // idle, running, paused, waiting_for_confirmation, deleting, …
            _ => Ok(RunStatus::Running),
        }
    }

    /// `POST /api/conversations/{id}/pause`: the run stops after the current
    /// LLM call and can be resumed on the agent server.
    async fn stop(&self, conversation_id: &str) -> Result<StopOutcome, AgentError> {
        let call = self.http.post(self.url(&format!("/api/conversations/{conversation_id}/pause")));
        let response = self.authed(call).send().await.map_err(transport)?;
        if response.status().as_u16() == 404 {
            return Ok(StopOutcome::CannotStop { reason: "the agent server no longer knows this conversation".into() });
        }
        Self::read(response, None).await?;
        Ok(StopOutcome::Stopped)
    }

    /// The clone is authenticated with the installation token, and the agent
    /// gets it as `GITHUB_TOKEN` to push.
    fn needs_github_token(&self) -> bool {
        true
    }

    fn conversation_url(&self, conversation_id: &str) -> String {
        self.settings.conversation_url.replace("{conversation_id}", conversation_id)
    }

    async fn check(&self) -> Vec<CheckLine> {
        let mut lines = Vec::new();
        let line = |check: &str, ok: bool, detail: String| CheckLine { check: check.to_owned(), ok, detail };

        let reachable = match self.http.get(self.url("/health")).send().await {
            Ok(r) if r.status().is_success() => {
                lines.push(line("AGENT_API_URL reachable", true, "the agent server answered /health".into()));
                true
            }
            Ok(r) => {
                lines.push(line(
                    "AGENT_API_URL reachable",
                    false,
                    format!("/health answered {}: is AGENT_API_URL an OpenHands agent server?", r.status().as_u16()),
                ));
                false
            }
            Err(e) => {
                lines.push(line(
                    "AGENT_API_URL reachable",
                    false,
                    format!("no answer ({}): check AGENT_API_URL", e.without_url()),
                ));
                false
            }
        };

        let mut key_ok = false;
        if !reachable {
            lines.push(line("AGENT_API_KEY accepted", false, "not checked: the agent server did not answer".into()));
        } else if self.settings.api_key.is_none() {
            lines.push(line(
                "AGENT_API_KEY accepted",
                false,
                "AGENT_API_KEY is not set: set it to one of the agent server's OH_SESSION_API_KEYS_* (its webhooks need it too)"
                    .into(),
            ));
        } else {
            let call = self.authed(self.http.get(self.url("/api/conversations/count")));
            match call.send().await {
                Ok(r) if r.status().is_success() => {
                    key_ok = true;
                    lines.push(line("AGENT_API_KEY accepted", true, "an authenticated call succeeded".into()));
                }
                Ok(r) if matches!(r.status().as_u16(), 401 | 403) => lines.push(line(
                    "AGENT_API_KEY accepted",
                    false,
                    format!(
                        "answered {}: check AGENT_API_KEY (a session key of the agent server)",
                        r.status().as_u16()
                    ),
                )),
                Ok(r) => lines.push(line(
                    "AGENT_API_KEY accepted",
                    false,
                    format!("/api/conversations/count answered {}: check AGENT_API_URL", r.status().as_u16()),
                )),
                Err(e) => lines.push(line(
                    "AGENT_API_KEY accepted",
                    false,
                    format!("no answer ({}): check AGENT_API_URL", e.without_url()),
                )),
            }
        }

        lines.push(match &self.settings.llm {
            Some(llm) => line(
                "LLM settings present",
                true,
                format!(
                    "AGENT_LLM_MODEL={}{}{}",
                    llm.model,
                    if llm.api_key.is_some() { ", AGENT_LLM_API_KEY set" } else { ", AGENT_LLM_API_KEY not set" },
                    llm.base_url.as_deref().map(|u| format!(", AGENT_LLM_BASE_URL={u}")).unwrap_or_default()
                ),
            ),
            None => {
                line("LLM settings present", false, "AGENT_LLM_MODEL is not set: set it (and AGENT_LLM_API_KEY)".into())
            }
        });

        let root = &self.settings.workspace_root;
        if !key_ok {
            lines.push(line(
                "AGENT_WORKSPACE_ROOT exists",
                false,
                format!("not checked ({root}): the agent server's API is not reachable with AGENT_API_KEY"),
            ));
        } else {
            let command = format!("test -d {q} && test -w {q}", q = sh_quote(root));
            lines.push(match self.bash(&command, 30, None).await {
                Ok(out) if out.exit_code == Some(0) => {
                    line("AGENT_WORKSPACE_ROOT exists", true, format!("{root} is a writable directory"))
                }
                Ok(_) => line(
                    "AGENT_WORKSPACE_ROOT exists",
                    false,
                    format!("{root} is not a writable directory on the agent server's host: create it or set AGENT_WORKSPACE_ROOT"),
                ),
                Err(e) => line("AGENT_WORKSPACE_ROOT exists", false, format!("could not check {root}: {e}")),
            });
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn repositories_are_owner_and_name() {
        assert!(valid_repository("octo-org/hello.world"));
        assert!(!valid_repository("octo/../x"));
        assert!(!valid_repository("octo/.."));
        assert!(!valid_repository("octo"));
        assert!(!valid_repository("octo/x y"));
        assert!(!valid_repository("a/b/c"));
    }

    #[test]
    fn secrets_are_cut_out_of_messages() {
        let secret = Secret::new("ghs_abc");
        assert_eq!(tail("failed with ghs_abc here", Some(&secret)), "failed with <redacted> here");
    }
}
