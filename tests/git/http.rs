//! Smart HTTP: a real `git http-backend` behind a small Python server with token (basic) auth.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use tidegate::git::{Auth, GitError, GitRepo, PlanSource, SecretSource, StateStore};
use tidegate::rollout::Phase;

use crate::common::*;

const TOKEN: &str = "tok-3f9a1c77e2";

struct HttpServer {
    child: Child,
    port: u16,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(root: &std::path::Path) -> HttpServer {
    serve_tls(root, None)
}

/// Start the server; with `tls = Some((cert, key))` it speaks HTTPS.
fn serve_tls(
    root: &std::path::Path,
    tls: Option<(&std::path::Path, &std::path::Path)>,
) -> HttpServer {
    require_tool("python3", "python3");
    require_tool("git", "git");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/git_http_server.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(root)
        .arg(TOKEN)
        .args(
            tls.map(|(c, k)| vec![c.to_path_buf(), k.to_path_buf()])
                .unwrap_or_default(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the git http server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read port");
    let port = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("git http server did not start: {line:?}"));
    HttpServer { child, port }
}

fn http_config(
    remote: &Remote,
    server: &HttpServer,
    token: SecretSource,
) -> tidegate::git::GitConfig {
    let mut cfg = remote.config();
    cfg.url = format!("http://127.0.0.1:{}/plans.git", server.port);
    cfg.auth = Auth::Token {
        username: "tidegate".into(),
        token,
    };
    cfg
}

#[test]
fn token_over_smart_http_fetches_and_pushes() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let server = serve(remote.dir.path());
    let token_file = remote.dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write");
    let token_file = SecretSource::File(token_file);
    let mut repo = GitRepo::open(http_config(&remote, &server, token_file.clone())).expect("open");
    let update = repo.poll().expect("fetch over http");
    assert_eq!(update.plans.changed.len(), 1);
    assert_eq!(update.tip, remote.head());
    // The status branch is created over HTTP; a person's push to main meanwhile changes nothing.
    remote.commit(&[("notes.txt", "hi")], "someone else");
    let out = repo
        .write_statuses(
            &[status("prod", "a", Phase::Progressing, 5, "step 1")],
            None,
        )
        .expect("push over http");
    assert_eq!(out.attempts, 1);
    assert_eq!(
        remote.remote_git(&["rev-parse", STATUS_BRANCH]),
        out.commit.expect("commit")
    );

    // Same-branch mode: someone else pushes first, the push is rejected, rebuilt and retried.
    let mut cfg = http_config(&remote, &server, token_file);
    cfg.status_branch = "main".into();
    cfg.data_dir = remote.dir.path().join("same-branch");
    let mut repo = GitRepo::open(cfg).expect("open");
    repo.poll().expect("fetch over http");
    remote.commit(&[("notes.txt", "hi again")], "someone else again");
    let out = repo
        .write_statuses(
            &[status("prod", "a", Phase::Progressing, 5, "step 1")],
            None,
        )
        .expect("push over http");
    assert_eq!(out.attempts, 2);
    assert_eq!(
        remote.remote_git(&["rev-parse", "main"]),
        out.commit.expect("commit")
    );
}

#[test]
fn wrong_or_missing_token_is_a_clear_auth_error_without_the_secret() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let server = serve(remote.dir.path());
    let var = "TIDEGATE_TEST_WRONG_GIT_TOKEN";
    // The variable is read only by this test's adapter; the value is unique to it.
    let wrong = "wrong-token-5521";
    let token_file = remote.dir.path().join("wrong");
    std::fs::write(&token_file, wrong).expect("write");
    let mut repo = GitRepo::open(http_config(
        &remote,
        &server,
        SecretSource::File(token_file),
    ))
    .expect("open");
    let err = repo.poll().expect_err("wrong token");
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("authentication to http://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("refused"), "{text}");
    assert!(
        !text.contains(wrong) && !format!("{err:?}").contains(wrong),
        "{text}"
    );

    let mut none = remote.config();
    none.url = format!("http://127.0.0.1:{}/plans.git", server.port);
    let err = GitRepo::open(none)
        .expect("open")
        .poll()
        .expect_err("no token");
    assert!(err.to_string().contains("requires credentials"), "{err}");

    let missing = http_config(&remote, &server, SecretSource::Env(var.into()));
    let err = GitRepo::open(missing).expect_err("unset variable");
    assert!(err.to_string().contains(var), "{err}");
}

#[test]
fn https_with_a_custom_ca_bundle() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let tls = remote.dir.path().join("tls");
    std::fs::create_dir_all(&tls).expect("mkdir");
    make_ca(&tls);
    let server = serve_tls(
        remote.dir.path(),
        Some((&tls.join("leaf.pem"), &tls.join("leaf.key"))),
    );
    let token_file = remote.dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("write");
    let mut cfg = http_config(&remote, &server, SecretSource::File(token_file));
    cfg.url = format!("https://127.0.0.1:{}/plans.git", server.port);

    // Without the bundle the server's certificate is not trusted.
    let err = GitRepo::open(cfg.clone())
        .expect("open")
        .poll()
        .expect_err("untrusted");
    assert!(matches!(err, GitError::Tls { .. }), "{err:?}");

    // A bundle with an unrelated CA does not help, and says why.
    let other = remote.dir.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    make_ca(&other);
    let mut wrong = cfg.clone();
    wrong.ca_bundle = Some(other.join("ca.pem"));
    let err = GitRepo::open(wrong)
        .expect("open")
        .poll()
        .expect_err("wrong CA");
    assert!(err.to_string().contains("CA bundle"), "{err}");

    cfg.ca_bundle = Some(tls.join("ca.pem"));
    let mut repo = GitRepo::open(cfg).expect("open");
    let update = repo.poll().expect("fetch over https with the bundle");
    assert_eq!(update.plans.changed.len(), 1);
    let out = repo
        .write_statuses(&[status("prod", "a", Phase::Pending, 0, "new")], None)
        .expect("push over https");
    assert_eq!(
        remote.remote_git(&["rev-parse", STATUS_BRANCH]),
        out.commit.expect("commit")
    );
}

#[test]
fn a_hook_refusal_is_reported_at_once_not_retried() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let server = serve(remote.dir.path());
    let token_file = remote.dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("write");
    let mut repo = GitRepo::open(http_config(
        &remote,
        &server,
        SecretSource::File(token_file),
    ))
    .expect("open");
    repo.poll().expect("poll");
    let hook = remote.bare.join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'protected branch' >&2\nexit 1\n").expect("write");
    let mut perms = std::fs::metadata(&hook).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&hook, perms).expect("chmod");
    let err = repo
        .write_statuses(&[status("prod", "a", Phase::Pending, 0, "new")], None)
        .expect_err("hook refuses");
    assert!(matches!(err, GitError::PushRefused { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("refused to update refs/heads/tidegate-status: pre-receive hook declined"),
        "{err}"
    );
    // Once the hook is gone the same adapter pushes.
    std::fs::remove_file(&hook).expect("rm");
    let out = repo
        .write_statuses(&[status("prod", "a", Phase::Pending, 0, "new")], None)
        .expect("push");
    assert_eq!(out.attempts, 1);
}

#[test]
fn cli_reads_the_token_from_an_environment_variable() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let server = serve(remote.dir.path());
    let url = format!("http://127.0.0.1:{}/plans.git", server.port);
    let run = |token: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args(args)
            .args(["--repo", &url, "--token-env", "PLANS_TOKEN"])
            .env("PLANS_TOKEN", token)
            .env("HOME", remote.dir.path())
            .output()
            .expect("run tidegate")
    };
    let out = run(
        TOKEN,
        &["pause", "prod/a", "--author", "Ana <ana@example.com>"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(TOKEN, &["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no rollouts"));
    assert_eq!(
        remote.remote_git(&[
            "log",
            "-1",
            "--format=%(trailers:key=Tidegate,valueonly)",
            "main"
        ]),
        "pause prod/a"
    );
    let out = run("not-the-token", &["status"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("authentication to http://127.0.0.1:"), "{err}");
    assert!(!err.contains("not-the-token"), "{err}");
}

#[path = "../support/tls.rs"]
mod tls;
use tls::make_ca;
