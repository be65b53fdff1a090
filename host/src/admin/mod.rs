//! The admin REST API under `/admin`: accounts, keys, quota, channels,
//! prices, call logs and usage statistics, described by the OpenAPI
//! document at `/admin/openapi.json`. Every route needs the admin token
//! (`Authorization: Bearer …`); without a configured token the API answers
//! 404, as if it did not exist.

mod accounts;
mod calls;
mod channels;

use crate::gateway::Gateway;
use crate::store::StoreError;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice admin API", description = "Accounts, quota, channels, prices and call logs of a Sluice gateway. Amounts are integer quota units; times are milliseconds since the Unix epoch."),
    paths(
        accounts::list_tenants, accounts::create_tenant, accounts::update_tenant,
        accounts::list_groups, accounts::put_group,
        accounts::list_users, accounts::create_user, accounts::get_user, accounts::update_user,
        accounts::top_up, accounts::adjust, accounts::ledger,
        accounts::list_keys, accounts::create_key, accounts::update_key,
        channels::list_channels, channels::put_channel, channels::update_channel_status,
        channels::list_prices, channels::put_price, channels::delete_price,
        calls::list_calls, calls::usage, calls::plugin_metrics,
    ),
    modifiers(&BearerAuth),
    security(("admin_token" = [])),
)]
struct AdminApi;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "admin_token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

pub fn router(gateway: Arc<Gateway>) -> Router<Arc<Gateway>> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route(
            "/tenants",
            get(accounts::list_tenants).post(accounts::create_tenant),
        )
        .route("/tenants/{id}", patch(accounts::update_tenant))
        .route("/groups", get(accounts::list_groups))
        .route("/groups/{id}", put(accounts::put_group))
        .route(
            "/users",
            get(accounts::list_users).post(accounts::create_user),
        )
        .route(
            "/users/{id}",
            get(accounts::get_user).patch(accounts::update_user),
        )
        .route("/users/{id}/top-up", post(accounts::top_up))
        .route("/users/{id}/adjust", post(accounts::adjust))
        .route("/users/{id}/ledger", get(accounts::ledger))
        .route("/keys", get(accounts::list_keys).post(accounts::create_key))
        .route("/keys/{id}", patch(accounts::update_key))
        .route("/channels", get(channels::list_channels))
        .route(
            "/channels/{name}",
            put(channels::put_channel).patch(channels::update_channel_status),
        )
        .route("/prices", get(channels::list_prices))
        .route(
            "/prices/{model}",
            put(channels::put_price).delete(channels::delete_price),
        )
        .route("/calls", get(calls::list_calls))
        .route("/usage", get(calls::usage))
        .route("/plugins/metrics", get(calls::plugin_metrics))
        .route_layer(middleware::from_fn_with_state(gateway, admin_only))
}

/// Lets through requests that carry the admin token. Compares digests, so
/// the time taken says nothing about the token.
async fn admin_only(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let Some(token) = &gateway.admin_token else {
        return AdminError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is no admin API here.",
        )
        .into_response();
    };
    let offered = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer)
        .unwrap_or_default();
    if Sha256::digest(offered.as_bytes()) != Sha256::digest(token.expose().as_bytes()) {
        return AdminError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_admin_token",
            "Send the admin token as `Authorization: Bearer <token>`.",
        )
        .into_response();
    }
    next.run(request).await
}

async fn openapi() -> impl IntoResponse {
    axum::Json(AdminApi::openapi())
}

/// An admin API error, in the same JSON shape as the client API's.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => AdminError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            StoreError::Conflict(message) => {
                AdminError::new(StatusCode::CONFLICT, "conflict", message)
            }
            StoreError::Invalid(message) => {
                AdminError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
            }
            other => {
                tracing::error!(error = %other, "admin request failed");
                AdminError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "The database failed; nothing was changed.",
                )
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        let body = json!({ "error": { "message": self.message, "type": kind, "param": null, "code": self.code } });
        (self.status, axum::Json(body)).into_response()
    }
}

type AdminResult<T> = Result<axum::Json<T>, AdminError>;

/// A JSON body, refused in the admin API's error shape when it does not
/// parse or lacks a field.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(AdminError))]
pub struct Body<T>(T);

/// Query parameters, refused in the admin API's error shape.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AdminError))]
pub struct Params<T>(T);

impl From<axum::extract::rejection::JsonRejection> for AdminError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        AdminError::new(rejection.status(), "invalid_body", rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for AdminError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        AdminError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    }
}
