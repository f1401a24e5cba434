//! `tidegate lint PATH...`: run the preflight checks on Istio manifests and rollout plans in
//! files or folders. Exit 1 when any error-level finding (or invalid plan) stands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::mesh::Target;
use crate::mesh::istio::preflight::{self, Finding, Object, Severity};
use crate::mesh::manifests;
use crate::plan::{self, Plan};

#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// Manifest and plan files or folders (YAML or JSON; folders are walked).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Namespace of objects that name none.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

pub use super::Format;

/// What `lint` found, as printed with `-o json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LintReport {
    pub errors: usize,
    pub warnings: usize,
    pub objects: usize,
    pub plans: Vec<String>,
    pub findings: Vec<Finding>,
    /// Plan validation findings (each is an error).
    pub plan_findings: Vec<plan::Finding>,
}

/// Read everything under `paths` and run every check.
pub fn lint(paths: &[PathBuf], default_ns: &str) -> anyhow::Result<LintReport> {
    let files = manifests::collect_files(paths)?;
    let mut objects = Vec::new();
    let mut plans: Vec<Plan> = Vec::new();
    let mut plan_findings = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("failed to read {}", file.display()))?;
        let name = file.display().to_string();
        let parsed = plan::parse_mixed_str(&name, &text);
        plans.extend(parsed.plans);
        plan_findings.extend(parsed.findings);
        for doc in manifests::parse_text(file, &text)? {
            if doc.api_version().starts_with("tidegate.dev/") {
                continue;
            }
            objects.push(Object::new(doc.value, Some(doc.file)));
        }
    }
    plan_findings.extend(plan::check_set(plans.iter()));
    let mut findings = preflight::check_objects(&objects, default_ns);
    for p in &plans {
        findings.extend(preflight::check_target(&objects, &Target::from_plan(p)));
    }
    if !plans.is_empty() {
        let known: Vec<String> = plans.iter().map(|p| p.id.name.clone()).collect();
        findings.extend(preflight::check_leftovers(&objects, &known, default_ns));
    }
    findings.sort_by(|a, b| {
        (a.severity, &a.object, &a.field, a.code).cmp(&(b.severity, &b.object, &b.field, b.code))
    });
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count()
        + plan_findings.len();
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    Ok(LintReport {
        errors,
        warnings,
        objects: objects.len(),
        plans: plans.iter().map(|p| p.id.to_string()).collect(),
        findings,
        plan_findings,
    })
}

pub fn run(args: &LintArgs) -> anyhow::Result<ExitCode> {
    let report = lint(&args.paths, &args.namespace)?;
    match args.output {
        Format::Json | Format::Yaml => {
            print!("{}", args.output.structured(&report)?.unwrap_or_default())
        }
        Format::Text => {
            for f in &report.plan_findings {
                println!("error {f}");
            }
            for f in &report.findings {
                println!("{f}");
            }
            println!(
                "{} objects, {} plans: {} errors, {} warnings",
                report.objects,
                report.plans.len(),
                report.errors,
                report.warnings
            );
        }
    }
    Ok(if report.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
