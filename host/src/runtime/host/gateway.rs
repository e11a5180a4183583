//! `herald:worker/gateway`: sending notifications through configured gateways.
//!
//! Before a send, the host looks the idempotency key up in the delivery log.
//! A key already sent returns the earlier receipt and is logged as
//! `duplicate-suppressed`. Otherwise the email goes out and its `sent` rows
//! are committed at once.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::audit::{DeliveryRecord, DeliveryStatus};
use crate::clock;
use crate::gateway::{OutgoingEmail, SendError, email};
use crate::queue::new_id;
use crate::runtime::bindings::gateway as wit;
use crate::runtime::state::{BatchScope, PendingDelivery, WorkerState};

/// Channel name of email in the delivery log.
const EMAIL: &str = "email";

impl wit::Host for WorkerState {
    async fn send_email(
        &mut self,
        message_id: String,
        gateway: String,
        email: wit::Email,
    ) -> Result<wit::Receipt, wit::SendError> {
        let span = tracing::info_span!(
            "herald.gateway.send_email",
            worker = %self.scope.worker,
            version = self.scope.version,
            message_id = %message_id,
            gateway = %gateway,
        );
        let started = std::time::Instant::now();
        self.scope.gateway_call_started = Some(started);
        let result = send_email(&mut self.scope, message_id, gateway, email)
            .instrument(span)
            .await
            .map_err(wit::SendError::from);
        self.scope.gateway_call_started = None;
        self.scope.gateway_time += started.elapsed();
        result
    }

    async fn send_sms(
        &mut self,
        _message_id: String,
        _gateway: String,
        _sms: wit::Sms,
    ) -> Result<wit::Receipt, wit::SendError> {
        Err(wit::SendError::Permanent("sms is not supported yet".into()))
    }

    async fn send_push(
        &mut self,
        _message_id: String,
        _gateway: String,
        _push: wit::Push,
    ) -> Result<wit::Receipt, wit::SendError> {
        Err(wit::SendError::Permanent(
            "push is not supported yet".into(),
        ))
    }

    async fn send_webhook(
        &mut self,
        _message_id: String,
        _gateway: String,
        _event: wit::WebhookEvent,
    ) -> Result<wit::Receipt, wit::SendError> {
        Err(wit::SendError::Permanent(
            "webhook is not supported yet".into(),
        ))
    }
}

async fn send_email(
    scope: &mut BatchScope,
    message_id: String,
    gateway_name: String,
    email: wit::Email,
) -> Result<wit::Receipt, SendError> {
    let Some(&attempt) = scope.attempts.get(&message_id) else {
        return Err(SendError::InvalidInput(format!(
            "message \"{message_id}\" is not in this batch; pass the id of the message being handled"
        )));
    };
    let requested_key = email.idempotency_key.clone();
    let outgoing = OutgoingEmail::from(email);
    let row = |recipient: &str, key: &str, status: DeliveryStatus| DeliveryRecord {
        id: new_id(),
        message_id: message_id.clone(),
        worker: scope.worker.to_string(),
        worker_version: scope.version,
        channel: EMAIL.to_owned(),
        gateway: gateway_name.clone(),
        recipient: recipient.to_owned(),
        idempotency_key: key.to_owned(),
        status,
        provider_id: None,
        attempt,
        error: None,
        created_at: clock::now_ms(),
    };

    let Some(gateway) = scope.services.gateways.get(&gateway_name) else {
        let error = SendError::Permanent(format!(
            "gateway \"{gateway_name}\" is not configured; configured gateways: {}",
            scope.services.gateways.names().join(", ")
        ));
        tracing::info!(%error, "send rejected");
        return Err(error);
    };

    let delivery_id = new_id();
    let prepared = match email::prepare(&outgoing, gateway.default_from(), &delivery_id) {
        Ok(prepared) => prepared,
        Err(error) => {
            tracing::info!(%error, "send rejected");
            let key = requested_key.unwrap_or_default();
            let recipients = outgoing.to.iter().chain(&outgoing.cc).chain(&outgoing.bcc);
            for recipient in recipients {
                let mut record = row(recipient, &key, DeliveryStatus::Failed);
                record.error = Some(error.to_string());
                scope.pending_deliveries.push(PendingDelivery {
                    record,
                    status_is_final: false,
                    gateway_contacted: false,
                });
            }
            return Err(error);
        }
    };
    let key = requested_key.unwrap_or_else(|| derive_key(&message_id, EMAIL, &prepared.recipients));

    // Held until the `sent` rows are committed, so a concurrent send of the
    // same key waits and then finds them.
    let services = std::sync::Arc::clone(&scope.services);
    let _key_lock = services
        .send_locks
        .lock(&format!("{}\n{key}", scope.worker))
        .await;
    let audit = &scope.services.audit;
    let earlier = audit
        .find_sent(scope.worker.to_string(), key.clone())
        .await
        .map_err(|error| {
            tracing::error!(%error, "failed to read the delivery log before sending");
            SendError::Transient(format!("delivery log unavailable: {error}"))
        })?;
    if let Some(earlier) = earlier {
        tracing::info!(delivery = %earlier.delivery_id, "already sent, suppressing duplicate");
        for recipient in &prepared.recipients {
            let mut record = row(recipient, &key, DeliveryStatus::DuplicateSuppressed);
            record.provider_id = Some(earlier.provider_id.clone());
            scope.pending_deliveries.push(PendingDelivery {
                record,
                status_is_final: true,
                gateway_contacted: false,
            });
        }
        return Ok(wit::Receipt {
            delivery_id: earlier.delivery_id,
            gateway: earlier.gateway,
            provider_id: earlier.provider_id,
            duplicate: true,
        });
    }

    match gateway.send_email(&prepared).await {
        Ok(provider_id) => {
            let records: Vec<DeliveryRecord> = prepared
                .recipients
                .iter()
                .enumerate()
                .map(|(index, recipient)| {
                    let mut record = row(recipient, &key, DeliveryStatus::Sent);
                    if index == 0 {
                        record.id = delivery_id.clone();
                    }
                    record.provider_id = Some(provider_id.clone());
                    record
                })
                .collect();
            match audit.record_sent(records).await {
                Ok(0) => {}
                Ok(skipped) => tracing::warn!(
                    delivery = %delivery_id,
                    skipped,
                    "sent rows already existed for this key and recipient; another process may \
                     have sent the same key"
                ),
                // The email went out but the log does not show it, so a retry
                // of this message could send it again.
                Err(error) => {
                    tracing::error!(delivery = %delivery_id, %error, "failed to record a sent email")
                }
            }
            tracing::debug!(delivery = %delivery_id, provider_id = %provider_id, "sent");
            Ok(wit::Receipt {
                delivery_id,
                gateway: gateway_name,
                provider_id,
                duplicate: false,
            })
        }
        Err(error) => {
            tracing::info!(delivery = %delivery_id, %error, "send failed");
            for recipient in &prepared.recipients {
                let mut record = row(recipient, &key, DeliveryStatus::Failed);
                record.error = Some(error.to_string());
                scope.pending_deliveries.push(PendingDelivery {
                    record,
                    status_is_final: false,
                    gateway_contacted: true,
                });
            }
            Err(error)
        }
    }
}

/// Derives the default idempotency key of a send from the message id, the
/// channel and the recipients, ignoring their order and case.
fn derive_key(message_id: &str, channel: &str, recipients: &[String]) -> String {
    let mut sorted: Vec<String> = recipients
        .iter()
        .map(|recipient| recipient.to_lowercase())
        .collect();
    sorted.sort();
    let mut hasher = Sha256::new();
    hasher.update(message_id.as_bytes());
    hasher.update(b"\n");
    hasher.update(channel.as_bytes());
    for recipient in &sorted {
        hasher.update(b"\n");
        hasher.update(recipient.as_bytes());
    }
    format!("auto:{}", hex::encode(hasher.finalize()))
}

impl From<wit::Email> for OutgoingEmail {
    fn from(email: wit::Email) -> Self {
        Self {
            from: email.from,
            to: email.to,
            cc: email.cc,
            bcc: email.bcc,
            reply_to: email.reply_to,
            subject: email.subject,
            text: email.text,
            html: email.html,
            headers: email
                .headers
                .into_iter()
                .map(|header| (header.name, header.value))
                .collect(),
        }
    }
}

impl From<SendError> for wit::SendError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Transient(message) => Self::Transient(message),
            SendError::Permanent(message) => Self::Permanent(message),
            SendError::RateLimited {
                message,
                retry_after,
            } => Self::RateLimited(wit::RateLimited {
                message,
                retry_after_seconds: seconds(retry_after),
            }),
            SendError::InvalidInput(message) => Self::InvalidInput(message),
        }
    }
}

fn seconds(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs_f64().ceil() as u64).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_key_ignores_recipient_order_and_case() {
        let one = derive_key(
            "m1",
            "email",
            &["a@example.com".into(), "B@example.com".into()],
        );
        let two = derive_key(
            "m1",
            "email",
            &["b@example.com".into(), "a@example.com".into()],
        );
        assert_eq!(one, two);
    }

    #[test]
    fn derived_key_depends_on_message_and_channel() {
        let recipients = ["a@example.com".to_owned()];
        let base = derive_key("m1", "email", &recipients);
        assert_ne!(base, derive_key("m2", "email", &recipients));
        assert_ne!(base, derive_key("m1", "sms", &recipients));
    }
}
