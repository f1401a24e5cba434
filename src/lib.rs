//! tidegate: GitOps progressive delivery for Istio.
//!
//! The pure core (`plan`, `analysis`, `rollout`, `control`) decides; adapters do I/O.

pub mod analysis;
pub mod cli;
pub mod config;
pub mod control;
pub mod convert;
pub mod daemon;
pub mod git;
#[cfg(feature = "lab")]
pub mod lab;
pub mod memory;
pub mod mesh;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod rbac;
pub mod rollout;
pub mod server;
pub mod telemetry;
pub mod transient;
pub mod units;
