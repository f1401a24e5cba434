//! `tidegate lab` on a machine without Prometheus: it installs Debian's package when root with
//! apt-get, and otherwise stops with the exact command. apt-get is never really run here: PATH
//! holds either nothing or a fake `apt-get` that records its arguments.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const INSTALL: &str = "apt-get install -y --no-install-recommends prometheus";

/// `tidegate lab` with PATH set to `path_dir` alone.
fn lab_with_path(path_dir: &Path, lab_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["lab", "--scenario", "healthy", "--dir"])
        .arg(lab_dir)
        .env("PATH", path_dir)
        .output()
        .expect("tidegate runs")
}

#[test]
fn without_prometheus_or_apt_get_the_lab_stops_with_the_command() {
    let empty = tempfile::tempdir().expect("tempdir");
    let lab = tempfile::tempdir().expect("tempdir");
    let out = lab_with_path(empty.path(), lab.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the `prometheus` binary is not on PATH"),
        "{err}"
    );
    assert!(err.contains("apt-get is not on PATH"), "{err}");
    assert!(err.contains(&format!("sudo {INSTALL}")), "{err}");
    // Nothing was started.
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!lab.path().join("prometheus").exists());
}

/// A fake apt-get: records each call (and DEBIAN_FRONTEND), `update` succeeds, `install` fails.
fn fake_apt_get(dir: &Path) -> std::path::PathBuf {
    let log = dir.join("apt-get.log");
    let script = format!(
        "#!/bin/sh\necho \"$DEBIAN_FRONTEND $*\" >> '{}'\n[ \"$1\" = update ] && exit 0\necho 'E: fake apt-get refuses' >&2\nexit 100\n",
        log.display()
    );
    let path = dir.join("apt-get");
    std::fs::write(&path, script).expect("write fake apt-get");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    log
}

#[test]
fn with_apt_get_root_installs_and_anyone_else_gets_the_sudo_command() {
    let bin = tempfile::tempdir().expect("tempdir");
    let log = fake_apt_get(bin.path());
    let lab = tempfile::tempdir().expect("tempdir");
    let out = lab_with_path(bin.path(), lab.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    if tidegate::lab::setup::is_root() {
        // Root: says so, runs apt-get non-interactively, shows its output, reports the failure.
        assert!(
            err.contains("installing Debian's `prometheus` package"),
            "{err}"
        );
        assert_eq!(
            calls.lines().last(),
            Some("noninteractive install -y --no-install-recommends prometheus"),
            "{calls}"
        );
        assert!(err.contains("E: fake apt-get refuses"), "{err}");
        assert!(err.contains(&format!("`{INSTALL}` failed")), "{err}");
    } else {
        assert!(
            calls.is_empty(),
            "apt-get must not run as non-root: {calls}"
        );
        assert!(err.contains("this process is not root"), "{err}");
        assert!(err.contains(&format!("sudo {INSTALL}")), "{err}");
    }
}
