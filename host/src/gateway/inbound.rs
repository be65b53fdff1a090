//! The client protocols Sluice serves, and what the host itself must do
//! differently for each: nothing but rendering errors in the client's shape
//! and choosing the translator. Everything else about a protocol is its
//! translator's business.

use super::Gateway;
use crate::plugins::bindings::ErrorResponse;
use crate::protocol::CANONICAL;
use crate::server::error::ApiError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// `POST /v1/chat/completions`, the canonical form.
    OpenAiChat,
    /// `POST /v1/messages`.
    AnthropicMessages,
}

impl Inbound {
    /// The protocol's name, as channels and `[plugins.translators]` spell it.
    pub fn protocol(self) -> &'static str {
        match self {
            Inbound::OpenAiChat => CANONICAL,
            Inbound::AnthropicMessages => "anthropic-messages",
        }
    }

    pub fn is_canonical(self) -> bool {
        self.protocol() == CANONICAL
    }

    /// `error` in the client's shape. A non-canonical protocol's translator
    /// renders it; should the translator fail, the client still gets the
    /// canonical error with the right status rather than nothing.
    pub async fn error_response(self, gateway: &Gateway, error: ApiError) -> Response {
        if self.is_canonical() {
            return error.into_response();
        }
        // Translators are the operator's in every tenant's chain.
        let chains = gateway.chains.load();
        let translator = chains
            .operator
            .translator(self.protocol())
            .expect("Gateway::new checked every inbound protocol has a translator");
        let canonical = ErrorResponse {
            status: error.status.as_u16(),
            body: serde_json::to_vec(&error.body()).expect("JSON values serialize"),
        };
        match translator.error_from_canonical(&canonical).await {
            Ok(translated) => {
                let status = StatusCode::from_u16(translated.status).unwrap_or(error.status);
                let mut response = (status, translated.body).into_response();
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                if let Some(retry_after) = error.retry_after {
                    headers.insert(header::RETRY_AFTER, retry_after);
                }
                response
            }
            Err(fault) => {
                tracing::error!(%fault, "rendering an error for the client failed");
                error.into_response()
            }
        }
    }
}
