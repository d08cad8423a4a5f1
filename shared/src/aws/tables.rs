//! The DynamoDB tables' key schemas, as `infra/template.yaml` declares them, and their
//! creation for emulators and ad-hoc environments (CloudFormation creates them in a
//! deployment).
//!
//! | table | keys | extras |
//! |---|---|---|
//! | documents | `id` (S) | stream NEW_AND_OLD_IMAGES |
//! | members | `userId` (S), `documentId` (S) | |
//! | versions | `documentId` (S), `version` (N) | |
//! | connections | `connectionId` (S) | GSI `byUser` (`userId`; projects `expiresAt`); TTL on `expiresAt` |
//! | subscriptions | `documentId` (S), `connectionId` (S) | GSI `byConnection` (`connectionId`, `documentId`, keys only); TTL on `expiresAt` |
//! | audit | `documentId` (S), `version` (N) | |
//! | analysis | `documentId` (S) | |
//! | attempts | `recordId` (S) | TTL on `expiresAt` |

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};

use super::TableNames;
use super::errors::{build_error, sdk_error};
use crate::Result;

/// The TTL attribute of connection and subscription items (epoch seconds).
pub const EXPIRES_AT: &str = "expiresAt";
/// The subscriptions table's index by connection.
pub const BY_CONNECTION_INDEX: &str = "byConnection";
/// The connections table's index by user (what a per-user connection cap counts).
pub const BY_USER_INDEX: &str = "byUser";

/// A global secondary index: its name, its key attributes (hash, then range) and the
/// non-key attributes it projects (none: keys only).
struct Index<'a> {
    name: &'a str,
    keys: &'a [(&'a str, ScalarAttributeType)],
    projects: &'a [&'a str],
}

/// Creates every table that does not exist yet, and waits until each is active.
pub async fn create_tables(client: &Client, names: &TableNames) -> Result<()> {
    use ScalarAttributeType::{N, S};
    create(client, &names.documents, &[("id", S)], None, true, None).await?;
    create(
        client,
        &names.members,
        &[("userId", S), ("documentId", S)],
        None,
        false,
        None,
    )
    .await?;
    create(
        client,
        &names.versions,
        &[("documentId", S), ("version", N)],
        None,
        false,
        None,
    )
    .await?;
    create(
        client,
        &names.connections,
        &[("connectionId", S)],
        Some(Index {
            name: BY_USER_INDEX,
            keys: &[("userId", S)],
            projects: &[EXPIRES_AT],
        }),
        false,
        Some(EXPIRES_AT),
    )
    .await?;
    create(
        client,
        &names.subscriptions,
        &[("documentId", S), ("connectionId", S)],
        Some(Index {
            name: BY_CONNECTION_INDEX,
            keys: &[("connectionId", S), ("documentId", S)],
            projects: &[],
        }),
        false,
        Some(EXPIRES_AT),
    )
    .await?;
    create(
        client,
        &names.audit,
        &[("documentId", S), ("version", N)],
        None,
        false,
        None,
    )
    .await?;
    create(
        client,
        &names.analysis,
        &[("documentId", S)],
        None,
        false,
        None,
    )
    .await?;
    create(
        client,
        &names.attempts,
        &[("recordId", S)],
        None,
        false,
        Some(EXPIRES_AT),
    )
    .await?;
    Ok(())
}

/// The ARN of the documents table's latest stream.
pub async fn stream_arn(client: &Client, documents_table: &str) -> Result<Option<String>> {
    let described = client
        .describe_table()
        .table_name(documents_table)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeTable", e))?;
    Ok(described
        .table()
        .and_then(|t| t.latest_stream_arn())
        .map(str::to_owned))
}

async fn create(
    client: &Client,
    name: &str,
    keys: &[(&str, ScalarAttributeType)],
    index: Option<Index<'_>>,
    stream: bool,
    ttl: Option<&str>,
) -> Result<()> {
    let key = |attribute: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attribute)
            .key_type(kind)
            .build()
            .map_err(|e| build_error("a key schema", e))
    };
    let definition = |attribute: &str, kind: &ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(attribute)
            .attribute_type(kind.clone())
            .build()
            .map_err(|e| build_error("an attribute definition", e))
    };
    let key_schema = |keys: &[(&str, ScalarAttributeType)]| {
        keys.iter()
            .enumerate()
            .map(|(i, (attribute, _))| {
                key(
                    attribute,
                    if i == 0 {
                        KeyType::Hash
                    } else {
                        KeyType::Range
                    },
                )
            })
            .collect::<Result<Vec<_>>>()
    };
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(keys)?));
    for (attribute, kind) in keys {
        request = request.attribute_definitions(definition(attribute, kind)?);
    }
    if let Some(index) = index {
        for (attribute, kind) in index.keys {
            if !keys.iter().any(|(key, _)| key == attribute) {
                request = request.attribute_definitions(definition(attribute, kind)?);
            }
        }
        let projection = if index.projects.is_empty() {
            Projection::builder().projection_type(ProjectionType::KeysOnly)
        } else {
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(
                    index.projects.iter().map(|a| (*a).to_owned()).collect(),
                ))
        };
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .set_key_schema(Some(key_schema(index.keys)?))
                .projection(projection.build())
                .build()
                .map_err(|e| build_error("an index", e))?,
        );
    }
    if stream {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(|e| build_error("a stream specification", e))?,
        );
    }
    match request.send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) => {}
        Err(e) => return Err(sdk_error("CreateTable", e)),
    }
    wait_active(client, name).await?;
    if let Some(attribute) = ttl {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attribute)
                    .enabled(true)
                    .build()
                    .map_err(|e| build_error("a TTL specification", e))?,
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("UpdateTimeToLive", e))
            .or_else(|e| match e {
                // Already enabled.
                crate::Error::Unknown(_) => Ok(()),
                other => Err(other),
            })?;
    }
    Ok(())
}

async fn wait_active(client: &Client, name: &str) -> Result<()> {
    use aws_sdk_dynamodb::types::TableStatus;
    for _ in 0..600 {
        let described = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTable", e))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Err(crate::Error::Unavailable(format!(
        "table {name} did not become active"
    )))
}
