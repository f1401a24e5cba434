//! Rollout transitions as Kubernetes Events (`events.k8s.io/v1`) on the VirtualService, so that
//! `kubectl describe virtualservice` and cluster event pipelines show them too. Best effort:
//! an Event that cannot be written is logged and never holds a rollout up.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::Semaphore;

use crate::plan::Plan;
use crate::rollout::{Phase, Transition};

/// The Event for one transition of `plan`'s rollout.
pub fn event_for(plan: &Plan, t: &Transition, instance: &str) -> Event {
    let warning = matches!(
        t.to,
        Phase::RollingBack | Phase::RolledBack | Phase::Aborted | Phase::Invalid
    );
    let mut note = format!(
        "{} step {} canary {}%: {}",
        plan.id, t.step, t.canary_weight, t.reason
    );
    if note.len() > 1000 {
        let mut cut = 1000;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
    }
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.tidegate.", plan.virtual_service)),
            namespace: Some(plan.id.namespace.clone()),
            ..ObjectMeta::default()
        },
        event_time: k8s_openapi::jiff::Timestamp::from_microsecond(t.at.timestamp_micros())
            .ok()
            .map(MicroTime),
        action: Some(if t.from == t.to {
            "Step".into()
        } else {
            t.to.as_str().into()
        }),
        reason: Some(t.to.as_str().into()),
        note: Some(note),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        reporting_controller: Some("tidegate.dev/tidegate".into()),
        reporting_instance: Some(instance.into()),
        regarding: Some(ObjectReference {
            api_version: Some("networking.istio.io/v1".into()),
            kind: Some("VirtualService".into()),
            name: Some(plan.virtual_service.clone()),
            namespace: Some(plan.id.namespace.clone()),
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}

/// Write the Events of `transitions` in the background, each once it gets a permit of
/// `in_flight` (which bounds the concurrent writes, and so the connections they open).
pub fn record(
    client: &kube::Client,
    in_flight: &Arc<Semaphore>,
    plan: &Plan,
    transitions: &[Transition],
    instance: &str,
) {
    for t in transitions {
        let event = event_for(plan, t, instance);
        let api: Api<Event> = Api::namespaced(client.clone(), &plan.id.namespace);
        let rollout = plan.id.to_string();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            // Never closed: the semaphore lives as long as any task holding it.
            let Ok(_permit) = in_flight.acquire_owned().await else {
                return;
            };
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(rollout = %rollout, error = %e, "cannot record a Kubernetes Event");
            }
        });
    }
}
