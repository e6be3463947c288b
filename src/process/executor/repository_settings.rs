//! `read_repository_settings`: reads `.github/hookwise.yml` from the
//! repository's default branch with the installation's token, and records
//! it unless it is the blob already recorded last. An unusable file is
//! recorded with its problem (the operator's defaults apply) and logged once
//! per blob, here, when it is first recorded.

use super::{event, StepContext, StepError, StepOutcome};
use crate::events::{streams, DomainEvent, RepositorySettingsRead};
use crate::process::repository_settings::RepositorySettingsRef;
use crate::triggers::settings::{parse, MAX_SETTINGS_BYTES, SETTINGS_PATH};

pub(super) async fn perform(ctx: &StepContext<'_>, target: &RepositorySettingsRef) -> Result<StepOutcome, StepError> {
    if !ctx.github.is_configured() {
        // Nothing to read with: the operator's defaults apply.
        return Ok(StepOutcome::Done(Vec::new()));
    }
    let file = ctx
        .github
        .repository_file(
            target.installation_id,
            &target.repository,
            SETTINGS_PATH,
            target.branch.as_deref(),
            MAX_SETTINGS_BYTES,
        )
        .await?;
    let (blob_sha, settings, problem) = match file {
        None => (None, None, None),
        Some(file) => {
            let parsed = match file.content {
                Some(content) => parse(&content),
                None => Err(format!("the file has {} bytes; at most {MAX_SETTINGS_BYTES} are read", file.size)),
            };
            match parsed {
                Ok(settings) => (Some(file.sha), Some(settings), None),
                Err(problem) => (Some(file.sha), None, Some(problem)),
            }
        }
    };
    let read = RepositorySettingsRead {
        repository_id: target.repository_id,
        repository: target.repository.clone(),
        installation_id: target.installation_id,
        branch: target.branch.clone(),
        blob_sha,
        settings,
        problem,
    };
    let history = ctx.store.read_stream(&streams::repository(target.repository_id), 0, usize::MAX).await?;
    let last = history.iter().rev().find_map(|e| RepositorySettingsRead::decode(e).ok());
    if last.is_some_and(|last| last.blob_sha == read.blob_sha) {
        return Ok(StepOutcome::Done(Vec::new()));
    }
    if let Some(problem) = &read.problem {
        tracing::warn!(
            repository = %read.repository,
            blob_sha = read.blob_sha.as_deref().unwrap_or(""),
            %problem,
            "{SETTINGS_PATH} cannot be used: the operator's settings apply"
        );
    }
    Ok(StepOutcome::Done(vec![event(&read, ctx.ids.outcome())?]))
}
