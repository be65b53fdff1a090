//! Money. A call takes a hold (its estimated cost leaves the balance at
//! admission) and is settled exactly once, by request id: the hold row is
//! deleted, the difference to the real charge goes back to (or comes from)
//! the balance, and the call log row is written, all in one transaction.
//! Deleting the hold is what makes settlement idempotent: a second
//! settlement of the same request finds no hold and changes nothing.
//! Balances never go below zero: a charge the balance cannot cover is
//! collected as far as it can be and the shortfall shows in the call log.

use super::calls::{CallRecord, insert_call};
use super::{Result, Store, StoreError, new_id, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

/// A pre-deduction to take at admission.
#[derive(Debug, Clone)]
pub struct Hold {
    pub request_id: String,
    /// The process that took it, so that its restart can reconcile it.
    pub instance: String,
    pub tenant_id: String,
    pub user_id: String,
    pub key_id: String,
    pub model: String,
    pub protocol: String,
    pub stream: bool,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldRefusal {
    /// The user's balance is below the estimate.
    Balance { balance: i64 },
    /// The key's spending cap would be passed.
    KeyCap { cap: i64, used: i64 },
    /// A call with this request id was already admitted.
    Duplicate,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub id: i64,
    pub user_id: String,
    /// Signed: positive adds to the balance.
    pub amount: i64,
    pub balance_after: i64,
    /// `top_up` or `adjust`.
    pub kind: String,
    pub reason: String,
    pub actor: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct QuotaChange {
    /// Units to add (a top-up must be positive; an adjustment may be negative).
    pub amount: i64,
    pub reason: String,
}

impl Store {
    /// Takes `hold.amount` from the user's balance and adds it to the key's
    /// spending, or says why not. Nothing changes on a refusal.
    pub async fn hold(&self, hold: &Hold) -> Result<Result<(), HoldRefusal>> {
        let mut tx = self.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO holds (request_id, instance, tenant_id, user_id, key_id, model, protocol,
             stream, amount, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&hold.request_id)
        .bind(&hold.instance)
        .bind(&hold.tenant_id)
        .bind(&hold.user_id)
        .bind(&hold.key_id)
        .bind(&hold.model)
        .bind(&hold.protocol)
        .bind(i64::from(hold.stream))
        .bind(hold.amount)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Ok(Err(HoldRefusal::Duplicate));
            }
            Err(e) => return Err(e.into()),
        }
        let already_logged = sqlx::query("SELECT 1 FROM call_logs WHERE request_id = $1")
            .bind(&hold.request_id)
            .fetch_optional(&mut *tx)
            .await?;
        if already_logged.is_some() {
            return Ok(Err(HoldRefusal::Duplicate));
        }
        let taken =
            sqlx::query("UPDATE users SET balance = balance - $2 WHERE id = $1 AND balance >= $2")
                .bind(&hold.user_id)
                .bind(hold.amount)
                .execute(&mut *tx)
                .await?;
        if taken.rows_affected() == 0 {
            let balance = sqlx::query("SELECT balance FROM users WHERE id = $1")
                .bind(&hold.user_id)
                .fetch_optional(&mut *tx)
                .await?
                .map_or(0, |row| row.get(0));
            return Ok(Err(HoldRefusal::Balance { balance }));
        }
        let counted = sqlx::query(
            "UPDATE api_keys SET used = used + $2
             WHERE id = $1 AND (quota_cap IS NULL OR used + $2 <= quota_cap)",
        )
        .bind(&hold.key_id)
        .bind(hold.amount)
        .execute(&mut *tx)
        .await?;
        if counted.rows_affected() == 0 {
            let row = sqlx::query("SELECT quota_cap, used FROM api_keys WHERE id = $1")
                .bind(&hold.key_id)
                .fetch_one(&mut *tx)
                .await?;
            return Ok(Err(HoldRefusal::KeyCap {
                cap: row.get::<Option<i64>, _>(0).unwrap_or(0),
                used: row.get(1),
            }));
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Settles the call `record` describes: releases its hold, collects
    /// `record.priced` (as much of it as the balance allows) and writes the
    /// call log. Returns what was collected, or `None` if the call was
    /// already settled (or never held), in which case nothing changes.
    pub async fn settle(&self, record: &CallRecord) -> Result<Option<i64>> {
        let mut tx = self.pool().begin().await?;
        let Some(held) = sqlx::query("DELETE FROM holds WHERE request_id = $1 RETURNING amount")
            .bind(&record.request_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.get::<i64, _>(0))
        else {
            return Ok(None);
        };
        let priced = record.priced;
        let returned = sqlx::query(
            "UPDATE users SET balance = balance + $2 WHERE id = $1 AND balance + $2 >= 0",
        )
        .bind(&record.user_id)
        .bind(held - priced)
        .execute(&mut *tx)
        .await?;
        let charged = if returned.rows_affected() == 1 {
            priced
        } else {
            // The charge passes hold and balance together: take all there is.
            loop {
                let balance: i64 = sqlx::query("SELECT balance FROM users WHERE id = $1")
                    .bind(&record.user_id)
                    .fetch_one(&mut *tx)
                    .await?
                    .get(0);
                let emptied =
                    sqlx::query("UPDATE users SET balance = 0 WHERE id = $1 AND balance = $2")
                        .bind(&record.user_id)
                        .bind(balance)
                        .execute(&mut *tx)
                        .await?;
                if emptied.rows_affected() == 1 {
                    break held + balance;
                }
            }
        };
        sqlx::query("UPDATE api_keys SET used = used + $2 WHERE id = $1")
            .bind(&record.key_id)
            .bind(charged - held)
            .execute(&mut *tx)
            .await?;
        insert_call(&mut tx, record, held, charged).await?;
        tx.commit().await?;
        Ok(Some(charged))
    }

    /// Settles every hold `instance` left behind (it stopped without
    /// settling them: a crash or a kill) as interrupted calls: what they
    /// delivered is unknown, so they are refunded in full and logged.
    pub async fn reconcile(&self, instance: &str) -> Result<u64> {
        let rows = sqlx::query(
            "SELECT request_id, tenant_id, user_id, key_id, model, protocol, stream, created_at
             FROM holds WHERE instance = $1",
        )
        .bind(instance)
        .fetch_all(self.pool())
        .await?;
        let mut settled = 0;
        for row in rows {
            let created_at: i64 = row.get(7);
            let record = CallRecord {
                request_id: row.get(0),
                tenant_id: row.get(1),
                user_id: row.get(2),
                key_id: row.get(3),
                model: row.get(4),
                protocol: row.get(5),
                stream: row.get::<i64, _>(6) != 0,
                status: 0,
                ending: "interrupted".into(),
                error: Some("the gateway stopped before the call was settled".into()),
                latency_ms: now_ms().saturating_sub(created_at),
                created_at,
                ..CallRecord::default()
            };
            if self.settle(&record).await?.is_some() {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Adds `change.amount` (negative to take away) to a user's balance and
    /// records who did it and why. A change that would leave the balance
    /// below zero is refused.
    pub async fn change_quota(
        &self,
        user_id: &str,
        kind: &str,
        change: &QuotaChange,
        actor: &str,
    ) -> Result<LedgerEntry> {
        if change.reason.trim().is_empty() {
            return Err(StoreError::Invalid("a quota change needs a reason".into()));
        }
        let mut tx = self.pool().begin().await?;
        let balance_after: i64 = match sqlx::query(
            "UPDATE users SET balance = balance + $2 WHERE id = $1 AND balance + $2 >= 0
             RETURNING balance",
        )
        .bind(user_id)
        .bind(change.amount)
        .fetch_optional(&mut *tx)
        .await?
        {
            Some(row) => row.get(0),
            None => {
                drop(tx);
                let user = self.user(user_id).await?;
                return Err(StoreError::Invalid(format!(
                    "the balance of user {user_id:?} is {}; taking {} would leave it below zero",
                    user.balance, -change.amount
                )));
            }
        };
        let created_at = now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO ledger (user_id, amount, balance_after, kind, reason, actor, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(user_id)
        .bind(change.amount)
        .bind(balance_after)
        .bind(kind)
        .bind(&change.reason)
        .bind(actor)
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        tx.commit().await?;
        Ok(LedgerEntry {
            id,
            user_id: user_id.into(),
            amount: change.amount,
            balance_after,
            kind: kind.into(),
            reason: change.reason.clone(),
            actor: actor.into(),
            created_at,
        })
    }

    pub async fn ledger(&self, user_id: Option<&str>, limit: i64) -> Result<Vec<LedgerEntry>> {
        let rows = sqlx::query(
            "SELECT id, user_id, amount, balance_after, kind, reason, actor, created_at FROM ledger
             WHERE ($1 IS NULL OR user_id = $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| LedgerEntry {
                id: row.get(0),
                user_id: row.get(1),
                amount: row.get(2),
                balance_after: row.get(3),
                kind: row.get(4),
                reason: row.get(5),
                actor: row.get(6),
                created_at: row.get(7),
            })
            .collect())
    }

    /// Requests admitted and not yet settled.
    pub async fn open_holds(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM holds")
            .fetch_one(self.pool())
            .await?
            .get(0))
    }
}

/// The instance name of a process that does not configure one: stable
/// across restarts on one machine, so a restart reconciles what the
/// previous run left.
pub fn default_instance() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| new_id("instance"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::accounts::NewKey;
    use crate::store::calls::{CallFilter, Dimension};
    use crate::store::testing::stores;

    /// A tenant, a user with `balance` and a key capped at `cap`.
    async fn account(store: &Store, balance: i64, cap: Option<i64>) -> (String, String) {
        store.create_tenant(Some("acme"), "Acme").await.unwrap();
        store.put_group("default", 1_000_000).await.unwrap();
        let user = store
            .create_user(Some("alice"), "acme", "default", "")
            .await
            .unwrap();
        if balance > 0 {
            let change = QuotaChange {
                amount: balance,
                reason: "test".into(),
            };
            store
                .change_quota(&user.id, "top_up", &change, "t")
                .await
                .unwrap();
        }
        let new = NewKey {
            user_id: user.id.clone(),
            name: "k".into(),
            key: None,
            expires_at: None,
            models: vec![],
            tags: vec![],
            quota_cap: cap,
        };
        let (key, _) = store.create_key(&new).await.unwrap();
        (user.id, key.id)
    }

    fn hold(request_id: &str, user: &str, key: &str, amount: i64) -> Hold {
        Hold {
            request_id: request_id.into(),
            instance: "here".into(),
            tenant_id: "acme".into(),
            user_id: user.into(),
            key_id: key.into(),
            model: "m".into(),
            protocol: "openai-chat".into(),
            stream: false,
            amount,
        }
    }

    fn record(request_id: &str, user: &str, key: &str, priced: i64) -> CallRecord {
        CallRecord {
            request_id: request_id.into(),
            tenant_id: "acme".into(),
            user_id: user.into(),
            key_id: key.into(),
            model: "m".into(),
            protocol: "openai-chat".into(),
            status: 200,
            ending: "complete".into(),
            usage_source: "upstream".into(),
            prompt_tokens: 10,
            priced,
            ..CallRecord::default()
        }
    }

    async fn balance_and_used(store: &Store, user: &str) -> (i64, i64) {
        let balance = store.user(user).await.unwrap().balance;
        let used = store.keys(Some(user)).await.unwrap()[0].used;
        (balance, used)
    }

    #[tokio::test]
    async fn a_call_is_held_then_settled_exactly_once() {
        for (store, _dir) in stores().await {
            let (user, key) = account(&store, 1000, None).await;
            store
                .hold(&hold("r1", &user, &key, 300))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(balance_and_used(&store, &user).await, (700, 300));
            assert_eq!(store.open_holds().await.unwrap(), 1);
            assert_eq!(
                store.settle(&record("r1", &user, &key, 120)).await.unwrap(),
                Some(120)
            );
            assert_eq!(balance_and_used(&store, &user).await, (880, 120));
            // A second settlement, or a hold under a used id, changes nothing.
            assert_eq!(
                store.settle(&record("r1", &user, &key, 500)).await.unwrap(),
                None
            );
            assert_eq!(
                store.hold(&hold("r1", &user, &key, 1)).await.unwrap(),
                Err(HoldRefusal::Duplicate)
            );
            assert_eq!(balance_and_used(&store, &user).await, (880, 120));
            let page = store.calls(&CallFilter::default(), 1, 10).await.unwrap();
            assert_eq!(page.total, 1);
            assert_eq!((page.data[0].charge, page.data[0].held), (120, 300));
            assert_eq!(store.open_holds().await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn refuses_what_the_balance_or_the_key_cap_cannot_cover() {
        for (store, _dir) in stores().await {
            let (user, key) = account(&store, 100, Some(150)).await;
            assert_eq!(
                store.hold(&hold("r1", &user, &key, 101)).await.unwrap(),
                Err(HoldRefusal::Balance { balance: 100 })
            );
            store
                .hold(&hold("r2", &user, &key, 100))
                .await
                .unwrap()
                .unwrap();
            store.settle(&record("r2", &user, &key, 100)).await.unwrap();
            let change = QuotaChange {
                amount: 500,
                reason: "more".into(),
            };
            store
                .change_quota(&user, "top_up", &change, "t")
                .await
                .unwrap();
            assert_eq!(
                store.hold(&hold("r3", &user, &key, 60)).await.unwrap(),
                Err(HoldRefusal::KeyCap {
                    cap: 150,
                    used: 100
                })
            );
            assert_eq!(balance_and_used(&store, &user).await, (500, 100));
            assert_eq!(store.open_holds().await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn a_charge_above_hold_and_balance_empties_the_balance_and_no_more() {
        for (store, _dir) in stores().await {
            let (user, key) = account(&store, 100, None).await;
            store
                .hold(&hold("r1", &user, &key, 80))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                store.settle(&record("r1", &user, &key, 500)).await.unwrap(),
                Some(100)
            );
            assert_eq!(balance_and_used(&store, &user).await, (0, 100));
            let logged = &store
                .calls(&CallFilter::default(), 1, 1)
                .await
                .unwrap()
                .data[0];
            assert_eq!((logged.priced, logged.charge), (500, 100));
        }
    }

    #[tokio::test]
    async fn a_restart_refunds_what_its_previous_run_left_open() {
        for (store, _dir) in stores().await {
            let (user, key) = account(&store, 1000, None).await;
            store
                .hold(&hold("r1", &user, &key, 300))
                .await
                .unwrap()
                .unwrap();
            let mut elsewhere = hold("r2", &user, &key, 200);
            elsewhere.instance = "another".into();
            store.hold(&elsewhere).await.unwrap().unwrap();
            assert_eq!(store.reconcile("here").await.unwrap(), 1);
            assert_eq!(balance_and_used(&store, &user).await, (800, 200));
            let logged = &store
                .calls(&CallFilter::default(), 1, 1)
                .await
                .unwrap()
                .data[0];
            assert_eq!((logged.ending.as_str(), logged.charge), ("interrupted", 0));
            assert_eq!(store.open_holds().await.unwrap(), 1);
        }
    }

    #[tokio::test]
    async fn quota_changes_are_recorded_and_never_leave_a_negative_balance() {
        for (store, _dir) in stores().await {
            let (user, _) = account(&store, 100, None).await;
            let take = |amount| QuotaChange {
                amount,
                reason: "correction".into(),
            };
            assert!(
                store
                    .change_quota(&user, "adjust", &take(-101), "t")
                    .await
                    .is_err()
            );
            let entry = store
                .change_quota(&user, "adjust", &take(-40), "ops")
                .await
                .unwrap();
            assert_eq!(entry.balance_after, 60);
            let entries = store.ledger(Some(&user), 10).await.unwrap();
            assert_eq!(entries.len(), 2);
            assert_eq!((entries[0].amount, entries[0].actor.as_str()), (-40, "ops"));
            let no_reason = QuotaChange {
                amount: 5,
                reason: " ".into(),
            };
            assert!(
                store
                    .change_quota(&user, "top_up", &no_reason, "t")
                    .await
                    .is_err()
            );
        }
    }

    #[tokio::test]
    async fn usage_sums_per_dimension_and_calls_filter_and_page() {
        for (store, _dir) in stores().await {
            let (user, key) = account(&store, 10_000, None).await;
            for (index, model) in ["a", "b", "a"].iter().enumerate() {
                let id = format!("r{index}");
                store
                    .hold(&hold(&id, &user, &key, 50))
                    .await
                    .unwrap()
                    .unwrap();
                let mut call = record(&id, &user, &key, 10 * (index as i64 + 1));
                call.model = model.to_string();
                store.settle(&call).await.unwrap();
            }
            let by_model = store
                .usage(&CallFilter::default(), Dimension::Model)
                .await
                .unwrap();
            let summary: Vec<_> = by_model
                .iter()
                .map(|l| (l.key.as_str(), l.requests, l.charge, l.prompt_tokens))
                .collect();
            assert_eq!(summary, vec![("a", 2, 40, 20), ("b", 1, 20, 10)]);
            let by_day = store
                .usage(&CallFilter::default(), Dimension::Day)
                .await
                .unwrap();
            assert_eq!(by_day.len(), 1);
            assert_eq!(by_day[0].key.len(), "2026-01-01".len());
            let only_a = CallFilter {
                model: Some("a".into()),
                ..CallFilter::default()
            };
            let page = store.calls(&only_a, 2, 1).await.unwrap();
            assert_eq!((page.total, page.data.len()), (2, 1));
        }
    }
}
