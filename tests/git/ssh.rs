//! SSH: a real `sshd` (Debian `openssh-server`) on a loopback port with a throw-away host key;
//! the client key and `known_hosts` decide, and an unknown host key is refused.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidegate::git::{Auth, GitError, GitRepo, PlanSource, StateStore};
use tidegate::rollout::Phase;

use crate::common::*;

struct Sshd {
    child: Child,
    port: u16,
    host_pub: String,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sshd(dir: &Path, client_pub: &str) -> Sshd {
    let sshd = require_tool("sshd", "openssh-server");
    let (host_key, host_pub) = keygen(dir, "hostkey");
    let authorized = dir.join("authorized_keys");
    std::fs::write(&authorized, format!("{client_pub}\n")).expect("write");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let user = String::from_utf8(Command::new("id").arg("-un").output().expect("id").stdout)
        .expect("utf8")
        .trim()
        .to_string();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nAllowUsers {user}\n\
             LogLevel ERROR\n",
            host_key.display(),
            dir.join("sshd.pid").display(),
            authorized.display()
        ),
    )
    .expect("write");
    // sshd insists on its privilege separation directory when started as root.
    let _ = std::fs::create_dir_all("/run/sshd");
    let child = Command::new(&sshd)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sshd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "sshd did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Sshd {
        child,
        port,
        host_pub,
    }
}

fn ssh_config(
    remote: &Remote,
    sshd: &Sshd,
    key: PathBuf,
    known_hosts: PathBuf,
) -> tidegate::git::GitConfig {
    let mut cfg = remote.config();
    cfg.url = format!("ssh://127.0.0.1:{}{}", sshd.port, remote.bare.display());
    let user = String::from_utf8(Command::new("id").arg("-un").output().expect("id").stdout)
        .expect("utf8")
        .trim()
        .to_string();
    cfg.auth = Auth::SshKey {
        username: user,
        private_key: key,
        passphrase: None,
        known_hosts,
    };
    cfg
}

#[test]
fn ssh_with_known_host_fetches_and_pushes_and_unknown_host_is_refused() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let dir = remote.dir.path().join("ssh");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (client_key, client_pub) = keygen(&dir, "client");
    let sshd = start_sshd(&dir, &client_pub);

    let known = dir.join("known_hosts");
    std::fs::write(
        &known,
        format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_pub),
    )
    .expect("write");
    let mut repo =
        GitRepo::open(ssh_config(&remote, &sshd, client_key.clone(), known)).expect("open");
    let update = repo.poll().expect("fetch over ssh");
    assert_eq!(update.plans.changed.len(), 1);
    let out = repo
        .write_statuses(
            &[status("prod", "a", Phase::Progressing, 5, "step 1")],
            None,
        )
        .expect("push over ssh");
    assert_eq!(
        remote.remote_git(&["rev-parse", STATUS_BRANCH]),
        out.commit.clone().expect("commit")
    );
    let out_commit = remote.head();

    // Hashed known_hosts (as `ssh-keygen -H` writes it) works too.
    let hashed = dir.join("known_hosts_hashed");
    std::fs::write(
        &hashed,
        format!("[127.0.0.1]:{} {}\n", sshd.port, sshd.host_pub),
    )
    .expect("write");
    let st = Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen -H");
    assert!(st.success());
    assert!(
        std::fs::read_to_string(&hashed)
            .expect("read")
            .starts_with("|1|")
    );
    let update = GitRepo::open(ssh_config(&remote, &sshd, client_key.clone(), hashed))
        .expect("open")
        .poll()
        .expect("fetch with a hashed known_hosts");
    assert_eq!(update.tip, out_commit);

    // known_hosts lists other hosts only: refused, never accepted blindly.
    let (_, other_pub) = keygen(&dir, "otherhost");
    let unknown = dir.join("known_hosts_other");
    std::fs::write(&unknown, format!("git.example.com {other_pub}\n")).expect("write");
    let err = GitRepo::open(ssh_config(&remote, &sshd, client_key.clone(), unknown))
        .expect("open")
        .poll()
        .expect_err("unknown host");
    assert!(matches!(err, GitError::HostKey { .. }), "{err:?}");
    assert!(err.to_string().contains("is not in known_hosts"), "{err}");

    // The same name with a different key: refused as a possible man-in-the-middle.
    let wrong = dir.join("known_hosts_wrong");
    std::fs::write(&wrong, format!("[127.0.0.1]:{} {other_pub}\n", sshd.port)).expect("write");
    let err = GitRepo::open(ssh_config(&remote, &sshd, client_key, wrong))
        .expect("open")
        .poll()
        .expect_err("changed host key");
    assert!(err.to_string().contains("does not match"), "{err}");

    // A passphrase-protected key, the passphrase read from a file.
    let locked = dir.join("locked");
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "open sesame",
            "-C",
            "locked",
            "-f",
        ])
        .arg(&locked)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let locked_pub = std::fs::read_to_string(locked.with_extension("pub")).expect("pub");
    let mut keys = std::fs::read_to_string(dir.join("authorized_keys")).expect("read");
    keys.push_str(&locked_pub);
    std::fs::write(dir.join("authorized_keys"), keys).expect("write");
    let pass = dir.join("passphrase");
    std::fs::write(&pass, "open sesame\n").expect("write");
    let mut cfg = ssh_config(&remote, &sshd, locked, dir.join("known_hosts"));
    if let Auth::SshKey { passphrase, .. } = &mut cfg.auth {
        *passphrase = Some(tidegate::git::SecretSource::File(pass));
    }
    let update = GitRepo::open(cfg)
        .expect("open")
        .poll()
        .expect("fetch with a locked key");
    assert_eq!(update.tip, out_commit);

    // A key the server does not know: a clear authentication error.
    let (stranger, _) = keygen(&dir, "stranger");
    let known = dir.join("known_hosts");
    let err = GitRepo::open(ssh_config(&remote, &sshd, stranger, known))
        .expect("open")
        .poll()
        .expect_err("unauthorised key");
    assert!(matches!(err, GitError::Auth { .. }), "{err:?}");
}
