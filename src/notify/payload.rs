//! Message bodies: the Slack incoming-webhook shape and tidegate's own JSON document.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Notification, event_name};
use crate::analysis::Outcome;
use crate::rollout::Event;

/// `version` of the generic webhook document; bumped on incompatible changes.
pub const SCHEMA_VERSION: &str = "tidegate.dev/v1alpha1";

/// Longest commit prefix shown in chat messages.
const SHORT_COMMIT: usize = 12;

/// The generic webhook body (documented in docs/notifications.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonPayload<'a> {
    pub version: &'static str,
    pub kind: &'static str,
    pub event: &'static str,
    pub namespace: &'a str,
    pub rollout: &'a str,
    pub phase: &'static str,
    pub step: usize,
    pub step_count: usize,
    pub canary_weight: u8,
    pub stable_weight: u8,
    pub message: &'a str,
    pub reason: &'a str,
    pub commit: &'a str,
    /// The control commit behind the event, when a person caused it.
    pub control: Option<PayloadControl<'a>>,
    pub verdicts: Vec<PayloadVerdict<'a>>,
    pub at: DateTime<Utc>,
}

/// The control commit behind an event, in the generic webhook body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadControl<'a> {
    pub action: &'a str,
    pub author: &'a str,
    pub commit: &'a str,
    pub reason: &'a str,
}

/// One verdict in the generic webhook body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadVerdict<'a> {
    pub metric: &'a str,
    pub outcome: Outcome,
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stable_value: Option<f64>,
    pub threshold: &'a str,
    pub reason: &'a str,
}

impl<'a> JsonPayload<'a> {
    pub fn new(n: &'a Notification) -> JsonPayload<'a> {
        JsonPayload {
            version: SCHEMA_VERSION,
            kind: "RolloutNotification",
            event: event_name(n.event),
            namespace: &n.rollout.namespace,
            rollout: &n.rollout.name,
            phase: n.phase.as_str(),
            step: n.step,
            step_count: n.step_count,
            canary_weight: n.canary_weight,
            stable_weight: 100u8.saturating_sub(n.canary_weight),
            message: &n.message,
            reason: &n.reason,
            commit: &n.commit,
            control: n.control.as_ref().map(|c| PayloadControl {
                action: &c.action,
                author: &c.author,
                commit: &c.commit,
                reason: &c.note,
            }),
            verdicts: n
                .verdicts
                .iter()
                .map(|v| PayloadVerdict {
                    metric: &v.metric,
                    outcome: v.outcome,
                    value: v.value.filter(|x| x.is_finite()),
                    stable_value: v.stable_value.filter(|x| x.is_finite()),
                    threshold: &v.threshold,
                    reason: &v.reason,
                })
                .collect(),
            at: n.at,
        }
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped in any text it did not write itself.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn icon(event: Event) -> &'static str {
    match event {
        Event::Started | Event::StepAdvanced | Event::Resumed => ":arrow_forward:",
        Event::Paused => ":double_vertical_bar:",
        Event::Promoting | Event::Succeeded => ":white_check_mark:",
        Event::RollingBack | Event::RolledBack => ":rotating_light:",
        Event::Aborted => ":octagonal_sign:",
        Event::Invalid | Event::Drift | Event::Blocked | Event::Deadline => ":warning:",
        Event::Refused => ":no_entry:",
    }
}

/// What happened, as a chat line says it after the rollout's name.
fn headline(n: &Notification) -> String {
    match n.event {
        Event::Started => "started".into(),
        Event::StepAdvanced => format!(
            "moved to step {}/{}",
            n.step.min(n.step_count),
            n.step_count
        ),
        Event::Paused => "paused".into(),
        Event::Resumed => "resumed".into(),
        Event::Promoting => "is promoting: all traffic to the canary".into(),
        Event::Succeeded => "succeeded".into(),
        Event::RollingBack => "is rolling back".into(),
        Event::RolledBack => "rolled back".into(),
        Event::Aborted => "was aborted".into(),
        Event::Invalid => "has an invalid plan".into(),
        Event::Drift => "drifted: someone else changed its routes".into(),
        Event::Blocked => "is blocked: tidegate cannot change its routes".into(),
        Event::Deadline => "missed its progress deadline".into(),
        Event::Refused => "names no rollout tidegate knows: control refused".into(),
    }
}

fn short(commit: &str) -> &str {
    commit.get(..SHORT_COMMIT).unwrap_or(commit)
}

fn number(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => {
            let s = format!("{x:.3}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            s.to_owned()
        }
        Some(_) => "NaN".into(),
        None => "no data".into(),
    }
}

/// One line per verdict: `• success-rate: 93.1 (min 99) Fail`.
fn verdict_lines(n: &Notification) -> Vec<String> {
    n.verdicts
        .iter()
        .map(|v| {
            let mut line = format!("• {}: {}", esc(&v.metric), number(v.value));
            if let Some(stable) = v.stable_value {
                line.push_str(&format!(" vs stable {}", number(Some(stable))));
            }
            if !v.threshold.is_empty() {
                line.push_str(&format!(" ({})", esc(&v.threshold)));
            }
            line.push_str(&format!(" *{}*", v.outcome));
            line
        })
        .collect()
}

/// `pause by Alice <alice@example.com> in commit `3b7a9c1d5e2f``.
fn control_line(n: &Notification) -> Option<String> {
    n.control.as_ref().map(|c| {
        format!(
            "{} by {} in commit `{}`",
            esc(&c.action),
            esc(&c.author),
            esc(short(&c.commit))
        )
    })
}

/// The plain mrkdwn text of a Slack message (also the fallback shown in notifications).
pub fn slack_text(n: &Notification) -> String {
    if n.event == Event::Refused {
        return refused_text(n);
    }
    let mut text = format!(
        "{} *{}* {} — {}, canary {}% (step {}/{})",
        icon(n.event),
        esc(&n.rollout.to_string()),
        headline(n),
        n.phase,
        n.canary_weight,
        n.step.min(n.step_count),
        n.step_count
    );
    if !n.reason.is_empty() {
        text.push_str(&format!("\n> {}", esc(&n.reason)));
    }
    if let Some(c) = control_line(n) {
        text.push('\n');
        text.push_str(&c);
    }
    let lines = verdict_lines(n);
    if !lines.is_empty() {
        text.push('\n');
        text.push_str(&lines.join("\n"));
    }
    if !n.commit.is_empty() {
        text.push_str(&format!("\nplan commit `{}`", esc(short(&n.commit))));
    }
    text
}

/// A refused control has no phase, step or weights to show.
fn refused_text(n: &Notification) -> String {
    let mut text = format!(
        "{} *{}* {}\n> {}",
        icon(n.event),
        esc(&n.rollout.to_string()),
        headline(n),
        esc(&n.reason)
    );
    if let Some(c) = control_line(n) {
        text.push('\n');
        text.push_str(&c);
    }
    text
}

/// The Slack incoming-webhook body: `text` for clients that only read text (Mattermost,
/// Rocket.Chat, phone notifications) and `blocks` for Slack.
pub fn slack_payload(n: &Notification) -> Value {
    let header = format!(
        "{} *{}* {}",
        icon(n.event),
        esc(&n.rollout.to_string()),
        headline(n)
    );
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": header}})];
    if n.event != Event::Refused {
        blocks.push(json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Phase*\n{}", n.phase)},
            {"type": "mrkdwn", "text": format!("*Canary weight*\n{}%", n.canary_weight)},
            {"type": "mrkdwn", "text": format!("*Step*\n{}/{}", n.step.min(n.step_count), n.step_count)},
            {"type": "mrkdwn", "text": format!("*Plan commit*\n`{}`", esc(short(&n.commit)))},
        ]}));
    }
    if !n.reason.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("> {}", esc(&n.reason))}}));
    }
    if let Some(c) = control_line(n) {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": c}]}));
    }
    let lines = verdict_lines(n);
    if !lines.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Verdicts*\n{}", lines.join("\n"))}}));
    }
    json!({"text": slack_text(n), "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Verdict;
    use crate::plan::RolloutId;
    use crate::rollout::Phase;

    fn sample() -> Notification {
        let mut fail = Verdict::bare("success-rate", Outcome::Fail);
        fail.value = Some(93.125);
        fail.threshold = "min 99".into();
        let mut nan = Verdict::bare("p99<latency>", Outcome::Inconclusive);
        nan.value = Some(f64::NAN);
        Notification {
            rollout: RolloutId {
                namespace: "production".into(),
                name: "orders-svc".into(),
            },
            event: Event::RolledBack,
            phase: Phase::RolledBack,
            step: 3,
            step_count: 9,
            canary_weight: 0,
            message: "production/orders-svc RolledBack: 2 failed rounds".into(),
            reason: "success-rate 93.125 < 99 & more".into(),
            verdicts: vec![fail, nan],
            commit: "0123456789abcdef0123".into(),
            control: None,
            channels: vec!["default".into()],
            at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
        }
    }

    #[test]
    fn slack_text_names_everything_and_escapes() {
        let text = slack_text(&sample());
        assert_eq!(
            text,
            ":rotating_light: *production/orders-svc* rolled back — RolledBack, canary 0% (step 3/9)\n\
             > success-rate 93.125 &lt; 99 &amp; more\n\
             • success-rate: 93.125 (min 99) *Fail*\n\
             • p99&lt;latency&gt;: NaN *Inconclusive*\n\
             plan commit `0123456789ab`"
        );
    }

    #[test]
    fn a_refused_control_shows_no_phase_or_weights() {
        let record = crate::control::RefusedRecord {
            commit: "0123456789abcdef".into(),
            author: "Ana <ana@example.com>".into(),
            trailer: "Tidegate: pause production/orders".into(),
            name: "production/orders".into(),
            why: "no plan defines production/orders".into(),
            hint: "closest plans: production/orders-svc; name one of them".into(),
            plans: vec!["production/orders-svc".into()],
            at: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
        };
        let n = Notification::refused(&record, &["ops".to_string()]);
        assert_eq!(
            slack_text(&n),
            ":no_entry: *production/orders* names no rollout tidegate knows: control refused\n\
             > no plan defines production/orders (closest plans: production/orders-svc; name one of them)\n\
             pause by Ana &lt;ana@example.com&gt; in commit `0123456789ab`"
        );
        let blocks = slack_payload(&n)["blocks"].as_array().map(Vec::len);
        assert_eq!(blocks, Some(3), "header, reason, control; no phase fields");
        let v = serde_json::to_value(JsonPayload::new(&n)).expect("json");
        assert_eq!(v["event"], "refused");
        assert_eq!(v["control"]["action"], "pause");
    }

    #[test]
    fn json_payload_drops_non_finite_values() {
        let n = sample();
        let v = serde_json::to_value(JsonPayload::new(&n)).expect("json");
        assert_eq!(v["event"], "rolledBack");
        assert_eq!(v["stableWeight"], 100);
        assert_eq!(v["verdicts"][0]["value"], 93.125);
        assert!(v["verdicts"][1]["value"].is_null());
        assert_eq!(v["at"], "2023-11-14T22:13:20Z");
    }
}
