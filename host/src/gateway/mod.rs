//! Delivery gateways: the operator-configured channels through which workers
//! send notifications.
//!
//! A worker names a gateway; this module resolves the name, validates the
//! notification ([`email`]) and hands it to the gateway's transport ([`smtp`]
//! or [`outbox`]). Credentials stay here and never reach a worker. Failures
//! come back classified by whether a retry can help.

pub mod email;
pub mod mime;
pub mod outbox;
pub mod smtp;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;

use crate::config::{Config, GatewayConfig};
pub use email::{OutgoingEmail, PreparedEmail};

/// Failure of a send, classified by whether a retry can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// A temporary failure; a retry may succeed.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Rejected for good; a retry will fail too.
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// The gateway asked to slow down.
    #[error("rate limited: {message}")]
    RateLimited {
        /// The gateway's message.
        message: String,
        /// How long to wait before trying again.
        retry_after: Duration,
    },
    /// The notification is malformed and was not sent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

/// A gateway that could not be set up from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("gateway \"{name}\": {message}")]
pub struct GatewaySetupError {
    /// Gateway name.
    pub name: String,
    /// The problem and its fix.
    pub message: String,
}

/// One configured gateway.
pub enum Gateway {
    /// SMTP through lettre.
    Smtp(Box<smtp::SmtpGateway>),
    /// `.eml` files in a folder.
    Outbox(outbox::OutboxGateway),
}

impl Gateway {
    /// Returns the kind as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Smtp(_) => "smtp",
            Self::Outbox(_) => "outbox",
        }
    }

    /// Returns the sender used when a worker sets none.
    pub fn default_from(&self) -> &Mailbox {
        match self {
            Self::Smtp(gateway) => gateway.default_from(),
            Self::Outbox(gateway) => gateway.default_from(),
        }
    }

    /// Sends a prepared email and returns the provider's id for it.
    pub async fn send_email(&self, email: &PreparedEmail) -> Result<String, SendError> {
        match self {
            Self::Smtp(gateway) => gateway.send(email).await,
            Self::Outbox(gateway) => gateway.send(email).await,
        }
    }
}

/// The gateways of one process, by name.
#[derive(Clone, Default)]
pub struct Gateways {
    by_name: BTreeMap<String, Arc<Gateway>>,
    /// When set, every name resolves to this gateway (`herald run`).
    catch_all: Option<Arc<Gateway>>,
}

impl Gateways {
    /// Sets up every gateway in `config`. SMTP gateways read their credentials
    /// from the environment variables the config names; nothing connects yet.
    pub fn from_config(config: &Config) -> Result<Self, GatewaySetupError> {
        let mut by_name = BTreeMap::new();
        for (name, gateway) in &config.gateways {
            let gateway = match gateway {
                GatewayConfig::Smtp(smtp) => {
                    Gateway::Smtp(Box::new(smtp::SmtpGateway::new(name, smtp)?))
                }
                GatewayConfig::Outbox(outbox) => Gateway::Outbox(outbox::OutboxGateway::new(
                    name,
                    config.resolve_data_path(&outbox.path),
                    &outbox.from,
                )?),
            };
            by_name.insert(name.clone(), Arc::new(gateway));
        }
        Ok(Self {
            by_name,
            catch_all: None,
        })
    }

    /// Returns gateways where every name resolves to one outbox, for running a
    /// worker locally without configuration.
    pub fn catch_all_outbox(outbox: outbox::OutboxGateway) -> Self {
        Self {
            by_name: BTreeMap::new(),
            catch_all: Some(Arc::new(Gateway::Outbox(outbox))),
        }
    }

    /// Returns the gateway called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Gateway>> {
        self.by_name
            .get(name)
            .or(self.catch_all.as_ref())
            .map(Arc::clone)
    }

    /// Returns the configured names, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}

/// Parses a configured `from` address.
fn parse_from(name: &str, from: &str) -> Result<Mailbox, GatewaySetupError> {
    from.parse().map_err(|error| GatewaySetupError {
        name: name.to_owned(),
        message: format!(
            "invalid from address \"{from}\": {error}; use local@domain or Name <local@domain>"
        ),
    })
}
