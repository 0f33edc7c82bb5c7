//! Request parsing as Mattermost's Go server does it, so that a request means the same here
//! as there: query parameters (`URL.Query().Get`, shared with the domain's credential rules,
//! which also parse cookies) and JSON bodies
//! (`json.NewDecoder(r.Body).Decode(&value)`, `model.MapFromJSON`,
//! `model.StringInterfaceFromJSON`). Parsing only: what a value means is the domain's business.

use std::{borrow::Cow, collections::HashMap, fmt};

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeOwned, MapAccess, Visitor},
    forward_to_deserialize_any,
};
use serde_json::{Map, Value};

pub(crate) use crate::domain::credentials::query_get;
use crate::domain::{
    credentials::query_unescape,
    error::{Error, Reason},
};

/// Go's `URL.Query()[name]`: every value of `name`, in order, parsed as [`query_get`] does.
pub(crate) fn query_get_all(query: Option<&str>, name: &str) -> Vec<String> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if query_unescape(key)? != name {
                return None;
            }
            query_unescape(value)
        })
        .collect()
}

/// Why the first JSON value of a body could not be read.
enum Syntax {
    Empty,
    Invalid { line: usize, column: usize },
}

/// The first JSON value of `body`, as Go's `json.Decoder.Decode` reads it: leading
/// whitespace is skipped, anything after the value is never looked at, and bytes that are
/// not UTF-8 are replaced by U+FFFD. Also returns the text of the value.
fn first_value(body: &[u8]) -> Result<(Value, Cow<'_, str>), Syntax> {
    let text = String::from_utf8_lossy(body);
    let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
    let value = match stream.next() {
        None => return Err(Syntax::Empty),
        Some(Err(e)) if e.is_eof() && text.trim_ascii().is_empty() => return Err(Syntax::Empty),
        Some(Err(e)) => {
            return Err(Syntax::Invalid {
                line: e.line(),
                column: e.column(),
            });
        }
        Some(Ok(value)) => value,
    };
    let end = stream.byte_offset();
    let text = match text {
        Cow::Borrowed(t) => Cow::Borrowed(&t[..end]),
        Cow::Owned(t) => Cow::Owned(t[..end].to_owned()),
    };
    Ok((value, text))
}

/// A JSON object's members in document order (the order decides which of two keys that
/// match the same field case-insensitively wins, as in Go).
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// Decodes a request body into the struct `T` as Go's `json.NewDecoder(r.Body).Decode(&v)`
/// does into the matching Mattermost struct:
/// - only the first JSON value counts; trailing text is ignored;
/// - `null` (the whole body, or a member) leaves the field as it was (the default);
/// - object keys match field names exactly, else case-insensitively; the last matching key
///   wins; unknown keys are ignored;
/// - a known field with a value of the wrong type fails, as does an empty or malformed body
///   or one that is not an object.
///
/// `T` must be a plain `#[serde(default)]` struct naming every field of the Go struct whose
/// type Go would check. Failures are INVALID_ARGUMENT naming `param`, Mattermost's name for
/// the body (`SetInvalidParamWithErr(param, err)`).
pub(crate) fn decode_struct<T: DeserializeOwned + Default>(
    body: &[u8],
    param: &'static str,
) -> Result<T, Error> {
    let invalid = |rule: String| Error::invalid(param, Reason::InvalidBodyParam, rule);
    let (value, text) = first_value(body).map_err(|e| match e {
        Syntax::Empty => invalid("the request body is empty; a JSON object is required".into()),
        Syntax::Invalid { line, column } => invalid(format!(
            "the request body is not valid JSON (line {line}, column {column})"
        )),
    })?;
    let members = match value {
        Value::Null => return Ok(T::default()),
        Value::Object(_) => serde_json::from_str::<Members>(&text)
            .map_err(|_| invalid("must be a JSON object".into()))?,
        _ => return Err(invalid("must be a JSON object".into())),
    };
    let fields = struct_fields::<T>();
    let mut matched = Map::new();
    for (key, value) in members.0 {
        let field = fields
            .iter()
            .find(|f| **f == key)
            .or_else(|| fields.iter().find(|f| go_fold_eq(f, &key)));
        if let Some(field) = field
            && !value.is_null()
        {
            matched.insert((*field).to_owned(), value);
        }
    }
    if let Ok(decoded) = serde_json::from_value::<T>(Value::Object(matched.clone())) {
        return Ok(decoded);
    }
    // Name the first field whose value has the wrong type, without echoing the value.
    let wrong = matched
        .into_iter()
        .find(|(name, value)| {
            let mut one = Map::new();
            one.insert(name.clone(), value.clone());
            serde_json::from_value::<T>(Value::Object(one)).is_err()
        })
        .map_or_else(
            || "a field".to_owned(),
            |(name, _)| format!("field {name:?}"),
        );
    Err(invalid(format!("{wrong} has a value of the wrong type")))
}

/// Go's case folding for field names (`foldName`): ASCII letters upper-cased, any other
/// character mapped to the upper case of its lower case (simple mappings only).
fn go_fold_eq(a: &str, b: &str) -> bool {
    fn single(mut mapped: impl Iterator<Item = char>, original: char) -> char {
        match (mapped.next(), mapped.next()) {
            (Some(c), None) => c,
            _ => original,
        }
    }
    fn fold(c: char) -> char {
        if c.is_ascii() {
            c.to_ascii_uppercase()
        } else {
            let lower = single(c.to_lowercase(), c);
            single(lower.to_uppercase(), lower)
        }
    }
    a.chars().map(fold).eq(b.chars().map(fold))
}

/// Mattermost's `model.MapFromJSON`: a JSON object decoded into a `map[string]string`, the
/// decoding error ignored. Anything but an object gives an empty map; inside an object, a
/// member that is not a string is present with the empty value (Go stores the zero value
/// after recording the type error); the last of two equal keys wins.
pub(crate) fn string_map(body: &[u8]) -> HashMap<String, String> {
    match first_value(body) {
        Ok((Value::Object(members), _)) => members
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                _ => (k, String::new()),
            })
            .collect(),
        _ => HashMap::new(),
    }
}

/// Mattermost's `model.StringInterfaceFromJSON`: a JSON object decoded into a
/// `map[string]any`, the decoding error ignored (anything else is an empty map).
pub(crate) fn value_map(body: &[u8]) -> HashMap<String, Value> {
    match first_value(body) {
        Ok((Value::Object(members), _)) => members.into_iter().collect(),
        _ => HashMap::new(),
    }
}

/// The serialized field names of a `#[derive(Deserialize)]` struct, read by asking it to
/// deserialize itself from a deserializer that only records what it was asked for.
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Recorder<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Recorder<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }

        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Recorder(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Token {
        description: String,
        expires_at: i64,
        is_active: bool,
    }

    fn token(body: &str) -> Result<Token, String> {
        decode_struct::<Token>(body.as_bytes(), "user_access_token").map_err(|e| e.to_string())
    }

    #[test]
    fn struct_fields_are_read_from_the_derive() {
        assert_eq!(
            struct_fields::<Token>(),
            &["description", "expires_at", "is_active"]
        );
    }

    #[test]
    fn decoding_follows_go_encoding_json() {
        let with = |d: &str| Token {
            description: d.to_owned(),
            ..Token::default()
        };
        assert_eq!(token(r#"{"description":"x"}"#).unwrap(), with("x"));
        // Keys match case-insensitively; the last matching key wins.
        assert_eq!(token(r#"{"DESCRIPTION":"x"}"#).unwrap(), with("x"));
        assert_eq!(
            token(r#"{"description":"a","Description":"b"}"#).unwrap(),
            with("b")
        );
        assert_eq!(
            token(r#"{"description":"a","description":"b"}"#).unwrap(),
            with("b")
        );
        // null leaves the field alone; unknown keys are ignored; trailing text is unread.
        assert_eq!(
            token(r#"{"description":"a","description":null}"#).unwrap(),
            with("a")
        );
        assert_eq!(token("null").unwrap(), Token::default());
        assert_eq!(
            token(r#"{"description":"x","other":[1,{"a":2}]}"#).unwrap(),
            with("x")
        );
        assert_eq!(
            token("{\"description\":\"x\"} trailing {").unwrap(),
            with("x")
        );
        // Not UTF-8: replaced, as Go does.
        assert_eq!(
            decode_struct::<Token>(b"{\"description\":\"a\xffb\"}", "t").unwrap(),
            with("a\u{fffd}b")
        );
        // Wrong types of known fields, bodies that are not one object.
        let err = token(r#"{"description":"x","is_active":"no"}"#).unwrap_err();
        assert_eq!(
            err,
            "user_access_token: field \"is_active\" has a value of the wrong type"
        );
        assert!(
            token(r#"{"Is_Active":"no"}"#)
                .unwrap_err()
                .contains("is_active")
        );
        // Go's folding: the Kelvin sign folds to k, the long s to s; no multi-letter folds.
        assert!(go_fold_eq("is_active", "I\u{17f}_ACTIVE"));
        assert!(go_fold_eq("k", "\u{212a}"));
        assert!(!go_fold_eq("ss", "\u{df}"));
        assert!(token(r#"{"expires_at":1.5}"#).is_err());
        assert!(token(r#"{"expires_at":9223372036854775808}"#).is_err());
        for bad in ["", "  \n", "{", "[]", "5", "\"x\"", "{not json"] {
            let err = token(bad).unwrap_err();
            assert!(err.starts_with("user_access_token: "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn maps_follow_mattermost_helpers() {
        let m = string_map(br#"{"token_id":"abc","other":5,"x":null} junk"#);
        assert_eq!(m["token_id"], "abc");
        assert_eq!(m["other"], "");
        assert_eq!(m["x"], "");
        assert!(string_map(b"[]").is_empty());
        assert!(string_map(b"{\"token_id\":").is_empty());
        assert_eq!(
            value_map(br#"{"active":true}x"#)["active"],
            Value::Bool(true)
        );
    }

    #[test]
    fn query_values_follow_go() {
        let q = Some("a=1&access_token=x%2By+z&access_token=second&b");
        assert_eq!(query_get(q, "access_token").as_deref(), Some("x+y z"));
        assert_eq!(query_get(q, "b").as_deref(), Some(""));
        assert_eq!(query_get(q, "c"), None);
        assert_eq!(query_get(Some("p=%zz&p=2"), "p").as_deref(), Some("2"));
        assert_eq!(query_get(Some("p=1;q=2&p=3"), "p").as_deref(), Some("3"));
        assert_eq!(query_get(Some("%70=4"), "p").as_deref(), Some("4"));
    }
}
