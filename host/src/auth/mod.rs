//! API keys → callers. Keys are held only as SHA-256 digests, so a key never
//! sits in memory in clear after start-up and lookups take the same time
//! whatever the key.

use crate::config::{KeyConfig, model_matches};
use crate::plugins::bindings::Caller;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// A client key's identity and permissions.
#[derive(Debug)]
pub struct ApiKey {
    pub caller: Caller,
    models: Vec<String>,
    pub tags: Vec<String>,
}

impl ApiKey {
    pub fn may_use(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|p| model_matches(p, model))
    }
}

pub struct KeyStore {
    by_digest: HashMap<[u8; 32], Arc<ApiKey>>,
}

impl KeyStore {
    pub fn new(keys: &[KeyConfig]) -> Self {
        let by_digest = keys
            .iter()
            .map(|key| {
                let digest = Sha256::digest(key.key.as_bytes()).into();
                let api_key = ApiKey {
                    caller: Caller {
                        tenant: key.tenant.clone(),
                        user: key.user.clone(),
                        group: key.group.clone(),
                        // A short, stable, non-secret id: the digest's prefix.
                        key_id: crate::plugins::hex(&Sha256::digest(key.key.as_bytes())[..6]),
                    },
                    models: key.models.clone(),
                    tags: key.tags.clone(),
                };
                (digest, Arc::new(api_key))
            })
            .collect();
        KeyStore { by_digest }
    }

    /// The key an `Authorization: Bearer …` header names, or else an
    /// `x-api-key` header (Anthropic's SDKs send either).
    pub fn authenticate(&self, headers: &axum::http::HeaderMap) -> Result<Arc<ApiKey>, AuthError> {
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let key = header(axum::http::header::AUTHORIZATION.as_str())
            .and_then(bearer)
            .or_else(|| header("x-api-key").map(str::trim).filter(|k| !k.is_empty()))
            .ok_or(AuthError::Missing)?;
        self.find(key).ok_or(AuthError::Unknown)
    }

    pub fn find(&self, key: &str) -> Option<Arc<ApiKey>> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_digest.get(&digest).cloned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Unknown,
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

    fn store() -> KeyStore {
        KeyStore::new(&[KeyConfig {
            key: "sk-test-123456".into(),
            tenant: "acme".into(),
            user: "alice".into(),
            group: "default".into(),
            models: vec!["gpt-4o*".into()],
            tags: vec!["batch".into()],
        }])
    }

    #[test]
    fn finds_keys_by_value_and_checks_models() {
        let key = store().find("sk-test-123456").unwrap();
        assert_eq!(key.caller.user, "alice");
        assert_eq!(key.caller.key_id.len(), 12);
        assert!(!key.caller.key_id.contains("sk-"));
        assert!(key.may_use("gpt-4o-mini"));
        assert!(!key.may_use("claude"));
        assert!(store().find("sk-test-wrong").is_none());
    }

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer("Bearer sk-1"), Some("sk-1"));
        assert_eq!(bearer("bearer  sk-1 "), Some("sk-1"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
