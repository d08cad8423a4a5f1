//! JSON Merge Patch (RFC 7396), applied to a JSON value.

use serde_json::Value;

/// The deepest patch accepted; deeper input is hostile, not a document edit.
pub const MAX_DEPTH: usize = 32;

/// Applies `patch` to `target` as RFC 7396 says: an object merges member by member, a
/// `null` member removes, anything else replaces. Errors when `patch` nests deeper than
/// [`MAX_DEPTH`].
pub fn apply(target: &mut Value, patch: &Value) -> Result<(), &'static str> {
    apply_at(target, patch, 0)
}

fn apply_at(target: &mut Value, patch: &Value, depth: usize) -> Result<(), &'static str> {
    if depth > MAX_DEPTH {
        return Err("the patch nests too deeply");
    }
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let object = target.as_object_mut().expect("just made an object");
    for (name, value) in members {
        if value.is_null() {
            object.remove(name);
        } else {
            let slot = object.entry(name.clone()).or_insert(Value::Null);
            apply_at(slot, value, depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The examples of RFC 7396, appendix A.
    #[test]
    fn rfc_7396_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            apply(&mut target, &patch).unwrap();
            assert_eq!(target, expected, "patch {patch}");
        }
    }

    #[test]
    fn deep_patches_are_refused() {
        let mut patch = json!(1);
        for _ in 0..100 {
            patch = json!({ "a": patch });
        }
        assert!(apply(&mut json!({}), &patch).is_err());
    }
}
