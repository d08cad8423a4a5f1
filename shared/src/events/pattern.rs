//! EventBridge event patterns, compiled once and matched against JSON events, so a rule
//! selects the same events on one machine as it does on an EventBridge bus.
//!
//! A pattern is a JSON object shaped like the events it selects. Each field is either a
//! nested object (a pattern for the event's nested object) or an array of alternatives
//! for a leaf value; the fields must all match (and), any alternative may (or). An
//! alternative is a value (string, number, boolean or `null`) or an object with one
//! operator:
//!
//! | operator | matches |
//! | --- | --- |
//! | `"s"`, `5`, `true`, `null` | that value (numbers compared as numbers) |
//! | `{"prefix": "s"}`, `{"suffix": "s"}` | strings that begin / end with `s` |
//! | `{"prefix": {"equals-ignore-case": "s"}}` (or `suffix`) | the same, ignoring case |
//! | `{"equals-ignore-case": "s"}` | strings equal to `s` ignoring case |
//! | `{"wildcard": "a*b"}` | strings `*` can stand in (`\*` is a star) |
//! | `{"anything-but": v}` | any value but `v`: a string, a number, a list of strings or of numbers, `{"prefix": …}`, `{"suffix": …}`, `{"equals-ignore-case": …}` or `{"wildcard": …}` |
//! | `{"numeric": [">", 0, "<=", 5]}` | numbers in the range (`=`, `<`, `<=`, `>`, `>=`) |
//! | `{"exists": true}` / `false` | the field is present (as a leaf) / absent |
//!
//! `"$or": [{…}, {…}]` inside an object matches when any of its (two or more) objects does.
//!
//! The subtle parts follow EventBridge (its matcher is AWS's open-source event-ruler):
//! - An event array matches when any of its elements does; an array of objects is
//!   searched element by element, so the fields a pattern names must all come from the
//!   same element.
//! - A field is present when it has a leaf value: `null` is one, an object is not, an
//!   empty array has none. `exists: false` matches a missing field, a field holding an
//!   object, and a field below a missing or scalar parent. Every other operator needs a
//!   value, so `anything-but` never matches a missing field.
//! - `anything-but` only excludes values of its own type: `{"anything-but": "x"}` matches
//!   a number, `{"anything-but": 5}` a string.
//! - Numbers are compared as EventBridge compares them: within ±5·10⁹, to six decimal
//!   places (an exact number in a pattern also matches its own literal value outside
//!   that range, such as an account id). Numbers in `numeric` and `anything-but` must lie
//!   within the range.
//!
//! Compiling is bounded: a pattern is at most [`MAX_PATTERN_BYTES`] of (compact) JSON,
//! EventBridge's default quota, and at most [`MAX_PATTERN_DEPTH`] levels deep, so neither
//! compiling nor matching recurses without limit. `cidr` is not supported.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

/// The largest pattern accepted, in bytes of compact JSON: EventBridge's default quota
/// for an event pattern (2,048 characters).
pub const MAX_PATTERN_BYTES: usize = 2048;

/// The deepest pattern accepted, counting every JSON object and array. EventBridge bounds
/// patterns by size only; this bound keeps compiling and matching off deep recursion,
/// far beyond any pattern a rule needs.
pub const MAX_PATTERN_DEPTH: usize = 32;

/// The magnitude beyond which EventBridge does not compare numbers.
const NUMBER_LIMIT: f64 = 5e9;

/// Operator names, which `$or` branches may not use as field names.
const OPERATORS: &[&str] = &[
    "prefix",
    "suffix",
    "equals-ignore-case",
    "wildcard",
    "anything-but",
    "numeric",
    "exists",
    "cidr",
];

/// Why a pattern was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event pattern at {path}: {reason}")]
pub struct PatternError {
    /// Where in the pattern: `detail.state[0]`, or `pattern` for the whole of it.
    pub path: String,
    /// What is wrong there.
    pub reason: String,
}

/// A compiled event pattern.
#[derive(Clone)]
pub struct EventPattern {
    source: Value,
    root: ObjectPattern,
}

impl EventPattern {
    /// Compiles a pattern given as JSON text (at most [`MAX_PATTERN_BYTES`] long).
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.len() > MAX_PATTERN_BYTES {
            return Err(too_large(text.len()));
        }
        let value: Value = serde_json::from_str(text).map_err(|e| PatternError {
            path: ROOT.into(),
            reason: format!("not JSON: {e}"),
        })?;
        Self::compile(&value)
    }

    /// Compiles a pattern.
    pub fn compile(pattern: &Value) -> Result<Self, PatternError> {
        check_depth(pattern)?;
        // The depth is bounded, so serialising cannot recurse without limit.
        let size = serde_json::to_string(pattern).map_or(usize::MAX, |s| s.len());
        if size > MAX_PATTERN_BYTES {
            return Err(too_large(size));
        }
        let Value::Object(fields) = pattern else {
            return Err(PatternError {
                path: ROOT.into(),
                reason: format!("must be a JSON object, not {}", kind(pattern)),
            });
        };
        let root = compile_object(fields, &mut Path::default(), false)?;
        Ok(Self {
            source: pattern.clone(),
            root,
        })
    }

    /// Whether `event` matches the pattern.
    pub fn matches(&self, event: &Value) -> bool {
        self.root.matches(Some(event))
    }

    /// The pattern as it was given.
    pub fn as_json(&self) -> &Value {
        &self.source
    }
}

impl fmt::Debug for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EventPattern").field(&self.source).finish()
    }
}

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl PartialEq for EventPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl FromStr for EventPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&Value> for EventPattern {
    type Error = PatternError;
    fn try_from(value: &Value) -> Result<Self, Self::Error> {
        Self::compile(value)
    }
}

impl Serialize for EventPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(s)
    }
}

/// A pattern inside a configuration file is the JSON object itself, compiled on reading.
impl<'de> Deserialize<'de> for EventPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::compile(&value).map_err(serde::de::Error::custom)
    }
}

const ROOT: &str = "pattern";

fn too_large(size: usize) -> PatternError {
    PatternError {
        path: ROOT.into(),
        reason: format!("is {size} bytes of JSON; at most {MAX_PATTERN_BYTES} are allowed"),
    }
}

/// Refuses values nested deeper than [`MAX_PATTERN_DEPTH`], without recursing.
fn check_depth(pattern: &Value) -> Result<(), PatternError> {
    let mut stack = vec![(pattern, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        if depth > MAX_PATTERN_DEPTH {
            return Err(PatternError {
                path: ROOT.into(),
                reason: format!("is nested more than {MAX_PATTERN_DEPTH} levels deep"),
            });
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    Ok(())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where the compiler is, for error messages.
#[derive(Default)]
struct Path(Vec<String>);

impl Path {
    fn error(&self, reason: impl Into<String>) -> PatternError {
        PatternError {
            path: if self.0.is_empty() {
                ROOT.into()
            } else {
                self.0.concat()
            },
            reason: reason.into(),
        }
    }

    fn field(&mut self, name: &str) {
        if self.0.is_empty() {
            self.0.push(name.to_owned());
        } else {
            self.0.push(format!(".{name}"));
        }
    }

    fn index(&mut self, i: usize) {
        self.0.push(format!("[{i}]"));
    }

    fn pop(&mut self) {
        self.0.pop();
    }
}

/// The fields of one pattern object (all must match) and its `$or` groups (in each, one
/// branch must match).
#[derive(Clone)]
struct ObjectPattern {
    fields: Vec<(String, FieldPattern)>,
    any_of: Vec<Vec<ObjectPattern>>,
}

#[derive(Clone)]
enum FieldPattern {
    Object(ObjectPattern),
    Leaf(Vec<Matcher>),
}

#[derive(Clone)]
enum Matcher {
    Exact(Exact),
    Prefix(Text),
    Suffix(Text),
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(AnythingBut),
    Numeric(Range),
    Exists(bool),
}

#[derive(Clone)]
enum Exact {
    String(String),
    Number(Number),
    Bool(bool),
    Null,
}

/// A prefix or suffix, compared as given or ignoring case (then held in lower case).
#[derive(Clone)]
struct Text {
    text: String,
    ignore_case: bool,
}

#[derive(Clone)]
enum AnythingBut {
    Strings(Vec<String>),
    Numbers(Vec<i64>),
    Prefix(String),
    Suffix(String),
    /// Held in lower case.
    IgnoreCase(Vec<String>),
    Wildcard(Wildcard),
}

/// Bounds on a number's comparable key; `None` is unbounded. `(key, open)`.
#[derive(Clone)]
struct Range {
    lower: Option<(i64, bool)>,
    upper: Option<(i64, bool)>,
}

/// A wildcard pattern split at its unescaped stars.
#[derive(Clone)]
struct Wildcard {
    parts: Vec<String>,
}

fn compile_object(
    fields: &Map<String, Value>,
    path: &mut Path,
    in_or: bool,
) -> Result<ObjectPattern, PatternError> {
    if fields.is_empty() {
        return Err(path.error("an empty object matches nothing; name at least one field"));
    }
    let mut object = ObjectPattern {
        fields: Vec::new(),
        any_of: Vec::new(),
    };
    for (name, value) in fields {
        path.field(name);
        if name == "$or" {
            object.any_of.push(compile_or(value, path)?);
            path.pop();
            continue;
        }
        if in_or && OPERATORS.contains(&name.as_str()) {
            return Err(path.error(format!(
                "\"{name}\" is an operator; inside \"$or\" it cannot name a field"
            )));
        }
        let field = match value {
            Value::Object(nested) => FieldPattern::Object(compile_object(nested, path, in_or)?),
            Value::Array(alternatives) => FieldPattern::Leaf(compile_leaf(alternatives, path)?),
            other => {
                return Err(path.error(format!(
                    "must be an object or an array of values to match, not {}",
                    kind(other)
                )));
            }
        };
        object.fields.push((name.clone(), field));
        path.pop();
    }
    Ok(object)
}

fn compile_or(value: &Value, path: &mut Path) -> Result<Vec<ObjectPattern>, PatternError> {
    let Value::Array(branches) = value else {
        return Err(path.error(format!(
            "\"$or\" takes an array of at least two objects, not {}",
            kind(value)
        )));
    };
    if branches.len() < 2 {
        return Err(path.error("\"$or\" takes an array of at least two objects"));
    }
    let mut compiled = Vec::with_capacity(branches.len());
    for (i, branch) in branches.iter().enumerate() {
        path.index(i);
        let Value::Object(fields) = branch else {
            return Err(path.error(format!(
                "each \"$or\" branch must be an object, not {}",
                kind(branch)
            )));
        };
        compiled.push(compile_object(fields, path, true)?);
        path.pop();
    }
    Ok(compiled)
}

fn compile_leaf(alternatives: &[Value], path: &mut Path) -> Result<Vec<Matcher>, PatternError> {
    if alternatives.is_empty() {
        return Err(path.error("an empty array matches nothing; list at least one value"));
    }
    let mut matchers = Vec::with_capacity(alternatives.len());
    for (i, alternative) in alternatives.iter().enumerate() {
        path.index(i);
        matchers.push(compile_alternative(alternative, path)?);
        path.pop();
    }
    Ok(matchers)
}

fn compile_alternative(value: &Value, path: &Path) -> Result<Matcher, PatternError> {
    Ok(match value {
        Value::String(s) => Matcher::Exact(Exact::String(s.clone())),
        Value::Number(n) => Matcher::Exact(Exact::Number(n.clone())),
        Value::Bool(b) => Matcher::Exact(Exact::Bool(*b)),
        Value::Null => Matcher::Exact(Exact::Null),
        Value::Array(_) => {
            return Err(path.error(
                "a value to match must be a string, number, boolean, null or an operator object, not an array",
            ));
        }
        Value::Object(operator) => compile_operator(operator, path)?,
    })
}

/// The single `(name, argument)` of an operator object.
fn single<'a>(
    object: &'a Map<String, Value>,
    path: &Path,
) -> Result<(&'a str, &'a Value), PatternError> {
    let mut entries = object.iter();
    match (entries.next(), entries.next()) {
        (Some((name, argument)), None) => Ok((name.as_str(), argument)),
        (None, _) => Err(path.error("an operator object needs exactly one operator, not none")),
        (Some(_), Some(_)) => Err(path.error(format!(
            "an operator object takes exactly one operator, not {} ({})",
            object.len(),
            object
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn string_argument<'a>(
    operator: &str,
    value: &'a Value,
    path: &Path,
) -> Result<&'a str, PatternError> {
    value.as_str().ok_or_else(|| {
        path.error(format!(
            "\"{operator}\" takes a string, not {}",
            kind(value)
        ))
    })
}

fn compile_operator(object: &Map<String, Value>, path: &Path) -> Result<Matcher, PatternError> {
    let (operator, argument) = single(object, path)?;
    Ok(match operator {
        "prefix" | "suffix" => {
            let text = match argument {
                Value::String(s) => Text {
                    text: s.clone(),
                    ignore_case: false,
                },
                Value::Object(inner) => {
                    let (inner_operator, inner_argument) = single(inner, path)?;
                    if inner_operator != "equals-ignore-case" {
                        return Err(path.error(format!(
                            "\"{operator}\" takes a string or {{\"equals-ignore-case\": string}}, not \"{inner_operator}\""
                        )));
                    }
                    Text {
                        text: string_argument(inner_operator, inner_argument, path)?.to_lowercase(),
                        ignore_case: true,
                    }
                }
                other => {
                    return Err(path.error(format!(
                        "\"{operator}\" takes a string or {{\"equals-ignore-case\": string}}, not {}",
                        kind(other)
                    )));
                }
            };
            if operator == "prefix" {
                Matcher::Prefix(text)
            } else {
                Matcher::Suffix(text)
            }
        }
        "equals-ignore-case" => {
            Matcher::EqualsIgnoreCase(string_argument(operator, argument, path)?.to_lowercase())
        }
        "wildcard" => Matcher::Wildcard(Wildcard::compile(
            string_argument(operator, argument, path)?,
            path,
        )?),
        "anything-but" => Matcher::AnythingBut(compile_anything_but(argument, path)?),
        "numeric" => Matcher::Numeric(compile_numeric(argument, path)?),
        "exists" => match argument {
            Value::Bool(b) => Matcher::Exists(*b),
            other => {
                return Err(path.error(format!(
                    "\"exists\" takes true or false, not {}",
                    kind(other)
                )));
            }
        },
        "cidr" => return Err(path.error("\"cidr\" is not supported by docfan's matcher")),
        other => {
            return Err(path.error(format!(
                "unknown operator \"{other}\" (known: prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric, exists)"
            )));
        }
    })
}

fn compile_anything_but(argument: &Value, path: &Path) -> Result<AnythingBut, PatternError> {
    match argument {
        Value::String(s) => Ok(AnythingBut::Strings(vec![s.clone()])),
        Value::Number(n) => Ok(AnythingBut::Numbers(vec![bounded_key(
            n,
            "anything-but",
            path,
        )?])),
        Value::Array(items) => {
            if items.iter().all(Value::is_string) && !items.is_empty() {
                Ok(AnythingBut::Strings(
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                ))
            } else if items.iter().all(Value::is_number) && !items.is_empty() {
                items
                    .iter()
                    .filter_map(Value::as_number)
                    .map(|n| bounded_key(n, "anything-but", path))
                    .collect::<Result<_, _>>()
                    .map(AnythingBut::Numbers)
            } else {
                Err(path.error(
                    "an \"anything-but\" list must hold strings only or numbers only, and at least one",
                ))
            }
        }
        Value::Object(inner) => {
            let (operator, inner_argument) = single(inner, path)?;
            match operator {
                "prefix" | "suffix" => {
                    let text = string_argument(operator, inner_argument, path)?;
                    if text.is_empty() {
                        return Err(path.error(format!(
                            "\"anything-but\" with an empty \"{operator}\" would match nothing"
                        )));
                    }
                    Ok(if operator == "prefix" {
                        AnythingBut::Prefix(text.to_owned())
                    } else {
                        AnythingBut::Suffix(text.to_owned())
                    })
                }
                "equals-ignore-case" => match inner_argument {
                    Value::String(s) => Ok(AnythingBut::IgnoreCase(vec![s.to_lowercase()])),
                    Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
                        Ok(AnythingBut::IgnoreCase(
                            items.iter().filter_map(Value::as_str).map(str::to_lowercase).collect(),
                        ))
                    }
                    _ => Err(path.error(
                        "\"anything-but\": {\"equals-ignore-case\": …} takes a string or a non-empty list of strings",
                    )),
                },
                "wildcard" => Ok(AnythingBut::Wildcard(Wildcard::compile(
                    string_argument(operator, inner_argument, path)?,
                    path,
                )?)),
                other => Err(path.error(format!(
                    "\"anything-but\" applies to a value, a list, prefix, suffix, equals-ignore-case or wildcard, not \"{other}\""
                ))),
            }
        }
        other => Err(path.error(format!(
            "\"anything-but\" takes a string, a number, a list or an operator object, not {}",
            kind(other)
        ))),
    }
}

fn compile_numeric(argument: &Value, path: &Path) -> Result<Range, PatternError> {
    let Value::Array(terms) = argument else {
        return Err(path.error(format!(
            "\"numeric\" takes an array such as [\">\", 0, \"<=\", 5], not {}",
            kind(argument)
        )));
    };
    let term = |i: usize| -> Result<(&str, i64), PatternError> {
        let operator = terms[i].as_str().ok_or_else(|| {
            path.error(format!(
                "\"numeric\" expects an operator (=, <, <=, >, >=) at position {i}, not {}",
                kind(&terms[i])
            ))
        })?;
        let number = terms.get(i + 1).and_then(Value::as_number).ok_or_else(|| {
            path.error(format!("\"numeric\" expects a number after \"{operator}\""))
        })?;
        Ok((operator, bounded_key(number, "numeric", path)?))
    };
    let unknown = |operator: &str| {
        path.error(format!(
            "\"numeric\" knows =, <, <=, > and >=, not \"{operator}\""
        ))
    };
    if terms.len() != 2 && terms.len() != 4 {
        return Err(path.error(
            "\"numeric\" takes one comparison ([\"<\", 5]) or a range ([\">\", 0, \"<=\", 5])",
        ));
    }
    let (first, a) = term(0)?;
    let mut range = Range {
        lower: None,
        upper: None,
    };
    match first {
        "=" => {
            range.lower = Some((a, false));
            range.upper = Some((a, false));
        }
        ">" | ">=" => range.lower = Some((a, first == ">")),
        "<" | "<=" => range.upper = Some((a, first == "<")),
        other => return Err(unknown(other)),
    }
    if terms.len() == 4 {
        if !matches!(first, ">" | ">=") {
            return Err(path.error(format!(
                "a \"numeric\" range starts with > or >= and ends with < or <=; \"{first}\" takes no second bound"
            )));
        }
        let (second, b) = term(2)?;
        match second {
            "<" | "<=" => range.upper = Some((b, second == "<")),
            ">" | ">=" | "=" => {
                return Err(path.error(format!(
                    "a \"numeric\" range ends with < or <=, not \"{second}\""
                )));
            }
            other => return Err(unknown(other)),
        }
        if a > b || (a == b && (first == ">" || second == "<")) {
            return Err(path.error("this \"numeric\" range holds no number"));
        }
    }
    Ok(range)
}

/// EventBridge's comparable form of a number: within ±5·10⁹, in millionths. The
/// arithmetic is the one event-ruler does (`(long) (1e6 * (5e9 + f))`), so numbers agree
/// to the last millionth with EventBridge's.
fn comparable(f: f64) -> Option<i64> {
    if !(-NUMBER_LIMIT..=NUMBER_LIMIT).contains(&f) {
        return None;
    }
    Some((1e6 * (NUMBER_LIMIT + f)) as i64)
}

fn bounded_key(number: &Number, operator: &str, path: &Path) -> Result<i64, PatternError> {
    number.as_f64().and_then(comparable).ok_or_else(|| {
        path.error(format!(
            "\"{operator}\" compares numbers between -5e9 and 5e9, not {number}"
        ))
    })
}

impl Wildcard {
    fn compile(pattern: &str, path: &Path) -> Result<Self, PatternError> {
        let mut parts = vec![String::new()];
        let mut chars = pattern.chars();
        let mut after_star = false;
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if after_star {
                        return Err(path.error("a \"wildcard\" may not hold consecutive stars"));
                    }
                    parts.push(String::new());
                    after_star = true;
                    continue;
                }
                '\\' => match chars.next() {
                    Some(escaped @ ('*' | '\\')) => {
                        parts.last_mut().expect("one part").push(escaped)
                    }
                    _ => {
                        return Err(path.error(
                            "in a \"wildcard\", a backslash escapes only * or another backslash",
                        ));
                    }
                },
                other => parts.last_mut().expect("one part").push(other),
            }
            after_star = false;
        }
        Ok(Self { parts })
    }

    /// The first part begins the text, the last ends it, the middle ones appear in order.
    fn matches(&self, text: &str) -> bool {
        let (first, rest) = self.parts.split_first().expect("one part");
        let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return remaining.is_empty();
        };
        for part in middle {
            match remaining.find(part.as_str()) {
                Some(at) => remaining = &remaining[at + part.len()..],
                None => return false,
            }
        }
        remaining.len() >= last.len() && remaining.ends_with(last.as_str())
    }
}

impl ObjectPattern {
    /// `event` is the value at this object's place in the event, if any. An array there
    /// is searched for one object element that matches the whole object pattern.
    fn matches(&self, event: Option<&Value>) -> bool {
        match event {
            Some(Value::Array(items)) => {
                let elements = objects_in(items);
                if elements.is_empty() {
                    self.matches_object(None)
                } else {
                    elements.into_iter().any(|e| self.matches_object(Some(e)))
                }
            }
            Some(Value::Object(fields)) => self.matches_object(Some(fields)),
            _ => self.matches_object(None),
        }
    }

    fn matches_object(&self, fields: Option<&Map<String, Value>>) -> bool {
        let value_of = |name: &str| fields.and_then(|f| f.get(name));
        self.fields.iter().all(|(name, field)| match field {
            FieldPattern::Object(nested) => nested.matches(value_of(name)),
            FieldPattern::Leaf(matchers) => leaf_matches(matchers, value_of(name)),
        }) && self
            .any_of
            .iter()
            .all(|branches| branches.iter().any(|branch| branch.matches_object(fields)))
    }
}

/// The objects in an array, nested arrays flattened, without recursing.
fn objects_in(items: &[Value]) -> Vec<&Map<String, Value>> {
    let mut found = Vec::new();
    let mut stack: Vec<&Value> = items.iter().rev().collect();
    while let Some(item) = stack.pop() {
        match item {
            Value::Object(fields) => found.push(fields),
            Value::Array(inner) => stack.extend(inner.iter().rev()),
            _ => {}
        }
    }
    found
}

/// The leaf values at a field: the value itself, or an array's scalars (nested arrays
/// flattened); objects are not leaves.
fn leaf_values(value: Option<&Value>) -> Vec<&Value> {
    let mut found = Vec::new();
    let mut stack: Vec<&Value> = value.into_iter().collect();
    while let Some(item) = stack.pop() {
        match item {
            Value::Array(inner) => stack.extend(inner.iter().rev()),
            Value::Object(_) => {}
            scalar => found.push(scalar),
        }
    }
    found
}

fn leaf_matches(matchers: &[Matcher], value: Option<&Value>) -> bool {
    let values = leaf_values(value);
    matchers.iter().any(|matcher| match matcher {
        Matcher::Exists(wanted) => values.is_empty() != *wanted,
        other => values.iter().any(|v| other.matches(v)),
    })
}

impl Matcher {
    /// Whether one leaf value matches (`Exists` is decided on the field, not here).
    fn matches(&self, value: &Value) -> bool {
        match self {
            Matcher::Exact(exact) => exact.matches(value),
            Matcher::Prefix(text) => value.as_str().is_some_and(|s| text.begins(s)),
            Matcher::Suffix(text) => value.as_str().is_some_and(|s| text.ends(s)),
            Matcher::EqualsIgnoreCase(lower) => {
                value.as_str().is_some_and(|s| s.to_lowercase() == *lower)
            }
            Matcher::Wildcard(wildcard) => value.as_str().is_some_and(|s| wildcard.matches(s)),
            Matcher::AnythingBut(but) => but.matches(value),
            Matcher::Numeric(range) => number_key(value).is_some_and(|k| range.contains(k)),
            Matcher::Exists(_) => false,
        }
    }
}

fn number_key(value: &Value) -> Option<i64> {
    value.as_f64().and_then(comparable)
}

impl Exact {
    fn matches(&self, value: &Value) -> bool {
        match (self, value) {
            (Exact::String(want), Value::String(got)) => want == got,
            (Exact::Bool(want), Value::Bool(got)) => want == got,
            (Exact::Null, Value::Null) => true,
            (Exact::Number(want), Value::Number(got)) => {
                want == got
                    || matches!(
                        (want.as_f64().and_then(comparable), got.as_f64().and_then(comparable)),
                        (Some(a), Some(b)) if a == b
                    )
            }
            _ => false,
        }
    }
}

impl Text {
    fn begins(&self, s: &str) -> bool {
        if self.ignore_case {
            s.to_lowercase().starts_with(&self.text)
        } else {
            s.starts_with(&self.text)
        }
    }

    fn ends(&self, s: &str) -> bool {
        if self.ignore_case {
            s.to_lowercase().ends_with(&self.text)
        } else {
            s.ends_with(&self.text)
        }
    }
}

impl AnythingBut {
    /// A value of another type than the excluded ones always matches.
    fn matches(&self, value: &Value) -> bool {
        match self {
            AnythingBut::Strings(excluded) => value
                .as_str()
                .is_none_or(|s| !excluded.iter().any(|e| e == s)),
            AnythingBut::Numbers(excluded) => {
                number_key(value).is_none_or(|k| !excluded.contains(&k))
            }
            AnythingBut::Prefix(prefix) => value
                .as_str()
                .is_none_or(|s| !s.starts_with(prefix.as_str())),
            AnythingBut::Suffix(suffix) => {
                value.as_str().is_none_or(|s| !s.ends_with(suffix.as_str()))
            }
            AnythingBut::IgnoreCase(excluded) => value
                .as_str()
                .is_none_or(|s| !excluded.contains(&s.to_lowercase())),
            AnythingBut::Wildcard(wildcard) => value.as_str().is_none_or(|s| !wildcard.matches(s)),
        }
    }
}

impl Range {
    fn contains(&self, key: i64) -> bool {
        let above = self
            .lower
            .is_none_or(|(bound, open)| if open { key > bound } else { key >= bound });
        let below = self
            .upper
            .is_none_or(|(bound, open)| if open { key < bound } else { key <= bound });
        above && below
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn pattern(value: Value) -> EventPattern {
        EventPattern::compile(&value).unwrap_or_else(|e| panic!("{value} should compile: {e}"))
    }

    fn refused(value: Value) -> PatternError {
        match EventPattern::compile(&value) {
            Ok(_) => panic!("{value} should be refused"),
            Err(e) => e,
        }
    }

    /// The table both modes run: `tests/tests/aws/fixtures/event_patterns.json`.
    const TABLE: &str = include_str!("../../../tests/tests/aws/fixtures/event_patterns.json");

    #[test]
    fn the_shared_table_matches_exactly_the_expected_events() {
        let table: Value = serde_json::from_str(TABLE).unwrap();
        let events = table["events"].as_object().unwrap();
        let cases = table["cases"].as_array().unwrap();
        assert!(cases.len() >= 40, "the table has {} cases", cases.len());
        let mut wrong = Vec::new();
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let compiled = EventPattern::compile(&case["pattern"])
                .unwrap_or_else(|e| panic!("case {name:?}: {e}"));
            let expected: Vec<&str> = case["matches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap())
                .collect();
            for wanted in &expected {
                assert!(
                    events.contains_key(*wanted),
                    "case {name:?} names no event {wanted}"
                );
            }
            for (event_name, event) in events {
                let want = expected.contains(&event_name.as_str());
                if compiled.matches(event) != want {
                    wrong.push(format!("{name:?} on {event_name}: expected {want}"));
                }
            }
        }
        assert!(wrong.is_empty(), "mismatches:\n{}", wrong.join("\n"));

        // Every operator is in the table, matching and not matching.
        for operator in [
            "\"prefix\"",
            "\"suffix\"",
            "\"equals-ignore-case\"",
            "\"wildcard\"",
            "\"anything-but\"",
            "\"numeric\"",
            "\"exists\"",
            "\"$or\"",
        ] {
            assert!(TABLE.contains(operator), "no case uses {operator}");
        }
    }

    #[test]
    fn exact_values_of_every_type() {
        let event = json!({"s": "a", "n": 5, "f": 2.5, "b": true, "z": null, "e": ""});
        assert!(pattern(json!({"s": ["a"]})).matches(&event));
        assert!(!pattern(json!({"s": ["A"]})).matches(&event));
        assert!(pattern(json!({"n": [5]})).matches(&event));
        assert!(pattern(json!({"n": [5.0]})).matches(&event));
        assert!(pattern(json!({"n": [5e0]})).matches(&event));
        assert!(!pattern(json!({"n": ["5"]})).matches(&event));
        assert!(pattern(json!({"f": [2.5]})).matches(&event));
        assert!(pattern(json!({"b": [true]})).matches(&event));
        assert!(!pattern(json!({"b": [1]})).matches(&event));
        assert!(!pattern(json!({"b": ["true"]})).matches(&event));
        assert!(pattern(json!({"z": [null]})).matches(&event));
        assert!(!pattern(json!({"z": [""]})).matches(&event));
        assert!(pattern(json!({"e": [""]})).matches(&event));
        assert!(!pattern(json!({"e": [null]})).matches(&event));
        // Alternatives are or-ed, fields and-ed.
        assert!(pattern(json!({"s": ["x", "a"], "n": [5]})).matches(&event));
        assert!(!pattern(json!({"s": ["a"], "n": [6]})).matches(&event));
        // A field the event lacks never matches a value.
        assert!(!pattern(json!({"missing": ["a"]})).matches(&event));
    }

    #[test]
    fn large_integers_match_literally() {
        let event = json!({"account": 123456789012u64});
        assert!(pattern(json!({"account": [123456789012u64]})).matches(&event));
        assert!(!pattern(json!({"account": [123456789013u64]})).matches(&event));
    }

    #[test]
    fn event_arrays_match_on_any_element_nested_arrays_included() {
        let event = json!({"tags": ["a", ["b", ["c"]]], "empty": []});
        assert!(pattern(json!({"tags": ["c"]})).matches(&event));
        assert!(pattern(json!({"tags": [{"prefix": "b"}]})).matches(&event));
        assert!(!pattern(json!({"tags": ["d"]})).matches(&event));
        assert!(!pattern(json!({"empty": [{"anything-but": "x"}]})).matches(&event));
    }

    #[test]
    fn nested_objects_and_arrays_of_objects() {
        let event = json!({
            "detail": {"state": {"name": "running"}},
            "people": [
                {"first": "John", "last": "Doe"},
                {"first": "Anna", "last": "Smith"}
            ]
        });
        assert!(pattern(json!({"detail": {"state": {"name": ["running"]}}})).matches(&event));
        assert!(!pattern(json!({"detail": {"state": ["running"]}})).matches(&event));
        assert!(pattern(json!({"people": {"first": ["Anna"], "last": ["Smith"]}})).matches(&event));
        // Both fields exist, but in different elements.
        assert!(!pattern(json!({"people": {"first": ["Anna"], "last": ["Doe"]}})).matches(&event));
        // A nested pattern over a scalar finds nothing below it.
        assert!(!pattern(json!({"detail": {"state": {"name": {"x": ["y"]}}}})).matches(&event));
    }

    #[test]
    fn prefix_suffix_and_ignoring_case() {
        let event = json!({"region": "us-East-1", "n": 10});
        assert!(pattern(json!({"region": [{"prefix": "us-"}]})).matches(&event));
        assert!(pattern(json!({"region": [{"prefix": ""}]})).matches(&event));
        assert!(!pattern(json!({"region": [{"prefix": "US-"}]})).matches(&event));
        assert!(
            pattern(json!({"region": [{"prefix": {"equals-ignore-case": "US-EAST"}}]}))
                .matches(&event)
        );
        assert!(pattern(json!({"region": [{"suffix": "-1"}]})).matches(&event));
        assert!(!pattern(json!({"region": [{"suffix": "east-1"}]})).matches(&event));
        assert!(
            pattern(json!({"region": [{"suffix": {"equals-ignore-case": "EAST-1"}}]}))
                .matches(&event)
        );
        assert!(pattern(json!({"region": [{"equals-ignore-case": "US-EAST-1"}]})).matches(&event));
        assert!(!pattern(json!({"region": [{"equals-ignore-case": "us-east"}]})).matches(&event));
        assert!(!pattern(json!({"n": [{"prefix": "1"}]})).matches(&event));
        assert!(!pattern(json!({"n": [{"equals-ignore-case": "10"}]})).matches(&event));
    }

    #[test]
    fn wildcards() {
        let event = json!({"path": "src/lib/a*b.rs"});
        assert!(pattern(json!({"path": [{"wildcard": "*/lib/*"}]})).matches(&event));
        assert!(pattern(json!({"path": [{"wildcard": "src*.rs"}]})).matches(&event));
        assert!(pattern(json!({"path": [{"wildcard": "*a\\*b.rs"}]})).matches(&event));
        assert!(!pattern(json!({"path": [{"wildcard": "*a\\*c.rs"}]})).matches(&event));
        assert!(!pattern(json!({"path": [{"wildcard": "lib*"}]})).matches(&event));
        assert!(!pattern(json!({"path": [{"wildcard": "src/lib"}]})).matches(&event));
        // The suffix must not overlap what the middle parts used.
        assert!(!pattern(json!({"path": [{"wildcard": "*b.rs*b.rs"}]})).matches(&event));
    }

    #[test]
    fn anything_but_in_all_its_forms() {
        let event = json!({"state": "running", "n": 7, "tags": ["a", "b"], "z": null});
        assert!(!pattern(json!({"state": [{"anything-but": "running"}]})).matches(&event));
        assert!(pattern(json!({"state": [{"anything-but": "stopped"}]})).matches(&event));
        assert!(
            !pattern(json!({"state": [{"anything-but": ["stopped", "running"]}]})).matches(&event)
        );
        assert!(!pattern(json!({"n": [{"anything-but": 7}]})).matches(&event));
        assert!(!pattern(json!({"n": [{"anything-but": [7.0, 8]}]})).matches(&event));
        assert!(pattern(json!({"n": [{"anything-but": [8, 9]}]})).matches(&event));
        // Only values of the excluded type are excluded.
        assert!(pattern(json!({"n": [{"anything-but": "7"}]})).matches(&event));
        assert!(pattern(json!({"state": [{"anything-but": [1, 2]}]})).matches(&event));
        assert!(pattern(json!({"z": [{"anything-but": "x"}]})).matches(&event));
        assert!(!pattern(json!({"state": [{"anything-but": {"prefix": "run"}}]})).matches(&event));
        assert!(pattern(json!({"state": [{"anything-but": {"prefix": "stop"}}]})).matches(&event));
        assert!(!pattern(json!({"state": [{"anything-but": {"suffix": "ing"}}]})).matches(&event));
        assert!(
            !pattern(json!({"state": [{"anything-but": {"equals-ignore-case": "RUNNING"}}]}))
                .matches(&event)
        );
        assert!(
            pattern(json!({"state": [{"anything-but": {"equals-ignore-case": ["X", "Y"]}}]}))
                .matches(&event)
        );
        assert!(
            !pattern(json!({"state": [{"anything-but": {"wildcard": "r*g"}}]})).matches(&event)
        );
        // An array matches when some element is not excluded.
        assert!(pattern(json!({"tags": [{"anything-but": "a"}]})).matches(&event));
        assert!(!pattern(json!({"tags": [{"anything-but": ["a", "b"]}]})).matches(&event));
        // A missing field is not "anything but".
        assert!(!pattern(json!({"missing": [{"anything-but": "x"}]})).matches(&event));
    }

    #[test]
    fn exists_is_about_leaf_values() {
        let event = json!({"z": null, "o": {"k": 1}, "s": "x", "empty": []});
        assert!(pattern(json!({"z": [{"exists": true}]})).matches(&event));
        assert!(!pattern(json!({"z": [{"exists": false}]})).matches(&event));
        assert!(pattern(json!({"missing": [{"exists": false}]})).matches(&event));
        assert!(!pattern(json!({"missing": [{"exists": true}]})).matches(&event));
        // An object is not a leaf.
        assert!(pattern(json!({"o": [{"exists": false}]})).matches(&event));
        assert!(!pattern(json!({"o": [{"exists": true}]})).matches(&event));
        assert!(pattern(json!({"o": {"k": [{"exists": true}]}})).matches(&event));
        // Below a scalar or a missing parent, nothing exists.
        assert!(pattern(json!({"s": {"k": [{"exists": false}]}})).matches(&event));
        assert!(pattern(json!({"missing": {"k": [{"exists": false}]}})).matches(&event));
        assert!(!pattern(json!({"missing": {"k": [{"exists": true}]}})).matches(&event));
        // An empty array holds no value.
        assert!(pattern(json!({"empty": [{"exists": false}]})).matches(&event));
        // exists is one alternative among others.
        assert!(pattern(json!({"missing": ["x", {"exists": false}]})).matches(&event));
    }

    #[test]
    fn numeric_ranges_and_their_bounds() {
        let at = |n: Value| json!({"n": n});
        let range = pattern(json!({"n": [{"numeric": [">", 0, "<=", 5]}]}));
        assert!(!range.matches(&at(json!(0))));
        assert!(range.matches(&at(json!(0.000001))));
        assert!(range.matches(&at(json!(5))));
        assert!(range.matches(&at(json!(5.0))));
        assert!(!range.matches(&at(json!(5.000001))));
        assert!(!range.matches(&at(json!("3"))));
        assert!(range.matches(&at(json!([9, 3]))));
        let closed = pattern(json!({"n": [{"numeric": [">=", -1.5, "<", 2]}]}));
        assert!(closed.matches(&at(json!(-1.5))));
        assert!(!closed.matches(&at(json!(2))));
        assert!(pattern(json!({"n": [{"numeric": ["=", 301.8]}]})).matches(&at(json!(3.018e2))));
        assert!(pattern(json!({"n": [{"numeric": ["<", 10]}]})).matches(&at(json!(-4e9))));
        assert!(pattern(json!({"n": [{"numeric": ["<=", 10]}]})).matches(&at(json!(10))));
        // Six decimal places, as EventBridge compares.
        assert!(!pattern(json!({"n": [{"numeric": [">", 0]}]})).matches(&at(json!(1e-7))));
        // Beyond ±5e9 a number is not compared.
        assert!(!pattern(json!({"n": [{"numeric": [">", 0]}]})).matches(&at(json!(6e9))));
        assert!(
            pattern(json!({"n": [{"numeric": [">=", -5e9, "<=", 5e9]}]})).matches(&at(json!(5e9)))
        );
    }

    #[test]
    fn or_branches() {
        let p = pattern(json!({
            "source": ["docfan"],
            "$or": [
                {"detail": {"actor": ["ann"]}},
                {"detail": {"version": [{"numeric": [">", 10]}]}, "detail-type": ["document.updated"]}
            ]
        }));
        let event = |actor: &str, version: u64, kind: &str| json!({"source": "docfan", "detail-type": kind, "detail": {"actor": actor, "version": version}});
        assert!(p.matches(&event("ann", 1, "document.created")));
        assert!(p.matches(&event("bob", 11, "document.updated")));
        assert!(!p.matches(&event("bob", 11, "document.deleted")));
        assert!(!p.matches(&event("bob", 3, "document.updated")));
        let wrong_source = json!({"source": "other", "detail": {"actor": "ann"}});
        assert!(!p.matches(&wrong_source));
        // Inside an object, and nested.
        let nested = pattern(json!({"d": {"$or": [
            {"a": [1]},
            {"$or": [{"b": [2]}, {"c": [3]}]}
        ]}}));
        assert!(nested.matches(&json!({"d": {"c": 3}})));
        assert!(!nested.matches(&json!({"d": {"c": 4}})));
    }

    #[test]
    fn malformed_patterns_are_refused_with_where_and_why() {
        let cases = [
            (
                json!(["a"]),
                "pattern",
                "must be a JSON object, not an array",
            ),
            (json!("source"), "pattern", "not a string"),
            (json!({}), "pattern", "empty object"),
            (
                json!({"source": "docfan"}),
                "source",
                "must be an object or an array",
            ),
            (json!({"source": []}), "source", "empty array"),
            (json!({"detail": {}}), "detail", "empty object"),
            (json!({"detail": {"a": 5}}), "detail.a", "not a number"),
            (json!({"a": [["x"]]}), "a[0]", "not an array"),
            (json!({"a": [{}]}), "a[0]", "exactly one operator, not none"),
            (
                json!({"a": [{"prefix": "x", "suffix": "y"}]}),
                "a[0]",
                "exactly one operator, not 2",
            ),
            (json!({"a": [{"prefix": 5}]}), "a[0]", "not a number"),
            (
                json!({"a": [{"prefix": {"wildcard": "x"}}]}),
                "a[0]",
                "not \"wildcard\"",
            ),
            (
                json!({"a": [{"equals-ignore-case": ["x"]}]}),
                "a[0]",
                "takes a string",
            ),
            (json!({"a": [{"exists": "yes"}]}), "a[0]", "true or false"),
            (
                json!({"a": [{"regex": ".*"}]}),
                "a[0]",
                "unknown operator \"regex\"",
            ),
            (
                json!({"a": [{"cidr": "10.0.0.0/8"}]}),
                "a[0]",
                "not supported",
            ),
            (
                json!({"a": [{"anything-but": ["x", 1]}]}),
                "a[0]",
                "strings only or numbers only",
            ),
            (json!({"a": [{"anything-but": []}]}), "a[0]", "at least one"),
            (
                json!({"a": [{"anything-but": true}]}),
                "a[0]",
                "not a boolean",
            ),
            (
                json!({"a": [{"anything-but": {"prefix": ""}}]}),
                "a[0]",
                "empty \"prefix\"",
            ),
            (
                json!({"a": [{"anything-but": {"exists": true}}]}),
                "a[0]",
                "not \"exists\"",
            ),
            (
                json!({"a": [{"anything-but": 6e9}]}),
                "a[0]",
                "between -5e9 and 5e9",
            ),
            (json!({"a": [{"numeric": ">"}]}), "a[0]", "takes an array"),
            (json!({"a": [{"numeric": [">"]}]}), "a[0]", "one comparison"),
            (
                json!({"a": [{"numeric": [">", "0"]}]}),
                "a[0]",
                "a number after \">\"",
            ),
            (
                json!({"a": [{"numeric": [0, ">"]}]}),
                "a[0]",
                "expects an operator",
            ),
            (json!({"a": [{"numeric": ["!=", 0]}]}), "a[0]", "not \"!=\""),
            (
                json!({"a": [{"numeric": ["<", 0, ">", 5]}]}),
                "a[0]",
                "takes no second bound",
            ),
            (
                json!({"a": [{"numeric": [">", 0, ">", 5]}]}),
                "a[0]",
                "ends with < or <=",
            ),
            (
                json!({"a": [{"numeric": [">", 5, "<", 5]}]}),
                "a[0]",
                "holds no number",
            ),
            (
                json!({"a": [{"numeric": ["=", 1e10]}]}),
                "a[0]",
                "between -5e9 and 5e9",
            ),
            (
                json!({"a": [{"wildcard": "a**b"}]}),
                "a[0]",
                "consecutive stars",
            ),
            (json!({"a": [{"wildcard": "a\\b"}]}), "a[0]", "backslash"),
            (
                json!({"$or": {"a": ["x"]}}),
                "$or",
                "array of at least two objects, not an object",
            ),
            (
                json!({"$or": [{"a": ["x"]}]}),
                "$or",
                "at least two objects",
            ),
            (
                json!({"$or": [{"a": ["x"]}, "b"]}),
                "$or[1]",
                "must be an object",
            ),
            (
                json!({"$or": [{"a": ["x"]}, {"prefix": ["b"]}]}),
                "$or[1].prefix",
                "is an operator",
            ),
            (
                json!({"d": {"$or": [{"a": ["x"]}, {"b": {"c": []}}]}}),
                "d.$or[1].b.c",
                "empty array",
            ),
        ];
        for (value, path, reason) in cases {
            let err = refused(value.clone());
            assert_eq!(err.path, path, "{value}: {err}");
            assert!(err.reason.contains(reason), "{value}: {err}");
        }
    }

    #[test]
    fn deep_patterns_are_refused_without_recursing() {
        let nest = |levels: usize| {
            let mut value = json!(["x"]);
            for _ in 0..levels {
                // Not json!, which would serialise `value` again (recursively).
                value = Value::Object(Map::from_iter([("a".to_owned(), value)]));
            }
            value
        };
        // Object levels plus the leaf array: 31 + 1 = 32 is the limit.
        assert!(EventPattern::compile(&nest(MAX_PATTERN_DEPTH - 1)).is_ok());
        let err = refused(nest(MAX_PATTERN_DEPTH));
        assert!(err.reason.contains("nested more than 32 levels"), "{err}");
        // Far deeper than any stack would survive if compiling recursed first.
        let deep = nest(5_000);
        let err = EventPattern::compile(&deep).unwrap_err();
        assert!(err.reason.contains("nested"), "{err}");
        // serde_json drops a value recursively; take this one apart by hand.
        let mut parts = vec![deep];
        while let Some(part) = parts.pop() {
            match part {
                Value::Object(fields) => parts.extend(fields.into_iter().map(|(_, v)| v)),
                Value::Array(items) => parts.extend(items),
                _ => {}
            }
        }
        let text = format!("{}\"x\"{}", "[".repeat(100), "]".repeat(100));
        assert!(EventPattern::parse(&text).is_err());
    }

    #[test]
    fn large_patterns_are_refused() {
        let long = "x".repeat(MAX_PATTERN_BYTES);
        let err = refused(json!({ "a": [long] }));
        assert_eq!(err.path, "pattern");
        assert!(err.reason.contains("at most 2048"), "{err}");
        let many: Vec<String> = (0..400).map(|i| format!("value-{i}")).collect();
        assert!(EventPattern::compile(&json!({ "a": many })).is_err());
        let padded = format!("{{\"a\": [\"x\"]{}}}", " ".repeat(MAX_PATTERN_BYTES));
        assert!(
            EventPattern::parse(&padded)
                .unwrap_err()
                .reason
                .contains("at most")
        );
        // Just under the limit is fine.
        let fits = json!({ "a": ["x".repeat(MAX_PATTERN_BYTES - 20)] });
        assert!(EventPattern::compile(&fits).is_ok());
    }

    #[test]
    fn patterns_read_from_text_and_configuration() {
        let p: EventPattern = r#"{"source": ["docfan"]}"#.parse().unwrap();
        assert!(p.matches(&json!({"source": "docfan"})));
        assert_eq!(p.as_json(), &json!({"source": ["docfan"]}));
        let err = EventPattern::parse("{\"source\": ").unwrap_err();
        assert!(err.reason.starts_with("not JSON"), "{err}");

        #[derive(Deserialize)]
        struct Rule {
            pattern: EventPattern,
        }
        let rule: Rule = serde_json::from_value(json!({"pattern": {"a": [1]}})).unwrap();
        assert!(rule.pattern.matches(&json!({"a": 1})));
        let err = serde_json::from_value::<Rule>(json!({"pattern": {"a": 1}}))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("invalid event pattern at a"),
            "{err}"
        );
        assert_eq!(
            serde_json::to_value(&rule.pattern).unwrap(),
            json!({"a": [1]})
        );
    }

    /// Any JSON value, nested a few levels, with keys that are often operators.
    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("prefix".to_owned()),
            Just("suffix".to_owned()),
            Just("anything-but".to_owned()),
            Just("numeric".to_owned()),
            Just("exists".to_owned()),
            Just("equals-ignore-case".to_owned()),
            Just("wildcard".to_owned()),
            Just("$or".to_owned()),
            "[a-c]{1,2}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            (-10i32..10).prop_map(Value::from),
            prop_oneof![
                Just(">"),
                Just("<="),
                Just("="),
                Just("*"),
                Just("a*b"),
                Just("\\"),
                Just("")
            ]
            .prop_map(Value::from),
            "[a-z*\\\\]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..4)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn compiling_and_matching_never_panic(pattern in json_value(), event in json_value()) {
            if let Ok(compiled) = EventPattern::compile(&pattern) {
                let _ = compiled.matches(&event);
            }
        }

        #[test]
        fn compiling_never_panics_on_text(text in "\\PC{0,64}") {
            let _ = EventPattern::parse(&text);
        }
    }
}
