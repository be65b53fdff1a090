//! `sluice plugin push <bundle>`: uploads a bundle directory to a gateway's
//! admin API (operator-wide, for a tenant, or with a tenant's own token),
//! optionally activating it.

use crate::plugins::Bundle;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;

pub struct Push<'a> {
    pub bundle: &'a Path,
    /// The gateway, e.g. `http://127.0.0.1:8080`.
    pub url: &'a str,
    pub token: &'a str,
    /// Upload into this tenant's scope (with the operator's token).
    pub tenant: Option<&'a str>,
    pub activate: bool,
}

/// Uploads the bundle; returns the admin API's description of the stored
/// version, or its error.
pub async fn push(push: &Push<'_>) -> Result<String, String> {
    let bundle =
        Bundle::read_dir(push.bundle).map_err(|e| format!("{}: {e}", push.bundle.display()))?;
    let manifest = std::fs::read_to_string(push.bundle.join("plugin.toml"))
        .map_err(|e| format!("{}: {e}", push.bundle.display()))?;
    let body = serde_json::json!({
        "manifest": manifest,
        "component": base64::engine::general_purpose::STANDARD.encode(&bundle.component),
        "activate": push.activate,
    });
    let mut url = format!("{}/admin/plugins", push.url.trim_end_matches('/'));
    if let Some(tenant) = push.tenant {
        url.push_str(&format!("?tenant={tenant}"));
    }
    let request = Request::post(&url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", push.token))
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("{url}: {e}"))?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
        .map_err(|e| e.to_string())?
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let text = response
        .into_body()
        .collect()
        .await
        .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
        .map_err(|e| format!("{url}: {e}"))?;
    if status.is_success() {
        Ok(text)
    } else {
        Err(format!("the gateway refused the bundle ({status}): {text}"))
    }
}
