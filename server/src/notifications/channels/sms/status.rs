//! The delivery status of SMS jobs: which parts the SMSC accepted (so that a retried job
//! never submits an accepted part again) and what their receipts said.
//!
//! Kept in the process that submitted the job, which is also the one whose SMPP session
//! receives the receipts for it (the SMSC answers on the bind that submitted).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use super::receipt::{Receipt, ReceiptState};

/// Job statuses kept; the oldest are forgotten beyond this.
const KEPT: usize = 100_000;
/// Receipts kept for message ids not yet recorded (a receipt can overtake the
/// `submit_sm_resp` it belongs to on the way through the process).
const EARLY_RECEIPTS: usize = 10_000;

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

    fn is_final(self) -> bool {
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
    pub coding: Option<&'static str>,
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
        self.updated_at = now();
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Called once per job when a receipt brings it to a final state.
pub type OnOutcome = Box<dyn Fn(&DeliveryStatus) + Send + Sync>;

/// Every SMS job's status in this process.
pub struct Deliveries {
    inner: Mutex<Inner>,
    on_outcome: OnOutcome,
}

impl Inner {
    /// Adds or replaces a status, forgetting the oldest beyond [`KEPT`].
    fn insert(&mut self, status: DeliveryStatus) {
        let id = status.job_id.clone();
        if self.jobs.insert(id.clone(), status).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > KEPT {
            if let Some(old) = self.order.pop_front()
                && let Some(gone) = self.jobs.remove(&old)
            {
                for id in gone.parts.iter().filter_map(|p| p.message_id.as_ref()) {
                    self.messages.remove(id);
                }
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<String, DeliveryStatus>,
    /// Oldest first, for forgetting.
    order: VecDeque<String>,
    /// Message id → (job id, part index).
    messages: HashMap<String, (String, usize)>,
    early: HashMap<String, Receipt>,
}

impl Deliveries {
    /// An empty record; `on_outcome` sees each final receipt outcome (for metrics).
    pub fn new(on_outcome: OnOutcome) -> Self {
        Self { inner: Mutex::default(), on_outcome }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change is one step, so the data behind a poisoned lock is consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (or resumes) job `job_id` of `parts` parts; returns the message ids of the
    /// parts accepted by an earlier attempt, which must not be submitted again. A job that
    /// had reached a final state (a re-driven dead letter) starts afresh.
    pub fn begin(
        &self,
        job_id: &str,
        to: &str,
        coding: &'static str,
        parts: usize,
        context: serde_json::Value,
    ) -> Vec<Option<String>> {
        let mut inner = self.lock();
        if let Some(status) = inner.jobs.get(job_id)
            && status.parts.len() == parts
            && !status.state.is_final()
        {
            return status.parts.iter().map(|p| p.message_id.clone()).collect();
        }
        let fresh = Part { message_id: None, receipt: None, receipt_error: None };
        inner.insert(DeliveryStatus {
            job_id: job_id.to_owned(),
            to: to.to_owned(),
            coding: Some(coding),
            state: DeliveryState::Submitting,
            parts: vec![fresh; parts],
            error: None,
            context,
            updated_at: now(),
        });
        vec![None; parts]
    }

    /// Part `index` of `job_id` was accepted as `message_id`.
    pub fn accepted(&self, job_id: &str, index: usize, message_id: &str) {
        let mut inner = self.lock();
        inner.messages.insert(message_id.to_owned(), (job_id.to_owned(), index));
        let Some(status) = inner.jobs.get_mut(job_id) else { return };
        if let Some(part) = status.parts.get_mut(index) {
            part.message_id = Some(message_id.to_owned());
        }
        status.summarise();
        if let Some(early) = inner.early.remove(message_id) {
            drop(inner);
            self.receipt(early);
        }
    }

    /// `job_id` to `to` failed for good with `error` (also before any part was made).
    pub fn failed(&self, job_id: &str, to: &str, error: &str) {
        let mut inner = self.lock();
        match inner.jobs.get_mut(job_id) {
            Some(status) => {
                status.state = DeliveryState::Failed;
                status.error = Some(error.to_owned());
                status.updated_at = now();
            }
            None => inner.insert(DeliveryStatus {
                job_id: job_id.to_owned(),
                to: to.to_owned(),
                coding: None,
                state: DeliveryState::Failed,
                parts: Vec::new(),
                error: Some(error.to_owned()),
                context: serde_json::Value::Null,
                updated_at: now(),
            }),
        }
    }

    /// Records a receipt; returns the job it belongs to, `None` when its message id is
    /// unknown (kept a while in case its `submit_sm_resp` is still on the way).
    pub fn receipt(&self, receipt: Receipt) -> Option<String> {
        let mut inner = self.lock();
        let Some((job_id, index)) = inner.messages.get(&receipt.message_id).cloned() else {
            if inner.early.len() < EARLY_RECEIPTS {
                inner.early.insert(receipt.message_id.clone(), receipt);
            }
            return None;
        };
        let status = inner.jobs.get_mut(&job_id)?;
        let before = status.state;
        if let Some(part) = status.parts.get_mut(index) {
            part.receipt = Some(receipt.state);
            part.receipt_error = receipt.error;
        }
        status.summarise();
        let settled = (status.state != before && status.state.is_final()).then(|| status.clone());
        drop(inner);
        if let Some(status) = settled {
            (self.on_outcome)(&status);
        }
        Some(job_id)
    }

    /// The status of `job_id`, when this process submitted it.
    pub fn get(&self, job_id: &str) -> Option<DeliveryStatus> {
        self.lock().jobs.get(job_id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::Value;

    use super::*;

    fn receipt(id: &str, state: ReceiptState) -> Receipt {
        Receipt { message_id: id.into(), state, error: None }
    }

    #[test]
    fn parts_accepted_before_are_not_sent_again_and_receipts_settle_the_state() {
        let finals = Arc::new(AtomicUsize::new(0));
        let counted = finals.clone();
        let d = Deliveries::new(Box::new(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
        }));
        assert_eq!(d.begin("j", "+4915112345678", "gsm7", 2, Value::Null), [None, None]);
        d.accepted("j", 0, "m0");
        assert_eq!(d.get("j").unwrap().state, DeliveryState::Submitting);
        assert_eq!(d.begin("j", "+4915112345678", "gsm7", 2, Value::Null), [Some("m0".into()), None]);
        // The receipt of part 1 overtakes its submit_sm_resp.
        assert_eq!(d.receipt(receipt("m1", ReceiptState::Delivered)), None);
        d.accepted("j", 1, "m1");
        assert_eq!(d.get("j").unwrap().state, DeliveryState::Submitted);
        assert_eq!(d.receipt(receipt("m0", ReceiptState::Pending)), Some("j".into()));
        assert_eq!(d.get("j").unwrap().state, DeliveryState::Submitted);
        d.receipt(receipt("m0", ReceiptState::Delivered));
        assert_eq!(d.get("j").unwrap().state, DeliveryState::Delivered);
        assert_eq!(finals.load(Ordering::Relaxed), 1);

        d.begin("k", "+4915112345678", "ucs2", 1, Value::Null);
        d.accepted("k", 0, "n0");
        d.receipt(receipt("n0", ReceiptState::Expired));
        assert_eq!(d.get("k").unwrap().state, DeliveryState::Expired);
        d.begin("u", "+4915112345678", "ucs2", 2, Value::Null);
        d.accepted("u", 0, "u0");
        d.accepted("u", 1, "u1");
        d.receipt(receipt("u1", ReceiptState::Undeliverable));
        assert_eq!(d.get("u").unwrap().state, DeliveryState::Undeliverable);
        assert_eq!(finals.load(Ordering::Relaxed), 3);
        assert_eq!(d.begin("u", "+4915112345678", "ucs2", 2, Value::Null), [None, None], "a final job starts afresh");
        d.failed("u", "+4915112345678", "x");
        assert_eq!(d.get("u").unwrap().error.as_deref(), Some("x"));
        d.failed("v", "+49", "bad number");
        let v = d.get("v").unwrap();
        assert_eq!((v.state, v.coding, v.parts.len()), (DeliveryState::Failed, None, 0));
    }
}
