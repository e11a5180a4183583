//! The `smtp` gateway: lettre's SMTP client over connections that Herald opens
//! and pools itself.
//!
//! lettre 0.11.23 writes a message body and its closing `.` in two writes and
//! never sets `TCP_NODELAY`. On its own sockets, Nagle's algorithm therefore
//! delays the second write until the server's delayed ACK, which on Linux
//! costs up to 40 ms per message. Herald opens each TCP stream itself with
//! `TCP_NODELAY`, wraps it in TLS where the URL asks for it, and hands it to
//! `AsyncSmtpConnection::connect_with_transport`.
//!
//! The URL's scheme and `tls` parameter pick the transport:
//! `smtp://host:port` is plain, `smtp://host:port?tls=required` upgrades with
//! STARTTLS or fails, `?tls=opportunistic` upgrades when the server offers it,
//! and `smtps://host:port` is implicit TLS.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, MailParameter};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{GatewaySetupError, PreparedEmail, SendError, parse_from};
use crate::config::SmtpConfig;

/// A pooled connection unused for longer than this is checked with NOOP
/// before it carries a message.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);

/// A pooled connection unused for longer than this is closed instead of
/// reused; many servers drop idle clients after a minute or so.
const MAX_IDLE: Duration = Duration::from_secs(50);

/// Transport security of the connection to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS.
    Plain,
    /// STARTTLS after the greeting; `required` fails when it is not offered.
    StartTls {
        /// Whether a server without STARTTLS is an error.
        required: bool,
    },
    /// TLS from the first byte.
    Implicit,
}

/// Server address and transport security, parsed from the gateway's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Transport security.
    pub security: Security,
}

impl Endpoint {
    /// Parses `smtp://host[:port][?tls=none|opportunistic|required]` or
    /// `smtps://host[:port]`. Ports default to 25, 587 (STARTTLS required)
    /// and 465 (implicit TLS).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = url::Url::parse(text).map_err(|error| {
            format!("invalid url \"{text}\": {error}; use smtp://host:port or smtps://host:port")
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "url \"{}\" contains credentials; set user_env and password_env to the names \
                 of environment variables that hold them",
                url.host_str().unwrap_or_default()
            ));
        }
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| format!("url \"{text}\" has no host; use smtp://host:port"))?
            .trim_matches(['[', ']'])
            .to_owned();

        let mut tls = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "tls" => tls = Some(value.into_owned()),
                other => {
                    return Err(format!(
                        "url \"{text}\" has unknown parameter \"{other}\"; only tls is supported"
                    ));
                }
            }
        }

        let security = match (url.scheme(), tls.as_deref()) {
            ("smtp", None | Some("none")) => Security::Plain,
            ("smtp", Some("opportunistic")) => Security::StartTls { required: false },
            ("smtp", Some("required")) => Security::StartTls { required: true },
            ("smtps", None | Some("implicit")) => Security::Implicit,
            ("smtp" | "smtps", Some(other)) => {
                return Err(format!(
                    "url \"{text}\" has tls={other}; use none, opportunistic or required \
                     with smtp://, or smtps:// for implicit TLS"
                ));
            }
            (scheme, _) => {
                return Err(format!(
                    "url \"{text}\" has scheme \"{scheme}\"; use smtp:// or smtps://"
                ));
            }
        };
        let default_port = match security {
            Security::Plain | Security::StartTls { required: false } => 25,
            Security::StartTls { required: true } => 587,
            Security::Implicit => 465,
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(default_port),
            security,
        })
    }
}

/// An SMTP server behind a pool of connections.
pub struct SmtpGateway {
    name: String,
    endpoint: Endpoint,
    from: Mailbox,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    starttls: Option<TlsParameters>,
    implicit_tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// Connections not carrying a message right now, most recently used last.
    idle: Mutex<Vec<IdleConnection>>,
    /// One permit per connection that may be open.
    permits: Semaphore,
}

struct IdleConnection {
    connection: AsyncSmtpConnection,
    since: Instant,
}

/// Failure of a transfer.
#[derive(Debug)]
enum Failure {
    /// lettre returned an error: a reply code, or a network or TLS failure.
    Smtp(lettre::transport::smtp::Error),
    /// The server did not reply in time.
    TimedOut(Duration),
}

impl Failure {
    /// Returns whether the connection itself failed, as opposed to the server
    /// replying with an error code.
    fn is_connection_failure(&self) -> bool {
        match self {
            Self::Smtp(error) => status_code(error).is_none(),
            Self::TimedOut(_) => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Smtp(error) => write!(formatter, "{error}"),
            Self::TimedOut(timeout) => write!(formatter, "no reply within {timeout:?}"),
        }
    }
}

/// How far a send got before it failed.
enum Stage {
    /// Before the server saw the message body: safe to try again.
    Envelope,
    /// While sending the body or waiting for its reply: the server may have
    /// accepted the message.
    Body,
}

impl SmtpGateway {
    /// Sets up the gateway `name` from its config. Reads the credentials from
    /// the environment variables the config names; connects nothing yet.
    pub fn new(name: &str, config: &SmtpConfig) -> Result<Self, GatewaySetupError> {
        let setup_error = |message: String| GatewaySetupError {
            name: name.to_owned(),
            message,
        };
        let endpoint = Endpoint::parse(&config.url).map_err(setup_error)?;
        let credentials = read_credentials(config).map_err(setup_error)?;
        let extra_roots = match &config.ca_file {
            Some(path) => read_certificates(path).map_err(setup_error)?,
            None => Vec::new(),
        };

        let starttls = match endpoint.security {
            Security::StartTls { .. } => {
                let mut builder = TlsParameters::builder(endpoint.host.clone());
                for der in &extra_roots {
                    let certificate = Certificate::from_der(der.to_vec())
                        .map_err(|error| setup_error(format!("invalid ca_file: {error}")))?;
                    builder = builder.add_root_certificate(certificate);
                }
                let parameters = builder
                    .build_rustls()
                    .map_err(|error| setup_error(format!("failed to set up TLS: {error}")))?;
                Some(parameters)
            }
            _ => None,
        };
        let implicit_tls = match endpoint.security {
            Security::Implicit => {
                Some(implicit_tls_connector(&endpoint.host, extra_roots).map_err(setup_error)?)
            }
            _ => None,
        };

        let hello = match &config.hello_name {
            Some(hello) => ClientId::Domain(hello.clone()),
            None => ClientId::Domain("localhost".to_owned()),
        };
        Ok(Self {
            name: name.to_owned(),
            endpoint,
            from: parse_from(name, &config.from)?,
            credentials,
            hello,
            timeout: Duration::from_secs(config.timeout_secs.max(1)),
            starttls,
            implicit_tls,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(config.pool_size),
        })
    }

    pub(super) fn default_from(&self) -> &Mailbox {
        &self.from
    }

    /// Sends `email` over a pooled connection and returns its Message-ID.
    ///
    /// A connection taken from the pool may have been closed by the server
    /// in the meantime. If it fails before the server has seen the message
    /// body, the send is tried once more on a new connection.
    pub(super) async fn send(&self, email: &PreparedEmail) -> Result<String, SendError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SendError::Transient("smtp gateway is shutting down".into()))?;

        let mut reused = true;
        let mut connection = match self.take_idle().await {
            Some(connection) => connection,
            None => {
                reused = false;
                self.connect().await?
            }
        };
        loop {
            match self.transfer(&mut connection, email).await {
                Ok(()) => {
                    self.put_idle(connection);
                    return Ok(email.message_id.clone());
                }
                Err((Stage::Envelope, error)) if reused && error.is_connection_failure() => {
                    tracing::debug!(
                        gateway = %self.name, %error,
                        "pooled smtp connection failed before the message, reconnecting"
                    );
                    connection.abort().await;
                    reused = false;
                    connection = self.connect().await?;
                }
                Err((_, Failure::Smtp(error))) => {
                    connection.abort().await;
                    return Err(classify(error));
                }
                Err((_, Failure::TimedOut(timeout))) => {
                    connection.abort().await;
                    return Err(SendError::Transient(format!(
                        "smtp server did not reply within {timeout:?}"
                    )));
                }
            }
        }
    }

    async fn transfer(
        &self,
        connection: &mut AsyncSmtpConnection,
        email: &PreparedEmail,
    ) -> Result<(), (Stage, Failure)> {
        let envelope = &email.envelope;
        let mut parameters = Vec::new();
        let non_ascii = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|address| !AsRef::<str>::as_ref(address).is_ascii());
        if non_ascii {
            parameters.push(MailParameter::SmtpUtfEight);
        }

        let timeout = self.timeout;
        let envelope_commands = async {
            connection
                .command(Mail::new(envelope.from().cloned(), parameters))
                .await?;
            for recipient in envelope.to() {
                connection
                    .command(Rcpt::new(recipient.clone(), Vec::new()))
                    .await?;
            }
            connection.command(Data).await
        };
        match tokio::time::timeout(timeout, envelope_commands).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err((Stage::Envelope, Failure::Smtp(error))),
            Err(_) => return Err((Stage::Envelope, Failure::TimedOut(timeout))),
        }
        match tokio::time::timeout(timeout, connection.message(&email.bytes)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err((Stage::Body, Failure::Smtp(error))),
            Err(_) => Err((Stage::Body, Failure::TimedOut(timeout))),
        }
    }

    async fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .pop()?;
            let IdleConnection {
                mut connection,
                since,
            } = idle;
            let idle_for = since.elapsed();
            if idle_for > MAX_IDLE {
                connection.abort().await;
                continue;
            }
            if idle_for > CHECK_AFTER_IDLE && !connection.test_connected().await {
                connection.abort().await;
                continue;
            }
            return Some(connection);
        }
    }

    fn put_idle(&self, connection: AsyncSmtpConnection) {
        if connection.has_broken() {
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(IdleConnection {
                connection,
                since: Instant::now(),
            });
    }

    /// Opens a connection: TCP with `TCP_NODELAY`, TLS as configured, EHLO,
    /// and AUTH when credentials are set.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let address = (self.endpoint.host.as_str(), self.endpoint.port);
        let connect = async {
            let stream = TcpStream::connect(address).await.map_err(|error| {
                SendError::Transient(format!(
                    "failed to connect to smtp server {}:{}: {error}",
                    self.endpoint.host, self.endpoint.port
                ))
            })?;
            stream.set_nodelay(true).map_err(|error| {
                SendError::Transient(format!("failed to set TCP_NODELAY: {error}"))
            })?;
            let transport: Box<dyn AsyncTokioStream> = match &self.implicit_tls {
                Some((connector, server_name)) => {
                    let stream = connector
                        .connect(server_name.clone(), stream)
                        .await
                        .map_err(|error| {
                            SendError::Transient(format!("TLS handshake failed: {error}"))
                        })?;
                    Box::new(ImplicitTls(stream))
                }
                None => Box::new(stream),
            };
            let mut connection =
                AsyncSmtpConnection::connect_with_transport(transport, &self.hello)
                    .await
                    .map_err(classify)?;

            if let (Security::StartTls { required }, Some(parameters)) =
                (self.endpoint.security, &self.starttls)
            {
                if connection.can_starttls() {
                    connection
                        .starttls(parameters.clone(), &self.hello)
                        .await
                        .map_err(classify)?;
                } else if required {
                    connection.abort().await;
                    return Err(SendError::Transient(format!(
                        "smtp server {}:{} does not offer STARTTLS and the url has tls=required",
                        self.endpoint.host, self.endpoint.port
                    )));
                }
            }

            if let Some(credentials) = &self.credentials {
                connection
                    .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await
                    .map_err(classify)?;
            }
            Ok(connection)
        };
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Transient(format!(
                "connecting to smtp server {}:{} timed out after {:?}",
                self.endpoint.host, self.endpoint.port, self.timeout
            ))),
        }
    }
}

fn status_code(error: &lettre::transport::smtp::Error) -> Option<u16> {
    error.status().map(|code| {
        let text = code.to_string();
        text.parse().unwrap_or(0)
    })
}

/// Classifies an SMTP failure: 4xx replies and lost connections are
/// transient, 5xx replies permanent. A reply is quoted as the server sent
/// it, code first, such as `550 5.1.1 no such user`.
fn classify(error: lettre::transport::smtp::Error) -> SendError {
    let reply = |code: u16| match std::error::Error::source(&error) {
        Some(text) => format!("{code} {text}"),
        None => code.to_string(),
    };
    match status_code(&error) {
        Some(code) if (500..600).contains(&code) => {
            SendError::Permanent(format!("smtp server rejected the message: {}", reply(code)))
        }
        Some(code) => {
            SendError::Transient(format!("smtp server deferred the message: {}", reply(code)))
        }
        None if error.is_client() => SendError::Permanent(format!("smtp client error: {error}")),
        None => SendError::Transient(format!("smtp connection failed: {error}")),
    }
}

fn read_credentials(config: &SmtpConfig) -> Result<Option<Credentials>, String> {
    let read = |key: &str, variable: &str| {
        std::env::var(variable).map_err(|_| {
            format!("{key} names the environment variable {variable}, which is not set; set it")
        })
    };
    match (&config.user_env, &config.password_env) {
        (None, None) => Ok(None),
        (Some(user), Some(password)) => Ok(Some(Credentials::new(
            read("user_env", user)?,
            read("password_env", password)?,
        ))),
        _ => Err("set both user_env and password_env, or neither".to_owned()),
    }
}

fn read_certificates(
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|error| format!("failed to read ca_file \"{}\": {error}", path.display()))?;
    let certificates = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("invalid PEM in ca_file \"{}\": {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "ca_file \"{}\" contains no certificates",
            path.display()
        ));
    }
    Ok(certificates)
}

fn implicit_tls_connector(
    host: &str,
    extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for certificate in extra_roots {
        roots
            .add(certificate)
            .map_err(|error| format!("invalid certificate in ca_file: {error}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("failed to set up TLS: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|error| format!("invalid TLS server name \"{host}\": {error}"))?;
    Ok((
        tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    ))
}

/// A TLS stream that lettre uses as its transport. lettre reads and writes
/// plain bytes, and the TLS layer underneath encrypts them.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buffer)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, buffer)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_schemes_pick_security() {
        let cases = [
            ("smtp://mail.example.com", Security::Plain, 25),
            ("smtp://127.0.0.1:2525", Security::Plain, 2525),
            (
                "smtp://mail.example.com?tls=required",
                Security::StartTls { required: true },
                587,
            ),
            (
                "smtp://mail.example.com:2587?tls=opportunistic",
                Security::StartTls { required: false },
                2587,
            ),
            ("smtps://mail.example.com", Security::Implicit, 465),
        ];
        for (url, security, port) in cases {
            let endpoint = Endpoint::parse(url).unwrap();
            assert_eq!(endpoint.security, security, "{url}");
            assert_eq!(endpoint.port, port, "{url}");
        }
    }

    #[test]
    fn endpoint_rejects_bad_urls() {
        let cases = [
            ("http://mail.example.com", "scheme \"http\""),
            ("smtp://mail.example.com?tls=maybe", "tls=maybe"),
            (
                "smtp://mail.example.com?port=1",
                "unknown parameter \"port\"",
            ),
            (
                "smtp://user:secret@mail.example.com",
                "contains credentials",
            ),
            ("not a url", "invalid url"),
        ];
        for (url, expected) in cases {
            let error = Endpoint::parse(url).unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
            assert!(
                !error.contains("secret"),
                "error leaks the password: {error}"
            );
        }
    }
}
