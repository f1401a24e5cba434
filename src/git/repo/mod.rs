//! [`GitRepo`]: the bare mirror, fetch, plan and commit discovery, and status commits pushed with
//! retry on a non-fast-forward rejection (rebuilt on the new tip, never forced).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use git2::{FetchOptions, Oid, PushOptions, Repository, Signature};
use sha2::{Digest, Sha256};

use super::commits::{self, NewCommit, OWN_PROCESSED_TRAILER, OWN_STATUS_TRAILER};
use super::plans::{PlanFile, PlanIndex};
use super::signers::AllowedSigners;
use super::signing::{CommitSigner, create_commit};
use super::status_doc::{read_status_documents, render_status, status_path};
use super::transport::{CallState, Transport};
use super::{GitConfig, GitError, PlanSource, StateStore};
use crate::rollout::Status;

const OUTGOING_REF: &str = "refs/tidegate/outgoing";

/// The branch was rewritten: the previously seen tip is not an ancestor of the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForcePush {
    pub previous: String,
    pub current: String,
}

/// Plan files that changed since the previous poll.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanChanges {
    /// True when every plan was read (first poll, or after a force push): plans not listed in
    /// `changed` no longer exist.
    pub full: bool,
    pub changed: Vec<PlanFile>,
    /// Paths of plan files that disappeared.
    pub removed: Vec<String>,
}

/// The result of one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUpdate {
    /// The branch tip now; pass it as `processed_through` once the controls are applied.
    pub tip: String,
    pub plans: PlanChanges,
    /// Commits added since the last processed one, oldest first (including tidegate's own,
    /// flagged `is_own`).
    pub commits: Vec<NewCommit>,
    pub force_push: Option<ForcePush>,
}

/// The result of one status write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The pushed commit; `None` when the branch already held exactly these documents.
    pub commit: Option<String>,
    /// Push attempts used (1 when the first push landed).
    pub attempts: u32,
    /// Transitions recorded (one `Tidegate-Status` trailer each).
    pub transitions: usize,
    /// Statuses that could not be written (bad file name, render failure), with the reason.
    pub skipped: Vec<String>,
}

/// The plans repository: a bare mirror with no work tree.
pub struct GitRepo {
    config: GitConfig,
    transport: Transport,
    repo: Repository,
    mirror_path: PathBuf,
    tracking_ref: String,
    plans: PlanIndex,
    /// Tip at the previous poll.
    seen_tip: Option<Oid>,
    /// Marker written into status commits (`Tidegate-Processed`).
    marker: Option<Oid>,
    signers: Option<AllowedSigners>,
    signer: Option<CommitSigner>,
}

impl std::fmt::Debug for GitRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRepo")
            .field("url", &self.transport.redacted)
            .field("branch", &self.config.branch)
            .field("mirror", &self.mirror_path)
            .finish_non_exhaustive()
    }
}

enum PushResult {
    Landed,
    Rejected(String),
}

impl GitRepo {
    /// Open (or create) the bare mirror for `config.url` under `config.data_dir`. No network.
    pub fn open(config: GitConfig) -> Result<GitRepo, GitError> {
        config.validate()?;
        let transport = Transport::new(&config)?;
        let plans = PlanIndex::new(&config.plan_glob, config.max_plan_bytes)?;
        let digest = Sha256::digest(transport.redacted.as_bytes());
        let mirror_path = config
            .data_dir
            .join("git")
            .join(format!("{}.git", &hex::encode(digest)[..16]));
        let repo = match Repository::open_bare(&mirror_path) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(&mirror_path).map_err(|e| GitError::Mirror {
                    path: mirror_path.clone(),
                    reason: e.to_string(),
                })?;
                Repository::init_bare(&mirror_path).map_err(|e| GitError::Mirror {
                    path: mirror_path.clone(),
                    reason: e.message().to_string(),
                })?
            }
        };
        let signers = config
            .allowed_signers
            .as_deref()
            .map(AllowedSigners::load)
            .transpose()?;
        let signer = config
            .signing_key
            .as_deref()
            .map(CommitSigner::load)
            .transpose()?;
        let tracking_ref = format!("refs/remotes/origin/{}", config.branch);
        tracing::info!(url = %transport.redacted, branch = %config.branch, mirror = %mirror_path.display(), "opened git mirror");
        Ok(GitRepo {
            config,
            transport,
            repo,
            mirror_path,
            tracking_ref,
            plans,
            seen_tip: None,
            marker: None,
            signers,
            signer,
        })
    }

    /// The URL without credentials.
    pub fn redacted_url(&self) -> &str {
        &self.transport.redacted
    }

    pub fn mirror_path(&self) -> &std::path::Path {
        &self.mirror_path
    }

    /// The underlying bare repository (read-only uses: tests, the CLI).
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Fetch the branch into the mirror; returns its tip.
    pub fn fetch(&mut self) -> Result<Oid, GitError> {
        let state = Rc::new(RefCell::new(CallState::default()));
        let heads: Vec<String>;
        {
            let mut remote = self
                .repo
                .remote_anonymous(&self.transport.url)
                .map_err(|e| GitError::Fetch {
                    url: self.transport.redacted.clone(),
                    reason: e.message().to_string(),
                })?;
            let mut opts = FetchOptions::new();
            opts.remote_callbacks(self.transport.callbacks(state.clone()));
            opts.download_tags(git2::AutotagOption::None);
            let refspec = format!("+refs/heads/{}:{}", self.config.branch, self.tracking_ref);
            if let Err(e) = remote.fetch(&[refspec.as_str()], Some(&mut opts), None) {
                let st = state.borrow();
                return Err(self
                    .transport
                    .classify(&e, &st, |url, reason| GitError::Fetch { url, reason }));
            }
            heads = remote
                .list()
                .map(|l| {
                    l.iter()
                        .filter_map(|h| h.name().strip_prefix("refs/heads/").map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
        }
        if heads.is_empty() {
            return Err(GitError::EmptyRepository {
                url: self.transport.redacted.clone(),
            });
        }
        if !heads.iter().any(|h| h == &self.config.branch) {
            return Err(GitError::BranchNotFound {
                url: self.transport.redacted.clone(),
                branch: self.config.branch.clone(),
                available: heads.join(", "),
            });
        }
        let tip = self
            .repo
            .refname_to_id(&self.tracking_ref)
            .map_err(GitError::read)?;
        tracing::debug!(url = %self.transport.redacted, tip = %tip, "fetched");
        Ok(tip)
    }

    fn tracked_tip(&self) -> Option<Oid> {
        self.repo.refname_to_id(&self.tracking_ref).ok()
    }

    /// Point the outgoing ref at `commit` and open the remote to push it.
    fn outgoing_remote(&self, commit: Oid) -> Result<git2::Remote<'_>, GitError> {
        self.repo
            .reference(
                OUTGOING_REF,
                commit,
                true,
                "tidegate outgoing status commit",
            )
            .map_err(GitError::build)?;
        self.repo
            .remote_anonymous(&self.transport.url)
            .map_err(|e| GitError::Push {
                url: self.transport.redacted.clone(),
                reason: e.message().to_string(),
            })
    }

    fn push(&self, commit: Oid) -> Result<PushResult, GitError> {
        if let Some(path) = local_remote_path(&self.transport.url) {
            return self.push_local(&path, commit);
        }
        let mut remote = self.outgoing_remote(commit)?;
        let state = Rc::new(RefCell::new(CallState::default()));
        let mut opts = PushOptions::new();
        opts.remote_callbacks(self.transport.callbacks(state.clone()));
        // No leading `+`: the server refuses anything but a fast-forward.
        let refspec = format!("{OUTGOING_REF}:refs/heads/{}", self.config.branch);
        let result = remote.push(&[refspec.as_str()], Some(&mut opts));
        let st = state.borrow();
        match result {
            Ok(()) => match st.push_rejections.first() {
                None => Ok(PushResult::Landed),
                Some((_, msg)) if is_race(msg) => Ok(PushResult::Rejected(msg.clone())),
                Some((refname, msg)) => Err(GitError::PushRefused {
                    url: self.transport.redacted.clone(),
                    refname: refname.clone(),
                    reason: msg.clone(),
                }),
            },
            Err(e) => {
                let msg = e.message().to_lowercase();
                if e.code() == git2::ErrorCode::NotFastForward
                    || msg.contains("non-fast")
                    || msg.contains("not present locally")
                    || msg.contains("fetch first")
                {
                    Ok(PushResult::Rejected(e.message().to_string()))
                } else {
                    Err(self
                        .transport
                        .classify(&e, &st, |url, reason| GitError::Push { url, reason }))
                }
            }
        }
    }

    /// Push to a repository on this machine (`file://` or a path). libgit2's local transport
    /// checks for a fast-forward *before* it takes the ref lock, so two local writers can
    /// overwrite each other's commit. Here the objects go to a temporary ref first and the
    /// branch is moved with a compare-and-swap under the ref lock
    /// (`git_reference_create_matching`): a concurrent push makes ours a rejection, never a loss.
    fn push_local(&self, path: &std::path::Path, commit: Oid) -> Result<PushResult, GitError> {
        let push_err = |reason: String| GitError::Push {
            url: self.transport.redacted.clone(),
            reason,
        };
        let expected = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.parent_id(0))
            .map_err(GitError::build)?;
        let incoming = format!("refs/tidegate/incoming/{commit}");
        let mut remote = self.outgoing_remote(commit)?;
        let state = Rc::new(RefCell::new(CallState::default()));
        let mut opts = PushOptions::new();
        opts.remote_callbacks(self.transport.callbacks(state.clone()));
        let refspec = format!("+{OUTGOING_REF}:{incoming}");
        remote
            .push(&[refspec.as_str()], Some(&mut opts))
            .map_err(|e| push_err(e.message().to_string()))?;
        let target = Repository::open(path).map_err(|e| push_err(e.message().to_string()))?;
        let branch = format!("refs/heads/{}", self.config.branch);
        let moved = target.reference_matching(&branch, commit, true, expected, "tidegate: status");
        if let Ok(mut r) = target.find_reference(&incoming) {
            let _ = r.delete();
        }
        match moved {
            Ok(_) => Ok(PushResult::Landed),
            Err(e)
                if e.code() == git2::ErrorCode::Modified || e.code() == git2::ErrorCode::Locked =>
            {
                Ok(PushResult::Rejected(format!(
                    "{branch} moved while pushing (fetch first): {}",
                    e.message()
                )))
            }
            Err(e) => Err(push_err(e.message().to_string())),
        }
    }

    /// Build the status commit on `base` (returns `None` when nothing would change).
    fn build_status_commit(
        &self,
        base: Oid,
        files: &BTreeMap<String, String>,
        message: &str,
    ) -> Result<Option<Oid>, GitError> {
        let parent = self.repo.find_commit(base).map_err(GitError::build)?;
        let base_tree = parent.tree().map_err(GitError::build)?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, text) in files {
            let blob = self.repo.blob(text.as_bytes()).map_err(GitError::build)?;
            update.upsert(path.as_str(), blob, git2::FileMode::Blob);
        }
        let tree_id = update
            .create_updated(&self.repo, &base_tree)
            .map_err(GitError::build)?;
        if tree_id == base_tree.id() {
            return Ok(None);
        }
        let tree = self.repo.find_tree(tree_id).map_err(GitError::build)?;
        let author = Signature::now(&self.config.author.name, &self.config.author.email)
            .map_err(GitError::build)?;
        let committer_id = self
            .config
            .committer
            .as_ref()
            .unwrap_or(&self.config.author);
        let committer =
            Signature::now(&committer_id.name, &committer_id.email).map_err(GitError::build)?;
        create_commit(
            &self.repo,
            self.signer.as_ref(),
            &author,
            &committer,
            message,
            &tree,
            &[&parent],
        )
        .map(Some)
    }

    /// Build a commit on the current tip with `build` and push it; on a non-fast-forward
    /// rejection fetch, rebuild on the new tip and retry with backoff. Never forces.
    /// Returns the pushed commit (`None` when `build` found nothing to commit) and the attempts.
    fn commit_with_retry(
        &mut self,
        build: impl Fn(&GitRepo, Oid) -> Result<Option<Oid>, GitError>,
    ) -> Result<(Option<Oid>, u32), GitError> {
        let mut last_reason = String::new();
        for attempt in 1..=self.config.push_attempts {
            let base = match self.tracked_tip() {
                Some(t) if attempt == 1 => t,
                _ => self.fetch()?,
            };
            let Some(commit) = build(self, base)? else {
                return Ok((None, attempt - 1));
            };
            match self.push(commit) {
                Ok(PushResult::Landed) => {
                    self.repo
                        .reference(&self.tracking_ref, commit, true, "tidegate pushed")
                        .map_err(GitError::build)?;
                    return Ok((Some(commit), attempt));
                }
                Ok(PushResult::Rejected(reason)) => {
                    tracing::info!(attempt, reason = %reason, "push rejected; rebuilding on the new tip");
                    last_reason = reason;
                }
                Err(e @ (GitError::Push { .. } | GitError::Fetch { .. })) => {
                    tracing::warn!(attempt, error = %e, "push failed; retrying");
                    last_reason = e.to_string();
                }
                Err(e) => return Err(e),
            }
            if attempt < self.config.push_attempts {
                std::thread::sleep(self.backoff(attempt - 1));
            }
        }
        Err(GitError::PushRetriesExhausted {
            url: self.transport.redacted.clone(),
            attempts: self.config.push_attempts,
            reason: last_reason,
        })
    }

    /// Commit `message` as an empty commit (the tip's tree unchanged) by `author`, signed with
    /// `signer` when given, and push it (the control commits of `tidegate pause` and friends).
    pub fn push_empty_commit(
        &mut self,
        message: &str,
        author: &super::Identity,
        signer: Option<&CommitSigner>,
    ) -> Result<String, GitError> {
        let (commit, _) = self.commit_with_retry(|repo, base| {
            let parent = repo.repo.find_commit(base).map_err(GitError::build)?;
            let tree = parent.tree().map_err(GitError::build)?;
            let sig = Signature::now(&author.name, &author.email).map_err(GitError::build)?;
            create_commit(&repo.repo, signer, &sig, &sig, message, &tree, &[&parent]).map(Some)
        })?;
        commit
            .map(|c| c.to_string())
            .ok_or_else(|| GitError::Build("no commit was made".into()))
    }

    /// Every status document at the tracked tip; a bad document is an error entry, not a stop.
    pub fn status_documents(&mut self) -> Result<Vec<Result<Status, GitError>>, GitError> {
        let tip = match self.tracked_tip() {
            Some(t) => t,
            None => self.fetch()?,
        };
        let tree = self
            .repo
            .find_commit(tip)
            .and_then(|c| c.tree())
            .map_err(GitError::read)?;
        read_status_documents(&self.repo, &tree, &self.config.status_dir)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.config.initial_backoff.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << attempt.min(16));
        let capped = exp.min(self.config.max_backoff.as_millis() as u64);
        // Jitter: 50–100 % of the delay, from the clock's low bits (no RNG needed).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        let half = capped / 2;
        Duration::from_millis(half + if half > 0 { nanos % (half + 1) } else { 0 })
    }
}

/// Whether a server-side refusal means "the branch moved under you" (rebuild and retry) rather
/// than a policy refusal (hook, protected branch) that retrying cannot fix.
fn is_race(msg: &str) -> bool {
    let m = msg.to_lowercase();
    [
        "non-fast-forward",
        "fetch first",
        "failed to update ref",
        "cannot lock ref",
        "failed to lock",
        "stale info",
        "incorrect old value",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// One line per transition, one trailer per transition, and the processed marker.
pub(crate) fn status_message(batch: &[Status], marker: Option<Oid>) -> String {
    let mut rollouts: Vec<String> = batch.iter().map(|s| s.rollout.to_string()).collect();
    rollouts.sort();
    rollouts.dedup();
    let one_line = |s: &Status| {
        format!(
            "{} {} {}%",
            clean(&s.rollout.to_string()),
            s.phase,
            s.route.canary_weight
        )
    };
    let mut msg = match batch {
        [only] => format!("tidegate: {}\n", one_line(only)),
        _ => format!(
            "tidegate: {} transitions in {} rollouts\n",
            batch.len(),
            rollouts.len()
        ),
    };
    if !batch.is_empty() {
        msg.push('\n');
        for s in batch {
            let mut reason = clean(&s.reason);
            if reason.chars().count() > 160 {
                reason = reason.chars().take(157).collect::<String>() + "...";
            }
            msg.push_str(&format!(
                "- {}: {} at {}% (step {}/{}): {}\n",
                clean(&s.rollout.to_string()),
                s.phase,
                s.route.canary_weight,
                s.step,
                s.step_count,
                reason
            ));
        }
    }
    msg.push('\n');
    for s in batch {
        msg.push_str(&format!("{OWN_STATUS_TRAILER}: {}\n", one_line(s)));
    }
    if let Some(m) = marker {
        msg.push_str(&format!("{OWN_PROCESSED_TRAILER}: {m}\n"));
    }
    msg
}

/// One line of printable text.
fn clean(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl PlanSource for GitRepo {
    fn poll(&mut self) -> Result<SourceUpdate, GitError> {
        let tip = self.fetch()?;
        let own_email = self.config.author.email.clone();
        let mut force_push = None;
        if let Some(old) = self.seen_tip
            && old != tip
            && !self
                .repo
                .graph_descendant_of(tip, old)
                .map_err(GitError::read)?
        {
            tracing::warn!(url = %self.transport.redacted, previous = %old, current = %tip, "branch was force-pushed: rereading every plan");
            force_push = Some(ForcePush {
                previous: old.to_string(),
                current: tip.to_string(),
            });
        }
        let (plans, since) = match self.seen_tip {
            Some(old) if force_push.is_none() => {
                let plans = if old == tip {
                    PlanChanges::default()
                } else {
                    let (changed, removed) = self.plans.update(&self.repo, old, tip)?;
                    PlanChanges {
                        full: false,
                        changed,
                        removed,
                    }
                };
                (plans, Some(old))
            }
            _ => {
                let (changed, removed) = self.plans.full_read(&self.repo, tip)?;
                let marker = commits::find_marker(&self.repo, tip, &own_email)?;
                if marker.is_none() {
                    tracing::info!(tip = %tip, "no Tidegate-Processed marker on the branch: controls count from the current tip");
                }
                self.marker = Some(marker.unwrap_or(tip));
                (
                    PlanChanges {
                        full: true,
                        changed,
                        removed,
                    },
                    Some(marker.unwrap_or(tip)),
                )
            }
        };
        let commits = match since {
            Some(s) if s == tip => Vec::new(),
            _ => commits::walk_new(&self.repo, since, tip, &own_email, self.signers.as_ref())?,
        };
        self.seen_tip = Some(tip);
        Ok(SourceUpdate {
            tip: tip.to_string(),
            plans,
            commits,
            force_push,
        })
    }
}

impl StateStore for GitRepo {
    fn load_statuses(&mut self) -> Result<Vec<Status>, GitError> {
        let mut out = Vec::new();
        for doc in self.status_documents()? {
            match doc {
                Ok(s) => out.push(s),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable status document"),
            }
        }
        Ok(out)
    }

    fn write_statuses(
        &mut self,
        batch: &[Status],
        processed_through: Option<&str>,
    ) -> Result<WriteOutcome, GitError> {
        if let Some(p) = processed_through {
            let oid = Oid::from_str(p)
                .map_err(|_| GitError::Build(format!("{p:?} is not a commit id")))?;
            self.marker = Some(oid);
        }
        let mut files = BTreeMap::new();
        let mut written = Vec::new();
        let mut skipped = Vec::new();
        for s in batch {
            match status_path(&self.config.status_dir, &s.rollout)
                .and_then(|p| Ok((p, render_status(s)?)))
            {
                Ok((path, text)) => {
                    files.insert(path, text);
                    written.push(s.clone());
                }
                Err(e) => {
                    tracing::error!(rollout = %s.rollout, error = %e, "cannot write this status");
                    skipped.push(e.to_string());
                }
            }
        }
        if written.is_empty() {
            return Ok(WriteOutcome {
                commit: None,
                attempts: 0,
                transitions: 0,
                skipped,
            });
        }
        if self.marker.is_none() {
            // A writer that never polled keeps the marker already on the branch, so every
            // status commit names the processed position.
            let base = match self.tracked_tip() {
                Some(t) => t,
                None => self.fetch()?,
            };
            self.marker = commits::find_marker(&self.repo, base, &self.config.author.email)?;
        }
        let message = status_message(&written, self.marker);
        let (commit, attempts) =
            self.commit_with_retry(|repo, base| repo.build_status_commit(base, &files, &message))?;
        match commit {
            Some(c) => {
                tracing::info!(commit = %c, attempts, transitions = written.len(), "pushed status commit");
            }
            None => {
                tracing::info!(
                    transitions = written.len(),
                    "status documents already up to date on the branch"
                );
            }
        }
        Ok(WriteOutcome {
            transitions: if commit.is_some() { written.len() } else { 0 },
            commit: commit.map(|c| c.to_string()),
            attempts,
            skipped,
        })
    }
}

/// The path of a remote on this machine (`file://…` or a plain path), if it is one.
fn local_remote_path(url: &str) -> Option<std::path::PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        return Some(std::path::PathBuf::from(rest));
    }
    if url.contains("://") {
        return None;
    }
    // `user@host:path` is SSH; a plain path has no `:` before its first `/`.
    let scp_like = url
        .split_once(':')
        .is_some_and(|(head, _)| !head.contains('/') && !head.is_empty());
    (!scp_like).then(|| std::path::PathBuf::from(url))
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn local_remotes_are_recognised() {
        assert_eq!(
            local_remote_path("file:///srv/r.git"),
            Some("/srv/r.git".into())
        );
        assert_eq!(local_remote_path("/srv/r.git"), Some("/srv/r.git".into()));
        assert_eq!(local_remote_path("./plans"), Some("./plans".into()));
        assert_eq!(local_remote_path("git@host:team/r.git"), None);
        assert_eq!(local_remote_path("ssh://host/r.git"), None);
        assert_eq!(local_remote_path("https://host/r.git"), None);
    }
    use crate::control::trailers::trailers;
    use crate::plan::RolloutId;
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

    #[test]
    fn one_transition_names_itself_in_the_subject() {
        let msg = status_message(&[status("orders", Phase::Progressing, 25, "step 2")], None);
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
            &[
                status("a", Phase::Paused, 5, "paused\n\nTidegate: abort prod/a"),
                status("b", Phase::RollingBack, 0, &long),
            ],
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
    fn only_branch_races_are_retried() {
        assert!(is_race("non-fast-forward"));
        assert!(is_race("failed to update ref"));
        assert!(is_race(
            "cannot lock ref 'refs/heads/main': is at 1 but expected 2"
        ));
        assert!(!is_race("pre-receive hook declined"));
        assert!(!is_race("protected branch hook declined"));
    }
}
