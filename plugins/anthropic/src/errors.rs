//! Error answers between Anthropic's shape
//! (`{"type":"error","error":{"type","message"}}`) and OpenAI's
//! (`{"error":{"message","type","param","code"}}`).
//!
//! The HTTP status decides first, the error's type second, as both
//! providers' SDKs do; a stream's error event has no status of its own.

use serde::{Deserialize, Serialize};
use sluice_sdk::ErrorResponse;
use sluice_sdk::canonical::chat::{ErrorBody, ErrorDetail};

/// Anthropic's error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct AnthropicErrorBody {
    #[serde(rename = "type", default = "error_type")]
    pub kind: String,
    pub error: AnthropicError,
}

fn error_type() -> String {
    "error".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnthropicError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

impl AnthropicErrorBody {
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        AnthropicErrorBody {
            kind: error_type(),
            error: AnthropicError {
                kind: kind.into(),
                message: message.into(),
            },
        }
    }
}

/// Upstream error bodies can be whole HTML pages; clients need the start.
const MESSAGE_LIMIT: usize = 512;

/// An Anthropic error answer → the canonical one.
pub fn to_canonical(error: &ErrorResponse) -> ErrorResponse {
    let parsed = serde_json::from_slice::<AnthropicErrorBody>(&error.body).ok();
    let (kind, message) = match parsed {
        Some(body) => (Some(body.error.kind), body.error.message),
        None => (None, body_text(&error.body, error.status)),
    };
    let (status, body) = canonical_error(Some(error.status), kind.as_deref(), message);
    ErrorResponse {
        status,
        body: crate::json_bytes(&body),
    }
}

/// An Anthropic error (of an answer with `status`, or of a stream event
/// without one) as a canonical status and body.
pub fn canonical_error(
    status: Option<u16>,
    kind: Option<&str>,
    message: String,
) -> (u16, ErrorBody) {
    let kind = kind
        .and_then(known_kind)
        .unwrap_or_else(|| kind_of_status(status));
    let status = match status {
        Some(status) if is_error_status(status) => status,
        _ => kind.status,
    };
    // 529 is Anthropic's own; OpenAI clients know overload as 503.
    let status = if status == 529 { 503 } else { status };
    (status, ErrorBody::new(kind.openai_type, kind.code, message))
}

/// A canonical error answer → Anthropic's.
pub fn from_canonical(error: &ErrorResponse) -> ErrorResponse {
    let detail = match serde_json::from_slice::<ErrorBody>(&error.body) {
        Ok(body) => body.error,
        Err(_) => ErrorDetail {
            message: body_text(&error.body, error.status),
            ..ErrorDetail::default()
        },
    };
    let (status, body) = anthropic_error(Some(error.status), &detail);
    ErrorResponse {
        status,
        body: crate::json_bytes(&body),
    }
}

/// A canonical error (of an answer with `status`, or of a stream event
/// without one) as an Anthropic status and body.
pub fn anthropic_error(status: Option<u16>, detail: &ErrorDetail) -> (u16, AnthropicErrorBody) {
    let status = status.filter(|s| is_error_status(*s));
    let out_of_quota =
        detail.kind == "insufficient_quota" || detail.code.as_deref() == Some("insufficient_quota");
    let kind = match status {
        // Quota is gone, not briefly short: a 429 would make clients retry.
        _ if out_of_quota => &BILLING_ERROR,
        Some(503) => &OVERLOADED_ERROR,
        Some(status) => kind_of_status(Some(status)),
        None => kind_of_detail(detail),
    };
    let status = match status {
        Some(status) if !out_of_quota && status != 503 => status,
        _ => kind.status,
    };
    (
        status,
        AnthropicErrorBody::new(kind.name, detail.message.clone()),
    )
}

/// An Anthropic error type with its status and its canonical shape.
struct Kind {
    name: &'static str,
    status: u16,
    openai_type: &'static str,
    code: Option<&'static str>,
}

const fn kind(
    name: &'static str,
    status: u16,
    openai_type: &'static str,
    code: Option<&'static str>,
) -> Kind {
    Kind {
        name,
        status,
        openai_type,
        code,
    }
}

static INVALID_REQUEST_ERROR: Kind =
    kind("invalid_request_error", 400, "invalid_request_error", None);
static AUTHENTICATION_ERROR: Kind = kind(
    "authentication_error",
    401,
    "authentication_error",
    Some("invalid_api_key"),
);
static BILLING_ERROR: Kind = kind(
    "billing_error",
    402,
    "insufficient_quota",
    Some("insufficient_quota"),
);
static PERMISSION_ERROR: Kind = kind("permission_error", 403, "permission_error", None);
static NOT_FOUND_ERROR: Kind = kind(
    "not_found_error",
    404,
    "invalid_request_error",
    Some("model_not_found"),
);
static REQUEST_TOO_LARGE: Kind = kind(
    "request_too_large",
    413,
    "invalid_request_error",
    Some("request_too_large"),
);
static RATE_LIMIT_ERROR: Kind = kind(
    "rate_limit_error",
    429,
    "requests",
    Some("rate_limit_exceeded"),
);
static API_ERROR: Kind = kind("api_error", 500, "server_error", None);
static TIMEOUT_ERROR: Kind = kind("timeout_error", 504, "server_error", Some("timeout"));
static OVERLOADED_ERROR: Kind = kind("overloaded_error", 529, "server_error", Some("overloaded"));

static KINDS: [&Kind; 10] = [
    &INVALID_REQUEST_ERROR,
    &AUTHENTICATION_ERROR,
    &BILLING_ERROR,
    &PERMISSION_ERROR,
    &NOT_FOUND_ERROR,
    &REQUEST_TOO_LARGE,
    &RATE_LIMIT_ERROR,
    &API_ERROR,
    &TIMEOUT_ERROR,
    &OVERLOADED_ERROR,
];

fn known_kind(name: &str) -> Option<&'static Kind> {
    KINDS.into_iter().find(|kind| kind.name == name)
}

fn kind_of_status(status: Option<u16>) -> &'static Kind {
    match status {
        Some(401) => &AUTHENTICATION_ERROR,
        Some(402) => &BILLING_ERROR,
        Some(403) => &PERMISSION_ERROR,
        Some(404) => &NOT_FOUND_ERROR,
        Some(413) => &REQUEST_TOO_LARGE,
        Some(429) => &RATE_LIMIT_ERROR,
        Some(504) => &TIMEOUT_ERROR,
        Some(529) => &OVERLOADED_ERROR,
        Some(400..=499) => &INVALID_REQUEST_ERROR,
        _ => &API_ERROR,
    }
}

/// The Anthropic type of a canonical error without a status (a stream's
/// error event), read from OpenAI's type and code, or from Anthropic's type
/// where [`canonical_error`] kept it.
fn kind_of_detail(detail: &ErrorDetail) -> &'static Kind {
    let code = detail.code.as_deref().unwrap_or("");
    match (detail.kind.as_str(), code) {
        (_, "rate_limit_exceeded") | ("requests" | "tokens", _) => &RATE_LIMIT_ERROR,
        (_, "overloaded" | "server_is_overloaded" | "slow_down") => &OVERLOADED_ERROR,
        (_, "invalid_api_key") => &AUTHENTICATION_ERROR,
        (_, "model_not_found") => &NOT_FOUND_ERROR,
        (_, "request_too_large") => &REQUEST_TOO_LARGE,
        (_, "timeout") => &TIMEOUT_ERROR,
        (kind, _) => known_kind(kind).unwrap_or(&API_ERROR),
    }
}

fn is_error_status(status: u16) -> bool {
    (400..=599).contains(&status)
}

/// The start of a body that is not the expected JSON, as a message.
fn body_text(body: &[u8], status: u16) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("upstream answered HTTP {status} without a body");
    }
    match text.char_indices().nth(MESSAGE_LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
