//! Tenants, groups, users, quota and API keys. Every change that can alter
//! what a key may do clears the gateway's key cache.

use super::{AdminError, AdminResult, Body, Params};
use crate::gateway::Gateway;
use crate::store::accounts::{ApiKeyInfo, Group, KeyUpdate, NewKey, Tenant, User};
use crate::store::ledger::{LedgerEntry, QuotaChange};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The admin API's caller, as the ledger records it.
const ADMIN: &str = "admin";

#[derive(Deserialize, ToSchema)]
pub struct NewTenant {
    /// Letters, digits, `-`, `_`, `.`; drawn at random when left out.
    id: Option<String>,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize, ToSchema)]
pub struct Change {
    name: Option<String>,
    /// `active` or `disabled`.
    status: Option<String>,
}

#[utoipa::path(get, path = "/admin/tenants", responses((status = 200, body = Vec<Tenant>)))]
pub async fn list_tenants(State(gateway): State<Arc<Gateway>>) -> AdminResult<Vec<Tenant>> {
    Ok(Json(gateway.store.tenants().await?))
}

#[utoipa::path(post, path = "/admin/tenants", request_body = NewTenant, responses((status = 200, body = Tenant), (status = 409)))]
pub async fn create_tenant(
    State(gateway): State<Arc<Gateway>>,
    Body(new): Body<NewTenant>,
) -> AdminResult<Tenant> {
    Ok(Json(
        gateway
            .store
            .create_tenant(new.id.as_deref(), &new.name)
            .await?,
    ))
}

#[utoipa::path(patch, path = "/admin/tenants/{id}", request_body = Change, responses((status = 200), (status = 404)))]
pub async fn update_tenant(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Body(change): Body<Change>,
) -> AdminResult<()> {
    gateway
        .store
        .update_tenant(&id, change.name.as_deref(), change.status.as_deref())
        .await?;
    gateway.keys.invalidate();
    Ok(Json(()))
}

#[utoipa::path(get, path = "/admin/groups", responses((status = 200, body = Vec<Group>)))]
pub async fn list_groups(State(gateway): State<Arc<Gateway>>) -> AdminResult<Vec<Group>> {
    Ok(Json(gateway.store.groups().await?))
}

#[derive(Deserialize, ToSchema)]
pub struct GroupRatio {
    /// The group's price multiplier (1.0 = list price).
    ratio: f64,
}

#[utoipa::path(put, path = "/admin/groups/{id}", request_body = GroupRatio, responses((status = 200, body = Group)))]
pub async fn put_group(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Body(body): Body<GroupRatio>,
) -> AdminResult<Group> {
    if !body.ratio.is_finite() {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "ratio must be a number",
        ));
    }
    let group = gateway
        .store
        .put_group(&id, crate::store::prices::ratio::parse(body.ratio))
        .await?;
    gateway.keys.invalidate();
    Ok(Json(group))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantFilter {
    tenant_id: Option<String>,
}

#[utoipa::path(get, path = "/admin/users", params(TenantFilter), responses((status = 200, body = Vec<User>)))]
pub async fn list_users(
    State(gateway): State<Arc<Gateway>>,
    Params(filter): Params<TenantFilter>,
) -> AdminResult<Vec<User>> {
    Ok(Json(
        gateway.store.users(filter.tenant_id.as_deref()).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct NewUser {
    id: Option<String>,
    tenant_id: String,
    #[serde(default = "default_group")]
    group_id: String,
    #[serde(default)]
    name: String,
}

fn default_group() -> String {
    "default".into()
}

#[utoipa::path(post, path = "/admin/users", request_body = NewUser, responses((status = 200, body = User), (status = 404), (status = 409)))]
pub async fn create_user(
    State(gateway): State<Arc<Gateway>>,
    Body(new): Body<NewUser>,
) -> AdminResult<User> {
    Ok(Json(
        gateway
            .store
            .create_user(new.id.as_deref(), &new.tenant_id, &new.group_id, &new.name)
            .await?,
    ))
}

#[utoipa::path(get, path = "/admin/users/{id}", responses((status = 200, body = User), (status = 404)))]
pub async fn get_user(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
) -> AdminResult<User> {
    Ok(Json(gateway.store.user(&id).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct UserChange {
    name: Option<String>,
    group_id: Option<String>,
    status: Option<String>,
}

#[utoipa::path(patch, path = "/admin/users/{id}", request_body = UserChange, responses((status = 200), (status = 404)))]
pub async fn update_user(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Body(change): Body<UserChange>,
) -> AdminResult<()> {
    gateway
        .store
        .update_user(
            &id,
            change.name.as_deref(),
            change.group_id.as_deref(),
            change.status.as_deref(),
        )
        .await?;
    gateway.keys.invalidate();
    Ok(Json(()))
}

#[utoipa::path(post, path = "/admin/users/{id}/top-up", request_body = QuotaChange, responses((status = 200, body = LedgerEntry), (status = 400), (status = 404)))]
pub async fn top_up(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Body(change): Body<QuotaChange>,
) -> AdminResult<LedgerEntry> {
    if change.amount <= 0 {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a top-up must add a positive amount; use adjust to take quota away",
        ));
    }
    Ok(Json(
        gateway
            .store
            .change_quota(&id, "top_up", &change, ADMIN)
            .await?,
    ))
}

#[utoipa::path(post, path = "/admin/users/{id}/adjust", request_body = QuotaChange, responses((status = 200, body = LedgerEntry), (status = 400), (status = 404)))]
pub async fn adjust(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Body(change): Body<QuotaChange>,
) -> AdminResult<LedgerEntry> {
    Ok(Json(
        gateway
            .store
            .change_quota(&id, "adjust", &change, ADMIN)
            .await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Limit {
    /// At most this many entries, newest first (default 100).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/admin/users/{id}/ledger", params(Limit), responses((status = 200, body = Vec<LedgerEntry>)))]
pub async fn ledger(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Params(limit): Params<Limit>,
) -> AdminResult<Vec<LedgerEntry>> {
    let limit = limit.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(gateway.store.ledger(Some(&id), limit).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    user_id: Option<String>,
}

#[utoipa::path(get, path = "/admin/keys", params(UserFilter), responses((status = 200, body = Vec<ApiKeyInfo>)))]
pub async fn list_keys(
    State(gateway): State<Arc<Gateway>>,
    Params(filter): Params<UserFilter>,
) -> AdminResult<Vec<ApiKeyInfo>> {
    Ok(Json(gateway.store.keys(filter.user_id.as_deref()).await?))
}

/// A new key and, this once, its value.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    info: ApiKeyInfo,
    /// The key itself. It is not stored and cannot be shown again.
    key: String,
}

#[utoipa::path(post, path = "/admin/keys", request_body = NewKey, responses((status = 200, body = CreatedKey), (status = 404)))]
pub async fn create_key(
    State(gateway): State<Arc<Gateway>>,
    Body(new): Body<NewKey>,
) -> AdminResult<CreatedKey> {
    let (info, key) = gateway.store.create_key(&new).await?;
    gateway.keys.invalidate();
    Ok(Json(CreatedKey { info, key }))
}

#[utoipa::path(patch, path = "/admin/keys/{id}", request_body = KeyUpdate, responses((status = 200), (status = 404)))]
pub async fn update_key(
    State(gateway): State<Arc<Gateway>>,
    Path(id): Path<String>,
    Body(update): Body<KeyUpdate>,
) -> AdminResult<()> {
    gateway.store.update_key(&id, &update).await?;
    gateway.keys.invalidate();
    Ok(Json(()))
}
