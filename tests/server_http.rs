//! The daemon's HTTP server over real loopback HTTP: health, readiness, metrics, the rollout
//! API and the Git webhook (signature checks, size limit, what triggers a fetch).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use tidegate::server::{self, AppState};

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn start(secret: Option<&[u8]>) -> (String, Arc<AppState>) {
    tidegate::notify::ensure_crypto_provider();
    let state = Arc::new(AppState::new("main", secret.map(<[u8]>::to_vec), 64 * 1024));
    let (addr, serve) = server::bind("127.0.0.1:0".into(), state.clone(), std::future::pending())
        .await
        .expect("bind");
    tokio::spawn(serve);
    (format!("http://{addr}"), state)
}

async fn fetch_requested(state: &AppState) -> bool {
    tokio::time::timeout(Duration::from_millis(300), state.fetch_now.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn health_readiness_metrics_and_api() {
    let (base, state) = start(None).await;
    let http = reqwest::Client::new();
    let get = |p: &str| http.get(format!("{base}{p}")).send();
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    let ready = get("/readyz").await.expect("readyz");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["gitSynced"], false);
    state.git_synced.store(true, Ordering::Relaxed);
    let ready = get("/readyz").await.expect("readyz");
    assert_eq!(
        ready.status(),
        200,
        "Prometheus down does not make the pod unready"
    );
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["metricsSourceHealthy"], false, "but it is said");
    state.metrics_ok.store(true, Ordering::Relaxed);
    assert_eq!(get("/readyz").await.expect("readyz").status(), 200);
    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("tidegate_git_pushes_total"), "{metrics}");
    assert!(
        metrics.contains("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    let list: serde_json::Value = get("/api/v1/rollouts")
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["rollouts"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        get("/api/v1/rollouts/prod/nope")
            .await
            .expect("one")
            .status(),
        404
    );
}

#[tokio::test]
async fn signed_webhooks_trigger_a_fetch_and_others_do_not() {
    let secret = b"webhook-secret";
    let (base, state) = start(Some(secret)).await;
    let http = reqwest::Client::new();
    let body = br#"{"ref":"refs/heads/main","after":"abc"}"#;
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut r = http.post(format!("{base}/hooks/git")).body(body);
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    // GitHub, correctly signed: 202 and a fetch.
    let ok = post(
        vec![
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", sign(secret, body)),
        ],
        body.to_vec(),
    )
    .await
    .expect("post");
    assert_eq!(ok.status(), 202);
    assert!(fetch_requested(&state).await);
    // Wrong signature: 401 and no fetch.
    let bad = post(
        vec![
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", sign(b"guess", body)),
        ],
        body.to_vec(),
    )
    .await
    .expect("post");
    assert_eq!(bad.status(), 401);
    assert!(!fetch_requested(&state).await);
    // Unsigned: 401.
    let unsigned = post(vec![("X-GitHub-Event", "push".into())], body.to_vec())
        .await
        .expect("post");
    assert_eq!(unsigned.status(), 401);
    // GitLab token.
    let gl = post(
        vec![
            ("X-Gitlab-Event", "Push Hook".into()),
            ("X-Gitlab-Token", "webhook-secret".into()),
        ],
        body.to_vec(),
    )
    .await
    .expect("post");
    assert_eq!(gl.status(), 202);
    assert!(fetch_requested(&state).await);
    // Another branch: authentic but ignored.
    let other = br#"{"ref":"refs/heads/feature"}"#;
    let ign = post(
        vec![
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", sign(secret, other)),
        ],
        other.to_vec(),
    )
    .await
    .expect("post");
    assert_eq!(ign.status(), 200);
    assert!(!fetch_requested(&state).await);
    // Not a webhook at all: 400.
    let junk = post(vec![], b"hello".to_vec()).await.expect("post");
    assert_eq!(junk.status(), 400);
    // Too large: refused before any check.
    let big = vec![b' '; 65 * 1024];
    let too_big = post(
        vec![
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", sign(secret, &big)),
        ],
        big,
    )
    .await
    .expect("post");
    assert_eq!(too_big.status(), 413);
    assert!(!fetch_requested(&state).await);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("m")
        .text()
        .await
        .expect("t");
    assert!(
        metrics.contains("tidegate_webhooks_total{provider=\"github\",result=\"fetch\"} 1"),
        "{metrics}"
    );
}
