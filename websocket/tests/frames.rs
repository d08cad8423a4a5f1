//! The frames of the contract against fixtures: what clients send parses, and what the
//! server sends has the documented shape.

// A test target sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

use serde_json::Value;
use shared::domain::{ChangeEvent, Document, DocumentId, TextOperation};
use websocket::frames::{self, ClientFrame, MAX_FRAME_BYTES};

const DOC: &str = "01936f0e-7c4a-7b2e-8f00-000000000001";

fn parse(text: &str) -> ClientFrame {
    ClientFrame::parse(text, MAX_FRAME_BYTES).expect("the fixture parses")
}

#[test]
fn client_fixtures_parse() {
    let doc = DocumentId::parse(DOC).unwrap();
    assert_eq!(
        parse(include_str!("fixtures/subscribe.json")),
        ClientFrame::Subscribe {
            document: doc,
            since_version: Some(4),
            include_document: false,
        }
    );
    assert_eq!(
        parse(include_str!("fixtures/unsubscribe.json")),
        ClientFrame::Unsubscribe { document: doc }
    );
    assert_eq!(parse(include_str!("fixtures/ping.json")), ClientFrame::Ping);
    assert!(matches!(
        parse(include_str!("fixtures/auth.json")),
        ClientFrame::Auth { token } if token.starts_with("eyJ")
    ));
}

#[test]
fn change_frames_match_the_fixture() {
    let expected: Value =
        serde_json::from_str(include_str!("fixtures/document_updated.json")).unwrap();
    let new: Document = serde_json::from_value(expected["document"].clone()).unwrap();
    let mut old = new.clone();
    old.version = 4;
    old.body = shared::domain::Body::parse("the fourth draft").unwrap();
    let ops = TextOperation::diff(old.body.as_str(), new.body.as_str());
    let change =
        ChangeEvent::written(Some(old), new, "000000000000000000042".into()).with_ops(Some(ops));
    assert_eq!(frames::change(&change, true).to_json(), expected);
    // Without `include: document`, the same frame less the document.
    let mut lean = expected.clone();
    lean.as_object_mut().unwrap().remove("document");
    assert_eq!(frames::change(&change, false).to_json(), lean);
}

#[test]
fn a_document_too_large_for_one_frame_is_left_out() {
    let expected: Value =
        serde_json::from_str(include_str!("fixtures/document_updated.json")).unwrap();
    let mut new: Document = serde_json::from_value(expected["document"].clone()).unwrap();
    new.body = shared::domain::Body::parse("x".repeat(shared::domain::MAX_BODY_BYTES)).unwrap();
    let mut old = new.clone();
    old.version = 4;
    old.body = shared::domain::Body::default();
    let frame = frames::change(&ChangeEvent::written(Some(old), new, "1".into()), true);
    assert!(frame.len() < MAX_FRAME_BYTES);
    let json = frame.to_json();
    assert!(json.get("document").is_none());
    assert_eq!(json["version"], 5);
    assert_eq!(json["changedFields"], serde_json::json!(["body"]));
}
