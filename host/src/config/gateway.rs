//! The `[gateways.NAME]` tables: which provider each gateway talks to, and
//! the limits that every kind shares (rate, concurrency, circuit breaker and
//! fallback).
//!
//! A table mixes the two sets of keys, so it is split by key name before
//! each half is parsed with unknown keys rejected.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::gateway::Channel;

/// Keys of a gateway table that belong to [`GatewayLimits`].
const LIMIT_KEYS: &[&str] = &[
    "rate",
    "max_in_flight",
    "circuit_failures",
    "circuit_cooldown_secs",
    "fallback",
];

/// Maximum request timeout of an HTTP gateway, in seconds.
const MAX_TIMEOUT_SECS: u64 = 300;

/// One configured gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The provider and how to reach it.
    pub transport: TransportConfig,
    /// Limits shared by every kind.
    pub limits: GatewayLimits,
}

/// The provider of a gateway, chosen by its `kind` key.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TransportConfig {
    /// An SMTP server, reached through lettre over pooled connections.
    Smtp(SmtpConfig),
    /// A folder that receives each email as an `.eml` file.
    Outbox(OutboxConfig),
    /// A SendGrid-style mail API (`POST /v3/mail/send`).
    Sendgrid(SendGridConfig),
    /// A Twilio-style SMS API (`POST /2010-04-01/Accounts/{sid}/Messages.json`).
    Twilio(TwilioConfig),
    /// An FCM-style push API (`POST /v1/projects/{project}/messages:send`).
    Fcm(FcmConfig),
    /// A URL that receives each event as a signed JSON POST.
    Webhook(WebhookConfig),
}

/// Limits that every gateway kind shares.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayLimits {
    /// Sends allowed per period, such as `50/s`, shared by every worker on
    /// this node. Without it the gateway is not rate-limited.
    pub rate: Option<Rate>,
    /// Maximum number of sends in progress at once.
    pub max_in_flight: Option<usize>,
    /// Consecutive transient failures that open the circuit.
    #[serde(default = "default_circuit_failures")]
    pub circuit_failures: u32,
    /// How long an open circuit fails sends without calling the provider,
    /// in seconds.
    #[serde(default = "default_circuit_cooldown_secs")]
    pub circuit_cooldown_secs: u64,
    /// Gateway of the same channel that takes the sends while this one's
    /// circuit is open.
    pub fallback: Option<String>,
}

/// A rate such as `50/s`: `count` sends per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Sends per period.
    pub count: u32,
    /// Length of the period.
    pub period: Duration,
}

/// Settings of an `smtp` gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://host:port` for plain SMTP, `smtp://host:port?tls=required` for
    /// STARTTLS (or `tls=opportunistic` to use it when offered), and
    /// `smtps://host:port` for implicit TLS. `base_url` is accepted too.
    #[serde(alias = "base_url")]
    pub url: String,
    /// Sender used when a worker sets none, such as `Example <noreply@example.com>`.
    pub from: String,
    /// Name of the environment variable that contains the SMTP user name.
    pub user_env: Option<String>,
    /// Name of the environment variable that contains the SMTP password.
    pub password_env: Option<String>,
    /// Maximum number of open connections to the server.
    #[serde(default = "default_smtp_pool_size")]
    pub pool_size: usize,
    /// Timeout in seconds for connecting and for each SMTP command.
    #[serde(default = "default_smtp_timeout_secs")]
    pub timeout_secs: u64,
    /// PEM file with extra root certificates to trust, for servers with a
    /// private certificate authority.
    pub ca_file: Option<PathBuf>,
    /// Name sent in EHLO. The default is the host name `localhost`.
    pub hello_name: Option<String>,
}

/// Settings of an `outbox` gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Folder for the `.eml` files. Relative paths are taken from `data_dir`.
    #[serde(default = "default_outbox_path")]
    pub path: PathBuf,
    /// Sender used when a worker sets none.
    #[serde(default = "default_outbox_from")]
    pub from: String,
}

/// Settings of a `sendgrid` gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendGridConfig {
    /// Base URL of the API.
    #[serde(default = "default_sendgrid_url")]
    pub base_url: String,
    /// Name of the environment variable that contains the API key.
    pub api_key_env: String,
    /// Sender used when a worker sets none.
    pub from: String,
    /// Request timeout in seconds.
    #[serde(default = "default_http_timeout_secs")]
    pub timeout_secs: u64,
}

/// Settings of a `twilio` gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// Base URL of the API.
    #[serde(default = "default_twilio_url")]
    pub base_url: String,
    /// Account SID, the user name of the basic auth and part of the path.
    pub account_sid: String,
    /// Name of the environment variable that contains the auth token.
    pub auth_token_env: String,
    /// Sender number in E.164 form used when a worker sets none.
    pub from: String,
    /// Request timeout in seconds.
    #[serde(default = "default_http_timeout_secs")]
    pub timeout_secs: u64,
}

/// Settings of an `fcm` gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    /// Base URL of the API.
    #[serde(default = "default_fcm_url")]
    pub base_url: String,
    /// Project id, part of the path.
    pub project_id: String,
    /// Name of the environment variable that contains the OAuth 2 bearer
    /// token.
    pub token_env: String,
    /// Request timeout in seconds.
    #[serde(default = "default_http_timeout_secs")]
    pub timeout_secs: u64,
}

/// Settings of a `webhook` gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// URL that receives the POSTs.
    pub base_url: String,
    /// Name of the environment variable that contains the signing secret,
    /// either `whsec_` followed by base64 or any other text used as is.
    pub secret_env: String,
    /// Request timeout in seconds.
    #[serde(default = "default_http_timeout_secs")]
    pub timeout_secs: u64,
}

impl GatewayConfig {
    /// Returns the embedded default: an outbox folder in the data directory.
    pub fn default_outbox() -> Self {
        Self {
            transport: TransportConfig::Outbox(OutboxConfig {
                path: default_outbox_path(),
                from: default_outbox_from(),
            }),
            limits: GatewayLimits::default(),
        }
    }
}

impl TransportConfig {
    /// Returns the kind as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Smtp(_) => "smtp",
            Self::Outbox(_) => "outbox",
            Self::Sendgrid(_) => "sendgrid",
            Self::Twilio(_) => "twilio",
            Self::Fcm(_) => "fcm",
            Self::Webhook(_) => "webhook",
        }
    }

    /// Returns the channel that the gateway delivers on.
    pub fn channel(&self) -> Channel {
        match self {
            Self::Smtp(_) | Self::Outbox(_) | Self::Sendgrid(_) => Channel::Email,
            Self::Twilio(_) => Channel::Sms,
            Self::Fcm(_) => Channel::Push,
            Self::Webhook(_) => Channel::Webhook,
        }
    }

    /// Returns the base URL and timeout of an HTTP gateway.
    fn http(&self) -> Option<(&str, u64)> {
        match self {
            Self::Sendgrid(config) => Some((&config.base_url, config.timeout_secs)),
            Self::Twilio(config) => Some((&config.base_url, config.timeout_secs)),
            Self::Fcm(config) => Some((&config.base_url, config.timeout_secs)),
            Self::Webhook(config) => Some((&config.base_url, config.timeout_secs)),
            Self::Smtp(_) | Self::Outbox(_) => None,
        }
    }
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            rate: None,
            max_in_flight: None,
            circuit_failures: default_circuit_failures(),
            circuit_cooldown_secs: default_circuit_cooldown_secs(),
            fallback: None,
        }
    }
}

impl<'de> Deserialize<'de> for GatewayConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;

        let table = toml::Table::deserialize(deserializer)?;
        let (limits, transport): (toml::Table, toml::Table) = table
            .into_iter()
            .partition(|(key, _)| LIMIT_KEYS.contains(&key.as_str()));
        let transport = TransportConfig::deserialize(toml::Value::Table(transport))
            .map_err(|error| D::Error::custom(error.message()))?;
        let limits = GatewayLimits::deserialize(toml::Value::Table(limits))
            .map_err(|error| D::Error::custom(error.message()))?;
        Ok(Self { transport, limits })
    }
}

impl Rate {
    /// Parses `N/s`, `N/m` or `N/h`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "invalid rate \"{text}\"; write a count per second, minute or hour, \
                 such as \"50/s\", \"600/m\" or \"10000/h\""
            )
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        let period = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(60 * 60),
            _ => return Err(invalid()),
        };
        if count == 0 {
            return Err(format!(
                "rate \"{text}\" allows no sends; use a count of at least 1, or remove the \
                 rate for no limit"
            ));
        }
        Ok(Self { count, period })
    }

    /// Returns sends per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.period.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(formatter, "{}/{unit}", self.count)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RateVisitor)
    }
}

/// Reads a rate from a string, and explains the form when given a number.
struct RateVisitor;

impl serde::de::Visitor<'_> for RateVisitor {
    type Value = Rate;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a rate such as \"50/s\"")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Rate, E> {
        Rate::parse(text).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, count: i64) -> Result<Rate, E> {
        Err(E::custom(format!(
            "invalid rate {count}; write it as a quoted count per period, such as \
             \"{count}/s\", \"{count}/m\" or \"{count}/h\""
        )))
    }
}

/// Checks the values and cross-references of every gateway table.
pub(super) fn check_gateways(gateways: &BTreeMap<String, GatewayConfig>) -> Result<(), String> {
    for (name, gateway) in gateways {
        let table = format!("gateways.{name}");
        if let TransportConfig::Smtp(smtp) = &gateway.transport
            && smtp.pool_size == 0
        {
            return Err(format!("{table}.pool_size is 0; set it to at least 1"));
        }
        if let TransportConfig::Twilio(twilio) = &gateway.transport
            && !crate::gateway::notification::is_valid_sms_sender(&twilio.from)
        {
            return Err(format!(
                "{table}.from \"{}\" is not an E.164 number or a sender id; write one such \
                 as \"+14155550123\"",
                twilio.from
            ));
        }
        if let Some((base_url, timeout_secs)) = gateway.transport.http() {
            check_http_url(base_url).map_err(|message| format!("{table}.base_url {message}"))?;
            if !(1..=MAX_TIMEOUT_SECS).contains(&timeout_secs) {
                return Err(format!(
                    "{table}.timeout_secs is {timeout_secs}; set it between 1 and \
                     {MAX_TIMEOUT_SECS}"
                ));
            }
        }
        let limits = &gateway.limits;
        if limits.max_in_flight == Some(0) {
            return Err(format!(
                "{table}.max_in_flight is 0; set it to at least 1, or remove it for no limit"
            ));
        }
        if limits.circuit_failures == 0 {
            return Err(format!(
                "{table}.circuit_failures is 0; set it to at least 1"
            ));
        }
        if !(1..=super::ONE_DAY_SECS).contains(&limits.circuit_cooldown_secs) {
            return Err(format!(
                "{table}.circuit_cooldown_secs is {}; set it between 1 and {}",
                limits.circuit_cooldown_secs,
                super::ONE_DAY_SECS
            ));
        }
        if let Some(fallback) = &limits.fallback {
            let Some(target) = gateways.get(fallback) else {
                let names: Vec<&str> = gateways.keys().map(String::as_str).collect();
                return Err(format!(
                    "{table}.fallback names \"{fallback}\", which is not a gateway; \
                     configured gateways: {}",
                    names.join(", ")
                ));
            };
            if fallback == name {
                return Err(format!(
                    "{table}.fallback names the gateway itself; name another gateway"
                ));
            }
            let (own, theirs) = (gateway.transport.channel(), target.transport.channel());
            if own != theirs {
                return Err(format!(
                    "{table}.fallback names \"{fallback}\", a {theirs} gateway, but \
                     \"{name}\" sends {own}; name a gateway of the same channel"
                ));
            }
        }
    }
    Ok(())
}

/// Checks that `url` is an absolute `http` or `https` URL.
fn check_http_url(url: &str) -> Result<(), String> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        _ => Err(format!(
            "\"{url}\" is not an http:// or https:// URL; write one such as \
             https://api.example.com"
        )),
    }
}

fn default_circuit_failures() -> u32 {
    5
}

fn default_circuit_cooldown_secs() -> u64 {
    30
}

fn default_outbox_path() -> PathBuf {
    PathBuf::from("outbox")
}

fn default_outbox_from() -> String {
    "Herald <noreply@localhost>".to_owned()
}

fn default_smtp_pool_size() -> usize {
    8
}

fn default_smtp_timeout_secs() -> u64 {
    30
}

fn default_http_timeout_secs() -> u64 {
    10
}

fn default_sendgrid_url() -> String {
    "https://api.sendgrid.com".to_owned()
}

fn default_twilio_url() -> String {
    "https://api.twilio.com".to_owned()
}

fn default_fcm_url() -> String {
    "https://fcm.googleapis.com".to_owned()
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn rates_parse_per_second_minute_and_hour() {
        assert_eq!(Rate::parse("50/s").unwrap().per_second(), 50.0);
        assert_eq!(Rate::parse("600/m").unwrap().per_second(), 10.0);
        assert_eq!(Rate::parse("3600/h").unwrap().per_second(), 1.0);
        assert_eq!(Rate::parse("50/s").unwrap().to_string(), "50/s");
        for bad in ["50", "50/d", "x/s", "0/s", "-1/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_and_transport_keys_split() {
        let config = Config::parse(
            r#"
            [gateways.mail]
            kind = "sendgrid"
            base_url = "http://127.0.0.1:9000"
            api_key_env = "SENDGRID_API_KEY"
            from = "noreply@example.com"
            rate = "50/s"
            max_in_flight = 4
            circuit_failures = 3
            fallback = "smtp"

            [gateways.smtp]
            kind = "smtp"
            base_url = "smtp://127.0.0.1:2525"
            from = "noreply@example.com"
            "#,
        )
        .unwrap();
        let mail = &config.gateways["mail"];
        assert_eq!(mail.transport.kind(), "sendgrid");
        assert_eq!(mail.limits.rate, Some(Rate::parse("50/s").unwrap()));
        assert_eq!(mail.limits.max_in_flight, Some(4));
        assert_eq!(mail.limits.circuit_failures, 3);
        assert_eq!(mail.limits.circuit_cooldown_secs, 30);
        assert_eq!(mail.limits.fallback.as_deref(), Some("smtp"));
        let TransportConfig::Smtp(smtp) = &config.gateways["smtp"].transport else {
            panic!("expected smtp");
        };
        assert_eq!(smtp.url, "smtp://127.0.0.1:2525");
    }

    #[test]
    fn unknown_key_names_itself() {
        let error = Config::parse(
            "[gateways.sms]\nkind = \"twilio\"\naccount_sid = \"AC1\"\n\
             auth_token_env = \"T\"\nfrom = \"+15005550006\"\napi_key = \"x\"",
        )
        .unwrap_err();
        assert!(error.to_string().contains("api_key"), "{error}");
    }

    #[test]
    fn fallback_must_exist_and_share_the_channel() {
        let base = r#"
            [gateways.sms]
            kind = "twilio"
            account_sid = "AC1"
            auth_token_env = "TWILIO_AUTH_TOKEN"
            from = "+15005550006"
            fallback = "FALLBACK"

            [gateways.email]
            kind = "outbox"
        "#;
        let missing = Config::parse(&base.replace("FALLBACK", "nope")).unwrap_err();
        assert!(missing.to_string().contains("\"nope\""), "{missing}");
        let wrong = Config::parse(&base.replace("FALLBACK", "email")).unwrap_err();
        assert!(wrong.to_string().contains("same channel"), "{wrong}");
        let itself = Config::parse(&base.replace("FALLBACK", "sms")).unwrap_err();
        assert!(itself.to_string().contains("itself"), "{itself}");
    }

    #[test]
    fn bare_number_rate_gets_a_hint() {
        let error = Config::parse("[gateways.email]\nkind = \"outbox\"\nrate = 50").unwrap_err();
        assert!(error.to_string().contains("\"50/s\""), "{error}");
    }

    #[test]
    fn twilio_sender_is_checked() {
        let error = Config::parse(
            "[gateways.sms]\nkind = \"twilio\"\naccount_sid = \"AC1\"\n\
             auth_token_env = \"T\"\nfrom = \"not-a-number\"",
        )
        .unwrap_err();
        assert!(error.to_string().contains("gateways.sms.from"), "{error}");
    }

    #[test]
    fn http_gateways_need_http_urls() {
        let error = Config::parse(
            "[gateways.hook]\nkind = \"webhook\"\nbase_url = \"ftp://x\"\nsecret_env = \"S\"",
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("gateways.hook.base_url"),
            "{error}"
        );
    }
}
