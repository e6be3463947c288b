//! When a repository's `.github/hookwise.yml` is read, and which reading a
//! delivery is decided with. The file is read by the executor (the only code
//! that calls GitHub) into `RepositorySettingsRead` on the repository's
//! stream: when the repository is first seen, and on a push to its default
//! branch that touches the file. A delivery is classified with the latest
//! reading that precedes it in the log, so a replay decides the same.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::{derived_id, streams, DomainEvent, RepositorySettingsRead, SettingsInForce, WebhookReceived};
use crate::store::{EventStore, Position, StoreError};
use crate::triggers::settings::SETTINGS_PATH;

/// The outbox step that reads a repository's settings file (no trigger's step).
pub const READ_REPOSITORY_SETTINGS: &str = "read_repository_settings";

/// What the executor needs to read a repository's settings file, kept as its
/// outbox row's `arguments` (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositorySettingsRef {
    pub installation_id: u64,
    pub repository_id: u64,
    /// `owner/name`.
    pub repository: String,
    /// The default branch, as the delivery named it (`None`: GitHub's default).
    pub branch: Option<String>,
}

/// What the repository's stream says as of a delivery.
pub struct AsOf {
    /// The settings in force: the latest reading before the delivery, if it found a usable file.
    pub settings: Option<SettingsInForce>,
    /// Whether the file was ever read before the delivery.
    pub read: bool,
}

/// The settings in force for a delivery at `before`: readings after it in
/// the log (written while the process manager lagged) do not count.
pub async fn as_of(store: &dyn EventStore, repository_id: u64, before: Position) -> Result<AsOf, StoreError> {
    let history = store.read_stream(&streams::repository(repository_id), 0, usize::MAX).await?;
    let latest = history
        .iter()
        .filter(|e| e.position < before && e.event_type == RepositorySettingsRead::TYPE)
        .filter_map(|e| RepositorySettingsRead::decode(e).ok())
        .last();
    let read = latest.is_some();
    let settings = latest.and_then(|r| match (r.blob_sha, r.settings, r.problem) {
        (Some(blob_sha), Some(settings), None) => Some(SettingsInForce { blob_sha, settings }),
        _ => None,
    });
    Ok(AsOf { settings, read })
}

#[derive(Deserialize)]
struct Repository {
    default_branch: Option<String>,
}

#[derive(Deserialize, Default)]
struct Commit {
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
}

#[derive(Deserialize)]
struct ListedRepository {
    id: u64,
    full_name: String,
}

#[derive(Deserialize)]
struct Payload {
    repository: Option<Repository>,
    /// `installation.created`: the repositories it may act on.
    repositories: Option<Vec<ListedRepository>>,
    /// `installation_repositories.added`.
    #[serde(default)]
    repositories_added: Vec<ListedRepository>,
    #[serde(rename = "ref")]
    pushed_ref: Option<String>,
    after: Option<String>,
    #[serde(default)]
    commits: Vec<Commit>,
}

/// The subject of a repository's first reading.
fn first_reading(repository_id: u64) -> Uuid {
    derived_id(&["repository-settings", &repository_id.to_string(), "first"])
}

/// The readings a delivery asks for, each with its subject id (the same
/// cause always gives the same one, so it is enqueued once): a repository's
/// first, when it was never read (or an installation of the App lists it,
/// so its file is read before anyone asks there); another on a push to the
/// default branch whose commits touch the file.
pub fn reads_wanted(received: &WebhookReceived, payload: &[u8], read: bool) -> Vec<(Uuid, RepositorySettingsRef)> {
    let Some(installation_id) = received.installation_id else { return Vec::new() };
    let parsed: Option<Payload> = serde_json::from_slice(payload).ok();
    let Some(repository) = received.repository.as_ref() else {
        let Some(parsed) = parsed.filter(|_| received.event.starts_with("installation")) else { return Vec::new() };
        let listed = parsed.repositories.into_iter().flatten().chain(parsed.repositories_added);
        return listed
            .map(|r| {
                let target = RepositorySettingsRef {
                    installation_id,
                    repository_id: r.id,
                    repository: r.full_name,
                    branch: None,
                };
                (first_reading(r.id), target)
            })
            .collect();
    };
    read_wanted(received, installation_id, repository, parsed, read).into_iter().collect()
}

fn read_wanted(
    received: &WebhookReceived,
    installation_id: u64,
    repository: &crate::events::RepositoryRef,
    parsed: Option<Payload>,
    read: bool,
) -> Option<(Uuid, RepositorySettingsRef)> {
    let branch = parsed.as_ref().and_then(|p| p.repository.as_ref()).and_then(|r| r.default_branch.clone());
    let target = RepositorySettingsRef {
        installation_id,
        repository_id: repository.id,
        repository: repository.full_name.clone(),
        branch: branch.clone(),
    };
    let id = repository.id.to_string();
    if received.event == "push" {
        let push = parsed?;
        let default_ref = format!("refs/heads/{}", branch?);
        let touches = push
            .commits
            .iter()
            .any(|c| c.added.iter().chain(&c.modified).chain(&c.removed).any(|path| path == SETTINGS_PATH));
        if push.pushed_ref.as_deref() == Some(default_ref.as_str()) && touches {
            let after = push.after.unwrap_or_else(|| received.delivery_id.clone());
            return Some((derived_id(&["repository-settings", &id, "push", &after]), target));
        }
    }
    (!read).then(|| (first_reading(repository.id), target))
}
