//! Text operations: the unit of change when people edit a body together.
//!
//! A [`TextOperation`] walks a text from its start through a list of [`Component`]s:
//! keep (retain) some characters, insert a string, delete some characters. Characters are
//! Unicode scalar values (Rust `char`s), never bytes or UTF-16 code units. What the
//! components do not reach is kept, so an operation never ends with a retain, and one
//! operation fits every text at least [`TextOperation::base_len`] characters long.
//!
//! The module holds, in order: the value type and its builder (which keeps every
//! operation in one normal form, so equal edits compare equal); the algebra the server
//! orders concurrent edits with (`apply`, `invert`, `compose`, `transform`,
//! `transform_position`) and `diff`; and the wire format, OPS in the product definition:
//! a JSON array of positive integers (keep), non-empty strings (insert) and negative
//! integers (delete).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{self, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// The most components an operation may have on the wire. A 128 KiB body edited one
/// character in two needs fewer; more is someone sending garbage.
pub const MAX_COMPONENTS: usize = 100_000;

/// The largest count a component may carry on the wire, and the most characters an
/// operation read from the wire may reach: what a JSON integer (`i64`) can say.
const MAX_WIRE_COUNT: u64 = i64::MAX as u64;

/// One component of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Component {
    /// Keep this many characters.
    Retain(usize),
    /// Insert this text.
    Insert(String),
    /// Delete this many characters.
    Delete(usize),
}

/// A text operation on a body, in Unicode scalar values (Rust `char`s), applied from the
/// start of the text; what its components do not reach is kept (an implicit trailing
/// retain).
///
/// Always normalized: no empty or zero components, adjacent components of one kind
/// merged, an insert before a delete at the same position, no trailing retain. Build one
/// with [`TextOperation::new`] and the builder methods, which normalize as they go:
///
/// ```
/// use shared::domain::{Component, TextOperation};
///
/// let op = TextOperation::new().retain(6).delete(5).insert("ami").retain(3);
/// assert_eq!(op.components(), [
///     Component::Retain(6),
///     Component::Insert("ami".into()),
///     Component::Delete(5),
/// ]);
/// assert_eq!(op.apply("salut monde !").unwrap(), "salut ami !");
/// ```
#[derive(Debug, Clone, Default)]
pub struct TextOperation {
    components: Vec<Component>,
    /// A retain the builder was given last. It becomes a component only when an insert or
    /// a delete follows it: at the end of an operation, keeping is what happens anyway.
    /// An operation read from the wire keeps its trailing retain here, so that
    /// [`TextOperation::reach`] can tell whether it fits the body it was written for. It
    /// takes no part in equality.
    pending_retain: usize,
}

/// Why an operation could not be applied or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperationError {
    #[error("the operation reaches {needs} characters but the body has {has}")]
    DoesNotFit { needs: usize, has: usize },
    /// The wire form is not an operation; the message names the offending component (its
    /// index in the array, from 0).
    #[error("{0}")]
    Malformed(String),
}

impl PartialEq for TextOperation {
    fn eq(&self, other: &Self) -> bool {
        self.components == other.components
    }
}

impl Eq for TextOperation {}

impl TextOperation {
    /// The no-op.
    pub fn new() -> Self {
        Self::default()
    }

    /// Then keep `n` characters.
    pub fn retain(mut self, n: usize) -> Self {
        self.push_retain(n);
        self
    }

    /// Then insert `s`.
    pub fn insert(mut self, s: &str) -> Self {
        self.push_insert(s);
        self
    }

    /// Then delete `n` characters.
    pub fn delete(mut self, n: usize) -> Self {
        self.push_delete(n);
        self
    }

    /// The components, normalized (see the type's documentation).
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Whether the operation changes nothing, whatever the text.
    pub fn is_noop(&self) -> bool {
        self.components.is_empty()
    }

    /// Characters of the base text the operation reaches (retains + deletes): it fits
    /// every text at least this long.
    pub fn base_len(&self) -> usize {
        self.components.iter().fold(0, |reach, c| match c {
            Component::Retain(n) | Component::Delete(n) => reach.saturating_add(*n),
            Component::Insert(_) => reach,
        })
    }

    /// Characters of the base text the operation reaches as it was written, counting a
    /// trailing retain the normal form leaves out: an operation read from the wire fits
    /// the body it was made on only if this is no more than the body's length. For
    /// operations built here it equals [`TextOperation::base_len`].
    pub fn reach(&self) -> usize {
        self.base_len().saturating_add(self.pending_retain)
    }

    /// The change in length in chars (inserted − deleted), as i64.
    pub fn len_delta(&self) -> i64 {
        let delta = self.components.iter().fold(0i128, |delta, c| match c {
            Component::Retain(_) => delta,
            Component::Insert(s) => delta + s.chars().count() as i128,
            Component::Delete(n) => delta - *n as i128,
        });
        delta.clamp(i64::MIN.into(), i64::MAX.into()) as i64
    }

    /// The text this operation makes of `text`, or [`OperationError::DoesNotFit`] when it
    /// reaches past the end of `text`. Linear in the length of `text` and of the inserts.
    pub fn apply(&self, text: &str) -> Result<String, OperationError> {
        let inserted: usize = self
            .components
            .iter()
            .map(|c| match c {
                Component::Insert(s) => s.len(),
                _ => 0,
            })
            .sum();
        let mut out = String::with_capacity(text.len() + inserted);
        let mut rest = text;
        for c in &self.components {
            match c {
                Component::Retain(n) | Component::Delete(n) => {
                    let (head, tail, taken) = take_chars(rest, *n);
                    if taken < *n {
                        return Err(self.does_not_fit(text));
                    }
                    if matches!(c, Component::Retain(_)) {
                        out.push_str(head);
                    }
                    rest = tail;
                }
                Component::Insert(s) => out.push_str(s),
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The operation that undoes this one: `invert(a, s)` applied to `apply(a, s)` gives
    /// `s` back. It needs the base text for what the deletes removed, so it fails as
    /// [`TextOperation::apply`] does when this operation does not fit `base`.
    pub fn invert(&self, base: &str) -> Result<TextOperation, OperationError> {
        let mut inverse = TextOperation::new();
        let mut rest = base;
        for c in &self.components {
            match c {
                Component::Retain(n) | Component::Delete(n) => {
                    let (head, tail, taken) = take_chars(rest, *n);
                    if taken < *n {
                        return Err(self.does_not_fit(base));
                    }
                    if matches!(c, Component::Retain(_)) {
                        inverse.push_retain(*n);
                    } else {
                        inverse.push_insert(head);
                    }
                    rest = tail;
                }
                Component::Insert(s) => inverse.push_delete(s.chars().count()),
            }
        }
        Ok(inverse.finish())
    }

    /// `self` then `other`: one operation with the effect of applying `self`, then `other`
    /// to the result.
    ///
    /// Never fails: past the end of either operation its implicit retain keeps going, so
    /// any two operations compose, and the composition fits a text exactly when `self`
    /// fits it and `other` fits what `self` makes of it.
    pub fn compose(&self, other: &TextOperation) -> Result<TextOperation, OperationError> {
        let mut out = TextOperation::new();
        let mut firsts = self.components.iter().map(Piece::from);
        let mut seconds = other.components.iter().map(Piece::from);
        let (mut a, mut b) = (firsts.next(), seconds.next());
        loop {
            match (a, b) {
                (None, None) => break,
                // What the first deletes, the second never sees.
                (Some(Piece::Delete(n)), _) => {
                    out.push_delete(n);
                    a = firsts.next();
                }
                // What the second inserts, the first never touched.
                (_, Some(Piece::Insert(s))) => {
                    out.push_insert(s);
                    b = seconds.next();
                }
                // Past the end of the first, the second acts on the base text.
                (None, Some(Piece::Retain(n))) => {
                    out.push_retain(n);
                    b = seconds.next();
                }
                (None, Some(Piece::Delete(n))) => {
                    out.push_delete(n);
                    b = seconds.next();
                }
                // Past the end of the second, the rest of the first stands.
                (Some(Piece::Retain(n)), None) => {
                    out.push_retain(n);
                    a = firsts.next();
                }
                (Some(Piece::Insert(s)), None) => {
                    out.push_insert(s);
                    a = firsts.next();
                }
                (Some(Piece::Retain(x)), Some(Piece::Retain(y))) => {
                    let n = x.min(y);
                    out.push_retain(n);
                    a = rest_or_next(x - n, Piece::Retain, &mut firsts);
                    b = rest_or_next(y - n, Piece::Retain, &mut seconds);
                }
                (Some(Piece::Retain(x)), Some(Piece::Delete(y))) => {
                    let n = x.min(y);
                    out.push_delete(n);
                    a = rest_or_next(x - n, Piece::Retain, &mut firsts);
                    b = rest_or_next(y - n, Piece::Delete, &mut seconds);
                }
                (Some(Piece::Insert(s)), Some(Piece::Retain(y))) => {
                    let (kept, tail, n) = take_chars(s, y);
                    out.push_insert(kept);
                    a = insert_rest_or_next(tail, &mut firsts);
                    b = rest_or_next(y - n, Piece::Retain, &mut seconds);
                }
                (Some(Piece::Insert(s)), Some(Piece::Delete(y))) => {
                    let (_, tail, n) = take_chars(s, y);
                    a = insert_rest_or_next(tail, &mut firsts);
                    b = rest_or_next(y - n, Piece::Delete, &mut seconds);
                }
            }
        }
        Ok(out.finish())
    }

    /// Transforms two operations made on the same text. `committed` is the one ordered
    /// first: at the same position its inserts go before `incoming`'s. Returns
    /// `(committed', incoming')` such that
    /// `apply(apply(s, committed), incoming') == apply(apply(s, incoming), committed')`.
    /// Works with the implicit trailing retain (the two operations may reach different
    /// lengths).
    pub fn transform(
        committed: &TextOperation,
        incoming: &TextOperation,
    ) -> (TextOperation, TextOperation) {
        let (mut committed_out, mut incoming_out) = (TextOperation::new(), TextOperation::new());
        let mut committeds = committed.components.iter().map(Piece::from);
        let mut incomings = incoming.components.iter().map(Piece::from);
        let (mut a, mut b) = (committeds.next(), incomings.next());
        loop {
            match (a, b) {
                (None, None) => break,
                // Inserts first, the committed operation's before the incoming one's; the
                // other side keeps what was inserted.
                (Some(Piece::Insert(s)), _) => {
                    committed_out.push_insert(s);
                    incoming_out.push_retain(s.chars().count());
                    a = committeds.next();
                }
                (_, Some(Piece::Insert(s))) => {
                    committed_out.push_retain(s.chars().count());
                    incoming_out.push_insert(s);
                    b = incomings.next();
                }
                // Past the end of one operation, it keeps what the other reaches.
                (None, Some(Piece::Retain(n))) | (Some(Piece::Retain(n)), None) => {
                    committed_out.push_retain(n);
                    incoming_out.push_retain(n);
                    a = a.and_then(|_| committeds.next());
                    b = b.and_then(|_| incomings.next());
                }
                (None, Some(Piece::Delete(n))) => {
                    incoming_out.push_delete(n);
                    b = incomings.next();
                }
                (Some(Piece::Delete(n)), None) => {
                    committed_out.push_delete(n);
                    a = committeds.next();
                }
                (Some(Piece::Retain(x)), Some(Piece::Retain(y))) => {
                    let n = x.min(y);
                    committed_out.push_retain(n);
                    incoming_out.push_retain(n);
                    a = rest_or_next(x - n, Piece::Retain, &mut committeds);
                    b = rest_or_next(y - n, Piece::Retain, &mut incomings);
                }
                // Both delete the same characters: neither has to any more.
                (Some(Piece::Delete(x)), Some(Piece::Delete(y))) => {
                    let n = x.min(y);
                    a = rest_or_next(x - n, Piece::Delete, &mut committeds);
                    b = rest_or_next(y - n, Piece::Delete, &mut incomings);
                }
                (Some(Piece::Delete(x)), Some(Piece::Retain(y))) => {
                    let n = x.min(y);
                    committed_out.push_delete(n);
                    a = rest_or_next(x - n, Piece::Delete, &mut committeds);
                    b = rest_or_next(y - n, Piece::Retain, &mut incomings);
                }
                (Some(Piece::Retain(x)), Some(Piece::Delete(y))) => {
                    let n = x.min(y);
                    incoming_out.push_delete(n);
                    a = rest_or_next(x - n, Piece::Retain, &mut committeds);
                    b = rest_or_next(y - n, Piece::Delete, &mut incomings);
                }
            }
        }
        (committed_out.finish(), incoming_out.finish())
    }

    /// The operation turning `old` into `new`: the common prefix and suffix kept, the
    /// middle replaced. Linear time; not a minimal edit script (a change at each end of a
    /// text replaces all that lies between them).
    pub fn diff(old: &str, new: &str) -> TextOperation {
        let (mut prefix_chars, mut prefix_bytes) = (0, 0);
        for (a, b) in old.chars().zip(new.chars()) {
            if a != b {
                break;
            }
            prefix_chars += 1;
            prefix_bytes += a.len_utf8();
        }
        let (old_rest, new_rest) = (&old[prefix_bytes..], &new[prefix_bytes..]);
        let mut suffix_bytes = 0;
        for (a, b) in old_rest.chars().rev().zip(new_rest.chars().rev()) {
            if a != b {
                break;
            }
            suffix_bytes += a.len_utf8();
        }
        let removed = &old_rest[..old_rest.len() - suffix_bytes];
        let added = &new_rest[..new_rest.len() - suffix_bytes];
        TextOperation::new()
            .retain(prefix_chars)
            .delete(removed.chars().count())
            .insert(added)
            .finish()
    }

    /// Maps a caret position (in chars) on the base text to the text this operation makes.
    /// A caret in a deleted range goes to where the range was (after what replaced it:
    /// an insert comes before a delete at the same position); a caret exactly where text
    /// is inserted goes after it when `after_inserts_at_pos`, stays before it otherwise.
    pub fn transform_position(&self, pos: usize, after_inserts_at_pos: bool) -> usize {
        let mut base = 0usize;
        let mut moved = pos;
        for c in &self.components {
            if base > pos {
                break;
            }
            match c {
                Component::Retain(n) => base = base.saturating_add(*n),
                Component::Insert(s) => {
                    if base < pos || after_inserts_at_pos {
                        moved = moved.saturating_add(s.chars().count());
                    }
                }
                Component::Delete(n) => {
                    moved = moved.saturating_sub((*n).min(pos - base));
                    base = base.saturating_add(*n);
                }
            }
        }
        moved
    }

    fn push_retain(&mut self, n: usize) {
        self.pending_retain = self.pending_retain.saturating_add(n);
    }

    fn push_insert(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        self.flush_retain();
        let len = self.components.len();
        match self.components.as_mut_slice() {
            [.., Component::Insert(last)] | [.., Component::Insert(last), Component::Delete(_)] => {
                last.push_str(s);
            }
            [.., Component::Delete(_)] => {
                self.components
                    .insert(len - 1, Component::Insert(s.to_owned()));
            }
            _ => self.components.push(Component::Insert(s.to_owned())),
        }
    }

    fn push_delete(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.flush_retain();
        match self.components.last_mut() {
            Some(Component::Delete(last)) => *last = last.saturating_add(n),
            _ => self.components.push(Component::Delete(n)),
        }
    }

    /// Turns the pending retain into a component, before an insert or a delete. The last
    /// component is never a retain here: retains only ever wait in `pending_retain`.
    fn flush_retain(&mut self) {
        let n = std::mem::take(&mut self.pending_retain);
        if n > 0 {
            self.components.push(Component::Retain(n));
        }
    }

    /// Drops the pending retain: the operations this module returns carry none.
    fn finish(mut self) -> Self {
        self.pending_retain = 0;
        self
    }

    fn does_not_fit(&self, text: &str) -> OperationError {
        OperationError::DoesNotFit {
            needs: self.base_len(),
            has: text.chars().count(),
        }
    }
}

/// What is left of a component that `compose` or `transform` is consuming in parts.
#[derive(Clone, Copy)]
enum Piece<'a> {
    Retain(usize),
    Insert(&'a str),
    Delete(usize),
}

impl<'a> From<&'a Component> for Piece<'a> {
    fn from(c: &'a Component) -> Self {
        match c {
            Component::Retain(n) => Piece::Retain(*n),
            Component::Insert(s) => Piece::Insert(s),
            Component::Delete(n) => Piece::Delete(*n),
        }
    }
}

/// The rest of a retain or delete piece when something is left of it, else the next one.
fn rest_or_next<'a>(
    left: usize,
    piece: fn(usize) -> Piece<'a>,
    pieces: &mut impl Iterator<Item = Piece<'a>>,
) -> Option<Piece<'a>> {
    if left > 0 {
        Some(piece(left))
    } else {
        pieces.next()
    }
}

/// The rest of an insert piece when something is left of it, else the next one.
fn insert_rest_or_next<'a>(
    left: &'a str,
    pieces: &mut impl Iterator<Item = Piece<'a>>,
) -> Option<Piece<'a>> {
    if left.is_empty() {
        pieces.next()
    } else {
        Some(Piece::Insert(left))
    }
}

/// Splits off the first `n` characters of `s`, or all of it when it has fewer:
/// `(head, tail, characters in head)`. Walks only the characters it takes.
fn take_chars(s: &str, n: usize) -> (&str, &str, usize) {
    let mut taken = 0;
    for (i, _) in s.char_indices() {
        if taken == n {
            return (&s[..i], &s[i..], n);
        }
        taken += 1;
    }
    (s, "", taken)
}

// The wire format.

impl Serialize for TextOperation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.components.len()))?;
        for c in &self.components {
            match c {
                Component::Retain(n) => seq.serialize_element(&wire_count::<S::Error>(*n)?)?,
                Component::Insert(s) => seq.serialize_element(s)?,
                Component::Delete(n) => seq.serialize_element(&-wire_count::<S::Error>(*n)?)?,
            }
        }
        seq.end()
    }
}

/// A retain or delete count as a JSON integer says it; only a builder given absurd
/// numbers makes one that cannot be said.
fn wire_count<E: ser::Error>(n: usize) -> Result<i64, E> {
    i64::try_from(n).map_err(|_| E::custom(format!("a count of {n} characters has no wire form")))
}

impl<'de> Deserialize<'de> for TextOperation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(OperationVisitor)
    }
}

struct OperationVisitor;

impl<'de> Visitor<'de> for OperationVisitor {
    type Value = TextOperation;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "an operation: an array of positive integers (keep), non-empty strings (insert) \
             and negative integers (delete)",
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextOperation, A::Error> {
        let mut op = TextOperation::new();
        let mut reach: u64 = 0;
        let mut index = 0;
        while let Some(component) = seq.next_element_seed(ComponentSeed { index })? {
            if index >= MAX_COMPONENTS {
                return Err(de::Error::custom(malformed(
                    index,
                    format!("an operation has at most {MAX_COMPONENTS} components"),
                )));
            }
            if let Component::Retain(n) | Component::Delete(n) = component {
                reach = reach.saturating_add(n as u64);
                if reach > MAX_WIRE_COUNT {
                    return Err(de::Error::custom(malformed(
                        index,
                        format!("the operation reaches more than {MAX_WIRE_COUNT} characters"),
                    )));
                }
            }
            match component {
                Component::Retain(n) => op.push_retain(n),
                Component::Insert(s) => op.push_insert(&s),
                Component::Delete(n) => op.push_delete(n),
            }
            index += 1;
        }
        // The trailing retain stays pending (it is no component) so that `reach` still
        // counts it.
        Ok(op)
    }
}

fn malformed(index: usize, problem: impl fmt::Display) -> OperationError {
    OperationError::Malformed(format!("component {index}: {problem}"))
}

/// Reads one component, knowing its index for the messages.
struct ComponentSeed {
    index: usize,
}

impl<'de> DeserializeSeed<'de> for ComponentSeed {
    type Value = Component;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Component, D::Error> {
        deserializer.deserialize_any(self)
    }
}

const ANY_KIND: &str =
    "(use a positive number to keep, a non-empty string to insert, a negative number to delete)";

impl ComponentSeed {
    fn refuse<E: de::Error>(&self, problem: impl fmt::Display) -> E {
        E::custom(malformed(self.index, problem))
    }

    fn not_a_component<E: de::Error>(&self, what: impl fmt::Display) -> E {
        self.refuse(format_args!("{what} is not a valid component {ANY_KIND}"))
    }

    fn count<E: de::Error>(&self, n: u64, shown: impl fmt::Display) -> Result<usize, E> {
        if n > MAX_WIRE_COUNT {
            return Err(self.refuse(format_args!(
                "{shown} is too large (at most {MAX_WIRE_COUNT} characters)"
            )));
        }
        usize::try_from(n).map_err(|_| {
            self.refuse(format_args!(
                "{shown} is too large (at most {} characters)",
                usize::MAX
            ))
        })
    }
}

impl<'de> Visitor<'de> for ComponentSeed {
    type Value = Component;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "component {}: a component {ANY_KIND}", self.index)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Component, E> {
        if v == 0 {
            return Err(self.refuse(
                "0 is not a valid component (use a positive number to keep, a negative one to delete)",
            ));
        }
        Ok(Component::Retain(self.count(v, v)?))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Component, E> {
        if v >= 0 {
            return self.visit_u64(v.unsigned_abs());
        }
        Ok(Component::Delete(self.count(v.unsigned_abs(), v)?))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Component, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(self.refuse(format_args!(
                "{v} is too large (at most {MAX_WIRE_COUNT} characters)"
            ))),
        }
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Component, E> {
        match i64::try_from(v) {
            Ok(v) => self.visit_i64(v),
            Err(_) => Err(self.refuse(format_args!(
                "{v} is too large (at most {MAX_WIRE_COUNT} characters)"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Component, E> {
        // serde_json reads `-0`, numbers with a fraction or an exponent, and integers
        // beyond 64 bits as floats.
        if v == 0.0 {
            return self.visit_u64(0);
        }
        if !v.is_finite() || v.fract() != 0.0 {
            return Err(self.refuse(format_args!(
                "{v} is not a whole number of characters {ANY_KIND}"
            )));
        }
        if v.abs() >= MAX_WIRE_COUNT as f64 {
            return Err(self.refuse(format_args!(
                "{v:e} is too large (at most {MAX_WIRE_COUNT} characters)"
            )));
        }
        Err(self.refuse(format_args!(
            "{v} must be written as an integer, without a fraction or an exponent"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Component, E> {
        if v.is_empty() {
            return Err(self.refuse(
                "an empty string is not a valid component (an insert has at least one character)",
            ));
        }
        Ok(Component::Insert(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Component, E> {
        if v.is_empty() {
            return self.visit_str("");
        }
        Ok(Component::Insert(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Component, E> {
        Err(self.not_a_component(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Component, E> {
        Err(self.not_a_component("null"))
    }

    fn visit_none<E: de::Error>(self) -> Result<Component, E> {
        Err(self.not_a_component("null"))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Component, A::Error> {
        Err(self.not_a_component("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Component, A::Error> {
        Err(self.not_a_component("an array"))
    }
}

// The OpenAPI schema: an array of integers and strings.

impl utoipa::PartialSchema for TextOperation {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
        use utoipa::openapi::{KnownFormat, SchemaFormat};

        let count = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .description(Some(
                "A positive number keeps that many characters, a negative one deletes \
                 that many; never 0.",
            ));
        let insert = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .description(Some("Text to insert."));
        ArrayBuilder::new()
            .items(OneOfBuilder::new().item(count).item(insert))
            .max_items(Some(MAX_COMPONENTS))
            .description(Some(
                "A text operation, applied from the start of the body; characters are \
                 Unicode code points, and what the components do not reach is kept.",
            ))
            .examples([serde_json::json!([6, "ami", -5])])
            .into()
    }
}

impl utoipa::ToSchema for TextOperation {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("TextOperation")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(wire: serde_json::Value) -> TextOperation {
        serde_json::from_value(wire).expect("a valid operation")
    }

    fn wire(op: &TextOperation) -> serde_json::Value {
        serde_json::to_value(op).expect("serializes")
    }

    fn refusal(text: &str) -> String {
        serde_json::from_str::<TextOperation>(text)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn the_builder_normalizes_as_it_goes() {
        let built = TextOperation::new()
            .retain(0)
            .retain(2)
            .retain(1)
            .insert("")
            .insert("a")
            .insert("b")
            .delete(0)
            .delete(1)
            .delete(2)
            .insert("c")
            .retain(4);
        assert_eq!(
            built.components(),
            [
                Component::Retain(3),
                Component::Insert("abc".into()),
                Component::Delete(3),
            ]
        );
        // A delete then an insert at one position is the insert then the delete.
        assert_eq!(
            TextOperation::new().delete(2).insert("x"),
            TextOperation::new().insert("x").delete(2)
        );
        // A retain is only kept when something follows it.
        assert_eq!(TextOperation::new().retain(5), TextOperation::new());
        assert_eq!(
            TextOperation::new().retain(5).insert("x").components(),
            [Component::Retain(5), Component::Insert("x".into())]
        );
        assert!(TextOperation::new().retain(7).is_noop());
        assert!(TextOperation::new().insert("").delete(0).is_noop());
        assert!(!TextOperation::new().delete(1).is_noop());
    }

    #[test]
    fn lengths_count_code_points() {
        let op = TextOperation::new()
            .retain(2)
            .insert("😀é")
            .delete(3)
            .retain(1)
            .delete(1);
        assert_eq!(op.base_len(), 7);
        assert_eq!(op.len_delta(), 2 - 4);
        assert_eq!(TextOperation::new().base_len(), 0);
        assert_eq!(TextOperation::new().len_delta(), 0);
        assert_eq!(TextOperation::new().insert("👍🏽").len_delta(), 2);
    }

    #[test]
    fn apply_walks_code_points() {
        let text = "naïve 😀 café";
        let op = TextOperation::new()
            .retain(2)
            .delete(1)
            .insert("i")
            .retain(3)
            .delete(1)
            .insert("🎉🎉")
            .retain(3)
            .insert("É");
        assert_eq!(op.apply(text).unwrap(), "naive 🎉🎉 caÉfé");
        assert_eq!(TextOperation::new().apply(text).unwrap(), text);
        assert_eq!(TextOperation::new().insert("x").apply("").unwrap(), "x");
        assert_eq!(
            TextOperation::new().delete(4).apply("日本語😀").unwrap(),
            ""
        );
        // What the operation does not reach is kept.
        assert_eq!(
            TextOperation::new()
                .retain(1)
                .delete(1)
                .apply("a😀bc")
                .unwrap(),
            "abc"
        );
    }

    #[test]
    fn apply_refuses_an_operation_that_reaches_past_the_text() {
        // Four code points, eight UTF-16 units, sixteen bytes.
        let text = "😀😀😀😀";
        assert!(
            TextOperation::new()
                .retain(4)
                .insert("!")
                .apply(text)
                .is_ok()
        );
        assert_eq!(
            TextOperation::new().retain(5).insert("!").apply(text),
            Err(OperationError::DoesNotFit { needs: 5, has: 4 })
        );
        assert_eq!(
            TextOperation::new().retain(2).delete(3).apply(text),
            Err(OperationError::DoesNotFit { needs: 5, has: 4 })
        );
        assert_eq!(
            TextOperation::new()
                .delete(1)
                .apply("")
                .unwrap_err()
                .to_string(),
            "the operation reaches 1 characters but the body has 0"
        );
    }

    #[test]
    fn invert_undoes() {
        let base = "héllo wörld 🌍";
        let op = TextOperation::new()
            .retain(1)
            .delete(1)
            .insert("e")
            .retain(4)
            .insert("big ")
            .delete(5)
            .insert("🌎");
        let after = op.apply(base).unwrap();
        assert_eq!(after, "hello big 🌎 🌍");
        let inverse = op.invert(base).unwrap();
        assert_eq!(inverse.apply(&after).unwrap(), base);
        assert_eq!(
            inverse,
            TextOperation::new()
                .retain(1)
                .insert("é")
                .delete(1)
                .retain(4)
                .insert("wörld")
                .delete(5)
        );
        assert_eq!(
            TextOperation::new().delete(3).invert("ab"),
            Err(OperationError::DoesNotFit { needs: 3, has: 2 })
        );
        assert_eq!(
            TextOperation::new().invert("abc").unwrap(),
            TextOperation::new()
        );
    }

    #[test]
    fn compose_is_one_then_the_other() {
        let text = "ab😀cd";
        let first = TextOperation::new().retain(2).insert("XY").delete(1);
        let second = TextOperation::new().retain(3).delete(2).insert("é");
        let composed = first.compose(&second).unwrap();
        let step = second.apply(&first.apply(text).unwrap()).unwrap();
        assert_eq!(step, "abXéd");
        assert_eq!(composed.apply(text).unwrap(), step);
        assert_eq!(
            composed,
            TextOperation::new().retain(2).insert("Xé").delete(2)
        );
        // The second may reach past what the first reaches; the first past the second.
        let short = TextOperation::new().insert(">");
        let long = TextOperation::new().retain(5).delete(1);
        assert_eq!(
            short.compose(&long).unwrap(),
            TextOperation::new().insert(">").retain(4).delete(1)
        );
        assert_eq!(
            long.compose(&short).unwrap(),
            TextOperation::new().insert(">").retain(5).delete(1)
        );
        // The no-op is an identity on both sides.
        assert_eq!(first.compose(&TextOperation::new()).unwrap(), first);
        assert_eq!(TextOperation::new().compose(&first).unwrap(), first);
        // Inserting then deleting the insert is nothing.
        let insert = TextOperation::new().retain(1).insert("😀😀");
        let delete = TextOperation::new().retain(1).delete(2);
        assert!(insert.compose(&delete).unwrap().is_noop());
    }

    #[test]
    fn transform_converges_and_orders_ties_committed_first() {
        let text = "😀 abc";
        let committed = TextOperation::new().retain(2).insert("X");
        let incoming = TextOperation::new().retain(2).insert("Y").delete(1);
        let (committed2, incoming2) = TextOperation::transform(&committed, &incoming);
        let one = incoming2.apply(&committed.apply(text).unwrap()).unwrap();
        let two = committed2.apply(&incoming.apply(text).unwrap()).unwrap();
        assert_eq!(one, "😀 XYbc");
        assert_eq!(one, two);

        // Operations of different reach: a delete at the end and an insert at the start.
        let tail = TextOperation::new().retain(4).delete(2);
        let head = TextOperation::new().insert("é");
        let (tail2, head2) = TextOperation::transform(&tail, &head);
        assert_eq!(tail2, TextOperation::new().retain(5).delete(2));
        assert_eq!(head2, head);
        // Both delete overlapping ranges: what is left is deleted once.
        let a = TextOperation::new().retain(1).delete(3);
        let b = TextOperation::new().retain(2).delete(3);
        let (a2, b2) = TextOperation::transform(&a, &b);
        assert_eq!(b2.apply(&a.apply(text).unwrap()).unwrap(), "😀");
        assert_eq!(a2.apply(&b.apply(text).unwrap()).unwrap(), "😀");
        // Against the no-op nothing changes.
        assert_eq!(
            TextOperation::transform(&a, &TextOperation::new()),
            (a.clone(), TextOperation::new())
        );
    }

    #[test]
    fn diff_keeps_the_common_ends() {
        assert_eq!(
            TextOperation::diff("héllo 😀 wörld", "héllo 🎉 wörld"),
            TextOperation::new().retain(6).insert("🎉").delete(1)
        );
        assert_eq!(TextOperation::diff("same", "same"), TextOperation::new());
        assert_eq!(
            TextOperation::diff("", "new"),
            TextOperation::new().insert("new")
        );
        assert_eq!(
            TextOperation::diff("old", ""),
            TextOperation::new().delete(3)
        );
        assert_eq!(
            TextOperation::diff("aa", "aaa"),
            TextOperation::new().retain(2).insert("a")
        );
        // The prefix and suffix do not overlap.
        assert_eq!(
            TextOperation::diff("aba", "aba ba"),
            TextOperation::new().retain(3).insert(" ba")
        );
        // Code points that share leading UTF-8 bytes are different characters.
        assert_eq!(
            TextOperation::diff("é", "è"),
            TextOperation::new().insert("è").delete(1)
        );
        for (old, new) in [("abc", "xbz"), ("😀😁", "😁😀"), ("", ""), ("ab", "b")] {
            assert_eq!(TextOperation::diff(old, new).apply(old).unwrap(), new);
        }
    }

    #[test]
    fn positions_move_with_the_text_before_them() {
        // "ab😀cd" → "ab" + "XY" + (😀 deleted) + "cd"
        let op = TextOperation::new().retain(2).insert("XY").delete(1);
        assert_eq!(op.transform_position(0, false), 0);
        assert_eq!(op.transform_position(1, true), 1);
        // At the insert: before it or after it.
        assert_eq!(op.transform_position(2, false), 2);
        assert_eq!(op.transform_position(2, true), 4);
        // Inside the deleted range: after what replaced it.
        assert_eq!(op.transform_position(3, false), 4);
        assert_eq!(op.transform_position(4, false), 5);
        assert_eq!(op.transform_position(5, true), 6);
        // Past what the operation reaches.
        assert_eq!(op.transform_position(40, false), 41);
        let delete = TextOperation::new().retain(1).delete(3);
        assert_eq!(delete.transform_position(2, false), 1);
        assert_eq!(delete.transform_position(4, false), 1);
        assert_eq!(delete.transform_position(6, false), 3);
        assert_eq!(
            TextOperation::new()
                .insert("😀")
                .transform_position(0, true),
            1
        );
        assert_eq!(TextOperation::new().transform_position(9, true), 9);
    }

    #[test]
    fn the_wire_form_is_an_array_of_integers_and_strings() {
        let op = read(json!([3, "héllo 😀", -2, 1, -4]));
        assert_eq!(
            op.components(),
            [
                Component::Retain(3),
                Component::Insert("héllo 😀".into()),
                Component::Delete(2),
                Component::Retain(1),
                Component::Delete(4),
            ]
        );
        assert_eq!(wire(&op), json!([3, "héllo 😀", -2, 1, -4]));
        assert_eq!(read(json!([])), TextOperation::new());
        assert_eq!(wire(&TextOperation::new()), json!([]));
        let big = i64::MAX;
        assert_eq!(read(json!([big])), TextOperation::new());
        assert_eq!(
            read(json!([-big])).components(),
            [Component::Delete(big as usize)]
        );
    }

    #[test]
    fn reading_normalizes() {
        assert_eq!(
            wire(&read(json!([1, 2, "a", "b", -1, -2, 3]))),
            json!([3, "ab", -3])
        );
        assert_eq!(wire(&read(json!([-1, "a", -1, "b"]))), json!(["ab", -2]));
        assert_eq!(wire(&read(json!(["x", 5]))), json!(["x"]));
        assert_eq!(wire(&read(json!([5]))), json!([]));
    }

    #[test]
    fn the_wire_form_refuses_what_is_not_a_component() {
        let hint = "(use a positive number to keep, a non-empty string to insert, a negative number to delete)";
        let cases = [
            ("[1, \"a\", 0]", "component 2: 0 is not a valid component (use a positive number to keep, a negative one to delete)".to_owned()),
            ("[-0]", "component 0: 0 is not a valid component (use a positive number to keep, a negative one to delete)".to_owned()),
            ("[0.0]", "component 0: 0 is not a valid component".to_owned()),
            ("[null]", format!("component 0: null is not a valid component {hint}")),
            ("[1, true]", format!("component 1: true is not a valid component {hint}")),
            ("[false]", format!("component 0: false is not a valid component {hint}")),
            ("[1.5]", format!("component 0: 1.5 is not a whole number of characters {hint}")),
            ("[-2.25]", "component 0: -2.25 is not a whole number".to_owned()),
            ("[2.0]", "component 0: 2 must be written as an integer".to_owned()),
            ("[1e3]", "component 0: 1000 must be written as an integer".to_owned()),
            ("[{}]", format!("component 0: an object is not a valid component {hint}")),
            ("[\"a\", {\"retain\": 1}]", "component 1: an object is not a valid component".to_owned()),
            ("[[]]", format!("component 0: an array is not a valid component {hint}")),
            ("[[1]]", "component 0: an array is not a valid component".to_owned()),
            ("[\"\"]", "component 0: an empty string is not a valid component".to_owned()),
            ("[9223372036854775808]", "component 0: 9223372036854775808 is too large (at most 9223372036854775807 characters)".to_owned()),
            ("[18446744073709551615]", "component 0: 18446744073709551615 is too large".to_owned()),
            ("[-9223372036854775808]", "component 0: -9223372036854775808 is too large".to_owned()),
            ("[99999999999999999999999]", "component 0: 1e23 is too large".to_owned()),
            ("[-99999999999999999999999]", "component 0: -1e23 is too large".to_owned()),
            ("[1e400]", "number out of range".to_owned()),
            ("[9223372036854775807, \"x\", 1]", "component 2: the operation reaches more than 9223372036854775807 characters".to_owned()),
            ("[4611686018427387904, -4611686018427387904]", "component 1: the operation reaches more than".to_owned()),
            ("{}", "expected an operation: an array".to_owned()),
            ("3", "expected an operation: an array".to_owned()),
            ("null", "expected an operation: an array".to_owned()),
            ("\"abc\"", "expected an operation: an array".to_owned()),
        ];
        for (text, message) in cases {
            let refused = refusal(text);
            assert!(
                refused.contains(&message),
                "{text}: {refused:?} does not say {message:?}"
            );
        }
    }

    #[test]
    fn the_wire_form_has_at_most_max_components() {
        let at_most: Vec<i64> = (0..MAX_COMPONENTS as i64)
            .map(|i| if i % 2 == 0 { 1 } else { -1 })
            .collect();
        let read: TextOperation = serde_json::from_value(json!(at_most)).unwrap();
        assert_eq!(read.components().len(), MAX_COMPONENTS);
        let mut too_many = at_most;
        too_many.push(1);
        let refused = serde_json::from_value::<TextOperation>(json!(too_many)).unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "component {MAX_COMPONENTS}: an operation has at most {MAX_COMPONENTS} components"
            )
        );
    }

    #[test]
    fn malformed_is_what_the_wire_errors_say() {
        let error = malformed(3, "0 is not a valid component");
        assert_eq!(error.to_string(), "component 3: 0 is not a valid component");
    }

    #[test]
    fn operations_the_wire_cannot_say_do_not_serialize() {
        let huge = TextOperation::new().delete(usize::MAX);
        assert!(serde_json::to_string(&huge).is_err());
        let huge = TextOperation::new().retain(usize::MAX).insert("x");
        assert!(serde_json::to_string(&huge).is_err());
        // The builder saturates instead of overflowing.
        let saturated = TextOperation::new()
            .retain(usize::MAX)
            .retain(1)
            .insert("x");
        assert_eq!(saturated.base_len(), usize::MAX);
        assert_eq!(
            TextOperation::new().delete(usize::MAX).len_delta(),
            i64::MIN
        );
    }

    #[test]
    fn the_schema_is_an_array_of_integers_and_strings() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(TextOperation::schema()).unwrap();
        assert_eq!(schema["type"], "array");
        assert_eq!(schema["maxItems"], MAX_COMPONENTS);
        let kinds: Vec<&serde_json::Value> = schema["items"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["type"])
            .collect();
        assert_eq!(kinds, [&json!("integer"), &json!("string")]);
    }
}
