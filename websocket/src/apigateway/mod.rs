//! API Gateway WebSocket (cargo feature `aws`): the routes of the Lambda `websocket`
//! function, [`handle_request`], and the [`Outbox`] that pushes frames to API Gateway
//! clients through the Management API's `post_to_connection`
//! ([`shared::aws::ConnectionPusher`], which bounds concurrent posts and refuses frames
//! over API Gateway's 128 KB message limit before calling).
//!
//! Routes (route selection `$request.body.action`; every frame lands on `$default`):
//! `$connect` verifies `?token=`, counts the user's connections and registers the
//! connection (401 or 429 refuses the upgrade), `$default` hands the frame to the
//! connection service, `$disconnect` forgets the connection and its subscriptions. The
//! function's schedule runs [`sweep`], which closes connections whose tokens expired.
//! Before `$connect`, API Gateway asks the same function's [`authorizer`] whether the
//! handshake's token verifies.
//!
//! A 410 Gone is [`SendError::Gone`], so the notifier forgets the connection. A frame
//! that is too large is reported [`SendError::Unavailable`] and logged by the caller:
//! retrying cannot help it, but the connection is still there.

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use shared::auth::AuthError;
use shared::aws::{ConnectionPusher, PushError};
use shared::ports::ConnectionId;
use tracing::Instrument;

pub mod authorizer;

use crate::frames::Frame;
use crate::outbox::{Outbox, SendError};
use crate::service::{ConnectError, ConnectionService, FrameOutcome};

/// Pushes frames through API Gateway.
#[derive(Debug, Clone)]
pub struct ApiGatewayOutbox {
    pusher: ConnectionPusher,
}

impl ApiGatewayOutbox {
    pub fn new(pusher: ConnectionPusher) -> Self {
        Self { pusher }
    }

    pub fn pusher(&self) -> &ConnectionPusher {
        &self.pusher
    }
}

#[async_trait]
impl Outbox for ApiGatewayOutbox {
    async fn send(&self, to: &ConnectionId, frame: Frame) -> Result<(), SendError> {
        match self.pusher.post(to, &frame.bytes()).await {
            Ok(()) => Ok(()),
            Err(PushError::Gone) => Err(SendError::Gone),
            Err(
                e @ (PushError::TooLarge(_) | PushError::Unavailable(_) | PushError::Failed(_)),
            ) => Err(SendError::Unavailable(e.to_string())),
        }
    }
}

/// The outcome of one API Gateway WebSocket event, as the Lambda function answers it.
/// `$connect` refused with 401 refuses the upgrade; other routes answer 200 with no
/// body, because replies are posted through the outbox like every other frame.
pub async fn handle_request(
    service: &ConnectionService,
    outbox: &ApiGatewayOutbox,
    request: &ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let context = &request.request_context;
    let Some(id) = context
        .connection_id
        .as_deref()
        .map(|id| ConnectionId(id.into()))
    else {
        return response(400, "the event has no connectionId");
    };
    let route = context.route_key.as_deref().unwrap_or("$default");
    let span = tracing::info_span!("websocket", route, connection = %id);
    async {
        match route {
            "$connect" => {
                let token = request
                    .query_string_parameters
                    .first("token")
                    .unwrap_or_default();
                match service.connect(id.clone(), token).await {
                    Ok(_) => response(200, ""),
                    Err(ConnectError::Unauthorized(AuthError::Unavailable(e))) => {
                        tracing::warn!(error = %e, "connection refused: the identity provider's keys are unavailable");
                        response(503, "unavailable")
                    }
                    Err(ConnectError::Unauthorized(e)) => {
                        tracing::info!(error = %e, "connection refused");
                        response(401, "unauthorized")
                    }
                    Err(ConnectError::TooMany(most)) => {
                        tracing::info!(most, "connection refused: too many connections for one user");
                        response(429, "too many connections")
                    }
                    Err(ConnectError::Unavailable(e)) => {
                        tracing::warn!(error = %e, "connection refused: registry unavailable");
                        response(503, "unavailable")
                    }
                }
            }
            "$disconnect" => {
                service.disconnect(&id).await;
                response(200, "")
            }
            _ => {
                let text = request.body.as_deref().unwrap_or_default();
                match service.handle_frame(&id, text).await {
                    FrameOutcome::Continue | FrameOutcome::Refreshed(_) => {}
                    // API Gateway cannot send a close code: the server side closes by
                    // deleting the connection, and $disconnect then forgets it.
                    FrameOutcome::Close(close) => {
                        tracing::info!(reason = close.reason, "closing the connection");
                        if let Err(e) = outbox.pusher().disconnect(&id).await {
                            tracing::warn!(error = %e, "could not close the connection");
                        }
                    }
                }
                response(200, "")
            }
        }
    }
    .instrument(span)
    .await
}

fn response(status: i64, body: &str) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    if !body.is_empty() {
        response.body = Some(Body::Text(body.to_owned()));
    }
    response
}

/// Connections one sweep closes at most; the next sweep takes the rest.
pub const SWEEP_LIMIT: usize = 1_000;

/// Whether a Lambda event is the scheduled sweep (an EventBridge schedule's event)
/// rather than an API Gateway WebSocket event.
pub fn is_scheduled(event: &serde_json::Value) -> bool {
    event["source"] == "aws.events" && event["detail-type"] == "Scheduled Event"
}

/// The scheduled sweep: closes (`DELETE @connections`) and forgets every connection
/// whose token has expired, with its subscriptions, announcing departures as
/// `$disconnect` does. A client that renews its token in time (an `auth` frame) is
/// never swept; one that does not would otherwise stay open until API Gateway's
/// two-hour limit, since a quiet document pushes nothing that would find it expired.
/// Returns how many were closed.
pub async fn sweep(
    service: &ConnectionService,
    outbox: &ApiGatewayOutbox,
) -> shared::Result<usize> {
    let expired = service.expired_connections(SWEEP_LIMIT).await?;
    for id in &expired {
        match outbox.pusher().disconnect(id).await {
            Ok(()) | Err(PushError::Gone) => {}
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "could not close an expired connection")
            }
        }
        service.disconnect(id).await;
    }
    if !expired.is_empty() {
        tracing::info!(
            closed = expired.len(),
            "swept connections whose tokens had expired"
        );
    }
    Ok(expired.len())
}

/// The variable that caps one user's connections, as `docfan serve` reads it.
pub const MAX_CONNECTIONS_PER_USER_VAR: &str = "DOCFAN_WS_MAX_CONNECTIONS_PER_USER";

/// The per-user connection cap from [`MAX_CONNECTIONS_PER_USER_VAR`]'s value: a whole
/// number from 1; unset or empty, the local server's default (16).
pub fn max_connections_per_user(value: Option<&str>) -> anyhow::Result<usize> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(crate::LocalConfig::default().max_connections_per_user),
        Some(raw) => match raw.parse::<usize>() {
            Ok(most) if most >= 1 => Ok(most),
            _ => anyhow::bail!(
                "{MAX_CONNECTIONS_PER_USER_VAR} must be a whole number from 1, not `{raw}`"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_user_cap_reads_like_the_local_servers() {
        assert_eq!(max_connections_per_user(None).unwrap(), 16);
        assert_eq!(max_connections_per_user(Some(" ")).unwrap(), 16);
        assert_eq!(max_connections_per_user(Some("3")).unwrap(), 3);
        for bad in ["0", "-1", "many", "1.5"] {
            let e = max_connections_per_user(Some(bad)).unwrap_err().to_string();
            assert!(
                e.contains(MAX_CONNECTIONS_PER_USER_VAR) && e.contains(bad),
                "{e}"
            );
        }
    }
}
