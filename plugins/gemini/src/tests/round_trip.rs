//! What Gemini needs back on the next turn survives the trip through an
//! OpenAI client: thought signatures, Gemini's call ids, the calls' names.

use super::*;

const SIGNED_CALLS: &str = r#"{
  "candidates": [{"content": {"role": "model", "parts": [
    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "CiQBVKhc7r1+9ZQm5Lf/3x2yAAA="},
    {"functionCall": {"name": "get_weather", "args": {"city": "London"}}},
    {"functionCall": {"id": "fc-t1", "name": "get_time", "args": {"zone": "Asia/Tokyo"}}, "thoughtSignature": "EjQKMgFVqsOxQ8vL/Xf+QA=="}
  ]}, "finishReason": "STOP"}],
  "responseId": "Xk9f-Q2abc"
}"#;

/// The next turn an OpenAI client sends after `assistant`: the call results,
/// in reverse order to show they are matched by id.
fn next_turn(assistant: &Value) -> Vec<u8> {
    let calls = assistant["tool_calls"].as_array().unwrap();
    let mut messages = vec![
        json!({"role": "user", "content": "Weather?"}),
        assistant.clone(),
    ];
    for (n, call) in calls.iter().enumerate().rev() {
        messages.push(
            json!({"role": "tool", "tool_call_id": call["id"], "content": format!("result {n}")}),
        );
    }
    serde_json::to_vec(&json!({"model": "m", "messages": messages})).unwrap()
}

fn gemini_turns(canonical_request: Vec<u8>) -> (Value, Value) {
    let call = Gemini
        .request_from_canonical(canonical_request, "gemini-3-pro-preview")
        .unwrap();
    let body = json(&call.body);
    (body["contents"][1].clone(), body["contents"][2].clone())
}

fn assert_restored(model_turn: &Value, results: &Value) {
    assert_eq!(
        model_turn["parts"],
        json!([
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "CiQBVKhc7r1+9ZQm5Lf/3x2yAAA="},
            {"functionCall": {"name": "get_weather", "args": {"city": "London"}}},
            {"functionCall": {"name": "get_time", "args": {"zone": "Asia/Tokyo"}, "id": "fc-t1"}, "thoughtSignature": "EjQKMgFVqsOxQ8vL/Xf+QA=="}
        ])
    );
    assert_eq!(
        results,
        &json!({"role": "user", "parts": [
            {"functionResponse": {"name": "get_time", "response": {"content": "result 2"}, "id": "fc-t1"}},
            {"functionResponse": {"name": "get_weather", "response": {"content": "result 1"}}},
            {"functionResponse": {"name": "get_weather", "response": {"content": "result 0"}}}
        ]})
    );
}

#[test]
fn calls_from_a_response_come_back_whole() {
    let canonical = json(
        &Gemini
            .response_to_canonical(SIGNED_CALLS.as_bytes().to_vec())
            .unwrap(),
    );
    let assistant = &canonical["choices"][0]["message"];
    let (model_turn, results) = gemini_turns(next_turn(assistant));
    assert_restored(&model_turn, &results);
}

#[test]
fn calls_from_a_stream_come_back_whole() {
    let chunks: String = serde_json::from_str::<Value>(SIGNED_CALLS).unwrap()["candidates"][0]
        ["content"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|part| {
            let chunk = json!({"candidates": [{"content": {"role": "model", "parts": [part]}}], "responseId": "Xk9f-Q2abc"});
            format!("data: {chunk}\r\n\r\n")
        })
        .collect();
    let (out, _) = run_stream(Direction::ToCanonical, [chunks.as_bytes()]);
    let mut tool_calls = Vec::new();
    for line in String::from_utf8(out).unwrap().lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(calls) = chunk["choices"][0]["delta"]["tool_calls"].as_array() {
            for call in calls {
                assert_eq!(call["index"], tool_calls.len(), "one new index per call");
                tool_calls.push(
                    json!({"id": call["id"], "type": "function", "function": call["function"]}),
                );
            }
        }
    }
    let assistant = json!({"role": "assistant", "content": null, "tool_calls": tool_calls});
    let (model_turn, results) = gemini_turns(next_turn(&assistant));
    assert_restored(&model_turn, &results);
}

#[test]
fn a_gemini_client_history_keeps_its_signatures_through_the_canonical_form() {
    let history = r#"{"contents": [
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "CiQBVKhc7r1+9ZQm5Lf/3x2yAAA="},
            {"functionCall": {"name": "get_weather", "args": {"city": "London"}}},
            {"functionCall": {"id": "fc-t1", "name": "get_time", "args": {"zone": "Asia/Tokyo"}}, "thoughtSignature": "EjQKMgFVqsOxQ8vL/Xf+QA=="}
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"id": "fc-t1", "name": "get_time", "response": {"content": "result 2"}}},
            {"functionResponse": {"name": "get_weather", "response": {"content": "result 1"}}},
            {"functionResponse": {"name": "get_weather", "response": {"content": "result 0"}}}
        ]}
    ]}"#;
    let canonical = Gemini
        .request_to_canonical(history.as_bytes().to_vec())
        .unwrap();
    let (model_turn, results) = gemini_turns(canonical);
    // Results by name pair with the calls of that name in order, so the
    // first `get_weather` result answers the first call (Paris).
    assert_eq!(
        model_turn["parts"][0]["thoughtSignature"],
        "CiQBVKhc7r1+9ZQm5Lf/3x2yAAA="
    );
    assert_eq!(model_turn["parts"][2]["functionCall"]["id"], "fc-t1");
    assert_eq!(results["parts"][0]["functionResponse"]["id"], "fc-t1");
    assert_eq!(
        results["parts"][1]["functionResponse"]["name"],
        "get_weather"
    );
}
