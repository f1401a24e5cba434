//! Control commits: `Tidegate:` trailers, which rollout they name, and the policy deciding who
//! may steer.

pub mod policy;
pub mod refusal;
pub mod resolve;
pub mod trailers;

pub use policy::{CommitInfo, Policy, PolicyError, SignatureState};
pub use refusal::{MAX_REFUSED, RefusedRecord};
pub use resolve::{Target, Unresolved, resolve, resolve_written};
pub use trailers::{
    ControlTrailer, ParsedControl, control_message, control_trailers, is_status_commit,
    parse_controls,
};

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a control commit asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ControlAction {
    Pause,
    Resume,
    Abort,
    Promote,
    Retry,
}

impl ControlAction {
    pub const ALL: [ControlAction; 5] = [
        ControlAction::Pause,
        ControlAction::Resume,
        ControlAction::Abort,
        ControlAction::Promote,
        ControlAction::Retry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::Pause => "pause",
            ControlAction::Resume => "resume",
            ControlAction::Abort => "abort",
            ControlAction::Promote => "promote",
            ControlAction::Retry => "retry",
        }
    }

    pub fn parse(word: &str) -> Option<ControlAction> {
        ControlAction::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for ControlAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
