//! The server's own extractors: every rejection becomes a problem+json answer, and none echoes
//! request content that could be a secret.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::ApiError;

/// A JSON body: `Content-Type: application/json` (or none with an empty body), at most the body
/// limit, parsed without echoing values in errors.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::MalformedBody("the request body could not be read".into())
            }
        })?;
        if bytes.is_empty() && content_type.is_none() {
            // An empty body is an empty object: endpoints whose fields are all optional accept
            // it, the others answer with the missing field.
            return parse(b"{}").map(ApiJson);
        }
        if !content_type.as_deref().is_some_and(is_json) {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with the header `Content-Type: application/json`".into(),
            ));
        }
        parse(&bytes).map(ApiJson)
    }
}

pub(crate) fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(
        "the request body is larger than this server accepts; send a smaller value".into(),
    )
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Parses JSON; the error names the position and what was expected, never the value found.
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        let at = format!("line {} column {}", e.line(), e.column());
        let detail = match e.classify() {
            Category::Syntax | Category::Eof => {
                format!("the body is not valid JSON (at {at}); send a JSON object")
            }
            Category::Io => "the request body could not be read".to_owned(),
            Category::Data => {
                let message = e.to_string();
                let message = message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |(m, _)| m);
                if message.starts_with("invalid type") || message.starts_with("invalid value") {
                    // "invalid type: string \"…\", expected …" quotes the value: keep only what
                    // was expected.
                    let expected = message
                        .split_once(", expected ")
                        .map_or("another type", |(_, e)| e);
                    format!("wrong type or value at {at}: expected {expected}")
                } else {
                    // Missing and unknown fields name only field names.
                    format!("{message} (at {at})")
                }
            }
        };
        ApiError::MalformedBody(detail)
    })
}

/// The path parameters, percent-decoded by axum; a decoding failure is a 400 problem.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|rejection| {
                ApiError::InvalidPath(format!(
                    "the URL path could not be decoded ({}); paths are UTF-8 and percent-encoded",
                    rejection.body_text()
                ))
            })
    }
}

/// The query string; a bad one is a 400 problem.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| ApiError::Validation(rejection.body_text()))
    }
}
