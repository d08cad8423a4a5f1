//! The event every committed change becomes for consumers outside docfan, in the shape
//! EventBridge gives its events:
//!
//! ```json
//! {"version":"0","id":"…","detail-type":"document.updated","source":"docfan",
//!  "time":"2025-01-02T03:04:05Z","resources":["document/<id>"],
//!  "detail":{"documentId":"…","version":7,"actor":"ann","at":"2025-01-02T03:04:05.678Z",
//!            "changedFields":["title"],"title":"Plan"}}
//! ```
//!
//! The event never carries the body: consumers that need it read the document (or the
//! version) through the API, with their own access.
//!
//! Everything in an event is derived from the change alone, the id included, so the same
//! change always becomes the same bytes: a redelivery or a redrive carries the id of the
//! first attempt and receivers can drop it as a duplicate.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{ChangeEvent, ChangeKind, DocumentId, Field, Title, UserId};

/// The envelope version EventBridge gives its events; docfan's events follow it.
pub const EVENT_VERSION: &str = "0";

/// The `source` of every docfan event (rules select docfan's events with
/// `{"source": ["docfan"]}`).
pub const EVENT_SOURCE: &str = "docfan";

/// What happened, as the event's `detail-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DetailType {
    /// A document was created (its version 1).
    #[serde(rename = "document.created")]
    Created,
    /// A document's title, body or collaborators changed.
    #[serde(rename = "document.updated")]
    Updated,
    /// A document was deleted (the deletion is a version of its own).
    #[serde(rename = "document.deleted")]
    Deleted,
}

impl DetailType {
    /// The `detail-type` string, as EventBridge's `PutEvents` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            DetailType::Created => "document.created",
            DetailType::Updated => "document.updated",
            DetailType::Deleted => "document.deleted",
        }
    }
}

impl From<ChangeKind> for DetailType {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::Created => DetailType::Created,
            ChangeKind::Updated => DetailType::Updated,
            ChangeKind::Deleted => DetailType::Deleted,
        }
    }
}

/// One committed change as an event for other consumers (EventBridge's envelope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentEvent {
    /// The envelope version, always [`EVENT_VERSION`] (`"0"`).
    pub version: String,
    /// The event's identity: a UUID derived from the document id and the version (see
    /// [`DocumentEvent::id_for`]), the same on every delivery of the same change, so a
    /// receiver deduplicates on it.
    pub id: Uuid,
    /// What happened: `document.created`, `document.updated` or `document.deleted`.
    #[serde(rename = "detail-type")]
    pub detail_type: DetailType,
    /// Who emitted the event, always [`EVENT_SOURCE`] (`"docfan"`).
    pub source: String,
    /// When the change was committed, to the second, in UTC (`2025-01-02T03:04:05Z`),
    /// as EventBridge writes `time`; `detail.at` keeps the full precision.
    #[serde(with = "seconds")]
    pub time: DateTime<Utc>,
    /// What the event is about: `["document/<id>"]`.
    pub resources: Vec<String>,
    /// The change itself.
    pub detail: EventDetail,
}

/// The `detail` of a [`DocumentEvent`]: the change without the document's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDetail {
    /// The document changed.
    pub document_id: DocumentId,
    /// The version the change produced (a deletion is a version of its own); with
    /// `documentId` it names the change, and events of one document are delivered in
    /// version order.
    pub version: u64,
    /// Who made the change (the token's subject; `dynamodb.amazonaws.com` for a TTL
    /// expiry, `unknown` when nobody is known to have made it).
    pub actor: UserId,
    /// When the change was committed (RFC 3339, UTC, full precision).
    pub at: DateTime<Utc>,
    /// Which parts of the document the change touched: `title`, `body`,
    /// `collaborators`; all three for a creation, none for a deletion.
    pub changed_fields: Vec<Field>,
    /// The document's title after the change; for a deletion, its last title.
    pub title: Title,
}

impl DocumentEvent {
    /// The event for one committed change, as every sink receives it.
    pub fn from_change(change: &ChangeEvent) -> Self {
        Self {
            version: EVENT_VERSION.to_owned(),
            id: Self::id_for(&change.document_id, change.version),
            detail_type: change.kind.into(),
            source: EVENT_SOURCE.to_owned(),
            time: change.at.trunc_subsecs(0),
            resources: vec![Self::resource_for(&change.document_id)],
            detail: EventDetail {
                document_id: change.document_id,
                version: change.version,
                actor: change.actor.clone(),
                at: change.at,
                changed_fields: change.changed_fields.clone(),
                title: change.latest().title.clone(),
            },
        }
    }

    /// The id of the event for `version` of `document`: a name-based UUID (version 8,
    /// RFC 9562 §5.8) from the first 16 bytes of SHA-256 over
    /// `docfan.event/<document id>/<version>`. A version of a document is committed once,
    /// so the pair names exactly one change, however often it is delivered.
    pub fn id_for(document: &DocumentId, version: u64) -> Uuid {
        let digest = Sha256::digest(format!("docfan.event/{document}/{version}"));
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    /// The resource naming a document: `document/<id>`.
    pub fn resource_for(document: &DocumentId) -> String {
        format!("document/{document}")
    }
}

/// `time` to the second with a `Z`, the form EventBridge gives it.
mod seconds {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::domain::{Body, Document};

    fn document(version: u64, title: &str) -> Document {
        let at = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::milliseconds(678);
        let owner = UserId::parse("ann").unwrap();
        Document {
            id: DocumentId::parse("0190a5f0-0000-7000-8000-000000000001").unwrap(),
            title: Title::parse(title).unwrap(),
            body: Body::parse("secret body").unwrap(),
            owner: owner.clone(),
            collaborators: Default::default(),
            version,
            created_at: at,
            updated_at: at,
            updated_by: owner,
        }
    }

    #[test]
    fn an_update_becomes_the_contracts_shape_without_the_body() {
        let change = ChangeEvent::written(
            Some(document(6, "Draft")),
            document(7, "Plan"),
            "000000000000000000042".into(),
        );
        let event = DocumentEvent::from_change(&change);
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            json!({
                "version": "0",
                "id": DocumentEvent::id_for(&change.document_id, 7).to_string(),
                "detail-type": "document.updated",
                "source": "docfan",
                "time": "2025-01-02T03:04:05Z",
                "resources": ["document/0190a5f0-0000-7000-8000-000000000001"],
                "detail": {
                    "documentId": "0190a5f0-0000-7000-8000-000000000001",
                    "version": 7,
                    "actor": "ann",
                    "at": "2025-01-02T03:04:05.678Z",
                    "changedFields": ["title"],
                    "title": "Plan"
                }
            })
        );
        assert!(
            !serde_json::to_string(&event)
                .unwrap()
                .contains("secret body")
        );
        let back: DocumentEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn creations_and_deletions_name_their_kind_and_title() {
        let created = DocumentEvent::from_change(&ChangeEvent::written(
            None,
            document(1, "Plan"),
            "1".into(),
        ));
        assert_eq!(created.detail_type, DetailType::Created);
        assert_eq!(
            created.detail.changed_fields,
            [Field::Title, Field::Body, Field::Collaborators]
        );

        let bob = UserId::parse("bob").unwrap();
        let at = Utc.with_ymd_and_hms(2025, 2, 3, 4, 5, 6).unwrap();
        let deleted = DocumentEvent::from_change(&ChangeEvent::deleted(
            document(3, "Last title"),
            4,
            bob.clone(),
            at,
            "2".into(),
        ));
        let json = serde_json::to_value(&deleted).unwrap();
        assert_eq!(json["detail-type"], "document.deleted");
        assert_eq!(json["detail"]["version"], 4);
        assert_eq!(json["detail"]["actor"], "bob");
        assert_eq!(json["detail"]["changedFields"], json!([]));
        assert_eq!(json["detail"]["title"], "Last title");
        assert_eq!(json["time"], "2025-02-03T04:05:06Z");
    }

    #[test]
    fn the_id_depends_on_the_document_and_version_only() {
        let first = ChangeEvent::written(None, document(1, "Plan"), "1".into());
        // The same change read again from another stream record (a redelivery).
        let again = ChangeEvent::written(None, document(1, "Plan"), "99".into());
        assert_eq!(
            DocumentEvent::from_change(&first),
            DocumentEvent::from_change(&again)
        );

        let id = DocumentEvent::id_for(&first.document_id, 1);
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(id, DocumentEvent::id_for(&first.document_id, 2));
        let other = DocumentId::parse("0190a5f0-0000-7000-8000-000000000002").unwrap();
        assert_ne!(id, DocumentEvent::id_for(&other, 1));
        // Pinned (computed independently): changing the derivation would give events
        // already delivered new ids, and receivers would take them for new events.
        assert_eq!(id.to_string(), "a69f896a-2ba7-8733-995c-3a98ecf3432b");
    }
}
