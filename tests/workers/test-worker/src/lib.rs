//! Herald worker for the integration tests. Each message's payload names an
//! `action` that picks what the worker does with it: send an email, a text
//! message, a push notification or a webhook event, render a template, call
//! another import, return a given outcome, or misbehave on purpose by
//! trapping, looping or exhausting memory or stack. The README lists every
//! action and its payload fields.

mod channels;
mod email;
mod hazard;
mod render;

use std::time::Duration;

use herald_sdk::queue::EnqueueOptions;
use herald_sdk::{Email, Error, Message, Outcome, Worker, audit, config, gateway, log, queue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::email::EmailSpec;

/// Action of a payload without an `action` field.
const DEFAULT_ACTION: &str = "done";

/// Gateway that `send`, `send_many` and `config` use when the payload names
/// none.
const DEFAULT_GATEWAY: &str = "email";

/// Text that `config` sends when the setting is not set.
const UNSET_TEXT: &str = "<unset>";

/// Batch-level action that makes the worker return one outcome fewer than
/// the batch has messages.
const SHORT_OUTCOMES: &str = "short_outcomes";

/// Batch-level action that makes the worker return one outcome more than the
/// batch has messages.
const EXTRA_OUTCOMES: &str = "extra_outcomes";

fn default_gateway() -> String {
    DEFAULT_GATEWAY.to_string()
}

/// Worker whose behaviour each message's payload chooses.
struct TestWorker;

impl Worker for TestWorker {
    fn handle(message: &Message) -> Result<(), Error> {
        let payload = parse_object(message)?;
        let action = read_action(&payload)?;
        run_action(message, &action, payload)
    }

    /// Returns the wrong number of outcomes when any message requests it with
    /// `short_outcomes` or `extra_outcomes`, without running the other
    /// messages' actions. Otherwise handles the messages in order.
    fn handle_batch(batch: &[Message]) -> Vec<Outcome> {
        let has_batch_action = |name: &str| {
            batch.iter().any(|message| {
                parse_object(message)
                    .and_then(|payload| read_action(&payload))
                    .is_ok_and(|action| action == name)
            })
        };

        if has_batch_action(SHORT_OUTCOMES) {
            return vec![Outcome::Done; batch.len().saturating_sub(1)];
        }
        if has_batch_action(EXTRA_OUTCOMES) {
            return vec![Outcome::Done; batch.len() + 1];
        }
        batch
            .iter()
            .map(|message| Outcome::from(Self::handle(message)))
            .collect()
    }
}

herald_sdk::export_worker!(TestWorker);

/// Parses the payload of `message` as a JSON object.
fn parse_object(message: &Message) -> Result<Map<String, Value>, Error> {
    match message.payload::<Value>()? {
        Value::Object(object) => Ok(object),
        other => Err(Error::fail(format!(
            "invalid payload: expected a JSON object with an `action` field, got {other}"
        ))),
    }
}

/// Returns the payload's `action` field, or [`DEFAULT_ACTION`] when it has
/// none.
fn read_action(payload: &Map<String, Value>) -> Result<String, Error> {
    match payload.get("action") {
        None => Ok(DEFAULT_ACTION.to_string()),
        Some(Value::String(action)) => Ok(action.clone()),
        Some(other) => Err(Error::fail(format!(
            "invalid payload: `action` must be a string, got {other}"
        ))),
    }
}

/// Parses the fields of `action` from `payload`. Fields that `T` does not
/// name, such as `action` itself, are ignored.
fn parse_fields<T: DeserializeOwned>(
    action: &str,
    payload: Map<String, Value>,
) -> Result<T, Error> {
    serde_json::from_value(Value::Object(payload))
        .map_err(|error| Error::fail(format!("invalid payload for action `{action}`: {error}")))
}

/// Runs `action` for `message`. `Ok(())` is a done outcome and the error
/// carries any other outcome.
fn run_action(message: &Message, action: &str, payload: Map<String, Value>) -> Result<(), Error> {
    match action {
        "done" | SHORT_OUTCOMES | EXTRA_OUTCOMES => Ok(()),
        "send" => send(message, parse_fields(action, payload)?),
        "send_many" => send_many(message, parse_fields(action, payload)?),
        "send_sms" => channels::send_sms(message, parse_fields(action, payload)?),
        "send_push" => channels::send_push(message, parse_fields(action, payload)?),
        "send_webhook" => channels::send_webhook(message, parse_fields(action, payload)?),
        "render_stored" => render::render_stored(message, parse_fields(action, payload)?),
        "render_string" => render::render_string(message, parse_fields(action, payload)?),
        "sleep" => {
            let SleepFields { ms } = parse_fields(action, payload)?;
            std::thread::sleep(Duration::from_millis(ms));
            Ok(())
        }
        "trap" => hazard::trap(),
        "loop" => hazard::spin_forever(),
        "memory" => hazard::exhaust_memory(),
        "stack" => hazard::overflow_stack(),
        "retry" => {
            let RetryFields {
                error,
                delay_seconds,
            } = parse_fields(action, payload)?;
            Err(match delay_seconds {
                Some(seconds) => Error::retry_after(error, seconds),
                None => Error::retry(error),
            })
        }
        "fail" => {
            let FailFields { reason } = parse_fields(action, payload)?;
            Err(Error::fail(reason))
        }
        "defer" => {
            let DeferFields { seconds } = parse_fields(action, payload)?;
            Err(Error::defer(seconds))
        }
        "enqueue" => {
            let EnqueueFields {
                queue: target,
                payload: body,
                delay_seconds,
                idempotency_key,
            } = parse_fields(action, payload)?;
            let mut options = EnqueueOptions::new();
            options.delay_seconds = delay_seconds;
            options.idempotency_key = idempotency_key;
            queue::enqueue(&target, &body, options)?;
            Ok(())
        }
        "audit" => {
            let AuditFields { event, detail } = parse_fields(action, payload)?;
            audit::record_event(message, &event, &detail)?;
            Ok(())
        }
        "log" => {
            let LogFields { lines } = parse_fields(action, payload)?;
            let logger = log::for_message(message);
            for i in 0..lines {
                logger.info(&format!("log line {i}"));
            }
            Ok(())
        }
        "config" => send_config(message, parse_fields(action, payload)?),
        "stdout" => {
            let StdoutFields { text } = parse_fields(action, payload)?;
            println!("{text}");
            eprintln!("{text}");
            Ok(())
        }
        "probe" => {
            let ProbeFields { connect } = parse_fields(action, payload)?;
            probe_sandbox(message, &connect);
            Ok(())
        }
        unknown => Err(Error::fail(format!(
            "unknown action `{unknown}`, expected one of send, send_many, send_sms, \
             send_push, send_webhook, render_stored, render_string, sleep, trap, loop, memory, \
             stack, retry, fail, defer, done, enqueue, audit, log, config, stdout, probe, \
             short_outcomes or extra_outcomes"
        ))),
    }
}

/// Fields of `probe`.
#[derive(Deserialize)]
struct ProbeFields {
    /// A `host:port` to try to open a TCP connection to.
    connect: String,
}

/// Tries what the sandbox must deny and logs one line per probe: the number
/// of environment variables, reading the root folder and the working folder,
/// and a TCP connection to `connect`.
fn probe_sandbox(message: &Message, connect: &str) {
    let logger = log::for_message(message);
    logger.info(&format!(
        "probe env: {} variables",
        std::env::vars().count()
    ));
    for folder in ["/", "."] {
        let outcome = match std::fs::read_dir(folder) {
            Ok(entries) => format!("opened, {} entries", entries.count()),
            Err(error) => format!("denied: {error}"),
        };
        logger.info(&format!("probe read_dir {folder}: {outcome}"));
    }
    let outcome = match std::net::TcpStream::connect(connect) {
        Ok(_) => "connected".to_string(),
        Err(error) => format!("denied: {error}"),
    };
    logger.info(&format!("probe connect {connect}: {outcome}"));
}

/// Fields of `send`.
#[derive(Deserialize)]
struct SendFields {
    email: EmailSpec,
    #[serde(default = "default_gateway")]
    gateway: String,
}

/// Sends the payload's email as it is, with no templating.
fn send(message: &Message, fields: SendFields) -> Result<(), Error> {
    let email = fields.email.into_email();
    gateway::send_email(&fields.gateway, message, &email)?;
    Ok(())
}

/// Fields of `send_many`.
#[derive(Deserialize)]
struct SendManyFields {
    count: u32,
    to_prefix: String,
    domain: String,
    #[serde(default = "default_gateway")]
    gateway: String,
}

/// Sends `count` emails to `{to_prefix}{i}@{domain}` for `i` from 0, and
/// stops at the first send error. The emails carry no idempotency key, so the
/// host derives one from the message id and the recipient. A retry of the
/// message therefore gets the earlier receipts for the emails sent before the
/// error, instead of sending them again.
fn send_many(message: &Message, fields: SendManyFields) -> Result<(), Error> {
    for i in 0..fields.count {
        let email = Email::new()
            .to(format!("{}{i}@{}", fields.to_prefix, fields.domain))
            .subject(format!("item {i}"))
            .text(format!("item {i}"));
        gateway::send_email(&fields.gateway, message, &email)?;
    }
    Ok(())
}

/// Fields of `config`.
#[derive(Deserialize)]
struct ConfigFields {
    key: String,
    to: String,
    #[serde(default = "default_gateway")]
    gateway: String,
}

/// Sends an email to `to` whose text is the value of the setting `key`, or
/// [`UNSET_TEXT`] when the setting is not set.
fn send_config(message: &Message, fields: ConfigFields) -> Result<(), Error> {
    let value = config::get(&fields.key).unwrap_or_else(|| UNSET_TEXT.to_string());
    let email = Email::new()
        .to(fields.to)
        .subject(format!("config {}", fields.key))
        .text(value);
    gateway::send_email(&fields.gateway, message, &email)?;
    Ok(())
}

/// Fields of `sleep`.
#[derive(Deserialize)]
struct SleepFields {
    /// Time to sleep in milliseconds.
    ms: u64,
}

/// Fields of `retry`.
#[derive(Deserialize)]
struct RetryFields {
    error: String,
    delay_seconds: Option<u32>,
}

/// Fields of `fail`.
#[derive(Deserialize)]
struct FailFields {
    reason: String,
}

/// Fields of `defer`.
#[derive(Deserialize)]
struct DeferFields {
    seconds: u32,
}

/// Fields of `enqueue`.
#[derive(Deserialize)]
struct EnqueueFields {
    queue: String,
    /// Payload of the new message, any JSON value.
    payload: Value,
    delay_seconds: Option<u32>,
    idempotency_key: Option<String>,
}

/// Fields of `audit`.
#[derive(Deserialize)]
struct AuditFields {
    event: String,
    /// Detail of the event, any JSON value.
    detail: Value,
}

/// Fields of `log`.
#[derive(Deserialize)]
struct LogFields {
    /// Number of info lines to write.
    lines: u32,
}

/// Fields of `stdout`.
#[derive(Deserialize)]
struct StdoutFields {
    text: String,
}
