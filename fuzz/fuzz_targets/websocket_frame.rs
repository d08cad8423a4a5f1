//! The WebSocket client-frame parser (`websocket::frames::ClientFrame::parse`).
//!
//! Input: the text of a frame. Bytes that are not UTF-8 (a text frame always is) build a
//! frame object from fuzz bytes instead: an action and fields of arbitrary JSON.
//!
//! Checks: parsing never panics; the size limit comes first and is exact — a frame one
//! byte over it is refused with `FrameTooLarge`, and under it the limit changes nothing;
//! a refusal carries a client-facing code and a short message (never the whole of what
//! the client sent) and renders as an error frame that says the same; what parses is
//! what the JSON says, and re-serialises to text that parses to the same frame.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use websocket::frames::{ClientFrame, ErrorCode, FrameRejection, MAX_FRAME_BYTES};

const NAMES: &[&str] = &["action", "documentId", "sinceVersion", "token"];
const ACTIONS: &[&str] = &["subscribe", "unsubscribe", "ping", "auth"];
const DOCUMENT: &str = "0190a5c4-7b2e-7c3d-8e4f-1a2b3c4d5e6f";

fuzz_target!(|data: &[u8]| {
    let text = match std::str::from_utf8(data) {
        Ok(text) => text.to_owned(),
        Err(_) => match frame_object(&mut Unstructured::new(data)) {
            Ok(frame) => frame.to_string(),
            Err(_) => return,
        },
    };
    check(&text);
});

fn frame_object(u: &mut Unstructured) -> arbitrary::Result<Value> {
    let mut frame = Map::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let name = (*u.choose(NAMES)?).to_owned();
        let value = match name.as_str() {
            "documentId" if u.arbitrary()? => json!(DOCUMENT),
            _ => docfan_fuzz::json_value(u, NAMES, 2)?,
        };
        frame.insert(name, value);
    }
    if u.ratio(7, 8)? {
        frame.insert("action".into(), json!(*u.choose(ACTIONS)?));
    }
    Ok(Value::Object(frame))
}

fn check(text: &str) {
    let parsed = ClientFrame::parse(text, MAX_FRAME_BYTES);

    // The limit is checked first and exactly; within it, it makes no difference.
    if text.len() <= MAX_FRAME_BYTES {
        assert_eq!(
            ClientFrame::parse(text, text.len()),
            parsed,
            "a frame at the limit"
        );
    }
    if let Some(under) = text.len().checked_sub(1) {
        let over = ClientFrame::parse(text, under).expect_err("a frame over the limit");
        assert_eq!(over.code, ErrorCode::FrameTooLarge);
        check_rejection(&over);
    }

    match parsed {
        Err(rejection) => {
            assert!(matches!(
                rejection.code,
                ErrorCode::MalformedFrame | ErrorCode::UnknownAction | ErrorCode::FrameTooLarge
            ));
            assert_eq!(
                rejection.code == ErrorCode::FrameTooLarge,
                text.len() > MAX_FRAME_BYTES
            );
            check_rejection(&rejection);
        }
        Ok(frame) => {
            let json: Value = serde_json::from_str(text).expect("a parsed frame is JSON");
            match &frame {
                ClientFrame::Subscribe {
                    document,
                    since_version,
                    include_document,
                } => {
                    assert_eq!(json["action"], "subscribe");
                    let id = json["documentId"].as_str().expect("documentId is a string");
                    assert_eq!(shared::domain::DocumentId::parse(id).as_ref(), Ok(document));
                    assert_eq!(json["sinceVersion"].as_u64(), *since_version);
                    assert_eq!(*include_document, json["include"] == "document");
                }
                ClientFrame::Presence { document, cursor } => {
                    assert_eq!(json["action"], "presence");
                    let id = json["documentId"].as_str().expect("documentId is a string");
                    assert_eq!(shared::domain::DocumentId::parse(id).as_ref(), Ok(document));
                    match cursor {
                        None => assert!(json["cursor"].is_null()),
                        Some(c) => {
                            assert_eq!(json["cursor"]["anchor"].as_u64(), Some(c.anchor));
                            assert_eq!(json["cursor"]["head"].as_u64(), Some(c.head));
                        }
                    }
                }
                ClientFrame::Unsubscribe { document } => {
                    assert_eq!(json["action"], "unsubscribe");
                    let id = json["documentId"].as_str().expect("documentId is a string");
                    assert_eq!(shared::domain::DocumentId::parse(id).as_ref(), Ok(document));
                }
                ClientFrame::Ping => assert_eq!(json["action"], "ping"),
                ClientFrame::Auth { token } => {
                    assert_eq!(json["action"], "auth");
                    assert_eq!(json["token"].as_str(), Some(token.as_str()));
                }
            }
            let again = encode(&frame);
            assert_eq!(
                ClientFrame::parse(&again, MAX_FRAME_BYTES),
                Ok(frame),
                "a parsed frame re-serialises to the same frame: {again}"
            );
        }
    }
}

/// A refusal is for the client: a short message of its own, rendered as the error frame.
fn check_rejection(rejection: &FrameRejection) {
    assert!(!rejection.message.trim().is_empty());
    assert!(
        rejection.message.len() <= 1024,
        "a refusal's message is short whatever the frame held: {:?}",
        rejection.message
    );
    let frame = rejection.to_frame().to_json();
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["message"], rejection.message.as_str());
    assert_eq!(frame["code"], serde_json::to_value(rejection.code).unwrap());
    assert!(frame.get("documentId").is_none());
}

/// A client frame as a client would send it.
fn encode(frame: &ClientFrame) -> String {
    match frame {
        ClientFrame::Subscribe {
            document,
            since_version,
            include_document,
        } => {
            let mut frame = json!({"action": "subscribe", "documentId": document});
            if let Some(v) = since_version {
                frame["sinceVersion"] = json!(v);
            }
            if *include_document {
                frame["include"] = json!("document");
            }
            frame
        }
        ClientFrame::Presence { document, cursor } => {
            json!({"action": "presence", "documentId": document, "cursor": cursor})
        }
        ClientFrame::Unsubscribe { document } => {
            json!({"action": "unsubscribe", "documentId": document})
        }
        ClientFrame::Ping => json!({"action": "ping"}),
        ClientFrame::Auth { token } => json!({"action": "auth", "token": token}),
    }
    .to_string()
}
