//! Setting the lab's machine up: when `prometheus` is missing, `tidegate lab` installs Debian's
//! package itself (root with apt-get) or stops with the exact command to run. The decision
//! ([`decide`]) and its messages are pure; [`survey`] and [`install`] look at and change the
//! machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Debian package the lab needs, and the command that installs it.
pub const PACKAGE: &str = "prometheus";
pub const INSTALL_ARGS: [&str; 4] = ["install", "-y", "--no-install-recommends", PACKAGE];

/// What the machine offers, as far as the decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// `prometheus` is on PATH.
    pub prometheus: bool,
    /// This process runs as root (effective uid 0).
    pub root: bool,
    /// `apt-get` is on PATH.
    pub apt_get: bool,
    /// apt's package lists were downloaded (a fresh container has none: `apt-get update` first).
    pub package_lists: bool,
}

/// Why tidegate cannot install Prometheus itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    NotRoot,
    NoAptGet,
}

/// What `tidegate lab` does about Prometheus before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Prometheus is there: go on.
    Ready,
    /// Install the package (after `apt-get update` when the package lists are missing).
    Install { update_first: bool },
    /// Stop and say what to run.
    Stop {
        blocker: Blocker,
        update_first: bool,
    },
}

/// The decision, from what the machine offers.
pub fn decide(m: Machine) -> Action {
    let update_first = !m.package_lists;
    match (m.prometheus, m.root, m.apt_get) {
        (true, _, _) => Action::Ready,
        (false, _, false) => Action::Stop {
            blocker: Blocker::NoAptGet,
            update_first,
        },
        (false, false, true) => Action::Stop {
            blocker: Blocker::NotRoot,
            update_first,
        },
        (false, true, true) => Action::Install { update_first },
    }
}

/// The shell command that installs the package (`sudo` when not root).
pub fn install_command(sudo: bool, update_first: bool) -> String {
    let sudo = if sudo { "sudo " } else { "" };
    let install = format!("{sudo}apt-get install -y --no-install-recommends {PACKAGE}");
    if update_first {
        format!("{sudo}apt-get update && {install}")
    } else {
        install
    }
}

/// What `tidegate lab` says before installing (on stderr).
pub fn install_notice(update_first: bool) -> String {
    format!(
        "tidegate lab: the `prometheus` binary is not on PATH; running as root with apt-get, so installing Debian's `{PACKAGE}` package: {}",
        install_command(false, update_first)
    )
}

/// Why the lab stops, and the exact command that lets it start.
pub fn stop_message(blocker: Blocker, update_first: bool) -> String {
    let head = "tidegate lab: the `prometheus` binary is not on PATH";
    match blocker {
        Blocker::NotRoot => format!(
            "{head}, and tidegate installs it only when it runs as root (this process is not root).\n\
             Install Debian's `{PACKAGE}` package, then run the lab again:\n  {}",
            install_command(true, update_first)
        ),
        Blocker::NoAptGet => format!(
            "{head}, and apt-get is not on PATH either (not Debian or Ubuntu?), so tidegate cannot install it.\n\
             On Debian or Ubuntu run:\n  {}\n\
             elsewhere install Prometheus 2.x or later from https://prometheus.io/download/ and put `prometheus` on PATH.",
            install_command(true, update_first)
        ),
    }
}

/// The first `name` among the folders of `$PATH` (`/usr/local/bin:/usr/bin:/bin` when PATH is
/// unset).
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether the effective user is root, from `/proc/self/status` (false when unreadable).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Whether apt's package lists hold any `*_Packages` file.
fn package_lists(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
    })
}

/// What this machine offers.
pub fn survey() -> Machine {
    Machine {
        prometheus: on_path(PACKAGE).is_some(),
        root: is_root(),
        apt_get: on_path("apt-get").is_some(),
        package_lists: package_lists(Path::new("/var/lib/apt/lists")),
    }
}

/// Errors installing the package.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): see apt's output above")]
    Failed { command: String, status: String },
}

/// Run apt-get (its progress on stderr, non-interactive): `update` first when asked, then the
/// install.
pub fn install(update_first: bool) -> Result<(), SetupError> {
    let update: &[&str] = &["update"];
    let runs: Vec<&[&str]> = if update_first {
        vec![update, &INSTALL_ARGS]
    } else {
        vec![&INSTALL_ARGS]
    };
    for args in runs {
        let command = format!("apt-get {}", args.join(" "));
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(stderr_stdio())
            .stderr(Stdio::inherit())
            .status()
            .map_err(|source| SetupError::Spawn {
                command: command.clone(),
                source,
            })?;
        if !status.success() {
            return Err(SetupError::Failed {
                command,
                status: status.to_string(),
            });
        }
    }
    Ok(())
}

/// apt's stdout goes to our stderr, so stdout keeps only what the lab itself prints.
fn stderr_stdio() -> Stdio {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::inherit(), Stdio::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(prometheus: bool, root: bool, apt_get: bool) -> Machine {
        Machine {
            prometheus,
            root,
            apt_get,
            package_lists: true,
        }
    }

    #[test]
    fn prometheus_present_needs_nothing_whoever_runs() {
        for (root, apt) in [(true, true), (true, false), (false, true), (false, false)] {
            assert_eq!(decide(machine(true, root, apt)), Action::Ready);
        }
    }

    #[test]
    fn root_with_apt_get_installs_updating_lists_only_when_missing() {
        assert_eq!(
            decide(machine(false, true, true)),
            Action::Install {
                update_first: false
            }
        );
        let fresh = Machine {
            package_lists: false,
            ..machine(false, true, true)
        };
        assert_eq!(decide(fresh), Action::Install { update_first: true });
        assert!(
            install_notice(true).contains(
                "apt-get update && apt-get install -y --no-install-recommends prometheus"
            )
        );
    }

    #[test]
    fn not_root_stops_with_the_sudo_command() {
        let action = decide(machine(false, false, true));
        assert_eq!(
            action,
            Action::Stop {
                blocker: Blocker::NotRoot,
                update_first: false
            }
        );
        let msg = stop_message(Blocker::NotRoot, false);
        assert!(msg.contains("not root"), "{msg}");
        assert!(
            msg.ends_with("\n  sudo apt-get install -y --no-install-recommends prometheus"),
            "{msg}"
        );
    }

    #[test]
    fn no_apt_get_stops_naming_both_ways() {
        for root in [true, false] {
            assert_eq!(
                decide(machine(false, root, false)),
                Action::Stop {
                    blocker: Blocker::NoAptGet,
                    update_first: false
                }
            );
        }
        let msg = stop_message(Blocker::NoAptGet, true);
        assert!(msg.contains("apt-get is not on PATH"), "{msg}");
        assert!(
            msg.contains(
                "sudo apt-get update && sudo apt-get install -y --no-install-recommends prometheus"
            ),
            "{msg}"
        );
        assert!(msg.contains("https://prometheus.io/download/"), "{msg}");
    }
}
