//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): how docfan signs
//! the events it POSTs, and how a receiver checks them.
//!
//! A delivery carries three headers: `webhook-id` (the event id, the same on every
//! attempt), `webhook-timestamp` (Unix seconds of the attempt) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">`, several space-separated
//! when a receiver rotates secrets). The secret is `whsec_` and the base64 of the key.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header naming the message (the event id).
pub const WEBHOOK_ID: &str = "webhook-id";
/// The header holding the attempt's Unix time in seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// The header holding the signatures.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The prefix of a secret's text form.
pub const SECRET_PREFIX: &str = "whsec_";
/// The shortest key accepted, in bytes (the specification's lower bound).
pub const MIN_KEY_BYTES: usize = 24;
/// The longest key accepted, in bytes (the specification's upper bound).
pub const MAX_KEY_BYTES: usize = 64;

/// How far a timestamp may be from the receiver's clock, by default (the
/// specification's suggestion).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a secret was refused. The messages never contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with \"whsec_\" followed by the base64 of its key")]
    MissingPrefix,
    #[error("the key after \"whsec_\" is not valid base64")]
    NotBase64,
    #[error("the key is {0} bytes; a webhook secret's key is 24 to 64 bytes")]
    Length(usize),
}

/// A target's signing key, from its `whsec_…` text. Its `Debug` form hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// Reads `whsec_<base64 key>`; the key must be 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        Self::from_key(key)
    }

    /// A secret from raw key bytes (24 to 64 of them).
    pub fn from_key(key: Vec<u8>) -> Result<Self, SecretError> {
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self { key })
    }

    /// A fresh random 32-byte secret, for operators setting up a target.
    pub fn generate() -> Self {
        let key: [u8; 32] = rand::random();
        Self { key: key.to_vec() }
    }

    /// The `whsec_…` text to hand to the receiver.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` value for one message: `v1,<base64 HMAC-SHA256>`.
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self
            .mac(id, &timestamp.to_string(), body)
            .finalize()
            .into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// The three headers of one delivery attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> WebhookHeaders {
        WebhookHeaders {
            id: id.to_owned(),
            timestamp: timestamp.to_string(),
            signature: self.signature(id, timestamp, body),
        }
    }

    /// Checks a delivery as a receiver does: the timestamp is within `tolerance` of `now`
    /// (either way, so an old message cannot be replayed) and one of the `v1` signatures
    /// is this secret's over the id, the timestamp and `body` exactly as received
    /// (compared in constant time).
    pub fn verify(
        &self,
        headers: &WebhookHeaders,
        body: &[u8],
        now: DateTime<Utc>,
        tolerance: Duration,
    ) -> Result<(), VerifyError> {
        if headers.id.is_empty() {
            return Err(VerifyError::MissingHeader(WEBHOOK_ID));
        }
        let timestamp: i64 = headers
            .timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        let skew = now.timestamp().abs_diff(timestamp);
        if skew > tolerance.as_secs() {
            return Err(VerifyError::OutsideTolerance {
                skew_seconds: skew,
                tolerance_seconds: tolerance.as_secs(),
            });
        }
        let signed = self.mac(&headers.id, headers.timestamp.trim(), body);
        let matched = headers
            .signature
            .split_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| STANDARD.decode(encoded).ok())
            .any(|tag| signed.clone().verify_slice(&tag).is_ok());
        if matched {
            Ok(())
        } else {
            Err(VerifyError::NoMatchingSignature)
        }
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecret({} bytes, redacted)", self.key.len())
    }
}

impl FromStr for WebhookSecret {
    type Err = SecretError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The Standard Webhooks headers of one delivery, as sent or as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHeaders {
    /// `webhook-id`: the event id, the receiver's key for deduplication.
    pub id: String,
    /// `webhook-timestamp`: Unix seconds, as text.
    pub timestamp: String,
    /// `webhook-signature`: one or more space-separated `v1,<base64>` signatures.
    pub signature: String,
}

impl WebhookHeaders {
    /// Reads the three headers through `get` (a lookup in any HTTP library's header
    /// map, by lower-case name).
    pub fn from_lookup<'a>(
        mut get: impl FnMut(&str) -> Option<&'a str>,
    ) -> Result<Self, VerifyError> {
        let mut read = |name: &'static str| {
            get(name)
                .map(str::to_owned)
                .ok_or(VerifyError::MissingHeader(name))
        };
        Ok(Self {
            id: read(WEBHOOK_ID)?,
            timestamp: read(WEBHOOK_TIMESTAMP)?,
            signature: read(WEBHOOK_SIGNATURE)?,
        })
    }

    /// The headers as `(name, value)` pairs, to set on a request.
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            (WEBHOOK_ID, &self.id),
            (WEBHOOK_TIMESTAMP, &self.timestamp),
            (WEBHOOK_SIGNATURE, &self.signature),
        ]
    }
}

/// Why a delivery did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the webhook-timestamp header is not a number of seconds")]
    BadTimestamp,
    #[error(
        "the timestamp is {skew_seconds} s away from now, beyond the {tolerance_seconds} s tolerated"
    )]
    OutsideTolerance {
        skew_seconds: u64,
        tolerance_seconds: u64,
    },
    #[error("no v1 signature in webhook-signature matches the secret")]
    NoMatchingSignature,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    // The reference vector of the Standard Webhooks libraries (svix-webhooks,
    // go/webhook_test.go; standard-webhooks' own test suites use the same).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0).unwrap()
    }

    fn reference() -> WebhookHeaders {
        WebhookHeaders {
            id: ID.into(),
            timestamp: TIMESTAMP.to_string(),
            signature: SIGNATURE.into(),
        }
    }

    #[test]
    fn signing_the_reference_message_gives_the_reference_signature() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(secret.signature(ID, TIMESTAMP, BODY), SIGNATURE);
        assert_eq!(secret.sign(ID, TIMESTAMP, BODY), reference());
        assert_eq!(secret.expose(), SECRET);
    }

    #[test]
    fn the_reference_message_verifies_and_any_change_does_not() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let now = at(TIMESTAMP + 10);
        assert_eq!(
            secret.verify(&reference(), BODY, now, DEFAULT_TOLERANCE),
            Ok(())
        );

        let body = br#"{"test": 2432232315}"#;
        assert_eq!(
            secret.verify(&reference(), body, now, DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );
        let other_id = WebhookHeaders {
            id: "msg_other".into(),
            ..reference()
        };
        assert_eq!(
            secret.verify(&other_id, BODY, now, DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );
        // Signed at another time: the timestamp is part of what is signed.
        let moved = WebhookHeaders {
            timestamp: (TIMESTAMP + 1).to_string(),
            ..reference()
        };
        assert_eq!(
            secret.verify(&moved, BODY, now, DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );
        let other_secret = WebhookSecret::from_key(vec![7; 32]).unwrap();
        assert_eq!(
            other_secret.verify(&reference(), BODY, now, DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let rotated = WebhookHeaders {
            signature: format!("v1,bm90IGl0 v2,whatever {SIGNATURE}"),
            ..reference()
        };
        assert_eq!(
            secret.verify(&rotated, BODY, at(TIMESTAMP), DEFAULT_TOLERANCE),
            Ok(())
        );
        let unversioned = WebhookHeaders {
            signature: SIGNATURE.trim_start_matches("v1,").into(),
            ..reference()
        };
        assert_eq!(
            secret.verify(&unversioned, BODY, at(TIMESTAMP), DEFAULT_TOLERANCE),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_refused_both_ways() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let five_minutes = DEFAULT_TOLERANCE.as_secs() as i64;
        for now in [TIMESTAMP + five_minutes, TIMESTAMP - five_minutes] {
            assert_eq!(
                secret.verify(&reference(), BODY, at(now), DEFAULT_TOLERANCE),
                Ok(())
            );
        }
        for now in [TIMESTAMP + five_minutes + 1, TIMESTAMP - five_minutes - 1] {
            assert_eq!(
                secret.verify(&reference(), BODY, at(now), DEFAULT_TOLERANCE),
                Err(VerifyError::OutsideTolerance {
                    skew_seconds: 301,
                    tolerance_seconds: 300
                })
            );
        }
        let garbled = WebhookHeaders {
            timestamp: "yesterday".into(),
            ..reference()
        };
        assert_eq!(
            secret.verify(&garbled, BODY, at(TIMESTAMP), DEFAULT_TOLERANCE),
            Err(VerifyError::BadTimestamp)
        );
    }

    #[test]
    fn headers_are_read_by_name_and_a_missing_one_is_named() {
        let sent = WebhookSecret::parse(SECRET)
            .unwrap()
            .sign(ID, TIMESTAMP, BODY);
        let pairs = sent.pairs();
        let read = WebhookHeaders::from_lookup(|name| {
            pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        })
        .unwrap();
        assert_eq!(read, sent);
        let missing = WebhookHeaders::from_lookup(|name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name && name != WEBHOOK_SIGNATURE)
                .map(|(_, v)| *v)
        });
        assert_eq!(missing, Err(VerifyError::MissingHeader(WEBHOOK_SIGNATURE)));
    }

    #[test]
    fn malformed_secrets_are_refused_without_echoing_them() {
        let cases = [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                SecretError::MissingPrefix,
            ),
            ("whsec_not base64!", SecretError::NotBase64),
            ("whsec_c2hvcnQ=", SecretError::Length(5)),
            (
                &format!("whsec_{}", STANDARD.encode([1u8; 65])),
                SecretError::Length(65),
            ),
        ];
        for (text, expected) in cases {
            let err = WebhookSecret::parse(text).unwrap_err();
            assert_eq!(err, expected, "{text}");
            let message = err.to_string();
            assert!(
                !message.contains(text.trim_start_matches("whsec_")),
                "{message}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let secret = WebhookSecret::parse(SECRET).unwrap();
        let shown = format!("{secret:?}");
        assert_eq!(shown, "WebhookSecret(24 bytes, redacted)");
        assert!(!shown.contains("MfKQ"));
    }

    #[test]
    fn generated_secrets_round_trip_and_differ() {
        let one = WebhookSecret::generate();
        let two = WebhookSecret::generate();
        assert_ne!(one, two);
        assert_eq!(WebhookSecret::parse(&one.expose()).unwrap(), one);
    }
}
