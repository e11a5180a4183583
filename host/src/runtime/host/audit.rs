//! `herald:worker/audit`: application events recorded against a message.

use crate::audit::AuditEvent;
use crate::runtime::bindings::audit as wit;
use crate::runtime::state::WorkerState;

/// Maximum length of an event name, in bytes.
const MAX_EVENT_BYTES: usize = 200;

/// Maximum size of an event's detail, in bytes.
const MAX_DETAIL_BYTES: usize = 64 * 1024;

impl wit::Host for WorkerState {
    async fn record_event(
        &mut self,
        message_id: String,
        event: String,
        detail: String,
    ) -> Result<(), String> {
        let scope = &self.scope;
        if !scope.attempts.contains_key(&message_id) {
            return Err(format!(
                "message \"{message_id}\" is not in this batch; pass the id of the message being handled"
            ));
        }
        if event.is_empty() || event.len() > MAX_EVENT_BYTES {
            return Err(format!(
                "event name must be 1 to {MAX_EVENT_BYTES} bytes, got {}",
                event.len()
            ));
        }
        if detail.len() > MAX_DETAIL_BYTES {
            return Err(format!(
                "detail is {} bytes; the maximum is {MAX_DETAIL_BYTES}",
                detail.len()
            ));
        }
        if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(&detail) {
            return Err(format!("detail is not valid JSON: {error}"));
        }
        let recorded = scope
            .services
            .audit
            .record_event(AuditEvent {
                message_id: message_id.clone(),
                worker: scope.worker.to_string(),
                worker_version: scope.version,
                event,
                detail,
            })
            .await;
        match recorded {
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::error!(worker = %scope.worker, message_id = %message_id, %error, "failed to record audit event");
                Err(format!("audit log unavailable: {error}"))
            }
        }
    }
}
