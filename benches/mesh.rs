//! Mesh adapter benchmarks: pure patch computation over the shared fixtures, and a full router
//! write (discover once, GET, guarded PATCH, GET) against the in-process API emulator.
//! `cargo bench --bench mesh` measures; under `cargo test` it runs one quick iteration.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tidegate::lab::kube_emulator::{self, EmulatorConfig};
use tidegate::mesh::istio::router::{IstioRouter, RetryPolicy};
use tidegate::mesh::istio::routes;
use tidegate::mesh::{Target, TrafficRouter, manifests};
use tidegate::plan::RolloutId;
use tidegate::rollout::RouteState;

fn target(service: &str, stable: &str, ns: &str, name: &str) -> Target {
    Target {
        rollout: RolloutId {
            namespace: ns.into(),
            name: name.into(),
        },
        service: service.into(),
        virtual_service: name.into(),
        destination_rule: Some(name.into()),
        routes: vec![],
        stable: stable.into(),
        canary: "bench-canary".into(),
        split: tidegate::plan::Split::Subset,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let measure = std::env::args().any(|a| a == "--bench");
    let iterations = if measure { 2000 } else { 1 };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/istio/manifests");
    assert!(
        dir.is_dir(),
        "the shared fixtures are missing: expected {}",
        dir.display()
    );
    let docs = manifests::load(&[dir]).expect("fixtures parse");
    let mut cases = Vec::new();
    for d in docs.iter().filter(|d| d.kind() == "VirtualService") {
        let vs = &d.value;
        let first = vs
            .pointer("/spec/http/0/route/0/destination")
            .and_then(|d| Some((d.get("host")?.as_str()?, d.get("subset")?.as_str()?)));
        if let Some((h, s)) = first {
            let t = target(h, s, "default", "bench");
            if routes::view(vs, &t).is_ok() {
                cases.push((vs.clone(), t));
            }
        }
    }
    let state = RouteState {
        canary_weight: 30,
        header_route: None,
        mirror_percent: 10,
    };
    let start = Instant::now();
    let mut n = 0u64;
    for _ in 0..iterations {
        for (vs, t) in &cases {
            let p = routes::plan_set(vs, t, &state).expect("set");
            let after = routes::apply(vs, &p).expect("apply");
            std::hint::black_box(routes::verify(&after, t, &state));
            n += 1;
        }
    }
    let per = start.elapsed() / u32::try_from(n).unwrap_or(u32::MAX).max(1);
    println!(
        "pure: plan_set + apply + verify over {} fixture VirtualServices: {per:?} per VirtualService",
        cases.len()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let emu = kube_emulator::start(EmulatorConfig::default()).await.expect("emulator");
        let vs = serde_json::json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"hosts": ["orders"], "http": [{"name": "primary",
                "route": [{"destination": {"host": "orders", "subset": "v1"}}]}]}});
        emu.apply_manifest(vs, "shop").expect("seed");
        let router = IstioRouter::new(emu.client().expect("client"), RetryPolicy::default());
        let t = Target { canary: "v2".into(), ..target("orders", "v1", "shop", "orders") };
        router.virtual_service_resource().await.expect("discovery");
        let rounds = if measure { 500 } else { 2 };
        let mut times = Vec::with_capacity(rounds);
        for i in 0..rounds {
            let st = RouteState { canary_weight: if i % 2 == 0 { 10 } else { 20 }, ..Default::default() };
            let t0 = Instant::now();
            let rep = router.set_route(&t, &st).await.expect("set");
            times.push(t0.elapsed());
            assert!(rep.patched);
        }
        times.sort();
        println!(
            "router: set_route (GET + guarded PATCH + read-back GET) against the emulator over loopback, {} writes: p50 {:?}, p99 {:?}",
            rounds,
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
        emu.shutdown().await;
    });
}
