//! `tidegate lint PATH...`: run the preflight checks on Istio and Kubernetes manifests and
//! rollout plans in files or folders. Exit 1 when any error-level finding (or invalid plan)
//! stands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::mesh::Target;
use crate::mesh::istio::preflight::{self, Finding, MissingKind, Object, Severity};
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
    /// Kinds no manifest provided, and the checks that therefore said nothing.
    pub not_seen: Vec<MissingKind>,
}

/// Everything read from the paths: the objects (tidegate plans excluded), the valid plans and
/// the plan findings.
fn read_inputs(paths: &[PathBuf]) -> anyhow::Result<(Vec<Object>, Vec<Plan>, Vec<plan::Finding>)> {
    let mut objects = Vec::new();
    let mut plans: Vec<Plan> = Vec::new();
    let mut plan_findings = Vec::new();
    for file in manifests::collect_files(paths)? {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("failed to read {}", file.display()))?;
        let parsed = plan::parse_mixed_str(&file.display().to_string(), &text);
        plans.extend(parsed.plans);
        plan_findings.extend(parsed.findings);
        for doc in manifests::parse_text(&file, &text)? {
            if !doc.api_version().starts_with("tidegate.dev/") {
                objects.push(Object::new(doc.value, Some(doc.file)));
            }
        }
    }
    plan_findings.extend(plan::check_set(plans.iter()));
    Ok((objects, plans, plan_findings))
}

/// Point findings about a plan (kind `Rollout`) at the plan's file.
fn with_plan_files(mut findings: Vec<Finding>, plans: &[Plan]) -> Vec<Finding> {
    for f in &mut findings {
        if f.object.kind == "Rollout" && f.object.file.is_none() {
            f.object.file = plans
                .iter()
                .find(|p| p.id.namespace == f.object.namespace && p.id.name == f.object.name)
                .map(|p| Path::new(&p.location.file).to_path_buf());
        }
    }
    findings
}

/// Run every check; one finding per code, object and field (the most severe: a target check
/// may raise what the object checks warn about).
pub fn check_all(objects: &[Object], plans: &[Plan], default_ns: &str) -> Vec<Finding> {
    let targets: Vec<Target> = plans.iter().map(Target::from_plan).collect();
    let mut findings = preflight::check_objects(objects, default_ns);
    for t in &targets {
        findings.extend(preflight::check_target(objects, t));
    }
    findings.extend(preflight::route_owners(&targets, objects));
    if !plans.is_empty() {
        let known: Vec<String> = plans.iter().map(|p| p.id.name.clone()).collect();
        findings.extend(preflight::check_leftovers(objects, &known, default_ns));
    }
    let mut findings = with_plan_files(findings, plans);
    findings.sort_by(|a, b| {
        (a.code, &a.object, &a.field, a.severity).cmp(&(b.code, &b.object, &b.field, b.severity))
    });
    findings.dedup_by(|later, kept| {
        later.code == kept.code && later.object == kept.object && later.field == kept.field
    });
    findings.sort_by(|a, b| {
        (a.severity, &a.object, &a.field, a.code).cmp(&(b.severity, &b.object, &b.field, b.code))
    });
    findings
}

/// Read everything under `paths` and run every check.
pub fn lint(paths: &[PathBuf], default_ns: &str) -> anyhow::Result<LintReport> {
    let (objects, plans, plan_findings) = read_inputs(paths)?;
    let findings = check_all(&objects, &plans, default_ns);
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    Ok(LintReport {
        errors: count(Severity::Error) + plan_findings.len(),
        warnings: count(Severity::Warning),
        objects: objects.len(),
        plans: plans.iter().map(|p| p.id.to_string()).collect(),
        not_seen: preflight::missing_kinds(&objects),
        findings,
        plan_findings,
    })
}

fn print_text(report: &LintReport) {
    for f in &report.plan_findings {
        println!("error {f}");
    }
    for f in &report.findings {
        println!("{f}");
        if let Some(snippet) = &f.snippet {
            for line in snippet.lines() {
                println!("    {line}");
            }
        }
    }
    for m in &report.not_seen {
        println!("note: no {} given: {}", m.kind, m.skipped);
    }
    println!(
        "{}, {}: {}, {}",
        super::count(report.objects, "object", "objects"),
        super::count(report.plans.len(), "plan", "plans"),
        super::count(report.errors, "error", "errors"),
        super::count(report.warnings, "warning", "warnings")
    );
}

pub fn run(args: &LintArgs) -> anyhow::Result<ExitCode> {
    let report = lint(&args.paths, &args.namespace)?;
    match args.output {
        Format::Json | Format::Yaml => {
            print!("{}", args.output.structured(&report)?.unwrap_or_default())
        }
        Format::Text => print_text(&report),
    }
    Ok(if report.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
