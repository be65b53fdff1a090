//! Channels (upstream provider accounts). A channel's credential is either
//! stored here (set through the admin API, never read back out) or named
//! as an environment variable the gateway reads at load.

use super::{Result, Store, StoreError, accounts::found, from_json, now_ms, to_json};
use crate::routing::Secret;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A channel: in the configuration file's `[[channels]]`, in the admin
/// API's requests, and as stored.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// The channel's name, unique: routers and call logs use it (the
    /// admin API takes it from the path).
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    pub base_url: String,
    /// The credential itself (admin API only; never in the file).
    /// Write-only: listings show only whether one is set.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub api_key: Option<Secret>,
    /// Or the environment variable holding it.
    #[serde(default)]
    pub api_key_env: Option<String>,
    pub models: Vec<String>,
    #[serde(default)]
    pub model_map: BTreeMap<String, String>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "default_status")]
    pub status: String,
}

fn default_protocol() -> String {
    "openai-chat".into()
}
fn default_weight() -> u32 {
    1
}
fn default_status() -> String {
    super::accounts::ACTIVE.into()
}

/// A channel as listed: everything but the credential.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelInfo {
    pub name: String,
    pub protocol: String,
    pub base_url: String,
    pub has_api_key: bool,
    pub api_key_env: Option<String>,
    pub models: Vec<String>,
    pub model_map: BTreeMap<String, String>,
    pub weight: u32,
    pub priority: i32,
    pub tags: Vec<String>,
    pub status: String,
}

impl From<&ChannelSpec> for ChannelInfo {
    fn from(spec: &ChannelSpec) -> Self {
        ChannelInfo {
            name: spec.name.clone(),
            protocol: spec.protocol.clone(),
            base_url: spec.base_url.clone(),
            has_api_key: spec.api_key.is_some(),
            api_key_env: spec.api_key_env.clone(),
            models: spec.models.clone(),
            model_map: spec.model_map.clone(),
            weight: spec.weight,
            priority: spec.priority,
            tags: spec.tags.clone(),
            status: spec.status.clone(),
        }
    }
}

impl ChannelSpec {
    pub fn check(&self) -> Result<()> {
        let invalid = |message: String| Err(StoreError::Invalid(message));
        if self.name.is_empty() {
            return invalid("a channel needs a name".into());
        }
        if let Err(error) = crate::upstream::Endpoint::parse(&self.base_url) {
            return invalid(format!("channel {:?}: base_url {error}", self.name));
        }
        if self.models.is_empty() {
            return invalid(format!("channel {:?} serves no models", self.name));
        }
        if self.api_key.is_some() && self.api_key_env.is_some() {
            return invalid(format!(
                "channel {:?}: give api_key or api_key_env, not both",
                self.name
            ));
        }
        if self.status != super::accounts::ACTIVE && self.status != super::accounts::DISABLED {
            return invalid(format!(
                "channel {:?}: status must be \"active\" or \"disabled\"",
                self.name
            ));
        }
        Ok(())
    }
}

impl Store {
    /// Creates the channel, or replaces every field of the one with its
    /// name. `keep_credential` keeps a stored credential when `spec` gives
    /// none (an edit that does not repeat the secret).
    pub async fn put_channel(&self, spec: &ChannelSpec, keep_credential: bool) -> Result<()> {
        spec.check()?;
        sqlx::query(
            "INSERT INTO channels (id, protocol, base_url, api_key, api_key_env, models, model_map,
             weight, priority, tags, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO UPDATE SET protocol = excluded.protocol,
             base_url = excluded.base_url,
             api_key = CASE WHEN $13 = 1 AND excluded.api_key IS NULL AND excluded.api_key_env IS NULL
                 THEN channels.api_key ELSE excluded.api_key END,
             api_key_env = excluded.api_key_env, models = excluded.models,
             model_map = excluded.model_map, weight = excluded.weight,
             priority = excluded.priority, tags = excluded.tags, status = excluded.status",
        )
        .bind(&spec.name)
        .bind(&spec.protocol)
        .bind(&spec.base_url)
        .bind(spec.api_key.as_ref().map(Secret::expose))
        .bind(spec.api_key_env.as_deref())
        .bind(to_json(&spec.models))
        .bind(to_json(&spec.model_map))
        .bind(i64::from(spec.weight))
        .bind(i64::from(spec.priority))
        .bind(to_json(&spec.tags))
        .bind(&spec.status)
        .bind(now_ms())
        .bind(i64::from(keep_credential))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn set_channel_status(&self, name: &str, status: &str) -> Result<()> {
        let updated = sqlx::query("UPDATE channels SET status = $2 WHERE id = $1")
            .bind(name)
            .bind(status)
            .execute(self.pool())
            .await?;
        found(updated.rows_affected(), || format!("channel {name:?}"))
    }

    pub async fn channels(&self) -> Result<Vec<ChannelSpec>> {
        let rows = sqlx::query(
            "SELECT id, protocol, base_url, api_key, api_key_env, models, model_map, weight,
             priority, tags, status FROM channels ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| ChannelSpec {
                name: row.get(0),
                protocol: row.get(1),
                base_url: row.get(2),
                api_key: row.get::<Option<String>, _>(3).map(Secret::new),
                api_key_env: row.get(4),
                models: from_json(&row.get::<String, _>(5)),
                model_map: from_json(&row.get::<String, _>(6)),
                weight: u32::try_from(row.get::<i64, _>(7)).unwrap_or(0),
                priority: i32::try_from(row.get::<i64, _>(8)).unwrap_or(0),
                tags: from_json(&row.get::<String, _>(9)),
                status: row.get(10),
            })
            .collect())
    }
}
