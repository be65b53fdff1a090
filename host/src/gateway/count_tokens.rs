//! `POST /v1/messages/count_tokens`: the prompt size of a Messages request,
//! counted locally (see `tokens`), in Anthropic's `{"input_tokens": n}`.

use super::Gateway;
use super::call::{read_limited, to_canonical};
use super::inbound::Inbound;
use crate::protocol::openai::parse_chat;
use crate::server::error::ApiError;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sluice_sdk::canonical::chat::ChatRequest;
use std::sync::Arc;

pub async fn count_tokens(gateway: Arc<Gateway>, headers: HeaderMap, body: Body) -> Response {
    match count(&gateway, &headers, body).await {
        Ok(tokens) => axum::Json(json!({ "input_tokens": tokens })).into_response(),
        Err(error) => {
            Inbound::AnthropicMessages
                .error_response(&gateway, error)
                .await
        }
    }
}

async fn count(gateway: &Gateway, headers: &HeaderMap, body: Body) -> Result<u64, ApiError> {
    let key = gateway.keys.authenticate(headers).await?;
    let original = read_limited(body, headers, gateway.max_body_bytes).await?;
    let mut request: Map<String, Value> = serde_json::from_slice(&original).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            format!("The request body is not a JSON object: {e}"),
        )
    })?;
    // A count request has no `max_tokens`, which a Messages request needs.
    request.entry("max_tokens").or_insert(1.into());
    let as_message = serde_json::to_vec(&request).expect("a JSON map serializes");
    let canonical = to_canonical(
        &gateway.chains.load().operator,
        Inbound::AnthropicMessages,
        &as_message.into(),
    )
    .await?;
    let chat = parse_chat(canonical).map_err(ApiError::invalid)?;
    if !key.may_use(&chat.model) || gateway.channels.load().candidates(&chat.model).is_empty() {
        return Err(ApiError::model_not_found(&chat.model));
    }
    let request: ChatRequest = serde_json::from_slice(&chat.body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            format!("The request could not be read: {e}"),
        )
    })?;
    tokio::task::spawn_blocking(move || crate::tokens::prompt_tokens(&request))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "count_failed",
                e.to_string(),
            )
        })
}
