//! Identifiers: documents are named by UUIDv7 (time-ordered, so "newest first" is a key
//! order), users by an opaque string chosen by the identity provider.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::ValidationError;

/// A document's identifier: a UUIDv7, rendered hyphenated and lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DocumentId(Uuid);

impl DocumentId {
    /// A fresh identifier; later calls in this process sort after earlier ones.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// Parses the hyphenated form. Only version 7 UUIDs name documents.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let uuid =
            Uuid::try_parse(raw).map_err(|_| ValidationError::new("id", "must be a UUID"))?;
        if uuid.get_version_num() != 7 {
            return Err(ValidationError::new("id", "must be a version 7 UUID"));
        }
        Ok(Self(uuid))
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

impl FromStr for DocumentId {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for DocumentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The longest user id accepted, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;

/// A user's identifier: the `sub` claim of their token. 1..=128 characters of
/// `A-Z a-z 0-9 . _ - @ : +`, so it is safe in keys, URLs and log lines.
///
/// Shared, not copied: every subscription and mailbox of a user's connections holds the
/// same text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(Arc<str>);

impl UserId {
    pub fn parse(raw: impl Into<String>) -> Result<Self, ValidationError> {
        let raw = raw.into();
        if raw.is_empty() || raw.len() > MAX_USER_ID_LEN {
            return Err(ValidationError::new(
                "userId",
                "must be 1 to 128 characters long",
            ));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@:+".contains(&b))
        {
            return Err(ValidationError::new(
                "userId",
                "may contain only letters, digits and . _ - @ : +",
            ));
        }
        Ok(Self(raw.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for UserId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for UserId {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_are_v7_and_ordered() {
        let a = DocumentId::generate();
        let b = DocumentId::generate();
        assert!(a < b);
        assert_eq!(DocumentId::parse(&a.to_string()).unwrap(), a);
        assert!(DocumentId::parse("not-a-uuid").is_err());
        assert!(DocumentId::parse(&Uuid::new_v4().to_string()).is_err());
    }

    #[test]
    fn user_ids_reject_hostile_characters() {
        assert!(UserId::parse("alice@example.com").is_ok());
        for bad in ["", "a b", "a/b", "a\nb", "ü", &"x".repeat(129)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
