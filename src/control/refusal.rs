//! The answer to a control that names no rollout the daemon knows (unknown, ambiguous or
//! malformed): a record in the repository-level file `status/_refused.yaml`, so that every
//! control gets exactly one recorded answer even when no rollout status can hold it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::resolve::Unresolved;

/// How many refusals `_refused.yaml` keeps (newest last; older ones stay in Git history).
pub const MAX_REFUSED: usize = 100;

/// One refused control that no rollout status could record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedRecord {
    /// The control commit.
    pub commit: String,
    /// `Name <email>` of its author.
    pub author: String,
    /// The trailer as written (`Tidegate: pause orders`).
    pub trailer: String,
    /// The rollout name as written (empty when the trailer names none).
    pub name: String,
    /// Why it was refused.
    pub why: String,
    /// What to do about it.
    pub hint: String,
    /// The known plans the answer names (closest names, or the candidates of an ambiguous name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plans: Vec<String>,
    /// When tidegate refused it.
    pub at: DateTime<Utc>,
}

impl RefusedRecord {
    /// The record for `trailer` of `commit`, refused because its name did not resolve.
    pub fn unresolved(
        commit: &str,
        author: &str,
        trailer: &str,
        name: &str,
        unresolved: &Unresolved,
        at: DateTime<Utc>,
    ) -> RefusedRecord {
        RefusedRecord {
            commit: commit.to_owned(),
            author: author.to_owned(),
            trailer: trailer.to_owned(),
            name: name.to_owned(),
            why: unresolved.why(),
            hint: unresolved.hint(),
            plans: unresolved.plans().iter().map(ToString::to_string).collect(),
            at,
        }
    }

    /// The same control (one commit can carry several trailers; each is answered once).
    pub fn same_control(&self, other: &RefusedRecord) -> bool {
        self.commit == other.commit && self.trailer == other.trailer
    }
}

/// Add `new` to `log` (skipping controls already answered), keeping the newest [`MAX_REFUSED`].
/// Returns how many were added.
pub fn append_bounded(log: &mut Vec<RefusedRecord>, new: &[RefusedRecord]) -> usize {
    let mut added = 0;
    for r in new {
        if !log.iter().any(|o| o.same_control(r)) {
            log.push(r.clone());
            added += 1;
        }
    }
    if log.len() > MAX_REFUSED {
        log.drain(..log.len() - MAX_REFUSED);
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::resolve::resolve_written;
    use crate::plan::RolloutId;

    fn record(commit: &str, trailer: &str) -> RefusedRecord {
        let known = [RolloutId {
            namespace: "production".into(),
            name: "orders-svc".into(),
        }];
        let err = resolve_written("production/orders", &known).expect_err("unknown");
        RefusedRecord::unresolved(
            commit,
            "Ana <ana@example.com>",
            trailer,
            "production/orders",
            &err,
            DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        )
    }

    #[test]
    fn records_say_why_and_what_to_do() {
        let r = record("c1", "Tidegate: pause production/orders");
        assert_eq!(r.why, "no plan defines production/orders");
        assert_eq!(r.plans, vec!["production/orders-svc".to_string()]);
        assert!(r.hint.contains("production/orders-svc"), "{}", r.hint);
    }

    #[test]
    fn the_log_answers_each_control_once_and_stays_bounded() {
        let mut log = Vec::new();
        let a = record("c1", "Tidegate: pause production/orders");
        assert_eq!(append_bounded(&mut log, &[a.clone(), a.clone()]), 1);
        assert_eq!(append_bounded(&mut log, std::slice::from_ref(&a)), 0);
        let many: Vec<RefusedRecord> = (0..MAX_REFUSED + 5)
            .map(|i| record(&format!("n{i}"), "Tidegate: pause x"))
            .collect();
        append_bounded(&mut log, &many);
        assert_eq!(log.len(), MAX_REFUSED);
        assert_eq!(log[0].commit, "n5", "the oldest are dropped");
        assert_eq!(
            log.last().map(|r| r.commit.as_str()),
            Some(format!("n{}", MAX_REFUSED + 4).as_str())
        );
    }
}
