//! Gemini error bodies ⇄ OpenAI error bodies.
//!
//! Gemini: `{"error":{"code":429,"message":"…","status":"RESOURCE_EXHAUSTED","details":[…]}}`.
//! OpenAI: `{"error":{"message":"…","type":"requests","param":null,"code":"rate_limit_exceeded"}}`.

use crate::to_json;
use crate::wire::{ErrorEnvelope, Status};
use serde_json::Value;
use sluice_sdk::ErrorResponse;
use sluice_sdk::canonical::chat::{ErrorBody, ErrorDetail};

/// Most of a non-JSON error body worth quoting (a proxy's HTML page, say).
const QUOTED_BODY_LIMIT: usize = 200;

pub fn to_canonical(error: &ErrorResponse) -> ErrorResponse {
    let (status, body) = match read_gemini(&error.body) {
        Some(gemini) => canonical_error(error.status, &gemini),
        None => (
            error.status,
            canonical_body(error.status, unreadable_message(error.status, &error.body)),
        ),
    };
    ErrorResponse {
        status,
        body: to_json(&body),
    }
}

pub fn from_canonical(error: &ErrorResponse) -> ErrorResponse {
    let message = serde_json::from_slice::<ErrorBody>(&error.body)
        .map(|body| body.error.message)
        .unwrap_or_else(|_| unreadable_message(error.status, &error.body));
    ErrorResponse {
        status: error.status,
        body: to_json(&gemini_error(error.status, message)),
    }
}

/// A Gemini error (HTTP status and body) as OpenAI's: the status is kept
/// except for a bad API key, which Gemini reports as a 400.
fn canonical_error(http_status: u16, gemini: &Status) -> (u16, ErrorBody) {
    let message = if gemini.message.is_empty() {
        format!("Gemini answered HTTP {http_status} {}", gemini.status)
            .trim_end()
            .to_string()
    } else {
        gemini.message.clone()
    };
    let status = if http_status == 400 && names_a_bad_key(gemini) {
        401
    } else {
        http_status
    };
    (status, canonical_body(status, message))
}

/// An error chunk of a Gemini stream as OpenAI's; its `code` is the HTTP
/// status the error would have had.
pub fn stream_error_to_canonical(gemini: &Status) -> ErrorBody {
    let status = u16::try_from(gemini.code)
        .ok()
        .filter(|status| *status >= 400)
        .unwrap_or(500);
    canonical_error(status, gemini).1
}

/// The Gemini error for a canonical error event of a stream, whose HTTP
/// status is long sent: the status Gemini would have used is inferred from
/// the error's type and code.
pub fn gemini_error_for(detail: &ErrorDetail) -> ErrorEnvelope {
    let status = match (detail.kind.as_str(), detail.code.as_deref()) {
        (_, Some("invalid_api_key")) | ("authentication_error", _) => 401,
        ("permission_error", _) => 403,
        (_, Some("model_not_found")) => 404,
        (_, Some("rate_limit_exceeded" | "insufficient_quota"))
        | ("requests" | "tokens" | "rate_limit_error", _) => 429,
        (_, Some("overloaded")) => 503,
        (_, Some("timeout")) => 504,
        ("server_error" | "api_error", _) => 500,
        _ => 400,
    };
    gemini_error(status, detail.message.clone())
}

/// Reads a Gemini error body; the streaming endpoint without `alt=sse`
/// wraps it in an array.
fn read_gemini(body: &[u8]) -> Option<Status> {
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Array(mut items) if !items.is_empty() => {
            serde_json::from_value::<ErrorEnvelope>(items.swap_remove(0)).ok()
        }
        other => serde_json::from_value::<ErrorEnvelope>(other).ok(),
    }
    .map(|envelope| envelope.error)
}

/// Gemini answers a missing, wrong or expired key with 400 INVALID_ARGUMENT.
fn names_a_bad_key(gemini: &Status) -> bool {
    let reason_says_so = gemini
        .details
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|details| {
            details.iter().any(|detail| {
                detail.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID")
            })
        });
    reason_says_so
        || gemini
            .message
            .to_ascii_lowercase()
            .contains("api key not valid")
}

fn canonical_body(status: u16, message: String) -> ErrorBody {
    let (kind, code) = match status {
        401 => ("authentication_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        404 => ("invalid_request_error", Some("model_not_found")),
        429 => ("requests", Some("rate_limit_exceeded")),
        503 => ("server_error", Some("overloaded")),
        504 => ("server_error", Some("timeout")),
        500.. => ("server_error", None),
        _ => ("invalid_request_error", None),
    };
    ErrorBody::new(kind, code, message)
}

fn gemini_error(status: u16, message: String) -> ErrorEnvelope {
    let name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if status >= 500 => "INTERNAL",
        _ if status >= 400 => "FAILED_PRECONDITION",
        _ => "UNKNOWN",
    };
    ErrorEnvelope {
        error: Status {
            code: i64::from(status),
            message,
            status: name.into(),
            details: None,
        },
    }
}

fn unreadable_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let quoted: String = text.trim().chars().take(QUOTED_BODY_LIMIT).collect();
    if quoted.is_empty() {
        format!("upstream answered HTTP {status}")
    } else {
        format!("upstream answered HTTP {status}: {quoted}")
    }
}
