//! API keys → callers. Keys live in the database as SHA-256 digests; the
//! gateway resolves them through an in-memory cache that the admin API
//! clears whenever keys, users, tenants or groups change, so a revoked key
//! stops working at once.
//!
//! The cache is keyed by the key as sent, not by its digest: a hit then
//! costs no SHA-256 (little on a CPU with SHA instructions, 3.5k
//! instructions on one without, 5 % of a whole proxied call). The process
//! holds the key in the request's headers anyway.
//!
//! Each thread has its own cache: a shared one's lock (and the shared key's
//! reference count) would bounce between the worker threads' cores on
//! every call.

use crate::config::model_matches;
use crate::plugins::bindings::Caller;
use crate::store::Store;
use crate::store::accounts::{KeyGrant, digest};
use axum::http::HeaderName;
use axum::http::header::AUTHORIZATION;
use crossbeam_utils::CachePadded;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use thread_local::ThreadLocal;

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
    /// Bumped by [`KeyStore::invalidate`]: a cache filled under an earlier
    /// generation is stale.
    generation: AtomicU64,
    caches: ThreadLocal<CachePadded<RefCell<KeyCache>>>,
}

/// One thread's keys: key as sent → the key, or `None` where no key has it.
#[derive(Default)]
struct KeyCache {
    generation: u64,
    keys: HashMap<Box<str>, Option<Arc<ApiKey>>>,
}

impl KeyStore {
    pub fn new(store: Store) -> Self {
        KeyStore {
            store,
            generation: AtomicU64::new(0),
            caches: ThreadLocal::new(),
        }
    }

    /// Forgets every cached key: the next use of each reads the database.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The key an `Authorization: Bearer …` header names, or else an
    /// `x-api-key` header (Anthropic's SDKs send either), if it may be used
    /// now.
    pub async fn authenticate(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Arc<ApiKey>, AuthError> {
        // Constant names: a name given as a string is parsed and hashed on each use.
        const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
        let header = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let key = header(AUTHORIZATION)
            .and_then(bearer)
            .or_else(|| header(X_API_KEY).map(str::trim).filter(|k| !k.is_empty()))
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
        let generation = self.generation.load(Ordering::Acquire);
        {
            let mut cache = self.caches.get_or_default().borrow_mut();
            if cache.generation != generation {
                cache.keys.clear();
                cache.generation = generation;
            }
            if let Some(known) = cache.keys.get(key) {
                return Ok(known.clone());
            }
        }
        let grant = self.store.grant(&digest(key)).await.map_err(|error| {
            tracing::error!(%error, "looking up an API key failed");
            AuthError::Unavailable
        })?;
        let found = grant.map(|grant| Arc::new(ApiKey::from_grant(grant)));
        // Kept only if no change came while the database was read: the
        // answer may predate it.
        let mut cache = self.caches.get_or_default().borrow_mut();
        if cache.generation == generation && self.generation.load(Ordering::Acquire) == generation {
            if cache.keys.len() >= CACHE_LIMIT {
                cache.keys.clear();
            }
            cache.keys.insert(key.into(), found.clone());
        }
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
    use crate::store::accounts::{KeyUpdate, NewKey};
    use crate::store::testing::stores;
    use std::sync::Barrier;

    /// Two threads, each with its own cache, authenticate a key; it is
    /// disabled; the next authentication on each is refused.
    ///
    /// The threads run their calls on a runtime that keeps running while
    /// they wait at a barrier: sqlx hands a released connection back to
    /// its pool from a task spawned on the releasing thread's runtime, and
    /// a current-thread runtime per thread, parked at the barrier, held
    /// them until the pool's acquire timed out.
    #[test]
    fn a_change_reaches_the_cache_of_every_thread() {
        let setup = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let runtime = setup.handle();
        let (store, _dir) = setup.block_on(stores()).remove(0);
        let (key_id, key) = setup.block_on(async {
            store.put_group("g", 1_000_000).await.unwrap();
            store.create_tenant(Some("t"), "T").await.unwrap();
            store.create_user(Some("u"), "t", "g", "U").await.unwrap();
            let new = NewKey {
                user_id: "u".into(),
                name: "k".into(),
                key: None,
                expires_at: None,
                models: vec![],
                tags: vec![],
                quota_cap: None,
            };
            let (info, key) = store.create_key(&new).await.unwrap();
            (info.id, key)
        });
        let keys = KeyStore::new(store.clone());
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        let (cached, changed) = (Barrier::new(3), Barrier::new(3));
        let seen = std::thread::scope(|threads| {
            // Each thread reaches both barriers whatever it saw, and its
            // results are checked once all are joined: a thread that
            // panicked before a barrier would leave the others waiting.
            let seen: Vec<_> = (0..2)
                .map(|_| {
                    threads.spawn(|| {
                        let before = runtime.block_on(keys.authenticate(&headers));
                        cached.wait();
                        changed.wait();
                        let after = runtime.block_on(keys.authenticate(&headers));
                        (before.map(|key| key.caller.user.clone()), after.err())
                    })
                })
                .collect();
            cached.wait();
            let disable = KeyUpdate {
                name: None,
                status: Some("disabled".into()),
                expires_at: None,
                models: None,
                tags: None,
                quota_cap: None,
            };
            let updated = setup.block_on(store.update_key(&key_id, &disable));
            keys.invalidate();
            changed.wait();
            updated.unwrap();
            seen.into_iter()
                .map(|thread| thread.join().unwrap())
                .collect::<Vec<_>>()
        });
        for (before, after) in seen {
            assert_eq!(before, Ok("u".to_string()));
            assert_eq!(after, Some(AuthError::Inactive("key")));
        }
    }

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer("Bearer sk-1"), Some("sk-1"));
        assert_eq!(bearer("bearer  sk-1 "), Some("sk-1"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
