//! SMS delivery statuses in this process's memory, for a server running alone.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{DeliveryStatus, DeliveryStore, Receipt, now};
use crate::error::StoreResult;

/// Job statuses kept; the oldest are forgotten beyond this.
const KEPT: usize = 100_000;

/// In-memory [`DeliveryStore`].
#[derive(Default)]
pub struct MemoryDeliveries {
    // A std Mutex: critical sections are short and never span an await.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Job id → its status, and whether its outcome was reported.
    jobs: HashMap<String, (DeliveryStatus, bool)>,
    /// Oldest first, for forgetting.
    order: VecDeque<String>,
    /// Message id → (job id, part index).
    messages: HashMap<String, (String, usize)>,
}

impl Inner {
    /// Adds or replaces a status, forgetting the oldest beyond [`KEPT`].
    fn insert(&mut self, status: DeliveryStatus) {
        let id = status.job_id.clone();
        if self.jobs.insert(id.clone(), (status, false)).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > KEPT {
            if let Some(old) = self.order.pop_front()
                && let Some((gone, _)) = self.jobs.remove(&old)
            {
                for id in gone.parts.iter().filter_map(|p| p.message_id.as_ref()) {
                    self.messages.remove(id);
                }
            }
        }
    }

    /// Applies `change` to the status of `job_id`, when there is one.
    fn change(&mut self, job_id: &str, change: impl FnOnce(&mut DeliveryStatus)) -> Option<DeliveryStatus> {
        let (status, _) = self.jobs.get_mut(job_id)?;
        change(status);
        status.summarise();
        status.updated_at = now();
        Some(status.clone())
    }
}

impl MemoryDeliveries {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change is one step, so the data behind a poisoned lock is consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl DeliveryStore for MemoryDeliveries {
    async fn get(&self, job_id: &str) -> StoreResult<Option<DeliveryStatus>> {
        Ok(self.lock().jobs.get(job_id).map(|(status, _)| status.clone()))
    }

    async fn start(&self, status: &DeliveryStatus) -> StoreResult<()> {
        self.lock().insert(status.clone());
        Ok(())
    }

    async fn accept(&self, job_id: &str, index: usize, message_id: &str) -> StoreResult<()> {
        let mut inner = self.lock();
        let known = inner.change(job_id, |status| {
            if let Some(part) = status.parts.get_mut(index) {
                part.message_id = Some(message_id.to_owned());
            }
        });
        if known.is_some() {
            inner.messages.insert(message_id.to_owned(), (job_id.to_owned(), index));
        }
        Ok(())
    }

    async fn part_of(&self, message_id: &str) -> StoreResult<Option<(String, usize)>> {
        Ok(self.lock().messages.get(message_id).cloned())
    }

    async fn receive(&self, job_id: &str, index: usize, receipt: &Receipt) -> StoreResult<Option<DeliveryStatus>> {
        Ok(self.lock().change(job_id, |status| {
            if let Some(part) = status.parts.get_mut(index) {
                part.receipt = Some(receipt.state);
                part.receipt_error = receipt.error.clone();
            }
        }))
    }

    async fn fail(&self, failed: &DeliveryStatus) -> StoreResult<()> {
        let mut inner = self.lock();
        let error = failed.error.clone();
        if inner.change(&failed.job_id, |status| status.fail(error)).is_none() {
            inner.insert(failed.clone());
        }
        Ok(())
    }

    async fn settle(&self, job_id: &str) -> StoreResult<bool> {
        Ok(self.lock().jobs.get_mut(job_id).is_some_and(|(_, reported)| !std::mem::replace(reported, true)))
    }
}
