//! A repository's own settings (`.github/hookwise.yml` on its default
//! branch), on stream `repository-{id}`. Written by the executor (the only
//! code that reads GitHub); the process manager decides with the latest one
//! that precedes a delivery in the log, so a replay decides the same.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::DomainEvent;

/// What a repository's file says. Every field is optional: what it leaves
/// out is the operator's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositorySettings {
    /// `false`: nothing in this repository asks for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The trigger label instead of the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The handle whose mention asks instead of the operator's (`@name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mention: Option<String>,
    /// The ways of asking that are on (`HOOKWISE_TRIGGERS` names), within the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<BTreeSet<String>>,
    /// Added to the agent's task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Users and `org/team` slugs who may ask without write permission.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

/// The repository's settings file as read from its default branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositorySettingsRead {
    pub repository_id: u64,
    /// `owner/name`.
    pub repository: String,
    pub installation_id: u64,
    /// The branch read (the default branch; `None`: GitHub's default).
    pub branch: Option<String>,
    /// The file's blob sha; `None`: there is no file.
    pub blob_sha: Option<String>,
    /// What it says; `None` with a `problem`: unusable, the operator's defaults apply.
    pub settings: Option<RepositorySettings>,
    /// Why the file (or part of it) is not used, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl DomainEvent for RepositorySettingsRead {
    const TYPE: &'static str = "RepositorySettingsRead";
    const SCHEMA_VERSION: u32 = 1;
}

/// The settings a decision was made with: recorded in `TriggerDetected`, so
/// every later step (who may ask, the agent's instructions) and a replay use
/// the same ones whatever the file says by then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingsInForce {
    pub blob_sha: String,
    pub settings: RepositorySettings,
}
