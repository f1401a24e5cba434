//! The daemon's view of every rollout: its plan (or why it is invalid), its status, pending
//! control requests and when it next needs attention. Updated from Git polls; no I/O here.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::schedule::{Candidate, Timers};
use crate::analysis::batch::RolloutResult;
use crate::analysis::subset::SubsetLabels;
use crate::control::{ParsedControl, Policy, RefusedRecord, Target, control_trailers, resolve};
use crate::git::{NewCommit, PlanChanges, PlanContent, PlanFile};
use crate::mesh::{Target as MeshTarget, preflight};
use std::sync::Arc;

use crate::plan::{self, Plan, RolloutId};
use crate::rollout::{ControlRequest, Newest, Phase, PlanRef, RefusedControl, Revisions, Status};

/// One rollout known to the daemon.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: RolloutId,
    /// The plan file it comes from.
    pub path: String,
    /// The valid plan (shared: every decision borrows it), or the findings that make it invalid.
    pub plan: Result<Arc<Plan>, Vec<String>>,
    pub plan_ref: PlanRef,
    pub status: Option<Status>,
    /// When it is handled next (see `schedule`).
    pub timers: Timers,
    /// An analysis round no decision has consumed yet (kept across failed turns).
    pub round: Option<RolloutResult>,
    /// Controls not yet given to a decision that was carried out, oldest first.
    pub controls: Vec<ControlRequest>,
    pub refused: Vec<RefusedControl>,
    /// Subset labels from the DestinationRule, found by preflight.
    pub subsets: Option<SubsetLabels>,
    /// Error-level preflight findings of the last check.
    pub preflight_errors: Vec<String>,
    /// The plan digest preflight last ran for.
    pub preflight_digest: Option<String>,
    /// A decision whose traffic write failed: if the write landed after all (a timeout), the
    /// next turn completes it; otherwise the next turn decides afresh.
    pub deferred: Option<Box<crate::rollout::Decision>>,
    /// The last valid revision before `plan` (kept while the newest is invalid, removed, or a
    /// new release waits for the running one).
    pub guard: Option<(Arc<Plan>, PlanRef)>,
    /// The plan is gone from Git; the entry stays until its routes are clean.
    pub removed: bool,
    /// The subsets its DestinationRule defines (as last checked; `None`: not checked yet).
    pub present: Option<BTreeSet<String>>,
    /// Service hosts of its host-level plans that the objects showed missing (as last checked).
    pub absent_hosts: BTreeSet<String>,
    /// Unmanaged routes of the VirtualService that send to the canary (as last checked).
    pub canary_elsewhere: Vec<String>,
    /// Weight-0 destinations of other subsets the first write drops (as last checked).
    pub dropping: Vec<String>,
    /// The status revision whose plan was looked for in Git (so it is read once).
    pub guard_sought: Option<String>,
    /// A valid plan refused because another plan owns its route, with its digest: given back
    /// once the other plan no longer does.
    pub second_owner: Option<(Arc<Plan>, String)>,
}

impl Entry {
    fn new(
        id: RolloutId,
        path: &str,
        plan: Result<Arc<Plan>, Vec<String>>,
        plan_ref: PlanRef,
        now: DateTime<Utc>,
    ) -> Entry {
        Entry {
            id,
            path: path.to_owned(),
            plan,
            plan_ref,
            status: None,
            timers: Timers::due_at(now),
            round: None,
            controls: Vec::new(),
            refused: Vec::new(),
            subsets: None,
            preflight_errors: Vec::new(),
            preflight_digest: None,
            deferred: None,
            guard: None,
            removed: false,
            present: None,
            absent_hosts: BTreeSet::new(),
            canary_elsewhere: Vec::new(),
            dropping: Vec::new(),
            guard_sought: None,
            second_owner: None,
        }
    }

    /// The revisions the engine decides with.
    pub fn revisions(&self) -> Revisions<'_> {
        let newest = match (&self.plan, self.removed) {
            (_, true) => Newest::Removed,
            (Ok(plan), false) => Newest::Valid {
                plan,
                plan_ref: &self.plan_ref,
            },
            (Err(findings), false) => Newest::Invalid {
                plan_ref: &self.plan_ref,
                findings,
            },
        };
        Revisions {
            id: &self.id,
            newest,
            guard: self.guard.as_ref().map(|(p, r)| (&**p, r)),
        }
    }

    /// The plan whose routes the revision `digest` manages: the newest when it is that revision
    /// (or no other is known), else the guard.
    pub fn plan_for(&self, digest: &str) -> Option<Arc<Plan>> {
        let newest = self.plan.as_ref().ok().filter(|_| !self.removed);
        let guard = self.guard.as_ref().filter(|(_, r)| r.digest == digest);
        match (newest, guard) {
            (Some(p), _) if self.plan_ref.digest == digest => Some(p.clone()),
            (_, Some((g, _))) => Some(g.clone()),
            (Some(p), None) => Some(p.clone()),
            (None, None) => self.guard.as_ref().map(|(g, _)| g.clone()),
        }
    }

    /// The plan the current status belongs to (the newest one without a status).
    /// Whether a host-level plan of this entry has traffic on its Services (a deleted Service
    /// is only seen by reading them again: preflight runs at every handling then).
    pub fn watches_services(&self) -> bool {
        let host_level = [self.plan.as_ref().ok().cloned(), self.current_plan()]
            .iter()
            .flatten()
            .any(|p| p.split == crate::plan::Split::Host);
        host_level && self.status.as_ref().is_some_and(|s| s.phase.is_under_way())
    }

    pub fn current_plan(&self) -> Option<Arc<Plan>> {
        match &self.status {
            Some(s) => self.plan_for(&s.plan.digest),
            None => self.plan_for(&self.plan_ref.digest),
        }
    }

    /// Turn the entry into the record of a removed plan (its last valid revision kept).
    fn into_removed(mut self, now: DateTime<Utc>) -> Entry {
        // The revision the status runs guards the rollback (see `insert`).
        let ran = self
            .status
            .as_ref()
            .is_none_or(|s| s.plan.digest == self.plan_ref.digest);
        if let Ok(plan) = &self.plan
            && (ran || self.guard.is_none())
        {
            self.guard = Some((plan.clone(), self.plan_ref.clone()));
        }
        self.plan = Err(vec!["the plan was removed".into()]);
        self.removed = true;
        self.timers.wake_at = Some(now);
        self
    }

    /// Whether the rollout is in a phase where traffic is being managed.
    pub fn is_active(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| !s.phase.is_terminal() && s.phase != Phase::Pending)
    }

    /// Whether its canary is analysed each interval (a phase that analyses, metrics to check).
    pub fn is_analysed(&self) -> bool {
        let phase_analysed = self
            .status
            .as_ref()
            .is_some_and(|s| matches!(s.phase, Phase::Progressing | Phase::Paused));
        phase_analysed
            && self
                .current_plan()
                .is_some_and(|p| !p.analysis.metrics.is_empty())
    }

    /// What the scheduler needs to know of it.
    pub fn candidate(&self) -> Candidate<'_> {
        Candidate {
            id: &self.id,
            timers: &self.timers,
            rolling_back: self
                .status
                .as_ref()
                .is_some_and(|s| s.phase == Phase::RollingBack),
            analysed: self.is_analysed(),
            round_pending: self.round.is_some(),
        }
    }
}

/// A plan file's content, parsed.
struct FileContent {
    plans: Vec<Plan>,
    /// Invalid rollouts whose name could be read, with their findings.
    invalid: Vec<(RolloutId, Vec<String>)>,
    /// Findings that name no rollout (broken YAML, an unreadable file).
    unattributed: Vec<String>,
}

/// A parse result as plans, invalid named rollouts and findings that name none.
fn split(parsed: plan::Parsed) -> FileContent {
    let mut invalid = Vec::new();
    let mut unattributed = Vec::new();
    for (id, findings) in parsed.invalid {
        let messages: Vec<String> = findings.iter().map(ToString::to_string).collect();
        match id {
            Some(id) => invalid.push((id, messages)),
            None => unattributed.extend(messages),
        }
    }
    FileContent {
        plans: parsed.plans,
        invalid,
        unattributed,
    }
}

/// What a poll changed, for logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub added_or_changed: Vec<RolloutId>,
    /// Removed plans that never moved traffic: forgotten at once.
    pub removed: Vec<RolloutId>,
    /// Removed plans of rollouts that moved traffic: kept (guarded by their last valid
    /// revision) until their routes are clean.
    pub retiring: Vec<RolloutId>,
    pub invalid: Vec<RolloutId>,
    /// Problems that could not be attached to a rollout (unreadable files without a known
    /// rollout, duplicate names).
    pub unattached: Vec<String>,
    pub controls: usize,
    /// Controls that name no rollout (unknown, ambiguous, malformed): answered in the
    /// repository-level record, not in a rollout's status.
    pub refused: Vec<RefusedRecord>,
}

/// Every rollout, by id.
#[derive(Debug, Default)]
pub struct Registry {
    entries: BTreeMap<RolloutId, Entry>,
    by_path: BTreeMap<String, BTreeSet<RolloutId>>,
    /// Statuses read from Git for rollouts whose plan is not (yet) known.
    orphans: BTreeMap<RolloutId, Status>,
    /// Files with a definition ignored because another file defines the rollout: read again
    /// when that file gives it up (a plan moved to another file in two commits).
    shadowed: BTreeMap<String, PlanFile>,
}

impl Registry {
    pub fn get(&self, id: &RolloutId) -> Option<&Entry> {
        self.entries.get(id)
    }

    pub fn get_mut(&mut self, id: &RolloutId) -> Option<&mut Entry> {
        self.entries.get_mut(id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.entries.values_mut()
    }

    /// Statuses read from Git (at start-up, or when leadership is taken over).
    pub fn load_statuses(&mut self, statuses: Vec<Status>) {
        for s in statuses {
            match self.entries.get_mut(&s.rollout) {
                Some(e) => e.status = Some(s),
                None => {
                    self.orphans.insert(s.rollout.clone(), s);
                }
            }
        }
    }

    /// Statuses whose plan is gone (the plan was removed while no daemon ran): removed
    /// entries, so the engine rolls them back or clears their routes before letting go.
    pub fn adopt_orphans(&mut self, now: DateTime<Utc>) {
        for (id, status) in std::mem::take(&mut self.orphans) {
            let path = status.plan.path.clone();
            let gone = Err(vec!["the plan was removed".into()]);
            let mut entry = Entry::new(id, &path, gone, status.plan.clone(), now);
            entry.removed = true;
            entry.status = Some(status);
            self.put(entry);
        }
    }

    /// Rollouts whose status belongs to a revision the daemon does not hold (a restart while
    /// the newest revision is invalid, removed or another one): the revision to read from Git.
    pub fn missing_guards(&self) -> Vec<(RolloutId, PlanRef)> {
        self.entries
            .values()
            .filter_map(|e| {
                let s = e.status.as_ref()?;
                let newest_runs =
                    e.plan.is_ok() && !e.removed && e.plan_ref.digest == s.plan.digest;
                let needed = e.guard.is_none()
                    && e.guard_sought.as_deref() != Some(s.plan.digest.as_str())
                    && !newest_runs
                    && !s.plan.digest.is_empty()
                    && !s.plan.revision.is_empty()
                    && !matches!(s.phase, Phase::Pending | Phase::Invalid);
                needed.then(|| (e.id.clone(), s.plan.clone()))
            })
            .collect()
    }

    /// The last valid revision, read back from Git.
    pub fn set_guard(
        &mut self,
        id: &RolloutId,
        plan: Option<Plan>,
        plan_ref: PlanRef,
        now: DateTime<Utc>,
    ) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        e.guard_sought = Some(plan_ref.digest.clone());
        if let Some(plan) = plan {
            e.guard = Some((Arc::new(plan), plan_ref));
            e.timers.wake_at = Some(now);
        }
    }

    /// One owner per route: of two valid plans that would manage a common route of one
    /// VirtualService, the one that did not hold it first (no status that moved traffic, or
    /// the later in name order) is refused: invalid with the finding, visibly. A plan refused
    /// earlier is reconsidered each time (its owner may be gone) and woken at `now` when given
    /// back. Returns the newly refused and the given back.
    pub fn refuse_second_owners(&mut self, now: DateTime<Utc>) -> (Vec<RolloutId>, Vec<RolloutId>) {
        let before: BTreeSet<RolloutId> = self
            .entries
            .values_mut()
            .filter_map(|e| {
                let (plan, digest) = e.second_owner.take()?;
                e.plan = Ok(plan);
                e.plan_ref.digest = digest;
                Some(e.id.clone())
            })
            .collect();
        let mut refused = Vec::new();
        for (id, finding) in self.second_owners() {
            if let Some(e) = self.entries.get_mut(&id)
                && let Ok(plan) = e.plan.clone()
            {
                e.second_owner = Some((plan, std::mem::take(&mut e.plan_ref.digest)));
                e.plan = Err(vec![format!("{}: {finding}", e.path)]);
                if !before.contains(&id) {
                    refused.push(id);
                }
            }
        }
        let given_back: Vec<RolloutId> = before
            .into_iter()
            .filter(|id| {
                self.entries
                    .get(id)
                    .is_some_and(|e| e.second_owner.is_none())
            })
            .collect();
        for id in &given_back {
            if let Some(e) = self.entries.get_mut(id) {
                e.timers.wake_at = Some(now);
            }
        }
        (refused, given_back)
    }

    /// The plans that would manage a route another plan holds, with the finding.
    fn second_owners(&self) -> Vec<(RolloutId, String)> {
        let mut plans: Vec<(bool, RolloutId, MeshTarget)> = self
            .entries
            .values()
            .filter_map(|e| {
                // A removed plan holds its route until its rollback has cleared it.
                let plan = match &e.guard {
                    Some((guard, _)) if e.removed => guard,
                    _ => e.plan.as_ref().ok()?,
                };
                let holds = e
                    .status
                    .as_ref()
                    .is_some_and(|s| !matches!(s.phase, Phase::Pending | Phase::Invalid));
                Some((!holds, e.id.clone(), MeshTarget::from_plan(plan)))
            })
            .collect();
        plans.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let targets: Vec<MeshTarget> = plans.into_iter().map(|(_, _, t)| t).collect();
        preflight::route_owners(&targets, &[])
            .into_iter()
            .map(|f| {
                let id = RolloutId {
                    namespace: f.object.namespace.clone(),
                    name: f.object.name.clone(),
                };
                (id, format!("{}: {} (fix: {})", f.code, f.message, f.hint))
            })
            .collect()
    }

    /// Take one entry out (with its path index).
    fn take(&mut self, id: &RolloutId) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        if let Some(ids) = self.by_path.get_mut(&entry.path) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_path.remove(&entry.path);
            }
        }
        Some(entry)
    }

    /// Stop managing a rollout whose plan is gone and whose routes are clean.
    pub fn forget(&mut self, id: &RolloutId) {
        self.take(id);
    }

    /// Keep a removed plan's entry (as removed) until the engine lets go of it.
    fn keep_removed(&mut self, entry: Entry, now: DateTime<Utc>, applied: &mut Applied) {
        if entry.removed {
            self.put(entry);
            return;
        }
        if entry.status.is_none() {
            applied.removed.push(entry.id.clone());
            return;
        }
        applied.retiring.push(entry.id.clone());
        self.put(entry.into_removed(now));
    }

    fn put(&mut self, entry: Entry) {
        self.by_path
            .entry(entry.path.clone())
            .or_default()
            .insert(entry.id.clone());
        self.entries.insert(entry.id.clone(), entry);
    }

    fn remove_path(&mut self, path: &str) -> Vec<Entry> {
        let ids = self.by_path.remove(path).unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| self.entries.remove(&id))
            .collect()
    }

    /// Put a new definition in (taking `previous` over); `false` when another file already
    /// defines the rollout (this one is ignored, and reported).
    fn insert(&mut self, mut entry: Entry, previous: Option<Entry>, applied: &mut Applied) -> bool {
        let previous = match previous {
            Some(p) => Some(p),
            None if self.entries.get(&entry.id).is_some_and(|e| e.removed) => self.take(&entry.id),
            None => None,
        };
        if let Some(existing) = self.entries.get(&entry.id)
            && existing.path != entry.path
        {
            applied.unattached.push(format!(
                "{}: rollout {} is already defined in {}; this definition is ignored",
                entry.path, entry.id, existing.path
            ));
            return false;
        }
        match previous {
            Some(prev) => {
                // The guard is the revision the status runs: the previous valid revision when it
                // ran (or nothing ran yet); one that never ran (a new release that could not
                // start) keeps the older guard, which still holds the traffic.
                let ran = prev
                    .status
                    .as_ref()
                    .is_none_or(|s| s.plan.digest == prev.plan_ref.digest);
                entry.guard = match &prev.plan {
                    Ok(p) if !prev.removed && (ran || prev.guard.is_none()) => {
                        Some((p.clone(), prev.plan_ref.clone()))
                    }
                    _ => prev.guard.clone(),
                };
                entry.present = prev.present.clone();
                entry.absent_hosts = prev.absent_hosts.clone();
                entry.canary_elsewhere = prev.canary_elsewhere.clone();
                entry.status = prev.status.clone();
                entry.controls = prev.controls.clone();
                entry.refused = prev.refused.clone();
                // The same plan keeps running (the newest revision is the same, or the guard
                // runs on): its checks, round and timers carry over.
                if entry.current_plan().map(|p| p.digest())
                    == prev.current_plan().map(|p| p.digest())
                {
                    entry.subsets = prev.subsets;
                    entry.preflight_errors = prev.preflight_errors;
                    entry.preflight_digest = prev.preflight_digest;
                    entry.timers.next_analysis = prev.timers.next_analysis;
                    entry.timers.retry = prev.timers.retry;
                    entry.round = prev.round;
                    entry.deferred = prev.deferred;
                }
            }
            None => entry.status = self.orphans.remove(&entry.id),
        }
        if entry.plan.is_err() {
            applied.invalid.push(entry.id.clone());
        }
        applied.added_or_changed.push(entry.id.clone());
        self.by_path
            .entry(entry.path.clone())
            .or_default()
            .insert(entry.id.clone());
        self.entries.insert(entry.id.clone(), entry);
        true
    }

    /// Apply the plan files of a poll.
    pub fn apply_plans(&mut self, changes: &PlanChanges, now: DateTime<Utc>) -> Applied {
        let mut applied = Applied::default();
        if changes.full {
            let keep: BTreeSet<&str> = changes.changed.iter().map(|f| f.path.as_str()).collect();
            let gone: Vec<String> = self
                .by_path
                .keys()
                .filter(|p| !keep.contains(p.as_str()))
                .cloned()
                .collect();
            for p in gone {
                for e in self.remove_path(&p) {
                    self.keep_removed(e, now, &mut applied);
                }
            }
        }
        for p in &changes.removed {
            for e in self.remove_path(p) {
                self.keep_removed(e, now, &mut applied);
            }
        }
        for p in &changes.removed {
            self.shadowed.remove(p);
        }
        for file in &changes.changed {
            self.read_file(file, now, &mut applied);
        }
        self.uncover(now, &mut applied);
        applied
    }

    fn read_file(&mut self, file: &PlanFile, now: DateTime<Utc>, applied: &mut Applied) {
        let previous = self.take_file(&file.path);
        let content = match &file.content {
            PlanContent::Unreadable(reason) => FileContent {
                plans: Vec::new(),
                invalid: Vec::new(),
                unattributed: vec![reason.clone()],
            },
            PlanContent::Text(text) => split(plan::parse_str(&file.path, text)),
        };
        self.apply_file(file, content, previous, now, applied);
    }

    /// Read again the files whose definitions were ignored as duplicates when the file that
    /// held a rollout no longer does (removed, or it dropped the rollout): the other definition
    /// takes the rollout over, status and all, instead of the rollout being removed.
    fn uncover(&mut self, now: DateTime<Utc>, applied: &mut Applied) {
        let free: Vec<PlanFile> = self
            .shadowed
            .values()
            .filter(|f| {
                let PlanContent::Text(text) = &f.content else {
                    return false;
                };
                let parsed = plan::parse_str(&f.path, text);
                let ids = parsed
                    .plans
                    .iter()
                    .map(|p| p.id.clone())
                    .chain(parsed.invalid.into_iter().filter_map(|(id, _)| id));
                let own = self.by_path.get(&f.path);
                // An ignored definition whose rollout no live entry of another file holds now.
                let taken_over = |id: &RolloutId| {
                    self.entries
                        .get(id)
                        .is_some_and(|e| !e.removed && e.path != f.path)
                };
                ids.into_iter()
                    .filter(|id| own.is_none_or(|o| !o.contains(id)))
                    .any(|id| !taken_over(&id))
            })
            .cloned()
            .collect();
        for file in free {
            self.read_file(&file, now, applied);
        }
    }

    /// The live entries of `path`, taken out (removed ones stay until the engine lets go; a
    /// plan defining them again takes them over).
    fn take_file(&mut self, path: &str) -> BTreeMap<RolloutId, Entry> {
        let (gone, live): (Vec<Entry>, Vec<Entry>) =
            self.remove_path(path).into_iter().partition(|e| e.removed);
        for e in gone {
            self.put(e);
        }
        live.into_iter().map(|e| (e.id.clone(), e)).collect()
    }

    /// One plan file's new content. Findings no rollout can be told from (broken YAML, an
    /// unreadable file) make the rollouts the file defined (or, after a restart, whose statuses
    /// name it) invalid with them, not removed.
    fn apply_file(
        &mut self,
        file: &PlanFile,
        content: FileContent,
        mut previous: BTreeMap<RolloutId, Entry>,
        now: DateTime<Utc>,
        applied: &mut Applied,
    ) {
        let plan_ref = |digest: String| PlanRef {
            path: file.path.clone(),
            revision: file.revision.clone(),
            digest,
        };
        let mut ignored = false;
        for p in content.plans {
            let prev = previous.remove(&p.id);
            let r = plan_ref(p.digest());
            let entry = Entry::new(p.id.clone(), &file.path, Ok(Arc::new(p)), r, now);
            ignored |= !self.insert(entry, prev, applied);
        }
        for (id, messages) in content.invalid {
            let prev = previous.remove(&id);
            let entry = Entry::new(id, &file.path, Err(messages), plan_ref(String::new()), now);
            ignored |= !self.insert(entry, prev, applied);
        }
        if ignored {
            self.shadowed.insert(file.path.clone(), file.clone());
        } else {
            self.shadowed.remove(&file.path);
        }
        let broken = content.unattributed;
        applied.unattached.extend(broken.iter().cloned());
        // Statuses waiting as orphans after a restart, and removed plans of this file, are the
        // file's rollouts too.
        let removed = self
            .entries
            .values()
            .filter(|e| e.removed && e.path == file.path)
            .map(|e| e.id.clone());
        let waiting: Vec<RolloutId> = self
            .orphans
            .iter()
            .filter(|(_, s)| s.plan.path == file.path)
            .map(|(id, _)| id.clone())
            .chain(removed)
            .filter(|_| !broken.is_empty())
            .collect();
        let orphans = waiting.into_iter().map(|id| (id, None));
        let defined = previous.into_iter().map(|(id, e)| (id, Some(e)));
        for (id, prev) in defined.chain(orphans) {
            match prev {
                Some(e) if broken.is_empty() => self.keep_removed(e, now, applied),
                prev => {
                    let findings = Err(broken.clone());
                    let entry = Entry::new(id, &file.path, findings, plan_ref(String::new()), now);
                    self.insert(entry, prev, applied);
                }
            }
        }
    }

    /// Read the control trailers of new commits and queue them on their rollouts, after the
    /// policy's decision; a trailer naming no rollout (a bare name resolves when exactly one
    /// plan in any namespace has it) is refused in `Applied::refused`. tidegate's own commits
    /// are skipped.
    pub fn apply_commits(
        &mut self,
        commits: &[NewCommit],
        policy: &Policy,
        now: DateTime<Utc>,
    ) -> Applied {
        let mut applied = Applied::default();
        let known: Vec<RolloutId> = self.entries.keys().cloned().collect();
        for c in commits.iter().filter(|c| !c.is_own) {
            let info = &c.commit;
            let author = format!("{} <{}>", info.author_name, info.author_email);
            let decision = policy.decide(info);
            for trailer in control_trailers(&info.message) {
                let resolved = trailer.parsed.and_then(|control| {
                    let target = Target {
                        namespace: control.namespace.clone(),
                        name: control.name.clone(),
                    };
                    resolve(&target, &known).map(|id| (id, control))
                });
                let (id, control) = match resolved {
                    Ok(found) => found,
                    Err(unresolved) => {
                        let mut record = RefusedRecord::unresolved(
                            &info.id,
                            &author,
                            &trailer.text,
                            &trailer.name,
                            &unresolved,
                            now,
                        );
                        if let Err(why) = &decision {
                            record.why = format!("{}; besides, {why}", record.why);
                        }
                        applied.refused.push(record);
                        continue;
                    }
                };
                let Some(entry) = self.entries.get_mut(&id) else {
                    continue;
                };
                applied.controls += 1;
                entry.timers.wake_at = Some(now);
                queue(entry, &decision, control, &info.id, &author);
            }
        }
        applied
    }

    /// Every rollout as the scheduler sees it.
    pub fn candidates(&self) -> impl Iterator<Item = Candidate<'_>> {
        self.entries.values().map(Entry::candidate)
    }

    /// The earliest wake-up of any rollout.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        super::schedule::next_wake(self.entries.values().map(|e| &e.timers))
    }

    /// The namespaces that have plans (whose mesh objects are watched).
    pub fn namespaces(&self) -> BTreeSet<String> {
        self.entries.keys().map(|id| id.namespace.clone()).collect()
    }

    /// Whether any rollout still holds controls not yet given to the engine.
    pub fn has_pending_controls(&self) -> bool {
        self.entries
            .values()
            .any(|e| !e.controls.is_empty() || !e.refused.is_empty())
    }
}

/// Queue a control on its rollout, or its refusal by the policy or for an unknown action.
fn queue(
    entry: &mut Entry,
    decision: &Result<(), String>,
    control: ParsedControl,
    commit: &str,
    author: &str,
) {
    let refused_before = entry.refused.len();
    match (decision, control.action) {
        (Ok(()), Ok(action)) => entry.controls.push(ControlRequest {
            action,
            commit: commit.to_owned(),
            author: author.to_owned(),
            reason: control.reason,
        }),
        (Err(why), action) => entry.refused.push(RefusedControl {
            action: action.map_or_else(|w| w, |a| a.to_string()),
            commit: commit.to_owned(),
            author: author.to_owned(),
            why: why.clone(),
        }),
        (Ok(()), Err(word)) => entry.refused.push(RefusedControl {
            why: format!("unknown action `{word}`: use pause, resume, abort, promote or retry"),
            action: word,
            commit: commit.to_owned(),
            author: author.to_owned(),
        }),
    }
    if let Some(r) = entry.refused.get(refused_before) {
        tracing::warn!(rollout = %entry.id, commit = %r.commit, action = %r.action, why = %r.why, "control refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{CommitInfo, SignatureState};
    use crate::git::PlanFile;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .expect("t")
            .with_timezone(&Utc)
    }

    fn file(path: &str, text: &str) -> PlanFile {
        PlanFile {
            path: path.into(),
            revision: "r1".into(),
            blob: "b1".into(),
            content: PlanContent::Text(text.into()),
        }
    }

    const PLAN: &str = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a, namespace: prod}\nspec: {service: a, stable: v1, canary: v2, steps: [{setWeight: 5}]}\n";

    #[test]
    fn plans_are_added_changed_removed_and_invalid_ones_kept() {
        let mut r = Registry::default();
        let bad = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: b, namespace: prod}\nspec: {service: a, stable: v1, canary: v1, steps: [{setWeight: 5}]}\n";
        let changes = PlanChanges {
            full: true,
            changed: vec![file("rollouts/a.yaml", PLAN), file("rollouts/b.yaml", bad)],
            removed: vec![],
        };
        let applied = r.apply_plans(&changes, t0());
        assert_eq!(applied.added_or_changed.len(), 2);
        assert_eq!(applied.invalid.len(), 1);
        let b = r
            .get(&RolloutId {
                namespace: "prod".into(),
                name: "b".into(),
            })
            .expect("b");
        assert!(b.plan.as_ref().is_err_and(|f| f[0].contains("same subset")));
        let removed = r.apply_plans(
            &PlanChanges {
                full: false,
                changed: vec![],
                removed: vec!["rollouts/b.yaml".into()],
            },
            t0(),
        );
        assert_eq!(removed.removed.len(), 1);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn duplicates_in_another_file_are_ignored_and_reported() {
        let mut r = Registry::default();
        let changes = PlanChanges {
            full: true,
            changed: vec![file("rollouts/a.yaml", PLAN), file("rollouts/z.yaml", PLAN)],
            removed: vec![],
        };
        let applied = r.apply_plans(&changes, t0());
        assert_eq!(r.len(), 1);
        assert!(applied.unattached[0].contains("already defined in rollouts/a.yaml"));
    }

    #[test]
    fn controls_are_queued_or_refused_by_policy() {
        let mut r = Registry::default();
        r.apply_plans(
            &PlanChanges {
                full: true,
                changed: vec![file("rollouts/a.yaml", PLAN)],
                removed: vec![],
            },
            t0(),
        );
        let commit = |id: &str, email: &str, msg: &str| NewCommit {
            commit: CommitInfo {
                id: id.into(),
                author_name: "X".into(),
                author_email: email.into(),
                message: msg.into(),
                signature: SignatureState::NotChecked,
            },
            committer_email: email.into(),
            time: t0(),
            is_own: false,
        };
        let policy = Policy::new(&["*@example.com".into()], false).expect("policy");
        let commits = vec![
            commit(
                "c1",
                "ana@example.com",
                "s\n\nTidegate: pause prod/a hold on\n",
            ),
            commit("c2", "eve@evil.test", "s\n\nTidegate: abort prod/a\n"),
            commit("c3", "ana@example.com", "s\n\nTidegate: explode prod/a\n"),
            commit("c4", "ana@example.com", "s\n\nTidegate: pause nobody\n"),
        ];
        let applied = r.apply_commits(&commits, &policy, t0());
        let e = r
            .get(&RolloutId {
                namespace: "prod".into(),
                name: "a".into(),
            })
            .expect("a");
        assert_eq!(e.controls.len(), 1);
        assert_eq!(e.controls[0].reason, "hold on");
        assert_eq!(e.refused.len(), 2);
        assert!(e.refused[0].why.contains("eve@evil.test"));
        assert!(e.refused[1].why.contains("unknown action"));
        assert_eq!(applied.refused.len(), 1);
        assert_eq!(applied.refused[0].commit, "c4");
        assert_eq!(applied.refused[0].trailer, "Tidegate: pause nobody");
        assert!(r.has_pending_controls());
    }

    fn plan(ns: &str, name: &str) -> String {
        PLAN.replace(
            "name: a, namespace: prod",
            &format!("name: {name}, namespace: {ns}"),
        )
    }

    #[test]
    fn names_resolve_in_any_namespace_and_the_rest_is_refused_once() {
        let mut r = Registry::default();
        r.apply_plans(
            &PlanChanges {
                full: true,
                changed: vec![
                    file("rollouts/a.yaml", &plan("production", "orders-svc")),
                    file("rollouts/b.yaml", &plan("staging", "orders-svc")),
                    file("rollouts/c.yaml", &plan("production", "cart")),
                ],
                removed: vec![],
            },
            t0(),
        );
        let msg = "steer\n\nTidegate: pause cart\nTidegate: pause orders-svc\nTidegate: abort production/orders\nTidegate: resume\n";
        let commits = vec![NewCommit {
            commit: CommitInfo {
                id: "c1".into(),
                author_name: "Eve".into(),
                author_email: "eve@evil.test".into(),
                message: msg.into(),
                signature: SignatureState::NotChecked,
            },
            committer_email: "eve@evil.test".into(),
            time: t0(),
            is_own: false,
        }];
        let policy = Policy::new(&["*@example.com".into()], false).expect("policy");
        let applied = r.apply_commits(&commits, &policy, t0());
        let cart = r
            .get(&RolloutId {
                namespace: "production".into(),
                name: "cart".into(),
            })
            .expect("cart");
        assert_eq!(
            cart.refused.len(),
            1,
            "a bare name resolves in any namespace"
        );
        assert_eq!(applied.controls, 1);
        let whys: Vec<&str> = applied.refused.iter().map(|x| x.why.as_str()).collect();
        assert_eq!(applied.refused.len(), 3, "{whys:?}");
        assert!(whys[0].starts_with("orders-svc is ambiguous"), "{whys:?}");
        assert_eq!(
            applied.refused[0].plans,
            ["production/orders-svc", "staging/orders-svc"]
        );
        assert!(whys[1].starts_with("no plan defines production/orders;"));
        assert!(whys[1].contains("eve@evil.test"), "the policy's answer too");
        assert_eq!(applied.refused[1].plans[0], "production/orders-svc");
        assert!(whys[2].contains("names no rollout"), "{whys:?}");
        assert_eq!(applied.refused[2].trailer, "Tidegate: resume");
    }
}
