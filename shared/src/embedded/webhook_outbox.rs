//! The embedded [`EventBus`]: a durable outbox of webhook deliveries in the SQLite
//! database, one row per (rule, event), drained by one delivery worker per rule.
//!
//! [`publish`](EventBus::publish) only writes rows — the events every rule's pattern
//! matches — and returns, so the fan-out's own sinks never wait on a receiver. A row is
//! keyed by (rule name, event id): the event id is derived from the change, so a change
//! published again (a redelivered stream record) adds nothing while its first row is
//! waiting or was delivered recently (delivered rows are kept for
//! [`prune_delivered`](SqliteWebhookOutbox::prune_delivered)'s retention).
//!
//! A rule's rows are delivered in insertion order ([`head`](SqliteWebhookOutbox::head)
//! is the oldest waiting one), which is the order of each document's versions. A failed
//! attempt is recorded in the row (attempts, first attempt, next attempt, reason), so a
//! restart resumes the backoff where it was; a row out of its retry budget moves to the
//! dead letters whole, in the transaction that removes it.
//!
//! The writes commit with [`Durability::Ordered`], like the rest of the fan-out's state:
//! what a power loss takes of them it takes with the stream checkpoints saved after
//! them, so those changes are published again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::dead_letter;
use super::sqlite::{Db, Durability};
use super::sqlite_error::map_sqlite_error;
use crate::clock::Clock;
use crate::events::{DocumentEvent, EventRules, RuleName};
use crate::ports::{DeadLetter, DeadLetterSource, EventBus};
use crate::{Error, Result};

/// One waiting delivery: a rule's copy of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    /// Its place in the outbox (insertion order).
    pub seq: i64,
    pub rule: String,
    /// The event id: the `webhook-id` of every attempt.
    pub event_id: String,
    pub document_id: String,
    /// The event's JSON, exactly as it is POSTed and signed.
    pub body: String,
    pub enqueued_at: DateTime<Utc>,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the first attempt was made; the retry budget runs from there.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// When the next attempt is due.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the latest attempt failed.
    pub last_error: Option<String>,
}

/// What waits for one rule, for its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Rows not yet delivered.
    pub waiting: u64,
    /// When the oldest of them was enqueued.
    pub oldest_enqueued_at: Option<DateTime<Utc>>,
}

/// The dead letter of a webhook delivery, as [`SqliteWebhookOutbox::dead_letter`]
/// stores it and [`SqliteWebhookOutbox::requeue`] reads it back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WebhookLetter {
    pub rule: String,
    pub event: DocumentEvent,
}

/// The webhook outbox in the SQLite database.
pub struct SqliteWebhookOutbox {
    db: Db,
    rules: EventRules,
    clock: Arc<dyn Clock>,
    /// Wakes each rule's worker when a row is added for it.
    wakes: BTreeMap<RuleName, Arc<Notify>>,
}

impl std::fmt::Debug for SqliteWebhookOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteWebhookOutbox")
            .field("db", &self.db)
            .field("rules", &self.rules.rules().len())
            .finish()
    }
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl SqliteWebhookOutbox {
    /// Opens the outbox in the database at `path` (migrating it), publishing to
    /// `rules` (none: an outbox that only redrives and drains what is there).
    pub fn open(path: &Path, rules: EventRules, clock: Arc<dyn Clock>) -> Result<Self> {
        let wakes = rules
            .rules()
            .iter()
            .map(|r| (r.name.clone(), Arc::new(Notify::new())))
            .collect();
        Ok(Self {
            db: Db::open_with(path, Durability::Ordered)?,
            rules,
            clock,
            wakes,
        })
    }

    /// The rules events are matched against.
    pub fn rules(&self) -> &EventRules {
        &self.rules
    }

    /// Notified whenever a row is added for `rule` (`None` for a rule not configured).
    pub fn wake(&self, rule: &RuleName) -> Option<Arc<Notify>> {
        self.wakes.get(rule).cloned()
    }

    fn notify(&self, rule: &str) {
        if let Some(wake) = RuleName::parse(rule)
            .ok()
            .and_then(|name| self.wakes.get(&name))
        {
            wake.notify_one();
        }
    }

    /// The oldest waiting delivery of `rule`, due or not.
    pub async fn head(&self, rule: &RuleName) -> Result<Option<PendingDelivery>> {
        let rule = rule.as_str().to_owned();
        self.db
            .call(move |conn| {
                conn.prepare_cached(
                    "SELECT seq, rule, event_id, document_id, body, enqueued_at_ms, attempts,
                            first_attempt_at_ms, next_attempt_at_ms, last_error
                     FROM webhook_outbox
                     WHERE rule = ?1 AND delivered_at_ms IS NULL
                     ORDER BY seq LIMIT 1",
                )
                .and_then(|mut stmt| {
                    stmt.query_row([rule], |row| {
                        Ok(PendingDelivery {
                            seq: row.get(0)?,
                            rule: row.get(1)?,
                            event_id: row.get(2)?,
                            document_id: row.get(3)?,
                            body: row.get(4)?,
                            enqueued_at: from_millis(row.get(5)?),
                            attempts: row.get(6)?,
                            first_attempt_at: row.get::<_, Option<i64>>(7)?.map(from_millis),
                            next_attempt_at: from_millis(row.get(8)?),
                            last_error: row.get(9)?,
                        })
                    })
                    .optional()
                })
                .map_err(map_sqlite_error)
            })
            .await
    }

    /// Marks a delivery done at `at`; it stays (for deduplication) until pruned.
    pub async fn mark_delivered(&self, seq: i64, at: DateTime<Utc>) -> Result<()> {
        self.db
            .call(move |conn| {
                conn.prepare_cached(
                    "UPDATE webhook_outbox SET delivered_at_ms = ?2, last_error = NULL
                     WHERE seq = ?1",
                )
                .and_then(|mut s| s.execute(params![seq, millis(at)]))
                .map(drop)
                .map_err(map_sqlite_error)
            })
            .await
    }

    /// Records a failed attempt: how many were made, when the first was, when the next
    /// is due and why this one failed.
    pub async fn record_failure(
        &self,
        seq: i64,
        attempts: u32,
        first_attempt_at: DateTime<Utc>,
        next_attempt_at: DateTime<Utc>,
        reason: &str,
    ) -> Result<()> {
        let reason = reason.to_owned();
        self.db
            .call(move |conn| {
                conn.prepare_cached(
                    "UPDATE webhook_outbox
                     SET attempts = ?2, first_attempt_at_ms = ?3, next_attempt_at_ms = ?4,
                         last_error = ?5
                     WHERE seq = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        seq,
                        attempts,
                        millis(first_attempt_at),
                        millis(next_attempt_at),
                        reason
                    ])
                })
                .map(drop)
                .map_err(map_sqlite_error)
            })
            .await
    }

    /// Moves a delivery to the dead letters whole (`{"rule", "event"}`) with `reason`,
    /// in one transaction; returns the letter's id.
    pub async fn dead_letter(&self, delivery: &PendingDelivery, reason: &str) -> Result<String> {
        let event: Value = serde_json::from_str(&delivery.body).map_err(|e| {
            Error::Unknown(anyhow::anyhow!(
                "webhook outbox row {}: the stored event is not JSON: {e}",
                delivery.seq
            ))
        })?;
        let letter = DeadLetter {
            id: String::new(),
            source: DeadLetterSource::Webhook,
            payload: json!({ "rule": delivery.rule, "event": event }),
            reason: reason.to_owned(),
            attempts: delivery.attempts,
            failed_at: self.clock.now(),
        };
        let seq = delivery.seq;
        self.db
            .call(move |conn| {
                let tx = conn.transaction().map_err(map_sqlite_error)?;
                let id = dead_letter::insert(&tx, &letter).map_err(map_sqlite_error)?;
                tx.execute("DELETE FROM webhook_outbox WHERE seq = ?1", [seq])
                    .map_err(map_sqlite_error)?;
                tx.commit().map_err(map_sqlite_error)?;
                Ok(id)
            })
            .await
    }

    /// Puts a dead-lettered delivery back at the end of its rule's rows, with a fresh
    /// retry budget. Returns whether a row was added (`false`: the event is already
    /// waiting for, or was recently delivered to, that rule). A rule that is no longer
    /// configured keeps the row until it is again.
    pub async fn requeue(&self, letter: &WebhookLetter) -> Result<bool> {
        let rule = RuleName::parse(&letter.rule)
            .map_err(|e| Error::invalid("rule", format!("{:?}: {e}", letter.rule)))?;
        let added = self.insert(vec![(rule, letter.event.clone())]).await?;
        Ok(added > 0)
    }

    async fn insert(&self, rows: Vec<(RuleName, DocumentEvent)>) -> Result<usize> {
        if rows.is_empty() {
            return Ok(0);
        }
        let now = millis(self.clock.now());
        let mut prepared = Vec::with_capacity(rows.len());
        for (rule, event) in rows {
            let body = serde_json::to_string(&event)
                .map_err(|e| Error::Unknown(anyhow::anyhow!("serialising an event: {e}")))?;
            prepared.push((
                rule.as_str().to_owned(),
                event.id.to_string(),
                event.detail.document_id.to_string(),
                body,
            ));
        }
        let (added, rules) = self
            .db
            .call(move |conn| {
                let tx = conn.transaction().map_err(map_sqlite_error)?;
                let mut added = 0;
                let mut rules = Vec::new();
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO webhook_outbox
                               (rule, event_id, document_id, body, enqueued_at_ms,
                                next_attempt_at_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                        )
                        .map_err(map_sqlite_error)?;
                    for (rule, event_id, document_id, body) in &prepared {
                        let n = stmt
                            .execute(params![rule, event_id, document_id, body, now])
                            .map_err(map_sqlite_error)?;
                        if n > 0 {
                            added += n;
                            rules.push(rule.clone());
                        }
                    }
                }
                tx.commit().map_err(map_sqlite_error)?;
                Ok((added, rules))
            })
            .await?;
        for rule in rules {
            self.notify(&rule);
        }
        Ok(added)
    }

    /// How many deliveries wait for `rule`, and since when the oldest.
    pub async fn backlog(&self, rule: &RuleName) -> Result<Backlog> {
        let rule = rule.as_str().to_owned();
        self.db
            .call(move |conn| {
                conn.prepare_cached(
                    "SELECT COUNT(*), MIN(enqueued_at_ms) FROM webhook_outbox
                     WHERE rule = ?1 AND delivered_at_ms IS NULL",
                )
                .and_then(|mut s| {
                    s.query_row([rule], |row| {
                        Ok(Backlog {
                            waiting: row.get::<_, i64>(0)?.max(0) as u64,
                            oldest_enqueued_at: row.get::<_, Option<i64>>(1)?.map(from_millis),
                        })
                    })
                })
                .map_err(map_sqlite_error)
            })
            .await
    }

    /// The rules that have waiting deliveries, with how many: an operator's check for
    /// rows of a rule the rules file no longer names.
    pub async fn waiting_by_rule(&self) -> Result<BTreeMap<String, u64>> {
        self.db
            .call(|conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT rule, COUNT(*) FROM webhook_outbox
                         WHERE delivered_at_ms IS NULL GROUP BY rule",
                    )
                    .map_err(map_sqlite_error)?;
                let rows = stmt
                    .query_map([], |row| {
                        Ok((row.get(0)?, row.get::<_, i64>(1)?.max(0) as u64))
                    })
                    .map_err(map_sqlite_error)?;
                rows.collect::<rusqlite::Result<_>>()
                    .map_err(map_sqlite_error)
            })
            .await
    }

    /// Forgets deliveries made before `before`: a change published again after that
    /// is delivered again (with the same `webhook-id`). Returns how many were removed.
    pub async fn prune_delivered(&self, before: DateTime<Utc>) -> Result<u64> {
        self.db
            .call(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM webhook_outbox
                     WHERE delivered_at_ms IS NOT NULL AND delivered_at_ms < ?1",
                )
                .and_then(|mut s| s.execute([millis(before)]))
                .map(|n| n as u64)
                .map_err(map_sqlite_error)
            })
            .await
    }
}

#[async_trait]
impl EventBus for SqliteWebhookOutbox {
    /// Adds one row per (matching rule, event), in the events' order, in one
    /// transaction; a (rule, event id) already there adds nothing.
    async fn publish(&self, events: &[DocumentEvent]) -> Result<()> {
        let mut rows = Vec::new();
        for event in events {
            let json = serde_json::to_value(event)
                .map_err(|e| Error::Unknown(anyhow::anyhow!("serialising an event: {e}")))?;
            for rule in self.rules.matching(&json) {
                rows.push((rule.name.clone(), event.clone()));
            }
        }
        self.insert(rows).await.map(drop)
    }

    async fn health(&self) -> Result<()> {
        self.db
            .call(|conn| {
                // Reads the table without counting it.
                conn.prepare_cached("SELECT 1 FROM webhook_outbox LIMIT 1")
                    .and_then(|mut stmt| stmt.exists([]))
                    .map(drop)
                    .map_err(map_sqlite_error)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::{ChangeEvent, Document, DocumentId, Title, UserId};
    use crate::embedded::SqliteDeadLetterQueue;
    use crate::ports::DeadLetterQueue;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn rules() -> EventRules {
        EventRules::parse(
            &json!({"rules": [
                {"name": "all", "pattern": {"source": ["docfan"]},
                 "target": {"url": "https://a.example/", "secret": SECRET}},
                {"name": "deletions", "pattern": {"detail-type": ["document.deleted"]},
                 "target": {"url": "https://b.example/", "secret": SECRET}},
            ]})
            .to_string(),
        )
        .unwrap()
    }

    fn event(doc: u8, version: u64, deleted: bool) -> DocumentEvent {
        let at = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        let owner = UserId::parse("ann").unwrap();
        let document = Document {
            id: DocumentId::parse(&format!("0190a5f0-0000-7000-8000-0000000000{doc:02}")).unwrap(),
            title: Title::parse("Plan").unwrap(),
            body: crate::domain::Body::parse("b").unwrap(),
            owner: owner.clone(),
            collaborators: Default::default(),
            version,
            created_at: at,
            updated_at: at,
            updated_by: owner.clone(),
        };
        let change = if deleted {
            ChangeEvent::deleted(document, version + 1, owner, at, "1".into())
        } else {
            ChangeEvent::written(None, document, "1".into())
        };
        DocumentEvent::from_change(&change)
    }

    fn open(dir: &Path, clock: Arc<ManualClock>) -> SqliteWebhookOutbox {
        SqliteWebhookOutbox::open(&dir.join("db"), rules(), clock).unwrap()
    }

    fn name(n: &str) -> RuleName {
        RuleName::parse(n).unwrap()
    }

    #[tokio::test]
    async fn publish_queues_one_row_per_matching_rule_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let outbox = open(dir.path(), clock.clone());
        let wake = outbox.wake(&name("deletions")).unwrap();
        let created = event(1, 1, false);
        let deleted = event(1, 1, true);
        outbox
            .publish(&[created.clone(), deleted.clone()])
            .await
            .unwrap();
        // The wake-up is kept until the worker waits for it.
        tokio::time::timeout(std::time::Duration::from_secs(1), wake.notified())
            .await
            .expect("the deletions worker is woken");
        // A redelivered change (same ids) adds nothing.
        outbox
            .publish(&[created.clone(), deleted.clone()])
            .await
            .unwrap();
        assert_eq!(outbox.backlog(&name("all")).await.unwrap().waiting, 2);
        assert_eq!(outbox.backlog(&name("deletions")).await.unwrap().waiting, 1);

        let head = outbox.head(&name("all")).await.unwrap().unwrap();
        assert_eq!(head.event_id, created.id.to_string());
        assert_eq!(head.body, serde_json::to_string(&created).unwrap());
        assert_eq!(head.attempts, 0);
        outbox.mark_delivered(head.seq, clock.now()).await.unwrap();
        let next = outbox.head(&name("all")).await.unwrap().unwrap();
        assert_eq!(next.event_id, deleted.id.to_string());

        // Still recognised after delivery, until pruned.
        outbox
            .publish(std::slice::from_ref(&created))
            .await
            .unwrap();
        assert_eq!(outbox.backlog(&name("all")).await.unwrap().waiting, 1);
        clock.advance(chrono::TimeDelta::hours(25));
        let pruned = outbox
            .prune_delivered(clock.now() - chrono::TimeDelta::hours(24))
            .await
            .unwrap();
        assert_eq!(pruned, 1);
        outbox.publish(&[created]).await.unwrap();
        assert_eq!(outbox.backlog(&name("all")).await.unwrap().waiting, 2);
        assert_eq!(
            outbox.waiting_by_rule().await.unwrap(),
            BTreeMap::from([("all".to_owned(), 2), ("deletions".to_owned(), 1)])
        );
    }

    #[tokio::test]
    async fn failures_survive_a_reopen_and_a_dead_letter_comes_back_by_requeue() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let deleted = event(2, 3, true);
        {
            let outbox = open(dir.path(), clock.clone());
            outbox
                .publish(std::slice::from_ref(&deleted))
                .await
                .unwrap();
            let head = outbox.head(&name("deletions")).await.unwrap().unwrap();
            let first = clock.now();
            outbox
                .record_failure(
                    head.seq,
                    1,
                    first,
                    first + chrono::TimeDelta::seconds(30),
                    "500",
                )
                .await
                .unwrap();
        }
        let outbox = open(dir.path(), clock.clone());
        let head = outbox.head(&name("deletions")).await.unwrap().unwrap();
        assert_eq!(head.attempts, 1);
        assert_eq!(head.first_attempt_at, Some(clock.now()));
        assert_eq!(
            head.next_attempt_at,
            clock.now() + chrono::TimeDelta::seconds(30)
        );
        assert_eq!(head.last_error.as_deref(), Some("500"));

        let id = outbox.dead_letter(&head, "gave up: 500").await.unwrap();
        assert_eq!(outbox.backlog(&name("deletions")).await.unwrap().waiting, 0);
        let dlq = SqliteDeadLetterQueue::open(&dir.path().join("db")).unwrap();
        let letters = dlq.list(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].id, id);
        assert_eq!(letters[0].source, DeadLetterSource::Webhook);
        assert_eq!(letters[0].reason, "gave up: 500");
        assert_eq!(letters[0].attempts, 1);
        assert_eq!(letters[0].payload["rule"], "deletions");
        assert_eq!(
            letters[0].payload["event"]["id"],
            deleted.id.to_string().as_str()
        );

        let letter: WebhookLetter = serde_json::from_value(letters[0].payload.clone()).unwrap();
        assert!(outbox.requeue(&letter).await.unwrap());
        assert!(!outbox.requeue(&letter).await.unwrap(), "already waiting");
        let again = outbox.head(&name("deletions")).await.unwrap().unwrap();
        assert_eq!(again.attempts, 0, "a fresh budget");
        assert_eq!(again.body, head.body, "the same bytes as first sent");
        let bad = WebhookLetter {
            rule: "no spaces allowed".into(),
            event: deleted,
        };
        assert!(matches!(outbox.requeue(&bad).await, Err(Error::Invalid(_))));
    }
}
