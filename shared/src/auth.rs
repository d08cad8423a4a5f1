//! Authentication: HS256 JWTs whose `sub` is the user id and whose `exp` is honoured.
//! The same [`TokenAuthority`] checks REST calls, WebSocket upgrades and in-band `auth`
//! frames, and mints tokens for `docfan token`.

use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::UserId;

/// The shortest secret accepted, in bytes: HS256 with less is guessable.
pub const MIN_SECRET_BYTES: usize = 32;
/// The file in the data directory that holds a generated secret.
pub const SECRET_FILE: &str = "jwt-secret";
/// How far ahead of our clock a token's `nbf` and `iat` may be (the issuer's clock may
/// run a little fast).
pub const CLOCK_LEEWAY: TimeDelta = TimeDelta::seconds(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Who a verified token speaks for, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
}

/// Signs and verifies tokens with one shared secret.
#[derive(Clone)]
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenAuthority { .. }")
    }
}

impl TokenAuthority {
    /// Errors when the secret is shorter than [`MIN_SECRET_BYTES`].
    pub fn new(secret: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "the JWT secret must be at least {MIN_SECRET_BYTES} bytes long"
        );
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the caller's clock below, so tests control time.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| s.to_string()).collect();
        validation.leeway = 0;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// An authority with a random secret, for a service that only pushes to
    /// connections and never verifies a token (the fan-out's notifier in Lambda).
    pub fn with_random_secret() -> Self {
        let secret: [u8; MIN_SECRET_BYTES] = rand::random();
        Self::new(&secret).expect("the secret has the minimum length")
    }

    /// A token for `user`, valid for `ttl` from `now`.
    pub fn issue(&self, user: &UserId, ttl: TimeDelta, now: DateTime<Utc>) -> String {
        let claims = Claims {
            sub: user.as_str().to_owned(),
            exp: (now + ttl).timestamp(),
            iat: Some(now.timestamp()),
            nbf: None,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Verifies signature, algorithm (HS256 only: `none` and others are refused), expiry
    /// against `now`, that `nbf` has come and `iat` is not in the future (both with
    /// [`CLOCK_LEEWAY`]), and that `sub` is a valid user id.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > 8 * 1024 {
            return Err(AuthError::Invalid("token too long".into()));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let expires_at = DateTime::from_timestamp(data.claims.exp, 0)
            .ok_or_else(|| AuthError::Invalid("exp out of range".into()))?;
        if expires_at <= now {
            return Err(AuthError::Expired);
        }
        let latest = (now + CLOCK_LEEWAY).timestamp();
        if data.claims.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(AuthError::Invalid(
                "the token is not valid yet (nbf)".into(),
            ));
        }
        if data.claims.iat.is_some_and(|iat| iat > latest) {
            return Err(AuthError::Invalid(
                "the token is issued in the future (iat)".into(),
            ));
        }
        let user = UserId::parse(data.claims.sub)
            .map_err(|e| AuthError::Invalid(format!("sub: {}", e.message)))?;
        Ok(Identity { user, expires_at })
    }
}

/// Reads the secret from `data_dir/jwt-secret`, creating it (32 random bytes, hex, mode
/// 0600) when absent. Returns the secret and whether it was just created.
pub fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<(Vec<u8>, bool)> {
    use anyhow::Context;
    use std::io::Write;

    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(existing) => {
            let secret = existing.trim().as_bytes().to_vec();
            anyhow::ensure!(
                secret.len() >= MIN_SECRET_BYTES,
                "{} holds fewer than {MIN_SECRET_BYTES} bytes",
                path.display()
            );
            return Ok((secret, false));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let bytes: [u8; 32] = rand::random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            Ok((secret.into_bytes(), true))
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_secret(data_dir),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn authority() -> TokenAuthority {
        TokenAuthority::new(&[7u8; 32]).unwrap()
    }

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let now = Utc::now();
        let ann = UserId::parse("ann").unwrap();
        let token = authority().issue(&ann, TimeDelta::minutes(5), now);
        assert_eq!(authority().verify(&token, now).unwrap().user, ann);
        assert_eq!(
            authority().verify(&token, now + TimeDelta::minutes(5)),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn hostile_tokens_are_refused() {
        let now = Utc::now();
        let ann = UserId::parse("ann").unwrap();
        let other = TokenAuthority::new(&[8u8; 32]).unwrap();
        let forged = other.issue(&ann, TimeDelta::minutes(5), now);
        assert!(matches!(
            authority().verify(&forged, now),
            Err(AuthError::Invalid(_))
        ));

        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"ann","exp":{}}}"#, now.timestamp() + 60));
        let unsigned = format!("{header}.{claims}.");
        assert!(matches!(
            authority().verify(&unsigned, now),
            Err(AuthError::Invalid(_))
        ));

        for junk in ["", "a.b.c", "....", "not a token", &"x".repeat(9000)] {
            assert!(authority().verify(junk, now).is_err(), "{junk:?} accepted");
        }
        assert!(TokenAuthority::new(b"short").is_err());
    }

    fn signed(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[7u8; 32]),
        )
        .unwrap()
    }

    #[test]
    fn nbf_and_iat_in_the_future_are_refused_beyond_the_leeway() {
        let now = Utc::now();
        let exp = now.timestamp() + 3600;
        let at = |offset: i64| now.timestamp() + offset;
        for (claims, accepted) in [
            (
                serde_json::json!({"sub": "ann", "exp": exp, "nbf": at(-10)}),
                true,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "nbf": at(60)}),
                true,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "nbf": at(61)}),
                false,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "nbf": at(86_400)}),
                false,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "iat": at(60)}),
                true,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "iat": at(61)}),
                false,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "iat": at(365 * 86_400)}),
                false,
            ),
        ] {
            let verified = authority().verify(&signed(claims.clone()), now);
            assert_eq!(verified.is_ok(), accepted, "{claims}: {verified:?}");
        }
    }

    #[test]
    fn secrets_are_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = load_or_create_secret(dir.path()).unwrap();
        assert!(created);
        let (again, created) = load_or_create_secret(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first, again);
    }
}
