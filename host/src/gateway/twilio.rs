//! The `twilio` gateway: text messages through the Twilio Messages API
//! (`POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json`).
//!
//! The request is form-encoded with `To`, `From` and `Body`, and
//! authenticated with HTTP basic auth: the account SID as user name and the
//! auth token as password. A 201 reply is sent, and the `sid` in its JSON
//! body is the provider id. Twilio's error body is
//! `{"code": 21211, "message": "...", "more_info": "...", "status": 400}`.
//! The codes in `INVALID_RECIPIENT_CODES` mean the `To` number cannot
//! receive text messages, so they are invalid input rather than a provider
//! failure.

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};

use super::http::{self, HttpEndpoint, HttpReply, SecretSource};
use super::notification::Sms;
use super::{GatewaySetupError, SendError};
use crate::config::TwilioConfig;

/// Twilio error codes that reject the `To` number: 21211 (invalid 'To'
/// phone number) and 21614 ('To' number is not a valid mobile number).
const INVALID_RECIPIENT_CODES: &[u64] = &[21211, 21614];

/// A Twilio account reached over HTTP.
pub struct TwilioGateway {
    name: String,
    endpoint: HttpEndpoint,
    authorization: HeaderValue,
    from: String,
}

impl TwilioGateway {
    /// Sets up the gateway `name` from its config and reads the auth token
    /// from the environment variable that `auth_token_env` names.
    pub fn new(name: &str, config: &TwilioConfig) -> Result<Self, GatewaySetupError> {
        http::check_path_segment(name, "account_sid", &config.account_sid)?;
        if config.from.trim().is_empty() {
            return Err(GatewaySetupError {
                name: name.to_owned(),
                message: "from is empty; set it to a sender number in E.164 form, such as \
                          +14155550123"
                    .into(),
            });
        }

        let source = SecretSource {
            gateway: name,
            key: "auth_token_env",
            variable: &config.auth_token_env,
            description: "the Twilio auth token",
        };
        let token = http::read_secret(source)?;
        let credentials = format!("{}:{}", config.account_sid, token.expose());
        // Check the token alone, so a bad one is reported as the variable's
        // fault before it is hidden inside base64.
        http::authorization(source, "Basic", token.expose())?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        let authorization = http::authorization(source, "Basic", &encoded)?;

        let path = format!("/2010-04-01/Accounts/{}/Messages.json", config.account_sid);
        let url = http::api_url(name, &config.base_url, &path)?;
        Ok(Self {
            name: name.to_owned(),
            endpoint: HttpEndpoint::new(name, url, config.timeout_secs, token)?,
            authorization,
            from: config.from.clone(),
        })
    }

    /// Sends `sms` from its own sender, or the gateway's `from`, and returns
    /// the message SID.
    pub async fn send(&self, sms: &Sms) -> Result<String, SendError> {
        let from = sms.from.as_deref().unwrap_or(&self.from);
        let form = [("To", sms.to.as_str()), ("From", from), ("Body", &sms.body)];
        let request = self
            .endpoint
            .post()
            .header(AUTHORIZATION, self.authorization.clone())
            .form(&form);
        let reply = self.endpoint.send(request).await?;
        let error = TwilioError::parse(&reply);
        if let Some(error) = &error
            && reply.status == StatusCode::BAD_REQUEST
            && INVALID_RECIPIENT_CODES.contains(&error.code)
        {
            let message = self.endpoint.failure_message(&reply, Some(error.detail()));
            return Err(SendError::InvalidInput(message));
        }
        self.endpoint
            .check(&reply, error.as_ref().map(TwilioError::detail))?;

        let sid = reply
            .json()
            .and_then(|body| body.get("sid")?.as_str().map(str::to_owned))
            .unwrap_or_default();
        if sid.is_empty() {
            tracing::warn!(gateway = %self.name, status = %reply.status, "twilio accepted the message without a sid in the reply");
        } else {
            tracing::debug!(gateway = %self.name, provider_id = %sid, "twilio accepted the message");
        }
        Ok(sid)
    }
}

/// Twilio's error body.
#[derive(Debug)]
struct TwilioError {
    code: u64,
    message: String,
    more_info: Option<String>,
}

impl TwilioError {
    /// Parses the error body of `reply`, or returns `None` when it has
    /// another shape.
    fn parse(reply: &HttpReply) -> Option<Self> {
        if reply.status.is_success() {
            return None;
        }
        let body = reply.json()?;
        Some(Self {
            code: body.get("code")?.as_u64()?,
            message: body.get("message")?.as_str()?.to_owned(),
            more_info: body
                .get("more_info")
                .and_then(|more_info| more_info.as_str())
                .map(str::to_owned),
        })
    }

    /// Returns `error 21211: message (more_info)`.
    fn detail(&self) -> String {
        match &self.more_info {
            Some(more_info) => format!("error {}: {} ({more_info})", self.code, self.message),
            None => format!("error {}: {}", self.code, self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::super::http::testing::{Canned, TestServer};
    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "twilio-auth-token-secret";

    fn gateway(base_url: &str) -> TwilioGateway {
        let path = format!("/2010-04-01/Accounts/{SID}/Messages.json");
        let url = http::api_url("sms", base_url, &path).unwrap();
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
        TwilioGateway {
            name: "sms".into(),
            endpoint: HttpEndpoint::new("sms", url, 2, http::Secret::new(TOKEN)).unwrap(),
            authorization: format!("Basic {encoded}").parse().unwrap(),
            from: "+15005550006".into(),
        }
    }

    fn sms() -> Sms {
        Sms {
            to: "+14155550123".into(),
            from: None,
            body: "Your code is 123456 & good for 10 min".into(),
        }
    }

    fn twilio_error(status: u16, code: u64, message: &str) -> Canned {
        Canned::json(
            status,
            json!({
                "code": code,
                "message": message,
                "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
                "status": status
            }),
        )
    }

    fn created() -> Canned {
        Canned::json(
            201,
            json!({
                "sid": "SM1f0e8ae6ade43cb3c0ce4525424e404f",
                "status": "queued",
                "to": "+14155550123",
                "from": "+15005550006",
                "account_sid": SID
            }),
        )
    }

    #[tokio::test]
    async fn posts_form_with_basic_auth() {
        let server = TestServer::start(vec![created()]).await;

        let sid = gateway(&server.url).send(&sms()).await.unwrap();

        assert_eq!(sid, "SM1f0e8ae6ade43cb3c0ce4525424e404f");
        let request = server.only_request();
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.uri,
            format!("/2010-04-01/Accounts/{SID}/Messages.json")
        );
        assert_eq!(
            request.header("content-type"),
            "application/x-www-form-urlencoded"
        );
        let credentials = request
            .header("authorization")
            .strip_prefix("Basic ")
            .expect("basic auth");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .unwrap();
        assert_eq!(decoded, format!("{SID}:{TOKEN}").as_bytes());
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        let expected = [
            ("To", "+14155550123"),
            ("From", "+15005550006"),
            ("Body", "Your code is 123456 & good for 10 min"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()));
        assert_eq!(form, expected);
    }

    #[tokio::test]
    async fn worker_sender_overrides_config() {
        let server = TestServer::start(vec![created()]).await;
        let mut sms = sms();
        sms.from = Some("Herald".into());

        gateway(&server.url).send(&sms).await.unwrap();

        let request = server.only_request();
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
            .into_owned()
            .collect();
        assert!(form.contains(&("From".into(), "Herald".into())), "{form:?}");
    }

    #[tokio::test]
    async fn invalid_recipient_is_invalid_input() {
        for code in [21211, 21614] {
            let reply = twilio_error(400, code, "The 'To' number +14155550123 is not valid.");
            let server = TestServer::start(vec![reply]).await;

            let error = gateway(&server.url).send(&sms()).await.unwrap_err();

            let SendError::InvalidInput(message) = &error else {
                panic!("{code}: expected invalid input, got {error:?}");
            };
            assert!(
                message.contains(&format!("error {code}: The 'To' number")),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn other_client_errors_are_permanent() {
        let server = TestServer::start(vec![twilio_error(
            400,
            21610,
            "Attempt to send to unsubscribed recipient",
        )])
        .await;

        let error = gateway(&server.url).send(&sms()).await.unwrap_err();

        let SendError::Permanent(message) = &error else {
            panic!("expected permanent, got {error:?}");
        };
        assert!(
            message.contains("400 Bad Request: error 21610"),
            "{message}"
        );
        assert!(message.contains("docs/errors/21610"), "{message}");
    }

    #[tokio::test]
    async fn authentication_failure_hides_token() {
        let server = TestServer::start(vec![twilio_error(
            401,
            20003,
            &format!("Authenticate with {TOKEN}"),
        )])
        .await;

        let error = gateway(&server.url).send(&sms()).await.unwrap_err();

        let SendError::Permanent(message) = &error else {
            panic!("expected permanent, got {error:?}");
        };
        assert!(!message.contains(TOKEN), "{message}");
    }

    #[tokio::test]
    async fn too_many_requests_is_rate_limited() {
        let server = TestServer::start(vec![Canned::Reply {
            status: 429,
            headers: vec![("retry-after", "3".into())],
            body: json!({"code": 20429, "message": "Too Many Requests", "status": 429}).to_string(),
        }])
        .await;

        let error = gateway(&server.url).send(&sms()).await.unwrap_err();

        let SendError::RateLimited { retry_after, .. } = &error else {
            panic!("expected rate limited, got {error:?}");
        };
        assert_eq!(*retry_after, Duration::from_secs(3));
    }

    #[tokio::test]
    async fn service_unavailable_is_transient() {
        let server = TestServer::start(vec![twilio_error(503, 20503, "Service unavailable")]).await;

        let error = gateway(&server.url).send(&sms()).await.unwrap_err();

        assert!(matches!(error, SendError::Transient(_)), "{error:?}");
    }

    #[test]
    fn unset_token_variable_is_named() {
        let config = TwilioConfig {
            base_url: "https://api.twilio.com".into(),
            account_sid: SID.into(),
            auth_token_env: "HERALD_TEST_TWILIO_TOKEN_NEVER_SET".into(),
            from: "+15005550006".into(),
            timeout_secs: 10,
        };
        let Err(error) = TwilioGateway::new("sms", &config) else {
            panic!("expected a setup error");
        };
        assert!(
            error.message.contains("HERALD_TEST_TWILIO_TOKEN_NEVER_SET"),
            "{}",
            error.message
        );
        assert!(error.message.contains("is not set"), "{}", error.message);
    }

    #[test]
    fn account_sid_must_be_a_path_segment() {
        let config = TwilioConfig {
            base_url: "https://api.twilio.com".into(),
            account_sid: "AC1/../x".into(),
            auth_token_env: "HERALD_TEST_TWILIO_TOKEN_NEVER_SET".into(),
            from: "+15005550006".into(),
            timeout_secs: 10,
        };
        let Err(error) = TwilioGateway::new("sms", &config) else {
            panic!("expected a setup error");
        };
        assert!(error.message.contains("account_sid"), "{}", error.message);
    }
}
