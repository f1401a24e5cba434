//! `tidegate preview PLAN --manifests DIR`: what a plan would do to the VirtualService, step by
//! step — the JSON Patch tidegate would send and the routes that result. For pull requests.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::Value;

use crate::mesh::Target;
use crate::mesh::istio::preflight::{self, Finding, Object};
use crate::mesh::istio::routes;
use crate::mesh::manifests;
use crate::plan::{self, OnSuccess, Plan, Step};
use crate::rollout::RouteState;

#[derive(Debug, clap::Args)]
pub struct PreviewArgs {
    /// The plan file.
    pub plan: PathBuf,
    /// Folder (or file) with the VirtualService and DestinationRule manifests.
    #[arg(long, required = true)]
    pub manifests: Vec<PathBuf>,
    /// Where an edit of this plan would take a running rollout whose canary holds this weight
    /// (0..=100; default: the canary weight of the manifests' VirtualService).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub canary_weight: Option<u8>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
    pub output: Format,
}

pub use super::Format;

/// One entry of the preview.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviewStep {
    /// 1-based step number, or 0 for the final/rollback entries.
    pub step: usize,
    pub action: String,
    /// The traffic state after this entry.
    pub state: String,
    /// The JSON Patch sent (empty: no write).
    pub patch: Vec<Value>,
    /// `spec.http` after the patch (omitted when nothing changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes: Option<Value>,
}

/// The preview of one plan.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub rollout: String,
    pub virtual_service: String,
    /// What the daemon would do instead of the steps, when the VirtualService says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub findings: Vec<Finding>,
    pub steps: Vec<PreviewStep>,
    /// What a rollback from the last step sends.
    pub rollback: PreviewStep,
    /// Where this revision takes a running rollout when it replaces an edited one.
    pub resume: Resume,
}

/// Where an edit continues a running rollout (`docs/lifecycle.md`, "plan edited").
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resume {
    /// The canary weight the running rollout holds.
    pub from_canary_weight: u8,
    /// The 1-based step it continues at; `steps + 1` when every step is already behind it.
    pub step: usize,
    /// That step, or what happens when none is left.
    pub action: String,
    /// The route it holds until that step runs.
    pub state: String,
    pub note: String,
}

/// Where `plan` continues a running rollout whose managed routes hold `live`.
fn resume(plan: &Plan, live: &RouteState) -> Resume {
    let (index, route) = crate::rollout::resume_at(plan, live);
    let action = match plan.steps.get(index) {
        Some(step) => step.to_string(),
        None => match plan.on_success {
            OnSuccess::Promote => "no step left: promote".into(),
            _ => "no step left: finish without promoting".into(),
        },
    };
    Resume {
        from_canary_weight: live.canary_weight,
        step: index + 1,
        action,
        state: route.to_string(),
        note: format!(
            "an edit of a running rollout with the canary at {}% continues at step {} and never \
             raises the canary before it; a new release (stable or canary changed) starts at \
             step 1 from the live route instead",
            live.canary_weight,
            index + 1
        ),
    }
}

fn entry(
    step: usize,
    action: String,
    state: &RouteState,
    patch: &routes::PatchPlan,
    vs: &Value,
) -> PreviewStep {
    PreviewStep {
        step,
        action,
        state: state.to_string(),
        patch: patch.ops.clone(),
        routes: (!patch.is_empty())
            .then(|| vs.pointer("/spec/http").cloned().unwrap_or(Value::Null)),
    }
}

/// The plan's VirtualService among `objects`, with its namespace filled in.
fn virtual_service_of(plan: &Plan, objects: &[Object]) -> anyhow::Result<Value> {
    let ns = plan.id.namespace.as_str();
    let Some(vs_obj) = objects.iter().find(|o| {
        o.value.get("kind").and_then(Value::as_str) == Some("VirtualService")
            && o.value.pointer("/metadata/name").and_then(Value::as_str)
                == Some(plan.virtual_service.as_str())
            && o.value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(ns)
                == ns
    }) else {
        bail!(
            "VirtualService {ns}/{} not found in the manifests",
            plan.virtual_service
        );
    };
    let mut vs = vs_obj.value.clone();
    if let Some(meta) = vs.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.entry("namespace")
            .or_insert_with(|| Value::String(ns.to_string()));
    }
    Ok(vs)
}

/// What the daemon does with `plan` as a new release when its canary has every request.
fn already_released(plan: &Plan) -> String {
    format!(
        "the VirtualService already sends every request of the managed routes to the canary \
         ({} `{}`): as a new release the daemon takes this one as done and moves no traffic; \
         the steps below are what it writes from a route on stable",
        plan.split.noun(),
        plan.canary
    )
}

/// Compute the preview of `plan` against `objects`; `live_weight` overrides the canary weight of
/// the VirtualService for the resume point.
pub fn preview(
    plan: &Plan,
    objects: &[Object],
    live_weight: Option<u8>,
) -> anyhow::Result<Preview> {
    let target = Target::from_plan(plan);
    let ns = plan.id.namespace.as_str();
    let mut findings = preflight::check_objects(objects, ns);
    findings.extend(preflight::check_target(objects, &target));
    let mut vs = virtual_service_of(plan, objects)?;
    let mut live = routes::observe(&vs, &target)
        .map(|(state, _)| state)
        .unwrap_or_default();
    if let Some(w) = live_weight {
        live.canary_weight = w;
    }
    let resume = resume(plan, &live);
    let note =
        (live_weight.is_none() && live == RouteState::all_canary()).then(|| already_released(plan));
    let mut state = RouteState::default();
    let mut steps = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        match step {
            Step::SetWeight(w) => state.canary_weight = *w,
            Step::SetHeaderRoute(h) => state.header_route = Some(h.clone()),
            Step::SetMirror(p) => state.mirror_percent = *p,
            Step::Analyze(_) | Step::Pause(_) => {}
        }
        let patch = routes::plan_set(&vs, &target, &state)
            .with_context(|| format!("step {}: {step}", i + 1))?;
        vs = routes::apply(&vs, &patch)?;
        steps.push(entry(i + 1, step.to_string(), &state, &patch, &vs));
    }
    let rollback_patch = routes::plan_clear(&vs, &target, &RouteState::all_stable())?;
    let rolled_back = routes::apply(&vs, &rollback_patch)?;
    let rollback = entry(
        0,
        "rollback (from the last step)".into(),
        &RouteState::all_stable(),
        &rollback_patch,
        &rolled_back,
    );
    if plan.on_success == OnSuccess::Promote {
        let patch = routes::plan_clear(&vs, &target, &RouteState::all_canary())?;
        vs = routes::apply(&vs, &patch)?;
        steps.push(entry(
            0,
            "promote: all traffic to the canary, tidegate's routes removed".into(),
            &RouteState::all_canary(),
            &patch,
            &vs,
        ));
    }
    Ok(Preview {
        rollout: plan.id.to_string(),
        virtual_service: format!("{ns}/{}", plan.virtual_service),
        note,
        findings,
        steps,
        rollback,
        resume,
    })
}

pub fn run(args: &PreviewArgs) -> anyhow::Result<ExitCode> {
    let name = args.plan.display().to_string();
    let text = std::fs::read_to_string(&args.plan)
        .with_context(|| format!("failed to read plan {name}"))?;
    let parsed = plan::parse_mixed_str(&name, &text);
    if !parsed.findings.is_empty() {
        for f in &parsed.findings {
            eprintln!("error {f}");
        }
        return Ok(ExitCode::from(1));
    }
    if parsed.plans.is_empty() {
        bail!("{name} holds no tidegate Rollout");
    }
    let objects: Vec<Object> = manifests::load(&args.manifests)?
        .into_iter()
        .filter(|d| !d.api_version().starts_with("tidegate.dev/"))
        .map(|d| Object::new(d.value, Some(d.file)))
        .collect();
    let previews = parsed
        .plans
        .iter()
        .map(|p| preview(p, &objects, args.canary_weight))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let errors = previews.iter().any(|p| preflight::has_errors(&p.findings));
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&previews)?),
        // The human form is the YAML documents of the steps.
        Format::Yaml | Format::Text => print!("{}", serde_saphyr::to_string_multiple(&previews)?),
    }
    Ok(if errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
