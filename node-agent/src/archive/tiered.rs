//! The archive read path through the three-tier cache library (`couchestor-cache`): decoded
//! stripes are kept in L1 (RAM) and L2 (local disk), and L3 is the erasure-coded archive
//! itself — a miss fetches k shards from the agents (reconstructing when columns are bad).
//!
//! Keys: bucket = the archive's cache bucket (volume id and a per-destage uid, so a reused
//! volume id can never be served from an older archive's cached stripes), key = the stripe
//! number. The archive is read-only: puts and deletes through this backend are refused.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use couchestor_cache::{Backend, Cache, CacheKey, Error as CacheError};

use super::stripes::Stripes;
use super::{Error, Stripe};

/// L3 of the node's stripe cache: the columns of every archive registered with it.
#[derive(Debug, Default)]
pub struct EcBackend {
    archives: RwLock<HashMap<String, Arc<Stripes>>>,
}

/// A stripe key that is not a stripe number, or a bucket no archive registered.
#[derive(Debug, thiserror::Error)]
#[error("erasure-coded archive: {0}")]
struct KeyError(String);

impl Backend for EcBackend {
    fn name(&self) -> &'static str {
        "ec-archive"
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, CacheError> {
        let backend_err = |source: Box<dyn std::error::Error + Send + Sync>| CacheError::Backend {
            backend: "ec-archive",
            source,
        };
        let stripes = self
            .archives
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key.bucket())
            .cloned();
        let Some(stripes) = stripes else {
            return Ok(None);
        };
        let stripe: u64 = key.key().parse().map_err(|_| {
            backend_err(Box::new(KeyError(format!(
                "bad stripe key {:?}",
                key.key()
            ))))
        })?;
        if stripe >= stripes.layout.stripes() {
            return Ok(None);
        }
        let data = stripes
            .fetch_stripe(stripe)
            .await
            .map_err(|e| backend_err(Box::new(e)))?;
        Ok(Some(Bytes::from(Arc::unwrap_or_clone(data))))
    }

    async fn put(&self, _key: &CacheKey, _value: Bytes) -> Result<(), CacheError> {
        Err(CacheError::ReadOnlyBackend {
            backend: "ec-archive",
        })
    }

    async fn delete(&self, _key: &CacheKey) -> Result<(), CacheError> {
        Err(CacheError::ReadOnlyBackend {
            backend: "ec-archive",
        })
    }
}

/// The node's stripe cache (cheap to clone; one per process, shared by every export).
#[derive(Clone)]
pub struct TieredCache {
    cache: Cache<EcBackend>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache").finish_non_exhaustive()
    }
}

impl TieredCache {
    /// Wraps a cache opened with [`EcBackend`] as its backend.
    pub fn new(cache: Cache<EcBackend>) -> Self {
        Self { cache }
    }

    /// The underlying cache (metrics, direct lookups in tests).
    pub fn cache(&self) -> &Cache<EcBackend> {
        &self.cache
    }

    pub(super) fn backend_register(&self, bucket: &str, stripes: Arc<Stripes>) {
        if let Some(backend) = self.cache.backend() {
            backend
                .archives
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(bucket.to_owned(), stripes);
        }
    }
}

/// One reader's view of the tiered cache.
#[derive(Debug, Clone)]
pub struct TieredStripes {
    pub(super) cache: TieredCache,
    pub(super) bucket: String,
}

impl TieredStripes {
    /// The stripe from L1, L2 or (on a miss) the archive's columns.
    pub(super) async fn stripe(&self, stripe: u64) -> Result<Stripe, Error> {
        let key = CacheKey::new(self.bucket.clone(), stripe.to_string());
        match self.cache.cache.get(&key).await {
            Ok(Some(entry)) => Ok(Arc::new(entry.data().to_vec())),
            Ok(None) => Err(Error::Task {
                volume: self.bucket.clone(),
                stripe,
                reason: "the cache's archive backend has no such stripe".into(),
            }),
            Err(CacheError::Backend { source, .. }) => match source.downcast::<Error>() {
                // The archive's own error (e.g. too many columns lost), unchanged.
                Ok(e) => Err(*e),
                Err(other) => Err(Error::Task {
                    volume: self.bucket.clone(),
                    stripe,
                    reason: other.to_string(),
                }),
            },
            Err(e) => Err(Error::Task {
                volume: self.bucket.clone(),
                stripe,
                reason: format!("stripe cache: {e}"),
            }),
        }
    }
}
