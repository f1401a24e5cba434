//! `tidegate convert FILE... [--out-dir DIR]`: Flagger and Argo Rollouts objects to plans, with
//! every part that could not be carried over listed (exit 1 when a source produced no plan).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::Format;
use crate::convert::{self, Converted, Report};

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Files holding Flagger Canaries and MetricTemplates, or Argo Rollouts and
    /// (Cluster)AnalysisTemplates.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write one plan file per rollout here (`<namespace>-<name>.yaml`) instead of printing them.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Output format of the report.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

pub fn run(args: &ConvertArgs) -> anyhow::Result<ExitCode> {
    let mut inputs = Vec::new();
    for path in &args.files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {name}"))?;
        inputs.push((name, text));
    }
    let report = convert::convert(&inputs)?;
    let mut written = Vec::new();
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for r in &report.rollouts {
            if let Some(plan) = &r.plan {
                let path = dir.join(format!("{}-{}.yaml", r.namespace, r.name));
                std::fs::write(&path, plan)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                written.push(path.display().to_string());
            }
        }
    }
    if let Some(text) = args.output.structured(&report)? {
        print!("{text}");
    } else {
        print_text(&report, args.out_dir.is_none(), &written);
    }
    Ok(if report.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_text(report: &Report, plans_to_stdout: bool, written: &[String]) {
    if plans_to_stdout {
        let plans: Vec<&str> = report
            .rollouts
            .iter()
            .filter_map(|r| r.plan.as_deref())
            .collect();
        print!("{}", plans.join("---\n"));
    }
    for path in written {
        eprintln!("wrote {path}");
    }
    for r in &report.rollouts {
        eprintln!("{}", summary(r));
        for f in &r.findings {
            eprintln!("  {f}");
        }
    }
    for f in &report.findings {
        eprintln!("{f}");
    }
}

fn summary(r: &Converted) -> String {
    let outcome = if r.plan.is_some() {
        "converted"
    } else {
        "NOT converted"
    };
    format!(
        "{} {} {}/{}: {outcome}, {}",
        r.file,
        r.kind,
        r.namespace,
        r.name,
        super::count(r.findings.len(), "finding", "findings")
    )
}
