//! Error answers both ways, and error events in both stream directions.

use super::{run_stream, translator};
use serde_json::{Value, json};
use sluice_sdk::{Direction, ErrorResponse, Translator};

fn to_canonical(status: u16, body: &[u8]) -> (u16, Value) {
    let error = translator()
        .error_to_canonical(ErrorResponse {
            status,
            body: body.to_vec(),
        })
        .unwrap();
    (error.status, serde_json::from_slice(&error.body).unwrap())
}

fn from_canonical(status: u16, body: &[u8]) -> (u16, Value) {
    let error = translator()
        .error_from_canonical(ErrorResponse {
            status,
            body: body.to_vec(),
        })
        .unwrap();
    (error.status, serde_json::from_slice(&error.body).unwrap())
}

fn anthropic_body(kind: &str, message: &str) -> Vec<u8> {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
        .to_string()
        .into_bytes()
}

#[test]
fn anthropic_errors_map_to_openai_errors() {
    for (status, kind, expected_status, openai_type, code) in [
        (
            400,
            "invalid_request_error",
            400,
            "invalid_request_error",
            None,
        ),
        (
            401,
            "authentication_error",
            401,
            "authentication_error",
            Some("invalid_api_key"),
        ),
        (
            402,
            "billing_error",
            402,
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        (403, "permission_error", 403, "permission_error", None),
        (
            404,
            "not_found_error",
            404,
            "invalid_request_error",
            Some("model_not_found"),
        ),
        (
            413,
            "request_too_large",
            413,
            "invalid_request_error",
            Some("request_too_large"),
        ),
        (
            429,
            "rate_limit_error",
            429,
            "requests",
            Some("rate_limit_exceeded"),
        ),
        (500, "api_error", 500, "server_error", None),
        (504, "timeout_error", 504, "server_error", Some("timeout")),
        (
            529,
            "overloaded_error",
            503,
            "server_error",
            Some("overloaded"),
        ),
    ] {
        let (got_status, body) = to_canonical(status, &anthropic_body(kind, "why"));
        assert_eq!(got_status, expected_status, "{kind}");
        assert_eq!(
            body,
            json!({"error": {"message": "why", "type": openai_type, "param": null, "code": code}}),
            "{kind}"
        );
    }
}

#[test]
fn unreadable_anthropic_errors_still_say_something() {
    let (status, body) = to_canonical(502, b"<html><body>Bad gateway</body></html>");
    assert_eq!(status, 502);
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(
        body["error"]["message"],
        "<html><body>Bad gateway</body></html>"
    );

    let (status, body) = to_canonical(413, b"");
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "request_too_large");
    assert_eq!(
        body["error"]["message"],
        "upstream answered HTTP 413 without a body"
    );

    let huge = "é".repeat(5000);
    let (_, body) = to_canonical(500, huge.as_bytes());
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(message.chars().count(), 513);
    assert!(message.ends_with('…'));

    let (status, body) = to_canonical(200, &anthropic_body("rate_limit_error", "slow down"));
    assert_eq!(
        status, 429,
        "a status that is not an error follows the type"
    );
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    let (status, body) = to_canonical(418, &anthropic_body("some_new_error", "teapot"));
    assert_eq!(status, 418);
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

fn openai_body(kind: &str, code: Option<&str>, message: &str) -> Vec<u8> {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        .to_string()
        .into_bytes()
}

#[test]
fn openai_errors_map_to_anthropic_errors() {
    for (status, kind, code, expected_status, anthropic_type) in [
        (
            400,
            "invalid_request_error",
            Some("context_length_exceeded"),
            400,
            "invalid_request_error",
        ),
        (
            422,
            "invalid_request_error",
            None,
            422,
            "invalid_request_error",
        ),
        (
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            401,
            "authentication_error",
        ),
        (402, "billing", None, 402, "billing_error"),
        (
            403,
            "invalid_request_error",
            Some("unsupported_country_region_territory"),
            403,
            "permission_error",
        ),
        (
            404,
            "invalid_request_error",
            Some("model_not_found"),
            404,
            "not_found_error",
        ),
        (413, "invalid_request_error", None, 413, "request_too_large"),
        (
            429,
            "requests",
            Some("rate_limit_exceeded"),
            429,
            "rate_limit_error",
        ),
        (
            429,
            "insufficient_quota",
            Some("insufficient_quota"),
            402,
            "billing_error",
        ),
        (500, "server_error", None, 500, "api_error"),
        (502, "server_error", None, 502, "api_error"),
        (
            503,
            "server_error",
            Some("server_is_overloaded"),
            529,
            "overloaded_error",
        ),
        (
            408,
            "invalid_request_error",
            None,
            408,
            "invalid_request_error",
        ),
    ] {
        let (got_status, body) = from_canonical(status, &openai_body(kind, code, "why"));
        assert_eq!(got_status, expected_status, "{status} {kind}");
        assert_eq!(
            body,
            json!({"type": "error", "error": {"type": anthropic_type, "message": "why"}}),
            "{status} {kind}"
        );
    }
}

#[test]
fn unreadable_openai_errors_still_say_something() {
    let (status, body) = from_canonical(503, b"upstream connect error");
    assert_eq!(status, 529);
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "upstream connect error"}})
    );
}

#[test]
fn error_answers_survive_a_round_trip() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
    ] {
        let canonical = translator()
            .error_to_canonical(ErrorResponse {
                status,
                body: anthropic_body(kind, "why"),
            })
            .unwrap();
        let (back_status, back) = from_canonical(canonical.status, &canonical.body);
        assert_eq!(back_status, status, "{kind}");
        assert_eq!(back["error"]["type"], kind);
    }
}

#[test]
fn stream_errors_without_a_status_map_by_type() {
    for (kind, openai_type, code) in [
        ("overloaded_error", "server_error", Some("overloaded")),
        ("rate_limit_error", "requests", Some("rate_limit_exceeded")),
        ("api_error", "server_error", None),
        ("a_future_error", "server_error", None),
    ] {
        let input = format!(
            "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":\"m\"}}}}\n\n"
        );
        let (output, end) = run_stream(Direction::ToCanonical, [input.as_bytes()]);
        let expected =
            json!({"error": {"message": "m", "type": openai_type, "param": null, "code": code}});
        assert_eq!(
            output,
            format!("data: {expected}\n\n").into_bytes(),
            "{kind}"
        );
        assert!(!end.complete);
        assert!(end.used.is_none());
    }

    for (kind, code, anthropic_type) in [
        ("tokens", Some("rate_limit_exceeded"), "rate_limit_error"),
        ("server_error", Some("overloaded"), "overloaded_error"),
        ("server_error", None, "api_error"),
        (
            "invalid_request_error",
            Some("invalid_api_key"),
            "authentication_error",
        ),
        (
            "insufficient_quota",
            Some("insufficient_quota"),
            "billing_error",
        ),
        ("invalid_request_error", None, "invalid_request_error"),
    ] {
        let input = format!(
            "data: {}\n\n",
            String::from_utf8(openai_body(kind, code, "m")).unwrap()
        );
        let (output, end) = run_stream(Direction::FromCanonical, [input.as_bytes()]);
        let expected = json!({"type": "error", "error": {"type": anthropic_type, "message": "m"}});
        assert_eq!(
            String::from_utf8(output).unwrap(),
            format!("event: error\ndata: {expected}\n\n"),
            "{kind}"
        );
        assert!(!end.complete);
    }
}

#[test]
fn odd_error_events_still_end_the_stream_as_errors() {
    let (output, _) = run_stream(
        Direction::ToCanonical,
        [&b"event: error\ndata: upstream exploded\n\n"[..]],
    );
    let expected = json!({"error": {"message": "upstream exploded", "type": "server_error", "param": null, "code": null}});
    assert_eq!(output, format!("data: {expected}\n\n").into_bytes());

    let (output, _) = run_stream(
        Direction::FromCanonical,
        [&b"data: {\"error\":\"quota gone\"}\n\n"[..]],
    );
    let expected =
        json!({"type": "error", "error": {"type": "api_error", "message": "quota gone"}});
    assert_eq!(
        String::from_utf8(output).unwrap(),
        format!("event: error\ndata: {expected}\n\n")
    );
}
