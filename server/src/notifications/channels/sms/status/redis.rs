//! SMS delivery statuses in Redis, shared by every node. Per job, one hash
//! (`sy:sms:{<job>}`) with a field per fact (`to`, `coding`, `parts`, `context`, `updated`,
//! `error` once failed, `settled` once reported, and `m<i>` / `r<i>` / `e<i>`: part i's
//! message id, receipt state and receipt error), so recording a receipt for one part never
//! overwrites another node's record of a different part; each change is one script that
//! only touches an existing record. Per message id, a key naming its job and part. Both
//! expire after [`KEPT_FOR`], longer than any SMSC keeps a message waiting for its receipt.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use super::{DeliveryState, DeliveryStatus, DeliveryStore, Part, Receipt, now};
use crate::error::StoreResult;
use crate::redis::{Redis, tag};

/// How long a job's status and its message ids are kept.
const KEPT_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// KEYS: the job. ARGV: TTL seconds, then field, value pairs. Replaces the record.
const START: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
";

/// KEYS: the job. ARGV: TTL seconds, then field, value pairs; then `-`, then fields to
/// delete. Changes an existing record only; returns the record after, or nothing.
const CHANGE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local i = 2
while i <= #ARGV and ARGV[i] ~= '-' do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for j = i + 1, #ARGV do redis.call('HDEL', KEYS[1], ARGV[j]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return redis.call('HGETALL', KEYS[1])
";

/// KEYS: the job. True for the first caller on an existing record.
const SETTLE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], 'settled', '1')
";

/// [`DeliveryStore`] on Redis.
pub struct RedisDeliveries {
    redis: Redis,
}

impl RedisDeliveries {
    /// Statuses under `redis`'s key prefix.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    fn job_key(&self, job_id: &str) -> String {
        self.redis.key(&["sms", &tag(job_id)])
    }

    fn message_key(&self, message_id: &str) -> String {
        self.redis.key(&["sms", "msg", message_id])
    }

    /// Runs `script` on the record of `job_id` with `args` after the TTL.
    async fn script<T: redis::FromRedisValue>(&self, script: &str, job_id: &str, args: &[String]) -> StoreResult<T> {
        let script = redis::Script::new(script);
        let mut call = script.prepare_invoke();
        call.key(self.job_key(job_id)).arg(KEPT_FOR.as_secs());
        for arg in args {
            call.arg(arg);
        }
        let mut conn = self.redis.conn();
        self.redis.run(call.invoke_async::<T>(&mut conn)).await
    }

    /// Sets `set` (field, value pairs) and deletes `delete` on an existing record; the
    /// status after.
    async fn change(
        &self,
        job_id: &str,
        set: &[(String, String)],
        delete: &[String],
    ) -> StoreResult<Option<DeliveryStatus>> {
        let mut args: Vec<String> = vec!["updated".into(), now()];
        args.extend(set.iter().flat_map(|(f, v)| [f.clone(), v.clone()]));
        args.push("-".into());
        args.extend(delete.iter().cloned());
        let fields: HashMap<String, String> = self.script(CHANGE, job_id, &args).await?;
        Ok(parse(job_id, fields))
    }
}

/// The hash fields of `status`, as [`START`] stores them.
fn fields(status: &DeliveryStatus) -> Vec<String> {
    let mut fields = vec![
        "to".into(),
        status.to.clone(),
        "parts".into(),
        status.parts.len().to_string(),
        "context".into(),
        status.context.to_string(),
        "updated".into(),
        status.updated_at.clone(),
    ];
    if let Some(coding) = &status.coding {
        fields.extend(["coding".into(), coding.clone()]);
    }
    if let Some(error) = &status.error {
        fields.extend(["error".into(), error.clone()]);
    }
    fields
}

/// The status stored as `fields`; `None` when there is no record.
fn parse(job_id: &str, mut fields: HashMap<String, String>) -> Option<DeliveryStatus> {
    let parts: usize = fields.get("parts")?.parse().ok()?;
    let parts = (0..parts)
        .map(|i| Part {
            message_id: fields.remove(&format!("m{i}")),
            receipt: fields.remove(&format!("r{i}")).and_then(|r| serde_json::from_value(r.into()).ok()),
            receipt_error: fields.remove(&format!("e{i}")),
        })
        .collect();
    let error = fields.remove("error");
    let mut status = DeliveryStatus {
        job_id: job_id.to_owned(),
        to: fields.remove("to").unwrap_or_default(),
        coding: fields.remove("coding"),
        state: if error.is_some() { DeliveryState::Failed } else { DeliveryState::Submitting },
        parts,
        error,
        context: fields.get("context").and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default(),
        updated_at: fields.remove("updated").unwrap_or_default(),
    };
    status.summarise();
    Some(status)
}

#[async_trait]
impl DeliveryStore for RedisDeliveries {
    async fn get(&self, job_id: &str) -> StoreResult<Option<DeliveryStatus>> {
        let mut conn = self.redis.conn();
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.job_key(job_id));
        let fields: HashMap<String, String> = self.redis.run(cmd.query_async(&mut conn)).await?;
        Ok(parse(job_id, fields))
    }

    async fn start(&self, status: &DeliveryStatus) -> StoreResult<()> {
        self.script::<i64>(START, &status.job_id, &fields(status)).await.map(drop)
    }

    async fn accept(&self, job_id: &str, index: usize, message_id: &str) -> StoreResult<()> {
        let known = self.change(job_id, &[(format!("m{index}"), message_id.to_owned())], &[]).await?;
        if known.is_some() {
            let mut conn = self.redis.conn();
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.message_key(message_id)).arg(format!("{index} {job_id}")).arg("EX").arg(KEPT_FOR.as_secs());
            self.redis.run(cmd.query_async::<()>(&mut conn)).await?;
        }
        Ok(())
    }

    async fn part_of(&self, message_id: &str) -> StoreResult<Option<(String, usize)>> {
        let mut conn = self.redis.conn();
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.message_key(message_id));
        let value: Option<String> = self.redis.run(cmd.query_async(&mut conn)).await?;
        Ok(value.and_then(|v| {
            let (index, job) = v.split_once(' ')?;
            Some((job.to_owned(), index.parse().ok()?))
        }))
    }

    async fn receive(&self, job_id: &str, index: usize, receipt: &Receipt) -> StoreResult<Option<DeliveryStatus>> {
        let state = serde_json::to_value(receipt.state).ok().and_then(|v| v.as_str().map(str::to_owned));
        let mut set = vec![(format!("r{index}"), state.unwrap_or_default())];
        let mut delete = Vec::new();
        match &receipt.error {
            Some(error) => set.push((format!("e{index}"), error.clone())),
            None => delete.push(format!("e{index}")),
        }
        self.change(job_id, &set, &delete).await
    }

    async fn fail(&self, failed: &DeliveryStatus) -> StoreResult<()> {
        let error = failed.error.clone().unwrap_or_default();
        if self.change(&failed.job_id, &[("error".into(), error)], &[]).await?.is_none() {
            self.start(failed).await?;
        }
        Ok(())
    }

    async fn settle(&self, job_id: &str) -> StoreResult<bool> {
        Ok(self.script::<i64>(SETTLE, job_id, &[]).await? == 1)
    }
}
