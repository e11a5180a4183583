//! `herald:worker/gateway`: sending notifications through configured gateways.
//!
//! Every channel takes the same path. The host checks that the gateway
//! delivers on the channel and that the notification is well formed, then
//! looks the idempotency key up in the delivery log. A key already sent
//! returns the earlier receipt and is logged as `duplicate-suppressed`.
//! Otherwise the notification goes out and its `sent` rows are committed at
//! once.

use std::time::Duration;

use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::audit::{DeliveryRecord, DeliveryStatus};
use crate::clock;
use crate::gateway::{
    Channel, Notification, OutgoingEmail, Push, SendContext, SendError, Sms, WebhookEvent,
};
use crate::queue::new_id;
use crate::runtime::bindings::gateway as wit;
use crate::runtime::bindings::types::TemplateRef;
use crate::runtime::state::{BatchScope, PendingDelivery, WorkerState};

/// A send as the worker asked for it, before the host checks it.
struct Request {
    message_id: String,
    gateway: String,
    channel: Channel,
    /// The notification, or the reason it is malformed, with the recipients
    /// to log a malformed one against.
    notification: Result<Notification, (SendError, Vec<String>)>,
    idempotency_key: Option<String>,
    template: Option<TemplateRef>,
}

impl wit::Host for WorkerState {
    async fn send_email(
        &mut self,
        message_id: String,
        gateway: String,
        email: wit::Email,
    ) -> Result<wit::Receipt, wit::SendError> {
        let request = Request {
            message_id,
            gateway,
            channel: Channel::Email,
            idempotency_key: email.idempotency_key.clone(),
            template: email.template.clone(),
            notification: Ok(Notification::Email(OutgoingEmail::from(email))),
        };
        self.send(request).await
    }

    async fn send_sms(
        &mut self,
        message_id: String,
        gateway: String,
        sms: wit::Sms,
    ) -> Result<wit::Receipt, wit::SendError> {
        let request = Request {
            message_id,
            gateway,
            channel: Channel::Sms,
            idempotency_key: sms.idempotency_key,
            template: sms.template,
            notification: Ok(Notification::Sms(Sms {
                to: sms.to,
                from: sms.from,
                body: sms.body,
            })),
        };
        self.send(request).await
    }

    async fn send_push(
        &mut self,
        message_id: String,
        gateway: String,
        push: wit::Push,
    ) -> Result<wit::Receipt, wit::SendError> {
        let request = Request {
            message_id,
            gateway,
            channel: Channel::Push,
            idempotency_key: push.idempotency_key,
            template: push.template,
            notification: Ok(Notification::Push(Push {
                token: push.token,
                title: push.title,
                body: push.body,
                data: push.data,
            })),
        };
        self.send(request).await
    }

    async fn send_webhook(
        &mut self,
        message_id: String,
        gateway: String,
        event: wit::WebhookEvent,
    ) -> Result<wit::Receipt, wit::SendError> {
        let notification = WebhookEvent::new(event.event_type.clone(), &event.data)
            .map(Notification::Webhook)
            .map_err(|error| (error, vec![event.event_type]));
        let request = Request {
            message_id,
            gateway,
            channel: Channel::Webhook,
            idempotency_key: event.idempotency_key,
            template: None,
            notification,
        };
        self.send(request).await
    }
}

impl WorkerState {
    /// Runs one send and keeps the time it took apart from the guest's own.
    async fn send(&mut self, request: Request) -> Result<wit::Receipt, wit::SendError> {
        let span = tracing::info_span!(
            "herald.gateway.send",
            worker = %self.scope.worker,
            version = self.scope.version,
            message_id = %request.message_id,
            gateway = %request.gateway,
            channel = request.channel.as_str(),
        );
        let started = std::time::Instant::now();
        self.scope.gateway_call_started = Some(started);
        let result = send(&mut self.scope, request)
            .instrument(span)
            .await
            .map_err(wit::SendError::from);
        self.scope.gateway_call_started = None;
        self.scope.gateway_time += started.elapsed();
        result
    }
}

async fn send(scope: &mut BatchScope, request: Request) -> Result<wit::Receipt, SendError> {
    let Request {
        message_id,
        gateway: gateway_name,
        channel,
        notification,
        idempotency_key,
        template,
    } = request;
    let Some(&attempt) = scope.attempts.get(&message_id) else {
        return Err(SendError::InvalidInput(format!(
            "message \"{message_id}\" is not in this batch; pass the id of the message being handled"
        )));
    };
    let row = |gateway: &str, recipient: &str, key: &str, status: DeliveryStatus| DeliveryRecord {
        id: new_id(),
        message_id: message_id.clone(),
        worker: scope.worker.to_string(),
        worker_version: scope.version,
        channel: channel.as_str().to_owned(),
        gateway: gateway.to_owned(),
        recipient: recipient.to_owned(),
        idempotency_key: key.to_owned(),
        status,
        provider_id: None,
        attempt,
        error: None,
        template: template.as_ref().map(|template| template.name.clone()),
        template_version: template.as_ref().map(|template| template.version),
        created_at: clock::now_ms(),
    };
    // A notification the host rejects before any gateway receives it is
    // logged as failed against each recipient it named, and never sent.
    let mut reject = |error: SendError, recipients: &[String], key: &str| {
        tracing::info!(%error, "send rejected");
        for recipient in recipients {
            let mut record = row(&gateway_name, recipient, key, DeliveryStatus::Failed);
            record.error = Some(error.to_string());
            scope.pending_deliveries.push(PendingDelivery {
                record,
                status_is_final: false,
                gateway_contacted: false,
            });
        }
        error
    };

    let notification = match notification {
        Ok(notification) => notification,
        Err((error, recipients)) => {
            let key = idempotency_key.unwrap_or_default();
            return Err(reject(error, &recipients, &key));
        }
    };
    let gateway = match scope.services.gateways.resolve(&gateway_name, channel) {
        Ok(gateway) => gateway,
        Err(error) => {
            tracing::info!(%error, "send rejected");
            return Err(error);
        }
    };
    let recipients = match gateway.recipients(&notification) {
        Ok(recipients) => recipients,
        Err(error) => {
            let key = idempotency_key.unwrap_or_default();
            return Err(reject(error, &claimed_recipients(&notification), &key));
        }
    };
    let key = idempotency_key.unwrap_or_else(|| {
        let targets = match &notification {
            Notification::Webhook(event) => std::slice::from_ref(&event.event_type),
            _ => recipients.as_slice(),
        };
        derive_key(&message_id, channel.as_str(), targets)
    });

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
        for recipient in &recipients {
            let mut record = row(
                &gateway_name,
                recipient,
                &key,
                DeliveryStatus::DuplicateSuppressed,
            );
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

    let context = SendContext {
        delivery_id: new_id(),
        stable_id: stable_id(&scope.worker, &key),
    };
    let delivery_id = context.delivery_id.clone();
    match services
        .gateways
        .send(&gateway, &notification, &context)
        .await
    {
        Ok(mut accepted) => {
            // The receipt names the gateway the worker asked for, unless its
            // fallback took the send. Under `herald run` every name resolves
            // to one outbox, which still reports the name asked for.
            if accepted.gateway == gateway.name() {
                accepted.gateway = gateway_name.clone();
            }
            let records: Vec<DeliveryRecord> = recipients
                .iter()
                .enumerate()
                .map(|(index, recipient)| {
                    let mut record = row(&accepted.gateway, recipient, &key, DeliveryStatus::Sent);
                    if index == 0 {
                        record.id = delivery_id.clone();
                    }
                    record.provider_id = Some(accepted.provider_id.clone());
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
                // The notification went out but the log does not show it, so
                // a retry of this message could send it again.
                Err(error) => {
                    tracing::error!(delivery = %delivery_id, %error, "failed to record a sent notification")
                }
            }
            tracing::debug!(
                delivery = %delivery_id,
                provider_id = %accepted.provider_id,
                via = %accepted.gateway,
                "sent"
            );
            Ok(wit::Receipt {
                delivery_id,
                gateway: accepted.gateway,
                provider_id: accepted.provider_id,
                duplicate: false,
            })
        }
        Err(error) => {
            tracing::info!(delivery = %delivery_id, %error, "send failed");
            for recipient in &recipients {
                let mut record = row(&gateway_name, recipient, &key, DeliveryStatus::Failed);
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

/// Returns the recipients a malformed notification named, for its failed
/// rows.
fn claimed_recipients(notification: &Notification) -> Vec<String> {
    match notification {
        Notification::Email(email) => email
            .to
            .iter()
            .chain(&email.cc)
            .chain(&email.bcc)
            .cloned()
            .collect(),
        Notification::Sms(sms) => vec![sms.to.clone()],
        Notification::Push(push) => vec![push.token.clone()],
        Notification::Webhook(event) => vec![event.event_type.clone()],
    }
}

/// Returns an id that is the same on every attempt of one send, such as the
/// `webhook-id` a receiver deduplicates on.
fn stable_id(worker: &str, key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(worker.as_bytes());
    hasher.update(b"\n");
    hasher.update(key.as_bytes());
    format!("msg_{}", &hex::encode(hasher.finalize())[..32])
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
