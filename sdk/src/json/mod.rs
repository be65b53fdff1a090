//! A JSON object edited at its top level without parsing its values: a
//! request that only needs a new `model` keeps every other byte as the
//! client wrote it, key order included, and costs a scan instead of a
//! parse into values and a serialization back (in a plugin, several times
//! the rest of its call).

pub(crate) mod scan;

use scan::{Cursor, plain_run};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The top-level fields of a JSON object, each value still its raw text.
pub struct Object<'a> {
    fields: Vec<(Cow<'a, str>, Cow<'a, RawValue>)>,
}

impl<'a> Object<'a> {
    /// Reads `json`, which must be one object.
    pub fn parse(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// The raw value of `key` (the last one, should the object repeat it,
    /// as JSON readers that keep one value do).
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Sets `key` to `value`: in place of its first occurrence (dropping
    /// any repeats), or last when the object has none. Whether the object
    /// changed: not when `key` was there once with the same JSON text, so
    /// a caller can keep the original bytes instead of writing new ones.
    pub fn set(&mut self, key: &str, value: &impl Serialize) -> Result<bool, serde_json::Error> {
        let value: Cow<RawValue> = Cow::Owned(serde_json::value::to_raw_value(value)?);
        let mut occurrences = self.fields.iter().filter(|(k, _)| k == key);
        if let (Some((_, held)), None) = (occurrences.next(), occurrences.next())
            && held.get() == value.get()
        {
            return Ok(false);
        }
        match self.fields.iter().position(|(k, _)| k == key) {
            Some(first) => {
                self.fields[first].1 = value;
                let mut index = 0;
                self.fields.retain(|(k, _)| {
                    index += 1;
                    index - 1 == first || k != key
                });
            }
            None => self.fields.push((Cow::Owned(key.to_string()), value)),
        }
        Ok(true)
    }

    /// Removes every occurrence of `key`; whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.fields.len();
        self.fields.retain(|(k, _)| k != key);
        self.fields.len() != before
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let size: usize = self
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.get().len() + 4)
            .sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'{');
        for (index, (key, value)) in self.fields.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, key).expect("a string serializes into memory");
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.push(b'}');
        out
    }
}

/// `json`, an object, with `key` set to `value`: the same bytes when it
/// already held that value once, so a request whose only edit is a no-op
/// goes on as the client wrote it. Otherwise the fields are those of
/// [`Object::set`]; bytes outside them may differ.
pub fn with_field(
    json: Vec<u8>,
    key: &str,
    value: &impl Serialize,
) -> Result<Vec<u8>, serde_json::Error> {
    // The common case, one plain object, costs a scan; serde decides the rest.
    if let Ok(text) = serde_json::to_vec(value)
        && let Some(edited) = spliced(&json, key, &text)
    {
        return Ok(edited.unwrap_or(json));
    }
    let edited = {
        let mut object = Object::parse(&json)?;
        object.set(key, value)?.then(|| object.to_vec())
    };
    Ok(edited.unwrap_or(json))
}

/// [`with_field`] by splicing `value` (JSON text) into the scanned bytes:
/// `None` unless `json` is valid UTF-8 and one object whose keys are plain
/// ASCII (as is `key`), holding `key` at most once; `Some(None)` when it
/// already holds `value`.
fn spliced(json: &[u8], key: &str, value: &[u8]) -> Option<Option<Vec<u8>>> {
    // serde checks every string and raw value as UTF-8; the scanner does
    // not, so the whole document is checked here.
    if plain_run::<true>(key.as_bytes()) != key.len() || std::str::from_utf8(json).is_err() {
        return None;
    }
    let mut cursor = Cursor::new(json);
    let (mut held, mut fields) = (None, 0);
    cursor.object(|cursor, name| {
        fields += 1;
        if name != key.as_bytes() {
            return cursor.skip_value();
        }
        if held.is_some() {
            return None;
        }
        cursor.peek()?;
        let start = cursor.position();
        cursor.skip_value()?;
        held = Some(start..cursor.position());
        Some(())
    })?;
    let closing_brace = cursor.position() - 1;
    if !cursor.at_end() {
        return None;
    }
    Some(match held {
        Some(span) if json[span.clone()] == *value => None,
        Some(span) => Some([&json[..span.start], value, &json[span.end..]].concat()),
        None => {
            let separator: &[u8] = if fields == 0 { b"\"" } else { b",\"" };
            Some(
                [
                    &json[..closing_brace],
                    separator,
                    key.as_bytes(),
                    b"\":",
                    value,
                    &json[closing_brace..],
                ]
                .concat(),
            )
        }
    })
}

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Object<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Object<'de>, M::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Key(key), value)) = map.next_entry::<Key, &RawValue>()? {
                    fields.push((key, Cow::Borrowed(value)));
                }
                Ok(Object { fields })
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// A key, borrowed from the input unless it had escapes to undo.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyText;
        impl<'de> Visitor<'de> for KeyText {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(text.to_string())))
            }
        }
        deserializer.deserialize_str(KeyText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testgen::{Random, mutations};
    use serde_json::Value;

    fn set_model(json: &str, model: &str) -> String {
        let mut object = Object::parse(json.as_bytes()).unwrap();
        assert!(object.set("model", &model).unwrap());
        String::from_utf8(object.to_vec()).unwrap()
    }

    #[test]
    fn setting_the_value_a_field_already_holds_changes_nothing() {
        let mut object = Object::parse(br#"{"model" : "a\u00e9","n":1}"#).unwrap();
        assert!(
            object.set("model", &"a\u{e9}").unwrap(),
            "the same string, other JSON text"
        );
        assert!(!object.set("model", &"a\u{e9}").unwrap());
        assert_eq!(
            object.to_vec(),
            "{\"model\":\"a\u{e9}\",\"n\":1}".as_bytes()
        );
        let mut repeated = Object::parse(br#"{"model":"a","model":"a"}"#).unwrap();
        assert!(
            repeated.set("model", &"a").unwrap(),
            "repeats collapse into one"
        );
        assert_eq!(repeated.to_vec(), br#"{"model":"a"}"#);
    }

    #[test]
    fn replaces_a_field_and_keeps_every_other_byte_and_the_key_order() {
        let json = r#"{"z":1, "model" : "a","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"n":1.50}"#;
        assert_eq!(
            set_model(json, "b\"c"),
            r#"{"z":1,"model":"b\"c","messages":[{"role":"user","content":"h\u00e9 \"x\""}],"n":1.50}"#
        );
    }

    #[test]
    fn adds_a_missing_field_last_and_collapses_repeats_into_the_first() {
        assert_eq!(set_model(r#"{"a":true}"#, "m"), r#"{"a":true,"model":"m"}"#);
        assert_eq!(
            set_model(r#"{"model":"x","a":1,"model":"y"}"#, "m"),
            r#"{"model":"m","a":1}"#
        );
        assert_eq!(set_model("{}", "m"), r#"{"model":"m"}"#);
    }

    #[test]
    fn reads_the_last_of_repeated_keys_and_keys_with_escapes() {
        let object = Object::parse(br#"{"k":1,"\u006b":2,"s\"q":[3]}"#).unwrap();
        assert_eq!(object.get("k").unwrap().get(), "2");
        assert_eq!(object.get("s\"q").unwrap().get(), "[3]");
        assert!(object.get("missing").is_none());
        assert_eq!(object.to_vec(), br#"{"k":1,"k":2,"s\"q":[3]}"#);
    }

    #[test]
    fn removes_every_occurrence_of_a_field() {
        let mut object = Object::parse(br#"{"a":1,"usage":{"x":2},"b":[],"usage":null}"#).unwrap();
        assert!(object.remove("usage"));
        assert!(!object.remove("usage"));
        assert_eq!(object.to_vec(), br#"{"a":1,"b":[]}"#);
    }

    #[test]
    fn refuses_what_is_not_one_object() {
        for bad in ["[1]", "\"x\"", "{", "{\"a\":}", "{} {}", ""] {
            assert!(Object::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_field_is_spliced_into_the_bytes_as_written() {
        let edit = |json: &str, model: &str| {
            String::from_utf8(with_field(json.as_bytes().to_vec(), "model", &model).unwrap())
                .unwrap()
        };
        let json = "{ \"z\" : 1,\n \"model\" : \"a\", \"n\":[1, 2] }\n";
        assert_eq!(
            edit(json, "b"),
            "{ \"z\" : 1,\n \"model\" : \"b\", \"n\":[1, 2] }\n"
        );
        assert_eq!(edit(json, "a"), json);
        assert_eq!(edit("{ \"a\" : 1 }", "m"), "{ \"a\" : 1 ,\"model\":\"m\"}");
        assert_eq!(edit("{ }", "m"), "{ \"model\":\"m\"}");
        // Left to serde: a repeated field, a key with escapes.
        assert_eq!(
            edit(r#"{"model":"x","model":"y"}"#, "m"),
            r#"{"model":"m"}"#
        );
        assert_eq!(edit(r#"{"mod\u0065l":"x"}"#, "m"), r#"{"model":"m"}"#);
        for bad in ["[1]", "{\"model\":\"\u{1}\"}", "{} {}", "{\"a\":01}"] {
            assert!(
                with_field(bad.as_bytes().to_vec(), "model", &"m").is_err(),
                "{bad}"
            );
        }
        let invalid_utf8 = b"{\"model\":\"a\",\"b\":\"\xff\"}".to_vec();
        assert!(with_field(invalid_utf8, "model", &"a").is_err());
    }

    /// serde's edit, the reference: `None` where it refuses the document.
    fn edited_by_serde(json: &[u8], value: &Value) -> Option<Vec<u8>> {
        let mut object = Object::parse(json).ok()?;
        Some(match object.set("model", value).ok()? {
            true => object.to_vec(),
            false => json.to_vec(),
        })
    }

    fn fields(json: &[u8]) -> Vec<(String, String)> {
        let object = Object::parse(json).expect("an edit is one object");
        object
            .fields
            .iter()
            .map(|(key, value)| (key.to_string(), value.get().to_string()))
            .collect()
    }

    /// Generated documents, valid and not, and byte-level mutations of
    /// each, given a new `model` and the one they hold: wherever the splice
    /// answers, serde's edit has the same fields, or is the same no-op.
    #[test]
    fn splices_as_serde_edits_on_generated_documents() {
        let mut random = Random(0x5e7_f1e1d);
        let (mut answered, mut valid, mut unchanged) = (0, 0, 0);
        for _ in 0..20_000 {
            for json in mutations(&mut random) {
                let held = Object::parse(&json)
                    .ok()
                    .and_then(|object| serde_json::from_str(object.get("model")?.get()).ok());
                for value in [Some(Value::from("demo")), held].into_iter().flatten() {
                    let expected = edited_by_serde(&json, &value);
                    valid += usize::from(expected.is_some());
                    let text = serde_json::to_vec(&value).unwrap();
                    let Some(edited) = spliced(&json, "model", &text) else {
                        continue;
                    };
                    answered += 1;
                    let lossy = String::from_utf8_lossy(&json);
                    let expected = expected
                        .unwrap_or_else(|| panic!("spliced a document serde refuses: {lossy}"));
                    match edited {
                        None => {
                            unchanged += 1;
                            assert_eq!(
                                expected, json,
                                "serde edits what the splice keeps: {lossy}"
                            );
                        }
                        Some(edited) => {
                            assert_eq!(fields(&edited), fields(&expected), "on {lossy}")
                        }
                    }
                }
            }
        }
        assert!(
            answered * 2 > valid && unchanged > 200,
            "answered {answered} of {valid} valid edits, {unchanged} unchanged"
        );
    }
}
