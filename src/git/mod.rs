//! The Git adapter: a bare mirror of the plans repository, fetched and pushed with git2, with no
//! work tree. It finds plan files by glob (re-reading only what a new tip changed), lists the
//! commits added since the last processed one (with their SSH signature checked against an
//! `allowed_signers` file), and writes status documents back as commits on a status branch of
//! tidegate's own (by default; the watched branch itself in same-branch mode), retrying rejected
//! pushes on the new tip and never force-pushing.
//!
//! The daemon sees it through two small traits with plain types, [`PlanSource`] and
//! [`StateStore`], so it can use a fake in unit tests. Formats and options: `docs/git.md`.

mod auth;
mod batch;
mod commits;
mod config;
mod error;
mod plans;
mod repo;
mod signers;
mod signing;
pub mod status_doc;
mod transport;
mod writer;

pub use auth::{Auth, SecretSource, redact_url};
pub use batch::StatusBatch;
pub use commits::{
    NewCommit, OWN_PROCESSED_TRAILER, OWN_REFUSED_TRAILER, OWN_REMOVED_TRAILER, OWN_STATUS_TRAILER,
    parse_own_trailers,
};
pub use config::{DEFAULT_STATUS_BRANCH, GitConfig, Identity};
pub use error::GitError;
pub use plans::{PlanContent, PlanFile};
pub use repo::{ForcePush, GitRepo, PlanChanges, SourceUpdate, WriteOutcome};
pub use signers::{AllowedSigners, SignerEntry};
pub use signing::CommitSigner;
pub use status_doc::{read_status_documents, render_status, status_path};
pub use writer::{StatusWriter, WriterHandle, WriterReport};

use crate::rollout::Status;

/// Where plans come from: each call fetches and reports what changed since the previous call.
pub trait PlanSource {
    /// Fetch the branch and report the plan files that changed (all of them on the first call),
    /// the plan files that disappeared, and the commits added since the last processed one.
    fn poll(&mut self) -> Result<SourceUpdate, GitError>;

    /// The text of the plan file `path` at commit `revision` (`None`: no such file there).
    fn plan_at(&mut self, path: &str, revision: &str) -> Result<Option<String>, GitError>;
}

/// Where statuses go: every write is one commit on the status branch, pushed.
pub trait StateStore {
    /// The status documents at the status branch's tip, fetched now (for resuming after a
    /// restart or a change of leader).
    fn load_statuses(&mut self) -> Result<Vec<Status>, GitError>;

    /// Commit `batch` (transitions in order, the last document of each rollout winning; then
    /// removed status files; then refused controls) and push. `processed_through` is the newest
    /// commit whose controls the statuses already reflect; `None` keeps the previous marker.
    fn write(
        &mut self,
        batch: &StatusBatch,
        processed_through: Option<&str>,
    ) -> Result<WriteOutcome, GitError>;

    /// [`StateStore::write`] of transitions only.
    fn write_statuses(
        &mut self,
        batch: &[Status],
        processed_through: Option<&str>,
    ) -> Result<WriteOutcome, GitError> {
        let batch = StatusBatch {
            statuses: batch.to_vec(),
            ..StatusBatch::default()
        };
        self.write(&batch, processed_through)
    }
}

/// One repository shared by the poller and the writer thread: calls take turns.
impl<T: PlanSource> PlanSource for std::sync::Arc<std::sync::Mutex<T>> {
    fn poll(&mut self) -> Result<SourceUpdate, GitError> {
        self.lock()
            .map_err(|_| GitError::Read("the git adapter lock is poisoned".into()))?
            .poll()
    }

    fn plan_at(&mut self, path: &str, revision: &str) -> Result<Option<String>, GitError> {
        self.lock()
            .map_err(|_| GitError::Read("the git adapter lock is poisoned".into()))?
            .plan_at(path, revision)
    }
}

impl<T: StateStore> StateStore for std::sync::Arc<std::sync::Mutex<T>> {
    fn load_statuses(&mut self) -> Result<Vec<Status>, GitError> {
        self.lock()
            .map_err(|_| GitError::Read("the git adapter lock is poisoned".into()))?
            .load_statuses()
    }

    fn write(
        &mut self,
        batch: &StatusBatch,
        processed_through: Option<&str>,
    ) -> Result<WriteOutcome, GitError> {
        self.lock()
            .map_err(|_| GitError::Read("the git adapter lock is poisoned".into()))?
            .write(batch, processed_through)
    }
}
