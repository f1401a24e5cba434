//! The status document: how a rollout's status is written to and read from Git.
//!
//! Rendering is deterministic (the same status always gives the same bytes), so an unchanged
//! status never produces a commit.

use crate::rollout::Status;

/// First line of every status file.
pub const HEADER: &str = "# Written by tidegate; edits are overwritten. Steer rollouts with control commits (Tidegate: pause <name>).\n";

/// Errors reading a status document.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("failed to render the status of {rollout}: {message}")]
    Render { rollout: String, message: String },
    #[error("failed to read status document {path}: {message}")]
    Parse { path: String, message: String },
}

/// Render a status as YAML (deterministic).
pub fn render(status: &Status) -> Result<String, DocumentError> {
    let body = serde_saphyr::to_string(status).map_err(|e| DocumentError::Render {
        rollout: status.rollout.to_string(),
        message: e.to_string(),
    })?;
    Ok(format!("{HEADER}{body}"))
}

/// Read a status document back.
pub fn parse(path: &str, text: &str) -> Result<Status, DocumentError> {
    serde_saphyr::from_str(text).map_err(|e| DocumentError::Parse {
        path: path.to_owned(),
        message: e.to_string().lines().next().unwrap_or_default().to_owned(),
    })
}

/// The path of a rollout's status file under `folder` (default `status`).
pub fn path_for(folder: &str, rollout: &crate::plan::RolloutId) -> String {
    let folder = folder.trim_end_matches('/');
    format!("{folder}/{}/{}.yaml", rollout.namespace, rollout.name)
}
