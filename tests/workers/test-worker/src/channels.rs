//! Actions that send a text message, a push notification or a webhook event
//! exactly as the payload gives it.

use std::collections::BTreeMap;

use herald_sdk::{Error, Message, Push, Sms, WebhookEvent, gateway};
use serde::Deserialize;
use serde_json::Value;

/// Fields of `send_sms`.
#[derive(Deserialize)]
pub struct SmsFields {
    #[serde(default = "sms_gateway")]
    gateway: String,
    to: String,
    body: String,
    from: Option<String>,
    key: Option<String>,
}

fn sms_gateway() -> String {
    "sms".to_string()
}

/// Sends the payload's text message.
pub fn send_sms(message: &Message, fields: SmsFields) -> Result<(), Error> {
    let mut sms = Sms::new().to(fields.to).body(fields.body);
    sms.from = fields.from;
    sms.idempotency_key = fields.key;
    gateway::send_sms(&fields.gateway, message, &sms)?;
    Ok(())
}

/// Fields of `send_push`.
#[derive(Deserialize)]
pub struct PushFields {
    #[serde(default = "push_gateway")]
    gateway: String,
    token: String,
    title: Option<String>,
    body: Option<String>,
    /// Data for the app. A JSON object is unordered, so the pairs are sent
    /// in key order.
    #[serde(default)]
    data: BTreeMap<String, String>,
    key: Option<String>,
}

fn push_gateway() -> String {
    "push".to_string()
}

/// Sends the payload's push notification.
pub fn send_push(message: &Message, fields: PushFields) -> Result<(), Error> {
    let mut push = Push::new().token(fields.token);
    push.title = fields.title;
    push.body = fields.body;
    push.data = fields.data.into_iter().collect();
    push.idempotency_key = fields.key;
    gateway::send_push(&fields.gateway, message, &push)?;
    Ok(())
}

/// Fields of `send_webhook`.
#[derive(Deserialize)]
pub struct WebhookFields {
    #[serde(default = "webhook_gateway")]
    gateway: String,
    event_type: String,
    /// Event data, any JSON value.
    data: Value,
    key: Option<String>,
}

fn webhook_gateway() -> String {
    "webhook".to_string()
}

/// POSTs the payload's event.
pub fn send_webhook(message: &Message, fields: WebhookFields) -> Result<(), Error> {
    let mut event = WebhookEvent::new(fields.event_type, &fields.data)?;
    event.idempotency_key = fields.key;
    gateway::send_webhook(&fields.gateway, message, &event)?;
    Ok(())
}
