//! Tool calls: OpenAI's `tool_calls` entries ⇄ Anthropic's `tool_use` blocks.

use crate::ids;
use crate::wire::{Block, empty_object};
use serde_json::Value;
use sluice_sdk::canonical::chat::{FunctionCall, ToolCall};

/// OpenAI carries arguments as JSON text: the input, compact.
pub fn to_call(id: String, name: String, input: &Value) -> ToolCall {
    ToolCall {
        id,
        kind: "function".into(),
        function: FunctionCall {
            name,
            arguments: input.to_string(),
        },
    }
}

/// A canonical call as a `tool_use` block with an id Anthropic accepts.
pub fn to_block(call: ToolCall) -> Block {
    Block::ToolUse {
        id: ids::tool_id(&call.id).into_owned(),
        name: call.function.name,
        input: input(&call.function.arguments),
    }
}

/// Arguments as Anthropic's input object. Models sometimes write arguments
/// that do not parse, or that are not an object; the call still goes
/// through, with an empty input.
fn input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(input @ Value::Object(_)) => input,
        _ => empty_object(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(id: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall {
                name: "f".into(),
                arguments: arguments.into(),
            },
        }
    }

    fn input_of(block: Block) -> Value {
        match block {
            Block::ToolUse { input, .. } => input,
            other => panic!("not a tool_use block: {other:?}"),
        }
    }

    #[test]
    fn arguments_that_are_not_an_object_become_an_empty_input() {
        for bad in ["", "{\"city\":", "[1,2]", "\"text\"", "null", "not json"] {
            assert_eq!(input_of(to_block(call("c", bad))), json!({}), "{bad:?}");
        }
        assert_eq!(
            input_of(to_block(call("c", " {\"city\": \"Paris\"} "))),
            json!({"city": "Paris"})
        );
    }

    #[test]
    fn inputs_become_compact_arguments() {
        let call = to_call("t".into(), "f".into(), &json!({"a": [1, {"b": "é"}]}));
        assert_eq!(call.function.arguments, r#"{"a":[1,{"b":"é"}]}"#);
    }
}
