//! How long `NotifyQueue::enqueue` takes while the sender is stuck on a webhook that never
//! answers (the case that must not hold up a rollback), and how many messages per second the
//! queue delivers to a webhook on loopback.
//!
//! `cargo bench --bench notify_queue` measures; under `cargo test` it runs a short smoke pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use tidegate::notify::{
    Backoff, Channel, ChannelKind, Notification, Notifier, NotifyQueue, UrlSource, WebhookNotifier,
};
use tidegate::plan::RolloutId;
use tidegate::rollout::{Event, Phase};

async fn server(hang: bool, count: Arc<AtomicU64>) -> String {
    let app = Router::new()
        .fallback(move |State(c): State<Arc<AtomicU64>>| async move {
            c.fetch_add(1, Ordering::Relaxed);
            if hang {
                std::future::pending::<()>().await;
            }
            StatusCode::OK
        })
        .with_state(count);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}/hook")
}

fn notifier(url: &str, kind: ChannelKind) -> Arc<dyn Notifier> {
    let channel = Channel {
        name: "default".into(),
        kind,
        url: UrlSource::Env("UNUSED".into()),
        events: vec![Event::StepAdvanced],
        timeout: Duration::from_secs(60),
        retries: 0,
    };
    let n = WebhookNotifier::new(channel, reqwest::Url::parse(url).expect("url"))
        .expect("notifier")
        .with_backoff(Backoff::default());
    Arc::new(n)
}

fn message(i: usize) -> Notification {
    Notification {
        rollout: RolloutId {
            namespace: "production".into(),
            name: format!("svc-{}", i % 1000),
        },
        event: Event::StepAdvanced,
        phase: Phase::Progressing,
        step: 2,
        step_count: 9,
        canary_weight: 25,
        message: "production/svc step 2: setWeight 25%".into(),
        reason: "step 2: setWeight 25%".into(),
        verdicts: Vec::new(),
        commit: "4f1c2e9a7b3d5f60718293a4b5c6d7e8f9012345".into(),
        control: None,
        channels: vec!["default".into()],
        at: Utc::now(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let measure = std::env::args().any(|a| a == "--bench");
    let (enqueues, deliveries) = if measure {
        (200_000, 5_000)
    } else {
        (1_000, 50)
    };
    tidegate::notify::ensure_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        // 1. Enqueue while the worker is stuck on a webhook that never answers.
        let hits = Arc::new(AtomicU64::new(0));
        let url = server(true, Arc::clone(&hits)).await;
        let queue = NotifyQueue::start(vec![notifier(&url, ChannelKind::Slack)], 256).expect("queue");
        let mut times = Vec::with_capacity(enqueues);
        let messages: Vec<Notification> = (0..enqueues).map(message).collect();
        let started = Instant::now();
        for m in messages {
            let t = Instant::now();
            queue.enqueue(m);
            times.push(t.elapsed());
        }
        let total = started.elapsed();
        times.sort();
        let stats = queue.stats();
        assert_eq!(stats.enqueued, enqueues as u64);
        assert!(stats.dropped >= (enqueues as u64).saturating_sub(257));
        println!(
            "enqueue with a hung webhook: {enqueues} messages in {total:?}; per call p50 {:?} p99 {:?} max {:?}; dropped {}",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times.last().copied().unwrap_or_default(),
            stats.dropped
        );
        queue.shutdown(Duration::from_millis(10)).await;

        // 2. Delivery throughput to a webhook that answers at once.
        let hits = Arc::new(AtomicU64::new(0));
        let url = server(false, Arc::clone(&hits)).await;
        for kind in [ChannelKind::Slack, ChannelKind::Webhook] {
            let queue = NotifyQueue::start(vec![notifier(&url, kind)], deliveries).expect("queue");
            let started = Instant::now();
            for i in 0..deliveries {
                queue.enqueue(message(i));
            }
            let stats = queue.shutdown(Duration::from_secs(300)).await;
            let took = started.elapsed();
            assert_eq!(stats.delivered, deliveries as u64, "{stats:?}");
            println!(
                "delivery ({kind:?}): {deliveries} messages in {took:?} = {:.0} messages/s",
                deliveries as f64 / took.as_secs_f64()
            );
        }
    });
}
