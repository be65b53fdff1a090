//! The client that calls channels: HTTP/1.1 over TCP or TLS, connections
//! kept per thread and origin (see [`pool`]), the connect and first-byte
//! timeouts. Reading the body, with its idle timeout, is [`UpstreamBody`]'s.

mod body;
mod endpoint;
mod pool;

pub use body::UpstreamBody;
pub use endpoint::Endpoint;

use crate::config::UpstreamConfig;
use crate::plugins::bindings::{CredentialPlacement, UpstreamRequest};
use crate::routing::Channel;
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use pool::{Link, Pool};
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;
use tower_service::Service;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How long an unused connection is kept for the next request.
const KEEP_IDLE: Duration = Duration::from_secs(90);

pub struct UpstreamClient {
    connector: HttpsConnector<HttpConnector>,
    pool: Arc<Pool>,
    config: UpstreamConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach the upstream: {0}")]
    Unreachable(String),
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the upstream connection failed: {0}")]
    Broken(String),
    #[error("the channel's request is invalid: {0}")]
    InvalidRequest(String),
}

impl UpstreamClient {
    pub fn new(config: UpstreamConfig) -> Self {
        let mut http = HttpConnector::new();
        // Without it an SSE stream of small writes meets delayed ACKs.
        http.set_nodelay(true);
        // Shared out among a name's addresses, so that an unreachable
        // first one leaves time for the next; `connect` bounds the whole,
        // TLS included.
        http.set_connect_timeout(Some(config.connect_timeout()));
        http.enforce_http(false);
        // HTTP/1.1 only: every provider serves it, and a connection per
        // concurrent request is what a proxy's upstream side does anyway.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .expect("ring supports the default TLS versions")
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        UpstreamClient {
            connector,
            pool: Arc::new(Pool::new(KEEP_IDLE)),
            config,
        }
    }

    /// Sends `request` to `channel` and waits for the response's headers.
    pub async fn send(
        &self,
        channel: &Channel,
        request: UpstreamRequest,
        stream: bool,
        request_id: &str,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let request = build(channel, request, stream, request_id)?;
        let timeout = self.config.first_byte_timeout();
        tokio::time::timeout(timeout, self.exchange(&channel.endpoint, request))
            .await
            .unwrap_or(Err(UpstreamError::Timeout(timeout)))
    }

    /// On a kept connection if there is one. A kept connection is only
    /// taken once it has processed what arrived while it sat idle, such as
    /// the upstream closing it. One that still turns out closed before
    /// the request began to go out passes the request to a new connection;
    /// one that fails after (a close still in flight when it was taken)
    /// fails the request like any broken connection, since the request
    /// may have reached the upstream.
    async fn exchange(
        &self,
        endpoint: &Endpoint,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut kept = self.pool.take(endpoint.key());
        loop {
            let reused = kept.is_some();
            let mut link = match kept.take() {
                Some(link) => link,
                // Boxed: connecting is rare, and its future is several
                // kilobytes every request's future would otherwise hold.
                None => Box::pin(self.connect(endpoint)).await?,
            };
            match link.exchange(request).await {
                Ok(response) => {
                    let (pool, idle) = (self.pool.clone(), self.config.idle_timeout());
                    return Ok(response.map(|body| UpstreamBody::new(body, link, pool, idle)));
                }
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(UpstreamError::Broken(describe(failed.error()))),
                },
            }
        }
    }

    /// A new connection, TLS handshake included, within the connect
    /// timeout.
    async fn connect(&self, endpoint: &Endpoint) -> Result<Link, UpstreamError> {
        let connecting = async {
            let mut connector = self.connector.clone();
            poll_fn(|cx| connector.poll_ready(cx))
                .await
                .map_err(|e| describe(&*e))?;
            let io = connector
                .call(endpoint.origin().clone())
                .await
                .map_err(|e| describe(&*e))?;
            let (sender, connection) = http1::handshake(io).await.map_err(|e| describe(&e))?;
            Ok(Link::new(endpoint.key().clone(), sender, connection))
        };
        let limit = self.config.connect_timeout();
        match tokio::time::timeout(limit, connecting).await {
            Err(_) => Err(UpstreamError::Unreachable(format!(
                "no connection within {limit:?}"
            ))),
            Ok(connected) => connected.map_err(UpstreamError::Unreachable),
        }
    }
}

/// The HTTP request for a channel's request: origin-form target, `Host`
/// from the channel's endpoint, the channel's credential where its
/// protocol puts it.
fn build(
    channel: &Channel,
    upstream: UpstreamRequest,
    stream: bool,
    request_id: &str,
) -> Result<Request<Full<Bytes>>, UpstreamError> {
    let invalid = |e: String| UpstreamError::InvalidRequest(e);
    let header_value = |value: &str| {
        HeaderValue::try_from(value).map_err(|_| invalid("a header value is invalid".into()))
    };
    let endpoint = &channel.endpoint;
    let mut target = String::with_capacity(endpoint.base_path().len() + upstream.path.len() + 1);
    target.push_str(endpoint.base_path());
    target.push_str(&upstream.path);
    if !target.starts_with('/') {
        target.insert(0, '/');
    }
    let mut request = Request::new(Full::new(Bytes::from(upstream.body)));
    *request.method_mut() = Method::POST;
    let headers = request.headers_mut();
    headers.insert(HOST, endpoint.host().clone());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        ACCEPT,
        HeaderValue::from_static(if stream {
            "text/event-stream"
        } else {
            "application/json"
        }),
    );
    headers.insert(REQUEST_ID, header_value(request_id)?);
    for (name, value) in &upstream.headers {
        let name = HeaderName::try_from(name.as_str()).map_err(|e| invalid(e.to_string()))?;
        headers.append(name, header_value(value)?);
    }
    if let Some(secret) = &channel.credential {
        let sensitive = |value: &str| {
            let mut value = HeaderValue::try_from(value)
                .map_err(|_| invalid("the credential is not a valid header value".into()))?;
            value.set_sensitive(true);
            Ok::<_, UpstreamError>(value)
        };
        match &upstream.credential {
            CredentialPlacement::Bearer => {
                headers.insert(
                    AUTHORIZATION,
                    sensitive(&format!("Bearer {}", secret.expose()))?,
                );
            }
            CredentialPlacement::Header(name) => {
                let name =
                    HeaderName::try_from(name.as_str()).map_err(|e| invalid(e.to_string()))?;
                headers.insert(name, sensitive(secret.expose())?);
            }
            CredentialPlacement::Query(name) => {
                target.push(if target.contains('?') { '&' } else { '?' });
                target.push_str(name);
                target.push('=');
                target.push_str(&percent_encode(secret.expose()));
            }
        }
    }
    // The error names no part of the target, which may hold a credential.
    *request.uri_mut() = Uri::try_from(target)
        .map_err(|_| invalid("the upstream path is not a valid URI".into()))?;
    Ok(request)
}

/// The error and its causes. None of them names the request's target,
/// which may carry a query-string credential: the connector sees only the
/// origin, and hyper's errors name no request.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests;
