//! The annotated example configuration (config/tidegate.yaml) passes `tidegate run --check`
//! once the files it names exist; a broken one reports every problem at once.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn example_config_is_valid() {
    let text = std::fs::read_to_string(root().join("config/tidegate.yaml")).expect("read");
    // The example names mounted secrets under /etc/tidegate; create them under a temp dir.
    let dir = tempfile::tempdir().expect("tempdir");
    let etc = dir.path().join("etc");
    let text = text.replace("/etc/tidegate", &etc.display().to_string());
    for f in ["git/token", "notify/slack-url"] {
        let p = etc.join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, "https://hooks.example.com/services/T000/B000/XXXX\n").expect("write");
    }
    let cfg = dir.path().join("tidegate.yaml");
    std::fs::write(&cfg, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["run", "--check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration valid"));
}

#[test]
fn broken_config_reports_every_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "git:\n  url: ''\n  pollInterval: often\nprometheus:\n  url: localhost:9090\nserver:\n  listen: ':http'\nnotifications:\n  - {name: Default, kind: slack}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["run", "--check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for field in [
        "git.url",
        "git.pollInterval",
        "prometheus.url",
        "server.listen",
        "notifications",
    ] {
        assert!(err.contains(field), "{field} missing in:\n{err}");
    }
    assert!(err.contains("bad.yaml"), "{err}");
}
