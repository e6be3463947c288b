//! `check_permission`: the installation is there and not suspended, and the
//! requester may write to the repository.

use super::{event, StepContext, StepError, StepOutcome};
use crate::events::{PermissionChecked, TriggerDetected};

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
    let granted = may_write(&permission);
    let checked = PermissionChecked {
        trigger_id: trigger.trigger_id,
        login: login.clone(),
        permission: permission.clone(),
        granted,
    };
    let mut events = vec![event(&checked, ctx.ids.outcome())?];
    if !granted {
        let message = format!("{login} has {permission} permission; admin, maintain or write is needed");
        if let StepOutcome::Done(rejection) = ctx.reject(trigger, "permission_denied", message)? {
            events.extend(rejection);
        }
    }
    Ok(StepOutcome::Done(events))
}

/// Whether a repository permission may ask for the agent (or stop it).
pub(super) fn may_write(permission: &str) -> bool {
    matches!(permission, "admin" | "maintain" | "write")
}
