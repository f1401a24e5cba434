//! Notifications: tell people about rollout transitions through Slack-compatible incoming
//! webhooks and generic JSON webhooks.
//!
//! The daemon builds a [`Notification`] from the engine's `Notify` effect and the rollout's
//! [`Status`], then hands it to a [`NotifyQueue`] with [`NotifyQueue::enqueue`], which never
//! waits: delivery (with a per-attempt timeout and bounded, backed-off retries) happens on a
//! background task, so a slow or dead webhook can never hold up a rollback. Channels are
//! configured with [`ChannelConfig`] and validated in one pass by [`validate_channels`].

mod config;
mod payload;
mod queue;
mod webhook;

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::analysis::Verdict;
use crate::control::ControlAction;
use crate::control::RefusedRecord;
use crate::plan::RolloutId;
use crate::rollout::{ControlRecord, Event, Phase, Status};

pub use config::{
    Channel, ChannelConfig, ChannelKind, DEFAULT_RETRIES, DEFAULT_TIMEOUT, MAX_RETRIES,
    MAX_TIMEOUT, UrlSource, unknown_channels, validate_channels,
};
pub use payload::{JsonPayload, PayloadVerdict, SCHEMA_VERSION, slack_payload, slack_text};
pub use queue::{DEFAULT_CAPACITY, Enqueued, NotifyQueue, QueueStats};
pub use webhook::{Backoff, WebhookNotifier, ensure_crypto_provider};

/// Everything that can go wrong with notifications. URLs never appear in messages: a Slack
/// incoming-webhook URL is a credential.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("invalid notification channels ({} problems): {}", errors.len(), errors.join("; "))]
    InvalidChannels { errors: Vec<String> },
    #[error("failed to read the URL of notification channel {channel}: {detail}")]
    UrlSource { channel: String, detail: String },
    #[error("notification channel {channel} has an unusable URL: {detail}")]
    InvalidUrl { channel: String, detail: String },
    #[error("failed to build the HTTP client of notification channel {channel}: {detail}")]
    Client { channel: String, detail: String },
    #[error("notification channel {channel} refused the message with HTTP {status} (not retried)")]
    Rejected { channel: String, status: u16 },
    #[error(
        "failed to deliver to notification channel {channel} after {attempts} attempts: {detail}"
    )]
    Failed {
        channel: String,
        attempts: u32,
        detail: String,
    },
    #[error("failed to start the notification queue: {detail}")]
    NoRuntime { detail: String },
}

/// The future a [`Notifier`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), NotifyError>> + Send + 'a>>;

/// One destination for notifications.
pub trait Notifier: Send + Sync + 'static {
    /// The channel name plans refer to in `notify: [...]`.
    fn name(&self) -> &str;
    /// Whether this channel wants to hear about `event`.
    fn wants(&self, event: Event) -> bool;
    /// Deliver one notification (retries and timeouts included).
    fn send<'a>(&'a self, notification: &'a Notification) -> SendFuture<'a>;
}

/// One message about one rollout transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub rollout: RolloutId,
    pub event: Event,
    pub phase: Phase,
    /// Index of the current step and the number of steps.
    pub step: usize,
    pub step_count: usize,
    pub canary_weight: u8,
    /// The engine's one-line message for the transition.
    pub message: String,
    /// Why the rollout is in its phase.
    pub reason: String,
    /// The latest verdict per metric.
    pub verdicts: Vec<Verdict>,
    /// The Git commit of the plan revision being rolled out.
    pub commit: String,
    /// The control commit that caused this event (who paused, resumed, aborted, ...), if any.
    pub control: Option<ControlRecord>,
    /// Channel names to deliver to (the plan's `notify` list).
    #[serde(skip)]
    pub channels: Vec<String>,
    pub at: DateTime<Utc>,
}

impl Notification {
    /// Build the notification for an engine `Notify { event, message }` effect from the status
    /// the same decision produced and the plan's `notify` channel names.
    pub fn from_status(
        status: &Status,
        event: Event,
        message: impl Into<String>,
        channels: &[String],
    ) -> Notification {
        // The control behind the event: the newest record, applied in this very decision,
        // whose action leads to this event.
        let control = status
            .controls
            .last()
            .filter(|c| c.applied && c.at == status.updated_at)
            .filter(|c| {
                let action = ControlAction::parse(&c.action);
                matches!(
                    (action, event),
                    (Some(ControlAction::Pause), Event::Paused)
                        | (Some(ControlAction::Resume), Event::Resumed)
                        | (
                            Some(ControlAction::Abort),
                            Event::RollingBack | Event::Aborted
                        )
                        | (Some(ControlAction::Promote), Event::Promoting)
                        | (Some(ControlAction::Retry), Event::Started)
                )
            })
            .cloned();
        Notification {
            rollout: status.rollout.clone(),
            event,
            phase: status.phase,
            step: status.step,
            step_count: status.step_count,
            canary_weight: status.route.canary_weight,
            message: message.into(),
            reason: status.reason.clone(),
            verdicts: status.analysis.last.clone(),
            commit: status.plan.revision.clone(),
            control,
            channels: channels.to_vec(),
            at: status.updated_at,
        }
    }
}

impl Notification {
    /// The notification of a control that named no rollout (`refused`): no phase, step or
    /// weights (they say nothing here); the control and why it was refused.
    pub fn refused(record: &RefusedRecord, channels: &[String]) -> Notification {
        let (namespace, name) = match record.name.split_once('/') {
            Some((ns, n)) => (ns.to_owned(), n.to_owned()),
            None => (String::new(), record.name.clone()),
        };
        let action = record
            .trailer
            .split_once(':')
            .and_then(|(_, v)| v.split_whitespace().next())
            .unwrap_or_default()
            .to_owned();
        Notification {
            rollout: RolloutId { namespace, name },
            event: Event::Refused,
            phase: Phase::Pending,
            step: 0,
            step_count: 0,
            canary_weight: 0,
            message: format!("`{}` refused: {}", record.trailer, record.why),
            reason: format!("{} ({})", record.why, record.hint),
            verdicts: Vec::new(),
            commit: String::new(),
            control: Some(ControlRecord {
                commit: record.commit.clone(),
                author: record.author.clone(),
                action,
                applied: false,
                note: record.why.clone(),
                at: record.at,
            }),
            channels: channels.to_vec(),
            at: record.at,
        }
    }
}

/// The name of an event as users write it in channel configuration (`rolledBack`, ...).
pub fn event_name(event: Event) -> &'static str {
    match event {
        Event::Started => "started",
        Event::StepAdvanced => "stepAdvanced",
        Event::Paused => "paused",
        Event::Resumed => "resumed",
        Event::Promoting => "promoting",
        Event::Succeeded => "succeeded",
        Event::RollingBack => "rollingBack",
        Event::RolledBack => "rolledBack",
        Event::Aborted => "aborted",
        Event::Invalid => "invalid",
        Event::Drift => "drift",
        Event::Deadline => "deadline",
        Event::Blocked => "blocked",
        Event::Refused => "refused",
    }
}

/// Every event, in the order of a rollout's life.
pub const ALL_EVENTS: [Event; 14] = [
    Event::Started,
    Event::StepAdvanced,
    Event::Paused,
    Event::Resumed,
    Event::Promoting,
    Event::Succeeded,
    Event::RollingBack,
    Event::RolledBack,
    Event::Aborted,
    Event::Invalid,
    Event::Drift,
    Event::Deadline,
    Event::Blocked,
    Event::Refused,
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{ControlRequest, Observation, PlanRef, ReadBack, step};
    use chrono::TimeZone;

    const PLAN: &str = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: web, namespace: shop}\nspec:\n  service: web\n  stable: v1\n  canary: v2\n  steps: [{setWeight: 10}, {pause: {}}, {setWeight: 100}]\n  notify: [default]\n";

    #[test]
    fn from_status_names_the_person_behind_the_event() {
        let parsed = crate::plan::parse_str("web.yaml", PLAN);
        assert!(parsed.findings.is_empty(), "{:?}", parsed.findings);
        let plan = &parsed.plans[0];
        let plan_ref = PlanRef {
            path: "web.yaml".into(),
            revision: "abc123".into(),
            digest: plan.digest(),
        };
        let t0 = Utc
            .with_ymd_and_hms(2026, 12, 1, 10, 0, 0)
            .single()
            .expect("time");
        let verified = Observation {
            read_back: ReadBack::Verified,
            ..Observation::default()
        };
        let mut status = step(plan, &plan_ref, None, &verified, t0).status;
        for _ in 0..4 {
            status = step(plan, &plan_ref, Some(&status), &verified, t0).status;
        }
        assert_eq!(status.phase, Phase::Paused, "held by the pause step");
        let started = Notification::from_status(&status, Event::Paused, "held", &plan.notify);
        assert_eq!(
            started.control, None,
            "a pause step is nobody's control commit"
        );

        let t1 = t0 + chrono::Duration::minutes(5);
        let resume = Observation {
            read_back: ReadBack::Verified,
            controls: vec![ControlRequest {
                action: ControlAction::Resume,
                commit: "def456".into(),
                author: "Ana <ana@example.com>".into(),
                reason: "looks good".into(),
            }],
            ..Observation::default()
        };
        let decision = step(plan, &plan_ref, Some(&status), &resume, t1);
        let n =
            Notification::from_status(&decision.status, Event::Resumed, "resumed", &plan.notify);
        let control = n.control.expect("the resume is named");
        assert_eq!(
            (
                control.action.as_str(),
                control.author.as_str(),
                control.commit.as_str()
            ),
            ("resume", "Ana <ana@example.com>", "def456")
        );
        assert_eq!(n.commit, "abc123");
        assert_eq!(n.channels, vec!["default".to_string()]);
        let other =
            Notification::from_status(&decision.status, Event::StepAdvanced, "step", &plan.notify);
        assert_eq!(
            other.control, None,
            "only the event the control caused names it"
        );
    }

    #[test]
    fn event_names_match_serde() {
        for event in ALL_EVENTS {
            let json = serde_json::to_value(event).expect("serialize event");
            assert_eq!(json, serde_json::Value::from(event_name(event)));
        }
    }
}
