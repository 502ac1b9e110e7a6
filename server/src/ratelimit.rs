//! Per-user rate limits by event class, with the contract's ladder: over budget → rejected
//! with a warning; still going after `RATE_LIMIT_WARNINGS` warnings → blocked for
//! `RATE_LIMIT_BLOCK_SECONDS`, during which every event is rejected.

use std::num::NonZeroU32;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::{Budget, RateLimitConfig};
use crate::error::{ApiError, ErrorCode};
use crate::store::StoreError;

/// Event classes with separate budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventClass {
    /// `sendMessage`.
    Message,
    /// `typing`.
    Typing,
    /// `markMessagesRead`, `markNotificationsRead`.
    Read,
    /// `getOrCreateRoom`.
    Room,
    /// Everything that only reads.
    Query,
}

impl EventClass {
    const ALL: [EventClass; 5] =
        [EventClass::Message, EventClass::Typing, EventClass::Read, EventClass::Room, EventClass::Query];

    fn index(self) -> usize {
        self as usize
    }

    /// Stable name (Redis keys, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            EventClass::Message => "message",
            EventClass::Typing => "typing",
            EventClass::Read => "read",
            EventClass::Room => "room",
            EventClass::Query => "query",
        }
    }
}

/// What the limiter decided about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within budget.
    Allow,
    /// Over budget: rejected, with `remaining` more warnings before a block.
    Warn {
        /// When the budget has room again.
        retry_after: Duration,
        /// Over-budget events left before the user is blocked.
        remaining: u32,
    },
    /// Blocked until `until_ms` (Unix epoch milliseconds). `started` is true for the event
    /// that caused the block, so the client is told once.
    Blocked {
        /// Block end, Unix epoch milliseconds.
        until_ms: u64,
        /// This event started the block.
        started: bool,
    },
}

impl Verdict {
    /// The error a rejected event answers with; `None` when allowed.
    pub fn error(&self) -> Option<ApiError> {
        let (message, retry_after) = match *self {
            Verdict::Allow => return None,
            Verdict::Warn { retry_after, .. } => ("rate limit exceeded; slow down".to_owned(), retry_after),
            Verdict::Blocked { until_ms, .. } => {
                let left = Duration::from_millis(until_ms.saturating_sub(epoch_ms()));
                ("blocked for exceeding the rate limit".to_owned(), left)
            }
        };
        Some(ApiError { code: ErrorCode::RateLimited, message, retry_after: Some(retry_after) })
    }
}

/// Decides whether a user's event fits their budget. Implementations must count all of a
/// user's sockets together (and, for shared ones, all nodes).
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one event of `class` by `user` and returns the verdict.
    async fn check(&self, user: &str, class: EventClass) -> Result<Verdict, StoreError>;
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// In-process limiter: one `governor` GCRA limiter per class, keyed by user.
pub struct LocalRateLimiter {
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

impl LocalRateLimiter {
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

/// The configured budget of a class.
pub fn budget(config: &RateLimitConfig, class: EventClass) -> Budget {
    match class {
        EventClass::Message => config.message,
        EventClass::Typing => config.typing,
        EventClass::Read => config.read,
        EventClass::Room => config.room,
        EventClass::Query => config.query,
    }
}

fn quota(b: Budget) -> Quota {
    let burst = NonZeroU32::new(b.count).unwrap_or(NonZeroU32::MIN);
    // `count` at once, then one more every window/count: the budget refills over the window.
    let period = (b.window / b.count).max(Duration::from_nanos(1));
    Quota::with_period(period).unwrap_or_else(|| Quota::per_second(burst)).allow_burst(burst)
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
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

/// One fixed window per (user, class), the strike count and the block, in one script so
/// every node and socket of a user counts against the same budget atomically.
const REDIS_CHECK: &str = r"
local block = redis.call('GET', KEYS[3])
if block then return {2, tonumber(block), 0} end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n <= tonumber(ARGV[1]) then return {0, 0, 0} end
local retry = redis.call('PTTL', KEYS[1])
local strikes = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if strikes > tonumber(ARGV[3]) then
  local until_ms = tonumber(ARGV[5]) + tonumber(ARGV[4])
  redis.call('SET', KEYS[3], until_ms, 'PX', ARGV[4])
  redis.call('DEL', KEYS[2])
  return {3, until_ms, 0}
end
return {1, retry, tonumber(ARGV[3]) - strikes}
";

/// Limiter shared through Redis: a fixed window per budget, so `N/window` allows exactly N
/// events per window for a user across all nodes (the in-process limiter refills smoothly).
pub struct RedisRateLimiter {
    redis: crate::redis::Redis,
    budgets: Vec<Budget>,
    warnings: u32,
    block: Duration,
    script: redis::Script,
}

impl RedisRateLimiter {
    /// Builds the limiter from the configured budgets.
    pub fn new(redis: crate::redis::Redis, config: &RateLimitConfig) -> Self {
        Self {
            redis,
            budgets: EventClass::ALL.iter().map(|c| budget(config, *c)).collect(),
            warnings: config.warnings,
            block: Duration::from_secs(config.block_seconds),
            script: redis::Script::new(REDIS_CHECK),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, user: &str, class: EventClass) -> Result<Verdict, StoreError> {
        let b = self.budgets[class.index()];
        let mut call = self.script.prepare_invoke();
        // The user id as a hash tag keeps the three keys in one Cluster slot.
        let user = crate::redis::tag(user);
        call.key(self.redis.key(&["rl", &user, class.as_str()]))
            .key(self.redis.key(&["rl", &user, "strikes"]))
            .key(self.redis.key(&["rl", &user, "block"]))
            .arg(b.count)
            .arg(b.window.as_millis() as u64)
            .arg(self.warnings)
            .arg(self.block.as_millis() as u64)
            .arg(epoch_ms());
        let mut conn = self.redis.conn();
        let (kind, value, remaining): (u8, i64, u32) = self.redis.run(call.invoke_async(&mut conn)).await?;
        Ok(match kind {
            0 => Verdict::Allow,
            1 => Verdict::Warn { retry_after: Duration::from_millis(value.max(1) as u64), remaining },
            2 => Verdict::Blocked { until_ms: value as u64, started: false },
            _ => Verdict::Blocked { until_ms: value as u64, started: true },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(count: u32, warnings: u32) -> RateLimitConfig {
        let b = Budget { count, window: Duration::from_secs(60) };
        RateLimitConfig { message: b, typing: b, read: b, room: b, query: b, warnings, block_seconds: 30 }
    }

    #[tokio::test]
    async fn ladder_warns_then_blocks_every_class() {
        let limiter = LocalRateLimiter::new(&config(2, 2));
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
