//! The durable queue: one apalis-redis queue per channel (so a slow channel never holds up
//! another), worked by apalis workers with bounded concurrency, heartbeats and re-enqueueing
//! of the jobs of workers that died. apalis's own retry schedule is fixed (attempt + 1
//! seconds, 25 attempts), so a failed attempt is acknowledged to apalis as done and our
//! policy queues the next attempt as a new scheduled task; every push carries an
//! idempotency key (`<job id>#<redrives>#<attempts>`) so replaying a push after a crash
//! queues nothing twice. Dead letters live in a hash plus a time index next to the queues.
//!
//! Delivery is at least once: a worker killed between a delivery and its acknowledgement
//! leaves the job to be re-run by the next worker. The browser channel stays exactly once
//! because the notification store is idempotent on the notification id.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::{
    BackendExt, BoxDynError, Data, PollSnapshot, PollStrategy, Strategy, TaskBuilder, WorkerBuilder, WorkerBuilderExt,
};
use apalis_core::backend::Vacuum;
use apalis_redis::{RedisStorage, RedisTask};
use async_trait::async_trait;
use futures::task::AtomicWaker;
use tokio::sync::watch;

use super::{Counts, DeadLetter, Disposition, Job, JobQueue, Workers, stopped};
use crate::config::QueueConfig;
use crate::error::{StoreError, StoreResult};
use crate::notifications::channels::Channel;
use crate::notifications::worker::Deliverer;
use crate::redis::{Conn, Redis};

/// Delivered tasks' payloads are deleted this often (apalis keeps them otherwise).
const VACUUM_INTERVAL: Duration = Duration::from_secs(60);
/// How long a push's idempotency key is remembered: longer than any retry schedule.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// A worker whose heartbeat is this many intervals old has died; its jobs go back.
const MISSED_HEARTBEATS: usize = 3;
/// After its attempts in flight are done, how long a stopping worker may take to hand the
/// rest back (which needs Redis): an unreachable Redis must not hold the exit for the whole
/// grace period. What is not handed back runs again after the heartbeat timeout.
const HAND_BACK_TIMEOUT: Duration = Duration::from_secs(2);

/// The hash tag of every queue key. apalis-redis's worker registration script also writes
/// its global `core:apalis:queues:list` key, which it does not declare; on a Cluster that
/// key must be in the same slot as the script's declared keys, and a tag holding exactly
/// that name puts every queue key in its slot. On a single Redis the tag is only a name.
const QUEUE_SLOT: &str = "{core:apalis:queues:list}";

/// Stores a dead letter and drops the oldest beyond the limit, atomically.
const BURY: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if extra > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
  redis.call('HDEL', KEYS[1], unpack(old))
end
return 1
";

/// Puts a finished worker's fetched-but-unstarted jobs back at the head of the queue.
/// apalis can end a worker with jobs that its last fetch moved into the worker's in-flight
/// set but never handed to the handler (a stop right after a fetch), and its close removes
/// the worker from the heartbeat set, so no other worker would ever find those jobs: they
/// were lost (`sigterm_hands_the_jobs_back_to_the_queue` saw 4 left in flight).
const RELEASE: &str = r"
local jobs = redis.call('SMEMBERS', KEYS[1])
if #jobs > 0 then
  redis.call('RPUSH', KEYS[2], unpack(jobs))
  redis.call('DEL', KEYS[1])
  redis.call('DEL', KEYS[3])
  redis.call('LPUSH', KEYS[3], 1)
end
return #jobs
";

/// [`JobQueue`] on Redis through apalis. Cheap to clone.
#[derive(Clone)]
pub struct RedisQueue(Arc<Shared>);

struct Shared {
    redis: Redis,
    /// apalis configuration per channel, indexed by [`Channel::index`].
    queues: Vec<apalis_redis::Config>,
    dead: String,
    dead_order: String,
    dead_limit: u64,
    poll: Duration,
    /// Per channel: wakes this process's worker when this process queues a job.
    wakeups: Vec<Wakeup>,
}

/// Wakes a worker as soon as its own process queues a job, so an event handled here is
/// delivered at once instead of at the next poll (jobs queued by other nodes, and retries
/// coming due, are found by polling every `QUEUE_POLL_INTERVAL_MS`).
#[derive(Clone, Default)]
struct Wakeup(Arc<WakeupState>);

#[derive(Default)]
struct WakeupState {
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl Wakeup {
    fn wake(&self) {
        self.0.pending.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

impl PollStrategy for Wakeup {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        self.0.waker.register(cx.waker());
        if self.0.pending.swap(false, Ordering::AcqRel) { Poll::Ready(Some(())) } else { Poll::Pending }
    }
}

impl RedisQueue {
    /// The queue on `redis`, with keys under its prefix
    /// (`<prefix>:{core:apalis:queues:list}:notify:<channel>:…`).
    pub fn new(redis: Redis, config: &QueueConfig) -> Self {
        let heartbeat = Duration::from_millis(config.queue_heartbeat_ms);
        let queues = Channel::ALL
            .iter()
            .map(|c| {
                apalis_redis::Config::default()
                    .queue(redis.key(&[QUEUE_SLOT, "notify", c.as_str()]))
                    .heartbeat_interval(heartbeat)
                    .missed_heartbeats(MISSED_HEARTBEATS)
                    // Fetch no more than can run: fetched jobs count as in flight.
                    .batch_size(config.queue_concurrency as usize)
                    .idempotency_ttl(Some(IDEMPOTENCY_TTL))
                    .emit_events(false)
            })
            .collect();
        Self(Arc::new(Shared {
            dead: redis.key(&[QUEUE_SLOT, "notify", "dead"]),
            dead_order: redis.key(&[QUEUE_SLOT, "notify", "dead", "order"]),
            redis,
            queues,
            dead_limit: config.queue_dead_letter_limit,
            poll: Duration::from_millis(config.queue_poll_interval_ms),
            wakeups: Channel::ALL.iter().map(|_| Wakeup::default()).collect(),
        }))
    }

    /// Pushes `jobs` (all of one channel) with their idempotency keys, due at `run_at`
    /// (Unix seconds; apalis schedules by the second) or now.
    async fn push(&self, channel: Channel, jobs: &[(&Job, String)], run_at: Option<u64>) -> StoreResult<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut tasks: Vec<RedisTask> = Vec::with_capacity(jobs.len());
        for (job, key) in jobs {
            let payload = serde_json::to_vec(job).map_err(|e| StoreError::Internal(e.to_string()))?;
            let mut task = TaskBuilder::new(payload).idempotency_key(key);
            if let Some(at) = run_at {
                task = task.run_at_timestamp(at);
            }
            tasks.push(task.build());
        }
        let config = &self.0.queues[channel.index()];
        let mut conn = self.0.redis.conn();
        let pushed = apalis_redis::queries::push_tasks(&mut conn, config, &tasks);
        match tokio::time::timeout(Duration::from_secs(10), pushed).await {
            Ok(Ok(_)) => {
                if run_at.is_none() {
                    self.0.wakeups[channel.index()].wake();
                }
                Ok(())
            }
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Unavailable("queue push timed out".into())),
        }
    }

    /// Queues the next attempt of `job` after `after`.
    async fn retry(&self, job: &Job, after: Duration) -> StoreResult<()> {
        let due = SystemTime::now() + after;
        // Rounded up: a retry never runs before its backoff is over.
        let at = due.duration_since(UNIX_EPOCH).map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(0);
        let key = format!("{}#{}#{}", job.id, job.redrives, job.attempts);
        self.push(job.channel, &[(job, key)], Some(at)).await
    }

    async fn bury(&self, dead: &DeadLetter) -> StoreResult<()> {
        let json = serde_json::to_string(dead).map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut conn = self.0.redis.conn();
        let script = redis::Script::new(BURY);
        let mut call = script.prepare_invoke();
        call.key(&self.0.dead).key(&self.0.dead_order);
        call.arg(&dead.id).arg(json).arg(crate::protocol::epoch_ms()).arg(self.0.dead_limit);
        self.0.redis.run(call.invoke_async::<i64>(&mut conn)).await.map(drop)
    }

    /// One channel's worker, restarted after failures (a Redis outage ends an apalis
    /// worker) until `stop`.
    async fn supervise(
        self,
        deliverer: Arc<Deliverer>,
        channel: Channel,
        concurrency: usize,
        stop: watch::Receiver<bool>,
    ) {
        let context = WorkerContext { queue: self.clone(), deliverer };
        let mut failures = 0u32;
        while !*stop.borrow() {
            let storage =
                RedisStorage::<Job, Conn>::new(self.0.redis.conn()).with_config(self.0.queues[channel.index()].clone());
            // A fresh name per run: the jobs of a previous run that died are then orphans
            // that the heartbeat of this one puts back.
            let name = format!("switchyard-{}-{:016x}", channel.as_str(), rand::random::<u64>());
            let strategy = Strategy::new().apply(self.0.wakeups[channel.index()].clone()).interval(self.0.poll);
            let worker = WorkerBuilder::new(name.as_str())
                .backend(storage.poll_with_strategy(strategy))
                .data(context.clone())
                .concurrency(concurrency)
                .build(run_job);
            let signal = stopped(stop.clone());
            let signal = async move {
                signal.await;
                Ok::<(), std::io::Error>(())
            };
            let run = worker.run_until(signal);
            tokio::pin!(run);
            let result = tokio::select! {
                result = &mut run => result,
                _ = stopped(stop.clone()) => {
                    let drained = async {
                        while context.deliverer.busy(channel) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        tokio::time::sleep(HAND_BACK_TIMEOUT).await;
                    };
                    // Stopping: the worker hands its fetched jobs back to Redis, unless Redis
                    // is away (an error, or no answer in time). Either way this run is over.
                    let handed_back = tokio::select! {
                        result = &mut run => result.is_ok(),
                        _ = drained => false,
                    };
                    if handed_back {
                        self.release(channel, &name).await;
                    } else {
                        tracing::warn!(channel = channel.as_str(), "could not hand jobs back to Redis; they run again later");
                    }
                    return;
                }
            };
            match result {
                Ok(()) => {
                    failures = 0;
                    self.release(channel, &name).await;
                }
                Err(e) => {
                    failures += 1;
                    let pause = Duration::from_millis(100 << failures.min(6));
                    tracing::warn!(channel = channel.as_str(), error = %e, ?pause, "queue worker failed; restarting");
                    tokio::select! { _ = tokio::time::sleep(pause) => {}, _ = stopped(stop.clone()) => {} }
                }
            }
        }
    }

    /// Hands back what the stopped worker `name` of `channel` still holds (see [`RELEASE`]).
    /// Only after its run is over, so none of those jobs is running.
    async fn release(&self, channel: Channel, name: &str) {
        let config = &self.0.queues[channel.index()];
        let script = redis::Script::new(RELEASE);
        let mut call = script.prepare_invoke();
        call.key(format!("{}:{name}", config.inflight_jobs_set()))
            .key(config.active_jobs_list())
            .key(config.signal_list());
        let mut conn = self.0.redis.conn();
        match self.0.redis.run(call.invoke_async::<u64>(&mut conn)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(channel = channel.as_str(), jobs = n, "handed unstarted jobs back to the queue"),
            Err(e) => tracing::warn!(channel = channel.as_str(), error = %e, "could not hand jobs back to Redis"),
        }
    }

    /// Deletes the stored payloads of delivered jobs now and then.
    async fn vacuum(self, channel: Channel, stop: watch::Receiver<bool>) {
        let config = self.0.queues[channel.index()].clone();
        let mut storage = RedisStorage::<Job, Conn>::new(self.0.redis.conn()).with_config(config.clone());
        let mut tick = tokio::time::interval(VACUUM_INTERVAL);
        loop {
            tokio::select! { _ = tick.tick() => {}, _ = stopped(stop.clone()) => return }
            match storage.vacuum().await {
                // The done set only indexes what the vacuum just deleted.
                Ok(_) => {
                    let mut conn = self.0.redis.conn();
                    let mut del = redis::cmd("DEL");
                    del.arg(config.done_jobs_set());
                    let _ = self.0.redis.run(del.query_async::<i64>(&mut conn)).await;
                }
                Err(e) => tracing::debug!(error = %e, "queue vacuum failed"),
            }
        }
    }
}

#[derive(Clone)]
struct WorkerContext {
    queue: RedisQueue,
    deliverer: Arc<Deliverer>,
}

/// The apalis handler: one attempt, then our disposition. An error here (Redis gone while
/// recording the outcome) leaves the job to apalis, which runs it again.
async fn run_job(job: Job, context: Data<WorkerContext>) -> Result<(), BoxDynError> {
    match context.deliverer.process(job).await {
        Disposition::Done => Ok(()),
        Disposition::Retry { job, after } => Ok(context.queue.retry(&job, after).await?),
        Disposition::Dead(dead) => Ok(context.queue.bury(&dead).await?),
    }
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn enqueue(&self, jobs: &[Job]) -> StoreResult<()> {
        for channel in Channel::ALL {
            let batch: Vec<(&Job, String)> =
                jobs.iter().filter(|j| j.channel == channel).map(|j| (j, j.id.clone())).collect();
            self.push(channel, &batch, None).await?;
        }
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> StoreResult<Vec<DeadLetter>> {
        let redis = &self.0.redis;
        let mut conn = redis.conn();
        let ids: Vec<String> = redis
            .run(
                redis::cmd("ZREVRANGE")
                    .arg(&self.0.dead_order)
                    .arg(0)
                    .arg(limit.saturating_sub(1))
                    .query_async(&mut conn),
            )
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> =
            redis.run(redis::cmd("HMGET").arg(&self.0.dead).arg(&ids).query_async(&mut conn)).await?;
        Ok(values.into_iter().flatten().filter_map(|json| serde_json::from_str(&json).ok()).collect())
    }

    async fn redrive(&self, id: &str) -> StoreResult<Option<Job>> {
        let redis = &self.0.redis;
        let mut conn = redis.conn();
        let json: Option<String> =
            redis.run(redis::cmd("HGET").arg(&self.0.dead).arg(id).query_async(&mut conn)).await?;
        let Some(json) = json else { return Ok(None) };
        let dead: DeadLetter = serde_json::from_str(&json).map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut job = dead.job;
        job.attempts = 0;
        job.redrives += 1;
        // Queued before the dead letter is removed: a crash in between leaves both, and
        // re-driving again is stopped by the idempotency key.
        let key = format!("{}#r{}", job.id, job.redrives);
        self.push(job.channel, &[(&job, key)], None).await?;
        let mut pipe = redis::pipe();
        pipe.atomic().hdel(&self.0.dead, id).ignore().zrem(&self.0.dead_order, id).ignore();
        redis.run(pipe.query_async::<()>(&mut conn)).await?;
        Ok(Some(job))
    }

    async fn add_dead_letter(&self, dead: DeadLetter) -> StoreResult<()> {
        self.bury(&dead).await
    }

    async fn counts(&self) -> StoreResult<Counts> {
        let mut pipe = redis::pipe();
        for queue in &self.0.queues {
            pipe.llen(queue.active_jobs_list()).zcard(queue.scheduled_jobs_set());
        }
        pipe.zcard(&self.0.dead_order);
        let mut conn = self.0.redis.conn();
        let values: Vec<u64> = self.0.redis.run(pipe.query_async(&mut conn)).await?;
        let per_channel = &values[..values.len() - 1];
        Ok(Counts {
            queued: per_channel.iter().step_by(2).sum(),
            delayed: per_channel.iter().skip(1).step_by(2).sum(),
            dead: values.last().copied().unwrap_or(0),
        })
    }

    fn start(&self, deliverer: Arc<Deliverer>, config: &QueueConfig) -> Workers {
        let (stop, stop_rx) = watch::channel(false);
        let concurrency = config.queue_concurrency as usize;
        let mut tasks = Vec::new();
        for channel in Channel::ALL {
            tasks.push(tokio::spawn(self.clone().supervise(deliverer.clone(), channel, concurrency, stop_rx.clone())));
            tasks.push(tokio::spawn(self.clone().vacuum(channel, stop_rx.clone())));
        }
        Workers::new(stop, tasks)
    }
}
