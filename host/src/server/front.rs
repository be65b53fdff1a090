//! The service every connection gets: each exchange's request id and
//! `Connection: close` after an unread body, then the two call routes
//! straight to their handler and everything else through the router.
//!
//! The router is complete on its own (it answers a `GET` on a call route
//! with 405); the shortcut exists because routing, the router's layers and
//! its boxed services cost about 7k instructions per call in callgrind,
//! near a tenth of a whole proxied request.

use super::unread::{self, OwnBody};
use crate::gateway::{Gateway, Inbound, serve_call};
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::Response;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

#[derive(Clone)]
pub struct Front {
    gateway: Arc<Gateway>,
    router: Router,
}

impl Front {
    pub fn new(gateway: Arc<Gateway>, router: Router) -> Self {
        Front { gateway, router }
    }
}

impl Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let inbound = match (request.method(), request.uri().path()) {
            (&Method::POST, "/v1/chat/completions") => Inbound::OpenAiChat,
            (&Method::POST, "/v1/messages") => Inbound::AnthropicMessages,
            _ => {
                let router = self.router.clone();
                return Box::pin(async move { Ok(routed(router, request).await) });
            }
        };
        // Only what the route needs is cloned (each clone is an atomic
        // count both worker threads share), and the request is taken apart
        // at once: its parts, not the whole request, move into the future.
        let gateway = self.gateway.clone();
        let (parts, body) = request.into_parts();
        Box::pin(async move { Ok(call(gateway, inbound, parts, body).await) })
    }
}

/// The exchange's request id, for the router's handlers.
#[derive(Clone)]
pub struct RequestId(pub String);

/// A call route: its handler reads the body itself, so it knows whether
/// the connection can stay open without a shared flag.
async fn call(gateway: Arc<Gateway>, inbound: Inbound, parts: Parts, body: Body) -> Response {
    let (id, header) = request_id(&parts.headers);
    let body = OwnBody::new(parts.version, body);
    let mut response = serve_call(gateway, inbound, id, parts.headers, body).await;
    stamp(&mut response, header);
    response
}

/// Every other route, through the router, whose handlers take the request
/// and its body along.
async fn routed(mut router: Router, request: Request) -> Response {
    let (mut request, read_to_end) = unread::watch(request);
    let (id, header) = request_id(request.headers());
    request.extensions_mut().insert(RequestId(id));
    // The router is always ready.
    let Ok(mut response) = router.call(request).await;
    stamp(&mut response, header);
    read_to_end.settle(&mut response);
    response
}

/// A constant: a name given as a string is parsed and hashed on each use.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client's `x-request-id` when it is a sane token, otherwise a new
/// one, and the header value that returns it on the response.
fn request_id(headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    let id = headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(new_request_id);
    let header = HeaderValue::from_str(&id).ok();
    (id, header)
}

fn stamp(response: &mut Response, header: Option<HeaderValue>) {
    if let Some(value) = header {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
}

/// `req_` and 32 hex digits. Unique, not secret: a fast thread-local
/// generator is enough.
fn new_request_id() -> String {
    let mut id = *b"req_00000000000000000000000000000000";
    hex::encode_to_slice(fastrand::u128(..).to_be_bytes(), &mut id[4..])
        .expect("16 bytes are 32 hex digits");
    String::from_utf8(id.to_vec()).expect("hex digits are ASCII")
}
