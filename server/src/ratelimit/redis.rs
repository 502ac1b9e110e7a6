//! The rate limiter shared by every node through Redis.

use std::time::Duration;

use async_trait::async_trait;

use super::{EventClass, RateLimiter, Verdict, budget};
use crate::config::{Budget, RateLimitConfig};
use crate::error::StoreError;
use crate::protocol::epoch_ms;

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
