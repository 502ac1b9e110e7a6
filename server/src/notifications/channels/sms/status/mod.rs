//! The delivery status of SMS jobs: which parts the SMSC accepted (so that a retried job
//! never submits an accepted part again, on whichever node it runs) and what their receipts
//! said.
//!
//! Kept in a [`DeliveryStore`]: in memory when the server runs alone, in Redis when it
//! shares one, so every node answers the status route for every job, a retry on another
//! node skips the parts already accepted, and a receipt reaching another node's session
//! (the SMSC may answer on any bind of the account) still finds its job.

mod memory;
mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::receipt::{Receipt, ReceiptState};
use crate::error::StoreResult;

pub use memory::MemoryDeliveries;
pub use redis::RedisDeliveries;

/// Receipts waiting at once for their message id to be recorded; more are dropped.
const EARLY_RECEIPTS: usize = 10_000;
/// The first wait of a receipt whose message id is not recorded yet; it doubles up to
/// [`EARLY_WAIT_MAX`]. A receipt can overtake the `submit_sm_resp` it belongs to, on the
/// way through the submitting process or, sent on another node's bind, through another.
const EARLY_WAIT: Duration = Duration::from_millis(50);
/// The longest of those waits (about 6 s in all), after which the receipt is given up.
const EARLY_WAIT_MAX: Duration = Duration::from_millis(3200);

/// Where an SMS job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Some parts are not accepted by the SMSC yet.
    Submitting,
    /// Every part accepted; no final receipt for all of them yet.
    Submitted,
    /// Every part's receipt says delivered.
    Delivered,
    /// A part's receipt says it will not arrive.
    Undeliverable,
    /// A part's validity period ran out.
    Expired,
    /// The SMSC or the channel refused the job (see `error`).
    Failed,
}

impl DeliveryState {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitting => "submitting",
            Self::Submitted => "submitted",
            Self::Delivered => "delivered",
            Self::Undeliverable => "undeliverable",
            Self::Expired => "expired",
            Self::Failed => "failed",
        }
    }

    /// True once nothing will change it but a re-drive.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Undeliverable | Self::Expired | Self::Failed)
    }
}

/// One part of an SMS job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// The SMSC's id, once accepted.
    pub message_id: Option<String>,
    /// The last receipt's state.
    pub receipt: Option<ReceiptState>,
    /// The receipt's network error code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_error: Option<String>,
}

/// The delivery status of one SMS job, as the status and dead-letter routes show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatus {
    /// The job.
    pub job_id: String,
    /// Where it went (E.164).
    pub to: String,
    /// `gsm7` or `ucs2`; absent when the text could not be encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coding: Option<String>,
    /// Summary over the parts.
    pub state: DeliveryState,
    /// One entry per concatenated part.
    pub parts: Vec<Part>,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the caller gave with the job, handed back with its outcome.
    #[serde(skip)]
    pub context: serde_json::Value,
    /// RFC 3339 UTC of the last change.
    pub updated_at: String,
}

impl DeliveryStatus {
    /// A job about to submit `parts` parts, none accepted yet.
    fn fresh(job_id: &str, to: &str, coding: &str, parts: usize, context: serde_json::Value) -> Self {
        let part = Part { message_id: None, receipt: None, receipt_error: None };
        Self {
            job_id: job_id.to_owned(),
            to: to.to_owned(),
            coding: Some(coding.to_owned()),
            state: DeliveryState::Submitting,
            parts: vec![part; parts],
            error: None,
            context,
            updated_at: now(),
        }
    }

    /// A job that failed before any part was made.
    fn failed(job_id: &str, to: &str, error: &str) -> Self {
        Self {
            job_id: job_id.to_owned(),
            to: to.to_owned(),
            coding: None,
            state: DeliveryState::Failed,
            parts: Vec::new(),
            error: Some(error.to_owned()),
            context: serde_json::Value::Null,
            updated_at: now(),
        }
    }

    /// Marks the job failed for good.
    fn fail(&mut self, error: Option<String>) {
        self.state = DeliveryState::Failed;
        self.error = error;
    }

    /// Derives `state` from the parts (a failed job stays failed).
    fn summarise(&mut self) {
        let receipts: Vec<_> = self.parts.iter().map(|p| p.receipt).collect();
        self.state = if self.state == DeliveryState::Failed {
            DeliveryState::Failed
        } else if receipts.contains(&Some(ReceiptState::Undeliverable)) {
            DeliveryState::Undeliverable
        } else if receipts.contains(&Some(ReceiptState::Expired)) {
            DeliveryState::Expired
        } else if receipts.iter().all(|r| *r == Some(ReceiptState::Delivered)) {
            DeliveryState::Delivered
        } else if self.parts.iter().all(|p| p.message_id.is_some()) {
            DeliveryState::Submitted
        } else {
            DeliveryState::Submitting
        };
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Called once per job when a receipt brings it to a final state.
pub type OnOutcome = Box<dyn Fn(&DeliveryStatus) + Send + Sync>;

/// Where the statuses live. Every change is one atomic step on the job's record, so two
/// nodes recording receipts for two parts of one job lose neither.
#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// The status of `job_id`, its state summarised.
    async fn get(&self, job_id: &str) -> StoreResult<Option<DeliveryStatus>>;
    /// Replaces the record of `status.job_id` (a job starting, or starting afresh).
    async fn start(&self, status: &DeliveryStatus) -> StoreResult<()>;
    /// Part `index` of `job_id` was accepted as `message_id`; remembers which part that id is.
    async fn accept(&self, job_id: &str, index: usize, message_id: &str) -> StoreResult<()>;
    /// The job and part index that `message_id` was given to.
    async fn part_of(&self, message_id: &str) -> StoreResult<Option<(String, usize)>>;
    /// Records `receipt` on part `index` of `job_id`; the status after it, when the job is known.
    async fn receive(&self, job_id: &str, index: usize, receipt: &Receipt) -> StoreResult<Option<DeliveryStatus>>;
    /// `job_id` failed for good with `error`; `failed` is the record when there was none.
    async fn fail(&self, failed: &DeliveryStatus) -> StoreResult<()>;
    /// True for the first caller after `job_id` reached its final state (until it starts
    /// afresh), so its outcome is reported once across the fleet.
    async fn settle(&self, job_id: &str) -> StoreResult<bool>;
}

/// Every SMS job's status, on a [`DeliveryStore`].
pub struct Deliveries {
    store: Arc<dyn DeliveryStore>,
    /// Bounds the receipts waiting for their message id (see [`EARLY_WAIT`]).
    early: Semaphore,
    on_outcome: OnOutcome,
}

impl Deliveries {
    /// Statuses in `store`; `on_outcome` sees each job's final receipt outcome once (for
    /// metrics and dead letters).
    pub fn new(store: Arc<dyn DeliveryStore>, on_outcome: OnOutcome) -> Self {
        Self { store, early: Semaphore::new(EARLY_RECEIPTS), on_outcome }
    }

    /// Starts (or resumes) job `job_id` of `parts` parts; returns the message ids of the
    /// parts accepted by an earlier attempt, which must not be submitted again. A job that
    /// had reached a final state (a re-driven dead letter) starts afresh.
    pub async fn begin(
        &self,
        job_id: &str,
        to: &str,
        coding: &str,
        parts: usize,
        context: serde_json::Value,
    ) -> StoreResult<Vec<Option<String>>> {
        if let Some(status) = self.store.get(job_id).await?
            && status.parts.len() == parts
            && !status.state.is_final()
        {
            return Ok(status.parts.into_iter().map(|p| p.message_id).collect());
        }
        self.store.start(&DeliveryStatus::fresh(job_id, to, coding, parts, context)).await?;
        Ok(vec![None; parts])
    }

    /// Part `index` of `job_id` was accepted as `message_id`.
    pub async fn accepted(&self, job_id: &str, index: usize, message_id: &str) -> StoreResult<()> {
        self.store.accept(job_id, index, message_id).await
    }

    /// `job_id` to `to` failed for good with `error` (also before any part was made).
    pub async fn failed(&self, job_id: &str, to: &str, error: &str) -> StoreResult<()> {
        self.store.fail(&DeliveryStatus::failed(job_id, to, error)).await
    }

    /// Records a receipt; returns the job it belongs to, `None` when its message id stays
    /// unknown for the [`EARLY_WAIT`]s (in case its `submit_sm_resp` is still on the way).
    pub async fn receipt(&self, receipt: Receipt) -> StoreResult<Option<String>> {
        let mut wait = EARLY_WAIT;
        let (job_id, index) = loop {
            if let Some(found) = self.store.part_of(&receipt.message_id).await? {
                break found;
            }
            if wait > EARLY_WAIT_MAX {
                return Ok(None);
            }
            let Ok(_waiting) = self.early.try_acquire() else { return Ok(None) };
            tokio::time::sleep(wait).await;
            wait *= 2;
        };
        let Some(status) = self.store.receive(&job_id, index, &receipt).await? else { return Ok(None) };
        // A receipt for a job that had failed on its own (the SMSC said no to a later part)
        // is recorded but is not the job's outcome.
        let settled_by_receipt = status.state.is_final() && status.state != DeliveryState::Failed;
        if settled_by_receipt && self.store.settle(&job_id).await? {
            (self.on_outcome)(&status);
        }
        Ok(Some(job_id))
    }

    /// The status of `job_id`.
    pub async fn get(&self, job_id: &str) -> StoreResult<Option<DeliveryStatus>> {
        self.store.get(job_id).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::Value;

    use super::*;

    fn receipt(id: &str, state: ReceiptState) -> Receipt {
        Receipt { message_id: id.into(), state, error: None }
    }

    const TO: &str = "+4915112345678";

    #[tokio::test]
    async fn parts_accepted_before_are_not_sent_again_and_receipts_settle_the_state() {
        let finals = Arc::new(AtomicUsize::new(0));
        let counted = finals.clone();
        let d = Deliveries::new(
            Arc::new(MemoryDeliveries::default()),
            Box::new(move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
            }),
        );
        let state = async |job: &str| d.get(job).await.unwrap().unwrap().state;
        assert_eq!(d.begin("j", TO, "gsm7", 2, Value::Null).await.unwrap(), [None, None]);
        d.accepted("j", 0, "m0").await.unwrap();
        assert_eq!(state("j").await, DeliveryState::Submitting);
        assert_eq!(d.begin("j", TO, "gsm7", 2, Value::Null).await.unwrap(), [Some("m0".into()), None]);
        // The receipt of part 1 overtakes its submit_sm_resp: it waits for it.
        let (early, accepted) =
            tokio::join!(d.receipt(receipt("m1", ReceiptState::Delivered)), d.accepted("j", 1, "m1"));
        assert_eq!((early.unwrap(), accepted.unwrap()), (Some("j".into()), ()));
        assert_eq!(state("j").await, DeliveryState::Submitted);
        assert_eq!(d.receipt(receipt("m0", ReceiptState::Pending)).await.unwrap(), Some("j".into()));
        assert_eq!(state("j").await, DeliveryState::Submitted);
        d.receipt(receipt("m0", ReceiptState::Delivered)).await.unwrap();
        assert_eq!(state("j").await, DeliveryState::Delivered);
        d.receipt(receipt("m0", ReceiptState::Delivered)).await.unwrap();
        assert_eq!(finals.load(Ordering::Relaxed), 1, "a repeated receipt reports nothing twice");

        d.begin("k", TO, "ucs2", 1, Value::Null).await.unwrap();
        d.accepted("k", 0, "n0").await.unwrap();
        d.receipt(receipt("n0", ReceiptState::Expired)).await.unwrap();
        assert_eq!(state("k").await, DeliveryState::Expired);
        d.begin("u", TO, "ucs2", 2, Value::Null).await.unwrap();
        d.accepted("u", 0, "u0").await.unwrap();
        d.accepted("u", 1, "u1").await.unwrap();
        d.receipt(receipt("u1", ReceiptState::Undeliverable)).await.unwrap();
        assert_eq!(state("u").await, DeliveryState::Undeliverable);
        assert_eq!(finals.load(Ordering::Relaxed), 3);
        assert_eq!(d.begin("u", TO, "ucs2", 2, Value::Null).await.unwrap(), [None, None], "a final job starts afresh");
        d.failed("u", TO, "x").await.unwrap();
        assert_eq!(d.get("u").await.unwrap().unwrap().error.as_deref(), Some("x"));
        d.failed("v", "+49", "bad number").await.unwrap();
        let v = d.get("v").await.unwrap().unwrap();
        assert_eq!((v.state, v.coding, v.parts.len()), (DeliveryState::Failed, None, 0));
        assert_eq!(finals.load(Ordering::Relaxed), 3, "failures are not receipt outcomes");
    }
}
