//! The WebSocket opening handshake of `/ws` (RFC 6455 §4.2), done here rather than by
//! axum's extractor so that the connection's task owns the upgraded socket itself and
//! can write the frames' bytes to it as they are (see `socket.rs`).

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// A request to open a WebSocket, checked: answer it with
/// [`accept`](Handshake::accept), then await [`upgraded`](Handshake::upgraded).
pub(super) struct Handshake {
    key: HeaderValue,
    upgraded: OnUpgrade,
}

/// Why a request is not a WebSocket handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotAHandshake {
    MethodNotGet,
    NoConnectionUpgrade,
    NoUpgradeWebSocket,
    UnsupportedVersion,
    NoKey,
    /// The connection cannot be upgraded (the server did not offer it).
    NotUpgradable,
}

impl NotAHandshake {
    fn detail(self) -> &'static str {
        match self {
            Self::MethodNotGet => "a WebSocket handshake is a GET",
            Self::NoConnectionUpgrade => "the Connection header must include `upgrade`",
            Self::NoUpgradeWebSocket => "the Upgrade header must be `websocket`",
            Self::UnsupportedVersion => "Sec-WebSocket-Version must be 13",
            Self::NoKey => "the Sec-WebSocket-Key header is missing",
            Self::NotUpgradable => "this connection cannot be upgraded to a WebSocket",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::MethodNotGet => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for NotAHandshake {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = super::problem(
            status,
            "/problems/not-a-websocket-handshake",
            "Not a WebSocket handshake",
            self.detail(),
        );
        if status == StatusCode::UPGRADE_REQUIRED {
            response
                .headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = NotAHandshake;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, NotAHandshake> {
        Self::check(parts)
    }
}

impl Handshake {
    fn check(parts: &mut Parts) -> Result<Self, NotAHandshake> {
        if parts.method != Method::GET {
            return Err(NotAHandshake::MethodNotGet);
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(NotAHandshake::NoConnectionUpgrade);
        }
        if !has_token(&parts.headers, header::UPGRADE, "websocket") {
            return Err(NotAHandshake::NoUpgradeWebSocket);
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(NotAHandshake::UnsupportedVersion);
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or(NotAHandshake::NoKey)?
            .clone();
        let upgraded = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(NotAHandshake::NotUpgradable)?;
        Ok(Self { key, upgraded })
    }

    /// The `101 Switching Protocols` that accepts the handshake, and the upgrade to
    /// await once it is sent.
    pub fn accept(self) -> (Response, OnUpgrade) {
        let accept = derive_accept_key(self.key.as_bytes());
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, HeaderValue::from_static("upgrade"))
            .header(header::UPGRADE, HeaderValue::from_static("websocket"))
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(Body::empty())
            .expect("a handshake response");
        (response, self.upgraded)
    }
}

/// Whether the header's comma-separated tokens include `token`, in any case.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value.to_str().is_ok_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(headers: &[(&str, &str)], method: Method, upgradable: bool) -> Parts {
        let mut request = Request::builder().method(method).uri("/ws");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(()).unwrap();
        if upgradable {
            let upgrade = hyper::upgrade::on(Request::new(()));
            request.extensions_mut().insert(upgrade);
        }
        request.into_parts().0
    }

    const GOOD: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn a_good_handshake_is_accepted_with_the_key_signed() {
        let handshake = Handshake::check(&mut parts(&GOOD, Method::GET, true)).unwrap();
        let (response, _) = handshake.accept();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        // RFC 6455 §1.3's own example.
        assert_eq!(
            response.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(response.headers()[header::UPGRADE], "websocket");
    }

    #[test]
    fn each_missing_or_wrong_part_is_named() {
        fn without(name: &str) -> Vec<(&'static str, &'static str)> {
            GOOD.iter().copied().filter(|(n, _)| *n != name).collect()
        }
        fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
            let mut headers = without(name);
            headers.push((name, value));
            headers
        }
        let cases = [
            (
                GOOD.to_vec(),
                Method::POST,
                true,
                NotAHandshake::MethodNotGet,
            ),
            (
                without("connection"),
                Method::GET,
                true,
                NotAHandshake::NoConnectionUpgrade,
            ),
            (
                with("connection", "upgraded"),
                Method::GET,
                true,
                NotAHandshake::NoConnectionUpgrade,
            ),
            (
                without("upgrade"),
                Method::GET,
                true,
                NotAHandshake::NoUpgradeWebSocket,
            ),
            (
                with("upgrade", "h2c"),
                Method::GET,
                true,
                NotAHandshake::NoUpgradeWebSocket,
            ),
            (
                without("sec-websocket-version"),
                Method::GET,
                true,
                NotAHandshake::UnsupportedVersion,
            ),
            (
                with("sec-websocket-version", "8"),
                Method::GET,
                true,
                NotAHandshake::UnsupportedVersion,
            ),
            (
                without("sec-websocket-key"),
                Method::GET,
                true,
                NotAHandshake::NoKey,
            ),
            (
                GOOD.to_vec(),
                Method::GET,
                false,
                NotAHandshake::NotUpgradable,
            ),
        ];
        for (headers, method, upgradable, expected) in cases {
            let refused = Handshake::check(&mut parts(&headers, method.clone(), upgradable));
            assert_eq!(refused.err(), Some(expected), "{headers:?} {method}");
            assert!(!expected.detail().is_empty());
        }
        assert_eq!(
            NotAHandshake::NotUpgradable.into_response().status(),
            StatusCode::UPGRADE_REQUIRED
        );
        assert_eq!(
            NotAHandshake::NoKey.into_response().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
