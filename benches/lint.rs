//! `tidegate lint` on a generated folder of 200 manifests (40 services, each with a Service, a
//! DestinationRule, a mesh VirtualService, an ingress VirtualService and a rollout plan; one
//! Gateway), against reading and parsing the same folder in the same run as the baseline.
//! `cargo bench --bench lint` measures; under `cargo test` it runs one quick iteration.

use std::path::Path;
use std::time::{Duration, Instant};

use tidegate::cli::lint;
use tidegate::mesh::manifests;

const APPS: usize = 40;

fn app_files(i: usize) -> [(String, String); 5] {
    let name = format!("svc-{i:02}");
    let ns = format!("team-{}", i % 8);
    let gateway = if i == 0 {
        "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: public, namespace: istio-system}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*/*.example.com\"]}]\n"
    } else {
        ""
    };
    [
        (
            format!("{name}-service.yaml"),
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{port: 8080, name: http}}]\n"
            ),
        ),
        (
            format!("{name}-destinationrule.yaml"),
            format!(
                "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  host: {name}\n  trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}\n  subsets:\n    - {{name: v1, labels: {{version: v1}}}}\n    - {{name: v2, labels: {{version: v2}}}}\n"
            ),
        ),
        (
            format!("{name}-virtualservice.yaml"),
            format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [{name}]\n  http:\n    - name: api\n      match: [{{uri: {{prefix: /api}}, headers: {{x-tenant: {{exact: a}}}}}}]\n      timeout: 2s\n      retries: {{attempts: 2, perTryTimeout: 500ms}}\n      route:\n        - {{destination: {{host: {name}, subset: v1}}, weight: 90}}\n        - {{destination: {{host: {name}, subset: v2}}, weight: 10}}\n    - name: primary\n      route: [{{destination: {{host: {name}, subset: v1}}}}]\n"
            ),
        ),
        (
            format!("{name}-ingress.yaml"),
            format!(
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}-edge, namespace: {ns}}}\nspec:\n  hosts: [{name}.example.com]\n  gateways: [istio-system/public]\n  http: [{{route: [{{destination: {{host: {name}, subset: v1}}}}]}}]\n{gateway}"
            ),
        ),
        (
            format!("{name}-rollout.yaml"),
            format!(
                "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  service: {name}\n  routes: [primary]\n  stable: v1\n  canary: v2\n  steps: [{{setWeight: 10}}, {{analyze: 1m}}, {{setWeight: 50}}]\n  analysis:\n    interval: 30s\n    metrics: [{{name: success-rate, template: istio-success-rate, min: 99}}]\n"
            ),
        ),
    ]
}

fn generate(dir: &Path) -> usize {
    let mut n = 0;
    for i in 0..APPS {
        for (file, text) in app_files(i) {
            std::fs::write(dir.join(file), text).expect("write manifest");
            n += 1;
        }
    }
    n
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let measure = std::env::args().any(|a| a == "--bench");
    let rounds = if measure { 21 } else { 1 };
    let dir = tempfile::tempdir().expect("tempdir");
    let files = generate(dir.path());
    assert_eq!(files, 200);
    let paths = [dir.path().to_path_buf()];
    let mut parse = Vec::new();
    let mut full = Vec::new();
    let mut report = None;
    for _ in 0..rounds {
        let t0 = Instant::now();
        std::hint::black_box(manifests::load(&paths).expect("parse"));
        parse.push(t0.elapsed());
        let t0 = Instant::now();
        report = Some(lint::lint(&paths, "default").expect("lint"));
        full.push(t0.elapsed());
    }
    let report = report.expect("one round");
    // The generated setup has no error; its one warning per service is on purpose: the `api`
    // route splits to the canary itself and the plan manages `primary` only (TG132).
    assert_eq!(report.errors, 0, "{:#?}", report.findings);
    assert!(report.findings.iter().all(|f| f.code == "TG132"));
    assert_eq!(report.plans.len(), APPS);
    let mut by_code = std::collections::BTreeMap::new();
    for f in &report.findings {
        *by_code.entry(f.code).or_insert(0) += 1;
    }
    println!("findings by code: {by_code:?}");
    let (parse, full) = (median(parse), median(full));
    println!(
        "lint: {files} manifests ({} objects, {} plans, {} findings): median {full:?} over {rounds} runs; reading and parsing alone {parse:?} (lint = {:.1}× parsing)",
        report.objects,
        report.plans.len(),
        report.findings.len(),
        full.as_secs_f64() / parse.as_secs_f64().max(1e-9)
    );
}
