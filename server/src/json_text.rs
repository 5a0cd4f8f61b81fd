//! The one rule for every JSON text errand accepts (a submit's arguments, a
//! worker's result, a tool's input schema, and any JSON field added later):
//! at most a size limit in bytes, valid JSON, Unicode strings only (no lone
//! surrogate escape such as `"\ud800"`, which many decoders refuse), and at
//! most [`MAX_DEPTH`] nested arrays and objects, so that every reader (the
//! server's schema check, the SDKs' recursive decoders) stays within its
//! stack, and no key twice in one object (`{"a":1,"a":2}`): parsers disagree
//! on which one wins, so the schema check and the worker could read
//! different values. The text itself is valid UTF-8: protobuf strings are.
use std::{borrow::Cow, cell::RefCell, collections::HashSet};

use serde::Deserialize;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Most arrays and objects nested in one JSON text: `[[1]]` is 2 levels.
/// Documented in the proto; the SDKs' decoders stay far below their own
/// recursion limits (Python's default is 1000).
pub const MAX_DEPTH: usize = 128;

/// Why a JSON text was refused; `Display` completes a sentence that starts
/// with the field's name ("arguments_json is 300 bytes, ...").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("is {len} bytes, the limit is {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("nests arrays and objects deeper than {MAX_DEPTH} levels (at byte {at})")]
    TooDeep { at: usize },
    #[error(
        "has a lone UTF-16 surrogate escape at byte {at}: JSON strings must be valid Unicode \
(a \\ud800-\\udbff escape must be followed by a \\udc00-\\udfff one)"
    )]
    LoneSurrogate { at: usize },
    #[error(
        "has the duplicate key {key:?} at line {line} column {column}: a key may appear \
once per object"
    )]
    DuplicateKey {
        /// The key, cut to [`MAX_KEY_IN_MESSAGE`] bytes.
        key: String,
        line: usize,
        column: usize,
    },
    #[error("is not valid JSON: {0}")]
    Syntax(String),
}

/// Most bytes of a duplicate key that a [`Problem`] repeats: the message
/// stays short however long the key.
pub const MAX_KEY_IN_MESSAGE: usize = 64;

/// Checks `text` against the rule without building it: for texts errand
/// only passes on (results).
pub fn check(text: &str, max_bytes: usize) -> Result<(), Problem> {
    scan(text, max_bytes)?;
    unique_keys(text)
}

/// Checks `text` against the rule and parses it: for texts errand reads
/// (arguments, schemas). One pass of serde_json builds the value and finds
/// a key given twice (before its value is read, so the position names it).
pub fn parse(text: &str, max_bytes: usize) -> Result<Value, Problem> {
    scan(text, max_bytes)?;
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    // The scan bounded the depth, so serde_json's own (127-level) guard may
    // go: the documented limit is the one above.
    de.disable_recursion_limit();
    Build(&duplicate)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| problem(e, &duplicate))
}

/// The rule's duplicate-key part alone, for JSON errand reads through
/// another parser (MCP and A2A request bodies, whose SDKs keep the last of
/// two values): the [`Problem::DuplicateKey`] of the first key found twice
/// in one object. `None` when there is none, and for text that breaks the
/// rule otherwise (too deep, not JSON): its parser reports that.
pub fn duplicate_key(text: &str) -> Option<Problem> {
    scan(text, usize::MAX).ok()?;
    match unique_keys(text) {
        Err(p @ Problem::DuplicateKey { .. }) => Some(p),
        _ => None,
    }
}

/// The syntax and duplicate-key checks, in one pass of serde_json that
/// builds nothing but each object's list of keys, borrowed from `text`
/// where they hold no escape. Called after [`scan`], which bounded the
/// depth, so serde_json's own guard may go.
fn unique_keys(text: &str) -> Result<(), Problem> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    UniqueKeys(&duplicate)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| problem(e, &duplicate))
}

/// serde_json's error as a [`Problem`]: the duplicate key left in the cell,
/// at the error's position, or the syntax error.
fn problem(e: serde_json::Error, duplicate: &RefCell<Option<String>>) -> Problem {
    match duplicate.take() {
        Some(key) => Problem::DuplicateKey {
            key,
            line: e.line(),
            column: e.column(),
        },
        None => Problem::Syntax(e.to_string()),
    }
}

/// Leaves `key` (cut to [`MAX_KEY_IN_MESSAGE`] bytes) in the cell and
/// returns the error that stops the parse.
fn refuse<E: serde::de::Error>(cell: &RefCell<Option<String>>, key: &str) -> E {
    let mut end = key.len().min(MAX_KEY_IN_MESSAGE);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    *cell.borrow_mut() = Some(key[..end].to_string());
    E::custom("duplicate key")
}

/// An object key, borrowed from the text unless it holds an escape.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Keys up to this many are compared one by one; past it they are hashed.
const LISTED_KEYS: usize = 16;

/// The keys of one object read so far.
enum Seen<'de> {
    List(Vec<Cow<'de, str>>),
    Set(HashSet<Cow<'de, str>>),
}

impl<'de> Seen<'de> {
    /// Adds `key`; false when the object had it already.
    fn add(&mut self, key: Cow<'de, str>) -> bool {
        match self {
            Seen::List(keys) if keys.contains(&key) => false,
            Seen::List(keys) if keys.len() < LISTED_KEYS => {
                keys.push(key);
                true
            }
            Seen::List(keys) => {
                let mut set: HashSet<_> = keys.drain(..).collect();
                set.insert(key);
                *self = Seen::Set(set);
                true
            }
            Seen::Set(set) => set.insert(key),
        }
    }
}

/// Visits a JSON value, refusing an object with a key twice; the key (cut
/// to [`MAX_KEY_IN_MESSAGE`] bytes) is left in the cell.
#[derive(Clone, Copy)]
struct UniqueKeys<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = Seen::List(Vec::new());
        while let Some(Key(key)) = map.next_key()? {
            if !seen.add(key.clone()) {
                return Err(refuse(self.0, &key));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

/// Builds a JSON value as serde_json's own `Value` does, refusing an object
/// with a key twice (the key is left in the cell).
#[derive(Clone, Copy)]
struct Build<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity: serde_json's `Value` makes them null.
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(Key(key)) = map.next_key()? {
            if object.contains_key(&*key) {
                return Err(refuse(self.0, &key));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key.into_owned(), value);
        }
        Ok(Value::Object(object))
    }
}

/// The size, depth and surrogate checks, in one pass over the bytes. Syntax
/// is left to serde_json: on malformed input the scan only has to stop.
fn scan(text: &str, max_bytes: usize) -> Result<(), Problem> {
    if text.len() > max_bytes {
        return Err(Problem::TooLarge {
            len: text.len(),
            limit: max_bytes,
        });
    }
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while i < b.len() {
        match (in_string, b[i]) {
            (false, b'"') => in_string = true,
            (false, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Problem::TooDeep { at: i });
                }
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            (true, b'"') => in_string = false,
            (true, b'\\') => {
                if b.get(i + 1) == Some(&b'u') {
                    i = surrogate_pair(b, i)?;
                    continue;
                }
                i += 1; // the escaped byte
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// At a `\u` escape at `at`: refuses a lone surrogate; returns where the
/// scan goes on (after the escape, or after the pair).
fn surrogate_pair(b: &[u8], at: usize) -> Result<usize, Problem> {
    let unit = |i: usize| -> Option<u16> {
        let hex = b.get(i..i + 6)?;
        if &hex[..2] != b"\\u" {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    };
    match unit(at) {
        Some(0xD800..=0xDBFF) => match unit(at + 6) {
            Some(0xDC00..=0xDFFF) => Ok(at + 12),
            _ => Err(Problem::LoneSurrogate { at }),
        },
        Some(0xDC00..=0xDFFF) => Err(Problem::LoneSurrogate { at }),
        // Not a surrogate, or malformed (serde_json says how).
        _ => Ok(at + 2),
    }
}

/// What kind of JSON value `value` is, with its article ("an object",
/// "null"), for messages that say what was sent instead.
pub fn kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_is_bounded_at_the_documented_limit() {
        assert!(check(&nested(MAX_DEPTH), 1 << 20).is_ok());
        assert!(parse(&nested(MAX_DEPTH), 1 << 20).is_ok());
        let deep = nested(MAX_DEPTH + 1);
        assert!(matches!(
            check(&deep, 1 << 20),
            Err(Problem::TooDeep { .. })
        ));
        assert!(matches!(
            parse(&deep, 1 << 20),
            Err(Problem::TooDeep { .. })
        ));
        // Far deeper than any stack: refused by the scan, nothing recurses.
        let abyss = "[".repeat(1_000_000);
        assert!(matches!(
            check(&abyss, 1 << 21),
            Err(Problem::TooDeep { .. })
        ));
        // Brackets inside strings do not count.
        let quoted = format!(r#"["{}"]"#, "[".repeat(500));
        assert!(parse(&quoted, 1 << 20).is_ok());
    }

    #[test]
    fn lone_surrogates_are_refused_and_pairs_kept() {
        for bad in [
            r#""\ud800""#,
            r#"{"a":"x\udc00"}"#,
            r#"["\ud800\u0041"]"#,
            r#"["\uD83D"]"#,
        ] {
            assert!(
                matches!(check(bad, 1024), Err(Problem::LoneSurrogate { .. })),
                "{bad}"
            );
            assert!(parse(bad, 1024).is_err(), "{bad}");
        }
        let pair = r#"{"emoji":"\ud83d\ude00","esc":"\\ud800","q":"\"["}"#;
        assert_eq!(parse(pair, 1024).unwrap()["emoji"], "😀");
        assert!(check(pair, 1024).is_ok());
    }

    #[test]
    fn size_and_syntax() {
        assert_eq!(
            check("[1,2,3]", 4),
            Err(Problem::TooLarge { len: 7, limit: 4 })
        );
        for bad in ["", "{", "[1,]", "nope", r#""\u12""#, "1 2"] {
            assert!(matches!(check(bad, 64), Err(Problem::Syntax(_))), "{bad:?}");
            assert!(matches!(parse(bad, 64), Err(Problem::Syntax(_))), "{bad:?}");
        }
        assert!(
            Problem::TooDeep { at: 3 }
                .to_string()
                .contains("deeper than 128 levels")
        );
    }

    #[test]
    fn duplicate_keys_are_refused_naming_the_key() {
        for (bad, key) in [
            (r#"{"a":1,"a":2}"#, "a"),
            (r#"{"x":{"b":[1],"c":0,"b":null}}"#, "b"),
            (r#"[{"k":1},{"k":1,"k":1}]"#, "k"),
            // The same key once decoded.
            (r#"{"a":1,"\u0061":2}"#, "a"),
        ] {
            for result in [check(bad, 1024), parse(bad, 1024).map(|_| ())] {
                match result {
                    Err(Problem::DuplicateKey { key: k, .. }) => assert_eq!(k, key, "{bad}"),
                    other => panic!("{bad}: {other:?}"),
                }
            }
        }
        // Equal keys in different objects are fine.
        let ok = r#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#;
        assert!(check(ok, 1024).is_ok() && parse(ok, 1024).is_ok());
        // The message is bounded however long the key.
        let long = "k".repeat(100_000);
        let text = format!(r#"{{"{long}":1,"{long}":2}}"#);
        let problem = check(&text, 1 << 20).unwrap_err();
        let message = problem.to_string();
        assert!(message.len() < 300, "{} bytes", message.len());
        assert!(message.contains("duplicate key \"kkk"), "{message}");
    }

    #[test]
    fn parse_builds_what_serde_json_builds() {
        for text in [
            "null",
            "true",
            r#""x\n\u00e9😀""#,
            "[]",
            "{}",
            "0",
            "-0",
            "-0.0",
            "18446744073709551615",
            "-9223372036854775808",
            "1.5e300",
            "3.141592653589793",
            "1e-7",
            r#"{"a":[1,-2,3.25,{"b":null,"c\"d":"e"}],"f":{"g":{}},"h":[]}"#,
        ] {
            let ours = parse(text, 1024).unwrap();
            let theirs: Value = serde_json::from_str(text).unwrap();
            assert_eq!(ours, theirs, "{text}");
            assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
        }
    }

    #[test]
    fn many_keys_are_checked_past_the_short_list() {
        let keys: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let unique = format!("{{{}}}", keys.join(","));
        assert!(check(&unique, 1 << 20).is_ok());
        assert_eq!(
            parse(&unique, 1 << 20).unwrap().as_object().unwrap().len(),
            40
        );
        for dup in [0, 15, 16, 17, 39] {
            let text = format!(r#"{{{},"k{dup}":0}}"#, keys.join(","));
            for result in [check(&text, 1 << 20), parse(&text, 1 << 20).map(|_| ())] {
                match result {
                    Err(Problem::DuplicateKey { key, .. }) => assert_eq!(key, format!("k{dup}")),
                    other => panic!("k{dup}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn duplicate_key_reports_only_duplicates() {
        let body = r#"{"method":"m","params":{"arguments":{"a":1,"a":2}}}"#;
        match duplicate_key(body) {
            Some(Problem::DuplicateKey { key, line, .. }) => {
                assert_eq!((key.as_str(), line), ("a", 1))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(duplicate_key(r#"{"a":{"a":1}}"#), None);
        // Other breaks are the reader's to report.
        assert_eq!(duplicate_key("{"), None);
        let deep = format!(
            r#"{}{{"a":1,"a":2}}{}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(duplicate_key(&deep), None);
    }
}
