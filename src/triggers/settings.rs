//! A repository's `.github/hookwise.yml`: read into [`RepositorySettings`]
//! ([`parse`]) and laid over the operator's rules ([`rules_for`]). Pure: the
//! executor reads the file, the process manager applies what the log says.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::classify::{TriggerRules, TriggerSwitch};
use crate::events::RepositorySettings;

/// Where the file is, on the repository's default branch.
pub const SETTINGS_PATH: &str = ".github/hookwise.yml";

/// The largest file read: a settings file is a few lines.
pub const MAX_SETTINGS_BYTES: usize = 64 * 1024;

/// The file as written. Unknown keys are a problem (a typo must not pass
/// silently as "the default").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    enabled: Option<bool>,
    label: Option<String>,
    mention: Option<String>,
    triggers: Option<Vec<String>>,
    instructions: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
}

/// The settings `text` says, or the problem with it in words. An empty file
/// (or one of comments only) says nothing: the operator's settings apply.
pub fn parse(text: &[u8]) -> Result<RepositorySettings, String> {
    if text.len() > MAX_SETTINGS_BYTES {
        return Err(format!("the file has {} bytes; at most {MAX_SETTINGS_BYTES} are read", text.len()));
    }
    let text = std::str::from_utf8(text).map_err(|_| "the file is not UTF-8".to_owned())?;
    if text.lines().all(|line| line.trim().is_empty() || line.trim_start().starts_with('#')) {
        return Ok(RepositorySettings::default());
    }
    let file: SettingsFile = serde_yaml_ng::from_str(text).map_err(|e| format!("the file is not valid: {e}"))?;
    let label = file.label.map(|l| l.trim().to_owned());
    if label.as_deref() == Some("") {
        return Err("`label` is empty".into());
    }
    let mention = match file.mention.as_deref().map(str::trim) {
        None => None,
        Some("") | Some("@") => return Err("`mention` is empty".into()),
        Some(handle) if handle.starts_with('@') => Some(handle.to_owned()),
        Some(handle) => Some(format!("@{handle}")),
    };
    if let Some(bad) = mention.as_deref().filter(|h| h[1..].contains(|c: char| c.is_whitespace() || c == '@')) {
        return Err(format!("`mention` {bad:?} is not one handle"));
    }
    let triggers = match file.triggers {
        None => None,
        Some(names) => {
            let switches = TriggerSwitch::parse_list(&names.join(",")).map_err(|e| format!("`triggers`: {e}"))?;
            Some(switches.into_iter().map(|s| s.name().to_owned()).collect::<BTreeSet<_>>())
        }
    };
    let mut allow = Vec::new();
    for entry in file.allow {
        let entry = entry.trim().trim_start_matches('@').to_owned();
        let valid = match entry.split_once('/') {
            Some((org, team)) => is_name(org) && is_name(team),
            None => is_name(entry.trim_end_matches("[bot]")),
        };
        if !valid {
            return Err(format!("`allow`: {entry:?} is neither a login nor an `org/team` slug"));
        }
        allow.push(entry);
    }
    let instructions = file.instructions.map(|i| i.trim().to_owned()).filter(|i| !i.is_empty());
    Ok(RepositorySettings { enabled: file.enabled, label, mention, triggers, instructions, allow })
}

/// A GitHub login, organisation or team slug: letters, digits, `-`, `_`, `.`.
fn is_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The operator's rules with a repository's settings laid over them: its
/// label and handle instead, its ways of asking within the operator's, none
/// when it is disabled, and the bots it names.
pub fn rules_for(operator: &TriggerRules, settings: &RepositorySettings) -> TriggerRules {
    let mut rules = operator.clone();
    if let Some(label) = &settings.label {
        rules.label = label.clone();
    }
    if let Some(mention) = &settings.mention {
        rules.mention = mention.clone();
    }
    if let Some(names) = &settings.triggers {
        rules.enabled.retain(|switch| names.contains(switch.name()));
    }
    if settings.enabled == Some(false) {
        rules.enabled.clear();
    }
    rules.allowed_bots = settings.allow.iter().filter(|a| !a.contains('/')).map(|a| a.to_ascii_lowercase()).collect();
    rules
}

/// How a requester without write permission may still ask: by name, or
/// through one of these teams (`(org, team_slug)`), in the file's order.
pub fn allowed(settings: &RepositorySettings, login: &str) -> (bool, Vec<(String, String)>) {
    let named = settings.allow.iter().any(|a| !a.contains('/') && a.eq_ignore_ascii_case(login));
    let teams = settings
        .allow
        .iter()
        .filter_map(|a| a.split_once('/'))
        .map(|(org, team)| (org.to_owned(), team.to_owned()))
        .collect();
    (named, teams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_read() {
        let text = b"enabled: true\nlabel: agent-fix\nmention: my-bot\ntriggers: [label, mention]\n\
            instructions: |\n  Run cargo test.\nallow:\n  - alice\n  - acme/reviewers\n";
        let settings = parse(text).expect("valid");
        assert_eq!(settings.enabled, Some(true));
        assert_eq!(settings.label.as_deref(), Some("agent-fix"));
        assert_eq!(settings.mention.as_deref(), Some("@my-bot"));
        assert_eq!(settings.triggers, Some(["label".to_owned(), "mention".to_owned()].into()));
        assert_eq!(settings.instructions.as_deref(), Some("Run cargo test."));
        assert_eq!(settings.allow, vec!["alice".to_owned(), "acme/reviewers".to_owned()]);
    }

    #[test]
    fn an_empty_file_says_nothing() {
        assert_eq!(parse(b""), Ok(RepositorySettings::default()));
        assert_eq!(parse(b"# nothing yet\n\n"), Ok(RepositorySettings::default()));
    }

    #[test]
    fn problems_are_sentences_not_panics() {
        let problem = |text: &[u8]| parse(text).expect_err("a problem");
        assert!(problem(b"lable: typo\n").contains("lable"), "{}", problem(b"lable: typo\n"));
        assert!(problem(b"triggers: [label, telepathy]\n").contains("telepathy"));
        assert!(problem(b"label: ''\n").contains("label"));
        assert!(problem(b"allow: ['a b']\n").contains("allow"));
        assert!(problem(b"enabled: [1, 2\n").contains("not valid"));
        assert!(problem(b"- just\n- a list\n").contains("not valid"));
        assert!(problem(&[0xff, 0xfe]).contains("UTF-8"));
        assert!(problem(&vec![b'#'; MAX_SETTINGS_BYTES + 1]).contains("at most"));
    }

    #[test]
    fn settings_lie_over_the_operators_rules() {
        let operator = TriggerRules::default();
        let settings = parse(b"label: agent-fix\ntriggers: [label, telepathy]\n");
        assert!(settings.is_err());
        let settings =
            parse(b"label: agent-fix\ntriggers: [label]\nallow: ['ci-bot[bot]', acme/team]\n").expect("valid");
        let rules = rules_for(&operator, &settings);
        assert_eq!(rules.label, "agent-fix");
        assert_eq!(rules.mention, operator.mention);
        assert_eq!(rules.enabled, [TriggerSwitch::Label].into());
        assert_eq!(rules.allowed_bots, ["ci-bot[bot]".to_owned()].into());
        let off = parse(b"enabled: false\n").expect("valid");
        assert!(rules_for(&operator, &off).enabled.is_empty());
        let (named, teams) = allowed(&settings, "CI-BOT[bot]");
        assert!(named);
        assert_eq!(teams, vec![("acme".to_owned(), "team".to_owned())]);
    }
}
