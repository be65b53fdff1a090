//! OpenAI Chat Completions requests: the few fields policy needs, parsed
//! without copying the body, and the body prepared for the upstream.

use crate::plugins::RequestText;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use sluice_sdk::json::{Object, with_field};

/// A request the client sent, checked and summarized.
#[derive(Debug)]
pub struct ChatRequest {
    pub model: String,
    pub stream: bool,
    /// The client asked for the final usage chunk itself.
    pub include_usage: bool,
    pub max_output_tokens: Option<u32>,
    pub body: Bytes,
    /// The client sent `stream_options`: its other fields must be kept.
    sent_stream_options: bool,
}

/// Why a request body is not a valid Chat Completions request.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    pub param: Option<&'static str>,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    messages: Option<Vec<IgnoredAny>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

pub fn parse_chat(body: Bytes) -> Result<ChatRequest, Invalid> {
    let invalid = |message: String, param| Invalid { message, param };
    let head: Head<'_> = serde_json::from_slice(&body).map_err(|e| {
        invalid(
            format!("We could not parse the JSON body of your request: {e}"),
            None,
        )
    })?;
    let model = match head
        .model
        .map(|raw| serde_json::from_str::<String>(raw.get()))
    {
        Some(Ok(model)) if !model.is_empty() => model,
        Some(_) => {
            return Err(invalid(
                "'model' must be a non-empty string.".into(),
                Some("model"),
            ));
        }
        None => {
            return Err(invalid(
                "you must provide a model parameter".into(),
                Some("model"),
            ));
        }
    };
    match head.messages {
        Some(messages) if !messages.is_empty() => {}
        Some(_) => {
            return Err(invalid(
                "'messages' must contain at least one message.".into(),
                Some("messages"),
            ));
        }
        None => {
            return Err(invalid(
                "Missing required parameter: 'messages'.".into(),
                Some("messages"),
            ));
        }
    }
    let stream = head.stream.unwrap_or(false);
    if head.stream_options.is_some() && !stream {
        return Err(invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
            Some("stream_options"),
        ));
    }
    Ok(ChatRequest {
        model,
        stream,
        include_usage: head
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        max_output_tokens: head.max_completion_tokens.or(head.max_tokens),
        sent_stream_options: head.stream_options.is_some(),
        body,
    })
}

impl ChatRequest {
    /// The canonical body for the upstream: as the client sent it, except
    /// that a stream always asks for usage, so every streamed call can be
    /// metered (the relay removes the extra chunk if the client did not ask).
    pub fn canonical_body(&self) -> Bytes {
        if !self.stream || self.include_usage {
            return self.body.clone();
        }
        let checked = "parse_chat checked the body is a JSON object";
        let mut options: serde_json::Map<String, serde_json::Value> = if self.sent_stream_options {
            Object::parse(&self.body)
                .expect(checked)
                .get("stream_options")
                .and_then(|raw| serde_json::from_str(raw.get()).ok())
                .unwrap_or_default()
        } else {
            serde_json::Map::new()
        };
        options.insert("include_usage".into(), true.into());
        with_field(self.body.to_vec(), "stream_options", &options)
            .expect(checked)
            .into()
    }

    /// A rough prompt size for policy and admission: about four bytes of
    /// JSON per token. Billing uses the upstream's count, or a tokenizer.
    pub fn estimated_prompt_tokens(&self) -> u32 {
        u32::try_from(self.body.len() / 4).unwrap_or(u32::MAX)
    }
}

/// The request's human-readable text, for risk plugins that ask for it.
pub struct MessageText(pub Bytes);

#[derive(Deserialize)]
struct Messages {
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
    Other(IgnoredAny),
}

#[derive(Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
}

impl RequestText for MessageText {
    fn message_text(&self) -> String {
        let Ok(request) = serde_json::from_slice::<Messages>(&self.0) else {
            return String::new();
        };
        let mut text = String::new();
        let mut add = |piece: &str| {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(piece);
        };
        for message in request.messages {
            match message.content {
                Some(Content::Text(t)) => add(&t),
                Some(Content::Parts(parts)) => parts
                    .iter()
                    .filter_map(|p| p.text.as_deref())
                    .for_each(&mut add),
                Some(Content::Other(_)) | None => {}
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ChatRequest, Invalid> {
        parse_chat(Bytes::from(json.to_string()))
    }

    #[test]
    fn reads_the_envelope_fields() {
        let chat = parse(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":50}"#).unwrap();
        assert_eq!(
            (
                chat.model.as_str(),
                chat.stream,
                chat.include_usage,
                chat.max_output_tokens
            ),
            ("gpt-4o", true, false, Some(50))
        );
        let chat = parse(r#"{"model":"m","messages":[{}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"max_completion_tokens":9}"#).unwrap();
        assert!(chat.include_usage);
        assert_eq!(chat.max_output_tokens, Some(9));
    }

    #[test]
    fn explains_what_is_wrong() {
        assert_eq!(parse("{").unwrap_err().param, None);
        assert_eq!(
            parse(r#"{"messages":[{}]}"#).unwrap_err().param,
            Some("model")
        );
        assert_eq!(
            parse(r#"{"model":5,"messages":[{}]}"#).unwrap_err().param,
            Some("model")
        );
        assert_eq!(
            parse(r#"{"model":"m"}"#).unwrap_err().param,
            Some("messages")
        );
        assert_eq!(
            parse(r#"{"model":"m","messages":[]}"#).unwrap_err().param,
            Some("messages")
        );
        assert_eq!(
            parse(r#"{"model":"m","messages":{}}"#).unwrap_err().param,
            None
        );
        assert_eq!(
            parse(r#"{"model":"m","messages":[{}],"stream_options":{"include_usage":true}}"#)
                .unwrap_err()
                .param,
            Some("stream_options")
        );
    }

    #[test]
    fn streams_always_ask_the_upstream_for_usage() {
        let chat =
            parse(r#"{"model":"m","messages":[{}],"stream":true,"temperature":0.5}"#).unwrap();
        assert_eq!(
            chat.canonical_body(),
            r#"{"model":"m","messages":[{}],"stream":true,"temperature":0.5,"stream_options":{"include_usage":true}}"#
        );
        let asked = parse(r#"{"model":"m","messages":[{}],"stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert_eq!(asked.canonical_body(), asked.body);
        let plain = parse(r#"{"model":"m","messages":[{}]}"#).unwrap();
        assert_eq!(plain.canonical_body(), plain.body);
        let other = parse(r#"{"model":"m","messages":[{}],"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":false}}"#).unwrap();
        assert_eq!(
            other.canonical_body(),
            r#"{"model":"m","messages":[{}],"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}"#
        );
    }

    #[test]
    fn collects_the_text_of_every_message() {
        let body = r#"{"model":"m","messages":[{"role":"system","content":"be nice"},
            {"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"x"}}]},
            {"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","content":"42"}]}"#;
        assert_eq!(
            MessageText(Bytes::from(body)).message_text(),
            "be nice\nlook\n42"
        );
    }
}
