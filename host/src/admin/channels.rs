//! Channels and price tables. Changes reach the gateway at once: the
//! channel table and the price cache are reloaded; calls in flight keep
//! what they started with.

use super::{AdminError, AdminResult, Body};
use crate::gateway::Gateway;
use crate::store::channels::{ChannelInfo, ChannelSpec};
use crate::store::prices::Price;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;

#[utoipa::path(get, path = "/admin/channels", responses((status = 200, body = Vec<ChannelInfo>)))]
pub async fn list_channels(State(gateway): State<Arc<Gateway>>) -> AdminResult<Vec<ChannelInfo>> {
    let specs = gateway.store.channels().await?;
    Ok(Json(specs.iter().map(ChannelInfo::from).collect()))
}

/// Creates the channel or replaces it. A replacement that gives no
/// credential keeps the stored one.
#[utoipa::path(put, path = "/admin/channels/{name}", request_body = ChannelSpec, responses((status = 200, body = ChannelInfo), (status = 400)))]
pub async fn put_channel(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Body(mut spec): Body<ChannelSpec>,
) -> AdminResult<ChannelInfo> {
    spec.name = name;
    spec.check()?;
    gateway
        .check_channel(&spec)
        .map_err(|message| AdminError::new(StatusCode::BAD_REQUEST, "invalid_request", message))?;
    gateway.store.put_channel(&spec, true).await?;
    reload(&gateway).await?;
    Ok(Json(ChannelInfo::from(&spec)))
}

#[derive(Deserialize, ToSchema)]
pub struct ChannelStatus {
    /// `active` or `disabled`.
    status: String,
}

#[utoipa::path(patch, path = "/admin/channels/{name}", request_body = ChannelStatus, responses((status = 200), (status = 404)))]
pub async fn update_channel_status(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Body(change): Body<ChannelStatus>,
) -> AdminResult<()> {
    if change.status != "active" && change.status != "disabled" {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "status must be \"active\" or \"disabled\"",
        ));
    }
    gateway
        .store
        .set_channel_status(&name, &change.status)
        .await?;
    reload(&gateway).await?;
    Ok(Json(()))
}

async fn reload(gateway: &Gateway) -> Result<(), AdminError> {
    gateway.reload_channels().await.map_err(|message| {
        AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, "reload_failed", message)
    })
}

#[utoipa::path(get, path = "/admin/prices", responses((status = 200, body = Vec<Price>)))]
pub async fn list_prices(State(gateway): State<Arc<Gateway>>) -> AdminResult<Vec<Price>> {
    Ok(Json(gateway.store.prices().await?))
}

#[utoipa::path(put, path = "/admin/prices/{model}", request_body = Price, responses((status = 200, body = Price), (status = 400)))]
pub async fn put_price(
    State(gateway): State<Arc<Gateway>>,
    Path(model): Path<String>,
    Body(mut price): Body<Price>,
) -> AdminResult<Price> {
    price.model = model;
    gateway.store.put_price(&price).await?;
    reload_prices(&gateway).await?;
    Ok(Json(price))
}

#[utoipa::path(delete, path = "/admin/prices/{model}", responses((status = 200), (status = 404)))]
pub async fn delete_price(
    State(gateway): State<Arc<Gateway>>,
    Path(model): Path<String>,
) -> AdminResult<()> {
    gateway.store.delete_price(&model).await?;
    reload_prices(&gateway).await?;
    Ok(Json(()))
}

async fn reload_prices(gateway: &Gateway) -> Result<(), AdminError> {
    if let Some(billing) = &gateway.billing {
        billing.reload_prices().await?;
    }
    Ok(())
}
