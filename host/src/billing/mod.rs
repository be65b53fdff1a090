//! Charging for calls. At admission a call's cost is estimated (prompt
//! estimate plus its output cap) and held; when the call ends it is settled
//! exactly once by request id, at the price of what it really used:
//!
//! | how the call ended | charged |
//! |---|---|
//! | complete | the usage the upstream reported; if it reported none, Sluice's count of the prompt and the answer (marked `estimated`) |
//! | client gone | nothing if no output reached the client; otherwise the upstream's usage if it arrived, else the prompt and the output delivered so far, counted by Sluice |
//! | upstream error, timeout, plugin fault, refused | nothing: the hold is refunded |
//! | interrupted (the gateway stopped) | nothing: reconciled at the next start |
//!
//! Prices come from the pricing plugin of the caller's chain, given the
//! model's price table and the caller's group ratio; should the plugin
//! fault, the built-in ratio model prices the call instead, so a charge is
//! never lost. When a tenant prices its users with a plugin of its own,
//! the operator's pricing also prices the call: what the operator charges
//! the tenant. Both amounts, and the plugin version that priced the user's
//! charge, go into the call log.

mod estimate;
pub mod replay;

use crate::plugins::bindings::{PriceTable, Usage};
use crate::plugins::{Candidate, PolicyRequest};
use crate::plugins::{Chain, Pricing, Translator};
use crate::server::error::ApiError;
use crate::store::calls::CallRecord;
use crate::store::ledger::{Hold, HoldRefusal};
use crate::store::prices::{Price, price_for};
use crate::store::writer::LedgerWriter;
use crate::store::{Store, StoreError};
use crate::telemetry::AccessLog;
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

pub use estimate::{completion_text, ratio_charge};

pub struct Billing {
    store: Store,
    /// Holds and settlements, group-committed.
    writer: LedgerWriter,
    instance: String,
    /// Output tokens held for a request that sets no cap of its own.
    completion_reserve: u32,
    prices: ArcSwap<Vec<Price>>,
    /// Settlements under way, so that shutdown can wait for them.
    settlements: TaskTracker,
}

/// What the call delivered to its client, for charging a call the client
/// left early or whose upstream reported no usage. Text means what output
/// tokens pay for: content, reasoning, refusals, tool names and arguments.
pub enum Delivered {
    /// The answer text that reached the client; empty if none did.
    Text(String),
    /// A whole answer reached the client; its text, if it was needed.
    Answer(String),
    /// A passthrough stream's bytes as the client got them, in the channel's
    /// protocol: read (through the channel's translator) only if needed.
    Encoded { channel: Translator, bytes: Vec<u8> },
}

impl Delivered {
    /// Whether any answer reached the client, and its text.
    async fn read(self) -> (bool, String) {
        match self {
            Delivered::Text(text) => (!text.is_empty(), text),
            Delivered::Answer(text) => (true, text),
            Delivered::Encoded { channel, bytes } => {
                let text = estimate::stream_text(&channel, &bytes).await;
                (!text.is_empty(), text)
            }
        }
    }
}

/// A call's hold, to be settled when the call ends. Dropped unsettled (the
/// client left before an answer), it settles the call as `client_gone`
/// with nothing delivered.
pub struct Ticket {
    billing: Arc<Billing>,
    /// The pricing of the chain the call was admitted with, whatever swaps
    /// happen before it settles.
    pricing: Pricing,
    /// The operator's, when `pricing` is the tenant's own.
    operator_pricing: Option<Pricing>,
    request_id: String,
    /// What pricing is shown: the request as admitted.
    request: Arc<PolicyRequest>,
    prices: PriceTable,
    /// The canonical request, to count its prompt should the upstream not.
    canonical: Bytes,
    protocol: &'static str,
    /// The router's candidates and the channels in the order it chose.
    route: Option<(Vec<Candidate>, Vec<String>)>,
    settled: bool,
}

impl Billing {
    /// `writers`: connections given to group-committing the ledger.
    pub async fn new(
        store: Store,
        instance: String,
        completion_reserve: u32,
        writers: u32,
    ) -> Result<Self, StoreError> {
        let prices = store.prices().await?;
        Ok(Billing {
            writer: LedgerWriter::start(&store, writers).await?,
            store,
            instance,
            completion_reserve,
            prices: ArcSwap::from_pointee(prices),
            settlements: TaskTracker::new(),
        })
    }

    /// Re-reads the price tables (after the admin API changed them).
    pub async fn reload_prices(&self) -> Result<(), StoreError> {
        self.prices.store(Arc::new(self.store.prices().await?));
        Ok(())
    }

    /// Settles what an earlier run of this instance left open.
    pub async fn reconcile(&self) -> Result<u64, StoreError> {
        self.store.reconcile(&self.instance).await
    }

    /// Every minute, settles holds older than `after` whoever took them
    /// (see `Store::reconcile_stale`).
    pub fn sweep_stale_holds(self: &Arc<Self>, after: std::time::Duration) {
        let billing = Arc::downgrade(self);
        let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                let Some(billing) = billing.upgrade() else {
                    return;
                };
                let before = crate::store::now_ms().saturating_sub(after);
                match billing.store.reconcile_stale(before).await {
                    Ok(0) => {}
                    Ok(swept) => {
                        tracing::warn!(swept, "refunded stale holds no live process settled")
                    }
                    Err(error) => tracing::error!(%error, "sweeping stale holds failed"),
                }
            }
        });
    }

    /// Waits for every settlement under way.
    pub async fn drain(&self) {
        self.settlements.close();
        self.settlements.wait().await;
    }

    /// Estimates the call's cost and holds it, or refuses the call.
    pub async fn admit(
        self: &Arc<Self>,
        chain: &Chain,
        request_id: &str,
        group_ratio: i64,
        request: &Arc<PolicyRequest>,
        protocol: &'static str,
        canonical: Bytes,
    ) -> Result<Ticket, ApiError> {
        let (envelope, caller) = (&request.envelope, &request.caller);
        let price = price_for(&self.prices.load(), &envelope.model)
            .cloned()
            .ok_or_else(|| ApiError::model_not_priced(&envelope.model))?;
        let prices = PriceTable {
            model_ratio: unsigned(price.model_ratio),
            completion_ratio: unsigned(price.completion_ratio),
            cached_ratio: unsigned(price.cached_ratio),
            cache_write_ratio: unsigned(price.cache_write_ratio),
            group_ratio: unsigned(group_ratio),
            per_call: price.per_call.map(unsigned),
        };
        let estimate = Usage {
            prompt_tokens: u64::from(envelope.estimated_prompt_tokens),
            completion_tokens: u64::from(
                envelope
                    .max_output_tokens
                    .unwrap_or(self.completion_reserve),
            ),
            cached_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        };
        let mut ticket = Ticket {
            billing: self.clone(),
            pricing: chain.pricing.clone(),
            operator_pricing: chain.operator_pricing.clone(),
            request_id: request_id.to_string(),
            request: request.clone(),
            prices,
            canonical,
            protocol,
            route: None,
            settled: true,
        };
        let amount = ticket.price(estimate).await;
        let hold = Hold {
            request_id: request_id.to_string(),
            instance: self.instance.clone(),
            tenant_id: caller.tenant.clone(),
            user_id: caller.user.clone(),
            key_id: caller.key_id.clone(),
            model: envelope.model.clone(),
            protocol: protocol.to_string(),
            stream: envelope.stream,
            amount: signed(amount),
        };
        match self.writer.hold(hold).await {
            Ok(Ok(())) => {
                ticket.settled = false;
                Ok(ticket)
            }
            Ok(Err(HoldRefusal::Balance { balance })) => Err(ApiError::insufficient_quota(
                format!("This call may cost up to {amount} units; the balance is {balance}."),
            )),
            Ok(Err(HoldRefusal::KeyCap { cap, used })) => {
                Err(ApiError::insufficient_quota(format!(
                    "This call may cost up to {amount} units; the key has spent {used} of its {cap}."
                )))
            }
            Ok(Err(HoldRefusal::Duplicate)) => Err(ApiError::duplicate_request(request_id)),
            Err(error) => {
                tracing::error!(%error, request_id, "taking a pre-deduction failed");
                Err(ApiError::store_unavailable())
            }
        }
    }
}

impl Ticket {
    /// Records what the router was given and chose, for dry runs.
    pub fn record_route(&mut self, candidates: Vec<Candidate>, order: Vec<String>) {
        self.route = Some((candidates, order));
    }

    /// What the router and pricing were given, as the call log keeps it.
    fn replay(&mut self) -> String {
        let (candidates, route) = self.route.take().unwrap_or_default();
        let replay = replay::Replay {
            envelope: self.request.envelope.clone(),
            caller: (*self.request.caller).clone(),
            prices: self.prices,
            candidates,
            route,
        };
        serde_json::to_string(&replay).expect("plain data serializes")
    }

    /// Settles the call `log` describes, in the background (the client has
    /// its answer already); shutdown waits for it.
    pub fn settle(mut self, log: &AccessLog, delivered: Delivered) {
        self.settled = true;
        let record = CallRecord {
            request_id: self.request_id.clone(),
            tenant_id: self.request.caller.tenant.clone(),
            user_id: self.request.caller.user.clone(),
            key_id: self.request.caller.key_id.clone(),
            channel: log.channel.clone(),
            model: self.request.envelope.model.clone(),
            protocol: self.protocol.to_string(),
            stream: self.request.envelope.stream,
            status: log.status,
            ending: log.outcome.to_string(),
            error: log.error.clone(),
            latency_ms: millis(log.elapsed()),
            ttft_ms: log.time_to_first_byte().map(millis),
            pricing_plugin: self.pricing_plugin(),
            replay: self.replay(),
            ..CallRecord::default()
        };
        let reported = log.usage;
        let tracker = self.billing.settlements.clone();
        tracker.spawn(async move { self.settle_now(record, reported, delivered).await });
    }

    async fn settle_now(
        self,
        mut record: CallRecord,
        reported: Option<Usage>,
        delivered: Delivered,
    ) {
        let charged_usage = match (record.ending.as_str(), reported) {
            ("complete", Some(usage)) => Some((usage, "upstream")),
            ("complete", None) => {
                let (_, text) = delivered.read().await;
                Some((self.estimate(text).await, "estimated"))
            }
            ("client_gone", reported) => match (delivered.read().await, reported) {
                ((false, _), _) => None,
                (_, Some(usage)) => Some((usage, "upstream")),
                ((true, text), None) => Some((self.estimate(text).await, "estimated")),
            },
            _ => None,
        };
        let shown = charged_usage.map(|(usage, _)| usage).or(reported);
        if let Some(usage) = shown {
            record.prompt_tokens = signed(usage.prompt_tokens);
            record.completion_tokens = signed(usage.completion_tokens);
            record.cached_tokens = signed(usage.cached_tokens);
            record.cache_write_tokens = signed(usage.cache_write_tokens);
            record.reasoning_tokens = signed(usage.reasoning_tokens);
        }
        if let Some((usage, source)) = charged_usage {
            record.usage_source = source.into();
            record.priced = signed(price(&self.pricing, &self, usage).await);
            record.operator_priced = match &self.operator_pricing {
                Some(operator) => signed(price(operator, &self, usage).await),
                None => record.priced,
            };
        } else {
            record.usage_source = if reported.is_some() {
                "upstream"
            } else {
                "none"
            }
            .into();
        }
        let request_id = record.request_id.clone();
        if let Err(error) = self.billing.writer.settle(record).await {
            // The hold stays open; the next start of this instance settles it.
            tracing::error!(%error, %request_id, "settling a call failed");
        }
    }

    /// Sluice's own count of the call: the canonical prompt, and `text` as
    /// the answer. Tokenizing is CPU work, done off the async threads.
    async fn estimate(&self, text: String) -> Usage {
        let canonical = self.canonical.clone();
        let model = self.request.envelope.model.clone();
        tokio::task::spawn_blocking(move || estimate::usage(&model, &canonical, &text))
            .await
            .unwrap_or(Usage {
                prompt_tokens: 0,
                completion_tokens: 0,
                cached_tokens: 0,
                cache_write_tokens: 0,
                reasoning_tokens: 0,
            })
    }

    /// The charge to the caller's user for `usage`.
    async fn price(&self, usage: Usage) -> u64 {
        price(&self.pricing, self, usage).await
    }

    /// The pricing plugin version behind the user's charge, as the call
    /// log records it: `name@version` and the start of its content hash.
    fn pricing_plugin(&self) -> String {
        let id = self.pricing.id();
        format!("{id}#{}", &id.content_hash[..12])
    }
}

/// The charge for `usage` of `ticket`'s call under `pricing`, or the
/// built-in ratio model's if the plugin faults.
async fn price(pricing: &Pricing, ticket: &Ticket, usage: Usage) -> u64 {
    match pricing.price(&ticket.request, usage, ticket.prices).await {
        Ok(charge) => charge,
        Err(fault) => {
            tracing::warn!(request_id = %ticket.request_id, %fault, "the pricing plugin failed; priced by the built-in ratio model");
            estimate::ratio_charge(usage, ticket.prices)
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        let record = CallRecord {
            request_id: std::mem::take(&mut self.request_id),
            tenant_id: self.request.caller.tenant.clone(),
            user_id: self.request.caller.user.clone(),
            key_id: self.request.caller.key_id.clone(),
            model: self.request.envelope.model.clone(),
            protocol: self.protocol.to_string(),
            stream: self.request.envelope.stream,
            ending: "client_gone".into(),
            error: Some("the client left before the answer".into()),
            usage_source: "none".into(),
            pricing_plugin: self.pricing_plugin(),
            replay: self.replay(),
            ..CallRecord::default()
        };
        let billing = self.billing.clone();
        self.billing.settlements.spawn(async move {
            let request_id = record.request_id.clone();
            if let Err(error) = billing.writer.settle(record).await {
                tracing::error!(%error, %request_id, "settling a call failed");
            }
        });
    }
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
