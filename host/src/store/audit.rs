//! The admin audit log: who changed what, when, and how it ended.

use super::{Result, Store, now_ms};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    /// `operator`, or `tenant:<id>` for a tenant's credential.
    pub actor: String,
    /// The request: method and path.
    pub action: String,
    /// What it acted on, e.g. `plugin router@1.2.0`.
    pub target: String,
    /// The HTTP status it was answered with.
    pub status: i64,
    /// The component's SHA-256 for plugin actions.
    pub content_hash: Option<String>,
}

impl Store {
    pub async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        status: u16,
        content_hash: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO admin_audit (at, actor, action, target, status, content_hash) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now_ms())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(i64::from(status))
        .bind(content_hash)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Newest first; `actor` limits it to one actor's entries.
    pub async fn audit(
        &self,
        actor: Option<&str>,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, status, content_hash FROM admin_audit \
             WHERE ($1 = '' OR actor = $1) AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(actor.unwrap_or_default())
        .bind(before_id.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| AuditEntry {
                id: row.get(0),
                at: row.get(1),
                actor: row.get(2),
                action: row.get(3),
                target: row.get(4),
                status: row.get(5),
                content_hash: row.get(6),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::stores;

    #[tokio::test]
    async fn lists_newest_first_by_actor() {
        for (store, _dir) in stores().await {
            store
                .record_audit(
                    "operator",
                    "POST /admin/plugins",
                    "plugin router@1",
                    201,
                    Some("ab"),
                )
                .await
                .unwrap();
            store
                .record_audit(
                    "tenant:acme",
                    "POST /admin/plugins/router/activate",
                    "plugin router@1",
                    403,
                    None,
                )
                .await
                .unwrap();
            let all = store.audit(None, None, 10).await.unwrap();
            assert_eq!(all.len(), 2);
            assert_eq!(all[0].actor, "tenant:acme");
            assert_eq!(all[1].content_hash.as_deref(), Some("ab"));
            let mine = store.audit(Some("operator"), None, 10).await.unwrap();
            assert_eq!(mine.len(), 1);
            let older = store.audit(None, Some(all[0].id), 10).await.unwrap();
            assert_eq!(older[0].id, all[1].id);
        }
    }
}
