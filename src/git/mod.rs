//! The Git adapter: a bare mirror of the plans repository, fetched and pushed with git2, with no
//! work tree. It finds plan files by glob (re-reading only what a new tip changed), lists the
//! commits added since the last processed one (with their SSH signature checked against an
//! `allowed_signers` file), and writes status documents back as commits built directly on the
//! fetched tip, retrying rejected pushes on the new tip and never force-pushing.
//!
//! The daemon sees it through two small traits with plain types, [`PlanSource`] and
//! [`StateStore`], so it can use a fake in unit tests. Formats and options: `docs/git.md`.

mod auth;
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
pub use commits::{NewCommit, OWN_PROCESSED_TRAILER, OWN_STATUS_TRAILER, parse_own_trailers};
pub use config::{GitConfig, Identity};
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
}

/// Where statuses go: every write is one commit on the branch, pushed.
pub trait StateStore {
    /// The status documents at the current tip (for resuming after a restart).
    fn load_statuses(&mut self) -> Result<Vec<Status>, GitError>;

    /// Commit every status in `batch` (one transition each, in order; the last document of each
    /// rollout wins) and push. `processed_through` is the newest commit whose controls the
    /// statuses already reflect; `None` keeps the previous marker.
    fn write_statuses(
        &mut self,
        batch: &[Status],
        processed_through: Option<&str>,
    ) -> Result<WriteOutcome, GitError>;
}

/// One repository shared by the poller and the writer thread: calls take turns.
impl<T: PlanSource> PlanSource for std::sync::Arc<std::sync::Mutex<T>> {
    fn poll(&mut self) -> Result<SourceUpdate, GitError> {
        self.lock()
            .map_err(|_| GitError::Read("the git adapter lock is poisoned".into()))?
            .poll()
    }
}

impl<T: StateStore> StateStore for std::sync::Arc<std::sync::Mutex<T>> {
    fn load_statuses(&mut self) -> Result<Vec<Status>, GitError> {
        self.lock()
            .map_err(|_| GitError::Read("the git adapter lock is poisoned".into()))?
            .load_statuses()
    }

    fn write_statuses(
        &mut self,
        batch: &[Status],
        processed_through: Option<&str>,
    ) -> Result<WriteOutcome, GitError> {
        self.lock()
            .map_err(|_| GitError::Read("the git adapter lock is poisoned".into()))?
            .write_statuses(batch, processed_through)
    }
}
