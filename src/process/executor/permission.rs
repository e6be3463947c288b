//! `check_permission`: the installation is there and not suspended, and the
//! requester may write to the repository, or is named in the repository's
//! `allow` (as settings in force when the trigger was detected), by login or
//! as an active member of an `org/team` listed there.

use super::{event, StepContext, StepError, StepOutcome};
use crate::events::{PermissionChecked, TriggerDetected};
use crate::triggers::settings::allowed;

pub(super) async fn perform(ctx: &StepContext<'_>, trigger: &TriggerDetected) -> Result<StepOutcome, StepError> {
    if ctx.agent.is_none() {
        return ctx.reject(trigger, "agent_not_configured", "AGENT_API_URL is not set".into());
    }
    if !ctx.github.is_configured() {
        return ctx.reject(trigger, "github_not_configured", "GITHUB_APP_ID and its key are not set".into());
    }
    // Both questions at once (neither needs the other's answer); the
    // installation's answer is read first, so the outcome, and the events,
    // are what asking one after the other would give: a missing or
    // suspended installation is a rejection whatever the permission call met.
    let login = &trigger.requester.login;
    let (installation, permission) = tokio::join!(
        ctx.github.installation(trigger.installation_id),
        ctx.github.collaborator_permission(trigger.installation_id, &trigger.repository.full_name, login),
    );
    match installation? {
        None => {
            let message = format!("installation {} does not exist", trigger.installation_id);
            return ctx.reject(trigger, "installation_missing", message);
        }
        Some(installation) if installation.suspended_at.is_some() => {
            let message = format!("installation {} is suspended", trigger.installation_id);
            return ctx.reject(trigger, "installation_suspended", message);
        }
        Some(_) => {}
    }
    let permission = permission?;
    let granted_by = granted_by(ctx, trigger, &permission).await?;
    let granted = granted_by.is_some();
    let checked = PermissionChecked {
        trigger_id: trigger.trigger_id,
        login: login.clone(),
        permission: permission.clone(),
        granted,
        granted_by,
    };
    let mut events = vec![event(&checked, ctx.ids.outcome())?];
    if !granted {
        let allow = if trigger.repository_settings.as_ref().is_some_and(|s| !s.settings.allow.is_empty()) {
            ", and the repository's `allow` does not name them or a team of theirs"
        } else {
            ""
        };
        let message = format!("{login} has {permission} permission; admin, maintain or write is needed{allow}");
        if let StepOutcome::Done(rejection) = ctx.reject(trigger, "permission_denied", message)? {
            events.extend(rejection);
        }
    }
    Ok(StepOutcome::Done(events))
}

/// The rule that lets the requester ask: write permission or better, their
/// login in `allow`, or an active membership of a team listed there (asked
/// one team at a time, in the file's order, until one says yes).
async fn granted_by(
    ctx: &StepContext<'_>,
    trigger: &TriggerDetected,
    permission: &str,
) -> Result<Option<String>, StepError> {
    if may_write(permission) {
        return Ok(Some("permission".into()));
    }
    let Some(in_force) = &trigger.repository_settings else { return Ok(None) };
    let login = &trigger.requester.login;
    let (named, teams) = allowed(&in_force.settings, login);
    if named {
        return Ok(Some("allow".into()));
    }
    for (org, team) in teams {
        if ctx.github.is_active_team_member(trigger.installation_id, &org, &team, login).await? {
            return Ok(Some(format!("team:{org}/{team}")));
        }
    }
    Ok(None)
}

/// Whether a repository permission may ask for the agent (or stop it).
pub(super) fn may_write(permission: &str) -> bool {
    matches!(permission, "admin" | "maintain" | "write")
}
