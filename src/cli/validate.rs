//! `tidegate validate PATH...`: check plans and report every finding, including two plans
//! that would manage the same route.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::files::yaml_inputs;
use crate::mesh::Target;
use crate::mesh::istio::preflight;
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
    findings.extend(route_owner_findings(&plans));
    Ok((plans, findings))
}

/// Two plans that would manage the same route of one VirtualService, told from the plans
/// alone (the same named route, or both managing the default routes of one service and
/// stable): `preflight::route_owners` without objects, placed at the later plan.
fn route_owner_findings(plans: &[Plan]) -> Vec<Finding> {
    let targets: Vec<Target> = plans.iter().map(Target::from_plan).collect();
    preflight::route_owners(&targets, &[])
        .into_iter()
        .filter_map(|f| {
            let plan = plans
                .iter()
                .find(|p| p.id.namespace == f.object.namespace && p.id.name == f.object.name)?;
            Some(Finding {
                file: plan.location.file.clone(),
                line: plan.location.line,
                column: plan.location.column,
                field: f.field,
                message: format!("{}: {}", f.code, f.message),
                hint: f.hint,
            })
        })
        .collect()
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
            let valid_plans = super::count(plans.len(), "plan", "plans");
            if valid {
                println!("{valid_plans} valid");
            } else {
                println!(
                    "{}; {valid_plans} valid",
                    super::count(findings.len(), "finding", "findings")
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
