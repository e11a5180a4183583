//! `herald:worker/queue`: enqueueing follow-up messages.

use std::time::Duration;

use crate::clock;
use crate::queue::{NewMessage, validate_queue_name};
use crate::runtime::bindings::queue as wit;
use crate::runtime::state::WorkerState;

impl wit::Host for WorkerState {
    async fn enqueue(
        &mut self,
        queue: String,
        payload: String,
        options: wit::EnqueueOptions,
    ) -> Result<String, String> {
        validate_queue_name(&queue)?;
        if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(&payload) {
            return Err(format!("payload is not valid JSON: {error}"));
        }
        let delay = Duration::from_secs(options.delay_seconds.unwrap_or(0).into());
        let message = NewMessage {
            payload,
            run_at: clock::now_ms() + delay.as_millis() as i64,
            priority: options.priority.unwrap_or(0),
            idempotency_key: options.idempotency_key,
        };
        let scope = &self.scope;
        match scope
            .services
            .queue
            .enqueue(queue.clone(), vec![message])
            .await
        {
            Ok(mut enqueued) => Ok(enqueued.remove(0).id),
            Err(error) => {
                tracing::error!(worker = %scope.worker, queue, %error, "failed to enqueue for a worker");
                Err(format!("queue unavailable: {error}"))
            }
        }
    }
}
