//! RFC 7807 problem details: the one shape every failure of the API takes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The media type of every error body.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// Every failure the API reports, with the HTTP status and problem type each maps to.
///
/// The `detail` of a problem tells the caller what to send instead. Nothing secret (values,
/// client shares, tokens, keys) ever appears in a problem: the variants hold only public facts.
/// Internal failures are logged in full where they happen and answered generically.
///
/// # Example
///
/// ```
/// use vault_server::ApiError;
///
/// let err = ApiError::NotFound("vault 42 does not exist".into());
/// assert_eq!(err.status().as_u16(), 404);
/// assert_eq!(err.problem_type(), "urn:mpc-vault:problem:not-found");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 400: the request is well formed JSON but a field is invalid.
    #[error("{0}")]
    Validation(String),
    /// 400: the body is not JSON, or not the JSON this endpoint takes.
    #[error("{0}")]
    MalformedBody(String),
    /// 400: the secret path breaks the path rules.
    #[error("{0}")]
    InvalidPath(String),
    /// 400: the custody mode names providers this server does not have.
    #[error("{0}")]
    ProvidersNotConfigured(String),
    /// 400: the mode has a client slot and no `X-Client-Share` header was sent.
    #[error("{0}")]
    ClientShareMissing(String),
    /// 400: the `X-Client-Share` header is not a client share (base64, length, version, slot).
    #[error("{0}")]
    ClientShareMalformed(String),
    /// 400: a client share was sent for a secret whose custody has no client slot.
    #[error("{0}")]
    ClientShareUnexpected(String),
    /// 401: no credentials, or credentials that are not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the key is scoped to some vaults and the action is not one it may take.
    #[error("{0}")]
    Forbidden(String),
    /// 403: the client share belongs to another secret, version or vault.
    #[error("{0}")]
    ClientShareForeign(String),
    /// 403: the client share is for this version but does not rebuild its key.
    #[error("{0}")]
    ClientShareWrong(String),
    /// 403: the organisation's tier allows no more of a resource (vaults, secrets, agents).
    #[error("{0}")]
    ResourceLimitExceeded(String),
    /// 403: the organisation's tier does not allow the requested custody mode.
    #[error("{0}")]
    CustodyModeNotAllowed(String),
    /// 403: a CMEK key sent for a rotation does not match the fingerprint it must match.
    #[error("{0}")]
    CmekKeyMismatch(String),
    /// 404: no such resource (or route).
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 408: the request took longer than the configured timeout.
    #[error("{0}")]
    Timeout(String),
    /// 409: the request conflicts with the resource's state (a custody mode is set once).
    #[error("{0}")]
    Conflict(String),
    /// 410: the secret version was deleted, disabled, has expired or was read its maximum
    /// number of times.
    #[error("{0}")]
    Gone(String),
    /// 413: the body or the value is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: the caller (API key, or peer address without credentials) sent more requests than
    /// its rate allows; the answer carries `Retry-After` with `retry_after_secs`.
    #[error("{detail}")]
    RateLimited {
        /// What to do.
        detail: String,
        /// Whole seconds until a request would be accepted (at least 1).
        retry_after_secs: u64,
    },
    /// 503: the key providers could not be reached; the same request may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a failure on the server's side; the details are in the server log only.
    #[error("internal server error")]
    Internal,
}

impl ApiError {
    /// The HTTP status this error answers with.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(vault_server::ApiError::Internal.status().as_u16(), 500);
    /// ```
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_)
            | ApiError::MalformedBody(_)
            | ApiError::InvalidPath(_)
            | ApiError::ProvidersNotConfigured(_)
            | ApiError::ClientShareMissing(_)
            | ApiError::ClientShareMalformed(_)
            | ApiError::ClientShareUnexpected(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_)
            | ApiError::ClientShareForeign(_)
            | ApiError::ClientShareWrong(_)
            | ApiError::ResourceLimitExceeded(_)
            | ApiError::CustodyModeNotAllowed(_)
            | ApiError::CmekKeyMismatch(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem `type` URI: a stable identifier clients can match on.
    ///
    /// # Example
    ///
    /// ```
    /// let err = vault_server::ApiError::Gone("deleted".into());
    /// assert_eq!(err.problem_type(), "urn:mpc-vault:problem:gone");
    /// ```
    #[must_use]
    pub fn problem_type(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "urn:mpc-vault:problem:validation",
            ApiError::MalformedBody(_) => "urn:mpc-vault:problem:malformed-body",
            ApiError::InvalidPath(_) => "urn:mpc-vault:problem:invalid-path",
            ApiError::ProvidersNotConfigured(_) => "urn:mpc-vault:problem:providers-not-configured",
            ApiError::ClientShareMissing(_) => "urn:mpc-vault:problem:client-share-missing",
            ApiError::ClientShareMalformed(_) => "urn:mpc-vault:problem:client-share-malformed",
            ApiError::ClientShareUnexpected(_) => "urn:mpc-vault:problem:client-share-unexpected",
            ApiError::Unauthorized(_) => "urn:mpc-vault:problem:unauthorized",
            ApiError::Forbidden(_) => "urn:mpc-vault:problem:forbidden",
            ApiError::ClientShareForeign(_) => "urn:mpc-vault:problem:client-share-foreign",
            ApiError::ClientShareWrong(_) => "urn:mpc-vault:problem:client-share-wrong",
            ApiError::ResourceLimitExceeded(_) => "urn:mpc-vault:problem:resource-limit-exceeded",
            ApiError::CustodyModeNotAllowed(_) => "urn:mpc-vault:problem:custody-mode-not-allowed",
            ApiError::CmekKeyMismatch(_) => "urn:mpc-vault:problem:cmek-key-mismatch",
            ApiError::RateLimited { .. } => "urn:mpc-vault:problem:rate-limited",
            ApiError::NotFound(_) => "urn:mpc-vault:problem:not-found",
            ApiError::MethodNotAllowed(_) => "urn:mpc-vault:problem:method-not-allowed",
            ApiError::Timeout(_) => "urn:mpc-vault:problem:timeout",
            ApiError::Conflict(_) => "urn:mpc-vault:problem:conflict",
            ApiError::Gone(_) => "urn:mpc-vault:problem:gone",
            ApiError::PayloadTooLarge(_) => "urn:mpc-vault:problem:payload-too-large",
            ApiError::UnsupportedMediaType(_) => "urn:mpc-vault:problem:unsupported-media-type",
            ApiError::Unavailable(_) => "urn:mpc-vault:problem:unavailable",
            ApiError::Internal => "urn:mpc-vault:problem:internal",
        }
    }

    /// The problem `title`: a short summary that is the same for every instance of a type.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(vault_server::ApiError::Internal.title(), "Internal server error");
    /// ```
    #[must_use]
    pub fn title(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "Invalid request",
            ApiError::MalformedBody(_) => "Malformed request body",
            ApiError::InvalidPath(_) => "Invalid secret path",
            ApiError::ProvidersNotConfigured(_) => "Key providers not configured",
            ApiError::ClientShareMissing(_) => "Client share required",
            ApiError::ClientShareMalformed(_) => "Malformed client share",
            ApiError::ClientShareUnexpected(_) => "Client share not expected",
            ApiError::Unauthorized(_) => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::ClientShareForeign(_) => "Client share of another secret",
            ApiError::ClientShareWrong(_) => "Wrong client share",
            ApiError::ResourceLimitExceeded(_) => "Resource limit exceeded",
            ApiError::CustodyModeNotAllowed(_) => "Custody mode not allowed",
            ApiError::CmekKeyMismatch(_) => "CMEK key mismatch",
            ApiError::RateLimited { .. } => "Too many requests",
            ApiError::NotFound(_) => "Not found",
            ApiError::MethodNotAllowed(_) => "Method not allowed",
            ApiError::Timeout(_) => "Request timeout",
            ApiError::Conflict(_) => "Conflict",
            ApiError::Gone(_) => "Gone",
            ApiError::PayloadTooLarge(_) => "Payload too large",
            ApiError::UnsupportedMediaType(_) => "Unsupported media type",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::Internal => "Internal server error",
        }
    }

    /// The problem `detail`: what happened to this request and what to send instead.
    ///
    /// # Example
    ///
    /// ```
    /// let err = vault_server::ApiError::Conflict("mode already set".into());
    /// assert_eq!(err.detail(), "mode already set");
    /// ```
    #[must_use]
    pub fn detail(&self) -> String {
        match self {
            ApiError::Internal => {
                "the server failed to handle the request; the failure is in the server log".into()
            }
            other => other.to_string(),
        }
    }

    /// The problem document as JSON.
    pub(crate) fn body(&self) -> Problem {
        Problem {
            problem_type: self.problem_type(),
            title: self.title(),
            status: self.status().as_u16(),
            detail: self.detail(),
        }
    }
}

/// RFC 7807 problem details: the body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Problem {
    /// A URI naming the problem type, e.g. `urn:mpc-vault:problem:client-share-missing`.
    #[serde(rename = "type")]
    problem_type: &'static str,
    /// A short summary of the problem type.
    title: &'static str,
    /// The HTTP status.
    status: u16,
    /// What happened to this request and what to send instead.
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        // Serializing a struct of strings and an integer cannot fail; the fallback still
        // answers with the right status rather than panicking.
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Logs an internal failure in full and answers generically.
pub(crate) fn internal(context: &str, err: &dyn std::error::Error) -> ApiError {
    tracing::error!(error = %err, "{context}");
    ApiError::Internal
}
