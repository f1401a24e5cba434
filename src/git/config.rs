//! Options of the Git adapter (documented in `docs/git.md`).

use std::path::PathBuf;
use std::time::Duration;

use super::{Auth, GitError};

/// Name and e-mail of a commit author or committer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            name: "tidegate".into(),
            email: "tidegate@localhost".into(),
        }
    }
}

/// The branch of tidegate's own that status commits go to unless configured otherwise.
pub const DEFAULT_STATUS_BRANCH: &str = "tidegate-status";

/// Everything the adapter needs to watch and write one branch of one repository.
#[derive(Debug, Clone)]
pub struct GitConfig {
    /// Remote URL (`https://`, `http://`, `ssh://`, `user@host:path`, `file://`) or local path.
    pub url: String,
    /// Branch holding the plans and the control commits (the watched branch).
    pub branch: String,
    /// Branch the status commits go to (default `tidegate-status`). Equal to `branch`: the
    /// same-branch mode, where status commits land between people's commits.
    pub status_branch: String,
    /// The daemon's data directory; the bare mirror lives in `<data_dir>/git/<hash of url>.git`.
    pub data_dir: PathBuf,
    pub auth: Auth,
    /// PEM bundle of extra CA certificates trusted for HTTPS (with any intermediates).
    pub ca_bundle: Option<PathBuf>,
    /// Glob matching plan files (globset syntax, `**` crosses directories).
    pub plan_glob: String,
    /// Folder of the status files: `<status_dir>/<namespace>/<name>.yaml`.
    pub status_dir: String,
    /// Plan files larger than this are reported unreadable instead of parsed.
    pub max_plan_bytes: usize,
    /// Author of status commits.
    pub author: Identity,
    /// Committer of status commits (default: the author).
    pub committer: Option<Identity>,
    /// SSH private key (OpenSSH format, unencrypted) signing tidegate's commits.
    pub signing_key: Option<PathBuf>,
    /// `allowed_signers` file (ssh-keygen format) used to verify control commit signatures.
    pub allowed_signers: Option<PathBuf>,
    /// Push attempts before giving up on a batch (each rejection fetches and rebuilds).
    pub push_attempts: u32,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl GitConfig {
    /// A configuration with every default, for `url` and the mirror under `data_dir`.
    pub fn new(url: impl Into<String>, data_dir: impl Into<PathBuf>) -> GitConfig {
        GitConfig {
            url: url.into(),
            branch: "main".into(),
            status_branch: DEFAULT_STATUS_BRANCH.into(),
            data_dir: data_dir.into(),
            auth: Auth::None,
            ca_bundle: None,
            plan_glob: "rollouts/**/*.yaml".into(),
            status_dir: "status".into(),
            max_plan_bytes: 1024 * 1024,
            author: Identity::default(),
            committer: None,
            signing_key: None,
            allowed_signers: None,
            push_attempts: 12,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// Whether status commits go to the watched branch itself.
    pub fn same_branch(&self) -> bool {
        self.status_branch == self.branch
    }

    pub(crate) fn validate(&self) -> Result<(), GitError> {
        if self.url.trim().is_empty() {
            return Err(GitError::Config("the repository URL is empty".into()));
        }
        for branch in [&self.branch, &self.status_branch] {
            if branch.is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}"))
            {
                return Err(GitError::Config(format!(
                    "{branch:?} is not a valid branch name"
                )));
            }
        }
        let dir = self.status_dir.trim_matches('/');
        if dir.is_empty()
            || dir
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(GitError::Config(format!(
                "status folder {:?} must be a relative path without . or .. components",
                self.status_dir
            )));
        }
        if self.push_attempts == 0 {
            return Err(GitError::Config("push attempts must be at least 1".into()));
        }
        for id in [Some(&self.author), self.committer.as_ref()]
            .into_iter()
            .flatten()
        {
            if id.name.trim().is_empty() || id.email.trim().is_empty() {
                return Err(GitError::Config(
                    "commit author and committer need a name and an e-mail".into(),
                ));
            }
        }
        Ok(())
    }
}
