//! L3: the cold tier behind the cache.
//!
//! [`Backend`] is the boundary: the cache asks it for whole values by key. There are two real
//! implementations in the design: [`DirectoryStore`] here (the default, a checksummed object
//! store on a filesystem) and the node agent's EC archive reader (which reconstructs a stripe
//! range from k healthy shards). A backend owns the integrity of what it returns: the cache
//! trusts `Ok(Some(bytes))` as the current value of the key.

mod directory;

use std::future::Future;

use bytes::Bytes;

pub use directory::DirectoryStore;

use crate::error::Error;
use crate::key::CacheKey;

/// A cold store of whole values by key.
///
/// "Not found" is `Ok(None)` from [`Backend::get`]; every `Err` is a failure the caller sees
/// (the cache does not turn backend errors into misses, because a miss would hide data loss).
/// A read-only backend (the EC archive) answers `put`/`delete` with
/// [`Error::ReadOnlyBackend`]. Implementations from other crates wrap their errors in
/// [`Error::Backend`].
pub trait Backend: Send + Sync + 'static {
    /// The backend's name, for errors and logs.
    fn name(&self) -> &'static str;

    /// The value stored under `key`, `Ok(None)` if there is none.
    fn get(&self, key: &CacheKey) -> impl Future<Output = Result<Option<Bytes>, Error>> + Send;

    /// Stores `value` under `key`, durably, replacing any previous value.
    fn put(&self, key: &CacheKey, value: Bytes) -> impl Future<Output = Result<(), Error>> + Send;

    /// Deletes `key`, durably. Deleting a missing key succeeds.
    fn delete(&self, key: &CacheKey) -> impl Future<Output = Result<(), Error>> + Send;

    /// Whether `key` has a value. The default reads it.
    fn contains(&self, key: &CacheKey) -> impl Future<Output = Result<bool, Error>> + Send {
        async move { Ok(self.get(key).await?.is_some()) }
    }
}
