//! Errors in the shape OpenAI clients expect:
//! `{"error":{"message","type","param","code"}}` with the matching status.

use crate::auth::AuthError;
use crate::plugins::bindings::Denial;
use crate::plugins::{CallError, Failure};
use crate::protocol::openai::Invalid;
use crate::upstream::UpstreamError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<HeaderValue>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind,
            code: Some(code.to_string()),
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn missing_key() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>` (or `x-api-key: <key>`).",
        )
    }

    pub fn invalid_key() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            "Incorrect API key provided.",
        )
    }

    pub fn inactive_key(reason: &str) -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "invalid_api_key",
            format!("This API key cannot be used: {reason}."),
        )
    }

    pub fn insufficient_quota(detail: String) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            "insufficient_quota",
            format!("You exceeded your current quota. {detail}"),
        )
    }

    pub fn duplicate_request(request_id: &str) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "duplicate_request_id",
            format!("A call with x-request-id {request_id:?} was already made; send a new id."),
        )
    }

    pub fn model_not_priced(model: &str) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "model_not_priced",
            format!("The operator has set no price for the model `{model}`."),
        )
    }

    pub fn store_unavailable() -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "store_unavailable",
            "Sluice's database is unavailable; the call was not made. Retry shortly.",
        )
    }

    pub fn model_not_found(model: &str) -> Self {
        let mut error = ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("The model `{model}` does not exist or you do not have access to it."),
        );
        error.param = Some("model".into());
        error
    }

    pub fn invalid(invalid: Invalid) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            message: invalid.message,
            param: invalid.param.map(String::from),
            retry_after: None,
        }
    }

    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "request_too_large",
            format!("The request body exceeds the limit of {limit} bytes."),
        )
    }

    pub fn not_found(path: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!("Unknown request URL: {path}."),
        )
    }

    pub fn denied(denial: Denial) -> Self {
        let status = StatusCode::from_u16(denial.status).unwrap_or(StatusCode::FORBIDDEN);
        let kind = if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        ApiError::new(status, kind, &denial.code, denial.message)
    }

    /// A plugin fault: 500, with a code naming the failure and the plugin.
    /// A plugin's deliberate refusal keeps its own code.
    pub fn plugin(error: &CallError) -> Self {
        let name = &error.plugin.name;
        match &error.failure {
            Failure::Refused { code, message } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                format!("plugin {name}: {message}"),
            ),
            Failure::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                &format!("plugin_unavailable:{name}"),
                format!("The {name} plugin is at capacity; retry shortly."),
            ),
            failure => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &format!("{}:{name}", failure.code()),
                format!("The {name} plugin failed: {failure}."),
            ),
        }
    }

    pub fn no_channel(model: &str) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "no_available_channel",
            format!("No channel is available for model `{model}` right now."),
        )
    }

    /// The last upstream failure, after every channel was tried.
    pub fn upstream(failure: UpstreamFailure) -> Self {
        match failure {
            UpstreamFailure::Transport(UpstreamError::Timeout(after)) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                "upstream_timeout",
                format!(
                    "The upstream did not answer within {} ms.",
                    after.as_millis()
                ),
            ),
            UpstreamFailure::Transport(error) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "server_error",
                "upstream_unavailable",
                format!("The upstream could not be reached: {error}."),
            ),
            UpstreamFailure::Status {
                status,
                retry_after,
            } if status == StatusCode::TOO_MANY_REQUESTS => {
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "rate_limit_exceeded",
                    "The upstream is rate limiting requests; retry later.",
                );
                error.retry_after = retry_after;
                error
            }
            UpstreamFailure::Status { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE => {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    "upstream_overloaded",
                    "The upstream is overloaded; retry later.",
                )
            }
            UpstreamFailure::Status { status, .. } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "server_error",
                "upstream_error",
                // Never the upstream's own text: a 401 from a provider names
                // the gateway's key.
                format!("The upstream failed with status {}.", status.as_u16()),
            ),
        }
    }

    /// A client error the upstream returned (400, 404, 422, …), passed on
    /// in OpenAI's shape with the upstream's explanation.
    pub fn upstream_rejected(status: StatusCode, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            error: Detail,
        }
        #[derive(Deserialize)]
        struct Detail {
            message: Option<String>,
            code: Option<serde_json::Value>,
            param: Option<String>,
        }
        let detail = serde_json::from_slice::<Envelope>(body)
            .ok()
            .map(|e| e.error);
        let code = detail
            .as_ref()
            .and_then(|d| d.code.as_ref())
            .and_then(|c| c.as_str().map(String::from));
        ApiError {
            status,
            kind: "invalid_request_error",
            code,
            message: detail
                .as_ref()
                .and_then(|d| d.message.clone())
                .unwrap_or_else(|| {
                    format!(
                        "The upstream refused the request with status {}.",
                        status.as_u16()
                    )
                }),
            param: detail.and_then(|d| d.param),
            retry_after: None,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

/// Why an attempt at a channel failed, kept to report the last one.
#[derive(Debug, Clone)]
pub enum UpstreamFailure {
    Transport(UpstreamError),
    Status {
        status: StatusCode,
        retry_after: Option<HeaderValue>,
    },
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => ApiError::missing_key(),
            AuthError::Unknown => ApiError::invalid_key(),
            AuthError::Inactive(what) => ApiError::inactive_key(&format!("its {what} is disabled")),
            AuthError::Expired => ApiError::inactive_key("it has expired"),
            AuthError::Unavailable => ApiError::store_unavailable(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(retry_after) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after);
        }
        response
    }
}
