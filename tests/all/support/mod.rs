//! Shared test fixtures: the herald process, SMTP server, guest builds and
//! email parsing.

pub mod herald;
pub mod mail;
pub mod providers;
pub mod smtp;
pub mod workers;

use std::future::Future;
use std::time::{Duration, Instant};

pub use herald::Herald;
pub use smtp::SmtpServer;

/// Polls `check` every 50 ms until it returns `Some`, and returns that value.
/// Panics with `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Parses an RFC 3339 time from an API response; panics naming the text.
pub fn parse_time(text: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|error| panic!("{text:?} is not RFC 3339: {error}"))
}

/// Returns config text for an `smtp` gateway named `email` pointing at `smtp`.
pub fn smtp_gateway(smtp: &SmtpServer) -> String {
    format!(
        "[gateways.email]\nkind = \"smtp\"\nurl = \"{}\"\nfrom = \"Example <noreply@example.com>\"\n",
        smtp.url()
    )
}
