//! The lab: parts that let tidegate run its whole loop on one machine without a cluster.
//!
//! `kube_emulator` is an in-process Kubernetes API server (real HTTP on loopback) that kube's
//! `Client` talks to like any cluster; the tests and `tidegate lab` use it.

pub mod kube_emulator;
