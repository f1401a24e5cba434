//! Analysis: metric templates, verdicts and how a round of checks is judged. Pure: no I/O.

pub mod template;
pub mod verdict;

pub use template::{Template, Unit};
pub use verdict::{Outcome, Verdict};
pub mod query;

pub use query::{check_query, query_hint};
