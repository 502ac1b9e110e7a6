//! Load shedding: while the process is past saturation, new messages are refused with
//! `unavailable` instead of being stored and then skipped for most of their receivers.
//!
//! The signal is scheduling lag. A probe task asks to be woken every [`PROBE_INTERVAL`] and
//! notes how late it runs; that lateness grows only when the runtime has more runnable work
//! than CPU. A client that stops reading its socket costs no CPU, so unlike a signal built
//! on skipped deliveries it cannot make the server refuse anyone else's messages.
//!
//! One late probe is enough. Past saturation the lag is spiky, not steadily high: requiring
//! two late probes in a row refused about a tenth as many messages at 4x overload and gave
//! back the whole gain (bench/README.md, tuning table). A host that deschedules the process
//! for longer than the limit gets a few refusals; that host is saturated too.
//!
//! The probe runs with shedding off too, and every lateness it sees is recorded as
//! `switchyard_scheduling_lag_seconds`: the dashboard shows how near a pod is to shedding, or
//! how saturated it is when shedding is off. A hundred wake-ups a second cost nothing
//! measurable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::metrics::Metrics;

/// How often the probe asks to run. Short enough that a stall is seen within a few
/// milliseconds; long enough that the probe itself costs nothing measurable.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// What a refused client is told to wait before retrying.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The limit on scheduling lag past which sends are refused.
pub struct Overload {
    /// `None`: never refuse.
    max_lag: Option<Duration>,
    probe: Arc<Probe>,
}

/// Times in microseconds since `start`, so the probe task and callers share them lock-free.
struct Probe {
    start: Instant,
    /// When the probe's current sleep should end.
    due_us: AtomicU64,
    /// How late the last completed sleep ended.
    last_lag_us: AtomicU64,
    /// When a refusal was last logged (0: never): at most one line a second, however many
    /// are refused.
    warned_us: AtomicU64,
}

impl Probe {
    fn since_start(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.start).as_micros()).unwrap_or(u64::MAX)
    }

    /// The current lag: how late the last probe ran, or how overdue the pending one already
    /// is, whichever is larger. A stall therefore shows at once, not only after the probe
    /// finally gets to run.
    fn lag(&self) -> Duration {
        let overdue = self.since_start(Instant::now()).saturating_sub(self.due_us.load(Ordering::Relaxed));
        Duration::from_micros(overdue.max(self.last_lag_us.load(Ordering::Relaxed)))
    }

    /// Whether this refusal should be logged; true at most once a second.
    fn should_warn(&self) -> bool {
        let now = self.since_start(Instant::now()).max(1);
        let warned = self.warned_us.load(Ordering::Relaxed);
        (warned == 0 || now.saturating_sub(warned) >= 1_000_000)
            && self.warned_us.compare_exchange(warned, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

impl Overload {
    /// Starts the probe on the current runtime, recording its lag in `metrics`; refuses
    /// sends while the lag is over `max_lag`, and never when it is `None`.
    pub fn spawn(max_lag: Option<Duration>, metrics: Metrics) -> Self {
        let probe = Arc::new(Probe {
            start: Instant::now(),
            due_us: AtomicU64::new(0),
            last_lag_us: AtomicU64::new(0),
            warned_us: AtomicU64::new(0),
        });
        tokio::spawn(run_probe(Arc::downgrade(&probe), metrics));
        Self { max_lag, probe }
    }

    /// `Ok` unless the lag is past the limit; then `unavailable`, retryable after a second.
    pub fn admit(&self) -> ApiResult<()> {
        let Some(max_lag) = self.max_lag else { return Ok(()) };
        let lag = self.probe.lag();
        if lag <= max_lag {
            return Ok(());
        }
        if self.probe.should_warn() {
            tracing::warn!(
                lag_ms = lag.as_millis() as u64,
                max_lag_ms = max_lag.as_millis() as u64,
                "server overloaded: refusing new messages"
            );
        }
        let mut error = ApiError::new(ErrorCode::Unavailable, "server overloaded; retry later");
        error.retry_after = Some(RETRY_AFTER);
        Err(error)
    }
}

/// Sleeps [`PROBE_INTERVAL`] at a time and records how late each sleep ended, for `admit`
/// and in `metrics`. Ends with the last handle, so tests that build many servers leave no
/// tasks behind.
async fn run_probe(probe: Weak<Probe>, metrics: Metrics) {
    while let Some(p) = probe.upgrade() {
        let due = Instant::now() + PROBE_INTERVAL;
        p.due_us.store(p.since_start(due), Ordering::Relaxed);
        drop(p);
        tokio::time::sleep_until(due.into()).await;
        let late = Instant::now().saturating_duration_since(due);
        metrics.scheduling_lag(late);
        if let Some(p) = probe.upgrade() {
            p.last_lag_us.store(u64::try_from(late.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks the only worker thread of a current-thread runtime, the way a saturated
    /// runtime keeps the probe from running.
    fn stall() {
        std::thread::sleep(Duration::from_millis(400));
    }

    /// [`recorded_lag`] once it satisfies `done`, polled every probe interval for up to 10 s.
    async fn lag_once(metrics: &Metrics, done: impl Fn((u64, f64)) -> bool) -> (u64, f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let lag = recorded_lag(metrics);
            if done(lag) {
                return lag;
            }
            assert!(tokio::time::Instant::now() < deadline, "probes recorded by the deadline: {lag:?}");
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// The count and sum of `switchyard_scheduling_lag_seconds` in `metrics`' exposition.
    fn recorded_lag(metrics: &Metrics) -> (u64, f64) {
        let text = metrics.encode(true);
        let value = |name: &str| {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {text}"));
            line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
        };
        (value("switchyard_scheduling_lag_seconds_count") as u64, value("switchyard_scheduling_lag_seconds_sum"))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stalled_runtime_is_refused_and_recovers() {
        let overload = Overload::spawn(Some(Duration::from_millis(100)), Metrics::new("test"));
        let lag = || overload.probe.lag();
        tokio::time::sleep(PROBE_INTERVAL * 3).await;
        assert!(overload.admit().is_ok(), "idle runtime, lag {:?}", lag());

        // Refused while the stall lasts, and after the probe ran late.
        stall();
        assert!(lag() >= Duration::from_millis(300), "lag {:?}", lag());
        let error = overload.admit().unwrap_err();
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert_eq!(error.message, "server overloaded; retry later");
        assert_eq!(error.retry_after, Some(Duration::from_secs(1)));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(overload.admit().is_err(), "the late probe, lag {:?}", lag());

        // A probe on time again ends it.
        tokio::time::sleep(PROBE_INTERVAL * 3).await;
        assert!(overload.admit().is_ok(), "recovered runtime, lag {:?}", lag());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn without_a_limit_nothing_is_refused_and_the_lag_is_still_recorded() {
        let metrics = Metrics::new("test");
        let overload = Overload::spawn(None, metrics.clone());
        // Polled, not one sleep: on a busy machine the probe task may run only after this one.
        let (count, sum) = lag_once(&metrics, |(count, _)| count >= 2).await;
        // A runtime with nothing else to do wakes its timers within milliseconds.
        assert!(sum < 0.1 * count as f64, "idle lag sum {sum} s over {count} probes");

        stall();
        assert!(overload.admit().is_ok());
        let (_, sum_after) = lag_once(&metrics, |(after, _)| after > count).await;
        assert!(sum_after - sum >= 0.3, "the 400 ms stall shows in the lag: {} s", sum_after - sum);
    }
}
