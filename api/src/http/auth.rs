//! The authenticated caller, extracted from `Authorization: Bearer <JWT>`.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use shared::auth::AuthError;
use shared::domain::UserId;

use super::problem::ApiError;
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
        Ok(Caller(identity.user))
    }
}
