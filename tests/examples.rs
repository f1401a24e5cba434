//! Every example under examples/ is valid (checked through the built binary, as a user would),
//! its Istio manifests define what its plans refer to, and its scripted runs end as described.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn tidegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run tidegate")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn example_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(examples())
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_folder_is_valid() {
    let dirs = example_dirs();
    let names: BTreeSet<String> = dirs
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for want in [
        "ab-header",
        "custom-metric",
        "mirror",
        "orders-svc",
        "window",
    ] {
        assert!(names.contains(want), "examples/{want} is missing");
    }
    for dir in &dirs {
        let rel = format!(
            "examples/{}",
            dir.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        let out = tidegate(&["validate", "-o", "json", &rel]);
        assert!(
            out.status.success(),
            "tidegate validate {rel} failed:\n{}",
            text(&out)
        );
        let report: Value =
            serde_json::from_slice(&out.stdout).expect("validate -o json prints JSON");
        assert_eq!(report["valid"], true, "{rel}: {report}");
        assert!(
            report["plans"].as_array().is_some_and(|p| !p.is_empty()),
            "{rel} holds no plan: {report}"
        );
    }
    let out = tidegate(&["validate", "examples"]);
    assert!(
        out.status.success(),
        "tidegate validate examples:\n{}",
        text(&out)
    );
    assert!(
        text(&out).contains(&format!("{} plans valid", dirs.len())),
        "{}",
        text(&out)
    );
}

/// Every Istio object of an example's manifests/ folder.
fn manifests(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for file in yaml_files(&dir.join("manifests")) {
        let text = std::fs::read_to_string(&file).expect("read manifest");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        out.extend(docs.into_iter().filter(|d| !d.is_null()));
    }
    out
}

fn find<'a>(objs: &'a [Value], kind: &str, ns: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| {
            o["kind"] == kind && o["metadata"]["name"] == name && o["metadata"]["namespace"] == ns
        })
        .unwrap_or_else(|| panic!("no {kind} {ns}/{name} in the example's manifests/"))
}

/// `{{ canary.X }}` / `{{ stable.X }}` labels used in a query.
fn template_labels(query: &str, side: &str) -> Vec<String> {
    let needle = format!("{{{{ {side}.");
    query
        .match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &query[i + needle.len()..];
            rest.split_whitespace().next().map(str::to_owned)
        })
        .collect()
}

#[test]
fn manifests_define_what_the_plans_use() {
    let mut labels_checked = 0;
    for dir in example_dirs() {
        let objs = manifests(&dir);
        for file in yaml_files(&dir.join("rollouts")) {
            let text = std::fs::read_to_string(&file).expect("read plan");
            let parsed = tidegate::plan::parse_str(&file.display().to_string(), &text);
            assert!(parsed.findings.is_empty(), "{:?}", parsed.findings);
            for plan in &parsed.plans {
                let ns = plan.id.namespace.as_str();
                let vs = find(&objs, "VirtualService", ns, &plan.virtual_service);
                let dr_name = plan
                    .destination_rule
                    .as_deref()
                    .expect("examples split by subset");
                let dr = find(&objs, "DestinationRule", ns, dr_name);
                assert_eq!(
                    dr["spec"]["host"],
                    plan.service.as_str(),
                    "{}: DestinationRule host",
                    plan.id
                );
                let subsets = dr["spec"]["subsets"].as_array().expect("subsets");
                let subset = |name: &str| {
                    subsets
                        .iter()
                        .find(|s| s["name"] == name)
                        .unwrap_or_else(|| {
                            panic!("{}: subset {name} is not in the DestinationRule", plan.id)
                        })
                };
                subset(&plan.stable);
                subset(&plan.canary);
                let http = vs["spec"]["http"].as_array().expect("http routes");
                for route in &plan.routes {
                    let r = http
                        .iter()
                        .find(|r| r["name"] == route.as_str())
                        .unwrap_or_else(|| {
                            panic!("{}: route {route} is not in the VirtualService", plan.id)
                        });
                    let dests = r["route"].as_array().expect("destinations");
                    let weight: i64 = dests
                        .iter()
                        .map(|d| d["weight"].as_i64().unwrap_or(100))
                        .sum();
                    assert_eq!(weight, 100, "{}: route {route} weights", plan.id);
                    assert!(
                        dests
                            .iter()
                            .any(|d| d["destination"]["subset"] == plan.stable.as_str()),
                        "{}: route {route} does not send to stable",
                        plan.id
                    );
                }
                // Custom queries only use labels the subsets really have.
                for (side, name) in [("canary", &plan.canary), ("stable", &plan.stable)] {
                    let labels = subset(name)["labels"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default();
                    let queries = plan
                        .analysis
                        .metrics
                        .iter()
                        .filter_map(|m| match &m.source {
                            tidegate::plan::MetricSource::Query(q) => Some(q.as_str()),
                            tidegate::plan::MetricSource::Template(_) => None,
                        });
                    for label in queries.flat_map(|q| template_labels(q, side)) {
                        labels_checked += 1;
                        assert!(
                            label == "subset" || labels.contains_key(&label),
                            "{}: {{{{ {side}.{label} }}}} but subset {name} has no label {label}",
                            plan.id
                        );
                    }
                }
            }
        }
    }
    // orders-svc and search-api use {{ canary.version }} / {{ stable.version }}.
    assert!(
        labels_checked >= 4,
        "custom-query labels checked: {labels_checked}"
    );
}

/// The commands of examples/README.md's ```sh blocks, as argument lists without `tidegate`.
fn readme_commands() -> Vec<Vec<String>> {
    let path = examples().join("README.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    shell_blocks(&doc)
        .iter()
        .flat_map(|b| b.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|l| {
            l.trim()
                .strip_prefix("tidegate ")
                .map(|rest| rest.split_whitespace().map(str::to_owned).collect())
        })
        .collect()
}

/// Every command in examples/README.md works as written, and every scripted run of the
/// examples is among them.
#[test]
fn readme_commands_work_and_cover_every_script() {
    let commands = readme_commands();
    assert!(
        commands.len() >= 7,
        "examples/README.md commands: {commands:?}"
    );
    let mut scripted = BTreeSet::new();
    for dir in example_dirs() {
        for f in yaml_files(&dir) {
            if f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("verdicts-"))
            {
                scripted.insert(format!(
                    "examples/{}",
                    f.strip_prefix(examples()).expect("prefix").display()
                ));
            }
        }
    }
    let mut covered = BTreeSet::new();
    for args in &commands {
        if args.first().map(String::as_str) == Some("simulate") {
            assert!(
                args.iter().any(|a| a == "--expect"),
                "say what the run must end in: {args:?}"
            );
            if let Some(i) = args.iter().position(|a| a == "--verdicts") {
                covered.insert(args[i + 1].clone());
            }
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tidegate(&refs);
        assert!(
            out.status.success(),
            "`tidegate {}` failed:\n{}",
            args.join(" "),
            text(&out)
        );
    }
    assert_eq!(
        covered, scripted,
        "every verdicts-*.yaml is run by a command in examples/README.md"
    );
}

#[test]
fn window_example_waits_over_the_weekend() {
    let out = tidegate(&[
        "simulate",
        "examples/window/rollouts/billing-svc.yaml",
        "--verdicts",
        "examples/window/verdicts-friday.yaml",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let run: Value = serde_json::from_slice(&out.stdout).expect("simulate -o json prints JSON");
    let dump = run.to_string();
    // The last weight change happens on Monday morning in Berlin, not on Thursday evening.
    assert!(
        dump.contains("2026-12-07T08:"),
        "the rollout should finish Monday 09:xx Berlin: {dump}"
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run git (install the Debian package `git`): {e}"));
    assert!(out.status.success(), "git {args:?} failed:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The ```sh blocks of a Markdown file.
fn shell_blocks(doc: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Run every command of the walkthrough in a real clone with a real remote, and read each
/// commit it makes back with tidegate's trailer parser.
#[test]
fn control_commit_walkthrough_makes_real_control_commits() {
    let path = examples().join("control-commits.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tmp = tempfile::tempdir().expect("tempdir");
    let remote = tmp.path().join("plans.git");
    let work = tmp.path().join("plans");
    git(
        tmp.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            remote.to_str().expect("utf-8 path"),
        ],
    );
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            remote.to_str().expect("utf-8 path"),
            work.to_str().expect("utf-8 path"),
        ],
    );
    git(&work, &["config", "user.name", "Alice Ops"]);
    git(&work, &["config", "user.email", "alice@example.com"]);
    git(&work, &["checkout", "-q", "-b", "main"]);
    git(
        &work,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "Add the orders-svc plan",
        ],
    );
    git(&work, &["push", "-q", "-u", "origin", "main"]);

    let blocks = shell_blocks(&doc);
    assert_eq!(blocks.len(), 5, "one command block per action");
    let mut actions = Vec::new();
    for block in &blocks {
        let out = Command::new("sh")
            .arg("-ec")
            .arg(block)
            .current_dir(&work)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "the walkthrough's commands failed:\n{block}\n{}",
            text(&out)
        );
        // The commit reached the remote, where tidegate reads it.
        let message = git(&remote, &["log", "-1", "--format=%B", "main"]);
        let controls = tidegate::control::parse_controls(&message);
        assert_eq!(controls.len(), 1, "not exactly one control in:\n{message}");
        let c = &controls[0];
        let action = c
            .action
            .as_ref()
            .unwrap_or_else(|w| panic!("unknown action {w} in:\n{message}"));
        assert_eq!(c.target("default").to_string(), "production/orders-svc");
        assert!(
            !c.reason.is_empty(),
            "every example gives a reason:\n{message}"
        );
        assert!(!tidegate::control::is_status_commit(&message));
        actions.push(action.as_str());
    }
    assert_eq!(actions, ["pause", "resume", "abort", "retry", "promote"]);

    // The multi-rollout example is one message with two controls.
    let multi = doc
        .split("## Several rollouts in one commit")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("the several-rollouts example");
    let controls = tidegate::control::parse_controls(multi.trim_start_matches('\n'));
    let targets: Vec<String> = controls
        .iter()
        .map(|c| c.target("default").to_string())
        .collect();
    assert_eq!(targets, ["production/orders-svc", "shop/checkout-web"]);
}

#[test]
fn walkthrough_status_file_is_a_real_status_document() {
    let path = examples().join("control-commits.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let yaml = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a ```yaml status block");
    let status =
        tidegate::git::status_doc::document::parse("status/production/orders-svc.yaml", yaml)
            .unwrap_or_else(|e| panic!("the walkthrough's status file no longer parses: {e}"));
    assert_eq!(status.rollout.to_string(), "production/orders-svc");
    assert_eq!(status.phase, tidegate::rollout::Phase::Paused);
    let controls: Vec<(&str, bool)> = status
        .controls
        .iter()
        .map(|c| (c.action.as_str(), c.applied))
        .collect();
    assert_eq!(
        controls,
        [("pause", true), ("resume", false), ("resume", true)]
    );
    // The document is exactly what tidegate writes for that status.
    assert_eq!(
        tidegate::git::status_doc::document::render(&status).expect("render"),
        yaml,
        "the status block must be byte-for-byte what tidegate renders"
    );
}

/// Every example is linted (no error-level finding) and previewed (every step's patch computes
/// against its own manifests).
#[test]
fn every_example_is_linted_and_previewed() {
    let mut previewed = 0;
    for dir in example_dirs() {
        let d = dir.display().to_string();
        let lint = tidegate(&["lint", &d]);
        assert_eq!(lint.status.code(), Some(0), "lint {d}:\n{}", text(&lint));
        let manifests = dir.join("manifests");
        for plan in yaml_files(&dir.join("rollouts")) {
            let p = plan.display().to_string();
            let out = tidegate(&[
                "preview",
                &p,
                "--manifests",
                &manifests.display().to_string(),
                "-o",
                "json",
            ]);
            assert_eq!(out.status.code(), Some(0), "preview {p}:\n{}", text(&out));
            let v: Value = serde_json::from_slice(&out.stdout).expect("preview JSON");
            let docs = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
            for doc in docs {
                let steps = doc["steps"].as_array().map(Vec::len).unwrap_or(0);
                assert!(steps > 0, "preview {p} shows no step: {doc}");
            }
            previewed += 1;
        }
    }
    assert!(
        previewed >= 5,
        "expected at least five example plans, previewed {previewed}"
    );
}
