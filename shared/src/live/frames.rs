//! The JSON text frames the server sends over the WebSocket contract ([`Frame`], built
//! here and serialized once however many connections receive it), in both deployments:
//! the local `/ws` driver and API Gateway's `post_to_connection` push the same bytes.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::domain::{
    Analysis, AuditEntry, ChangeEvent, ChangeKind, Collaborators, Document, DocumentId, Field,
    TextOperation, Title, UserId,
};
use crate::ports::PresenceCursor;

/// The largest frame accepted from a client and the largest notification that carries
/// the document (API Gateway's WebSocket message limit, kept in both modes).
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

/// A serialized server frame: UTF-8 JSON, cheap to clone, so one change's frame is
/// shared by every connection that receives it.
///
/// It is kept as it goes on a WebSocket from a server: the text frame's header (final,
/// unmasked), then the JSON. The local driver writes [`wire`](Frame::wire) to every
/// socket as it is, encoding nothing per connection; API Gateway's push takes the JSON
/// alone ([`bytes`](Frame::bytes)).
#[derive(Clone)]
pub struct Frame {
    wire: Bytes,
    /// Where the JSON starts in `wire`.
    header: u8,
}

/// The longest header of a WebSocket frame a server sends (no mask): two bytes and an
/// eight-byte length.
const MAX_HEADER: usize = 10;

/// The header of a final, unmasked text frame of `len` bytes (RFC 6455 §5.2), right-
/// aligned in the array; returns it and its length.
fn text_frame_header(len: usize) -> ([u8; MAX_HEADER], usize) {
    const FIN_TEXT: u8 = 0x81;
    let mut header = [0; MAX_HEADER];
    let used = if len < 126 {
        header[8] = FIN_TEXT;
        header[9] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        header[6] = FIN_TEXT;
        header[7] = 126;
        header[8..].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        header[0] = FIN_TEXT;
        header[1] = 127;
        header[2..].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (header, used)
}

impl Frame {
    pub(crate) fn from_json(value: &impl Serialize) -> Self {
        // Room for the longest header first, so the JSON is written once, in place.
        let mut wire = Vec::with_capacity(256);
        wire.resize(MAX_HEADER, 0);
        serde_json::to_writer(&mut wire, value).expect("frames serialize");
        let (header, used) = text_frame_header(wire.len() - MAX_HEADER);
        let start = MAX_HEADER - used;
        wire[start..MAX_HEADER].copy_from_slice(&header[start..]);
        Self {
            wire: Bytes::from(wire).slice(start..),
            header: used as u8,
        }
    }

    /// The frame's bytes (UTF-8 JSON), shared, not copied.
    pub fn bytes(&self) -> Bytes {
        self.wire.slice(usize::from(self.header)..)
    }

    /// The whole WebSocket text frame as a server sends it: header, then the JSON.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    fn json(&self) -> &[u8] {
        &self.wire[usize::from(self.header)..]
    }

    pub fn len(&self) -> usize {
        self.json().len()
    }

    pub fn is_empty(&self) -> bool {
        self.json().is_empty()
    }

    /// The frame as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.json()).expect("frames are built from strings")
    }

    /// The frame as a JSON value (for tests and logs).
    pub fn to_json(&self) -> Value {
        serde_json::from_slice(self.json()).expect("frames are JSON")
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl Eq for Frame {}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.as_str();
        if text.len() > 200 {
            let head: String = text.chars().take(200).collect();
            write!(f, "Frame({head}… {} bytes)", text.len())
        } else {
            write!(f, "Frame({text})")
        }
    }
}

/// The stable `code` of an error frame. Clients may branch on it; messages are for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not a JSON object, a binary frame, or a field missing or of the wrong shape.
    MalformedFrame,
    /// An `action` the server does not know.
    UnknownAction,
    /// A frame over [`MAX_FRAME_BYTES`].
    FrameTooLarge,
    /// Too many frames too fast; persisting closes the connection.
    RateLimited,
    /// The document does not exist, or not for this user (the two are not told apart).
    DocumentNotFound,
    /// The connection already follows as many documents as it may.
    TooManySubscriptions,
    /// An `auth` token that does not verify.
    InvalidToken,
    /// An `auth` token that has already expired.
    TokenExpired,
    /// An `auth` token for another user than the connection's.
    WrongUser,
    /// Some missed changes could not be replayed (the audit trail did not hold them in
    /// time): fetch the document again.
    ReplayIncomplete,
    /// A backend is temporarily unavailable: try again.
    Unavailable,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorFrame<'a> {
    r#type: &'static str,
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    document_id: Option<&'a DocumentId>,
}

/// `{"type":"error","code","message"}`, with the `documentId` the error is about when
/// there is one.
pub fn error(code: ErrorCode, message: &str, document: Option<&DocumentId>) -> Frame {
    Frame::from_json(&ErrorFrame {
        r#type: "error",
        code,
        message,
        document_id: document,
    })
}

/// `{"type":"pong"}`.
pub fn pong() -> Frame {
    Frame::from_json(&serde_json::json!({"type": "pong"}))
}

/// `{"type":"subscribed","documentId","version"}`: live frames follow from `version`.
pub fn subscribed(document: &DocumentId, version: u64) -> Frame {
    Frame::from_json(&serde_json::json!({
        "type": "subscribed",
        "documentId": document,
        "version": version,
    }))
}

/// `{"type":"unsubscribed","documentId"}`: no frames of the document follow.
pub fn unsubscribed(document: &DocumentId) -> Frame {
    Frame::from_json(&serde_json::json!({"type": "unsubscribed", "documentId": document}))
}

/// `{"type":"authenticated","expiresAt"}`: the connection now lives until `expires_at`.
pub fn authenticated(expires_at: DateTime<Utc>) -> Frame {
    Frame::from_json(&serde_json::json!({"type": "authenticated", "expiresAt": expires_at}))
}

/// `{"type":"access.revoked","documentId"}`.
pub fn access_revoked(document: &DocumentId) -> Frame {
    Frame::from_json(&serde_json::json!({"type": "access.revoked", "documentId": document}))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ChangeFrame<'a> {
    r#type: &'static str,
    document_id: &'a DocumentId,
    version: u64,
    actor: &'a UserId,
    at: &'a DateTime<Utc>,
    changed_fields: &'a [Field],
    #[serde(skip_serializing_if = "Option::is_none")]
    base_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ops: Option<&'a TextOperation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a Title>,
    #[serde(skip_serializing_if = "Option::is_none")]
    collaborators: Option<&'a Collaborators>,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<&'a Document>,
}

impl<'a> ChangeFrame<'a> {
    fn of(change: &'a ChangeEvent) -> Self {
        let new = change
            .new
            .as_ref()
            .filter(|_| change.kind == ChangeKind::Updated);
        let ops = change.ops.as_ref().filter(|_| change.touches(Field::Body));
        Self {
            r#type: change.kind.frame_type(),
            document_id: &change.document_id,
            version: change.version,
            actor: &change.actor,
            at: &change.at,
            changed_fields: &change.changed_fields,
            base_version: ops.map(|_| change.version - 1),
            ops,
            title: new
                .filter(|_| change.touches(Field::Title))
                .map(|d| &d.title),
            collaborators: new
                .filter(|_| change.touches(Field::Collaborators))
                .map(|d| &d.collaborators),
            document: None,
        }
    }
}

/// `{"type":"document.*","documentId","version","actor","at","changedFields",…}` for a
/// live change. An update carries `baseVersion` and `ops` (version - 1 → version) when
/// the body changed, `title` when the title changed and `collaborators` when they did.
/// With `include_document` the document (its new state) is added when the frame stays
/// under [`MAX_FRAME_BYTES`]; a deletion never carries it.
pub fn change(change: &ChangeEvent, include_document: bool) -> Frame {
    let mut frame = ChangeFrame::of(change);
    if include_document && let Some(document) = change.new.as_ref() {
        frame.document = Some(document);
        let full = Frame::from_json(&frame);
        if full.len() < MAX_FRAME_BYTES {
            return full;
        }
        frame.document = None;
    }
    Frame::from_json(&frame)
}

/// The same frame as [`change`], without the document, rebuilt from the audit trail.
pub fn replayed(entry: &AuditEntry) -> Frame {
    let ops = entry
        .detail
        .ops
        .as_ref()
        .filter(|_| entry.changed_fields.contains(&Field::Body));
    let title = entry
        .detail
        .title
        .as_ref()
        .and_then(|t| t.to.as_deref())
        .and_then(|t| Title::parse(t).ok());
    Frame::from_json(&ChangeFrame {
        r#type: entry.action.frame_type(),
        document_id: &entry.document_id,
        version: entry.version,
        actor: &entry.actor,
        at: &entry.at,
        changed_fields: &entry.changed_fields,
        base_version: ops.map(|_| entry.version - 1),
        ops,
        title: title.as_ref(),
        collaborators: None,
        document: None,
    })
}

/// `{"type":"presence","documentId","user","cursor"}`: where another subscriber is.
pub fn presence(document: &DocumentId, user: &UserId, cursor: Option<PresenceCursor>) -> Frame {
    Frame::from_json(&serde_json::json!({
        "type": "presence",
        "documentId": document,
        "user": user,
        "cursor": cursor,
    }))
}

/// `{"type":"presence.left","documentId","user"}`: the user no longer follows the document.
pub fn presence_left(document: &DocumentId, user: &UserId) -> Frame {
    Frame::from_json(&serde_json::json!({
        "type": "presence.left",
        "documentId": document,
        "user": user,
    }))
}

/// `{"type":"analysis.completed","documentId","version","analysis"}`.
pub fn analysis_completed(analysis: &Analysis) -> Frame {
    Frame::from_json(&serde_json::json!({
        "type": "analysis.completed",
        "documentId": analysis.document_id,
        "version": analysis.version,
        "analysis": analysis,
    }))
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    /// A frame whose JSON is exactly `len` bytes (a string of `len - 2` letters).
    fn frame_of(len: usize) -> Frame {
        Frame::from_json(&"a".repeat(len - 2))
    }

    #[test]
    fn the_wire_form_is_a_final_unmasked_text_frame_with_the_shortest_length() {
        for (len, header) in [
            (2, vec![0x81, 2]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_535, vec![0x81, 126, 0xff, 0xff]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let frame = frame_of(len);
            assert_eq!(frame.len(), len);
            assert_eq!(&frame.wire()[..header.len()], &header[..], "{len} bytes");
            assert_eq!(&frame.wire()[header.len()..], frame.as_str().as_bytes());
            assert_eq!(frame.bytes().len(), len);
            assert_eq!(frame.bytes(), frame.as_str().as_bytes());
        }
    }

    #[test]
    fn frames_are_equal_by_their_json() {
        assert_eq!(frame_of(300), frame_of(300));
        assert_ne!(frame_of(300), frame_of(301));
        assert_eq!(frame_of(10).to_json(), Value::String("a".repeat(8)));
    }
}
