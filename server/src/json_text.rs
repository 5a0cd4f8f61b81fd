//! The one rule for every JSON text errand accepts (a submit's arguments, a
//! worker's result, a tool's input schema, and any JSON field added later):
//! at most a size limit in bytes, valid JSON, Unicode strings only (no lone
//! surrogate escape such as `"\ud800"`, which many decoders refuse), and at
//! most [`MAX_DEPTH`] nested arrays and objects, so that every reader (the
//! server's schema check, the SDKs' recursive decoders) stays within its
//! stack, and no key twice in one object (`{"a":1,"a":2}`): parsers disagree
//! on which one wins, so the schema check and the worker could read
//! different values. The text itself is valid UTF-8: protobuf strings are.
use std::{cell::RefCell, collections::HashSet};

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
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
/// (arguments, schemas).
pub fn parse(text: &str, max_bytes: usize) -> Result<Value, Problem> {
    scan(text, max_bytes)?;
    unique_keys(text)?;
    // The scan bounded the depth, so serde_json's own (127-level) guard may
    // go: the documented limit is the one above.
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let value = serde::Deserialize::deserialize(&mut de)
        .and_then(|v: Value| de.end().map(|()| v))
        .map_err(|e| Problem::Syntax(e.to_string()))?;
    Ok(value)
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
/// builds nothing but each object's set of keys. Called after [`scan`],
/// which bounded the depth, so serde_json's own guard may go.
fn unique_keys(text: &str) -> Result<(), Problem> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    UniqueKeys(&duplicate)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| match duplicate.take() {
            Some(key) => Problem::DuplicateKey {
                key,
                line: e.line(),
                column: e.column(),
            },
            None => Problem::Syntax(e.to_string()),
        })
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
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                let mut end = key.len().min(MAX_KEY_IN_MESSAGE);
                while !key.is_char_boundary(end) {
                    end -= 1;
                }
                *self.0.borrow_mut() = Some(key[..end].to_string());
                return Err(A::Error::custom("duplicate key"));
            }
            map.next_value_seed(self)?;
            seen.insert(key);
        }
        Ok(())
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
