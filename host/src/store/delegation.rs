//! What the operator hands a tenant: admin tokens that act on that tenant's
//! own plugins only, and the limits those plugins live within.

use super::accounts::{ACTIVE, digest};
use super::{Result, Store, StoreError, from_json, new_id, now_ms, to_json};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

/// The limits of a tenant's uploaded plugins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    /// Kinds the tenant may upload: `router`, `pricing` or both.
    pub kinds: Vec<String>,
    pub max_bundle_bytes: i64,
    /// Memory cap of one instance of the tenant's plugins.
    pub memory_mib: i64,
    /// Deadline of one call into the tenant's plugins.
    pub deadline_ms: i64,
    /// Whether a version must have had a clean dry run before it is
    /// activated.
    #[serde(default)]
    pub require_dry_run: bool,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            kinds: vec!["router".into(), "pricing".into()],
            max_bundle_bytes: 4 << 20,
            memory_mib: 16,
            deadline_ms: 20,
            require_dry_run: false,
        }
    }
}

impl PluginLimits {
    /// The kinds a tenant may ever be given.
    pub const DELEGABLE: [&str; 2] = ["router", "pricing"];

    fn check(&self) -> Result<()> {
        if let Some(kind) = self
            .kinds
            .iter()
            .find(|k| !Self::DELEGABLE.contains(&k.as_str()))
        {
            return Err(StoreError::Invalid(format!(
                "a tenant may only be given router and pricing plugins, not {kind:?}"
            )));
        }
        if self.max_bundle_bytes < 1 || self.memory_mib < 1 || self.deadline_ms < 1 {
            return Err(StoreError::Invalid(
                "max_bundle_bytes, memory_mib and deadline_ms must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// A tenant admin token as listed: never its value.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TenantToken {
    pub id: String,
    pub tenant_id: String,
    /// The token's first characters, to recognise it.
    pub prefix: String,
    pub status: String,
    pub created_at: i64,
}

impl Store {
    /// Not found unless a tenant `id` exists.
    pub async fn require_tenant(&self, id: &str) -> Result<()> {
        self.require("tenants", id, "tenant").await
    }

    pub async fn plugin_limits(&self, tenant_id: &str) -> Result<PluginLimits> {
        let row = sqlx::query(
            "SELECT kinds, max_bundle_bytes, memory_mib, deadline_ms, require_dry_run FROM tenant_plugin_limits WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some(row) => PluginLimits {
                kinds: from_json(&row.get::<String, _>(0)),
                max_bundle_bytes: row.get(1),
                memory_mib: row.get(2),
                deadline_ms: row.get(3),
                require_dry_run: row.get::<i64, _>(4) != 0,
            },
            None => PluginLimits::default(),
        })
    }

    pub async fn set_plugin_limits(&self, tenant_id: &str, limits: &PluginLimits) -> Result<()> {
        limits.check()?;
        self.require("tenants", tenant_id, "tenant").await?;
        sqlx::query("DELETE FROM tenant_plugin_limits WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO tenant_plugin_limits (tenant_id, kinds, max_bundle_bytes, memory_mib, deadline_ms, require_dry_run) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant_id)
        .bind(to_json(&limits.kinds))
        .bind(limits.max_bundle_bytes)
        .bind(limits.memory_mib)
        .bind(limits.deadline_ms)
        .bind(i64::from(limits.require_dry_run))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A new admin token for `tenant_id`: its listing and its value, shown
    /// this once.
    pub async fn create_tenant_token(&self, tenant_id: &str) -> Result<(TenantToken, String)> {
        self.require("tenants", tenant_id, "tenant").await?;
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        let value = format!("sk-sl-admin-{}", hex::encode(bytes));
        let token = TenantToken {
            id: new_id("tat"),
            tenant_id: tenant_id.into(),
            prefix: value.chars().take(16).collect(),
            status: ACTIVE.into(),
            created_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO tenant_admin_tokens (id, tenant_id, prefix, digest, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&token.id)
        .bind(&token.tenant_id)
        .bind(&token.prefix)
        .bind(digest(&value))
        .bind(&token.status)
        .bind(token.created_at)
        .execute(self.pool())
        .await?;
        Ok((token, value))
    }

    pub async fn revoke_tenant_token(&self, tenant_id: &str, id: &str) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE tenant_admin_tokens SET status = 'revoked' WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(id)
        .execute(self.pool())
        .await?;
        super::accounts::found(updated.rows_affected(), || format!("token {id:?}"))
    }

    /// The tenant an active token of this `digest` acts for, if any (its
    /// tenant must be active too).
    pub async fn tenant_of_token(&self, digest: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT t.tenant_id FROM tenant_admin_tokens t JOIN tenants n ON n.id = t.tenant_id \
             WHERE t.digest = $1 AND t.status = 'active' AND n.status = 'active'",
        )
        .bind(digest)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|row| row.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::stores;

    #[tokio::test]
    async fn tokens_act_for_their_tenant_until_revoked_and_limits_default() {
        for (store, _dir) in stores().await {
            store.create_tenant(Some("acme"), "Acme").await.unwrap();
            assert_eq!(
                store.plugin_limits("acme").await.unwrap(),
                PluginLimits::default()
            );
            let (token, value) = store.create_tenant_token("acme").await.unwrap();
            assert!(value.starts_with(&token.prefix));
            assert_eq!(
                store
                    .tenant_of_token(&digest(&value))
                    .await
                    .unwrap()
                    .as_deref(),
                Some("acme")
            );
            assert_eq!(store.tenant_of_token(&digest("other")).await.unwrap(), None);
            store.revoke_tenant_token("acme", &token.id).await.unwrap();
            assert_eq!(store.tenant_of_token(&digest(&value)).await.unwrap(), None);

            let limits = PluginLimits {
                kinds: vec!["pricing".into()],
                max_bundle_bytes: 1000,
                memory_mib: 8,
                deadline_ms: 5,
                require_dry_run: true,
            };
            store.set_plugin_limits("acme", &limits).await.unwrap();
            assert_eq!(store.plugin_limits("acme").await.unwrap(), limits);
            let translator = PluginLimits {
                kinds: vec!["translator".into()],
                ..limits
            };
            assert!(matches!(
                store.set_plugin_limits("acme", &translator).await,
                Err(StoreError::Invalid(_))
            ));
            assert!(matches!(
                store.create_tenant_token("nobody").await,
                Err(StoreError::NotFound(_))
            ));
        }
    }
}
