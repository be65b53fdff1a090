//! The admin REST API under `/admin`: accounts, keys, quota, channels,
//! prices, plugin bundles, call logs, usage statistics and the audit log,
//! described by the OpenAPI document at `/admin/openapi.json`. Every route
//! needs the admin token (`Authorization: Bearer …`); without a configured
//! token the API answers 404, as if it did not exist. A tenant's admin
//! token reaches only that tenant's own plugins (and its audit entries).
//! Every request that may change something is recorded in the audit log,
//! whatever its answer.

mod accounts;
mod calls;
mod channels;
mod plugins;

use crate::gateway::Gateway;
use crate::store::StoreError;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, IntoResponseParts, Response, ResponseParts};
use axum::routing::{delete, get, patch, post, put};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice admin API", description = "Accounts, quota, channels, prices, plugin bundles, call logs and the audit log of a Sluice gateway. Amounts are integer quota units; times are milliseconds since the Unix epoch."),
    paths(
        accounts::list_tenants, accounts::create_tenant, accounts::update_tenant,
        accounts::list_groups, accounts::put_group,
        accounts::list_users, accounts::create_user, accounts::get_user, accounts::update_user,
        accounts::top_up, accounts::adjust, accounts::ledger,
        accounts::list_keys, accounts::create_key, accounts::update_key,
        channels::list_channels, channels::put_channel, channels::update_channel_status,
        channels::list_prices, channels::put_price, channels::delete_price,
        calls::list_calls, calls::usage, calls::plugin_metrics,
        plugins::upload, plugins::list, plugins::activate, plugins::rollback, plugins::dry_run, plugins::audit,
        plugins::plugin_limits, plugins::set_plugin_limits,
        plugins::create_tenant_token, plugins::revoke_tenant_token,
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
        .route(
            "/plugins",
            get(plugins::list)
                .post(plugins::upload)
                // Base64 makes the body a third larger than the component.
                .layer(DefaultBodyLimit::max(
                    gateway.max_bundle_bytes() / 3 * 4 + (64 << 10),
                )),
        )
        .route("/plugins/{name}/activate", post(plugins::activate))
        .route("/plugins/{name}/rollback", post(plugins::rollback))
        .route("/plugins/{name}/dry-run", post(plugins::dry_run))
        .route(
            "/tenants/{id}/plugin-limits",
            get(plugins::plugin_limits).put(plugins::set_plugin_limits),
        )
        .route(
            "/tenants/{id}/admin-tokens",
            post(plugins::create_tenant_token),
        )
        .route(
            "/tenants/{id}/admin-tokens/{token_id}",
            delete(plugins::revoke_tenant_token),
        )
        .route("/audit", get(plugins::audit))
        .route_layer(middleware::from_fn(authorize))
        .route_layer(middleware::from_fn_with_state(gateway.clone(), audit))
        .route_layer(middleware::from_fn_with_state(gateway, authenticate))
}

/// Who is making an admin request.
#[derive(Clone, Debug)]
pub struct Actor {
    /// `operator`, or `tenant:<id>`.
    pub name: String,
    /// The tenant a tenant's token acts for.
    pub tenant: Option<String>,
}

/// The routes a tenant's token may use (as matched, under `/admin`).
const TENANT_ROUTES: [&str; 5] = [
    "/plugins",
    "/plugins/{name}/activate",
    "/plugins/{name}/rollback",
    "/plugins/{name}/dry-run",
    "/audit",
];

/// Refuses a tenant's token everywhere but its own plugins' routes.
async fn authorize(request: Request, next: Next) -> Response {
    let actor = request.extensions().get::<Actor>();
    if let Some(actor) = actor.filter(|actor| actor.tenant.is_some()) {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("", |path| path.as_str());
        let route = route.strip_prefix("/admin").unwrap_or(route);
        if !TENANT_ROUTES.contains(&route) {
            return AdminError::forbidden(actor).into_response();
        }
    }
    next.run(request).await
}

/// What an admin change acted on, for the audit log; a handler adds it to
/// its answer (success or error), else the path stands for it.
#[derive(Clone, Debug)]
pub struct Audited {
    target: String,
    content_hash: Option<String>,
}

impl Audited {
    fn target(target: String) -> Self {
        Audited {
            target,
            content_hash: None,
        }
    }

    fn plugin(scope: &str, name: &str, version: &str, content_hash: &str) -> Self {
        Audited {
            target: format!("plugin {name}@{version}{}", scope_label(scope)),
            content_hash: Some(content_hash.into()),
        }
    }

    fn slot(scope: &str, slot: &str) -> Self {
        Audited::target(format!("plugin slot {slot}{}", scope_label(scope)))
    }
}

impl IntoResponseParts for Audited {
    type Error = std::convert::Infallible;
    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Self::Error> {
        parts.extensions_mut().insert(self);
        Ok(parts)
    }
}

fn scope_label(scope: &str) -> String {
    if scope == crate::store::plugins::OPERATOR {
        String::new()
    } else {
        format!(" of tenant {scope}")
    }
}

/// Records every request that may change something once it is answered.
async fn audit(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    // Nesting strips the prefix this router is served under.
    let action = format!("{} /admin{}", request.method(), request.uri().path());
    let actor = request
        .extensions()
        .get::<Actor>()
        .map_or_else(String::new, |actor| actor.name.clone());
    let response = next.run(request).await;
    let audited = response.extensions().get::<Audited>();
    let target = audited.map_or_else(
        || {
            action
                .split_once(' ')
                .map_or("", |(_, path)| path)
                .to_string()
        },
        |a| a.target.clone(),
    );
    let hash = audited.and_then(|a| a.content_hash.as_deref());
    if let Err(error) = gateway
        .store
        .record_audit(&actor, &action, &target, response.status().as_u16(), hash)
        .await
    {
        tracing::error!(%error, %actor, %action, "the audit log could not record an admin request");
    }
    response
}

/// Lets through requests that carry the admin token (as the operator) or
/// an active tenant admin token (as that tenant). Compares digests, so the
/// time taken says nothing about the operator's token.
async fn authenticate(
    State(gateway): State<Arc<Gateway>>,
    mut request: Request,
    next: Next,
) -> Response {
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
    let actor = if Sha256::digest(offered.as_bytes()) == Sha256::digest(token.expose().as_bytes()) {
        Actor {
            name: "operator".into(),
            tenant: None,
        }
    } else {
        let digest = crate::store::accounts::digest(offered);
        match gateway.store.tenant_of_token(&digest).await {
            Ok(Some(tenant)) => Actor {
                name: format!("tenant:{tenant}"),
                tenant: Some(tenant),
            },
            Ok(None) => {
                return AdminError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_admin_token",
                    "Send the admin token as `Authorization: Bearer <token>`.",
                )
                .into_response();
            }
            Err(error) => return AdminError::from(error).into_response(),
        }
    };
    request.extensions_mut().insert(actor);
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
    audited: Option<Audited>,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AdminError {
            status,
            code,
            message: message.into(),
            audited: None,
        }
    }

    fn forbidden(actor: &Actor) -> Self {
        AdminError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} may act only on its own router and pricing plugins.",
                actor.name
            ),
        )
    }

    fn audited(mut self, audited: Audited) -> Self {
        self.audited = Some(audited);
        self
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
        (self.status, self.audited, axum::Json(body)).into_response()
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
