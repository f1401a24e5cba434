//! Reading `Tidegate:` trailers from a commit message, by git's trailer rules.
//!
//! Git reads trailers only from the last paragraph of a message, never from the subject, and
//! only when that paragraph is a trailer block: every line is `Key: value` (or a continuation
//! line starting with whitespace), or at least a quarter of the lines are trailers and one of
//! them is git-generated (`Signed-off-by:`, `(cherry picked from commit …)`). The key is
//! case-insensitive. A commit may carry several `Tidegate:` trailers.

use serde::Serialize;

use super::ControlAction;

/// The trailer key of control commits.
pub const CONTROL_KEY: &str = "Tidegate";
/// The trailer key tidegate puts on its own status commits.
pub const STATUS_KEY: &str = "Tidegate-Status";

/// One `Tidegate:` trailer as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParsedControl {
    /// The action, or `Err(word)` when the word is not an action (recorded as refused).
    pub action: Result<ControlAction, String>,
    /// Namespace when written as `namespace/name`.
    pub namespace: Option<String>,
    pub name: String,
    pub reason: String,
}

impl ParsedControl {
    /// `namespace/name`, with `default_namespace` filled in when none is written. (The daemon
    /// and the CLI resolve a bare name among the plans instead: [`super::resolve`].)
    pub fn target(&self, default_namespace: &str) -> crate::plan::RolloutId {
        crate::plan::RolloutId {
            namespace: self
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_owned()),
            name: self.name.clone(),
        }
    }
}

/// Every `(key, value)` trailer of the message, in order (continuation lines joined).
pub fn trailers(message: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = message.lines().map(|l| l.trim_end()).collect();
    // Drop trailing blank lines, then find the last paragraph.
    let end = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |i| i + 1);
    let start = lines[..end]
        .iter()
        .rposition(|l| l.trim().is_empty())
        .map_or(0, |i| i + 1);
    // The first paragraph is the subject: it never holds trailers.
    let first_para_end = lines
        .iter()
        .position(|l| l.trim().is_empty())
        .unwrap_or(lines.len());
    if start == 0 || start < first_para_end || end <= start {
        return Vec::new();
    }
    let block = &lines[start..end];
    let mut parsed: Vec<(String, String)> = Vec::new();
    let mut trailer_lines = 0usize;
    let mut other_lines = 0usize;
    let mut git_generated = false;
    for line in block {
        if line.starts_with([' ', '\t']) && !parsed.is_empty() {
            if let Some(last) = parsed.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if line.starts_with("(cherry picked from commit ") {
            git_generated = true;
            trailer_lines += 1;
            continue;
        }
        match split_trailer(line) {
            Some((k, v)) => {
                if k.eq_ignore_ascii_case("Signed-off-by") {
                    git_generated = true;
                }
                trailer_lines += 1;
                parsed.push((k.to_owned(), v.to_owned()));
            }
            None => other_lines += 1,
        }
    }
    let is_block = trailer_lines > 0
        && (other_lines == 0 || (git_generated && trailer_lines * 3 >= other_lines));
    if is_block { parsed } else { Vec::new() }
}

/// `Key: value`; as in git, whitespace may stand between the key and the colon.
fn split_trailer(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    let key = key.trim_end_matches([' ', '\t']);
    let valid_key = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid_key.then(|| (key, value.trim()))
}

/// Whether the message carries a `Tidegate-Status:` trailer (tidegate's own commits).
pub fn is_status_commit(message: &str) -> bool {
    trailers(message)
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case(STATUS_KEY))
}

/// One `Tidegate:` trailer: its text as written and what it asks for, or why it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlTrailer {
    /// `Tidegate: <value>` as written (continuation lines joined).
    pub text: String,
    /// The rollout name as written (empty when the trailer has none).
    pub name: String,
    pub parsed: Result<ParsedControl, super::resolve::Unresolved>,
}

/// Every `Tidegate:` trailer of the message, malformed ones included (no action, no rollout
/// name, a name that cannot be one), so each can be answered.
pub fn control_trailers(message: &str) -> Vec<ControlTrailer> {
    trailers(message)
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(CONTROL_KEY))
        .map(|(_, v)| {
            let mut words = v.split_whitespace();
            let action_word = words.next().unwrap_or_default();
            let written = words.next().unwrap_or_default();
            let reason = words.collect::<Vec<_>>().join(" ");
            let parsed = super::resolve::parse_target(written).map(|t| ParsedControl {
                action: ControlAction::parse(action_word).ok_or_else(|| action_word.to_owned()),
                namespace: t.namespace,
                name: t.name,
                reason,
            });
            ControlTrailer {
                text: format!("{CONTROL_KEY}: {v}"),
                name: written.to_owned(),
                parsed,
            }
        })
        .collect()
}

/// Every well-formed `Tidegate:` control in the message. Malformed ones (no rollout name, a
/// name that cannot be one) are left out (see [`control_trailers`]); unknown actions are kept
/// as `Err` so they can be recorded as refused.
pub fn parse_controls(message: &str) -> Vec<ParsedControl> {
    control_trailers(message)
        .into_iter()
        .filter_map(|t| t.parsed.ok())
        .collect()
}

/// The message of a control commit made by `tidegate pause NAME -m WHY`.
pub fn control_message(action: ControlAction, target: &str, reason: &str) -> String {
    let subject = if reason.is_empty() {
        format!("{action} {target}")
    } else {
        format!("{action} {target}: {reason}")
    };
    let trailer = if reason.is_empty() {
        format!("{CONTROL_KEY}: {action} {target}")
    } else {
        format!(
            "{CONTROL_KEY}: {action} {target} {}",
            reason.replace('\n', " ")
        )
    };
    format!("{subject}\n\n{trailer}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_several_controls_from_the_last_paragraph() {
        let msg = "Stop the canary\n\nIt breaks checkout.\n\nTidegate: pause production/orders-svc\ntidegate: abort orders-svc canary returns 502 on /checkout\nSigned-off-by: A <a@x>\n";
        let c = parse_controls(msg);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].action, Ok(ControlAction::Pause));
        assert_eq!(c[0].namespace.as_deref(), Some("production"));
        assert_eq!(c[1].action, Ok(ControlAction::Abort));
        assert_eq!(c[1].target("staging").namespace, "staging");
        assert_eq!(c[1].reason, "canary returns 502 on /checkout");
    }

    #[test]
    fn ignores_trailers_outside_the_last_paragraph_and_in_the_subject() {
        assert!(parse_controls("Tidegate: pause orders-svc").is_empty());
        let msg = "subject\n\nTidegate: pause orders-svc\n\nJust prose here.\n";
        assert!(parse_controls(msg).is_empty());
        let mixed = "subject\n\nTidegate: pause orders-svc\nthis line is prose\n";
        assert!(parse_controls(mixed).is_empty());
    }

    #[test]
    fn malformed_trailers_are_kept_to_answer_them() {
        let t = control_trailers(
            "s\n\nTidegate: pause\nTidegate: resume a/b/c why\nTidegate: abort ok\n",
        );
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].text, "Tidegate: pause");
        assert!(t[0].parsed.is_err() && t[0].name.is_empty());
        assert_eq!(t[1].name, "a/b/c");
        assert!(t[1].parsed.is_err());
        assert_eq!(t[2].parsed.as_ref().map(|c| c.name.as_str()), Ok("ok"));
        assert_eq!(
            parse_controls("s\n\nTidegate: pause\nTidegate: abort ok\n").len(),
            1
        );
    }

    #[test]
    fn keeps_unknown_actions_to_refuse_them() {
        let c = parse_controls("s\n\nTidegate: destroy orders-svc\n");
        assert_eq!(c[0].action, Err("destroy".to_owned()));
    }

    #[test]
    fn whitespace_before_the_colon_is_read_as_git_reads_it() {
        // `git interpret-trailers --parse` prints `Tidegate: resume production/x` for both.
        for msg in [
            "s\n\nTidegate : resume production/x\n",
            "s\n\nTidegate\t:resume production/x\n",
        ] {
            let c = parse_controls(msg);
            assert_eq!(c.len(), 1, "{msg:?}");
            assert_eq!(c[0].action, Ok(ControlAction::Resume));
        }
        assert!(parse_controls("s\n\nTide gate: resume production/x\n").is_empty());
    }

    #[test]
    fn continuation_lines_extend_the_reason() {
        let c = parse_controls("s\n\nTidegate: abort orders-svc too many\n  errors on checkout\n");
        assert_eq!(c[0].reason, "too many errors on checkout");
    }

    #[test]
    fn generated_message_round_trips() {
        let msg = control_message(ControlAction::Resume, "production/orders-svc", "looks good");
        let c = parse_controls(&msg);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].action, Ok(ControlAction::Resume));
        assert_eq!(c[0].reason, "looks good");
        assert!(!is_status_commit(&msg));
        assert!(is_status_commit(
            "status\n\nTidegate-Status: a/b Progressing 5%\n"
        ));
    }
}
