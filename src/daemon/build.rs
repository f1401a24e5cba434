//! `build(config)`: connect the real parts (kube and the watched mesh, Prometheus, the Git
//! mirrors and the status writer, the Lease, Kubernetes Events, the notification queue, the
//! system clock) and hand them to [`App::new`].

use std::sync::Arc;
use std::time::Duration;

use super::parts::{
    BlockingFeed, KubeEvents, Leadership, Parts, QueueNotifier, SystemClock, WriterSink,
};
use super::{App, DaemonError, Settings, schedule};
use crate::config::{Config, LeaseConfig};
use crate::git::{GitConfig, GitRepo, StatusWriter, WriterReport};
use crate::mesh::DefaultMesh;
use crate::metrics::prometheus::Prometheus;
use crate::server::AppState;

/// The daemon with its production parts.
pub type DaemonApp = App<DefaultMesh, Prometheus, BlockingFeed<GitRepo>>;

/// Connect everything described by `config`.
pub async fn build(config: &Config) -> Result<DaemonApp, DaemonError> {
    let client = kube_client(config).await?;
    let metrics =
        Prometheus::new(&config.prometheus).map_err(|e| DaemonError::Metrics(e.to_string()))?;
    let policy = config
        .policy()
        .map_err(|e| DaemonError::Policy(e.to_string()))?;
    let poll_repo = open_repo(GitConfig {
        data_dir: config.data_dir.join("poll"),
        ..config.git.clone()
    })
    .await?;
    let writer_repo = open_repo(GitConfig {
        data_dir: config.data_dir.join("write"),
        ..config.git.clone()
    })
    .await?;
    let (writer_thread, writer, reports) = StatusWriter::spawn(writer_repo, config.coalesce_window);
    let leadership = match &config.leader_election {
        Some(lease) => lease_leadership(client.clone(), lease, &config.namespace).await?,
        None => Leadership::solo(),
    };
    let instance = config.leader_election.as_ref().map_or_else(
        || format!("tidegate-{}", std::process::id()),
        |l| l.identity.clone(),
    );
    let parts = Parts {
        mesh: crate::mesh::connect(client.clone()),
        metrics,
        plans: BlockingFeed::new(poll_repo),
        statuses: Box::new(WriterSink::new(writer, writer_thread)),
        leadership,
        events: Box::new(KubeEvents::new(client, instance)),
        notifier: Box::new(QueueNotifier::new(notification_queue(config))),
        clock: Arc::new(SystemClock),
    };
    let app = App::new(parts, settings(config, policy));
    spawn_report_reader(reports, app.state().clone());
    Ok(app)
}

fn settings(config: &Config, policy: crate::control::Policy) -> Settings {
    Settings {
        namespace: config.namespace.clone(),
        reporter: config.reporter.clone(),
        policy,
        poll_interval: config.poll_interval,
        health_interval: config.health_interval,
        schedule: schedule::Policy {
            initial_delay: config.retry.initial_delay,
            max_delay: config.retry.max_delay,
            report_after: config.retry.report_after,
            confirm_delay: Duration::from_millis(100),
        },
        grace: config.shutdown_grace,
        branch: config.git.branch.clone(),
        webhook_secret: config.webhook_secret.clone(),
        max_body_bytes: config.max_body_bytes,
        listen: Some(config.listen.clone()),
    }
}

async fn kube_client(config: &Config) -> Result<kube::Client, DaemonError> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                DaemonError::Kube(format!("cannot read kubeconfig {}: {e}", path.display()))
            })?;
            let opts = kube::config::KubeConfigOptions {
                context: config.kube_context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| DaemonError::Kube(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| DaemonError::Kube(e.to_string()))?,
    };
    kube::Client::try_from(kube_config).map_err(|e| DaemonError::Kube(e.to_string()))
}

async fn open_repo(config: GitConfig) -> Result<GitRepo, DaemonError> {
    tokio::task::spawn_blocking(move || GitRepo::open(config))
        .await
        .map_err(|e| DaemonError::Git(crate::git::GitError::Read(e.to_string())))?
        .map_err(DaemonError::Git)
}

/// Leader election with a Lease in the daemon's namespace.
async fn lease_leadership(
    client: kube::Client,
    lease: &LeaseConfig,
    namespace: &str,
) -> Result<Leadership, DaemonError> {
    let secs = lease.duration.as_secs().max(2);
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(namespace)
        .with_identity(&lease.identity)
        .with_duration(secs)
        .with_grace((secs / 3).max(1))
        .build()
        .await
        .map_err(|e| DaemonError::Lease(e.to_string()))?;
    let (rx, task) = manager.watch().await;
    tracing::info!(lease = %lease.name, identity = %lease.identity, "leader election started");
    Ok(Leadership::new(rx, task))
}

/// The notification queue (channels whose URL cannot be read are reported and skipped).
fn notification_queue(config: &Config) -> Option<crate::notify::NotifyQueue> {
    if config.notifications.is_empty() {
        return None;
    }
    let mut notifiers: Vec<Arc<dyn crate::notify::Notifier>> = Vec::new();
    for c in config.notifications.iter().cloned() {
        let name = c.name.clone();
        match crate::notify::WebhookNotifier::from_channel(c) {
            Ok(n) => notifiers.push(Arc::new(n)),
            Err(e) => tracing::error!(channel = %name, error = %e, "notification channel disabled"),
        }
    }
    match crate::notify::NotifyQueue::start(notifiers, crate::notify::DEFAULT_CAPACITY) {
        Ok(q) => Some(q),
        Err(e) => {
            tracing::error!(error = %e, "notifications disabled");
            None
        }
    }
}

/// Count pushes and push failures as the writer thread reports them.
fn spawn_report_reader(reports: std::sync::mpsc::Receiver<WriterReport>, state: Arc<AppState>) {
    let spawned = std::thread::Builder::new()
        .name("tidegate-git-reports".into())
        .spawn(move || {
            for r in reports {
                match &r.result {
                    Ok(out) => {
                        if out.commit.is_some() {
                            state.metrics.git_pushes.inc();
                        }
                        tracing::info!(transitions = r.transitions, attempts = out.attempts, commit = out.commit.as_deref().unwrap_or("none"), took = %crate::units::duration(r.took), "status commit written");
                    }
                    Err(e) => {
                        state.metrics.git_push_errors.inc();
                        tracing::error!(error = %e, transitions = r.transitions, "status commit failed; will retry");
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the git report reader");
    }
}
