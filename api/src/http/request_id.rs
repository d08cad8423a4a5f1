//! Request ids and the request log line.
//!
//! Every request gets an id: the client's `x-request-id` when it sent a sane one (1 to
//! 128 visible ASCII characters), else a fresh UUID v7. The id is
//!
//! - answered in the response's `x-request-id` header (every response, problems
//!   included);
//! - a field of the request's `request` span, so every log line written while the
//!   request is handled carries it;
//! - the `instance` of a problem answering the request (read from a task-local by
//!   [`Problem`](super::Problem)'s response conversion), so a client's report of an
//!   error finds its log lines.
//!
//! When the request is answered, one INFO line records its method, route template,
//! status, duration and (through the span) the user, when a token named one.

use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header a request id travels in, both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-chosen id kept; a longer one is replaced.
pub const MAX_LEN: usize = 128;

/// A request's id: 1 to [`MAX_LEN`] visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// A client-sent id, when it is sane: not empty, at most [`MAX_LEN`] bytes, each a
    /// visible ASCII character (no spaces or controls, which would garble log lines).
    pub fn parse(raw: &[u8]) -> Option<Self> {
        let sane = (1..=MAX_LEN).contains(&raw.len()) && raw.iter().all(u8::is_ascii_graphic);
        sane.then(|| Self(String::from_utf8_lossy(raw).into_owned()))
    }

    /// A fresh id: a UUID v7, so ids sort by time.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.0).expect("a request id is visible ASCII")
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being handled by this task, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Middleware: gives the request its id, handles it in a `request` span with the id as
/// the task's current one, answers the id and logs the request.
pub async fn track(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&HEADER)
        .and_then(|value| RequestId::parse(value.as_bytes()))
        .unwrap_or_else(RequestId::generate);
    request.headers_mut().insert(HEADER, id.header_value());
    request.extensions_mut().insert(id.clone());
    // The route template, never the raw path: ids in paths say nothing about the route
    // and the log line's shape stays fixed.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route = %route,
        user = tracing::field::Empty,
    );
    let started = Instant::now();
    let mut response = CURRENT
        .scope(id.clone(), next.run(request).instrument(span.clone()))
        .await;
    let duration_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    span.in_scope(|| {
        tracing::info!(status = response.status().as_u16(), duration_ms, "answered");
    });
    response.headers_mut().insert(HEADER, id.header_value());
    name_the_problem(response, &id).await
}

/// The largest problem body [`name_the_problem`] reads.
const MAX_PROBLEM_BYTES: u64 = 64 * 1024;

/// Gives a problem that was not made by [`Problem`](super::Problem) (the WebSocket
/// endpoint's, say) the request id as its `instance`, when it has none.
async fn name_the_problem(response: Response, id: &RequestId) -> Response {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let small = response
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_PROBLEM_BYTES);
    if !is_problem || !small {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_PROBLEM_BYTES as usize).await {
        Ok(bytes) => bytes,
        Err(_) => return Response::from_parts(parts, Body::empty()),
    };
    let named = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut problem)) if !problem.contains_key("instance") => {
            problem.insert("instance".into(), id.as_str().into());
            serde_json::to_vec(&problem).ok()
        }
        _ => None,
    };
    match named {
        Some(body) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(body))
        }
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_refused() {
        assert_eq!(RequestId::parse(b"abc-123").unwrap().as_str(), "abc-123");
        assert!(RequestId::parse(&[b'x'; MAX_LEN]).is_some());
        for bad in [
            &b""[..],
            &[b'x'; MAX_LEN + 1],
            b"has space",
            b"tab\there",
            b"new\nline",
            "caf\u{e9}".as_bytes(),
        ] {
            assert!(RequestId::parse(bad).is_none(), "{bad:?} kept");
        }
    }

    #[test]
    fn generated_ids_are_uuid_v7() {
        let id = RequestId::generate();
        let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert!(RequestId::parse(id.as_str().as_bytes()).is_some());
    }

    #[tokio::test]
    async fn the_current_id_is_the_scoped_one() {
        assert_eq!(current(), None);
        let id = RequestId::generate();
        let seen = CURRENT.scope(id.clone(), async { current() }).await;
        assert_eq!(seen, Some(id));
    }
}
