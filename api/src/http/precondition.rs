//! Versions as entity tags: `ETag: "<version>"` on reads, `If-Match: "<version>"` on
//! writes.

use axum::http::{HeaderMap, HeaderValue, header};

/// The strong entity tag of a version.
pub fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header")
}

/// An `If-Match` header that does not name exactly one version (a 400 problem on the
/// `If-Match` field, see [`ApiError`](super::problem::ApiError)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidIfMatch;

impl InvalidIfMatch {
    /// What the client is told.
    pub const DETAIL: &str = "If-Match must name exactly one version, e.g. If-Match: \"3\"";
}

/// The version named by `If-Match`, if the header is present. Accepts `"3"` (and, to be
/// forgiving, a bare `3`); refuses lists, weak tags and `*`, which would make a lost
/// update possible.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, InvalidIfMatch> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = raw.to_str().map_err(|_| InvalidIfMatch)?.trim();
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if unquoted.is_empty() || !unquoted.bytes().all(|b| b.is_ascii_digit()) || unquoted.len() > 19 {
        return Err(InvalidIfMatch);
    }
    unquoted.parse().map(Some).map_err(|_| InvalidIfMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Option<u64>, InvalidIfMatch> {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_MATCH, HeaderValue::from_str(value).unwrap());
        if_match(&headers)
    }

    #[test]
    fn if_match_names_one_version() {
        assert_eq!(parse("\"3\"").unwrap(), Some(3));
        assert_eq!(parse("7").unwrap(), Some(7));
        for bad in [
            "*",
            "W/\"3\"",
            "\"1\", \"2\"",
            "\"\"",
            "\"-1\"",
            "\"99999999999999999999\"",
            "abc",
        ] {
            assert_eq!(parse(bad), Err(InvalidIfMatch), "{bad} accepted");
        }
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
    }
}
