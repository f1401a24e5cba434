//! Preflight's on-demand reads of the kinds the watched cache does not keep: the Services,
//! ServiceEntries and Istio Gateways of a rollout's namespace and of the namespaces its
//! VirtualService and DestinationRule refer to, listed when preflight runs and dropped after.
//! A kind the cluster does not serve (`404`) or tidegate may not list (`403`) comes back as
//! [`Unread`]; other errors are retried like every read and then fail the preflight read.

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;

use super::{IstioRouter, RouterError, status_code};
use crate::mesh::preflight::{self, ListedKind, Unread, UnreadWhy};
use crate::mesh::{MeshObjects, Target};

/// How many of these lists are in flight at once.
const CONCURRENT_LISTS: usize = 4;

/// What listing one kind in one namespace gave.
enum Listed {
    Items(Vec<serde_json::Value>),
    Unread(UnreadWhy),
}

/// The resource of `kind`: core `v1` Services, the Istio kinds at the VirtualService's version.
fn resource(vs: &ApiResource, kind: ListedKind) -> ApiResource {
    match kind {
        ListedKind::Service => ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Service".into(),
            plural: "services".into(),
        },
        ListedKind::ServiceEntry | ListedKind::Gateway => {
            IstioRouter::sibling(vs, kind.as_str(), kind.resource())
        }
    }
}

impl IstioRouter {
    /// Everything preflight reads for `targets` (the rollouts of one namespace): the watched
    /// objects of [`IstioRouter::preflight_objects`], plus the Services, ServiceEntries and
    /// Gateways of [`preflight::referenced_namespaces`] (three lists per namespace).
    pub async fn preflight_read(&self, targets: &[Target]) -> Result<MeshObjects, RouterError> {
        let Some(first) = targets.first() else {
            return Ok(MeshObjects::default());
        };
        let objects = self.preflight_objects(first).await?;
        let namespaces = preflight::referenced_namespaces(&objects, targets);
        let vs = self.virtual_service_resource().await?.clone();
        let wanted: Vec<(String, ListedKind)> = namespaces
            .into_iter()
            .flat_map(|ns| ListedKind::ALL.map(|k| (ns.clone(), k)))
            .collect();
        let mut listed: Vec<Listed> = Vec::with_capacity(wanted.len());
        for chunk in wanted.chunks(CONCURRENT_LISTS) {
            let calls = chunk
                .iter()
                .map(|(ns, kind)| self.list_unwatched(&vs, *kind, ns));
            listed.extend(futures::future::try_join_all(calls).await?);
        }
        let mut out = MeshObjects {
            objects,
            ..MeshObjects::default()
        };
        for ((ns, kind), result) in wanted.into_iter().zip(listed) {
            match result {
                Listed::Items(items) => {
                    out.seen.insert(kind, &ns);
                    out.objects.extend(items);
                }
                Listed::Unread(why) => out.unread.push(Unread {
                    kind,
                    namespace: ns,
                    why,
                }),
            }
        }
        Ok(out)
    }

    /// List `kind` in `ns` (retried like every read); `404` and `403` are [`Listed::Unread`].
    async fn list_unwatched(
        &self,
        vs: &ApiResource,
        kind: ListedKind,
        ns: &str,
    ) -> Result<Listed, RouterError> {
        let ar = resource(vs, kind);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let lp = ListParams::default();
        let action = format!("list {} in {ns}", ar.plural);
        let list = match self.with_retry(&action, || api.list(&lp)).await {
            Ok(list) => list,
            Err(RouterError::Api { source, .. }) if status_code(&source) == Some(404) => {
                return Ok(Listed::Unread(UnreadWhy::NotServed));
            }
            Err(RouterError::Api { source, .. }) if status_code(&source) == Some(403) => {
                return Ok(Listed::Unread(UnreadWhy::Forbidden));
            }
            Err(e) => return Err(e),
        };
        let items = list
            .items
            .into_iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Listed::Items(preflight::typed_items(
            items,
            &ar.api_version,
            &ar.kind,
        )))
    }
}
