//! `GET /v1/deliveries`: the delivery log.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use crate::audit::{DeliveryFilter, DeliveryStatus};
use crate::server::App;

/// Rows returned when the request sets no limit.
const DEFAULT_LIMIT: u32 = 100;

/// Most rows one request may return.
const MAX_LIMIT: u32 = 10_000;

/// Query parameters of the delivery log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    worker: Option<String>,
    recipient: Option<String>,
    status: Option<String>,
    message_id: Option<String>,
    limit: Option<u32>,
}

/// Lists delivery rows, newest first.
pub async fn list(
    State(app): State<Arc<App>>,
    query: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "{}; supported parameters: worker, recipient, status, message_id, limit",
                rejection.body_text()
            ),
        )
    })?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!(
                    "invalid status \"{text}\"; use sent, failed, retrying, dead or \
                     duplicate-suppressed"
                ),
            )
        })?),
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("invalid limit {limit}; use 1 to {MAX_LIMIT}"),
        ));
    }
    let filter = DeliveryFilter {
        worker: query.worker.filter(|worker| !worker.is_empty()),
        recipient: query.recipient.filter(|recipient| !recipient.is_empty()),
        status,
        message_id: query.message_id.filter(|id| !id.is_empty()),
        limit,
    };
    let deliveries = app.audit.list(filter).await?;
    Ok(Json(json!({ "deliveries": deliveries })))
}
