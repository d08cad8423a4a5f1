//! Page sizes and opaque cursors.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa::IntoParams;

use super::problem::{ApiError, Problem};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// `?limit=&cursor=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 100; 20 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.limit.as_deref() {
            None => Ok(DEFAULT_LIMIT),
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(Problem::invalid(
                    "limit",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                )
                .into()),
            },
        }
    }

    /// The cursor's content, or `None` on the first page.
    pub fn cursor(&self) -> Result<Option<String>, ApiError> {
        let Some(raw) = self.cursor.as_deref() else {
            return Ok(None);
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .filter(|b| b.len() <= 256)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ApiError::from(Problem::invalid("cursor", "not a cursor this API issued"))
            })?;
        Ok(Some(bytes))
    }
}

/// Wraps a position into an opaque cursor.
pub fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}
