//! A document, its validated parts, and the access rules that follow from its owner and
//! collaborators.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::{DocumentId, UserId, ValidationError};

/// The longest title, in characters (Unicode scalar values).
pub const MAX_TITLE_CHARS: usize = 200;

/// The largest body, in bytes of UTF-8. 128 KiB keeps a document item, its stream record
/// with both images, its audit diff and a notification frame within DynamoDB's 400 KB item
/// limit and API Gateway's 128 KB WebSocket message limit (frames carry the document only
/// when it fits).
pub const MAX_BODY_BYTES: usize = 128 * 1024;

/// The most collaborators a document may have (each one is a membership item in the AWS
/// store and a reader in the search index).
pub const MAX_COLLABORATORS: usize = 100;

/// A document title: 1 to 200 characters, not blank, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct Title(String);

/// Characters that change the direction of the text around them: a title holding one
/// can display as something other than what it says.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Unicode's Default_Ignorable_Code_Point: characters that display as nothing.
fn is_default_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

impl Title {
    /// Refuses (rather than strips, so what is stored is what was sent) titles that
    /// would display as blank — whitespace and invisible characters only — and titles
    /// with bidirectional control characters.
    pub fn parse(raw: impl Into<String>) -> Result<Self, ValidationError> {
        let raw = raw.into();
        let chars = raw.chars().count();
        if raw.chars().any(is_bidi_control) {
            return Err(ValidationError::new(
                "title",
                "must not contain bidirectional control characters (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069)",
            ));
        }
        if chars == 0
            || raw
                .chars()
                .all(|c| c.is_whitespace() || is_default_ignorable(c))
        {
            return Err(ValidationError::new(
                "title",
                "must not be blank (whitespace or invisible characters only)",
            ));
        }
        if chars > MAX_TITLE_CHARS {
            return Err(ValidationError::new(
                "title",
                format!("must be at most {MAX_TITLE_CHARS} characters (got {chars})"),
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "title",
                "must not contain control characters",
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Title {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A document body: any text up to [`MAX_BODY_BYTES`] bytes of UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct Body(String);

impl Body {
    pub fn parse(raw: impl Into<String>) -> Result<Self, ValidationError> {
        let raw = raw.into();
        if raw.len() > MAX_BODY_BYTES {
            return Err(ValidationError::new(
                "body",
                format!(
                    "must be at most {MAX_BODY_BYTES} bytes of UTF-8 (got {})",
                    raw.len()
                ),
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What a collaborator may do. The owner is not a collaborator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Editor,
    Viewer,
}

/// Collaborators by user id, in a stable (sorted) order.
pub type Collaborators = BTreeMap<UserId, Role>;

/// What a given user may do with a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Owner,
    Editor,
    Viewer,
}

impl Access {
    pub fn can_edit(self) -> bool {
        matches!(self, Access::Owner | Access::Editor)
    }

    pub fn is_owner(self) -> bool {
        self == Access::Owner
    }
}

/// A document as stored, served and carried in stream images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    #[schema(value_type = String, format = Uuid)]
    pub id: DocumentId,
    pub title: Title,
    pub body: Body,
    #[schema(value_type = String)]
    pub owner: UserId,
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Role>)]
    pub collaborators: Collaborators,
    /// Starts at 1 and grows by one with every change, deletion included.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[schema(value_type = String)]
    pub updated_by: UserId,
}

impl Document {
    /// What `user` may do with this document, or `None` when it does not exist for them.
    pub fn access_for(&self, user: &UserId) -> Option<Access> {
        access_of(&self.owner, &self.collaborators, user)
    }

    /// Everyone who may read the document: the owner, then the collaborators.
    pub fn readers(&self) -> impl Iterator<Item = &UserId> {
        std::iter::once(&self.owner).chain(self.collaborators.keys())
    }
}

/// A document without its title and body: who may do what with it, and the version it
/// stands at. What an access check needs, read without the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentHead {
    pub id: DocumentId,
    pub version: u64,
    pub owner: UserId,
    pub collaborators: Collaborators,
}

impl DocumentHead {
    /// What `user` may do with the document, or `None` when it does not exist for them.
    pub fn access_for(&self, user: &UserId) -> Option<Access> {
        access_of(&self.owner, &self.collaborators, user)
    }
}

impl From<Document> for DocumentHead {
    fn from(doc: Document) -> Self {
        Self {
            id: doc.id,
            version: doc.version,
            owner: doc.owner,
            collaborators: doc.collaborators,
        }
    }
}

fn access_of(owner: &UserId, collaborators: &Collaborators, user: &UserId) -> Option<Access> {
    if owner == user {
        return Some(Access::Owner);
    }
    collaborators.get(user).map(|role| match role {
        Role::Editor => Access::Editor,
        Role::Viewer => Access::Viewer,
    })
}

/// Checks a collaborator map against its owner: not too many, and the owner not in it.
pub fn check_collaborators(
    owner: &UserId,
    collaborators: &Collaborators,
) -> Result<(), ValidationError> {
    if collaborators.len() > MAX_COLLABORATORS {
        return Err(ValidationError::new(
            "collaborators",
            format!("at most {MAX_COLLABORATORS} collaborators"),
        ));
    }
    if collaborators.contains_key(owner) {
        return Err(ValidationError::new(
            "collaborators",
            "the owner cannot also be a collaborator",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_bounded_in_characters_not_bytes() {
        assert!(Title::parse("a").is_ok());
        assert!(Title::parse("é".repeat(200)).is_ok());
        assert!(Title::parse("é".repeat(201)).is_err());
        assert!(Title::parse("").is_err());
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse("a\nb").is_err());
    }

    #[test]
    fn invisible_only_titles_are_blank_and_bidi_controls_are_refused() {
        for blank in [
            "\u{200B}",
            "\u{200B}\u{200C}\u{200D}",
            " \u{2060}\u{FEFF} ",
            "\u{FE0F}",
            "\u{00AD}\u{3164}",
        ] {
            let err = Title::parse(blank).unwrap_err();
            assert!(err.message.contains("blank"), "{blank:?}: {err}");
        }
        for bidi in [
            "abc\u{202E}def",
            "\u{2066}x\u{2069}",
            "a\u{200F}",
            "\u{061C}b",
        ] {
            let err = Title::parse(bidi).unwrap_err();
            assert!(err.message.contains("bidirectional"), "{bidi:?}: {err}");
        }
        // Invisible characters among visible ones are kept (emoji sequences use them).
        assert!(Title::parse("👩\u{200D}💻 plan").is_ok());
        assert!(Title::parse("שלום plan").is_ok());
    }

    #[test]
    fn bodies_are_bounded_in_bytes() {
        assert!(Body::parse("x".repeat(MAX_BODY_BYTES)).is_ok());
        assert!(Body::parse("x".repeat(MAX_BODY_BYTES + 1)).is_err());
    }

    #[test]
    fn roles_decide_access() {
        let owner = UserId::parse("ann").unwrap();
        let editor = UserId::parse("bob").unwrap();
        let viewer = UserId::parse("cat").unwrap();
        let now = Utc::now();
        let doc = Document {
            id: DocumentId::generate(),
            title: Title::parse("t").unwrap(),
            body: Body::default(),
            owner: owner.clone(),
            collaborators: [
                (editor.clone(), Role::Editor),
                (viewer.clone(), Role::Viewer),
            ]
            .into_iter()
            .collect(),
            version: 1,
            created_at: now,
            updated_at: now,
            updated_by: owner.clone(),
        };
        assert_eq!(doc.access_for(&owner), Some(Access::Owner));
        assert_eq!(doc.access_for(&editor), Some(Access::Editor));
        assert_eq!(doc.access_for(&viewer), Some(Access::Viewer));
        assert_eq!(doc.access_for(&UserId::parse("dan").unwrap()), None);
        assert_eq!(doc.readers().count(), 3);
    }
}
