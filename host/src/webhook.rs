//! Failure webhooks: a signed POST for each dead letter of a worker whose
//! binding names a `failure_webhook`.
//!
//! A notice is queued on [`FAILURE_NOTICE_QUEUE`] in the same transaction that
//! dead-letters the message, so a process crash cannot separate the two. This module consumes
//! that queue with the same reservation, retry and dead-letter rules as
//! workers use, without a WebAssembly instance.
//!
//! The request body is the JSON [`FailureNotice`]. The header
//! `Herald-Signature: t=<unix seconds>,v1=<hex>` carries an HMAC-SHA256 of
//! `<unix seconds>.<body>` keyed with the secret from the environment
//! variable the binding names. A receiver recomputes it and rejects stale
//! timestamps to stop replays.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::watch;

use crate::config::Config;
use crate::queue::backoff::Backoff;
use crate::queue::{
    DeadLetterPolicy, Disposition, FAILURE_NOTICE_QUEUE, FailureNotice, FinishParams, Queue,
    ReserveParams,
};

/// Header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Herald-Signature";

/// Attempts per notice before it is dead-lettered on its own queue.
const MAX_ATTEMPTS: u32 = 10;

/// Timeout of one POST.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Notices sent per reservation.
const BATCH: u32 = 10;

const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(5),
    cap: Duration::from_secs(10 * 60),
};

/// Returns the `Herald-Signature` value for `body` sent at `timestamp`
/// (Unix seconds).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Sends queued failure notices until `stopping` becomes true.
pub async fn run_sender(queue: Queue, config: Arc<Config>, mut stopping: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "failed to create the webhook client; failure webhooks are off");
            return;
        }
    };
    let wakeup = queue.subscribe(FAILURE_NOTICE_QUEUE);
    let poll = Duration::from_millis(config.queue.poll_interval_ms.max(10));

    while !*stopping.borrow() {
        let params = ReserveParams {
            queue: FAILURE_NOTICE_QUEUE.to_owned(),
            limit: BATCH,
            timeout: REQUEST_TIMEOUT * (BATCH + 1),
            max_attempts: MAX_ATTEMPTS,
            dead_letters: DeadLetterPolicy::default(),
            reservation_id: None,
        };
        let reservation = match queue.reserve(params).await {
            Ok(reservation) => reservation,
            Err(error) => {
                tracing::error!(%error, "failed to reserve failure notices");
                tokio::time::sleep(poll).await;
                continue;
            }
        };
        if reservation.messages.is_empty() {
            tokio::select! {
                () = wakeup.notified() => {}
                () = tokio::time::sleep(poll) => {}
                _ = stopping.changed() => {}
            }
            continue;
        }

        let mut dispositions = Vec::with_capacity(reservation.messages.len());
        for message in &reservation.messages {
            // On shutdown, record what was sent and release the rest below.
            if *stopping.borrow() {
                break;
            }
            let disposition = match deliver(&client, &config, &message.payload).await {
                Ok(()) => Disposition::Complete,
                Err(error) if message.attempt >= MAX_ATTEMPTS => {
                    tracing::error!(notice = %message.id, %error, "giving up on a failure webhook");
                    Disposition::Dead { error }
                }
                Err(error) => {
                    tracing::warn!(notice = %message.id, attempt = message.attempt, %error, "failure webhook failed, will retry");
                    Disposition::Retry {
                        error,
                        delay: BACKOFF.delay(message.attempt),
                    }
                }
            };
            dispositions.push((message.id.clone(), disposition));
        }
        let unsent = reservation.messages.len() - dispositions.len();
        let finish = FinishParams {
            reservation_id: reservation.id.clone(),
            dispositions,
            ..FinishParams::default()
        };
        if let Err(error) = queue.finish(finish).await {
            tracing::error!(%error, "failed to record failure notice outcomes");
        }
        if unsent > 0 {
            match queue.release(reservation.id).await {
                Ok(released) => tracing::info!(released, "released failure notices on shutdown"),
                Err(error) => tracing::error!(%error, "failed to release failure notices"),
            }
        }
    }
}

/// POSTs one notice to its worker's webhook.
async fn deliver(client: &reqwest::Client, config: &Config, payload: &str) -> Result<(), String> {
    let notice: FailureNotice = serde_json::from_str(payload)
        .map_err(|error| format!("unreadable failure notice: {error}"))?;
    let binding = config.binding(&notice.worker);
    let Some(webhook) = binding.failure_webhook else {
        tracing::info!(worker = %notice.worker, message_id = %notice.message_id, "worker has no failure webhook any more, dropping notice");
        return Ok(());
    };
    let secret = std::env::var(&webhook.secret_env)
        .map_err(|_| format!("environment variable {} is not set", webhook.secret_env))?;

    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let body = payload.as_bytes().to_vec();
    let signature = sign(secret.as_bytes(), timestamp, &body);
    let response = client
        .post(&webhook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header("Herald-Event", notice.event.as_str())
        .body(body)
        .send()
        .await
        .map_err(|error| format!("POST {} failed: {error}", webhook.url))?;
    let status = response.status();
    if status.is_success() {
        tracing::info!(worker = %notice.worker, message_id = %notice.message_id, "sent failure webhook");
        Ok(())
    } else {
        Err(format!("POST {} returned {status}", webhook.url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_timestamp_and_body() {
        let signature = sign(b"secret", 1_700_000_000, b"{}");
        assert!(signature.starts_with("t=1700000000,v1="), "{signature}");
        assert_eq!(signature.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(signature, sign(b"secret", 1_700_000_001, b"{}"));
        assert_ne!(signature, sign(b"secret", 1_700_000_000, b"{ }"));
        assert_ne!(signature, sign(b"other", 1_700_000_000, b"{}"));
    }
}
