//! The pooled HTTP client that calls channels, with the connect and
//! first-byte timeouts; reading the body, with its idle timeout, is the
//! caller's (see [`next_chunk`]).

use crate::config::UpstreamConfig;
use crate::plugins::bindings::{CredentialPlacement, UpstreamRequest};
use crate::routing::Channel;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use thread_local::ThreadLocal;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One connection pool per thread: a connection's task then runs on the
/// thread of the requests that use it, so relaying a response never hands
/// frames between threads (see `server::run`'s thread-per-core runtimes).
pub struct UpstreamClient {
    clients: ThreadLocal<HttpsClient>,
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
        UpstreamClient {
            clients: ThreadLocal::new(),
            config,
        }
    }

    fn client(&self) -> &HttpsClient {
        self.clients.get_or(|| {
            let mut http = HttpConnector::new();
            // Without it an SSE stream of small writes meets delayed ACKs.
            http.set_nodelay(true);
            http.set_connect_timeout(Some(self.config.connect_timeout()));
            http.enforce_http(false);
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
                .expect("ring supports the default TLS versions")
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http);
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(90))
                .build(https)
        })
    }

    pub fn idle_timeout(&self) -> Duration {
        self.config.idle_timeout()
    }

    /// Sends `request` to `channel` and waits for the response's headers.
    pub async fn send(
        &self,
        channel: &Channel,
        request: UpstreamRequest,
        stream: bool,
        request_id: &str,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let invalid = |e: String| UpstreamError::InvalidRequest(e);
        let mut uri = format!("{}{}", channel.base_url, request.path);
        let mut builder = Request::post(&uri)
            .header(CONTENT_TYPE, "application/json")
            .header(
                ACCEPT,
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .header("x-request-id", request_id);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(secret) = &channel.credential {
            match &request.credential {
                CredentialPlacement::Bearer => {
                    let mut value = HeaderValue::try_from(format!("Bearer {}", secret.expose()))
                        .map_err(|_| {
                            invalid("the credential is not a valid header value".into())
                        })?;
                    value.set_sensitive(true);
                    builder = builder.header(AUTHORIZATION, value);
                }
                CredentialPlacement::Header(name) => {
                    let name =
                        HeaderName::try_from(name.as_str()).map_err(|e| invalid(e.to_string()))?;
                    let mut value = HeaderValue::try_from(secret.expose()).map_err(|_| {
                        invalid("the credential is not a valid header value".into())
                    })?;
                    value.set_sensitive(true);
                    builder = builder.header(name, value);
                }
                CredentialPlacement::Query(name) => {
                    uri.push(if uri.contains('?') { '&' } else { '?' });
                    uri.push_str(&format!("{name}={}", percent_encode(secret.expose())));
                    builder = builder.uri(&uri);
                }
            }
        }
        let request = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| invalid(e.to_string()))?;
        let timeout = self.config.first_byte_timeout();
        match tokio::time::timeout(timeout, self.client().request(request)).await {
            Err(_) => Err(UpstreamError::Timeout(timeout)),
            Ok(Err(error)) if error.is_connect() => {
                Err(UpstreamError::Unreachable(describe(&error)))
            }
            Ok(Err(error)) => Err(UpstreamError::Broken(describe(&error))),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// Most bytes gathered into one piece from frames that had already
/// arrived.
const COALESCE_LIMIT: usize = 64 << 10;

/// A response body read piece by piece, each piece holding every frame that
/// had already arrived (an upstream that writes one SSE event per chunk
/// would otherwise cost one client write per event), never waiting for more
/// than the first: streaming stays as prompt as the upstream.
pub struct UpstreamBody {
    body: Incoming,
    idle: Duration,
    /// An error met while gathering, reported after the bytes before it.
    deferred: Option<UpstreamError>,
}

impl UpstreamBody {
    pub fn new(body: Incoming, idle: Duration) -> Self {
        UpstreamBody {
            body,
            idle,
            deferred: None,
        }
    }

    /// The next piece; `None` at the end. A silence longer than the idle
    /// timeout is an error.
    pub async fn next(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        let Some(first) = self.data().await? else {
            return Ok(None);
        };
        let mut gathered: Option<BytesMut> = None;
        // hyper's client hands over one frame per request for more, from
        // its connection task: poll, and if nothing is ready let that task
        // run once before concluding nothing more has arrived.
        let mut yielded = false;
        while gathered.as_ref().map_or(first.len(), BytesMut::len) < COALESCE_LIMIT {
            match self.body.frame().now_or_never() {
                Some(Some(Ok(frame))) => {
                    yielded = false;
                    if let Ok(data) = frame.into_data() {
                        gathered
                            .get_or_insert_with(|| BytesMut::from(&first[..]))
                            .extend_from_slice(&data);
                    }
                }
                Some(Some(Err(error))) => {
                    self.deferred = Some(UpstreamError::Broken(error.to_string()));
                    break;
                }
                // The end is seen again by the next call.
                Some(None) => break,
                None if yielded => break,
                None => {
                    tokio::task::yield_now().await;
                    yielded = true;
                }
            }
        }
        Ok(Some(gathered.map_or(first, BytesMut::freeze)))
    }

    /// The whole rest of the body, of at most `limit` bytes. Frame by
    /// frame: gathering what already arrived (see [`UpstreamBody::next`])
    /// saves nothing when everything is kept until the end anyway.
    pub async fn read_all(&mut self, limit: usize) -> Result<Bytes, UpstreamError> {
        let mut collected = BytesMut::new();
        while let Some(data) = self.data().await? {
            if collected.len() + data.len() > limit {
                return Err(UpstreamError::Broken(format!(
                    "response larger than {limit} bytes"
                )));
            }
            if collected.is_empty() {
                // Most answers are one frame: keep it without a copy.
                collected = BytesMut::from(data);
            } else {
                collected.extend_from_slice(&data);
            }
        }
        Ok(collected.freeze())
    }

    /// The next non-empty data frame, waiting at most the idle timeout.
    async fn data(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        if let Some(error) = self.deferred.take() {
            return Err(error);
        }
        loop {
            match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_) => return Err(UpstreamError::Timeout(self.idle)),
                Ok(None) => return Ok(None),
                Ok(Some(Err(error))) => return Err(UpstreamError::Broken(error.to_string())),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

/// The error and its causes, without the request (whose URL may hold a
/// query-string credential).
fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.is_empty() {
        "connection failed".into()
    } else {
        text
    }
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
mod tests {
    use super::*;

    #[test]
    fn query_credentials_are_percent_encoded() {
        assert_eq!(percent_encode("a b/c+d~"), "a%20b%2Fc%2Bd~");
    }
}
