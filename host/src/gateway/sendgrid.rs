//! The `sendgrid` gateway: emails through the SendGrid v3 Mail Send API
//! (`POST {base_url}/v3/mail/send` with a bearer API key).
//!
//! The email's parsed fields become the JSON request: one personalization
//! with the to, cc and bcc recipients, then from, reply_to, subject, the
//! text and HTML bodies in that order, and the extra headers. The
//! Message-ID goes out as a header and as the custom argument
//! `herald_message_id`, which SendGrid repeats in its event webhooks. A 202
//! reply is sent, and its `X-Message-Id` header is the provider id.

use lettre::message::Mailbox;
use reqwest::header::AUTHORIZATION;
use serde::Serialize;
use std::collections::BTreeMap;

use super::http::{self, HttpEndpoint, SecretSource};
use super::{GatewaySetupError, PreparedEmail, SendError, parse_from};
use crate::config::SendGridConfig;

/// Path of the Mail Send endpoint.
const MAIL_SEND_PATH: &str = "/v3/mail/send";

/// Reply header that carries SendGrid's id for the accepted message.
const MESSAGE_ID_HEADER: &str = "x-message-id";

/// A SendGrid account reached over HTTP.
pub struct SendGridGateway {
    name: String,
    endpoint: HttpEndpoint,
    authorization: reqwest::header::HeaderValue,
    from: Mailbox,
}

impl SendGridGateway {
    /// Sets up the gateway `name` from its config and reads the API key from
    /// the environment variable that `api_key_env` names.
    pub fn new(name: &str, config: &SendGridConfig) -> Result<Self, GatewaySetupError> {
        let source = SecretSource {
            gateway: name,
            key: "api_key_env",
            variable: &config.api_key_env,
            description: "the SendGrid API key",
        };
        let key = http::read_secret(source)?;
        let authorization = http::authorization(source, "Bearer", key.expose())?;
        let url = http::api_url(name, &config.base_url, MAIL_SEND_PATH)?;
        Ok(Self {
            name: name.to_owned(),
            endpoint: HttpEndpoint::new(name, url, config.timeout_secs, key)?,
            authorization,
            from: parse_from(name, &config.from)?,
        })
    }

    /// Returns the sender used when a worker sets none.
    pub fn default_from(&self) -> &Mailbox {
        &self.from
    }

    /// Sends `email` and returns SendGrid's message id, or the email's
    /// Message-ID when the reply lacks `X-Message-Id`.
    pub async fn send(&self, email: &PreparedEmail) -> Result<String, SendError> {
        let body = MailSend::from_email(email)?;
        let request = self
            .endpoint
            .post()
            .header(AUTHORIZATION, self.authorization.clone())
            .json(&body);
        let reply = self.endpoint.send(request).await?;
        self.endpoint.check(&reply, error_detail(&reply.body))?;

        let provider_id = reply
            .headers
            .get(MESSAGE_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty());
        match provider_id {
            Some(id) => {
                tracing::debug!(gateway = %self.name, provider_id = id, "sendgrid accepted the email");
                Ok(id.to_owned())
            }
            None => {
                tracing::warn!(gateway = %self.name, status = %reply.status, "sendgrid accepted the email without an X-Message-Id header; recording the Message-ID instead");
                Ok(email.message_id.clone())
            }
        }
    }
}

/// The Mail Send request body.
#[derive(Debug, Serialize)]
struct MailSend<'a> {
    personalizations: [Personalization<'a>; 1],
    from: Address<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<Address<'a>>,
    subject: &'a str,
    content: Vec<Content<'a>>,
    headers: BTreeMap<&'a str, &'a str>,
    custom_args: BTreeMap<&'static str, &'a str>,
}

/// Recipients of the message. SendGrid rejects an address that appears
/// twice across to, cc and bcc.
#[derive(Debug, Serialize)]
struct Personalization<'a> {
    to: Vec<Address<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cc: Vec<Address<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bcc: Vec<Address<'a>>,
}

/// An email address with an optional display name.
#[derive(Debug, Serialize)]
struct Address<'a> {
    email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// One body of the message, with its MIME type.
#[derive(Debug, Serialize)]
struct Content<'a> {
    #[serde(rename = "type")]
    mime_type: &'static str,
    value: &'a str,
}

impl<'a> MailSend<'a> {
    /// Builds the request for `email`. The checks here cover what SendGrid
    /// rejects but an SMTP server accepts: no to recipient, an empty
    /// subject or body, and a header repeated with several values.
    fn from_email(email: &'a PreparedEmail) -> Result<Self, SendError> {
        if email.to.is_empty() {
            return Err(SendError::InvalidInput(
                "sendgrid needs at least one to recipient; move a cc or bcc address to to".into(),
            ));
        }
        if email.subject.trim().is_empty() {
            return Err(SendError::InvalidInput(
                "sendgrid needs a subject; set one".into(),
            ));
        }

        // SendGrid wants the text part before the HTML part, and rejects
        // empty values.
        let content: Vec<Content<'a>> = [
            ("text/plain", email.text.as_deref()),
            ("text/html", email.html.as_deref()),
        ]
        .into_iter()
        .filter_map(|(mime_type, value)| {
            let value = value.filter(|value| !value.is_empty())?;
            Some(Content { mime_type, value })
        })
        .collect();
        if content.is_empty() {
            return Err(SendError::InvalidInput(
                "email body is empty; sendgrid needs text or html of at least one character".into(),
            ));
        }

        let mut headers = BTreeMap::new();
        headers.insert("Message-ID", email.message_id.as_str());
        for (name, value) in &email.headers {
            let repeated = headers
                .keys()
                .any(|known: &&str| known.eq_ignore_ascii_case(name));
            if repeated {
                return Err(SendError::InvalidInput(format!(
                    "header \"{name}\" is set more than once; sendgrid takes one value per \
                     header, so join the values or drop the duplicate"
                )));
            }
            headers.insert(name.as_str(), value.as_str());
        }

        let mut seen: Vec<&str> = Vec::new();
        let mut unique = |mailboxes: &'a [Mailbox]| -> Vec<Address<'a>> {
            let mut addresses = Vec::new();
            for mailbox in mailboxes {
                let email: &str = mailbox.email.as_ref();
                if seen.iter().any(|known| known.eq_ignore_ascii_case(email)) {
                    continue;
                }
                seen.push(email);
                addresses.push(Address::from(mailbox));
            }
            addresses
        };
        let personalization = Personalization {
            to: unique(&email.to),
            cc: unique(&email.cc),
            bcc: unique(&email.bcc),
        };

        let unbracketed = email
            .message_id
            .trim_start_matches('<')
            .trim_end_matches('>');
        Ok(Self {
            personalizations: [personalization],
            from: Address::from(&email.from),
            reply_to: email.reply_to.as_ref().map(Address::from),
            subject: &email.subject,
            content,
            headers,
            custom_args: BTreeMap::from([("herald_message_id", unbracketed)]),
        })
    }
}

impl<'a> From<&'a Mailbox> for Address<'a> {
    fn from(mailbox: &'a Mailbox) -> Self {
        Self {
            email: mailbox.email.to_string(),
            name: mailbox.name.as_deref().filter(|name| !name.is_empty()),
        }
    }
}

/// Extracts the messages of SendGrid's error body,
/// `{"errors": [{"message": "...", "field": "...", "help": "..."}]}`, as
/// `message (field from.email); …`.
fn error_detail(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errors = value.get("errors")?.as_array()?;
    let messages: Vec<String> = errors
        .iter()
        .filter_map(|error| {
            let message = error.get("message")?.as_str()?;
            match error.get("field").and_then(|field| field.as_str()) {
                Some(field) => Some(format!("{message} (field {field})")),
                None => Some(message.to_owned()),
            }
        })
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::super::email::{OutgoingEmail, prepare};
    use super::super::http::testing::{Canned, TestServer};
    use super::*;

    const KEY: &str = "SG.test-key.secret";

    fn gateway(base_url: &str) -> SendGridGateway {
        let config = SendGridConfig {
            base_url: base_url.to_owned(),
            api_key_env: "SENDGRID_API_KEY".into(),
            from: "Example <noreply@example.com>".into(),
            timeout_secs: 2,
        };
        let url = http::api_url("mail", &config.base_url, MAIL_SEND_PATH).unwrap();
        let key = http::Secret::new(KEY);
        SendGridGateway {
            name: "mail".into(),
            endpoint: HttpEndpoint::new("mail", url, config.timeout_secs, key).unwrap(),
            authorization: format!("Bearer {KEY}").parse().unwrap(),
            from: parse_from("mail", &config.from).unwrap(),
        }
    }

    fn email() -> PreparedEmail {
        let outgoing = OutgoingEmail {
            to: vec![
                "Ada Lovelace <ada@example.com>".into(),
                "bob@example.com".into(),
            ],
            cc: vec!["Carol <carol@example.com>".into(), "ADA@example.com".into()],
            bcc: vec!["audit@example.com".into()],
            reply_to: Some("Support <help@example.com>".into()),
            subject: "Welcome, Ada".into(),
            text: Some("Hello Ada".into()),
            html: Some("<p>Hello Ada</p>".into()),
            headers: vec![("X-Campaign".into(), "welcome".into())],
            ..OutgoingEmail::default()
        };
        let from = "Example <noreply@example.com>".parse().unwrap();
        prepare(&outgoing, &from, "m1").unwrap()
    }

    fn accepted() -> Canned {
        Canned::headers(202, vec![("x-message-id", "14c5d75ce93.dfd.64b469".into())])
    }

    #[tokio::test]
    async fn sends_mail_send_request() {
        let server = TestServer::start(vec![accepted()]).await;

        let id = gateway(&server.url).send(&email()).await.unwrap();

        assert_eq!(id, "14c5d75ce93.dfd.64b469");
        let request = server.only_request();
        assert_eq!(request.method, "POST");
        assert_eq!(request.uri, "/v3/mail/send");
        assert_eq!(request.header("authorization"), format!("Bearer {KEY}"));
        assert_eq!(request.header("content-type"), "application/json");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let expected = json!({
            "personalizations": [{
                "to": [
                    {"email": "ada@example.com", "name": "Ada Lovelace"},
                    {"email": "bob@example.com"}
                ],
                "cc": [{"email": "carol@example.com", "name": "Carol"}],
                "bcc": [{"email": "audit@example.com"}]
            }],
            "from": {"email": "noreply@example.com", "name": "Example"},
            "reply_to": {"email": "help@example.com", "name": "Support"},
            "subject": "Welcome, Ada",
            "content": [
                {"type": "text/plain", "value": "Hello Ada"},
                {"type": "text/html", "value": "<p>Hello Ada</p>"}
            ],
            "headers": {"Message-ID": "<m1@example.com>", "X-Campaign": "welcome"},
            "custom_args": {"herald_message_id": "m1@example.com"}
        });
        assert_eq!(body, expected);
    }

    #[tokio::test]
    async fn missing_message_id_header_falls_back() {
        let server = TestServer::start(vec![Canned::headers(202, Vec::new())]).await;

        let id = gateway(&server.url).send(&email()).await.unwrap();

        assert_eq!(id, "<m1@example.com>");
    }

    #[tokio::test]
    async fn bad_request_is_permanent_with_message() {
        let body = json!({"errors": [{
            "message": "The from address does not match a verified Sender Identity.",
            "field": "from",
            "help": "https://sendgrid.com/docs/for-developers/sending-email/sender-identity/"
        }]});
        let server = TestServer::start(vec![Canned::json(403, body)]).await;

        let error = gateway(&server.url).send(&email()).await.unwrap_err();

        let SendError::Permanent(message) = &error else {
            panic!("expected permanent, got {error:?}");
        };
        assert!(message.contains("403 Forbidden"), "{message}");
        assert!(
            message.contains("does not match a verified Sender Identity. (field from)"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn unauthorized_never_shows_key() {
        let body = json!({"errors": [{
            "message": format!("The provided authorization grant is invalid: {KEY}"),
            "field": null,
            "help": null
        }]});
        let server = TestServer::start(vec![Canned::json(401, body)]).await;

        let error = gateway(&server.url).send(&email()).await.unwrap_err();

        let SendError::Permanent(message) = &error else {
            panic!("expected permanent, got {error:?}");
        };
        assert!(!message.contains(KEY), "{message}");
        assert!(
            message.contains("grant is invalid: [redacted]"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn server_error_is_transient() {
        let body = json!({"errors": [{"message": "internal error", "field": null}]});
        let server = TestServer::start(vec![Canned::json(500, body)]).await;

        let error = gateway(&server.url).send(&email()).await.unwrap_err();

        let SendError::Transient(message) = &error else {
            panic!("expected transient, got {error:?}");
        };
        assert!(
            message.ends_with("500 Internal Server Error: internal error"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn too_many_requests_honours_retry_after() {
        let server = TestServer::start(vec![Canned::Reply {
            status: 429,
            headers: vec![("retry-after", "7".into())],
            body: json!({"errors": [{"message": "too many requests"}]}).to_string(),
        }])
        .await;

        let error = gateway(&server.url).send(&email()).await.unwrap_err();

        let SendError::RateLimited {
            message,
            retry_after,
        } = &error
        else {
            panic!("expected rate limited, got {error:?}");
        };
        assert_eq!(*retry_after, Duration::from_secs(7));
        assert!(message.contains("too many requests"), "{message}");
    }

    #[test]
    fn email_without_to_is_invalid() {
        let mut email = email();
        email.to.clear();
        let error = MailSend::from_email(&email).unwrap_err();
        assert!(matches!(error, SendError::InvalidInput(_)), "{error:?}");
    }

    #[test]
    fn repeated_header_is_invalid() {
        let mut email = email();
        email.headers.push(("x-campaign".into(), "other".into()));
        let error = MailSend::from_email(&email).unwrap_err();
        let SendError::InvalidInput(message) = error else {
            panic!("expected invalid input, got {error:?}");
        };
        assert!(message.contains("x-campaign"), "{message}");
    }

    #[test]
    fn empty_body_parts_are_left_out() {
        let mut email = email();
        email.text = Some(String::new());
        let body = serde_json::to_value(MailSend::from_email(&email).unwrap()).unwrap();
        assert_eq!(
            body["content"],
            json!([{"type": "text/html", "value": "<p>Hello Ada</p>"}])
        );
        email.html = None;
        assert!(MailSend::from_email(&email).is_err());
    }

    #[test]
    fn error_detail_joins_messages() {
        let body = br#"{"errors":[{"message":"a","field":"x"},{"message":"b","field":null}]}"#;
        assert_eq!(error_detail(body).as_deref(), Some("a (field x); b"));
        assert_eq!(error_detail(b"<html>"), None);
        assert_eq!(error_detail(br#"{"errors":[]}"#), None);
    }
}
