//! Plugin bundles: upload a version, list versions, activate one, roll
//! back to the one before; and the audit log of every admin change.

use super::{Actor, AdminError, AdminResult, Audited, Body, Params};
use crate::gateway::{Gateway, PluginChangeError};
use crate::plugins::{Bundle, Manifest};
use crate::store::audit::AuditEntry;
use crate::store::plugins::{BundleVersion, NewBundle, OPERATOR};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    /// The bundle's `plugin.toml`, as text.
    manifest: String,
    /// The WebAssembly component, base64-encoded.
    component: String,
    /// Make it the active version once stored (only if the chain it makes
    /// serves; otherwise it is stored and the answer is 422).
    #[serde(default)]
    activate: bool,
}

/// Stores a new version once its component compiles, exports the world
/// its manifest declares, and starts.
#[utoipa::path(post, path = "/admin/plugins", request_body = Upload,
    responses((status = 201, body = BundleVersion), (status = 400), (status = 409), (status = 413), (status = 422)))]
pub async fn upload(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(actor): axum::Extension<Actor>,
    Body(upload): Body<Upload>,
) -> Result<Response, AdminError> {
    let invalid = |code, message: String| AdminError::new(StatusCode::BAD_REQUEST, code, message);
    let component = base64::engine::general_purpose::STANDARD
        .decode(upload.component.as_bytes())
        .map_err(|e| invalid("invalid_component", format!("component is not base64: {e}")))?;
    let limit = gateway.max_bundle_bytes();
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
    let audited = Audited::plugin(&id.name, &id.version, &id.content_hash);
    gateway.check_bundle(&bundle).await.map_err(|reason| {
        AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_bundle", reason)
            .audited(audited.clone())
    })?;
    gateway
        .store
        .insert_bundle(&NewBundle {
            scope: OPERATOR,
            name: &id.name,
            version: &id.version,
            kind: id.kind.as_str(),
            content_hash: &id.content_hash,
            manifest: &upload.manifest,
            component: &bundle.component,
            uploaded_by: &actor.0,
        })
        .await
        .map_err(|e| AdminError::from(e).audited(audited.clone()))?;
    if upload.activate {
        activate_version(&gateway, &id.name, Some(&id.version), &actor)
            .await
            .map_err(|e| e.audited(audited.clone()))?;
    }
    let listed = version_info(&gateway, &id.name, &id.version).await?;
    Ok((StatusCode::CREATED, audited, Json(listed)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NameFilter {
    /// Only the versions of this bundle name.
    name: Option<String>,
}

/// Uploaded versions, newest first per name, with which one is active.
#[utoipa::path(get, path = "/admin/plugins", params(NameFilter), responses((status = 200, body = Vec<BundleVersion>)))]
pub async fn list(
    State(gateway): State<Arc<Gateway>>,
    Params(filter): Params<NameFilter>,
) -> AdminResult<Vec<BundleVersion>> {
    Ok(Json(
        gateway
            .store
            .bundle_versions(OPERATOR, filter.name.as_deref())
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Activation {
    /// The uploaded version to serve; absent or null: none, so the
    /// built-in or folder bundle of that name serves again.
    #[serde(default)]
    version: Option<String>,
}

/// What serves under a bundle name after a change.
#[derive(Serialize, ToSchema)]
pub struct Active {
    name: String,
    /// The uploaded version now active; null when the built-in or folder
    /// bundle serves.
    version: Option<String>,
}

/// Makes a version active, after checking the chain it makes loads and
/// serves every channel and client protocol; the swap is atomic and
/// requests in flight finish on the version they started with.
#[utoipa::path(post, path = "/admin/plugins/{name}/activate", request_body = Activation,
    responses((status = 200, body = Active), (status = 404), (status = 422)))]
pub async fn activate(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(name): Path<String>,
    Body(activation): Body<Activation>,
) -> Result<Response, AdminError> {
    change(&gateway, &name, activation.version, &actor).await
}

/// Activates again the version that was active before the current one.
/// A second rollback returns to where the first one started.
#[utoipa::path(post, path = "/admin/plugins/{name}/rollback",
    responses((status = 200, body = Active), (status = 404), (status = 422)))]
pub async fn rollback(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(actor): axum::Extension<Actor>,
    Path(name): Path<String>,
) -> Result<Response, AdminError> {
    let previous = gateway.previous_plugin_version(&name).await?;
    change(&gateway, &name, previous, &actor).await
}

async fn change(
    gateway: &Gateway,
    name: &str,
    version: Option<String>,
    actor: &Actor,
) -> Result<Response, AdminError> {
    let audited = match &version {
        Some(version) => {
            let hash = version_info(gateway, name, version).await?.content_hash;
            Audited::plugin(name, version, &hash)
        }
        None => Audited::target(format!("plugin {name} (built-in or folder)")),
    };
    activate_version(gateway, name, version.as_deref(), actor)
        .await
        .map_err(|e| e.audited(audited.clone()))?;
    let active = Active {
        name: name.into(),
        version,
    };
    Ok((audited, Json(active)).into_response())
}

async fn activate_version(
    gateway: &Gateway,
    name: &str,
    version: Option<&str>,
    actor: &Actor,
) -> Result<(), AdminError> {
    gateway
        .activate_plugin(name, version, &actor.0)
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
    name: &str,
    version: &str,
) -> Result<BundleVersion, AdminError> {
    gateway
        .store
        .bundle_versions(OPERATOR, Some(name))
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only this actor's entries (`operator`, `tenant:<id>`).
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
    Params(filter): Params<AuditFilter>,
) -> AdminResult<Vec<AuditEntry>> {
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        gateway
            .store
            .audit(filter.actor.as_deref(), filter.before, limit)
            .await?,
    ))
}
