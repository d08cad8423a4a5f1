//! What a batch is made into before any sink sees it: each record decoded once, the
//! changes grouped by document in stream order, each record marked when a later one of
//! its document supersedes it, and the outcomes already known (a record with nothing
//! to deliver is skipped, an undecodable one is dead). No I/O.

use std::collections::HashMap;

use serde_json::Value;
use shared::domain::{ChangeEvent, DocumentId, Field};

use super::outcome::Outcome;
use crate::decode::{Decoded, RecordMeta, Unfinished, decode};

/// A decoded record on its way to the sinks.
pub(super) enum Pending {
    Ready(Box<ChangeEvent>),
    /// Its bodies are paged out: read them back first.
    Unfinished(Box<Unfinished>),
}

impl Pending {
    /// The change a decoded record makes; `None` when it has nothing to deliver.
    pub(super) fn of(decoded: Decoded) -> Option<Pending> {
        match decoded {
            Decoded::Change(change) => Some(Pending::Ready(change)),
            Decoded::Unfinished(unfinished) => Some(Pending::Unfinished(unfinished)),
            Decoded::Skip => None,
        }
    }

    pub(super) fn document_id(&self) -> DocumentId {
        match self {
            Pending::Ready(change) => change.document_id,
            Pending::Unfinished(unfinished) => unfinished.document_id(),
        }
    }

    /// Whether it changes the body or deletes the document.
    pub(super) fn replaces_body(&self) -> bool {
        match self {
            Pending::Ready(change) => change.touches(Field::Body) || change.new.is_none(),
            // Never a deletion; the store writes an operation whenever the body changes.
            Pending::Unfinished(unfinished) => unfinished.ops().is_some(),
        }
    }
}

/// The records of one document in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DocumentRecords {
    pub(super) document_id: DocumentId,
    /// Their indices in the batch, in stream order: each waits for the one before.
    pub(super) records: Vec<usize>,
}

/// A batch decoded and grouped, every vector indexed like the batch's records.
pub(super) struct Plan {
    /// The documents to deliver, in the order of their first record.
    pub(super) documents: Vec<DocumentRecords>,
    /// The change each record makes; `None` for one that is not delivered.
    pub(super) changes: Vec<Option<Pending>>,
    /// Each record's meta, marked `superseded` and `body_superseded` as the later
    /// records of its document in the batch say.
    pub(super) metas: Vec<RecordMeta>,
    /// The outcome of each record that is not delivered: `Skipped` when there is
    /// nothing to deliver, `Dead` when it does not decode.
    pub(super) known: Vec<Option<Outcome>>,
}

impl Plan {
    pub(super) fn of(records: &[Value]) -> Plan {
        let mut plan = Plan {
            documents: Vec::new(),
            changes: Vec::with_capacity(records.len()),
            metas: records.iter().map(RecordMeta::of).collect(),
            known: Vec::with_capacity(records.len()),
        };
        let mut document_of: HashMap<DocumentId, usize> = HashMap::new();
        for (i, record) in records.iter().enumerate() {
            match decode(record).map(Pending::of) {
                Ok(Some(pending)) => {
                    let id = pending.document_id();
                    let documents = &mut plan.documents;
                    let d = *document_of.entry(id).or_insert_with(|| {
                        documents.push(DocumentRecords {
                            document_id: id,
                            records: Vec::new(),
                        });
                        documents.len() - 1
                    });
                    documents[d].records.push(i);
                    plan.changes.push(Some(pending));
                    plan.known.push(None);
                }
                Ok(None) => {
                    plan.changes.push(None);
                    plan.known.push(Some(Outcome::Skipped));
                }
                Err(e) => {
                    tracing::error!(
                        sequence_number = plan.metas[i].sequence_number.as_deref().unwrap_or(""),
                        error = %e,
                        "undecodable stream record"
                    );
                    plan.changes.push(None);
                    plan.known.push(Some(Outcome::Dead {
                        reason: e.to_string(),
                        attempts: 1,
                        sink: None,
                    }));
                }
            }
        }
        plan.mark_superseded();
        plan
    }

    /// Many small versions of one document in a batch (people typing): the sinks that
    /// keep only the latest state coalesce to the last one.
    fn mark_superseded(&mut self) {
        for document in &self.documents {
            let mut body_later = false;
            for (n, &i) in document.records.iter().enumerate().rev() {
                self.metas[i].superseded = n + 1 < document.records.len();
                self.metas[i].body_superseded = body_later;
                let pending = self.changes[i].as_ref().expect("grouped records decode");
                body_later |= pending.replaces_body();
            }
        }
    }

    /// The change record `i` makes, when it is delivered.
    pub(super) fn change(&self, i: usize) -> &Pending {
        self.changes[i].as_ref().expect("grouped records decode")
    }

    /// Every record's outcome: the known ones, taken out of the plan, and what
    /// delivery made of the others.
    pub(super) fn outcomes(
        &mut self,
        delivered: impl IntoIterator<Item = (usize, Outcome)>,
    ) -> Vec<Outcome> {
        let mut outcomes = std::mem::take(&mut self.known);
        for (i, outcome) in delivered {
            outcomes[i] = Some(outcome);
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every record has an outcome"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const A: &str = "0190a5c4-7b2e-7c3d-8e4f-1a2b3c4d5e6f";
    const B: &str = "0190a5c4-7b2e-7c3d-8e4f-1a2b3c4d5e70";

    fn id(raw: &str) -> DocumentId {
        DocumentId::parse(raw).unwrap()
    }

    /// A document item at `version` with a (title, body).
    fn image(id: &str, version: u64, (title, body): (&str, &str)) -> Value {
        json!({
            "id": { "S": id },
            "title": { "S": title },
            "body": { "S": body },
            "owner": { "S": "ann" },
            "version": { "N": version.to_string() },
            "createdAt": { "S": "2024-06-10T06:13:20.123Z" },
            "updatedAt": { "S": "2024-06-10T06:14:20.000Z" },
            "updatedBy": { "S": "ann" }
        })
    }

    fn record(seq: u64, name: &str, id: &str, old: Option<Value>, new: Option<Value>) -> Value {
        let mut change = json!({
            "ApproximateCreationDateTime": 1718000060,
            "Keys": { "id": { "S": id } },
            "SequenceNumber": seq.to_string(),
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        });
        if let Some(old) = old {
            change["OldImage"] = old;
        }
        if let Some(new) = new {
            change["NewImage"] = new;
        }
        json!({ "eventID": format!("event-{seq}"), "eventName": name, "dynamodb": change })
    }

    fn insert(seq: u64, id: &str, doc: (&str, &str)) -> Value {
        record(seq, "INSERT", id, None, Some(image(id, 1, doc)))
    }

    /// The change of document `id` to `version` from `before` to `after`.
    fn modify(
        seq: u64,
        id: &str,
        version: u64,
        before: (&str, &str),
        after: (&str, &str),
    ) -> Value {
        let old = image(id, version - 1, before);
        record(
            seq,
            "MODIFY",
            id,
            Some(old),
            Some(image(id, version, after)),
        )
    }

    /// A deletion nobody stamped (an operator's), of the document at `version`.
    fn remove(seq: u64, id: &str, version: u64, last: (&str, &str)) -> Value {
        record(seq, "REMOVE", id, Some(image(id, version, last)), None)
    }

    fn marks(plan: &Plan) -> Vec<(bool, bool)> {
        plan.metas
            .iter()
            .map(|m| (m.superseded, m.body_superseded))
            .collect()
    }

    #[test]
    fn changes_are_grouped_by_document_in_stream_order() {
        let plan = Plan::of(&[
            insert(1, A, ("Plan", "a")),
            insert(2, B, ("Notes", "b")),
            modify(3, A, 2, ("Plan", "a"), ("Plan", "ab")),
            modify(4, B, 2, ("Notes", "b"), ("Notes", "bc")),
            modify(5, A, 3, ("Plan", "ab"), ("Plan", "abc")),
        ]);

        let documents: Vec<_> = plan
            .documents
            .iter()
            .map(|d| (d.document_id, d.records.clone()))
            .collect();
        assert_eq!(documents, [(id(A), vec![0, 2, 4]), (id(B), vec![1, 3])]);
        assert!(plan.known.iter().all(Option::is_none));
        let versions: Vec<u64> = (0..5)
            .map(|i| match plan.change(i) {
                Pending::Ready(change) => change.version,
                Pending::Unfinished(_) => panic!("record {i} is not paged out"),
            })
            .collect();
        assert_eq!(versions, [1, 1, 2, 2, 3]);
    }

    #[test]
    fn every_record_but_its_documents_last_is_superseded() {
        let plan = Plan::of(&[
            insert(1, A, ("Plan", "a")),
            insert(2, B, ("Notes", "b")),
            modify(3, A, 2, ("Plan", "a"), ("Plan", "ab")),
        ]);

        assert_eq!(
            marks(&plan),
            [(true, true), (false, false), (false, false)],
            "A's insert is superseded by its body change; B's only record is its last"
        );
    }

    #[test]
    fn a_later_title_change_supersedes_but_leaves_the_body_to_the_earlier_record() {
        let plan = Plan::of(&[
            modify(1, A, 2, ("Plan", "a"), ("Plan", "ab")),
            modify(2, A, 3, ("Plan", "ab"), ("Q3 plan", "ab")),
        ]);

        assert_eq!(marks(&plan), [(true, false), (false, false)]);
    }

    #[test]
    fn a_body_change_or_a_deletion_later_body_supersedes_everything_before_it() {
        let plan = Plan::of(&[
            modify(1, A, 2, ("Plan", "a"), ("Plan", "ab")),
            modify(2, A, 3, ("Plan", "ab"), ("Plan", "abc")),
            modify(3, A, 4, ("Plan", "abc"), ("Q3 plan", "abc")),
            insert(4, B, ("Notes", "b")),
            modify(5, B, 2, ("Notes", "b"), ("Old notes", "b")),
            remove(6, B, 2, ("Old notes", "b")),
        ]);

        assert_eq!(
            marks(&plan),
            [
                (true, true),
                // Only a title change follows it.
                (true, false),
                (false, false),
                (true, true),
                // The deletion replaces the body too.
                (true, true),
                (false, false),
            ]
        );
    }

    #[test]
    fn an_undecodable_record_is_dead_at_its_first_attempt_and_the_others_go_on() {
        let mut broken = insert(2, B, ("Notes", "b"));
        broken["dynamodb"]["NewImage"]["version"] = json!({ "N": "0" });
        let plan = Plan::of(&[
            insert(1, A, ("Plan", "a")),
            broken,
            modify(3, A, 2, ("Plan", "a"), ("Plan", "ab")),
        ]);

        match &plan.known[1] {
            Some(Outcome::Dead {
                reason,
                attempts,
                sink,
            }) => {
                assert!(reason.contains("version 0"), "{reason}");
                assert_eq!((*attempts, *sink), (1, None));
            }
            other => panic!("not dead: {other:?}"),
        }
        assert!(plan.changes[1].is_none());
        assert_eq!(plan.metas[1].sequence_number.as_deref(), Some("2"));
        assert_eq!(plan.documents.len(), 1);
        assert_eq!(plan.documents[0].records, [0, 2]);
        assert_eq!(marks(&plan)[1], (false, false));
    }

    #[test]
    fn a_record_with_nothing_to_deliver_is_skipped_and_supersedes_nothing() {
        let mut marks_deleted = modify(2, A, 3, ("Plan", "ab"), ("Plan", "ab"));
        marks_deleted["dynamodb"]["NewImage"]["deleted"] = json!({ "BOOL": true });
        let plan = Plan::of(&[
            modify(1, A, 2, ("Plan", "a"), ("Plan", "ab")),
            marks_deleted,
        ]);

        assert!(matches!(plan.known[1], Some(Outcome::Skipped)));
        assert!(plan.changes[1].is_none());
        assert_eq!(plan.documents[0].records, [0]);
        assert_eq!(marks(&plan), [(false, false), (false, false)]);
    }

    #[test]
    fn outcomes_put_the_delivered_beside_the_known_in_record_order() {
        let mut plan = Plan::of(&[
            insert(1, A, ("Plan", "a")),
            record(2, "UPSERT", B, None, None),
            insert(3, B, ("Notes", "b")),
        ]);

        let outcomes = plan.outcomes([(2, Outcome::Done), (0, Outcome::Skipped)]);

        assert!(matches!(
            outcomes[..],
            [Outcome::Skipped, Outcome::Dead { .. }, Outcome::Done]
        ));
    }
}
