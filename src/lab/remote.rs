//! The lab's Git side: a bare "remote" repository on disk (reached over `file://`) seeded with an
//! example plan, and a clone for the user to edit, commit and push.

use std::path::{Path, PathBuf};

use git2::{Repository, Signature};

/// Errors preparing the lab repositories.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("failed to prepare the lab repository {path}: {source}")]
    Git {
        path: String,
        #[source]
        source: git2::Error,
    },
    #[error("failed to write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The lab's repositories.
#[derive(Debug, Clone)]
pub struct LabRepos {
    /// The bare remote.
    pub remote: PathBuf,
    /// The user's clone (a work tree).
    pub clone: PathBuf,
}

impl LabRepos {
    pub fn url(&self) -> String {
        format!("file://{}", self.remote.display())
    }
}

fn git_err(path: &Path) -> impl FnOnce(git2::Error) -> RemoteError + '_ {
    move |source| RemoteError::Git {
        path: path.display().to_string(),
        source,
    }
}

/// Create `dir/remote.git` with one commit holding `files` (path → content) on `main`, and
/// clone it to `dir/plans`.
pub fn seed(dir: &Path, files: &[(&str, String)]) -> Result<LabRepos, RemoteError> {
    let remote = dir.join("remote.git");
    let clone = dir.join("plans");
    let repo = Repository::init_bare(&remote).map_err(git_err(&remote))?;
    let sig = Signature::now("Lab Seeder", "lab@tidegate.invalid").map_err(git_err(&remote))?;
    let mut builder = repo.treebuilder(None).map_err(git_err(&remote))?;
    // Nested paths: build a tree per folder.
    let mut folders: std::collections::BTreeMap<String, Vec<(String, git2::Oid)>> =
        Default::default();
    for (path, content) in files {
        let blob = repo.blob(content.as_bytes()).map_err(git_err(&remote))?;
        match path.rsplit_once('/') {
            Some((folder, name)) => folders
                .entry(folder.to_owned())
                .or_default()
                .push((name.to_owned(), blob)),
            None => {
                builder
                    .insert(*path, blob, 0o100644)
                    .map_err(git_err(&remote))?;
            }
        }
    }
    for (folder, entries) in folders {
        // One level of folders is all the lab needs (rollouts/...).
        let mut fb = repo.treebuilder(None).map_err(git_err(&remote))?;
        for (name, blob) in entries {
            fb.insert(name, blob, 0o100644).map_err(git_err(&remote))?;
        }
        let tree = fb.write().map_err(git_err(&remote))?;
        builder
            .insert(folder, tree, 0o040000)
            .map_err(git_err(&remote))?;
    }
    let tree_id = builder.write().map_err(git_err(&remote))?;
    let tree = repo.find_tree(tree_id).map_err(git_err(&remote))?;
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "Add the orders-svc rollout plan",
        &tree,
        &[],
    )
    .map_err(git_err(&remote))?;
    repo.set_head("refs/heads/main").map_err(git_err(&remote))?;
    let url = format!("file://{}", remote.display());
    let cloned = Repository::clone(&url, &clone).map_err(git_err(&clone))?;
    let mut cfg = cloned.config().map_err(git_err(&clone))?;
    cfg.set_str("user.name", "Lab User")
        .map_err(git_err(&clone))?;
    cfg.set_str("user.email", "you@example.com")
        .map_err(git_err(&clone))?;
    Ok(LabRepos { remote, clone })
}

/// Every commit message on `main` and on tidegate's status branch of the remote, oldest first.
pub fn messages(remote: &Path) -> Result<Vec<String>, RemoteError> {
    let repo = Repository::open_bare(remote).map_err(git_err(remote))?;
    let mut walk = repo.revwalk().map_err(git_err(remote))?;
    walk.push_ref("refs/heads/main").map_err(git_err(remote))?;
    let status = format!("refs/heads/{}", crate::git::DEFAULT_STATUS_BRANCH);
    if repo.find_reference(&status).is_ok() {
        walk.push_ref(&status).map_err(git_err(remote))?;
    }
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
        .map_err(git_err(remote))?;
    let mut out = Vec::new();
    for oid in walk {
        let oid = oid.map_err(git_err(remote))?;
        let c = repo.find_commit(oid).map_err(git_err(remote))?;
        out.push(c.message().unwrap_or_default().to_owned());
    }
    Ok(out)
}

/// Commit `content` at `path` (e.g. `rollouts/orders-svc.yaml`) on top of `main` of the bare
/// `remote`, as a user's push would; returns the new commit id.
pub fn commit_file(
    remote: &Path,
    path: &str,
    content: &str,
    message: &str,
) -> Result<String, RemoteError> {
    let repo = Repository::open_bare(remote).map_err(git_err(remote))?;
    let parent = repo
        .find_reference("refs/heads/main")
        .and_then(|r| r.peel_to_commit())
        .map_err(git_err(remote))?;
    let blob = repo.blob(content.as_bytes()).map_err(git_err(remote))?;
    let base = parent.tree().map_err(git_err(remote))?;
    let tree_id = git2::build::TreeUpdateBuilder::new()
        .upsert(path, blob, git2::FileMode::Blob)
        .create_updated(&repo, &base)
        .map_err(git_err(remote))?;
    let tree = repo.find_tree(tree_id).map_err(git_err(remote))?;
    let sig = Signature::now("Lab User", "you@example.com").map_err(git_err(remote))?;
    let oid = repo
        .commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            message,
            &tree,
            &[&parent],
        )
        .map_err(git_err(remote))?;
    Ok(oid.to_string())
}
