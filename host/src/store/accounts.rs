//! Tenants, groups (price tiers), users (who hold the balance) and their
//! API keys. A key is shown once, at creation; the database keeps only its
//! SHA-256 digest and a short prefix by which people recognise it.

use super::{Result, Store, StoreError, from_json, new_id, now_ms, to_json};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use utoipa::ToSchema;

pub const ACTIVE: &str = "active";
pub const DISABLED: &str = "disabled";

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    /// `active` or `disabled`: a disabled tenant's keys are refused.
    pub status: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Group {
    pub id: String,
    /// The group's price multiplier (1.0 = list price).
    #[serde(with = "super::prices::ratio")]
    #[schema(value_type = f64)]
    pub ratio: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub group_id: String,
    pub name: String,
    pub status: String,
    /// Quota units left to spend, with open pre-deductions already taken out.
    pub balance: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// The key's first characters, to recognise it; never enough to use it.
    pub prefix: String,
    pub status: String,
    pub expires_at: Option<i64>,
    /// Models the key may use (exact or `prefix*`); empty allows all.
    pub models: Vec<String>,
    pub tags: Vec<String>,
    /// Most this key may ever spend, in quota units; none means the user's
    /// balance is the only limit.
    pub quota_cap: Option<i64>,
    /// Units spent with this key, open pre-deductions included.
    pub used: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewKey {
    pub user_id: String,
    #[serde(default)]
    pub name: String,
    /// The key's value; leave it out and Sluice draws a random one (the
    /// usual way: a chosen value exists for seeding and migrations).
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub quota_cap: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub status: Option<String>,
    /// Milliseconds since the epoch; `0` removes the expiry.
    pub expires_at: Option<i64>,
    pub models: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    /// `-1` removes the cap.
    pub quota_cap: Option<i64>,
}

/// What authentication needs to know of a key, read in one query.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub key_id: String,
    pub user_id: String,
    pub tenant_id: String,
    pub group_id: String,
    pub group_ratio: i64,
    /// The first of key, user or tenant that is not active, if any.
    pub inactive: Option<&'static str>,
    pub expires_at: Option<i64>,
    pub models: Vec<String>,
    pub tags: Vec<String>,
}

pub fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new random key: `sk-sl-` and 48 hex digits (192 bits).
fn random_key() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format!("sk-sl-{}", hex::encode(bytes))
}

fn prefix_of(key: &str) -> String {
    key.chars().take(10).collect()
}

fn check_status(status: &str) -> Result<()> {
    if status == ACTIVE || status == DISABLED {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "status must be \"active\" or \"disabled\", not {status:?}"
        )))
    }
}

fn check_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{id:?} is not a valid id: use 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

impl Store {
    pub async fn create_tenant(&self, id: Option<&str>, name: &str) -> Result<Tenant> {
        let id = id.map_or_else(|| new_id("ten"), str::to_string);
        check_id(&id)?;
        let tenant = Tenant {
            name: if name.is_empty() {
                id.clone()
            } else {
                name.into()
            },
            id,
            status: ACTIVE.into(),
            created_at: now_ms(),
        };
        sqlx::query("INSERT INTO tenants (id, name, status, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&tenant.id)
            .bind(&tenant.name)
            .bind(&tenant.status)
            .bind(tenant.created_at)
            .execute(self.pool())
            .await
            .map_err(|e| {
                StoreError::conflict_on_duplicate(e, || {
                    format!("tenant {:?} already exists", tenant.id)
                })
            })?;
        Ok(tenant)
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query("SELECT id, name, status, created_at FROM tenants ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|row| Tenant {
                id: row.get(0),
                name: row.get(1),
                status: row.get(2),
                created_at: row.get(3),
            })
            .collect())
    }

    pub async fn update_tenant(
        &self,
        id: &str,
        name: Option<&str>,
        status: Option<&str>,
    ) -> Result<()> {
        if let Some(status) = status {
            check_status(status)?;
        }
        let updated = sqlx::query(
            "UPDATE tenants SET name = COALESCE($2, name), status = COALESCE($3, status) WHERE id = $1",
        )
        .bind(id)
        .bind(name)
        .bind(status)
        .execute(self.pool())
        .await?;
        found(updated.rows_affected(), || format!("tenant {id:?}"))
    }

    /// Creates the group or sets its ratio.
    pub async fn put_group(&self, id: &str, ratio: i64) -> Result<Group> {
        check_id(id)?;
        if ratio < 0 {
            return Err(StoreError::Invalid(
                "a group ratio cannot be negative".into(),
            ));
        }
        let group = Group {
            id: id.into(),
            ratio,
            created_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO groups (id, ratio, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET ratio = excluded.ratio",
        )
        .bind(&group.id)
        .bind(group.ratio)
        .bind(group.created_at)
        .execute(self.pool())
        .await?;
        Ok(group)
    }

    pub async fn groups(&self) -> Result<Vec<Group>> {
        let rows = sqlx::query("SELECT id, ratio, created_at FROM groups ORDER BY id")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|row| Group {
                id: row.get(0),
                ratio: row.get(1),
                created_at: row.get(2),
            })
            .collect())
    }

    pub async fn create_user(
        &self,
        id: Option<&str>,
        tenant_id: &str,
        group_id: &str,
        name: &str,
    ) -> Result<User> {
        let id = id.map_or_else(|| new_id("usr"), str::to_string);
        check_id(&id)?;
        let user = User {
            name: if name.is_empty() {
                id.clone()
            } else {
                name.into()
            },
            id,
            tenant_id: tenant_id.into(),
            group_id: group_id.into(),
            status: ACTIVE.into(),
            balance: 0,
            created_at: now_ms(),
        };
        self.require("tenants", tenant_id, "tenant").await?;
        self.require("groups", group_id, "group").await?;
        sqlx::query(
            "INSERT INTO users (id, tenant_id, group_id, name, status, balance, created_at)
             VALUES ($1, $2, $3, $4, $5, 0, $6)",
        )
        .bind(&user.id)
        .bind(&user.tenant_id)
        .bind(&user.group_id)
        .bind(&user.name)
        .bind(&user.status)
        .bind(user.created_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            StoreError::conflict_on_duplicate(e, || format!("user {:?} already exists", user.id))
        })?;
        Ok(user)
    }

    pub async fn users(&self, tenant_id: Option<&str>) -> Result<Vec<User>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, group_id, name, status, balance, created_at FROM users
             WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(user_of).collect())
    }

    pub async fn user(&self, id: &str) -> Result<User> {
        sqlx::query(
            "SELECT id, tenant_id, group_id, name, status, balance, created_at FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .map(|row| user_of(&row))
        .ok_or_else(|| StoreError::NotFound(format!("user {id:?}")))
    }

    pub async fn update_user(
        &self,
        id: &str,
        name: Option<&str>,
        group_id: Option<&str>,
        status: Option<&str>,
    ) -> Result<()> {
        if let Some(status) = status {
            check_status(status)?;
        }
        if let Some(group_id) = group_id {
            self.require("groups", group_id, "group").await?;
        }
        let updated = sqlx::query(
            "UPDATE users SET name = COALESCE($2, name), group_id = COALESCE($3, group_id),
             status = COALESCE($4, status) WHERE id = $1",
        )
        .bind(id)
        .bind(name)
        .bind(group_id)
        .bind(status)
        .execute(self.pool())
        .await?;
        found(updated.rows_affected(), || format!("user {id:?}"))
    }

    /// Creates a key and returns it with its value, the only time the value
    /// is ever shown.
    pub async fn create_key(&self, new: &NewKey) -> Result<(ApiKeyInfo, String)> {
        let value = new.key.clone().unwrap_or_else(random_key);
        if value.len() < 8 {
            return Err(StoreError::Invalid(
                "a key must be at least 8 characters".into(),
            ));
        }
        if new.quota_cap.is_some_and(|cap| cap < 0) {
            return Err(StoreError::Invalid("quota_cap cannot be negative".into()));
        }
        self.user(&new.user_id).await?;
        let info = ApiKeyInfo {
            id: new_id("key"),
            user_id: new.user_id.clone(),
            name: new.name.clone(),
            prefix: prefix_of(&value),
            status: ACTIVE.into(),
            expires_at: new.expires_at,
            models: new.models.clone(),
            tags: new.tags.clone(),
            quota_cap: new.quota_cap,
            used: 0,
            created_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, prefix, digest, status, expires_at, models,
             tags, quota_cap, used, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11)",
        )
        .bind(&info.id)
        .bind(&info.user_id)
        .bind(&info.name)
        .bind(&info.prefix)
        .bind(digest(&value))
        .bind(&info.status)
        .bind(info.expires_at)
        .bind(to_json(&info.models))
        .bind(to_json(&info.tags))
        .bind(info.quota_cap)
        .bind(info.created_at)
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::conflict_on_duplicate(e, || "that key already exists".into()))?;
        Ok((info, value))
    }

    /// Keys, all or one user's.
    pub async fn keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyInfo>> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, prefix, status, expires_at, models, tags, quota_cap, used,
             created_at FROM api_keys WHERE ($1 IS NULL OR user_id = $1) ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| ApiKeyInfo {
                id: row.get(0),
                user_id: row.get(1),
                name: row.get(2),
                prefix: row.get(3),
                status: row.get(4),
                expires_at: row.get(5),
                models: from_json(&row.get::<String, _>(6)),
                tags: from_json(&row.get::<String, _>(7)),
                quota_cap: row.get(8),
                used: row.get(9),
                created_at: row.get(10),
            })
            .collect())
    }

    pub async fn update_key(&self, id: &str, update: &KeyUpdate) -> Result<()> {
        if let Some(status) = &update.status {
            check_status(status)?;
        }
        // Sentinels say "remove": COALESCE alone cannot set a column to NULL.
        let updated = sqlx::query(
            "UPDATE api_keys SET name = COALESCE($2, name), status = COALESCE($3, status),
             expires_at = CASE WHEN $4 IS NULL THEN expires_at WHEN $4 = 0 THEN NULL ELSE $4 END,
             models = COALESCE($5, models), tags = COALESCE($6, tags),
             quota_cap = CASE WHEN $7 IS NULL THEN quota_cap WHEN $7 < 0 THEN NULL ELSE $7 END
             WHERE id = $1",
        )
        .bind(id)
        .bind(update.name.as_deref())
        .bind(update.status.as_deref())
        .bind(update.expires_at)
        .bind(update.models.as_ref().map(to_json))
        .bind(update.tags.as_ref().map(to_json))
        .bind(update.quota_cap)
        .execute(self.pool())
        .await?;
        found(updated.rows_affected(), || format!("key {id:?}"))
    }

    /// The key whose value has `digest`, with what its user, tenant and
    /// group say about it.
    pub async fn grant(&self, digest: &str) -> Result<Option<KeyGrant>> {
        let row = sqlx::query(
            "SELECT k.id, k.user_id, u.tenant_id, u.group_id, g.ratio, k.status, u.status,
             t.status, k.expires_at, k.models, k.tags
             FROM api_keys k JOIN users u ON u.id = k.user_id JOIN tenants t ON t.id = u.tenant_id
             JOIN groups g ON g.id = u.group_id WHERE k.digest = $1",
        )
        .bind(digest)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|row| {
            let statuses: [(String, &'static str); 3] = [
                (row.get(5), "key"),
                (row.get(6), "user"),
                (row.get(7), "tenant"),
            ];
            KeyGrant {
                key_id: row.get(0),
                user_id: row.get(1),
                tenant_id: row.get(2),
                group_id: row.get(3),
                group_ratio: row.get(4),
                inactive: statuses
                    .into_iter()
                    .find(|(status, _)| status != ACTIVE)
                    .map(|(_, what)| what),
                expires_at: row.get(8),
                models: from_json(&row.get::<String, _>(9)),
                tags: from_json(&row.get::<String, _>(10)),
            }
        }))
    }

    pub(super) async fn require(&self, table: &'static str, id: &str, what: &str) -> Result<()> {
        // `table` is one of a fixed few names, never input.
        let exists = sqlx::query(&format!("SELECT 1 FROM {table} WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        match exists {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(format!("{what} {id:?}"))),
        }
    }
}

fn user_of(row: &sqlx::any::AnyRow) -> User {
    User {
        id: row.get(0),
        tenant_id: row.get(1),
        group_id: row.get(2),
        name: row.get(3),
        status: row.get(4),
        balance: row.get(5),
        created_at: row.get(6),
    }
}

pub(super) fn found(rows: u64, what: impl FnOnce() -> String) -> Result<()> {
    if rows == 0 {
        Err(StoreError::NotFound(what()))
    } else {
        Ok(())
    }
}
