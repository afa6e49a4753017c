//! Mapping of Cloud KMS client errors and failed integrity checks to [`Error`].

use std::time::Duration;

use google_cloud_gax::error::Error as SdkError;
use google_cloud_gax::error::rpc::Code;

use crate::error::Error;

/// Longest part of a server error message copied into our error's reason. Google's messages
/// are short and never contain key material; the bound keeps a misbehaving endpoint from
/// filling logs through us.
const MAX_MESSAGE_LEN: usize = 200;

/// Which call failed; `INVALID_ARGUMENT` means different things for each.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Call {
    Encrypt,
    Decrypt,
}

/// A Cloud KMS response (or request, as seen by the server) failed its CRC32C integrity
/// check: the data was corrupted between us and the KMS.
///
/// It is the [`source`](std::error::Error::source) of a transient [`Error::Unavailable`]:
/// Google's guidance is to discard the response and retry a limited number of times.
///
/// # Example
///
/// ```
/// use kms_providers::{Error, GcpIntegrityError};
///
/// let err = Error::Unavailable {
///     provider: "gcp".into(),
///     reason: "corrupted in transit".into(),
///     source: Some(Box::new(GcpIntegrityError::CiphertextChecksum)),
/// };
/// assert!(err.is_transient());
/// let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<GcpIntegrityError>());
/// assert_eq!(source, Some(&GcpIntegrityError::CiphertextChecksum));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcpIntegrityError {
    /// The encrypt response did not confirm `plaintextCrc32c` (`verifiedPlaintextCrc32c` false).
    #[error("Cloud KMS did not verify the plaintext checksum of the encrypt request")]
    PlaintextNotVerified,
    /// The encrypt response did not confirm `additionalAuthenticatedDataCrc32c`.
    #[error("Cloud KMS did not verify the additional authenticated data checksum")]
    AadNotVerified,
    /// The encrypt response's `ciphertextCrc32c` is missing or does not match its ciphertext.
    #[error("the ciphertext in the encrypt response does not match its CRC32C")]
    CiphertextChecksum,
    /// The decrypt response's `plaintextCrc32c` is missing or does not match its plaintext.
    #[error("the plaintext in the decrypt response does not match its CRC32C")]
    PlaintextChecksum,
    /// The server rejected a request checksum (`INVALID_ARGUMENT` naming a CRC32C field): the
    /// request was corrupted on its way to the KMS.
    #[error("Cloud KMS rejected a request checksum")]
    RequestChecksum,
}

impl GcpIntegrityError {
    pub(super) fn into_error(self, provider: &str) -> Error {
        Error::Unavailable {
            provider: provider.to_owned(),
            reason: "Cloud KMS data failed its CRC32C integrity check (corrupted in transit)"
                .into(),
            source: Some(Box::new(self)),
        }
    }
}

fn short(message: &str) -> String {
    let mut end = message.len().min(MAX_MESSAGE_LEN);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = message.get(..end).unwrap_or_default().to_owned();
    if end < message.len() {
        s.push('…');
    }
    s
}

/// Maps an error of the Cloud KMS client.
///
/// `unknown_version` is the version to report for an `INVALID_ARGUMENT` on decrypt when the
/// caller knows the share names a version it has never seen as primary.
pub(super) fn map_sdk_error(
    provider: &str,
    key: &str,
    call: Call,
    err: SdkError,
    attempt_timeout: Duration,
    unknown_version: Option<&str>,
) -> Error {
    let provider_s = provider.to_owned();
    if err.is_timeout() {
        return Error::Timeout {
            provider: provider_s,
            after: attempt_timeout,
        };
    }
    if let Some(status) = err.status() {
        let message = short(&status.message);
        let code = status.code;
        return match code {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Internal
            | Code::Unknown
            | Code::Aborted
            | Code::Cancelled => Error::Unavailable {
                provider: provider_s,
                reason: format!("Cloud KMS answered {code:?}: {message}"),
                source: Some(Box::new(err)),
            },
            Code::ResourceExhausted => Error::Throttled {
                provider: provider_s,
                retry_after: None,
                source: Some(Box::new(err)),
            },
            Code::InvalidArgument if mentions_checksum(&status.message) => {
                GcpIntegrityError::RequestChecksum.into_error(provider)
            }
            Code::InvalidArgument => match (call, unknown_version) {
                (Call::Decrypt, Some(v)) => Error::unknown_key(provider, key, Some(v)),
                (Call::Decrypt, None) => Error::AuthenticationFailed {
                    provider: provider_s,
                    source: Some(Box::new(err)),
                },
                (Call::Encrypt, _) => Error::Misconfigured {
                    provider: provider_s,
                    reason: format!(
                        "Cloud KMS refused the encrypt request (is {key:?} an ENCRYPT_DECRYPT key?): {message}"
                    ),
                    source: Some(Box::new(err)),
                },
            },
            Code::NotFound => Error::unknown_key(provider, key, None),
            Code::PermissionDenied => Error::PermissionDenied {
                provider: provider_s,
                reason: format!(
                    "the caller lacks roles/cloudkms.cryptoKeyEncrypterDecrypter on {key:?}: {message}"
                ),
                source: Some(Box::new(err)),
            },
            Code::Unauthenticated => Error::PermissionDenied {
                provider: provider_s,
                reason: format!("Cloud KMS rejected the credentials: {message}"),
                source: Some(Box::new(err)),
            },
            Code::FailedPrecondition => Error::PermissionDenied {
                provider: provider_s,
                reason: format!(
                    "the key version is not usable (disabled, destroyed or not yet generated): {message}"
                ),
                source: Some(Box::new(err)),
            },
            _ => Error::Internal {
                provider: provider_s,
                reason: format!("Cloud KMS answered {code:?}: {message}"),
                source: Some(Box::new(err)),
            },
        };
    }
    if let Some(http) = err.http_status_code() {
        // A response without a Google status body: a proxy or load balancer answered.
        return match http {
            429 => Error::Throttled {
                provider: provider_s,
                retry_after: None,
                source: Some(Box::new(err)),
            },
            401 | 403 => Error::PermissionDenied {
                provider: provider_s,
                reason: format!("HTTP {http} from the Cloud KMS endpoint"),
                source: Some(Box::new(err)),
            },
            404 => Error::unknown_key(provider, key, None),
            500..=599 | 408 => Error::Unavailable {
                provider: provider_s,
                reason: format!("HTTP {http} from the Cloud KMS endpoint"),
                source: Some(Box::new(err)),
            },
            _ => Error::Internal {
                provider: provider_s,
                reason: format!("unexpected HTTP {http} from the Cloud KMS endpoint"),
                source: Some(Box::new(err)),
            },
        };
    }
    if err.is_exhausted() || err.is_io() || err.is_connect() || err.is_transport() {
        return Error::Unavailable {
            provider: provider_s,
            reason: "cannot reach Cloud KMS".into(),
            source: Some(Box::new(err)),
        };
    }
    if err.is_authentication() {
        let transient = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<google_cloud_gax::error::CredentialsError>())
            .is_some_and(google_cloud_gax::error::CredentialsError::is_transient);
        return if transient {
            Error::Unavailable {
                provider: provider_s,
                reason: "cannot obtain an access token".into(),
                source: Some(Box::new(err)),
            }
        } else {
            Error::PermissionDenied {
                provider: provider_s,
                reason: "the credentials cannot produce an access token".into(),
                source: Some(Box::new(err)),
            }
        };
    }
    if err.is_deserialization() {
        // A response body we cannot parse: most likely damaged or truncated on the way.
        return Error::Unavailable {
            provider: provider_s,
            reason: "unreadable response from Cloud KMS".into(),
            source: Some(Box::new(err)),
        };
    }
    Error::Internal {
        provider: provider_s,
        reason: "the Cloud KMS client failed".into(),
        source: Some(Box::new(err)),
    }
}

/// Whether an `INVALID_ARGUMENT` message is about a request checksum (Google's messages name
/// the `…_crc32c` field) rather than about the ciphertext or its authentication.
fn mentions_checksum(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("crc32c") || m.contains("checksum")
}

#[cfg(test)]
mod tests {
    use google_cloud_gax::error::rpc::Status;

    use super::*;

    fn status(code: Code, message: &str) -> SdkError {
        SdkError::service(Status::default().set_code(code).set_message(message))
    }

    fn map(call: Call, err: SdkError) -> Error {
        map_sdk_error(
            "gcp",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k",
            call,
            err,
            Duration::from_secs(1),
            None,
        )
    }

    #[test]
    fn transient_codes() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Internal,
            Code::Unknown,
            Code::Aborted,
        ] {
            let e = map(Call::Decrypt, status(code, "x"));
            assert!(matches!(e, Error::Unavailable { .. }), "{code:?}: {e}");
            assert!(e.is_transient());
        }
        let e = map(Call::Encrypt, status(Code::ResourceExhausted, "quota"));
        assert!(matches!(e, Error::Throttled { .. }), "{e}");
    }

    #[test]
    fn permanent_codes() {
        assert!(matches!(
            map(
                Call::Decrypt,
                status(Code::InvalidArgument, "Decryption failed")
            ),
            Error::AuthenticationFailed { .. }
        ));
        assert!(matches!(
            map(
                Call::Encrypt,
                status(Code::InvalidArgument, "bad key purpose")
            ),
            Error::Misconfigured { .. }
        ));
        assert!(matches!(
            map(Call::Decrypt, status(Code::NotFound, "no key")),
            Error::UnknownKey { .. }
        ));
        for code in [
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::FailedPrecondition,
        ] {
            let e = map(Call::Decrypt, status(code, "no"));
            assert!(matches!(e, Error::PermissionDenied { .. }), "{code:?}: {e}");
            assert!(!e.is_transient());
        }
        let e = map(
            Call::Decrypt,
            status(Code::FailedPrecondition, "version 2 is DISABLED"),
        );
        assert!(e.to_string().contains("disabled"), "{e}");
    }

    #[test]
    fn checksum_rejection_is_transient_integrity() {
        let e = map(
            Call::Decrypt,
            status(
                Code::InvalidArgument,
                "The checksum in field ciphertext_crc32c did not match the data in field ciphertext.",
            ),
        );
        assert!(e.is_transient(), "{e}");
        let src = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<GcpIntegrityError>());
        assert_eq!(src, Some(&GcpIntegrityError::RequestChecksum));
    }

    #[test]
    fn unknown_version_on_decrypt() {
        let e = map_sdk_error(
            "gcp",
            "k",
            Call::Decrypt,
            status(Code::InvalidArgument, "Decryption failed"),
            Duration::from_secs(1),
            Some("9"),
        );
        assert!(
            matches!(e, Error::UnknownKey { key_version: Some(ref v), .. } if v == "9"),
            "{e}"
        );
    }

    #[test]
    fn http_only_errors() {
        let e = |code| {
            map(
                Call::Encrypt,
                SdkError::http(code, http::HeaderMap::new(), bytes_payload()),
            )
        };
        assert!(matches!(e(503), Error::Unavailable { .. }));
        assert!(matches!(e(429), Error::Throttled { .. }));
        assert!(matches!(e(403), Error::PermissionDenied { .. }));
        assert!(matches!(e(404), Error::UnknownKey { .. }));
        assert!(matches!(e(418), Error::Internal { .. }));
    }

    fn bytes_payload() -> bytes::Bytes {
        bytes::Bytes::from_static(b"not json")
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "é".repeat(300);
        let s = short(&long);
        assert!(s.len() <= MAX_MESSAGE_LEN + '…'.len_utf8());
        assert!(s.ends_with('…'));
    }
}
