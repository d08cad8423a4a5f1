//! Decoding a DynamoDB stream record (as JSON) into a [`ChangeEvent`], once.
//!
//! Records are read from `serde_json::Value` rather than through
//! `aws_lambda_events::dynamodb::EventRecord`, whose 1.2 decoder misreads a fractional
//! `ApproximateCreationDateTime`: the field is taken here as seconds (an f64) directly.
//!
//! What a record means:
//! - INSERT: a creation, from `NewImage`;
//! - MODIFY: an update, from `OldImage` and `NewImage`; a `NewImage` marked `deleted` is
//!   the first step of a deletion in the AWS store and means nothing on its own;
//! - REMOVE with an `OldImage` marked `deleted`: a user's deletion, already stamped with
//!   its version, actor and time;
//! - REMOVE of an unmarked image (a TTL expiry or an operator's delete): a deletion one
//!   version after the image, by `dynamodb.amazonaws.com` for TTL and `unknown`
//!   otherwise, at the record's creation time.
//!
//! An image whose body is paged out (the AWS store keeps bodies over 4 KB out of the
//! document item) decodes to [`Decoded::Unfinished`]: the handler reads the bodies back
//! from the document's versions and finishes it. A deletion never needs its body, so
//! its old image keeps the empty stand-in.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_dynamo::Item;
use serde_json::Value;
use shared::codec::{self, EventName};
use shared::domain::{
    Body, ChangeEvent, Document, DocumentId, TextOperation, UserId, check_collaborators,
};

/// The principal of DynamoDB's own (TTL) deletions.
pub const TTL_PRINCIPAL: &str = "dynamodb.amazonaws.com";
/// The actor of a deletion nobody is known to have made.
pub const UNKNOWN_ACTOR: &str = "unknown";

/// What a record means for the fan-out.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A change for the sinks.
    Change(Box<ChangeEvent>),
    /// A change whose bodies must be read back first.
    Unfinished(Box<Unfinished>),
    /// A record with nothing to fan out (the MODIFY that marks a document deleted).
    Skip,
}

/// Why a record cannot be decoded. Such a record can never succeed: it is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable stream record: {0}")]
pub struct DecodeError(pub String);

fn fail(message: impl Into<String>) -> DecodeError {
    DecodeError(message.into())
}

/// The parts of a record every consumer needs even when the rest does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// `dynamodb.SequenceNumber`, when present.
    pub sequence_number: Option<String>,
    /// `eventID`.
    pub event_id: String,
    /// The document the record is about (from `Keys`), when it parses.
    pub document_id: Option<DocumentId>,
    /// A later change of the same document is in the same batch: sinks that only keep
    /// the latest state (search, analysis) may leave this one to it.
    pub superseded: bool,
    /// A later change of the same document in the same batch changes its body or
    /// deletes it: what is derived from the body alone (analysis) may wait for that one.
    pub body_superseded: bool,
}

impl RecordMeta {
    pub fn of(record: &Value) -> Self {
        let change = &record["dynamodb"];
        Self {
            sequence_number: change["SequenceNumber"].as_str().map(str::to_owned),
            event_id: record["eventID"].as_str().unwrap_or_default().to_owned(),
            document_id: change["Keys"][codec::KEY_ATTRIBUTE]["S"]
                .as_str()
                .and_then(|id| DocumentId::parse(id).ok()),
            superseded: false,
            body_superseded: false,
        }
    }
}

fn image(change: &Value, name: &str) -> Result<Option<codec::DocumentImage>, DecodeError> {
    let Some(raw) = change.get(name).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    // Read in place: a copy of the image's tree would cost as much as the read.
    let item =
        Item::deserialize(raw).map_err(|e| fail(format!("{name} is not a DynamoDB item: {e}")))?;
    if item.is_empty() {
        return Ok(None);
    }
    let image = codec::item_to_document(&item).map_err(|e| fail(format!("{name}: {e}")))?;
    // An image that breaks a rule every stored document keeps is not a change.
    let doc = &image.document;
    if doc.version == 0 {
        return Err(fail(format!("{name}: version 0 (versions start at 1)")));
    }
    check_collaborators(&doc.owner, &doc.collaborators)
        .map_err(|e| fail(format!("{name}: {e}")))?;
    Ok(Some(image))
}

/// `ApproximateCreationDateTime`, in seconds since the epoch (possibly fractional).
pub fn approximate_creation(change: &Value) -> Option<DateTime<Utc>> {
    let seconds = change["ApproximateCreationDateTime"].as_f64()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    let millis = (seconds * 1000.0).round() as i64;
    DateTime::from_timestamp_millis(millis)
}

/// The operation from `old`'s body to `new`'s: the one the record carries when it
/// replays to the new body, else a diff of the two (records written before operations
/// were stored, or by another writer). `None` when the body did not change.
fn body_operation(
    old: &Document,
    new: &Document,
    carried: Option<TextOperation>,
) -> Option<TextOperation> {
    if old.body == new.body {
        return None;
    }
    if let Some(ops) = carried {
        if ops
            .apply(old.body.as_str())
            .is_ok_and(|b| b == new.body.as_str())
        {
            return Some(ops);
        }
        tracing::warn!(document = %new.id, version = new.version, "the record's ops do not replay to its new image: using a diff");
    }
    Some(TextOperation::diff(old.body.as_str(), new.body.as_str()))
}

/// Decodes one record.
pub fn decode(record: &Value) -> Result<Decoded, DecodeError> {
    let meta = RecordMeta::of(record);
    let sequence_number = meta
        .sequence_number
        .clone()
        .ok_or_else(|| fail("no dynamodb.SequenceNumber"))?;
    let name = record["eventName"]
        .as_str()
        .ok_or_else(|| fail("no eventName"))?;
    let name = EventName::parse(name).ok_or_else(|| fail(format!("unknown eventName {name:?}")))?;
    let change = record
        .get("dynamodb")
        .filter(|c| c.is_object())
        .ok_or_else(|| fail("no dynamodb object"))?;
    let key = meta
        .document_id
        .ok_or_else(|| fail("Keys.id is not a document id"))?;
    let new = image(change, "NewImage")?;
    let old = image(change, "OldImage")?;
    for img in [&new, &old].into_iter().flatten() {
        if img.document.id != key {
            return Err(fail(format!(
                "image of document {} under key {key}",
                img.document.id
            )));
        }
    }

    let mut unstamped_removal = None;
    match name {
        EventName::Insert => {
            new.as_ref()
                .ok_or_else(|| fail("INSERT without NewImage"))?;
        }
        EventName::Modify => {
            let new = new
                .as_ref()
                .ok_or_else(|| fail("MODIFY without NewImage"))?;
            if new.deleted {
                return Ok(Decoded::Skip);
            }
            let old = old
                .as_ref()
                .ok_or_else(|| fail("MODIFY without OldImage"))?;
            if new.document.version <= old.document.version {
                return Err(fail(format!(
                    "MODIFY from version {} to {}",
                    old.document.version, new.document.version
                )));
            }
        }
        EventName::Remove => {
            let old = old
                .as_ref()
                .ok_or_else(|| fail("REMOVE without OldImage"))?;
            if !old.deleted {
                let by_ttl = record["userIdentity"]["type"].as_str() == Some("Service")
                    && record["userIdentity"]["principalId"].as_str() == Some(TTL_PRINCIPAL);
                let actor = UserId::parse(if by_ttl { TTL_PRINCIPAL } else { UNKNOWN_ACTOR })
                    .expect("a valid user id");
                let at = approximate_creation(change)
                    .ok_or_else(|| fail("REMOVE without ApproximateCreationDateTime"))?;
                let version = old
                    .document
                    .version
                    .checked_add(1)
                    .ok_or_else(|| fail("REMOVE of an image at the last possible version"))?;
                unstamped_removal = Some((version, actor, at));
            }
        }
    }
    let unfinished = Unfinished {
        name,
        sequence_number,
        old,
        new,
        unstamped_removal,
    };
    // A deletion's consumers read nothing of the body it removed, so a paged-out one
    // is not read back.
    if name != EventName::Remove && unfinished.pages_out() {
        return Ok(Decoded::Unfinished(Box::new(unfinished)));
    }
    Ok(Decoded::Change(Box::new(unfinished.build())))
}

/// A decoded record whose images have their bodies paged out
/// ([`codec::page_out_body`]): the handler reads the bodies of the versions named by
/// [`Unfinished::old_body_version`] and [`Unfinished::new_body_version`] back and
/// [finishes](Unfinished::finish) it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfinished {
    name: EventName,
    sequence_number: String,
    old: Option<codec::DocumentImage>,
    new: Option<codec::DocumentImage>,
    /// The version, actor and time of a removal that is not a stamped deletion.
    unstamped_removal: Option<(u64, UserId, DateTime<Utc>)>,
}

impl Unfinished {
    fn pages_out(&self) -> bool {
        [&self.old, &self.new]
            .into_iter()
            .flatten()
            .any(|i| i.body_paged)
    }

    pub fn document_id(&self) -> DocumentId {
        self.new
            .as_ref()
            .or(self.old.as_ref())
            .map(|i| i.document.id)
            .expect("a decoded record has an image")
    }

    /// The version of the new image, when its body is paged out.
    pub fn new_body_version(&self) -> Option<u64> {
        self.new
            .as_ref()
            .filter(|i| i.body_paged)
            .map(|i| i.document.version)
    }

    /// The version of the old image, when its body is paged out and differs from the
    /// new one's (the record carries an operation).
    pub fn old_body_version(&self) -> Option<u64> {
        self.old
            .as_ref()
            .filter(|i| i.body_paged && self.ops().is_some())
            .map(|i| i.document.version)
    }

    /// The old image's body, when the record carries it.
    pub fn old_body(&self) -> Option<&Body> {
        self.old
            .as_ref()
            .filter(|i| !i.body_paged)
            .map(|i| &i.document.body)
    }

    /// The body operation the record carries.
    pub fn ops(&self) -> Option<&TextOperation> {
        self.new.as_ref().and_then(|i| i.ops.as_ref())
    }

    /// The change, given the bodies that were paged out: `old` when
    /// [`Unfinished::old_body_version`] named one, `new` when
    /// [`Unfinished::new_body_version`] did. An old body that was paged out but not
    /// asked for is the new one (the body did not change).
    pub fn finish(
        mut self,
        old: Option<Body>,
        new: Option<Body>,
    ) -> Result<ChangeEvent, DecodeError> {
        let wanted_new = self.new_body_version().is_some();
        let wanted_old = self.old_body_version().is_some();
        if wanted_new != new.is_some() || wanted_old != old.is_some() {
            return Err(fail("the bodies given do not match the paged-out images"));
        }
        if let (Some(image), Some(body)) = (self.new.as_mut(), new) {
            image.document.body = body;
            image.body_paged = false;
        }
        let new_body = self.new.as_ref().map(|i| i.document.body.clone());
        if let Some(image) = self.old.as_mut().filter(|i| i.body_paged) {
            image.document.body = match old {
                Some(body) => body,
                None => new_body.ok_or_else(|| fail("a paged-out old image without a new one"))?,
            };
            image.body_paged = false;
        }
        Ok(self.build())
    }

    /// The change of images whose bodies are in place (or not read, for a removal).
    fn build(self) -> ChangeEvent {
        let sequence_number = self.sequence_number;
        match (self.name, self.old, self.new) {
            (EventName::Insert, _, Some(new)) => {
                ChangeEvent::written(None, new.document, sequence_number)
            }
            (EventName::Modify, Some(old), Some(new)) => {
                let ops = body_operation(&old.document, &new.document, new.ops);
                ChangeEvent::written(Some(old.document), new.document, sequence_number)
                    .with_ops(ops)
            }
            (EventName::Remove, Some(old), _) => match self.unstamped_removal {
                None => {
                    let last = old.document;
                    let (version, actor, at) =
                        (last.version, last.updated_by.clone(), last.updated_at);
                    ChangeEvent::deleted(last, version, actor, at, sequence_number)
                }
                Some((version, actor, at)) => {
                    ChangeEvent::deleted(old.document, version, actor, at, sequence_number)
                }
            },
            _ => unreachable!("decode checks which images each event has"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first record of a Lambda event fixture.
    fn fixture(event: &str) -> Value {
        let event: Value = serde_json::from_str(event).unwrap();
        event["Records"][0].clone()
    }

    fn refusal(record: &Value) -> String {
        match decode(record) {
            Err(e) => e.0,
            Ok(decoded) => panic!("decoded: {decoded:?}"),
        }
    }

    #[test]
    fn images_that_break_the_document_rules_are_undecodable() {
        let insert = fixture(include_str!("../tests/fixtures/insert.json"));
        assert!(matches!(decode(&insert), Ok(Decoded::Change(_))));

        let mut version_zero = insert.clone();
        version_zero["dynamodb"]["NewImage"]["version"] = serde_json::json!({"N": "0"});
        assert!(refusal(&version_zero).contains("version 0"));

        let mut owner_collaborates = insert.clone();
        let owner = insert["dynamodb"]["NewImage"]["owner"]["S"].clone();
        owner_collaborates["dynamodb"]["NewImage"]["collaborators"]["M"][owner.as_str().unwrap()] =
            serde_json::json!({"S": "editor"});
        assert!(!refusal(&owner_collaborates).is_empty());
    }

    #[test]
    fn a_removal_at_the_last_version_is_undecodable_not_version_zero() {
        // A TTL removal: its version is the one after the old image's.
        let mut remove = fixture(include_str!("../tests/fixtures/ttl_remove.json"));
        remove["dynamodb"]["OldImage"]["version"] = serde_json::json!({"N": u64::MAX.to_string()});
        assert!(refusal(&remove).contains("last possible version"));
    }

    #[test]
    fn fractional_creation_times_are_seconds() {
        let change = serde_json::json!({"ApproximateCreationDateTime": 1_700_000_000.25});
        let at = approximate_creation(&change).unwrap();
        assert_eq!(at.timestamp_millis(), 1_700_000_000_250);
    }
}
