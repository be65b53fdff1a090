//! Refusals, HTTP details and the edge cases other gateways got wrong.

use super::golden::cases;
use super::{counts, run_stream, translator};
use crate::Anthropic;
use serde_json::{Value, json};
use sluice_sdk::{Config, CredentialPlacement, Direction, PluginError, Translator};

fn to_canonical(request: Value) -> Result<Value, PluginError> {
    let body = translator().request_to_canonical(request.to_string().into_bytes())?;
    Ok(serde_json::from_slice(&body).unwrap())
}

fn from_canonical(request: Value) -> Result<Value, PluginError> {
    let call = translator().request_from_canonical(request.to_string().into_bytes(), "claude-x")?;
    Ok(serde_json::from_slice(&call.body).unwrap())
}

fn refusal(result: Result<Value, PluginError>) -> String {
    let error = result.expect_err("a refusal");
    assert_eq!(error.code, "invalid_request_error");
    error.message
}

fn anthropic_request(messages: Value) -> Value {
    json!({"model": "claude-x", "max_tokens": 100, "messages": messages})
}

fn canonical_request(messages: Value) -> Value {
    json!({"model": "m", "messages": messages})
}

#[test]
fn missing_required_fields_are_named_in_anthropics_words() {
    for field in ["model", "max_tokens", "messages"] {
        let mut request = anthropic_request(json!([{"role": "user", "content": "hi"}]));
        request.as_object_mut().unwrap().remove(field);
        assert_eq!(
            refusal(to_canonical(request)),
            format!("{field}: Field required")
        );
    }
    assert!(refusal(to_canonical(anthropic_request(json!([])))).contains("at least one message"));
    let error = translator()
        .request_to_canonical(b"{\"model\":".to_vec())
        .unwrap_err();
    assert_eq!(error.code, "invalid_request_error");
}

#[test]
fn requests_anthropic_features_cannot_cross_are_refused_by_name() {
    let mut request = anthropic_request(json!([{"role": "user", "content": "hi"}]));
    request["tools"] = json!([
        {"name": "get_weather", "input_schema": {"type": "object"}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "bash_20250124", "name": "bash"}
    ]);
    let message = refusal(to_canonical(request));
    assert!(
        message.contains("web_search_20250305") && message.contains("bash_20250124"),
        "{message}"
    );

    let message = refusal(to_canonical(anthropic_request(json!([
        {"role": "user", "content": [{"type": "search_result", "source": "s", "title": "t", "content": []}]}
    ]))));
    assert!(
        message.starts_with("messages.0: `search_result`"),
        "{message}"
    );

    let message = refusal(to_canonical(anthropic_request(json!([
        {"role": "system", "content": "hi"}
    ]))));
    assert!(message.contains("role `system`"), "{message}");
}

#[test]
fn canonical_requests_anthropic_cannot_serve_are_refused() {
    let user = json!([{"role": "user", "content": "hi"}]);
    let mut n = canonical_request(user.clone());
    n["n"] = json!(2);
    assert!(refusal(from_canonical(n)).starts_with("n:"));

    for format in ["json_object", "json_schema"] {
        let mut request = canonical_request(user.clone());
        request["response_format"] = json!({"type": format});
        let message = refusal(from_canonical(request));
        assert!(message.contains("Anthropic channels do not support") && message.contains(format));
    }

    let audio = canonical_request(json!([{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}}
    ]}]));
    assert!(refusal(from_canonical(audio)).contains("audio"));

    let uploaded = canonical_request(json!([{"role": "user", "content": [
        {"type": "file", "file": {"file_id": "file-abc"}}
    ]}]));
    assert!(refusal(from_canonical(uploaded)).contains("PDF"));

    let ftp = canonical_request(json!([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}
    ]}]));
    assert!(refusal(from_canonical(ftp)).contains("image_url"));

    let mut custom_tool = canonical_request(user.clone());
    custom_tool["tools"] = json!([{"type": "custom", "custom": {"name": "grammar"}}]);
    assert!(refusal(from_canonical(custom_tool)).contains("`custom`"));

    let mut effort = canonical_request(user.clone());
    effort["reasoning_effort"] = json!("extreme");
    assert!(refusal(from_canonical(effort)).contains("extreme"));

    let system_only = canonical_request(json!([{"role": "system", "content": "hi"}]));
    assert!(refusal(from_canonical(system_only)).contains("at least one"));

    assert_eq!(
        translator()
            .request_from_canonical(b"[]".to_vec(), "m")
            .unwrap_err()
            .code,
        "invalid_request_error"
    );
}

#[test]
fn upstream_calls_go_to_messages_with_the_key_in_x_api_key() {
    let call = translator()
        .request_from_canonical(
            canonical_request(json!([{"role": "user", "content": "hi"}]))
                .to_string()
                .into_bytes(),
            "claude-x",
        )
        .unwrap();
    assert_eq!(call.path, "/messages");
    assert_eq!(
        call.headers,
        vec![("anthropic-version".to_string(), "2023-06-01".to_string())]
    );
    assert!(matches!(call.credential, CredentialPlacement::Header(ref h) if h == "x-api-key"));
}

#[test]
fn passthrough_changes_only_the_model_and_forwards_anthropic_headers() {
    let body = br#"{"max_tokens":5,"model":"alias","messages":[{"role":"user","content":"hi"}],"top_k":3,"container":"c1"}"#;
    let headers = [
        (
            "Anthropic-Beta",
            "interleaved-thinking-2025-05-14,context-1m-2025-08-07",
        ),
        ("anthropic-version", "2026-10-21"),
        ("user-agent", "anthropic-python/2.14"),
        ("x-stainless-retry-count", "0"),
    ]
    .map(|(name, value)| (name.to_string(), value.to_string()));
    let call = translator()
        .request_passthrough(body.to_vec(), "claude-sonnet-4-5", &headers)
        .unwrap();
    assert_eq!(
        String::from_utf8(call.body).unwrap(),
        r#"{"max_tokens":5,"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}],"top_k":3,"container":"c1"}"#
    );
    assert_eq!(
        call.headers,
        vec![
            (
                "anthropic-beta".to_string(),
                "interleaved-thinking-2025-05-14,context-1m-2025-08-07".to_string()
            ),
            ("anthropic-version".to_string(), "2026-10-21".to_string()),
        ]
    );
    assert_eq!(call.path, "/messages");
    assert!(matches!(call.credential, CredentialPlacement::Header(ref h) if h == "x-api-key"));

    let call = translator()
        .request_passthrough(body.to_vec(), "m", &[])
        .unwrap();
    assert_eq!(
        call.headers,
        vec![("anthropic-version".to_string(), "2023-06-01".to_string())]
    );
    assert!(
        translator()
            .request_passthrough(b"[1]".to_vec(), "m", &[])
            .is_err()
    );
}

#[test]
fn the_default_output_cap_comes_from_configuration() {
    let configured = Anthropic::new(Config::from_json(r#"{"default_max_tokens":1000}"#)).unwrap();
    let request = canonical_request(json!([{"role": "user", "content": "hi"}]));
    let call = configured
        .request_from_canonical(request.to_string().into_bytes(), "m")
        .unwrap();
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["max_tokens"], 1000);
    assert_eq!(from_canonical(request).unwrap()["max_tokens"], 8192);
    let bad = Anthropic::new(Config::from_json(r#"{"default_max_tokens":"many"}"#));
    assert_eq!(bad.err().unwrap().code, "bad_config");
}

#[test]
fn thinking_budgets_map_to_the_nearest_effort() {
    for (budget, effort) in [
        (1024, "low"),
        (2048, "low"),
        (2049, "medium"),
        (8192, "medium"),
        (8193, "high"),
    ] {
        let mut request = anthropic_request(json!([{"role": "user", "content": "hi"}]));
        request["thinking"] = json!({"type": "enabled", "budget_tokens": budget});
        assert_eq!(
            to_canonical(request).unwrap()["reasoning_effort"],
            effort,
            "{budget}"
        );
    }
    for thinking in [json!({"type": "disabled"}), json!({"type": "adaptive"})] {
        let mut request = anthropic_request(json!([{"role": "user", "content": "hi"}]));
        request["thinking"] = thinking;
        assert!(
            to_canonical(request)
                .unwrap()
                .get("reasoning_effort")
                .is_none()
        );
    }
}

#[test]
fn efforts_map_to_budgets_with_room_to_answer() {
    for (effort, cap, budget, max_tokens) in [
        ("low", 8000, 1024, 8000),
        ("medium", 4096, 4096, 8192),
        ("high", 20000, 16384, 20000),
    ] {
        let mut request = canonical_request(json!([{"role": "user", "content": "hi"}]));
        request["reasoning_effort"] = json!(effort);
        request["max_tokens"] = json!(cap);
        request["temperature"] = json!(0.3);
        let body = from_canonical(request).unwrap();
        assert_eq!(
            body["thinking"],
            json!({"type": "enabled", "budget_tokens": budget})
        );
        assert_eq!(body["max_tokens"], max_tokens, "{effort}");
        assert!(body.get("temperature").is_none());
    }
    for effort in ["none", "minimal"] {
        let mut request = canonical_request(json!([{"role": "user", "content": "hi"}]));
        request["reasoning_effort"] = json!(effort);
        assert!(from_canonical(request).unwrap().get("thinking").is_none());
    }
}

#[test]
fn tool_call_ids_are_sanitised_alike_in_calls_and_results() {
    let body = from_canonical(canonical_request(json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "functions.search:3", "type": "function", "function": {"name": "search", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "functions.search:3", "content": "found"}
    ])))
    .unwrap();
    assert_eq!(
        body["messages"][1]["content"][0]["id"],
        "functions_search_3"
    );
    assert_eq!(
        body["messages"][2]["content"][0]["tool_use_id"],
        "functions_search_3"
    );
}

#[test]
fn an_assistant_refusal_in_history_stays_as_its_text() {
    let body = from_canonical(canonical_request(json!([
        {"role": "user", "content": "do the bad thing"},
        {"role": "assistant", "content": null, "refusal": "I can't help with that."},
        {"role": "user", "content": "ok"}
    ])))
    .unwrap();
    assert_eq!(
        body["messages"][1],
        json!({"role": "assistant", "content": [{"type": "text", "text": "I can't help with that."}]})
    );
}

#[test]
fn parallel_tool_results_and_the_next_user_text_share_one_turn() {
    let body = from_canonical(canonical_request(json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]},
        {"role": "tool", "tool_call_id": "a", "content": "1"},
        {"role": "user", "content": "and then?"},
        {"role": "tool", "tool_call_id": "b", "content": "2"}
    ])))
    .unwrap();
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(
        messages[1]["content"],
        json!([
            {"type": "tool_use", "id": "a", "name": "f", "input": {}},
            {"type": "tool_use", "id": "b", "name": "f", "input": {}}
        ]),
        "an empty text is left out"
    );
    assert_eq!(
        messages[2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "a", "content": "1"},
            {"type": "tool_result", "tool_use_id": "b", "content": "2"},
            {"type": "text", "text": "and then?"}
        ]}),
        "tool results come first in a turn"
    );
}

#[test]
fn tool_results_come_before_the_rest_of_their_user_turn() {
    let body = to_canonical(anthropic_request(json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "t2", "name": "f", "input": {}}
        ]},
        {"role": "user", "content": [
            {"type": "text", "text": "results:"},
            {"type": "tool_result", "tool_use_id": "t1", "content": "one"},
            {"type": "tool_result", "tool_use_id": "t2"}
        ]}
    ])))
    .unwrap();
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                {"id": "t2", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ]},
            {"role": "tool", "content": "one", "tool_call_id": "t1"},
            {"role": "tool", "content": "", "tool_call_id": "t2"},
            {"role": "user", "content": [{"type": "text", "text": "results:"}]}
        ])
    );
}

#[test]
fn stream_tool_calls_are_numbered_among_tool_blocks_only() {
    let input = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"c\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t_a\",\"name\":\"f\",\"input\":{}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t_b\",\"name\":\"g\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
    );
    let (output, end) = run_stream(Direction::ToCanonical, [input.as_bytes()]);
    let calls: Vec<(u64, Option<String>)> = String::from_utf8(output)
        .unwrap()
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("data: "))
        .filter_map(|data| {
            let chunk: Value = serde_json::from_str(data).unwrap();
            let call = chunk["choices"][0]["delta"]["tool_calls"][0].clone();
            Some((
                call["index"].as_u64()?,
                call["id"].as_str().map(String::from),
            ))
        })
        .collect();
    assert_eq!(
        calls,
        vec![(0, Some("t_a".into())), (1, Some("t_b".into())), (1, None)]
    );
    assert!(!end.complete);
}

#[test]
fn stream_usage_takes_the_last_cumulative_report() {
    let input = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"c\",\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":90,\"cache_creation_input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},\"usage\":{\"output_tokens\":40}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":75,\"cache_creation_input_tokens\":null}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    for direction in [Direction::ToCanonical, Direction::Observe] {
        let (_, end) = run_stream(direction, [input.as_bytes()]);
        assert_eq!(counts(&end.used.unwrap()), [105, 75, 90, 5, 0]);
        assert!(end.complete);
    }
}

#[test]
fn a_stream_without_usage_reports_none() {
    let input = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let (output, end) = run_stream(Direction::ToCanonical, [input.as_bytes()]);
    assert_eq!(output, b"data: [DONE]\n\n");
    assert!(end.used.is_none());
    assert!(end.complete);

    let (output, end) = run_stream(Direction::FromCanonical, [&b"data: [DONE]\n\n"[..]]);
    assert!(end.used.is_none());
    assert!(end.complete);
    let text = String::from_utf8(output).unwrap();
    assert!(text.starts_with("event: message_start\n"));
    assert!(text.contains("\"usage\":{\"input_tokens\":0,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":0}"));
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

#[test]
fn a_tool_call_fragment_after_its_block_closed_is_not_sent() {
    let chunk = |delta: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
        )
    };
    let input = [
        chunk(json!({"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": "{"}}]})),
        chunk(json!({"tool_calls": [{"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}}]})),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]})),
        chunk(json!({"content": "after"})),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let (output, _) = run_stream(Direction::FromCanonical, [input.as_bytes()]);
    let text = String::from_utf8(output).unwrap();
    assert!(!text.contains("\"partial_json\":\"}\""));
    assert!(text.contains(
        "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}"
    ));
}

#[test]
fn response_usage_counts_cache_reads_and_writes_into_the_prompt() {
    let body = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": [],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 50, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 1800, "output_tokens": 120}
    });
    let used = translator()
        .response_usage(body.to_string().as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(counts(&used), [2050, 120, 1800, 200, 0]);

    let nulls = json!({"id": "msg_1", "type": "message", "content": [], "usage": {"input_tokens": 3, "cache_creation_input_tokens": null}});
    let used = translator()
        .response_usage(nulls.to_string().as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(counts(&used), [3, 0, 0, 0, 0]);

    let without = json!({"id": "msg_1", "type": "message", "content": []});
    assert!(
        translator()
            .response_usage(without.to_string().as_bytes())
            .unwrap()
            .is_none()
    );

    let error = translator()
        .response_usage(br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#)
        .unwrap_err();
    assert_eq!(error.code, "invalid_response");
    assert_eq!(
        translator().response_usage(b"<html>").unwrap_err().code,
        "invalid_response"
    );
}

#[test]
fn canonical_responses_without_choices_are_unreadable() {
    let error = translator()
        .response_from_canonical(br#"{"id":"x","choices":[]}"#.to_vec())
        .unwrap_err();
    assert_eq!(error.code, "invalid_response");
}

/// Every document function, fed every prefix of every fixture and some
/// junk, answers or refuses: none panics.
#[test]
fn no_input_makes_a_function_panic() {
    let mut inputs: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"{}".to_vec(),
        b"[]".to_vec(),
        b"\xff\xfe".to_vec(),
        br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64"}}]}]}"#.to_vec(),
        br#"{"model":"m","messages":[{"role":"assistant","content":[{"type":"refusal"}]}]}"#.to_vec(),
    ];
    for folder in [
        "request_to_canonical",
        "request_from_canonical",
        "response_to_canonical",
        "response_from_canonical",
    ] {
        for (_, input) in cases(folder, "json") {
            for end in (0..input.len()).step_by(7) {
                inputs.push(input[..end].to_vec());
            }
        }
    }
    let t = translator();
    for input in inputs {
        let _ = t.request_to_canonical(input.clone());
        let _ = t.request_from_canonical(input.clone(), "m");
        let _ = t.request_passthrough(input.clone(), "m", &[]);
        let _ = t.response_to_canonical(input.clone());
        let _ = t.response_from_canonical(input.clone());
        let _ = t.response_usage(&input);
        for status in [0, 200, 400, 529, 999] {
            let error = sluice_sdk::ErrorResponse {
                status,
                body: input.clone(),
            };
            assert!((400..=599).contains(&t.error_to_canonical(error.clone()).unwrap().status));
            assert!((400..=599).contains(&t.error_from_canonical(error).unwrap().status));
        }
        for direction in [
            Direction::ToCanonical,
            Direction::FromCanonical,
            Direction::Observe,
        ] {
            run_stream(direction, [input.as_slice()]);
        }
    }
}
