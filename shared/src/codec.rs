//! The DynamoDB item codec: a [`Document`] as a DynamoDB item (through serde_dynamo), the
//! item's key, and the DynamoDB Streams record that carries it. The AWS document store
//! writes these items, the embedded store writes these records into its change log, and
//! the stream decoder reads both — one codec, so the modes cannot drift.
//!
//! Item layout: partition key `id` (S); attributes `title`, `body`, `owner` (S),
//! `collaborators` (M of S), `version` (N), `createdAt`, `updatedAt` (S, RFC 3339),
//! `updatedBy` (S); `ops` (S: the OPS JSON array that turned the body of the previous
//! version into this one, present when that change altered the body); and on the last
//! image of a deleted document, `deleted` (BOOL true).
//!
//! A body over [`INLINE_BODY_BYTES`] may be paged out of the item ([`page_out_body`]):
//! `body` is then absent and `bodyPaged` (BOOL true) says the body is kept with the
//! document's versions instead. The AWS store does this so that a keystroke's write
//! costs the same whatever the document's size; such an image decodes with an empty
//! body and [`DocumentImage::body_paged`] set, and whoever reads it fetches the body of
//! its version (the stream handler through a
//! [`BodyArchive`](crate::ports::BodyArchive)).

use aws_lambda_events::dynamodb::{EventRecord, StreamRecord, StreamViewType};

/// The DynamoDB Streams record type, as Lambda delivers it.
pub use aws_lambda_events::dynamodb::EventRecord as StreamEventRecord;
use chrono::{DateTime, Utc};
use serde_dynamo::{AttributeValue, Item};

use crate::domain::{Document, DocumentId, TextOperation};

/// The attribute that marks the last image of a deleted document.
pub const DELETED_ATTRIBUTE: &str = "deleted";
/// The attribute holding the body operation that made the item's version.
pub const OPS_ATTRIBUTE: &str = "ops";
/// The attribute that says an item's body is paged out.
pub const BODY_PAGED_ATTRIBUTE: &str = "bodyPaged";
/// The body attribute.
const BODY_ATTRIBUTE: &str = "body";
/// The longest body an item keeps inline when paging out is asked for: an item of a
/// document up to this size costs at most 5 write units.
pub const INLINE_BODY_BYTES: usize = 4 * 1024;
/// The partition key attribute of the documents table.
pub const KEY_ATTRIBUTE: &str = "id";
/// `eventSource` of every record.
pub const EVENT_SOURCE: &str = "aws:dynamodb";
/// `eventVersion` of every record, as DynamoDB Streams writes it.
pub const EVENT_VERSION: &str = "1.1";

/// The stream record's `eventName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    Insert,
    Modify,
    Remove,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Insert => "INSERT",
            EventName::Modify => "MODIFY",
            EventName::Remove => "REMOVE",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "INSERT" => Some(EventName::Insert),
            "MODIFY" => Some(EventName::Modify),
            "REMOVE" => Some(EventName::Remove),
            _ => None,
        }
    }
}

/// A document image read back from an item.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentImage {
    pub document: Document,
    /// Whether the item is the last image of a deleted document.
    pub deleted: bool,
    /// The body operation that made this version, when the item carries one.
    pub ops: Option<TextOperation>,
    /// The item's body is paged out: `document.body` is empty and stands for the body
    /// kept with version `document.version`.
    pub body_paged: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("the item is not a document: {0}")]
    NotADocument(#[from] serde_dynamo::Error),
    #[error("the item's `ops` is not an operation: {0}")]
    BadOperation(String),
    #[error("the item says its body is paged out but holds one")]
    PagedBodyInline,
}

/// The item that stores `doc`.
pub fn document_to_item(doc: &Document) -> Item {
    serde_dynamo::to_item(doc).expect("a document always encodes as an item")
}

/// The item that stores `doc`, made by `ops` from the previous version when the body
/// changed.
pub fn document_to_item_with_ops(doc: &Document, ops: Option<&TextOperation>) -> Item {
    let mut item = document_to_item(doc);
    if let Some(ops) = ops.filter(|o| !o.is_noop()) {
        item.insert(
            OPS_ATTRIBUTE.to_owned(),
            AttributeValue::S(serde_json::to_string(ops).expect("operations encode")),
        );
    }
    item
}

/// The item of the last image of a deleted document: `last` marked deleted.
pub fn tombstone_to_item(last: &Document) -> Item {
    let mut item = document_to_item(last);
    item.insert(DELETED_ATTRIBUTE.to_owned(), AttributeValue::Bool(true));
    item
}

/// `item` with its body paged out when the body is longer than [`INLINE_BODY_BYTES`]:
/// the `body` attribute removed and `bodyPaged` set. Smaller bodies stay inline.
pub fn page_out_body(mut item: Item) -> Item {
    let long = matches!(item.get(BODY_ATTRIBUTE), Some(AttributeValue::S(body)) if body.len() > INLINE_BODY_BYTES);
    if long {
        item.remove(BODY_ATTRIBUTE);
        item.insert(BODY_PAGED_ATTRIBUTE.to_owned(), AttributeValue::Bool(true));
    }
    item
}

/// Reads a document back from an item. Attributes it does not know are ignored, so
/// items written by a newer version still decode.
pub fn item_to_document(item: &Item) -> Result<DocumentImage, CodecError> {
    let deleted = matches!(
        item.get(DELETED_ATTRIBUTE),
        Some(AttributeValue::Bool(true))
    );
    let ops = match item.get(OPS_ATTRIBUTE) {
        None | Some(AttributeValue::Null(_)) => None,
        Some(AttributeValue::S(json)) => Some(
            serde_json::from_str::<TextOperation>(json)
                .map_err(|e| CodecError::BadOperation(e.to_string()))?,
        ),
        Some(_) => return Err(CodecError::BadOperation("not a string".into())),
    };
    let body_paged = matches!(
        item.get(BODY_PAGED_ATTRIBUTE),
        Some(AttributeValue::Bool(true))
    );
    let document = if body_paged {
        if item.get(BODY_ATTRIBUTE).is_some() {
            return Err(CodecError::PagedBodyInline);
        }
        let mut head = item.clone();
        head.insert(BODY_ATTRIBUTE.to_owned(), AttributeValue::S(String::new()));
        serde_dynamo::from_item(head)?
    } else {
        serde_dynamo::from_item(item.clone())?
    };
    Ok(DocumentImage {
        document,
        deleted,
        ops,
        body_paged,
    })
}

/// The key of a document's item.
pub fn document_key(id: &DocumentId) -> Item {
    let mut key = Item::from(std::collections::HashMap::<String, AttributeValue>::new());
    key.insert(KEY_ATTRIBUTE.to_owned(), AttributeValue::S(id.to_string()));
    key
}

/// Formats a sequence number so that string order is numeric order, as DynamoDB's are.
pub fn format_sequence_number(seq: u64) -> String {
    format!("{seq:021}")
}

/// A DynamoDB Streams record (NEW_AND_OLD_IMAGES), shaped exactly as Lambda receives it.
pub struct RecordBuilder<'a> {
    pub region: &'a str,
    pub event_source_arn: &'a str,
}

impl RecordBuilder<'_> {
    pub fn record(
        &self,
        name: EventName,
        id: &DocumentId,
        old: Option<Item>,
        new: Option<Item>,
        sequence_number: u64,
        at: DateTime<Utc>,
    ) -> EventRecord {
        let keys = document_key(id);
        let size = approximate_size(&keys)
            + old.as_ref().map_or(0, approximate_size)
            + new.as_ref().map_or(0, approximate_size);
        let mut change = StreamRecord::default();
        change.approximate_creation_date_time = at;
        change.keys = keys;
        change.new_image = new.unwrap_or_default();
        change.old_image = old.unwrap_or_default();
        change.sequence_number = Some(format_sequence_number(sequence_number));
        change.size_bytes = size as i64;
        change.stream_view_type = Some(StreamViewType::NewAndOldImages);

        let mut record = EventRecord::default();
        record.aws_region = self.region.to_owned();
        record.change = change;
        record.event_id = uuid::Uuid::new_v4().simple().to_string();
        record.event_name = name.as_str().to_owned();
        record.event_source = Some(EVENT_SOURCE.to_owned());
        record.event_version = Some(EVENT_VERSION.to_owned());
        record.event_source_arn = Some(self.event_source_arn.to_owned());
        record
    }
}

/// A record as the JSON Lambda receives: images that the event does not have (the
/// NewImage of a REMOVE, the OldImage of an INSERT) are absent, not empty.
pub fn record_to_json(record: &EventRecord) -> serde_json::Value {
    let mut json = serde_json::to_value(record).expect("a stream record always encodes");
    if let Some(change) = json.get_mut("dynamodb").and_then(|c| c.as_object_mut()) {
        for image in ["NewImage", "OldImage"] {
            if change
                .get(image)
                .and_then(|v| v.as_object())
                .is_some_and(|m| m.is_empty())
            {
                change.remove(image);
            }
        }
    }
    json
}

/// DynamoDB counts attribute names and values; the JSON length is a close, stable stand-in.
fn approximate_size(item: &Item) -> usize {
    serde_json::to_vec(item).map(|v| v.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Body, Role, Title, UserId};

    fn doc() -> Document {
        let now = Utc::now();
        let owner = UserId::parse("ann").unwrap();
        Document {
            id: DocumentId::generate(),
            title: Title::parse("Plan").unwrap(),
            body: Body::parse("hello").unwrap(),
            owner: owner.clone(),
            collaborators: [(UserId::parse("bob").unwrap(), Role::Viewer)]
                .into_iter()
                .collect(),
            version: 3,
            created_at: now,
            updated_at: now,
            updated_by: owner,
        }
    }

    #[test]
    fn documents_round_trip_through_items() {
        let doc = doc();
        let item = document_to_item(&doc);
        assert!(matches!(item.get("version"), Some(AttributeValue::N(n)) if n == "3"));
        assert!(matches!(
            item.get("collaborators"),
            Some(AttributeValue::M(_))
        ));
        let back = item_to_document(&item).unwrap();
        assert_eq!(back.document, doc);
        assert!(!back.deleted);
        assert!(item_to_document(&tombstone_to_item(&doc)).unwrap().deleted);
    }

    #[test]
    fn long_bodies_are_paged_out_and_short_ones_stay() {
        let short = doc();
        assert_eq!(
            page_out_body(document_to_item(&short)),
            document_to_item(&short)
        );

        let mut long = doc();
        long.body = Body::parse("é".repeat(INLINE_BODY_BYTES / 2 + 1)).unwrap();
        let item = page_out_body(document_to_item(&long));
        assert!(item.get("body").is_none());
        assert!(
            serde_json::to_vec(&item).unwrap().len() < 1024,
            "the head stays small"
        );
        let back = item_to_document(&item).unwrap();
        assert!(back.body_paged);
        assert_eq!(back.document.body.as_str(), "");
        assert_eq!(
            back.document,
            Document {
                body: Body::parse("").unwrap(),
                ..long.clone()
            }
        );
        // A paged-out flag beside a body is a corrupt item, not a guess.
        let mut both = document_to_item(&long);
        both.insert(BODY_PAGED_ATTRIBUTE.into(), AttributeValue::Bool(true));
        assert!(matches!(
            item_to_document(&both),
            Err(CodecError::PagedBodyInline)
        ));
    }

    #[test]
    fn unknown_attributes_are_ignored_and_bad_ones_rejected() {
        let doc = doc();
        let mut item = document_to_item(&doc);
        item.insert("futureField".into(), AttributeValue::S("x".into()));
        assert_eq!(item_to_document(&item).unwrap().document, doc);
        item.insert("title".into(), AttributeValue::S(String::new()));
        assert!(item_to_document(&item).is_err());
    }

    #[test]
    fn records_have_the_lambda_shape() {
        let doc = doc();
        let builder = RecordBuilder {
            region: "local",
            event_source_arn: "arn:aws:dynamodb:local:000000000000:table/documents/stream/x",
        };
        let record = builder.record(
            EventName::Insert,
            &doc.id,
            None,
            Some(document_to_item(&doc)),
            42,
            doc.created_at,
        );
        let json = record_to_json(&record);
        assert!(json["dynamodb"].get("OldImage").is_none());
        assert_eq!(json["eventName"], "INSERT");
        assert_eq!(json["eventSource"], "aws:dynamodb");
        assert_eq!(json["dynamodb"]["SequenceNumber"], "000000000000000000042");
        assert_eq!(json["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
        assert_eq!(json["dynamodb"]["Keys"]["id"]["S"], doc.id.to_string());
        assert_eq!(json["dynamodb"]["NewImage"]["title"]["S"], "Plan");
        let back: EventRecord = serde_json::from_value(json).unwrap();
        assert_eq!(
            back.change.sequence_number.as_deref(),
            Some("000000000000000000042")
        );
    }
}
