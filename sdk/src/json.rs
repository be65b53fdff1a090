//! A JSON object edited at its top level without parsing its values: a
//! request that only needs a new `model` keeps every other byte as the
//! client wrote it, key order included, and costs a scan instead of a
//! parse into values and a serialization back (in a plugin, several times
//! the rest of its call).

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
/// goes on as the client wrote it.
pub fn with_field(
    json: Vec<u8>,
    key: &str,
    value: &impl Serialize,
) -> Result<Vec<u8>, serde_json::Error> {
    let edited = {
        let mut object = Object::parse(&json)?;
        object.set(key, value)?.then(|| object.to_vec())
    };
    Ok(edited.unwrap_or(json))
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
}
