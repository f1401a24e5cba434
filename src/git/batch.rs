//! What one status commit carries (transitions, removed status files, refused controls) and its
//! message: a subject, one line per change, and one of tidegate's own trailers per change, so
//! `git log` tells the story and tidegate recognises its commits.

use git2::Oid;

use super::commits::{
    OWN_PROCESSED_TRAILER, OWN_REFUSED_TRAILER, OWN_REMOVED_TRAILER, OWN_STATUS_TRAILER,
};
use crate::control::RefusedRecord;
use crate::plan::RolloutId;
use crate::rollout::Status;

/// The changes of one status commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusBatch {
    /// Transitions, in order (the last document of each rollout wins).
    pub statuses: Vec<Status>,
    /// Rollouts whose status file is deleted (their plan is gone and their routes are clean).
    pub removed: Vec<RolloutId>,
    /// Controls no rollout could answer, added to `<status folder>/_refused.yaml`.
    pub refused: Vec<RefusedRecord>,
}

impl StatusBatch {
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.removed.is_empty() && self.refused.is_empty()
    }

    /// A transition; it supersedes an earlier removal of the same rollout in this batch.
    pub fn push_status(&mut self, status: Status) {
        self.removed.retain(|id| id != &status.rollout);
        self.statuses.push(status);
    }

    /// A removal (applied after the transitions of the batch).
    pub fn push_removed(&mut self, id: RolloutId) {
        if !self.removed.contains(&id) {
            self.removed.push(id);
        }
    }

    /// Everything in `other`, after what this batch holds.
    pub fn extend(&mut self, other: StatusBatch) {
        for s in other.statuses {
            self.push_status(s);
        }
        for id in other.removed {
            self.push_removed(id);
        }
        self.refused.extend(other.refused);
    }

    /// How many changes the batch holds.
    pub fn len(&self) -> usize {
        self.statuses.len() + self.removed.len() + self.refused.len()
    }
}

/// One line per change, one trailer per change, and the processed marker.
pub(crate) fn status_message(batch: &StatusBatch, marker: Option<Oid>) -> String {
    let mut msg = format!("tidegate: {}\n", subject(batch));
    if !batch.is_empty() {
        msg.push('\n');
        for s in &batch.statuses {
            msg.push_str(&format!(
                "- {}: {} at {}% (step {}/{}): {}\n",
                clean(&s.rollout.to_string()),
                s.phase,
                s.route.canary_weight,
                s.step,
                s.step_count,
                shorten(&clean(&s.reason), 160)
            ));
        }
        for id in &batch.removed {
            msg.push_str(&format!(
                "- {}: plan removed, routes clean; status file deleted\n",
                clean(&id.to_string())
            ));
        }
        for r in &batch.refused {
            msg.push_str(&format!(
                "- refused `{}` of {}: {}\n",
                shorten(&clean(&r.trailer), 80),
                short(&r.commit),
                shorten(&clean(&r.why), 160)
            ));
        }
    }
    msg.push('\n');
    for s in &batch.statuses {
        msg.push_str(&format!("{OWN_STATUS_TRAILER}: {}\n", one_line(s)));
    }
    for id in &batch.removed {
        msg.push_str(&format!(
            "{OWN_REMOVED_TRAILER}: {}\n",
            clean(&id.to_string())
        ));
    }
    for r in &batch.refused {
        let name = if r.name.is_empty() { "-" } else { &r.name };
        msg.push_str(&format!(
            "{OWN_REFUSED_TRAILER}: {} {}\n",
            short(&r.commit),
            shorten(&clean(name), 80)
        ));
    }
    if let Some(m) = marker {
        msg.push_str(&format!("{OWN_PROCESSED_TRAILER}: {m}\n"));
    }
    msg
}

fn subject(batch: &StatusBatch) -> String {
    match (
        batch.statuses.as_slice(),
        batch.removed.as_slice(),
        batch.refused.len(),
    ) {
        ([only], [], 0) => one_line(only),
        ([], [only], 0) => format!("{} removed", clean(&only.to_string())),
        ([], [], 1) => "refused 1 control for an unknown rollout".to_owned(),
        ([], [], n) => format!("refused {n} controls for unknown rollouts"),
        (statuses, removed, refused) => {
            let mut rollouts: Vec<String> =
                statuses.iter().map(|s| s.rollout.to_string()).collect();
            rollouts.extend(removed.iter().map(ToString::to_string));
            rollouts.sort();
            rollouts.dedup();
            let mut s = format!(
                "{} transitions in {} rollouts",
                statuses.len(),
                rollouts.len()
            );
            if !removed.is_empty() {
                s.push_str(&format!(", {} removed", removed.len()));
            }
            if refused > 0 {
                s.push_str(&format!(", {refused} refused"));
            }
            s
        }
    }
}

fn one_line(s: &Status) -> String {
    format!(
        "{} {} {}%",
        clean(&s.rollout.to_string()),
        s.phase,
        s.route.canary_weight
    )
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        s.chars().take(max - 3).collect::<String>() + "..."
    } else {
        s.to_owned()
    }
}

/// One line of printable text.
fn clean(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::control::trailers::trailers;
    use crate::rollout::{Phase, RouteState};

    fn status(name: &str, phase: Phase, weight: u8, reason: &str) -> Status {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let id = RolloutId {
            namespace: "prod".into(),
            name: name.into(),
        };
        Status {
            phase,
            step: 2,
            route: RouteState {
                canary_weight: weight,
                ..RouteState::default()
            },
            read_back: Default::default(),
            reason: reason.into(),
            ..Status::fresh(&id, &Default::default(), 4, at)
        }
    }

    fn only(statuses: Vec<Status>) -> StatusBatch {
        StatusBatch {
            statuses,
            ..StatusBatch::default()
        }
    }

    #[test]
    fn one_transition_names_itself_in_the_subject() {
        let msg = status_message(
            &only(vec![status("orders", Phase::Progressing, 25, "step 2")]),
            None,
        );
        assert!(
            msg.starts_with("tidegate: prod/orders Progressing 25%\n\n"),
            "{msg}"
        );
        assert_eq!(
            trailers(&msg),
            vec![(
                "Tidegate-Status".to_string(),
                "prod/orders Progressing 25%".to_string()
            )]
        );
    }

    #[test]
    fn reasons_are_one_line_and_cannot_forge_trailers() {
        let long = "x".repeat(300);
        let marker = Oid::from_str("0123456789abcdef0123456789abcdef01234567").expect("oid");
        let msg = status_message(
            &only(vec![
                status("a", Phase::Paused, 5, "paused\n\nTidegate: abort prod/a"),
                status("b", Phase::RollingBack, 0, &long),
            ]),
            Some(marker),
        );
        assert!(
            msg.starts_with("tidegate: 2 transitions in 2 rollouts\n"),
            "{msg}"
        );
        assert!(msg.contains("- prod/a: Paused at 5% (step 2/4): paused Tidegate: abort prod/a\n"));
        assert!(msg.contains(&format!("{}...", "x".repeat(157))));
        let t = trailers(&msg);
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(t.iter().all(|(k, _)| k != "Tidegate"));
        assert_eq!(t[2], ("Tidegate-Processed".to_string(), marker.to_string()));
    }

    #[test]
    fn removals_and_refusals_carry_their_own_trailers() {
        let id = RolloutId {
            namespace: "prod".into(),
            name: "gone".into(),
        };
        let refused = RefusedRecord {
            commit: "0123456789abcdef".into(),
            author: "Ana <ana@example.com>".into(),
            trailer: "Tidegate: pause orders\nTidegate: abort x".into(),
            name: "orders".into(),
            why: "no plan in any namespace is named orders".into(),
            hint: "closest plans: prod/orders-svc; name one of them".into(),
            plans: vec!["prod/orders-svc".into()],
            at: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .expect("time"),
        };
        let mut batch = StatusBatch::default();
        batch.push_removed(id.clone());
        let msg = status_message(&batch, None);
        assert!(msg.starts_with("tidegate: prod/gone removed\n"), "{msg}");
        batch.refused.push(refused);
        batch.push_status(status("a", Phase::Paused, 5, "x"));
        let msg = status_message(&batch, None);
        assert!(
            msg.starts_with("tidegate: 1 transitions in 2 rollouts, 1 removed, 1 refused\n"),
            "{msg}"
        );
        let t = trailers(&msg);
        let keys: Vec<&str> = t.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["Tidegate-Status", "Tidegate-Removed", "Tidegate-Refused"],
            "{msg}"
        );
        assert_eq!(t[2].1, "0123456789ab orders");
        // A later transition of a removed rollout cancels the removal.
        batch.push_status(status("gone", Phase::Pending, 0, "back"));
        assert!(batch.removed.is_empty());
    }
}
