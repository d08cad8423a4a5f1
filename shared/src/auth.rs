//! Authentication: JWTs whose `sub` is the user id and whose `exp` is honoured, signed
//! either with a shared HS256 secret (the one-command default: `docfan serve` makes one,
//! `docfan token` signs with it) or by an OpenID Connect provider, whose public keys come
//! from its JWKS URL (RS256, ES256, EdDSA; see [`provider`]).
//!
//! One [`TokenAuthority`] checks REST calls, WebSocket upgrades and in-band `auth`
//! frames in every driver (the local server and the Lambda functions); each driver builds
//! it from the same environment ([`TokenConfig::from_env`]). The claims policy is the
//! same for both kinds of key: `exp` against the caller's clock, `nbf` and `iat` with
//! [`CLOCK_LEEWAY`], the issuer and audience when configured, and an optional maximum
//! lifetime.

pub mod provider;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::UserId;
pub use provider::ProviderConfig;

/// The shortest secret accepted, in bytes: HS256 with less is guessable.
pub const MIN_SECRET_BYTES: usize = 32;
/// The file in the data directory that holds a generated secret.
pub const SECRET_FILE: &str = "jwt-secret";
/// How far ahead of our clock a token's `nbf` and `iat` may be (the issuer's clock may
/// run a little fast).
pub const CLOCK_LEEWAY: TimeDelta = TimeDelta::seconds(60);
/// The longest token looked at; longer ones are refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The environment variables that configure token verification, read the same way by
/// `docfan serve` and by the Lambda functions.
pub mod env {
    /// The HS256 secret (32 bytes or more).
    pub const SECRET: &str = "DOCFAN_JWT_SECRET";
    /// An OpenID Connect provider's JWKS URL; when set, only its keys verify tokens.
    pub const JWKS_URL: &str = "DOCFAN_JWT_JWKS_URL";
    /// The `iss` every token must carry.
    pub const ISSUER: &str = "DOCFAN_JWT_ISSUER";
    /// A value the token's `aud` must hold.
    pub const AUDIENCE: &str = "DOCFAN_JWT_AUDIENCE";
    /// The longest lifetime (`exp` − `iat`) accepted, in seconds.
    pub const MAX_LIFETIME_SECS: &str = "DOCFAN_JWT_MAX_LIFETIME_SECS";
    /// The shortest time between two fetches of the provider's keys, in seconds.
    pub const JWKS_MIN_REFRESH_SECS: &str = "DOCFAN_JWT_JWKS_MIN_REFRESH_SECS";
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token cannot be checked now: the identity provider's keys have never been
    /// fetched (it is unreachable or answers with no usable key). Not the caller's
    /// fault: 503, retry.
    #[error("the identity provider's keys are unavailable: {0}")]
    Unavailable(String),
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
    // Checked by jsonwebtoken's validation; written by `issue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<serde_json::Value>,
}

/// What signs the tokens a server accepts.
#[derive(Clone)]
pub enum KeySource {
    /// HS256 with a shared secret: the server verifies what `docfan token` signs.
    Secret(Vec<u8>),
    /// An OpenID Connect provider's public keys, fetched from its JWKS URL. HS256
    /// tokens are then refused: the provider is the only issuer.
    Provider(ProviderConfig),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Secret(_) => f.write_str("Secret(..)"),
            KeySource::Provider(config) => f.debug_tuple("Provider").field(config).finish(),
        }
    }
}

/// How tokens are verified: the keys and the claims every token must satisfy.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub keys: KeySource,
    /// When set, `iss` must be present and equal to it.
    pub issuer: Option<String>,
    /// When set, `aud` must be present and hold it; when unset, `aud` is not checked.
    pub audience: Option<String>,
    /// When set, a token whose `exp` is further than this from its `iat` (from now, when
    /// it has no `iat`) is refused. Unset: no limit beyond `exp`.
    pub max_lifetime: Option<TimeDelta>,
}

impl TokenConfig {
    /// HS256 with `secret`, no issuer, audience or lifetime checks.
    pub fn secret(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            keys: KeySource::Secret(secret.into()),
            issuer: None,
            audience: None,
            max_lifetime: None,
        }
    }

    /// The keys of the provider at `jwks_url`, with the default refresh bound.
    pub fn provider(jwks_url: impl Into<String>) -> Self {
        Self {
            keys: KeySource::Provider(ProviderConfig::new(jwks_url)),
            issuer: None,
            audience: None,
            max_lifetime: None,
        }
    }

    /// Reads the [`env`] variables. With `DOCFAN_JWT_JWKS_URL`, the provider's keys;
    /// otherwise HS256 with `DOCFAN_JWT_SECRET`, or, when that is unset or empty, with
    /// what `secret` returns (the data directory's secret for `docfan serve`; an error
    /// in Lambda).
    pub fn from_env(secret: impl FnOnce() -> anyhow::Result<Vec<u8>>) -> anyhow::Result<Self> {
        Self::from_vars(|name| std::env::var(name).ok(), secret)
    }

    /// [`from_env`](Self::from_env) for a process with no data directory (the Lambda
    /// functions, `serve` on AWS): without a provider, `DOCFAN_JWT_SECRET` is required.
    pub fn from_env_without_data_dir() -> anyhow::Result<Self> {
        Self::from_env(|| {
            anyhow::bail!(
                "{} must be set (or {} for an identity provider)",
                env::SECRET,
                env::JWKS_URL
            )
        })
    }

    /// [`from_env`](Self::from_env) over any source of variables; empty values count as
    /// unset.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        secret: impl FnOnce() -> anyhow::Result<Vec<u8>>,
    ) -> anyhow::Result<Self> {
        // The secret as given; every other setting trimmed.
        let raw = |name: &str| var(name).filter(|v| !v.is_empty());
        let setting = |name: &str| {
            raw(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let seconds = |name: &str| -> anyhow::Result<Option<i64>> {
            setting(name)
                .map(|raw| {
                    raw.parse::<u32>().map(i64::from).with_context(|| {
                        format!("{name} must be a whole number of seconds, not `{raw}`")
                    })
                })
                .transpose()
        };
        let keys = match setting(env::JWKS_URL) {
            Some(url) => {
                let mut config = ProviderConfig::new(url);
                if let Some(secs) = seconds(env::JWKS_MIN_REFRESH_SECS)? {
                    config.min_refresh_interval = TimeDelta::seconds(secs);
                }
                KeySource::Provider(config)
            }
            None => KeySource::Secret(match raw(env::SECRET) {
                Some(value) => value.into_bytes(),
                None => secret()?,
            }),
        };
        let max_lifetime = match seconds(env::MAX_LIFETIME_SECS)? {
            Some(0) => anyhow::bail!("{} must be at least 1 second", env::MAX_LIFETIME_SECS),
            other => other.map(TimeDelta::seconds),
        };
        Ok(Self {
            keys,
            issuer: setting(env::ISSUER),
            audience: setting(env::AUDIENCE),
            max_lifetime,
        })
    }
}

/// Signs (HS256 only) and verifies tokens. Cheap to clone: clones share one key cache.
#[derive(Clone)]
pub struct TokenAuthority {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
    max_lifetime: Option<TimeDelta>,
    /// One validation per accepted algorithm, so a token's header cannot pick another.
    validations: Vec<(Algorithm, Validation)>,
}

enum Keys {
    Secret {
        encoding: EncodingKey,
        decoding: DecodingKey,
    },
    Provider(provider::ProviderKeys),
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenAuthority { .. }")
    }
}

impl TokenAuthority {
    /// HS256 with `secret`. Errors when the secret is shorter than [`MIN_SECRET_BYTES`].
    pub fn new(secret: &[u8]) -> anyhow::Result<Self> {
        Self::from_config(TokenConfig::secret(secret))
    }

    /// An authority with a random secret, for a service that only pushes to
    /// connections and never verifies a token (the fan-out's notifier in Lambda).
    pub fn with_random_secret() -> Self {
        let secret: [u8; MIN_SECRET_BYTES] = rand::random();
        Self::new(&secret).expect("the secret has the minimum length")
    }

    /// The authority `config` describes. Errors on a short secret or an unusable JWKS
    /// URL (not https, unless on a loopback address). Fetches nothing yet: see
    /// [`load_keys`](Self::load_keys).
    pub fn from_config(config: TokenConfig) -> anyhow::Result<Self> {
        let source = provider::HttpKeySet::new;
        Self::with_key_source(config, |url| Ok(Arc::new(source(url)?)))
    }

    /// As [`from_config`](Self::from_config), with the provider's keys fetched through
    /// `source` (tests count and script the fetches).
    pub fn with_key_source(
        config: TokenConfig,
        source: impl FnOnce(&str) -> anyhow::Result<Arc<dyn provider::KeySetSource>>,
    ) -> anyhow::Result<Self> {
        let (keys, algorithms) = match config.keys {
            KeySource::Secret(secret) => {
                anyhow::ensure!(
                    secret.len() >= MIN_SECRET_BYTES,
                    "the JWT secret must be at least {MIN_SECRET_BYTES} bytes long"
                );
                let keys = Keys::Secret {
                    encoding: EncodingKey::from_secret(&secret),
                    decoding: DecodingKey::from_secret(&secret),
                };
                (keys, vec![Algorithm::HS256])
            }
            KeySource::Provider(provider) => {
                let source = source(&provider.jwks_url)?;
                let keys = Keys::Provider(provider::ProviderKeys::new(source, &provider));
                (keys, provider::ALGORITHMS.to_vec())
            }
        };
        let validations = algorithms
            .into_iter()
            .map(|alg| {
                (
                    alg,
                    validation(alg, config.issuer.as_deref(), config.audience.as_deref()),
                )
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                keys,
                issuer: config.issuer,
                audience: config.audience,
                max_lifetime: config.max_lifetime,
                validations,
            }),
        })
    }

    /// The authority for a server or function at start: built from `config`, what
    /// verifies tokens logged, and with an identity provider its keys fetched now, so the
    /// first request does not wait and a wrong URL shows at once (a failure is logged,
    /// not fatal: the keys are fetched again when a token needs them).
    pub async fn start(config: TokenConfig, now: DateTime<Utc>) -> anyhow::Result<Self> {
        let tokens = Self::from_config(config)?;
        tracing::info!("tokens are verified with {}", tokens.describe());
        if let Keys::Provider(_) = &tokens.inner.keys
            && tokens.inner.audience.is_none()
        {
            tracing::warn!(
                "{} is not set: tokens the identity provider issued for any application are accepted",
                env::AUDIENCE
            );
        }
        if let Err(e) = tokens.load_keys(now).await {
            tracing::warn!(error = %format!("{e:#}"), "the identity provider's keys could not be fetched at start; requests are answered 503 until they are");
        }
        Ok(tokens)
    }

    /// Whether this authority signs tokens itself (HS256) rather than verifying a
    /// provider's.
    pub fn can_issue(&self) -> bool {
        matches!(self.inner.keys, Keys::Secret { .. })
    }

    /// Where the keys come from, for the startup log: `HS256` or the JWKS URL.
    pub fn describe(&self) -> String {
        match &self.inner.keys {
            Keys::Secret { .. } => "HS256 with the shared secret".to_owned(),
            Keys::Provider(keys) => format!("the identity provider's keys at {}", keys.url()),
        }
    }

    /// Fetches the provider's keys now (a server does this at start, so the first
    /// request does not wait and a wrong URL shows in the log); the number of usable
    /// keys. Nothing to do with a shared secret.
    pub async fn load_keys(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        match &self.inner.keys {
            Keys::Secret { .. } => Ok(0),
            Keys::Provider(keys) => keys.load(now).await,
        }
    }

    /// A token for `user`, valid for `ttl` from `now`, carrying the configured issuer
    /// and audience.
    ///
    /// # Panics
    /// When the authority verifies a provider's tokens ([`can_issue`](Self::can_issue)
    /// is false): it holds no key to sign with.
    pub fn issue(&self, user: &UserId, ttl: TimeDelta, now: DateTime<Utc>) -> String {
        let Keys::Secret { encoding, .. } = &self.inner.keys else {
            panic!("tokens come from the identity provider: this authority cannot sign");
        };
        let claims = Claims {
            sub: user.as_str().to_owned(),
            exp: (now + ttl).timestamp(),
            iat: Some(now.timestamp()),
            nbf: None,
            iss: self.inner.issuer.clone(),
            aud: self.inner.audience.clone().map(serde_json::Value::String),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Verifies the signature and algorithm (HS256 with a secret; RS256, ES256 or EdDSA
    /// with a key the provider publishes under the token's `kid`; `none` and everything
    /// else refused), expiry against `now`, that `nbf` has come and `iat` is not in the
    /// future (both with [`CLOCK_LEEWAY`]), the issuer, audience and maximum lifetime when
    /// configured, and that `sub` is a valid user id.
    ///
    /// With a provider, a `kid` the cache does not hold makes it fetch the provider's
    /// keys again, at most once per [`ProviderConfig::min_refresh_interval`]; with a
    /// secret it never waits.
    pub async fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid("token too long".into()));
        }
        let claims = match &self.inner.keys {
            Keys::Secret { decoding, .. } => self.decode(token, decoding, Algorithm::HS256)?,
            Keys::Provider(keys) => {
                let header = jsonwebtoken::decode_header(token)
                    .map_err(|e| AuthError::Invalid(e.to_string()))?;
                if !provider::ALGORITHMS.contains(&header.alg) {
                    return Err(AuthError::Invalid(format!(
                        "the algorithm {:?} is not accepted (RS256, ES256 or EdDSA)",
                        header.alg
                    )));
                }
                let key = keys.key_for(header.kid.as_deref(), header.alg, now).await?;
                self.decode(token, &key, header.alg)?
            }
        };
        self.check(claims, now)
    }

    fn decode(&self, token: &str, key: &DecodingKey, alg: Algorithm) -> Result<Claims, AuthError> {
        let (_, validation) = self
            .inner
            .validations
            .iter()
            .find(|(accepted, _)| *accepted == alg)
            .ok_or_else(|| AuthError::Invalid(format!("the algorithm {alg:?} is not accepted")))?;
        jsonwebtoken::decode::<Claims>(token, key, validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// The claims policy beyond what jsonwebtoken's validation checks.
    fn check(&self, claims: Claims, now: DateTime<Utc>) -> Result<Identity, AuthError> {
        let expires_at = DateTime::from_timestamp(claims.exp, 0)
            .ok_or_else(|| AuthError::Invalid("exp out of range".into()))?;
        if expires_at <= now {
            return Err(AuthError::Expired);
        }
        let latest = (now + CLOCK_LEEWAY).timestamp();
        if claims.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(AuthError::Invalid(
                "the token is not valid yet (nbf)".into(),
            ));
        }
        if claims.iat.is_some_and(|iat| iat > latest) {
            return Err(AuthError::Invalid(
                "the token is issued in the future (iat)".into(),
            ));
        }
        if let Some(max) = self.inner.max_lifetime {
            let from = claims.iat.unwrap_or_else(|| now.timestamp());
            if claims.exp.saturating_sub(from) > max.num_seconds() {
                return Err(AuthError::Invalid(format!(
                    "the token lives longer than the {} seconds this server accepts (exp - iat)",
                    max.num_seconds()
                )));
            }
        }
        let user = UserId::parse(claims.sub)
            .map_err(|e| AuthError::Invalid(format!("sub: {}", e.message)))?;
        Ok(Identity { user, expires_at })
    }
}

/// jsonwebtoken's checks for one algorithm: signature and algorithm, `sub` and `exp`
/// present, the issuer and audience when configured (then present too). Time is checked
/// in [`TokenAuthority::check`] against the caller's clock, so tests control it.
fn validation(alg: Algorithm, issuer: Option<&str>, audience: Option<&str>) -> Validation {
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.leeway = 0;
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// Reads the secret from `data_dir/jwt-secret`, creating it (32 random bytes, hex, mode
/// 0600) when absent. Returns the secret and whether it was just created.
pub fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<(Vec<u8>, bool)> {
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

    fn configured(edit: impl FnOnce(&mut TokenConfig)) -> TokenAuthority {
        let mut config = TokenConfig::secret([7u8; 32]);
        edit(&mut config);
        TokenAuthority::from_config(config).unwrap()
    }

    #[tokio::test]
    async fn issued_tokens_verify_until_they_expire() {
        let now = Utc::now();
        let ann = UserId::parse("ann").unwrap();
        let token = authority().issue(&ann, TimeDelta::minutes(5), now);
        assert_eq!(authority().verify(&token, now).await.unwrap().user, ann);
        assert_eq!(
            authority()
                .verify(&token, now + TimeDelta::minutes(5))
                .await,
            Err(AuthError::Expired)
        );
    }

    #[tokio::test]
    async fn hostile_tokens_are_refused() {
        let now = Utc::now();
        let ann = UserId::parse("ann").unwrap();
        let other = TokenAuthority::new(&[8u8; 32]).unwrap();
        let forged = other.issue(&ann, TimeDelta::minutes(5), now);
        assert!(matches!(
            authority().verify(&forged, now).await,
            Err(AuthError::Invalid(_))
        ));

        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"ann","exp":{}}}"#, now.timestamp() + 60));
        let unsigned = format!("{header}.{claims}.");
        assert!(matches!(
            authority().verify(&unsigned, now).await,
            Err(AuthError::Invalid(_))
        ));

        for junk in ["", "a.b.c", "....", "not a token", &"x".repeat(9000)] {
            assert!(
                authority().verify(junk, now).await.is_err(),
                "{junk:?} accepted"
            );
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

    #[tokio::test]
    async fn nbf_and_iat_in_the_future_are_refused_beyond_the_leeway() {
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
            let verified = authority().verify(&signed(claims.clone()), now).await;
            assert_eq!(verified.is_ok(), accepted, "{claims}: {verified:?}");
        }
    }

    #[tokio::test]
    async fn issuer_and_audience_are_checked_when_configured() {
        let now = Utc::now();
        let exp = now.timestamp() + 3600;
        let checking = configured(|c| {
            c.issuer = Some("https://id.example".into());
            c.audience = Some("docfan".into());
        });
        for (claims, accepted) in [
            (
                serde_json::json!({"sub": "ann", "exp": exp, "iss": "https://id.example", "aud": "docfan"}),
                true,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "iss": "https://id.example", "aud": ["other", "docfan"]}),
                true,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "iss": "https://evil.example", "aud": "docfan"}),
                false,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "iss": "https://id.example", "aud": "other"}),
                false,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "aud": "docfan"}),
                false,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "iss": "https://id.example"}),
                false,
            ),
            (
                serde_json::json!({"sub": "ann", "exp": exp, "iss": 42, "aud": "docfan"}),
                false,
            ),
        ] {
            let verified = checking.verify(&signed(claims.clone()), now).await;
            assert_eq!(verified.is_ok(), accepted, "{claims}: {verified:?}");
        }
        // Unconfigured, neither is looked at.
        let token = signed(
            serde_json::json!({"sub": "ann", "exp": exp, "iss": "anyone", "aud": "anything"}),
        );
        assert!(authority().verify(&token, now).await.is_ok());
        // What `issue` signs carries what the authority checks.
        let ann = UserId::parse("ann").unwrap();
        let issued = checking.issue(&ann, TimeDelta::minutes(5), now);
        assert_eq!(checking.verify(&issued, now).await.unwrap().user, ann);
        assert!(authority().verify(&issued, now).await.is_ok());
    }

    #[tokio::test]
    async fn a_maximum_lifetime_refuses_longer_tokens() {
        let now = Utc::now();
        let limited = configured(|c| c.max_lifetime = Some(TimeDelta::hours(1)));
        let ann = UserId::parse("ann").unwrap();
        let hour = limited.issue(&ann, TimeDelta::hours(1), now);
        assert!(limited.verify(&hour, now).await.is_ok());
        let day = limited.issue(&ann, TimeDelta::days(1), now);
        let refused = limited.verify(&day, now).await;
        assert!(
            matches!(&refused, Err(AuthError::Invalid(why)) if why.contains("3600 seconds")),
            "{refused:?}"
        );
        // Without `iat`, the time left counts.
        let exp = now.timestamp();
        let no_iat = |exp: i64| signed(serde_json::json!({"sub": "ann", "exp": exp}));
        assert!(limited.verify(&no_iat(exp + 3600), now).await.is_ok());
        assert!(limited.verify(&no_iat(exp + 3601), now).await.is_err());
        // Off by default.
        assert!(authority().verify(&day, now).await.is_ok());
    }

    #[test]
    fn configuration_comes_from_the_environment() {
        fn vars(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
            let pairs = pairs.to_vec();
            move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        }
        let fallback = || Ok(vec![1u8; 32]);
        let config = TokenConfig::from_vars(vars(&[]), fallback).unwrap();
        assert!(matches!(config.keys, KeySource::Secret(ref s) if s == &vec![1u8; 32]));
        assert_eq!(
            (config.issuer, config.audience, config.max_lifetime),
            (None, None, None)
        );

        let config = TokenConfig::from_vars(
            vars(&[
                (env::JWKS_URL, "https://id.example/jwks"),
                (env::ISSUER, "https://id.example"),
                (env::AUDIENCE, "docfan"),
                (env::MAX_LIFETIME_SECS, "3600"),
                (env::JWKS_MIN_REFRESH_SECS, "5"),
            ]),
            || anyhow::bail!("the secret is not read with a provider"),
        )
        .unwrap();
        let KeySource::Provider(provider) = &config.keys else {
            panic!("{config:?}");
        };
        assert_eq!(provider.jwks_url, "https://id.example/jwks");
        assert_eq!(provider.min_refresh_interval, TimeDelta::seconds(5));
        assert_eq!(config.issuer.as_deref(), Some("https://id.example"));
        assert_eq!(config.audience.as_deref(), Some("docfan"));
        assert_eq!(config.max_lifetime, Some(TimeDelta::hours(1)));

        for bad in [
            (env::MAX_LIFETIME_SECS, "0"),
            (env::MAX_LIFETIME_SECS, "1h"),
            (env::MAX_LIFETIME_SECS, "-5"),
        ] {
            assert!(
                TokenConfig::from_vars(vars(&[bad]), fallback).is_err(),
                "{bad:?}"
            );
        }
        // A plain-http provider is refused unless it is on this machine.
        for (url, ok) in [
            ("http://id.example/jwks", false),
            ("ftp://id.example/jwks", false),
            ("not a url", false),
            ("http://127.0.0.1:9/jwks", true),
            ("http://[::1]:9/jwks", true),
            ("http://localhost:9/jwks", true),
            ("https://id.example/jwks", true),
        ] {
            let built = TokenAuthority::from_config(TokenConfig::provider(url));
            assert_eq!(built.is_ok(), ok, "{url}: {:?}", built.err());
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
