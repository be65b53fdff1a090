//! Group commit for the ledger. Holds and settlements are queued to a
//! writer that owns one connection and applies whatever has queued up in one
//! transaction: the statements per call stay the same, but the commit (a
//! sync to disk) and the wait for the database's write lock are paid once
//! per batch, so the cost per call falls as the load rises. Each call's
//! result is given only after the commit that made it durable.
//!
//! Calls are spread over writers by user: a user's balance is only ever
//! written by one writer, so two writers never wait on each other's rows
//! (and cannot deadlock). SQLite, which takes one writer at a time anyway,
//! gets one.

use super::calls::CallRecord;
use super::ledger::{Hold, HoldRefusal, settle_holds, take_holds};
use super::{Backend, Result, Store, StoreError};
use sqlx::AnyConnection;
use std::hash::{Hash, Hasher};
use tokio::sync::{mpsc, oneshot};

/// Most calls one transaction carries.
const BATCH: usize = 256;
/// Calls queued per writer before callers wait.
const QUEUE: usize = 4096;

pub struct LedgerWriter {
    shards: Vec<mpsc::Sender<Op>>,
}

enum Op {
    Hold(Hold, oneshot::Sender<Result<Result<(), HoldRefusal>>>),
    Settle(Box<CallRecord>, oneshot::Sender<Result<Option<i64>>>),
}

enum Done {
    Held(Result<(), HoldRefusal>),
    Settled(Option<i64>),
}

impl Op {
    fn user(&self) -> &str {
        match self {
            Op::Hold(hold, _) => &hold.user_id,
            Op::Settle(record, _) => &record.user_id,
        }
    }

    fn reply(self, done: Result<Done>) {
        // A caller that stopped waiting has nothing left to tell.
        match (self, done) {
            (Op::Hold(_, reply), Ok(Done::Held(held))) => drop(reply.send(Ok(held))),
            (Op::Settle(_, reply), Ok(Done::Settled(settled))) => drop(reply.send(Ok(settled))),
            (Op::Hold(_, reply), Err(error)) => drop(reply.send(Err(error))),
            (Op::Settle(_, reply), Err(error)) => drop(reply.send(Err(error))),
            (_, Ok(_)) => unreachable!("an operation's result is of its own kind"),
        }
    }
}

impl LedgerWriter {
    /// Starts the writers (one for SQLite, `connections` for PostgreSQL),
    /// each on a connection of its own taken from the store's pool.
    pub async fn start(store: &Store, connections: u32) -> Result<Self> {
        let count = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => connections.max(1),
        };
        let mut shards = Vec::new();
        for _ in 0..count {
            let (sender, receiver) = mpsc::channel(QUEUE);
            let connection = store.pool().acquire().await?.detach();
            tokio::spawn(write(store.clone(), connection, receiver));
            shards.push(sender);
        }
        Ok(LedgerWriter { shards })
    }

    pub async fn hold(&self, hold: Hold) -> Result<Result<(), HoldRefusal>> {
        let (reply, answer) = oneshot::channel();
        self.submit(Op::Hold(hold, reply)).await?;
        answer.await.map_err(|_| stopped())?
    }

    pub async fn settle(&self, record: CallRecord) -> Result<Option<i64>> {
        let (reply, answer) = oneshot::channel();
        self.submit(Op::Settle(Box::new(record), reply)).await?;
        answer.await.map_err(|_| stopped())?
    }

    async fn submit(&self, op: Op) -> Result<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        op.user().hash(&mut hasher);
        let shard = &self.shards[(hasher.finish() % self.shards.len() as u64) as usize];
        shard.send(op).await.map_err(|_| stopped())
    }
}

fn stopped() -> StoreError {
    StoreError::Invalid("the ledger writer has stopped".into())
}

/// One writer: takes what has queued (up to `BATCH`), applies it in one
/// transaction, and answers each call after the commit. Should the batch
/// fail, each call is retried alone on a fresh connection, so one bad call
/// cannot fail the others.
async fn write(store: Store, mut connection: AnyConnection, mut queue: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        match apply_all(&mut connection, &batch).await {
            Ok(results) => {
                for (op, done) in batch.drain(..).zip(results) {
                    op.reply(Ok(done));
                }
            }
            Err(error) => {
                tracing::warn!(%error, calls = batch.len(), "a ledger batch failed; applying its calls one by one");
                if let Ok(fresh) = reconnect(&store).await {
                    connection = fresh;
                }
                for op in batch.drain(..) {
                    let done = apply_all(&mut connection, std::slice::from_ref(&op))
                        .await
                        .map(|mut done| done.remove(0));
                    op.reply(done);
                }
            }
        }
    }
}

/// Applies the batch in one transaction: settlements first (they free
/// balance), then holds, each kind with as few statements as its rows allow.
async fn apply_all(connection: &mut AnyConnection, batch: &[Op]) -> Result<Vec<Done>> {
    let mut settles = Vec::new();
    let mut holds = Vec::new();
    for (index, op) in batch.iter().enumerate() {
        match op {
            Op::Settle(record, _) => settles.push((index, &**record)),
            Op::Hold(hold, _) => holds.push((index, hold)),
        }
    }
    let mut tx = super::ledger::begin_write(connection).await?;
    let mut results: Vec<Option<Done>> = batch.iter().map(|_| None).collect();
    if !settles.is_empty() {
        let records: Vec<_> = settles.iter().map(|(_, record)| *record).collect();
        for ((index, _), settled) in settles.iter().zip(settle_holds(&mut tx, &records).await?) {
            results[*index] = Some(Done::Settled(settled));
        }
    }
    if !holds.is_empty() {
        let taken: Vec<_> = holds.iter().map(|(_, hold)| *hold).collect();
        for ((index, _), held) in holds.iter().zip(take_holds(&mut tx, &taken).await?) {
            results[*index] = Some(Done::Held(held));
        }
    }
    tx.commit().await?;
    Ok(results
        .into_iter()
        .map(|done| done.expect("every operation has its result"))
        .collect())
}

async fn reconnect(store: &Store) -> Result<AnyConnection> {
    Ok(store.pool().acquire().await?.detach())
}
