//! The laws of text operations, on generated texts and edits: what the server's ordering
//! of concurrent edits relies on.
//!
//! - The builder's normal form, and `apply` agreeing with a plain reading of the
//!   components over a vector of characters (which also gives where each character goes,
//!   for `transform_position`).
//! - `compose`, `invert`, `transform` (both orders converge) and `diff`.
//! - The wire form reads back what it wrote.
//! - A central server with 2 to 5 clients: each client edits on whatever version it has,
//!   keeps one edit in flight and buffers the rest (ot.js's client), the server transforms
//!   each incoming edit against everything committed since its base, and messages arrive
//!   in any interleaving; at the end every client has the server's text.
//!
//! Texts mix ASCII with multi-byte characters, emoji, a skin-tone modifier, a combining
//! accent and a zero-width joiner, so a slip between bytes, UTF-16 units and code points
//! shows.

// A test target sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

use std::collections::VecDeque;

use proptest::prelude::*;
use proptest::sample::Index;
use shared::domain::{Component, TextOperation};

const CHARS: &[char] = &[
    'a',
    'b',
    'c',
    ' ',
    '\n',
    'é',
    'ß',
    'ж',
    '中',
    '語',
    '😀',
    '🎉',
    '👍',
    '\u{1F3FD}',
    '\u{301}',
    '\u{200D}',
];

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(CHARS), 0..max)
        .prop_map(|chars| chars.into_iter().collect())
}

/// One step of an edit; `edit` reads the steps against a text.
#[derive(Debug, Clone)]
enum Step {
    Keep(usize),
    Insert(String),
    Delete(usize),
}

/// Steps whose counts may be zero and inserts empty: the builder has to cope.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            (0..8usize).prop_map(Step::Keep),
            text(5).prop_map(Step::Insert),
            (0..6usize).prop_map(Step::Delete),
        ],
        0..10,
    )
}

/// An operation that fits a text of `len` characters: each count is cut to what is left.
fn edit(len: usize, steps: &[Step]) -> TextOperation {
    let mut op = TextOperation::new();
    let mut left = len;
    for step in steps {
        op = match step {
            Step::Keep(n) => {
                let n = (*n).min(left);
                left -= n;
                op.retain(n)
            }
            Step::Delete(n) => {
                let n = (*n).min(left);
                left -= n;
                op.delete(n)
            }
            Step::Insert(s) => op.insert(s),
        };
    }
    op
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// The operation's effect read plainly from its steps (cut to `text` as `edit` cuts
/// them): each output character with the position it came from in `text` (None when
/// inserted).
fn plainly(text: &str, steps: &[Step]) -> Vec<(char, Option<usize>)> {
    let input: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    for step in steps {
        match step {
            Step::Keep(n) => {
                let end = (at + n).min(input.len());
                out.extend((at..end).map(|i| (input[i], Some(i))));
                at = end;
            }
            Step::Delete(n) => at = (at + n).min(input.len()),
            Step::Insert(s) => out.extend(s.chars().map(|c| (c, None))),
        }
    }
    out.extend((at..input.len()).map(|i| (input[i], Some(i))));
    out
}

/// The normal form: no empty or zero components, no two adjacent of one kind, no delete
/// before an insert, no trailing retain.
fn assert_normalized(op: &TextOperation) -> Result<(), TestCaseError> {
    let components = op.components();
    for c in components {
        prop_assert!(
            !matches!(c, Component::Retain(0) | Component::Delete(0))
                && *c != Component::Insert(String::new()),
            "an empty component in {:?}",
            op
        );
    }
    for pair in components.windows(2) {
        let same_kind = std::mem::discriminant(&pair[0]) == std::mem::discriminant(&pair[1]);
        prop_assert!(!same_kind, "adjacent components of one kind in {:?}", op);
        prop_assert!(
            !matches!(pair, [Component::Delete(_), Component::Insert(_)]),
            "a delete before an insert in {:?}",
            op
        );
    }
    prop_assert!(
        !matches!(components.last(), Some(Component::Retain(_))),
        "a trailing retain in {:?}",
        op
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn operations_are_normalized_and_apply_as_their_steps_say(s in text(30), steps in steps()) {
        let op = edit(chars(&s), &steps);
        assert_normalized(&op)?;
        let expected: String = plainly(&s, &steps).into_iter().map(|(c, _)| c).collect();
        prop_assert_eq!(op.apply(&s).unwrap(), expected.clone());
        prop_assert_eq!(chars(&expected) as i64, chars(&s) as i64 + op.len_delta());
        prop_assert!(op.base_len() <= chars(&s));
        // One character short of what it reaches, the operation does not fit.
        if let Some(short) = op.base_len().checked_sub(1) {
            let cut: String = s.chars().take(short).collect();
            prop_assert!(op.apply(&cut).is_err());
        }
    }

    #[test]
    fn positions_follow_their_characters(s in text(30), steps in steps()) {
        let op = edit(chars(&s), &steps);
        for (to, (_, from)) in plainly(&s, &steps).into_iter().enumerate() {
            if let Some(from) = from {
                prop_assert_eq!(op.transform_position(from, true), to, "{:?} from {}", op, from);
            }
        }
        // A caret never moves past the end of the text, nor before what precedes it.
        let after = chars(&op.apply(&s).unwrap());
        for pos in 0..=chars(&s) {
            prop_assert!(op.transform_position(pos, false) <= op.transform_position(pos, true));
            prop_assert!(op.transform_position(pos, true) <= after);
        }
    }

    #[test]
    fn composing_is_applying_one_then_the_other(
        s in text(30),
        first in steps(),
        second in steps(),
        slack in 0..3usize,
    ) {
        let a = edit(chars(&s), &first);
        let after_a = a.apply(&s).unwrap();
        // `b` may reach past what `a` leaves (by `slack`): then neither side fits.
        let b = edit(chars(&after_a) + slack, &second);
        let composed = a.compose(&b).unwrap();
        assert_normalized(&composed)?;
        match b.apply(&after_a) {
            Ok(expected) => prop_assert_eq!(composed.apply(&s).unwrap(), expected),
            Err(_) => prop_assert!(composed.apply(&s).is_err()),
        }
        prop_assert_eq!(composed.len_delta(), a.len_delta() + b.len_delta());
    }

    #[test]
    fn composing_is_associative(s in text(20), x in steps(), y in steps(), z in steps()) {
        let a = edit(chars(&s), &x);
        let s1 = a.apply(&s).unwrap();
        let b = edit(chars(&s1), &y);
        let s2 = b.apply(&s1).unwrap();
        let c = edit(chars(&s2), &z);
        let left = a.compose(&b).unwrap().compose(&c).unwrap();
        let right = a.compose(&b.compose(&c).unwrap()).unwrap();
        prop_assert_eq!(left.apply(&s).unwrap(), right.apply(&s).unwrap());
    }

    #[test]
    fn an_inverse_undoes(s in text(30), steps in steps()) {
        let op = edit(chars(&s), &steps);
        let after = op.apply(&s).unwrap();
        let inverse = op.invert(&s).unwrap();
        assert_normalized(&inverse)?;
        prop_assert_eq!(inverse.apply(&after).unwrap(), s.clone());
        prop_assert_eq!(inverse.len_delta(), -op.len_delta());
        // And the operation then its inverse is nothing, as far as `s` can tell.
        prop_assert_eq!(op.compose(&inverse).unwrap().apply(&s).unwrap(), s);
    }

    #[test]
    fn transformed_operations_converge(s in text(30), x in steps(), y in steps(), by_committed in any::<bool>()) {
        let a = edit(chars(&s), &x);
        let b = edit(chars(&s), &y);
        let (committed, incoming) = if by_committed { (&a, &b) } else { (&b, &a) };
        let (committed2, incoming2) = TextOperation::transform(committed, incoming);
        assert_normalized(&committed2)?;
        assert_normalized(&incoming2)?;
        let one = incoming2.apply(&committed.apply(&s).unwrap()).unwrap();
        let two = committed2.apply(&incoming.apply(&s).unwrap()).unwrap();
        prop_assert_eq!(&one, &two);
        // Both paths say the same as one operation.
        let via_committed = committed.compose(&incoming2).unwrap();
        let via_incoming = incoming.compose(&committed2).unwrap();
        prop_assert_eq!(via_committed.apply(&s).unwrap(), one.clone());
        prop_assert_eq!(via_incoming.apply(&s).unwrap(), one);
    }

    #[test]
    fn the_wire_form_reads_back_what_it_wrote(steps in steps(), big in prop::option::of(1..=i64::MAX as usize / 2)) {
        let mut op = edit(usize::MAX / 2, &steps);
        if let Some(n) = big {
            op = op.delete(n);
        }
        let json = serde_json::to_string(&op).unwrap();
        let read: TextOperation = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(read.components(), op.components());
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(value.as_array().unwrap().len(), op.components().len());
    }

    #[test]
    fn the_wire_form_normalizes_what_it_reads(steps in steps()) {
        // The steps as a client might send them: unmerged, in any order, with a trailing
        // retain, but without zeros or empty strings.
        let wire: Vec<serde_json::Value> = steps
            .iter()
            .filter_map(|step| match step {
                Step::Keep(0) | Step::Delete(0) => None,
                Step::Keep(n) => Some(serde_json::json!(n)),
                Step::Delete(n) => Some(serde_json::json!(-(*n as i64))),
                Step::Insert(s) if s.is_empty() => None,
                Step::Insert(s) => Some(serde_json::json!(s)),
            })
            .collect();
        let read: TextOperation = serde_json::from_value(serde_json::Value::Array(wire)).unwrap();
        assert_normalized(&read)?;
        prop_assert_eq!(read, edit(usize::MAX / 2, &steps));
    }

    #[test]
    fn a_diff_makes_the_new_text(old in text(30), new in text(30), steps in steps()) {
        let diff = TextOperation::diff(&old, &new);
        assert_normalized(&diff)?;
        prop_assert_eq!(diff.apply(&old).unwrap(), new);
        // And on a text that is an edit of the old one.
        let edited = edit(chars(&old), &steps).apply(&old).unwrap();
        let diff = TextOperation::diff(&old, &edited);
        prop_assert_eq!(diff.apply(&old).unwrap(), edited);
        prop_assert_eq!(TextOperation::diff(&old, &old), TextOperation::new());
    }
}

// The central server and its clients.

/// The server: the text and every operation committed, in order (version i+1 is
/// `history[i]` applied to version i).
struct Server {
    text: String,
    history: Vec<TextOperation>,
}

impl Server {
    /// Commits an edit made on version `base`: transformed against every operation
    /// committed since, those first.
    fn receive(&mut self, base: usize, mut op: TextOperation) -> TextOperation {
        for committed in &self.history[base..] {
            op = TextOperation::transform(committed, &op).1;
        }
        self.text = op
            .apply(&self.text)
            .expect("a transformed edit fits the server's text");
        self.history.push(op.clone());
        op
    }
}

/// ot.js's client: at most one edit in flight to the server, later local edits composed
/// into a buffer sent when the server acknowledges the one in flight.
#[derive(Debug)]
enum State {
    Synchronized,
    Awaiting(TextOperation),
    AwaitingWithBuffer(TextOperation, TextOperation),
}

struct Client {
    text: String,
    /// Server operations seen (its own acknowledged ones included).
    version: usize,
    state: State,
    /// Edits on their way to the server, with the version each was made on.
    to_server: VecDeque<(usize, TextOperation)>,
    /// Committed operations on their way from the server, with their author.
    from_server: VecDeque<(usize, TextOperation)>,
}

impl Client {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            version: 0,
            state: State::Synchronized,
            to_server: VecDeque::new(),
            from_server: VecDeque::new(),
        }
    }

    fn edit(&mut self, op: TextOperation) {
        self.text = op.apply(&self.text).expect("an edit fits its own text");
        self.state = match std::mem::replace(&mut self.state, State::Synchronized) {
            State::Synchronized => {
                self.to_server.push_back((self.version, op.clone()));
                State::Awaiting(op)
            }
            State::Awaiting(outstanding) => State::AwaitingWithBuffer(outstanding, op),
            State::AwaitingWithBuffer(outstanding, buffer) => {
                State::AwaitingWithBuffer(outstanding, buffer.compose(&op).unwrap())
            }
        };
    }

    fn acknowledged(&mut self) {
        self.version += 1;
        self.state = match std::mem::replace(&mut self.state, State::Synchronized) {
            State::Awaiting(_) => State::Synchronized,
            State::AwaitingWithBuffer(_, buffer) => {
                self.to_server.push_back((self.version, buffer.clone()));
                State::Awaiting(buffer)
            }
            State::Synchronized => panic!("an acknowledgement with nothing in flight"),
        };
    }

    fn committed(&mut self, op: &TextOperation) {
        self.version += 1;
        // The server committed `op` before whatever this client has not had acknowledged.
        let (op, state) = match std::mem::replace(&mut self.state, State::Synchronized) {
            State::Synchronized => (op.clone(), State::Synchronized),
            State::Awaiting(outstanding) => {
                let (op, outstanding) = TextOperation::transform(op, &outstanding);
                (op, State::Awaiting(outstanding))
            }
            State::AwaitingWithBuffer(outstanding, buffer) => {
                let (op, outstanding) = TextOperation::transform(op, &outstanding);
                let (op, buffer) = TextOperation::transform(&op, &buffer);
                (op, State::AwaitingWithBuffer(outstanding, buffer))
            }
        };
        self.text = op
            .apply(&self.text)
            .expect("a transformed operation fits the client's text");
        self.state = state;
    }
}

#[derive(Debug, Clone)]
enum Event {
    /// A client edits its text.
    Edit(Index, Vec<Step>),
    /// The server takes the next edit a client sent.
    ServerReceives(Index),
    /// A client takes the next operation the server sent it.
    ClientReceives(Index),
}

fn events() -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(
        prop_oneof![
            2 => (any::<Index>(), steps()).prop_map(|(c, s)| Event::Edit(c, s)),
            2 => any::<Index>().prop_map(Event::ServerReceives),
            3 => any::<Index>().prop_map(Event::ClientReceives),
        ],
        0..80,
    )
}

fn server_receives(server: &mut Server, clients: &mut [Client], author: usize) -> bool {
    let Some((base, op)) = clients[author].to_server.pop_front() else {
        return false;
    };
    let committed = server.receive(base, op);
    for client in clients.iter_mut() {
        client.from_server.push_back((author, committed.clone()));
    }
    true
}

fn client_receives(clients: &mut [Client], who: usize) -> bool {
    let Some((author, op)) = clients[who].from_server.pop_front() else {
        return false;
    };
    if author == who {
        clients[who].acknowledged();
    } else {
        clients[who].committed(&op);
    }
    true
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn clients_of_one_server_converge(start in text(20), count in 2..=5usize, events in events()) {
        let mut server = Server { text: start.clone(), history: Vec::new() };
        let mut clients: Vec<Client> = (0..count).map(|_| Client::new(&start)).collect();
        for event in events {
            match event {
                Event::Edit(who, steps) => {
                    let client = &mut clients[who.index(count)];
                    let op = edit(chars(&client.text), &steps);
                    client.edit(op);
                }
                Event::ServerReceives(who) => {
                    server_receives(&mut server, &mut clients, who.index(count));
                }
                Event::ClientReceives(who) => {
                    client_receives(&mut clients, who.index(count));
                }
            }
        }
        // Then everything in flight arrives.
        let mut moved = true;
        while moved {
            moved = false;
            for who in 0..count {
                moved |= server_receives(&mut server, &mut clients, who);
                while client_receives(&mut clients, who) {
                    moved = true;
                }
            }
        }
        for (who, client) in clients.iter().enumerate() {
            prop_assert!(matches!(client.state, State::Synchronized), "client {} is {:?}", who, client.state);
            prop_assert_eq!(client.version, server.history.len());
            prop_assert_eq!(&client.text, &server.text, "client {}", who);
        }
        // The history replays to the server's text.
        let mut replayed = start;
        for op in &server.history {
            replayed = op.apply(&replayed).unwrap();
        }
        prop_assert_eq!(replayed, server.text);
    }
}
