//! The `webhook` gateway: events as JSON POSTs to one URL, signed per the
//! Standard Webhooks scheme.
//!
//! The body is `{"type": ..., "timestamp": RFC 3339, "data": ...}`. Three
//! headers carry the signature: `webhook-id` (stable across retries of one
//! event, so the receiver can drop duplicates), `webhook-timestamp` (Unix
//! seconds) and `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of
//! `{id}.{timestamp}.{body}`). The key is the secret from the environment:
//! `whsec_` followed by base64 is decoded, and any other text is used as
//! its bytes.
//!
//! A target that accepts the connection and never replies costs one attempt
//! at the request timeout, and the send gives up at the latest
//! [`http::GRACE`] after it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::http::{self, HttpEndpoint, SecretSource};
use super::notification::WebhookEvent;
use super::{GatewaySetupError, SendError};
use crate::config::WebhookConfig;

/// Prefix of a base64-encoded secret.
const SECRET_PREFIX: &str = "whsec_";

/// A receiver of signed events.
pub struct WebhookGateway {
    name: String,
    endpoint: HttpEndpoint,
    /// The HMAC key: the decoded secret.
    key: Vec<u8>,
}

/// The request body.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: &'a serde_json::Value,
}

impl WebhookGateway {
    /// Sets up the gateway `name` from its config and reads the signing
    /// secret from the environment variable that `secret_env` names.
    pub fn new(name: &str, config: &WebhookConfig) -> Result<Self, GatewaySetupError> {
        let setup_error = |message: String| GatewaySetupError {
            name: name.to_owned(),
            message,
        };
        let url = reqwest::Url::parse(&config.base_url).map_err(|error| {
            setup_error(format!(
                "invalid base_url \"{}\": {error}; write the URL that receives the events, \
                 such as https://hooks.example.com/herald",
                config.base_url
            ))
        })?;
        let source = SecretSource {
            gateway: name,
            key: "secret_env",
            variable: &config.secret_env,
            description: "the signing secret (whsec_ and base64, or any other text)",
        };
        let secret = http::read_secret(source)?;
        let key = signing_key(secret.expose()).map_err(|problem| {
            setup_error(format!(
                "secret_env names the environment variable {}, whose value {problem}; set it \
                 to whsec_ followed by base64, or to a secret without that prefix",
                config.secret_env
            ))
        })?;
        Ok(Self {
            name: name.to_owned(),
            endpoint: HttpEndpoint::new(name, url, config.timeout_secs, secret)?,
            key,
        })
    }

    /// Returns the target URL without credentials or query.
    pub fn url(&self) -> &str {
        self.endpoint.shown_url()
    }

    /// POSTs `event` signed under `webhook_id` and returns the id, which the
    /// receiver gets as the `webhook-id` header.
    pub async fn send(&self, event: &WebhookEvent, webhook_id: &str) -> Result<String, SendError> {
        let now = SystemTime::now();
        let timestamp = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let payload = Payload {
            event_type: &event.event_type,
            timestamp: OffsetDateTime::from(now)
                .format(&Rfc3339)
                .expect("the current time formats as RFC 3339"),
            data: &event.data,
        };
        let body = serde_json::to_vec(&payload).expect("a JSON value serializes");
        let signature = sign(&self.key, webhook_id, timestamp, &body);

        let request = self
            .endpoint
            .post()
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body);
        let reply = self.endpoint.send(request).await?;
        self.endpoint.check(&reply, None)?;
        tracing::debug!(gateway = %self.name, webhook_id, status = %reply.status, "webhook target accepted the event");
        Ok(webhook_id.to_owned())
    }
}

/// Returns the HMAC key for `secret`: the decoded base64 after `whsec_`, or
/// the bytes of any other secret. The error describes the problem without
/// repeating the secret.
fn signing_key(secret: &str) -> Result<Vec<u8>, &'static str> {
    let Some(encoded) = secret.strip_prefix(SECRET_PREFIX) else {
        return Ok(secret.as_bytes().to_vec());
    };
    match base64::engine::general_purpose::STANDARD.decode(encoded) {
        Ok(key) if !key.is_empty() => Ok(key),
        Ok(_) => Err("has nothing after whsec_"),
        Err(_) => Err("starts with whsec_ but is not valid base64 after it"),
    }
}

/// Returns the `webhook-signature` value: `v1,` and the base64 HMAC-SHA256
/// of `{id}.{timestamp}.{body}` under `key`.
pub fn sign(key: &[u8], webhook_id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(webhook_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::{Value, json};

    use super::super::http::testing::{Canned, TestServer, closing_server};
    use super::*;

    /// A secret in the Standard Webhooks form: whsec_ and the base64 of
    /// `herald-test-signing-key`.
    const SECRET: &str = "whsec_aGVyYWxkLXRlc3Qtc2lnbmluZy1rZXk=";

    fn gateway(url: &str, timeout_secs: u64) -> WebhookGateway {
        let url = reqwest::Url::parse(url).unwrap();
        let secret = http::Secret::new(SECRET);
        WebhookGateway {
            name: "hooks".into(),
            endpoint: HttpEndpoint::new("hooks", url, timeout_secs, secret).unwrap(),
            key: signing_key(SECRET).unwrap(),
        }
    }

    fn event() -> WebhookEvent {
        WebhookEvent::new(
            "invoice.paid".into(),
            r#"{"invoice": "in_42", "amount": 1200}"#,
        )
        .unwrap()
    }

    #[test]
    fn signature_matches_known_vector() {
        // Computed independently with Python:
        // base64(hmac.new(key, b"msg_1.1700000000.{}", sha256).digest())
        let key = signing_key(SECRET).unwrap();
        assert_eq!(key, b"herald-test-signing-key");
        assert_eq!(
            sign(&key, "msg_1", 1_700_000_000, b"{}"),
            "v1,JfpZVpxbNVXktkA0TFlQ8WcZpS81hq1kc7cH5Eils7k="
        );
    }

    #[test]
    fn secrets_without_prefix_are_raw_bytes() {
        assert_eq!(signing_key("plain secret").unwrap(), b"plain secret");
        assert!(signing_key("whsec_!!!").is_err());
        assert!(signing_key("whsec_").is_err());
    }

    #[tokio::test]
    async fn posts_signed_event() {
        let server = TestServer::start(vec![Canned::headers(204, Vec::new())]).await;
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();

        let id = gateway(&format!("{}/hooks/herald?tenant=7", server.url), 2)
            .send(&event(), "msg_2f9a")
            .await
            .unwrap();

        assert_eq!(id, "msg_2f9a");
        let request = server.only_request();
        assert_eq!(request.method, "POST");
        assert_eq!(request.uri, "/hooks/herald?tenant=7");
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(request.header("webhook-id"), "msg_2f9a");
        let timestamp: u64 = request.header("webhook-timestamp").parse().unwrap();
        assert!(
            timestamp >= before && timestamp <= before + 5,
            "{timestamp}"
        );
        let expected = sign(
            b"herald-test-signing-key",
            "msg_2f9a",
            timestamp,
            &request.body,
        );
        assert_eq!(request.header("webhook-signature"), expected);

        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["type"], "invoice.paid");
        assert_eq!(body["data"], json!({"invoice": "in_42", "amount": 1200}));
        let sent_at = OffsetDateTime::parse(body["timestamp"].as_str().unwrap(), &Rfc3339).unwrap();
        assert_eq!(sent_at.unix_timestamp() as u64, timestamp);
    }

    #[tokio::test]
    async fn webhook_id_is_stable_across_retries() {
        let server = TestServer::start(vec![
            Canned::headers(503, Vec::new()),
            Canned::headers(200, Vec::new()),
        ])
        .await;
        let gateway = gateway(&server.url, 2);

        let first = gateway.send(&event(), "msg_retry").await;
        let second = gateway.send(&event(), "msg_retry").await;

        assert!(matches!(first, Err(SendError::Transient(_))), "{first:?}");
        assert_eq!(second, Ok("msg_retry".to_owned()));
        let ids: Vec<String> = server
            .requests()
            .iter()
            .map(|request| request.header("webhook-id").to_owned())
            .collect();
        assert_eq!(ids, ["msg_retry", "msg_retry"]);
    }

    #[tokio::test]
    async fn gone_is_permanent() {
        let server = TestServer::start(vec![Canned::Reply {
            status: 410,
            headers: Vec::new(),
            body: "endpoint removed".into(),
        }])
        .await;

        let error = gateway(&server.url, 2)
            .send(&event(), "msg_1")
            .await
            .unwrap_err();

        let SendError::Permanent(message) = &error else {
            panic!("expected permanent, got {error:?}");
        };
        assert!(message.ends_with("410 Gone: endpoint removed"), "{message}");
    }

    #[tokio::test]
    async fn hanging_target_times_out_once() {
        let server = TestServer::start(vec![Canned::Hang]).await;
        let url = format!("{}/slow", server.url);
        let started = Instant::now();

        let error = gateway(&url, 1).send(&event(), "msg_1").await.unwrap_err();

        let elapsed = started.elapsed();
        let SendError::Transient(message) = &error else {
            panic!("expected transient, got {error:?}");
        };
        assert_eq!(message, &format!("POST {url} timed out after 1s"));
        assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
        assert!(
            elapsed < Duration::from_secs(1) + http::GRACE,
            "{elapsed:?}"
        );
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn closed_connection_is_transient() {
        let url = closing_server().await;

        let error = gateway(&url, 2).send(&event(), "msg_1").await.unwrap_err();

        let SendError::Transient(message) = &error else {
            panic!("expected transient, got {error:?}");
        };
        assert!(message.starts_with(&format!("POST {url}")), "{message}");
    }

    #[tokio::test]
    async fn url_hides_query_and_credentials() {
        let gateway = gateway("https://user:pw@hooks.example.com/in?token=abc", 2);
        assert_eq!(gateway.url(), "https://hooks.example.com/in");
    }

    #[test]
    fn bad_secret_is_named_not_shown() {
        let error = signing_key("whsec_not*base64").unwrap_err();
        assert!(!error.contains("not*base64"), "{error}");
    }
}
