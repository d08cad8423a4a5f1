//! The `$connect` route's Lambda REQUEST authorizer: API Gateway calls it with the
//! handshake's `?token=` (the authorizer's identity source, so a handshake without one
//! is refused by API Gateway itself) before the `$connect` integration runs, and a
//! token that does not verify is refused with 401 before any function touches the
//! connections table. The `$connect` route keeps its own check ([`super::handle_request`]
//! verifies the token again and counts the user's connections): the authorizer is a
//! first gate, not the only one.
//!
//! API Gateway caches authorizer results only for HTTP APIs, so every WebSocket
//! handshake runs it; verifying an HS256 token, or an OIDC token against keys the
//! function already holds, takes microseconds.
//!
//! The answer is the IAM policy API Gateway expects: `Allow` on the handshake's
//! `methodArn` for the token's user (the `principalId`), with `user` and `expiresAt` as
//! the authorizer context `$connect` receives. A refused token is the error
//! `Unauthorized` (API Gateway answers 401); keys that cannot be fetched are another
//! error (API Gateway answers 500, and the client retries later).

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::auth::{AuthError, TokenAuthority};

/// The error message API Gateway turns into a 401 when an authorizer fails with it.
pub const UNAUTHORIZED: &str = "Unauthorized";

/// Why the authorizer refused a handshake.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The token is missing, expired or does not verify: 401.
    #[error("{UNAUTHORIZED}")]
    Unauthorized(#[source] AuthError),
    /// The identity provider's keys are unavailable: not the client's fault.
    #[error("the identity provider's keys are unavailable: {0}")]
    Unavailable(String),
    /// The event is not an API Gateway REQUEST authorizer event.
    #[error("not a REQUEST authorizer event: {0}")]
    Malformed(String),
}

/// Whether a Lambda event is an API Gateway REQUEST authorizer's call.
pub fn is_authorizer(event: &Value) -> bool {
    event["type"] == "REQUEST" && event["methodArn"].is_string()
}

/// Answers one authorizer call: the policy that lets the token's user open the
/// connection, or why not.
pub async fn authorize(
    tokens: &TokenAuthority,
    event: Value,
    now: DateTime<Utc>,
) -> Result<Value, Refusal> {
    let request: ApiGatewayCustomAuthorizerRequestTypeRequest =
        serde_json::from_value(event).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let Some(method_arn) = request.method_arn.as_deref().filter(|a| !a.is_empty()) else {
        return Err(Refusal::Malformed("the event has no methodArn".into()));
    };
    let token = request
        .query_string_parameters
        .first("token")
        .unwrap_or_default();
    let identity = tokens.verify(token, now).await.map_err(|e| match e {
        AuthError::Unavailable(why) => Refusal::Unavailable(why),
        other => Refusal::Unauthorized(other),
    })?;
    let user = identity.user.to_string();
    Ok(json!({
        "principalId": user,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Action": "execute-api:Invoke",
                "Effect": "Allow",
                "Resource": method_arn,
            }],
        },
        "context": {
            "user": user,
            "expiresAt": identity.expires_at.timestamp(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use shared::domain::UserId;

    use super::*;

    const ARN: &str = "arn:aws:execute-api:eu-west-1:123456789012:abcdef1234/live/$connect";

    /// An authorizer event as API Gateway sends it for a WebSocket `$connect`.
    fn event(query: Value) -> Value {
        json!({
            "type": "REQUEST",
            "methodArn": ARN,
            "headers": {"Host": "abcdef1234.execute-api.eu-west-1.amazonaws.com", "Sec-WebSocket-Version": "13"},
            "multiValueHeaders": {"Host": ["abcdef1234.execute-api.eu-west-1.amazonaws.com"]},
            "queryStringParameters": query,
            "multiValueQueryStringParameters": null,
            "stageVariables": {},
            "requestContext": {
                "routeKey": "$connect",
                "eventType": "CONNECT",
                "extendedRequestId": "Xq1sWFmkjoEFtdA=",
                "requestTime": "03/Dec/2026:15:00:00 +0000",
                "messageDirection": "IN",
                "stage": "live",
                "connectedAt": 1796223600000_i64,
                "requestTimeEpoch": 1796223600000_i64,
                "identity": {"sourceIp": "192.0.2.1"},
                "requestId": "Xq1sWFmkjoEFtdA=",
                "domainName": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
                "connectionId": "Xq1sWcW0joECFcg=",
                "apiId": "abcdef1234"
            }
        })
    }

    fn authority() -> TokenAuthority {
        TokenAuthority::new(b"a secret of at least thirty-two bytes!!").unwrap()
    }

    #[tokio::test]
    async fn a_good_token_is_allowed_on_the_handshake_alone_with_its_user_and_expiry() {
        let tokens = authority();
        let now = Utc::now();
        let ann = UserId::parse("ann").unwrap();
        let token = tokens.issue(&ann, TimeDelta::hours(1), now);
        let answer = authorize(&tokens, event(json!({ "token": token })), now)
            .await
            .unwrap();
        assert_eq!(answer["principalId"], "ann");
        let statements = answer["policyDocument"]["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1);
        assert_eq!(statements[0]["Effect"], "Allow");
        assert_eq!(statements[0]["Action"], "execute-api:Invoke");
        assert_eq!(statements[0]["Resource"], ARN);
        assert_eq!(answer["policyDocument"]["Version"], "2012-10-17");
        assert_eq!(answer["context"]["user"], "ann");
        let expires = answer["context"]["expiresAt"].as_i64().unwrap();
        assert!((expires - (now + TimeDelta::hours(1)).timestamp()).abs() <= 1);
    }

    #[tokio::test]
    async fn missing_expired_and_forged_tokens_are_unauthorized() {
        let tokens = authority();
        let now = Utc::now();
        let ann = UserId::parse("ann").unwrap();
        let expired = tokens.issue(&ann, TimeDelta::hours(1), now - TimeDelta::hours(2));
        let forged = TokenAuthority::new(b"another secret of thirty-two bytes or more")
            .unwrap()
            .issue(&ann, TimeDelta::hours(1), now);
        for query in [
            json!({}),
            Value::Null,
            json!({ "token": "" }),
            json!({ "token": "not.a.jwt" }),
            json!({ "token": expired }),
            json!({ "token": forged }),
            json!({ "token": "x".repeat(100_000) }),
        ] {
            let refusal = authorize(&tokens, event(query.clone()), now)
                .await
                .unwrap_err();
            assert!(
                matches!(refusal, Refusal::Unauthorized(_)),
                "{query}: {refusal:?}"
            );
            // API Gateway answers 401 only for exactly this message.
            assert_eq!(refusal.to_string(), UNAUTHORIZED);
        }
    }

    #[tokio::test]
    async fn events_that_are_not_authorizer_calls_are_refused_as_malformed() {
        let tokens = authority();
        let now = Utc::now();
        let mut no_arn = event(json!({ "token": "t" }));
        no_arn["methodArn"] = json!("");
        for bad in [
            no_arn,
            json!({"type": "REQUEST", "methodArn": 7}),
            json!([1, 2]),
        ] {
            let refusal = authorize(&tokens, bad.clone(), now).await.unwrap_err();
            assert!(
                matches!(refusal, Refusal::Malformed(_)),
                "{bad}: {refusal:?}"
            );
        }
    }

    #[test]
    fn authorizer_calls_are_told_from_websocket_and_scheduled_events() {
        assert!(is_authorizer(&event(json!({ "token": "t" }))));
        let mut route_event = event(json!({}));
        route_event.as_object_mut().unwrap().remove("type");
        route_event.as_object_mut().unwrap().remove("methodArn");
        assert!(!is_authorizer(&route_event));
        assert!(!is_authorizer(
            &json!({"source": "aws.events", "detail-type": "Scheduled Event"})
        ));
        assert!(!is_authorizer(&json!({"type": "TOKEN", "methodArn": ARN})));
    }
}
