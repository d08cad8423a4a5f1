//! SigV4 on the OpenSearch adapter, against an endpoint that verifies signatures: it
//! recomputes each request's signature from the secret it knows for the access key,
//! the request's method, path, query, signed headers and body, and refuses (403, as
//! Amazon OpenSearch Service does) what does not match. A signed health check and a
//! signed `_bulk` (whose body is hashed into the signature) pass; the same requests
//! signed with the wrong secret are refused, and the adapter reports that as
//! `Blocked` (the deployment's fault), not as a bad record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningParams, SigningSettings, sign,
};
use aws_smithy_runtime_api::client::identity::Identity;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use shared::Error;
use shared::aws::{AwsClients, AwsConfig, OpenSearchConfig};
use shared::ports::{SearchDocument, SearchIndex};
use tests::port_suites::unique_user;

/// The signed parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug)]
struct Authorization {
    access_key: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
}

fn parse_authorization(header: &str) -> Option<Authorization> {
    let rest = header.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut parts: HashMap<&str, &str> = HashMap::new();
    for part in rest.split(", ") {
        let (name, value) = part.split_once('=')?;
        parts.insert(name, value);
    }
    let scope: Vec<&str> = parts.get("Credential")?.split('/').collect();
    let [access_key, _date, region, service, "aws4_request"] = scope[..] else {
        return None;
    };
    Some(Authorization {
        access_key: access_key.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: parts
            .get("SignedHeaders")?
            .split(';')
            .map(str::to_owned)
            .collect(),
        signature: (*parts.get("Signature")?).to_owned(),
    })
}

/// Whether the request carries a valid signature by a key of `secrets`, at most five
/// minutes off (as AWS allows).
fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &HashMap<String, String>,
) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("no {name} header"))
    };
    let auth = parse_authorization(header("authorization")?).ok_or("a malformed Authorization")?;
    let secret = secrets
        .get(&auth.access_key)
        .ok_or("an unknown access key")?;
    let at = chrono::NaiveDateTime::parse_from_str(header("x-amz-date")?, "%Y%m%dT%H%M%SZ")
        .map_err(|e| format!("a malformed x-amz-date: {e}"))?
        .and_utc();
    if (chrono::Utc::now() - at).num_seconds().abs() > 300 {
        return Err("a signature more than five minutes off".into());
    }
    let token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let identity = Identity::new(
        Credentials::new(&auth.access_key, secret, token, None, "verifier"),
        None,
    );
    let mut settings = SigningSettings::default();
    if headers.contains_key("x-amz-content-sha256") {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&auth.region)
        .name(&auth.service)
        .time(SystemTime::from(at))
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?;
    // The headers the client signed, but those the signer adds itself.
    let mut signed = Vec::new();
    for name in &auth.signed_headers {
        if matches!(
            name.as_str(),
            "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
        ) {
            continue;
        }
        signed.push((name.as_str(), header(name)?));
    }
    let url = format!(
        "http://{}{}",
        header("host")?,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let request = SignableRequest::new(
        method.as_str(),
        &url,
        signed.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (_, expected) = sign(request, &SigningParams::V4(params))
        .map_err(|e| e.to_string())?
        .into_parts();
    if expected == auth.signature {
        Ok(())
    } else {
        Err("the signature does not match".into())
    }
}

#[derive(Default)]
struct Verdicts {
    passed: Vec<String>,
    refused: Vec<String>,
}

#[derive(Clone)]
struct Endpoint {
    secrets: Arc<HashMap<String, String>>,
    verdicts: Arc<Mutex<Verdicts>>,
}

async fn answer(
    State(endpoint): State<Endpoint>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let what = format!("{method} {}", uri.path());
    match verify(&method, &uri, &headers, &body, &endpoint.secrets) {
        Ok(()) => {
            endpoint.verdicts.lock().unwrap().passed.push(what);
            let answer = if uri.path().ends_with("/_bulk") {
                serde_json::json!({"errors": false, "items": []})
            } else {
                serde_json::json!({"status": "green"})
            };
            axum::Json(answer).into_response()
        }
        Err(why) => {
            endpoint.verdicts.lock().unwrap().refused.push(what);
            (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({"message": why})),
            )
                .into_response()
        }
    }
}

async fn start() -> (String, Endpoint) {
    let endpoint = Endpoint {
        secrets: Arc::new(HashMap::from([(
            "AKIDTESTING".to_owned(),
            "the-secret".to_owned(),
        )])),
        verdicts: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, endpoint)
}

fn clients(url: &str, secret: &str) -> AwsClients {
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "AKIDTESTING",
                secret,
                None,
                None,
                "test",
            )),
        )
        .build();
    let config = AwsConfig {
        region: Some("eu-west-1".into()),
        opensearch: Some(OpenSearchConfig {
            url: url.to_owned(),
            index: "documents".into(),
            sign: true,
            service: "es".into(),
            wait_for_refresh: false,
        }),
        ..AwsConfig::default()
    };
    AwsClients::from_sdk_config(config, sdk).unwrap()
}

fn document() -> SearchDocument {
    SearchDocument {
        id: shared::domain::DocumentId::generate(),
        version: 3,
        title: "Signed".into(),
        body: "every byte of this body is in the signature".into(),
        readers: vec![unique_user("ann")],
    }
}

#[tokio::test]
async fn requests_are_signed_so_a_verifying_endpoint_accepts_them_and_refuses_a_wrong_secret() {
    let (url, endpoint) = start().await;

    let index = clients(&url, "the-secret").search_index().unwrap();
    index.health().await.unwrap();
    index.upsert(&document()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), index.flush())
        .await
        .unwrap()
        .unwrap();
    {
        let verdicts = endpoint.verdicts.lock().unwrap();
        assert!(verdicts.refused.is_empty(), "{:?}", verdicts.refused);
        assert!(
            verdicts.passed.iter().any(|r| r == "POST /documents/_bulk"),
            "{:?}",
            verdicts.passed
        );
        assert!(verdicts.passed.iter().any(|r| r == "GET /_cluster/health"));
    }

    let forged = clients(&url, "another-secret").search_index().unwrap();
    assert!(matches!(forged.health().await, Err(Error::Blocked(_))));
    forged.upsert(&document()).await.unwrap();
    let refused = forged.flush().await;
    assert!(matches!(refused, Err(Error::Blocked(_))), "{refused:?}");
    let verdicts = endpoint.verdicts.lock().unwrap();
    assert!(verdicts.refused.len() >= 2, "{:?}", verdicts.refused);
}
