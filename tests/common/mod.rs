//! Shared test setup: the fixture folder (failing loudly when absent) and the TLS provider.

#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/fixtures/<rel>` relative to the crate root; panics naming the path if absent.
pub fn fixture(rel: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures")
        .join(rel);
    assert!(
        p.exists(),
        "the shared fixtures are missing: expected {} (the tests need ../shared/fixtures next to the crate)",
        p.display()
    );
    p
}

/// Install rustls' ring provider once (kube panics when none or two are installed).
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
