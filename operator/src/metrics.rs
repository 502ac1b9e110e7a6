//! The operator's own Prometheus metrics, served at `/metrics`.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Error;

/// Labels of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// [`Error::metric_label`] of the failure.
    pub error: String,
}

/// Labels of the child-change counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeLabels {
    /// Child kind, for example Deployment.
    pub kind: String,
    /// created, updated or deleted.
    pub action: String,
}

/// Labels of the watch metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Watched kind, for example Deployment.
    pub kind: String,
}

/// All metric families, registered under the `switchyard_operator` prefix.
#[derive(Clone)]
pub struct Metrics {
    /// Reconciliations started.
    pub reconciliations: Counter,
    /// Reconciliations that failed, by error kind.
    pub failures: Family<ErrorLabels, Counter>,
    /// Reconciliation duration in seconds.
    pub duration: Histogram,
    /// Child objects created, updated (drift repaired) or deleted (pruned).
    pub child_changes: Family<ChangeLabels, Counter>,
    /// 1 while this process holds the leader Lease (or runs without leader election).
    pub leader: Gauge,
    /// 1 while a kind's watch is failing (see `watches::WatchHealth`).
    pub watch_stalled: Family<KindLabels, Gauge>,
    /// Errors of each kind's watch.
    pub watch_errors: Family<KindLabels, Counter>,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchyard_operator");
        let reconciliations = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let child_changes = Family::<ChangeLabels, Counter>::default();
        let leader = Gauge::default();
        let watch_stalled = Family::<KindLabels, Gauge>::default();
        let watch_errors = Family::<KindLabels, Counter>::default();
        registry.register("reconciliations", "Reconciliations started", reconciliations.clone());
        registry.register("reconcile_failures", "Reconciliations that failed, by error kind", failures.clone());
        registry.register("reconcile_duration_seconds", "Time spent in one reconciliation", duration.clone());
        registry.register("child_changes", "Child objects created, updated or deleted", child_changes.clone());
        registry.register("leader", "1 while this process is the active (leader) operator", leader.clone());
        registry.register("watch_stalled", "1 while the watch of this kind is failing", watch_stalled.clone());
        registry.register("watch_errors", "Errors of the watch of this kind", watch_errors.clone());
        Self {
            reconciliations,
            failures,
            duration,
            child_changes,
            leader,
            watch_stalled,
            watch_errors,
            registry: Arc::new(registry),
        }
    }
}

impl Metrics {
    /// Counts a reconciliation and returns a guard that records its duration when dropped.
    pub fn reconcile_started(&self) -> ReconcileTimer {
        self.reconciliations.inc();
        ReconcileTimer { start: Instant::now(), histogram: self.duration.clone() }
    }

    /// Counts a failed reconciliation.
    pub fn reconcile_failed(&self, error: &Error) {
        self.failures.get_or_create(&ErrorLabels { error: error.metric_label().into() }).inc();
    }

    /// Counts a child change.
    pub fn child_changed(&self, kind: &str, action: &str) {
        self.child_changes.get_or_create(&ChangeLabels { kind: kind.into(), action: action.into() }).inc();
    }

    /// Sets whether `kind`'s watch is stalled.
    pub fn watch_stalled(&self, kind: &str, stalled: bool) {
        self.watch_stalled.get_or_create(&KindLabels { kind: kind.into() }).set(i64::from(stalled));
    }

    /// Counts an error of `kind`'s watch.
    pub fn watch_error(&self, kind: &str) {
        self.watch_errors.get_or_create(&KindLabels { kind: kind.into() }).inc();
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Records the elapsed time of a reconciliation on drop.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prefixed_and_counted() {
        let m = Metrics::default();
        drop(m.reconcile_started());
        m.reconcile_failed(&Error::MissingNamespace);
        m.child_changed("Deployment", "created");
        m.leader.set(1);
        let text = m.encode();
        assert!(text.contains("switchyard_operator_reconciliations_total 1"), "{text}");
        assert!(text.contains("switchyard_operator_reconcile_failures_total{error=\"missing_namespace\"} 1"), "{text}");
        assert!(
            text.contains("switchyard_operator_child_changes_total{kind=\"Deployment\",action=\"created\"} 1"),
            "{text}"
        );
        assert!(text.contains("switchyard_operator_leader 1"), "{text}");
        assert!(text.contains("switchyard_operator_reconcile_duration_seconds_count 1"), "{text}");
    }
}
