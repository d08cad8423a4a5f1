//! An OpenID Connect provider's signing keys: fetched from its JWKS URL (RFC 7517),
//! cached, and fetched again when a token names a key the cache does not hold (the
//! provider has rotated its keys) or when the cache is older than [`MAX_KEY_AGE`] (so a
//! key the provider withdraws stops being accepted).
//!
//! Fetches are bounded: at most one per [`ProviderConfig::min_refresh_interval`],
//! whatever tokens arrive, and one at a time (tokens that need the keys wait for the
//! fetch under way rather than start another). A flood of made-up `kid`s is answered
//! 401 from the cache without reaching the provider. A failed fetch keeps the keys
//! already held.
//!
//! [`KeySetSource`] is the port the cache fetches through; [`HttpKeySet`] is its HTTP
//! adapter (https, or http on a loopback address for tests and sidecars).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::AuthError;

/// The algorithms a provider's tokens may use.
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
/// The default shortest time between two fetches.
pub const DEFAULT_MIN_REFRESH: TimeDelta = TimeDelta::seconds(30);
/// Keys older than this are fetched again before the next token is checked with them.
pub const MAX_KEY_AGE: TimeDelta = TimeDelta::minutes(10);
/// How long one fetch may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set read.
pub const MAX_KEY_SET_BYTES: usize = 256 * 1024;
/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Where a provider's keys are and how often they may be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// The provider's JWKS URL (`jwks_uri` in its OpenID configuration).
    pub jwks_url: String,
    /// The shortest time between two fetches: a token with an unknown `kid` within it
    /// is refused without one. Default: [`DEFAULT_MIN_REFRESH`]. Zero fetches for every
    /// unknown `kid` (one at a time): for tests, not for a server facing the internet.
    pub min_refresh_interval: TimeDelta,
}

impl ProviderConfig {
    pub fn new(jwks_url: impl Into<String>) -> Self {
        Self {
            jwks_url: jwks_url.into(),
            min_refresh_interval: DEFAULT_MIN_REFRESH,
        }
    }
}

/// Fetches a provider's key set.
#[async_trait]
pub trait KeySetSource: Send + Sync + 'static {
    /// The key set document as served (JSON `{"keys":[…]}`). Any failure (unreachable,
    /// a status other than 2xx, a body over [`MAX_KEY_SET_BYTES`]) is an error; the
    /// cache then keeps the keys it has.
    async fn fetch(&self) -> anyhow::Result<Vec<u8>>;
}

/// [`KeySetSource`] over HTTP.
pub struct HttpKeySet {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl HttpKeySet {
    /// Errors unless `url` is https, or http to a loopback address.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(url)
            .with_context(|| format!("the JWKS URL `{url}` is not a URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            other => anyhow::bail!(
                "the JWKS URL must be https (plain http only on a loopback address), not {other}: {url}"
            ),
        }
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            // Redirects only to https: a redirect must not downgrade where keys come from.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 3 {
                    attempt.error("too many redirects")
                } else if attempt.url().scheme() != "https" {
                    attempt.stop()
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .context("building the JWKS client")?;
        Ok(Self { client, url })
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[async_trait]
impl KeySetSource for HttpKeySet {
    async fn fetch(&self) -> anyhow::Result<Vec<u8>> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .with_context(|| format!("fetching {}", self.url))?;
        anyhow::ensure!(
            response.status().is_success(),
            "{} answered {}",
            self.url,
            response.status()
        );
        if response
            .content_length()
            .is_some_and(|length| length > MAX_KEY_SET_BYTES as u64)
        {
            anyhow::bail!(
                "{}: the key set is over {MAX_KEY_SET_BYTES} bytes",
                self.url
            );
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("reading {}", self.url))?
        {
            anyhow::ensure!(
                body.len() + chunk.len() <= MAX_KEY_SET_BYTES,
                "{}: the key set is over {MAX_KEY_SET_BYTES} bytes",
                self.url
            );
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A key is found by the token's `kid` and `alg` together, so a token cannot use a key
/// with another algorithm than the one it was published for.
type KeyId = (Option<String>, Algorithm);

#[derive(Default)]
struct Cache {
    keys: HashMap<KeyId, Arc<DecodingKey>>,
    /// The last fetch that brought usable keys.
    fetched_at: Option<DateTime<Utc>>,
    /// The last fetch, whatever came of it.
    attempted_at: Option<DateTime<Utc>>,
}

impl Cache {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<DecodingKey>> {
        match kid {
            Some(kid) => self.keys.get(&(Some(kid.to_owned()), alg)).cloned(),
            // Without a `kid`, only a set with one key for the algorithm is unambiguous.
            None => {
                let mut candidates = self.keys.iter().filter(|((_, a), _)| *a == alg);
                match (candidates.next(), candidates.next()) {
                    (Some((_, key)), None) => Some(Arc::clone(key)),
                    _ => None,
                }
            }
        }
    }

    fn is_stale(&self, now: DateTime<Utc>) -> bool {
        self.fetched_at.is_none_or(|at| now - at >= MAX_KEY_AGE)
    }
}

/// The provider's keys, cached; see the module documentation.
pub(crate) struct ProviderKeys {
    source: Arc<dyn KeySetSource>,
    url: String,
    min_refresh: TimeDelta,
    cache: RwLock<Cache>,
    /// Held while fetching: one fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl ProviderKeys {
    pub fn new(source: Arc<dyn KeySetSource>, config: &ProviderConfig) -> Self {
        Self {
            source,
            url: config.jwks_url.clone(),
            min_refresh: config.min_refresh_interval.max(TimeDelta::zero()),
            cache: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fetches now, whatever the bound; the number of usable keys.
    pub async fn load(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let _fetching = self.fetching.lock().await;
        self.fetch(now).await
    }

    /// The key for a token's `kid` and `alg`.
    pub async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        now: DateTime<Utc>,
    ) -> Result<Arc<DecodingKey>, AuthError> {
        let (cached, stale) = {
            let cache = self.read();
            (cache.find(kid, alg), cache.is_stale(now))
        };
        if let Some(key) = cached {
            if !stale {
                return Ok(key);
            }
            // Old keys: this request fetches them again if no other is doing so (the
            // others go on with the cached keys meanwhile).
            let Ok(_fetching) = self.fetching.try_lock() else {
                return Ok(key);
            };
            if !self.may_fetch(now) {
                return Ok(key);
            }
            let _ = self.fetch(now).await;
            return self.read().find(kid, alg).ok_or_else(unknown_key);
        }
        // Unknown: wait for a fetch under way (it may bring the key), then fetch unless
        // one was made within the bound.
        let _fetching = self.fetching.lock().await;
        if let Some(key) = self.read().find(kid, alg) {
            return Ok(key);
        }
        if self.may_fetch(now) {
            let _ = self.fetch(now).await;
            if let Some(key) = self.read().find(kid, alg) {
                return Ok(key);
            }
        }
        if self.read().fetched_at.is_none() {
            return Err(AuthError::Unavailable(
                "they could not be fetched; retry shortly".into(),
            ));
        }
        Err(unknown_key())
    }

    fn may_fetch(&self, now: DateTime<Utc>) -> bool {
        // Either way: a clock that jumped back does not hold fetches off until it
        // catches up (requests racing each other differ by far less than the interval).
        self.read()
            .attempted_at
            .is_none_or(|at| (now - at).abs() >= self.min_refresh)
    }

    /// One fetch; call with `fetching` held.
    async fn fetch(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        self.cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .attempted_at = Some(now);
        let fetched = self
            .source
            .fetch()
            .await
            .and_then(|body| parse_key_set(&body));
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        match fetched {
            Ok(keys) => {
                let count = keys.len();
                tracing::info!(url = %self.url, keys = count, "fetched the identity provider's keys");
                cache.keys = keys;
                cache.fetched_at = Some(now);
                Ok(count)
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %format!("{e:#}"), "could not fetch the identity provider's keys; keeping those held");
                Err(e)
            }
        }
    }
}

fn unknown_key() -> AuthError {
    AuthError::Invalid(
        "the token's signing key (kid) is not one the identity provider publishes".into(),
    )
}

/// The usable signing keys of a key set document. Keys of other types, curves or
/// algorithms, encryption keys, short RSA keys and entries that do not parse are
/// skipped; a set with none left is an error (the cache keeps what it had).
fn parse_key_set(body: &[u8]) -> anyhow::Result<HashMap<KeyId, Arc<DecodingKey>>> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).context("the key set is not a JWKS document")?;
    let mut keys = HashMap::new();
    for entry in document.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry) else {
            continue;
        };
        if let Some((alg, key)) = signing_key(&jwk) {
            keys.entry((jwk.common.key_id.clone(), alg))
                .or_insert_with(|| Arc::new(key));
        }
    }
    anyhow::ensure!(
        !keys.is_empty(),
        "the key set holds no RS256, ES256 or EdDSA signing key"
    );
    Ok(keys)
}

/// The algorithm a JWK verifies and its key, when it is one docfan accepts.
fn signing_key(jwk: &Jwk) -> Option<(Algorithm, DecodingKey)> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let (alg, published) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            // Base64url without padding: six bits a character.
            let modulus_bits = rsa.n.trim_end_matches('=').len() * 6 / 8 * 8;
            if modulus_bits < MIN_RSA_BITS {
                return None;
            }
            (Algorithm::RS256, KeyAlgorithm::RS256)
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
        }
        _ => return None,
    };
    if jwk
        .common
        .key_algorithm
        .is_some_and(|declared| declared != published)
    {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok().map(|key| (alg, key))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::{Value, json};

    use super::*;

    /// A provider whose key set the test sets, counting fetches.
    #[derive(Default)]
    struct Scripted {
        body: Mutex<Option<Value>>,
        fetches: AtomicUsize,
    }

    impl Scripted {
        fn serve(&self, body: Option<Value>) {
            *self.body.lock().unwrap() = body;
        }
        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl KeySetSource for Scripted {
        async fn fetch(&self) -> anyhow::Result<Vec<u8>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            // Long enough for concurrent lookups to pile up behind this fetch.
            tokio::task::yield_now().await;
            match &*self.body.lock().unwrap() {
                Some(body) => Ok(serde_json::to_vec(body)?),
                None => anyhow::bail!("the provider is down"),
            }
        }
    }

    /// An Ed25519 public key entry (any 32 bytes parse; nothing is verified here).
    fn ed(kid: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": kid})
    }

    fn set(keys: &[Value]) -> Value {
        json!({ "keys": keys })
    }

    fn keys(source: &Arc<Scripted>, min_refresh: i64) -> ProviderKeys {
        let mut config = ProviderConfig::new("https://id.example/jwks");
        config.min_refresh_interval = TimeDelta::seconds(min_refresh);
        ProviderKeys::new(Arc::clone(source) as Arc<dyn KeySetSource>, &config)
    }

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn secs(n: i64) -> DateTime<Utc> {
        t0() + TimeDelta::seconds(n)
    }

    #[tokio::test]
    async fn keys_are_fetched_once_and_cached() {
        let source = Arc::new(Scripted::default());
        source.serve(Some(set(&[ed("a")])));
        let keys = keys(&source, 30);
        for at in [0, 1, 599] {
            assert!(
                keys.key_for(Some("a"), Algorithm::EdDSA, secs(at))
                    .await
                    .is_ok()
            );
        }
        assert_eq!(source.fetches(), 1);
        // The algorithm is part of the key's identity.
        assert!(matches!(
            keys.key_for(Some("a"), Algorithm::RS256, secs(2)).await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn an_unknown_kid_fetches_at_most_once_per_interval() {
        let source = Arc::new(Scripted::default());
        source.serve(Some(set(&[ed("a")])));
        let keys = keys(&source, 30);
        keys.load(secs(0)).await.unwrap();
        // The provider rotates: within the interval the new key is not fetched.
        source.serve(Some(set(&[ed("b")])));
        for at in [1, 10, 29] {
            assert!(matches!(
                keys.key_for(Some("b"), Algorithm::EdDSA, secs(at)).await,
                Err(AuthError::Invalid(_))
            ));
        }
        assert_eq!(source.fetches(), 1);
        // Past it, one fetch brings the new key; the old one is gone with it.
        assert!(
            keys.key_for(Some("b"), Algorithm::EdDSA, secs(30))
                .await
                .is_ok()
        );
        assert_eq!(source.fetches(), 2);
        assert!(
            keys.key_for(Some("a"), Algorithm::EdDSA, secs(31))
                .await
                .is_err()
        );
        assert_eq!(source.fetches(), 2);
    }

    #[tokio::test]
    async fn a_flood_of_made_up_kids_makes_one_fetch() {
        let source = Arc::new(Scripted::default());
        source.serve(Some(set(&[ed("a")])));
        let keys = Arc::new(keys(&source, 30));
        let mut flood = tokio::task::JoinSet::new();
        for i in 0..200 {
            let keys = Arc::clone(&keys);
            flood.spawn(async move {
                keys.key_for(
                    Some(&format!("made-up-{i}")),
                    Algorithm::EdDSA,
                    secs(i % 20),
                )
                .await
            });
        }
        while let Some(outcome) = flood.join_next().await {
            assert!(matches!(outcome.unwrap(), Err(AuthError::Invalid(_))));
        }
        assert_eq!(source.fetches(), 1);
        // The real key was among what that one fetch brought.
        assert!(
            keys.key_for(Some("a"), Algorithm::EdDSA, secs(20))
                .await
                .is_ok()
        );
        assert_eq!(source.fetches(), 1);
    }

    #[tokio::test]
    async fn old_keys_are_fetched_again_and_withdrawn_keys_stop_working() {
        let source = Arc::new(Scripted::default());
        source.serve(Some(set(&[ed("a"), ed("b")])));
        let keys = keys(&source, 30);
        keys.load(secs(0)).await.unwrap();
        source.serve(Some(set(&[ed("b")])));
        assert!(
            keys.key_for(Some("a"), Algorithm::EdDSA, secs(599))
                .await
                .is_ok()
        );
        let withdrawn = keys.key_for(Some("a"), Algorithm::EdDSA, secs(600)).await;
        assert!(
            matches!(withdrawn, Err(AuthError::Invalid(_))),
            "{withdrawn:?}"
        );
        assert_eq!(source.fetches(), 2);
        assert!(
            keys.key_for(Some("b"), Algorithm::EdDSA, secs(601))
                .await
                .is_ok()
        );
        assert_eq!(source.fetches(), 2);
    }

    #[tokio::test]
    async fn a_provider_outage_keeps_the_keys_held() {
        let source = Arc::new(Scripted::default());
        let keys = keys(&source, 30);
        // Never fetched: the token cannot be checked, which is not the caller's fault.
        assert!(matches!(
            keys.key_for(Some("a"), Algorithm::EdDSA, secs(0)).await,
            Err(AuthError::Unavailable(_))
        ));
        // Nor is the down provider asked again within the interval.
        assert!(matches!(
            keys.key_for(Some("a"), Algorithm::EdDSA, secs(5)).await,
            Err(AuthError::Unavailable(_))
        ));
        assert_eq!(source.fetches(), 1);
        source.serve(Some(set(&[ed("a")])));
        assert!(
            keys.key_for(Some("a"), Algorithm::EdDSA, secs(30))
                .await
                .is_ok()
        );
        // Down again when the keys grow old: the ones held still verify.
        source.serve(None);
        assert!(
            keys.key_for(Some("a"), Algorithm::EdDSA, secs(700))
                .await
                .is_ok()
        );
        assert_eq!(source.fetches(), 3);
        // An answer with no usable key counts as a failure too.
        source.serve(Some(
            json!({"keys": [{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}),
        ));
        assert!(keys.load(secs(800)).await.is_err());
        assert!(
            keys.key_for(Some("a"), Algorithm::EdDSA, secs(801))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_token_without_kid_uses_the_only_key_of_its_algorithm() {
        let source = Arc::new(Scripted::default());
        source.serve(Some(set(&[ed("a")])));
        let keys = keys(&source, 30);
        assert!(keys.key_for(None, Algorithm::EdDSA, secs(0)).await.is_ok());
        source.serve(Some(set(&[ed("a"), ed("b")])));
        keys.load(secs(1)).await.unwrap();
        assert!(keys.key_for(None, Algorithm::EdDSA, secs(2)).await.is_err());
    }

    #[test]
    fn only_signing_keys_of_the_accepted_kinds_are_kept() {
        // A 2048-bit modulus and a 1024-bit one (their bytes do not matter here).
        let n2048 = "A".repeat(342);
        let n1024 = "A".repeat(171);
        let p256 = json!({"kty": "EC", "crv": "P-256", "kid": "ec",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let body = set(&[
            json!({"kty": "RSA", "kid": "rsa", "n": n2048, "e": "AQAB", "alg": "RS256", "use": "sig"}),
            json!({"kty": "RSA", "kid": "short", "n": n1024, "e": "AQAB"}),
            json!({"kty": "RSA", "kid": "enc", "n": n2048, "e": "AQAB", "use": "enc"}),
            json!({"kty": "RSA", "kid": "ps", "n": n2048, "e": "AQAB", "alg": "PS256"}),
            json!({"kty": "RSA", "kid": "oaep", "n": n2048, "e": "AQAB", "alg": "RSA-OAEP"}),
            p256,
            json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"}),
            json!({"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": "AA"}),
            json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            json!({"kty": "weird"}),
            json!(42),
            ed("ed"),
        ]);
        let keys = parse_key_set(&serde_json::to_vec(&body).unwrap()).unwrap();
        let mut kept: Vec<_> = keys
            .keys()
            .map(|(kid, alg)| (kid.clone().unwrap(), *alg))
            .collect();
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            kept,
            [
                ("ec".to_owned(), Algorithm::ES256),
                ("ed".to_owned(), Algorithm::EdDSA),
                ("rsa".to_owned(), Algorithm::RS256),
            ]
        );
        for useless in [json!({"keys": []}), json!({"nope": 1}), json!([1])] {
            assert!(parse_key_set(&serde_json::to_vec(&useless).unwrap()).is_err());
        }
        assert!(parse_key_set(b"not json").is_err());
    }
}
