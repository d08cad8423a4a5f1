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

impl Title {
    pub fn parse(raw: impl Into<String>) -> Result<Self, ValidationError> {
        let raw = raw.into();
        let chars = raw.chars().count();
        if chars == 0 || raw.trim().is_empty() {
            return Err(ValidationError::new("title", "must not be blank"));
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
        if &self.owner == user {
            return Some(Access::Owner);
        }
        self.collaborators.get(user).map(|role| match role {
            Role::Editor => Access::Editor,
            Role::Viewer => Access::Viewer,
        })
    }

    /// Everyone who may read the document: the owner, then the collaborators.
    pub fn readers(&self) -> impl Iterator<Item = &UserId> {
        std::iter::once(&self.owner).chain(self.collaborators.keys())
    }
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
