//! Plugin bundles: upload a version, list versions, activate one, roll
//! back to the one before, operator-wide or for one tenant; what a tenant
//! may upload and the tokens it does it with; and the audit log of every
//! admin change. A tenant's token reaches only its own scope.

use super::{Actor, AdminError, AdminResult, Audited, Body, Params};
use crate::gateway::{Change, DryRunReport, Gateway, PluginChangeError, stored_bundle};
use crate::plugins::{Bundle, Manifest};
use crate::store::audit::AuditEntry;
use crate::store::delegation::{PluginLimits, TenantToken};
use crate::store::plugins::{BundleVersion, DryRunEntry, NewBundle, OPERATOR, slot};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScopeQuery {
    /// The tenant whose plugins to act on; absent: the operator's (a
    /// tenant's token always acts on its own tenant).
    tenant: Option<String>,
}

/// The scope a request acts on: the actor's tenant for a tenant's token;
/// the tenant named, or the operator's, for the operator.
async fn scope(gateway: &Gateway, actor: &Actor, query: ScopeQuery) -> Result<String, AdminError> {
    match (&actor.tenant, query.tenant) {
        (Some(own), Some(asked)) if *own != asked => Err(AdminError::forbidden(actor)),
        (Some(own), _) => Ok(own.clone()),
        (None, Some(tenant)) => {
            gateway.store.require_tenant(&tenant).await?;
            Ok(tenant)
        }
        (None, None) => Ok(OPERATOR.into()),
    }
}

/// The limits a tenant scope's plugins live within; none for the
/// operator's.
async fn limits_of(gateway: &Gateway, scope: &str) -> Result<Option<PluginLimits>, AdminError> {
    if scope == OPERATOR {
        return Ok(None);
    }
    Ok(Some(gateway.store.plugin_limits(scope).await?))
}

fn kind_allowed(limits: Option<&PluginLimits>, kind: &str) -> Result<(), AdminError> {
    match limits {
        Some(limits) if !limits.kinds.iter().any(|k| k == kind) => Err(AdminError::new(
            StatusCode::FORBIDDEN,
            "kind_not_allowed",
            format!(
                "This tenant may upload {} plugins, not {kind}.",
                limits.kinds.join(" and ")
            ),
        )),
        _ => Ok(()),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// The bundle's `plugin.toml`, as text.
    manifest: String,
    /// The WebAssembly component, base64-encoded.
    component: String,
    /// Make it the active version once stored (only if the chain it makes
    /// serves; otherwise it is stored and the answer is 422). Refused with
    /// 409 for a tenant whose limits require a clean dry run first: upload,
    /// dry-run, then activate.
    #[serde(default)]
    activate: bool,
}

/// Stores a new version once its component compiles, exports the world
/// its manifest declares, starts and passes its manifest's self-tests
/// (within the tenant's limits, for a tenant's).
#[utoipa::path(post, path = "/admin/plugins", params(ScopeQuery), request_body = Upload,
    responses((status = 201, body = BundleVersion), (status = 400), (status = 403), (status = 409), (status = 413), (status = 422)))]
pub async fn upload(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(actor): axum::Extension<Actor>,
    Params(query): Params<ScopeQuery>,
    Body(upload): Body<Upload>,
) -> Result<Response, AdminError> {
    let scope = scope(&gateway, &actor, query).await?;
    let limits = limits_of(&gateway, &scope).await?;
    let invalid = |code, message: String| AdminError::new(StatusCode::BAD_REQUEST, code, message);
    let component = base64::engine::general_purpose::STANDARD
        .decode(upload.component.as_bytes())
        .map_err(|e| invalid("invalid_component", format!("component is not base64: {e}")))?;
    let limit = limits.as_ref().map_or(gateway.max_bundle_bytes(), |l| {
        usize::try_from(l.max_bundle_bytes).unwrap_or(0)
    });
    if component.len() > limit {
        return Err(AdminError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bundle_too_large",
            format!(
                "The component is {} bytes; the limit is {limit}.",
                component.len()
            ),
        ));
    }
    let manifest = Manifest::parse(&upload.manifest)
        .map_err(|e| invalid("invalid_manifest", e.to_string()))?;
    let bundle = Bundle::new(manifest, component);
    let id = bundle.id();
    let audited = Audited::plugin(&scope, &id.name, &id.version, &id.content_hash);
    kind_allowed(limits.as_ref(), id.kind.as_str()).map_err(|e| e.audited(audited.clone()))?;
    if upload.activate && limits.as_ref().is_some_and(|l| l.require_dry_run) {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            "dry_run_required",
            format!(
                "{id} cannot be activated as it is uploaded: this tenant's versions need a clean \
                 dry run first. Upload it without activating, dry-run it, then activate it."
            ),
        )
        .audited(audited));
    }
    gateway
        .check_bundle(&bundle, limits.as_ref())
        .await
        .map_err(|reason| {
            AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_bundle", reason)
                .audited(audited.clone())
        })?;
    gateway
        .store
        .insert_bundle(&NewBundle {
            scope: &scope,
            name: &id.name,
            version: &id.version,
            kind: id.kind.as_str(),
            content_hash: &id.content_hash,
            manifest: &upload.manifest,
            component: &bundle.component,
            uploaded_by: &actor.name,
        })
        .await
        .map_err(|e| AdminError::from(e).audited(audited.clone()))?;
    if upload.activate {
        let slot = slot(&scope, &id.name, id.kind.as_str()).to_string();
        let change = Change {
            scope: &scope,
            slot: &slot,
            bundle: Some(bundle),
        };
        apply(&gateway, change, &actor)
            .await
            .map_err(|e| e.audited(audited.clone()))?;
    }
    let listed = version_info(&gateway, &scope, &id.name, &id.version).await?;
    Ok((StatusCode::CREATED, audited, Json(listed)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NameFilter {
    /// Only the versions of this bundle name.
    name: Option<String>,
}

/// Uploaded versions in the scope, newest first per name, with which ones
/// are active.
#[utoipa::path(get, path = "/admin/plugins", params(ScopeQuery, NameFilter), responses((status = 200, body = Vec<BundleVersion>)))]
pub async fn list(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(actor): axum::Extension<Actor>,
    Params(query): Params<ScopeQuery>,
    Params(filter): Params<NameFilter>,
) -> AdminResult<Vec<BundleVersion>> {
    let scope = scope(&gateway, &actor, query).await?;
    Ok(Json(
        gateway
            .store
            .bundle_versions(&scope, filter.name.as_deref())
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    /// The uploaded version to serve; absent or null: none, so the
    /// operator's plugin serves again (for the operator's scope: the
    /// built-in or folder bundle of that name).
    #[serde(default)]
    version: Option<String>,
    /// Refuse unless this version had a clean dry run (no faults) in the
    /// last 24 hours. Always required for a tenant whose limits say so.
    #[serde(default)]
    require_dry_run: bool,
}

/// What serves in a slot after a change.
#[derive(Serialize, ToSchema)]
pub struct Active {
    /// The slot: a bundle name in the operator's scope, a plugin kind
    /// (`router`, `pricing`) in a tenant's.
    slot: String,
    /// The uploaded bundle now active there, `name@version`; null when the
    /// operator's (built-in or folder) plugin serves.
    active: Option<String>,
}

/// Makes a version active, after checking the chain it makes loads and
/// serves every channel and client protocol; the swap is atomic, and
/// requests in flight finish on the version they started with.
#[utoipa::path(post, path = "/admin/plugins/{name}/activate", params(ScopeQuery), request_body = Activation,
    responses((status = 200, body = Active), (status = 403), (status = 404), (status = 422)))]
pub async fn activate(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(name): Path<String>,
    Params(query): Params<ScopeQuery>,
    Body(activation): Body<Activation>,
) -> Result<Response, AdminError> {
    let scope = scope(&gateway, &actor, query).await?;
    let slot = slot_for(&gateway, &scope, &name).await?;
    let bundle = activation.version.map(|version| (name, version));
    let required = activation.require_dry_run
        || limits_of(&gateway, &scope)
            .await?
            .is_some_and(|limits| limits.require_dry_run);
    if let (true, Some((name, version))) = (required, &bundle) {
        let hash = version_info(&gateway, &scope, name, version)
            .await?
            .content_hash;
        let clean = gateway
            .store
            .latest_dry_run_clean(&scope, name, version, &hash)
            .await?;
        if clean != Some(true) {
            let why = match clean {
                None => "has had no dry run in the last 24 hours",
                Some(_) => "faulted in its latest dry run",
            };
            return Err(AdminError::new(
                StatusCode::CONFLICT,
                "dry_run_required",
                format!("{name}@{version} {why}; activation needs a clean one."),
            )
            .audited(Audited::plugin(&scope, name, version, &hash)));
        }
    }
    change(&gateway, &actor, &scope, &slot, bundle).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    /// The uploaded version to replay.
    version: String,
    /// How many of the newest recorded calls to replay, 1 to 10000
    /// (1000 by default).
    #[serde(default = "default_dry_run_calls")]
    calls: i64,
}

fn default_dry_run_calls() -> i64 {
    1000
}

/// Replays an uploaded router or pricing version over the scope's newest
/// recorded calls beside the version serving now, and reports what would
/// change: calls routed elsewhere, charges changed and by how much in all.
/// The run is recorded, for activations that require a clean one.
#[utoipa::path(post, path = "/admin/plugins/{name}/dry-run", params(ScopeQuery), request_body = DryRun,
    responses((status = 200, body = DryRunReport), (status = 403), (status = 404), (status = 422)))]
pub async fn dry_run(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(name): Path<String>,
    Params(query): Params<ScopeQuery>,
    Body(run): Body<DryRun>,
) -> Result<Response, AdminError> {
    let scope = scope(&gateway, &actor, query).await?;
    let limits = limits_of(&gateway, &scope).await?;
    let stored = gateway.store.bundle(&scope, &name, &run.version).await?;
    let bundle = stored_bundle(stored).map_err(|reason| {
        AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_bundle", reason)
    })?;
    let hash = bundle.id().content_hash;
    let audited = Audited::plugin(&scope, &name, &run.version, &hash);
    let report = gateway
        .dry_run(&scope, &bundle, limits.as_ref(), run.calls)
        .await
        .map_err(|reason| {
            AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, "dry_run_failed", reason)
                .audited(audited.clone())
        })?;
    let text = serde_json::to_string(&report).expect("a report serializes");
    gateway
        .store
        .record_dry_run(&DryRunEntry {
            scope: &scope,
            name: &name,
            version: &run.version,
            content_hash: &hash,
            clean: report.clean,
            report: &text,
            run_by: &actor.name,
        })
        .await?;
    Ok((audited, Json(report)).into_response())
}

/// Activates again what was active in the slot before the current one. A
/// second rollback returns to where the first one started.
#[utoipa::path(post, path = "/admin/plugins/{name}/rollback", params(ScopeQuery),
    responses((status = 200, body = Active), (status = 403), (status = 404), (status = 422)))]
pub async fn rollback(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(name): Path<String>,
    Params(query): Params<ScopeQuery>,
) -> Result<Response, AdminError> {
    let scope = scope(&gateway, &actor, query).await?;
    let slot = slot_for(&gateway, &scope, &name).await?;
    let previous = gateway.store.previous_activation(&scope, &slot).await?;
    change(&gateway, &actor, &scope, &slot, previous).await
}

/// The slot `name` stands for: itself in the operator's scope; in a
/// tenant's, a kind, or the kind of the tenant's bundles of that name.
async fn slot_for(gateway: &Gateway, scope: &str, name: &str) -> Result<String, AdminError> {
    if scope == OPERATOR || PluginLimits::DELEGABLE.contains(&name) {
        return Ok(name.into());
    }
    gateway
        .store
        .bundle_versions(scope, Some(name))
        .await?
        .into_iter()
        .next()
        .map(|version| version.kind)
        .ok_or_else(|| {
            AdminError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("plugin {name} not found"),
            )
        })
}

async fn change(
    gateway: &Gateway,
    actor: &Actor,
    scope: &str,
    slot: &str,
    bundle: Option<(String, String)>,
) -> Result<Response, AdminError> {
    let (loaded, audited) = match &bundle {
        Some((name, version)) => {
            let stored = gateway.store.bundle(scope, name, version).await?;
            let loaded = stored_bundle(stored).map_err(|reason| {
                AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_bundle", reason)
            })?;
            let hash = loaded.id().content_hash;
            let audited = Audited::plugin(scope, name, version, &hash);
            kind_allowed(
                limits_of(gateway, scope).await?.as_ref(),
                loaded.manifest.kind.as_str(),
            )
            .map_err(|e| e.audited(audited.clone()))?;
            (Some(loaded), audited)
        }
        None => (None, Audited::slot(scope, slot)),
    };
    let change = Change {
        scope,
        slot,
        bundle: loaded,
    };
    apply(gateway, change, actor)
        .await
        .map_err(|e| e.audited(audited.clone()))?;
    let active = Active {
        slot: slot.into(),
        active: bundle.map(|(name, version)| format!("{name}@{version}")),
    };
    Ok((audited, Json(active)).into_response())
}

async fn apply(gateway: &Gateway, change: Change<'_>, actor: &Actor) -> Result<(), AdminError> {
    gateway
        .activate_plugin(change, &actor.name)
        .await
        .map_err(|error| match error {
            PluginChangeError::Store(error) => error.into(),
            PluginChangeError::Refused(reason) => AdminError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "chain_refused",
                format!("The chain with this version would not serve: {reason}"),
            ),
        })
}

async fn version_info(
    gateway: &Gateway,
    scope: &str,
    name: &str,
    version: &str,
) -> Result<BundleVersion, AdminError> {
    gateway
        .store
        .bundle_versions(scope, Some(name))
        .await?
        .into_iter()
        .find(|v| v.version == version)
        .ok_or_else(|| {
            AdminError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("plugin {name}@{version} not found"),
            )
        })
}

/// What a tenant's uploaded plugins may be and use (the gateway's defaults
/// until the operator sets them).
#[utoipa::path(get, path = "/admin/tenants/{id}/plugin-limits", responses((status = 200, body = PluginLimits), (status = 404)))]
pub async fn plugin_limits(
    State(gateway): State<Arc<Gateway>>,
    Path(tenant): Path<String>,
) -> AdminResult<PluginLimits> {
    gateway.store.require_tenant(&tenant).await?;
    Ok(Json(gateway.store.plugin_limits(&tenant).await?))
}

/// Sets a tenant's plugin limits. Its plugins are reloaded within them at
/// once; one that no longer fits keeps the chain it had, with an error
/// logged, until it is replaced.
#[utoipa::path(put, path = "/admin/tenants/{id}/plugin-limits", request_body = PluginLimits,
    responses((status = 200, body = PluginLimits), (status = 400), (status = 404)))]
pub async fn set_plugin_limits(
    State(gateway): State<Arc<Gateway>>,
    Path(tenant): Path<String>,
    Body(limits): Body<PluginLimits>,
) -> AdminResult<PluginLimits> {
    gateway.store.set_plugin_limits(&tenant, &limits).await?;
    gateway.reload_plugins().await;
    if let Err(error) = gateway.store.announce_plugin_change().await {
        tracing::error!(%error, "the other replicas were not told of the new limits");
    }
    Ok(Json(limits))
}

/// A token created: its value is shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    token: TenantToken,
    token_value: String,
}

/// Creates an admin token that acts on this tenant's own router and
/// pricing plugins, and nothing else.
#[utoipa::path(post, path = "/admin/tenants/{id}/admin-tokens", responses((status = 201, body = CreatedToken), (status = 404)))]
pub async fn create_tenant_token(
    State(gateway): State<Arc<Gateway>>,
    Path(tenant): Path<String>,
) -> Result<Response, AdminError> {
    let (token, token_value) = gateway.store.create_tenant_token(&tenant).await?;
    let audited = Audited::target(format!("admin token {} of tenant {tenant}", token.id));
    let created = CreatedToken { token, token_value };
    Ok((StatusCode::CREATED, audited, Json(created)).into_response())
}

#[utoipa::path(delete, path = "/admin/tenants/{id}/admin-tokens/{token_id}", responses((status = 200), (status = 404)))]
pub async fn revoke_tenant_token(
    State(gateway): State<Arc<Gateway>>,
    Path((tenant, token_id)): Path<(String, String)>,
) -> AdminResult<()> {
    gateway
        .store
        .revoke_tenant_token(&tenant, &token_id)
        .await?;
    Ok(Json(()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only this actor's entries (`operator`, `tenant:<id>`); a tenant's
    /// token sees only its own.
    actor: Option<String>,
    /// Entries older than this id (the last id of the previous page).
    before: Option<i64>,
    /// 1 to 1000; 100 by default.
    limit: Option<i64>,
}

/// Every admin request that changed or tried to change something, newest
/// first: who, what, when, the answer's status, and for plugins the
/// component's content hash.
#[utoipa::path(get, path = "/admin/audit", params(AuditFilter), responses((status = 200, body = Vec<AuditEntry>)))]
pub async fn audit(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(actor): axum::Extension<Actor>,
    Params(filter): Params<AuditFilter>,
) -> AdminResult<Vec<AuditEntry>> {
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let who = match actor.tenant {
        Some(_) => Some(actor.name.as_str()),
        None => filter.actor.as_deref(),
    };
    Ok(Json(gateway.store.audit(who, filter.before, limit).await?))
}
