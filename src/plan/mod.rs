//! Rollout plans: the model, parsing with source positions, and validation that reports every
//! mistake at once. Pure: no I/O.

pub mod advice;
pub mod defaults;
mod model;
mod parse;
pub mod query;
pub mod template;
mod yaml;

pub use model::*;
pub use parse::{Finding, Parsed, check_set, parse_mixed_str, parse_str};
pub use template::{Template, Unit};
