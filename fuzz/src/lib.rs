//! What the fuzz targets share: JSON values built from fuzz bytes (for inputs that are not
//! JSON text already), the stream-handler fixtures they mutate, and a way to run the
//! services' futures over in-memory ports without a runtime.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Value};

/// Runs a future that never waits (every port behind it answers at once) to its end.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a future over in-memory ports waited"),
    }
}

/// An arbitrary JSON value at most `depth` containers deep. Object member names are
/// drawn from `names` most of the time, so the fields a parser looks for come up often.
pub fn json_value(u: &mut Unstructured, names: &[&str], depth: usize) -> Result<Value> {
    let container = depth > 0 && u.ratio(1, 3)?;
    if container {
        let len = u.int_in_range(0..=4)?;
        if u.arbitrary()? {
            let mut items = Vec::with_capacity(len);
            for _ in 0..len {
                items.push(json_value(u, names, depth - 1)?);
            }
            return Ok(Value::Array(items));
        }
        let mut members = Map::new();
        for _ in 0..len {
            let name = member_name(u, names)?;
            members.insert(name, json_value(u, names, depth - 1)?);
        }
        return Ok(Value::Object(members));
    }
    Ok(match u.int_in_range(0..=6)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        4 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        5 if !names.is_empty() => Value::String((*u.choose(names)?).to_owned()),
        _ => Value::String(u.arbitrary()?),
    })
}

fn member_name(u: &mut Unstructured, names: &[&str]) -> Result<String> {
    if !names.is_empty() && u.ratio(3, 4)? {
        Ok((*u.choose(names)?).to_owned())
    } else {
        u.arbitrary()
    }
}

/// The stream-handler's record fixtures (each a `{"Records":[record]}` event).
pub const STREAM_FIXTURES: [&str; 7] = [
    include_str!("../../stream-handler/tests/fixtures/insert.json"),
    include_str!("../../stream-handler/tests/fixtures/modify.json"),
    include_str!("../../stream-handler/tests/fixtures/modify_marks_deleted.json"),
    include_str!("../../stream-handler/tests/fixtures/remove.json"),
    include_str!("../../stream-handler/tests/fixtures/ttl_remove.json"),
    include_str!("../../stream-handler/tests/fixtures/undecodable.json"),
    include_str!("../../stream-handler/tests/fixtures/unknown_attributes.json"),
];

/// The record of a fixture event.
pub fn fixture_record(index: usize) -> Value {
    let mut event: Value = serde_json::from_str(STREAM_FIXTURES[index]).expect("fixtures are JSON");
    event["Records"][0].take()
}

/// Every path to a value inside `root` (the root itself is the empty path).
pub fn value_paths(root: &Value) -> Vec<Vec<String>> {
    fn walk(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        let children: Vec<(String, &Value)> = match v {
            Value::Object(m) => m.iter().map(|(k, c)| (k.clone(), c)).collect(),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, c)| (i.to_string(), c))
                .collect(),
            _ => Vec::new(),
        };
        for (key, child) in children {
            prefix.push(key);
            out.push(prefix.clone());
            walk(child, prefix, out);
            prefix.pop();
        }
    }
    let mut out = vec![Vec::new()];
    walk(root, &mut Vec::new(), &mut out);
    out
}

/// Replaces the value at `path` with `replacement`, or removes it when `replacement` is
/// `None`. Paths come from [`value_paths`] on the same value.
pub fn replace_at(root: &mut Value, path: &[String], replacement: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        *root = replacement.unwrap_or(Value::Null);
        return;
    };
    let mut node = root;
    for key in parents {
        node = match node {
            Value::Object(m) => m.get_mut(key).expect("the path exists"),
            Value::Array(a) => &mut a[key.parse::<usize>().expect("an index")],
            _ => unreachable!("paths go through containers"),
        };
    }
    match (node, replacement) {
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Object(m), Some(value)) => {
            m.insert(last.clone(), value);
        }
        (Value::Array(a), None) => {
            a.remove(last.parse::<usize>().expect("an index"));
        }
        (Value::Array(a), Some(value)) => a[last.parse::<usize>().expect("an index")] = value,
        _ => unreachable!("paths go through containers"),
    }
}
