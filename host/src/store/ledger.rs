//! Money. A call takes a hold (its estimated cost leaves the balance at
//! admission) and is settled exactly once, by request id: the hold row is
//! deleted, the difference to the real charge goes back to (or comes from)
//! the balance, and the call log row is written, all in one transaction.
//! Deleting the hold is what makes settlement idempotent: a second
//! settlement of the same request finds no hold and changes nothing.
//! Balances never go below zero: a charge the balance cannot cover is
//! collected as far as it can be and the shortfall shows in the call log.

use super::calls::{CallRecord, insert_calls};
use super::{Result, Store, StoreError, new_id, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use sqlx::Row;
use std::collections::{HashMap, HashSet};
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
        let mut connection = self.pool().acquire().await?;
        let mut tx = begin_write(&mut connection).await?;
        let taken = take_holds(&mut tx, &[hold]).await?.remove(0);
        tx.commit().await?;
        Ok(taken)
    }

    /// Settles the call `record` describes: releases its hold, collects
    /// `record.priced` (as much of it as the balance allows) and writes the
    /// call log. Returns what was collected, or `None` if the call was
    /// already settled (or never held), in which case nothing changes.
    pub async fn settle(&self, record: &CallRecord) -> Result<Option<i64>> {
        let mut connection = self.pool().acquire().await?;
        let mut tx = begin_write(&mut connection).await?;
        let settled = settle_holds(&mut tx, &[record]).await?.remove(0);
        tx.commit().await?;
        Ok(settled)
    }

    /// Settles every hold `instance` left behind (it stopped without
    /// settling them: a crash or a kill) as interrupted calls: what they
    /// delivered is unknown, so they are refunded in full and logged.
    pub async fn reconcile(&self, instance: &str) -> Result<u64> {
        self.interrupt(Some(instance), i64::MAX).await
    }

    /// Settles, as `reconcile` does, the holds of any instance taken before
    /// `before` (ms since the epoch): calls no live process will settle,
    /// such as those of a replica that was retired.
    pub async fn reconcile_stale(&self, before: i64) -> Result<u64> {
        self.interrupt(None, before).await
    }

    async fn interrupt(&self, instance: Option<&str>, before: i64) -> Result<u64> {
        let rows = sqlx::query(
            "SELECT request_id, tenant_id, user_id, key_id, model, protocol, stream, created_at
             FROM holds WHERE ($1 IS NULL OR instance = $1) AND created_at < $2",
        )
        .bind(instance)
        .bind(before)
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
        let mut connection = self.pool().acquire().await?;
        let mut tx = begin_write(&mut connection).await?;
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
}

/// Takes the holds inside the caller's transaction, in order, and says
/// for each whether it was taken. Each user's holds are taken with one
/// statement when the balance (and each key's cap) covers them all, else
/// one by one; every refusal leaves the database as it found it, so a
/// refused hold never aborts a transaction it shares with other calls.
pub(super) async fn take_holds(
    connection: &mut AnyConnection,
    holds: &[&Hold],
) -> Result<Vec<Result<(), HoldRefusal>>> {
    let mut outcome = vec![Ok(()); holds.len()];
    let ids: Vec<&str> = holds.iter().map(|h| h.request_id.as_str()).collect();
    let taken_ids = existing_ids(connection, &ids).await?;
    let mut seen = HashSet::new();
    for (index, hold) in holds.iter().enumerate() {
        if taken_ids.contains(hold.request_id.as_str()) || !seen.insert(hold.request_id.as_str()) {
            outcome[index] = Err(HoldRefusal::Duplicate);
        }
    }
    for (user, indices) in group(holds, &outcome, |h| &h.user_id) {
        let total: i64 = indices.iter().map(|&i| holds[i].amount).sum();
        if !add_to_balance(connection, user, -total, true).await? {
            for &index in &indices {
                outcome[index] = reserve_one(connection, holds[index]).await?;
            }
            continue;
        }
        for (key, key_indices) in group(holds, &outcome, |h| &h.key_id)
            .into_iter()
            .map(|(key, all)| {
                (
                    key,
                    all.into_iter()
                        .filter(|i| indices.contains(i))
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, mine)| !mine.is_empty())
        {
            let key_total: i64 = key_indices.iter().map(|&i| holds[i].amount).sum();
            if !count_on_key(connection, key, key_total).await? {
                add_to_balance(connection, user, key_total, false).await?;
                for &index in &key_indices {
                    outcome[index] = reserve_one(connection, holds[index]).await?;
                }
            }
        }
    }
    let accepted: Vec<&Hold> = holds
        .iter()
        .zip(&outcome)
        .filter(|(_, taken)| taken.is_ok())
        .map(|(hold, _)| *hold)
        .collect();
    if !accepted.is_empty() {
        let inserted = insert_holds(connection, &accepted).await?;
        if inserted != accepted.len() as u64 {
            // Another writer took one of these ids since we looked: fail the
            // batch, so that each call is retried alone.
            return Err(StoreError::Conflict(
                "a request id was taken concurrently".into(),
            ));
        }
    }
    Ok(outcome)
}

/// One hold's balance and key-cap checks, or the refusal (undoing the
/// balance if the cap refuses).
async fn reserve_one(
    connection: &mut AnyConnection,
    hold: &Hold,
) -> Result<Result<(), HoldRefusal>> {
    if !add_to_balance(connection, &hold.user_id, -hold.amount, true).await? {
        let balance = sqlx::query("SELECT balance FROM users WHERE id = $1")
            .bind(&hold.user_id)
            .fetch_optional(&mut *connection)
            .await?
            .map_or(0, |row| row.get(0));
        return Ok(Err(HoldRefusal::Balance { balance }));
    }
    if !count_on_key(connection, &hold.key_id, hold.amount).await? {
        add_to_balance(connection, &hold.user_id, hold.amount, false).await?;
        let row = sqlx::query("SELECT quota_cap, used FROM api_keys WHERE id = $1")
            .bind(&hold.key_id)
            .fetch_one(&mut *connection)
            .await?;
        return Ok(Err(HoldRefusal::KeyCap {
            cap: row.get::<Option<i64>, _>(0).unwrap_or(0),
            used: row.get(1),
        }));
    }
    Ok(Ok(()))
}

/// Adds `amount` to a balance; with `checked`, only if the balance stays
/// at or above zero. Says whether it did.
async fn add_to_balance(
    connection: &mut AnyConnection,
    user: &str,
    amount: i64,
    checked: bool,
) -> Result<bool> {
    let sql = if checked {
        "UPDATE users SET balance = balance + $2 WHERE id = $1 AND balance + $2 >= 0"
    } else {
        "UPDATE users SET balance = balance + $2 WHERE id = $1"
    };
    let updated = sqlx::query(sql)
        .bind(user)
        .bind(amount)
        .execute(connection)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Adds `amount` to a key's spending if its cap allows. Says whether it did.
async fn count_on_key(connection: &mut AnyConnection, key: &str, amount: i64) -> Result<bool> {
    let counted = sqlx::query(
        "UPDATE api_keys SET used = used + $2
         WHERE id = $1 AND (quota_cap IS NULL OR used + $2 <= quota_cap)",
    )
    .bind(key)
    .bind(amount)
    .execute(connection)
    .await?;
    Ok(counted.rows_affected() == 1)
}

/// The ids among `ids` that are held now or were settled before.
async fn existing_ids(connection: &mut AnyConnection, ids: &[&str]) -> Result<HashSet<String>> {
    let held = placeholders(connection, 1, ids.len());
    let settled = placeholders(connection, ids.len() + 1, ids.len());
    let sql = format!(
        "SELECT request_id FROM holds WHERE request_id IN ({held})
         UNION ALL SELECT request_id FROM call_logs WHERE request_id IN ({settled})"
    );
    let mut query = sqlx::query(&sql).persistent(false);
    for id in ids.iter().chain(ids) {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(connection).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

async fn insert_holds(connection: &mut AnyConnection, holds: &[&Hold]) -> Result<u64> {
    const COLUMNS: usize = 10;
    let rows: Vec<String> = (0..holds.len())
        .map(|row| format!("({})", placeholders(connection, row * COLUMNS + 1, COLUMNS)))
        .collect();
    let sql = format!(
        "INSERT INTO holds (request_id, instance, tenant_id, user_id, key_id, model, protocol,
         stream, amount, created_at) VALUES {} ON CONFLICT (request_id) DO NOTHING",
        rows.join(", ")
    );
    let now = now_ms();
    let mut query = sqlx::query(&sql).persistent(false);
    for hold in holds {
        query = query
            .bind(&hold.request_id)
            .bind(&hold.instance)
            .bind(&hold.tenant_id)
            .bind(&hold.user_id)
            .bind(&hold.key_id)
            .bind(&hold.model)
            .bind(&hold.protocol)
            .bind(i64::from(hold.stream))
            .bind(hold.amount)
            .bind(now);
    }
    Ok(query.execute(connection).await?.rows_affected())
}

/// Settles the calls inside the caller's transaction and says what each
/// was charged (`None`: already settled, or never held). Balances and keys
/// move with one statement per user and per key unless a charge passes what
/// a user has left, which is then settled call by call.
pub(super) async fn settle_holds(
    connection: &mut AnyConnection,
    records: &[&CallRecord],
) -> Result<Vec<Option<i64>>> {
    let ids: Vec<&str> = records.iter().map(|r| r.request_id.as_str()).collect();
    let list = placeholders(connection, 1, ids.len());
    let sql =
        format!("DELETE FROM holds WHERE request_id IN ({list}) RETURNING request_id, amount");
    let mut query = sqlx::query(&sql).persistent(false);
    for id in &ids {
        query = query.bind(*id);
    }
    let mut held: HashMap<String, i64> = query
        .fetch_all(&mut *connection)
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    // Each hold settles its first record; a repeat finds it gone.
    let holds: Vec<Option<i64>> = records.iter().map(|r| held.remove(&r.request_id)).collect();
    let mut charged: Vec<Option<i64>> = vec![None; records.len()];
    let settled: Vec<Result<(), HoldRefusal>> = holds
        .iter()
        .map(|h| {
            if h.is_some() {
                Ok(())
            } else {
                Err(HoldRefusal::Duplicate)
            }
        })
        .collect();
    for (user, indices) in group(records, &settled, |r| &r.user_id) {
        let refund: i64 = indices
            .iter()
            .map(|&i| holds[i].unwrap_or(0) - records[i].priced)
            .sum();
        if add_to_balance(connection, user, refund, true).await? {
            for &index in &indices {
                charged[index] = Some(records[index].priced);
            }
            continue;
        }
        for &index in &indices {
            let hold = holds[index].unwrap_or(0);
            charged[index] = Some(collect(connection, user, hold, records[index].priced).await?);
        }
    }
    for (key, indices) in group(records, &settled, |r| &r.key_id) {
        let change: i64 = indices
            .iter()
            .map(|&i| charged[i].unwrap_or(0) - holds[i].unwrap_or(0))
            .sum();
        sqlx::query("UPDATE api_keys SET used = used + $2 WHERE id = $1")
            .bind(key)
            .bind(change)
            .execute(&mut *connection)
            .await?;
    }
    let logged: Vec<(&CallRecord, i64, i64)> = records
        .iter()
        .enumerate()
        .filter_map(|(i, record)| Some((*record, holds[i]?, charged[i]?)))
        .collect();
    if !logged.is_empty() {
        insert_calls(connection, &logged).await?;
    }
    Ok(charged)
}

/// Collects `priced` against a hold of `held`: all of it if the balance
/// covers the difference, else the hold and whatever the balance has.
async fn collect(
    connection: &mut AnyConnection,
    user: &str,
    held: i64,
    priced: i64,
) -> Result<i64> {
    if add_to_balance(connection, user, held - priced, true).await? {
        return Ok(priced);
    }
    loop {
        let balance: i64 = sqlx::query("SELECT balance FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&mut *connection)
            .await?
            .get(0);
        let emptied = sqlx::query("UPDATE users SET balance = 0 WHERE id = $1 AND balance = $2")
            .bind(user)
            .bind(balance)
            .execute(&mut *connection)
            .await?;
        if emptied.rows_affected() == 1 {
            return Ok(held + balance);
        }
    }
}

/// Indices of the items still in play (`Ok` in `outcome`), grouped by
/// `by`, groups in order of first appearance.
fn group<'a, T, E>(
    items: &'a [&'a T],
    outcome: &[Result<(), E>],
    by: impl Fn(&'a T) -> &'a String,
) -> Vec<(&'a str, Vec<usize>)> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if outcome[index].is_err() {
            continue;
        }
        let name = by(item).as_str();
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, indices)) => indices.push(index),
            None => groups.push((name, vec![index])),
        }
    }
    groups
}

/// `count` parameters from number `first`: `$first, …` for PostgreSQL,
/// `?, …` for SQLite, which looks every `$N` up by name when it parses a
/// statement (quadratic in a multi-row insert) but numbers `?` in order.
/// A transaction that writes. On SQLite it takes the write lock as it
/// begins (`BEGIN IMMEDIATE`), so it waits behind other writers (admin
/// changes, the audit log) for the busy timeout; a deferred one that read
/// first fails at once with `SQLITE_BUSY_SNAPSHOT` when another connection
/// wrote meanwhile.
pub(super) async fn begin_write(
    connection: &mut AnyConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Any>> {
    use sqlx::Connection;
    Ok(if connection.backend_name() == "SQLite" {
        connection.begin_with("BEGIN IMMEDIATE").await?
    } else {
        connection.begin().await?
    })
}

pub(super) fn placeholders(connection: &AnyConnection, first: usize, count: usize) -> String {
    let numbered = connection.backend_name() != "SQLite";
    (first..first + count)
        .map(|n| {
            if numbered {
                format!("${n}")
            } else {
                "?".into()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
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

    /// Calls admitted and not yet settled.
    async fn open_holds(store: &Store) -> i64 {
        sqlx::query("SELECT COUNT(*) FROM holds")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get(0)
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
            assert_eq!(open_holds(&store).await, 1);
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
            assert_eq!(open_holds(&store).await, 0);
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
            assert_eq!(open_holds(&store).await, 0);
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
            assert_eq!(open_holds(&store).await, 1);
        }
    }

    #[tokio::test]
    async fn a_batch_takes_what_balance_and_cap_allow_in_order_and_settles_each_once() {
        use sqlx::Connection;
        for (store, _dir) in stores().await {
            let (user, key) = account(&store, 1000, Some(700)).await;
            let mut connection = store.pool().acquire().await.unwrap();
            let mut tx = connection.begin().await.unwrap();
            let holds = [
                hold("a", &user, &key, 300),
                hold("b", &user, &key, 300),
                hold("a", &user, &key, 10),
                hold("c", &user, &key, 300),
                hold("d", &user, &key, 100),
            ];
            let taken = take_holds(&mut tx, &holds.iter().collect::<Vec<_>>())
                .await
                .unwrap();
            assert_eq!(
                taken,
                vec![
                    Ok(()),
                    Ok(()),
                    Err(HoldRefusal::Duplicate),
                    Err(HoldRefusal::KeyCap {
                        cap: 700,
                        used: 600
                    }),
                    Ok(())
                ]
            );
            let records = [
                record("a", &user, &key, 100),
                record("b", &user, &key, 500),
                record("d", &user, &key, 2000),
                record("a", &user, &key, 1),
            ];
            let charged = settle_holds(&mut tx, &records.iter().collect::<Vec<_>>())
                .await
                .unwrap();
            // d costs 2000 against its 100 held and the 300 left: it takes 400.
            assert_eq!(charged, vec![Some(100), Some(500), Some(400), None]);
            tx.commit().await.unwrap();
            assert_eq!(balance_and_used(&store, &user).await, (0, 1000));
            assert_eq!(open_holds(&store).await, 0);
            let page = store.calls(&CallFilter::default(), 1, 10).await.unwrap();
            assert_eq!(page.data.iter().map(|c| c.charge).sum::<i64>(), 1000);
        }
    }

    #[tokio::test]
    async fn concurrent_calls_through_the_writer_never_overdraw_nor_settle_twice() {
        use crate::store::writer::LedgerWriter;
        for (store, _dir) in stores().await {
            let (user, key) = account(&store, 1500, None).await;
            let writer = std::sync::Arc::new(LedgerWriter::start(&store, 3).await.unwrap());
            let tasks: Vec<_> = (0..200)
                .map(|n| {
                    let (writer, user, key) = (writer.clone(), user.clone(), key.clone());
                    tokio::spawn(async move {
                        let id = format!("w{n}");
                        match writer.hold(hold(&id, &user, &key, 10)).await.unwrap() {
                            Ok(()) => {
                                let first =
                                    writer.settle(record(&id, &user, &key, 5)).await.unwrap();
                                let again =
                                    writer.settle(record(&id, &user, &key, 5)).await.unwrap();
                                assert_eq!((first, again), (Some(5), None));
                                true
                            }
                            Err(refusal) => {
                                assert!(matches!(refusal, HoldRefusal::Balance { .. }));
                                false
                            }
                        }
                    })
                })
                .collect();
            let mut admitted = 0;
            for task in tasks {
                admitted += i64::from(task.await.unwrap());
            }
            // Holds of 10 against 1500, each settled at 5: at least 150 fit.
            assert!((150..=200).contains(&admitted), "{admitted} admitted");
            assert_eq!(
                balance_and_used(&store, &user).await,
                (1500 - 5 * admitted, 5 * admitted)
            );
            assert_eq!(open_holds(&store).await, 0);
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
