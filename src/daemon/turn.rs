//! One turn of the loop: fold news from Git into the registry, then for every due rollout
//! gather the observation, let the engine decide, carry the decision out (traffic first; only
//! once it landed the notifications, Events and status commit) and hand the outcome to the
//! scheduler. Inputs (controls, an analysis round) are consumed only by a decision that was
//! carried out, so a failed turn loses nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::schedule::{self, Job, Outcome};
use super::{App, PlanFeed};
use crate::analysis::batch::{self, Target as AnalysisTarget};
use crate::analysis::subset::{SubsetLabels, find_destination_rule};
use crate::mesh::{Mesh, MeshObjects, Target, preflight};
use crate::metrics::{MetricsSource, run_tick};
use crate::plan::{Plan, RolloutId, Split};
use crate::rollout::{self, Decision, Effect, Fault, Observation, Phase, ReadBack, Status};
use crate::transient::Transient;

/// A turn that handled at least this many rollouts gives the heap's free pages back to the
/// system afterwards (`memory::release_free_heap`; docs/benchmarks.md, "Daemon").
const TRIM_AFTER_JOBS: usize = 100;

const WRITING: &str = "writing the VirtualService";
const READING: &str = "reading the VirtualService";

impl<M, S, G> App<M, S, G>
where
    M: Mesh + 'static,
    S: MetricsSource + Send + Sync + 'static,
    G: PlanFeed + 'static,
{
    /// Become the writer: read every status from Git, poll, adopt routes one write ahead.
    pub(super) async fn take_over(&mut self) {
        match self.parts.plans.load_statuses().await {
            Ok(s) => self.registry.load_statuses(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot read statuses from Git; starting without them")
            }
        }
        self.poll(true).await;
        self.publish_all().await;
    }

    /// Fetch the plans repository and fold the news into the registry. `taking_over`: reconcile
    /// the live routes before the first decision.
    pub(super) async fn poll(&mut self, taking_over: bool) {
        let started = self.now();
        let update = self.parts.plans.poll().await;
        let took = (self.now() - started).to_std().unwrap_or_default();
        self.state
            .metrics
            .git_fetch_duration
            .observe(took.as_secs_f64());
        let update = match update {
            Ok(u) => u,
            Err(e) => {
                self.state.metrics.git_fetch_errors.inc();
                tracing::error!(error = %e, transient = e.is_transient(), "failed to fetch the plans repository");
                return;
            }
        };
        self.state.git_synced.store(true, Ordering::Relaxed);
        if let Some(fp) = &update.force_push {
            tracing::warn!(previous = %fp.previous, current = %fp.current, "the plans branch was force-pushed; re-reading every plan");
        }
        let now = self.now();
        let plans = self.registry.apply_plans(&update.plans, now);
        self.refuse_second_owners(now);
        let policy = &self.settings.policy;
        let controls = self.registry.apply_commits(&update.commits, policy, now);
        for msg in plans.unattached.iter().chain(controls.unattached.iter()) {
            tracing::warn!(problem = %msg, "plans repository");
        }
        self.answer_refused(controls.refused);
        if !plans.removed.is_empty() {
            let mut statuses = self.state.statuses.write().await;
            for id in plans.removed {
                tracing::info!(rollout = %id, "plan removed before it moved traffic; forgotten");
                self.state.metrics.forget(&id, statuses.get(&id));
                statuses.remove(&id);
            }
        }
        for id in &plans.retiring {
            tracing::info!(rollout = %id, "plan removed; its last valid revision guards it until tidegate's routes are back on stable and cleared, then it is forgotten");
        }
        if !plans.added_or_changed.is_empty() || controls.controls > 0 {
            tracing::info!(changed = plans.added_or_changed.len(), controls = controls.controls, tip = %update.tip, "plans repository updated");
        }
        if taking_over {
            self.registry.adopt_orphans(now);
        }
        self.load_guards(now).await;
        self.parts.mesh.watch(&self.registry.namespaces());
        if taking_over {
            self.reconcile_routes(now, false).await;
        } else if !plans.added_or_changed.is_empty() {
            // A plan added while the daemon runs (e.g. again, after its removal) whose routes
            // already say more than "all on stable" starts from them, as after a restart.
            self.reconcile_routes(now, true).await;
        }
        // Controls are handed to the engine in this turn; the marker moves once they are in
        // statuses the writer holds.
        self.turn().await;
        if !self.registry.has_pending_controls() {
            self.parts.statuses.processed_through(&update.tip);
        }
    }

    /// Read from Git the revisions that statuses belong to but the daemon does not hold (after a
    /// restart), so an invalid or removed newest revision still has its guard.
    async fn load_guards(&mut self, now: DateTime<Utc>) {
        for (id, plan_ref) in self.registry.missing_guards() {
            let text = self
                .parts
                .plans
                .plan_at(&plan_ref.path, &plan_ref.revision)
                .await;
            let found = match text {
                Ok(Some(text)) => crate::plan::parse_str(&plan_ref.path, &text)
                    .plans
                    .into_iter()
                    .find(|p| p.id == id && p.digest() == plan_ref.digest),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(rollout = %id, revision = %plan_ref.revision, error = %e, "cannot read the revision the status belongs to");
                    continue;
                }
            };
            if found.is_none() {
                tracing::warn!(rollout = %id, revision = %plan_ref.revision, path = %plan_ref.path, "the revision the status belongs to does not define this plan");
            }
            self.registry.set_guard(&id, found, plan_ref, now);
        }
    }

    /// Adopt routes that are one write ahead of Git (see `rollout::reconcile`).
    async fn reconcile_routes(&mut self, now: DateTime<Utc>, new_only: bool) {
        // Every rollout that may have moved traffic: active ones, and ones without any status in
        // Git (a crash before the first status commit, or a plan added again); `new_only`: only
        // the rollouts without a status.
        let ids: Vec<RolloutId> = self
            .registry
            .entries()
            .filter(|e| {
                e.plan.is_ok()
                    && !e.removed
                    && if new_only {
                        e.status.is_none()
                    } else {
                        e.is_active() || e.status.as_ref().is_none_or(|s| s.phase == Phase::Pending)
                    }
            })
            .map(|e| e.id.clone())
            .collect();
        for id in ids {
            let Some(entry) = self.registry.get(&id) else {
                continue;
            };
            let Ok(plan) = entry.plan.clone() else {
                continue;
            };
            let expected = entry
                .status
                .as_ref()
                .map_or_else(rollout::RouteState::all_stable, |s| s.route.clone());
            let target = Target::from_plan(&plan);
            let actual = match self.parts.mesh.read_back(&target, &expected).await {
                Ok(ReadBack::Drifted { actual, .. }) => actual,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(rollout = %id, error = %e, "cannot read routes at start-up");
                    continue;
                }
            };
            let adopted =
                rollout::reconcile(&plan, &entry.plan_ref, entry.status.as_ref(), &actual, now);
            if let Some(adopted) = adopted {
                tracing::warn!(rollout = %id, step = adopted.step, canary_weight = actual.canary_weight, "adopting the routes found in the VirtualService");
                self.parts.statuses.submit(adopted.clone());
                if let Some(e) = self.registry.get_mut(&id) {
                    e.status = Some(adopted);
                    e.timers.wake_at = Some(now);
                }
            }
        }
    }

    /// Handle every rollout that is due.
    pub(super) async fn turn(&mut self) {
        let now = self.now();
        let jobs = schedule::due(self.registry.candidates(), now);
        if jobs.is_empty() {
            return;
        }
        self.preflight(&jobs).await;
        self.analyse(&jobs, now).await;
        for job in &jobs {
            self.handle(&job.id, now).await;
        }
        self.publish(&jobs).await;
        if jobs.len() >= TRIM_AFTER_JOBS {
            // A turn for much of the fleet (start-up, a round of every rollout) leaves its
            // transient data in free chunks glibc would keep resident.
            let trimmed = crate::memory::release_free_heap();
            tracing::debug!(rollouts = jobs.len(), trimmed, "gave free heap pages back");
        }
        self.state.metrics.ticks.inc();
        let took = (self.now() - now).to_std().unwrap_or_default();
        self.state.metrics.tick_duration.observe(took.as_secs_f64());
    }

    /// Run preflight for due rollouts whose plan revision has not been checked yet (every new
    /// revision, before its first write) or whose objects changed since (a watched change).
    /// The mesh objects are read, and the checks that look at all of them run, once per
    /// namespace rather than once per rollout.
    async fn preflight(&mut self, jobs: &[Job]) {
        let mut by_namespace: BTreeMap<String, Vec<Arc<Plan>>> = BTreeMap::new();
        for job in jobs {
            let Some(entry) = self.registry.get(&job.id) else {
                continue;
            };
            // The newest valid revision is checked before its first write; without one, the
            // revision being run.
            let newest = entry.plan.as_ref().ok().filter(|_| !entry.removed).cloned();
            let Some(plan) = newest.or_else(|| entry.current_plan()) else {
                continue;
            };
            let checked = entry.preflight_digest.as_deref() == Some(plan.digest().as_str())
                && entry.preflight_errors.is_empty()
                && !entry.watches_services();
            if !checked {
                by_namespace
                    .entry(plan.id.namespace.clone())
                    .or_default()
                    .push(plan);
            }
        }
        for plans in by_namespace.values() {
            let results = self.check_objects(plans).await;
            for (plan, checked) in plans.iter().zip(results) {
                if let Some(entry) = self.registry.get_mut(&plan.id) {
                    entry.preflight_digest = Some(plan.digest());
                    entry.preflight_errors = checked.errors;
                    if checked.subsets.is_some() {
                        entry.subsets = checked.subsets;
                    }
                    if let Some(present) = checked.present {
                        entry.present = Some(present);
                    }
                    if let Some(absent) = checked.absent_hosts {
                        entry.absent_hosts = absent;
                    }
                    entry.canary_elsewhere = checked.canary_elsewhere;
                    entry.dropping = checked.dropping;
                }
            }
        }
    }

    /// What preflight finds for each of `plans` (all of one namespace): error-level findings,
    /// the subset labels of its DestinationRule, the subsets it lacks, the unmanaged routes
    /// that send to the canary and the weight-0 destinations the first write drops.
    async fn check_objects(&mut self, plans: &[Arc<Plan>]) -> Vec<Checked> {
        let targets: Vec<Target> = plans.iter().map(|p| Target::from_plan(p)).collect();
        if targets.is_empty() {
            return Vec::new();
        }
        // The objects depend only on the namespace, which all the targets share.
        let read = match self.parts.mesh.objects(&targets).await {
            Ok(v) => v,
            Err(e) => {
                let error = format!("preflight could not read the mesh objects: {e}");
                return plans
                    .iter()
                    .map(|_| Checked {
                        errors: vec![error.clone()],
                        ..Checked::default()
                    })
                    .collect();
            }
        };
        self.warn_unread(&read);
        let values = read.objects;
        let objects: Vec<preflight::Object> = values
            .iter()
            .map(|v| preflight::Object::new(v.clone(), None))
            .collect();
        let findings = preflight::check_rollouts_live(&objects, &read.seen, &targets);
        let mut out = Vec::with_capacity(plans.len());
        for ((plan, target), findings) in plans.iter().zip(&targets).zip(findings) {
            for f in findings
                .iter()
                .filter(|f| f.severity != preflight::Severity::Error)
            {
                tracing::warn!(rollout = %plan.id, code = f.code, finding = %f, "preflight");
            }
            let mut checked = observe_objects(&values, plan, target);
            checked.errors = preflight::blocking(&findings);
            checked.absent_hosts = self.absent_hosts(&objects, &read.seen, plan);
            out.push(checked);
        }
        out
    }

    /// The Service hosts of `plan` and of the revision its rollout runs that the objects show
    /// missing; `None` when neither splits by host.
    fn absent_hosts(
        &self,
        objects: &[preflight::Object],
        seen: &preflight::Seen,
        plan: &Plan,
    ) -> Option<BTreeSet<String>> {
        let running = self.registry.get(&plan.id).and_then(|e| e.current_plan());
        let hosts: Vec<&str> = [Some(plan), running.as_deref()]
            .into_iter()
            .flatten()
            .filter(|p| p.split == Split::Host)
            .flat_map(|p| [p.stable.as_str(), p.canary.as_str()])
            .collect();
        (!hosts.is_empty())
            .then(|| preflight::absent_hosts(objects, seen, &plan.id.namespace, hosts))
    }

    /// Warn once about each kind preflight cannot read (its checks say nothing; no rollout is
    /// held for it), and forget the warning once the kind is read again.
    fn warn_unread(&mut self, read: &MeshObjects) {
        self.unread.retain(|u| !read.seen.has(u.kind, &u.namespace));
        for u in &read.unread {
            if self.unread.insert(u.clone()) {
                tracing::warn!(
                    kind = u.kind.as_str(),
                    namespace = %u.namespace,
                    why = u.why.as_str(),
                    "{u}"
                );
            }
        }
    }

    /// One batched analysis round for the due rollouts whose round is due; each result waits in
    /// its entry until a decision consumes it.
    async fn analyse(&mut self, jobs: &[Job], now: DateTime<Utc>) {
        let mut targets = Vec::new();
        let mut empty = Vec::new();
        for job in jobs.iter().filter(|j| j.analyse) {
            let Some(e) = self.registry.get(&job.id) else {
                continue;
            };
            let Some(plan) = e.current_plan() else {
                continue;
            };
            let subsets = e.subsets.clone().unwrap_or_else(SubsetLabels::fallback);
            // `test: counts` pools the rounds since the current step began.
            let step_start = e.status.as_ref().map(|s| s.step_started_at);
            match AnalysisTarget::from_plan(&plan, &subsets, &self.settings.reporter, step_start) {
                Ok(t) => targets.push(t),
                Err(err) => {
                    tracing::error!(rollout = %job.id, error = %err, "cannot analyse");
                    // An empty round: the rollout waits a whole interval before the next try
                    // (without it the round stays due and the turn repeats at once).
                    empty.push(job.id.clone());
                }
            }
        }
        for id in empty {
            if let Some(e) = self.registry.get_mut(&id) {
                e.round = Some(batch::RolloutResult {
                    id: id.clone(),
                    verdicts: Vec::new(),
                    errors: Vec::new(),
                    stable_queries: Default::default(),
                });
            }
        }
        if targets.is_empty() {
            return;
        }
        let plan = batch::plan(&targets);
        let (results, stats) = run_tick(&self.parts.metrics, &plan, None).await;
        for d in &stats.query_durations {
            self.state
                .metrics
                .prometheus_query_duration
                .observe(d.as_secs_f64());
        }
        for kind in &stats.errors {
            let labels = crate::telemetry::KindLabels {
                kind: kind.as_str(),
            };
            self.state
                .metrics
                .prometheus_query_errors
                .get_or_create(&labels)
                .inc();
        }
        tracing::debug!(rollouts = targets.len(), queries = stats.queries, failed = stats.failed, at = %now, "analysis round");
        for r in results {
            if let Some(e) = self.registry.get_mut(&r.id) {
                e.round = Some(r);
            }
        }
    }

    /// One rollout's turn, and what the scheduler makes of its outcome.
    async fn handle(&mut self, id: &RolloutId, now: DateTime<Utc>) {
        let outcome = self.attempt(id, now).await;
        if let Outcome::Failed {
            operation,
            message,
            transient,
        } = &outcome
        {
            tracing::warn!(rollout = %id, operation = %operation, transient = *transient, error = %message, "retrying");
        }
        let policy = self.settings.schedule;
        let Some(entry) = self.registry.get_mut(id) else {
            return;
        };
        let next = schedule::after(id, &entry.timers, outcome, now, &policy);
        entry.timers = next.timers;
        if next.report {
            self.report_fault(id, now).await;
        }
        self.answer_while_blocked(id, now);
    }

    /// Controls queued on a rollout whose fault is shown get their answer now (refused with
    /// the fault): no control waits unanswered for a write that may never succeed.
    fn answer_while_blocked(&mut self, id: &RolloutId, now: DateTime<Utc>) {
        let Some(entry) = self.registry.get(id) else {
            return;
        };
        let blocked = entry.timers.retry.as_ref().is_some_and(|r| r.reported);
        let queued = !entry.controls.is_empty() || !entry.refused.is_empty();
        let Some(status) = entry.status.as_ref().filter(|s| s.fault.is_some()) else {
            return;
        };
        if !blocked || !queued {
            return;
        }
        let obs = Observation {
            controls: entry.controls.clone(),
            refused: entry.refused.clone(),
            ..Observation::default()
        };
        let decision = rollout::refuse_while_blocked(status, &obs, now);
        let previous = entry.status.clone();
        let plan = entry.current_plan();
        self.announce(plan.as_deref(), &decision, previous.as_ref());
        if let Some(entry) = self.registry.get_mut(id) {
            entry.controls.clear();
            entry.refused.clear();
            entry.status = Some(decision.status);
        }
    }

    /// Observe, decide and carry out.
    async fn attempt(&mut self, id: &RolloutId, now: DateTime<Utc>) -> Outcome {
        let Some(entry) = self.registry.get(id) else {
            return Outcome::Reported;
        };
        let current = entry.current_plan();
        let obs = match &current {
            Some(plan) => {
                let target = Target::from_plan(plan);
                if let Some(outcome) = self.finish_deferred(id, plan, &target).await {
                    return outcome;
                }
                match self.observe(id, plan, &target, now).await {
                    Ok(o) => o,
                    Err(failed) => return failed,
                }
            }
            None => Observation {
                controls: entry.controls.clone(),
                refused: entry.refused.clone(),
                ..Observation::default()
            },
        };
        let Some(entry) = self.registry.get(id) else {
            return Outcome::Reported;
        };
        let decision = rollout::decide(&entry.revisions(), entry.status.as_ref(), &obs, now);
        let run = entry.plan_for(&decision.status.plan.digest);
        if let Some(plan) = &run {
            let target = Target::from_plan(plan);
            if let Err(e) = self.write_traffic(id, &target, &decision).await {
                self.state.metrics.mesh_write_errors.inc();
                if let Some(entry) = self.registry.get_mut(id) {
                    entry.deferred = Some(Box::new(decision));
                }
                return failed(WRITING, &e);
            }
        }
        let forget = decision.effects.contains(&Effect::Forget);
        let outcome = self.complete(id, run.as_deref(), decision);
        if forget {
            self.forget(id).await;
        }
        outcome
    }

    /// One owner per route (see `Registry::refuse_second_owners`).
    fn refuse_second_owners(&mut self, now: DateTime<Utc>) {
        let (refused, given_back) = self.registry.refuse_second_owners(now);
        for id in refused {
            tracing::warn!(rollout = %id, "refused: another plan manages the same route");
        }
        for id in given_back {
            tracing::info!(rollout = %id, "the route's other owner is gone; this plan now runs");
        }
    }

    /// The plan is gone and its routes are clean: stop managing the rollout.
    async fn forget(&mut self, id: &RolloutId) {
        tracing::info!(rollout = %id, "plan removed and routes cleared; tidegate no longer manages this rollout");
        let last = self.registry.get(id).and_then(|e| e.status.as_ref());
        self.state.metrics.forget(id, last);
        self.registry.forget(id);
        let now = self.now();
        self.refuse_second_owners(now);
        self.parts.statuses.remove(id);
        self.state.statuses.write().await.remove(id);
        self.parts.mesh.watch(&self.registry.namespaces());
    }

    /// A decision whose write failed: if the mesh shows its routes after all (the write landed
    /// though its answer was lost), carry it out; otherwise forget it and decide afresh.
    async fn finish_deferred(
        &mut self,
        id: &RolloutId,
        plan: &Arc<Plan>,
        target: &Target,
    ) -> Option<Outcome> {
        let deferred = self.registry.get_mut(id)?.deferred.take()?;
        match self
            .parts
            .mesh
            .read_back(target, &deferred.status.route)
            .await
        {
            Ok(ReadBack::Verified) => {
                tracing::info!(rollout = %id, "a write reported as failed had landed; carrying its decision out");
                Some(self.complete(id, Some(plan), *deferred))
            }
            Ok(_) => None,
            Err(e) => {
                if let Some(entry) = self.registry.get_mut(id) {
                    entry.deferred = Some(deferred);
                }
                Some(failed(READING, &e))
            }
        }
    }

    /// Everything the engine is told about `id` now.
    async fn observe(
        &self,
        id: &RolloutId,
        plan: &Plan,
        target: &Target,
        now: DateTime<Utc>,
    ) -> Result<Observation, Outcome> {
        let Some(entry) = self.registry.get(id) else {
            return Err(Outcome::Reported);
        };
        let read_back = match &entry.status {
            Some(s) if !s.phase.is_terminal() && s.phase != Phase::Pending => self
                .parts
                .mesh
                .read_back(target, &s.route)
                .await
                .map_err(|e| failed(READING, &e))?,
            _ => ReadBack::Unknown,
        };
        Ok(Observation {
            read_back,
            verdicts: entry
                .round
                .as_ref()
                .map(|r| r.verdicts.clone())
                .unwrap_or_default(),
            controls: entry.controls.clone(),
            refused: entry.refused.clone(),
            metrics_unreachable: entry.round.as_ref().is_some_and(|r| r.unreachable()),
            outside_window: plan.window.as_ref().is_some_and(|w| !w.contains(now)),
            preflight_errors: entry.preflight_errors.clone(),
            present_subsets: entry.present.clone(),
            absent_hosts: entry.absent_hosts.clone(),
            canary_elsewhere: entry.canary_elsewhere.clone(),
            dropping: entry.dropping.clone(),
            ..Observation::default()
        })
    }

    /// The traffic effects of `decision`, in order.
    async fn write_traffic(
        &self,
        id: &RolloutId,
        target: &Target,
        decision: &Decision,
    ) -> Result<(), M::Error> {
        for effect in &decision.effects {
            let (report, route) = match effect {
                Effect::SetRoute { route } => {
                    (self.parts.mesh.set_route(target, route).await?, route)
                }
                Effect::ClearManagedRoutes { route } => {
                    (self.parts.mesh.clear(target, route).await?, route)
                }
                _ => continue,
            };
            if report.patched {
                tracing::info!(
                    rollout = %id,
                    canary_weight = route.canary_weight,
                    header_route = route.header_route.is_some(),
                    mirror_percent = route.mirror_percent,
                    cleared = matches!(effect, Effect::ClearManagedRoutes { .. }),
                    "routes written"
                );
            }
        }
        Ok(())
    }

    /// Carry out the rest of a decision whose traffic landed, and consume its inputs.
    fn complete(&mut self, id: &RolloutId, plan: Option<&Plan>, decision: Decision) -> Outcome {
        let previous = self.registry.get(id).and_then(|e| e.status.clone());
        self.announce(plan, &decision, previous.as_ref());
        let Some(entry) = self.registry.get_mut(id) else {
            return Outcome::Reported;
        };
        entry.controls.clear();
        entry.refused.clear();
        entry.deferred = None;
        let consumed_round = entry.round.take().is_some();
        let wake_at = decision.wake_at;
        entry.status = Some(decision.status);
        let analysis_interval = entry
            .is_analysed()
            .then(|| plan.map(|p| p.analysis.interval))
            .flatten();
        Outcome::Decided {
            wake_at,
            analysis_interval,
            consumed_round,
        }
    }

    /// Notifications, Events, the status commit and the daemon's metrics of a decision.
    fn announce(&self, plan: Option<&Plan>, decision: &Decision, previous: Option<&Status>) {
        let channels: &[String] = plan.map(|p| p.notify.as_slice()).unwrap_or(&[]);
        for effect in &decision.effects {
            if let Effect::Notify { event, message } = effect {
                tracing::info!(rollout = %decision.status.rollout, event = crate::notify::event_name(*event), "{message}");
                self.parts
                    .notifier
                    .send(crate::notify::Notification::from_status(
                        &decision.status,
                        *event,
                        message.clone(),
                        channels,
                    ));
            }
        }
        if let Some(plan) = plan {
            self.parts.events.record(plan, &decision.transitions);
        }
        if decision.effects.contains(&Effect::RecordStatus) {
            self.parts.statuses.submit(decision.status.clone());
        }
        self.state.metrics.observe(&decision.status, previous);
    }

    /// Show a lasting failure in the status (no traffic effect; inputs stay queued).
    async fn report_fault(&mut self, id: &RolloutId, now: DateTime<Utc>) {
        let Some(entry) = self.registry.get(id) else {
            return;
        };
        let (Some(plan), Some(retry)) = (entry.current_plan(), entry.timers.retry.clone()) else {
            return;
        };
        let plan_ref = match &entry.guard {
            Some((g, r)) if Arc::ptr_eq(g, &plan) => r.clone(),
            _ => entry.plan_ref.clone(),
        };
        let fault = Fault {
            operation: retry.operation,
            message: retry.message,
            permanent: !retry.transient,
            since: retry.since,
        };
        tracing::error!(rollout = %id, operation = %fault.operation, permanent = fault.permanent, error = %fault.message, "shown in the status");
        let decision = rollout::fault(&plan, &plan_ref, entry.status.as_ref(), fault, now);
        let previous = entry.status.clone();
        self.announce(Some(&plan), &decision, previous.as_ref());
        let policy = self.settings.schedule;
        if let Some(entry) = self.registry.get_mut(id) {
            entry.status = Some(decision.status);
            entry.timers =
                schedule::after(id, &entry.timers, Outcome::Reported, now, &policy).timers;
        }
    }

    /// Copy the statuses of `jobs` to the API.
    async fn publish(&self, jobs: &[Job]) {
        let fresh: Vec<(RolloutId, Status)> = jobs
            .iter()
            .filter_map(|j| Some((j.id.clone(), self.registry.get(&j.id)?.status.clone()?)))
            .collect();
        let mut statuses = self.state.statuses.write().await;
        for (id, status) in fresh {
            statuses.insert(id, status);
        }
    }

    /// Copy every status to the API.
    async fn publish_all(&self) {
        let all = self
            .registry
            .entries()
            .filter_map(|e| e.status.clone().map(|s| (e.id.clone(), s)))
            .collect();
        *self.state.statuses.write().await = all;
    }
}

/// What a preflight check found out.
#[derive(Default)]
struct Checked {
    errors: Vec<String>,
    subsets: Option<SubsetLabels>,
    /// `None` when the objects could not be read (the last answer stands).
    /// The subsets the DestinationRule defines (none when it is gone).
    present: Option<BTreeSet<String>>,
    /// The Services of host-level plans the objects show missing (`None`: not judged).
    absent_hosts: Option<BTreeSet<String>>,
    canary_elsewhere: Vec<String>,
    dropping: Vec<String>,
}

/// What the namespace's objects say about `plan`: subset labels, missing subsets, unmanaged
/// routes to the canary, weight-0 destinations to drop.
fn observe_objects(values: &[serde_json::Value], plan: &Plan, target: &Target) -> Checked {
    let rule = plan
        .destination_rule
        .as_ref()
        .and_then(|name| find_destination_rule(values, name, &plan.id.namespace));
    let subsets = rule.and_then(|dr| SubsetLabels::from_destination_rule(dr).ok());
    // A host-level plan names no DestinationRule: which subsets exist is not known (`None`),
    // so a subset plan still running beside it (a switch of model) is not judged on them.
    let present: Option<BTreeSet<String>> = match plan.split {
        Split::Host => None,
        Split::Subset => Some(
            subsets
                .as_ref()
                .map(|s| s.subsets.keys().cloned().collect())
                .unwrap_or_default(),
        ),
    };
    let vs = find_virtual_service(values, target);
    let canary_elsewhere = vs
        .map(|vs| {
            preflight::unmanaged_canary_routes(vs, target)
                .into_iter()
                .map(|r| r.name.unwrap_or_else(|| format!("#{}", r.index)))
                .collect()
        })
        .unwrap_or_default();
    let dropping = vs
        .map(|vs| crate::mesh::stale_destinations(vs, target))
        .unwrap_or_default();
    Checked {
        errors: Vec::new(),
        subsets,
        present,
        absent_hosts: None,
        canary_elsewhere,
        dropping,
    }
}

/// The plan's VirtualService among the namespace's objects.
fn find_virtual_service<'v>(
    values: &'v [serde_json::Value],
    target: &Target,
) -> Option<&'v serde_json::Value> {
    values.iter().find(|v| {
        v.get("kind").and_then(serde_json::Value::as_str) == Some("VirtualService")
            && v.pointer("/metadata/name")
                .and_then(serde_json::Value::as_str)
                == Some(target.virtual_service.as_str())
    })
}

/// The outcome of a failed mesh call.
fn failed<E: std::error::Error + Transient>(operation: &str, e: &E) -> Outcome {
    Outcome::Failed {
        operation: operation.to_owned(),
        message: e.to_string(),
        transient: e.is_transient(),
    }
}
