//! The shipped binary is static (scripts/build-release links glibc in with crt-static) and runs
//! on gcr.io/distroless/static-debian12; the Dockerfile builds it with that script.
//!
//! A static build only works when every other C library is already linked statically, so the
//! first check runs `ldd` on the binary cargo built for these tests (a debug build with the same
//! dependencies, features and `.cargo/config.toml` environment as the shipped build): it may
//! need glibc and libgcc, nothing else. The static build itself takes minutes and is checked by
//! scripts/build-release (no loader, no shared library, `--version` runs).

use std::path::Path;
use std::process::Command;

/// Sonames (prefixes) that glibc and libgcc provide, plus the kernel's vDSO.
const ALLOWED: &[&str] = &[
    "linux-vdso.so",
    "linux-gate.so",
    "libc.so",
    "libm.so",
    "libgcc_s.so",
    "libpthread.so",
    "libdl.so",
    "librt.so",
    "ld-linux",
];

fn ldd() -> &'static str {
    for p in ["/usr/bin/ldd", "/bin/ldd"] {
        if Path::new(p).is_file() {
            return p;
        }
    }
    panic!("ldd not found: install the Debian package `libc-bin`");
}

#[test]
fn binary_needs_only_glibc_and_libgcc() {
    let bin = env!("CARGO_BIN_EXE_tidegate");
    let out = Command::new(ldd()).arg(bin).output().expect("run ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ldd {bin} failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let libs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        libs.iter().any(|l| l.starts_with("libc.so")),
        "ldd output without libc: {text}"
    );
    let extra: Vec<&str> = libs
        .iter()
        .copied()
        .filter(|lib| {
            let name = lib.rsplit('/').next().unwrap_or(lib);
            !ALLOWED.iter().any(|a| name.starts_with(a))
        })
        .collect();
    assert!(
        extra.is_empty(),
        "{bin} links {extra:?} beyond glibc/libgcc; link them statically \
         (zlib: LIBZ_SYS_STATIC=1 in .cargo/config.toml; OpenSSL: git2's vendored-openssl):\n{text}"
    );
    assert!(!text.contains("not found"), "unresolved libraries:\n{text}");
}

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn dockerfile_builds_a_static_binary_with_the_release_script_on_distroless() {
    let docker = read("Dockerfile");
    let froms: Vec<&str> = docker
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(
        froms,
        [
            "rust:1-bookworm AS build",
            "gcr.io/distroless/static-debian12:nonroot"
        ],
        "multi-stage: Debian 12 builder, distroless static runtime (the binary carries its libc)"
    );
    assert!(
        docker.contains("install -D -m 0755 target/ship/tidegate /out/tidegate"),
        "the image takes the binary scripts/build-release checked"
    );
    assert!(
        docker.contains("scripts/build-release"),
        "the build stage runs scripts/build-release"
    );
    assert!(docker.lines().any(|l| l.trim() == "USER nonroot"));
    assert!(
        docker
            .lines()
            .any(|l| l.trim() == "VOLUME /var/lib/tidegate")
    );
    assert!(docker.contains(
        r#"ENTRYPOINT ["/usr/local/bin/tidegate", "run", "--config", "/etc/tidegate/config.yaml"]"#
    ));

    let script = read("scripts/build-release");
    assert!(
        script
            .lines()
            .any(|l| l.trim() == "export LIBZ_SYS_STATIC=1")
    );
    assert!(script.contains("cargo build --profile dist --locked --no-default-features --target"));
    assert!(
        script.contains("-C target-feature=+crt-static"),
        "glibc is linked in"
    );
    assert!(
        script.contains("readelf -d \"$bin\" | grep -q NEEDED"),
        "the script refuses a binary that needs shared libraries"
    );
    assert!(
        read("Cargo.toml").contains("[profile.dist]"),
        "the dist profile exists"
    );
    let config = read(".cargo/config.toml");
    assert!(
        config
            .lines()
            .any(|l| l.trim() == r#"LIBZ_SYS_STATIC = "1""#)
    );
}

/// Package names in Cargo.lock.
fn locked_packages() -> Vec<String> {
    read("Cargo.lock")
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn one_tls_provider_and_no_system_openssl() {
    let packages = locked_packages();
    assert!(
        packages.iter().any(|p| p == "rustls"),
        "rustls is the TLS stack"
    );
    assert!(
        packages.iter().any(|p| p == "ring"),
        "ring is the rustls provider"
    );
    // A second provider makes kube panic at start-up (two process-default candidates).
    for banned in ["aws-lc-rs", "aws-lc-sys"] {
        assert!(
            !packages.iter().any(|p| p == banned),
            "{banned} is in Cargo.lock: some dependency enabled rustls' default provider; \
             find it with `cargo tree -i {banned}` and turn its default features off"
        );
    }
    // OpenSSL (libssh2/libgit2) must be built from source and linked statically.
    if packages.iter().any(|p| p == "openssl-sys") {
        assert!(
            packages.iter().any(|p| p == "openssl-src"),
            "openssl-sys without openssl-src links the system libssl: enable git2's `vendored-openssl`"
        );
    }
}
