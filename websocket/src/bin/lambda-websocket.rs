//! The Lambda `websocket` function: API Gateway WebSocket events (`$connect` with the
//! token in `?token=`, `$default` frames dispatched on `action`, `$disconnect`) into the
//! same connection service as the local `/ws` driver, over the DynamoDB registry, with
//! frames pushed through `post_to_connection`; the `$connect` route's REQUEST
//! authorizer (an event with `"type": "REQUEST"` and a `methodArn`); and, on its
//! schedule (an EventBridge `Scheduled Event`), the sweep that closes connections whose
//! tokens have expired.
//!
//! Environment: the AWS adapters' variables (see `shared::aws::config`: the connections,
//! subscriptions, documents and audit tables, `DOCFAN_WEBSOCKET_ENDPOINT`,
//! `DOCFAN_CONNECTION_TTL_SECONDS`) and token verification's (`shared::auth::env`:
//! `DOCFAN_JWT_SECRET`, or an identity provider's `DOCFAN_JWT_JWKS_URL`, with
//! `DOCFAN_JWT_ISSUER`, `DOCFAN_JWT_AUDIENCE`…); `DOCFAN_WS_MAX_CONNECTIONS_PER_USER`
//! (default 16) caps one user's connections, counted in the connections table at
//! `$connect`; logs follow `RUST_LOG` and `DOCFAN_LOG_FORMAT`.

// A binary sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use shared::auth::{TokenAuthority, TokenConfig};
use shared::aws::{AwsClients, AwsConfig};
use shared::clock::{Clock, SystemClock};
use shared::metrics::Emf;
use websocket::apigateway::authorizer::{Refusal, authorize, is_authorizer};
use websocket::apigateway::{
    ApiGatewayOutbox, MAX_CONNECTIONS_PER_USER_VAR, handle_request, is_scheduled,
    max_connections_per_user, sweep,
};
use websocket::{ConnectionService, ServiceConfig, ServicePorts};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(shared::aws::config::log_format());
    shared::aws::config::require(shared::aws::config::required::WEBSOCKET)?;
    let tokens = TokenConfig::from_env_without_data_dir()?;
    let per_user =
        max_connections_per_user(std::env::var(MAX_CONNECTIONS_PER_USER_VAR).ok().as_deref())?;
    let tokens = TokenAuthority::start(tokens, SystemClock.now()).await?;
    let handshakes = tokens.clone();
    let clients = AwsClients::load(AwsConfig::from_env()?).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let outbox = ApiGatewayOutbox::new(clients.pusher()?);
    let service = ConnectionService::new(
        ServicePorts {
            registry: Arc::new(clients.connection_registry(Arc::clone(&clock))),
            documents: Arc::new(clients.document_store()),
            audit: Arc::new(clients.audit_log()),
            outbox: Arc::new(outbox.clone()),
            tokens,
            clock,
        },
        ServiceConfig {
            max_connections_per_user: Some(per_user),
            // Notifications are the live stream consumer's: keep no replay cursors.
            notifies_here: false,
            ..ServiceConfig::default()
        },
    );
    let emf = Emf::from_env("websocket");
    let (service, outbox, handshakes, emf) = (&service, &outbox, &handshakes, &emf);
    // Each invocation ends with its counts as CloudWatch EMF lines on stdout.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        emf.after(
            service.metrics(),
            invocation(service, outbox, handshakes, event),
        )
    }))
    .await
}

async fn invocation(
    service: &ConnectionService,
    outbox: &ApiGatewayOutbox,
    handshakes: &TokenAuthority,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    if is_authorizer(&event.payload) {
        return match authorize(handshakes, event.payload, service.now()).await {
            Ok(policy) => Ok(policy),
            Err(refusal) => {
                match &refusal {
                    Refusal::Unauthorized(why) => {
                        tracing::info!(error = %why, "handshake refused")
                    }
                    other => tracing::warn!(error = %other, "handshake not authorized"),
                }
                Err(Error::from(refusal.to_string()))
            }
        };
    }
    if is_scheduled(&event.payload) {
        let closed = sweep(service, outbox).await?;
        return Ok::<_, Error>(json!({ "closed": closed }));
    }
    let request: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event.payload)?;
    Ok(serde_json::to_value(
        handle_request(service, outbox, &request).await,
    )?)
}
