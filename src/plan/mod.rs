//! Rollout plans: the model, parsing with source positions, and validation that reports every
//! mistake at once. Pure: no I/O.

mod model;

pub use model::*;
