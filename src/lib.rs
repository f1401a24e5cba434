//! tidegate: GitOps progressive delivery for Istio.
//!
//! The pure core (`plan`, `analysis`, `rollout`, `control`) decides; adapters do I/O.

pub mod analysis;
pub mod cli;
pub mod control;
pub mod notify;
pub mod plan;
pub mod rbac;
pub mod rollout;
