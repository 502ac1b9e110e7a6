//! The controller's watch streams and their health.
//!
//! kube-runtime's `Controller::new`/`owns` merge every watch into one stream behind one backoff
//! (client-go's: up to 30 s, plus up to 100 % jitter). One watch's error, such as the
//! `410 Gone` each watch sees after an API server restart, then paused every watch for up to a
//! minute, again for each error. Here each kind's watch gets its own short backoff, and its
//! errors stop at [`guard`]: they are logged and counted there, and never reach the shared
//! stream. [`WatchHealth`] remembers which watches are failing, for `/ready` and the
//! `switchyard_operator_watch_stalled` metric.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, ExponentialBackoff};
use tracing::{info, warn};

use crate::metrics::Metrics;

/// First pause after a watch error.
const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest pause between retries; jitter adds up to as much again, so a watch retries at least
/// every 4 s and picks up a restarted API server within that. Eight watches retrying this often
/// cost the API server a few requests per second while it is unreachable.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// A watch counts as stalled until this long after its last error, unless an event arrives
/// first. A re-established watch reports nothing while nothing changes, so silence this long
/// is the sign it is back: it exceeds the longest retry pause (4 s) plus the client's 30 s
/// connect timeout, the longest a failing retry takes to report.
pub const STALL_WINDOW: Duration = Duration::from_secs(40);

/// The retry pause policy of one watch: 250 ms doubling to 2 s, plus up to 100 % jitter;
/// reset by every event.
pub fn retry_backoff() -> ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

/// The last error of one watch that has not seen an event since.
#[derive(Clone, Debug)]
struct Failing {
    since: Instant,
    last: Instant,
    error: String,
}

/// Which watches are failing right now.
pub struct WatchHealth {
    failing: Mutex<BTreeMap<&'static str, Failing>>,
    metrics: Arc<Metrics>,
}

/// A watch that is stalled, for `/ready`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stalled {
    /// The watched kind.
    pub kind: &'static str,
    /// How long it has been failing.
    pub for_seconds: u64,
    /// Its last error.
    pub error: String,
}

impl WatchHealth {
    /// No watch failing yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { failing: Mutex::new(BTreeMap::new()), metrics }
    }

    fn failing(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Failing>> {
        self.failing.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records an event of `kind`'s watch: it works.
    pub fn event(&self, kind: &'static str) {
        if let Some(f) = self.failing().remove(kind) {
            info!(kind, failed_for = ?f.since.elapsed(), "watch recovered");
        }
        self.metrics.watch_stalled(kind, false);
    }

    /// Records an error of `kind`'s watch.
    pub fn error(&self, kind: &'static str, error: &watcher::Error) {
        let now = Instant::now();
        let error = error.to_string();
        warn!(kind, %error, "watch failed; retrying");
        self.metrics.watch_error(kind);
        self.metrics.watch_stalled(kind, true);
        self.failing()
            .entry(kind)
            .and_modify(|f| {
                f.last = now;
                f.error.clone_from(&error);
            })
            .or_insert(Failing { since: now, last: now, error });
    }

    /// The watches stalled at `now`, and the metric brought up to date (a watch whose last
    /// error is older than [`STALL_WINDOW`] has recovered without news).
    pub fn stalled_at(&self, now: Instant) -> Vec<Stalled> {
        let mut failing = self.failing();
        failing.retain(|kind, f| {
            let stalled = now.saturating_duration_since(f.last) < STALL_WINDOW;
            if !stalled {
                self.metrics.watch_stalled(kind, false);
            }
            stalled
        });
        failing
            .iter()
            .map(|(kind, f)| Stalled {
                kind,
                for_seconds: now.saturating_duration_since(f.since).as_secs(),
                error: f.error.clone(),
            })
            .collect()
    }

    /// The watches stalled now.
    pub fn stalled(&self) -> Vec<Stalled> {
        self.stalled_at(Instant::now())
    }
}

/// `stream` (one kind's watch) with its own retry backoff, its errors recorded in `health` and
/// taken out, so that nothing downstream pauses for them.
pub fn guard<S, T>(
    stream: S,
    kind: &'static str,
    health: Arc<WatchHealth>,
) -> impl Stream<Item = Result<T, watcher::Error>> + Send + 'static
where
    S: Stream<Item = Result<T, watcher::Error>> + Send + 'static,
    T: Send + 'static,
{
    stream.backoff(retry_backoff()).filter_map(move |item| {
        let health = health.clone();
        async move {
            match item {
                Ok(item) => {
                    health.event(kind);
                    Some(Ok(item))
                }
                Err(error) => {
                    health.error(kind, &error);
                    None
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn watch_error() -> watcher::Error {
        watcher::Error::NoResourceVersion
    }

    #[test]
    fn retry_pauses_stay_short() {
        let pauses: Vec<Duration> = retry_backoff().take(20).collect();
        assert!(pauses[0] >= RETRY_MIN && pauses[0] <= RETRY_MIN * 2, "{pauses:?}");
        assert!(pauses.iter().all(|p| *p <= RETRY_MAX * 2), "{pauses:?}");
    }

    #[tokio::test]
    async fn errors_are_recorded_and_taken_out() {
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(WatchHealth::new(metrics.clone()));
        let items = vec![Ok(1), Err(watch_error()), Ok(2)];
        let out: Vec<i32> =
            guard(stream::iter(items), "Deployment", health.clone()).map(|r| r.unwrap()).collect().await;
        assert_eq!(out, [1, 2]);
        assert!(health.stalled().is_empty(), "an event after the error ends the stall");
        let text = metrics.encode();
        assert!(text.contains("switchyard_operator_watch_errors_total{kind=\"Deployment\"} 1"), "{text}");
        assert!(text.contains("switchyard_operator_watch_stalled{kind=\"Deployment\"} 0"), "{text}");
    }

    #[test]
    fn a_failing_watch_is_stalled_until_an_event_or_the_window_passes() {
        let metrics = Arc::new(Metrics::default());
        let health = WatchHealth::new(metrics.clone());
        let start = Instant::now();
        health.error("RealtimeCluster", &watch_error());
        let stalled = health.stalled_at(start + Duration::from_secs(5));
        assert_eq!(stalled.len(), 1);
        assert_eq!(stalled[0].kind, "RealtimeCluster");
        assert_eq!(stalled[0].error, watch_error().to_string());
        assert!(metrics.encode().contains("switchyard_operator_watch_stalled{kind=\"RealtimeCluster\"} 1"));
        assert!(health.stalled_at(start + STALL_WINDOW + Duration::from_secs(1)).is_empty());
        assert!(metrics.encode().contains("switchyard_operator_watch_stalled{kind=\"RealtimeCluster\"} 0"));
        health.error("Service", &watch_error());
        health.event("Service");
        assert!(health.stalled().is_empty());
    }
}
