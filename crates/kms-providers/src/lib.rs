#![doc = include_str!("../README.md")]
// No `unsafe` in this crate: the PKCS#11 FFI lives in `cryptoki`, the one syscall we need beyond
// std (`geteuid`) in `rustix`.
#![forbid(unsafe_code)]

#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "azure")]
mod azure;
mod context;
mod error;
#[cfg(feature = "fault-injection")]
mod fault;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(feature = "gcp")]
mod gcp;
mod layers;
#[cfg(feature = "local")]
mod local;
#[cfg(feature = "pkcs11")]
mod pkcs11;
mod provider;
mod rng;
mod secret;
#[cfg(feature = "testkit")]
pub mod testkit;
mod wrapped;

pub use async_trait::async_trait;
#[cfg(feature = "aws")]
pub use aws::{AwsKmsProvider, AwsKmsProviderBuilder, aws_https_client};
#[cfg(feature = "azure")]
pub use azure::{
    AzureCredential, AzureKeyVaultProvider, AzureKeyVaultProviderBuilder, AzureWrapAlgorithm,
};
pub use context::{
    ContextError, ContextField, MAX_CUSTODY_MODE_LEN, MAX_SECRET_PATH_LEN, MAX_VAULT_ID_LEN,
    WrapContext,
};
pub use error::{BoxError, Error};
#[cfg(feature = "fault-injection")]
pub use fault::{
    FaultConfig, FaultInjector, FaultPlan, FaultSchedule, FaultStats, InjectedError, Latency,
};
#[cfg(feature = "gcp")]
pub use gcp::{GcpCredentials, GcpIntegrityError, GcpKmsProvider, GcpKmsProviderBuilder};
pub use layers::{
    BreakerConfig, CircuitBreaker, CircuitState, ConcurrencyLimit, LayerStack, Layered, Retry,
    RetryPolicy, Timeout,
};
#[cfg(feature = "local")]
pub use local::{
    EMBEDDED_PROVIDER_NAMES, LocalProvider, LocalProviderBuilder, SINGLE_MACHINE_WARNING,
    StaticKek, single_machine_warning,
};
#[cfg(feature = "pkcs11")]
pub use pkcs11::{Pkcs11Pin, Pkcs11Provider, Pkcs11ProviderBuilder};
pub use provider::{Health, KeyProvider, KeyRotation};
pub use secret::UnwrappedShare;
pub use wrapped::{
    Algorithm, DecodeError, KeyId, KeyVersion, MAX_BLOB_LEN, MAX_ENCODED_LEN, MAX_KEY_ID_LEN,
    MAX_KEY_VERSION_LEN, MAX_NONCE_LEN, MAX_SHARE_LEN, ProviderKind, WrappedShare,
};
