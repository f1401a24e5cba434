//! `tidegate validate PATH...`: check plans and report every finding.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::files::yaml_inputs;
use crate::plan::{self, Finding, Plan};

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Plan files or folders (folders are walked; non-tidegate documents in them are skipped).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

pub use super::Format;

#[derive(Debug, Serialize)]
struct Report {
    valid: bool,
    plans: Vec<String>,
    findings: Vec<Finding>,
    /// Advice that does not make a plan invalid (exit code unchanged).
    warnings: Vec<Finding>,
}

/// Read and validate every plan under `paths`: the valid plans and every finding.
pub fn collect(paths: &[PathBuf]) -> anyhow::Result<(Vec<Plan>, Vec<Finding>)> {
    let mut plans = Vec::new();
    let mut findings = Vec::new();
    for input in yaml_inputs(paths)? {
        let name = input.path.display().to_string();
        let bytes = std::fs::read(&input.path).with_context(|| format!("cannot read {name}"))?;
        let Ok(text) = String::from_utf8(bytes) else {
            findings.push(Finding {
                file: name,
                line: 0,
                column: 0,
                field: String::new(),
                message: "the file is not UTF-8 text".into(),
                hint: "plans are YAML text files; remove binary files from the plans folder".into(),
            });
            continue;
        };
        let parsed = if input.explicit {
            plan::parse_str(&name, &text)
        } else {
            plan::parse_mixed_str(&name, &text)
        };
        plans.extend(parsed.plans);
        findings.extend(parsed.findings);
    }
    findings.extend(plan::check_set(&plans));
    Ok((plans, findings))
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let (plans, findings) = match collect(&args.paths) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tidegate validate: {e:#}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let valid = findings.is_empty();
    let warnings: Vec<Finding> = plans.iter().flat_map(plan::advice::warnings).collect();
    match args.output {
        Format::Json | Format::Yaml => {
            let report = Report {
                valid,
                plans: plans.iter().map(|p| p.id.to_string()).collect(),
                findings,
                warnings,
            };
            print!("{}", args.output.structured(&report)?.unwrap_or_default());
        }
        Format::Text => {
            for f in &findings {
                println!("{f}");
            }
            for w in &warnings {
                println!("warning: {w}");
            }
            if valid {
                println!("{} plan(s) valid", plans.len());
            } else {
                println!(
                    "{} finding(s); {} plan(s) valid",
                    findings.len(),
                    plans.len()
                );
            }
        }
    }
    Ok(if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
