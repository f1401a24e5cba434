//! The lab: parts that let tidegate run its whole loop on one machine without a cluster.
//!
//! `kube_emulator` is an in-process Kubernetes API server (real HTTP on loopback) that kube's
//! `Client` talks to like any cluster; `traffic` simulates a meshed client and a backend per
//! DestinationRule subset with Istio's standard metrics; `prometheus` starts a real Prometheus;
//! `remote` seeds a Git remote; `setup` installs Prometheus when it is missing (or says how);
//! `run` puts them together for `tidegate lab` and the end-to-end tests.

pub mod kube_emulator;
pub mod prometheus;
pub mod remote;
pub mod run;
pub mod setup;
pub mod traffic;
