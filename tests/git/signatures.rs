//! SSH signatures: control commits signed with `git commit -S` (gpg.format=ssh) are verified in
//! Rust against `allowed_signers`; tidegate's own signed commits pass `git verify-commit`.

use tidegate::control::SignatureState;
use tidegate::git::{GitRepo, PlanSource, StateStore};
use tidegate::rollout::Phase;

use crate::common::*;

fn signed_commit(
    remote: &Remote,
    key: &std::path::Path,
    author: Option<&str>,
    msg: &str,
) -> String {
    let key = key.to_str().expect("utf8");
    let mut args = vec!["-c", "gpg.format=ssh", "-c"];
    let signing = format!("user.signingkey={key}");
    args.push(&signing);
    args.extend(["commit", "-q", "--allow-empty", "-S", "-m", msg]);
    if let Some(a) = author {
        args.extend(["--author", a]);
    }
    git(&remote.work, &args);
    remote.push();
    remote.head()
}

#[test]
fn control_commit_signatures_are_checked_against_allowed_signers() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let keys = remote.dir.path().join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    let (alice, alice_pub) = keygen(&keys, "alice");
    let (mallory, _) = keygen(&keys, "mallory");
    let signers = keys.join("allowed_signers");
    std::fs::write(
        &signers,
        format!("# who may steer\nalice@example.com namespaces=\"git\" {alice_pub}\n"),
    )
    .expect("write");
    let mut cfg = remote.config();
    cfg.allowed_signers = Some(signers);
    let mut repo = GitRepo::open(cfg).expect("open");
    repo.poll().expect("baseline");

    let good = signed_commit(&remote, &alice, None, "ok\n\nTidegate: pause prod/a");
    let unsigned = remote.commit(&[], "unsigned\n\nTidegate: abort prod/a");
    let stranger = signed_commit(
        &remote,
        &mallory,
        None,
        "stranger\n\nTidegate: abort prod/a",
    );
    let borrowed = signed_commit(
        &remote,
        &alice,
        Some("Bob <bob@example.com>"),
        "alice's key, bob's name\n\nTidegate: promote prod/a",
    );

    let update = repo.poll().expect("poll");
    let by_id = |id: &str| {
        update
            .commits
            .iter()
            .find(|c| c.commit.id == id)
            .unwrap_or_else(|| panic!("commit {id} missing"))
            .commit
            .signature
            .clone()
    };
    match by_id(&good) {
        SignatureState::Verified { signer } => {
            assert!(signer.starts_with("alice@example.com (SHA256:"), "{signer}")
        }
        other => panic!("alice's signature should verify: {other:?}"),
    }
    assert_eq!(by_id(&unsigned), SignatureState::Missing);
    match by_id(&stranger) {
        SignatureState::Invalid { reason: why } => assert!(why.contains("not in"), "{why}"),
        other => panic!("unknown key must be refused: {other:?}"),
    }
    match by_id(&borrowed) {
        SignatureState::Invalid { reason: why } => {
            assert!(why.contains("not allowed for bob@example.com"), "{why}")
        }
        other => panic!("a key used for someone else's e-mail must be refused: {other:?}"),
    }
}

#[test]
fn own_commits_are_signed_and_git_verifies_them() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let keys = remote.dir.path().join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    let (key, public) = keygen(&keys, "tidegate");
    let signers = keys.join("allowed_signers");
    std::fs::write(&signers, format!("tidegate@example.com {public}\n")).expect("write");
    let mut cfg = remote.config();
    cfg.signing_key = Some(key);
    cfg.allowed_signers = Some(signers.clone());
    let mut repo = GitRepo::open(cfg).expect("open");
    repo.poll().expect("poll");
    let out = repo
        .write_statuses(
            &[status("prod", "a", Phase::Progressing, 5, "step 1")],
            None,
        )
        .expect("write");
    let commit = out.commit.expect("commit");
    let verify = git_output(
        &remote.bare,
        &[
            "-c",
            &format!("gpg.ssh.allowedSignersFile={}", signers.display()),
            "verify-commit",
            &commit,
        ],
    );
    assert!(
        verify.status.success(),
        "git verify-commit refused tidegate's signature: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        String::from_utf8_lossy(&verify.stderr)
            .contains("Good \"git\" signature for tidegate@example.com"),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
