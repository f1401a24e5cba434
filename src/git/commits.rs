//! The commits added since the last processed one, as plain data for the control policy, and
//! tidegate's own trailers (`Tidegate-Status`, `Tidegate-Processed`) that make the processed
//! position durable in the branch itself.

use chrono::{DateTime, Utc};
use git2::{Oid, Repository, Sort};

use super::GitError;
use super::signers::AllowedSigners;
use crate::control::trailers;
use crate::control::{CommitInfo, SignatureState};

pub const OWN_STATUS_TRAILER: &str = trailers::STATUS_KEY;
pub const OWN_PROCESSED_TRAILER: &str = "Tidegate-Processed";
pub const OWN_REMOVED_TRAILER: &str = "Tidegate-Removed";
pub const OWN_REFUSED_TRAILER: &str = "Tidegate-Refused";

/// One new commit: what the control policy decides on, plus what the daemon needs besides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommit {
    /// Id, author, message and signature state, for `control::Policy::decide`.
    pub commit: CommitInfo,
    pub committer_email: String,
    pub time: DateTime<Utc>,
    /// A status commit made by tidegate itself: never a control commit.
    pub is_own: bool,
}

/// `(Tidegate-Status values, Tidegate-Processed value)` of a commit message, by git's trailer
/// rules (only the final paragraph counts).
pub fn parse_own_trailers(message: &str) -> (Vec<String>, Option<String>) {
    let mut statuses = Vec::new();
    let mut processed = None;
    for (k, v) in trailers::trailers(message) {
        if k.eq_ignore_ascii_case(OWN_STATUS_TRAILER) {
            statuses.push(v.trim().to_string());
        } else if k.eq_ignore_ascii_case(OWN_PROCESSED_TRAILER) {
            processed = Some(v.trim().to_string());
        }
    }
    (statuses, processed)
}

fn is_own(commit: &git2::Commit<'_>, own_email: &str) -> bool {
    let author = commit.author();
    let Ok(email) = author.email() else {
        return false;
    };
    if !email.eq_ignore_ascii_case(own_email) {
        return false;
    }
    trailers::trailers(commit.message().unwrap_or(""))
        .iter()
        .any(|(k, _)| {
            [
                OWN_STATUS_TRAILER,
                OWN_PROCESSED_TRAILER,
                OWN_REMOVED_TRAILER,
                OWN_REFUSED_TRAILER,
            ]
            .iter()
            .any(|own| k.eq_ignore_ascii_case(own))
        })
}

/// The newest `Tidegate-Processed` marker on the first-parent history of `history` (the status
/// branch, or the watched branch in same-branch mode), written by tidegate (author e-mail
/// `own_email`), if it names a commit reachable from `tip` (the watched branch).
pub(crate) fn find_marker(
    repo: &Repository,
    history: Oid,
    tip: Oid,
    own_email: &str,
) -> Result<Option<Oid>, GitError> {
    let mut walk = repo.revwalk().map_err(GitError::read)?;
    walk.push(history).map_err(GitError::read)?;
    walk.simplify_first_parent().map_err(GitError::read)?;
    for oid in walk {
        let oid = oid.map_err(GitError::read)?;
        let commit = repo.find_commit(oid).map_err(GitError::read)?;
        if !is_own(&commit, own_email) {
            continue;
        }
        let (_, processed) = parse_own_trailers(commit.message().unwrap_or(""));
        let Some(value) = processed else { continue };
        let Ok(marker) = Oid::from_str(&value) else {
            tracing::warn!(commit = %oid, value = %value, "ignoring a malformed Tidegate-Processed trailer");
            continue;
        };
        // A marker whose commit the mirror lacks (history rewritten) is not in the history.
        if marker == tip || repo.graph_descendant_of(tip, marker).unwrap_or(false) {
            return Ok(Some(marker));
        }
        tracing::warn!(commit = %oid, marker = %marker, "Tidegate-Processed names a commit not in the branch history; looking further back");
    }
    Ok(None)
}

/// The commits reachable from `tip` but not from `since`, oldest first.
pub(crate) fn walk_new(
    repo: &Repository,
    since: Option<Oid>,
    tip: Oid,
    own_email: &str,
    signers: Option<&AllowedSigners>,
) -> Result<Vec<NewCommit>, GitError> {
    let mut walk = repo.revwalk().map_err(GitError::read)?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
        .map_err(GitError::read)?;
    walk.push(tip).map_err(GitError::read)?;
    if let Some(since) = since {
        walk.hide(since).map_err(GitError::read)?;
    }
    let mut out = Vec::new();
    for oid in walk {
        let oid = oid.map_err(GitError::read)?;
        let commit = repo.find_commit(oid).map_err(GitError::read)?;
        let own = is_own(&commit, own_email);
        let author = commit.author();
        let author_email = author.email().unwrap_or("").to_string();
        let signature = match (own, signers) {
            (false, Some(s)) => s.verify_commit(repo, &commit, &author_email),
            _ => SignatureState::NotChecked,
        };
        out.push(NewCommit {
            commit: CommitInfo {
                id: oid.to_string(),
                author_name: author.name().unwrap_or("").to_string(),
                author_email,
                message: String::from_utf8_lossy(commit.message_bytes()).into_owned(),
                signature,
            },
            committer_email: commit.committer().email().unwrap_or("").to_string(),
            time: DateTime::from_timestamp(commit.time().seconds(), 0).unwrap_or_default(),
            is_own: own,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_trailers_only_count_in_the_final_paragraph() {
        let msg = "tidegate: 2 transitions\n\nTidegate-Status: a/b Paused 5%\n\nTidegate-Status: p/o Progressing 25%\nTidegate-Processed: 0123456789abcdef0123456789abcdef01234567\n";
        let (s, p) = parse_own_trailers(msg);
        assert_eq!(s, vec!["p/o Progressing 25%".to_string()]);
        assert_eq!(
            p.as_deref(),
            Some("0123456789abcdef0123456789abcdef01234567")
        );
        let (s, p) = parse_own_trailers("just a subject");
        assert!(s.is_empty() && p.is_none());
    }
}
