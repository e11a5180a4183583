//! Plumbing shared by the HTTP gateways ([`super::sendgrid`],
//! [`super::twilio`], [`super::fcm`] and [`super::webhook`]): the reqwest
//! client, secrets read from the environment, and the classification of a
//! provider's reply or a failed request into a [`SendError`].
//!
//! Every provider is classified the same way. 2xx is sent. 429 and 5xx are
//! transient, or rate limited when the reply carries a `Retry-After` header.
//! 3xx and every other 4xx are permanent. A request that fails to connect,
//! times out or loses its connection is transient. A provider module only
//! extracts the message from its own error body and refines a few of its
//! error codes.
//!
//! Secrets never appear in an error message: they travel only in headers
//! marked sensitive, never in a URL, and any provider text that echoes one
//! is redacted before it becomes part of a [`SendError`].

use std::env::VarError;
use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};

use super::{GatewaySetupError, SendError};

/// Time allowed on top of a gateway's request timeout before a send is
/// abandoned. reqwest's timeout covers connecting, sending and reading the
/// reply and normally fires first. This outer bound applies if it does not.
pub const GRACE: Duration = Duration::from_secs(1);

/// Longest `Retry-After` honoured. A provider that requests a longer wait is
/// retried after this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Bytes of a reply body that are read. The rest is discarded, so a hostile
/// webhook target cannot make the host buffer an endless body.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Characters of a provider's message kept in an error.
const MAX_DETAIL_CHARS: usize = 300;

/// A credential read from the environment. Its `Debug` output hides the
/// value, so a derived `Debug` or a log line cannot reveal it.
#[derive(Clone)]
pub struct Secret {
    value: String,
}

impl Secret {
    /// Wraps a credential. Gateways get theirs from [`read_secret`].
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
        }
    }

    /// Returns the credential itself, to sign or authenticate with.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Replaces every occurrence of the credential in `text` with
    /// `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        if self.value.is_empty() {
            return text.to_owned();
        }
        text.replace(&self.value, "[redacted]")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret([redacted])")
    }
}

/// The environment variable behind a gateway's secret, with the names that
/// setup errors mention.
#[derive(Debug, Clone, Copy)]
pub struct SecretSource<'a> {
    /// Gateway name.
    pub gateway: &'a str,
    /// Config key that names the variable, such as `api_key_env`.
    pub key: &'a str,
    /// Name of the environment variable.
    pub variable: &'a str,
    /// Description of the value, such as `the SendGrid API key`.
    pub description: &'a str,
}

impl SecretSource<'_> {
    fn error(&self, problem: &str) -> GatewaySetupError {
        GatewaySetupError {
            name: self.gateway.to_owned(),
            message: format!(
                "{} names the environment variable {}, which {problem}; set it to {} \
                 before starting herald",
                self.key, self.variable, self.description
            ),
        }
    }
}

/// Reads a secret from the environment variable that `source` names. An
/// unset, non-UTF-8 or blank variable is an error that names the variable,
/// never its value.
pub fn read_secret(source: SecretSource<'_>) -> Result<Secret, GatewaySetupError> {
    check_secret(source, std::env::var(source.variable))
}

/// Checks the result of reading the variable of `source`.
fn check_secret(
    source: SecretSource<'_>,
    value: Result<String, VarError>,
) -> Result<Secret, GatewaySetupError> {
    match value {
        Ok(value) if value.trim().is_empty() => Err(source.error("is empty")),
        Ok(value) => Ok(Secret::new(value)),
        Err(VarError::NotPresent) => Err(source.error("is not set")),
        Err(VarError::NotUnicode(_)) => Err(source.error("is not valid UTF-8")),
    }
}

/// Builds an `Authorization` value of `scheme` and `credentials`, marked
/// sensitive so reqwest leaves it out of its `Debug` output. Credentials
/// that a header cannot carry, such as a key with a trailing line break,
/// are a setup error naming the variable from `source`.
pub fn authorization(
    source: SecretSource<'_>,
    scheme: &str,
    credentials: &str,
) -> Result<HeaderValue, GatewaySetupError> {
    let visible = credentials.bytes().all(|byte| byte.is_ascii_graphic());
    let header = HeaderValue::from_str(&format!("{scheme} {credentials}"));
    match header {
        Ok(mut header) if visible => {
            header.set_sensitive(true);
            Ok(header)
        }
        _ => Err(source.error(
            "contains spaces, line breaks or non-ASCII characters that an HTTP header cannot \
             carry",
        )),
    }
}

/// Joins a provider's `base_url` and an API path, such as
/// `https://api.sendgrid.com` and `/v3/mail/send`. A path prefix in the base
/// URL is kept, so a staging proxy at `http://proxy/sendgrid` works.
pub fn api_url(
    gateway: &str,
    base_url: &str,
    path: &str,
) -> Result<reqwest::Url, GatewaySetupError> {
    let setup_error = |message: String| GatewaySetupError {
        name: gateway.to_owned(),
        message,
    };
    let base = reqwest::Url::parse(base_url).map_err(|error| {
        setup_error(format!(
            "invalid base_url \"{base_url}\": {error}; write one such as https://api.example.com"
        ))
    })?;
    if base.query().is_some() || base.fragment().is_some() {
        return Err(setup_error(format!(
            "base_url \"{}\" has a query or fragment; remove it, herald adds the API path \
             itself",
            display_url(&base)
        )));
    }
    let joined = format!("{}{path}", base.as_str().trim_end_matches('/'));
    reqwest::Url::parse(&joined).map_err(|error| {
        setup_error(format!(
            "invalid API URL \"{}{path}\": {error}; check base_url",
            display_url(&base).trim_end_matches('/')
        ))
    })
}

/// Returns `url` without user name, password, query and fragment, which may
/// carry credentials, for error messages and logs.
pub fn display_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Checks that `value` is safe as one path segment of an API URL: ASCII
/// letters, digits, `-`, `_`, `.` and `:`, and not `.` or `..`.
pub fn check_path_segment(gateway: &str, key: &str, value: &str) -> Result<(), GatewaySetupError> {
    let allowed =
        |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':');
    if !value.is_empty() && value != "." && value != ".." && value.bytes().all(allowed) {
        return Ok(());
    }
    Err(GatewaySetupError {
        name: gateway.to_owned(),
        message: format!(
            "invalid {key} \"{}\"; use only ASCII letters, digits, '-', '_', '.' and ':'",
            value.escape_debug()
        ),
    })
}

/// A reply read from a provider: status, headers and at most
/// `MAX_REPLY_BYTES` of the body.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body, cut at `MAX_REPLY_BYTES`.
    pub body: Vec<u8>,
}

impl HttpReply {
    /// Parses the body as JSON, or returns `None`.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// The one URL an HTTP gateway POSTs to, with the client, the timeout and
/// the secret to keep out of messages.
pub struct HttpEndpoint {
    gateway: String,
    client: reqwest::Client,
    url: reqwest::Url,
    shown_url: String,
    timeout: Duration,
    secret: Secret,
}

impl HttpEndpoint {
    /// Sets up a client for `url` whose requests time out after
    /// `timeout_secs`. It follows no redirects, because a provider API does
    /// not redirect and a redirected POST would lose its body.
    pub fn new(
        gateway: &str,
        url: reqwest::Url,
        timeout_secs: u64,
        secret: Secret,
    ) -> Result<Self, GatewaySetupError> {
        let timeout = Duration::from_secs(timeout_secs.max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| GatewaySetupError {
                name: gateway.to_owned(),
                message: format!("failed to create the HTTP client: {error}"),
            })?;
        Ok(Self {
            gateway: gateway.to_owned(),
            client,
            shown_url: display_url(&url),
            url,
            timeout,
            secret,
        })
    }

    /// Returns the URL as shown in messages, without credentials or query.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// Returns the request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Returns the secret, to sign or authenticate with.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Starts a POST to the endpoint.
    pub fn post(&self) -> reqwest::RequestBuilder {
        self.client.post(self.url.clone())
    }

    /// Sends `request` and reads the reply. The whole exchange is bounded by
    /// the timeout plus [`GRACE`]. A request that fails before a status
    /// arrives is classified by [`request_error`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<HttpReply, SendError> {
        let exchange = async {
            let response = request.send().await?;
            Ok::<_, reqwest::Error>(self.read_reply(response).await)
        };
        let outcome = tokio::time::timeout(self.timeout + GRACE, exchange).await;
        let error = match outcome {
            Ok(Ok(reply)) => {
                tracing::debug!(gateway = %self.gateway, url = %self.shown_url, status = %reply.status, "provider replied");
                return Ok(reply);
            }
            Ok(Err(error)) => request_error(error, &self.shown_url, self.timeout),
            Err(_) => SendError::Transient(format!(
                "POST {} timed out after {}",
                self.shown_url,
                seconds(self.timeout)
            )),
        };
        tracing::debug!(gateway = %self.gateway, url = %self.shown_url, %error, "request failed");
        Err(redact_error(error, &self.secret))
    }

    /// Reads the status, headers and up to `MAX_REPLY_BYTES` of the body. A
    /// body that fails halfway is kept as far as it arrived, because the
    /// status alone decides the outcome.
    async fn read_reply(&self, mut response: reqwest::Response) -> HttpReply {
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_REPLY_BYTES - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() == MAX_REPLY_BYTES {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    let error = self.secret.redact(&root_cause(&error.without_url()));
                    tracing::debug!(gateway = %self.gateway, url = %self.shown_url, %status, %error, "reply body failed");
                    break;
                }
            }
        }
        HttpReply {
            status,
            headers,
            body,
        }
    }

    /// Returns `Ok` for a 2xx reply, else the error that its status calls
    /// for (see [`classify`]). The message names the URL and the status, then
    /// `detail` (the provider's own message from its error body) or, without
    /// one, the start of the body.
    pub fn check(&self, reply: &HttpReply, detail: Option<String>) -> Result<(), SendError> {
        if reply.status.is_success() {
            return Ok(());
        }
        let message = self.failure_message(reply, detail);
        classify(reply.status, &reply.headers, message, SystemTime::now())
    }

    /// Returns `POST {url} returned {status}: {detail}`, shortened and with
    /// the secret redacted.
    pub fn failure_message(&self, reply: &HttpReply, detail: Option<String>) -> String {
        let detail = detail
            .map(|detail| shorten(&detail))
            .or_else(|| body_excerpt(&reply.body));
        let message = match detail {
            Some(detail) => format!(
                "POST {} returned {}: {detail}",
                self.shown_url, reply.status
            ),
            None => format!("POST {} returned {}", self.shown_url, reply.status),
        };
        self.secret.redact(&message)
    }
}

/// Classifies a non-2xx reply with `message` as the error text.
///
/// 429 and 5xx are [`SendError::RateLimited`] when the reply carries a
/// parseable `Retry-After`, else [`SendError::Transient`]. 3xx, other 4xx and
/// any other status are [`SendError::Permanent`]. `now` is the time that an
/// HTTP-date in `Retry-After` is measured from.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    message: String,
    now: SystemTime,
) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.as_u16() >= 500 {
        return Err(match retry_after(headers, now) {
            Some(retry_after) => SendError::RateLimited {
                message,
                retry_after,
            },
            None => SendError::Transient(message),
        });
    }
    if status.is_redirection() {
        let location = headers
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(shorten)
            .unwrap_or_default();
        return Err(SendError::Permanent(format!(
            "{message}; the provider redirected to \"{location}\", which herald does not \
             follow, so set base_url to the final URL"
        )));
    }
    Err(SendError::Permanent(message))
}

/// Returns the wait that the `Retry-After` header in `headers` requests, or
/// `None` when it is missing or unreadable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// Parses a `Retry-After` value (RFC 9110, section 10.2.3): delta-seconds,
/// or an HTTP-date measured from `now`, where a date in the past means no
/// wait. The result is capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        // Digits beyond u64 are a very long wait, which the cap shortens.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let wait = date.duration_since(now).unwrap_or(Duration::ZERO);
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Classifies a request that failed before a status arrived. Timeouts,
/// connection failures and closed connections are transient. A request
/// that could not be built is permanent, because a retry builds it the same
/// way. `shown_url` is the URL without credentials, and reqwest's own URL is
/// stripped from the error because it may carry a query.
pub fn request_error(error: reqwest::Error, shown_url: &str, timeout: Duration) -> SendError {
    if error.is_timeout() {
        return SendError::Transient(format!(
            "POST {shown_url} timed out after {}",
            seconds(timeout)
        ));
    }
    let is_builder = error.is_builder();
    let is_connect = error.is_connect();
    let cause = root_cause(&error.without_url());
    if is_builder {
        SendError::Permanent(format!(
            "failed to build the request to {shown_url}: {cause}"
        ))
    } else if is_connect {
        SendError::Transient(format!("POST {shown_url} failed to connect: {cause}"))
    } else {
        SendError::Transient(format!("POST {shown_url} failed: {cause}"))
    }
}

/// Returns the message of the innermost source of `error`, such as
/// `Connection refused (os error 111)`, which is more specific than
/// reqwest's outer "error sending request".
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// Returns `error` with `secret` redacted from its message.
fn redact_error(error: SendError, secret: &Secret) -> SendError {
    match error {
        SendError::Transient(message) => SendError::Transient(secret.redact(&message)),
        SendError::Permanent(message) => SendError::Permanent(secret.redact(&message)),
        SendError::InvalidInput(message) => SendError::InvalidInput(secret.redact(&message)),
        SendError::RateLimited {
            message,
            retry_after,
        } => SendError::RateLimited {
            message: secret.redact(&message),
            retry_after,
        },
    }
}

/// Returns the start of a body that is not in the provider's error shape,
/// on one line, or `None` when it is empty.
fn body_excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!line.is_empty()).then(|| shorten(&line))
}

/// Cuts `text` to `MAX_DETAIL_CHARS` characters, marking the cut with `…`.
pub fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_DETAIL_CHARS {
        return text.to_owned();
    }
    let head: String = text.chars().take(MAX_DETAIL_CHARS).collect();
    format!("{head}…")
}

/// Formats a timeout such as `10s` or `1.5s`.
fn seconds(duration: Duration) -> String {
    format!("{duration:?}")
}

/// A scripted HTTP server on 127.0.0.1 for the provider modules' tests. It
/// records every request and replies to each with the next canned reply.
#[cfg(test)]
pub(super) mod testing {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::{Request, State};
    use axum::http::{HeaderMap, Method, StatusCode};
    use axum::response::{IntoResponse, Response};

    /// One request as the server received it.
    #[derive(Debug, Clone)]
    pub struct Recorded {
        pub method: Method,
        /// Path and query.
        pub uri: String,
        pub headers: HeaderMap,
        pub body: Bytes,
    }

    impl Recorded {
        /// Returns a header as text, or panics naming it.
        pub fn header(&self, name: &str) -> &str {
            self.headers
                .get(name)
                .unwrap_or_else(|| panic!("request has no {name} header: {:?}", self.headers))
                .to_str()
                .unwrap()
        }
    }

    /// A canned response.
    #[derive(Debug, Clone)]
    pub enum Canned {
        /// A response with this status, headers and body.
        Reply {
            status: u16,
            headers: Vec<(&'static str, String)>,
            body: String,
        },
        /// No response: the server accepts the request and never replies.
        Hang,
    }

    impl Canned {
        /// Returns a reply with a JSON body.
        pub fn json(status: u16, body: serde_json::Value) -> Self {
            Self::Reply {
                status,
                headers: vec![("content-type", "application/json".to_owned())],
                body: body.to_string(),
            }
        }

        /// Returns a reply with headers and an empty body.
        pub fn headers(status: u16, headers: Vec<(&'static str, String)>) -> Self {
            Self::Reply {
                status,
                headers,
                body: String::new(),
            }
        }
    }

    #[derive(Default)]
    struct Script {
        requests: Mutex<Vec<Recorded>>,
        replies: Mutex<VecDeque<Canned>>,
    }

    /// The running server. It stops with the test's runtime.
    pub struct TestServer {
        /// `http://127.0.0.1:PORT`.
        pub url: String,
        script: Arc<Script>,
    }

    impl TestServer {
        /// Starts a server that replies to requests with `replies` in order,
        /// and with 500 once they run out.
        pub async fn start(replies: Vec<Canned>) -> Self {
            let script = Arc::new(Script::default());
            script.replies.lock().unwrap().extend(replies);
            let app = axum::Router::new()
                .fallback(answer)
                .with_state(Arc::clone(&script));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await });
            Self { url, script }
        }

        /// Returns every request received so far.
        pub fn requests(&self) -> Vec<Recorded> {
            self.script.requests.lock().unwrap().clone()
        }

        /// Returns the only request received, or panics with the count.
        pub fn only_request(&self) -> Recorded {
            let requests = self.requests();
            assert_eq!(requests.len(), 1, "expected one request: {requests:?}");
            requests.into_iter().next().unwrap()
        }
    }

    async fn answer(State(script): State<Arc<Script>>, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        script.requests.lock().unwrap().push(Recorded {
            method: parts.method,
            uri: parts.uri.to_string(),
            headers: parts.headers,
            body,
        });
        let next = script.replies.lock().unwrap().pop_front();
        match next {
            Some(Canned::Reply {
                status,
                headers,
                body,
            }) => {
                let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
                for (name, value) in headers {
                    response.headers_mut().insert(name, value.parse().unwrap());
                }
                response
            }
            Some(Canned::Hang) => std::future::pending().await,
            None => (StatusCode::INTERNAL_SERVER_ERROR, "no canned reply left").into_response(),
        }
    }

    /// Returns the URL of a listener on 127.0.0.1 that accepts each
    /// connection, reads a little and closes it without a response.
    pub async fn closing_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = [0; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buffer).await;
                drop(stream);
            }
        });
        url
    }

    /// Returns the URL of a loopback port where nothing listens.
    pub fn refused_url() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{address}")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Canned, TestServer, closing_server, refused_url};
    use super::*;

    fn source() -> SecretSource<'static> {
        SecretSource {
            gateway: "mail",
            key: "api_key_env",
            variable: "MAIL_KEY",
            description: "the API key",
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn epoch(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn endpoint(url: &str, secret: &str) -> HttpEndpoint {
        let url = reqwest::Url::parse(url).unwrap();
        HttpEndpoint::new("test", url, 1, Secret::new(secret)).unwrap()
    }

    #[test]
    fn retry_after_delta_seconds() {
        let now = epoch(1_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("007", now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_http_date() {
        // 1994-11-06T08:49:37Z is 784111777 seconds after the epoch.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let now = epoch(784_111_772);
        assert_eq!(parse_retry_after(date, now), Some(Duration::from_secs(5)));
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(784_111_776_250);
        assert_eq!(
            parse_retry_after(date, now),
            Some(Duration::from_millis(750))
        );
    }

    #[test]
    fn retry_after_obsolete_date_forms() {
        let now = epoch(784_111_770);
        let expected = Some(Duration::from_secs(7));
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            expected
        );
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), expected);
    }

    #[test]
    fn retry_after_past_date_is_zero() {
        let now = epoch(784_111_800);
        let wait = parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now);
        assert_eq!(wait, Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_is_capped() {
        let now = epoch(0);
        assert_eq!(parse_retry_after("999999999", now), Some(MAX_RETRY_AFTER));
        let huge = "99999999999999999999999999";
        assert_eq!(parse_retry_after(huge, now), Some(MAX_RETRY_AFTER));
        let far = "Fri, 31 Dec 9999 23:59:59 GMT";
        assert_eq!(parse_retry_after(far, now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn retry_after_rejects_other_text() {
        let now = epoch(0);
        for value in ["", "-1", "1.5", "soon", "7 seconds", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn success_is_ok() {
        for status in [200, 201, 202, 204] {
            let status = StatusCode::from_u16(status).unwrap();
            let outcome = classify(status, &HeaderMap::new(), String::new(), epoch(0));
            assert_eq!(outcome, Ok(()), "{status}");
        }
    }

    #[test]
    fn server_errors_are_transient() {
        for status in [500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            let outcome = classify(status, &HeaderMap::new(), "boom".into(), epoch(0));
            assert_eq!(
                outcome,
                Err(SendError::Transient("boom".into())),
                "{status}"
            );
        }
    }

    #[test]
    fn too_many_requests_without_retry_after_is_transient() {
        let outcome = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            "slow down".into(),
            epoch(0),
        );
        assert_eq!(outcome, Err(SendError::Transient("slow down".into())));
    }

    #[test]
    fn retry_after_makes_rate_limited() {
        let now = epoch(784_111_772);
        let cases = [
            (429, "7", 7),
            (503, "Sun, 06 Nov 1994 08:49:37 GMT", 5),
            (500, "2", 2),
        ];
        for (status, value, wait) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            let outcome = classify(status, &headers(&[("retry-after", value)]), "x".into(), now);
            let expected = SendError::RateLimited {
                message: "x".into(),
                retry_after: Duration::from_secs(wait),
            };
            assert_eq!(outcome, Err(expected), "{status} {value}");
        }
    }

    #[test]
    fn unreadable_retry_after_is_transient() {
        let outcome = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "later")]),
            "x".into(),
            epoch(0),
        );
        assert_eq!(outcome, Err(SendError::Transient("x".into())));
    }

    #[test]
    fn client_errors_are_permanent() {
        for status in [400, 401, 403, 404, 408, 413, 422] {
            let status = StatusCode::from_u16(status).unwrap();
            let outcome = classify(
                status,
                &headers(&[("retry-after", "5")]),
                "no".into(),
                epoch(0),
            );
            assert_eq!(outcome, Err(SendError::Permanent("no".into())), "{status}");
        }
    }

    #[test]
    fn redirect_is_permanent_and_names_location() {
        let outcome = classify(
            StatusCode::MOVED_PERMANENTLY,
            &headers(&[("location", "https://api.example.com/v3/mail/send")]),
            "moved".into(),
            epoch(0),
        );
        let Err(SendError::Permanent(message)) = outcome else {
            panic!("expected permanent, got {outcome:?}");
        };
        assert!(message.starts_with("moved; "), "{message}");
        assert!(
            message.contains("\"https://api.example.com/v3/mail/send\""),
            "{message}"
        );
    }

    #[test]
    fn secret_errors_name_the_variable_only() {
        let cases = [
            (Err(VarError::NotPresent), "is not set"),
            (Ok(String::new()), "is empty"),
            (Ok("  \n".to_owned()), "is empty"),
        ];
        for (value, problem) in cases {
            let error = check_secret(source(), value).unwrap_err();
            assert_eq!(error.name, "mail");
            assert!(error.message.contains("api_key_env"), "{}", error.message);
            assert!(error.message.contains("MAIL_KEY"), "{}", error.message);
            assert!(error.message.contains(problem), "{}", error.message);
        }
        let secret = check_secret(source(), Ok("SG.key".into())).unwrap();
        assert_eq!(secret.expose(), "SG.key");
    }

    #[test]
    fn secret_debug_hides_value() {
        let secret = Secret::new("SG.very-secret");
        assert!(!format!("{secret:?}").contains("very-secret"));
    }

    #[test]
    fn authorization_rejects_header_breaking_values() {
        let header = authorization(source(), "Bearer", "SG.key").unwrap();
        assert_eq!(header, "Bearer SG.key");
        assert!(header.is_sensitive());
        for bad in ["SG.key\n", "two words", "ключ"] {
            let error = authorization(source(), "Bearer", bad).unwrap_err();
            assert!(error.message.contains("MAIL_KEY"), "{}", error.message);
            assert!(!error.message.contains(bad), "{}", error.message);
        }
    }

    #[test]
    fn api_url_keeps_base_path() {
        let cases = [
            (
                "https://api.sendgrid.com",
                "https://api.sendgrid.com/v3/mail/send",
            ),
            (
                "https://api.sendgrid.com/",
                "https://api.sendgrid.com/v3/mail/send",
            ),
            (
                "http://127.0.0.1:9/proxy/",
                "http://127.0.0.1:9/proxy/v3/mail/send",
            ),
        ];
        for (base, expected) in cases {
            let url = api_url("mail", base, "/v3/mail/send").unwrap();
            assert_eq!(url.as_str(), expected);
        }
        assert!(api_url("mail", "https://api.example.com/?key=1", "/x").is_err());
        assert!(api_url("mail", "not a url", "/x").is_err());
    }

    #[test]
    fn display_url_drops_credentials_and_query() {
        let url =
            reqwest::Url::parse("https://user:pass@hooks.example.com/in?token=abc#x").unwrap();
        assert_eq!(display_url(&url), "https://hooks.example.com/in");
    }

    #[test]
    fn path_segments_are_checked() {
        for good in ["AC0123456789abcdef", "my-project-1", "example.com:app"] {
            assert!(
                check_path_segment("g", "project_id", good).is_ok(),
                "{good}"
            );
        }
        for bad in ["", "..", "a/b", "a?b", "a b", "a%2F"] {
            assert!(check_path_segment("g", "project_id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn failure_message_redacts_and_shortens() {
        let endpoint = endpoint("http://127.0.0.1:9/send", "s3cret-key");
        let reply = HttpReply {
            status: StatusCode::BAD_REQUEST,
            headers: HeaderMap::new(),
            body: format!("bad key s3cret-key {}", "x".repeat(1000)).into_bytes(),
        };
        let message = endpoint.failure_message(&reply, None);
        assert!(
            message.starts_with("POST http://127.0.0.1:9/send returned 400 Bad Request: bad key"),
            "{message}"
        );
        assert!(!message.contains("s3cret-key"), "{message}");
        assert!(message.contains("[redacted]"), "{message}");
        assert!(message.chars().count() < 400, "{message}");
        let message = endpoint.failure_message(&reply, Some("from is invalid".into()));
        assert!(message.ends_with(": from is invalid"), "{message}");
    }

    #[tokio::test]
    async fn send_reads_reply() {
        let server = TestServer::start(vec![Canned::json(201, serde_json::json!({"id": 1}))]).await;
        let endpoint = endpoint(&format!("{}/send", server.url), "k");

        let reply = endpoint.send(endpoint.post().body("hi")).await.unwrap();

        assert_eq!(reply.status, StatusCode::CREATED);
        assert_eq!(reply.json().unwrap()["id"], 1);
        let request = server.only_request();
        assert_eq!(request.method, "POST");
        assert_eq!(request.uri, "/send");
        assert_eq!(request.body, "hi");
        assert!(request.header("user-agent").starts_with("herald/"));
    }

    #[tokio::test]
    async fn send_cuts_long_bodies() {
        let server = TestServer::start(vec![Canned::Reply {
            status: 500,
            headers: Vec::new(),
            body: "x".repeat(MAX_REPLY_BYTES * 2),
        }])
        .await;
        let endpoint = endpoint(&server.url, "k");

        let reply = endpoint.send(endpoint.post()).await.unwrap();

        assert_eq!(reply.body.len(), MAX_REPLY_BYTES);
    }

    #[tokio::test]
    async fn hanging_server_times_out() {
        let server = TestServer::start(vec![Canned::Hang]).await;
        let endpoint = endpoint(&server.url, "k");
        let started = std::time::Instant::now();

        let error = endpoint.send(endpoint.post()).await.unwrap_err();

        let elapsed = started.elapsed();
        let SendError::Transient(message) = &error else {
            panic!("expected transient, got {error:?}");
        };
        assert!(message.contains("timed out after 1s"), "{message}");
        assert!(message.contains(&server.url), "{message}");
        assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(1) + GRACE, "{elapsed:?}");
    }

    #[tokio::test]
    async fn closed_connection_is_transient() {
        let url = closing_server().await;
        let endpoint = endpoint(&url, "k");

        let error = endpoint.send(endpoint.post().body("x")).await.unwrap_err();

        let SendError::Transient(message) = &error else {
            panic!("expected transient, got {error:?}");
        };
        assert!(message.starts_with(&format!("POST {url}")), "{message}");
    }

    #[tokio::test]
    async fn refused_connection_is_transient() {
        let url = refused_url();
        let endpoint = endpoint(&format!("{url}/send?key=k3y"), "k");

        let error = endpoint.send(endpoint.post()).await.unwrap_err();

        let SendError::Transient(message) = &error else {
            panic!("expected transient, got {error:?}");
        };
        assert!(message.contains("failed to connect"), "{message}");
        assert!(!message.contains("k3y"), "{message}");
    }
}
