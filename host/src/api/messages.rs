//! Queues and messages: enqueue, look up, counts, and dead letters.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use super::error::parse_json;
use crate::clock;
use crate::queue::{NewMessage, validate_queue_lookup, validate_queue_name};
use crate::server::App;

/// Most messages one enqueue request may carry.
const MAX_MESSAGES: usize = 10_000;

/// Maximum length of an idempotency key, in bytes.
const MAX_KEY_BYTES: usize = 256;

/// Maximum delay: one year.
const MAX_DELAY_SECS: u64 = 366 * 24 * 60 * 60;

/// Body of an enqueue request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueRequest {
    messages: Vec<MessageRequest>,
}

/// One message of an enqueue request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageRequest {
    payload: serde_json::Value,
    delay_seconds: Option<u64>,
    run_at: Option<String>,
    #[serde(default)]
    priority: i32,
    idempotency_key: Option<String>,
}

/// Enqueues messages on a queue. Returns 202 with their ids, in order, and
/// per message whether it was a duplicate of an earlier idempotency key.
pub async fn enqueue(
    State(app): State<Arc<App>>,
    Path(queue): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    validate_queue_name(&queue)
        .map_err(|message| ApiError::bad_request("invalid_name", message))?;
    let body = body.map_err(|rejection| {
        ApiError::from_body(rejection, app.config.api.max_body_bytes, "max_body_bytes")
    })?;
    let request: EnqueueRequest = parse_json(&body)?;
    if request.messages.is_empty() || request.messages.len() > MAX_MESSAGES {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "messages has {} entries; send 1 to {MAX_MESSAGES} per request",
                request.messages.len()
            ),
        ));
    }

    let now = clock::now_ms();
    let messages = request
        .messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| new_message(index, message, now))
        .collect::<Result<Vec<_>, _>>()?;
    let enqueued = app.queue.enqueue(queue.clone(), messages).await?;
    tracing::debug!(queue, count = enqueued.len(), "enqueued messages");

    let ids: Vec<&str> = enqueued.iter().map(|entry| entry.id.as_str()).collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "ids": ids, "messages": enqueued })),
    ))
}

fn new_message(index: usize, message: MessageRequest, now: i64) -> Result<NewMessage, ApiError> {
    let invalid = |text: String| {
        ApiError::bad_request("invalid_request", format!("messages[{index}]: {text}"))
    };
    let run_at = match (message.delay_seconds, &message.run_at) {
        (Some(_), Some(_)) => {
            return Err(invalid("set delay_seconds or run_at, not both".to_owned()));
        }
        (Some(delay), None) if delay > MAX_DELAY_SECS => {
            return Err(invalid(format!(
                "delay_seconds is {delay}; the maximum is {MAX_DELAY_SECS} (one year)"
            )));
        }
        (Some(delay), None) => now + (delay as i64) * 1000,
        (None, Some(text)) => {
            let run_at = clock::parse_rfc3339(text).map_err(|error| {
                invalid(format!(
                    "run_at \"{text}\" is not an RFC 3339 time ({error}); use e.g. 2026-12-24T18:00:00Z"
                ))
            })?;
            if run_at > now + (MAX_DELAY_SECS as i64) * 1000 {
                return Err(invalid(format!(
                    "run_at \"{text}\" is more than a year ahead; the maximum delay is one year"
                )));
            }
            run_at
        }
        (None, None) => now,
    };
    if let Some(key) = &message.idempotency_key
        && (key.is_empty() || key.len() > MAX_KEY_BYTES)
    {
        return Err(invalid(format!(
            "idempotency_key must be 1 to {MAX_KEY_BYTES} bytes, got {}",
            key.len()
        )));
    }
    Ok(NewMessage {
        payload: message.payload.to_string(),
        run_at,
        priority: message.priority,
        idempotency_key: message.idempotency_key,
    })
}

/// Returns one message with its state, attempts and last error.
pub async fn get(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match app.queue.get(id.clone()).await? {
        Some(message) => Ok(Json(
            serde_json::to_value(message).map_err(|error| ApiError::internal(&error))?,
        )),
        None => Err(ApiError::not_found(format!("message \"{id}\" not found"))),
    }
}

/// Returns the number of messages of a queue in each state.
pub async fn queue_stats(
    State(app): State<Arc<App>>,
    Path(queue): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    validate_queue_lookup(&queue)
        .map_err(|message| ApiError::bad_request("invalid_name", message))?;
    let counts = app.queue.counts(queue.clone()).await?;
    let counts: serde_json::Map<String, serde_json::Value> = counts
        .into_iter()
        .map(|(state, count)| (state.as_str().to_owned(), json!(count)))
        .collect();
    Ok(Json(json!({ "queue": queue, "counts": counts })))
}

/// Query parameters of the dead-letter list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadQuery {
    limit: Option<u32>,
    after: Option<String>,
}

/// Lists dead letters, oldest id first; page with `after=<last id>`.
pub async fn list_dead(
    State(app): State<Arc<App>>,
    Path(queue): Path<String>,
    query: Result<Query<DeadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    validate_queue_lookup(&queue)
        .map_err(|message| ApiError::bad_request("invalid_name", message))?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "{}; supported parameters: limit, after",
                rejection.body_text()
            ),
        )
    })?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > 10_000 {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("invalid limit {limit}; use 1 to 10000"),
        ));
    }
    let dead = app.queue.list_dead(queue, limit, query.after).await?;
    Ok(Json(json!({ "dead": dead })))
}

/// Body of a replay request: `{"ids": [...]}` or `{"all": true}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

/// Makes dead letters available again with fresh attempts.
pub async fn replay_dead(
    State(app): State<Arc<App>>,
    Path(queue): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    validate_queue_lookup(&queue)
        .map_err(|message| ApiError::bad_request("invalid_name", message))?;
    let body = body.map_err(|rejection| {
        ApiError::from_body(rejection, app.config.api.max_body_bytes, "max_body_bytes")
    })?;
    let request: ReplayRequest = parse_json(&body)?;
    let ids = match (request.ids, request.all) {
        (Some(_), true) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "set ids or all, not both",
            ));
        }
        (Some(ids), false) => Some(ids),
        (None, true) => None,
        (None, false) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "name the dead letters to replay with {\"ids\": [...]}, or send {\"all\": true}",
            ));
        }
    };
    let replayed = app.queue.replay_dead(queue, ids).await?;
    Ok(Json(json!({ "replayed": replayed })))
}

/// Deletes every dead letter of a queue.
pub async fn purge_dead(
    State(app): State<Arc<App>>,
    Path(queue): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    validate_queue_lookup(&queue)
        .map_err(|message| ApiError::bad_request("invalid_name", message))?;
    let purged = app.queue.purge_dead(queue, None).await?;
    Ok(Json(json!({ "purged": purged })))
}
