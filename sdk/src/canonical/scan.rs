//! `usage` read from a canonical answer in one pass (on the scanner of
//! [`crate::json`]), without building anything for the rest of it; and, the
//! same way, whether a stream chunk holds no choice.
//!
//! The host reads usage from every non-stream answer and from the usage
//! chunk of every stream. serde's derive spent about 16 instructions per
//! byte doing it, most of them walking `choices` only to drop them. This
//! scanner checks the whole document as strictly as serde does, but it
//! answers only for the shape upstreams send: a top-level object with plain
//! ASCII keys, `usage` at most once, counts as plain unsigned integers. For
//! anything else (escaped or non-ASCII keys, an array where an object
//! belongs, `1.0` or `-0` as a count, a repeated field, nesting beyond 128)
//! it answers `None` and the caller asks serde, so every usage Sluice
//! charges is the one serde reads.

use super::chat::{CompletionDetails, PromptDetails, UsageJson};
use crate::json::scan::Cursor;

/// `Some(usage)` when the document is valid and of the common shape,
/// `None` when serde must decide.
pub(super) fn usage(json: &[u8]) -> Option<Option<UsageJson>> {
    let mut cursor = Cursor::new(json);
    let mut usage = None;
    let mut seen = false;
    cursor.object(|cursor, key| match key {
        b"usage" if !seen => {
            seen = true;
            usage = cursor.nullable(usage_object)?;
            Some(())
        }
        b"usage" => None,
        _ => cursor.skip_value(),
    })?;
    cursor.at_end().then_some(usage)
}

/// Whether the document is valid, of the common shape, and its `choices`
/// (once, at the top) an empty array; `false` when serde must decide.
pub(super) fn no_choices(json: &[u8]) -> bool {
    // serde reads every string as UTF-8; the scanner does not.
    if std::str::from_utf8(json).is_err() {
        return false;
    }
    let mut cursor = Cursor::new(json);
    let mut empty = None;
    let scanned = cursor.object(|cursor, key| match key {
        b"choices" if empty.is_none() => {
            empty = Some(cursor.empty_array()?);
            Some(())
        }
        b"choices" => None,
        _ => cursor.skip_value(),
    });
    scanned.is_some() && cursor.at_end() && empty == Some(true)
}

/// A `usage` object, its counts and their details.
fn usage_object(cursor: &mut Cursor) -> Option<UsageJson> {
    let mut usage = UsageJson::default();
    let mut seen = [false; 5];
    cursor.object(|cursor, key| {
        let field = match key {
            b"prompt_tokens" => 0,
            b"completion_tokens" => 1,
            b"total_tokens" => 2,
            b"prompt_tokens_details" => 3,
            b"completion_tokens_details" => 4,
            _ => return cursor.skip_value(),
        };
        if std::mem::replace(&mut seen[field], true) {
            return None;
        }
        match field {
            0 => usage.prompt_tokens = cursor.count()?,
            1 => usage.completion_tokens = cursor.count()?,
            2 => usage.total_tokens = cursor.count()?,
            3 => {
                usage.prompt_tokens_details = cursor.nullable(|cursor| {
                    let cached_tokens = detail(cursor, b"cached_tokens")?;
                    Some(PromptDetails { cached_tokens })
                })?;
            }
            _ => {
                usage.completion_tokens_details = cursor.nullable(|cursor| {
                    let reasoning_tokens = detail(cursor, b"reasoning_tokens")?;
                    Some(CompletionDetails { reasoning_tokens })
                })?;
            }
        }
        Some(())
    })?;
    Some(usage)
}

/// A details object's one known field, a nullable count.
fn detail(cursor: &mut Cursor, name: &[u8]) -> Option<Option<u64>> {
    let mut value = None;
    let mut seen = false;
    cursor.object(|cursor, key| {
        if key != name {
            return cursor.skip_value();
        }
        if std::mem::replace(&mut seen, true) {
            return None;
        }
        value = cursor.nullable(Cursor::count)?;
        Some(())
    })?;
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::{Random, mutations};

    #[derive(serde::Deserialize)]
    struct WithUsage {
        usage: Option<UsageJson>,
    }

    /// serde's reading, the reference: `None` where it refuses the document.
    fn serde_usage(json: &[u8]) -> Option<Option<UsageJson>> {
        serde_json::from_slice::<WithUsage>(json)
            .ok()
            .map(|body| body.usage)
    }

    fn debug(usage: &Option<UsageJson>) -> String {
        format!("{usage:?}")
    }

    /// The scanner either leaves `json` to serde or agrees with it; returns
    /// whether it answered.
    fn agrees(json: &[u8]) -> bool {
        let Some(scanned) = usage(json) else {
            return false;
        };
        let expected = serde_usage(json).unwrap_or_else(|| {
            panic!(
                "scanner answered for a document serde refuses: {}",
                String::from_utf8_lossy(json)
            )
        });
        assert_eq!(
            debug(&scanned),
            debug(&expected),
            "on {}",
            String::from_utf8_lossy(json)
        );
        true
    }

    #[test]
    fn answers_for_the_shapes_upstreams_send() {
        let documents: [&[u8]; 7] = [
            r#"{"id":"chatcmpl-demo","object":"chat.completion","created":1764000000,"model":"demo","choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"there\" \\ caf\u00e9 Café ☕ 😀\n","refusal":null},"finish_reason":"stop","logprobs":null}],"usage":{"prompt_tokens":6,"completion_tokens":18,"total_tokens":24,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#.as_bytes(),
            b"{\n  \"id\": \"x\",\n  \"choices\": [],\n  \"usage\": {\n    \"prompt_tokens\": 19,\n    \"completion_tokens\": 10,\n    \"total_tokens\": 29,\n    \"prompt_tokens_details\": {\"cached_tokens\": 7, \"audio_tokens\": 0},\n    \"completion_tokens_details\": {\"reasoning_tokens\": 3, \"accepted_prediction_tokens\": 0}\n  },\n  \"service_tier\": \"default\"\n}\n",
            br#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
            br#"{"usage":{"prompt_tokens":3,"prompt_tokens_details":null,"completion_tokens_details":{"reasoning_tokens":null}}}"#,
            br#"{"choices":[{"message":{"usage":{"prompt_tokens":999}}}],"usage":null}"#,
            br#"{"id":"x","choices":[{"delta":{"content":"\ud83d\ude00"}}]}"#,
            br#"{"usage":{"prompt_tokens":18446744073709551615,"extra":[1,-2.5e-3,true,{"a":[]}]}}"#,
        ];
        for json in documents {
            assert!(
                agrees(json),
                "left to serde: {}",
                String::from_utf8_lossy(json)
            );
        }
        let first = usage(documents[0]).unwrap().unwrap();
        assert_eq!((first.prompt_tokens, first.completion_tokens), (6, 18));
        // A `usage` inside `choices` is not the answer's.
        assert!(usage(documents[4]).unwrap().is_none());
    }

    #[test]
    fn leaves_unusual_shapes_to_serde() {
        let documents: [&[u8]; 12] = [
            br#"{"us\u0061ge":{"prompt_tokens":1}}"#,
            br#"{"usage":{"prompt_tokens":1},"usage":null}"#,
            br#"{"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#,
            br#"{"usage":{"prompt_tokens":1.0}}"#,
            br#"{"usage":{"prompt_tokens":-0}}"#,
            br#"{"usage":{"prompt_tokens":18446744073709551616}}"#,
            br#"{"usage":[1,2,3]}"#,
            br#"{"usage":{"prompt_tokens_details":[4]}}"#,
            br#"[{"prompt_tokens":1}]"#,
            br#"{"usage":{"prompt_tokens":1}} x"#,
            br#"{"choices":[1,],"usage":null}"#,
            "{\"caf\u{e9}\":1,\"usage\":null}".as_bytes(),
        ];
        for json in documents {
            assert!(
                usage(json).is_none(),
                "answered: {}",
                String::from_utf8_lossy(json)
            );
        }
        // What serde makes of some of them, through the public function.
        let read = |json: &[u8]| crate::canonical::usage(json).ok().flatten();
        assert_eq!(read(documents[0]).unwrap().prompt_tokens, 1);
        assert!(read(documents[1]).is_none());
        assert!(read(documents[4]).is_none());
        assert_eq!(read(documents[8]).unwrap().prompt_tokens, 1);
    }

    #[test]
    fn nesting_beyond_the_limit_goes_to_serde() {
        let deep = format!(
            r#"{{"choices":{}{},"usage":{{"prompt_tokens":5}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(usage(deep.as_bytes()).is_none());
        let read = crate::canonical::usage(deep.as_bytes()).unwrap().unwrap();
        assert_eq!(read.prompt_tokens, 5);
        let shallow = deep
            .replace(&"[".repeat(200), "[[")
            .replace(&"]".repeat(200), "]]");
        assert!(agrees(shallow.as_bytes()));
    }

    /// Generated documents, valid and not, and byte-level mutations of
    /// each: wherever the scanner answers, serde reads the same usage.
    #[test]
    fn agrees_with_serde_on_generated_documents() {
        let mut random = Random(0x05ee_d0f5_a1ce);
        let (mut documents, mut answered, mut valid) = (0, 0, 0);
        for _ in 0..20_000 {
            let variants = mutations(&mut random);
            for json in &variants {
                documents += 1;
                valid += usize::from(serde_usage(json).is_some());
                answered += usize::from(agrees(json));
            }
        }
        // The fast path must carry most of what serde accepts, or it is
        // not worth having.
        assert!(
            answered * 2 > valid,
            "answered {answered} of {valid} valid documents ({documents} in all)"
        );
    }

    /// serde's reading, as the host's relay does it without the scanner:
    /// an object whose `choices` is an empty array.
    fn serde_no_choices(json: &[u8]) -> bool {
        let choices = crate::json::Object::parse(json).ok().and_then(|object| {
            serde_json::from_str::<Vec<serde::de::IgnoredAny>>(object.get("choices")?.get()).ok()
        });
        choices.is_some_and(|choices| choices.is_empty())
    }

    #[test]
    fn knows_a_chunk_without_choices() {
        let usage_chunk = br#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
        assert!(no_choices(usage_chunk));
        assert!(no_choices(br#"{"choices": [ ] }"#));
        for unsure in [
            &br#"{"choices":[{"index":0,"delta":{}}],"usage":null}"#[..],
            br#"{"usage":null}"#,
            br#"{"choices":[],"choices":[]}"#,
            br#"{"choices":[]"#,
            br#"{"choices":[]} x"#,
            br#"[{"choices":[]}]"#,
            br#"{"choices":{}}"#,
        ] {
            assert!(!no_choices(unsure), "{}", String::from_utf8_lossy(unsure));
        }
    }

    /// Wherever the scanner says "no choices", serde reads an empty array.
    #[test]
    fn says_no_choices_only_where_serde_agrees() {
        let mut random = Random(0x0c40_1ce5);
        let (mut empty, mut answered) = (0, 0);
        for _ in 0..20_000 {
            for json in &mutations(&mut random) {
                let expected = serde_no_choices(json);
                empty += usize::from(expected);
                if no_choices(json) {
                    answered += 1;
                    assert!(expected, "{}", String::from_utf8_lossy(json));
                }
            }
        }
        // The generator favours what the scanner leaves to serde (escaped,
        // non-ASCII and repeated keys); the common shape is checked above.
        assert!(answered * 3 > empty, "answered {answered} of {empty}");
    }
}
