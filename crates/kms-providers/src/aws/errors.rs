//! Mapping every AWS SDK failure onto [`Error`]: which ones are worth retrying later, which ones
//! are permanent, and what a permanent one tells the operator to do.
//!
//! The SDK itself has already retried what it considers retryable (throttling, 5xx, timeouts,
//! I/O) by the time an error reaches this module, so "transient" here means "the backend may
//! recover; a later call can succeed", not "retry at once".

use std::time::Duration;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::error::SdkError;
use aws_sdk_kms::operation::decrypt::DecryptError;
use aws_sdk_kms::operation::describe_key::DescribeKeyError;
use aws_sdk_kms::operation::encrypt::EncryptError;

use crate::error::{BoxError, Error};

/// The KMS operation that failed; named in error messages and in the IAM hint.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    Encrypt,
    Decrypt,
    DescribeKey,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::Encrypt => "Encrypt",
            Self::Decrypt => "Decrypt",
            Self::DescribeKey => "DescribeKey",
        }
    }
}

/// What a KMS error code means for us.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    Throttled,
    Unavailable,
    Authentication,
    NotFound,
    Disabled,
    InvalidState,
    AccessDenied,
    Credentials,
    KeyUsage,
    BadKeyId,
}

/// Classifies a KMS (or generic AWS) error code. Codes come from the `__type` of the JSON error
/// body; the SDK strips any namespace prefix.
fn fault_from_code(code: &str) -> Option<Fault> {
    Some(match code {
        "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "SlowDown" => Fault::Throttled,
        "KMSInternalException"
        | "KmsInternalException"
        | "DependencyTimeoutException"
        | "KeyUnavailableException"
        | "InternalFailure"
        | "InternalError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException" => Fault::Unavailable,
        "InvalidCiphertextException" | "IncorrectKeyException" => Fault::Authentication,
        "NotFoundException" => Fault::NotFound,
        "DisabledException" => Fault::Disabled,
        "KMSInvalidStateException" | "KmsInvalidStateException" => Fault::InvalidState,
        "AccessDeniedException" | "AccessDenied" => Fault::AccessDenied,
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "MissingAuthenticationToken"
        | "InvalidGrantTokenException" => Fault::Credentials,
        "InvalidKeyUsageException" | "InvalidEncryptionAlgorithmException" => Fault::KeyUsage,
        "InvalidArnException" => Fault::BadKeyId,
        _ => return None,
    })
}

/// How KMS words the `AccessDeniedException` of a `Decrypt` whose ciphertext names a key the
/// caller cannot use (a key of another account or region, a deleted key, or, with a tampered
/// blob, no key at all). Our `Decrypt` always names our own key, which the caller may use, so
/// this answer means the blob is not ours: an authentication failure, like
/// `IncorrectKeyException`, not a missing permission. KMS-compatible servers that answer a
/// blob of another key with a bare `AccessDeniedException` and no message (moto does) are read
/// the same way; a real missing permission always comes with a message naming the principal
/// and the action, and stays [`Error::PermissionDenied`].
const FOREIGN_CIPHERTEXT: &str = "The ciphertext refers to a customer master key";

/// The modelled error of one KMS operation: its variant's code, or the code in the error's
/// metadata for errors the model does not list (throttling, access denied, signature errors).
pub(crate) trait KmsOperationError: std::error::Error + Send + Sync + 'static {
    /// The KMS error code.
    fn kms_code(&self) -> Option<&str>;

    /// The error message KMS sent, if any.
    fn kms_message(&self) -> Option<&str>;
}

impl KmsOperationError for EncryptError {
    fn kms_message(&self) -> Option<&str> {
        self.message()
    }

    fn kms_code(&self) -> Option<&str> {
        Some(match self {
            Self::DependencyTimeoutException(_) => "DependencyTimeoutException",
            Self::DisabledException(_) => "DisabledException",
            Self::DryRunOperationException(_) => "DryRunOperationException",
            Self::InvalidGrantTokenException(_) => "InvalidGrantTokenException",
            Self::InvalidKeyUsageException(_) => "InvalidKeyUsageException",
            Self::KeyUnavailableException(_) => "KeyUnavailableException",
            Self::KmsInternalException(_) => "KMSInternalException",
            Self::KmsInvalidStateException(_) => "KMSInvalidStateException",
            Self::NotFoundException(_) => "NotFoundException",
            _ => return self.code(),
        })
    }
}

impl KmsOperationError for DecryptError {
    fn kms_message(&self) -> Option<&str> {
        self.message()
    }

    fn kms_code(&self) -> Option<&str> {
        Some(match self {
            Self::DependencyTimeoutException(_) => "DependencyTimeoutException",
            Self::DisabledException(_) => "DisabledException",
            Self::DryRunOperationException(_) => "DryRunOperationException",
            Self::IncorrectKeyException(_) => "IncorrectKeyException",
            Self::InvalidCiphertextException(_) => "InvalidCiphertextException",
            Self::InvalidGrantTokenException(_) => "InvalidGrantTokenException",
            Self::InvalidKeyUsageException(_) => "InvalidKeyUsageException",
            Self::KeyUnavailableException(_) => "KeyUnavailableException",
            Self::KmsInternalException(_) => "KMSInternalException",
            Self::KmsInvalidStateException(_) => "KMSInvalidStateException",
            Self::NotFoundException(_) => "NotFoundException",
            _ => return self.code(),
        })
    }
}

impl KmsOperationError for DescribeKeyError {
    fn kms_message(&self) -> Option<&str> {
        self.message()
    }

    fn kms_code(&self) -> Option<&str> {
        Some(match self {
            Self::DependencyTimeoutException(_) => "DependencyTimeoutException",
            Self::InvalidArnException(_) => "InvalidArnException",
            Self::KmsInternalException(_) => "KMSInternalException",
            Self::NotFoundException(_) => "NotFoundException",
            _ => return self.code(),
        })
    }
}

/// What the mapping needs to know about the call: who, what, on which key, and the limits
/// that a timeout error reports.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallInfo<'a> {
    pub(crate) provider: &'a str,
    pub(crate) op: Op,
    pub(crate) key_id: &'a str,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
}

/// Maps a failed SDK call onto our error.
///
/// * Throttling (by code or HTTP 429) is [`Error::Throttled`]; KMS internal errors, dependency
///   timeouts, unavailable keys (custom key stores) and any 5xx are [`Error::Unavailable`];
///   connection failures are [`Error::Unavailable`] and time-outs [`Error::Timeout`]: all
///   transient.
/// * `InvalidCiphertextException` and `IncorrectKeyException` are
///   [`Error::AuthenticationFailed`] (wrong context, tampered blob, another key's blob);
///   `NotFoundException` is [`Error::UnknownKey`].
/// * A disabled key, a key pending deletion or in another unusable state, a missing IAM
///   permission and rejected credentials are [`Error::PermissionDenied`] with a reason that
///   says what to fix; a key that cannot encrypt, a malformed key id and a request the SDK
///   could not build are [`Error::Misconfigured`]; anything else is [`Error::Internal`].
///
/// The SDK error is kept as the source. It never holds plaintext: the SDK redacts the
/// `Plaintext` fields in its `Debug` output and KMS error bodies never echo them.
pub(crate) fn map_sdk_error<E: KmsOperationError>(call: CallInfo<'_>, err: SdkError<E>) -> Error {
    let provider = call.provider.to_owned();
    let op = call.op.name();
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().kms_code().map(str::to_owned);
            let mut fault = code.as_deref().and_then(fault_from_code);
            if call.op == Op::Decrypt
                && fault == Some(Fault::AccessDenied)
                && ctx
                    .err()
                    .kms_message()
                    .is_none_or(|m| m.is_empty() || m.starts_with(FOREIGN_CIPHERTEXT))
            {
                fault = Some(Fault::Authentication);
            }
            let source: BoxError = Box::new(SdkError::<E>::ServiceError(ctx));
            service_fault(call, fault, code.as_deref(), status, source)
        }
        SdkError::TimeoutError(_) => Error::Timeout {
            provider,
            after: call.operation_timeout,
        },
        SdkError::DispatchFailure(ref failure) if failure.is_timeout() => Error::Timeout {
            provider,
            after: call.connect_timeout,
        },
        SdkError::DispatchFailure(ref failure) if failure.is_user() => Error::Misconfigured {
            provider,
            reason: format!(
                "the AWS SDK could not send the {op} request; check the endpoint URL and the \
                 HTTP client configuration"
            ),
            source: Some(Box::new(err)),
        },
        SdkError::DispatchFailure(_) => match credentials_problem(&err) {
            Some(CredentialsProblem::Missing) => Error::Misconfigured {
                provider,
                reason: format!(
                    "no AWS credentials for {op}: configure a credentials provider on the SDK \
                     client (static credentials, or the standard chain loaded by aws-config)"
                ),
                source: Some(Box::new(err)),
            },
            Some(CredentialsProblem::Failed) => Error::Unavailable {
                provider,
                reason: format!("the AWS credentials provider failed before {op}"),
                source: Some(Box::new(err)),
            },
            None => Error::Unavailable {
                provider,
                reason: format!("cannot reach AWS KMS for {op}"),
                source: Some(Box::new(err)),
            },
        },
        SdkError::ResponseError(ref response) => {
            let status = response.raw().status().as_u16();
            if status == 429 {
                Error::Throttled {
                    provider,
                    retry_after: None,
                    source: Some(Box::new(err)),
                }
            } else if status >= 500 {
                Error::Unavailable {
                    provider,
                    reason: format!("AWS KMS {op} answered HTTP {status}"),
                    source: Some(Box::new(err)),
                }
            } else {
                Error::Internal {
                    provider,
                    reason: format!(
                        "AWS KMS {op} returned a response that is not valid (HTTP {status})"
                    ),
                    source: Some(Box::new(err)),
                }
            }
        }
        // Construction failures happen before anything is sent: no region, no credentials
        // provider, an endpoint that does not resolve.
        SdkError::ConstructionFailure(_) => Error::Misconfigured {
            provider,
            reason: format!(
                "the AWS SDK could not build the {op} request; check the region, the credentials \
                 and the endpoint"
            ),
            source: Some(Box::new(err)),
        },
        // `SdkError` is non-exhaustive: a future kind of failure is reported, not guessed at.
        _ => Error::Internal {
            provider,
            reason: format!("AWS KMS {op} failed in an unexpected way"),
            source: Some(Box::new(err)),
        },
    }
}

/// Why a request was not sent for want of credentials.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CredentialsProblem {
    /// None are configured or none could be found: fix the configuration (permanent).
    Missing,
    /// The provider failed or timed out fetching them (instance metadata, STS): transient.
    Failed,
}

/// The SDK reports a failure to resolve credentials as a dispatch failure, like a network
/// error; look through the error chain to tell the two apart.
fn credentials_problem(err: &(dyn std::error::Error + 'static)) -> Option<CredentialsProblem> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return Some(match c {
                CredentialsError::CredentialsNotLoaded(_)
                | CredentialsError::InvalidConfiguration(_) => CredentialsProblem::Missing,
                _ => CredentialsProblem::Failed,
            });
        }
        // A client with no credentials provider at all has no identity resolver for SigV4;
        // the SDK's (private) error type says so in these words.
        if e.to_string().contains("there was no identity resolver") {
            return Some(CredentialsProblem::Missing);
        }
        next = e.source();
    }
    None
}

fn service_fault(
    call: CallInfo<'_>,
    fault: Option<Fault>,
    code: Option<&str>,
    status: u16,
    source: BoxError,
) -> Error {
    let provider = call.provider.to_owned();
    let op = call.op.name();
    let key = call.key_id;
    let code = code.unwrap_or("no error code");
    let source = Some(source);
    match fault {
        Some(Fault::Throttled) => Error::Throttled {
            provider,
            retry_after: None,
            source,
        },
        Some(Fault::Unavailable) => Error::Unavailable {
            provider,
            reason: format!("AWS KMS {op} failed with {code} (HTTP {status})"),
            source,
        },
        Some(Fault::Authentication) => Error::AuthenticationFailed { provider, source },
        Some(Fault::NotFound) => Error::UnknownKey {
            provider,
            key_id: key.to_owned(),
            key_version: None,
        },
        Some(Fault::Disabled) => Error::PermissionDenied {
            provider,
            reason: format!(
                "the KMS key {key} is disabled ({code}); enable it (kms:EnableKey) or configure \
                 another key"
            ),
            source,
        },
        Some(Fault::InvalidState) => Error::PermissionDenied {
            provider,
            reason: format!(
                "the KMS key {key} cannot be used in its current state ({code}): it is pending \
                 deletion, pending import, or in an unavailable custom key store; cancel the \
                 deletion (kms:CancelKeyDeletion), finish the import or reconnect the key store"
            ),
            source,
        },
        Some(Fault::AccessDenied) => Error::PermissionDenied {
            provider,
            reason: format!(
                "the AWS principal may not call kms:{op} on {key} ({code}); allow it in the key \
                 policy or an IAM policy, with the encryption-context conditions in the aws \
                 section of the kms-providers README"
            ),
            source,
        },
        Some(Fault::Credentials) => Error::PermissionDenied {
            provider,
            reason: format!(
                "AWS rejected the request's credentials or signature ({code}); check the \
                 credentials source, the clock and the region"
            ),
            source,
        },
        Some(Fault::KeyUsage) => Error::Misconfigured {
            provider,
            reason: format!(
                "the KMS key {key} is not a symmetric encryption key ({code}); use a key with \
                 KeySpec SYMMETRIC_DEFAULT and KeyUsage ENCRYPT_DECRYPT"
            ),
            source,
        },
        Some(Fault::BadKeyId) => Error::Misconfigured {
            provider,
            reason: format!(
                "{key} is not a valid KMS key id, key ARN, alias name or alias ARN ({code})"
            ),
            source,
        },
        None if status == 429 => Error::Throttled {
            provider,
            retry_after: None,
            source,
        },
        None if status >= 500 => Error::Unavailable {
            provider,
            reason: format!("AWS KMS {op} failed with {code} (HTTP {status})"),
            source,
        },
        None => Error::Internal {
            provider,
            reason: format!("AWS KMS {op} failed with unexpected error {code} (HTTP {status})"),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::config::http::HttpResponse;
    use aws_sdk_kms::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_kms::types::error::{
        DisabledException, IncorrectKeyException, InvalidCiphertextException,
        KeyUnavailableException, KmsInternalException, KmsInvalidStateException, NotFoundException,
    };
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;

    const KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn call(op: Op) -> CallInfo<'static> {
        CallInfo {
            provider: "aws",
            op,
            key_id: KEY,
            connect_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(10),
        }
    }

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty())
    }

    fn decrypt(err: DecryptError, status: u16) -> Error {
        map_sdk_error(
            call(Op::Decrypt),
            SdkError::service_error(err, response(status)),
        )
    }

    fn encrypt(err: EncryptError, status: u16) -> Error {
        map_sdk_error(
            call(Op::Encrypt),
            SdkError::service_error(err, response(status)),
        )
    }

    fn generic_decrypt(code: &str, status: u16) -> Error {
        decrypt(
            DecryptError::generic(ErrorMetadata::builder().code(code).message("m").build()),
            status,
        )
    }

    #[test]
    fn wrong_context_and_wrong_key_are_authentication_failures() {
        let e = decrypt(
            DecryptError::InvalidCiphertextException(
                InvalidCiphertextException::builder().message("bad").build(),
            ),
            400,
        );
        assert!(matches!(e, Error::AuthenticationFailed { .. }), "{e}");
        let e = decrypt(
            DecryptError::IncorrectKeyException(
                IncorrectKeyException::builder().message("bad").build(),
            ),
            400,
        );
        assert!(matches!(e, Error::AuthenticationFailed { .. }), "{e}");
        assert!(!e.is_transient());
        assert_eq!(e.provider(), "aws");
    }

    #[test]
    fn not_found_is_unknown_key() {
        let e = encrypt(
            EncryptError::NotFoundException(NotFoundException::builder().message("x").build()),
            400,
        );
        match e {
            Error::UnknownKey { key_id, .. } => assert_eq!(key_id, KEY),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn key_states_are_permanent_with_a_reason() {
        let e = decrypt(
            DecryptError::DisabledException(DisabledException::builder().message("x").build()),
            400,
        );
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
        assert!(e.to_string().contains("is disabled"), "{e}");
        assert!(e.to_string().contains("kms:EnableKey"), "{e}");

        let e = encrypt(
            EncryptError::KmsInvalidStateException(
                KmsInvalidStateException::builder().message("x").build(),
            ),
            400,
        );
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
        assert!(e.to_string().contains("pending deletion"), "{e}");
        assert!(!e.is_transient());

        let e = generic_decrypt("AccessDeniedException", 400);
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
        assert!(e.to_string().contains("kms:Decrypt"), "{e}");
        assert!(e.to_string().contains(KEY), "{e}");

        // Access denied on Decrypt because the blob names a key we cannot use: not our blob.
        let e = decrypt(
            DecryptError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message(
                        "The ciphertext refers to a customer master key that does not exist, \
                         does not exist in this region, or you are not allowed to access.",
                    )
                    .build(),
            ),
            400,
        );
        assert!(matches!(e, Error::AuthenticationFailed { .. }), "{e}");
        // A bare AccessDeniedException on Decrypt (what moto answers for another key's blob).
        let e = decrypt(
            DecryptError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .build(),
            ),
            400,
        );
        assert!(matches!(e, Error::AuthenticationFailed { .. }), "{e}");
        // The same message on Encrypt stays a permission problem.
        let e = encrypt(
            EncryptError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("The ciphertext refers to a customer master key")
                    .build(),
            ),
            400,
        );
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");

        let e = generic_decrypt("UnrecognizedClientException", 400);
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
        let e = generic_decrypt("InvalidKeyUsageException", 400);
        assert!(matches!(e, Error::Misconfigured { .. }), "{e}");
    }

    #[test]
    fn throttling_is_throttled() {
        for code in ["ThrottlingException", "TooManyRequestsException"] {
            let e = generic_decrypt(code, 400);
            assert!(matches!(e, Error::Throttled { .. }), "{code}: {e}");
            assert!(e.is_transient());
        }
        // An unknown code with HTTP 429 is throttling too.
        let e = generic_decrypt("SomethingNew", 429);
        assert!(matches!(e, Error::Throttled { .. }), "{e}");
    }

    #[test]
    fn server_side_failures_are_unavailable() {
        let e = decrypt(
            DecryptError::KmsInternalException(
                KmsInternalException::builder().message("x").build(),
            ),
            500,
        );
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
        let e = encrypt(
            EncryptError::KeyUnavailableException(
                KeyUnavailableException::builder().message("x").build(),
            ),
            500,
        );
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
        let e = generic_decrypt("SomethingNew", 503);
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
        assert!(e.is_transient());
        // A 4xx nobody knows is permanent, never retried for ever.
        let e = generic_decrypt("SomethingNew", 400);
        assert!(matches!(e, Error::Internal { .. }), "{e}");
    }

    #[test]
    fn network_failures_are_transient() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = map_sdk_error::<DecryptError>(
            call(Op::Decrypt),
            SdkError::dispatch_failure(ConnectorError::io(Box::new(io))),
        );
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
        let e = map_sdk_error::<DecryptError>(
            call(Op::Decrypt),
            SdkError::dispatch_failure(ConnectorError::timeout("connect".into())),
        );
        assert!(
            matches!(e, Error::Timeout { after, .. } if after == Duration::from_secs(3)),
            "{e}"
        );
        let e = map_sdk_error::<EncryptError>(call(Op::Encrypt), SdkError::timeout_error("slow"));
        assert!(
            matches!(e, Error::Timeout { after, .. } if after == Duration::from_secs(10)),
            "{e}"
        );
        let e = map_sdk_error::<EncryptError>(
            call(Op::Encrypt),
            SdkError::response_error("truncated", response(502)),
        );
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
        let e = map_sdk_error::<EncryptError>(
            call(Op::Encrypt),
            SdkError::response_error("garbage", response(200)),
        );
        assert!(matches!(e, Error::Internal { .. }), "{e}");
        let e = map_sdk_error::<EncryptError>(
            call(Op::Encrypt),
            SdkError::construction_failure("no credentials"),
        );
        assert!(matches!(e, Error::Misconfigured { .. }), "{e}");
    }

    #[test]
    fn credential_failures() {
        let dispatch = |e: CredentialsError| {
            map_sdk_error::<EncryptError>(
                call(Op::Encrypt),
                SdkError::dispatch_failure(ConnectorError::other(Box::new(e), None)),
            )
        };
        let e = dispatch(CredentialsError::not_loaded("no profile, no environment"));
        assert!(matches!(e, Error::Misconfigured { .. }), "{e}");
        assert!(e.to_string().contains("no AWS credentials"), "{e}");
        let e = dispatch(CredentialsError::invalid_configuration("bad profile"));
        assert!(matches!(e, Error::Misconfigured { .. }), "{e}");
        let e = dispatch(CredentialsError::provider_timed_out(Duration::from_secs(5)));
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
        assert!(e.is_transient());
        let e = dispatch(CredentialsError::provider_error("IMDS unreachable"));
        assert!(matches!(e, Error::Unavailable { .. }), "{e}");
        assert!(e.to_string().contains("credentials provider"), "{e}");
    }

    #[test]
    fn describe_key_errors() {
        let e = map_sdk_error(
            call(Op::DescribeKey),
            SdkError::service_error(
                DescribeKeyError::InvalidArnException(
                    aws_sdk_kms::types::error::InvalidArnException::builder()
                        .message("x")
                        .build(),
                ),
                response(400),
            ),
        );
        assert!(matches!(e, Error::Misconfigured { .. }), "{e}");
        let e = map_sdk_error(
            call(Op::DescribeKey),
            SdkError::service_error(
                DescribeKeyError::NotFoundException(NotFoundException::builder().build()),
                response(400),
            ),
        );
        assert!(matches!(e, Error::UnknownKey { .. }), "{e}");
    }

    #[test]
    fn the_sdk_error_is_kept_as_source() {
        use std::error::Error as _;
        let e = generic_decrypt("ThrottlingException", 400);
        assert!(e.source().is_some());
    }
}
