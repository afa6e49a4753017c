//! Rules for names, secret paths, types and metadata, checked before anything is stored.

use crate::problem::ApiError;

/// The longest secret path, in bytes.
///
/// # Example
///
/// ```
/// assert_eq!(vault_server::MAX_PATH_LEN, 512);
/// ```
pub const MAX_PATH_LEN: usize = 512;
/// The longest path segment, in bytes.
const MAX_SEGMENT_LEN: usize = 128;
/// The longest secret type.
const MAX_TYPE_LEN: usize = 64;
/// The largest metadata object, serialized.
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Checks a secret path: segments of `A-Z a-z 0-9 - _ .` separated by single `/`, no leading or
/// trailing slash, no segment made only of dots (`.`, `..`), at most [`MAX_PATH_LEN`] bytes.
pub(crate) fn secret_path(path: &str) -> Result<(), ApiError> {
    const RULES: &str = "a path is segments of letters, digits, `-`, `_` and `.` separated by \
                         single `/`, with no leading or trailing slash and no `.` or `..` segment";
    if path.is_empty() {
        return Err(ApiError::InvalidPath(format!(
            "the secret path is empty; {RULES}"
        )));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(ApiError::InvalidPath(format!(
            "the secret path is {} bytes long; the limit is {MAX_PATH_LEN}",
            path.len()
        )));
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Err(ApiError::InvalidPath(format!(
                "the secret path has an empty segment; {RULES}"
            )));
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return Err(ApiError::InvalidPath(format!(
                "a path segment is {} bytes long; the limit is {MAX_SEGMENT_LEN}",
                segment.len()
            )));
        }
        if segment.bytes().all(|b| b == b'.') {
            return Err(ApiError::InvalidPath(format!(
                "the secret path has a `{segment}` segment; {RULES}"
            )));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(ApiError::InvalidPath(format!(
                "the secret path has a character outside the allowed set; {RULES}"
            )));
        }
    }
    Ok(())
}

/// Checks a secret type: 1 to 64 of `a-z 0-9 _ -`.
pub(crate) fn secret_type(value: &str) -> Result<(), ApiError> {
    if value.is_empty()
        || value.len() > MAX_TYPE_LEN
        || !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
    {
        return Err(ApiError::Validation(format!(
            "`type` must be 1 to {MAX_TYPE_LEN} characters of a-z, 0-9, `_` and `-` \
             (e.g. generic, password, api_key)"
        )));
    }
    Ok(())
}

/// Checks a display name: 1 to `max` characters, no control characters.
pub(crate) fn name(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let chars = value.chars().count();
    if value.trim().is_empty() || chars > max || value.chars().any(char::is_control) {
        return Err(ApiError::Validation(format!(
            "`{field}` must be 1 to {max} characters without control characters"
        )));
    }
    Ok(())
}

/// Checks metadata: a JSON object of at most 16 KiB, serialized.
pub(crate) fn metadata(value: &serde_json::Value) -> Result<String, ApiError> {
    if !value.is_object() {
        return Err(ApiError::Validation(
            "`metadata` must be a JSON object".into(),
        ));
    }
    let text = value.to_string();
    if text.len() > MAX_METADATA_BYTES {
        return Err(ApiError::Validation(format!(
            "`metadata` is {} bytes serialized; the limit is {MAX_METADATA_BYTES}",
            text.len()
        )));
    }
    Ok(text)
}
