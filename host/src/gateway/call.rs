//! One call, phase by phase, whatever the client's protocol: authenticate,
//! read the body and bring it to canonical form, check it, risk, route, then
//! try the chosen channels in order until one answers, and relay that
//! answer in the client's protocol.

use super::Gateway;
use super::book::CallBook;
use super::inbound::Inbound;
use super::stream::{FirstOutput, RelayStream, Road};
use crate::auth::ApiKey;
use crate::billing::Delivered;
use crate::joined::Joined;
use crate::plugins::bindings::{ErrorResponse, Usage, Verdict};
use crate::plugins::{Chain, Envelope, PolicyRequest, Translator};
use crate::protocol::CANONICAL;
use crate::protocol::openai::{ChatRequest, MessageText, parse_chat};
use crate::routing::Channel;
use crate::server::error::{ApiError, UpstreamFailure};
use crate::server::unread::OwnBody;
use crate::telemetry::AccessLog;
use crate::upstream::UpstreamBody;
use axum::body::{Body, HttpBody};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest upstream error body read (to explain a refusal); the rest is
/// dropped with the connection.
const ERROR_BODY_LIMIT: usize = 64 << 10;
/// Largest non-stream answer accepted from an upstream.
const RESPONSE_LIMIT: usize = 256 << 20;

pub async fn serve_call(
    gateway: Arc<Gateway>,
    inbound: Inbound,
    request_id: String,
    headers: HeaderMap,
    mut body: OwnBody,
) -> Response {
    let mut book = CallBook::new(AccessLog::new(request_id, inbound.protocol()));
    // Boxed once here: every future above this one (the front service's,
    // the connection's) would otherwise hold the whole call, ~4 KiB, and
    // each moves its inner one as it starts.
    let mut response =
        match Box::pin(serve(&gateway, inbound, &mut book, &headers, &mut body)).await {
            Ok(Reply::Complete(response, delivered)) => {
                book.log.status = response.status().as_u16();
                if !response.status().is_success() {
                    book.log.outcome = "refused";
                }
                book.close(delivered);
                response
            }
            Ok(Reply::Streaming(response)) => response,
            Err(error) => {
                book.log.status = error.status.as_u16();
                book.log.outcome = "refused";
                book.log.error = Some(error.message.clone());
                book.close(Delivered::Text(String::new()));
                Box::pin(inbound.error_response(&gateway, error)).await
            }
        };
    body.settle(&mut response);
    response
}

enum Reply {
    Complete(Response, Delivered),
    /// The stream closes the call's book itself when it ends.
    Streaming(Response),
}

/// The client's request, read and brought to canonical form.
struct Call<'a> {
    chain: Arc<Chain>,
    inbound: Inbound,
    /// The body as the client sent it, for a channel of its own protocol.
    original: Bytes,
    headers: &'a HeaderMap,
    chat: ChatRequest,
    /// The body for channels: canonical, asking for usage.
    canonical: Bytes,
}

async fn serve(
    gateway: &Arc<Gateway>,
    inbound: Inbound,
    book: &mut CallBook,
    headers: &HeaderMap,
    body: &mut OwnBody,
) -> Result<Reply, ApiError> {
    let log = &mut book.log;
    let key = gateway.keys.authenticate(headers).await?;
    // The plugin chain of this call, whatever swaps happen meanwhile.
    let chain = gateway.chains.load().for_tenant(&key.caller.tenant).clone();
    log.caller = Some(key.caller.clone());
    let original = read_limited(body, headers, gateway.max_body_bytes).await?;
    let chat =
        parse_chat(to_canonical(&chain, inbound, &original).await?).map_err(ApiError::invalid)?;
    log.model = Some(chat.model.clone());
    log.stream = chat.stream;
    if !key.may_use(&chat.model) {
        return Err(ApiError::model_not_found(&chat.model));
    }
    let channels = gateway.channels.load().candidates(&chat.model);
    if channels.is_empty() {
        return Err(ApiError::model_not_found(&chat.model));
    }
    let mut request = Arc::new(PolicyRequest::new(
        envelope(&chat, &key, inbound),
        key.caller.clone(),
    ));

    let text = Arc::new(MessageText(chat.body.clone()));
    match chain.risk.check(&request, text).await {
        Ok(Verdict::Allow(tags)) if !tags.is_empty() => {
            Arc::make_mut(&mut request).envelope.tags.extend(tags)
        }
        Ok(Verdict::Allow(_)) => {}
        Ok(Verdict::Deny(denial)) => return Err(ApiError::denied(denial)),
        Err(fault) => return Err(ApiError::plugin(&fault)),
    }

    let canonical = chat.canonical_body();
    if let Some(billing) = &gateway.billing {
        // Boxed: an async function's future is as large as its largest
        // await and is moved whole as it starts; one allocation here keeps
        // admission's large future out of every call's, billed or not.
        book.ticket = Some(
            Box::pin(billing.admit(
                &chain,
                &book.log.request_id,
                key.group_ratio,
                &request,
                inbound.protocol(),
                canonical.clone(),
            ))
            .await?,
        );
    }

    Arc::make_mut(&mut request).candidates = channels.iter().map(|c| c.candidate()).collect();
    let order = chain
        .router
        .route(&request)
        .await
        .map_err(|fault| ApiError::plugin(&fault))?;
    if order.is_empty() {
        return Err(ApiError::no_channel(&chat.model));
    }
    if let Some(ticket) = &mut book.ticket {
        let route = order.iter().map(|&i| channels[i].name.clone()).collect();
        // The request's last use: its candidates move into the record.
        ticket.record_route(
            std::mem::take(&mut Arc::make_mut(&mut request).candidates),
            route,
        );
    }

    let call = Call {
        chain,
        inbound,
        original,
        headers,
        canonical,
        chat,
    };
    let mut last_failure = None;
    for index in order {
        let channel = &channels[index];
        book.log.channel = Some(channel.name.clone());
        match attempt(gateway, book, channel, &call).await? {
            Attempt::Answered(reply) => return Ok(reply),
            Attempt::Failed(failure) => {
                tracing::warn!(request_id = %book.log.request_id, channel = %channel.name, ?failure, "channel failed; trying the next");
                last_failure = Some(failure);
            }
        }
    }
    Err(ApiError::upstream(
        last_failure.expect("at least one channel was tried"),
    ))
}

/// The client's body in canonical form.
pub(super) async fn to_canonical(
    chain: &Chain,
    inbound: Inbound,
    original: &Bytes,
) -> Result<Bytes, ApiError> {
    if inbound.is_canonical() {
        return Ok(original.clone());
    }
    let translator = chain
        .translator(inbound.protocol())
        .expect("Gateway::new checked every inbound protocol has a translator");
    translator
        .request_to_canonical(original)
        .await
        .map(Bytes::from)
        .map_err(|fault| ApiError::plugin(&fault))
}

enum Attempt {
    Answered(Reply),
    /// A failure worth trying another channel for.
    Failed(UpstreamFailure),
}

/// How the answer of one channel reaches the client.
struct Route<'a> {
    channel: &'a Translator,
    /// The client's translator, unless the client speaks canonical.
    client: Option<&'a Translator>,
    /// The channel speaks the client's own non-canonical protocol: the
    /// request and answer pass through but for model and credentials.
    passthrough: bool,
    channel_is_canonical: bool,
}

/// One channel: build its request, send it, and relay the answer, or say
/// why the next channel should be tried. A client error (e.g. 400) is final.
async fn attempt(
    gateway: &Arc<Gateway>,
    book: &mut CallBook,
    channel: &Arc<Channel>,
    call: &Call<'_>,
) -> Result<Attempt, ApiError> {
    let billed = book.ticket.is_some();
    let log = &mut book.log;
    let plugin = |fault| ApiError::plugin(&fault);
    let translator = |protocol: &str| {
        call.chain
            .translator(protocol)
            .expect("every chain serves every channel's and inbound protocol")
    };
    let route = Route {
        channel: translator(&channel.protocol),
        client: (!call.inbound.is_canonical()).then(|| translator(call.inbound.protocol())),
        passthrough: !call.inbound.is_canonical() && channel.protocol == call.inbound.protocol(),
        channel_is_canonical: channel.protocol == CANONICAL,
    };
    let model = channel.upstream_model(&call.chat.model);
    let request = if route.passthrough {
        route
            .channel
            .request_passthrough(&call.original, model, &forwardable(call.headers))
            .await
    } else {
        route
            .channel
            .request_from_canonical(&call.canonical, model)
            .await
    }
    .map_err(plugin)?;
    let response = match gateway
        .upstream
        .send(channel, request, call.chat.stream, &log.request_id)
        .await
    {
        Ok(response) => response,
        Err(error) => return Ok(Attempt::Failed(UpstreamFailure::Transport(error))),
    };
    // Both boxed, for the same reason as admission: a non-stream answer
    // takes neither path, and a stream lives long enough that one
    // allocation is nothing to it.
    if !response.status().is_success() {
        return Box::pin(refused(&route, response)).await;
    }
    if call.chat.stream {
        return Box::pin(streamed(&route, response, call, book)).await;
    }

    let body = match response.into_body().read_all(RESPONSE_LIMIT).await {
        Ok(body) => body,
        Err(error) => return Ok(Attempt::Failed(UpstreamFailure::Transport(error))),
    };
    let answer = answer(&route, body).await.map_err(plugin)?;
    log.usage = answer.usage;
    log.first_byte();
    // Text is counted only where the upstream reported no usage to charge.
    let text = match (&answer.canonical, answer.usage) {
        (Some(canonical), None) if billed => crate::billing::completion_text(canonical),
        _ => String::new(),
    };
    Ok(Attempt::Answered(Reply::Complete(
        json_response(StatusCode::OK, answer.body),
        Delivered::Answer(text),
    )))
}

/// An upstream's refusal: another channel is tried for a failure it may
/// not share; any other refusal is the client's answer.
async fn refused(
    route: &Route<'_>,
    response: hyper::Response<UpstreamBody>,
) -> Result<Attempt, ApiError> {
    let plugin = |fault| ApiError::plugin(&fault);
    let status = response.status();
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let body = response
        .into_body()
        .read_all(ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let (canonical_status, canonical_body) = if route.channel_is_canonical {
        (status, body.to_vec())
    } else {
        let error = ErrorResponse {
            status: status.as_u16(),
            body: body.to_vec(),
        };
        let translated = route
            .channel
            .error_to_canonical(&error)
            .await
            .map_err(plugin)?;
        let translated_status = StatusCode::from_u16(translated.status).unwrap_or(status);
        (translated_status, translated.body)
    };
    if failover_worthy(status) || failover_worthy(canonical_status) {
        return Ok(Attempt::Failed(UpstreamFailure::Status {
            status: canonical_status,
            retry_after,
        }));
    }
    if route.passthrough {
        return Ok(Attempt::Answered(Reply::Complete(
            json_response(status, body),
            Delivered::Text(String::new()),
        )));
    }
    Err(ApiError::upstream_rejected(
        canonical_status,
        &canonical_body,
    ))
}

/// A streamed answer, once its first bytes for the client are ready.
async fn streamed(
    route: &Route<'_>,
    response: hyper::Response<UpstreamBody>,
    call: &Call<'_>,
    book: &mut CallBook,
) -> Result<Attempt, ApiError> {
    let plugin = |fault| ApiError::plugin(&fault);
    let billed = book.ticket.is_some();
    let road = if route.passthrough {
        Road::passthrough(route.channel, billed).await
    } else {
        Road::canonical(
            (!route.channel_is_canonical).then_some(route.channel),
            route.client,
            call.chat.include_usage,
            billed,
        )
        .await
    }
    .map_err(plugin)?;
    let mut stream = RelayStream::new(response.into_body(), road, route.client.cloned());
    match stream.first_output().await {
        FirstOutput::Failed(error) => Ok(Attempt::Failed(UpstreamFailure::Transport(error))),
        FirstOutput::Fault(fault) => Err(plugin(fault)),
        FirstOutput::Ready(first) => {
            book.log.first_byte();
            let book = std::mem::replace(book, CallBook::new(AccessLog::new(String::new(), "")));
            Ok(Attempt::Answered(Reply::Streaming(
                stream.into_response(first, book),
            )))
        }
    }
}

/// A non-stream answer in the client's protocol.
struct Answer {
    body: Bytes,
    /// What the upstream reported.
    usage: Option<Usage>,
    /// The answer in canonical form, unless it passed through.
    canonical: Option<Bytes>,
}

async fn answer(route: &Route<'_>, body: Bytes) -> Result<Answer, crate::plugins::CallError> {
    let (canonical, usage) = if route.channel_is_canonical {
        let usage = sluice_sdk::canonical::usage(&body)
            .ok()
            .flatten()
            .map(Into::into);
        (body, usage)
    } else {
        let usage = route.channel.response_usage(&body).await?;
        if route.passthrough {
            return Ok(Answer {
                body,
                usage,
                canonical: None,
            });
        }
        (
            Bytes::from(route.channel.response_to_canonical(&body).await?),
            usage,
        )
    };
    let body = match route.client {
        None => canonical.clone(),
        Some(client) => client.response_from_canonical(&canonical).await?.into(),
    };
    Ok(Answer {
        body,
        usage,
        canonical: Some(canonical),
    })
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The client's headers a passthrough translator may forward: never its
/// credentials, nor headers that describe this hop rather than the request.
fn forwardable(headers: &HeaderMap) -> Vec<(String, String)> {
    const WITHHELD: [&str; 10] = [
        "authorization",
        "x-api-key",
        "x-goog-api-key",
        "cookie",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "accept-encoding",
    ];
    headers
        .iter()
        .filter(|(name, _)| !WITHHELD.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect()
}

/// Failures another channel may not share: the channel's own credential
/// refused (401, 403), its rate limit, its outage.
fn failover_worthy(status: StatusCode) -> bool {
    matches!(status.as_u16(), 401 | 403 | 408 | 409 | 429) || status.is_server_error()
}

/// Reads the body, refusing it with 413 as soon as it passes `limit`.
pub(super) async fn read_limited<B>(
    mut body: B,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError>
where
    B: HttpBody<Data = Bytes, Error = axum::Error> + Unpin,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::too_large(limit));
    }
    let mut collected = Joined::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "body_read_failed",
                format!("The request body could not be read: {error}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return Err(ApiError::too_large(limit));
            }
            collected.push(data);
        }
    }
    Ok(collected.into_bytes())
}

fn envelope(chat: &ChatRequest, key: &ApiKey, inbound: Inbound) -> Envelope {
    let received_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    Envelope {
        model: chat.model.clone(),
        stream: chat.stream,
        max_output_tokens: chat.max_output_tokens,
        estimated_prompt_tokens: chat.estimated_prompt_tokens(),
        inbound_protocol: inbound.protocol().into(),
        tags: key.tags.clone(),
        received_at_ms,
        seed: fastrand::u64(..),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(pieces: &[&'static str]) -> Body {
        let pieces = pieces
            .iter()
            .map(|p| Ok::<_, std::io::Error>(Bytes::from(*p)));
        Body::from_stream(futures_util::stream::iter(pieces.collect::<Vec<_>>()))
    }

    #[tokio::test]
    async fn a_body_is_read_whole_up_to_its_cap_and_refused_past_it() {
        let none = HeaderMap::new();
        let read = read_limited(body_of(&["{\"a\"", ":", "", "1}"]), &none, 7).await;
        assert_eq!(read.unwrap(), "{\"a\":1}");

        let refused = read_limited(body_of(&["{\"a\"", ":", "12}"]), &none, 7).await;
        assert_eq!(refused.unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);

        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, HeaderValue::from_static("8"));
        let refused = read_limited(body_of(&["{}"]), &declared, 7).await;
        assert_eq!(refused.unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
