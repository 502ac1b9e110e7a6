//! The reconciler: apply the desired children with server-side apply, delete the ones the spec
//! no longer asks for, read back what they report and write the status.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, info, instrument, warn};

use crate::crd::RealtimeCluster;
use crate::metrics::Metrics;
use crate::resources::{self, Capabilities, ChildKind, Desired, MANAGER};
use crate::status::{self, Observed};
use crate::watches::{self, WatchHealth};
use crate::{Error, KubeContext, Result};

/// Requeue interval once everything is ready (drift on unwatched kinds is repaired this often).
const READY_REQUEUE: Duration = Duration::from_secs(300);
/// Requeue interval while something is not ready yet.
const PENDING_REQUEUE: Duration = Duration::from_secs(30);
/// Requeue after a status write lost to a newer version (whose watch event usually comes first).
const CONFLICT_REQUEUE: Duration = Duration::from_secs(1);
/// First retry delay after a failed reconciliation; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Field manager that only bridges `spec.replicas` from the operator to an autoscaler.
const HANDOFF_MANAGER: &str = "switchyard-operator-replicas-handoff";
/// Label selector for the owned-kind watches: only objects this operator labelled.
const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=switchyard-operator";

/// Shared state of the reconciler.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Event recorder.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Which watches are failing.
    pub watches: Arc<WatchHealth>,
    /// Consecutive failures per RealtimeCluster, for the retry back-off.
    failures: Mutex<HashMap<ObjectRef<RealtimeCluster>, u32>>,
}

impl Context {
    /// A context whose events are reported as `switchyard-operator` from `instance`.
    pub fn new(client: Client, metrics: Arc<Metrics>, watches: Arc<WatchHealth>, instance: String) -> Self {
        let reporter = Reporter { controller: MANAGER.into(), instance: Some(instance) };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            watches,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<RealtimeCluster>, u32>> {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Retry delay after `failures` consecutive failures: 2 s, 4 s, 8 s ... capped at 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE.saturating_mul(2u32.saturating_pow(failures.saturating_sub(1))).min(BACKOFF_MAX)
}

/// Reconciles one RealtimeCluster.
#[instrument(skip(rtc, ctx), fields(namespace = rtc.namespace().unwrap_or_default(), name = rtc.name_any()))]
pub async fn reconcile(rtc: Arc<RealtimeCluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    match reconcile_inner(&rtc, &ctx).await {
        Ok(action) => {
            ctx.failures().remove(&ObjectRef::from_obj(rtc.as_ref()));
            Ok(action)
        }
        Err(e) => {
            report_failure(&ctx, &rtc, &e).await;
            Err(e)
        }
    }
}

/// Says in the status and in a warning event why the spec could not be applied. Best effort:
/// when the API server is unreachable these fail too, and the retry reports again.
async fn report_failure(ctx: &Context, rtc: &RealtimeCluster, error: &Error) {
    let (reason, message) = (error.reason(), error.summary());
    publish(ctx, rtc, EventType::Warning, reason, "Reconcile", message.clone()).await;
    let Some(ns) = rtc.namespace() else { return };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new_status = status::failed(rtc, reason, &message, &now);
    if rtc.status.as_ref() == Some(&new_status) {
        return;
    }
    if let Err(e) = write_status(ctx, rtc, &ns, &new_status).await {
        warn!(error = %e, "writing the failure status failed");
    }
}

/// Writes `status` as computed from `rtc`, but only over the version it was computed from:
/// the patch carries `rtc`'s resourceVersion, so a reconcile that read the object before
/// someone else changed it (a status pinned by an older operator, a spec edit) cannot
/// overwrite the newer state with its stale view. False on such a conflict; the newer
/// version's own watch event brings the next reconcile.
async fn write_status(
    ctx: &Context,
    rtc: &RealtimeCluster,
    ns: &str,
    status: &crate::crd::RealtimeClusterStatus,
) -> Result<bool> {
    let patch = Patch::Apply(json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "RealtimeCluster",
        "metadata": { "resourceVersion": rtc.resource_version() },
        "status": status,
    }));
    let api: Api<RealtimeCluster> = Api::namespaced(ctx.client.clone(), ns);
    match api.patch_status(&rtc.name_any(), &PatchParams::apply(MANAGER).force(), &patch).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            info!(name = %rtc.name_any(), "status not written: the object changed since it was read");
            Ok(false)
        }
        Err(e) => Err(e).context(|| "writing status".into()),
    }
}

/// Logs the failure, counts it and retries with exponential back-off.
pub fn error_policy(rtc: Arc<RealtimeCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error);
    let failures = {
        let mut map = ctx.failures();
        let n = map.entry(ObjectRef::from_obj(rtc.as_ref())).or_insert(0);
        *n += 1;
        *n
    };
    let delay = backoff(failures);
    warn!(name = %rtc.name_any(), %error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_inner(rtc: &RealtimeCluster, ctx: &Context) -> Result<Action> {
    if rtc.meta().deletion_timestamp.is_some() {
        // Children carry owner references; the garbage collector removes them.
        return Ok(Action::await_change());
    }
    let ns = rtc.namespace().ok_or(Error::MissingNamespace)?;
    if rtc.spec.paused {
        return pause(rtc, ctx, &ns).await;
    }
    let caps = discover(&ctx.client).await?;
    // Operator upgrades do not change the image of clusters created before them.
    let desired = resources::desired(&rtc.with_pinned_image(), caps);
    let children = Children { ctx, rtc, ns: &ns };

    let mut observed = children.apply_all(&desired, caps).await?;
    children.prune(&desired).await?;
    if let Some(a) = &rtc.spec.autoscaling
        && a.mode == crate::crd::AutoscalingMode::Keda
    {
        // KEDA owns the HPA it creates for the ScaledObject; read its status for the count.
        let name = format!("keda-hpa-{}", resources::server_name(rtc));
        observed.hpa = children
            .api::<HorizontalPodAutoscaler>()
            .get_opt(&name)
            .await
            .context(|| format!("reading HorizontalPodAutoscaler {name}"))?;
    }
    warn_missing_apis(rtc, ctx, caps).await;

    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut new_status = status::compute(rtc, &observed, &now);
    new_status.default_image = Some(rtc.pinned_default_image());
    let ready = new_status.conditions.first().is_some_and(|c| c.status == "True");
    if rtc.status.as_ref() != Some(&new_status) {
        let was_ready = rtc
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status == "True");
        if !write_status(ctx, rtc, &ns, &new_status).await? {
            return Ok(Action::requeue(CONFLICT_REQUEUE));
        }
        if was_ready != Some(ready) {
            let ready_cond = &new_status.conditions[0];
            let (ty, reason) = if ready { (EventType::Normal, "Ready") } else { (EventType::Warning, "NotReady") };
            publish(ctx, rtc, ty, reason, "UpdateStatus", ready_cond.message.clone()).await;
        }
    }
    Ok(Action::requeue(if ready { READY_REQUEUE } else { PENDING_REQUEUE }))
}

/// Writes the paused status (once) and waits for the next change of the RealtimeCluster.
async fn pause(rtc: &RealtimeCluster, ctx: &Context, ns: &str) -> Result<Action> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let new_status = status::paused(rtc, &now);
    if rtc.status.as_ref() != Some(&new_status) {
        let was_paused = rtc
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Reconciled"))
            .is_some_and(|c| c.reason == "Paused");
        if !write_status(ctx, rtc, ns, &new_status).await? {
            return Ok(Action::requeue(CONFLICT_REQUEUE));
        }
        if !was_paused {
            let note = "Paused: spec.paused is true, so no child is created, changed or deleted".to_string();
            publish(ctx, rtc, EventType::Normal, "Paused", "Reconcile", note).await;
        }
    }
    info!("paused");
    Ok(Action::await_change())
}

/// Which optional APIs the cluster serves right now.
pub async fn discover(client: &Client) -> Result<Capabilities> {
    Ok(Capabilities {
        service_monitor: serves(client, "monitoring.coreos.com/v1", "servicemonitors").await?,
        http_route: serves(client, "gateway.networking.k8s.io/v1", "httproutes").await?,
        scaled_object: serves(client, "keda.sh/v1alpha1", "scaledobjects").await?,
    })
}

async fn serves(client: &Client, group_version: &str, plural: &str) -> Result<bool> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == plural)),
        // An unknown group answers a plain-text 404, not a Status object.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(source) => Err(Error::Kube { action: format!("discovering {group_version}"), source }),
    }
}

async fn warn_missing_apis(rtc: &RealtimeCluster, ctx: &Context, caps: Capabilities) {
    if crate::resources::routing::wants_gateway(rtc) && !caps.http_route {
        let note = "spec.routing.gateway is set but the Gateway API HTTPRoute CRD is not installed".to_string();
        publish(ctx, rtc, EventType::Warning, "GatewayAPINotInstalled", "Reconcile", note).await;
    }
    if crate::resources::autoscaling::wants_keda(rtc) && !caps.scaled_object {
        let note = "spec.autoscaling.mode is keda but the KEDA ScaledObject CRD is not installed".to_string();
        publish(ctx, rtc, EventType::Warning, "KEDANotInstalled", "Reconcile", note).await;
    }
    if rtc.spec.monitoring_settings().service_monitor.enabled && !caps.service_monitor {
        let note = "monitoring.serviceMonitor.enabled is set but the monitoring.coreos.com ServiceMonitor CRD is not installed: no ServiceMonitor; Prometheus can still find the pods by their prometheus.io/scrape annotations".to_string();
        publish(ctx, rtc, EventType::Normal, "ServiceMonitorNotInstalled", "Reconcile", note).await;
    }
}

async fn publish(ctx: &Context, rtc: &RealtimeCluster, type_: EventType, reason: &str, action: &str, note: String) {
    publish_about(ctx, rtc, type_, reason, action, note, None).await;
}

/// Publishes an event on `rtc`, about the child `related` if given. The recorder counts
/// repeats of one (reason, related object) as a series, so each child gets its own event
/// rather than a count on the first one's.
async fn publish_about(
    ctx: &Context,
    rtc: &RealtimeCluster,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
    related: Option<ObjectReference>,
) {
    let note = crate::truncate(&note, crate::MAX_MESSAGE);
    let event = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: related };
    if let Err(e) = ctx.recorder.publish(&event, &rtc.object_ref(&())).await {
        // Events are best effort: never fail a reconciliation over one.
        warn!(error = %e, reason, "publishing event failed");
    }
}

/// A reference to the child `kind`/`name` in `ns`, for an event's related object.
fn child_ref(api_version: Option<String>, kind: &str, name: &str, ns: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version,
        kind: Some(kind.into()),
        name: Some(name.into()),
        namespace: Some(ns.into()),
        uid,
        ..ObjectReference::default()
    }
}

/// Applies and prunes the children of one RealtimeCluster.
struct Children<'a> {
    ctx: &'a Context,
    rtc: &'a RealtimeCluster,
    ns: &'a str,
}

impl Children<'_> {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    fn dynamic_api(&self, ar: &ApiResource) -> Api<DynamicObject> {
        Api::namespaced_with(self.ctx.client.clone(), self.ns, ar)
    }

    async fn apply_all(&self, d: &Desired, caps: Capabilities) -> Result<Observed> {
        let mut observed = Observed { caps, ..Default::default() };
        // First: the pods below read them.
        for (secret, why) in &d.generated_secrets {
            self.create_generated_secret(secret, why).await?;
        }
        self.apply(self.api(), resources::CONFIG_MAP.kind, &d.config).await?;
        if let Some(svc) = &d.redis_service {
            self.apply(self.api::<Service>(), resources::SERVICE.kind, svc).await?;
        }
        if let Some(np) = &d.redis_network_policy {
            self.apply(self.api::<NetworkPolicy>(), resources::NETWORK_POLICY.kind, np).await?;
        }
        if let Some(sts) = &d.redis_statefulset {
            observed.redis = self.apply_statefulset(sts).await?;
        }
        self.apply(self.api::<Service>(), resources::SERVICE.kind, &d.service).await?;
        if d.deployment.spec.as_ref().is_some_and(|s| s.replicas.is_none()) {
            self.hand_replicas_to_autoscaler(&d.deployment).await?;
        }
        observed.deployment = Some(self.apply(self.api(), resources::DEPLOYMENT.kind, &d.deployment).await?);
        if let Some(pdb) = &d.pdb {
            self.apply(self.api::<PodDisruptionBudget>(), resources::PDB.kind, pdb).await?;
        }
        if let Some(ing) = &d.ingress {
            observed.ingress = Some(self.apply(self.api(), resources::INGRESS.kind, ing).await?);
        }
        if let Some(route) = &d.http_route {
            let api = self.dynamic_api(&resources::http_route_resource());
            observed.http_route = Some(self.apply(api, resources::HTTP_ROUTE.kind, route).await?);
        }
        if let Some(hpa) = &d.hpa {
            observed.hpa = Some(self.apply(self.api(), resources::HPA.kind, hpa).await?);
        }
        if let Some(so) = &d.scaled_object {
            let api = self.dynamic_api(&resources::scaled_object_resource());
            observed.scaled_object = Some(self.apply(api, resources::SCALED_OBJECT.kind, so).await?);
        }
        if let Some(cm) = &d.dashboard {
            self.apply(self.api::<ConfigMap>(), resources::CONFIG_MAP.kind, cm).await?;
        }
        if let Some(sm) = &d.service_monitor {
            self.apply(self.dynamic_api(&resources::service_monitor_resource()), resources::SERVICE_MONITOR.kind, sm)
                .await?;
        }
        Ok(observed)
    }

    /// Server-side applies `obj` (forcing ownership of our fields back from anyone who edited
    /// them) and records whether it was created or changed. An existing object this
    /// RealtimeCluster does not control is left untouched: [`Error::NotOwned`].
    async fn apply<K>(&self, api: Api<K>, kind: &str, obj: &K) -> Result<K>
    where
        K: Resource + Clone + Serialize + DeserializeOwned + Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        let existing = api.get_metadata_opt(&name).await.context(|| format!("reading {kind} {name}"))?;
        if let Some(existing) = &existing
            && !self.controls(existing.owner_references())
        {
            return Err(Error::NotOwned { kind: kind.into(), name });
        }
        let before = existing.and_then(|m| m.metadata.resource_version);
        let params = PatchParams::apply(MANAGER).force();
        let after =
            api.patch(&name, &params, &Patch::Apply(obj)).await.context(|| format!("applying {kind} {name}"))?;
        let change = match (&before, after.meta().resource_version.as_ref()) {
            (None, _) => Some(("created", "Created", "")),
            (Some(b), Some(a)) if b != a => Some(("updated", "Updated", " to match the spec")),
            _ => None,
        };
        if let Some((metric, verb, why)) = change {
            info!(kind, name, "{metric}");
            self.ctx.metrics.child_changed(kind, metric);
            let api_version = serde_json::to_value(obj).ok().and_then(|v| v["apiVersion"].as_str().map(String::from));
            let related = child_ref(api_version, kind, &name, self.ns, after.meta().uid.clone());
            let note = format!("{verb} {kind} {name}{why}");
            let reason = format!("{verb}{kind}");
            publish_about(self.ctx, self.rtc, EventType::Normal, &reason, "Apply", note, Some(related)).await;
        } else {
            debug!(kind, name, "unchanged");
        }
        Ok(after)
    }

    /// Whether `owners` holds this RealtimeCluster as the controller.
    fn controls(&self, owners: &[OwnerReference]) -> bool {
        let uid = self.rtc.uid();
        owners.iter().any(|o| Some(&o.uid) == uid.as_ref() && o.controller == Some(true))
    }

    /// Applies the Redis StatefulSet. Its volume claim template is immutable, so a new storage
    /// size or class, or persistence turned on or off, is refused, and every later change of
    /// the cluster would be stuck behind it. The StatefulSet is then deleted with its pod and
    /// claim orphaned; the next reconcile creates it anew and it adopts the pod, which the
    /// rolling update then replaces with the new template. An existing claim keeps its size:
    /// expand it directly where its StorageClass allows. `None` while the old one goes.
    async fn apply_statefulset(&self, sts: &StatefulSet) -> Result<Option<StatefulSet>> {
        let err = match self.apply(self.api(), resources::STATEFUL_SET.kind, sts).await {
            Ok(applied) => return Ok(Some(applied)),
            Err(err) => err,
        };
        let immutable = matches!(&err, Error::Kube { source: kube::Error::Api(s), .. }
            if s.is_invalid() && s.message.contains("updates to statefulset spec for fields other than"));
        if !immutable {
            return Err(err);
        }
        let name = sts.metadata.name.clone().unwrap_or_default();
        let api: Api<StatefulSet> = self.api();
        match api.delete(&name, &DeleteParams::orphan()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(source) => return Err(Error::Kube { action: format!("deleting StatefulSet {name}"), source }),
        }
        info!(name, "volume claim template changed; recreating the StatefulSet, its pod and claim kept");
        self.ctx.metrics.child_changed("StatefulSet", "deleted");
        let note = format!(
            "Deleted StatefulSet {name} (pod and claim kept) to recreate it: its volume claim template cannot change in place"
        );
        let related = child_ref(Some("apps/v1".into()), "StatefulSet", &name, self.ns, None);
        publish_about(self.ctx, self.rtc, EventType::Normal, "RecreatingStatefulSet", "Apply", note, Some(related))
            .await;
        Ok(None)
    }

    /// Creates a generated Secret unless it exists. Never applied or updated: each build draws
    /// a new key, and a new JWT key would invalidate every token in use, a new Redis password
    /// cut every server off. Existence is told by the create's conflict, not by a read: the
    /// operator may create Secrets but never reads one, so it holds no key of anyone's.
    async fn create_generated_secret(&self, secret: &Secret, why: &str) -> Result<()> {
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Secret> = self.api();
        let params = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
        match api.create(&params, secret).await {
            Ok(_) => {
                info!(name, "created a generated secret");
                self.ctx.metrics.child_changed("Secret", "created");
                let note = format!("Created Secret {name} ({why})");
                let related = child_ref(Some("v1".into()), "Secret", name, self.ns, None);
                publish_about(self.ctx, self.rtc, EventType::Normal, "CreatedSecret", "Apply", note, Some(related))
                    .await;
                Ok(())
            }
            // It exists: created by an earlier reconcile, or by the user with a key of their own.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(source) => Err(Error::Kube { action: format!("creating Secret {name}"), source }),
        }
    }

    /// When autoscaling is turned on, the operator stops applying `spec.replicas`. Server-side
    /// apply would then delete a field the operator owned alone, and the Deployment would fall
    /// back to 1 replica until the HPA reacts. So first a second, short-lived manager
    /// co-owns the current value; the autoscaler takes it over on its first scale.
    async fn hand_replicas_to_autoscaler(&self, desired: &Deployment) -> Result<()> {
        let name = desired.metadata.name.clone().unwrap_or_default();
        let api: Api<Deployment> = self.api();
        let Some(current) = api.get_opt(&name).await.context(|| format!("reading Deployment {name}"))? else {
            return Ok(());
        };
        let we_own_replicas = current.managed_fields().iter().any(|m| {
            m.manager.as_deref() == Some(MANAGER)
                && m.operation.as_deref() == Some("Apply")
                && m.fields_v1.as_ref().is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
        });
        let Some(replicas) = current.spec.as_ref().and_then(|s| s.replicas) else { return Ok(()) };
        if !we_own_replicas {
            return Ok(());
        }
        let patch = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": name },
            "spec": { "replicas": replicas },
        });
        // Not forced: if someone else already owns a different value, there is nothing to keep.
        match api.patch(&name, &PatchParams::apply(HANDOFF_MANAGER), &Patch::Apply(&patch)).await {
            Ok(_) => {
                info!(name, replicas, "handed spec.replicas over to the autoscaler");
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(()),
            Err(source) => Err(Error::Kube { action: format!("handing over replicas of Deployment {name}"), source }),
        }
    }

    /// Deletes the optional children the spec no longer asks for.
    async fn prune(&self, d: &Desired) -> Result<()> {
        for (kind, name, wanted) in d.optional(self.rtc) {
            if !wanted {
                self.delete_if_owned(&(kind.resource)(), kind.kind, &name).await?;
            }
        }
        Ok(())
    }

    async fn delete_if_owned(&self, ar: &ApiResource, kind: &str, name: &str) -> Result<()> {
        let api = self.dynamic_api(ar);
        let existing = match api.get_metadata_opt(name).await {
            Ok(Some(existing)) => existing,
            Ok(None) => return Ok(()),
            // The kind's CRD is not installed (a plain-text 404): nothing to prune.
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(source) => return Err(Error::Kube { action: format!("reading {kind} {name}"), source }),
        };
        if !self.controls(existing.owner_references()) {
            // Same name, someone else's object: leave it alone.
            return Ok(());
        }
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(()),
            Err(source) => return Err(Error::Kube { action: format!("deleting {kind} {name}"), source }),
        }
        info!(kind, name, "deleted");
        self.ctx.metrics.child_changed(kind, "deleted");
        let note = format!("Deleted {kind} {name}: no longer in the spec");
        let related = child_ref(Some(ar.api_version.clone()), kind, name, self.ns, existing.uid().clone());
        let reason = format!("Deleted{kind}");
        publish_about(self.ctx, self.rtc, EventType::Normal, &reason, "Prune", note, Some(related)).await;
        Ok(())
    }
}

/// Runs the controller until `shutdown` resolves, over every namespace or only `namespace`.
/// Fails fast when the CRD is not installed.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: u16,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let client = ctx.client.clone();
    let namespace = namespace.as_deref();
    let rtcs: Api<RealtimeCluster> = scoped(&client, namespace);
    rtcs.list(&ListParams::default().limit(1))
        .await
        .context(|| "listing RealtimeClusters (is the CRD installed? kubectl apply --server-side -f crds/)".into())?;

    // One stream per kind, each with its own backoff (see `watches`).
    let health = &ctx.watches;
    let (reader, writer) = reflector::store();
    let clusters = watches::guard(
        watcher(rtcs, watcher::Config::default().any_semantic()).reflect(writer),
        "RealtimeCluster",
        health.clone(),
    )
    .applied_objects();
    let controller =
        Controller::for_stream(clusters, reader).with_config(controller::Config::default().concurrency(concurrency));
    let controller = resources::CHILD_KINDS
        .iter()
        .filter(|k| k.watched)
        .fold(controller, |controller, kind| owns(controller, &client, namespace, health, kind));
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => debug!(name = %obj.name, namespace = ?obj.namespace, "reconciled"),
                Err(e) => debug!(error = %e, "reconcile error"),
            }
        })
        .await;
    info!("controller stopped");
    Ok(())
}

/// The API of `K` in `namespace`, or in every namespace.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Adds a watch of the children of `kind` (only objects this operator labelled), on its own
/// backoff. Each event reconciles the RealtimeCluster it belongs to ([`owning_cluster`]).
fn owns(
    controller: Controller<RealtimeCluster>,
    client: &Client,
    namespace: Option<&str>,
    health: &Arc<WatchHealth>,
    kind: &ChildKind,
) -> Controller<RealtimeCluster> {
    let config = watcher::Config::default().labels(MANAGED_SELECTOR).any_semantic();
    let ar = (kind.resource)();
    // Metadata only: the owner reference is all a trigger needs.
    let api: Api<PartialObjectMeta<DynamicObject>> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    let stream = watches::guard(watcher(api, config), kind.kind, health.clone()).touched_objects();
    controller.watches_stream_with(stream, |child| owning_cluster(&child.metadata), ar)
}

/// The RealtimeCluster a labelled object belongs to: its owner, or, for an object another
/// controller made from one of ours, the instance label it copied. KEDA's HPA is one: owned
/// by our ScaledObject, it carries its labels, and without it a cluster in `keda` mode would
/// show stale connection counts until the next periodic reconcile.
fn owning_cluster(meta: &ObjectMeta) -> Option<ObjectRef<RealtimeCluster>> {
    let namespace = meta.namespace.as_deref()?;
    let owner = meta.owner_references.iter().flatten().find_map(|o| ObjectRef::from_owner_ref(Some(namespace), o, ()));
    owner.or_else(|| Some(ObjectRef::new(meta.labels.as_ref()?.get(resources::INSTANCE_LABEL)?).within(namespace)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }

    fn owned_by(api_version: &str, kind: &str, name: &str) -> OwnerReference {
        OwnerReference { api_version: api_version.into(), kind: kind.into(), name: name.into(), ..Default::default() }
    }

    #[test]
    fn a_child_reconciles_its_owner_and_kedas_hpa_the_cluster_it_was_made_for() {
        let ours = ObjectMeta {
            namespace: Some("apps".into()),
            owner_references: Some(vec![owned_by("switchyard.dev/v1alpha1", "RealtimeCluster", "chat")]),
            ..Default::default()
        };
        assert_eq!(owning_cluster(&ours), Some(ObjectRef::new("chat").within("apps")));

        // keda-hpa-chat: owned by the ScaledObject, with the labels KEDA copied from it.
        let keda_hpa = ObjectMeta {
            namespace: Some("apps".into()),
            owner_references: Some(vec![owned_by("keda.sh/v1alpha1", "ScaledObject", "chat")]),
            labels: Some([(resources::INSTANCE_LABEL.to_string(), "chat".to_string())].into()),
            ..Default::default()
        };
        assert_eq!(owning_cluster(&keda_hpa), Some(ObjectRef::new("chat").within("apps")));

        let stray = ObjectMeta {
            namespace: Some("apps".into()),
            owner_references: Some(vec![owned_by("keda.sh/v1alpha1", "ScaledObject", "chat")]),
            ..Default::default()
        };
        assert_eq!(owning_cluster(&stray), None);
    }
}
