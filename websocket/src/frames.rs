//! The JSON text frames of the WebSocket contract: what clients send ([`ClientFrame`],
//! parsed at the edge into domain types) and what the server sends (re-exported from
//! [`shared::live::frames`], where both deployments' notifiers build them).

use serde::Deserialize;
use serde_json::Value;

use shared::domain::DocumentId;
pub use shared::live::frames::*;
use shared::ports::PresenceCursor;

/// A frame from a client, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    Subscribe {
        document: DocumentId,
        since_version: Option<u64>,
        /// `"include":"document"`: change frames carry the whole document.
        include_document: bool,
    },
    Presence {
        document: DocumentId,
        cursor: Option<PresenceCursor>,
    },
    Unsubscribe {
        document: DocumentId,
    },
    Ping,
    Auth {
        token: String,
    },
}

/// Why a client frame was refused, as the error frame will say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRejection {
    pub code: ErrorCode,
    pub message: String,
}

impl FrameRejection {
    fn malformed(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::MalformedFrame,
            message: message.into(),
        }
    }

    pub fn to_frame(&self) -> Frame {
        error(self.code, &self.message, None)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribeFields {
    document_id: DocumentId,
    #[serde(default)]
    since_version: Option<u64>,
    #[serde(default)]
    include: Option<Include>,
}

/// What a subscription's frames include beyond the change.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Include {
    Document,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PresenceFields {
    document_id: DocumentId,
    cursor: Option<CursorFields>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorFields {
    anchor: u64,
    head: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UnsubscribeFields {
    document_id: DocumentId,
}

#[derive(Deserialize)]
struct AuthFields {
    token: String,
}

impl ClientFrame {
    /// Parses a text frame: size first, then JSON, then the `action` and its fields.
    pub fn parse(text: &str, max_bytes: usize) -> Result<Self, FrameRejection> {
        if text.len() > max_bytes {
            return Err(FrameRejection {
                code: ErrorCode::FrameTooLarge,
                message: format!(
                    "frames are limited to {max_bytes} bytes (got {})",
                    text.len()
                ),
            });
        }
        let value: Value = serde_json::from_str(text)
            .map_err(|e| FrameRejection::malformed(format!("not valid JSON: {e}")))?;
        let Value::Object(ref fields) = value else {
            return Err(FrameRejection::malformed("a frame must be a JSON object"));
        };
        let action = match fields.get("action") {
            Some(Value::String(action)) => action.as_str(),
            Some(_) => return Err(FrameRejection::malformed("`action` must be a string")),
            None => return Err(FrameRejection::malformed("missing `action`")),
        };
        // serde quotes a value of the wrong type whole (and escaped, so larger than it
        // came): keep the error frame small whatever the client sent.
        let fields_of = |e: serde_json::Error| {
            FrameRejection::malformed(
                format!("{action}: {e}")
                    .chars()
                    .take(256)
                    .collect::<String>(),
            )
        };
        match action {
            "subscribe" => {
                let f: SubscribeFields =
                    serde_json::from_value(value.clone()).map_err(fields_of)?;
                Ok(ClientFrame::Subscribe {
                    document: f.document_id,
                    since_version: f.since_version,
                    include_document: matches!(f.include, Some(Include::Document)),
                })
            }
            "presence" => {
                let f: PresenceFields = serde_json::from_value(value.clone()).map_err(fields_of)?;
                // A missing `cursor` is refused: `null` says "no cursor" explicitly.
                if !fields.contains_key("cursor") {
                    return Err(FrameRejection::malformed(
                        "presence: missing `cursor` (an {anchor, head} object or null)",
                    ));
                }
                Ok(ClientFrame::Presence {
                    document: f.document_id,
                    cursor: f.cursor.map(|c| PresenceCursor {
                        anchor: c.anchor,
                        head: c.head,
                    }),
                })
            }
            "unsubscribe" => {
                let f: UnsubscribeFields =
                    serde_json::from_value(value.clone()).map_err(fields_of)?;
                Ok(ClientFrame::Unsubscribe {
                    document: f.document_id,
                })
            }
            "ping" => Ok(ClientFrame::Ping),
            "auth" => {
                let f: AuthFields = serde_json::from_value(value.clone()).map_err(fields_of)?;
                Ok(ClientFrame::Auth { token: f.token })
            }
            other => {
                let shown: String = other.chars().take(64).collect();
                Err(FrameRejection {
                    code: ErrorCode::UnknownAction,
                    message: format!(
                        "unknown action `{shown}`: expected subscribe, unsubscribe, presence, ping or auth"
                    ),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "01936f0e-7c4a-7b2e-8f00-000000000001";

    #[test]
    fn client_frames_parse() {
        let doc = DocumentId::parse(DOC).unwrap();
        assert_eq!(
            ClientFrame::parse(
                &format!(r#"{{"action":"subscribe","documentId":"{DOC}","sinceVersion":3}}"#),
                MAX_FRAME_BYTES
            ),
            Ok(ClientFrame::Subscribe {
                document: doc,
                since_version: Some(3),
                include_document: false,
            })
        );
        assert_eq!(
            ClientFrame::parse(
                &format!(r#"{{"action":"unsubscribe","documentId":"{DOC}"}}"#),
                MAX_FRAME_BYTES
            ),
            Ok(ClientFrame::Unsubscribe { document: doc })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"action":"ping"}"#, MAX_FRAME_BYTES),
            Ok(ClientFrame::Ping)
        );
        assert_eq!(
            ClientFrame::parse(r#"{"action":"auth","token":"t"}"#, MAX_FRAME_BYTES),
            Ok(ClientFrame::Auth { token: "t".into() })
        );
    }

    #[test]
    fn bad_frames_get_stable_codes() {
        let code = |text: &str| ClientFrame::parse(text, 64).unwrap_err().code;
        assert_eq!(code("not json"), ErrorCode::MalformedFrame);
        assert_eq!(code("[1,2]"), ErrorCode::MalformedFrame);
        assert_eq!(code(r#"{"documentId":"x"}"#), ErrorCode::MalformedFrame);
        assert_eq!(code(r#"{"action":7}"#), ErrorCode::MalformedFrame);
        assert_eq!(code(r#"{"action":"subscribe"}"#), ErrorCode::MalformedFrame);
        assert_eq!(
            code(r#"{"action":"subscribe","documentId":"nope"}"#),
            ErrorCode::MalformedFrame
        );
        assert_eq!(code(r#"{"action":"dance"}"#), ErrorCode::UnknownAction);
        assert_eq!(
            code(&format!(
                r#"{{"action":"ping","pad":"{}"}}"#,
                "x".repeat(64)
            )),
            ErrorCode::FrameTooLarge
        );
    }

    #[test]
    fn a_rejection_stays_small_whatever_the_frame_quoted() {
        // serde quotes a value of the wrong type whole, escaped: larger than it came.
        let frame = format!(
            r#"{{"action":"subscribe","documentId":"{}","sinceVersion":"{}"}}"#,
            uuid::Uuid::now_v7(),
            "\\f".repeat(40_000)
        );
        let rejection = ClientFrame::parse(&frame, 128 * 1024).unwrap_err();
        assert_eq!(rejection.code, ErrorCode::MalformedFrame);
        assert!(
            rejection.message.chars().count() <= 256,
            "{}",
            rejection.message.len()
        );
    }

    #[test]
    fn error_frames_have_the_contract_shape() {
        let frame = error(ErrorCode::DocumentNotFound, "no such document", None).to_json();
        assert_eq!(
            frame,
            serde_json::json!({"type":"error","code":"document_not_found","message":"no such document"})
        );
    }
}
