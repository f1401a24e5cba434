//! Notifications against a real HTTP server on loopback that records every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use chrono::DateTime;
use serde_json::Value;
use tidegate::analysis::{Outcome, Verdict};
use tidegate::notify::{
    Backoff, Channel, ChannelKind, Enqueued, Notification, Notifier, NotifyError, NotifyQueue,
    UrlSource, WebhookNotifier,
};
use tidegate::plan::RolloutId;
use tidegate::rollout::{Event, Phase};
use tokio::sync::Notify;

/// One recorded request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    content_type: String,
    body: Value,
}

/// What the server does per path: `/ok...` answers 200, `/flaky-N` answers 500 N times then 200,
/// `/bad` answers 400, `/hang` never answers, `/hold` answers 200 once `release` is notified.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    hits: Mutex<HashMap<String, u32>>,
    release: Notify,
    arrived: Notify,
}

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn handle(
    State(rec): State<Arc<Recorder>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path().to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    rec.seen.lock().expect("lock").push(Seen {
        path: path.clone(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        body,
    });
    let hit = {
        let mut hits = rec.hits.lock().expect("lock");
        let n = hits.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    rec.arrived.notify_one();
    match path.as_str() {
        p if p.starts_with("/ok") => StatusCode::OK,
        "/bad" => StatusCode::BAD_REQUEST,
        "/hang" => {
            std::future::pending::<()>().await;
            StatusCode::OK
        }
        "/hold" => {
            if hit == 1 {
                rec.release.notified().await;
            }
            StatusCode::OK
        }
        p => match p
            .strip_prefix("/flaky-")
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(failures) if hit <= failures => StatusCode::INTERNAL_SERVER_ERROR,
            Some(_) => StatusCode::OK,
            None => StatusCode::NOT_FOUND,
        },
    }
}

async fn server() -> (String, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let app = Router::new().fallback(handle).with_state(Arc::clone(&rec));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (format!("http://{addr}"), rec)
}

fn channel(name: &str, kind: ChannelKind, retries: u32, timeout: Duration) -> Channel {
    Channel {
        name: name.into(),
        kind,
        url: UrlSource::Env("UNUSED".into()),
        events: vec![Event::Started, Event::RolledBack, Event::Paused],
        timeout,
        retries,
    }
}

fn notifier(
    base: &str,
    path: &str,
    kind: ChannelKind,
    retries: u32,
    timeout: Duration,
) -> WebhookNotifier {
    let url = reqwest::Url::parse(&format!("{base}{path}")).expect("url");
    WebhookNotifier::new(channel("default", kind, retries, timeout), url)
        .expect("notifier")
        .with_backoff(Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
        })
}

fn rolled_back(name: &str) -> Notification {
    let mut fail = Verdict::bare("success-rate", Outcome::Fail);
    fail.value = Some(93.5);
    fail.threshold = "min 99".into();
    let mut pass = Verdict::bare("latency-p99", Outcome::Pass);
    pass.value = Some(120.0);
    pass.threshold = "max 500".into();
    Notification {
        rollout: RolloutId {
            namespace: "production".into(),
            name: name.into(),
        },
        event: Event::RolledBack,
        phase: Phase::RolledBack,
        step: 3,
        step_count: 9,
        canary_weight: 0,
        message: format!("production/{name} RolledBack: success-rate failed 2 rounds"),
        reason: "success-rate failed 2 rounds (failureLimit 2)".into(),
        verdicts: vec![fail, pass],
        commit: "4f1c2e9a7b3d5f60718293a4b5c6d7e8f9012345".into(),
        control: None,
        channels: vec!["default".into()],
        at: DateTime::from_timestamp(1_790_000_000, 0).expect("time"),
    }
}

#[tokio::test]
async fn slack_payload_has_text_and_blocks() {
    let (base, rec) = server().await;
    let n = notifier(&base, "/ok", ChannelKind::Slack, 0, Duration::from_secs(5));
    let attempts = n
        .deliver(&rolled_back("orders-svc"))
        .await
        .expect("delivered");
    assert_eq!(attempts, 1);
    let seen = rec.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].content_type, "application/json");
    let body = &seen[0].body;
    let text = body["text"].as_str().expect("text is a string");
    for want in [
        "*production/orders-svc*",
        "rolled back — RolledBack, canary 0% (step 3/9)",
        "success-rate: 93.5 (min 99) *Fail*",
        "latency-p99: 120 (max 500) *Pass*",
        "`4f1c2e9a7b3d`",
    ] {
        assert!(text.contains(want), "slack text lacks {want:?}: {text}");
    }
    let blocks = body["blocks"].as_array().expect("blocks");
    assert_eq!(
        blocks[0]["text"]["text"],
        ":rotating_light: *production/orders-svc* rolled back"
    );
    assert!(blocks.iter().all(|b| b["type"] == "section"));
    let fields = blocks[1]["fields"].as_array().expect("fields");
    assert_eq!(fields[1]["text"], "*Canary weight*\n0%");
    assert!(blocks.iter().any(|b| {
        b["text"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("*Verdicts*"))
    }));
}

#[tokio::test]
async fn json_payload_is_the_documented_document() {
    let (base, rec) = server().await;
    let n = notifier(
        &base,
        "/ok",
        ChannelKind::Webhook,
        0,
        Duration::from_secs(5),
    );
    n.deliver(&rolled_back("orders-svc"))
        .await
        .expect("delivered");
    let seen = rec.seen();
    assert_eq!(seen.len(), 1);
    let want = serde_json::json!({
        "version": "tidegate.dev/v1alpha1",
        "kind": "RolloutNotification",
        "event": "rolledBack",
        "namespace": "production",
        "rollout": "orders-svc",
        "phase": "RolledBack",
        "step": 3,
        "stepCount": 9,
        "canaryWeight": 0,
        "stableWeight": 100,
        "message": "production/orders-svc RolledBack: success-rate failed 2 rounds",
        "reason": "success-rate failed 2 rounds (failureLimit 2)",
        "commit": "4f1c2e9a7b3d5f60718293a4b5c6d7e8f9012345",
        "control": null,
        "verdicts": [
            {"metric": "success-rate", "outcome": "Fail", "value": 93.5, "threshold": "min 99", "reason": ""},
            {"metric": "latency-p99", "outcome": "Pass", "value": 120.0, "threshold": "max 500", "reason": ""}
        ],
        "at": "2026-09-21T14:13:20Z"
    });
    assert_eq!(seen[0].body, want);
}

#[tokio::test]
async fn retries_after_server_errors_then_succeeds() {
    let (base, rec) = server().await;
    let n = notifier(
        &base,
        "/flaky-2",
        ChannelKind::Webhook,
        3,
        Duration::from_secs(5),
    );
    let attempts = n
        .deliver(&rolled_back("orders-svc"))
        .await
        .expect("delivered on the 3rd try");
    assert_eq!(attempts, 3);
    let seen = rec.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter().all(|s| s.body == seen[0].body),
        "every retry sends the same body"
    );
}

#[tokio::test]
async fn gives_up_after_the_retry_budget() {
    let (base, rec) = server().await;
    let n = notifier(
        &base,
        "/flaky-100",
        ChannelKind::Slack,
        2,
        Duration::from_secs(5),
    );
    let err = n
        .deliver(&rolled_back("orders-svc"))
        .await
        .expect_err("never succeeds");
    match &err {
        NotifyError::Failed {
            channel,
            attempts,
            detail,
        } => {
            assert_eq!(channel, "default");
            assert_eq!(*attempts, 3);
            assert_eq!(detail, "HTTP 500");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(rec.seen().len(), 3);
    assert!(
        !err.to_string().contains("127.0.0.1"),
        "the URL is a credential: {err}"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (base, rec) = server().await;
    let n = notifier(&base, "/bad", ChannelKind::Slack, 5, Duration::from_secs(5));
    let err = n
        .deliver(&rolled_back("orders-svc"))
        .await
        .expect_err("400");
    assert!(
        matches!(err, NotifyError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(rec.seen().len(), 1);
}

#[tokio::test]
async fn each_attempt_times_out() {
    let (base, rec) = server().await;
    let n = notifier(
        &base,
        "/hang",
        ChannelKind::Webhook,
        1,
        Duration::from_millis(200),
    );
    let err = n
        .deliver(&rolled_back("orders-svc"))
        .await
        .expect_err("hangs");
    match err {
        NotifyError::Failed {
            attempts, detail, ..
        } => {
            assert_eq!(attempts, 2);
            assert_eq!(detail, "no answer within 200ms");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(rec.seen().len(), 2, "the server saw both attempts");
}

#[tokio::test]
async fn a_full_queue_drops_the_oldest_and_counts() {
    let (base, rec) = server().await;
    let n: Arc<dyn Notifier> = Arc::new(notifier(
        &base,
        "/hold",
        ChannelKind::Webhook,
        0,
        Duration::from_secs(30),
    ));
    let queue = NotifyQueue::start(vec![n], 2).expect("queue");
    // The first message reaches the server and is held there: the worker is busy.
    let arrived = rec.arrived.notified();
    assert_eq!(queue.enqueue(rolled_back("first")), Enqueued::Accepted);
    tokio::time::timeout(Duration::from_secs(20), arrived)
        .await
        .expect("the first message reaches the server");
    // Enqueueing never waits, even with the worker stuck: the two oldest of these are dropped.
    let results: Vec<Enqueued> = ["second", "third", "fourth", "fifth"]
        .into_iter()
        .map(|name| queue.enqueue(rolled_back(name)))
        .collect();
    assert_eq!(
        results,
        vec![
            Enqueued::Accepted,
            Enqueued::Accepted,
            Enqueued::DroppedOldest,
            Enqueued::DroppedOldest
        ]
    );
    assert_eq!(queue.len(), 2);
    assert_eq!(queue.stats().dropped, 2);
    rec.release.notify_one();
    let stats = queue.shutdown(Duration::from_secs(20)).await;
    assert_eq!(stats.enqueued, 5);
    assert_eq!(stats.dropped, 2);
    assert_eq!(stats.delivered, 3);
    assert_eq!(stats.failed, 0);
    let names: Vec<String> = rec
        .seen()
        .iter()
        .map(|s| s.body["rollout"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(names, vec!["first", "fourth", "fifth"]);
}

#[tokio::test]
async fn queue_routes_by_plan_channels_and_events() {
    let (base, rec) = server().await;
    let url = |p: &str| reqwest::Url::parse(&format!("{base}{p}")).expect("url");
    let ops = WebhookNotifier::new(
        channel("ops", ChannelKind::Webhook, 0, Duration::from_secs(5)),
        url("/ok/ops"),
    )
    .expect("ops");
    let mut only_paused = channel("chat", ChannelKind::Slack, 0, Duration::from_secs(5));
    only_paused.events = vec![Event::Paused];
    let chat = WebhookNotifier::new(only_paused, url("/ok/chat")).expect("chat");
    let queue = NotifyQueue::start(vec![Arc::new(ops), Arc::new(chat)], 16).expect("queue");

    let mut to_both = rolled_back("a");
    to_both.channels = vec!["ops".into(), "chat".into(), "missing".into()];
    queue.enqueue(to_both); // chat does not want rolledBack
    let mut paused = rolled_back("b");
    paused.event = Event::Paused;
    paused.phase = Phase::Paused;
    paused.channels = vec!["chat".into()];
    queue.enqueue(paused);
    let mut nobody = rolled_back("c");
    nobody.channels = vec![];
    queue.enqueue(nobody);
    let stats = queue.shutdown(Duration::from_secs(20)).await;
    assert_eq!(stats.delivered, 2);
    assert_eq!(stats.failed, 0);
    let seen = rec.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, vec!["/ok/ops", "/ok/chat"]);
    assert_eq!(seen[0].body["rollout"], "a");
    assert!(
        seen[1].body["text"]
            .as_str()
            .is_some_and(|t| t.contains("production/b"))
    );
}

#[tokio::test]
async fn slack_names_the_control_commit_behind_the_event() {
    let (base, rec) = server().await;
    let n = notifier(&base, "/ok", ChannelKind::Slack, 0, Duration::from_secs(5));
    let mut paused = rolled_back("orders-svc");
    paused.event = Event::Paused;
    paused.phase = Phase::Paused;
    paused.canary_weight = 25;
    paused.control = Some(tidegate::rollout::ControlRecord {
        commit: "3b7a9c1d5e2f4a6b8c0d1e3f5a7b9c1d3e5f7a9b".into(),
        author: "Alice Ops <alice@example.com>".into(),
        action: "pause".into(),
        applied: true,
        note: "latency report from the EU edge".into(),
        at: paused.at,
    });
    n.deliver(&paused).await.expect("delivered");
    let body = &rec.seen()[0].body;
    let text = body["text"].as_str().expect("text");
    assert!(
        text.contains("pause by Alice Ops &lt;alice@example.com&gt; in commit `3b7a9c1d5e2f`"),
        "{text}"
    );
    let blocks = body["blocks"].as_array().expect("blocks");
    let context = blocks
        .iter()
        .find(|b| b["type"] == "context")
        .expect("a context block");
    assert!(
        context["elements"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("pause by Alice Ops"))
    );
}

#[tokio::test]
async fn dropping_the_queue_still_delivers_what_was_queued() {
    let (base, rec) = server().await;
    let n: Arc<dyn Notifier> = Arc::new(notifier(
        &base,
        "/ok",
        ChannelKind::Webhook,
        0,
        Duration::from_secs(5),
    ));
    let queue = NotifyQueue::start(vec![n], 8).expect("queue");
    for name in ["a", "b", "c"] {
        queue.enqueue(rolled_back(name));
    }
    drop(queue);
    tokio::time::timeout(Duration::from_secs(20), async {
        while rec.seen().len() < 3 {
            rec.arrived.notified().await;
        }
    })
    .await
    .expect("the worker drains the queue after the drop");
    let names: Vec<String> = rec
        .seen()
        .iter()
        .map(|s| s.body["rollout"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[tokio::test]
async fn connection_errors_are_retried_and_hide_the_url() {
    // A port that was just free: nothing listens there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let n = notifier(
        &format!("http://{addr}"),
        "/secret-token",
        ChannelKind::Slack,
        2,
        Duration::from_secs(5),
    );
    let err = n
        .deliver(&rolled_back("orders-svc"))
        .await
        .expect_err("nothing listens");
    match &err {
        NotifyError::Failed {
            attempts, detail, ..
        } => {
            assert_eq!(*attempts, 3);
            assert!(detail.contains("<url>"), "{detail}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let shown = err.to_string();
    assert!(
        !shown.contains("secret-token") && !shown.contains(&addr.to_string()),
        "{shown}"
    );
}
