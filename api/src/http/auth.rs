//! The authenticated caller, extracted from `Authorization: Bearer <JWT>`, who then
//! pays one request from their budget ([`rate_limit`](super::rate_limit)).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use shared::auth::AuthError;
use shared::domain::UserId;

use super::problem::{ApiError, Problem};
use crate::state::AppState;

/// The user a request acts for.
#[derive(Debug, Clone)]
pub struct Caller(pub UserId);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        let value = header
            .to_str()
            .map_err(|_| AuthError::Invalid("the Authorization header is not text".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::Invalid("expected `Authorization: Bearer <token>`".into()))?
            .trim();
        let identity = state.tokens.verify(token, state.clock.now()).await?;
        tracing::Span::current().record("user", identity.user.as_str());
        if let Err(retry_after) = state
            .rate_limit
            .admit(&identity.user, tokio::time::Instant::now())
        {
            tracing::info!(user = %identity.user, "rate limited");
            return Err(Problem::rate_limited(state.rate_limit.limit(), retry_after).into());
        }
        Ok(Caller(identity.user))
    }
}
