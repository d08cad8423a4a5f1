//! SDK failures as [`Error`] variants, the same in every AWS adapter:
//! - what may pass when tried again (throttling, timeouts, connection failures, 5xx) is
//!   [`Error::Unavailable`];
//! - a deployment fault (the role may not do this, the table, queue or bus does not
//!   exist, the credentials are not recognised: a blocking code, or any 401 or 403) is
//!   [`Error::Blocked`]: the request is
//!   sound and succeeds once an operator fixes the deployment, so the fan-out fails the
//!   batch (and alarms) rather than dead-lettering the record;
//! - everything else is [`Error::Unknown`].
//!
//! The SDK has already retried transient failures with its own backoff when one reaches
//! these functions.

use std::fmt::Debug;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};

use crate::Error;
use crate::ports::WriteOutcome;

/// Error codes (not messages) that AWS services use for throttling and passing
/// overload or conflicts.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "ReplicatedWriteConflictException",
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "KMSThrottlingException",
    "AWS.SimpleQueueService.RequestThrottled",
];

/// Error codes that say the deployment, not the request, is wrong: the caller's role
/// may not do this, or the resource it names does not exist. Only an operator fixes
/// them, and then the same request succeeds.
const BLOCKING_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "NotAuthorizedForSourceException",
    "NotAuthorizedForDetailTypeException",
    "InvalidAccountIdException",
    "ResourceNotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue",
];

/// Whether an error code names a deployment fault ([`Error::Blocked`]).
pub fn is_blocking_code(code: &str) -> bool {
    BLOCKING_CODES.contains(&code)
}

/// Whether an error code names a transient failure.
pub fn is_transient_code(code: &str) -> bool {
    TRANSIENT_CODES.contains(&code)
}

/// The outcome of an idempotent conditional `PutItem`: applied, or already applied
/// when its condition failed (the item holds this write or a newer one).
pub fn conditional_put_outcome(
    result: Result<PutItemOutput, SdkError<PutItemError, HttpResponse>>,
) -> crate::Result<WriteOutcome> {
    match result {
        Ok(_) => Ok(WriteOutcome::Applied),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(PutItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            Ok(WriteOutcome::AlreadyApplied)
        }
        Err(e) => Err(sdk_error("PutItem", e)),
    }
}

/// Maps an SDK failure of operation `what` (see the module's classes).
pub fn sdk_error<E>(what: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::Unavailable(format!("{what}: {}", describe(&err)))
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code();
            // A 401 or 403 is the caller's identity or permissions, whatever its body
            // says (an emulator answers a JSON-protocol call with an XML AccessDenied
            // the SDK cannot read).
            if code.is_some_and(is_blocking_code) || status == 401 || status == 403 {
                Error::Blocked(format!("{what}: {}", describe(&err)))
            } else if status >= 500 || status == 429 || code.is_some_and(is_transient_code) {
                Error::Unavailable(format!("{what}: {}", describe(&err)))
            } else {
                Error::Unknown(anyhow::anyhow!("{what}: {}", describe(&err)))
            }
        }
        _ => Error::Unknown(anyhow::anyhow!("{what}: {}", describe(&err))),
    }
}

/// The error's code and message, or its source chain when it has no code.
fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err.code() {
        Some(code) => format!("{code}: {}", err.message().unwrap_or("")),
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// A request that could not even be built (a missing required field): a bug.
pub fn build_error(what: &str, err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Unknown(anyhow::Error::new(err).context(format!("building {what}")))
}

/// An item that does not decode: data written by something else, or a bug.
pub fn decode_error(what: &str, err: impl Debug) -> Error {
    Error::Unknown(anyhow::anyhow!("decoding {what}: {err:?}"))
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn service_error(status: u16, code: Option<&str>, body: &str) -> Error {
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::from(body));
        sdk_error(
            "GetItem",
            SdkError::service_error(GetItemError::generic(meta.build()), raw),
        )
    }

    #[test]
    fn failures_are_classed_by_code_then_status() {
        let blocked = |e: Error| matches!(e, Error::Blocked(_));
        let unavailable = |e: Error| matches!(e, Error::Unavailable(_));
        for code in [
            "AccessDeniedException",
            "ResourceNotFoundException",
            "UnrecognizedClientException",
        ] {
            assert!(blocked(service_error(400, Some(code), "{}")), "{code}");
        }
        // Unreadable bodies: the status alone decides.
        let xml = "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>";
        assert!(blocked(service_error(403, None, xml)));
        assert!(blocked(service_error(401, None, xml)));
        assert!(unavailable(service_error(503, None, "<html>")));
        assert!(unavailable(service_error(429, None, "")));
        let throttled = service_error(400, Some("ThrottlingException"), "{}");
        assert!(unavailable(throttled));
        assert!(matches!(
            service_error(400, Some("ValidationException"), "{}"),
            Error::Unknown(_)
        ));
        assert!(matches!(service_error(400, None, "<"), Error::Unknown(_)));
    }
}
