//! One turn of the loop: fold news from Git into the registry, then for every due rollout
//! gather the observation, let the engine decide, carry the decision out (traffic first; only
//! once it landed the notifications, Events and status commit) and hand the outcome to the
//! scheduler. Inputs (controls, an analysis round) are consumed only by a decision that was
//! carried out, so a failed turn loses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::schedule::{self, Job, Outcome};
use super::{App, PlanFeed};
use crate::analysis::batch::{self, Target as AnalysisTarget};
use crate::analysis::subset::{SubsetLabels, find_destination_rule};
use crate::mesh::{Mesh, Target, preflight};
use crate::metrics::{MetricsSource, run_tick};
use crate::plan::{Plan, RolloutId};
use crate::rollout::{self, Decision, Effect, Fault, Observation, Phase, ReadBack, Status};
use crate::transient::Transient;

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
        let policy = &self.settings.policy;
        let controls =
            self.registry
                .apply_commits(&update.commits, policy, &self.settings.namespace, now);
        for msg in plans.unattached.iter().chain(controls.unattached.iter()) {
            tracing::warn!(problem = %msg, "plans repository");
        }
        if !plans.removed.is_empty() {
            let mut statuses = self.state.statuses.write().await;
            for id in plans.removed {
                tracing::info!(rollout = %id, "plan removed; tidegate no longer manages this rollout (traffic left as it is)");
                statuses.remove(&id);
            }
        }
        if !plans.added_or_changed.is_empty() || controls.controls > 0 {
            tracing::info!(changed = plans.added_or_changed.len(), controls = controls.controls, tip = %update.tip, "plans repository updated");
        }
        self.parts.mesh.watch(&self.registry.namespaces());
        if taking_over {
            self.reconcile_routes(now).await;
        }
        // Controls are handed to the engine in this turn; the marker moves once they are in
        // statuses the writer holds.
        self.turn().await;
        if !self.registry.has_pending_controls() {
            self.parts.statuses.processed_through(&update.tip);
        }
    }

    /// Adopt routes that are one write ahead of Git (see `rollout::reconcile`).
    async fn reconcile_routes(&mut self, now: DateTime<Utc>) {
        // Every rollout that may have moved traffic: active ones, and ones without any status in
        // Git (a crash before the first status commit).
        let ids: Vec<RolloutId> = self
            .registry
            .entries()
            .filter(|e| {
                e.plan.is_ok()
                    && (e.is_active()
                        || e.status.as_ref().is_none_or(|s| s.phase == Phase::Pending))
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
                tracing::warn!(rollout = %id, step = adopted.step, canary_weight = actual.canary_weight, "adopting routes found after restart");
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
        self.state.metrics.ticks.inc();
        let took = (self.now() - now).to_std().unwrap_or_default();
        self.state.metrics.tick_duration.observe(took.as_secs_f64());
    }

    /// Run preflight for due rollouts that have not started (once per plan digest, again after
    /// errors or a change of the objects they depend on). The mesh objects are read, and the
    /// checks that look at all of them run, once per namespace rather than once per rollout.
    async fn preflight(&mut self, jobs: &[Job]) {
        let mut by_namespace: BTreeMap<String, Vec<Arc<Plan>>> = BTreeMap::new();
        for job in jobs {
            let Some(entry) = self.registry.get(&job.id) else {
                continue;
            };
            let Ok(plan) = entry.plan.clone() else {
                continue;
            };
            let pending = entry
                .status
                .as_ref()
                .is_none_or(|s| s.phase == Phase::Pending);
            let checked = entry.preflight_digest.as_deref() == Some(entry.plan_ref.digest.as_str())
                && entry.preflight_errors.is_empty();
            if !pending || checked {
                continue;
            }
            let ns = plan.id.namespace.clone();
            by_namespace.entry(ns).or_default().push(plan);
        }
        for plans in by_namespace.values() {
            let results = self.check_objects(plans).await;
            for (plan, (errors, subsets)) in plans.iter().zip(results) {
                if let Some(entry) = self.registry.get_mut(&plan.id) {
                    entry.preflight_digest = Some(entry.plan_ref.digest.clone());
                    entry.preflight_errors = errors;
                    entry.subsets = subsets;
                }
            }
        }
    }

    /// Preflight's error-level findings for each of `plans` (all of one namespace), and the
    /// subset labels of its DestinationRule.
    async fn check_objects(&self, plans: &[Arc<Plan>]) -> Vec<(Vec<String>, Option<SubsetLabels>)> {
        let targets: Vec<Target> = plans.iter().map(|p| Target::from_plan(p)).collect();
        let Some(first) = targets.first() else {
            return Vec::new();
        };
        // The objects depend only on the namespace, which all the targets share.
        let values = match self.parts.mesh.objects(first).await {
            Ok(v) => v,
            Err(e) => {
                let error = format!("preflight could not read the mesh objects: {e}");
                return plans.iter().map(|_| (vec![error.clone()], None)).collect();
            }
        };
        let objects: Vec<preflight::Object> = values
            .iter()
            .map(|v| preflight::Object::new(v.clone(), None))
            .collect();
        let findings = preflight::check_rollouts(&objects, &targets);
        let mut out = Vec::with_capacity(plans.len());
        for (plan, findings) in plans.iter().zip(findings) {
            let subsets =
                find_destination_rule(&values, &plan.destination_rule, &plan.id.namespace)
                    .and_then(|dr| SubsetLabels::from_destination_rule(dr).ok());
            for f in findings
                .iter()
                .filter(|f| f.severity != preflight::Severity::Error)
            {
                tracing::warn!(rollout = %plan.id, code = f.code, finding = %f, "preflight");
            }
            out.push((preflight::blocking(&findings), subsets));
        }
        out
    }

    /// One batched analysis round for the due rollouts whose round is due; each result waits in
    /// its entry until a decision consumes it.
    async fn analyse(&mut self, jobs: &[Job], now: DateTime<Utc>) {
        let mut targets = Vec::new();
        for job in jobs.iter().filter(|j| j.analyse) {
            let Some(e) = self.registry.get(&job.id) else {
                continue;
            };
            let Ok(plan) = &e.plan else { continue };
            let subsets = e.subsets.clone().unwrap_or_else(SubsetLabels::fallback);
            // `test: counts` pools the rounds since the current step began.
            let step_start = e.status.as_ref().map(|s| s.step_started_at);
            match AnalysisTarget::from_plan(plan, &subsets, &self.settings.reporter, step_start) {
                Ok(t) => targets.push(t),
                Err(err) => tracing::error!(rollout = %job.id, error = %err, "cannot analyse"),
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
    }

    /// Observe, decide and carry out.
    async fn attempt(&mut self, id: &RolloutId, now: DateTime<Utc>) -> Outcome {
        let Some(entry) = self.registry.get(id) else {
            return Outcome::Reported;
        };
        let plan = match &entry.plan {
            Ok(p) => p.clone(),
            Err(findings) => {
                let decision = rollout::invalid(
                    id,
                    &entry.plan_ref,
                    findings.clone(),
                    entry.status.as_ref(),
                    now,
                );
                return self.complete(id, None, decision);
            }
        };
        let target = Target::from_plan(&plan);
        if let Some(outcome) = self.finish_deferred(id, &plan, &target).await {
            return outcome;
        }
        let obs = match self.observe(id, &plan, &target, now).await {
            Ok(o) => o,
            Err(failed) => return failed,
        };
        let Some(entry) = self.registry.get(id) else {
            return Outcome::Reported;
        };
        let decision = rollout::step(&plan, &entry.plan_ref, entry.status.as_ref(), &obs, now);
        if let Err(e) = self.write_traffic(id, &target, &decision).await {
            self.state.metrics.mesh_write_errors.inc();
            if let Some(entry) = self.registry.get_mut(id) {
                entry.deferred = Some(Box::new(decision));
            }
            return failed(WRITING, &e);
        }
        self.complete(id, Some(&plan), decision)
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
        let (Ok(plan), Some(retry)) = (entry.plan.clone(), entry.timers.retry.clone()) else {
            return;
        };
        let fault = Fault {
            operation: retry.operation,
            message: retry.message,
            permanent: !retry.transient,
            since: retry.since,
        };
        tracing::error!(rollout = %id, operation = %fault.operation, permanent = fault.permanent, error = %fault.message, "shown in the status");
        let decision = rollout::fault(&plan, &entry.plan_ref, entry.status.as_ref(), fault, now);
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

/// The outcome of a failed mesh call.
fn failed<E: std::error::Error + Transient>(operation: &str, e: &E) -> Outcome {
    Outcome::Failed {
        operation: operation.to_owned(),
        message: e.to_string(),
        transient: e.is_transient(),
    }
}
