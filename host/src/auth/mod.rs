//! API keys → callers. Keys live in the database as SHA-256 digests; the
//! gateway resolves them through an in-memory cache that the admin API
//! clears whenever keys, users, tenants or groups change, so a revoked key
//! stops working at once.

use crate::config::model_matches;
use crate::plugins::bindings::Caller;
use crate::store::Store;
use crate::store::accounts::KeyGrant;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Most keys (known or unknown) remembered before the cache starts over.
const CACHE_LIMIT: usize = 100_000;

/// A client key's identity and permissions.
#[derive(Debug)]
pub struct ApiKey {
    /// Shared: every call's access line and plugin request hold it.
    pub caller: Arc<Caller>,
    /// The caller's group's price multiplier, in millionths.
    pub group_ratio: i64,
    models: Vec<String>,
    pub tags: Vec<String>,
    expires_at: Option<i64>,
    inactive: Option<&'static str>,
}

impl ApiKey {
    pub fn may_use(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| model_matches(p, model))
    }

    fn from_grant(grant: KeyGrant) -> Self {
        ApiKey {
            caller: Arc::new(Caller {
                tenant: grant.tenant_id,
                user: grant.user_id,
                group: grant.group_id,
                key_id: grant.key_id,
            }),
            group_ratio: grant.group_ratio,
            models: grant.models,
            tags: grant.tags,
            expires_at: grant.expires_at,
            inactive: grant.inactive,
        }
    }
}

pub struct KeyStore {
    store: Store,
    /// Digest → the key, or `None` for a digest no key has.
    cache: RwLock<HashMap<[u8; 32], Option<Arc<ApiKey>>>>,
}

impl KeyStore {
    pub fn new(store: Store) -> Self {
        KeyStore {
            store,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Forgets every cached key: the next use of each reads the database.
    pub fn invalidate(&self) {
        self.cache.write().expect("key cache lock").clear();
    }

    /// The key an `Authorization: Bearer …` header names, or else an
    /// `x-api-key` header (Anthropic's SDKs send either), if it may be used
    /// now.
    pub async fn authenticate(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Arc<ApiKey>, AuthError> {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let key = header(axum::http::header::AUTHORIZATION.as_str())
            .and_then(bearer)
            .or_else(|| header("x-api-key").map(str::trim).filter(|k| !k.is_empty()))
            .ok_or(AuthError::Missing)?;
        let key = self.find(key).await?.ok_or(AuthError::Unknown)?;
        if let Some(what) = key.inactive {
            return Err(AuthError::Inactive(what));
        }
        if key
            .expires_at
            .is_some_and(|at| at <= crate::store::now_ms())
        {
            return Err(AuthError::Expired);
        }
        Ok(key)
    }

    async fn find(&self, key: &str) -> Result<Option<Arc<ApiKey>>, AuthError> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        if let Some(known) = self.cache.read().expect("key cache lock").get(&digest) {
            return Ok(known.clone());
        }
        let grant = self
            .store
            .grant(&hex::encode(digest))
            .await
            .map_err(|error| {
                tracing::error!(%error, "looking up an API key failed");
                AuthError::Unavailable
            })?;
        let found = grant.map(|grant| Arc::new(ApiKey::from_grant(grant)));
        let mut cache = self.cache.write().expect("key cache lock");
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(digest, found.clone());
        Ok(found)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Unknown,
    /// The key, its user or its tenant is disabled.
    Inactive(&'static str),
    Expired,
    /// The database could not be asked.
    Unavailable,
}

/// The key in an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, key) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer("Bearer sk-1"), Some("sk-1"));
        assert_eq!(bearer("bearer  sk-1 "), Some("sk-1"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
