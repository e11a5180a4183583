//! `PUT /v1/workers/{name}` and `GET /v1/workers`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::json;

use super::ApiError;
use crate::queue::validate_queue_name;
use crate::server::App;

/// Uploads a component as the next version of a worker. Returns 201 with
/// the new version, or 200 when the bytes equal the active version.
pub async fn upload(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    validate_queue_name(&name).map_err(|message| ApiError::bad_request("invalid_name", message))?;
    let body = body.map_err(|rejection| {
        ApiError::from_body(
            rejection,
            app.config.api.max_upload_bytes,
            "max_upload_bytes",
        )
    })?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_component",
            "request body is empty; send the component's .wasm bytes",
        ));
    }
    let added = app.deploy(name, body.to_vec()).await?;
    let status = if added.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let version = added.version;
    Ok((
        status,
        Json(json!({
            "name": version.name,
            "version": version.version,
            "digest": version.digest,
            "size": version.size,
            "created_at": version.created_at,
        })),
    ))
}

/// Lists every worker's active version.
pub async fn list(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    let workers = app.workers.list_active().await?;
    Ok(Json(json!({ "workers": workers })))
}
