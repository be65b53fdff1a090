//! Uploaded plugin bundles and which version is active in each slot, per
//! scope: `OPERATOR` for the whole gateway, or a tenant id. The operator's
//! slots are bundle names (an upload named `router` replaces the built-in
//! router); a tenant's are plugin kinds (its own router, its own pricing).
//! Activations are appended, never updated, so every earlier state can be
//! rolled back to.

use super::{Result, Store, StoreError, now_ms};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

/// The scope of operator-wide bundles.
pub const OPERATOR: &str = "";

/// The slot a bundle of `name` and `kind` fills in `scope`.
pub fn slot<'a>(scope: &str, name: &'a str, kind: &'a str) -> &'a str {
    if scope == OPERATOR { name } else { kind }
}

/// SQL for the slot of the `plugin_bundles` row `b`, as `slot` computes it.
const SLOT_OF_B: &str = "CASE WHEN b.scope = '' THEN b.name ELSE b.kind END";

/// A bundle as uploaded: its manifest text and component.
pub struct StoredBundle {
    pub name: String,
    pub version: String,
    pub kind: String,
    pub manifest: String,
    pub component: Vec<u8>,
}

/// A version as listed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BundleVersion {
    pub name: String,
    pub version: String,
    pub kind: String,
    /// SHA-256 of the component, hex.
    pub content_hash: String,
    pub size_bytes: i64,
    pub uploaded_by: String,
    pub uploaded_at: i64,
    pub active: bool,
}

/// What an upload stores.
pub struct NewBundle<'a> {
    pub scope: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub content_hash: &'a str,
    pub manifest: &'a str,
    pub component: &'a [u8],
    pub uploaded_by: &'a str,
}

impl Store {
    /// Stores a new version. The same version uploaded again with the same
    /// component is accepted as it is; with another component it is a
    /// conflict (a version names one content, forever).
    pub async fn insert_bundle(&self, bundle: &NewBundle<'_>) -> Result<()> {
        let inserted = sqlx::query(
            "INSERT INTO plugin_bundles (scope, name, version, kind, content_hash, manifest, component, uploaded_by, uploaded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(bundle.scope)
        .bind(bundle.name)
        .bind(bundle.version)
        .bind(bundle.kind)
        .bind(bundle.content_hash)
        .bind(bundle.manifest)
        .bind(bundle.component.to_vec())
        .bind(bundle.uploaded_by)
        .bind(now_ms())
        .execute(self.pool())
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(error) => {
                let existing = sqlx::query(
                    "SELECT content_hash, manifest FROM plugin_bundles WHERE scope = $1 AND name = $2 AND version = $3",
                )
                .bind(bundle.scope)
                .bind(bundle.name)
                .bind(bundle.version)
                .fetch_optional(self.pool())
                .await?;
                match existing {
                    Some(row)
                        if row.get::<String, _>(0) == bundle.content_hash
                            && row.get::<String, _>(1) == bundle.manifest =>
                    {
                        Ok(())
                    }
                    Some(_) => Err(StoreError::Conflict(format!(
                        "{}@{} was uploaded before with other content; give the new one a new version",
                        bundle.name, bundle.version
                    ))),
                    None => Err(StoreError::Database(error)),
                }
            }
        }
    }

    /// Every version in `scope` (of `name` when given), newest first.
    pub async fn bundle_versions(
        &self,
        scope: &str,
        name: Option<&str>,
    ) -> Result<Vec<BundleVersion>> {
        let rows = sqlx::query(&format!(
            "SELECT b.name, b.version, b.kind, b.content_hash, b.uploaded_by, b.uploaded_at, b.id, \
                    COALESCE((SELECT a.bundle_id FROM plugin_activations a \
                              WHERE a.scope = b.scope AND a.slot = {SLOT_OF_B} ORDER BY a.id DESC LIMIT 1), 0), \
                    LENGTH(b.component) \
             FROM plugin_bundles b WHERE b.scope = $1 AND ($2 = '' OR b.name = $2) \
             ORDER BY b.name, b.id DESC"
        ))
        .bind(scope)
        .bind(name.unwrap_or_default())
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| BundleVersion {
                name: row.get(0),
                version: row.get(1),
                kind: row.get(2),
                content_hash: row.get(3),
                uploaded_by: row.get(4),
                uploaded_at: row.get(5),
                active: row.get::<i64, _>(6) == row.get::<i64, _>(7),
                size_bytes: row.get(8),
            })
            .collect())
    }

    /// One stored version.
    pub async fn bundle(&self, scope: &str, name: &str, version: &str) -> Result<StoredBundle> {
        let row = sqlx::query(
            "SELECT manifest, component, kind FROM plugin_bundles WHERE scope = $1 AND name = $2 AND version = $3",
        )
        .bind(scope)
        .bind(name)
        .bind(version)
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("plugin {name}@{version}")))?;
        Ok(StoredBundle {
            name: name.into(),
            version: version.into(),
            kind: row.get(2),
            manifest: row.get(0),
            component: row.get(1),
        })
    }

    /// The active bundles of every scope: (scope, bundle).
    pub async fn active_bundles(&self) -> Result<Vec<(String, StoredBundle)>> {
        let rows = sqlx::query(
            "SELECT a.scope, b.name, b.version, b.manifest, b.component, b.kind \
             FROM plugin_activations a JOIN plugin_bundles b ON b.id = a.bundle_id \
             WHERE a.id IN (SELECT MAX(id) FROM plugin_activations GROUP BY scope, slot) \
             ORDER BY a.scope, b.name",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row.get(0),
                    StoredBundle {
                        name: row.get(1),
                        version: row.get(2),
                        kind: row.get(5),
                        manifest: row.get(3),
                        component: row.get(4),
                    },
                )
            })
            .collect())
    }

    /// Makes `bundle` (name, version) the active one of `slot` in `scope`;
    /// `None` makes no uploaded version active (the operator's serves).
    pub async fn activate_bundle(
        &self,
        scope: &str,
        slot: &str,
        bundle: Option<(&str, &str)>,
        by: &str,
    ) -> Result<()> {
        let bundle_id: Option<i64> = match bundle {
            None => None,
            Some((name, version)) => Some(
                sqlx::query(
                    "SELECT id FROM plugin_bundles WHERE scope = $1 AND name = $2 AND version = $3",
                )
                .bind(scope)
                .bind(name)
                .bind(version)
                .fetch_optional(self.pool())
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("plugin {name}@{version}")))?
                .get(0),
            ),
        };
        sqlx::query(
            "INSERT INTO plugin_activations (scope, slot, bundle_id, activated_by, activated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(scope)
        .bind(slot)
        .bind(bundle_id)
        .bind(by)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The bundle (name, version) that was active in `slot` before the
    /// current one (`None`: no uploaded one was), or not found when nothing
    /// was activated before the current state.
    pub async fn previous_activation(
        &self,
        scope: &str,
        slot: &str,
    ) -> Result<Option<(String, String)>> {
        let rows = sqlx::query(
            "SELECT b.name, b.version FROM plugin_activations a LEFT JOIN plugin_bundles b ON b.id = a.bundle_id \
             WHERE a.scope = $1 AND a.slot = $2 ORDER BY a.id DESC LIMIT 2",
        )
        .bind(scope)
        .bind(slot)
        .fetch_all(self.pool())
        .await?;
        match rows.as_slice() {
            [_current, previous] => Ok(previous
                .get::<Option<String>, _>(0)
                .zip(previous.get::<Option<String>, _>(1))),
            [_current] => Ok(None),
            _ => Err(StoreError::NotFound(format!(
                "an activation of {slot} to roll back"
            ))),
        }
    }
}

/// How long a dry run stands for its version when activation requires one.
pub const DRY_RUN_VALID_MS: i64 = 24 * 3_600_000;

/// A dry run, as recorded.
pub struct DryRunEntry<'a> {
    pub scope: &'a str,
    pub name: &'a str,
    pub version: &'a str,
    pub content_hash: &'a str,
    pub clean: bool,
    /// The report, JSON.
    pub report: &'a str,
    pub run_by: &'a str,
}

impl Store {
    pub async fn record_dry_run(&self, run: &DryRunEntry<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO plugin_dry_runs (scope, name, version, content_hash, clean, report, run_by, run_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(run.scope)
        .bind(run.name)
        .bind(run.version)
        .bind(run.content_hash)
        .bind(i64::from(run.clean))
        .bind(run.report)
        .bind(run.run_by)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Whether the latest dry run of this content, within
    /// `DRY_RUN_VALID_MS`, was clean (`None`: there was none).
    pub async fn latest_dry_run_clean(
        &self,
        scope: &str,
        name: &str,
        version: &str,
        content_hash: &str,
    ) -> Result<Option<bool>> {
        let row = sqlx::query(
            "SELECT clean FROM plugin_dry_runs WHERE scope = $1 AND name = $2 AND version = $3 \
             AND content_hash = $4 AND run_at >= $5 ORDER BY id DESC LIMIT 1",
        )
        .bind(scope)
        .bind(name)
        .bind(version)
        .bind(content_hash)
        .bind(now_ms() - DRY_RUN_VALID_MS)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|row| row.get::<i64, _>(0) != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::stores;

    fn upload<'a>(scope: &'a str, version: &'a str, component: &'a [u8]) -> NewBundle<'a> {
        NewBundle {
            scope,
            name: "router",
            version,
            kind: "router",
            content_hash: if component == b"one" { "h1" } else { "h2" },
            manifest: "name = \"router\"",
            component,
            uploaded_by: "operator",
        }
    }

    #[tokio::test]
    async fn versions_activate_and_roll_back_per_scope() {
        for (store, _dir) in stores().await {
            store
                .insert_bundle(&upload(OPERATOR, "1", b"one"))
                .await
                .unwrap();
            store
                .insert_bundle(&upload(OPERATOR, "2", b"two"))
                .await
                .unwrap();
            // The same content again is accepted; other content is not.
            store
                .insert_bundle(&upload(OPERATOR, "1", b"one"))
                .await
                .unwrap();
            let conflict = store.insert_bundle(&upload(OPERATOR, "1", b"two")).await;
            assert!(matches!(conflict, Err(StoreError::Conflict(_))));
            store
                .insert_bundle(&upload("acme", "1", b"two"))
                .await
                .unwrap();
            assert!(store.active_bundles().await.unwrap().is_empty());
            assert!(store.previous_activation(OPERATOR, "router").await.is_err());

            store
                .activate_bundle(OPERATOR, "router", Some(("router", "1")), "op")
                .await
                .unwrap();
            store
                .activate_bundle(OPERATOR, "router", Some(("router", "2")), "op")
                .await
                .unwrap();
            store
                .activate_bundle("acme", "router", Some(("router", "1")), "acme")
                .await
                .unwrap();
            let active = store.active_bundles().await.unwrap();
            let summary: Vec<_> = active
                .iter()
                .map(|(scope, b)| (scope.as_str(), b.version.as_str(), b.component.clone()))
                .collect();
            assert_eq!(
                summary,
                [("", "2", b"two".to_vec()), ("acme", "1", b"two".to_vec())]
            );
            let listed = store
                .bundle_versions(OPERATOR, Some("router"))
                .await
                .unwrap();
            let flags: Vec<_> = listed
                .iter()
                .map(|v| (v.version.as_str(), v.active))
                .collect();
            assert_eq!(flags, [("2", true), ("1", false)]);
            assert_eq!(listed[0].size_bytes, 3);

            assert_eq!(
                store.previous_activation(OPERATOR, "router").await.unwrap(),
                Some(("router".into(), "1".into()))
            );
            store
                .activate_bundle(OPERATOR, "router", None, "op")
                .await
                .unwrap();
            assert_eq!(store.active_bundles().await.unwrap().len(), 1);
            let missing = store
                .activate_bundle(OPERATOR, "router", Some(("router", "9")), "op")
                .await;
            assert!(matches!(missing, Err(StoreError::NotFound(_))));
            assert_eq!(
                store
                    .bundle(OPERATOR, "router", "2")
                    .await
                    .unwrap()
                    .component,
                b"two"
            );
        }
    }
}
