//! The provider error: which provider failed, how, and whether trying again can help.

use std::path::PathBuf;
use std::time::Duration;

use crate::wrapped::ProviderKind;

/// A boxed error kept as the [`source`](std::error::Error::source) of an [`Error`].
///
/// # Example
///
/// ```
/// use kms_providers::{BoxError, Error};
///
/// let io: BoxError = Box::new(std::io::Error::other("connection reset"));
/// let err = Error::Unavailable { provider: "aws".into(), reason: "KMS unreachable".into(), source: Some(io) };
/// assert!(err.is_transient());
/// ```
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a key provider or from a layer around one.
///
/// Every variant names the provider *instance* (for example `"gcp"` or `"hsm-eu-1"`) and keeps
/// the backend's error as its [`source`](std::error::Error::source) where there is one.
/// [`is_transient`](Self::is_transient) splits the variants in two:
///
/// * transient, worth retrying later: [`Timeout`](Self::Timeout),
///   [`Unavailable`](Self::Unavailable), [`Throttled`](Self::Throttled),
///   [`CircuitOpen`](Self::CircuitOpen);
/// * permanent, the same call will fail again: everything else.
///
/// Errors never carry share bytes, key material or credentials: only names, paths, key ids,
/// lengths and the backend's own error.
///
/// # Example
///
/// ```
/// use kms_providers::Error;
///
/// let err = Error::AuthenticationFailed { provider: "gcp".into(), source: None };
/// assert!(!err.is_transient());
/// assert_eq!(err.provider(), "gcp");
/// assert_eq!(
///     err.to_string(),
///     "key provider \"gcp\": authentication failed: the wrapped share does not match this key and context"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call did not finish in time (transient).
    #[error("key provider {provider:?}: timed out after {after:?}")]
    Timeout {
        /// Provider instance name.
        provider: String,
        /// The time limit that elapsed.
        after: Duration,
    },

    /// The backend cannot be reached or failed in a way that may pass: network, device or
    /// session errors, OS RNG failure (transient).
    #[error("key provider {provider:?}: unavailable: {reason}")]
    Unavailable {
        /// Provider instance name.
        provider: String,
        /// What failed.
        reason: String,
        /// The backend error.
        #[source]
        source: Option<BoxError>,
    },

    /// The backend asked us to slow down (transient).
    #[error("key provider {provider:?}: throttled by the backend")]
    Throttled {
        /// Provider instance name.
        provider: String,
        /// How long the backend asked us to wait, if it said.
        retry_after: Option<Duration>,
        /// The backend error.
        #[source]
        source: Option<BoxError>,
    },

    /// The circuit breaker is open: the provider failed repeatedly and calls fail fast until a
    /// probe succeeds (transient).
    #[error(
        "key provider {provider:?}: circuit open after repeated failures; next probe in {retry_in:?}"
    )]
    CircuitOpen {
        /// Provider instance name.
        provider: String,
        /// Time until the breaker lets a probe call through.
        retry_in: Duration,
    },

    /// The wrapped share did not authenticate: wrong context, tampered blob, or a blob made by
    /// another key (permanent). Deliberately says no more than that.
    #[error(
        "key provider {provider:?}: authentication failed: the wrapped share does not match this key and context"
    )]
    AuthenticationFailed {
        /// Provider instance name.
        provider: String,
        /// The backend error, where the backend reported one.
        #[source]
        source: Option<BoxError>,
    },

    /// The wrapped share names a key or key version this provider does not have (permanent).
    #[error("key provider {provider:?}: unknown key {key_id:?}{}", .key_version.as_ref().map(|v| format!(" version {v:?}")).unwrap_or_default())]
    UnknownKey {
        /// Provider instance name.
        provider: String,
        /// The key id asked for.
        key_id: String,
        /// The version asked for, if the key exists but not this version.
        key_version: Option<String>,
    },

    /// The wrapped share was made by another kind of provider (permanent).
    #[error(
        "key provider {provider:?}: this share was wrapped by a {found} provider, not {expected}"
    )]
    WrongProviderKind {
        /// Provider instance name.
        provider: String,
        /// This provider's kind.
        expected: ProviderKind,
        /// The kind recorded in the wrapped share.
        found: ProviderKind,
    },

    /// The backend refused the operation: bad PIN, missing IAM permission (permanent).
    #[error("key provider {provider:?}: permission denied: {reason}")]
    PermissionDenied {
        /// Provider instance name.
        provider: String,
        /// What was refused.
        reason: String,
        /// The backend error.
        #[source]
        source: Option<BoxError>,
    },

    /// The provider is configured wrongly: missing module, token or key, bad option values, a
    /// key with unsafe attributes (permanent).
    #[error("key provider {provider:?}: misconfigured: {reason}")]
    Misconfigured {
        /// Provider instance name.
        provider: String,
        /// What is wrong and, where known, how to fix it.
        reason: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// A key file or key directory is open to other users, owned by another user, or not a
    /// plain file/directory; the provider refuses to start, as ssh does (permanent).
    #[error("key provider {provider:?}: refusing insecure key storage {}: {problem}; fix: {fix}", .path.display())]
    InsecureKeyStorage {
        /// Provider instance name.
        provider: String,
        /// The offending file or directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// The command or action that fixes it.
        fix: String,
    },

    /// The call's input is invalid: an empty or oversized share, an algorithm this provider does
    /// not use (permanent).
    #[error("key provider {provider:?}: invalid input: {reason}")]
    InvalidInput {
        /// Provider instance name.
        provider: String,
        /// What is wrong.
        reason: String,
    },

    /// A bug or an impossible state: a worker task panicked, the backend returned something
    /// that contradicts its specification (permanent).
    #[error("key provider {provider:?}: internal error: {reason}")]
    Internal {
        /// Provider instance name.
        provider: String,
        /// What happened.
        reason: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// The name of the provider instance the error comes from.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Error;
    /// let err = Error::InvalidInput { provider: "aws".into(), reason: "empty share".into() };
    /// assert_eq!(err.provider(), "aws");
    /// ```
    pub fn provider(&self) -> &str {
        match self {
            Self::Timeout { provider, .. }
            | Self::Unavailable { provider, .. }
            | Self::Throttled { provider, .. }
            | Self::CircuitOpen { provider, .. }
            | Self::AuthenticationFailed { provider, .. }
            | Self::UnknownKey { provider, .. }
            | Self::WrongProviderKind { provider, .. }
            | Self::PermissionDenied { provider, .. }
            | Self::Misconfigured { provider, .. }
            | Self::InsecureKeyStorage { provider, .. }
            | Self::InvalidInput { provider, .. }
            | Self::Internal { provider, .. } => provider,
        }
    }

    /// Whether the same call may succeed later: timeouts, unavailability, throttling and an
    /// open circuit. Permanent errors (authentication, unknown key, permission, configuration,
    /// input, internal) will fail again and must not be retried.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Error;
    /// # use std::time::Duration;
    /// let t = Error::Timeout { provider: "gcp".into(), after: Duration::from_secs(2) };
    /// assert!(t.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. }
                | Self::Unavailable { .. }
                | Self::Throttled { .. }
                | Self::CircuitOpen { .. }
        )
    }

    pub(crate) fn misconfigured(provider: &str, reason: impl Into<String>) -> Self {
        Self::Misconfigured {
            provider: provider.to_owned(),
            reason: reason.into(),
            source: None,
        }
    }

    pub(crate) fn invalid_input(provider: &str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            provider: provider.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn internal(
        provider: &str,
        reason: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        Self::Internal {
            provider: provider.to_owned(),
            reason: reason.into(),
            source,
        }
    }

    #[cfg_attr(not(any(feature = "local", feature = "pkcs11")), allow(dead_code))]
    pub(crate) fn unknown_key(provider: &str, key_id: &str, key_version: Option<&str>) -> Self {
        Self::UnknownKey {
            provider: provider.to_owned(),
            key_id: key_id.to_owned(),
            key_version: key_version.map(str::to_owned),
        }
    }

    #[cfg_attr(not(feature = "local"), allow(dead_code))]
    pub(crate) fn auth_failed(provider: &str, source: Option<BoxError>) -> Self {
        Self::AuthenticationFailed {
            provider: provider.to_owned(),
            source,
        }
    }

    /// The OS random number generator failed: nothing can be wrapped safely until it works.
    #[cfg_attr(not(any(feature = "local", feature = "pkcs11")), allow(dead_code))]
    pub(crate) fn rng(provider: &str, err: getrandom::Error) -> Self {
        Self::Unavailable {
            provider: provider.to_owned(),
            reason: "the OS random number generator failed".to_owned(),
            source: Some(Box::new(err)),
        }
    }
}

/// Checks the share length every provider accepts: 1 to [`MAX_SHARE_LEN`](crate::MAX_SHARE_LEN).
#[cfg_attr(not(any(feature = "local", feature = "pkcs11")), allow(dead_code))]
pub(crate) fn check_share_len(provider: &str, share: &[u8]) -> Result<(), Error> {
    if share.is_empty() {
        return Err(Error::invalid_input(provider, "the share is empty"));
    }
    if share.len() > crate::wrapped::MAX_SHARE_LEN {
        return Err(Error::invalid_input(
            provider,
            format!(
                "the share is {} bytes long; at most {} can be wrapped",
                share.len(),
                crate::wrapped::MAX_SHARE_LEN
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let transient = [
            Error::Timeout {
                provider: "p".into(),
                after: Duration::from_secs(1),
            },
            Error::Unavailable {
                provider: "p".into(),
                reason: "r".into(),
                source: None,
            },
            Error::Throttled {
                provider: "p".into(),
                retry_after: None,
                source: None,
            },
            Error::CircuitOpen {
                provider: "p".into(),
                retry_in: Duration::from_secs(1),
            },
        ];
        for e in &transient {
            assert!(e.is_transient(), "{e}");
            assert_eq!(e.provider(), "p");
        }
        let permanent = [
            Error::auth_failed("p", None),
            Error::unknown_key("p", "k", Some("3")),
            Error::WrongProviderKind {
                provider: "p".into(),
                expected: ProviderKind::Local,
                found: ProviderKind::Pkcs11,
            },
            Error::PermissionDenied {
                provider: "p".into(),
                reason: "r".into(),
                source: None,
            },
            Error::misconfigured("p", "r"),
            Error::InsecureKeyStorage {
                provider: "p".into(),
                path: "/k".into(),
                problem: "mode 0644".into(),
                fix: "chmod 600 /k".into(),
            },
            Error::invalid_input("p", "r"),
            Error::internal("p", "r", None),
        ];
        for e in &permanent {
            assert!(!e.is_transient(), "{e}");
            assert_eq!(e.provider(), "p");
            assert!(e.to_string().starts_with("key provider \"p\": "), "{e}");
        }
    }

    #[test]
    fn messages() {
        assert_eq!(
            Error::unknown_key("gcp", "kek", Some("9")).to_string(),
            "key provider \"gcp\": unknown key \"kek\" version \"9\""
        );
        assert_eq!(
            Error::unknown_key("gcp", "kek", None).to_string(),
            "key provider \"gcp\": unknown key \"kek\""
        );
        let e = Error::InsecureKeyStorage {
            provider: "aws".into(),
            path: "/keys/aws/v1.kek".into(),
            problem: "mode 0644 lets group or others read or write it".into(),
            fix: "chmod 600 /keys/aws/v1.kek".into(),
        };
        assert_eq!(
            e.to_string(),
            "key provider \"aws\": refusing insecure key storage /keys/aws/v1.kek: mode 0644 lets \
             group or others read or write it; fix: chmod 600 /keys/aws/v1.kek"
        );
    }

    #[test]
    fn source_is_kept() {
        use std::error::Error as _;
        let io = std::io::Error::other("device gone");
        let e = Error::Unavailable {
            provider: "hsm".into(),
            reason: "session lost".into(),
            source: Some(Box::new(io)),
        };
        assert_eq!(e.source().unwrap().to_string(), "device gone");
    }
}
