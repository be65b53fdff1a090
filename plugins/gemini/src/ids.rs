//! Tool-call ids that carry what Gemini needs back.
//!
//! Gemini's function calls usually have no id (Gemini 3 may send one), and
//! Gemini 3 answers 400 unless each call's `thoughtSignature` comes back on
//! that call in the next turn. An OpenAI client keeps only the call's id, and
//! a plugin has no storage of its own, so the id itself carries both:
//!
//! ```text
//! id        = head [ "__ts_" signature ]
//! head      = "call_" scope "_" ordinal      Gemini sent no id
//!           | "gcall_" hex                   Gemini sent one: restored on the way back
//! scope     = the response id's ASCII letters and digits, or "gemini"
//! ordinal   = the call's position among the response's calls, from 0
//! hex       = Gemini's id, its UTF-8 bytes in lowercase hex
//! signature = the thoughtSignature with base64's `+` `/` turned into `-` `_`
//!             and its `=` padding dropped
//! ```
//!
//! For example `call_Xk9fabc_1__ts_CiIBVKhc-vT_` is the second call of
//! response `Xk9f-abc`, signed `CiIBVKhc+vT/`.
//!
//! Ids use only `[A-Za-z0-9_-]`, which every protocol Sluice speaks accepts
//! (Anthropic rejects anything else), and a head never contains `__`, so the
//! first `__ts_` is where the signature starts. Ids are deterministic (no
//! clock or randomness is involved) and unique within a response; the scope
//! keeps them apart across the turns of a conversation.
//!
//! A signature in base64url (`-` `_`) comes back in standard base64: the
//! same bytes to Gemini, which accepts both.

use crate::wire::FunctionCall;

const SIGNATURE_MARK: &str = "__ts_";
const GEMINI_ID_PREFIX: &str = "gcall_";
const DEFAULT_SCOPE: &str = "gemini";

/// What a tool-call id says about the Gemini call it stands for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The id Gemini gave the call.
    pub gemini_id: Option<String>,
    pub thought_signature: Option<String>,
}

/// Reads an id. Ids this translator did not make (a client's own, another
/// provider's) say nothing.
pub fn decode(id: &str) -> Origin {
    let (head, signature) = match id.split_once(SIGNATURE_MARK) {
        Some((head, signature)) => (head, signature_from_id(signature)),
        None => (id, None),
    };
    Origin {
        gemini_id: head.strip_prefix(GEMINI_ID_PREFIX).and_then(from_hex),
        thought_signature: signature,
    }
}

/// Names the calls of one response (or one stream) in order.
pub struct IdMinter {
    scope: String,
    ordinal: u64,
}

impl IdMinter {
    /// `response_id` is Gemini's `responseId`, when it sent one.
    pub fn new(response_id: &str) -> Self {
        let scope: String = response_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        IdMinter {
            scope: if scope.is_empty() {
                DEFAULT_SCOPE.into()
            } else {
                scope
            },
            ordinal: 0,
        }
    }

    /// The id of the next call, made from the call and its part's signature.
    pub fn next_id(&mut self, call: &FunctionCall, signature: Option<&str>) -> String {
        let mut id = match call.id.as_deref().filter(|id| !id.is_empty()) {
            Some(gemini_id) => format!("{GEMINI_ID_PREFIX}{}", to_hex(gemini_id)),
            None => format!("call_{}_{}", self.scope, self.ordinal),
        };
        self.ordinal += 1;
        if let Some(signature) = signature.and_then(signature_to_id) {
            id.push_str(SIGNATURE_MARK);
            id.push_str(&signature);
        }
        id
    }
}

/// Base64 → the id's alphabet. A signature that is not base64 (other
/// characters, an impossible length) cannot be one Gemini issued: it is
/// dropped rather than carried in a form that would not read back.
fn signature_to_id(signature: &str) -> Option<String> {
    let trimmed = signature.trim_end_matches('=');
    let valid = !trimmed.is_empty()
        && trimmed.len() % 4 != 1
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'));
    valid.then(|| {
        trimmed
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                other => other,
            })
            .collect()
    })
}

fn signature_from_id(encoded: &str) -> Option<String> {
    let valid = !encoded.is_empty()
        && encoded.len() % 4 != 1
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    valid.then(|| {
        let mut signature: String = encoded
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                other => other,
            })
            .collect();
        let padding = (4 - signature.len() % 4) % 4;
        signature.extend(std::iter::repeat_n('=', padding));
        signature
    })
}

fn to_hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<String> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: Option<&str>) -> FunctionCall {
        FunctionCall {
            name: "f".into(),
            args: None,
            id: id.map(Into::into),
        }
    }

    #[test]
    fn the_documented_example_holds() {
        let mut minter = IdMinter::new("Xk9f-abc");
        minter.next_id(&call(None), None);
        let id = minter.next_id(&call(None), Some("CiIBVKhc+vT/"));
        assert_eq!(id, "call_Xk9fabc_1__ts_CiIBVKhc-vT_");
        assert_eq!(
            decode(&id),
            Origin {
                gemini_id: None,
                thought_signature: Some("CiIBVKhc+vT/".into()),
            }
        );
    }

    #[test]
    fn signatures_and_gemini_ids_round_trip_with_every_padding() {
        for signature in ["QQ==", "QUI=", "QUJD", "a+b/c+d/EjRWeJq8", "Zm9v/w=="] {
            for gemini_id in [None, Some("fc_1"), Some("0a9Z/é")] {
                let id = IdMinter::new("r").next_id(&call(gemini_id), Some(signature));
                assert!(
                    id.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                    "{id}"
                );
                let origin = decode(&id);
                assert_eq!(origin.thought_signature.as_deref(), Some(signature));
                assert_eq!(origin.gemini_id.as_deref(), gemini_id);
            }
        }
    }

    #[test]
    fn ids_are_unique_within_a_response_and_scoped_by_it() {
        let mut minter = IdMinter::new("");
        let first = minter.next_id(&call(None), None);
        let second = minter.next_id(&call(None), None);
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("call_gemini_0", "call_gemini_1")
        );
        assert_eq!(
            IdMinter::new("abc").next_id(&call(None), None),
            "call_abc_0"
        );
        assert_eq!(decode(&first), Origin::default());
    }

    #[test]
    fn foreign_ids_and_damaged_suffixes_say_nothing() {
        for id in [
            "call_abc123",
            "toolu_01A09q90qw90lq917835lq9",
            "functions.search:3",
            "gcall_zz",
            "gcall_6",
            "call_x__ts_",
            "call_x__ts_a",
            "call_x__ts_a+b",
            "",
        ] {
            assert_eq!(decode(id), Origin::default(), "{id}");
        }
    }

    #[test]
    fn a_signature_that_is_not_base64_is_dropped() {
        for signature in ["not base64!", "QUJDR", "="] {
            let id = IdMinter::new("r").next_id(&call(None), Some(signature));
            assert_eq!(id, "call_r_0", "{signature}");
        }
    }
}
