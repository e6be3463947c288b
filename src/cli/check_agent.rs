//! `hookwise check-agent`: builds the agent runtime from the same settings as
//! `hookwise serve` (every `AGENT_*` variable and flag), calls it once
//! without starting anything, and prints one line per check: `ok   …` or
//! `FAIL …`, naming the setting to fix. Secrets are never printed.

use crate::agent;
use crate::config::{ConfigError, GitHubAppArgs, ProcessArgs, ProcessSettings};

/// The settings of `hookwise check-agent`: those of `serve` that shape the runtime.
#[derive(clap::Args, Debug)]
pub struct CheckAgentArgs {
    #[command(flatten)]
    pub github: GitHubAppArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
}

/// The lines to print, and whether every check passed.
pub async fn check_agent(args: CheckAgentArgs) -> Result<(Vec<String>, bool), ConfigError> {
    // The GitHub App's credentials play no part in the runtime's checks.
    let settings = ProcessSettings::from_args(args.process, None, args.github.github_api_url)?;
    let Some(agent_settings) = settings.agent else {
        let line = "FAIL AGENT_API_URL set: it is not; set AGENT_API_URL (and AGENT_API_KEY) to the agent runtime";
        return Ok((vec![line.to_owned()], false));
    };
    let runtime = agent::build(&agent_settings);
    let checks = runtime.check().await;
    if checks.is_empty() {
        let line = format!("FAIL AGENT_RUNTIME={}: this runtime has no checks yet", runtime.name());
        return Ok((vec![line], false));
    }
    let ok = checks.iter().all(|c| c.ok);
    let lines = checks
        .into_iter()
        .map(|c| format!("{} {}: {}", if c.ok { "ok  " } else { "FAIL" }, c.check, c.detail))
        .collect();
    Ok((lines, ok))
}
