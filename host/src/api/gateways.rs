//! `GET /v1/gateways`: each configured gateway with its limits and the
//! state of its circuit breaker.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::json;

use crate::server::App;

/// Lists the gateways in name order.
pub async fn list(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(json!({ "gateways": app.gateways.reports() }))
}
