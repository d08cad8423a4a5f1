//! Identity from an OpenID Connect provider, end to end: a JWKS server started here
//! serves the public halves of the keys in `fixtures/oidc/` (two RSA keys, a P-256 key
//! and an Ed25519 key, see its README), counting the fetches; `docfan serve` runs as a
//! child process configured only by the environment, like a deployment.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use futures_util::future::join_all;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tests::child::ChildServer;

const JWKS: &str = include_str!("fixtures/oidc/jwks.json");
const ISSUER: &str = "https://id.docfan.test";
const AUDIENCE: &str = "docfan";

/// A key the tests sign with: its `kid` in the JWKS, its algorithm, its private half.
struct SigningKey {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
}

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("fixture PEMs are base64")
}

fn rsa_1() -> SigningKey {
    SigningKey {
        kid: "rsa-1",
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(&der(include_str!("fixtures/oidc/rsa-1.pem"))),
    }
}

fn rsa_2() -> SigningKey {
    SigningKey {
        kid: "rsa-2",
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(&der(include_str!("fixtures/oidc/rsa-2.pem"))),
    }
}

fn ec_1() -> SigningKey {
    SigningKey {
        kid: "ec-1",
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(&der(include_str!("fixtures/oidc/ec-1.pem"))),
    }
}

fn ed_1() -> SigningKey {
    SigningKey {
        kid: "ed-1",
        alg: Algorithm::EdDSA,
        key: EncodingKey::from_ed_der(&der(include_str!("fixtures/oidc/ed-1.pem"))),
    }
}

/// Claims as the provider issues them for `sub`: our issuer and audience, an hour.
fn claims(sub: &str) -> Value {
    let now = Utc::now().timestamp();
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600})
}

fn sign(key: &SigningKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.key).expect("fixture keys sign")
}

/// A token as the provider signs it with `key`.
fn token(key: &SigningKey, sub: &str) -> String {
    sign(key, Some(key.kid), &claims(sub))
}

/// The provider's JWKS endpoint: serves the keys named by `kids`, counts fetches.
struct Provider {
    url: String,
    state: Arc<ProviderState>,
}

struct ProviderState {
    kids: Mutex<Vec<&'static str>>,
    fetches: AtomicUsize,
}

impl Provider {
    async fn start(kids: &[&'static str]) -> Self {
        async fn jwks(State(state): State<Arc<ProviderState>>) -> axum::Json<Value> {
            state.fetches.fetch_add(1, Ordering::SeqCst);
            let all: Value = serde_json::from_str(JWKS).expect("the fixture is JSON");
            let kids = state.kids.lock().unwrap().clone();
            let keys: Vec<Value> = all["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .filter(|k| kids.iter().any(|kid| k["kid"] == *kid))
                .cloned()
                .collect();
            axum::Json(json!({ "keys": keys }))
        }
        let state = Arc::new(ProviderState {
            kids: Mutex::new(kids.to_vec()),
            fetches: AtomicUsize::new(0),
        });
        let router = axum::Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, state }
    }

    /// Rotates: from now on the set holds exactly `kids`.
    fn publish(&self, kids: &[&'static str]) {
        *self.state.kids.lock().unwrap() = kids.to_vec();
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

/// `docfan serve` verifying the provider's tokens, with `extra` environment. The test
/// secret stays in its environment (`ChildServer` sets it): with a JWKS URL it must not
/// be used.
async fn docfan(provider: &Provider, extra: &[(&str, &str)]) -> (ChildServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("DOCFAN_JWT_JWKS_URL", provider.url.as_str()),
        ("DOCFAN_JWT_ISSUER", ISSUER),
        ("DOCFAN_JWT_AUDIENCE", AUDIENCE),
    ];
    env.extend_from_slice(extra);
    (ChildServer::start_with_env(dir.path(), &env).await, dir)
}

async fn list_as(server: &ChildServer, token: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/documents", server.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn provider_tokens_of_every_algorithm_are_accepted() {
    let provider = Provider::start(&["rsa-1", "ec-1", "ed-1"]).await;
    let (server, _dir) = docfan(&provider, &[]).await;
    let client = reqwest::Client::new();
    for (key, user) in [(rsa_1(), "rita"), (ec_1(), "eve"), (ed_1(), "ed")] {
        let token = token(&key, user);
        let created = client
            .post(format!("{}/documents", server.base))
            .bearer_auth(&token)
            .json(&json!({"title": format!("{user}'s"), "body": key.kid}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED, "{}", key.kid);
        let document: Value = created.json().await.unwrap();
        assert_eq!(document["owner"], user, "the token's sub is the caller");
        let (status, listed) = list_as(&server, &token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed["items"][0]["id"], document["id"]);
        // The WebSocket upgrade takes the same tokens.
        let url = format!("ws://{}/ws?token={token}", server.addr);
        let (_socket, response) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("{} upgrade refused: {e}", key.kid));
        assert_eq!(response.status(), 101);
    }
    // The provider is the only issuer: a token signed with the shared secret is refused.
    let (status, problem) = list_as(&server, &tests::token_for("rita")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{problem}");
    // One fetch, at start; every key came with it.
    assert_eq!(provider.fetches(), 1);
}

#[tokio::test]
async fn tokens_for_someone_else_or_forged_are_refused() {
    let provider = Provider::start(&["rsa-1", "rsa-2", "ec-1"]).await;
    let (server, _dir) = docfan(&provider, &[("DOCFAN_JWT_MAX_LIFETIME_SECS", "7200")]).await;
    let now = Utc::now().timestamp();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = claims("mallory");
        edit(&mut claims);
        claims
    };
    let rsa = rsa_1();
    let refused = [
        (
            "another issuer",
            sign(
                &rsa,
                Some("rsa-1"),
                &with(&|c| c["iss"] = json!("https://evil.test")),
            ),
        ),
        (
            "no issuer",
            sign(
                &rsa,
                Some("rsa-1"),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("iss");
                }),
            ),
        ),
        (
            "another audience",
            sign(
                &rsa,
                Some("rsa-1"),
                &with(&|c| c["aud"] = json!("someone-else")),
            ),
        ),
        (
            "no audience",
            sign(
                &rsa,
                Some("rsa-1"),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("aud");
                }),
            ),
        ),
        (
            "expired",
            sign(
                &rsa,
                Some("rsa-1"),
                &with(&|c| {
                    c["iat"] = json!(now - 7200);
                    c["exp"] = json!(now - 60);
                }),
            ),
        ),
        (
            "longer than the maximum lifetime",
            sign(
                &rsa,
                Some("rsa-1"),
                // `iat` pinned: claims() takes its own clock reading, which may be a
                // second later and make the lifetime exactly the maximum.
                &with(&|c| {
                    c["iat"] = json!(now);
                    c["exp"] = json!(now + 7201);
                }),
            ),
        ),
        // Signed with another key under rsa-1's kid: rsa-1's key does not verify it.
        (
            "signed with another key",
            sign(&rsa_2(), Some("rsa-1"), &claims("mallory")),
        ),
        // An EC key under an RSA key's kid, and the other way round.
        (
            "ES256 under an RSA kid",
            sign(&ec_1(), Some("rsa-1"), &claims("mallory")),
        ),
        (
            "RS256 under an EC kid",
            sign(&rsa, Some("ec-1"), &claims("mallory")),
        ),
        // HS256 keyed with what the provider publishes (the classic confusion).
        (
            "HS256",
            jsonwebtoken::encode(
                &Header {
                    kid: Some("rsa-1".into()),
                    ..Header::new(Algorithm::HS256)
                },
                &claims("mallory"),
                &EncodingKey::from_secret(JWKS.as_bytes()),
            )
            .unwrap(),
        ),
        (
            "no kid while several keys are published",
            sign(&rsa, None, &claims("mallory")),
        ),
    ];
    for (why, token) in &refused {
        let (status, problem) = list_as(&server, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {problem}");
        assert_eq!(problem["type"], "/problems/unauthorized", "{why}");
    }
    // The same claims, well signed, pass: the refusals above were for what they changed.
    let (status, _) = list_as(&server, &token(&rsa, "mallory")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = list_as(
        &server,
        &sign(
            &rsa,
            Some("rsa-1"),
            &with(&|c| c["exp"] = json!(now + 7200)),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_withdrawn_ones_refused() {
    let provider = Provider::start(&["rsa-1"]).await;
    // No interval between fetches, so the rotation is seen without waiting for one.
    let (server, _dir) = docfan(&provider, &[("DOCFAN_JWT_JWKS_MIN_REFRESH_SECS", "0")]).await;
    let (status, _) = list_as(&server, &token(&rsa_1(), "rita")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(provider.fetches(), 1);

    // A token with the new key's kid before the provider publishes it.
    let (status, _) = list_as(&server, &token(&rsa_2(), "rita")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        provider.fetches(),
        2,
        "an unknown kid fetches the keys again"
    );

    provider.publish(&["rsa-2"]);
    let (status, listed) = list_as(&server, &token(&rsa_2(), "rita")).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(provider.fetches(), 3);
    // Known now: no more fetches for it.
    let (status, _) = list_as(&server, &token(&rsa_2(), "rita")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(provider.fetches(), 3);
    // rsa-1 went with the rotation.
    let (status, _) = list_as(&server, &token(&rsa_1(), "rita")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_flood_of_made_up_kids_does_not_reach_the_provider() {
    let provider = Provider::start(&["rsa-1"]).await;
    // An interval longer than the test, so that the bound, not timing, decides.
    let (server, _dir) = docfan(&provider, &[("DOCFAN_JWT_JWKS_MIN_REFRESH_SECS", "3600")]).await;
    assert_eq!(provider.fetches(), 1, "the keys are fetched at start");
    // The provider rotates meanwhile: the new key is not fetched within the interval.
    provider.publish(&["rsa-1", "rsa-2"]);
    let client = reqwest::Client::new();
    let rsa = rsa_1();
    let flood = (0..300).map(|i| {
        let token = sign(&rsa, Some(&format!("made-up-{i}")), &claims("mallory"));
        let request = client
            .get(format!("{}/documents", server.base))
            .bearer_auth(token)
            .send();
        async move { request.await.unwrap().status() }
    });
    let statuses = join_all(flood).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    let (status, _) = list_as(&server, &token(&rsa_2(), "rita")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(provider.fetches(), 1, "no fetch within the interval");
    // The keys held still serve.
    let (status, _) = list_as(&server, &token(&rsa, "rita")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_unreachable_provider_is_503_not_401() {
    // A port nothing listens on.
    let url = format!(
        "http://127.0.0.1:{}/.well-known/jwks.json",
        tests::child::free_port()
    );
    let dir = tempfile::tempdir().unwrap();
    let server =
        ChildServer::start_with_env(dir.path(), &[("DOCFAN_JWT_JWKS_URL", url.as_str())]).await;
    let (status, problem) = list_as(&server, &token(&rsa_1(), "rita")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["type"], "/problems/unavailable");
    // Without a token it is still 401: nothing to check.
    let response = reqwest::get(format!("{}/documents", server.base))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
