//! Switchyard operator: reconciles `RealtimeCluster` resources into a running fleet of
//! Switchyard realtime servers (Redis, Deployment, Service, routing, autoscaling, dashboards).

/// The reconciler, its context and the controller loop.
pub mod controller;
/// The `RealtimeCluster` custom resource definition.
pub mod crd;
/// Leader election through a coordination.k8s.io Lease.
pub mod leader;
/// The operator's own Prometheus metrics.
pub mod metrics;
/// Pure builders of every child object.
pub mod resources;
/// Status and condition computation.
pub mod status;
/// Logging and OpenTelemetry tracing set-up.
pub mod telemetry;

#[cfg(test)]
pub mod fixtures;

/// Errors of the reconciler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// An object could not be serialized for server-side apply.
    #[error("serializing {0}: {1}")]
    Serialize(String, #[source] serde_json::Error),
    /// The RealtimeCluster has no namespace (it is namespaced, so this means a bad object).
    #[error("RealtimeCluster has no namespace")]
    MissingNamespace,
}

impl Error {
    /// Low-cardinality label for the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { source: kube::Error::Api(s), .. } if s.is_conflict() => "conflict",
            Error::Kube { source: kube::Error::Api(s), .. } if s.is_invalid() => "invalid",
            Error::Kube { source: kube::Error::Api(s), .. } if s.is_forbidden() => "forbidden",
            Error::Kube { .. } => "kube",
            Error::Serialize(..) => "serialize",
            Error::MissingNamespace => "missing_namespace",
        }
    }
}

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches what the operator was doing to a kube error.
pub(crate) trait KubeContext<T> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> KubeContext<T> for std::result::Result<T, kube::Error> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kube { action: action(), source })
    }
}
