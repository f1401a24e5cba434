//! Plan discovery: the files matching the plan glob in a tip tree, re-read only where a tree diff
//! says they changed, each with its revision (the last first-parent commit that changed it).

use std::collections::{BTreeMap, BTreeSet};

use git2::{Delta, DiffOptions, ObjectType, Oid, Repository, Tree, TreeWalkMode, TreeWalkResult};
use globset::{Glob, GlobMatcher};

use super::GitError;

/// One plan file as found at the tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFile {
    /// Path in the repository (`/`-separated).
    pub path: String,
    /// The last commit (first-parent history) that changed this path.
    pub revision: String,
    /// The blob id of the content (changes exactly when the content does).
    pub blob: String,
    pub content: PlanContent,
}

/// The text to parse, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanContent {
    Text(String),
    /// Not a readable plan: a symlink, a submodule, a binary or oversized file, not UTF-8.
    Unreadable(String),
}

const MODE_LINK: i32 = 0o120000;
const MODE_GITLINK: i32 = 0o160000;

/// What is known about the plan files at the last tip read.
pub(crate) struct PlanIndex {
    matcher: GlobMatcher,
    /// Literal directory prefix of the glob (`rollouts` for `rollouts/**/*.yaml`), or empty.
    prefix: String,
    max_bytes: usize,
    /// path → blob id at the last tip.
    known: BTreeMap<String, Oid>,
}

impl PlanIndex {
    pub(crate) fn new(glob: &str, max_bytes: usize) -> Result<PlanIndex, GitError> {
        let matcher = Glob::new(glob)
            .map_err(|e| GitError::Config(format!("invalid plan glob {glob:?}: {e}")))?
            .compile_matcher();
        let mut prefix = Vec::new();
        for comp in glob.split('/') {
            if comp.contains(['*', '?', '[', '{', '\\']) {
                break;
            }
            prefix.push(comp);
        }
        // The last literal component may be the file name itself.
        if prefix.len() == glob.split('/').count() {
            prefix.pop();
        }
        Ok(PlanIndex {
            matcher,
            prefix: prefix.join("/"),
            max_bytes,
            known: BTreeMap::new(),
        })
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        self.matcher.is_match(path)
    }

    /// Read every plan at `tip` (first poll, or after a force push).
    pub(crate) fn full_read(
        &mut self,
        repo: &Repository,
        tip: Oid,
    ) -> Result<(Vec<PlanFile>, Vec<String>), GitError> {
        let tree = repo
            .find_commit(tip)
            .and_then(|c| c.tree())
            .map_err(GitError::read)?;
        let found = self.list(repo, &tree)?;
        let previous = std::mem::take(&mut self.known);
        let removed: Vec<String> = previous
            .keys()
            .filter(|p| !found.iter().any(|(fp, _, _)| fp == *p))
            .cloned()
            .collect();
        let paths: BTreeSet<String> = found.iter().map(|(p, _, _)| p.clone()).collect();
        let revisions = self.revisions(repo, tip, paths)?;
        let mut files = Vec::with_capacity(found.len());
        for (path, oid, mode) in found {
            self.known.insert(path.clone(), oid);
            let revision = revisions.get(&path).copied().unwrap_or(tip);
            files.push(self.file(repo, path, oid, mode, revision));
        }
        Ok((files, removed))
    }

    /// Re-read only the plan paths that differ between `old` and `new`.
    pub(crate) fn update(
        &mut self,
        repo: &Repository,
        old: Oid,
        new: Oid,
    ) -> Result<(Vec<PlanFile>, Vec<String>), GitError> {
        let old_tree = repo
            .find_commit(old)
            .and_then(|c| c.tree())
            .map_err(GitError::read)?;
        let new_tree = repo
            .find_commit(new)
            .and_then(|c| c.tree())
            .map_err(GitError::read)?;
        let mut changed = BTreeSet::new();
        let mut removed = Vec::new();
        for (path, status) in self.diff_paths(repo, Some(&old_tree), &new_tree)? {
            if !self.matches(&path) {
                continue;
            }
            if status == Delta::Deleted {
                if self.known.remove(&path).is_some() {
                    removed.push(path);
                }
            } else {
                changed.insert(path);
            }
        }
        let revisions = self.revisions(repo, new, changed.clone())?;
        let mut files = Vec::new();
        for path in changed {
            let entry = new_tree
                .get_path(std::path::Path::new(&path))
                .map_err(GitError::read)?;
            let (oid, mode) = (entry.id(), entry.filemode());
            self.known.insert(path.clone(), oid);
            let revision = revisions.get(&path).copied().unwrap_or(new);
            files.push(self.file(repo, path, oid, mode, revision));
        }
        Ok((files, removed))
    }

    /// Every entry under the prefix whose path matches the glob: (path, id, mode).
    fn list(
        &self,
        repo: &Repository,
        tree: &Tree<'_>,
    ) -> Result<Vec<(String, Oid, i32)>, GitError> {
        let root;
        let start: &Tree<'_> = if self.prefix.is_empty() {
            tree
        } else {
            match tree.get_path(std::path::Path::new(&self.prefix)) {
                Ok(e) if e.kind() == Some(ObjectType::Tree) => {
                    root = repo.find_tree(e.id()).map_err(GitError::read)?;
                    &root
                }
                _ => return Ok(Vec::new()),
            }
        };
        let base = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out = Vec::new();
        start
            .walk(TreeWalkMode::PreOrder, |dir, entry| {
                if entry.kind() == Some(ObjectType::Tree) {
                    return TreeWalkResult::Ok;
                }
                let Ok(name) = entry.name() else {
                    return TreeWalkResult::Ok;
                };
                let path = format!("{base}{dir}{name}");
                if self.matcher.is_match(&path) {
                    out.push((path, entry.id(), entry.filemode()));
                }
                TreeWalkResult::Ok
            })
            .map_err(GitError::read)?;
        Ok(out)
    }

    /// Paths that differ between two trees (limited to the glob's prefix).
    fn diff_paths(
        &self,
        repo: &Repository,
        old: Option<&Tree<'_>>,
        new: &Tree<'_>,
    ) -> Result<Vec<(String, Delta)>, GitError> {
        let mut opts = DiffOptions::new();
        if !self.prefix.is_empty() {
            opts.pathspec(format!("{}/", self.prefix));
            opts.disable_pathspec_match(false);
        }
        opts.include_typechange(true);
        opts.ignore_submodules(false);
        let diff = repo
            .diff_tree_to_tree(old, Some(new), Some(&mut opts))
            .map_err(GitError::read)?;
        let mut out = Vec::new();
        for d in diff.deltas() {
            let file = if d.status() == Delta::Deleted {
                d.old_file()
            } else {
                d.new_file()
            };
            if let Some(p) = file.path().and_then(|p| p.to_str()) {
                out.push((p.to_string(), d.status()));
            }
        }
        Ok(out)
    }

    /// For each path, the newest first-parent commit from `tip` whose tree differs from its
    /// parent's at that path (the root commit for paths unchanged since it).
    fn revisions(
        &self,
        repo: &Repository,
        tip: Oid,
        mut needed: BTreeSet<String>,
    ) -> Result<BTreeMap<String, Oid>, GitError> {
        let mut found = BTreeMap::new();
        let mut current = repo.find_commit(tip).map_err(GitError::read)?;
        while !needed.is_empty() {
            let tree = current.tree().map_err(GitError::read)?;
            let parent = current.parent(0).ok();
            let parent_tree = match &parent {
                Some(p) => Some(p.tree().map_err(GitError::read)?),
                None => None,
            };
            if parent_tree.as_ref().map(|t| t.id()) != Some(tree.id()) {
                changed_needed(
                    repo,
                    parent_tree.as_ref(),
                    &tree,
                    "",
                    &mut needed,
                    &mut |path| {
                        found.insert(path, current.id());
                    },
                )?;
            }
            match parent {
                Some(p) => current = p,
                None => break,
            }
        }
        Ok(found)
    }

    /// Every plan at `tip` with its content, without revisions (cheap: no history walk).
    pub(crate) fn read_all(
        &self,
        repo: &Repository,
        tip: Oid,
    ) -> Result<Vec<(String, PlanContent)>, GitError> {
        let tree = repo
            .find_commit(tip)
            .and_then(|c| c.tree())
            .map_err(GitError::read)?;
        Ok(self
            .list(repo, &tree)?
            .into_iter()
            .map(|(path, oid, mode)| {
                let content = self.content(repo, &path, oid, mode);
                (path, content)
            })
            .collect())
    }

    /// The content of one tree entry at `path`, as a plan file's.
    pub(crate) fn read_entry(
        &self,
        repo: &Repository,
        path: &str,
        entry: &git2::TreeEntry<'_>,
    ) -> PlanContent {
        if entry.kind() == Some(ObjectType::Tree) {
            return PlanContent::Unreadable(format!("{path} is a folder, not a plan file"));
        }
        self.content(repo, path, entry.id(), entry.filemode())
    }

    fn file(
        &self,
        repo: &Repository,
        path: String,
        oid: Oid,
        mode: i32,
        revision: Oid,
    ) -> PlanFile {
        let content = self.content(repo, &path, oid, mode);
        PlanFile {
            path,
            revision: revision.to_string(),
            blob: oid.to_string(),
            content,
        }
    }

    fn content(&self, repo: &Repository, path: &str, oid: Oid, mode: i32) -> PlanContent {
        if mode == MODE_LINK {
            PlanContent::Unreadable(format!(
                "{path} is a symbolic link; plans must be regular files"
            ))
        } else if mode == MODE_GITLINK {
            PlanContent::Unreadable(format!(
                "{path} is a submodule; tidegate does not read submodules"
            ))
        } else {
            self.read_blob(repo, path, oid)
        }
    }

    fn read_blob(&self, repo: &Repository, path: &str, oid: Oid) -> PlanContent {
        let size = match repo.odb().and_then(|odb| odb.read_header(oid)) {
            Ok((size, _)) => size,
            Err(e) => {
                return PlanContent::Unreadable(format!("cannot read {path}: {}", e.message()));
            }
        };
        if size > self.max_bytes {
            return PlanContent::Unreadable(format!(
                "{path} is {size} bytes, over the {} byte limit for plan files",
                self.max_bytes
            ));
        }
        let blob = match repo.find_blob(oid) {
            Ok(b) => b,
            Err(e) => {
                return PlanContent::Unreadable(format!("cannot read {path}: {}", e.message()));
            }
        };
        if blob.is_binary() || blob.content().contains(&0) {
            return PlanContent::Unreadable(format!("{path} is a binary file, not YAML text"));
        }
        match std::str::from_utf8(blob.content()) {
            Ok(text) => PlanContent::Text(text.to_string()),
            Err(e) => PlanContent::Unreadable(format!(
                "{path} is not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            )),
        }
    }
}

/// Report (and remove from `needed`) every needed path whose entry in `new` differs from `old`
/// (or is absent there), descending only into subtrees that differ and hold a needed path.
/// Cheaper than a full diff: the plan revision walk calls it for thousands of commits.
fn changed_needed(
    repo: &Repository,
    old: Option<&Tree<'_>>,
    new: &Tree<'_>,
    base: &str,
    needed: &mut BTreeSet<String>,
    found: &mut dyn FnMut(String),
) -> Result<(), GitError> {
    for entry in new.iter() {
        if needed.is_empty() {
            break;
        }
        let Ok(name) = entry.name() else { continue };
        let old_entry = old.and_then(|t| t.get_name(name));
        if old_entry
            .as_ref()
            .is_some_and(|o| o.id() == entry.id() && o.filemode() == entry.filemode())
        {
            continue;
        }
        let path = format!("{base}{name}");
        if entry.kind() == Some(ObjectType::Tree) {
            let dir = format!("{path}/");
            let wanted = needed
                .range(dir.clone()..)
                .next()
                .is_some_and(|p| p.starts_with(&dir));
            if !wanted {
                continue;
            }
            let sub_new = repo.find_tree(entry.id()).map_err(GitError::read)?;
            let sub_old = match &old_entry {
                Some(o) if o.kind() == Some(ObjectType::Tree) => {
                    Some(repo.find_tree(o.id()).map_err(GitError::read)?)
                }
                _ => None,
            };
            changed_needed(repo, sub_old.as_ref(), &sub_new, &dir, needed, found)?;
        } else if needed.remove(&path) {
            found(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_prefix_is_the_literal_directory_part() {
        let idx = PlanIndex::new("rollouts/**/*.yaml", 10).expect("glob");
        assert_eq!(idx.prefix, "rollouts");
        assert!(idx.matches("rollouts/prod/orders.yaml"));
        assert!(idx.matches("rollouts/orders.yaml"));
        assert!(!idx.matches("status/prod/orders.yaml"));
        let idx = PlanIndex::new("**/*.yaml", 10).expect("glob");
        assert_eq!(idx.prefix, "");
        let idx = PlanIndex::new("deploy/plans/rollout.yaml", 10).expect("glob");
        assert_eq!(idx.prefix, "deploy/plans");
        assert!(PlanIndex::new("rollouts/[", 10).is_err());
    }
}
