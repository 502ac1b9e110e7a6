//! Leader election: only the holder of a coordination.k8s.io Lease runs the controller, so two
//! operator replicas never reconcile at once.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Lease name.
    pub name: String,
    /// Lease namespace (the operator's own).
    pub namespace: String,
    /// This process's identity in the Lease's holderIdentity.
    pub identity: String,
    /// Seconds a lease stays valid after its last renewal.
    pub duration_seconds: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace_seconds: u64,
}

impl LeaseSettings {
    /// Refuses timings the lease manager cannot run with: it renews `grace_seconds` before
    /// expiry, so a grace of zero or of the whole duration (or more) would renew too late or in
    /// a tight loop of PATCHes against the API server.
    pub fn validate(&self) -> anyhow::Result<()> {
        let (duration, grace) = (self.duration_seconds, self.grace_seconds);
        if grace == 0 || grace >= duration {
            anyhow::bail!(
                "lease timings: LEASE_GRACE_SECONDS ({grace}) must be at least 1 and less than LEASE_DURATION_SECONDS ({duration})"
            );
        }
        Ok(())
    }
}

/// A running lease manager and its "am I the leader" channel.
pub struct Leadership {
    rx: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Leadership {
    /// Starts competing for the Lease in the background; first refuses bad timings, before
    /// anything reaches the API server.
    pub async fn start(client: Client, settings: &LeaseSettings) -> anyhow::Result<Self> {
        settings.validate()?;
        let manager = LeaseManagerBuilder::new(client, &settings.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(settings.duration_seconds)
            .with_grace(settings.grace_seconds)
            .with_field_manager(format!("switchyard-operator-lease-{}", settings.identity))
            .build()
            .await?;
        let (rx, task) = manager.watch().await;
        Ok(Self { rx, task })
    }

    /// Resolves once this process holds the Lease.
    pub async fn acquired(&mut self) -> anyhow::Result<()> {
        self.rx.wait_for(|leader| *leader).await?;
        info!("acquired the leader lease");
        Ok(())
    }

    /// A future that resolves when leadership is lost (or the lease task died).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|leader| !*leader).await;
        }
    }

    /// Whether this process holds the Lease now.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Stops competing and releases the Lease if held, so a standby takes over at once.
    pub async fn release(self) {
        let Self { rx, task } = self;
        drop(rx);
        match task.await {
            Ok(Ok(manager)) => {
                if let Err(e) = manager.release().await {
                    warn!(error = %e, "releasing the lease failed");
                }
            }
            Ok(Err(e)) => warn!(error = %e, "lease manager failed"),
            Err(e) => warn!(error = %e, "lease task panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(duration_seconds: u64, grace_seconds: u64) -> LeaseSettings {
        LeaseSettings { name: "l".into(), namespace: "n".into(), identity: "i".into(), duration_seconds, grace_seconds }
    }

    #[test]
    fn grace_must_fit_inside_the_duration() {
        assert!(settings(15, 5).validate().is_ok());
        assert!(settings(2, 1).validate().is_ok());
        for (duration, grace) in [(2, 5), (5, 5), (15, 0)] {
            let err = settings(duration, grace).validate().unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "lease timings: LEASE_GRACE_SECONDS ({grace}) must be at least 1 and less than LEASE_DURATION_SECONDS ({duration})"
                )
            );
        }
    }
}
