//! The `fcm` gateway: push notifications through the Firebase Cloud
//! Messaging HTTP v1 API
//! (`POST {base_url}/v1/projects/{project_id}/messages:send`).
//!
//! The request is `{"message": {"token", "notification": {"title", "body"},
//! "data": {...}}}` with a bearer token. A 200 reply is sent, and the `name`
//! in its body (`projects/{project_id}/messages/{id}`) is the provider id.
//! FCM's error body is `{"error": {"code", "message", "status", "details"}}`,
//! where `details` may hold an FCM error code such as `UNREGISTERED` and the
//! request fields that were invalid. An `INVALID_ARGUMENT` that names the
//! token as the invalid field is invalid input. Other errors follow the HTTP
//! status: `UNREGISTERED` (404) and other 4xx are permanent,
//! `QUOTA_EXCEEDED` (429), `UNAVAILABLE` (503) and `INTERNAL` (500) are
//! transient.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Serialize;

use super::http::{self, HttpEndpoint, HttpReply, SecretSource};
use super::notification::Push;
use super::{GatewaySetupError, SendError};
use crate::config::FcmConfig;

/// Request field that contains the device token, as FCM names it in a
/// field violation.
const TOKEN_FIELD: &str = "message.token";

/// An FCM project reached over HTTP.
///
/// NOTE: the bearer token is read once at setup and never refreshed. Google
/// OAuth 2 access tokens expire after about an hour. FCM then replies 401,
/// which is permanent, so a long-running server needs a token that outlives
/// it or a restart with a fresh one.
pub struct FcmGateway {
    name: String,
    endpoint: HttpEndpoint,
    authorization: HeaderValue,
}

impl FcmGateway {
    /// Sets up the gateway `name` from its config and reads the bearer token
    /// from the environment variable that `token_env` names.
    pub fn new(name: &str, config: &FcmConfig) -> Result<Self, GatewaySetupError> {
        http::check_path_segment(name, "project_id", &config.project_id)?;
        let source = SecretSource {
            gateway: name,
            key: "token_env",
            variable: &config.token_env,
            description: "an OAuth 2 access token for FCM",
        };
        let token = http::read_secret(source)?;
        let authorization = http::authorization(source, "Bearer", token.expose())?;
        let path = format!("/v1/projects/{}/messages:send", config.project_id);
        let url = http::api_url(name, &config.base_url, &path)?;
        Ok(Self {
            name: name.to_owned(),
            endpoint: HttpEndpoint::new(name, url, config.timeout_secs, token)?,
            authorization,
        })
    }

    /// Sends `push` to its device and returns FCM's message name.
    pub async fn send(&self, push: &Push) -> Result<String, SendError> {
        let body = SendRequest::from_push(push)?;
        let request = self
            .endpoint
            .post()
            .header(AUTHORIZATION, self.authorization.clone())
            .json(&body);
        let reply = self.endpoint.send(request).await?;
        let error = FcmError::parse(&reply);
        if let Some(error) = &error
            && reply.status == StatusCode::BAD_REQUEST
            && error.rejects_token()
        {
            let message = self.endpoint.failure_message(&reply, Some(error.detail()));
            return Err(SendError::InvalidInput(message));
        }
        self.endpoint
            .check(&reply, error.as_ref().map(FcmError::detail))?;

        let name = reply
            .json()
            .and_then(|body| body.get("name")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        if name.is_empty() {
            tracing::warn!(gateway = %self.name, status = %reply.status, "fcm accepted the message without a name in the reply");
        } else {
            tracing::debug!(gateway = %self.name, provider_id = %name, "fcm accepted the message");
        }
        Ok(name)
    }
}

/// The `messages:send` request body.
#[derive(Debug, Serialize)]
struct SendRequest<'a> {
    message: Message<'a>,
}

#[derive(Debug, Serialize)]
struct Message<'a> {
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<Notification<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    data: BTreeMap<&'a str, &'a str>,
}

#[derive(Debug, Serialize)]
struct Notification<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
}

impl<'a> SendRequest<'a> {
    /// Builds the request for `push`. A data key given twice is invalid
    /// input, because FCM's data is a map with one value per key.
    fn from_push(push: &'a Push) -> Result<Self, SendError> {
        let mut data = BTreeMap::new();
        for (key, value) in &push.data {
            if data.insert(key.as_str(), value.as_str()).is_some() {
                return Err(SendError::InvalidInput(format!(
                    "push data key \"{key}\" is set more than once; fcm takes one value per \
                     key, so drop the duplicate"
                )));
            }
        }
        let notification = (push.title.is_some() || push.body.is_some()).then_some(Notification {
            title: push.title.as_deref(),
            body: push.body.as_deref(),
        });
        Ok(Self {
            message: Message {
                token: &push.token,
                notification,
                data,
            },
        })
    }
}

/// FCM's error body.
#[derive(Debug)]
struct FcmError {
    /// Canonical status, such as `INVALID_ARGUMENT` or `NOT_FOUND`.
    status: String,
    message: String,
    /// FCM's own code from the details, such as `UNREGISTERED`.
    error_code: Option<String>,
    /// Fields that `google.rpc.BadRequest` details name as invalid.
    invalid_fields: Vec<String>,
}

impl FcmError {
    /// Parses the error body of `reply`, or returns `None` when it has
    /// another shape.
    fn parse(reply: &HttpReply) -> Option<Self> {
        if reply.status.is_success() {
            return None;
        }
        let body = reply.json()?;
        let error = body.get("error")?;
        let text = |key: &str| error.get(key).and_then(|value| value.as_str());
        let mut parsed = Self {
            status: text("status").unwrap_or_default().to_owned(),
            message: text("message").unwrap_or_default().to_owned(),
            error_code: None,
            invalid_fields: Vec::new(),
        };
        let details = error.get("details").and_then(|details| details.as_array());
        for detail in details.into_iter().flatten() {
            if let Some(code) = detail.get("errorCode").and_then(|code| code.as_str()) {
                parsed.error_code = Some(code.to_owned());
            }
            let violations = detail
                .get("fieldViolations")
                .and_then(|violations| violations.as_array());
            for violation in violations.into_iter().flatten() {
                if let Some(field) = violation.get("field").and_then(|field| field.as_str()) {
                    parsed.invalid_fields.push(field.to_owned());
                }
            }
        }
        Some(parsed)
    }

    /// Returns whether FCM rejected the device token itself.
    fn rejects_token(&self) -> bool {
        let invalid_argument = self.status == "INVALID_ARGUMENT"
            || self.error_code.as_deref() == Some("INVALID_ARGUMENT");
        invalid_argument && self.invalid_fields.iter().any(|field| field == TOKEN_FIELD)
    }

    /// Returns `STATUS (ERROR_CODE): message`.
    fn detail(&self) -> String {
        let mut detail = self.status.clone();
        if let Some(code) = &self.error_code
            && *code != self.status
        {
            detail.push_str(&format!(" ({code})"));
        }
        if !self.message.is_empty() {
            detail.push_str(": ");
            detail.push_str(&self.message);
        }
        detail
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::super::http::testing::{Canned, TestServer};
    use super::*;

    const TOKEN: &str = "ya29.fcm-access-token-secret";

    fn gateway(base_url: &str) -> FcmGateway {
        let url = http::api_url("push", base_url, "/v1/projects/demo-app/messages:send").unwrap();
        FcmGateway {
            name: "push".into(),
            endpoint: HttpEndpoint::new("push", url, 2, http::Secret::new(TOKEN)).unwrap(),
            authorization: format!("Bearer {TOKEN}").parse().unwrap(),
        }
    }

    fn push() -> Push {
        Push {
            token: "bk3RNwTe3H0:CI2k_HHwgIpoDKCIZvvDMExUdFQ3P1".into(),
            title: Some("Build finished".into()),
            body: Some("main is green".into()),
            data: vec![
                ("build".into(), "42".into()),
                ("branch".into(), "main".into()),
            ],
        }
    }

    fn fcm_error(code: u16, status: &str, message: &str, details: Value) -> Canned {
        Canned::json(
            code,
            json!({"error": {"code": code, "message": message, "status": status, "details": details}}),
        )
    }

    #[tokio::test]
    async fn posts_message_with_bearer_token() {
        let name = "projects/demo-app/messages/0:1500415314455276%31bd1c9631bd1c96";
        let server = TestServer::start(vec![Canned::json(200, json!({"name": name}))]).await;

        let id = gateway(&server.url).send(&push()).await.unwrap();

        assert_eq!(id, name);
        let request = server.only_request();
        assert_eq!(request.method, "POST");
        assert_eq!(request.uri, "/v1/projects/demo-app/messages:send");
        assert_eq!(request.header("authorization"), format!("Bearer {TOKEN}"));
        assert_eq!(request.header("content-type"), "application/json");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let expected = json!({"message": {
            "token": "bk3RNwTe3H0:CI2k_HHwgIpoDKCIZvvDMExUdFQ3P1",
            "notification": {"title": "Build finished", "body": "main is green"},
            "data": {"build": "42", "branch": "main"}
        }});
        assert_eq!(body, expected);
    }

    #[tokio::test]
    async fn data_only_message_has_no_notification() {
        let server = TestServer::start(vec![Canned::json(200, json!({"name": "n"}))]).await;
        let push = Push {
            title: None,
            body: None,
            ..push()
        };

        gateway(&server.url).send(&push).await.unwrap();

        let body: Value = serde_json::from_slice(&server.only_request().body).unwrap();
        assert_eq!(body["message"].get("notification"), None, "{body}");
        assert_eq!(body["message"]["data"]["build"], "42");
    }

    #[tokio::test]
    async fn unregistered_token_is_permanent() {
        let details = json!([{
            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": "UNREGISTERED"
        }]);
        let reply = fcm_error(404, "NOT_FOUND", "Requested entity was not found.", details);
        let server = TestServer::start(vec![reply]).await;

        let error = gateway(&server.url).send(&push()).await.unwrap_err();

        let SendError::Permanent(message) = &error else {
            panic!("expected permanent, got {error:?}");
        };
        assert!(
            message.ends_with(
                "404 Not Found: NOT_FOUND (UNREGISTERED): Requested entity was not found."
            ),
            "{message}"
        );
    }

    #[tokio::test]
    async fn invalid_token_is_invalid_input() {
        let details = json!([
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "INVALID_ARGUMENT"
            },
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{
                    "field": "message.token",
                    "description": "Invalid registration token"
                }]
            }
        ]);
        let reply = fcm_error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            details,
        );
        let server = TestServer::start(vec![reply]).await;

        let error = gateway(&server.url).send(&push()).await.unwrap_err();

        let SendError::InvalidInput(message) = &error else {
            panic!("expected invalid input, got {error:?}");
        };
        assert!(message.contains("INVALID_ARGUMENT"), "{message}");
    }

    #[tokio::test]
    async fn other_invalid_argument_is_permanent() {
        let details = json!([{
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "message.data[0].value", "description": "too big"}]
        }]);
        let reply = fcm_error(400, "INVALID_ARGUMENT", "Invalid value", details);
        let server = TestServer::start(vec![reply]).await;

        let error = gateway(&server.url).send(&push()).await.unwrap_err();

        assert!(matches!(error, SendError::Permanent(_)), "{error:?}");
    }

    #[tokio::test]
    async fn quota_exceeded_is_rate_limited() {
        let server = TestServer::start(vec![Canned::Reply {
            status: 429,
            headers: vec![("retry-after", "30".into())],
            body: json!({"error": {
                "code": 429,
                "message": "Quota exceeded for quota metric 'Send requests'",
                "status": "RESOURCE_EXHAUSTED",
                "details": [{
                    "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                    "errorCode": "QUOTA_EXCEEDED"
                }]
            }})
            .to_string(),
        }])
        .await;

        let error = gateway(&server.url).send(&push()).await.unwrap_err();

        let SendError::RateLimited {
            message,
            retry_after,
        } = &error
        else {
            panic!("expected rate limited, got {error:?}");
        };
        assert_eq!(*retry_after, Duration::from_secs(30));
        assert!(message.contains("(QUOTA_EXCEEDED)"), "{message}");
    }

    #[tokio::test]
    async fn unavailable_and_internal_are_transient() {
        let server = TestServer::start(vec![
            fcm_error(
                503,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                json!([]),
            ),
            fcm_error(500, "INTERNAL", "Internal error encountered.", json!([])),
        ])
        .await;
        let gateway = gateway(&server.url);

        for _ in 0..2 {
            let error = gateway.send(&push()).await.unwrap_err();
            assert!(matches!(error, SendError::Transient(_)), "{error:?}");
        }
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn expired_token_is_permanent_and_hidden() {
        let reply = fcm_error(
            401,
            "UNAUTHENTICATED",
            &format!("Request had invalid authentication credentials: {TOKEN}"),
            json!([]),
        );
        let server = TestServer::start(vec![reply]).await;

        let error = gateway(&server.url).send(&push()).await.unwrap_err();

        let SendError::Permanent(message) = &error else {
            panic!("expected permanent, got {error:?}");
        };
        assert!(!message.contains(TOKEN), "{message}");
    }

    #[test]
    fn repeated_data_key_is_invalid() {
        let mut push = push();
        push.data.push(("build".into(), "43".into()));
        let error = SendRequest::from_push(&push).unwrap_err();
        assert!(matches!(error, SendError::InvalidInput(_)), "{error:?}");
    }

    #[test]
    fn project_id_must_be_a_path_segment() {
        let config = FcmConfig {
            base_url: "https://fcm.googleapis.com".into(),
            project_id: "demo/../../x".into(),
            token_env: "HERALD_TEST_FCM_TOKEN_NEVER_SET".into(),
            timeout_secs: 10,
        };
        let Err(error) = FcmGateway::new("push", &config) else {
            panic!("expected a setup error");
        };
        assert!(error.message.contains("project_id"), "{}", error.message);
    }
}
