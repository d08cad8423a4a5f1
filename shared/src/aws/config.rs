//! Configuration of the AWS adapters, read once from the environment, and the clients
//! built from it once per process.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `AWS_REGION` | the region (Lambda sets it) | the SDK's region chain |
//! | `AWS_ENDPOINT_URL` | one endpoint for every AWS API (an emulator such as moto) | AWS's endpoints |
//! | `DOCFAN_DOCUMENTS_TABLE` | documents (with the NEW_AND_OLD_IMAGES stream) | `docfan-documents` |
//! | `DOCFAN_MEMBERS_TABLE` | (userId, documentId) membership items | `docfan-members` |
//! | `DOCFAN_CONNECTIONS_TABLE` | WebSocket connections | `docfan-connections` |
//! | `DOCFAN_SUBSCRIPTIONS_TABLE` | (documentId, connectionId) subscriptions | `docfan-subscriptions` |
//! | `DOCFAN_VERSIONS_TABLE` | (documentId, version) kept versions: body operations and snapshots | `docfan-versions` |
//! | `DOCFAN_AUDIT_TABLE` | (documentId, version) audit entries | `docfan-audit` |
//! | `DOCFAN_ANALYSIS_TABLE` | the latest analysis per document | `docfan-analysis` |
//! | `DOCFAN_ATTEMPTS_TABLE` | failed attempts of stream records (the index consumer's give-up count) | `docfan-attempts` |
//! | `DOCFAN_ANALYSIS_QUEUE_URL` | the SQS queue of analysis jobs | none (required by the queue) |
//! | `DOCFAN_DEAD_LETTER_QUEUE_URL` | the SQS queue of dead letters (whole records + reason) | none (required by the DLQ) |
//! | `DOCFAN_STREAM_FAILURE_QUEUE_URL` | the stream mappings' on-failure queue (batch metadata), read by `docfan dlq replay` | none (required by the replay) |
//! | `DOCFAN_OPENSEARCH_URL` | the OpenSearch endpoint | none (required by search) |
//! | `DOCFAN_OPENSEARCH_INDEX` | the index name | `documents` |
//! | `DOCFAN_OPENSEARCH_SIGV4` | sign requests with SigV4 (`true`/`false`) | `true` for `https://` URLs, `false` for `http://` |
//! | `DOCFAN_OPENSEARCH_SIGV4_SERVICE` | the SigV4 service name (`es`, or `aoss` for Serverless) | `es` |
//! | `DOCFAN_OPENSEARCH_WAIT_FOR_REFRESH` | a flush waits until its writes are searchable (`true`/`false`) | `false`: the index's refresh interval decides |
//! | `DOCFAN_EVENT_BUS_NAME` | the EventBridge bus (name or ARN) every change is published to as an event | none (no events sink) |
//! | `DOCFAN_WEBSOCKET_ENDPOINT` | the Management API endpoint, `https://{api}.execute-api.{region}.amazonaws.com/{stage}` | `AWS_ENDPOINT_URL` |
//! | `DOCFAN_CONNECTION_TTL_SECONDS` | lifetime written into `expiresAt` (DynamoDB TTL) of connection and subscription items | `7200` |
//! | `DOCFAN_MAX_CONCURRENT_PUSHES` | concurrent `post_to_connection` calls per process | `64` |
//!
//! Credentials come from the SDK's default chain (the Lambda role, a profile, or
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`).

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use opensearch::OpenSearch;
use opensearch::http::Url;
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};

use super::{
    ApiGatewayNotifier, ConnectionPusher, DynamoDbAnalysisStore, DynamoDbAttemptLog,
    DynamoDbAuditLog, DynamoDbConnectionRegistry, DynamoDbDocumentStore, EventBridgeBus,
    EventBridgeConfig, EventBusName, OpenSearchIndex, SqsAnalysisQueue, SqsDeadLetterQueue,
};
use crate::clock::Clock;
use crate::{Error, Result};

/// The DynamoDB tables, by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub documents: String,
    pub members: String,
    /// One item per kept version of a document (its body operation, every
    /// [`SNAPSHOT_EVERY`](crate::domain::SNAPSHOT_EVERY) versions its whole body).
    pub versions: String,
    pub connections: String,
    pub subscriptions: String,
    pub audit: String,
    pub analysis: String,
    /// Failed attempts of stream records (`recordId`), for the Lambda index consumer.
    pub attempts: String,
}

impl TableNames {
    /// Every table named `{prefix}-{role}`.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            documents: format!("{prefix}-documents"),
            members: format!("{prefix}-members"),
            versions: format!("{prefix}-versions"),
            connections: format!("{prefix}-connections"),
            subscriptions: format!("{prefix}-subscriptions"),
            audit: format!("{prefix}-audit"),
            analysis: format!("{prefix}-analysis"),
            attempts: format!("{prefix}-attempts"),
        }
    }
}

impl Default for TableNames {
    fn default() -> Self {
        Self::with_prefix("docfan")
    }
}

/// Where the search index lives and how requests are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSearchConfig {
    pub url: String,
    pub index: String,
    /// Sign requests with SigV4 (Amazon OpenSearch Service); plain HTTP otherwise.
    pub sign: bool,
    /// The SigV4 service name: `es` for a domain, `aoss` for Serverless.
    pub service: String,
    /// Whether a flush waits until its writes are searchable (`refresh=wait_for`: the
    /// index's next scheduled refresh, never a forced one). Off in a deployment, where
    /// the refresh interval decides; the tests turn it on to search right after a flush.
    pub wait_for_refresh: bool,
}

/// Everything the AWS adapters need to know; see the module doc for the variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub tables: TableNames,
    pub analysis_queue_url: Option<String>,
    pub dead_letter_queue_url: Option<String>,
    /// The stream mappings' on-failure queue (batch metadata), for `docfan dlq replay`.
    pub stream_failure_queue_url: Option<String>,
    pub opensearch: Option<OpenSearchConfig>,
    /// The EventBridge bus of the events sink; checked when read, so a malformed name
    /// stops a function at start.
    pub event_bus_name: Option<EventBusName>,
    pub websocket_endpoint: Option<String>,
    pub connection_ttl: Duration,
    pub max_concurrent_pushes: usize,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            tables: TableNames::default(),
            analysis_queue_url: None,
            dead_letter_queue_url: None,
            stream_failure_queue_url: None,
            opensearch: None,
            event_bus_name: None,
            websocket_endpoint: None,
            connection_ttl: Duration::from_secs(7200),
            max_concurrent_pushes: 64,
        }
    }
}

impl AwsConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let defaults = TableNames::default();
        let table = |name: &str, default: String| var(name).unwrap_or(default);
        let tables = TableNames {
            documents: table("DOCFAN_DOCUMENTS_TABLE", defaults.documents),
            members: table("DOCFAN_MEMBERS_TABLE", defaults.members),
            versions: table("DOCFAN_VERSIONS_TABLE", defaults.versions),
            connections: table("DOCFAN_CONNECTIONS_TABLE", defaults.connections),
            subscriptions: table("DOCFAN_SUBSCRIPTIONS_TABLE", defaults.subscriptions),
            audit: table("DOCFAN_AUDIT_TABLE", defaults.audit),
            analysis: table("DOCFAN_ANALYSIS_TABLE", defaults.analysis),
            attempts: table("DOCFAN_ATTEMPTS_TABLE", defaults.attempts),
        };
        let opensearch = match var("DOCFAN_OPENSEARCH_URL") {
            None => None,
            Some(url) => {
                let flag = |name: &'static str, default: bool| match var(name).as_deref() {
                    None => Ok(default),
                    Some("true" | "1" | "yes") => Ok(true),
                    Some("false" | "0" | "no") => Ok(false),
                    Some(other) => Err(Error::invalid(
                        name,
                        format!("must be true or false, not {other:?}"),
                    )),
                };
                Some(OpenSearchConfig {
                    sign: flag("DOCFAN_OPENSEARCH_SIGV4", url.starts_with("https://"))?,
                    wait_for_refresh: flag("DOCFAN_OPENSEARCH_WAIT_FOR_REFRESH", false)?,
                    url,
                    index: var("DOCFAN_OPENSEARCH_INDEX").unwrap_or_else(|| "documents".into()),
                    service: var("DOCFAN_OPENSEARCH_SIGV4_SERVICE").unwrap_or_else(|| "es".into()),
                })
            }
        };
        let number = |name: &'static str, default: u64| -> Result<u64> {
            match var(name) {
                None => Ok(default),
                Some(raw) => raw.trim().parse().map_err(|_| {
                    Error::invalid(name, format!("must be a whole number, not {raw:?}"))
                }),
            }
        };
        Ok(Self {
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            endpoint_url: var("AWS_ENDPOINT_URL"),
            tables,
            analysis_queue_url: var("DOCFAN_ANALYSIS_QUEUE_URL"),
            dead_letter_queue_url: var("DOCFAN_DEAD_LETTER_QUEUE_URL"),
            stream_failure_queue_url: var("DOCFAN_STREAM_FAILURE_QUEUE_URL"),
            opensearch,
            event_bus_name: var("DOCFAN_EVENT_BUS_NAME")
                .map(|raw| EventBusName::parse(&raw))
                .transpose()?,
            websocket_endpoint: var("DOCFAN_WEBSOCKET_ENDPOINT"),
            connection_ttl: Duration::from_secs(number("DOCFAN_CONNECTION_TTL_SECONDS", 7200)?),
            max_concurrent_pushes: number("DOCFAN_MAX_CONCURRENT_PUSHES", 64)?.max(1) as usize,
        })
    }

    /// The SDK configuration: the default credential chain, this region and endpoint.
    pub async fn load_sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        loader.load().await
    }
}

/// Every client the adapters use, built once; the adapters share them (each client is a
/// cheap handle onto one connection pool).
#[derive(Clone)]
pub struct AwsClients {
    pub config: AwsConfig,
    pub sdk: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    /// Present when a WebSocket endpoint (or an emulator endpoint) is configured.
    pub management: Option<aws_sdk_apigatewaymanagement::Client>,
    /// Present when `DOCFAN_OPENSEARCH_URL` is set.
    pub opensearch: Option<OpenSearch>,
}

impl AwsClients {
    /// Loads the SDK configuration and builds every client.
    pub async fn load(config: AwsConfig) -> Result<Self> {
        let sdk = config.load_sdk_config().await;
        Self::from_sdk_config(config, sdk)
    }

    /// Builds every client from an SDK configuration the caller made (tests use this to
    /// set static credentials for an emulator).
    pub fn from_sdk_config(config: AwsConfig, sdk: SdkConfig) -> Result<Self> {
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let eventbridge = aws_sdk_eventbridge::Client::new(&sdk);
        let management = config
            .websocket_endpoint
            .as_deref()
            .or(config.endpoint_url.as_deref())
            .map(|endpoint| {
                let conf = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
                    .endpoint_url(endpoint)
                    .build();
                aws_sdk_apigatewaymanagement::Client::from_conf(conf)
            });
        let opensearch = config
            .opensearch
            .as_ref()
            .map(|search| opensearch_client(search, &sdk))
            .transpose()?;
        Ok(Self {
            config,
            sdk,
            dynamodb,
            streams,
            sqs,
            eventbridge,
            management,
            opensearch,
        })
    }

    pub fn document_store(&self) -> DynamoDbDocumentStore {
        DynamoDbDocumentStore::new(
            self.dynamodb.clone(),
            &self.config.tables.documents,
            &self.config.tables.members,
            &self.config.tables.versions,
        )
    }

    pub fn connection_registry(&self, clock: Arc<dyn Clock>) -> DynamoDbConnectionRegistry {
        DynamoDbConnectionRegistry::new(
            self.dynamodb.clone(),
            &self.config.tables.connections,
            &self.config.tables.subscriptions,
            self.config.connection_ttl,
            clock,
        )
    }

    /// The notifier of the functions that fan out: the DynamoDB registry and
    /// `post_to_connection`. Errors: `Invalid` without a WebSocket endpoint.
    pub fn notifier(&self, clock: Arc<dyn Clock>) -> Result<ApiGatewayNotifier> {
        Ok(ApiGatewayNotifier::new(
            Arc::new(self.connection_registry(Arc::clone(&clock))),
            self.pusher()?,
            clock,
        ))
    }

    pub fn audit_log(&self) -> DynamoDbAuditLog {
        DynamoDbAuditLog::new(self.dynamodb.clone(), &self.config.tables.audit)
    }

    pub fn attempt_log(&self, clock: Arc<dyn Clock>) -> DynamoDbAttemptLog {
        DynamoDbAttemptLog::new(self.dynamodb.clone(), &self.config.tables.attempts, clock)
    }

    pub fn analysis_store(&self) -> DynamoDbAnalysisStore {
        DynamoDbAnalysisStore::new(self.dynamodb.clone(), &self.config.tables.analysis)
    }

    /// The dead-letter queue. Errors: `Invalid` when `DOCFAN_DEAD_LETTER_QUEUE_URL` is unset.
    pub fn dead_letter_queue(&self, clock: Arc<dyn Clock>) -> Result<SqsDeadLetterQueue> {
        let url = required(
            &self.config.dead_letter_queue_url,
            "DOCFAN_DEAD_LETTER_QUEUE_URL",
        )?;
        Ok(SqsDeadLetterQueue::new(self.sqs.clone(), url, clock))
    }

    /// The analysis queue; dead jobs go to the dead-letter queue when one is configured.
    /// Errors: `Invalid` when `DOCFAN_ANALYSIS_QUEUE_URL` is unset.
    pub fn analysis_queue(&self, clock: Arc<dyn Clock>) -> Result<SqsAnalysisQueue> {
        let url = required(&self.config.analysis_queue_url, "DOCFAN_ANALYSIS_QUEUE_URL")?;
        let dead_letters = self.config.dead_letter_queue_url.as_ref().map(|url| {
            Arc::new(SqsDeadLetterQueue::new(
                self.sqs.clone(),
                url,
                Arc::clone(&clock),
            )) as _
        });
        Ok(SqsAnalysisQueue::new(
            self.sqs.clone(),
            url,
            dead_letters,
            clock,
        ))
    }

    /// The search index (its index is created on first use). Errors: `Invalid` when
    /// `DOCFAN_OPENSEARCH_URL` is unset.
    pub fn search_index(&self) -> Result<OpenSearchIndex> {
        let (Some(client), Some(search)) = (&self.opensearch, &self.config.opensearch) else {
            return Err(Error::invalid("DOCFAN_OPENSEARCH_URL", "is not set"));
        };
        Ok(OpenSearchIndex::new(client.clone(), &search.index)
            .waiting_for_refresh(search.wait_for_refresh))
    }

    /// The EventBridge bus of the events sink, when `DOCFAN_EVENT_BUS_NAME` names one.
    pub fn event_bus(&self) -> Option<EventBridgeBus> {
        self.config.event_bus_name.as_ref().map(|bus| {
            EventBridgeBus::new(
                self.eventbridge.clone(),
                EventBridgeConfig::new(bus.clone()),
            )
        })
    }

    /// The `post_to_connection` client. Errors: `Invalid` when `DOCFAN_WEBSOCKET_ENDPOINT`
    /// is unset.
    pub fn pusher(&self) -> Result<ConnectionPusher> {
        let client = self
            .management
            .clone()
            .ok_or_else(|| Error::invalid("DOCFAN_WEBSOCKET_ENDPOINT", "is not set"))?;
        Ok(ConnectionPusher::new(
            client,
            self.config.max_concurrent_pushes,
        ))
    }
}

/// What each Lambda function refuses to start without: the tables, queues and
/// endpoints it uses, which `AwsConfig` would otherwise default (`docfan-*` table
/// names) or leave unset until the first call needs them. `infra/template.yaml` sets
/// every one of them on its function.
pub mod required {
    pub const API: &[&str] = &[
        "DOCFAN_DOCUMENTS_TABLE",
        "DOCFAN_MEMBERS_TABLE",
        "DOCFAN_VERSIONS_TABLE",
        "DOCFAN_AUDIT_TABLE",
        "DOCFAN_ANALYSIS_TABLE",
        "DOCFAN_OPENSEARCH_URL",
    ];
    pub const WEBSOCKET: &[&str] = &[
        "DOCFAN_DOCUMENTS_TABLE",
        "DOCFAN_CONNECTIONS_TABLE",
        "DOCFAN_SUBSCRIPTIONS_TABLE",
        "DOCFAN_AUDIT_TABLE",
        "DOCFAN_WEBSOCKET_ENDPOINT",
    ];
    /// The stream's index consumer (search, audit, analysis queue, events).
    pub const INDEX_CONSUMER: &[&str] = &[
        "DOCFAN_VERSIONS_TABLE",
        "DOCFAN_AUDIT_TABLE",
        "DOCFAN_ATTEMPTS_TABLE",
        "DOCFAN_ANALYSIS_QUEUE_URL",
        "DOCFAN_DEAD_LETTER_QUEUE_URL",
        "DOCFAN_OPENSEARCH_URL",
    ];
    /// The stream's live consumer (notifications).
    pub const LIVE_CONSUMER: &[&str] = &[
        "DOCFAN_VERSIONS_TABLE",
        "DOCFAN_CONNECTIONS_TABLE",
        "DOCFAN_SUBSCRIPTIONS_TABLE",
        "DOCFAN_WEBSOCKET_ENDPOINT",
    ];
    pub const ANALYSIS_WORKER: &[&str] = &[
        "DOCFAN_DOCUMENTS_TABLE",
        "DOCFAN_VERSIONS_TABLE",
        "DOCFAN_CONNECTIONS_TABLE",
        "DOCFAN_SUBSCRIPTIONS_TABLE",
        "DOCFAN_ANALYSIS_TABLE",
        "DOCFAN_WEBSOCKET_ENDPOINT",
    ];
}

/// Refuses to go on when any of `names` is unset or empty in the process
/// environment, naming every one missing (a function's check at cold start).
pub fn require(names: &[&str]) -> anyhow::Result<()> {
    require_in(names, |name| std::env::var(name).ok())
}

/// [`require`] over any source of variables.
pub fn require_in(names: &[&str], var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| var(name).is_none_or(|v| v.trim().is_empty()))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "this function needs {} set: {} (infra/template.yaml sets them; nothing is defaulted)",
        if missing.len() == 1 {
            "this variable"
        } else {
            "these variables"
        },
        missing.join(", ")
    );
    Ok(())
}

/// The log format of a Lambda function: `DOCFAN_LOG_FORMAT`, JSON unless it says
/// `human` (one JSON object per line is what CloudWatch Logs Insights reads).
pub fn log_format() -> crate::telemetry::LogFormat {
    std::env::var("DOCFAN_LOG_FORMAT")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or(crate::telemetry::LogFormat::Json)
}

fn required<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str> {
    value
        .as_deref()
        .ok_or_else(|| Error::invalid(name, "is not set"))
}

/// An OpenSearch client: SigV4-signed for Amazon OpenSearch Service, plain otherwise.
pub fn opensearch_client(config: &OpenSearchConfig, sdk: &SdkConfig) -> Result<OpenSearch> {
    let url = Url::parse(&config.url)
        .map_err(|e| Error::invalid("DOCFAN_OPENSEARCH_URL", format!("is not a URL: {e}")))?;
    let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url))
        .timeout(Duration::from_secs(10))
        .disable_proxy();
    if config.sign {
        let credentials = opensearch::auth::Credentials::try_from(sdk).map_err(|e| {
            Error::Unknown(anyhow::anyhow!(
                "SigV4 signing needs credentials and a region: {e}"
            ))
        })?;
        builder = builder.auth(credentials).service_name(&config.service);
    }
    let transport = builder
        .build()
        .map_err(|e| Error::Unknown(anyhow::anyhow!("building the OpenSearch client: {e}")))?;
    Ok(OpenSearch::new(transport))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<AwsConfig> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AwsConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let plain = config(&[]).unwrap();
        assert_eq!(plain.tables.documents, "docfan-documents");
        assert_eq!(plain.tables.versions, "docfan-versions");
        assert!(plain.opensearch.is_none());
        assert_eq!(plain.connection_ttl, Duration::from_secs(7200));

        let set = config(&[
            ("DOCFAN_DOCUMENTS_TABLE", "docs"),
            ("DOCFAN_VERSIONS_TABLE", "kept"),
            ("DOCFAN_OPENSEARCH_URL", "https://search.example"),
            ("DOCFAN_CONNECTION_TTL_SECONDS", "60"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ])
        .unwrap();
        assert_eq!(set.tables.documents, "docs");
        assert_eq!(set.tables.versions, "kept");
        assert_eq!(set.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        let search = set.opensearch.unwrap();
        assert!(search.sign, "https endpoints are signed by default");
        assert!(
            !search.wait_for_refresh,
            "the refresh interval decides by default"
        );
        assert_eq!(search.index, "documents");
        assert_eq!(set.connection_ttl, Duration::from_secs(60));

        let local = config(&[("DOCFAN_OPENSEARCH_URL", "http://127.0.0.1:9200")]).unwrap();
        assert!(!local.opensearch.unwrap().sign);
        let waiting = config(&[
            ("DOCFAN_OPENSEARCH_URL", "http://127.0.0.1:9200"),
            ("DOCFAN_OPENSEARCH_WAIT_FOR_REFRESH", "true"),
        ])
        .unwrap();
        assert!(waiting.opensearch.unwrap().wait_for_refresh);
        assert!(
            config(&[
                ("DOCFAN_OPENSEARCH_URL", "x"),
                ("DOCFAN_OPENSEARCH_WAIT_FOR_REFRESH", "soon")
            ])
            .is_err()
        );
        assert!(
            config(&[
                ("DOCFAN_OPENSEARCH_URL", "x"),
                ("DOCFAN_OPENSEARCH_SIGV4", "maybe")
            ])
            .is_err()
        );
        assert!(config(&[("DOCFAN_CONNECTION_TTL_SECONDS", "soon")]).is_err());
    }

    #[test]
    fn a_function_names_every_variable_it_is_missing() {
        let set = |name: &str| match name {
            "DOCFAN_DOCUMENTS_TABLE" => Some("t-documents".to_owned()),
            "DOCFAN_AUDIT_TABLE" => Some(" ".to_owned()),
            _ => None,
        };
        require_in(&["DOCFAN_DOCUMENTS_TABLE"], set).unwrap();
        let e = require_in(required::WEBSOCKET, set)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "DOCFAN_CONNECTIONS_TABLE, DOCFAN_SUBSCRIPTIONS_TABLE, DOCFAN_AUDIT_TABLE, DOCFAN_WEBSOCKET_ENDPOINT"
            ),
            "{e}"
        );
        assert!(!e.contains("DOCFAN_DOCUMENTS_TABLE"), "{e}");
    }

    #[test]
    fn the_event_bus_is_optional_and_checked_when_read() {
        assert_eq!(config(&[]).unwrap().event_bus_name, None);
        let set = config(&[("DOCFAN_EVENT_BUS_NAME", "docfan-dev")]).unwrap();
        assert_eq!(
            set.event_bus_name.as_ref().map(EventBusName::as_str),
            Some("docfan-dev")
        );
        let err = config(&[("DOCFAN_EVENT_BUS_NAME", "docfan dev")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DOCFAN_EVENT_BUS_NAME"), "{err}");
    }
}
