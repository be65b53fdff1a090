//! Call logs, usage statistics and plugin figures.

use super::{AdminResult, Params};
use crate::gateway::Gateway;
use crate::plugins::metrics::PluginReport;
use crate::store::calls::{CallFilter, CallPage, Dimension, UsageLine};
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// From 1 (the default).
    page: Option<i64>,
    /// 1 to 1000; 50 by default.
    page_size: Option<i64>,
}

#[utoipa::path(get, path = "/admin/calls", params(CallFilter, Page), responses((status = 200, body = CallPage)))]
pub async fn list_calls(
    State(gateway): State<Arc<Gateway>>,
    Params(filter): Params<CallFilter>,
    Params(page): Params<Page>,
) -> AdminResult<CallPage> {
    let calls = gateway
        .store
        .calls(
            &filter,
            page.page.unwrap_or(1),
            page.page_size.unwrap_or(50),
        )
        .await?;
    Ok(Json(calls))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct By {
    /// `day` (UTC), `model`, `user`, `key`, `channel` or `tenant`.
    #[param(value_type = String)]
    by: Dimension,
}

#[utoipa::path(get, path = "/admin/usage", params(By, CallFilter), responses((status = 200, body = Vec<UsageLine>)))]
pub async fn usage(
    State(gateway): State<Arc<Gateway>>,
    Params(by): Params<By>,
    Params(filter): Params<CallFilter>,
) -> AdminResult<Vec<UsageLine>> {
    Ok(Json(gateway.store.usage(&filter, by.by).await?))
}

/// Calls, failures by kind and call-duration percentiles of every plugin
/// version loaded since start (also on `/metrics` for Prometheus).
#[utoipa::path(get, path = "/admin/plugins/metrics", responses((status = 200, body = Vec<PluginReport>)))]
pub async fn plugin_metrics(State(gateway): State<Arc<Gateway>>) -> AdminResult<Vec<PluginReport>> {
    Ok(Json(gateway.plugin_metrics().reports()))
}
