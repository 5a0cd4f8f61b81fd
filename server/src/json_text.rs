//! The one rule for every JSON text errand accepts (a submit's arguments, a
//! worker's result, a tool's input schema, and any JSON field added later):
//! at most a size limit in bytes, valid JSON, Unicode strings only (no lone
//! surrogate escape such as `"\ud800"`, which many decoders refuse), and at
//! most [`MAX_DEPTH`] nested arrays and objects, so that every reader (the
//! server's schema check, the SDKs' recursive decoders) stays within its
//! stack. The text itself is valid UTF-8: protobuf strings are.
use serde::de::IgnoredAny;
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
    #[error("is not valid JSON: {0}")]
    Syntax(String),
}

/// Checks `text` against the rule without building it: for texts errand
/// only passes on (results).
pub fn check(text: &str, max_bytes: usize) -> Result<(), Problem> {
    scan(text, max_bytes)?;
    serde_json::from_str::<IgnoredAny>(text).map_err(|e| Problem::Syntax(e.to_string()))?;
    Ok(())
}

/// Checks `text` against the rule and parses it: for texts errand reads
/// (arguments, schemas).
pub fn parse(text: &str, max_bytes: usize) -> Result<Value, Problem> {
    scan(text, max_bytes)?;
    // The scan bounded the depth, so serde_json's own (127-level) guard may
    // go: the documented limit is the one above.
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let value = serde::Deserialize::deserialize(&mut de)
        .and_then(|v: Value| de.end().map(|()| v))
        .map_err(|e| Problem::Syntax(e.to_string()))?;
    Ok(value)
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
}
