//! No input makes the translator panic: every cut and every corrupted byte
//! of the recorded documents gives an answer or a `PluginError`.

use super::*;

const DIRECTIONS: [&str; 6] = [
    "request_from_canonical",
    "request_to_canonical",
    "response_to_canonical",
    "response_from_canonical",
    "error_to_canonical",
    "error_from_canonical",
];

fn every_function(input: &[u8]) {
    let _ = Gemini.request_from_canonical(input.to_vec(), "gemini-2.5-flash");
    let _ = Gemini.request_passthrough(input.to_vec(), "gemini-2.5-flash", &[]);
    let _ = Gemini.request_to_canonical(input.to_vec());
    let _ = Gemini.response_to_canonical(input.to_vec());
    let _ = Gemini.response_from_canonical(input.to_vec());
    let _ = Gemini.response_usage(input);
    for status in [0, 200, 400, 429, 503, 999] {
        let error = sluice_sdk::ErrorResponse {
            status,
            body: input.to_vec(),
        };
        assert!(Gemini.error_to_canonical(error.clone()).is_ok());
        assert!(Gemini.error_from_canonical(error).is_ok());
    }
}

#[test]
fn cut_documents_never_panic() {
    for direction in DIRECTIONS {
        for case in cases(direction) {
            for end in 0..case.input.len() {
                every_function(&case.input[..end]);
            }
        }
    }
}

#[test]
fn corrupted_documents_never_panic() {
    let replacements = [b'"', b'{', b']', b'0', b'-', 0xff, b'\\', b'n'];
    for direction in DIRECTIONS {
        for case in cases(direction) {
            for at in 0..case.input.len() {
                let mut corrupted = case.input.clone();
                corrupted[at] = replacements[at % replacements.len()];
                every_function(&corrupted);
            }
        }
    }
}

#[test]
fn odd_documents_of_the_right_shape_never_panic() {
    for document in [
        r#"{"candidates":[{"index":4294967295,"content":{"parts":[{"functionCall":{}}]},"finishReason":"STOP"}]}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"x","thought":true},{"functionCall":{"name":"f","args":null}}]}}],"promptFeedback":{}}"#,
        r#"{"usageMetadata":{"promptTokenCount":4294967295,"candidatesTokenCount":4294967295,"thoughtsTokenCount":4294967295,"toolUsePromptTokenCount":4294967295}}"#,
        r#"{"model":"m","messages":[{"role":"tool","content":null}]}"#,
        r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
        r#"{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"items":[1]}}}}}]}"#,
        r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","tool_calls":[{"id":"gcall_ff__ts_","function":{"name":"f","arguments":"[]"}}]},"finish_reason":null}],"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615}}"#,
        r#"{"contents":[{"role":"user","parts":[{"functionResponse":{"name":"f","response":{}}}]}]}"#,
        r#"{"contents":[{"role":"model","parts":[{}]}],"generationConfig":{"thinkingConfig":{"thinkingBudget":-2147483648}}}"#,
        r#"[{"error":{"code":1e300}}]"#,
        "[]",
        "null",
    ] {
        every_function(document.as_bytes());
    }
}

#[test]
fn odd_streams_never_panic() {
    let streams: [&[u8]; 6] = [
        b"data: {\"error\":\"boom\"}\n\ndata: [DONE]\n\n",
        b"data: {\"choices\":[{\"index\":4294967295,\"delta\":{\"tool_calls\":[{\"index\":4294967295}]},\"finish_reason\":\"stop\"}]}\n\n",
        b"data: {\"candidates\":[{\"index\":4294967295,\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":4294967295,\"toolUsePromptTokenCount\":4294967295}}\n\n",
        b"data: \xff\xfe\n\ndata: {}\n\n",
        b"event: x\ndata: [1,2]\n\n: comment\n\n\n\n",
        b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\"}}]},\"finishReason\":\"STOP\"},{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"g\"}}]},\"finishReason\":\"SAFETY\"}]}\n\n",
    ];
    for stream in streams {
        for direction in [
            Direction::ToCanonical,
            Direction::FromCanonical,
            Direction::Observe,
        ] {
            let mut translator = Gemini.stream(direction);
            let _ = translator.push(stream);
            let _ = translator.finish();
        }
    }
}
