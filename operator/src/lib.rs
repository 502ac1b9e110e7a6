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
/// Per-kind watch streams with their own backoff, and their health.
pub mod watches;

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
    /// A child's name is taken by an object this RealtimeCluster does not control; the operator
    /// leaves it alone.
    #[error(
        "{kind} {name} already exists and is not controlled by this RealtimeCluster; it is left untouched: delete or rename it, or rename the RealtimeCluster"
    )]
    NotOwned {
        /// Kind of the conflicting object.
        kind: String,
        /// Its name.
        name: String,
    },
}

/// Longest message the operator puts in a condition or event note. The API server refuses
/// event notes over 1 KiB, and a condition is read in `kubectl describe`.
pub const MAX_MESSAGE: usize = 512;

/// `text` cut to at most `max` bytes on a character boundary, with an ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
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
            Error::NotOwned { .. } => "not_owned",
        }
    }

    /// CamelCase reason for the `Reconciled` condition and the warning event.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NotOwned { .. } => "ChildConflict",
            Error::Kube { source: kube::Error::Api(s), .. } if s.is_invalid() => "ChildInvalid",
            Error::Kube { source: kube::Error::Api(s), .. } if s.is_forbidden() => "ApplyForbidden",
            Error::Kube { source: kube::Error::Api(s), .. } if s.is_conflict() => "ApplyConflict",
            _ => "ApplyFailed",
        }
    }

    /// One human sentence, at most [`MAX_MESSAGE`] bytes: the API server's own message for an
    /// API error, never the debug form of its Status object.
    pub fn summary(&self) -> String {
        let text = match self {
            Error::Kube { action, source: kube::Error::Api(s) } => format!("{action}: {}", s.message),
            Error::Kube { action, source } => format!("{action}: {source}"),
            other => other.to_string(),
        };
        truncate(&text, MAX_MESSAGE)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_as_the_api_server_message_not_a_debug_dump() {
        let status = kube::core::Status::failure("Deployment.apps \"chat\" is invalid: spec.template.spec.containers[0].resources.requests: Invalid value: \"fast\"", "Invalid").with_code(422);
        let err = Error::Kube { action: "applying Deployment chat".into(), source: kube::Error::Api(status.boxed()) };
        assert_eq!(err.reason(), "ChildInvalid");
        assert_eq!(
            err.summary(),
            "applying Deployment chat: Deployment.apps \"chat\" is invalid: spec.template.spec.containers[0].resources.requests: Invalid value: \"fast\""
        );
        assert!(!err.summary().contains("Status {"));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(600);
        let cut = truncate(&long, MAX_MESSAGE);
        assert!(cut.len() <= MAX_MESSAGE, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", MAX_MESSAGE), "short");
        let err = Error::Kube {
            action: "applying ConfigMap c".into(),
            source: kube::Error::Api(kube::core::Status::failure(&"x".repeat(5000), "Invalid").with_code(422).boxed()),
        };
        assert!(err.summary().len() <= MAX_MESSAGE);
    }

    #[test]
    fn a_foreign_object_is_named_in_the_conflict() {
        let err = Error::NotOwned { kind: "Service".into(), name: "clash".into() };
        assert_eq!(err.reason(), "ChildConflict");
        assert!(
            err.summary().starts_with("Service clash already exists and is not controlled by this RealtimeCluster")
        );
    }
}
