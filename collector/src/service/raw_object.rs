//! A JSON object read without building a value tree: each member keeps the
//! text its sender wrote, so the collector can restamp a few members of an
//! EVE record (its `canhgac` identity) without decoding and re-encoding the
//! rest. The input is still fully checked as JSON.
//!
//! Members live in an `IndexMap`, as in `serde_json::Map` with
//! `preserve_order`, which the collector used before, so order and
//! replacement are the same: a repeated key keeps its first position and
//! its last value, [`RawObject::insert`] replaces in place or appends,
//! [`RawObject::remove`] moves the last member into the gap; lookups are
//! hashed, so an object with many members costs linear time. The output
//! is the same bytes as before for what agents send (compact serde_json
//! output); other senders' whitespace and escapes inside values are kept
//! as written.

use std::{borrow::Cow, fmt};

use indexmap::IndexMap;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A member name or string value, borrowed from the input when it has no
/// escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The members of one JSON object, in order, values as JSON text.
#[derive(Debug, Default)]
pub struct RawObject<'a> {
    members: IndexMap<Cow<'a, str>, Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut obj = RawObject { members: IndexMap::with_capacity(map.size_hint().unwrap_or(16)) };
                while let Some((Text(k), v)) = map.next_entry::<Text<'de>, &'de RawValue>()? {
                    obj.insert(k, Cow::Borrowed(v.get()));
                }
                Ok(obj)
            }
        }
        d.deserialize_map(V)
    }
}

/// Why a text is not a JSON object.
#[derive(Debug, PartialEq, Eq)]
pub enum NotAnObject {
    /// Not JSON at all.
    Invalid,
    /// JSON, but an array, a string, a number...
    OtherType,
}

impl<'a> RawObject<'a> {
    /// Reads `text` as one JSON object.
    pub fn parse(text: &'a [u8]) -> Result<Self, NotAnObject> {
        serde_json::from_slice(text).map_err(|_| {
            if serde_json::from_slice::<&RawValue>(text).is_ok() {
                NotAnObject::OtherType
            } else {
                NotAnObject::Invalid
            }
        })
    }

    /// The JSON text of member `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members.get(key).map(|v| &**v)
    }

    /// Member `key` when it is a string.
    pub fn get_str(&self, key: &str) -> Option<Cow<'_, str>> {
        let raw = self.get(key)?;
        serde_json::from_str::<Text<'_>>(raw).ok().map(|t| t.0)
    }

    /// Member `key` when it is an object.
    pub fn get_object(&self, key: &str) -> Option<RawObject<'_>> {
        let raw = self.get(key)?;
        serde_json::from_str(raw).ok()
    }

    /// Sets member `key` to the JSON text `value`: in place when the key
    /// exists, else at the end.
    pub fn insert(&mut self, key: impl Into<Cow<'a, str>>, value: Cow<'a, str>) {
        self.members.insert(key.into(), value);
    }

    /// Sets member `key` to the JSON encoding of the string `value`.
    pub fn insert_str(&mut self, key: &'a str, value: &str) {
        self.insert(key, Cow::Owned(json_string(value)));
    }

    /// Removes member `key` (the last member takes its place) and returns
    /// its JSON text.
    pub fn remove(&mut self, key: &str) -> Option<Cow<'a, str>> {
        self.members.swap_remove(key)
    }

    /// Removes member `key` and returns it when it was an object.
    pub fn remove_object(&mut self, key: &str) -> Option<RawObject<'a>> {
        match self.remove(key)? {
            Cow::Borrowed(raw) => serde_json::from_str(raw).ok(),
            Cow::Owned(raw) => serde_json::from_str::<RawObject<'_>>(&raw).ok().map(RawObject::into_owned),
        }
    }

    fn into_owned(self) -> RawObject<'static> {
        RawObject {
            members: self
                .members
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
        }
    }

    /// The object as compact JSON (values as they were written).
    pub fn to_json(&self) -> String {
        let size = self.members.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>() + 2;
        let mut out = String::with_capacity(size);
        out.push('{');
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, k);
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        out
    }
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s);
    out
}

fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // serde_json's own escaping: the same bytes `Value::to_string` wrote
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the collector did before: a `serde_json::Value` tree with
    /// `preserve_order`.
    fn through_value(text: &str, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
        f(v.as_object_mut().unwrap());
        v.to_string()
    }

    #[test]
    fn restamping_gives_the_bytes_a_value_tree_gave() {
        let cases = [
            r#"{"timestamp":"2026-12-07T01:00:00.000000+0700","event_type":"alert","src_ip":"10.0.0.1","alert":{"severity":2,"signature":"ET \"quoted\" \\ back"},"canhgac":{"agent_id":"forged","detector":"ioc","agency":"X"},"last":[1,2.5,null,true]}"#,
            r#"{"canhgac":{"hostname":"h"},"event_type":"dns","dns":{"rrname":"tên.vn"}}"#,
            r#"{"a":1,"a":2,"b":"x\u0001y","c\n":{}}"#,
            r#"{}"#,
        ];
        for text in cases {
            let expected = through_value(text, |obj| {
                let mut ours = match obj.remove("canhgac") {
                    Some(serde_json::Value::Object(m)) => m,
                    _ => serde_json::Map::new(),
                };
                ours.insert("agent_id".into(), "id-1".into());
                ours.insert("agency".into(), "SO-TTTT".into());
                ours.insert("hostname".into(), "web\"01".into());
                obj.insert("canhgac".into(), serde_json::Value::Object(ours));
            });
            let mut obj = RawObject::parse(text.as_bytes()).unwrap();
            let mut ours = obj.remove_object("canhgac").unwrap_or_default();
            ours.insert_str("agent_id", "id-1");
            ours.insert_str("agency", "SO-TTTT");
            ours.insert_str("hostname", "web\"01");
            let ours = ours.to_json();
            obj.insert("canhgac", Cow::Owned(ours));
            assert_eq!(obj.to_json(), expected, "{text}");
        }
    }

    /// Many members, some repeated: the same bytes as the value tree.
    #[test]
    fn large_objects_with_repeated_keys_match_the_value_tree() {
        let members: Vec<String> = (0..3000).map(|i| format!("\"k{}\":{i}", i % 2000)).collect();
        let text = format!("{{{},\"canhgac\":{{\"agent_id\":\"x\"}}}}", members.join(","));
        let expected = through_value(&text, |obj| {
            obj.remove("k7");
            obj.remove("canhgac");
            obj.insert("canhgac".into(), serde_json::json!({"agent_id": "id-1"}));
        });
        let mut obj = RawObject::parse(text.as_bytes()).unwrap();
        obj.remove("k7");
        let mut ours = obj.remove_object("canhgac").unwrap();
        ours.insert_str("agent_id", "id-1");
        obj.insert("canhgac", Cow::Owned(ours.to_json()));
        assert_eq!(obj.to_json(), expected);
    }

    #[test]
    fn members_are_read_by_type() {
        let obj = RawObject::parse(br#"{"event_type":"al\u0065rt","alert":{"severity":3},"n":5}"#).unwrap();
        assert_eq!(obj.get_str("event_type").as_deref(), Some("alert"));
        assert_eq!(obj.get_str("n"), None);
        assert_eq!(
            obj.get_object("alert").and_then(|a| a.get("severity").map(str::to_owned)).as_deref(),
            Some("3")
        );
        assert!(obj.get_object("n").is_none());
        assert!(obj.get("missing").is_none());
    }

    #[test]
    fn what_is_not_an_object_says_why() {
        assert_eq!(RawObject::parse(b"[1,2]").unwrap_err(), NotAnObject::OtherType);
        assert_eq!(RawObject::parse(b"\"x\"").unwrap_err(), NotAnObject::OtherType);
        assert_eq!(RawObject::parse(br#"{"a":}"#).unwrap_err(), NotAnObject::Invalid);
        assert_eq!(RawObject::parse(br#"{"a":1} x"#).unwrap_err(), NotAnObject::Invalid);
        assert_eq!(RawObject::parse(b"\xff").unwrap_err(), NotAnObject::Invalid);
    }
}
