//! `tidegate pause|resume|abort|promote|retry NAME [-m MESSAGE] [--repo URL|PATH]`: check that
//! NAME is a plan of the repository (a bare name resolves when exactly one plan in any namespace
//! has it; unknown, ambiguous and malformed names exit 2 naming the closest plans), then make
//! the control commit (an empty commit whose message ends with the `Tidegate:` trailer naming
//! `namespace/name`) on the tip of the plans branch and push it, rebuilding on a newer tip if
//! someone pushed first. `-o json` (or `yaml`) prints `{"commit", "action", "rollout"}`, and a
//! refusal as `{"action", "rollout", "refused": true, "why", "hint", "candidates"}` on stdout
//! (exit 2 still).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::control::resolve::{Unresolved, parse_target, resolve};
use crate::control::{ControlAction, control_message};
use crate::git::{
    Auth, CommitSigner, DEFAULT_STATUS_BRANCH, GitConfig, GitRepo, Identity, PlanContent,
    SecretSource,
};
use crate::plan::RolloutId;

/// Which repository to talk to and how (shared by the control commands and `status`).
#[derive(Debug, Clone, clap::Args)]
pub struct RepoArgs {
    /// Plans repository URL or path (default: `$TIDEGATE_REPO`, else the `origin` remote of the
    /// Git repository in the current directory).
    #[arg(long, env = "TIDEGATE_REPO")]
    pub repo: Option<String>,
    /// Branch holding the plans (the branch the daemon watches; control commits go there).
    #[arg(long, env = "TIDEGATE_BRANCH", default_value = "main")]
    pub branch: String,
    /// Branch holding the status files (the daemon's `git.statusBranch`; when it does not exist
    /// yet, the statuses are read from --branch).
    #[arg(long, env = "TIDEGATE_STATUS_BRANCH", default_value = DEFAULT_STATUS_BRANCH)]
    pub status_branch: String,
    /// Folder of the status files in the repository.
    #[arg(long, default_value = "status")]
    pub status_dir: String,
    /// Which files are plans (the daemon's `git.plans`).
    #[arg(long, env = "TIDEGATE_PLANS", default_value = "rollouts/**/*.yaml")]
    pub plans: String,
    /// File holding an HTTP(S) token (sent as the basic-auth password).
    #[arg(long, env = "TIDEGATE_GIT_TOKEN_FILE", conflicts_with = "token_env")]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding an HTTP(S) token.
    #[arg(long)]
    pub token_env: Option<String>,
    /// User name sent with the token.
    #[arg(long, default_value = "tidegate")]
    pub username: String,
    /// SSH private key for ssh:// and user@host:path URLs.
    #[arg(long, env = "TIDEGATE_GIT_SSH_KEY", requires = "known_hosts")]
    pub ssh_key: Option<PathBuf>,
    /// known_hosts file listing the SSH server's host key (unknown hosts are refused).
    #[arg(long, env = "TIDEGATE_GIT_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for HTTPS.
    #[arg(long, env = "TIDEGATE_GIT_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
}

impl RepoArgs {
    /// Open a fresh bare mirror of the repository in a temporary folder.
    pub(crate) fn open(&self) -> anyhow::Result<(GitRepo, tempfile::TempDir)> {
        let url = match &self.repo {
            Some(r) => r.clone(),
            None => origin_of_current_dir().context(
                "no --repo given, $TIDEGATE_REPO is unset, and the current directory has no `origin` remote",
            )?,
        };
        let tmp = tempfile::tempdir().context("cannot create a temporary folder")?;
        let mut cfg = GitConfig::new(url, tmp.path());
        cfg.branch = self.branch.clone();
        cfg.status_branch = self.status_branch.clone();
        cfg.status_dir = self.status_dir.clone();
        cfg.plan_glob = self.plans.clone();
        cfg.ca_bundle = self.ca_bundle.clone();
        cfg.auth = if let Some(key) = &self.ssh_key {
            Auth::SshKey {
                username: "git".into(),
                private_key: key.clone(),
                passphrase: None,
                known_hosts: self.known_hosts.clone().unwrap_or_default(),
            }
        } else if let Some(f) = &self.token_file {
            Auth::Token {
                username: self.username.clone(),
                token: SecretSource::File(f.clone()),
            }
        } else if let Some(v) = &self.token_env {
            Auth::Token {
                username: self.username.clone(),
                token: SecretSource::Env(v.clone()),
            }
        } else {
            Auth::None
        };
        let repo = GitRepo::open(cfg)?;
        Ok((repo, tmp))
    }
}

fn origin_of_current_dir() -> anyhow::Result<String> {
    let repo = git2::Repository::discover(".")?;
    let remote = repo.find_remote("origin")?;
    match remote.url() {
        Ok(u) => Ok(u.to_string()),
        Err(_) => bail!("the origin URL is not UTF-8"),
    }
}

#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    /// The rollout: `NAMESPACE/NAME`, or `NAME` when exactly one plan has that name.
    pub name: String,
    /// Why (added to the trailer and the commit subject).
    #[arg(short = 'm', long = "message", default_value = "")]
    pub message: String,
    /// Author as `Name <email>` (default: git config user.name and user.email).
    #[arg(long)]
    pub author: Option<String>,
    /// SSH private key signing the commit (for policies that require signatures).
    #[arg(long, env = "TIDEGATE_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Output format: `text` (`COMMIT ACTION ROLLOUT`), or `json`/`yaml` with the fields
    /// `commit`, `action` and `rollout` (a refusal: `refused`, `why`, `hint`, `candidates`).
    #[arg(short, long, value_enum, default_value_t = super::Format::Text)]
    pub output: super::Format,
    #[command(flatten)]
    pub repo: RepoArgs,
}

/// What a control command made, for `-o json|yaml`.
#[derive(Debug, serde::Serialize)]
pub struct Made {
    pub commit: String,
    pub action: ControlAction,
    pub rollout: String,
}

/// Why a control command made nothing, for `-o json|yaml`.
#[derive(Debug, serde::Serialize)]
pub struct Refused {
    pub action: ControlAction,
    /// The name as written.
    pub rollout: String,
    pub refused: bool,
    pub why: String,
    pub hint: String,
    /// The closest plans (unknown name) or every plan with the name (ambiguous).
    pub candidates: Vec<String>,
}

impl Refused {
    fn new(action: ControlAction, written: &str, why: &Unresolved) -> Refused {
        let candidates = match why {
            Unresolved::Malformed { .. } => Vec::new(),
            Unresolved::Unknown { closest: ids, .. }
            | Unresolved::Ambiguous {
                candidates: ids, ..
            } => ids.iter().map(ToString::to_string).collect(),
        };
        Refused {
            action,
            rollout: written.to_owned(),
            refused: true,
            why: why.why(),
            hint: why.hint(),
            candidates,
        }
    }
}

/// Make and push the control commit; prints its id. A name that is no plan's exits 2.
pub fn run(action: ControlAction, args: &ControlArgs) -> anyhow::Result<ExitCode> {
    let written = args.name.trim();
    let target = match parse_target(written) {
        Ok(t) => t,
        Err(e) => return refuse(action, written, &e, args.output),
    };
    let author = match &args.author {
        Some(a) => parse_author(a)?,
        None => author_from_git_config()?,
    };
    let signer = args
        .signing_key
        .as_deref()
        .map(CommitSigner::load)
        .transpose()?;
    let (mut repo, _tmp) = args.repo.open()?;
    repo.fetch()?;
    let known = known_plans(&mut repo)?;
    let id = match resolve(&target, &known) {
        Ok(id) => id,
        Err(e) => return refuse(action, written, &e, args.output),
    };
    let message = control_message(action, &id.to_string(), args.message.trim());
    let commit = repo
        .push_empty_commit(&message, &author, signer.as_ref())
        .with_context(|| format!("failed to push the {action} control commit"))?;
    let made = Made {
        commit,
        action,
        rollout: id.to_string(),
    };
    match args.output.structured(&made)? {
        Some(text) => print!("{text}"),
        None => println!("{} {action} {id}", made.commit),
    }
    if args.repo.repo.is_none() {
        eprintln!(
            "tidegate {action}: the control commit is on the remote, not in this clone: \
             `git pull` before your next push"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Say why the name names no plan (on stderr, or structured on stdout), and exit with the
/// usage code.
fn refuse(
    action: ControlAction,
    written: &str,
    why: &Unresolved,
    output: super::Format,
) -> anyhow::Result<ExitCode> {
    match output.structured(&Refused::new(action, written, why))? {
        Some(text) => print!("{text}"),
        None => eprintln!(
            "tidegate {action}: refused: {}\n  {}",
            why.why(),
            why.hint()
        ),
    }
    Ok(ExitCode::from(super::EXIT_USAGE))
}

/// Every rollout the plans at the tip define, valid or not (the daemon answers controls for
/// invalid plans too), and every rollout with a status: a plan whose file no longer parses
/// names no rollout, yet its rollout is held and `pause`/`abort` must reach it.
fn known_plans(repo: &mut GitRepo) -> anyhow::Result<Vec<RolloutId>> {
    // No status branch yet (or an unreadable one) only means no statuses to add.
    let mut known: Vec<RolloutId> = repo
        .status_documents()
        .map(|docs| docs.into_iter().flatten().map(|s| s.rollout).collect())
        .unwrap_or_default();
    for (path, content) in repo.plans_at_tip()? {
        if let PlanContent::Text(text) = content {
            let parsed = crate::plan::parse_str(&path, &text);
            known.extend(parsed.plans.into_iter().map(|p| p.id));
            known.extend(parsed.invalid.into_iter().filter_map(|(id, _)| id));
        }
    }
    known.sort();
    known.dedup();
    Ok(known)
}

/// `Name <email>`.
pub fn parse_author(s: &str) -> anyhow::Result<Identity> {
    let (name, rest) = s
        .split_once('<')
        .with_context(|| format!("author {s:?} must look like `Name <email>`"))?;
    let email = rest
        .strip_suffix('>')
        .with_context(|| format!("author {s:?} must look like `Name <email>`"))?;
    if name.trim().is_empty() || !email.contains('@') {
        bail!("author {s:?} must look like `Name <email>`");
    }
    Ok(Identity {
        name: name.trim().to_string(),
        email: email.trim().to_string(),
    })
}

fn author_from_git_config() -> anyhow::Result<Identity> {
    // The configuration of the repository in the current directory (which includes the global
    // one), else the global configuration alone.
    let cfg = match git2::Repository::discover(".").and_then(|r| r.config()) {
        Ok(c) => c,
        Err(_) => git2::Config::open_default().context("cannot read git configuration")?,
    };
    let name = cfg.get_string("user.name").ok();
    let email = cfg.get_string("user.email").ok();
    match (name, email) {
        (Some(name), Some(email)) if !name.is_empty() && !email.is_empty() => {
            Ok(Identity { name, email })
        }
        _ => bail!("set git config user.name and user.email, or pass --author \"Name <email>\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authors_parse() {
        let a = parse_author("Ana Ops <ana@example.com>").expect("ok");
        assert_eq!(a.name, "Ana Ops");
        assert_eq!(a.email, "ana@example.com");
        assert!(parse_author("ana@example.com").is_err());
        assert!(parse_author("<ana@example.com>").is_err());
    }
}
