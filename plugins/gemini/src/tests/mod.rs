//! Tests over recorded documents in `fixtures/<direction>/`: for each
//! `<case>.input.<ext>`, `<case>.expected.<ext>` holds the exact output (and,
//! for streams, `<case>.end.json` the usage and completeness the stream
//! reported). JSON documents are compared parsed, streams byte for byte.
//!
//! `UPDATE_FIXTURES=1 cargo test` rewrites the expected files from the current
//! output; review every change by hand against the protocols, not the code.

mod golden;
mod robustness;
mod round_trip;
mod splits;

use crate::Gemini;
use serde_json::{Value, json};
use sluice_sdk::{Direction, StreamEnd, StreamTranslator, Translator, Usage};
use std::path::{Path, PathBuf};

struct Case {
    name: String,
    input: Vec<u8>,
    expected_path: PathBuf,
    end_path: PathBuf,
}

fn fixtures(direction: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(direction)
}

/// Every input of a direction, in name order.
fn cases(direction: &str) -> Vec<Case> {
    let dir = fixtures(direction);
    let mut cases: Vec<Case> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let file = path.file_name()?.to_str()?.to_string();
            let (name, ext) = file.split_once(".input.")?;
            Some(Case {
                name: name.to_string(),
                input: std::fs::read(&path).unwrap(),
                expected_path: dir.join(format!("{name}.expected.{ext}")),
                end_path: dir.join(format!("{name}.end.json")),
            })
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!cases.is_empty(), "no fixtures in {}", dir.display());
    cases
}

fn blessing() -> bool {
    std::env::var_os("UPDATE_FIXTURES").is_some()
}

/// Compares `actual` with the expected file (or rewrites it when blessing).
/// Returns a description of the difference, if any.
fn compare_json(path: &Path, actual: &Value) -> Option<String> {
    if blessing() {
        let mut text = serde_json::to_string_pretty(actual).unwrap();
        text.push('\n');
        std::fs::write(path, text).unwrap();
        return None;
    }
    let expected: Value = serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (expected != *actual).then(|| {
        format!(
            "{}:\nexpected {}\nactual   {}",
            path.display(),
            serde_json::to_string_pretty(&expected).unwrap(),
            serde_json::to_string_pretty(actual).unwrap()
        )
    })
}

fn compare_bytes(path: &Path, actual: &[u8]) -> Option<String> {
    if blessing() {
        std::fs::write(path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (expected != actual).then(|| {
        format!(
            "{}:\nexpected\n{}\nactual\n{}",
            path.display(),
            String::from_utf8_lossy(&expected),
            String::from_utf8_lossy(actual)
        )
    })
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn usage_json(usage: Option<Usage>) -> Value {
    usage.map_or(Value::Null, |u| {
        json!({
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "cached_tokens": u.cached_tokens,
            "cache_write_tokens": u.cache_write_tokens,
            "reasoning_tokens": u.reasoning_tokens,
        })
    })
}

/// A stream's output and what it reported at the end, fed in `pieces`.
fn run_stream<'a>(
    direction: Direction,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<u8>, Value) {
    let mut stream = Gemini.stream(direction);
    let mut out = Vec::new();
    for piece in pieces {
        out.extend(stream.push(piece).expect("push"));
    }
    let StreamEnd {
        tail,
        used,
        complete,
    } = stream.finish().expect("finish");
    out.extend(tail);
    (out, json!({"used": usage_json(used), "complete": complete}))
}
