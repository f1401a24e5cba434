//! The status side of [`GitRepo`]: status commits on the status branch and reading status
//! documents and refused controls back. A status branch that does not exist yet is created by
//! the first write as a history of its own (a root commit), seeded with the status folder of the
//! watched branch, so moving from same-branch mode keeps every status.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{FileMode, ObjectType, Oid, Signature, Tree};

use super::{Branch, GitRepo, WriteOutcome};
use crate::control::RefusedRecord;
use crate::control::refusal::append_bounded;
use crate::git::batch::{StatusBatch, status_message};
use crate::git::signing::create_commit;
use crate::git::status_doc::{
    parse_refused, read_status_documents, refused_path, render_refused, render_status, status_path,
};
use crate::git::{GitError, StateStore};
use crate::rollout::Status;

/// The files of a status commit: path → new text, or `None` to delete it.
type Files = BTreeMap<String, Option<String>>;

impl GitRepo {
    /// The commit whose tree holds the statuses: the status branch's tip, else (same-branch
    /// mode, or a status branch not created yet) the watched branch's.
    fn status_commit(&mut self) -> Result<Oid, GitError> {
        let tip = match self.tracked_tip() {
            Some(t) => t,
            None => self.fetch()?,
        };
        Ok(self.status_tip().unwrap_or(tip))
    }

    fn tree_of(&self, commit: Oid) -> Result<Tree<'_>, GitError> {
        self.repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(GitError::read)
    }

    /// Every status document at the status branch's tip (fetched before when never fetched); a
    /// bad document is an error entry, not a stop.
    pub fn status_documents(&mut self) -> Result<Vec<Result<Status, GitError>>, GitError> {
        let commit = self.status_commit()?;
        let tree = self.tree_of(commit)?;
        read_status_documents(&self.repo, &tree, &self.config.status_dir)
    }

    /// The controls recorded in `<status folder>/_refused.yaml`, newest last.
    pub fn refused_records(&mut self) -> Result<Vec<RefusedRecord>, GitError> {
        let commit = self.status_commit()?;
        let tree = self.tree_of(commit)?;
        let path = refused_path(&self.config.status_dir);
        match self.text_at(&tree, &path)? {
            None => Ok(Vec::new()),
            Some(text) => parse_refused(&text).map_err(|reason| GitError::StatusDocument {
                path: path.clone(),
                reason,
            }),
        }
    }

    fn text_at(&self, tree: &Tree<'_>, path: &str) -> Result<Option<String>, GitError> {
        let Ok(entry) = tree.get_path(Path::new(path)) else {
            return Ok(None);
        };
        if entry.kind() != Some(ObjectType::Blob) {
            return Ok(None);
        }
        let blob = self.repo.find_blob(entry.id()).map_err(GitError::read)?;
        Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()))
    }

    /// The tree a new status branch starts from: the watched tip's status folder, else empty.
    fn seed_tree(&self) -> Result<Tree<'_>, GitError> {
        let empty = self
            .repo
            .treebuilder(None)
            .and_then(|b| b.write())
            .and_then(|id| self.repo.find_tree(id))
            .map_err(GitError::build)?;
        let dir = self.config.status_dir.trim_matches('/');
        let folder = match self.tracked_tip() {
            Some(tip) => self
                .tree_of(tip)?
                .get_path(Path::new(dir))
                .ok()
                .filter(|e| e.kind() == Some(ObjectType::Tree))
                .map(|e| e.id()),
            None => None,
        };
        let Some(folder) = folder else {
            return Ok(empty);
        };
        let mut update = git2::build::TreeUpdateBuilder::new();
        update.upsert(dir, folder, FileMode::Tree);
        let id = update
            .create_updated(&self.repo, &empty)
            .map_err(GitError::build)?;
        self.repo.find_tree(id).map_err(GitError::build)
    }

    /// `_refused.yaml` of `base` with `new` added, or `None` when every one is already there.
    fn merged_refused(
        &self,
        base: &Tree<'_>,
        new: &[RefusedRecord],
    ) -> Result<Option<String>, GitError> {
        let path = refused_path(&self.config.status_dir);
        let mut log = match self.text_at(base, &path)? {
            None => Vec::new(),
            Some(text) => parse_refused(&text).unwrap_or_else(|reason| {
                tracing::warn!(path = %path, reason = %reason, "unreadable record of refused controls; starting it again");
                Vec::new()
            }),
        };
        if append_bounded(&mut log, new) == 0 {
            return Ok(None);
        }
        render_refused(&log)
            .map(Some)
            .map_err(|reason| GitError::StatusDocument { path, reason })
    }

    /// Build the status commit on `base` (`None`: the first commit of the status branch);
    /// returns `None` when nothing would change.
    fn build_status_commit(
        &self,
        base: Option<Oid>,
        files: &Files,
        refused: &[RefusedRecord],
        message: &str,
    ) -> Result<Option<Oid>, GitError> {
        let parent = match base {
            Some(b) => Some(self.repo.find_commit(b).map_err(GitError::build)?),
            None => None,
        };
        let base_tree = match &parent {
            Some(p) => p.tree().map_err(GitError::build)?,
            None => self.seed_tree()?,
        };
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, text) in files {
            match text {
                Some(text) => {
                    let blob = self.repo.blob(text.as_bytes()).map_err(GitError::build)?;
                    update.upsert(path.as_str(), blob, FileMode::Blob);
                }
                None if base_tree.get_path(Path::new(path)).is_ok() => {
                    update.remove(path.as_str());
                }
                None => {}
            }
        }
        if let Some(text) = self.merged_refused(&base_tree, refused)? {
            let blob = self.repo.blob(text.as_bytes()).map_err(GitError::build)?;
            update.upsert(refused_path(&self.config.status_dir), blob, FileMode::Blob);
        }
        let tree_id = update
            .create_updated(&self.repo, &base_tree)
            .map_err(GitError::build)?;
        if tree_id == base_tree.id() && (parent.is_some() || base_tree.is_empty()) {
            return Ok(None);
        }
        let tree = self.repo.find_tree(tree_id).map_err(GitError::build)?;
        let (author, committer) = self.signatures()?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        create_commit(
            &self.repo,
            self.signer.as_ref(),
            &author,
            &committer,
            message,
            &tree,
            &parents,
        )
        .map(Some)
    }

    fn signatures(&self) -> Result<(Signature<'static>, Signature<'static>), GitError> {
        let author = Signature::now(&self.config.author.name, &self.config.author.email)
            .map_err(GitError::build)?;
        let committer_id = self
            .config
            .committer
            .as_ref()
            .unwrap_or(&self.config.author);
        let committer =
            Signature::now(&committer_id.name, &committer_id.email).map_err(GitError::build)?;
        Ok((author, committer))
    }

    /// The files of `batch` (the last document of each rollout wins; removals after), the
    /// transitions that could be written, and why the others could not.
    fn status_files(&self, batch: &StatusBatch) -> (Files, Vec<Status>, Vec<String>) {
        let dir = &self.config.status_dir;
        let mut files = Files::new();
        let mut written = Vec::new();
        let mut skipped = Vec::new();
        for s in &batch.statuses {
            match status_path(dir, &s.rollout).and_then(|p| Ok((p, render_status(s)?))) {
                Ok((path, text)) => {
                    files.insert(path, Some(text));
                    written.push(s.clone());
                }
                Err(e) => {
                    tracing::error!(rollout = %s.rollout, error = %e, "cannot write this status");
                    skipped.push(e.to_string());
                }
            }
        }
        for id in &batch.removed {
            match status_path(dir, id) {
                Ok(path) => {
                    files.insert(path, None);
                }
                Err(e) => skipped.push(e.to_string()),
            }
        }
        (files, written, skipped)
    }
}

impl StateStore for GitRepo {
    fn load_statuses(&mut self) -> Result<Vec<Status>, GitError> {
        self.fetch()?;
        let mut out = Vec::new();
        for doc in self.status_documents()? {
            match doc {
                Ok(s) => out.push(s),
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable status document"),
            }
        }
        Ok(out)
    }

    fn write(
        &mut self,
        batch: &StatusBatch,
        processed_through: Option<&str>,
    ) -> Result<WriteOutcome, GitError> {
        if let Some(p) = processed_through {
            let oid = Oid::from_str(p)
                .map_err(|_| GitError::Build(format!("{p:?} is not a commit id")))?;
            self.marker = Some(oid);
        }
        let (files, written, skipped) = self.status_files(batch);
        let effective = StatusBatch {
            statuses: written,
            removed: batch.removed.clone(),
            refused: batch.refused.clone(),
        };
        if files.is_empty() && effective.refused.is_empty() {
            return Ok(WriteOutcome {
                commit: None,
                attempts: 0,
                transitions: 0,
                removed: 0,
                refused: 0,
                skipped,
            });
        }
        if self.marker.is_none() {
            // A writer that never polled keeps the marker already recorded, so every status
            // commit names the processed position.
            let tip = self.fetch()?;
            self.marker = self.find_processed(tip)?;
        }
        let message = status_message(&effective, self.marker);
        let (commit, attempts) = self.commit_with_retry(Branch::Status, |repo, base| {
            repo.build_status_commit(base, &files, &effective.refused, &message)
        })?;
        match commit {
            Some(c) => {
                tracing::info!(commit = %c, branch = %self.config.status_branch, attempts, transitions = effective.statuses.len(), removed = effective.removed.len(), refused = effective.refused.len(), "pushed status commit");
            }
            None => {
                tracing::info!(
                    transitions = effective.statuses.len(),
                    "status documents already up to date on the branch"
                );
            }
        }
        let landed = commit.is_some();
        Ok(WriteOutcome {
            transitions: if landed { effective.statuses.len() } else { 0 },
            removed: if landed { effective.removed.len() } else { 0 },
            refused: if landed { effective.refused.len() } else { 0 },
            commit: commit.map(|c| c.to_string()),
            attempts,
            skipped,
        })
    }
}
