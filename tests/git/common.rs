//! Helpers for the Git adapter's integration tests: real repositories made with the `git` CLI.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{TimeZone, Utc};
use tempfile::TempDir;
use tidegate::git::{DEFAULT_STATUS_BRANCH, GitConfig, Identity};
use tidegate::plan::RolloutId;
use tidegate::rollout::{Phase, RouteState, Status};

/// Fail loudly (never skip) when an external tool is missing.
pub fn require_tool(cmd: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(cmd);
        if p.exists() {
            return p;
        }
    }
    if let Ok(out) = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    panic!(
        "this test needs `{cmd}`: install the Debian package `{package}` (apt-get install {package}); scripts/test installs it"
    );
}

/// Run git in `dir` with an isolated configuration; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
    require_tool("git", "git");
    Command::new("git")
        .args([
            "-c",
            "user.name=Alice",
            "-c",
            "user.email=alice@example.com",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("run git")
}

/// A bare "remote" and a work clone that plays the human pushing to it.
pub struct Remote {
    pub dir: TempDir,
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl Remote {
    /// A remote with one commit holding `files`.
    pub fn with_files(files: &[(&str, &str)]) -> Remote {
        let r = Remote::empty();
        r.commit(files, "initial plans");
        r
    }

    /// A remote with no commit at all.
    pub fn empty() -> Remote {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("plans.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "plans.git"],
        );
        git(dir.path(), &["init", "-q", "-b", "main", "work"]);
        git(
            &work,
            &["remote", "add", "origin", bare.to_str().expect("utf8")],
        );
        Remote { dir, bare, work }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Write files in the work clone, commit, push; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], msg: &str) -> String {
        for (path, text) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "--allow-empty", "-m", msg]);
        self.push();
        self.head()
    }

    /// Pull whatever tidegate pushed, then push the work clone's branch.
    pub fn push(&self) {
        git(&self.work, &["push", "-q", "origin", "HEAD:main"]);
    }

    pub fn sync(&self) {
        git(&self.work, &["pull", "-q", "--rebase", "origin", "main"]);
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// `git` in the bare remote.
    pub fn remote_git(&self, args: &[&str]) -> String {
        git(&self.bare, args)
    }

    pub fn data_dir(&self) -> PathBuf {
        let d = self.dir.path().join("data");
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    /// The adapter's configuration with its defaults: status commits on `tidegate-status`.
    pub fn config(&self) -> GitConfig {
        let mut c = GitConfig::new(self.url(), self.data_dir());
        c.author = Identity {
            name: "tidegate".into(),
            email: "tidegate@example.com".into(),
        };
        assert_eq!(c.status_branch, STATUS_BRANCH);
        c
    }

    /// Same-branch mode: status commits on `main`, between people's commits.
    pub fn same_branch_config(&self) -> GitConfig {
        let mut c = self.config();
        c.status_branch = "main".into();
        c
    }
}

pub fn plan_yaml(ns: &str, name: &str, weight: u8) -> String {
    format!(
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  service: {name}\n  stable: v1\n  canary: v2\n  steps:\n    - setWeight: {weight}\n"
    )
}

pub fn status(ns: &str, name: &str, phase: Phase, weight: u8, reason: &str) -> Status {
    let at = Utc
        .with_ymd_and_hms(2026, 11, 30, 6, 0, 0)
        .single()
        .expect("time");
    let id = RolloutId {
        namespace: ns.into(),
        name: name.into(),
    };
    Status {
        phase,
        step: 1,
        route: RouteState {
            canary_weight: weight,
            header_route: None,
            mirror_percent: 0,
        },
        read_back: Default::default(),
        reason: reason.into(),
        ..Status::fresh(&id, &Default::default(), 4, at)
    }
}

/// The branch status commits go to by default.
pub const STATUS_BRANCH: &str = DEFAULT_STATUS_BRANCH;

/// Every `Tidegate-Status` trailer value on the remote's status branch, oldest first.
pub fn status_trailers(remote: &Remote) -> Vec<String> {
    status_trailers_on(remote, STATUS_BRANCH)
}

/// Every `Tidegate-Status` trailer value on `branch` of the remote, oldest first.
pub fn status_trailers_on(remote: &Remote, branch: &str) -> Vec<String> {
    let log = remote.remote_git(&[
        "log",
        "--reverse",
        "--format=%(trailers:key=Tidegate-Status,valueonly,separator=%x0a)",
        branch,
    ]);
    log.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Generate an ed25519 key pair with ssh-keygen; returns (private key path, public key line).
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    require_tool("ssh-keygen", "openssh-client");
    let p = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&p)
        .status()
        .expect("ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
    let public = std::fs::read_to_string(p.with_extension("pub"))
        .expect("pub key")
        .trim()
        .to_string();
    (p, public)
}
