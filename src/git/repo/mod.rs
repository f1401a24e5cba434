//! [`GitRepo`]: the bare mirror, fetch, plan and commit discovery, and commits pushed with retry
//! on a non-fast-forward rejection (rebuilt on the new tip, never forced). The status side
//! (status commits on the status branch, reading statuses back) is in [`status`].

mod status;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use git2::{FetchOptions, Oid, PushOptions, Repository, Signature};
use sha2::{Digest, Sha256};

use super::commits::{self, NewCommit};
use super::plans::{PlanContent, PlanFile, PlanIndex};
use super::signers::AllowedSigners;
use super::signing::{CommitSigner, create_commit};
use super::transport::{CallState, Transport};
use super::{GitConfig, GitError, PlanSource};

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
    /// Status files deleted (one `Tidegate-Removed` trailer each).
    pub removed: usize,
    /// Refused controls added to `_refused.yaml` (one `Tidegate-Refused` trailer each).
    pub refused: usize,
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
    /// Where the status branch is fetched to (`tracking_ref` in same-branch mode).
    status_ref: String,
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
            .field("status_branch", &self.config.status_branch)
            .field("mirror", &self.mirror_path)
            .finish_non_exhaustive()
    }
}

/// Which branch a commit goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    /// The watched branch (plans and control commits).
    Watched,
    /// The status branch (the watched one in same-branch mode).
    Status,
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
        let status_ref = format!("refs/remotes/origin/{}", config.status_branch);
        tracing::info!(url = %transport.redacted, branch = %config.branch, status_branch = %config.status_branch, mirror = %mirror_path.display(), "opened git mirror");
        Ok(GitRepo {
            config,
            transport,
            repo,
            mirror_path,
            tracking_ref,
            status_ref,
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

    /// Fetch the watched branch (and the status branch, when it exists and is another one) into
    /// the mirror; returns the watched branch's tip.
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
            if let Err(e) = remote.fetch(&self.refspecs(), Some(&mut opts), None) {
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
        self.check_heads(&heads)?;
        let tip = self
            .repo
            .refname_to_id(&self.tracking_ref)
            .map_err(GitError::read)?;
        tracing::debug!(url = %self.transport.redacted, tip = %tip, "fetched");
        Ok(tip)
    }

    /// The watched branch, and the status branch when it is another one.
    fn refspecs(&self) -> Vec<String> {
        let mut refspecs = vec![format!(
            "+refs/heads/{}:{}",
            self.config.branch, self.tracking_ref
        )];
        if !self.config.same_branch() {
            // A refspec the remote has no branch for fetches nothing (no error).
            refspecs.push(format!(
                "+refs/heads/{}:{}",
                self.config.status_branch, self.status_ref
            ));
        }
        refspecs
    }

    /// The remote's branches after a fetch: the watched one must exist; a status branch that
    /// disappeared is forgotten (the next write creates it again).
    fn check_heads(&self, heads: &[String]) -> Result<(), GitError> {
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
        if !heads.iter().any(|h| h == &self.config.status_branch)
            && let Ok(mut stale) = self.repo.find_reference(&self.status_ref)
        {
            stale.delete().map_err(GitError::read)?;
        }
        Ok(())
    }

    fn tracked_tip(&self) -> Option<Oid> {
        self.repo.refname_to_id(&self.tracking_ref).ok()
    }

    /// The fetched tip of the status branch (`None` until it exists).
    fn status_tip(&self) -> Option<Oid> {
        self.repo.refname_to_id(&self.status_ref).ok()
    }

    fn tip_of(&self, branch: Branch) -> Option<Oid> {
        match branch {
            Branch::Watched => self.tracked_tip(),
            Branch::Status => self.status_tip(),
        }
    }

    fn branch_name(&self, branch: Branch) -> &str {
        match branch {
            Branch::Watched => &self.config.branch,
            Branch::Status => &self.config.status_branch,
        }
    }

    fn tracking_ref_of(&self, branch: Branch) -> &str {
        match branch {
            Branch::Watched => &self.tracking_ref,
            Branch::Status => &self.status_ref,
        }
    }

    /// The newest processed marker for the watched tip `tip`: on the status branch, else (same-
    /// branch mode, or statuses written there before the status branch existed) on the watched
    /// branch itself.
    fn find_processed(&self, tip: Oid) -> Result<Option<Oid>, GitError> {
        let email = &self.config.author.email;
        if !self.config.same_branch()
            && let Some(status) = self.status_tip()
            && let Some(m) = commits::find_marker(&self.repo, status, tip, email)?
        {
            return Ok(Some(m));
        }
        commits::find_marker(&self.repo, tip, tip, email)
    }

    /// The text of the plan file `path` at commit `revision`: `None` when the commit has no
    /// such file; an error when the mirror lacks the commit or the entry is not readable text.
    pub fn plan_at(&self, path: &str, revision: &str) -> Result<Option<String>, GitError> {
        let oid = Oid::from_str(revision)
            .map_err(|_| GitError::Read(format!("{revision:?} is not a commit id")))?;
        let commit = self.repo.find_commit(oid).map_err(|e| {
            GitError::Read(format!(
                "commit {revision} (a revision of {path}) is not in the mirror: {}",
                e.message()
            ))
        })?;
        let tree = commit.tree().map_err(GitError::read)?;
        let entry = match tree.get_path(std::path::Path::new(path)) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(GitError::read(e)),
        };
        match self.plans.read_entry(&self.repo, path, &entry) {
            PlanContent::Text(text) => Ok(Some(text)),
            PlanContent::Unreadable(reason) => Err(GitError::Read(reason)),
        }
    }

    /// Every plan file at the watched tip (fetched before when never fetched), without
    /// revisions: what the control commands check names against.
    pub fn plans_at_tip(&mut self) -> Result<Vec<(String, PlanContent)>, GitError> {
        let tip = match self.tracked_tip() {
            Some(t) => t,
            None => self.fetch()?,
        };
        self.plans.read_all(&self.repo, tip)
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

    /// Push `commit` (built on `base`, `None` for the first commit of a new branch) to `branch`.
    fn push(&self, commit: Oid, base: Option<Oid>, branch: Branch) -> Result<PushResult, GitError> {
        let branch = self.branch_name(branch);
        if let Some(path) = local_remote_path(&self.transport.url) {
            return self.push_local(&path, commit, base, branch);
        }
        let mut remote = self.outgoing_remote(commit)?;
        let state = Rc::new(RefCell::new(CallState::default()));
        let mut opts = PushOptions::new();
        opts.remote_callbacks(self.transport.callbacks(state.clone()));
        // No leading `+`: the server refuses anything but a fast-forward.
        let refspec = format!("{OUTGOING_REF}:refs/heads/{branch}");
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
    fn push_local(
        &self,
        path: &std::path::Path,
        commit: Oid,
        base: Option<Oid>,
        branch: &str,
    ) -> Result<PushResult, GitError> {
        let push_err = |reason: String| GitError::Push {
            url: self.transport.redacted.clone(),
            reason,
        };
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
        let branch = format!("refs/heads/{branch}");
        let moved = match base {
            Some(expected) => {
                target.reference_matching(&branch, commit, true, expected, "tidegate: status")
            }
            // A new branch: created only if nobody created it meanwhile.
            None => target.reference(&branch, commit, false, "tidegate: status"),
        };
        if let Ok(mut r) = target.find_reference(&incoming) {
            let _ = r.delete();
        }
        match moved {
            Ok(_) => Ok(PushResult::Landed),
            Err(e)
                if matches!(
                    e.code(),
                    git2::ErrorCode::Modified | git2::ErrorCode::Locked | git2::ErrorCode::Exists
                ) =>
            {
                Ok(PushResult::Rejected(format!(
                    "{branch} moved while pushing (fetch first): {}",
                    e.message()
                )))
            }
            Err(e) => Err(push_err(e.message().to_string())),
        }
    }

    /// Build a commit on the tip of `branch` with `build` (given the tip, `None` when the branch
    /// does not exist yet) and push it; on a non-fast-forward rejection fetch, rebuild on the
    /// new tip and retry with backoff. Never forces. Returns the pushed commit (`None` when
    /// `build` found nothing to commit) and the attempts.
    fn commit_with_retry(
        &mut self,
        branch: Branch,
        build: impl Fn(&GitRepo, Option<Oid>) -> Result<Option<Oid>, GitError>,
    ) -> Result<(Option<Oid>, u32), GitError> {
        let mut last_reason = String::new();
        for attempt in 1..=self.config.push_attempts {
            if attempt > 1 || self.tracked_tip().is_none() {
                self.fetch()?;
            }
            let base = self.tip_of(branch);
            let Some(commit) = build(self, base)? else {
                return Ok((None, attempt - 1));
            };
            match self.push(commit, base, branch) {
                Ok(PushResult::Landed) => {
                    let tracking = self.tracking_ref_of(branch).to_owned();
                    self.repo
                        .reference(&tracking, commit, true, "tidegate pushed")
                        .map_err(GitError::build)?;
                    return Ok((Some(commit), attempt));
                }
                Ok(PushResult::Rejected(reason)) => {
                    tracing::info!(attempt, branch = %self.branch_name(branch), reason = %reason, "push rejected; rebuilding on the new tip");
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
    /// `signer` when given, and push it to the watched branch (the control commits of
    /// `tidegate pause` and friends).
    pub fn push_empty_commit(
        &mut self,
        message: &str,
        author: &super::Identity,
        signer: Option<&CommitSigner>,
    ) -> Result<String, GitError> {
        let (commit, _) = self.commit_with_retry(Branch::Watched, |repo, base| {
            let base = base.ok_or_else(|| GitError::Build("the branch has no commit".into()))?;
            let parent = repo.repo.find_commit(base).map_err(GitError::build)?;
            let tree = parent.tree().map_err(GitError::build)?;
            let sig = Signature::now(&author.name, &author.email).map_err(GitError::build)?;
            create_commit(&repo.repo, signer, &sig, &sig, message, &tree, &[&parent]).map(Some)
        })?;
        commit
            .map(|c| c.to_string())
            .ok_or_else(|| GitError::Build("no commit was made".into()))
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
                let marker = self.find_processed(tip)?;
                if marker.is_none() {
                    tracing::info!(tip = %tip, "no Tidegate-Processed marker on the status branch: controls count from the current tip");
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

    fn plan_at(&mut self, path: &str, revision: &str) -> Result<Option<String>, GitError> {
        GitRepo::plan_at(self, path, revision)
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
