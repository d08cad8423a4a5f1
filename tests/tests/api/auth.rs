//! Tokens: missing, malformed, wrongly signed, `alg: none`, expired — all 401.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use shared::auth::TokenAuthority;
use shared::domain::UserId;
use tests::TestApp;

fn unsigned_token(sub: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"sub":"{sub}","exp":{}}}"#,
        Utc::now().timestamp() + 3600
    ));
    format!("{header}.{claims}.")
}

#[tokio::test]
async fn bad_tokens_are_401_everywhere() {
    let app = TestApp::spawn().await;
    let ann = UserId::parse("ann").unwrap();
    let forged = TokenAuthority::new(b"another-secret-another-secret-0123")
        .unwrap()
        .issue(&ann, TimeDelta::hours(1), Utc::now());
    let expired = TokenAuthority::new(tests::TEST_SECRET).unwrap().issue(
        &ann,
        TimeDelta::seconds(1),
        Utc::now() - TimeDelta::hours(1),
    );
    let tampered = TokenAuthority::new(tests::TEST_SECRET)
        .unwrap()
        .issue(&ann, TimeDelta::hours(1), Utc::now())
        .replace('.', ".x");
    let headers: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some("Basic YW5uOnB3".into()),
        Some("Bearer not-a-jwt".into()),
        Some(format!("Bearer {forged}")),
        Some(format!("Bearer {}", unsigned_token("ann"))),
        Some(format!("Bearer {expired}")),
        Some(format!("Bearer {tampered}")),
    ];
    let endpoints = [
        (Method::GET, "/documents".to_owned()),
        (Method::POST, "/documents".to_owned()),
        (
            Method::GET,
            format!("/documents/{}", shared::domain::DocumentId::generate()),
        ),
    ];
    for header in &headers {
        for (method, path) in &endpoints {
            let mut builder = app.client.request(method.clone(), app.url(path));
            if let Some(h) = header {
                builder = builder.header("Authorization", h);
            }
            if *method == Method::POST {
                builder = builder.json(&serde_json::json!({"title": "t"}));
            }
            let reply = app.send(builder).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{header:?} {method} {path}"
            );
            assert_eq!(reply.problem_type(), "/problems/unauthorized");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        }
    }
    // Nothing was created by the refused POSTs.
    assert_eq!(
        app.get("ann", "/documents").await.body["items"],
        serde_json::json!([])
    );
}
