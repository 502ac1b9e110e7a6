//! The in-process rate limiter: `governor` GCRA limiters, one per class, keyed by user.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::{EventClass, RateLimiter, Verdict, budget};
use crate::config::{Budget, RateLimitConfig};
use crate::error::StoreError;
use crate::protocol::epoch_ms;

/// In-process limiter: one `governor` GCRA limiter per class, keyed by user.
pub struct MemoryRateLimiter {
    limiters: Vec<DefaultKeyedRateLimiter<String>>,
    windows: Vec<Duration>,
    ladder: DashMap<String, Ladder>,
    warnings: u32,
    block: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Ladder {
    strikes: u32,
    last_strike: Instant,
    blocked_until: Option<(Instant, u64)>,
}

impl MemoryRateLimiter {
    /// Builds the limiter from the configured budgets.
    pub fn new(config: &RateLimitConfig) -> Self {
        let budgets: Vec<Budget> = EventClass::ALL.iter().map(|c| budget(config, *c)).collect();
        let limiters = budgets.iter().map(|b| DefaultKeyedRateLimiter::keyed(quota(*b))).collect();
        Self {
            limiters,
            windows: budgets.iter().map(|b| b.window).collect(),
            ladder: DashMap::new(),
            warnings: config.warnings,
            block: Duration::from_secs(config.block_seconds),
        }
    }

    /// Forgets users whose budgets are full again and whose ladder has expired, so memory
    /// follows active users rather than every user ever seen. Call periodically.
    pub fn housekeeping(&self) {
        for limiter in &self.limiters {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = Instant::now();
        let stale = self.block.max(self.windows.iter().copied().max().unwrap_or_default());
        self.ladder
            .retain(|_, l| l.blocked_until.is_some_and(|(t, _)| t > now) || now.duration_since(l.last_strike) < stale);
    }
}

fn quota(b: Budget) -> Quota {
    let burst = NonZeroU32::new(b.count).unwrap_or(NonZeroU32::MIN);
    // `count` at once, then one more every window/count: the budget refills over the window.
    let period = (b.window / b.count).max(Duration::from_nanos(1));
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(burst)).allow_burst(burst)
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, user: &str, class: EventClass) -> Result<Verdict, StoreError> {
        let now = Instant::now();
        if let Some(l) = self.ladder.get(user)
            && let Some((until, until_ms)) = l.blocked_until
            && until > now
        {
            return Ok(Verdict::Blocked { until_ms, started: false });
        }
        let limiter = &self.limiters[class.index()];
        let key = user.to_owned();
        let Err(not_until) = limiter.check_key(&key) else {
            return Ok(Verdict::Allow);
        };
        let retry_after = not_until.wait_time_from(DefaultClock::default().now());
        let window = self.windows[class.index()];
        let mut ladder = self.ladder.entry(key).or_insert(Ladder { strikes: 0, last_strike: now, blocked_until: None });
        // Strikes are forgotten after a quiet window: an occasional burst never escalates.
        if now.duration_since(ladder.last_strike) > window {
            ladder.strikes = 0;
        }
        ladder.strikes += 1;
        ladder.last_strike = now;
        if ladder.strikes > self.warnings {
            let until_ms = epoch_ms() + self.block.as_millis() as u64;
            ladder.strikes = 0;
            ladder.blocked_until = Some((now + self.block, until_ms));
            return Ok(Verdict::Blocked { until_ms, started: true });
        }
        Ok(Verdict::Warn { retry_after, remaining: self.warnings - ladder.strikes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn config(count: u32, warnings: u32) -> RateLimitConfig {
        let b = Budget { count, window: Duration::from_secs(60) };
        RateLimitConfig { message: b, typing: b, read: b, room: b, query: b, server: b, warnings, block_seconds: 30 }
    }

    #[tokio::test]
    async fn ladder_warns_then_blocks_every_class() {
        let limiter = MemoryRateLimiter::new(&config(2, 2));
        for _ in 0..2 {
            assert_eq!(limiter.check("u", EventClass::Message).await.unwrap(), Verdict::Allow);
        }
        assert!(matches!(limiter.check("u", EventClass::Message).await.unwrap(), Verdict::Warn { remaining: 1, .. }));
        assert!(matches!(limiter.check("u", EventClass::Message).await.unwrap(), Verdict::Warn { remaining: 0, .. }));
        assert!(matches!(
            limiter.check("u", EventClass::Message).await.unwrap(),
            Verdict::Blocked { started: true, .. }
        ));
        // Blocked means blocked for everything, and the block is announced once.
        assert!(matches!(
            limiter.check("u", EventClass::Query).await.unwrap(),
            Verdict::Blocked { started: false, .. }
        ));
        // Other users are untouched.
        assert_eq!(limiter.check("v", EventClass::Message).await.unwrap(), Verdict::Allow);
    }

    #[test]
    fn rejected_verdicts_carry_retry_after() {
        let e = Verdict::Warn { retry_after: Duration::from_millis(1500), remaining: 1 }.error().unwrap();
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
        assert!(Verdict::Allow.error().is_none());
    }
}
