//! Golden fixtures: each `fixtures/<function>/<case>.input.*` translates to
//! exactly `<case>.expected.*`. Documents compare as parsed JSON, streams
//! byte for byte, with `<case>.end.json` holding the stream's usage and
//! completeness. `UPDATE_FIXTURES=1` rewrites the expected files from the
//! code; review the difference before keeping it.

use super::{counts, run_stream, translator};
use serde_json::{Value, json};
use sluice_sdk::{Direction, StreamEnd, Translator};
use std::fs;
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

/// The cases of one fixture folder: name and input bytes.
pub fn cases(folder: &str, extension: &str) -> Vec<(String, Vec<u8>)> {
    let suffix = format!(".input.{extension}");
    let mut cases: Vec<_> = fs::read_dir(Path::new(FIXTURES).join(folder))
        .unwrap()
        .filter_map(|entry| {
            let path = entry.unwrap().path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(&suffix)?
                .to_string();
            Some((name, fs::read(&path).unwrap()))
        })
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {folder}");
    cases
}

fn updating() -> bool {
    std::env::var_os("UPDATE_FIXTURES").is_some_and(|v| v == "1")
}

fn expected_path(folder: &str, name: &str, extension: &str) -> PathBuf {
    Path::new(FIXTURES)
        .join(folder)
        .join(format!("{name}.{extension}"))
}

/// Compares a document with its expected file, as JSON values.
fn check_document(folder: &str, name: &str, actual: &[u8], failures: &mut Vec<String>) {
    let path = expected_path(folder, name, "expected.json");
    let actual: Value = serde_json::from_slice(actual).unwrap();
    if updating() {
        fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
        return;
    }
    let expected: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    if actual != expected {
        failures.push(format!(
            "{folder}/{name}: got\n{}",
            serde_json::to_string_pretty(&actual).unwrap()
        ));
    }
}

/// Compares a stream's output byte for byte, and how it ended.
fn check_stream(
    folder: &str,
    name: &str,
    output: &[u8],
    end: &StreamEnd,
    failures: &mut Vec<String>,
) {
    let end = json!({
        "used": end.used.as_ref().map(counts).map(|[prompt, completion, cached, cache_write, reasoning]| json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cached_tokens": cached,
            "cache_write_tokens": cache_write,
            "reasoning_tokens": reasoning,
        })),
        "complete": end.complete,
    });
    let output_path = expected_path(folder, name, "expected.sse");
    let end_path = expected_path(folder, name, "end.json");
    if updating() {
        fs::write(&output_path, output).unwrap();
        fs::write(
            &end_path,
            serde_json::to_string_pretty(&end).unwrap() + "\n",
        )
        .unwrap();
        return;
    }
    let expected = fs::read(&output_path).unwrap();
    if output != expected {
        failures.push(format!(
            "{folder}/{name}: got\n{}",
            String::from_utf8_lossy(output)
        ));
    }
    let expected_end: Value = serde_json::from_slice(&fs::read(&end_path).unwrap()).unwrap();
    if end != expected_end {
        failures.push(format!("{folder}/{name}: ended {end}"));
    }
}

fn assert_none_failed(failures: Vec<String>) {
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn requests_to_canonical() {
    let mut failures = Vec::new();
    for (name, input) in cases("request_to_canonical", "json") {
        let output = translator().request_to_canonical(input).unwrap();
        check_document("request_to_canonical", &name, &output, &mut failures);
    }
    assert_none_failed(failures);
}

#[test]
fn requests_from_canonical() {
    let mut failures = Vec::new();
    for (name, input) in cases("request_from_canonical", "json") {
        let call = translator()
            .request_from_canonical(input, "claude-sonnet-4-5")
            .unwrap();
        check_document("request_from_canonical", &name, &call.body, &mut failures);
    }
    assert_none_failed(failures);
}

#[test]
fn responses_to_canonical() {
    let mut failures = Vec::new();
    for (name, input) in cases("response_to_canonical", "json") {
        let output = translator().response_to_canonical(input).unwrap();
        check_document("response_to_canonical", &name, &output, &mut failures);
    }
    assert_none_failed(failures);
}

#[test]
fn responses_from_canonical() {
    let mut failures = Vec::new();
    for (name, input) in cases("response_from_canonical", "json") {
        let output = translator().response_from_canonical(input).unwrap();
        check_document("response_from_canonical", &name, &output, &mut failures);
    }
    assert_none_failed(failures);
}

#[test]
fn streams_to_canonical() {
    let mut failures = Vec::new();
    for (name, input) in cases("stream_to_canonical", "sse") {
        let (output, end) = run_stream(Direction::ToCanonical, [input.as_slice()]);
        check_stream("stream_to_canonical", &name, &output, &end, &mut failures);
    }
    assert_none_failed(failures);
}

#[test]
fn observing_a_stream_writes_nothing_and_ends_as_translating_it() {
    for (name, input) in cases("stream_to_canonical", "sse") {
        let (_, translated) = run_stream(Direction::ToCanonical, [input.as_slice()]);
        let (output, observed) = run_stream(Direction::Observe, [input.as_slice()]);
        assert!(output.is_empty(), "{name}");
        assert_eq!(observed.complete, translated.complete, "{name}");
        assert_eq!(
            observed.used.as_ref().map(counts),
            translated.used.as_ref().map(counts),
            "{name}"
        );
    }
}

#[test]
fn streams_from_canonical() {
    let mut failures = Vec::new();
    for (name, input) in cases("stream_from_canonical", "sse") {
        let (output, end) = run_stream(Direction::FromCanonical, [input.as_slice()]);
        check_stream("stream_from_canonical", &name, &output, &end, &mut failures);
    }
    assert_none_failed(failures);
}

/// What Anthropic's SDKs rely on, checked on every translated stream: each
/// event names its type twice alike; `message_start` comes first; blocks
/// are numbered 0, 1, 2… and each closes before the next opens; the stream
/// ends with `message_stop` or with an error, and nothing follows either.
#[test]
fn streams_from_canonical_keep_anthropics_event_rules() {
    for (name, input) in cases("stream_from_canonical", "sse") {
        let (output, _) = run_stream(Direction::FromCanonical, [input.as_slice()]);
        let text = String::from_utf8(output).unwrap();
        let events: Vec<_> = text
            .strip_suffix("\n\n")
            .unwrap()
            .split("\n\n")
            .map(|event| {
                let (name_line, data_line) = event.split_once('\n').unwrap();
                let kind = name_line.strip_prefix("event: ").unwrap();
                let data: Value =
                    serde_json::from_str(data_line.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], kind, "{name}: {event}");
                (kind.to_string(), data)
            })
            .collect();
        let (last, _) = events.last().unwrap();
        assert!(last == "message_stop" || last == "error", "{name}");
        if last == "message_stop" {
            assert_eq!(events[0].0, "message_start", "{name}");
        }
        let mut next_block = 0;
        let mut open = None;
        for (kind, data) in &events {
            match kind.as_str() {
                "content_block_start" => {
                    assert_eq!(open, None, "{name}: a block opened inside another");
                    assert_eq!(data["index"], next_block, "{name}");
                    open = Some(next_block);
                    next_block += 1;
                }
                "content_block_delta" => assert_eq!(data["index"].as_u64(), open, "{name}"),
                "content_block_stop" => {
                    assert_eq!(data["index"].as_u64(), open, "{name}");
                    open = None;
                }
                "message_delta" | "message_stop" => assert_eq!(open, None, "{name}"),
                _ => {}
            }
        }
    }
}

/// What OpenAI clients rely on, checked on every translated stream: each
/// chunk names the answer, and `[DONE]` comes once, last, only when the
/// upstream ended properly.
#[test]
fn streams_to_canonical_keep_openais_chunk_rules() {
    for (name, input) in cases("stream_to_canonical", "sse") {
        let (output, end) = run_stream(Direction::ToCanonical, [input.as_slice()]);
        let text = String::from_utf8(output).unwrap();
        let events: Vec<_> = text
            .strip_suffix("\n\n")
            .unwrap()
            .split("\n\n")
            .map(|event| event.strip_prefix("data: ").unwrap())
            .collect();
        let done = events.iter().filter(|e| **e == "[DONE]").count();
        assert_eq!(done, usize::from(end.complete), "{name}");
        for event in events.iter().filter(|e| **e != "[DONE]") {
            let chunk: Value = serde_json::from_str(event).unwrap();
            if chunk.get("error").is_some() {
                continue;
            }
            assert_eq!(chunk["object"], "chat.completion.chunk", "{name}");
            assert_eq!(chunk["created"], 0, "{name}");
            assert!(
                chunk["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("msg_")),
                "{name}"
            );
            assert!(
                chunk["model"].as_str().is_some_and(|m| !m.is_empty()),
                "{name}"
            );
        }
    }
}
