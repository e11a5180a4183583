//! The HTTP API under `/v1`, JSON in and out, plus `/healthz`.
//!
//! Every error is `{"error": {"code": "...", "message": "..."}}` with a
//! matching status. Client errors are not logged; server errors are logged
//! once and the client gets a generic message. When a token is configured,
//! every `/v1` request needs `Authorization: Bearer <token>`.

mod deliveries;
mod error;
mod gateways;
mod messages;
mod templates;
mod workers;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

pub use error::ApiError;

use crate::server::App;

/// Builds the router over `app`.
pub fn router(app: Arc<App>) -> Router {
    let max_upload = app.config.api.max_upload_bytes;
    let max_body = app.config.api.max_body_bytes;

    let uploads = Router::new()
        .route("/workers/{name}", put(workers::upload))
        .layer(DefaultBodyLimit::max(max_upload));
    let v1 = Router::new()
        .route("/workers", get(workers::list))
        .route("/queues/{queue}", get(messages::queue_stats))
        .route("/queues/{queue}/messages", post(messages::enqueue))
        .route(
            "/queues/{queue}/dead",
            get(messages::list_dead).delete(messages::purge_dead),
        )
        .route("/queues/{queue}/dead/replay", post(messages::replay_dead))
        .route("/messages/{id}", get(messages::get))
        .route("/deliveries", get(deliveries::list))
        .route("/templates", get(templates::list))
        .route(
            "/templates/{name}",
            get(templates::get)
                .put(templates::put)
                .delete(templates::delete),
        )
        .route("/gateways", get(gateways::list))
        .layer(DefaultBodyLimit::max(max_body))
        .merge(uploads)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            authenticate,
        ));

    Router::new()
        .route("/healthz", get(healthz))
        .nest("/v1", v1)
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(log_request))
        .with_state(app)
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see the README for the API")
}

/// Rejects `/v1` requests without the configured bearer token.
async fn authenticate(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(expected) = &app.api_token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => ApiError::unauthorized("invalid bearer token").into_response(),
        None => ApiError::unauthorized(
            "missing bearer token; send Authorization: Bearer <HERALD_API_TOKEN>",
        )
        .into_response(),
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

/// Rewrites error responses that axum produces as plain text (a wrong method,
/// an undecodable path) into the API's JSON error shape.
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }

    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let code = match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        _ if status.is_server_error() => "internal",
        _ => "request_failed",
    };
    let message = match (status.as_u16(), text.is_empty()) {
        (405, _) => match parts.headers.get(axum::http::header::ALLOW) {
            Some(allowed) => format!(
                "method {method} is not allowed on {path}; use {}",
                allowed.to_str().unwrap_or_default()
            ),
            None => format!("method {method} is not allowed on {path}; see the README for the API"),
        },
        (_, false) => text,
        (_, true) => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    };
    let mut response = ApiError::with_status(status, code, message).into_response();
    if let Some(allow) = parts.headers.get(axum::http::header::ALLOW) {
        response
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow.clone());
    }
    response
}

async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secrets"));
    }
}
