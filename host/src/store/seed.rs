//! What the configuration file puts in the database at start. The file is
//! authoritative for what it names: its channels, prices, groups and keys
//! are written as the file says at every start. Users it names are created
//! once, with the file's starting quota; after that their balance is the
//! ledger's business alone.

use super::channels::ChannelSpec;
use super::ledger::QuotaChange;
use super::prices::ratio;
use super::{Result, Store, StoreError, accounts::digest, now_ms, to_json};
use crate::config::{Config, KeyConfig};

const DEFAULT_GROUP: &str = "default";

impl Store {
    pub async fn seed(&self, config: &Config, channels: &[ChannelSpec]) -> Result<()> {
        if !config.groups.contains_key(DEFAULT_GROUP) {
            sqlx::query("INSERT INTO groups (id, ratio, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
                .bind(DEFAULT_GROUP)
                .bind(ratio::ONE)
                .bind(now_ms())
                .execute(self.pool())
                .await?;
        }
        for (group, value) in &config.groups {
            self.put_group(group, ratio::parse(*value)).await?;
        }
        for price in &config.prices {
            self.put_price(price).await?;
        }
        for channel in channels {
            self.put_channel(channel, true).await?;
        }
        for key in &config.keys {
            self.seed_key(key).await?;
        }
        Ok(())
    }

    async fn seed_key(&self, key: &KeyConfig) -> Result<()> {
        let now = now_ms();
        sqlx::query("INSERT INTO tenants (id, name, status, created_at) VALUES ($1, $1, 'active', $2) ON CONFLICT (id) DO NOTHING")
            .bind(&key.tenant)
            .bind(now)
            .execute(self.pool())
            .await?;
        let created = sqlx::query(
            "INSERT INTO users (id, tenant_id, group_id, name, status, balance, created_at)
             VALUES ($1, $2, $3, $1, 'active', 0, $4) ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(&key.user)
        .bind(&key.tenant)
        .bind(&key.group)
        .bind(now)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::Invalid(format!(
                    "key of user {:?}: group {:?} does not exist",
                    key.user, key.group
                ))
            }
            _ => e.into(),
        })?;
        if created.is_some() && key.quota > 0 {
            let change = QuotaChange {
                amount: key.quota,
                reason: "starting quota from the configuration file".into(),
            };
            self.change_quota(&key.user, "top_up", &change, "config")
                .await?;
        }
        let prefix: String = key.key.chars().take(10).collect();
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, digest, status, expires_at, models,
             tags, quota_cap, used, created_at)
             VALUES ($1, $2, 'from configuration', $3, $4, 'active', NULL, $5, $6, $7, 0, $8)
             ON CONFLICT (digest) DO UPDATE SET models = excluded.models, tags = excluded.tags,
             quota_cap = excluded.quota_cap",
        )
        .bind(super::new_id("key"))
        .bind(&key.user)
        .bind(prefix)
        .bind(digest(&key.key))
        .bind(to_json(&key.models))
        .bind(to_json(&key.tags))
        .bind(key.quota_cap)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
