//! Dry runs: a router or pricing version replayed over recorded calls
//! beside the version serving now, reporting what would change. Both see
//! exactly the inputs the call log kept (envelope with its seed and time,
//! caller, candidates, price table, usage), so a dry run is deterministic.

use super::Gateway;
use super::plugins::within;
use crate::billing::replay::Replay;
use crate::plugins::bindings::Usage;
use crate::plugins::{Bundle, Candidate, LoadedPlugin, PolicyRequest, Pricing, Router};
use crate::store::calls::RecordedCall;
use crate::store::delegation::PluginLimits;
use crate::store::plugins::OPERATOR;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Differences listed by example, at most.
const EXAMPLES: usize = 10;

#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunReport {
    /// `name@version` of the version replayed.
    pub plugin: String,
    pub content_hash: String,
    /// The version it was compared with, serving now.
    pub active: String,
    /// Recorded calls replayed.
    pub calls: usize,
    /// Calls on which the new version failed (a clean run has none).
    pub faults: usize,
    pub clean: bool,
    /// For a router: how the routes would change.
    pub routing: Option<RoutingChanges>,
    /// For pricing: how the charges would change (charged calls only).
    pub pricing: Option<PricingChanges>,
    /// Some of the calls that came out differently.
    pub examples: Vec<Difference>,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RoutingChanges {
    /// Calls whose first choice of channel would differ.
    pub routed_elsewhere: usize,
    /// Calls whose order of channels would differ at all.
    pub order_changed: usize,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct PricingChanges {
    /// Charged calls replayed.
    pub charged_calls: usize,
    /// Those whose charge would differ.
    pub charges_changed: usize,
    pub total_active: i64,
    pub total_new: i64,
    /// `total_new - total_active`, in quota units.
    pub difference: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Difference {
    pub request_id: String,
    /// What the version serving now answers.
    pub active: String,
    /// What the new version answers.
    pub new: String,
}

impl Gateway {
    /// Replays `bundle` (of `scope`, within `limits` for a tenant's) over
    /// the scope's newest `calls` recorded calls beside the version serving
    /// there now.
    pub async fn dry_run(
        &self,
        scope: &str,
        bundle: &Bundle,
        limits: Option<&PluginLimits>,
        calls: i64,
    ) -> Result<DryRunReport, String> {
        let bundle = match limits {
            Some(limits) => within(bundle.clone(), limits),
            None => bundle.clone(),
        };
        let candidate = self
            .runtime
            .load(&bundle)
            .await
            .map_err(|e| e.to_string())?
            .plugin;
        let chains = self.chains.load_full();
        let chain = if scope == OPERATOR {
            &chains.operator
        } else {
            chains.for_tenant(scope)
        };
        let tenant = (scope != OPERATOR).then_some(scope);
        let recorded = self
            .store
            .recorded_calls(tenant, calls.clamp(1, 10_000))
            .await
            .map_err(|e| e.to_string())?;
        let id = bundle.id();
        let mut report = DryRunReport {
            plugin: id.to_string(),
            content_hash: id.content_hash.clone(),
            active: String::new(),
            calls: 0,
            faults: 0,
            clean: true,
            routing: None,
            pricing: None,
            examples: Vec::new(),
        };
        match candidate {
            LoadedPlugin::Router(new) => {
                report.active = chain.router.id().to_string();
                replay_routes(&chain.router, &new, &recorded, &mut report).await;
            }
            LoadedPlugin::Pricing(new) => {
                report.active = chain.pricing.id().to_string();
                replay_prices(&chain.pricing, &new, &recorded, &mut report).await;
            }
            other => {
                return Err(format!(
                    "{other:?}: only router and pricing versions have dry runs"
                ));
            }
        }
        report.clean = report.faults == 0;
        Ok(report)
    }
}

fn note(report: &mut DryRunReport, request_id: &str, active: String, new: String) {
    if report.examples.len() < EXAMPLES {
        report.examples.push(Difference {
            request_id: request_id.into(),
            active,
            new,
        });
    }
}

async fn replay_routes(
    active: &Router,
    new: &Router,
    recorded: &[RecordedCall],
    report: &mut DryRunReport,
) {
    let mut changes = RoutingChanges::default();
    let route = async |router: &Router, request: &Arc<PolicyRequest>| {
        router
            .route(request)
            .await
            .map(|order| names(&order, &request.candidates))
    };
    for call in recorded {
        let Ok(replay) = serde_json::from_str::<Replay>(&call.replay) else {
            continue;
        };
        if replay.candidates.is_empty() {
            continue;
        }
        report.calls += 1;
        let request = replay.routed();
        let before = route(active, &request)
            .await
            .unwrap_or_else(|e| vec![format!("fault: {}", e.failure)]);
        match route(new, &request).await {
            Err(error) => {
                report.faults += 1;
                note(
                    report,
                    &call.request_id,
                    before.join(","),
                    format!("fault: {}", error.failure),
                );
            }
            Ok(after) if after != before => {
                changes.order_changed += 1;
                if after.first() != before.first() {
                    changes.routed_elsewhere += 1;
                }
                note(report, &call.request_id, before.join(","), after.join(","));
            }
            Ok(_) => {}
        }
    }
    report.routing = Some(changes);
}

fn names(order: &[usize], candidates: &[Candidate]) -> Vec<String> {
    order.iter().map(|&i| candidates[i].name.clone()).collect()
}

async fn replay_prices(
    active: &Pricing,
    new: &Pricing,
    recorded: &[RecordedCall],
    report: &mut DryRunReport,
) {
    let mut changes = PricingChanges::default();
    for call in recorded.iter().filter(|call| call.charged) {
        let Ok(replay) = serde_json::from_str::<Replay>(&call.replay) else {
            continue;
        };
        let [prompt, completion, cached, cache_write, reasoning] =
            call.tokens.map(|t| u64::try_from(t).unwrap_or(0));
        let usage = Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: cached,
            cache_write_tokens: cache_write,
            reasoning_tokens: reasoning,
        };
        report.calls += 1;
        changes.charged_calls += 1;
        let (request, prices) = (replay.priced(), replay.prices);
        // As a live call would be: the ratio model if the active plugin faults.
        let before = active
            .price(&request, usage, prices)
            .await
            .unwrap_or_else(|_| crate::billing::ratio_charge(usage, replay.prices));
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        match new.price(&request, usage, prices).await {
            Err(error) => {
                report.faults += 1;
                note(
                    report,
                    &call.request_id,
                    before.to_string(),
                    format!("fault: {}", error.failure),
                );
            }
            Ok(after) => {
                let after = i64::try_from(after).unwrap_or(i64::MAX);
                changes.total_active = changes.total_active.saturating_add(before);
                changes.total_new = changes.total_new.saturating_add(after);
                if after != before {
                    changes.charges_changed += 1;
                    note(
                        report,
                        &call.request_id,
                        before.to_string(),
                        after.to_string(),
                    );
                }
            }
        }
    }
    changes.difference = changes.total_new.saturating_sub(changes.total_active);
    report.pricing = Some(changes);
}
