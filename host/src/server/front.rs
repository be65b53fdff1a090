//! The service every connection gets: each exchange's request id and
//! `Connection: close` after an unread body, then the two call routes
//! straight to their handler and everything else through the router.
//!
//! The router is complete on its own (it answers a `GET` on a call route
//! with 405); the shortcut exists because routing, the router's layers and
//! its boxed services cost about 7k instructions per call in callgrind,
//! near a tenth of a whole proxied request.

use super::unread;
use crate::gateway::{Gateway, Inbound, serve_call};
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method};
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
        // Only what the request's route needs is cloned: each clone is an
        // atomic count both worker threads share.
        let route = match (request.method(), request.uri().path()) {
            (&Method::POST, "/v1/chat/completions") => {
                Route::Call(self.gateway.clone(), Inbound::OpenAiChat)
            }
            (&Method::POST, "/v1/messages") => {
                Route::Call(self.gateway.clone(), Inbound::AnthropicMessages)
            }
            _ => Route::Router(self.router.clone()),
        };
        Box::pin(async move {
            Ok(exchange(request, |mut request, id| async move {
                match route {
                    Route::Call(gateway, inbound) => call(gateway, inbound, id, request).await,
                    // The router is always ready.
                    Route::Router(mut router) => {
                        request.extensions_mut().insert(RequestId(id));
                        match router.call(request).await {
                            Ok(response) => response,
                        }
                    }
                }
            })
            .await)
        })
    }
}

/// The exchange's request id, for the router's handlers.
#[derive(Clone)]
pub struct RequestId(pub String);

/// Where a request goes.
enum Route {
    Call(Arc<Gateway>, Inbound),
    Router(Router),
}

/// A call route's handler, given the exchange's request id. The request is
/// taken apart by hand: axum's `HeaderMap` extractor would clone what is
/// moved here.
pub async fn call(
    gateway: Arc<Gateway>,
    inbound: Inbound,
    id: String,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    serve_call(gateway, inbound, id, parts.headers, body).await
}

/// A constant: a name given as a string is parsed and hashed on each use.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Keeps the client's `x-request-id` when it is a sane token, otherwise
/// makes one, and returns it on the response; closes the connection after
/// answering a request whose body was left unread. `answer` is given the
/// request and its id.
async fn exchange<F: Future<Output = Response>>(
    request: Request,
    answer: impl FnOnce(Request, String) -> F,
) -> Response {
    let (request, read_to_end) = unread::watch(request);
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(String::from)
        .unwrap_or_else(new_request_id);
    let header = HeaderValue::from_str(&id);
    let mut response = answer(request, id).await;
    if let Ok(value) = header {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    read_to_end.settle(&mut response);
    response
}

/// `req_` and 32 hex digits. Unique, not secret: a fast thread-local
/// generator is enough.
fn new_request_id() -> String {
    let mut id = *b"req_00000000000000000000000000000000";
    hex::encode_to_slice(fastrand::u128(..).to_be_bytes(), &mut id[4..])
        .expect("16 bytes are 32 hex digits");
    String::from_utf8(id.to_vec()).expect("hex digits are ASCII")
}
