//! What only the OpenSearch index has to get right: reading before anything was
//! written (the API's role may search but not create the index).

use shared::domain::DocumentId;
use shared::ports::{SearchIndex, SearchQuery};
use tests::port_suites::unique_user;

use crate::emulators::{self, Wants};

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn searching_before_the_first_write_finds_nothing() {
    let clients = emulators::aws(Wants {
        search: true,
        ..Wants::default()
    })
    .await;
    let index = clients.search_index().unwrap();
    let query = SearchQuery {
        query: "anything".parse().unwrap(),
        reader: unique_user("ann"),
        limit: 10,
        offset: 0,
    };
    let page = index.search(&query).await.unwrap();
    assert!(page.hits.is_empty() && !page.more);
    assert_eq!(index.indexed(&DocumentId::generate()).await.unwrap(), None);
    index.health().await.unwrap();
}
