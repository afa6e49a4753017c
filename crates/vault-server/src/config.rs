//! Configuration: a TOML file plus `MPCVAULT_*` environment overrides, validated at startup.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::limits::{OrgLimits, RawTierLimits};
use crate::metrics::{MetricsAccess, RawMetrics};
use crate::rate_limit::{RateLimitConfig, RawRateLimit};
use crate::resilience::{ProviderResilience, RawResilience};
use crate::storage::PostgresOptions;

/// The address the server listens on when nothing else is configured.
///
/// # Example
///
/// ```
/// assert_eq!(vault_server::DEFAULT_LISTEN, "127.0.0.1:8443");
/// ```
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// The data directory when nothing else is configured (relative to the working directory).
///
/// # Example
///
/// ```
/// assert_eq!(vault_server::DEFAULT_DATA_DIR, "./mpc-vault-data");
/// ```
pub const DEFAULT_DATA_DIR: &str = "./mpc-vault-data";
/// The largest secret value accepted by default: 1 MiB.
///
/// # Example
///
/// ```
/// assert_eq!(vault_server::DEFAULT_MAX_VALUE_BYTES, 1 << 20);
/// ```
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;

/// The provider backends compiled into this build, for error messages.
#[cfg(feature = "pkcs11")]
const AVAILABLE_BACKENDS: &str = "local, pkcs11";
/// The provider backends compiled into this build, for error messages.
#[cfg(not(feature = "pkcs11"))]
const AVAILABLE_BACKENDS: &str = "local";

/// Room for the JSON around a value (field names, metadata, escapes) on top of the value limit.
const BODY_OVERHEAD_BYTES: usize = 64 * 1024;

/// A configuration that failed to load or validate; the message names the bad field.
///
/// # Example
///
/// ```
/// use vault_server::{Config, ConfigError};
///
/// let err = Config::from_toml_str("listen = \"nowhere\"").unwrap_err();
/// assert!(matches!(err, ConfigError::Invalid { ref field, .. } if field == "listen"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse, or has an unknown or mistyped field (the message names it).
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A field has a value outside its rules.
    #[error("invalid configuration field `{field}`: {reason}")]
    Invalid {
        /// The field, as a TOML path or an environment variable name.
        field: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A provider names a backend this build does not include.
    #[error(
        "provider `{provider}` uses backend `{backend}`, which this build of vault-server does not \
         include ({hint}); available backends: {}",
        AVAILABLE_BACKENDS
    )]
    BackendUnavailable {
        /// The provider name.
        provider: String,
        /// The backend asked for.
        backend: String,
        /// Which feature or issue would bring it.
        hint: &'static str,
    },
}

/// Log output format.
///
/// # Example
///
/// ```
/// let config = vault_server::Config::from_toml_str("log_format = \"json\"")?;
/// assert_eq!(config.log_format(), vault_server::LogFormat::Json);
/// # Ok::<(), vault_server::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Which kind of key provider backs a named provider.
///
/// # Example
///
/// ```
/// use vault_server::{Config, ProviderConfig};
///
/// let config = Config::from_toml_str("[providers.hsm]\nbackend = \"local\"\nkey_name = \"kek\"")?;
/// assert!(matches!(config.providers()["hsm"], ProviderConfig::Local { .. }));
/// # Ok::<(), vault_server::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProviderConfig {
    /// Software KEKs in a key directory on this machine (development custody).
    Local {
        /// The key directory; default `<data_dir>/keys`.
        #[serde(default)]
        key_dir: Option<PathBuf>,
        /// The KEK name inside the directory; default the provider's name.
        #[serde(default)]
        key_name: Option<String>,
        /// Any other key: refused at validation, naming it (serde cannot deny unknown fields
        /// in one variant of an internally tagged enum).
        #[serde(flatten)]
        unknown: BTreeMap<String, toml::Value>,
    },
    /// An AES-256 key in a PKCS#11 module (an HSM, SoftHSM2); needs the cargo feature
    /// `pkcs11` (on by default). The PIN is never written here: `pin_env` names the
    /// environment variable that holds it.
    Pkcs11 {
        /// Path of the module (shared library); required.
        #[serde(default)]
        module: Option<PathBuf>,
        /// The token, by label (or use `slot_id`; exactly one of the two).
        #[serde(default)]
        token_label: Option<String>,
        /// The token, by slot id.
        #[serde(default)]
        slot_id: Option<u64>,
        /// The environment variable holding the user PIN; required.
        #[serde(default)]
        pin_env: Option<String>,
        /// The key's `CKA_LABEL`; default the provider's name.
        #[serde(default)]
        key_label: Option<String>,
        /// Generate the key on the token if it has none (development; production keys come
        /// from the HSM ceremony). Default `false`.
        #[serde(default)]
        create_key_if_missing: bool,
        /// Most sessions (and calls) open at once; default kms-providers' own.
        #[serde(default)]
        max_sessions: Option<usize>,
        /// Any other key (resilience keys are taken out at validation): refused, naming it.
        #[serde(flatten)]
        unknown: BTreeMap<String, toml::Value>,
    },
    /// AWS KMS (not available yet).
    Aws {
        /// Backend settings.
        #[serde(flatten)]
        settings: BTreeMap<String, toml::Value>,
    },
    /// Google Cloud KMS (not available yet).
    Gcp {
        /// Backend settings.
        #[serde(flatten)]
        settings: BTreeMap<String, toml::Value>,
    },
    /// Azure Key Vault (not available yet).
    Azure {
        /// Backend settings.
        #[serde(flatten)]
        settings: BTreeMap<String, toml::Value>,
    },
}

/// The `[tls]` section, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// TLS settings: the PEM files and the rustls configuration loaded from them.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) cert_file: PathBuf,
    /// Holds the private key: never printed.
    pub(crate) server_config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.cert_file)
            .finish_non_exhaustive()
    }
}

/// The file format, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    tls: RawTls,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    max_value_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
    token_ttl_secs: Option<u64>,
    log_format: Option<LogFormat>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    database_acquire_timeout_secs: Option<u64>,
    audit_checkpoint_every_events: Option<u64>,
    audit_checkpoint_interval_secs: Option<u64>,
    #[serde(default)]
    resilience: RawResilience,
    #[serde(default)]
    providers: BTreeMap<String, ProviderConfig>,
    tier: Option<String>,
    #[serde(default)]
    tiers: BTreeMap<String, RawTierLimits>,
    #[serde(default)]
    rate_limit: RawRateLimit,
    #[serde(default)]
    metrics: RawMetrics,
}

/// The validated server configuration.
///
/// Every field has a default, so an empty file (or none at all) is a working development vault:
/// listen on [`DEFAULT_LISTEN`], store in [`DEFAULT_DATA_DIR`], three `local` providers named
/// `gcp`, `aws` and `azure`.
///
/// # Example
///
/// ```
/// use vault_server::Config;
///
/// let config = Config::from_toml_str(r#"
///     listen = "127.0.0.1:9000"
///     max_value_bytes = 4096
///     [providers.hsm-a]
///     backend = "local"
/// "#)?;
/// assert_eq!(config.listen().port(), 9000);
/// assert_eq!(config.providers().len(), 1);
/// # Ok::<(), vault_server::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    listen: SocketAddr,
    data_dir: PathBuf,
    max_value_bytes: usize,
    request_timeout: Duration,
    token_ttl: Duration,
    log_format: LogFormat,
    audit_checkpoint_every: u64,
    audit_checkpoint_interval: Duration,
    providers: BTreeMap<String, ProviderConfig>,
    resilience: BTreeMap<String, ProviderResilience>,
    embedded_providers: bool,
    tls: Option<Tls>,
    database: Option<PostgresOptions>,
    limits: OrgLimits,
    rate_limit: Option<RateLimitConfig>,
    metrics: Option<MetricsAccess>,
}

impl Config {
    /// The default configuration (no file, no environment).
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.listen().to_string(), "127.0.0.1:8443");
    /// assert!(config.uses_embedded_providers());
    /// ```
    #[must_use]
    pub fn default_config() -> Config {
        let mut providers = BTreeMap::new();
        let mut resilience = BTreeMap::new();
        for name in kms_providers::EMBEDDED_PROVIDER_NAMES {
            resilience.insert((*name).to_owned(), ProviderResilience::default());
            providers.insert(
                (*name).to_owned(),
                ProviderConfig::Local {
                    key_dir: None,
                    key_name: None,
                    unknown: BTreeMap::new(),
                },
            );
        }
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            request_timeout: Duration::from_secs(30),
            token_ttl: Duration::from_secs(3600),
            log_format: LogFormat::Text,
            audit_checkpoint_every: 1000,
            audit_checkpoint_interval: Duration::from_secs(300),
            providers,
            resilience,
            embedded_providers: true,
            tls: None,
            database: None,
            limits: OrgLimits::default(),
            rate_limit: Some(RateLimitConfig::default()),
            metrics: Some(MetricsAccess::Open),
        }
    }

    /// Parses and validates a TOML document (no environment overrides).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] for bad TOML or an unknown field, [`ConfigError::Invalid`] for a
    /// value outside its rules, [`ConfigError::BackendUnavailable`] for a provider backend this
    /// build lacks.
    ///
    /// # Example
    ///
    /// ```
    /// let err = vault_server::Config::from_toml_str("colour = 1").unwrap_err();
    /// assert!(err.to_string().contains("colour"));
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        Config::from_raw(raw, &BTreeMap::new())
    }

    /// Loads the configuration: the file if given, then `MPCVAULT_*` overrides from `env`
    /// (`MPCVAULT_LISTEN`, `MPCVAULT_DATA_DIR`, `MPCVAULT_MAX_VALUE_BYTES`,
    /// `MPCVAULT_REQUEST_TIMEOUT_SECS`, `MPCVAULT_TOKEN_TTL_SECS`, `MPCVAULT_LOG_FORMAT`,
    /// `MPCVAULT_TLS_CERT_FILE`, `MPCVAULT_TLS_KEY_FILE`, `MPCVAULT_DATABASE_URL`,
    /// `MPCVAULT_DATABASE_MAX_CONNECTIONS`, `MPCVAULT_TIER`).
    ///
    /// # Errors
    ///
    /// As [`Config::from_toml_str`], plus [`ConfigError::Read`] if the file cannot be read and
    /// [`ConfigError::Invalid`] naming the variable for a bad override.
    ///
    /// # Example
    ///
    /// ```
    /// use std::collections::BTreeMap;
    ///
    /// let env = BTreeMap::from([("MPCVAULT_LISTEN".to_owned(), "127.0.0.1:1234".to_owned())]);
    /// let config = vault_server::Config::load(None, &env)?;
    /// assert_eq!(config.listen().port(), 1234);
    /// # Ok::<(), vault_server::ConfigError>(())
    /// ```
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let raw = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse(e.to_string()))?
            }
            None => RawConfig::default(),
        };
        Config::from_raw(raw, env)
    }

    fn from_raw(mut raw: RawConfig, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        if let Some(v) = env.get("MPCVAULT_LISTEN") {
            raw.listen = Some(v.clone());
        }
        if let Some(v) = env.get("MPCVAULT_DATA_DIR") {
            raw.data_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = env.get("MPCVAULT_MAX_VALUE_BYTES") {
            raw.max_value_bytes = Some(parse_env("MPCVAULT_MAX_VALUE_BYTES", v)?);
        }
        if let Some(v) = env.get("MPCVAULT_REQUEST_TIMEOUT_SECS") {
            raw.request_timeout_secs = Some(parse_env("MPCVAULT_REQUEST_TIMEOUT_SECS", v)?);
        }
        if let Some(v) = env.get("MPCVAULT_TOKEN_TTL_SECS") {
            raw.token_ttl_secs = Some(parse_env("MPCVAULT_TOKEN_TTL_SECS", v)?);
        }
        if let Some(v) = env.get("MPCVAULT_TLS_CERT_FILE") {
            raw.tls.cert_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env.get("MPCVAULT_TLS_KEY_FILE") {
            raw.tls.key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env.get("MPCVAULT_DATABASE_URL") {
            raw.database_url = Some(v.clone());
        }
        if let Some(v) = env.get("MPCVAULT_DATABASE_MAX_CONNECTIONS") {
            raw.database_max_connections = Some(parse_env("MPCVAULT_DATABASE_MAX_CONNECTIONS", v)?);
        }
        if let Some(v) = env.get("MPCVAULT_TIER") {
            raw.tier = Some(v.clone());
        }
        if let Some(v) = env.get("MPCVAULT_LOG_FORMAT") {
            raw.log_format = Some(match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(invalid("MPCVAULT_LOG_FORMAT", "use `text` or `json`")),
            });
        }

        let mut config = Config::default_config();
        if let Some(listen) = raw.listen {
            config.listen = listen.parse().map_err(|_| {
                invalid("listen", "use an IP address and port, e.g. 127.0.0.1:8443")
            })?;
        }
        if let Some(dir) = raw.data_dir {
            if dir.as_os_str().is_empty() {
                return Err(invalid("data_dir", "must not be empty"));
            }
            config.data_dir = dir;
        }
        if let Some(max) = raw.max_value_bytes {
            if !(1..=64 * 1024 * 1024).contains(&max) {
                return Err(invalid(
                    "max_value_bytes",
                    "must be between 1 and 67108864 (64 MiB)",
                ));
            }
            config.max_value_bytes = max;
        }
        if let Some(secs) = raw.request_timeout_secs {
            if !(1..=3600).contains(&secs) {
                return Err(invalid(
                    "request_timeout_secs",
                    "must be between 1 and 3600",
                ));
            }
            config.request_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = raw.token_ttl_secs {
            if !(60..=86_400).contains(&secs) {
                return Err(invalid("token_ttl_secs", "must be between 60 and 86400"));
            }
            config.token_ttl = Duration::from_secs(secs);
        }
        if let Some(format) = raw.log_format {
            config.log_format = format;
        }
        config.database = database(
            raw.database_url.as_deref(),
            raw.database_max_connections,
            raw.database_acquire_timeout_secs,
        )?;
        if let Some(every) = raw.audit_checkpoint_every_events {
            if !(1..=1_000_000).contains(&every) {
                return Err(invalid(
                    "audit_checkpoint_every_events",
                    "must be between 1 and 1000000",
                ));
            }
            config.audit_checkpoint_every = every;
        }
        if let Some(secs) = raw.audit_checkpoint_interval_secs {
            if !(1..=86_400).contains(&secs) {
                return Err(invalid(
                    "audit_checkpoint_interval_secs",
                    "must be between 1 and 86400",
                ));
            }
            config.audit_checkpoint_interval = Duration::from_secs(secs);
        }
        config.tls = match (raw.tls.cert_file, raw.tls.key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(Tls {
                server_config: crate::tls::server_config(&cert, &key)?,
                cert_file: cert,
            }),
            (Some(_), None) => {
                return Err(invalid("tls.key_file", "is required with tls.cert_file"));
            }
            (None, Some(_)) => {
                return Err(invalid("tls.cert_file", "is required with tls.key_file"));
            }
        };
        config.limits = OrgLimits::from_raw(raw.tier.as_deref(), &raw.tiers)?;
        config.rate_limit = RateLimitConfig::from_raw(&raw.rate_limit)?;
        config.metrics = MetricsAccess::from_raw(&raw.metrics, env)?;
        let global = ProviderResilience::default().apply(&raw.resilience, "resilience")?;
        if raw.providers.is_empty() {
            for layers in config.resilience.values_mut() {
                *layers = global.clone();
            }
        } else {
            let mut resilience = BTreeMap::new();
            for (name, provider) in &mut raw.providers {
                let prefix = format!("providers.{name}");
                custody_policy::ProviderName::new(name.as_str())
                    .map_err(|e| invalid(&prefix, &e.to_string()))?;
                let rest = match provider {
                    ProviderConfig::Local { unknown, .. }
                    | ProviderConfig::Pkcs11 { unknown, .. } => Some(unknown),
                    _ => None,
                };
                if let Some(rest) = rest {
                    let own = RawResilience::take_from(rest, &prefix)?;
                    resilience.insert(name.clone(), global.apply(&own, &prefix)?);
                }
                validate_provider(name, provider)?;
            }
            config.providers = raw.providers;
            config.resilience = resilience;
            config.embedded_providers = false;
        }
        Ok(config)
    }

    /// Overrides the organisation's billing tier with that tier's built-in limits (default
    /// `enterprise`; set by `tier` in the file or `MPCVAULT_TIER`). A thin form of
    /// [`Config::with_tier`] without a `[tiers.NAME]` table: the tier is the one
    /// [`Config::limits`] reports, and it also chooses the treasury vault's custody when that
    /// vault is created.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::BillingTier;
    ///
    /// let config = vault_server::Config::default_config().with_billing_tier(BillingTier::Pro);
    /// assert_eq!(config.limits().tier(), BillingTier::Pro);
    /// assert_eq!(config.limits().limits().max_vaults(), Some(20));
    /// ```
    #[must_use]
    pub fn with_billing_tier(mut self, tier: custody_policy::BillingTier) -> Config {
        self.limits = OrgLimits::builtin(tier);
        self
    }

    /// Overrides the listen address (tests bind port 0).
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config().with_listen(([127, 0, 0, 1], 0).into());
    /// assert_eq!(config.listen().port(), 0);
    /// ```
    #[must_use]
    pub fn with_listen(mut self, listen: SocketAddr) -> Config {
        self.listen = listen;
        self
    }

    /// Overrides the data directory.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config().with_data_dir("/tmp/v");
    /// assert_eq!(config.data_dir(), std::path::Path::new("/tmp/v"));
    /// ```
    #[must_use]
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Config {
        self.data_dir = dir.into();
        self
    }

    /// Overrides the request timeout.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = vault_server::Config::default_config().with_request_timeout(Duration::from_secs(2));
    /// assert_eq!(config.request_timeout(), Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Config {
        self.request_timeout = timeout;
        self
    }

    /// Overrides when the audit chain head is signed: after `every_events` new events or
    /// `interval`, whichever comes first (defaults: 1000 events, 300 s; TOML
    /// `audit_checkpoint_every_events`, `audit_checkpoint_interval_secs`).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = vault_server::Config::default_config()
    ///     .with_audit_checkpoints(10, Duration::from_secs(5));
    /// assert_eq!(config.audit_checkpoint_every(), 10);
    /// assert_eq!(config.audit_checkpoint_interval(), Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn with_audit_checkpoints(mut self, every_events: u64, interval: Duration) -> Config {
        self.audit_checkpoint_every = every_events.max(1);
        self.audit_checkpoint_interval = interval;
        self
    }

    /// How many new audit events trigger a signed checkpoint.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(vault_server::Config::default_config().audit_checkpoint_every(), 1000);
    /// ```
    #[must_use]
    pub fn audit_checkpoint_every(&self) -> u64 {
        self.audit_checkpoint_every
    }

    /// The longest time the audit chain head stays unsigned while events arrive.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.audit_checkpoint_interval().as_secs(), 300);
    /// ```
    #[must_use]
    pub fn audit_checkpoint_interval(&self) -> Duration {
        self.audit_checkpoint_interval
    }

    /// Overrides the largest accepted secret value.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config().with_max_value_bytes(10);
    /// assert_eq!(config.max_value_bytes(), 10);
    /// ```
    #[must_use]
    pub fn with_max_value_bytes(mut self, max: usize) -> Config {
        self.max_value_bytes = max;
        self
    }

    /// The listen address.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(vault_server::Config::default_config().listen().port(), 8443);
    /// ```
    #[must_use]
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The data directory: the SQLite database, the JWT signing key and (by default) the
    /// local providers' key directory.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.data_dir(), std::path::Path::new("./mpc-vault-data"));
    /// ```
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The largest secret value, in bytes.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(vault_server::Config::default_config().max_value_bytes(), 1 << 20);
    /// ```
    #[must_use]
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    /// The largest request body: the value limit plus room for the JSON around it.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert!(config.body_limit_bytes() > config.max_value_bytes());
    /// ```
    #[must_use]
    pub fn body_limit_bytes(&self) -> usize {
        self.max_value_bytes.saturating_add(BODY_OVERHEAD_BYTES)
    }

    /// How long a request may take before it is answered with 408.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(vault_server::Config::default_config().request_timeout().as_secs(), 30);
    /// ```
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Lifetime of the JWTs issued by `POST /v1/auth/api-key-token`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(vault_server::Config::default_config().token_ttl().as_secs(), 3600);
    /// ```
    #[must_use]
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    /// The log format.
    ///
    /// # Example
    ///
    /// ```
    /// use vault_server::{Config, LogFormat};
    /// assert_eq!(Config::default_config().log_format(), LogFormat::Text);
    /// ```
    #[must_use]
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }

    /// The providers by name.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.providers().keys().collect::<Vec<_>>(), ["aws", "azure", "gcp"]);
    /// ```
    #[must_use]
    pub fn providers(&self) -> &BTreeMap<String, ProviderConfig> {
        &self.providers
    }

    /// The resilience layers of the provider called `name` (`None` if there is no such
    /// provider).
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::from_toml_str("[resilience]\nretry_attempts = 1")?;
    /// assert_eq!(config.resilience("azure").map(|r| r.retry_attempts()), Some(1));
    /// assert!(config.resilience("nope").is_none());
    /// # Ok::<(), vault_server::ConfigError>(())
    /// ```
    #[must_use]
    pub fn resilience(&self, name: &str) -> Option<&ProviderResilience> {
        self.resilience.get(name)
    }

    /// Whether the providers are the embedded development defaults (no `[providers]` section).
    ///
    /// # Example
    ///
    /// ```
    /// assert!(vault_server::Config::default_config().uses_embedded_providers());
    /// ```
    #[must_use]
    pub fn uses_embedded_providers(&self) -> bool {
        self.embedded_providers
    }

    /// The certificate file, when the server speaks TLS.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(vault_server::Config::default_config().tls_cert_file().is_none());
    /// ```
    #[must_use]
    pub fn tls_cert_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.cert_file.as_path())
    }

    /// The PostgreSQL database, when `database_url` is set; `None` for the embedded SQLite store
    /// in the data directory.
    ///
    /// # Example
    ///
    /// ```
    /// use vault_server::Config;
    ///
    /// assert!(Config::default_config().database().is_none());
    /// let config = Config::from_toml_str(
    ///     "database_url = \"postgres://vault:pw@127.0.0.1:5432/vault\"\ndatabase_max_connections = 4",
    /// )?;
    /// assert_eq!(config.database().map(|d| d.get_max_connections()), Some(4));
    /// # Ok::<(), vault_server::ConfigError>(())
    /// ```
    #[must_use]
    pub fn database(&self) -> Option<&PostgresOptions> {
        self.database.as_ref()
    }

    /// Uses PostgreSQL instead of the embedded SQLite store.
    ///
    /// # Example
    ///
    /// ```
    /// let options = vault_server::PostgresOptions::parse("postgres://vault@127.0.0.1/vault")?;
    /// let config = vault_server::Config::default_config().with_database(options);
    /// assert!(config.database().is_some());
    /// # Ok::<(), vault_server::StorageError>(())
    /// ```
    #[must_use]
    pub fn with_database(mut self, options: PostgresOptions) -> Config {
        self.database = Some(options);
        self
    }

    /// The organisation's tier and its limits (`tier`, `[tiers.NAME]`).
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::from_toml_str("tier = \"pro\"")?;
    /// assert_eq!(config.limits().limits().max_vaults(), Some(20));
    /// # Ok::<(), vault_server::ConfigError>(())
    /// ```
    #[must_use]
    pub fn limits(&self) -> &OrgLimits {
        &self.limits
    }

    /// Overrides the tier limits (tests and embedders).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for a bad tier or table, as in the file.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config()
    ///     .with_tier("free", "[free]\nmax_vaults = 1")?;
    /// assert_eq!(config.limits().limits().max_vaults(), Some(1));
    /// # Ok::<(), vault_server::ConfigError>(())
    /// ```
    pub fn with_tier(mut self, tier: &str, tiers_toml: &str) -> Result<Config, ConfigError> {
        let tiers: BTreeMap<String, RawTierLimits> =
            toml::from_str(tiers_toml).map_err(|e| ConfigError::Parse(e.to_string()))?;
        self.limits = OrgLimits::from_raw(Some(tier), &tiers)?;
        Ok(self)
    }

    /// The rate limit (`[rate_limit]`), or `None` if it is off (`enabled = false`).
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::from_toml_str("[rate_limit]\nenabled = false")?;
    /// assert!(config.rate_limit().is_none());
    /// # Ok::<(), vault_server::ConfigError>(())
    /// ```
    #[must_use]
    pub fn rate_limit(&self) -> Option<&RateLimitConfig> {
        self.rate_limit.as_ref()
    }

    /// Overrides the rate limit: `None` turns it off, `Some((rps, burst))` sets it.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for values outside the file's rules.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config().with_rate_limit(Some((1.0, 2)))?;
    /// assert_eq!(config.rate_limit().map(|r| r.burst()), Some(2));
    /// # Ok::<(), vault_server::ConfigError>(())
    /// ```
    pub fn with_rate_limit(mut self, rate: Option<(f64, u32)>) -> Result<Config, ConfigError> {
        self.rate_limit = match rate {
            None => None,
            Some((rps, burst)) => RateLimitConfig::from_raw(&RawRateLimit::new(rps, burst))?,
        };
        Ok(self)
    }

    /// Whether `GET /metrics` is served (`[metrics] enabled`, default true).
    ///
    /// # Example
    ///
    /// ```
    /// assert!(vault_server::Config::default_config().metrics_enabled());
    /// ```
    #[must_use]
    pub fn metrics_enabled(&self) -> bool {
        self.metrics.is_some()
    }

    /// Requires `Authorization: Bearer <token>` on `GET /metrics` (as `[metrics] token_env`
    /// does); only the token's SHA-256 is kept.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config().with_metrics_token("scrape-me");
    /// assert!(config.metrics_enabled());
    /// ```
    #[must_use]
    pub fn with_metrics_token(mut self, token: &str) -> Config {
        self.metrics = Some(MetricsAccess::token(token));
        self
    }

    /// Who may read `/metrics`, if it is served.
    pub(crate) fn metrics_access(&self) -> Option<&MetricsAccess> {
        self.metrics.as_ref()
    }

    /// The TLS settings.
    pub(crate) fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Where the local providers keep their KEKs unless configured otherwise.
    pub(crate) fn default_key_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }
}

/// The PostgreSQL settings, if a database URL is configured; the pool settings without a URL
/// are refused rather than silently ignored.
fn database(
    url: Option<&str>,
    max_connections: Option<u32>,
    acquire_timeout_secs: Option<u64>,
) -> Result<Option<PostgresOptions>, ConfigError> {
    let Some(url) = url else {
        if max_connections.is_some() || acquire_timeout_secs.is_some() {
            return Err(invalid(
                "database_url",
                "is required with database_max_connections and database_acquire_timeout_secs \
                 (without it the server uses SQLite in data_dir)",
            ));
        }
        return Ok(None);
    };
    // The message never repeats the URL: it may hold a password.
    let mut options = PostgresOptions::parse(url).map_err(|e| {
        invalid(
            "database_url",
            &format!("use postgres://user:password@host:port/database ({e})"),
        )
    })?;
    if let Some(max) = max_connections {
        if !(1..=1000).contains(&max) {
            return Err(invalid(
                "database_max_connections",
                "must be between 1 and 1000",
            ));
        }
        options = options.max_connections(max);
    }
    if let Some(secs) = acquire_timeout_secs {
        if !(1..=600).contains(&secs) {
            return Err(invalid(
                "database_acquire_timeout_secs",
                "must be between 1 and 600",
            ));
        }
        options = options.acquire_timeout(Duration::from_secs(secs));
    }
    Ok(Some(options))
}

/// Checks one provider's backend settings (its resilience keys are already taken out).
fn validate_provider(name: &str, provider: &ProviderConfig) -> Result<(), ConfigError> {
    let field = |key: &str| format!("providers.{name}.{key}");
    match provider {
        ProviderConfig::Local {
            key_name, unknown, ..
        } => {
            if let Some(key) = unknown.keys().next() {
                return Err(invalid(
                    &field(key),
                    "unknown field; a local provider takes `key_dir`, `key_name` and the \
                     resilience keys",
                ));
            }
            if key_name.as_deref().is_some_and(str::is_empty) {
                return Err(invalid(&field("key_name"), "must not be empty"));
            }
            Ok(())
        }
        ProviderConfig::Pkcs11 { .. } if !cfg!(feature = "pkcs11") => {
            Err(ConfigError::BackendUnavailable {
                provider: name.to_owned(),
                backend: "pkcs11".to_owned(),
                hint: "it was built without the cargo feature `pkcs11`",
            })
        }
        ProviderConfig::Pkcs11 {
            module,
            token_label,
            slot_id,
            pin_env,
            key_label,
            max_sessions,
            unknown,
            ..
        } => {
            if let Some(key) = unknown.keys().next() {
                let reason = if key == "pin" {
                    "the PIN is never written in the configuration: put it in an environment \
                     variable and name that variable with `pin_env`"
                } else {
                    "unknown field; a pkcs11 provider takes `module`, `token_label` or \
                     `slot_id`, `pin_env`, `key_label`, `create_key_if_missing`, `max_sessions` \
                     and the resilience keys"
                };
                return Err(invalid(&field(key), reason));
            }
            if module.as_ref().is_none_or(|m| m.as_os_str().is_empty()) {
                return Err(invalid(
                    &field("module"),
                    "is required: the path of the PKCS#11 module, e.g. \
                     /usr/lib/softhsm/libsofthsm2.so",
                ));
            }
            match (token_label, slot_id) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        &field("slot_id"),
                        "give either `token_label` or `slot_id`, not both",
                    ));
                }
                (None, None) => {
                    return Err(invalid(
                        &field("token_label"),
                        "is required (or `slot_id`): which token holds the key",
                    ));
                }
                (Some(label), None) if label.is_empty() => {
                    return Err(invalid(&field("token_label"), "must not be empty"));
                }
                _ => {}
            }
            match pin_env.as_deref() {
                None => {
                    return Err(invalid(
                        &field("pin_env"),
                        "is required: the name of the environment variable that holds the \
                         user PIN, e.g. MPCVAULT_PKCS11_PIN",
                    ));
                }
                Some(var)
                    if var.is_empty()
                        || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
                {
                    return Err(invalid(
                        &field("pin_env"),
                        "must be an environment variable name (letters, digits and `_`)",
                    ));
                }
                Some(_) => {}
            }
            if key_label.as_deref().is_some_and(str::is_empty) {
                return Err(invalid(&field("key_label"), "must not be empty"));
            }
            if max_sessions.is_some_and(|n| !(1..=1024).contains(&n)) {
                return Err(invalid(
                    &field("max_sessions"),
                    "must be between 1 and 1024",
                ));
            }
            Ok(())
        }
        ProviderConfig::Aws { .. } => Err(unavailable(
            name,
            "aws",
            "kms-providers has no `aws` feature yet",
        )),
        ProviderConfig::Gcp { .. } => Err(unavailable(
            name,
            "gcp",
            "kms-providers has no `gcp` feature yet",
        )),
        ProviderConfig::Azure { .. } => Err(unavailable(
            name,
            "azure",
            "kms-providers has no `azure` feature yet",
        )),
    }
}

fn unavailable(provider: &str, backend: &str, hint: &'static str) -> ConfigError {
    ConfigError::BackendUnavailable {
        provider: provider.to_owned(),
        backend: backend.to_owned(),
        hint,
    }
}

fn invalid(field: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_env<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|_| invalid(name, "must be a non-negative integer"))
}
