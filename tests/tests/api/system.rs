//! Health, the generated OpenAPI document and metrics.

use reqwest::StatusCode;
use tests::TestApp;

#[tokio::test]
async fn health_openapi_and_metrics_answer() {
    let app = TestApp::spawn().await;
    let health = app.send(app.client.get(app.url("/healthz"))).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");

    let spec = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(spec.status, StatusCode::OK);
    assert!(spec.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec.body["paths"].as_object().unwrap();
    for path in [
        "/documents",
        "/documents/{id}",
        "/healthz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    for method in ["get", "put", "patch", "delete"] {
        assert!(
            paths["/documents/{id}"].get(method).is_some(),
            "{method} /documents/{{id}}"
        );
    }

    app.get("ann", "/documents").await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(
            r#"docfan_http_requests_total{method="GET",route="/documents",status="200"} 1"#
        ),
        "{text}"
    );
}
