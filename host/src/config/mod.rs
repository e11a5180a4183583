//! The operator's configuration: `herald.toml` plus environment variables for
//! secrets. This module parses and validates it and fills in the embedded
//! defaults; it opens no connections and reads no secrets itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod gateway;

pub use gateway::{
    FcmConfig, GatewayConfig, GatewayLimits, OutboxConfig, Rate, SendGridConfig, SmtpConfig,
    TransportConfig, TwilioConfig, WebhookConfig,
};

/// Seconds in an hour, a day and a year, for the ranges of time settings.
const ONE_HOUR_SECS: u64 = 60 * 60;
const ONE_DAY_SECS: u64 = 24 * ONE_HOUR_SECS;
const ONE_YEAR_SECS: u64 = 365 * ONE_DAY_SECS;

/// Environment variable that contains the API bearer token.
pub const API_TOKEN_ENV: &str = "HERALD_API_TOKEN";

/// The whole configuration of one `herald serve` process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on. Port 0 picks a free port.
    #[serde(default = "default_listen", deserialize_with = "deserialize_listen")]
    pub listen: SocketAddr,
    /// Directory for the database, the outbox and compiled components.
    /// A relative path is taken from the directory of the config file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Gateways by name. Workers send through them by name.
    #[serde(default = "default_gateways")]
    pub gateways: BTreeMap<String, GatewayConfig>,
    /// Limits of the WebAssembly runtime.
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Queue-wide settings.
    #[serde(default)]
    pub queue: QueueConfig,
    /// HTTP API settings.
    #[serde(default)]
    pub api: ApiConfig,
    /// Settings that apply to every worker unless `[workers.NAME]` overrides them.
    #[serde(default)]
    pub worker_defaults: BindingOverrides,
    /// Per-worker settings, by worker name.
    #[serde(default)]
    pub workers: BTreeMap<String, BindingOverrides>,
}

/// Limits of the WebAssembly runtime, shared by all workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Maximum number of worker instances alive at once across all workers.
    /// The pooling allocator reserves its slots up front.
    pub max_instances: u32,
}

/// Queue-wide settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// How long an enqueue idempotency key is remembered, in seconds.
    pub idempotency_window_secs: u64,
    /// How often idle dispatchers look for due messages, in milliseconds.
    /// Enqueues wake them at once, so this bounds the delay only for
    /// scheduled messages and expired reservations.
    pub poll_interval_ms: u64,
    /// How long SIGTERM waits for in-flight batches before releasing their
    /// messages, in seconds.
    pub shutdown_grace_secs: u64,
    /// How long completed messages stay queryable before they are deleted,
    /// in seconds. Their delivery rows are kept.
    pub completed_retention_secs: u64,
}

/// HTTP API settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Maximum size of a component upload, in bytes.
    pub max_upload_bytes: usize,
    /// Maximum size of any other request body, in bytes.
    pub max_body_bytes: usize,
}

/// Worker settings as written in the file, where every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingOverrides {
    /// Maximum number of messages handed to one instance.
    pub batch_size: Option<u32>,
    /// How long to wait for a batch to fill before running it, in milliseconds.
    pub batch_wait_ms: Option<u64>,
    /// Maximum number of instances of this worker running at once.
    pub concurrency: Option<u32>,
    /// How long a reserved message stays invisible to other dispatchers, in
    /// seconds. A running batch extends it while it runs.
    pub reservation_timeout_secs: Option<u64>,
    /// Wall-clock limit of one batch, in seconds.
    pub deadline_secs: Option<u64>,
    /// Maximum linear memory of one instance, in MiB.
    pub memory_limit_mib: Option<u64>,
    /// Attempts after which a failing message is dead-lettered.
    pub max_attempts: Option<u32>,
    /// Deferrals after which a message is dead-lettered.
    pub max_deferrals: Option<u32>,
    /// First retry delay of the exponential backoff, in seconds.
    pub backoff_base_secs: Option<f64>,
    /// Maximum retry delay of the exponential backoff, in seconds.
    pub backoff_cap_secs: Option<f64>,
    /// Non-secret settings the worker reads through the `config` import.
    pub settings: Option<BTreeMap<String, String>>,
    /// Queue that receives a copy of each dead letter.
    pub error_queue: Option<String>,
    /// Webhook notified of each dead letter.
    pub failure_webhook: Option<FailureWebhook>,
}

/// A signed POST sent for each dead letter of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureWebhook {
    /// `http://` or `https://` URL that receives the POST.
    pub url: String,
    /// Name of the environment variable that contains the HMAC-SHA256
    /// signing secret.
    pub secret_env: String,
}

/// The effective settings of one worker: its overrides applied over the
/// defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// See [`BindingOverrides::batch_size`].
    pub batch_size: u32,
    /// See [`BindingOverrides::batch_wait_ms`].
    pub batch_wait: Duration,
    /// See [`BindingOverrides::concurrency`].
    pub concurrency: u32,
    /// See [`BindingOverrides::reservation_timeout_secs`].
    pub reservation_timeout: Duration,
    /// See [`BindingOverrides::deadline_secs`].
    pub deadline: Duration,
    /// See [`BindingOverrides::memory_limit_mib`], in bytes.
    pub memory_limit: usize,
    /// See [`BindingOverrides::max_attempts`].
    pub max_attempts: u32,
    /// See [`BindingOverrides::max_deferrals`].
    pub max_deferrals: u32,
    /// See [`BindingOverrides::backoff_base_secs`].
    pub backoff_base: Duration,
    /// See [`BindingOverrides::backoff_cap_secs`].
    pub backoff_cap: Duration,
    /// See [`BindingOverrides::settings`].
    pub settings: BTreeMap<String, String>,
    /// See [`BindingOverrides::error_queue`].
    pub error_queue: Option<String>,
    /// See [`BindingOverrides::failure_webhook`].
    pub failure_webhook: Option<FailureWebhook>,
}

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read config file \"{path}\": {error}")]
    Read {
        /// Path of the file.
        path: PathBuf,
        /// Cause.
        error: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file \"{path}\": {message}")]
    Parse {
        /// Path of the file.
        path: PathBuf,
        /// The parser's message, which names the key and line.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            data_dir: default_data_dir(),
            gateways: default_gateways(),
            runtime: RuntimeConfig::default(),
            queue: QueueConfig::default(),
            api: ApiConfig::default(),
            worker_defaults: BindingOverrides::default(),
            workers: BTreeMap::new(),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self { max_instances: 200 }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            idempotency_window_secs: 24 * 60 * 60,
            poll_interval_ms: 1_000,
            shutdown_grace_secs: 30,
            completed_retention_secs: 7 * 24 * 60 * 60,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 64 * 1024 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Default for Binding {
    fn default() -> Self {
        Self {
            batch_size: 100,
            batch_wait: Duration::ZERO,
            concurrency: 4,
            reservation_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(30),
            memory_limit: 64 * 1024 * 1024,
            max_attempts: 5,
            max_deferrals: 100,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60 * 60),
            settings: BTreeMap::new(),
            error_queue: None,
            failure_webhook: None,
        }
    }
}

impl Config {
    /// Reads and validates a config file. Relative paths in it are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let mut config = Self::parse(&text).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        if config.data_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.data_dir = base.join(&config.data_dir);
        }
        Ok(config)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: error.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and cross-references that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.gateways.is_empty() {
            return Err(ConfigError::Invalid(
                "no gateways are configured; add a [gateways.email] table".into(),
            ));
        }
        if self.runtime.max_instances == 0 {
            return Err(ConfigError::Invalid(
                "runtime.max_instances is 0; set it to at least 1".into(),
            ));
        }
        gateway::check_gateways(&self.gateways).map_err(ConfigError::Invalid)?;
        self.worker_defaults
            .check("worker_defaults")
            .map_err(ConfigError::Invalid)?;
        for (name, overrides) in &self.workers {
            overrides
                .check(&format!("workers.{name}"))
                .map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }

    /// Returns the effective settings of the worker `name`.
    pub fn binding(&self, name: &str) -> Binding {
        let mut binding = Binding::default();
        self.worker_defaults.apply(&mut binding);
        if let Some(overrides) = self.workers.get(name) {
            overrides.apply(&mut binding);
        }
        binding
    }

    /// Returns the SQLite database path inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("herald.db")
    }

    /// Resolves a path from the config against the data directory.
    pub fn resolve_data_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.data_dir.join(path)
        }
    }
}

impl Binding {
    /// Returns the dead-letter policy of the worker `name`: its error queue
    /// and whether its failure webhook is notified.
    pub fn dead_letter_policy(&self, name: &str) -> crate::queue::DeadLetterPolicy {
        crate::queue::DeadLetterPolicy {
            error_queue: self.error_queue.clone(),
            notify_worker: self.failure_webhook.as_ref().map(|_| name.to_owned()),
        }
    }
}

impl BindingOverrides {
    fn check(&self, table: &str) -> Result<(), String> {
        // Each key with its smallest and largest accepted value. The upper
        // bounds keep time arithmetic far from overflow, and 4096 MiB is the
        // whole 32-bit address space of a wasm32 memory.
        let ranges = [
            ("batch_size", self.batch_size.map(u64::from), 1, 10_000),
            ("batch_wait_ms", self.batch_wait_ms, 0, ONE_HOUR_SECS * 1000),
            ("concurrency", self.concurrency.map(u64::from), 1, 10_000),
            (
                "reservation_timeout_secs",
                self.reservation_timeout_secs,
                1,
                ONE_YEAR_SECS,
            ),
            ("deadline_secs", self.deadline_secs, 1, ONE_DAY_SECS),
            ("memory_limit_mib", self.memory_limit_mib, 1, 4096),
            ("max_attempts", self.max_attempts.map(u64::from), 1, 1_000),
            (
                "max_deferrals",
                self.max_deferrals.map(u64::from),
                0,
                1_000_000,
            ),
        ];
        for (key, value, min, max) in ranges {
            if let Some(value) = value
                && !(min..=max).contains(&value)
            {
                return Err(format!(
                    "{table}.{key} is {value}; set it between {min} and {max}"
                ));
            }
        }
        if let Some(error_queue) = &self.error_queue {
            crate::queue::validate_queue_name(error_queue)
                .map_err(|message| format!("{table}.error_queue: {message}"))?;
        }
        if let Some(webhook) = &self.failure_webhook {
            let scheme_ok =
                webhook.url.starts_with("http://") || webhook.url.starts_with("https://");
            if !scheme_ok || url::Url::parse(&webhook.url).is_err() {
                return Err(format!(
                    "{table}.failure_webhook.url \"{}\" is not an http:// or https:// URL",
                    webhook.url
                ));
            }
            if std::env::var(&webhook.secret_env).map_or(true, |secret| secret.is_empty()) {
                return Err(format!(
                    "{table}.failure_webhook.secret_env names the environment variable {}, \
                     which is not set; set it to the signing secret",
                    webhook.secret_env
                ));
            }
        }
        for (key, value) in [
            ("backoff_base_secs", self.backoff_base_secs),
            ("backoff_cap_secs", self.backoff_cap_secs),
        ] {
            if let Some(seconds) = value
                && !(seconds.is_finite() && (0.0..=ONE_YEAR_SECS as f64).contains(&seconds))
            {
                return Err(format!(
                    "{table}.{key} is {seconds}; set it between 0 and {ONE_YEAR_SECS} seconds"
                ));
            }
        }
        Ok(())
    }

    fn apply(&self, binding: &mut Binding) {
        if let Some(value) = self.batch_size {
            binding.batch_size = value;
        }
        if let Some(value) = self.batch_wait_ms {
            binding.batch_wait = Duration::from_millis(value);
        }
        if let Some(value) = self.concurrency {
            binding.concurrency = value;
        }
        if let Some(value) = self.reservation_timeout_secs {
            binding.reservation_timeout = Duration::from_secs(value);
        }
        if let Some(value) = self.deadline_secs {
            binding.deadline = Duration::from_secs(value);
        }
        if let Some(value) = self.memory_limit_mib {
            binding.memory_limit =
                usize::try_from(value.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        }
        if let Some(value) = self.max_attempts {
            binding.max_attempts = value;
        }
        if let Some(value) = self.max_deferrals {
            binding.max_deferrals = value;
        }
        if let Some(value) = self.backoff_base_secs {
            binding.backoff_base = Duration::from_secs_f64(value);
        }
        if let Some(value) = self.backoff_cap_secs {
            binding.backoff_cap = Duration::from_secs_f64(value);
        }
        if let Some(settings) = &self.settings {
            binding.settings.extend(settings.clone());
        }
        if let Some(error_queue) = &self.error_queue {
            binding.error_queue = Some(error_queue.clone());
        }
        if let Some(webhook) = &self.failure_webhook {
            binding.failure_webhook = Some(webhook.clone());
        }
    }
}

fn deserialize_listen<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid listen address \"{text}\"; use an IP address and port such as \
             127.0.0.1:7600 (host names are not resolved)"
        ))
    })
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7600))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("herald-data")
}

fn default_gateways() -> BTreeMap<String, GatewayConfig> {
    BTreeMap::from([("email".to_owned(), GatewayConfig::default_outbox())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.listen, "127.0.0.1:7600".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("herald-data"));
        assert!(matches!(
            config.gateways["email"].transport,
            TransportConfig::Outbox(_)
        ));
    }

    #[test]
    fn smtp_gateway_parses() {
        let config = Config::parse(
            r#"
            listen = "127.0.0.1:7700"
            data_dir = "data"
            [gateways.email]
            kind = "smtp"
            url = "smtp://127.0.0.1:2525"
            from = "Example <noreply@example.com>"
            "#,
        )
        .unwrap();
        let TransportConfig::Smtp(smtp) = &config.gateways["email"].transport else {
            panic!("expected an smtp gateway");
        };
        assert_eq!(smtp.url, "smtp://127.0.0.1:2525");
        assert_eq!(smtp.pool_size, 8);
    }

    #[test]
    fn unknown_key_is_rejected() {
        let error = Config::parse("listne = \"127.0.0.1:1\"").unwrap_err();
        assert!(error.to_string().contains("listne"), "{error}");
    }

    #[test]
    fn host_name_listen_gets_a_hint() {
        let error = Config::parse("listen = \"localhost:7600\"").unwrap_err();
        assert!(error.to_string().contains("127.0.0.1:7600"), "{error}");
    }

    #[test]
    fn unknown_gateway_kind_is_rejected() {
        let error = Config::parse("[gateways.email]\nkind = \"carrier-pigeon\"").unwrap_err();
        assert!(error.to_string().contains("carrier-pigeon"), "{error}");
    }

    #[test]
    fn worker_overrides_apply_over_defaults() {
        let config = Config::parse(
            r#"
            [worker_defaults]
            batch_size = 10
            max_attempts = 3
            [workers.digest]
            batch_size = 50
            settings = { verify_url = "https://example.com/v" }
            "#,
        )
        .unwrap();
        let digest = config.binding("digest");
        assert_eq!(digest.batch_size, 50);
        assert_eq!(digest.max_attempts, 3);
        assert_eq!(digest.settings["verify_url"], "https://example.com/v");
        assert_eq!(config.binding("other").batch_size, 10);
    }

    #[test]
    fn zero_batch_size_is_rejected() {
        let error = Config::parse("[workers.a]\nbatch_size = 0").unwrap_err();
        assert!(
            error.to_string().contains("workers.a.batch_size is 0"),
            "{error}"
        );
    }

    #[test]
    fn out_of_range_times_are_rejected() {
        let cases = [
            (
                "[worker_defaults]\nbackoff_cap_secs = 1e30",
                "backoff_cap_secs",
            ),
            (
                "[worker_defaults]\nbackoff_base_secs = -1",
                "backoff_base_secs",
            ),
            (
                "[worker_defaults]\nreservation_timeout_secs = 99999999999",
                "reservation_timeout_secs",
            ),
            ("[workers.a]\ndeadline_secs = 100000000", "deadline_secs"),
            ("[workers.a]\nmemory_limit_mib = 5000", "memory_limit_mib"),
        ];
        for (text, key) in cases {
            let error = Config::parse(text).unwrap_err();
            assert!(error.to_string().contains(key), "{text}: {error}");
        }
    }
}
