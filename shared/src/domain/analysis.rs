//! The text analysis of a document version, computed off the change stream.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::DocumentId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    #[schema(value_type = String, format = Uuid)]
    pub document_id: DocumentId,
    /// The document version that was analysed.
    pub version: u64,
    pub word_count: u64,
    pub reading_time_seconds: u64,
    /// ISO 639-3 code of the detected language, or `und` when undetermined.
    pub language: String,
    pub top_terms: Vec<TopTerm>,
    pub analyzed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopTerm {
    pub term: String,
    pub weight: f64,
}
