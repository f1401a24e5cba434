//! `tidegate status --api` and `status --watch` against a small stand-in for the daemon's API
//! (`GET /api/v1/rollouts` answering a scripted sequence of lists): the address forms people
//! type, "no rollouts", units in the watch line, and `--watch -o json` streaming one JSON object
//! per change.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use tidegate::analysis::{Outcome, Verdict};
use tidegate::plan::RolloutId;
use tidegate::rollout::{Phase, PlanRef, Status};

/// Serve `bodies` in turn to `GET /api/v1/rollouts` (the last one repeats); other paths 404.
/// Returns `host:port`.
fn fake_api(bodies: Vec<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let served = Arc::new(Mutex::new(0usize));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let (status, body) = if request.starts_with("GET /api/v1/rollouts ") {
                let mut n = served.lock().expect("lock");
                let body = bodies[(*n).min(bodies.len() - 1)].clone();
                *n += 1;
                ("200 OK", body)
            } else {
                ("404 Not Found", "{}".to_owned())
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn status(weight: u8, success: f64) -> Status {
    let id = RolloutId {
        namespace: "production".into(),
        name: "orders-svc".into(),
    };
    let plan = PlanRef {
        path: "rollouts/orders.yaml".into(),
        revision: "a".repeat(40),
        digest: "d".into(),
    };
    let mut s = Status::fresh(&id, &plan, 4, chrono::Utc::now());
    s.phase = Phase::Progressing;
    s.step = 1;
    s.route.canary_weight = weight;
    let mut v = Verdict::bare("success-rate", Outcome::Pass);
    v.value = Some(success);
    v.unit = "%".into();
    let mut latency = Verdict::bare("latency-p99", Outcome::Pass);
    latency.value = Some(212.4);
    latency.unit = "ms".into();
    s.analysis.last = vec![v, latency];
    s
}

fn list(statuses: &[Status]) -> String {
    serde_json::json!({ "rollouts": statuses }).to_string()
}

fn tidegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .env_remove("TIDEGATE_REPO")
        .output()
        .expect("run tidegate")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tidegate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn api_accepts_host_port_base_url_and_what_the_lab_prints() {
    let addr = fake_api(vec![list(&[status(20, 99.5)])]);
    for api in [
        addr.clone(),
        format!("http://{addr}"),
        format!("http://{addr}/api/v1/rollouts"),
    ] {
        let text = stdout(&tidegate(&["status", "--api", &api]));
        assert!(text.contains("production/orders-svc"), "{api}: {text}");
        assert!(text.contains("20%"), "{api}: {text}");
    }
}

#[test]
fn an_empty_api_says_no_rollouts() {
    let addr = fake_api(vec![list(&[])]);
    assert_eq!(
        stdout(&tidegate(&["status", "--api", &addr])).trim(),
        "no rollouts"
    );
    let watch = stdout(&tidegate(&[
        "status",
        "--watch",
        "--refreshes",
        "1",
        "--api",
        &addr,
    ]));
    assert_eq!(watch.trim(), "no rollouts");
    let json = stdout(&tidegate(&["status", "--api", &addr, "-o", "json"]));
    assert_eq!(json.trim(), "[]");
}

#[test]
fn watch_lines_carry_units() {
    let addr = fake_api(vec![list(&[status(20, 99.51234)])]);
    let text = stdout(&tidegate(&[
        "status",
        "--watch",
        "--refreshes",
        "1",
        "--api",
        &addr,
    ]));
    assert!(text.contains("production/orders-svc  20%"), "{text}");
    assert!(
        text.contains("[success-rate ok 99.51%, latency-p99 ok 212.4ms]"),
        "{text}"
    );
    assert!(text.contains("step 1/4 for "), "{text}");
}

#[test]
fn watch_json_streams_one_object_per_change() {
    let a = list(&[status(20, 99.5)]);
    let b = list(&[status(40, 99.7)]);
    // Four refreshes: A, A (no change: nothing printed), B, B.
    let addr = fake_api(vec![a.clone(), a, b.clone(), b]);
    let out = stdout(&tidegate(&[
        "status",
        "--watch",
        "-o",
        "json",
        "--refreshes",
        "4",
        "--api",
        &addr,
    ]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let weights: Vec<u64> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object a line");
            assert_eq!(v["rollout"]["name"], "orders-svc", "{l}");
            v["route"]["canaryWeight"].as_u64().expect("weight")
        })
        .collect();
    assert_eq!(weights, [20, 40]);
}
