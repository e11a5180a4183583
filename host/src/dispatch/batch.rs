//! One reserved batch, from instance to recorded outcome.
//!
//! A batch runs in one instance. When it traps, the batch is split in halves
//! and each half runs in a fresh instance, recursively, so one poison message
//! among `n` is isolated in about `log2(n)` extra runs while its neighbours
//! complete. Each run that finishes records its outcomes at once, so progress
//! survives a crash in a later half. The reservation is extended while any of
//! this runs.

use std::sync::Arc;
use std::time::Duration;

use crate::audit::{DeliveryRecord, DeliveryStatus};
use crate::config::Binding;
use crate::queue::backoff::Backoff;
use crate::queue::{DeadLetter, Disposition, FinishParams, Queue, ReservedMessage};
use crate::runtime::{
    BatchRun, BatchScope, Fault, HostServices, InstanceLimits, PendingDelivery, PreparedWorker,
    Runtime, WorkerOutcome,
};

/// Maximum delay a worker may request in a retry or defer outcome: one year,
/// the same as the maximum enqueue delay.
const MAX_WORKER_DELAY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Everything a batch needs, shared by the runs of one reservation.
pub struct BatchContext {
    /// The runtime that instantiates the worker.
    pub runtime: Arc<Runtime>,
    /// Services lent to the instance.
    pub services: Arc<HostServices>,
    /// The worker version that handles the batch.
    pub worker: Arc<PreparedWorker>,
    /// The worker's effective settings.
    pub binding: Arc<Binding>,
    /// Reservation of the messages.
    pub reservation_id: String,
}

/// Summary of a whole reservation's outcomes, for the caller's log and tests.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// Messages completed.
    pub completed: usize,
    /// Messages rescheduled (retry or defer).
    pub rescheduled: usize,
    /// Messages dead-lettered.
    pub dead: Vec<DeadLetter>,
    /// Instances run, including the halves of split batches.
    pub runs: usize,
    /// Faults seen, one per faulted run.
    pub faults: Vec<Fault>,
}

impl BatchContext {
    fn queue(&self) -> &Queue {
        &self.services.queue
    }

    /// Runs `messages` and records their outcomes, splitting the batch on a
    /// trap. Extends the reservation every third of its timeout meanwhile,
    /// from a task of its own, so that a guest that keeps this task busy
    /// cannot let the reservation lapse.
    pub async fn process(&self, messages: Vec<ReservedMessage>) -> BatchReport {
        let timeout = self.binding.reservation_timeout;
        let touch_every = (timeout / 3).max(Duration::from_millis(100));
        let queue = self.queue().clone();
        let reservation_id = self.reservation_id.clone();
        let _touch = AbortOnDrop(tokio::spawn(async move {
            let mut interval = tokio::time::interval(touch_every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                match queue.touch(reservation_id.clone(), timeout).await {
                    Ok(held) => {
                        tracing::debug!(reservation = %reservation_id, held, "extended reservation")
                    }
                    Err(error) => {
                        tracing::warn!(reservation = %reservation_id, %error, "failed to extend reservation")
                    }
                }
            }
        }));

        let mut report = BatchReport::default();
        self.process_split(messages, &mut report).await;
        report
    }

    /// Runs `messages` in one instance. On a trap with more than one message,
    /// it runs each half the same way.
    async fn process_split(&self, messages: Vec<ReservedMessage>, report: &mut BatchReport) {
        // An explicit stack instead of recursion, since async recursion needs
        // boxing. Halves run left first, so order within a batch is kept.
        let mut pending = vec![messages];
        while let Some(messages) = pending.pop() {
            let run = self.run(&messages).await;
            report.runs += 1;
            match run.result {
                Ok(outcomes) => {
                    let dispositions = messages
                        .iter()
                        .zip(outcomes)
                        .map(|(message, outcome)| {
                            (message.id.clone(), self.disposition(message, outcome))
                        })
                        .collect();
                    self.finish(
                        &messages,
                        dispositions,
                        run.scope.pending_deliveries,
                        report,
                    )
                    .await;
                }
                Err(fault) => {
                    let ids = summarize_ids(&messages);
                    tracing::warn!(
                        worker = %self.worker.name,
                        version = self.worker.version,
                        reservation = %self.reservation_id,
                        message_ids = %ids,
                        %fault,
                        "batch faulted"
                    );
                    report.faults.push(fault.clone());
                    let time_in_gateways = run.scope.time_in_gateways();
                    if messages.len() > 1 && splits(&fault, time_in_gateways, self.binding.deadline)
                    {
                        let mut left = messages;
                        let right = left.split_off(left.len().div_ceil(2));
                        pending.push(right);
                        pending.push(left);
                        // `sent` rows of this run are already committed, so
                        // the halves suppress those sends.
                        self.record_orphan_rows(run.scope.pending_deliveries).await;
                        continue;
                    }
                    let dispositions = messages
                        .iter()
                        .map(|message| {
                            let outcome = WorkerOutcome::Retry {
                                error: fault.to_string(),
                                delay: None,
                            };
                            (message.id.clone(), self.disposition(message, outcome))
                        })
                        .collect();
                    self.finish(
                        &messages,
                        dispositions,
                        run.scope.pending_deliveries,
                        report,
                    )
                    .await;
                }
            }
        }
    }

    async fn run(&self, messages: &[ReservedMessage]) -> BatchRun {
        let scope = BatchScope::new(
            Arc::from(self.worker.name.as_str()),
            self.worker.version,
            Arc::clone(&self.services),
            Arc::new(self.binding.settings.clone()),
        );
        let limits = InstanceLimits {
            memory: self.binding.memory_limit,
            deadline: self.binding.deadline,
        };
        let run = self
            .runtime
            .run_batch(&self.worker, messages, scope, limits)
            .await;
        self.log_output(&run);
        if run.dropped_output > 0 {
            tracing::warn!(
                worker = %self.worker.name,
                dropped_bytes = run.dropped_output,
                "dropped worker stdout/stderr over the per-batch limit"
            );
        }
        if run.scope.dropped_log_lines > 0 {
            tracing::warn!(
                worker = %self.worker.name,
                dropped = run.scope.dropped_log_lines,
                "dropped worker log lines over the per-batch limit"
            );
        }
        run
    }

    fn log_output(&self, run: &BatchRun) {
        for (stream, bytes) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            if bytes.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(bytes);
            for line in text.lines().filter(|line| !line.trim().is_empty()) {
                tracing::info!(
                    target: "herald::worker",
                    worker = %self.worker.name,
                    version = self.worker.version,
                    stream,
                    "{line}"
                );
            }
        }
    }

    /// Turns a worker's outcome into what happens to the message, applying
    /// the binding's attempt and deferral limits and its backoff.
    fn disposition(&self, message: &ReservedMessage, outcome: WorkerOutcome) -> Disposition {
        let binding = &self.binding;
        match outcome {
            WorkerOutcome::Done => Disposition::Complete,
            WorkerOutcome::Fail(reason) => Disposition::Dead { error: reason },
            WorkerOutcome::Retry { error, .. } if message.attempt >= binding.max_attempts => {
                Disposition::Dead {
                    error: format!("gave up after {} attempts: {error}", message.attempt),
                }
            }
            WorkerOutcome::Retry { error, delay } => {
                let backoff = Backoff {
                    base: binding.backoff_base,
                    cap: binding.backoff_cap,
                };
                let delay = delay.unwrap_or_else(|| backoff.delay(message.attempt));
                Disposition::Retry {
                    error,
                    delay: delay.min(MAX_WORKER_DELAY),
                }
            }
            WorkerOutcome::Defer(_) if message.deferrals >= binding.max_deferrals => {
                Disposition::Dead {
                    error: format!(
                        "deferred {} times, the maximum for this worker",
                        message.deferrals
                    ),
                }
            }
            WorkerOutcome::Defer(delay) => Disposition::Defer {
                delay: delay.min(MAX_WORKER_DELAY),
            },
        }
    }

    async fn finish(
        &self,
        messages: &[ReservedMessage],
        dispositions: Vec<(String, Disposition)>,
        pending: Vec<PendingDelivery>,
        report: &mut BatchReport,
    ) {
        let deliveries = resolve_statuses(pending, &dispositions);
        for (_, disposition) in &dispositions {
            match disposition {
                Disposition::Complete => report.completed += 1,
                Disposition::Retry { .. } | Disposition::Defer { .. } => report.rescheduled += 1,
                Disposition::Dead { .. } => {}
            }
        }
        let params = FinishParams {
            reservation_id: self.reservation_id.clone(),
            dispositions,
            deliveries,
            dead_letters: self.binding.dead_letter_policy(&self.worker.name),
        };
        match self.queue().finish(params).await {
            Ok(finished) => {
                for id in &finished.stale {
                    tracing::warn!(
                        worker = %self.worker.name,
                        message_id = %id,
                        reservation = %self.reservation_id,
                        "reservation was lost before the outcome was recorded; outcome ignored"
                    );
                }
                for letter in &finished.dead {
                    tracing::info!(
                        worker = %self.worker.name,
                        message_id = %letter.id,
                        attempts = letter.attempts,
                        error = %letter.error,
                        "dead-lettered"
                    );
                }
                report.dead.extend(finished.dead);
            }
            Err(error) => {
                // The messages stay reserved and come back when the
                // reservation expires.
                let ids = summarize_ids(messages);
                tracing::error!(
                    worker = %self.worker.name,
                    reservation = %self.reservation_id,
                    message_ids = %ids,
                    %error,
                    "failed to record batch outcome"
                );
            }
        }
    }

    /// Writes the failed gateway attempts of a faulted run, which would
    /// otherwise be lost. Their messages run again in a half of the batch, so
    /// they are recorded as `retrying`. Rows of notifications that never
    /// reached a gateway (invalid input, suppressed duplicates) are dropped,
    /// because the rerun records them again.
    async fn record_orphan_rows(&self, pending: Vec<PendingDelivery>) {
        let rows: Vec<DeliveryRecord> = pending
            .into_iter()
            .filter(|pending| pending.gateway_contacted)
            .map(|pending| {
                let mut record = pending.record;
                record.status = DeliveryStatus::Retrying;
                record
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        let params = FinishParams {
            reservation_id: self.reservation_id.clone(),
            deliveries: rows,
            ..FinishParams::default()
        };
        if let Err(error) = self.queue().finish(params).await {
            tracing::error!(worker = %self.worker.name, %error, "failed to record delivery rows of a faulted run");
        }
    }
}

/// Aborts a task when dropped, including when the batch itself is aborted
/// on shutdown.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Returns whether a fault may be caused by one message, so that splitting
/// the batch can isolate it. A wrong outcome count or a failed instantiation
/// is the worker's or host's fault whatever the batch holds. A deadline that
/// passed while the batch mostly waited on gateways points at a slow gateway,
/// not a message, and splitting would only multiply the waiting.
fn splits(fault: &Fault, time_in_gateways: Duration, deadline: Duration) -> bool {
    match fault {
        Fault::Trap(_) => true,
        Fault::Deadline(_) => time_in_gateways < deadline / 2,
        Fault::OutcomeCount { .. } | Fault::Instantiate(_) => false,
    }
}

/// Lists the ids of `messages` for a log line: all of them for a small
/// batch, the first ten and a count for a large one.
fn summarize_ids(messages: &[ReservedMessage]) -> String {
    const SHOWN: usize = 10;
    let shown: Vec<&str> = messages
        .iter()
        .take(SHOWN)
        .map(|message| message.id.as_str())
        .collect();
    let mut text = shown.join(",");
    if messages.len() > SHOWN {
        text.push_str(&format!(" (+{} more)", messages.len() - SHOWN));
    }
    text
}

/// Gives each pending row its final status from its message's disposition.
fn resolve_statuses(
    pending: Vec<PendingDelivery>,
    dispositions: &[(String, Disposition)],
) -> Vec<DeliveryRecord> {
    pending
        .into_iter()
        .map(|pending| {
            let mut record = pending.record;
            if !pending.status_is_final {
                let disposition = dispositions
                    .iter()
                    .find(|(id, _)| *id == record.message_id)
                    .map(|(_, disposition)| disposition);
                record.status = match disposition {
                    Some(Disposition::Complete) | None => DeliveryStatus::Failed,
                    Some(Disposition::Retry { .. } | Disposition::Defer { .. }) => {
                        DeliveryStatus::Retrying
                    }
                    Some(Disposition::Dead { .. }) => DeliveryStatus::Dead,
                };
            }
            record
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    #[test]
    fn traps_split() {
        assert!(splits(
            &Fault::Trap("unreachable".into()),
            Duration::ZERO,
            DEADLINE
        ));
    }

    #[test]
    fn guest_deadline_splits() {
        let fault = Fault::Deadline(DEADLINE);
        assert!(splits(&fault, Duration::from_secs(1), DEADLINE));
    }

    #[test]
    fn gateway_bound_deadline_does_not_split() {
        let fault = Fault::Deadline(DEADLINE);
        assert!(!splits(&fault, Duration::from_secs(9), DEADLINE));
    }

    #[test]
    fn outcome_count_does_not_split() {
        let fault = Fault::OutcomeCount {
            expected: 2,
            actual: 1,
        };
        assert!(!splits(&fault, Duration::ZERO, DEADLINE));
    }
}
