//! A fake of the four HTTP providers on 127.0.0.1: SendGrid's Mail Send, Twilio's
//! Messages, FCM's `messages:send` and a Standard Webhooks receiver.
//!
//! One axum app serves all four on one port. Each provider checks its own
//! authentication and request shape and replies with the provider's
//! documented success and error bodies. Every request is recorded with its
//! arrival time and the reply it got. A test can script the replies of one
//! path (a status with headers and body, or a hang that never replies), and
//! [`Providers::closing_url`] is a raw TCP port that closes every connection
//! without a response.
//!
//! The server runs on its own thread and runtime, so its timing does not
//! depend on what the test's runtime is doing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// SendGrid API key the fake accepts.
pub const SENDGRID_KEY: &str = "SG.fake-provider-key.7c1e";
/// Twilio account SID the fake accepts.
pub const TWILIO_SID: &str = "AC00000000000000000000000000000001";
/// Twilio auth token the fake accepts.
pub const TWILIO_TOKEN: &str = "fake-twilio-auth-token-5d2a";
/// Sender number configured for the Twilio gateway.
pub const TWILIO_FROM: &str = "+15005550006";
/// FCM project id the fake accepts.
pub const FCM_PROJECT: &str = "herald-test";
/// FCM bearer token the fake accepts.
pub const FCM_TOKEN: &str = "ya29.fake-fcm-access-token";
/// Webhook signing secret: `whsec_` and the base64 of `herald-fake-webhook-key`.
pub const WEBHOOK_SECRET: &str = "whsec_aGVyYWxkLWZha2Utd2ViaG9vay1rZXk=";
/// Sender configured for the SendGrid gateway.
pub const SENDGRID_FROM: &str = "Example <noreply@example.com>";

/// Path of SendGrid's Mail Send endpoint.
pub const SENDGRID_PATH: &str = "/v3/mail/send";
/// Path of the webhook receiver that the `webhook` gateway posts to.
pub const WEBHOOK_PATH: &str = "/hooks/herald";

/// Environment variables that carry the secrets to herald.
pub const SENDGRID_KEY_ENV: &str = "HERALD_TEST_SENDGRID_KEY";
pub const TWILIO_TOKEN_ENV: &str = "HERALD_TEST_TWILIO_TOKEN";
pub const FCM_TOKEN_ENV: &str = "HERALD_TEST_FCM_TOKEN";
pub const WEBHOOK_SECRET_ENV: &str = "HERALD_TEST_WEBHOOK_SECRET";

/// Largest difference between a webhook timestamp and the receiver's clock
/// that the receiver accepts. Five minutes is a common receiver default.
const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Returns the Twilio Messages path for the fake's account.
pub fn twilio_path() -> String {
    format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages.json")
}

/// Returns the FCM `messages:send` path for the fake's project.
pub fn fcm_path() -> String {
    format!("/v1/projects/{FCM_PROJECT}/messages:send")
}

/// Returns the environment variables that hold the fake's secrets, for
/// [`crate::support::Herald::start_with_env`].
pub fn secrets_env() -> [(&'static str, &'static str); 4] {
    [
        (SENDGRID_KEY_ENV, SENDGRID_KEY),
        (TWILIO_TOKEN_ENV, TWILIO_TOKEN),
        (FCM_TOKEN_ENV, FCM_TOKEN),
        (WEBHOOK_SECRET_ENV, WEBHOOK_SECRET),
    ]
}

/// Returns a `sendgrid` gateway table called `name` for `base_url`.
pub fn sendgrid_table(name: &str, base_url: &str) -> String {
    format!(
        "[gateways.{name}]\nkind = \"sendgrid\"\nbase_url = \"{base_url}\"\n\
         api_key_env = \"{SENDGRID_KEY_ENV}\"\nfrom = \"{SENDGRID_FROM}\"\n"
    )
}

/// Returns a `twilio` gateway table called `name` for `base_url`.
pub fn twilio_table(name: &str, base_url: &str) -> String {
    format!(
        "[gateways.{name}]\nkind = \"twilio\"\nbase_url = \"{base_url}\"\n\
         account_sid = \"{TWILIO_SID}\"\nauth_token_env = \"{TWILIO_TOKEN_ENV}\"\n\
         from = \"{TWILIO_FROM}\"\n"
    )
}

/// Returns an `fcm` gateway table called `name` for `base_url`.
pub fn fcm_table(name: &str, base_url: &str) -> String {
    format!(
        "[gateways.{name}]\nkind = \"fcm\"\nbase_url = \"{base_url}\"\n\
         project_id = \"{FCM_PROJECT}\"\ntoken_env = \"{FCM_TOKEN_ENV}\"\n"
    )
}

/// Returns a `webhook` gateway table called `name` that posts to `url`.
pub fn webhook_table(name: &str, url: &str) -> String {
    format!(
        "[gateways.{name}]\nkind = \"webhook\"\nbase_url = \"{url}\"\n\
         secret_env = \"{WEBHOOK_SECRET_ENV}\"\n"
    )
}

/// Returns the Standard Webhooks signature (`v1,` and base64) of `body` sent
/// as `webhook_id` at `timestamp`, keyed with [`WEBHOOK_SECRET`].
pub fn webhook_signature(webhook_id: &str, timestamp: &str, body: &[u8]) -> String {
    let encoded = WEBHOOK_SECRET.strip_prefix("whsec_").unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{webhook_id}.{timestamp}.").as_bytes());
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// One request as the fake received it, and the reply it sent.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Arrival time, for spacing between requests.
    pub at: Instant,
    /// Arrival time on the wall clock, for comparing with HTTP-dates.
    pub at_wall: SystemTime,
    /// Status of the reply, or `None` while the request hangs.
    pub status: Option<u16>,
    /// Headers of the reply.
    pub reply_headers: Vec<(String, String)>,
    /// Id the fake assigned to an accepted notification.
    pub provider_id: Option<String>,
}

impl Received {
    /// Returns a request header as text, or `None` when it is missing.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    /// Returns a reply header, or `None` when the reply had none.
    pub fn reply_header(&self, name: &str) -> Option<&str> {
        self.reply_headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Parses the body as JSON, or panics showing it.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Parses the body as a form, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

/// A scripted reply for one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A response with this status, headers and body.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
        /// When set, a `Retry-After` HTTP-date this far after the moment of
        /// the reply, rounded up to a whole second.
        retry_after_date_in: Option<Duration>,
    },
    /// No response: the server accepts the request and never replies.
    Hang,
}

impl Reply {
    /// Returns a reply with a JSON body.
    pub fn json(status: u16, body: Value) -> Self {
        Self::Status {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            retry_after_date_in: None,
        }
    }

    /// Returns a reply with an empty body.
    pub fn empty(status: u16) -> Self {
        Self::Status {
            status,
            headers: Vec::new(),
            body: String::new(),
            retry_after_date_in: None,
        }
    }

    /// Returns the reply with `name: value` added.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Self::Status { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// Returns the reply with a `Retry-After` HTTP-date `wait` after the
    /// moment it is sent.
    pub fn retry_after_date_in(mut self, wait: Duration) -> Self {
        if let Self::Status {
            retry_after_date_in,
            ..
        } = &mut self
        {
            *retry_after_date_in = Some(wait);
        }
        self
    }
}

/// SendGrid's error body.
pub fn sendgrid_error(message: &str, field: Option<&str>) -> Value {
    json!({"errors": [{"message": message, "field": field, "help": null}]})
}

/// Twilio's error body.
pub fn twilio_error(status: u16, code: u32, message: &str) -> Value {
    json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status
    })
}

/// FCM's error body, with an FCM error code in `details` when given.
pub fn fcm_error(code: u16, status: &str, message: &str, error_code: Option<&str>) -> Value {
    let details: Vec<Value> = error_code
        .map(|error_code| {
            json!({
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": error_code
            })
        })
        .into_iter()
        .collect();
    json!({"error": {"code": code, "message": message, "status": status, "details": details}})
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    closed_connections: AtomicUsize,
    next_id: AtomicUsize,
}

/// The running fake. It stops when dropped.
pub struct Providers {
    /// `http://127.0.0.1:PORT`, the base URL of every provider.
    pub url: String,
    /// `http://127.0.0.1:PORT` of a listener that closes every connection
    /// without a response.
    pub closing_url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Providers {
    /// Starts the fake on free loopback ports.
    pub fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addresses) = std::sync::mpsc::channel();
        let state = Arc::clone(&shared);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("build the fake providers' runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addresses = (
                    listener.local_addr().unwrap(),
                    closing.local_addr().unwrap(),
                );
                ready.send(addresses).unwrap();
                tokio::spawn(close_connections(closing, Arc::clone(&state)));
                let app = axum::Router::new().fallback(handle).with_state(state);
                let server = std::future::IntoFuture::into_future(axum::serve(listener, app));
                // Graceful shutdown would wait for hanging requests, so the
                // server future is dropped as soon as the stop signal comes.
                tokio::select! {
                    _ = server => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime cancels hanging handlers.
            runtime.shutdown_background();
        });
        let (address, closing) = addresses
            .recv_timeout(Duration::from_secs(10))
            .expect("fake providers did not start");
        Self {
            url: format!("http://{address}"),
            closing_url: format!("http://{closing}"),
            shared,
            stop: Some(stop),
        }
    }

    /// Returns gateway tables for all four providers, called `email`
    /// (SendGrid), `sms` (Twilio), `push` (FCM) and `webhook`.
    pub fn gateways(&self) -> String {
        [
            sendgrid_table("email", &self.url),
            twilio_table("sms", &self.url),
            fcm_table("push", &self.url),
            webhook_table("webhook", &self.webhook_url()),
        ]
        .join("\n")
    }

    /// Returns the URL of the webhook receiver.
    pub fn webhook_url(&self) -> String {
        format!("{}{WEBHOOK_PATH}", self.url)
    }

    /// Queues `replies` for the next requests to `path`. Once they run out,
    /// the provider behind `path` replies as usual.
    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.shared
            .scripts
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    /// Returns every request to `path` so far, in arrival order.
    pub fn requests(&self, path: &str) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|received| received.path == path)
            .cloned()
            .collect()
    }

    /// Returns every request so far, to any path.
    pub fn all_requests(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Returns how many connections the closing listener has closed.
    pub fn closed_connections(&self) -> usize {
        self.shared.closed_connections.load(Ordering::SeqCst)
    }

    /// Waits until `path` has received `count` requests and returns them.
    /// Panics after `timeout` showing what arrived.
    pub async fn wait_for_requests(
        &self,
        path: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests(path);
            if requests.len() >= count {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "{path} received {} of {count} requests within {timeout:?}",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Providers {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Accepts connections, reads what the client sends first and closes them.
async fn close_connections(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let mut buffer = [0; 4096];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer).await;
        drop(stream);
        shared.closed_connections.fetch_add(1, Ordering::SeqCst);
    }
}

/// A reply the provider logic chose, before it is recorded.
struct Outcome {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    provider_id: Option<String>,
}

impl Outcome {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
            provider_id: None,
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.to_owned(),
            provider_id: None,
        }
    }
}

/// Records the request, then replies with the next scripted reply for its
/// path or with the provider's own logic.
async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 10 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let index = {
        let mut received = shared.received.lock().unwrap();
        received.push(Received {
            method: parts.method.to_string(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            body: body.clone(),
            at: Instant::now(),
            at_wall: SystemTime::now(),
            status: None,
            reply_headers: Vec::new(),
            provider_id: None,
        });
        received.len() - 1
    };

    let scripted = shared
        .scripts
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let outcome = match scripted {
        Some(Reply::Hang) => std::future::pending().await,
        Some(Reply::Status {
            status,
            mut headers,
            body,
            retry_after_date_in,
        }) => {
            if let Some(wait) = retry_after_date_in {
                headers.push(("retry-after".into(), http_date_in(wait)));
            }
            Outcome {
                status,
                headers,
                body,
                provider_id: None,
            }
        }
        None => {
            let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
            provider_reply(&parts.method, &path, &parts.headers, &body, id)
        }
    };

    {
        let mut received = shared.received.lock().unwrap();
        let entry = &mut received[index];
        entry.status = Some(outcome.status);
        entry.reply_headers = outcome.headers.clone();
        entry.provider_id = outcome.provider_id.clone();
    }
    let mut response =
        (StatusCode::from_u16(outcome.status).unwrap(), outcome.body).into_response();
    for (name, value) in outcome.headers {
        let name = axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// Returns an IMF-fixdate `wait` from now, rounded up to a whole second so
/// the date is never earlier than `wait` from now.
fn http_date_in(wait: Duration) -> String {
    let since_epoch = (SystemTime::now() + wait)
        .duration_since(UNIX_EPOCH)
        .unwrap();
    let whole = since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(whole))
}

/// Routes a request to the provider that owns its path.
fn provider_reply(
    method: &axum::http::Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    id: usize,
) -> Outcome {
    if method != axum::http::Method::POST {
        return Outcome::text(405, "method not allowed");
    }
    if path == SENDGRID_PATH {
        return sendgrid(headers, body, id);
    }
    if let Some(rest) = path.strip_prefix("/2010-04-01/Accounts/")
        && let Some(sid) = rest.strip_suffix("/Messages.json")
    {
        return twilio(sid, headers, body, id);
    }
    if let Some(rest) = path.strip_prefix("/v1/projects/")
        && let Some(project) = rest.strip_suffix("/messages:send")
    {
        return fcm(project, headers, body, id);
    }
    if path.starts_with("/hooks/") {
        return webhook(headers, body);
    }
    Outcome::text(404, "no such endpoint")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn is_json(headers: &HeaderMap) -> bool {
    header(headers, "content-type").is_some_and(|value| value.starts_with("application/json"))
}

/// SendGrid v3 Mail Send: bearer API key, JSON body with personalizations,
/// from, subject and content. 202 with `X-Message-Id` on success.
fn sendgrid(headers: &HeaderMap, body: &[u8], id: usize) -> Outcome {
    let error = |status: u16, message: &str, field: Option<&str>| {
        Outcome::json(status, sendgrid_error(message, field))
    };
    if header(headers, "authorization") != Some(&format!("Bearer {SENDGRID_KEY}")) {
        return error(
            401,
            "The provided authorization grant is invalid, expired, or revoked",
            None,
        );
    }

    if !is_json(headers) {
        return error(415, "Content-Type should be application/json", None);
    }

    let Ok(mail) = serde_json::from_slice::<Value>(body) else {
        return error(400, "Bad Request", None);
    };
    let is_address = |value: &Value| {
        value["email"]
            .as_str()
            .is_some_and(|email| email.contains('@'))
    };
    let personalizations = mail["personalizations"].as_array();
    let Some(personalizations) = personalizations.filter(|list| !list.is_empty()) else {
        return error(
            400,
            "The personalizations field is required and must have at least one personalization.",
            Some("personalizations"),
        );
    };
    for (index, personalization) in personalizations.iter().enumerate() {
        let to = personalization["to"].as_array();
        let valid = to.is_some_and(|to| !to.is_empty() && to.iter().all(is_address));
        if !valid {
            return error(
                400,
                "The to array is required for all personalization objects, and must have at \
                 least one email object with a valid email address.",
                Some(&format!("personalizations.{index}.to")),
            );
        }
    }

    if !is_address(&mail["from"]) {
        return error(
            400,
            "The from email does not contain a valid address.",
            Some("from.email"),
        );
    }

    if mail["subject"].as_str().is_none_or(str::is_empty) {
        return error(400, "The subject is required.", Some("subject"));
    }

    let content = mail["content"].as_array();
    let content_ok = content.is_some_and(|parts| {
        !parts.is_empty()
            && parts.iter().all(|part| {
                part["type"].as_str().is_some()
                    && part["value"].as_str().is_some_and(|v| !v.is_empty())
            })
    });
    if !content_ok {
        return error(
            400,
            "The content value must be a string at least one character in length.",
            Some("content.0.value"),
        );
    }

    let message_id = format!("fake{id:018}");
    Outcome {
        status: 202,
        headers: vec![("x-message-id".into(), message_id.clone())],
        body: String::new(),
        provider_id: Some(message_id),
    }
}

/// Twilio Messages: basic auth with the account SID and token, a form with
/// To, From and Body. 201 with the message resource on success.
fn twilio(sid: &str, headers: &HeaderMap, body: &[u8], id: usize) -> Outcome {
    let error = |status: u16, code: u32, message: &str| {
        Outcome::json(status, twilio_error(status, code, message))
    };
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"));
    if header(headers, "authorization") != Some(&format!("Basic {expected}")) {
        return error(401, 20003, "Authenticate");
    }

    if sid != TWILIO_SID {
        return error(
            404,
            20404,
            &format!(
                "The requested resource /2010-04-01/Accounts/{sid}/Messages.json was not found"
            ),
        );
    }

    if header(headers, "content-type") != Some("application/x-www-form-urlencoded") {
        return error(400, 21620, "Invalid media type");
    }

    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let Some(to) = form.get("To") else {
        return error(400, 21604, "A 'To' phone number is required.");
    };
    let Some(from) = form.get("From") else {
        return error(400, 21603, "A 'From' phone number is required.");
    };
    let Some(text) = form.get("Body").filter(|text| !text.is_empty()) else {
        return error(400, 21602, "Message body is required.");
    };
    let digits = to.strip_prefix('+').unwrap_or("");
    if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return error(
            400,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }

    let message_sid = format!("SM{id:032x}");
    let mut outcome = Outcome::json(
        201,
        json!({
            "sid": message_sid,
            "account_sid": TWILIO_SID,
            "to": to,
            "from": from,
            "body": text,
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "price": null,
            "error_code": null,
            "error_message": null,
            "uri": format!("/2010-04-01/Accounts/{TWILIO_SID}/Messages/{message_sid}.json")
        }),
    );
    outcome.provider_id = Some(message_sid);
    outcome
}

/// FCM HTTP v1 `messages:send`: bearer token, JSON with `message.token` and
/// string data values. 200 with the message name on success.
fn fcm(project: &str, headers: &HeaderMap, body: &[u8], id: usize) -> Outcome {
    let error = |code: u16, status: &str, message: &str| {
        Outcome::json(code, fcm_error(code, status, message, None))
    };
    if header(headers, "authorization") != Some(&format!("Bearer {FCM_TOKEN}")) {
        return error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential.",
        );
    }

    if project != FCM_PROJECT {
        return error(
            403,
            "PERMISSION_DENIED",
            &format!(
                "Permission 'cloudmessaging.messages.create' denied on resource \
                 '//cloudresourcemanager.googleapis.com/projects/{project}'"
            ),
        );
    }

    let invalid = |field: &str, description: &str| {
        Outcome::json(
            400,
            json!({"error": {
                "code": 400,
                "message": format!("Invalid value at '{field}': {description}"),
                "status": "INVALID_ARGUMENT",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": field, "description": description}]
                }]
            }}),
        )
    };
    if !is_json(headers) {
        return invalid("message", "request body is not JSON");
    }

    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("message", "request body is not JSON");
    };
    let message = &request["message"];
    if message["token"].as_str().is_none_or(str::is_empty) {
        return invalid("message.token", "a registration token is required");
    }

    if let Some(data) = message.get("data") {
        let strings = data
            .as_object()
            .is_some_and(|data| data.values().all(Value::is_string));
        if !strings {
            return invalid("message.data", "data values must be strings");
        }
    }

    let name = format!("projects/{FCM_PROJECT}/messages/0:{id:016}%31bd1c9631bd1c96");
    let mut outcome = Outcome::json(200, json!({"name": name}));
    outcome.provider_id = Some(name);
    outcome
}

/// Verifies a request as a Standard Webhooks receiver does: the three
/// headers, the timestamp tolerance and the signature, then the body's
/// shape. Replies 204 on success.
fn webhook(headers: &HeaderMap, body: &[u8]) -> Outcome {
    let (Some(id), Some(timestamp), Some(signatures)) = (
        header(headers, "webhook-id"),
        header(headers, "webhook-timestamp"),
        header(headers, "webhook-signature"),
    ) else {
        return Outcome::text(
            400,
            "missing webhook-id, webhook-timestamp or webhook-signature",
        );
    };
    let Ok(seconds) = timestamp.parse::<u64>() else {
        return Outcome::text(400, "invalid webhook-timestamp");
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(seconds) > WEBHOOK_TOLERANCE.as_secs() {
        return Outcome::text(400, "webhook-timestamp is outside the tolerance");
    }

    let expected = webhook_signature(id, timestamp, body);
    if !signatures.split(' ').any(|signature| signature == expected) {
        return Outcome::text(401, "no matching signature");
    }

    let Ok(event) = serde_json::from_slice::<Value>(body) else {
        return Outcome::text(400, "body is not JSON");
    };
    let shaped =
        event["type"].is_string() && event["timestamp"].is_string() && event.get("data").is_some();
    if !shaped {
        return Outcome::text(400, "body needs type, timestamp and data");
    }

    Outcome {
        status: 204,
        headers: Vec::new(),
        body: String::new(),
        provider_id: Some(id.to_owned()),
    }
}
