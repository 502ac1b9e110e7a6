//! The embedded default: jobs, retries and dead letters in this process's memory. Nothing
//! survives a restart; jobs still queued at shutdown are lost (and logged).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Counts, DeadLetter, Disposition, Job, JobQueue, Workers, stopped};
use crate::config::QueueConfig;
use crate::error::StoreResult;
use crate::notifications::channels::Channel;
use crate::notifications::worker::Deliverer;

/// Job ids remembered to skip resubmitted events.
const REMEMBERED_IDS: usize = 100_000;

/// In-process [`JobQueue`]. Cheap to clone.
#[derive(Clone)]
pub struct MemoryQueue(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    /// Woken when a channel gets a job that may be due before the one it waits for.
    wake: [Notify; Channel::ALL.len()],
    dead_limit: usize,
}

#[derive(Default)]
struct State {
    /// Per channel: (due, sequence) of waiting jobs, earliest first.
    due: [BinaryHeap<Reverse<(Instant, u64)>>; Channel::ALL.len()],
    jobs: HashMap<u64, Job>,
    next_seq: u64,
    /// Oldest first.
    dead: VecDeque<DeadLetter>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
}

impl State {
    fn push(&mut self, job: Job, at: Instant) {
        self.next_seq += 1;
        self.due[job.channel.index()].push(Reverse((at, self.next_seq)));
        self.jobs.insert(self.next_seq, job);
    }

    fn remember(&mut self, id: &str) -> bool {
        if !self.seen.insert(id.to_owned()) {
            return false;
        }
        self.seen_order.push_back(id.to_owned());
        if self.seen_order.len() > REMEMBERED_IDS
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

impl MemoryQueue {
    /// An empty queue keeping at most `dead_limit` dead letters.
    pub fn new(dead_limit: usize) -> Self {
        Self(Arc::new(Shared {
            state: Mutex::default(),
            wake: std::array::from_fn(|_| Notify::new()),
            dead_limit: dead_limit.max(1),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every mutation is a single step; a poisoned lock still guards consistent data.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn schedule(&self, job: Job, at: Instant) {
        let channel = job.channel.index();
        self.lock().push(job, at);
        self.0.wake[channel].notify_one();
    }

    fn bury(&self, dead: DeadLetter) {
        let mut state = self.lock();
        state.dead.retain(|d| d.id != dead.id);
        state.dead.push_back(dead);
        while state.dead.len() > self.0.dead_limit {
            state.dead.pop_front();
        }
    }

    /// Waits for the next due job of `channel`.
    async fn next(&self, channel: Channel) -> Job {
        let index = channel.index();
        loop {
            // Registered before looking, so a push between the look and the wait wakes us.
            let notified = self.0.wake[index].notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut state = self.lock();
                match state.due[index].peek().copied() {
                    Some(Reverse((at, seq))) if at <= Instant::now() => {
                        state.due[index].pop();
                        if let Some(job) = state.jobs.remove(&seq) {
                            return job;
                        }
                        continue;
                    }
                    Some(Reverse((at, _))) => Some(at),
                    None => None,
                }
            };
            match next_due {
                Some(at) => tokio::select! { _ = notified => {}, _ = tokio::time::sleep_until(at) => {} },
                None => notified.await,
            }
        }
    }

    /// One channel's worker: at most `concurrency` jobs at a time until `stop`.
    async fn run(self, deliverer: Arc<Deliverer>, channel: Channel, concurrency: usize, stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut running = JoinSet::new();
        let stop_signal = stopped(stop);
        tokio::pin!(stop_signal);
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("never closed"),
                _ = &mut stop_signal => break,
            };
            let job = tokio::select! {
                job = self.next(channel) => job,
                _ = &mut stop_signal => break,
            };
            let (queue, deliverer) = (self.clone(), deliverer.clone());
            running.spawn(async move {
                match deliverer.process(job).await {
                    Disposition::Done => {}
                    Disposition::Retry { job, after } => queue.schedule(job, Instant::now() + after),
                    Disposition::Dead(dead) => queue.bury(dead),
                }
                drop(permit);
            });
            while running.try_join_next().is_some() {}
        }
        // Stop taking jobs; finish the ones in flight.
        while running.join_next().await.is_some() {}
        let left = self.lock().due[channel.index()].len();
        if left > 0 {
            tracing::warn!(channel = channel.as_str(), jobs = left, "in-process queue stopped with jobs not delivered");
        }
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, jobs: &[Job]) -> StoreResult<()> {
        let now = Instant::now();
        let mut woken = [false; Channel::ALL.len()];
        {
            let mut state = self.lock();
            for job in jobs {
                if state.remember(&job.id) {
                    state.push(job.clone(), now);
                    woken[job.channel.index()] = true;
                }
            }
        }
        for channel in Channel::ALL {
            if woken[channel.index()] {
                self.0.wake[channel.index()].notify_one();
            }
        }
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> StoreResult<Vec<DeadLetter>> {
        Ok(self.lock().dead.iter().rev().take(limit).cloned().collect())
    }

    async fn redrive(&self, id: &str) -> StoreResult<Option<Job>> {
        let job = {
            let mut state = self.lock();
            let Some(pos) = state.dead.iter().position(|d| d.id == id) else { return Ok(None) };
            let dead = state.dead.remove(pos).expect("position is in range");
            let mut job = dead.job;
            job.attempts = 0;
            job.redrives += 1;
            job
        };
        self.schedule(job.clone(), Instant::now());
        Ok(Some(job))
    }

    async fn add_dead_letter(&self, dead: DeadLetter) -> StoreResult<()> {
        self.bury(dead);
        Ok(())
    }

    async fn counts(&self) -> StoreResult<Counts> {
        let now = Instant::now();
        let state = self.lock();
        let mut counts = Counts { dead: state.dead.len() as u64, ..Counts::default() };
        for Reverse((at, _)) in state.due.iter().flatten() {
            if *at <= now {
                counts.queued += 1;
            } else {
                counts.delayed += 1;
            }
        }
        Ok(counts)
    }

    fn start(&self, deliverer: Arc<Deliverer>, config: &QueueConfig) -> Workers {
        let (stop, stop_rx) = watch::channel(false);
        let concurrency = config.queue_concurrency as usize;
        let tasks = Channel::ALL
            .iter()
            .map(|&channel| tokio::spawn(self.clone().run(deliverer.clone(), channel, concurrency, stop_rx.clone())))
            .collect();
        Workers::new(stop, tasks)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::notifications::store::Notification;

    fn job(id: &str) -> Job {
        Job {
            id: id.into(),
            event_id: "e".into(),
            event_type: "t".into(),
            rule: "r".into(),
            channel: Channel::Webhook,
            user_id: "u".into(),
            notification: Notification::sample("n"),
            webhook_url: None,
            email: None,
            sms: None,
            attempts: 0,
            redrives: 0,
            traceparent: None,
        }
    }

    #[tokio::test]
    async fn due_order_dedupe_and_redrive() {
        let q = MemoryQueue::new(10);
        q.schedule(job("later"), Instant::now() + Duration::from_millis(50));
        q.enqueue(&[job("a"), job("a"), job("b")]).await.unwrap();
        assert_eq!(q.next(Channel::Webhook).await.id, "a");
        assert_eq!(q.next(Channel::Webhook).await.id, "b");
        let started = Instant::now();
        assert_eq!(q.next(Channel::Webhook).await.id, "later");
        assert!(started.elapsed() >= Duration::from_millis(40));
        q.enqueue(&[job("a")]).await.unwrap();
        assert!(q.lock().jobs.is_empty(), "a resubmitted job id is skipped");

        let mut failed = job("a");
        failed.attempts = 5;
        q.bury(DeadLetter {
            id: "a".into(),
            error: "x".into(),
            permanent: false,
            attempts: 5,
            failed_at: "now".into(),
            job: failed,
        });
        assert_eq!(q.dead_letters(10).await.unwrap().len(), 1);
        let again = q.redrive("a").await.unwrap().unwrap();
        assert_eq!((again.attempts, again.redrives), (0, 1));
        assert!(q.dead_letters(10).await.unwrap().is_empty());
        assert_eq!(q.redrive("a").await.unwrap(), None);
        assert_eq!(q.next(Channel::Webhook).await.id, "a");
    }
}
