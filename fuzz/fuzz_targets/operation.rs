//! The OPS decoder: `shared::domain::TextOperation` read from JSON, and what a decoded
//! operation then does to a body.
//!
//! Input: JSON text, the operation as a client sends it. Bytes that are not JSON text
//! build an array from fuzz bytes instead: mostly components (positive and negative
//! integers, strings), sometimes any JSON value.
//!
//! Checks: decoding never panics, from text or from a `serde_json::Value`, and both agree;
//! a refusal says which component is wrong (or that the whole is not an array); what
//! decodes has at most `MAX_COMPONENTS` components, is normalized, re-serializes to text
//! that decodes to the same operation, and on each sample body it either does not fit
//! (exactly when it reaches past the body's end) or applies, changing the length by
//! `len_delta`, and its inverse gives the body back.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use shared::domain::{Component, MAX_COMPONENTS, OperationError, TextOperation};

/// Bodies of a few lengths, with multi-byte characters, emoji and a combining accent.
const BODIES: &[&str] = &[
    "",
    "a",
    "héllo wörld",
    "😀👍🏽 日本語\ncafe\u{301} and plain ASCII after it, to reach a few dozen characters",
];

fuzz_target!(|data: &[u8]| {
    let text = match serde_json::from_slice::<Value>(data) {
        Ok(_) => String::from_utf8(data.to_vec()).expect("JSON text is UTF-8"),
        Err(_) => match components(&mut Unstructured::new(data)) {
            Ok(value) => value.to_string(),
            Err(_) => return,
        },
    };
    check(&text);
});

fn components(u: &mut Unstructured) -> arbitrary::Result<Value> {
    let mut items = Vec::new();
    for _ in 0..u.int_in_range(0..=16)? {
        items.push(match u.int_in_range(0..=7)? {
            0 | 1 => json!(u.int_in_range(1..=64u64)?),
            2 | 3 => json!(-u.int_in_range(1..=64i64)?),
            4 | 5 => json!(u.arbitrary::<String>()?),
            6 => json!(u.arbitrary::<i64>()?),
            _ => docfan_fuzz::json_value(u, &[], 1)?,
        });
    }
    Ok(Value::Array(items))
}

fn check(text: &str) {
    let decoded = serde_json::from_str::<TextOperation>(text);
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        let from_value = serde_json::from_value::<TextOperation>(value.clone());
        assert_eq!(
            decoded.as_ref().ok(),
            from_value.as_ref().ok(),
            "text and Value decode alike"
        );
        if let Err(error) = &decoded {
            let message = error.to_string();
            if value.is_array() {
                // Only serde_json's own refusals (of the top level) quote what they got.
                assert!(
                    message.starts_with("component ") && message.len() <= 512,
                    "a refusal names the component, briefly: {message}"
                );
            } else {
                assert!(message.contains("expected an operation"), "{message}");
            }
        }
    }
    let Ok(op) = decoded else {
        return;
    };

    let components = op.components();
    assert!(components.len() <= MAX_COMPONENTS);
    for c in components {
        assert!(!matches!(c, Component::Retain(0) | Component::Delete(0)));
        assert_ne!(*c, Component::Insert(String::new()));
    }
    for pair in components.windows(2) {
        assert_ne!(
            std::mem::discriminant(&pair[0]),
            std::mem::discriminant(&pair[1]),
            "adjacent components of one kind"
        );
        assert!(!matches!(
            pair,
            [Component::Delete(_), Component::Insert(_)]
        ));
    }
    assert!(!matches!(components.last(), Some(Component::Retain(_))));

    let again = serde_json::to_string(&op).expect("a decoded operation serializes");
    let reread: TextOperation = serde_json::from_str(&again).expect("and decodes");
    assert_eq!(reread, op, "{again}");
    assert_eq!(serde_json::to_string(&reread).unwrap(), again);

    for body in BODIES {
        let has = body.chars().count();
        match op.apply(body) {
            Ok(after) => {
                assert!(op.base_len() <= has);
                assert_eq!(
                    after.chars().count() as i64,
                    has as i64 + op.len_delta(),
                    "the length changes by len_delta"
                );
                let inverse = op.invert(body).expect("an operation that applies inverts");
                assert_eq!(inverse.apply(&after).as_deref(), Ok(*body));
            }
            Err(error) => {
                assert!(op.base_len() > has);
                assert_eq!(
                    error,
                    OperationError::DoesNotFit {
                        needs: op.base_len(),
                        has
                    }
                );
            }
        }
    }
}
