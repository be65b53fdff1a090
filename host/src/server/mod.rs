//! The HTTP front: routes, request ids, and errors in the client's shape.

pub mod error;
mod front;
pub(crate) mod unread;

use crate::config::Config;
use crate::gateway::{Gateway, Inbound, count_tokens, serve_call};
use crate::server::error::ApiError;
use crate::server::front::{Front, RequestId};
use axum::Router;
use axum::ServiceExt;
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::serve::ListenerExt;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};

/// Runs the gateway described by `config` until SIGINT or SIGTERM.
///
/// Thread per core: each worker thread runs its own single-threaded tokio
/// runtime with its own listening socket on the same port (`SO_REUSEPORT`;
/// the kernel spreads connections) and its own upstream connection pool, so
/// a request and the connections serving it never leave one thread. The
/// work-stealing runtime this replaced spent much of its time handing each
/// response frame between threads.
pub async fn run(mut config: Config) -> Result<(), String> {
    if config.demo.enabled {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("demo upstream: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(crate::demo::serve(listener));
        config.channels.extend(crate::demo::channels(addr));
    }
    let instance = config.billing.instance.clone().unwrap_or_else(|| {
        // Port 0 is a different port every run: no later run can be "this
        // instance again", so the name is unique instead.
        match config.listen.port() {
            0 => crate::store::new_id(&crate::store::ledger::default_instance()),
            port => format!("{}:{port}", crate::store::ledger::default_instance()),
        }
    });
    let gateway = Arc::new(Gateway::new(&config, instance).await?);
    let _watcher = match &config.plugins.dir {
        Some(dir) => Some(crate::plugins::watch::watch(Arc::downgrade(&gateway), dir)?),
        None => None,
    };
    tokio::spawn(crate::gateway::follow_fleet(Arc::downgrade(&gateway)));
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let listeners = bind_shared(config.listen, workers)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listeners[0].local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, workers, channels = config.channels.len(), keys = config.keys.len(), "sluice is listening");
    println!("sluice listening on http://{addr}");
    if config.demo.enabled {
        let key = config.keys.first().map_or("<your key>", |k| k.key.as_str());
        println!("Sluice is serving the demo upstream on http://{addr}. Try:\n");
        println!("  curl http://{addr}/v1/chat/completions -H 'Authorization: Bearer {key}' \\");
        println!(
            "    -H 'Content-Type: application/json' -d '{{\"model\":\"demo\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'\n"
        );
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let threads = listeners
        .into_iter()
        .enumerate()
        .map(|(index, listener)| {
            let (gateway, mut stopped) = (gateway.clone(), stopped.clone());
            std::thread::Builder::new()
                .name(format!("sluice-worker-{index}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async move {
                        // Small SSE writes must leave at once, not wait for delayed ACKs.
                        let listener = TcpListener::from_std(listener)?.tap_io(|tcp| {
                            let _ = tcp.set_nodelay(true);
                        });
                        let front = Front::new(gateway.clone(), router(gateway.clone()));
                        axum::serve(listener, front.into_make_service())
                            .with_graceful_shutdown(async move {
                                let _ = stopped.wait_for(|stop| *stop).await;
                            })
                            .await?;
                        // Settlements run on this thread's runtime: finish them.
                        if let Some(billing) = &gateway.billing {
                            billing.drain().await;
                        }
                        Ok::<(), std::io::Error>(())
                    })
                })
                .map_err(|e| format!("starting a worker thread: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    shutdown_signal().await;
    let _ = stop.send(true);
    tokio::task::spawn_blocking(move || {
        for thread in threads {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "a worker stopped with an error"),
                Err(_) => tracing::error!("a worker thread panicked"),
            }
        }
    })
    .await
    .map_err(|e| e.to_string())
}

/// `count` listening sockets sharing `addr` (the first one resolves port 0).
fn bind_shared(mut addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    (0..count)
        .map(|_| {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket.set_reuseport(true)?;
            socket.bind(addr)?;
            let listener = socket.listen(1024)?;
            addr = listener.local_addr()?;
            listener.into_std()
        })
        .collect()
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", call_route(Inbound::OpenAiChat))
        .route("/v1/messages", call_route(Inbound::AnthropicMessages))
        .route("/v1/messages/count_tokens", post(count_message_tokens))
        .route("/v1/models", get(models))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/admin", crate::admin::router(gateway.clone()))
        .fallback(unknown)
        .method_not_allowed_fallback(wrong_method)
        .with_state(gateway)
}

/// A call route of the router: `POST` served by the call handler (the
/// front service takes these before the router does), other methods 405.
fn call_route(inbound: Inbound) -> MethodRouter<Arc<Gateway>> {
    post(
        move |State(gateway): State<Arc<Gateway>>,
              Extension(RequestId(id)): Extension<RequestId>,
              request: Request| {
            let (parts, body) = request.into_parts();
            let body = unread::OwnBody::new(parts.version, body);
            serve_call(gateway, inbound, id, parts.headers, body)
        },
    )
}

async fn count_message_tokens(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    count_tokens(gateway, headers, body).await
}

/// The models the caller's key may use, in OpenAI's list shape, or in
/// Anthropic's for a client that sends `anthropic-version` (its SDK's
/// `models.list()` reads that shape from the same path).
async fn models(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let anthropic = headers.contains_key("anthropic-version");
    let key = match gateway.keys.authenticate(&headers).await {
        Ok(key) => key,
        Err(error) if anthropic => {
            return Inbound::AnthropicMessages
                .error_response(&gateway, error.into())
                .await;
        }
        Err(error) => return ApiError::from(error).into_response(),
    };
    let ids: Vec<_> = gateway
        .channels
        .load()
        .listed_models()
        .into_iter()
        .filter(|model| key.may_use(model))
        .map(str::to_string)
        .collect();
    let body = if anthropic {
        let data: Vec<_> = ids
            .iter()
            .map(|id| json!({ "type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z" }))
            .collect();
        json!({ "data": data, "has_more": false, "first_id": ids.first(), "last_id": ids.last() })
    } else {
        let data: Vec<_> = ids
            .iter()
            .map(|id| json!({ "id": id, "object": "model", "created": 0, "owned_by": "sluice" }))
            .collect();
        json!({ "object": "list", "data": data })
    };
    axum::Json(body).into_response()
}

/// Plugin figures in Prometheus' text format.
async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gateway.plugin_metrics().prometheus(),
    )
        .into_response()
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn unknown(uri: Uri) -> Response {
    ApiError::not_found(uri.path()).into_response()
}

async fn wrong_method(method: axum::http::Method, uri: Uri) -> Response {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        "method_not_allowed",
        format!("{method} is not supported on {}.", uri.path()),
    )
    .into_response()
}
