//! `tidegate status [--repo URL|PATH] [-o text|json|yaml]`: print every rollout's status from
//! the status files at the tip of the status branch (`--status-branch`, default
//! `tidegate-status`; the plans branch when the status branch does not exist yet), and in text
//! the newest controls that named no rollout (`status/_refused.yaml`).

use std::process::ExitCode;

use crate::rollout::Status;

use super::control_cmd::RepoArgs;

pub use super::Format;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Keep watching: a live progress bar per rollout (weight, step, phase, last verdicts with
    /// units, time in step), refreshed every second until Ctrl-C; with `-o json` one JSON
    /// object per line each time a rollout's status changes (`-o yaml`: one document).
    #[arg(long, short)]
    pub watch: bool,
    /// Read statuses from a running daemon's API instead of Git: what the lab prints
    /// (`http://127.0.0.1:8080/api/v1/rollouts`), `http://127.0.0.1:8080` or `127.0.0.1:8080`.
    #[arg(long)]
    pub api: Option<String>,
    /// With --watch: stop after this many refreshes (for scripts and tests).
    #[arg(long, hide = true)]
    pub refreshes: Option<u64>,
    #[command(flatten)]
    pub repo: RepoArgs,
}

/// Fetch and print; unreadable status files are reported on stderr and make the exit code 1.
pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    if args.watch || args.api.is_some() {
        return super::watch::run(args);
    }
    let (mut repo, _tmp) = args.repo.open()?;
    repo.fetch()?;
    let mut statuses = Vec::new();
    let mut bad = 0;
    for doc in repo.status_documents()? {
        match doc {
            Ok(s) => statuses.push(s),
            Err(e) => {
                bad += 1;
                eprintln!("tidegate status: {e}");
            }
        }
    }
    statuses.sort_by(|a, b| a.rollout.cmp(&b.rollout));
    print!("{}", render(&statuses, args.output)?);
    if args.output == Format::Text {
        match repo.refused_records() {
            Ok(records) => print!("{}", render_refused(&records)),
            Err(e) => {
                bad += 1;
                eprintln!("tidegate status: {e}");
            }
        }
    }
    Ok(if bad > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// How many refused controls the text output shows.
const REFUSED_SHOWN: usize = 10;

/// The newest refused controls, for people (nothing when there are none).
pub fn render_refused(records: &[crate::control::RefusedRecord]) -> String {
    if records.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nControls that named no rollout ({} recorded in status/_refused.yaml, newest last):\n",
        records.len()
    );
    for r in &records[records.len().saturating_sub(REFUSED_SHOWN)..] {
        out.push_str(&format!(
            "  {} {} `{}`: {}; {}\n",
            r.at.format("%Y-%m-%d %H:%M:%SZ"),
            r.commit.get(..12).unwrap_or(&r.commit),
            r.trailer,
            r.why,
            r.hint
        ));
    }
    out
}

/// What the text output says when the API or the status folder holds no rollout.
pub const NO_ROLLOUTS: &str = "no rollouts";

/// The text `status` prints for these statuses.
pub fn render(statuses: &[Status], format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json | Format::Yaml => format.structured(&statuses)?.unwrap_or_default(),
        Format::Text if statuses.is_empty() => format!("{NO_ROLLOUTS}\n"),
        Format::Text => {
            let mut rows = vec![[
                "ROLLOUT".to_string(),
                "PHASE".into(),
                "STEP".into(),
                "CANARY".into(),
                "UPDATED".into(),
                "REASON".into(),
            ]];
            for s in statuses {
                rows.push([
                    s.rollout.to_string(),
                    s.phase.to_string(),
                    format!("{}/{}", s.step, s.step_count),
                    canary_cell(s),
                    s.updated_at.format("%Y-%m-%d %H:%M:%SZ").to_string(),
                    s.reason.clone(),
                ]);
            }
            let mut widths = [0usize; 6];
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let mut out = String::new();
            for r in &rows {
                let mut line = String::new();
                for (i, (c, w)) in r.iter().zip(widths).enumerate() {
                    if i == 5 {
                        line.push_str(c);
                    } else {
                        line.push_str(&format!("{c:<w$}  "));
                    }
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
            for s in statuses {
                out.push_str(&details(s));
            }
            out
        }
    })
}

/// The canary weight tidegate set, and the live one when someone else changed it.
fn canary_cell(s: &Status) -> String {
    match &s.read_back {
        crate::rollout::ReadBack::Drifted { actual, .. }
            if actual.canary_weight != s.route.canary_weight =>
        {
            format!(
                "{}% (live {}%)",
                s.route.canary_weight, actual.canary_weight
            )
        }
        // The route could not be read or written (say the VirtualService is gone).
        _ if s.fault.is_some() => format!("{}% (live unknown)", s.route.canary_weight),
        _ => format!("{}%", s.route.canary_weight),
    }
}

/// What the table's one-line reason leaves out: a newest revision that is not run (with its
/// findings: file, line, field and fix), preflight findings, and a fault.
fn details(s: &Status) -> String {
    let mut out = String::new();
    if let Some(p) = &s.pending {
        let rev = p.revision.get(..12).unwrap_or(&p.revision);
        out.push_str(&format!(
            "\n{}: newest revision {rev} is not run since {}: {}\n",
            s.rollout,
            p.since.format("%Y-%m-%d %H:%M:%SZ"),
            p.why
        ));
        for f in &p.findings {
            out.push_str(&format!("  {f}\n"));
        }
    }
    if !s.findings.is_empty() {
        out.push_str(&format!("\n{}: findings\n", s.rollout));
        for f in &s.findings {
            out.push_str(&format!("  {f}\n"));
        }
    }
    // The newest control, when it was refused (a misspelt action, a resume of a finished
    // rollout, a policy): the person who pushed it looks here.
    if let Some(c) = s.controls.last().filter(|c| !c.applied) {
        let commit = c.commit.get(..12).unwrap_or(&c.commit);
        out.push_str(&format!(
            "\n{}: control `{}` of commit {commit} by {} was refused: {}\n",
            s.rollout, c.action, c.author, c.note
        ));
    }
    if let Some(f) = &s.fault {
        out.push_str(&format!(
            "\n{}: {} fails since {} ({}): {}\n",
            s.rollout,
            f.operation,
            f.since.format("%Y-%m-%d %H:%M:%SZ"),
            if f.permanent { "permanent" } else { "retrying" },
            f.message
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{PendingRevision, PlanRef, ReadBack, RouteState};

    #[test]
    fn nothing_to_show_says_no_rollouts() {
        assert_eq!(render(&[], Format::Text).expect("render"), "no rollouts\n");
        assert_eq!(render(&[], Format::Json).expect("render").trim(), "[]");
    }

    #[test]
    fn the_table_shows_live_weight_and_what_holds_a_rollout() {
        let id = crate::plan::RolloutId {
            namespace: "production".into(),
            name: "orders-svc".into(),
        };
        let plan_ref = PlanRef {
            path: "rollouts/orders.yaml".into(),
            revision: "a".repeat(40),
            digest: "d".into(),
        };
        let now = chrono::DateTime::UNIX_EPOCH;
        let mut s = Status::fresh(&id, &plan_ref, 4, now);
        s.route.canary_weight = 60;
        s.read_back = ReadBack::Drifted {
            actual: RouteState {
                canary_weight: 50,
                ..RouteState::default()
            },
            detail: "edited".into(),
        };
        s.pending = Some(PendingRevision {
            revision: "b".repeat(40),
            why: "the newest plan revision is invalid (1 finding)".into(),
            findings: vec!["rollouts/orders.yaml:9:3: spec.stable: bad indent (fix: …)".into()],
            since: now,
        });
        s.controls.push(crate::rollout::ControlRecord {
            commit: "c".repeat(40),
            author: "Ana <ana@example.com>".into(),
            action: "paus".into(),
            applied: false,
            note: "unknown action `paus`: use pause, resume, abort, promote or retry".into(),
            at: now,
        });
        let text = render(&[s], Format::Text).expect("render");
        assert!(
            text.contains("control `paus` of commit cccccccccccc by Ana <ana@example.com> was refused: unknown action"),
            "{text}"
        );
        assert!(text.contains("60% (live 50%)"), "{text}");
        assert!(
            text.contains("newest revision bbbbbbbbbbbb is not run"),
            "{text}"
        );
        assert!(
            text.contains("  rollouts/orders.yaml:9:3: spec.stable"),
            "{text}"
        );
    }
}
