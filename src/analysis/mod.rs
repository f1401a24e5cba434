//! Analysis: metric templates, verdicts and how a round of checks is judged. Pure: no I/O.

pub mod batch;
pub mod judge;
pub mod render;
pub mod subset;
pub mod template;
pub mod verdict;

pub use template::{Template, Unit};
pub use verdict::{Outcome, Verdict};

// Plan validation checks custom queries with the renderer's own rules (names and contexts).
pub use render::{check_query, query_hint};
