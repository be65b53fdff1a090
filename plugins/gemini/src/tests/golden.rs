//! Every direction against its recorded fixtures.

use super::*;
use sluice_sdk::ErrorResponse;
use sluice_sdk::canonical;

/// The upstream name every request fixture is translated for.
const MODEL: &str = "gemini-2.5-flash";

/// Runs `translate` over a direction's JSON fixtures and reports every
/// mismatch at once.
fn check_json(direction: &str, translate: impl Fn(&Case) -> Value) {
    let failures: Vec<String> = cases(direction)
        .iter()
        .filter_map(|case| compare_json(&case.expected_path, &translate(case)))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn request_from_canonical() {
    check_json("request_from_canonical", |case| {
        let call = Gemini
            .request_from_canonical(case.input.clone(), MODEL)
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        json!({"path": call.path, "body": json(&call.body)})
    });
}

#[test]
fn request_to_canonical() {
    check_json("request_to_canonical", |case| {
        json(
            &Gemini
                .request_to_canonical(case.input.clone())
                .unwrap_or_else(|e| panic!("{}: {e:?}", case.name)),
        )
    });
}

#[test]
fn response_to_canonical() {
    check_json("response_to_canonical", |case| {
        let canonical = Gemini
            .response_to_canonical(case.input.clone())
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
        // The usage read from the raw body is the one the translation reports.
        let usage = Gemini.response_usage(&case.input).unwrap();
        assert_eq!(
            usage_json(usage),
            usage_json(canonical::usage(&canonical).unwrap()),
            "{}",
            case.name
        );
        json(&canonical)
    });
}

#[test]
fn response_from_canonical() {
    check_json("response_from_canonical", |case| {
        json(
            &Gemini
                .response_from_canonical(case.input.clone())
                .unwrap_or_else(|e| panic!("{}: {e:?}", case.name)),
        )
    });
}

/// Error fixtures are `{"status": …, "body": …}`; a string body is sent as
/// raw text (an upstream's HTML page, say), anything else as JSON.
fn check_errors(
    direction: &str,
    translate: impl Fn(ErrorResponse) -> Result<ErrorResponse, sluice_sdk::PluginError>,
) {
    check_json(direction, |case| {
        let input = json(&case.input);
        let body = match &input["body"] {
            Value::String(text) => text.clone().into_bytes(),
            other => serde_json::to_vec(other).unwrap(),
        };
        let status = u16::try_from(input["status"].as_u64().unwrap()).unwrap();
        let out = translate(ErrorResponse { status, body }).unwrap();
        json!({"status": out.status, "body": json(&out.body)})
    });
}

#[test]
fn error_to_canonical() {
    check_errors("error_to_canonical", |e| Gemini.error_to_canonical(e));
}

#[test]
fn error_from_canonical() {
    check_errors("error_from_canonical", |e| Gemini.error_from_canonical(e));
}

fn check_streams(direction_name: &str, direction: Direction) {
    let mut failures = Vec::new();
    for case in cases(direction_name) {
        let (out, end) = run_stream(direction, [case.input.as_slice()]);
        failures.extend(compare_bytes(&case.expected_path, &out));
        failures.extend(compare_json(&case.end_path, &end));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn stream_to_canonical() {
    check_streams("stream_to_canonical", Direction::ToCanonical);
}

#[test]
fn stream_from_canonical() {
    check_streams("stream_from_canonical", Direction::FromCanonical);
}

/// Observing reads the same usage and completeness as translating, and
/// writes nothing.
#[test]
fn stream_observe() {
    for case in cases("stream_to_canonical") {
        let (out, end) = run_stream(Direction::Observe, [case.input.as_slice()]);
        assert!(out.is_empty(), "{}", case.name);
        let (_, translated_end) = run_stream(Direction::ToCanonical, [case.input.as_slice()]);
        assert_eq!(end, translated_end, "{}", case.name);
    }
}
