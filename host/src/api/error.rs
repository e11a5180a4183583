//! The API's one error type: a status, a machine-readable code and a message
//! for people.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::server::DeployError;
use crate::store::StoreError;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// Any status, for errors that other layers produced.
    pub fn with_status(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, code, message)
    }

    /// 400: the request is malformed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: missing or wrong credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404: no such resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 422: well-formed but unusable.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 500: a fault of the server. The cause is logged here, once; the
    /// client sees a generic message.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error; the cause is in the server log",
        )
    }

    /// Returns the status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": { "code": self.code, "message": self.message }
        });
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::internal(&error)
    }
}

impl ApiError {
    /// Converts a failure to read the request body, naming `limit` (bytes) and
    /// the config key `limit_key` when the body was too large.
    pub fn from_body(rejection: BytesRejection, limit: usize, limit_key: &str) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                status,
                "payload_too_large",
                format!(
                    "request body is larger than {limit} bytes; send less or raise api.{limit_key}"
                ),
            )
        } else {
            Self::new(status, "invalid_body", rejection.body_text())
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(error: DeployError) -> Self {
        use crate::runtime::UploadError;
        match error {
            DeployError::Upload(
                upload @ (UploadError::NotWasm
                | UploadError::CoreModule
                | UploadError::UnknownVersion(_)),
            ) => Self::bad_request("invalid_component", upload.to_string()),
            DeployError::Upload(upload @ UploadError::Invalid(_)) => {
                Self::unprocessable("invalid_component", upload.to_string())
            }
            DeployError::Upload(upload @ UploadError::WrongWorld(_)) => {
                Self::unprocessable("wrong_world", upload.to_string())
            }
            DeployError::Store(error) => Self::internal(&error),
            DeployError::Task(error) => Self::internal(&error),
        }
    }
}

/// Parses a JSON body, with an error that names what is wrong and where.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_json",
            "request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request("invalid_json", format!("invalid JSON body: {error}"))
    })
}
