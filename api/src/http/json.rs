//! JSON request bodies: content type checked, size capped by the router's body limit,
//! and every failure turned into a problem (malformed → 400 malformed-json, well-formed
//! but wrong → 400 invalid-input, over the cap → 413).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::problem::{ApiError, Problem};

/// A JSON body decoded into `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Problem::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "/problems/unsupported-media-type",
                "Unsupported media type",
                "send Content-Type: application/json (or application/merge-patch+json for PATCH)",
            )
            .into());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Problem::too_large(format!(
                    "the request body is over the {} byte limit",
                    crate::MAX_REQUEST_BYTES
                ))
            } else {
                Problem::malformed_json(rejection.body_text())
            }
        })?;
        decode(&bytes).map(JsonBody)
    }
}

/// Decodes a JSON object, classifying failures as problems: not JSON at all → malformed;
/// JSON but not an object (every request body of this API is one) or not of the
/// expected shape → invalid input.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map_err(|e| Problem::malformed_json(e.to_string()))?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Problem::invalid("body", "the request body must be a JSON object").into());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        match e.classify() {
            Category::Data => Problem::invalid("body", e.to_string()),
            Category::Syntax | Category::Eof | Category::Io => {
                Problem::malformed_json(e.to_string())
            }
        }
        .into()
    })
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}
