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

/// The example configuration as written: it names secrets under /etc/tidegate that this
/// machine does not have.
fn example_as_written(dir: &std::path::Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("config/tidegate.yaml")).expect("read");
    assert!(
        !std::path::Path::new("/etc/tidegate/git/token").exists(),
        "this test needs a machine without /etc/tidegate/git/token"
    );
    let cfg = dir.join("tidegate.yaml");
    std::fs::write(&cfg, text).expect("write");
    cfg
}

fn check(args: &[&str], cfg: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["run", "--check"])
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .expect("run")
}

#[test]
fn no_environment_validates_the_configuration_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = example_as_written(dir.path());
    // Plain --check looks at the files the configuration names.
    let out = check(&[], &cfg);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/etc/tidegate/git/token"), "{err}");
    // --no-environment: the same file is valid, and says what it did not check.
    let out = check(&["--no-environment"], &cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("configuration valid (files, secrets and environment not checked)"),
        "{text}"
    );
    // ...but still every mistake in the configuration itself.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "git:\n  url: ''\n  pollInterval: often\n").expect("write");
    let out = check(&["--no-environment"], &bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("git.url") && err.contains("git.pollInterval"),
        "{err}"
    );
}

#[test]
fn check_answers_in_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = example_as_written(dir.path());
    let json = |args: &[&str]| -> (Option<i32>, serde_json::Value) {
        let out = check(args, &cfg);
        let v = serde_json::from_slice(&out.stdout).expect("json on stdout");
        (out.status.code(), v)
    };
    let (code, v) = json(&["-o", "json"]);
    assert_eq!(code, Some(1));
    assert_eq!(v["valid"], false);
    assert_eq!(v["environment"], "checked");
    let problems = v["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p["message"]
            .as_str()
            .is_some_and(|m| m.contains("/etc/tidegate/git/token"))
            && p["field"].is_string()
            && p["fix"].is_string()),
        "{v}"
    );
    let (code, v) = json(&["--no-environment", "-o", "json"]);
    assert_eq!(code, Some(0));
    assert_eq!(v["valid"], true);
    assert_eq!(v["environment"], "skipped");
    assert_eq!(v["problems"], serde_json::json!([]));
    // A file that does not parse: one problem without a field.
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "git: [\n").expect("write");
    let out = check(&["-o", "json"], &broken);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(out.status.code(), Some(1));
    assert!(v["problems"][0].get("field").is_none(), "{v}");
}
