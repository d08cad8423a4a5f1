//! `/openapi.json` as served by the real app is a valid OpenAPI 3.x document: the
//! structure the specification requires, one unique `operationId` per operation,
//! every path parameter declared, every `$ref` resolvable. (`tests/openapi/run` also
//! validates it with openapi-spec-validator.)

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::Value;
use tests::TestApp;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document() -> Value {
    let app = TestApp::spawn().await;
    let reply = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.body
}

/// Every operation: (method, path, operation).
fn operations(spec: &Value) -> Vec<(&'static str, &str, &Value)> {
    let mut found = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths is an object") {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                found.push((method, path.as_str(), operation));
            }
        }
    }
    found
}

#[tokio::test]
async fn operation_ids_are_unique_and_named_for_what_they_do() {
    let spec = document().await;
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (method, path, operation) in operations(&spec) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(
            id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{id}: operation ids are lowerCamelCase"
        );
        ids.entry(id.to_owned())
            .or_default()
            .push(format!("{method} {path}"));
    }
    let reused: Vec<_> = ids.iter().filter(|(_, used)| used.len() > 1).collect();
    assert!(
        reused.is_empty(),
        "operationIds used more than once: {reused:?}"
    );
    let expected: BTreeSet<&str> = [
        "createDocument",
        "listDocuments",
        "getDocument",
        "replaceDocument",
        "patchDocument",
        "deleteDocument",
        "editDocument",
        "getDocumentVersion",
        "searchDocuments",
        "getHistory",
        "getHistoryEntry",
        "getAnalysis",
        "getHealth",
        "getReadiness",
        "getOpenApi",
        "getMetrics",
    ]
    .into();
    let got: BTreeSet<&str> = ids.keys().map(String::as_str).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn the_document_has_the_structure_openapi_3_requires() {
    let spec = document().await;
    let version = spec["openapi"].as_str().expect("openapi is a string");
    assert!(
        version.starts_with("3.0.") || version.starts_with("3.1."),
        "{version}"
    );
    assert!(spec["info"]["title"].is_string(), "info.title");
    assert!(spec["info"]["version"].is_string(), "info.version");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/readyz"), "/readyz is described");
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}: paths start with /");
        assert!(item.is_object(), "{path}");
    }
    for (method, path, operation) in operations(&spec) {
        let here = format!("{method} {path}");
        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{here}: responses"));
        assert!(!responses.is_empty(), "{here}: at least one response");
        for (status, response) in responses {
            assert!(
                status == "default"
                    || (status.len() == 3
                        && status.chars().all(|c| c.is_ascii_digit() || c == 'X')),
                "{here}: response key {status}"
            );
            let response = resolve(&spec, response);
            assert!(
                response["description"].is_string(),
                "{here} {status}: a response needs a description"
            );
        }
        // Every {name} in the template is a declared, required path parameter, and
        // no parameter is declared twice.
        let parameters: Vec<Value> = operation["parameters"]
            .as_array()
            .map(|ps| ps.iter().map(|p| resolve(&spec, p).clone()).collect())
            .unwrap_or_default();
        let mut declared = BTreeSet::new();
        for parameter in &parameters {
            let name = parameter["name"].as_str().expect("parameter name");
            let location = parameter["in"].as_str().expect("parameter in");
            assert!(
                ["path", "query", "header", "cookie"].contains(&location),
                "{here}: {name} in {location}"
            );
            assert!(
                declared.insert((name.to_owned(), location.to_owned())),
                "{here}: {name} in {location} declared twice"
            );
            assert!(
                parameter.get("schema").is_some() || parameter.get("content").is_some(),
                "{here}: {name} needs a schema"
            );
            if location == "path" {
                assert_eq!(parameter["required"], true, "{here}: {name} is required");
                assert!(path.contains(&format!("{{{name}}}")), "{here}: {name}");
            }
        }
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                assert!(
                    declared.contains(&(name.to_owned(), "path".to_owned())),
                    "{here}: path parameter {name} is not declared"
                );
            }
        }
        if let Some(schemes) = operation["security"].as_array() {
            for requirement in schemes {
                for scheme in requirement
                    .as_object()
                    .expect("a security requirement")
                    .keys()
                {
                    assert!(
                        spec["components"]["securitySchemes"].get(scheme).is_some(),
                        "{here}: security scheme {scheme} is not defined"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn every_reference_resolves() {
    let spec = document().await;
    let mut refs = Vec::new();
    collect_refs(&spec, &mut refs);
    assert!(!refs.is_empty(), "the document uses references");
    for reference in refs {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference}: only local references are expected"));
        assert!(
            spec.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
}

fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "$ref"
                    && let Some(reference) = inner.as_str()
                {
                    into.push(reference.to_owned());
                }
                collect_refs(inner, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, into)),
        _ => {}
    }
}

/// A `$ref` object's target, or the value itself.
fn resolve<'a>(spec: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => spec.pointer(pointer).expect("the reference resolves"),
        None => value,
    }
}
