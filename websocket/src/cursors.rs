//! Where each subscription stands in its document's versions, so that the switch from
//! replay to live delivery has no gap and no duplicate, and a change delivered twice by
//! the stream reaches a connection once.
//!
//! A subscription starts *replaying*: live frames of its document are held, not sent.
//! The subscribe flow sends the subscription's backlog, then takes the held frames
//! (dropping versions it already sent) until none are left, and turns the cursor *live*
//! under the same lock, remembering the last version sent. From then on the notifier
//! sends only versions above it.
//!
//! The cursors live in the process that runs both the subscribe flow and the notifier
//! (the embedded server). Where those run apart (the Lambdas), no cursor exists, every
//! frame is [`Admission::Untracked`] and sent, and clients drop versions they have seen,
//! as the contract allows.

use std::sync::Mutex;

use rustc_hash::FxHashMap;

use shared::domain::DocumentId;
use shared::ports::ConnectionId;

use crate::frames::Frame;

/// A live frame held while its subscription replays.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub version: u64,
    pub frame: Frame,
    /// The frame ends the subscription (`access.revoked`, `document.deleted`).
    pub ends: bool,
}

enum Phase {
    Replaying(Vec<Held>),
    Live,
}

struct Cursor {
    phase: Phase,
    last_sent: u64,
}

/// What the notifier should do with a frame for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Send it now.
    Send,
    /// Held for the replaying subscription; the subscribe flow will send it.
    Held,
    /// That version (or a later one) was already sent: drop it.
    Stale,
    /// No cursor here: send it and let the client drop duplicates.
    Untracked,
}

/// What the subscribe flow gets when it takes the held frames.
#[derive(Debug)]
pub(crate) enum Drain {
    /// Frames held meanwhile, in version order: send those above what was sent, then
    /// take again.
    Frames(Vec<Held>),
    /// Nothing was held: the subscription is live now.
    Live,
    /// The subscription ended meanwhile (unsubscribed or disconnected).
    Ended,
}

#[derive(Default)]
pub(crate) struct Cursors {
    /// A fast hash: every broadcast looks up each subscriber here, and the keys are ids
    /// the server (or API Gateway) made, not a client's input.
    by_connection: Mutex<FxHashMap<ConnectionId, Subscriptions>>,
}

/// One connection's cursors, by document. A list, not a map: a connection follows one
/// document or a few (at most `max_subscriptions`), and every held connection pays for this (a map's smallest table
/// is four times the size of a one-entry list).
#[derive(Default)]
struct Subscriptions(Vec<(DocumentId, Cursor)>);

impl Subscriptions {
    fn get(&self, document: &DocumentId) -> Option<&Cursor> {
        self.0.iter().find(|(d, _)| d == document).map(|(_, c)| c)
    }

    fn get_mut(&mut self, document: &DocumentId) -> Option<&mut Cursor> {
        self.0
            .iter_mut()
            .find(|(d, _)| d == document)
            .map(|(_, c)| c)
    }

    fn insert(&mut self, document: DocumentId, cursor: Cursor) {
        match self.get_mut(&document) {
            Some(existing) => *existing = cursor,
            None => self.0.push((document, cursor)),
        }
    }

    fn remove(&mut self, document: &DocumentId) {
        self.0.retain(|(d, _)| d != document);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Cursors {
    /// Starts (or restarts) a subscription in the replaying phase.
    pub fn begin(&self, connection: &ConnectionId, document: &DocumentId) {
        self.by_connection
            .lock()
            .expect("cursor lock")
            .entry(connection.clone())
            .or_default()
            .insert(
                *document,
                Cursor {
                    phase: Phase::Replaying(Vec::new()),
                    last_sent: 0,
                },
            );
    }

    /// Decides about one live frame of `version` for a subscriber; a frame that `ends`
    /// the subscription removes the cursor once sent.
    pub fn admit(
        &self,
        connection: &ConnectionId,
        document: &DocumentId,
        version: u64,
        frame: &Frame,
        ends: bool,
    ) -> Admission {
        let mut all = self.by_connection.lock().expect("cursor lock");
        admit(&mut all, connection, document, version, frame, ends)
    }

    /// [`admit`](Cursors::admit) for each (subscriber, frame) of a broadcast, under one
    /// lock: the frames end no subscription.
    pub fn admit_each<'a>(
        &self,
        document: &DocumentId,
        version: u64,
        frames: impl IntoIterator<Item = (&'a ConnectionId, &'a Frame)>,
    ) -> Vec<Admission> {
        let mut all = self.by_connection.lock().expect("cursor lock");
        frames
            .into_iter()
            .map(|(connection, frame)| admit(&mut all, connection, document, version, frame, false))
            .collect()
    }

    /// Whether a live subscription was already sent `version` or a later one.
    pub fn already_sent(
        &self,
        connection: &ConnectionId,
        document: &DocumentId,
        version: u64,
    ) -> bool {
        let all = self.by_connection.lock().expect("cursor lock");
        all.get(connection)
            .and_then(|c| c.get(document))
            .is_some_and(|c| matches!(c.phase, Phase::Live) && version <= c.last_sent)
    }

    /// The lowest version held for a replaying subscription.
    pub fn lowest_held(&self, connection: &ConnectionId, document: &DocumentId) -> Option<u64> {
        let all = self.by_connection.lock().expect("cursor lock");
        match &all.get(connection)?.get(document)?.phase {
            Phase::Replaying(held) => held.iter().map(|h| h.version).min(),
            Phase::Live => None,
        }
    }

    /// Takes the frames held for a replaying subscription; when there are none, turns
    /// it live with `sent_up_to` as the last version sent.
    pub fn drain(
        &self,
        connection: &ConnectionId,
        document: &DocumentId,
        sent_up_to: u64,
    ) -> Drain {
        let mut all = self.by_connection.lock().expect("cursor lock");
        let Some(cursor) = all.get_mut(connection).and_then(|c| c.get_mut(document)) else {
            return Drain::Ended;
        };
        match &mut cursor.phase {
            Phase::Replaying(held) if !held.is_empty() => {
                let mut frames = std::mem::take(held);
                frames.sort_by_key(|h| h.version);
                Drain::Frames(frames)
            }
            _ => {
                cursor.phase = Phase::Live;
                cursor.last_sent = cursor.last_sent.max(sent_up_to);
                Drain::Live
            }
        }
    }

    pub fn forget(&self, connection: &ConnectionId, document: &DocumentId) {
        let mut all = self.by_connection.lock().expect("cursor lock");
        if let Some(cursors) = all.get_mut(connection) {
            cursors.remove(document);
            if cursors.is_empty() {
                all.remove(connection);
            }
        }
    }

    pub fn forget_connection(&self, connection: &ConnectionId) {
        self.by_connection
            .lock()
            .expect("cursor lock")
            .remove(connection);
    }

    /// How many subscriptions hold a cursor.
    pub fn tracked(&self) -> usize {
        self.by_connection
            .lock()
            .expect("cursor lock")
            .values()
            .map(Subscriptions::len)
            .sum()
    }
}

fn admit(
    all: &mut FxHashMap<ConnectionId, Subscriptions>,
    connection: &ConnectionId,
    document: &DocumentId,
    version: u64,
    frame: &Frame,
    ends: bool,
) -> Admission {
    let Some(cursors) = all.get_mut(connection) else {
        return Admission::Untracked;
    };
    let Some(cursor) = cursors.get_mut(document) else {
        return Admission::Untracked;
    };
    match &mut cursor.phase {
        Phase::Replaying(held) => {
            held.push(Held {
                version,
                frame: frame.clone(),
                ends,
            });
            Admission::Held
        }
        Phase::Live if version <= cursor.last_sent => Admission::Stale,
        Phase::Live => {
            cursor.last_sent = version;
            if ends {
                cursors.remove(document);
                if cursors.is_empty() {
                    all.remove(connection);
                }
            }
            Admission::Send
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames;

    #[test]
    fn replaying_holds_then_live_drops_what_was_sent() {
        let cursors = Cursors::default();
        let (c, d) = (ConnectionId("c".into()), DocumentId::generate());
        let f = frames::pong();
        assert_eq!(cursors.admit(&c, &d, 1, &f, false), Admission::Untracked);

        cursors.begin(&c, &d);
        assert_eq!(cursors.admit(&c, &d, 7, &f, false), Admission::Held);
        assert_eq!(cursors.admit(&c, &d, 6, &f, false), Admission::Held);
        assert_eq!(cursors.lowest_held(&c, &d), Some(6));
        let Drain::Frames(held) = cursors.drain(&c, &d, 6) else {
            panic!("frames were held")
        };
        assert_eq!(held.iter().map(|h| h.version).collect::<Vec<_>>(), [6, 7]);
        assert!(matches!(cursors.drain(&c, &d, 7), Drain::Live));

        assert!(cursors.already_sent(&c, &d, 7));
        assert!(!cursors.already_sent(&c, &d, 8));
        assert_eq!(cursors.admit(&c, &d, 7, &f, false), Admission::Stale);
        assert_eq!(cursors.admit(&c, &d, 8, &f, false), Admission::Send);
        assert_eq!(cursors.admit(&c, &d, 8, &f, false), Admission::Stale);
        assert_eq!(cursors.admit(&c, &d, 9, &f, true), Admission::Send);
        assert_eq!(cursors.tracked(), 0);
        assert!(matches!(cursors.drain(&c, &d, 9), Drain::Ended));
    }
}
