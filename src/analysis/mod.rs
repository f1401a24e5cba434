//! Analysis: metric templates, verdicts and how a round of checks is judged. Pure: no I/O.

pub mod batch;
pub mod judge;
pub mod render;
pub mod stats;
pub mod subset;
pub mod verdict;

// The template catalogue belongs to the plan model; re-exported for the analysis code.
pub use crate::plan::template::{self, Template, Unit};
pub use verdict::{Outcome, TestReport, Verdict};
