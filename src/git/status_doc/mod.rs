//! Status documents in the repository: where each rollout's file lives, how it is rendered, and
//! reading them all back from a tree; and the repository-level record of refused controls.

use git2::{ObjectType, Repository, Tree, TreeWalkMode, TreeWalkResult};

pub mod document;
mod refused;

pub use refused::{REFUSED_FILE, parse_refused, refused_path, render_refused};

use super::GitError;
use crate::plan::RolloutId;
use crate::rollout::Status;

/// `<dir>/<namespace>/<name>.yaml`, refusing names that would escape the folder.
pub fn status_path(dir: &str, id: &RolloutId) -> Result<String, GitError> {
    for (what, part) in [("namespace", &id.namespace), ("name", &id.name)] {
        let ok = !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(GitError::StatusDocument {
                path: format!("{dir}/{}/{}.yaml", id.namespace, id.name),
                reason: format!("{what} {part:?} is not usable as a file name"),
            });
        }
    }
    Ok(document::path_for(dir.trim_matches('/'), id))
}

/// The YAML text of a status document (deterministic: see [`document`]).
pub fn render_status(status: &Status) -> Result<String, GitError> {
    document::render(status).map_err(|e| GitError::StatusDocument {
        path: status.rollout.to_string(),
        reason: e.to_string(),
    })
}

fn parse_status(path: &str, text: &str) -> Result<Status, GitError> {
    document::parse(path, text).map_err(|e| GitError::StatusDocument {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// Every `<dir>/<namespace>/…/*.yaml` in `tree`, parsed; a bad file gives an error entry, not a
/// stop. Files directly in `dir` (`_refused.yaml`) are not status documents.
pub fn read_status_documents(
    repo: &Repository,
    tree: &Tree<'_>,
    dir: &str,
) -> Result<Vec<Result<Status, GitError>>, GitError> {
    let dir = dir.trim_matches('/');
    let sub = match tree.get_path(std::path::Path::new(dir)) {
        Ok(e) if e.kind() == Some(ObjectType::Tree) => {
            repo.find_tree(e.id()).map_err(GitError::read)?
        }
        _ => return Ok(Vec::new()),
    };
    let mut blobs = Vec::new();
    sub.walk(TreeWalkMode::PreOrder, |parent, entry| {
        if entry.kind() == Some(ObjectType::Blob)
            && !parent.is_empty()
            && let Ok(name) = entry.name()
            && name.ends_with(".yaml")
        {
            blobs.push((format!("{dir}/{parent}{name}"), entry.id()));
        }
        TreeWalkResult::Ok
    })
    .map_err(GitError::read)?;
    let mut out = Vec::with_capacity(blobs.len());
    for (path, oid) in blobs {
        let blob = repo.find_blob(oid).map_err(GitError::read)?;
        out.push(match std::str::from_utf8(blob.content()) {
            Ok(text) => parse_status(&path, text),
            Err(_) => Err(GitError::StatusDocument {
                path,
                reason: "not UTF-8 text".into(),
            }),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_paths_refuse_traversal() {
        let id = |ns: &str, n: &str| RolloutId {
            namespace: ns.into(),
            name: n.into(),
        };
        assert_eq!(
            status_path("status/", &id("prod", "orders-svc")).expect("ok"),
            "status/prod/orders-svc.yaml"
        );
        assert!(status_path("status", &id("..", "x")).is_err());
        assert!(status_path("status", &id("a/b", "x")).is_err());
        assert!(status_path("status", &id("a", "")).is_err());
    }
}
