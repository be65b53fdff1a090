//! `POST /v1/chat/completions`, phase by phase: authenticate, read and
//! check the body, risk, route, then try the chosen channels in order until
//! one answers, and relay that answer.

use super::Gateway;
use super::stream::{FirstOutput, RelayStream};
use crate::auth::ApiKey;
use crate::plugins::bindings::{Envelope, Verdict};
use crate::protocol::CANONICAL;
use crate::protocol::openai::{ChatRequest, MessageText, parse_chat};
use crate::routing::Channel;
use crate::server::error::{ApiError, UpstreamFailure};
use crate::telemetry::AccessLog;
use crate::upstream::UpstreamBody;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest upstream error body read (to explain a refusal); the rest is
/// dropped with the connection.
const ERROR_BODY_LIMIT: usize = 64 << 10;
/// Largest non-stream answer accepted from an upstream.
const RESPONSE_LIMIT: usize = 256 << 20;

pub async fn chat_completions(
    gateway: Arc<Gateway>,
    request_id: String,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut log = AccessLog::new(request_id);
    match serve(&gateway, &mut log, &headers, body).await {
        Ok(Reply::Complete(response)) => {
            log.emit();
            response
        }
        Ok(Reply::Streaming(response)) => response,
        Err(error) => {
            log.status = error.status.as_u16();
            log.outcome = "refused";
            log.error = Some(error.message.clone());
            log.emit();
            error.into_response()
        }
    }
}

enum Reply {
    Complete(Response),
    /// The stream writes the access line itself when it ends.
    Streaming(Response),
}

async fn serve(
    gateway: &Arc<Gateway>,
    log: &mut AccessLog,
    headers: &HeaderMap,
    body: Body,
) -> Result<Reply, ApiError> {
    let key = gateway.keys.authenticate(headers)?;
    log.caller = Some(key.caller.clone());
    let chat = parse_chat(read_limited(body, headers, gateway.max_body_bytes).await?)
        .map_err(ApiError::invalid)?;
    log.model = Some(chat.model.clone());
    log.stream = chat.stream;
    if !key.may_use(&chat.model) {
        return Err(ApiError::model_not_found(&chat.model));
    }
    let channels = gateway.channels.candidates(&chat.model);
    if channels.is_empty() {
        return Err(ApiError::model_not_found(&chat.model));
    }
    let mut envelope = envelope(&chat, &key);

    let text = Arc::new(MessageText(chat.body.clone()));
    match gateway.chain.risk.check(&envelope, &key.caller, text).await {
        Ok(Verdict::Allow(tags)) => envelope.tags.extend(tags),
        Ok(Verdict::Deny(denial)) => return Err(ApiError::denied(denial)),
        Err(fault) => return Err(ApiError::plugin(&fault)),
    }

    let candidates: Vec<_> = channels.iter().map(|c| c.candidate()).collect();
    let order = gateway
        .chain
        .router
        .route(&envelope, &key.caller, &candidates)
        .await
        .map_err(|fault| ApiError::plugin(&fault))?;
    if order.is_empty() {
        return Err(ApiError::no_channel(&chat.model));
    }

    let canonical = chat.canonical_body();
    let mut last_failure = None;
    for index in order {
        let channel = &channels[index];
        log.channel = Some(channel.name.clone());
        match attempt(gateway, log, channel, &chat, &canonical).await? {
            Attempt::Answered(reply) => return Ok(reply),
            Attempt::Failed(failure) => {
                tracing::warn!(request_id = %log.request_id, channel = %channel.name, ?failure, "channel failed; trying the next");
                last_failure = Some(failure);
            }
        }
    }
    Err(ApiError::upstream(
        last_failure.expect("at least one channel was tried"),
    ))
}

enum Attempt {
    Answered(Reply),
    /// A failure worth trying another channel for.
    Failed(UpstreamFailure),
}

/// One channel: build its request, send it, and relay the answer, or say
/// why the next channel should be tried. A client error (e.g. 400) is final.
async fn attempt(
    gateway: &Arc<Gateway>,
    log: &mut AccessLog,
    channel: &Arc<Channel>,
    chat: &ChatRequest,
    canonical: &Bytes,
) -> Result<Attempt, ApiError> {
    let translator = gateway
        .chain
        .translator(&channel.protocol)
        .expect("Gateway::new checked every channel has a translator");
    let request = translator
        .request_from_canonical(canonical, channel.upstream_model(&chat.model))
        .await
        .map_err(|fault| ApiError::plugin(&fault))?;
    let response = match gateway
        .upstream
        .send(channel, request, chat.stream, &log.request_id)
        .await
    {
        Ok(response) => response,
        Err(error) => return Ok(Attempt::Failed(UpstreamFailure::Transport(error))),
    };
    let status = response.status();
    let idle = gateway.upstream.idle_timeout();
    if !status.is_success() {
        let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
        let body = UpstreamBody::new(response.into_body(), idle)
            .read_all(ERROR_BODY_LIMIT)
            .await
            .unwrap_or_default();
        if failover_worthy(status) {
            return Ok(Attempt::Failed(UpstreamFailure::Status {
                status,
                retry_after,
            }));
        }
        let body = if channel.protocol == CANONICAL {
            body.to_vec()
        } else {
            let error = crate::plugins::bindings::ErrorResponse {
                status: status.as_u16(),
                body: body.to_vec(),
            };
            translator
                .error_to_canonical(&error)
                .await
                .map_err(|f| ApiError::plugin(&f))?
                .body
        };
        return Err(ApiError::upstream_rejected(status, &body));
    }

    if chat.stream {
        let body = UpstreamBody::new(response.into_body(), idle);
        let mut stream = RelayStream::new(body, chat.include_usage);
        return match stream.first_output().await {
            FirstOutput::Failed(error) => Ok(Attempt::Failed(UpstreamFailure::Transport(error))),
            FirstOutput::Ready(first) => {
                log.first_byte();
                let log = std::mem::replace(log, AccessLog::new(String::new()));
                Ok(Attempt::Answered(Reply::Streaming(
                    stream.into_response(first, log),
                )))
            }
        };
    }

    let body = match UpstreamBody::new(response.into_body(), idle)
        .read_all(RESPONSE_LIMIT)
        .await
    {
        Ok(body) => body,
        Err(error) => return Ok(Attempt::Failed(UpstreamFailure::Transport(error))),
    };
    log.usage = sluice_sdk::canonical::usage(&body)
        .ok()
        .flatten()
        .map(Into::into);
    log.first_byte();
    let mut reply = Response::new(Body::from(body));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(Attempt::Answered(Reply::Complete(reply)))
}

/// Failures another channel may not share: the channel's own credential
/// refused (401, 403), its rate limit, its outage.
fn failover_worthy(status: StatusCode) -> bool {
    matches!(status.as_u16(), 401 | 403 | 408 | 409 | 429) || status.is_server_error()
}

/// Reads the body, refusing it with 413 as soon as it passes `limit`.
async fn read_limited(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::too_large(limit))
        }
        Err(error) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body_read_failed",
            format!("The request body could not be read: {error}"),
        )),
    }
}

fn envelope(chat: &ChatRequest, key: &ApiKey) -> Envelope {
    let received_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    Envelope {
        model: chat.model.clone(),
        stream: chat.stream,
        max_output_tokens: chat.max_output_tokens,
        estimated_prompt_tokens: chat.estimated_prompt_tokens(),
        inbound_protocol: CANONICAL.into(),
        tags: key.tags.clone(),
        received_at_ms,
        seed: fastrand::u64(..),
    }
}
