//! Cache keys: a bucket and an object key inside it.

use std::fmt;

use crate::error::Error;

/// Longest bucket or key part, in bytes. The L2 record header stores each length in a `u16`.
pub const MAX_KEY_PART_BYTES: usize = u16::MAX as usize;

/// Identifies one cached object: `(bucket, key)`, like an object-store path.
///
/// Both parts are arbitrary UTF-8. They are kept separate (not joined with `/`) so that
/// `("a/b", "c")` and `("a", "b/c")` are different keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey {
    bucket: String,
    key: String,
}

impl CacheKey {
    /// A key for object `key` in `bucket`.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    /// The bucket part.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key part.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Size of both parts in bytes (what the key costs in a record or in RAM).
    pub fn encoded_len(&self) -> usize {
        self.bucket.len() + self.key.len()
    }

    /// Rejects keys whose parts do not fit the on-disk record format.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        for (part, value) in [("bucket", &self.bucket), ("key", &self.key)] {
            if value.len() > MAX_KEY_PART_BYTES {
                return Err(Error::KeyTooLong {
                    part,
                    len: value.len(),
                    max: MAX_KEY_PART_BYTES,
                });
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{:?}", self.bucket, self.key)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_the_slash_in_different_parts_are_different() {
        assert_ne!(CacheKey::new("a/b", "c"), CacheKey::new("a", "b/c"));
    }

    #[test]
    fn an_oversized_key_part_is_rejected() {
        let long = "x".repeat(MAX_KEY_PART_BYTES + 1);
        assert!(matches!(
            CacheKey::new("b", long).validate(),
            Err(Error::KeyTooLong { part: "key", .. })
        ));
        assert!(CacheKey::new("b", "k").validate().is_ok());
    }
}
