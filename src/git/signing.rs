//! Signing tidegate's own commits with an SSH key, in the form `git verify-commit` accepts with
//! `gpg.format=ssh`: an `SSHSIG` over the commit buffer, namespace `git`, in the `gpgsig` header.

use std::path::Path;

use git2::{Oid, Repository, Signature, Tree};
use ssh_key::{HashAlg, LineEnding, PrivateKey};

use super::GitError;
use super::signers::GIT_NAMESPACE;

/// An unencrypted OpenSSH private key that signs commits.
pub struct CommitSigner {
    key: PrivateKey,
}

impl std::fmt::Debug for CommitSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CommitSigner({})", self.fingerprint())
    }
}

impl CommitSigner {
    pub fn load(path: &Path) -> Result<CommitSigner, GitError> {
        let text = std::fs::read_to_string(path).map_err(|e| GitError::ReadFile {
            what: "signing key",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let key = PrivateKey::from_openssh(text.trim()).map_err(|e| GitError::ReadFile {
            what: "signing key",
            path: path.to_path_buf(),
            reason: format!("not an OpenSSH private key: {e}"),
        })?;
        if key.is_encrypted() {
            return Err(GitError::ReadFile {
                what: "signing key",
                path: path.to_path_buf(),
                reason: "the key is passphrase-protected; use an unencrypted key kept in a secret"
                    .into(),
            });
        }
        Ok(CommitSigner { key })
    }

    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The armored `SSH SIGNATURE` of `data`.
    pub fn sign(&self, data: &[u8]) -> Result<String, GitError> {
        let sig = self
            .key
            .sign(GIT_NAMESPACE, HashAlg::Sha512, data)
            .map_err(|e| GitError::Sign(e.to_string()))?;
        sig.to_pem(LineEnding::LF)
            .map_err(|e| GitError::Sign(e.to_string()))
    }

    /// Create a signed commit object (no ref is moved).
    pub(crate) fn commit(
        &self,
        repo: &Repository,
        author: &Signature<'_>,
        committer: &Signature<'_>,
        message: &str,
        tree: &Tree<'_>,
        parents: &[&git2::Commit<'_>],
    ) -> Result<Oid, GitError> {
        let buf = repo
            .commit_create_buffer(author, committer, message, tree, parents)
            .map_err(GitError::build)?;
        let content = buf
            .as_str()
            .map_err(|_| GitError::Sign("commit buffer is not UTF-8".into()))?;
        let signature = self.sign(content.as_bytes())?;
        repo.commit_signed(content, &signature, Some("gpgsig"))
            .map_err(GitError::build)
    }
}

/// Create a commit object, signed when a signer is given (no ref is moved).
pub(crate) fn create_commit(
    repo: &Repository,
    signer: Option<&CommitSigner>,
    author: &Signature<'_>,
    committer: &Signature<'_>,
    message: &str,
    tree: &Tree<'_>,
    parents: &[&git2::Commit<'_>],
) -> Result<Oid, GitError> {
    match signer {
        Some(s) => s.commit(repo, author, committer, message, tree, parents),
        None => repo
            .commit(None, author, committer, message, tree, parents)
            .map_err(GitError::build),
    }
}
