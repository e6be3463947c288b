//! `hookwise explain DELIVERY_GUID`: why a delivery did or did not ask for the
//! agent, read from the log with the rules the environment configures.

use crate::process::explain::DeliveryExplanation;

/// The explanation for people: the summary, each way of asking, the trigger.
pub fn render(explanation: &DeliveryExplanation) -> String {
    let action = explanation.action.as_deref().map(|a| format!(".{a}")).unwrap_or_default();
    let mut text = format!("delivery {}: {}{action}\n", explanation.delivery_id, explanation.event);
    let verdict = if explanation.asks { "asks for the agent" } else { "does not ask for the agent" };
    let code = explanation.code.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default();
    text.push_str(&format!("{verdict}{code}: {}\n\nways of asking:\n", explanation.summary));
    let width = explanation.ways.iter().map(|w| w.way.len()).max().unwrap_or(0);
    for way in &explanation.ways {
        let why = match (&way.code, &way.reason) {
            (Some(code), Some(reason)) => format!("no   {code}: {reason}"),
            _ => "asks".to_owned(),
        };
        text.push_str(&format!("  {:width$}  {why}\n", way.way));
    }
    if let Some(trigger) = &explanation.trigger {
        text.push_str(&format!("\ntrigger {} ({})", trigger.trigger_id, trigger.kind.as_str()));
        match &trigger.status {
            Some(status) => text.push_str(&format!(": {status}")),
            None => text.push_str(": not recorded"),
        }
        if let (Some(code), Some(message)) = (&trigger.rejection_code, &trigger.rejection) {
            text.push_str(&format!(", {code}: {message}"));
        }
        if let Some(error) = &trigger.abandoned_error {
            text.push_str(&format!(", abandoned after: {error}"));
        }
        if let Some(first) = &trigger.recorded_by {
            text.push_str(&format!(" (recorded by delivery {first})"));
        }
        text.push('\n');
    }
    text
}
