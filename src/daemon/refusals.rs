//! Controls that name no rollout (unknown, ambiguous, malformed): each is answered once, in the
//! repository-level record `status/_refused.yaml` (written with the statuses of the same poll,
//! so with the same processed marker) and by a `refused` notification.

use std::collections::BTreeSet;

use super::{App, PlanFeed};
use crate::control::RefusedRecord;
use crate::mesh::Mesh;
use crate::metrics::MetricsSource;
use crate::notify::Notification;

impl<M, S, G> App<M, S, G>
where
    M: Mesh + 'static,
    S: MetricsSource + Send + Sync + 'static,
    G: PlanFeed + 'static,
{
    /// Record and announce controls that named no rollout.
    pub(super) fn answer_refused(&self, records: Vec<RefusedRecord>) {
        if records.is_empty() {
            return;
        }
        for r in &records {
            tracing::warn!(commit = %r.commit, author = %r.author, trailer = %r.trailer, why = %r.why, hint = %r.hint, "control refused: it names no rollout");
            let channels = self.refusal_channels(r);
            self.parts
                .notifier
                .send(Notification::refused(r, &channels));
        }
        self.parts.statuses.refuse_unknown(records);
    }

    /// Who hears of a refusal: the channels of the plans the answer names (the likely
    /// intended rollout), else those of every plan.
    fn refusal_channels(&self, record: &RefusedRecord) -> Vec<String> {
        let channels = |named_only: bool| -> BTreeSet<String> {
            self.registry
                .entries()
                .filter(|e| !named_only || record.plans.contains(&e.id.to_string()))
                .filter_map(|e| e.plan.as_ref().ok())
                .flat_map(|p| p.notify.iter().cloned())
                .collect()
        };
        let named = channels(true);
        let chosen = if named.is_empty() {
            channels(false)
        } else {
            named
        };
        chosen.into_iter().collect()
    }
}
