//! Errors of the Git adapter. Messages name what failed; URLs are always shown redacted and no
//! credential ever appears in them.

use std::path::PathBuf;

/// Everything that can go wrong talking to the plans repository.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("invalid git configuration: {0}")]
    Config(String),

    #[error("failed to read {what} from {path}: {reason}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error("failed to read {what} from environment variable {var}: {reason}")]
    ReadEnv {
        what: &'static str,
        var: String,
        reason: String,
    },

    #[error("failed to open the mirror at {path}: {reason}")]
    Mirror { path: PathBuf, reason: String },

    #[error("authentication to {url} failed: {reason}")]
    Auth { url: String, reason: String },

    #[error("refused the host key of {host}: {reason}")]
    HostKey { host: String, reason: String },

    #[error("refused the TLS certificate of {host}: {reason}")]
    Tls { host: String, reason: String },

    #[error("failed to fetch {url}: {reason}")]
    Fetch { url: String, reason: String },

    #[error("the repository at {url} is empty (it has no branches yet)")]
    EmptyRepository { url: String },

    #[error("branch {branch:?} does not exist in {url} (branches: {available})")]
    BranchNotFound {
        url: String,
        branch: String,
        available: String,
    },

    #[error("failed to push to {url}: {reason}")]
    Push { url: String, reason: String },

    #[error("the server at {url} refused to update {refname}: {reason}")]
    PushRefused {
        url: String,
        refname: String,
        reason: String,
    },

    #[error("push to {url} still rejected after {attempts} attempts: {reason}")]
    PushRetriesExhausted {
        url: String,
        attempts: u32,
        reason: String,
    },

    #[error("failed to read the repository: {0}")]
    Read(String),

    #[error("failed to build the commit: {0}")]
    Build(String),

    #[error("invalid status document {path}: {reason}")]
    StatusDocument { path: String, reason: String },

    #[error("failed to sign the commit: {0}")]
    Sign(String),

    #[error("invalid allowed_signers file {path} line {line}: {reason}")]
    AllowedSigners {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

impl GitError {
    /// Wrap a local repository error (no URL or credential involved).
    pub(crate) fn read(e: git2::Error) -> GitError {
        GitError::Read(e.message().to_string())
    }

    pub(crate) fn build(e: git2::Error) -> GitError {
        GitError::Build(e.message().to_string())
    }
}
