//! Hostile input, generated: the decoders and parsers that face the outside world never
//! panic, and keep their promises on every input proptest can think of.
//!
//! - JSON Merge Patch: any patch on any target either applies or is refused as too
//!   deep; applying a patch twice is the same as once (RFC 7396 patches are idempotent).
//! - JWTs: arbitrary strings and mangled tokens are refused; issued tokens verify.
//! - Stream records: real fixtures with parts deleted or replaced by arbitrary JSON
//!   decode or are refused, and a decoded change is consistent with its record.
//! - WebSocket frames: arbitrary text and arbitrary JSON objects parse or are refused
//!   with an error code.
//! - Search queries: arbitrary text, and text built from the language's own pieces,
//!   parses within the length and depth limits or is refused; what parses renders to
//!   text that parses back to it.

// A test target sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

use chrono::{TimeDelta, Utc};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use shared::auth::{AuthError, Identity, TokenAuthority};
use shared::domain::UserId;
use shared::service::merge_patch;

const CASES: u32 = 512;

/// HS256 verification never waits: its future is ready at the first poll.
fn verify(
    authority: &TokenAuthority,
    token: &str,
    now: chrono::DateTime<Utc>,
) -> Result<Identity, AuthError> {
    use std::task::{Context, Poll, Waker};
    let mut verifying = std::pin::pin!(authority.verify(token, now));
    match verifying
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(outcome) => outcome,
        Poll::Pending => panic!("HS256 verification waited"),
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,4}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn merge_patches_apply_idempotently(target in json_value(), patch in json_value()) {
        let mut once = target.clone();
        merge_patch::apply(&mut once, &patch).expect("shallow patches apply");
        let mut twice = once.clone();
        merge_patch::apply(&mut twice, &patch).expect("shallow patches apply");
        prop_assert_eq!(&once, &twice);
        // A member the patch sets to null is gone; one it sets to a scalar has that value.
        if let (Value::Object(p), Value::Object(result)) = (&patch, &once) {
            for (name, value) in p {
                match value {
                    Value::Null => prop_assert!(!result.contains_key(name)),
                    Value::Object(_) => {}
                    other => prop_assert_eq!(result.get(name), Some(other)),
                }
            }
        }
    }

    #[test]
    fn arbitrary_strings_are_not_tokens(raw in ".{0,300}", segments in prop::collection::vec("[A-Za-z0-9_-]{0,60}", 0..5)) {
        let authority = TokenAuthority::new(tests::TEST_SECRET).unwrap();
        let now = Utc::now();
        prop_assert!(verify(&authority, &raw, now).is_err());
        prop_assert!(verify(&authority, &segments.join("."), now).is_err());
    }

    #[test]
    fn issued_tokens_verify_and_mangled_ones_do_not(user in "[A-Za-z0-9._@:+-]{1,128}", position in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_-]") {
        let authority = TokenAuthority::new(tests::TEST_SECRET).unwrap();
        let now = Utc::now();
        let user = UserId::parse(user).unwrap();
        let token = authority.issue(&user, TimeDelta::minutes(5), now);
        prop_assert_eq!(verify(&authority, &token, now).unwrap().user, user);
        let i = position.index(token.len());
        let mut mangled = token.clone();
        mangled.replace_range(i..=i, &replacement);
        if mangled != token {
            // A changed character breaks the signature, the header, or the claims — or,
            // in the last character of the signature, only base64 padding bits; so the
            // token must either fail or verify as exactly the same user and expiry.
            if let Ok(identity) = verify(&authority, &mangled, now) {
                prop_assert_eq!(identity, verify(&authority, &token, now).unwrap());
            }
        }
    }

    #[test]
    fn mutated_stream_records_decode_or_are_refused(
        fixture in 0..FIXTURES.len(),
        path_choice in any::<prop::sample::Index>(),
        replacement in json_value(),
        delete in any::<bool>(),
    ) {
        let mut record: Value = serde_json::from_str(FIXTURES[fixture]).unwrap();
        let record = match record.get_mut("Records").and_then(|r| r.get_mut(0)) {
            Some(inner) => inner.take(),
            None => record,
        };
        let mut record = record;
        let paths = leaf_paths(&record);
        let path = &paths[path_choice.index(paths.len())];
        mutate(&mut record, path, replacement, delete);
        // Must not panic; a change that decodes names the document of its keys.
        if let Ok(stream_handler::decode::Decoded::Change(change)) = stream_handler::decode::decode(&record) {
            prop_assert!(change.version >= 1);
            let keyed = record["dynamodb"]["Keys"]["id"]["S"].as_str().map(str::to_owned);
            prop_assert_eq!(Some(change.document_id.to_string()), keyed);
        }
    }

    #[test]
    fn search_queries_parse_within_limits_and_render_stably(
        text in prop_oneof![
            ".{0,300}",
            prop::collection::vec(
                prop_oneof![
                    Just("(".to_owned()), Just(")".to_owned()), Just(" ".to_owned()),
                    Just("\"".to_owned()), Just("-".to_owned()), Just("*".to_owned()),
                    Just(" OR ".to_owned()), Just(" AND ".to_owned()), Just("NOT ".to_owned()),
                    Just("title:".to_owned()), Just("body:".to_owned()), "[a-zA-Zé0-9]{1,6}",
                ],
                0..80,
            )
            .prop_map(|pieces| pieces.concat()),
        ],
    ) {
        use shared::domain::search_query::{MAX_DEPTH, MAX_QUERY_CHARS, QueryError, parse};
        match parse(&text) {
            Ok(query) => {
                prop_assert!(text.chars().count() <= MAX_QUERY_CHARS);
                let rendered = query.to_string();
                if rendered.chars().count() <= MAX_QUERY_CHARS {
                    prop_assert_eq!(parse(&rendered), Ok(query));
                }
            }
            Err(QueryError::TooLong) => prop_assert!(text.chars().count() > MAX_QUERY_CHARS),
            Err(QueryError::TooDeep) => {
                prop_assert!(text.matches('(').count() > MAX_DEPTH)
            }
            Err(_) => {}
        }
    }

    #[test]
    fn arbitrary_text_frames_parse_or_are_refused(text in ".{0,400}") {
        let _ = websocket::frames::ClientFrame::parse(&text, 128 * 1024);
    }

    #[test]
    fn arbitrary_json_frames_parse_or_are_refused(
        action in prop_oneof![Just("subscribe".to_owned()), Just("unsubscribe".to_owned()), Just("ping".to_owned()), Just("auth".to_owned()), ".{0,10}"],
        fields in prop::collection::btree_map(prop_oneof![Just("documentId".to_owned()), Just("sinceVersion".to_owned()), Just("token".to_owned()), "[a-z]{1,6}"], json_value(), 0..4),
    ) {
        let mut frame: Map<String, Value> = fields.into_iter().collect();
        frame.insert("action".into(), Value::String(action));
        let text = Value::Object(frame).to_string();
        if let Ok(websocket::frames::ClientFrame::Subscribe { since_version: Some(v), .. }) =
            websocket::frames::ClientFrame::parse(&text, 128 * 1024)
        {
            prop_assert!(text.contains(&v.to_string()));
        }
    }
}

const FIXTURES: [&str; 7] = [
    include_str!("../../stream-handler/tests/fixtures/insert.json"),
    include_str!("../../stream-handler/tests/fixtures/modify.json"),
    include_str!("../../stream-handler/tests/fixtures/modify_marks_deleted.json"),
    include_str!("../../stream-handler/tests/fixtures/remove.json"),
    include_str!("../../stream-handler/tests/fixtures/ttl_remove.json"),
    include_str!("../../stream-handler/tests/fixtures/undecodable.json"),
    include_str!("../../stream-handler/tests/fixtures/unknown_attributes.json"),
];

/// Every path to a value in `v` (objects and arrays included), as keys and indices.
fn leaf_paths(v: &Value) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    fn walk(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    prefix.push(k.clone());
                    out.push(prefix.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    prefix.push(i.to_string());
                    out.push(prefix.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {}
        }
    }
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn mutate(root: &mut Value, path: &[String], replacement: Value, delete: bool) {
    let Some((last, parents)) = path.split_last() else {
        *root = replacement;
        return;
    };
    let mut node = root;
    for key in parents {
        node = match node {
            Value::Object(m) => m.get_mut(key).expect("path exists"),
            Value::Array(a) => &mut a[key.parse::<usize>().expect("index")],
            _ => return,
        };
    }
    match node {
        Value::Object(m) if delete => {
            m.remove(last);
        }
        Value::Object(m) => {
            m.insert(last.clone(), replacement);
        }
        Value::Array(a) => {
            let i: usize = last.parse().expect("index");
            if delete {
                a.remove(i);
            } else {
                a[i] = replacement;
            }
        }
        _ => {}
    }
}
