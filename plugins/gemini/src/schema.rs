//! JSON Schema (what OpenAI clients send for tool parameters and structured
//! output) ⇄ Gemini's `Schema`, an OpenAPI 3.0 subset.
//!
//! Gemini parses schemas into a fixed message and answers 400 to any keyword
//! outside it (`additionalProperties`, `$schema`, `strict`, `examples`…), so
//! the way there keeps only the keywords Gemini knows. Dropping a keyword
//! only loosens the schema; keywords that carry structure Gemini cannot
//! express (`$ref`, `allOf`) make the request fail here instead, with a
//! message, rather than at Gemini or, worse, silently.

use serde_json::{Map, Value};

/// Keywords copied as they are. `title` and `default`, though in Gemini's
/// message today, were long rejected by it and guide nothing: they are left out.
const PLAIN_KEYWORDS: &[&str] = &[
    "description",
    "nullable",
    "required",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "propertyOrdering",
];

/// Formats Gemini accepts, by type; any other makes it answer 400.
const STRING_FORMATS: &[&str] = &["enum", "date-time"];
const NUMBER_FORMATS: &[&str] = &["float", "double", "int32", "int64"];

/// A tool's `parameters`, or `None` when the tool takes none: Gemini refuses
/// an object schema with empty `properties`, which is how OpenAI clients
/// spell "no parameters".
pub fn parameters(schema: &Value, at: &str) -> Result<Option<Value>, String> {
    let sanitized = to_gemini(schema, at)?;
    let takes_nothing = sanitized.get("type").and_then(Value::as_str) == Some("object")
        && sanitized.get("properties").is_none()
        && sanitized.get("anyOf").is_none();
    Ok((!takes_nothing).then_some(sanitized))
}

/// A JSON Schema as a Gemini schema. `at` names the schema in messages.
pub fn to_gemini(schema: &Value, at: &str) -> Result<Value, String> {
    sanitize(schema, at).map(Value::Object)
}

fn sanitize(schema: &Value, at: &str) -> Result<Map<String, Value>, String> {
    let Value::Object(schema) = schema else {
        return Err(format!("{at}: a schema must be an object"));
    };
    let mut out = Map::new();
    let mut alternatives: Option<Vec<Map<String, Value>>> = None;
    for (keyword, value) in schema {
        let here = format!("{at}.{keyword}");
        match keyword.as_str() {
            "$ref" | "allOf" => {
                return Err(format!(
                    "{here}: Gemini schemas cannot express `{keyword}`; inline the definitions"
                ));
            }
            "type" => {
                let (kind, nullable) = single_type(value, &here)?;
                out.insert("type".into(), Value::String(kind));
                if nullable {
                    out.insert("nullable".into(), Value::Bool(true));
                }
            }
            "properties" => {
                let Value::Object(properties) = value else {
                    return Err(format!("{here}: must be an object"));
                };
                let converted = properties
                    .iter()
                    .map(|(name, property)| {
                        Ok((
                            name.clone(),
                            to_gemini(property, &format!("{here}.{name}"))?,
                        ))
                    })
                    .collect::<Result<Map<_, _>, String>>()?;
                if !converted.is_empty() {
                    out.insert("properties".into(), Value::Object(converted));
                }
            }
            "items" => {
                out.insert("items".into(), to_gemini(value, &here)?);
            }
            "anyOf" | "oneOf" => {
                if alternatives.is_some() {
                    return Err(format!(
                        "{at}: Gemini schemas take one of `anyOf` and `oneOf`"
                    ));
                }
                let Value::Array(options) = value else {
                    return Err(format!("{here}: must be an array"));
                };
                alternatives = Some(
                    options
                        .iter()
                        .enumerate()
                        .map(|(i, option)| sanitize(option, &format!("{here}[{i}]")))
                        .collect::<Result<_, _>>()?,
                );
            }
            "enum"
                if value
                    .as_array()
                    .is_some_and(|v| v.iter().all(Value::is_string)) =>
            {
                out.insert("enum".into(), value.clone());
            }
            "const" if value.is_string() => {
                out.insert("enum".into(), Value::Array(vec![value.clone()]));
            }
            "format" => {
                out.insert("format".into(), value.clone());
            }
            keyword if PLAIN_KEYWORDS.contains(&keyword) => {
                out.insert(keyword.into(), value.clone());
            }
            _ => {}
        }
    }
    if let Some(alternatives) = alternatives {
        add_alternatives(&mut out, alternatives);
    }
    if !format_fits_type(&out) {
        out.remove("format");
    }
    Ok(out)
}

/// `anyOf` with a `null` member, JSON Schema's usual optional field (as
/// Pydantic writes `Optional[str]`), becomes Gemini's `nullable`; a single
/// alternative left merges into the schema.
fn add_alternatives(schema: &mut Map<String, Value>, mut alternatives: Vec<Map<String, Value>>) {
    let count = alternatives.len();
    alternatives.retain(|alternative| {
        alternative.len() != 1 || alternative.get("type").and_then(Value::as_str) != Some("null")
    });
    if alternatives.len() < count {
        schema.insert("nullable".into(), Value::Bool(true));
    }
    if alternatives.len() == 1 {
        for (keyword, value) in alternatives.remove(0) {
            schema.entry(keyword).or_insert(value);
        }
    } else if !alternatives.is_empty() {
        let alternatives = alternatives.into_iter().map(Value::Object).collect();
        schema.insert("anyOf".into(), Value::Array(alternatives));
    }
}

/// Gemini takes one type and a `nullable` flag where JSON Schema may list
/// several types, as OpenAI strict mode does for optional fields.
fn single_type(value: &Value, at: &str) -> Result<(String, bool), String> {
    match value {
        Value::String(kind) => Ok((kind.clone(), false)),
        Value::Array(kinds) => {
            let nullable = kinds.iter().any(|k| k == "null");
            let mut others = kinds.iter().filter(|k| *k != "null");
            match (others.next().and_then(Value::as_str), others.next()) {
                (Some(kind), None) => Ok((kind.to_string(), nullable)),
                (None, None) if nullable => Ok(("null".into(), false)),
                _ => Err(format!(
                    "{at}: Gemini schemas take a single type (and null)"
                )),
            }
        }
        _ => Err(format!("{at}: must be a string or an array of strings")),
    }
}

fn format_fits_type(schema: &Map<String, Value>) -> bool {
    let Some(format) = schema.get("format").and_then(Value::as_str) else {
        return false;
    };
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => STRING_FORMATS.contains(&format),
        Some("number" | "integer") => NUMBER_FORMATS.contains(&format),
        _ => false,
    }
}

/// A Gemini schema as JSON Schema: Gemini's enum-style type names
/// (`OBJECT`, `STRING`) in JSON Schema's lower case. Other keywords are
/// JSON Schema's too, or harmless to it.
pub fn to_json_schema(mut schema: Value) -> Value {
    lower_types(&mut schema);
    schema
}

fn lower_types(schema: &mut Value) {
    let Value::Object(schema) = schema else {
        return;
    };
    if let Some(Value::String(kind)) = schema.get_mut("type") {
        *kind = kind.to_ascii_lowercase();
    }
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        properties.values_mut().for_each(lower_types);
    }
    if let Some(items) = schema.get_mut("items") {
        lower_types(items);
    }
    if let Some(Value::Array(options)) = schema.get_mut("anyOf") {
        options.iter_mut().for_each(lower_types);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_gemini_knows_and_drops_the_rest() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "Weather",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "city": {"type": "string", "description": "City", "examples": ["Paris"], "default": "Paris"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                "when": {"type": "string", "format": "date-time"},
                "email": {"type": "string", "format": "email"},
                "count": {"type": "integer", "format": "int32", "minimum": 1},
                "tags": {"type": "array", "items": {"type": "string", "const": "x"}},
                "title": {"type": "string"},
                "default": {"oneOf": [{"type": "string"}, {"type": "number"}]},
                "note": {"description": "Optional", "anyOf": [{"type": "string", "description": "Text"}, {"type": "null"}]},
                "either": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
                "codes": {"type": "array", "items": {"type": "integer", "enum": [1, 2]}}
            },
            "required": ["city"],
            "strict": true
        });
        assert_eq!(
            to_gemini(&schema, "s").unwrap(),
            json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City"},
                    "unit": {"type": "string", "nullable": true, "enum": ["c", "f"]},
                    "when": {"type": "string", "format": "date-time"},
                    "email": {"type": "string"},
                    "count": {"type": "integer", "format": "int32", "minimum": 1},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["x"]}},
                    "title": {"type": "string"},
                    "default": {"anyOf": [{"type": "string"}, {"type": "number"}]},
                    "note": {"description": "Optional", "nullable": true, "type": "string"},
                    "either": {"nullable": true, "anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "codes": {"type": "array", "items": {"type": "integer"}}
                },
                "required": ["city"]
            })
        );
    }

    #[test]
    fn refuses_what_gemini_cannot_express() {
        let with_ref = json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}});
        let error = to_gemini(&with_ref, "parameters").unwrap_err();
        assert!(
            error.starts_with("parameters.properties.a.$ref:"),
            "{error}"
        );
        for schema in [
            json!({"allOf": [{"type": "string"}]}),
            json!({"type": ["string", "integer"]}),
            json!({"anyOf": [], "oneOf": []}),
            json!(true),
            json!({"type": "object", "properties": []}),
        ] {
            assert!(to_gemini(&schema, "s").is_err(), "{schema}");
        }
    }

    #[test]
    fn an_object_without_properties_means_no_parameters() {
        let none = json!({"type": "object", "properties": {}, "additionalProperties": false});
        assert_eq!(parameters(&none, "p").unwrap(), None);
        let some = json!({"type": "object", "properties": {"q": {"type": "string"}}});
        assert!(parameters(&some, "p").unwrap().is_some());
    }

    #[test]
    fn gemini_type_names_become_json_schema_ones() {
        let schema = json!({"type": "OBJECT", "properties": {"xs": {"type": "ARRAY", "items": {"type": "STRING"}}}});
        assert_eq!(
            to_json_schema(schema),
            json!({"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "string"}}}})
        );
    }
}
