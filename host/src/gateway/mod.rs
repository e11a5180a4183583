//! Delivery gateways: the operator-configured channels through which workers
//! send notifications.
//!
//! A worker names a gateway. This module resolves the name, checks that the
//! gateway delivers on the notification's channel and validates the
//! notification ([`email`], [`notification`]). It then hands it to the
//! gateway's transport, behind the gateway's rate limit, in-flight limit
//! ([`limit`]) and circuit breaker ([`breaker`]). Credentials stay here and never reach
//! a worker. Failures come back classified by whether a retry can help.

pub mod breaker;
pub mod email;
pub mod fcm;
pub mod http;
pub mod limit;
pub mod mime;
pub mod notification;
pub mod outbox;
pub mod sendgrid;
pub mod smtp;
pub mod twilio;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;

use crate::config::{Config, GatewayConfig, Rate, TransportConfig};
use breaker::{Admission, CircuitBreaker, CircuitReport};
pub use email::{OutgoingEmail, PreparedEmail};
use limit::{InFlight, RateLimiter};
pub use notification::{Channel, Push, Sms, WebhookEvent};

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

/// Maximum wait for a rate-limit token inside a send. A longer wait fails
/// the send as rate-limited, so the message is retried when the token is due
/// instead of holding its worker instance, possibly past its deadline.
const MAX_RATE_WAIT: Duration = Duration::from_secs(1);

/// The provider behind a gateway.
enum Transport {
    /// SMTP through lettre.
    Smtp(Box<smtp::SmtpGateway>),
    /// `.eml` files in a folder.
    Outbox(outbox::OutboxGateway),
    /// A SendGrid-style mail API.
    SendGrid(sendgrid::SendGridGateway),
    /// A Twilio-style SMS API.
    Twilio(twilio::TwilioGateway),
    /// An FCM-style push API.
    Fcm(fcm::FcmGateway),
    /// Signed JSON POSTs to one URL.
    Webhook(webhook::WebhookGateway),
}

/// One configured gateway: a transport wrapped in its rate limit, its
/// in-flight limit and its circuit breaker.
pub struct Gateway {
    name: String,
    kind: &'static str,
    channel: Channel,
    transport: Transport,
    rate: Option<(Rate, RateLimiter)>,
    in_flight: Option<InFlight>,
    breaker: CircuitBreaker,
    fallback: Option<String>,
}

/// The content of a send, for any gateway of its channel.
#[derive(Debug, Clone)]
pub enum Notification {
    /// An email, formatted by each gateway with its own default sender.
    Email(OutgoingEmail),
    /// A text message.
    Sms(Sms),
    /// A push notification.
    Push(Push),
    /// A webhook event.
    Webhook(WebhookEvent),
}

/// Identity of one send, the same for a primary gateway and its fallback.
#[derive(Debug, Clone)]
pub struct SendContext {
    /// Id of the delivery row, also the unique part of an email's Message-ID.
    pub delivery_id: String,
    /// Id that stays the same when the send is retried, such as a webhook's
    /// `webhook-id`.
    pub stable_id: String,
}

/// A send that a gateway accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Name of the gateway that took it: the one asked, or its fallback.
    pub gateway: String,
    /// The provider's id for it.
    pub provider_id: String,
}

/// A gateway as `GET /v1/gateways` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GatewayReport {
    /// Gateway name.
    pub name: String,
    /// Kind, such as `smtp` or `twilio`.
    pub kind: &'static str,
    /// Channel it delivers on.
    pub channel: &'static str,
    /// Configured rate, such as `50/s`.
    pub rate: Option<String>,
    /// Configured maximum of sends in progress.
    pub max_in_flight: Option<usize>,
    /// Sends in progress now, when a maximum is configured.
    pub in_flight: Option<usize>,
    /// Gateway used while the circuit is open.
    pub fallback: Option<String>,
    /// The circuit breaker.
    pub circuit: CircuitReport,
}

impl Notification {
    /// Returns the channel the notification goes out on.
    pub fn channel(&self) -> Channel {
        match self {
            Self::Email(_) => Channel::Email,
            Self::Sms(_) => Channel::Sms,
            Self::Push(_) => Channel::Push,
            Self::Webhook(_) => Channel::Webhook,
        }
    }
}

impl Gateway {
    /// Sets up the gateway `name` from its configuration. Secrets are read
    /// from the environment now; nothing connects yet.
    pub fn new(
        name: &str,
        config: &GatewayConfig,
        data_path: impl Fn(&std::path::Path) -> std::path::PathBuf,
    ) -> Result<Self, GatewaySetupError> {
        let transport = match &config.transport {
            TransportConfig::Smtp(smtp) => {
                Transport::Smtp(Box::new(smtp::SmtpGateway::new(name, smtp)?))
            }
            TransportConfig::Outbox(outbox) => Transport::Outbox(outbox::OutboxGateway::new(
                name,
                data_path(&outbox.path),
                &outbox.from,
            )?),
            TransportConfig::Sendgrid(config) => {
                Transport::SendGrid(sendgrid::SendGridGateway::new(name, config)?)
            }
            TransportConfig::Twilio(config) => {
                Transport::Twilio(twilio::TwilioGateway::new(name, config)?)
            }
            TransportConfig::Fcm(config) => Transport::Fcm(fcm::FcmGateway::new(name, config)?),
            TransportConfig::Webhook(config) => {
                Transport::Webhook(webhook::WebhookGateway::new(name, config)?)
            }
        };
        let limits = &config.limits;
        Ok(Self {
            name: name.to_owned(),
            kind: config.transport.kind(),
            channel: config.transport.channel(),
            transport,
            rate: limits.rate.map(|rate| (rate, RateLimiter::new(rate))),
            in_flight: limits.max_in_flight.map(InFlight::new),
            breaker: CircuitBreaker::new(
                name,
                limits.circuit_failures,
                Duration::from_secs(limits.circuit_cooldown_secs),
            ),
            fallback: limits.fallback.clone(),
        })
    }

    /// Wraps a transport with no limits, for `herald run`.
    fn unlimited(name: &str, transport: Transport) -> Self {
        let limits = crate::config::GatewayLimits::default();
        Self {
            name: name.to_owned(),
            kind: "outbox",
            channel: Channel::Email,
            transport,
            rate: None,
            in_flight: None,
            breaker: CircuitBreaker::new(
                name,
                limits.circuit_failures,
                Duration::from_secs(limits.circuit_cooldown_secs),
            ),
            fallback: None,
        }
    }

    /// Returns the gateway's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the kind as written in the config.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Returns the channel the gateway delivers on.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Returns the sender used when a worker sets none, for email gateways.
    pub fn default_from(&self) -> Option<&Mailbox> {
        match &self.transport {
            Transport::Smtp(gateway) => Some(gateway.default_from()),
            Transport::Outbox(gateway) => Some(gateway.default_from()),
            Transport::SendGrid(gateway) => Some(gateway.default_from()),
            Transport::Twilio(_) | Transport::Fcm(_) | Transport::Webhook(_) => None,
        }
    }

    /// Returns who a notification reaches, one entry per delivery row:
    /// addresses for email, the number for SMS, the device token for push
    /// and the URL for a webhook. Checks the notification on the way.
    pub fn recipients(&self, notification: &Notification) -> Result<Vec<String>, SendError> {
        match notification {
            Notification::Email(email) => {
                let from = self
                    .default_from()
                    .ok_or_else(|| self.wrong_channel(Channel::Email))?;
                Ok(email::prepare(email, from, "check")?.recipients)
            }
            Notification::Sms(sms) => {
                sms.validate()?;
                Ok(vec![sms.to.clone()])
            }
            Notification::Push(push) => {
                push.validate()?;
                Ok(vec![push.token.clone()])
            }
            Notification::Webhook(_) => Ok(vec![match &self.transport {
                Transport::Webhook(gateway) => gateway.url().to_owned(),
                _ => self.name.clone(),
            }]),
        }
    }

    /// Sends through this gateway alone: waits for the rate limit and a free
    /// slot, calls the provider and records the result in the circuit breaker.
    /// The caller has checked the circuit.
    async fn call(
        &self,
        notification: &Notification,
        context: &SendContext,
    ) -> Result<String, SendError> {
        if let Some((rate, limiter)) = &self.rate
            && let Err(wait) = limiter.acquire(MAX_RATE_WAIT).await
        {
            return Err(SendError::RateLimited {
                message: format!(
                    "gateway \"{}\" is at its rate of {rate}; the next send is due in {} ms",
                    self.name,
                    wait.as_millis()
                ),
                retry_after: wait,
            });
        }
        let _permit = match &self.in_flight {
            Some(in_flight) => Some(in_flight.acquire().await),
            None => None,
        };
        let result = self.transport_send(notification, context).await;
        self.breaker.record(&result);
        result
    }

    async fn transport_send(
        &self,
        notification: &Notification,
        context: &SendContext,
    ) -> Result<String, SendError> {
        match (&self.transport, notification) {
            (Transport::Smtp(gateway), Notification::Email(email)) => {
                let prepared = email::prepare(email, gateway.default_from(), &context.delivery_id)?;
                gateway.send(&prepared).await
            }
            (Transport::Outbox(gateway), Notification::Email(email)) => {
                let prepared = email::prepare(email, gateway.default_from(), &context.delivery_id)?;
                gateway.send(&prepared).await
            }
            (Transport::Outbox(gateway), other) => gateway.send_other(other, context).await,
            (Transport::SendGrid(gateway), Notification::Email(email)) => {
                let prepared = email::prepare(email, gateway.default_from(), &context.delivery_id)?;
                gateway.send(&prepared).await
            }
            (Transport::Twilio(gateway), Notification::Sms(sms)) => gateway.send(sms).await,
            (Transport::Fcm(gateway), Notification::Push(push)) => gateway.send(push).await,
            (Transport::Webhook(gateway), Notification::Webhook(event)) => {
                gateway.send(event, &context.stable_id).await
            }
            (_, other) => Err(self.wrong_channel(other.channel())),
        }
    }

    fn wrong_channel(&self, wanted: Channel) -> SendError {
        SendError::Permanent(format!(
            "gateway \"{}\" is a {} gateway for {}; send {wanted} through a gateway of that \
             channel",
            self.name, self.kind, self.channel
        ))
    }

    /// Returns the gateway's state for `GET /v1/gateways`.
    pub fn report(&self) -> GatewayReport {
        GatewayReport {
            name: self.name.clone(),
            kind: self.kind,
            channel: self.channel.as_str(),
            rate: self.rate.as_ref().map(|(rate, _)| rate.to_string()),
            max_in_flight: self.in_flight.as_ref().map(InFlight::max),
            in_flight: self.in_flight.as_ref().map(InFlight::in_use),
            fallback: self.fallback.clone(),
            circuit: self.breaker.report(),
        }
    }
}

/// The gateways of one process, by name.
#[derive(Clone, Default)]
pub struct Gateways {
    by_name: BTreeMap<String, Arc<Gateway>>,
    /// When set, every name resolves to this gateway, whatever the channel
    /// (`herald run`).
    catch_all: Option<Arc<Gateway>>,
}

impl Gateways {
    /// Sets up every gateway in `config`. Gateways read their secrets from
    /// the environment variables the config names; nothing connects yet.
    pub fn from_config(config: &Config) -> Result<Self, GatewaySetupError> {
        let mut by_name = BTreeMap::new();
        for (name, gateway) in &config.gateways {
            let gateway = Gateway::new(name, gateway, |path| config.resolve_data_path(path))?;
            by_name.insert(name.clone(), Arc::new(gateway));
        }
        Ok(Self {
            by_name,
            catch_all: None,
        })
    }

    /// Returns gateways where every name resolves to one outbox, for running a
    /// worker locally without configuration. The outbox takes every channel.
    pub fn catch_all_outbox(outbox: outbox::OutboxGateway) -> Self {
        Self {
            by_name: BTreeMap::new(),
            catch_all: Some(Arc::new(Gateway::unlimited(
                "outbox",
                Transport::Outbox(outbox),
            ))),
        }
    }

    /// Returns the gateway called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Gateway>> {
        self.by_name
            .get(name)
            .or(self.catch_all.as_ref())
            .map(Arc::clone)
    }

    /// Returns the gateway called `name` when it delivers on `channel`.
    pub fn resolve(&self, name: &str, channel: Channel) -> Result<Arc<Gateway>, SendError> {
        let Some(gateway) = self.get(name) else {
            return Err(SendError::Permanent(format!(
                "gateway \"{name}\" is not configured; configured gateways: {}",
                self.names().join(", ")
            )));
        };
        if self.catch_all.is_none() && gateway.channel != channel {
            return Err(gateway.wrong_channel(channel));
        }
        Ok(gateway)
    }

    /// Sends `notification` through `gateway`, or through its fallback while
    /// its circuit is open. An open circuit with no usable fallback fails
    /// the send as transient without calling any provider.
    pub async fn send(
        &self,
        gateway: &Gateway,
        notification: &Notification,
        context: &SendContext,
    ) -> Result<Accepted, SendError> {
        let retry_in = match gateway.breaker.admit() {
            Admission::Allowed => {
                let provider_id = gateway.call(notification, context).await?;
                return Ok(Accepted {
                    gateway: gateway.name.clone(),
                    provider_id,
                });
            }
            Admission::Rejected(retry_in) => retry_in,
        };
        let fallback = gateway
            .fallback
            .as_deref()
            .and_then(|name| self.by_name.get(name));
        if let Some(fallback) = fallback {
            match fallback.breaker.admit() {
                Admission::Allowed => {
                    tracing::info!(
                        gateway = %gateway.name,
                        fallback = %fallback.name,
                        "circuit open, sending through the fallback"
                    );
                    let provider_id = fallback.call(notification, context).await?;
                    return Ok(Accepted {
                        gateway: fallback.name.clone(),
                        provider_id,
                    });
                }
                Admission::Rejected(_) => tracing::debug!(
                    gateway = %gateway.name,
                    fallback = %fallback.name,
                    "circuit of the fallback is open too"
                ),
            }
        }
        Err(SendError::Transient(format!(
            "circuit of gateway \"{}\" is open after repeated failures; not calling the \
             provider for another {} s",
            gateway.name,
            retry_in.as_secs_f64().ceil() as u64
        )))
    }

    /// Returns every configured gateway's state.
    pub fn reports(&self) -> Vec<GatewayReport> {
        self.by_name
            .values()
            .map(|gateway| gateway.report())
            .collect()
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
