//! How backend failures reach the domain: a service that cannot be reached is
//! `Unavailable` (the fan-out retries it), whichever adapter meets it. These need no
//! emulator: they talk to a closed loopback port.

use std::sync::Arc;

use shared::Error;
use shared::aws::{AwsClients, AwsConfig, OpenSearchConfig};
use shared::clock::SystemClock;
use shared::domain::DocumentId;
use shared::ports::{AuditLog, DeadLetterQueue, DocumentStore, SearchIndex};

use crate::emulators::sdk_config;

/// A loopback port with nothing listening on it.
fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn unreachable_services_are_unavailable() {
    let endpoint = closed_endpoint();
    let config = AwsConfig {
        endpoint_url: Some(endpoint.clone()),
        dead_letter_queue_url: Some(format!("{endpoint}/000000000000/dead-letters")),
        opensearch: Some(OpenSearchConfig {
            url: endpoint.clone(),
            index: "documents".into(),
            sign: false,
            service: "es".into(),
        }),
        ..AwsConfig::default()
    };
    let clients = AwsClients::from_sdk_config(config, sdk_config(&endpoint).await).unwrap();
    let id = DocumentId::generate();
    let unavailable = |r: Result<(), Error>| matches!(r, Err(Error::Unavailable(_)));

    assert!(unavailable(
        clients.document_store().get(&id).await.map(|_| ())
    ));
    assert!(unavailable(
        clients.audit_log().get(&id, 1).await.map(|_| ())
    ));
    let dlq = clients.dead_letter_queue(Arc::new(SystemClock)).unwrap();
    assert!(unavailable(dlq.depth().await.map(|_| ())));
    let search = clients.search_index().unwrap();
    assert!(unavailable(search.health().await));
    assert!(unavailable(search.delete(&id, 2).await.map(|_| ())));
}

#[test]
fn missing_configuration_is_reported_by_name() {
    let config = AwsConfig::default();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        panic!("a runtime");
    };
    let clients = runtime.block_on(async {
        let sdk = sdk_config("http://127.0.0.1:9").await;
        AwsClients::from_sdk_config(config, sdk).unwrap()
    });
    for err in [
        clients.search_index().err().unwrap(),
        clients.analysis_queue(Arc::new(SystemClock)).err().unwrap(),
        clients
            .dead_letter_queue(Arc::new(SystemClock))
            .err()
            .unwrap(),
    ] {
        assert!(
            matches!(&err, Error::Invalid(e) if e.to_string().contains("DOCFAN_")),
            "{err}"
        );
    }
}
