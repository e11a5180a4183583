//! `PUT`, `GET` and `DELETE /v1/templates/{name}`, and `GET /v1/templates`.
//!
//! A template part that does not parse gets 422 with the usual error body,
//! whose `error` object also carries `part`, `line` and `reason` for tools.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use super::error::parse_json;
use crate::server::App;
use crate::template::{InvalidPart, PutError, TemplateParts, validate_name};

/// Query of `GET /v1/templates/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetQuery {
    /// A specific version, deleted or not, instead of the latest live one.
    version: Option<u32>,
}

/// Stores the body's parts as the next version of a template. Returns 201
/// with the new version, or 200 with the latest version when the parts
/// equal it.
pub async fn put(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    let body = body.map_err(|rejection| {
        ApiError::from_body(rejection, app.config.api.max_body_bytes, "max_body_bytes")
    })?;
    let parts: TemplateParts = parse_json(&body)?;

    let put = match app.templates.put(name, parts).await {
        Ok(put) => put,
        Err(PutError::InvalidPart(invalid)) => return Ok(invalid_part(&invalid)),
        Err(PutError::InvalidName(error)) => {
            return Err(ApiError::bad_request("invalid_name", error.to_string()));
        }
        Err(error @ (PutError::NoParts | PutError::EmptyPart(_))) => {
            return Err(ApiError::unprocessable(
                "invalid_template",
                error.to_string(),
            ));
        }
        Err(PutError::Store(error)) => return Err(ApiError::from(error)),
    };
    let status = if put.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(put.template)).into_response())
}

/// Returns the latest live version of a template, or the version named by
/// `?version=N`.
pub async fn get(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(query): Query<GetQuery>,
) -> Result<Response, ApiError> {
    check_name(&name)?;
    let found = match query.version {
        None => app.templates.latest(name.clone()).await?,
        Some(version) => app.templates.version(name.clone(), version).await?,
    };
    match (found, query.version) {
        (Some(template), _) => Ok(Json(template).into_response()),
        (None, None) => Err(not_found(&name)),
        (None, Some(version)) => Err(ApiError::not_found(format!(
            "template \"{name}\" has no version {version}, GET /v1/templates/{name} returns \
             the latest"
        ))),
    }
}

/// Deletes a template: every version is marked deleted. Returns 204, or 404
/// when the template has no live version.
pub async fn delete(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_name(&name)?;
    if !app.templates.delete(name.clone()).await? {
        return Err(not_found(&name));
    }
    tracing::info!(template = %name, "deleted template");
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the latest live version of every template.
pub async fn list(State(app): State<Arc<App>>) -> Result<Json<serde_json::Value>, ApiError> {
    let templates = app.templates.list().await?;
    Ok(Json(json!({ "templates": templates })))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    validate_name(name).map_err(|error| ApiError::bad_request("invalid_name", error.to_string()))
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "template \"{name}\" not found, store it with PUT /v1/templates/{name}"
    ))
}

/// Builds the 422 response for a part that does not parse.
fn invalid_part(invalid: &InvalidPart) -> Response {
    let body = json!({
        "error": {
            "code": "invalid_template",
            "message": invalid.to_string(),
            "part": invalid.part,
            "line": invalid.line,
            "reason": invalid.reason,
        }
    });
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}
