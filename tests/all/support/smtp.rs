//! A real SMTP server on 127.0.0.1 for the tests, built on mailin-embedded,
//! that keeps every message it accepts in memory.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mailin_embedded::response::{self, Response};
use mailin_embedded::{AuthMechanism, Handler, Server, SslConfig};

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// MAIL FROM address.
    pub from: String,
    /// RCPT TO addresses.
    pub to: Vec<String>,
    /// The message after dot-unstuffing, as sent by the client.
    pub data: Vec<u8>,
    /// User name the session authenticated as, if any.
    pub authenticated_user: Option<String>,
}

#[derive(Default)]
struct Inbox {
    messages: Mutex<Vec<Received>>,
    arrived: Condvar,
    /// Addresses already failed once under `fail_once_prefix`.
    failed_once: Mutex<std::collections::HashSet<String>>,
    /// Sessions that got as far as HELO or EHLO.
    sessions: std::sync::atomic::AtomicUsize,
}

/// Options of a test SMTP server.
#[derive(Default)]
pub struct SmtpOptions {
    /// PEM certificate and key files; enables STARTTLS.
    pub tls: Option<(String, String)>,
    /// Required user name and password; enables AUTH PLAIN and LOGIN.
    pub credentials: Option<(String, String)>,
    /// Reply to RCPT TO for addresses starting with this prefix.
    pub reject_prefix: Option<(String, u16)>,
    /// Replies to RCPT TO given as prefix, code and text, such as
    /// `("gone", 550, "5.1.1 no such user")`. The first matching prefix wins.
    pub replies: Vec<(String, u16, String)>,
    /// Reply 451 to the first RCPT TO of each address starting with this
    /// prefix, and accept it after that.
    pub fail_once_prefix: Option<String>,
    /// Time to wait before accepting each message's data, to make sends
    /// overlap.
    pub data_delay: Option<std::time::Duration>,
}

/// A running SMTP server. It stops when the test process exits.
pub struct SmtpServer {
    /// Address it listens on.
    pub addr: SocketAddr,
    inbox: Arc<Inbox>,
}

#[derive(Clone)]
struct Collector {
    inbox: Arc<Inbox>,
    options: Arc<SmtpOptions>,
    current: Option<Received>,
    user: Option<String>,
}

impl Handler for Collector {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        if self.options.credentials.is_some() && self.user.is_none() {
            return response::AUTHENTICATION_REQUIRED;
        }
        self.current = Some(Received {
            from: from.to_owned(),
            to: Vec::new(),
            data: Vec::new(),
            authenticated_user: self.user.clone(),
        });
        response::OK
    }

    fn helo(&mut self, _ip: IpAddr, _domain: &str) -> Response {
        self.inbox
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        if let Some((_, code, text)) = self
            .options
            .replies
            .iter()
            .find(|(prefix, _, _)| to.starts_with(prefix.as_str()))
        {
            return Response::custom(*code, text.clone());
        }
        if let Some((prefix, code)) = &self.options.reject_prefix
            && to.starts_with(prefix.as_str())
        {
            return Response::custom(*code, format!("recipient {to} rejected by test server"));
        }
        if let Some(prefix) = &self.options.fail_once_prefix
            && to.starts_with(prefix.as_str())
            && self.inbox.failed_once.lock().unwrap().insert(to.to_owned())
        {
            return Response::custom(451, format!("try {to} again later"));
        }
        if let Some(current) = &mut self.current {
            current.to.push(to.to_owned());
        }
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(current) = &mut self.current {
            current.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Some(delay) = self.options.data_delay {
            std::thread::sleep(delay);
        }
        if let Some(message) = self.current.take() {
            self.inbox.messages.lock().unwrap().push(message);
            self.inbox.arrived.notify_all();
        }
        response::OK
    }

    fn auth_plain(&mut self, _authorization: &str, user: &str, password: &str) -> Response {
        self.check_credentials(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.check_credentials(user, password)
    }
}

impl Collector {
    fn check_credentials(&mut self, user: &str, password: &str) -> Response {
        match &self.options.credentials {
            Some((expected_user, expected_password))
                if user == expected_user && password == expected_password =>
            {
                self.user = Some(user.to_owned());
                response::AUTH_OK
            }
            _ => response::INVALID_CREDENTIALS,
        }
    }
}

impl SmtpServer {
    /// Starts a plain SMTP server on a free port of 127.0.0.1.
    pub fn start() -> Self {
        Self::start_with(SmtpOptions::default())
    }

    /// Starts a server with `options` on a free port of 127.0.0.1.
    pub fn start_with(options: SmtpOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind SMTP listener");
        let addr = listener.local_addr().unwrap();
        let inbox = Arc::new(Inbox::default());
        let handler = Collector {
            inbox: Arc::clone(&inbox),
            options: Arc::new(SmtpOptions {
                tls: options.tls.clone(),
                credentials: options.credentials.clone(),
                reject_prefix: options.reject_prefix.clone(),
                replies: options.replies.clone(),
                fail_once_prefix: options.fail_once_prefix.clone(),
                data_delay: options.data_delay,
            }),
            current: None,
            user: None,
        };
        let mut server = Server::new(handler);
        server
            .with_name("smtp.test")
            .with_num_threads(64)
            .with_tcp_listener(listener);
        if let Some((cert_path, key_path)) = options.tls {
            server
                .with_ssl(SslConfig::SelfSigned {
                    cert_path,
                    key_path,
                })
                .expect("configure STARTTLS");
        }
        if options.credentials.is_some() {
            server
                .with_auth(AuthMechanism::Plain)
                .with_auth(AuthMechanism::Login);
        }
        std::thread::spawn(move || {
            if let Err(error) = server.serve() {
                eprintln!("test SMTP server stopped: {error}");
            }
        });
        Self { addr, inbox }
    }

    /// Returns the `smtp://` URL of the server.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Returns how many messages each recipient received.
    pub fn per_recipient(&self) -> std::collections::HashMap<String, usize> {
        let mut counts = std::collections::HashMap::new();
        for message in self.inbox.messages.lock().unwrap().iter() {
            for recipient in &message.to {
                *counts.entry(recipient.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// Returns how many messages arrived so far.
    pub fn count(&self) -> usize {
        self.inbox.messages.lock().unwrap().len()
    }

    /// Returns the number of sessions that said HELO or EHLO.
    pub fn sessions(&self) -> usize {
        self.inbox
            .sessions
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until at least `count` messages arrived, and returns them all.
    /// Panics after `timeout` with the number that did arrive.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut messages = self.inbox.messages.lock().unwrap();
        while messages.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "SMTP server received {} of {count} messages within {timeout:?}",
                messages.len()
            );
            messages = self.inbox.arrived.wait_timeout(messages, left).unwrap().0;
        }
        messages.clone()
    }
}
