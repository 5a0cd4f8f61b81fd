//! Tool definitions as registered by workers, and the checks every submitted
//! argument object passes: a JSON text by [`crate::json_text`]'s rule, an
//! object, valid for the tool's input schema.
use std::{sync::Arc, time::Duration};

use serde_json::Value;

use crate::{
    config::Limits,
    error::Error,
    json_text::{self, Problem},
    model::{ToolDef, ToolKey, ToolPolicy},
};

mod cost;
mod pool;
pub use pool::ValidationPool;

/// A registered tool, with its schema compiled once. Cheap to clone: a
/// submit takes a copy without holding the scheduler's lock.
#[derive(Clone)]
pub struct ToolSpec {
    pub name: ToolKey,
    pub description: Arc<str>,
    pub input_schema_json: Arc<str>,
    /// The tool's default timeout, if it set one.
    pub timeout: Option<Duration>,
    /// What it declares about its calls' delivery (checked at registration).
    pub policy: ToolPolicy,
    /// The tool's default queue timeout, if it set one.
    pub queue_timeout: Option<Duration>,
    validator: Option<Arc<jsonschema::Validator>>,
    /// Most subschemas that apply to one value (see `tools/cost.rs`); 0
    /// without a schema.
    expansion: u64,
}

impl std::fmt::Debug for ToolSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolSpec")
            .field("name", &self.name)
            .finish()
    }
}

/// Checks a tool name: what model APIs accept as a function name.
pub fn check_name(name: &str) -> Result<(), Error> {
    check_name_in("tool name", name)
}

/// [`check_name`] for a tool name given in `field` (`fallback.tool`), which
/// the error names.
pub fn check_name_in(field: &str, name: &str) -> Result<(), Error> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} {} is invalid: use 1-64 characters of A-Z, a-z, 0-9, '_' and '-'",
            crate::error::quote(name)
        )))
    }
}

impl ToolSpec {
    /// Validates a tool a worker registers (or another server advertises).
    /// The name checked and shown in errors is the client's.
    pub fn new(tool: &ToolDef, limits: &Limits) -> Result<Self, Error> {
        let shown = tool.name.name();
        check_name(shown)?;
        if tool.description.len() > limits.max_description_bytes {
            return Err(Error::invalid(format!(
                "tool `{shown}`: description is {} bytes, the limit is {}",
                tool.description.len(),
                limits.max_description_bytes
            )));
        }
        check_timeout(
            &format!("tool `{shown}`: timeout_ms"),
            tool.timeout_ms,
            limits,
        )?;
        check_timeout(
            &format!("tool `{shown}`: queue_timeout_ms"),
            tool.queue_timeout_ms,
            limits,
        )?;
        let (validator, expansion) = if tool.input_schema_json.trim().is_empty() {
            (None, 0)
        } else {
            let (validator, expansion) = compile_schema(shown, &tool.input_schema_json, limits)?;
            (Some(Arc::new(validator)), expansion)
        };
        Ok(Self {
            name: tool.name.clone(),
            description: tool.description.as_str().into(),
            input_schema_json: tool.input_schema_json.as_str().into(),
            timeout: (tool.timeout_ms > 0).then(|| Duration::from_millis(tool.timeout_ms)),
            policy: tool.policy.clone(),
            queue_timeout: (tool.queue_timeout_ms > 0)
                .then(|| Duration::from_millis(tool.queue_timeout_ms)),
            validator,
            expansion,
        })
    }

    /// Whether arguments are checked against a schema (CPU work that grows
    /// with both; see [`ValidationPool`]).
    pub fn has_schema(&self) -> bool {
        self.validator.is_some()
    }

    /// A bound on the work of checking `bytes` of arguments: schema
    /// expansion times size (size alone without a schema).
    pub fn check_cost(&self, bytes: usize) -> u64 {
        self.expansion.max(1).saturating_mul(bytes as u64)
    }

    /// Checks submitted arguments; returns them as the task will carry them.
    /// Synchronous CPU work: call it through [`ValidationPool::check`].
    pub fn check_arguments(
        &self,
        arguments_json: &str,
        limits: &Limits,
    ) -> Result<Arc<str>, Error> {
        let value = parse_arguments(arguments_json, limits)?;
        if let Some(validator) = &self.validator {
            let mut errors = validator.iter_errors(&value);
            if let Some(first) = errors.next() {
                let more = errors.count();
                // The path quotes the input's keys: a prefix says where.
                let path = clip(&first.instance_path().to_string());
                let first = reason(&first);
                let path = if path.is_empty() {
                    "/".to_string()
                } else {
                    path
                };
                let extra = if more > 0 {
                    format!(
                        " (and {more} more error{})",
                        if more == 1 { "" } else { "s" }
                    )
                } else {
                    String::new()
                };
                return Err(Error::invalid(format!(
                    "arguments_json fails the input schema of tool `{}` at {path}: {first}{extra}",
                    self.name
                )));
            }
        }
        Ok(stored_arguments(arguments_json).into())
    }
}

/// The arguments text a call is stored (and compared) with: `{}` for a
/// blank text (empty or whitespace, which [`parse_arguments`] reads as an
/// empty object), else the text as given.
pub fn stored_arguments(arguments_json: &str) -> &str {
    if arguments_json.trim().is_empty() {
        "{}"
    } else {
        arguments_json
    }
}

/// Checks a timeout in milliseconds against the limit; `what` names it.
pub fn check_timeout(what: &str, timeout_ms: u64, limits: &Limits) -> Result<(), Error> {
    let max = crate::model::millis(limits.max_timeout);
    if timeout_ms > max {
        return Err(Error::invalid(format!(
            "{what} is {timeout_ms}, the limit is {max} (the server's --max-timeout-ms)"
        )));
    }
    Ok(())
}

/// Parses arguments: a JSON text by errand's one rule ([`json_text`]), an
/// object. Empty means `{}`. Errors: RESOURCE_EXHAUSTED over the size limit,
/// else INVALID_ARGUMENT saying why.
pub fn parse_arguments(arguments_json: &str, limits: &Limits) -> Result<Value, Error> {
    if arguments_json.trim().is_empty() && arguments_json.len() <= limits.max_arguments_bytes {
        return Ok(Value::Object(Default::default()));
    }
    let value =
        json_text::parse(arguments_json, limits.max_arguments_bytes).map_err(|p| match p {
            Problem::TooLarge { .. } => Error::TooLarge(format!(
                "arguments_json {p}: pass large data by reference (a URL or a path)"
            )),
            p => Error::invalid(format!("arguments_json {p}")),
        })?;
    if !value.is_object() {
        return Err(Error::invalid(format!(
            "arguments_json must be a JSON object, got {}",
            crate::json_text::kind(&value)
        )));
    }
    Ok(value)
}

fn compile_schema(
    tool: &str,
    schema_json: &str,
    limits: &Limits,
) -> Result<(jsonschema::Validator, u64), Error> {
    let schema = json_text::parse(schema_json, limits.max_schema_bytes)
        .map_err(|p| Error::invalid(format!("tool `{tool}`: input_schema_json {p}")))?;
    if !schema.is_object() {
        return Err(Error::invalid(format!(
            "tool `{tool}`: input_schema_json must be a JSON Schema object, got {}",
            crate::json_text::kind(&schema)
        )));
    }
    if let Some(given) = schema.get("type")
        && !admits_objects(given)
    {
        return Err(Error::invalid(format!(
            "tool `{tool}`: input_schema_json has the root \"type\" {}, but a call's arguments \
             are always a JSON object, so no call would pass: make it \"object\" and describe \
             each argument under \"properties\"",
            clip(&given.to_string())
        )));
    }
    let expansion = cost::check(&schema)
        .map_err(|e| Error::invalid(format!("tool `{tool}`: input_schema_json: {e}")))?;
    // The `regex` engine matches in linear time; the default (fancy-regex)
    // backtracks, and one `pattern` like `^(a|a)*\1$` can hold a core for
    // seconds per string. Patterns it cannot run are refused here.
    let engine = jsonschema::PatternOptions::regex()
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT);
    let validator = jsonschema::options()
        .with_pattern_options(engine)
        .build(&schema)
        .map_err(|e| {
            let path = e.schema_path().to_string();
            let keyword = path.rsplit('/').find(|k| REGEX_KEYWORDS.contains(k));
            let too_large = e.instance().as_str().is_some_and(pattern_too_large);
            let (at, e) = (clip(&path), clip(&e.to_string()));
            match keyword {
                Some(keyword) if too_large => Error::invalid(format!(
                    "tool `{tool}`: input_schema_json `{keyword}` at {at} is too large to \
                     compile: over errand's bound of {} KiB per pattern (a counted repetition \
                     like a{{1000}} multiplies its size); simplify it: {e}",
                    REGEX_SIZE_LIMIT / 1024
                )),
                Some(keyword) => Error::invalid(format!(
                    "tool `{tool}`: input_schema_json `{keyword}` at {at} is not a regular expression errand runs: \
                     backreferences, lookaround and other backtracking features are refused (errand matches \
                     patterns in linear time); rewrite it without them: {e}"
                )),
                None => Error::invalid(format!(
                    "tool `{tool}`: input_schema_json is not a valid JSON Schema: {e}"
                )),
            }
        })?;
    Ok((validator, expansion))
}

/// Whether a schema's root `type` (a name or a list of names) lets a JSON
/// object through. A value that is not a list of JSON Schema's type names
/// is left to the validator, which says what is wrong with it.
fn admits_objects(given: &Value) -> bool {
    const TYPES: [&str; 7] = [
        "array", "boolean", "integer", "null", "number", "object", "string",
    ];
    let names: Vec<&Value> = match given {
        Value::Array(names) => names.iter().collect(),
        one => vec![one],
    };
    let known = |n: &&Value| n.as_str().is_some_and(|n| TYPES.contains(&n));
    !names.iter().all(known) || names.iter().any(|n| *n == "object")
}

/// Whether `pattern` is refused only for its compiled size: the linear-time
/// engine would run it were it smaller.
fn pattern_too_large(pattern: &str) -> bool {
    matches!(
        regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build(),
        Err(regex::Error::CompiledTooBig(_))
    )
}

/// Schema keywords whose values (or keys) are regular expressions.
const REGEX_KEYWORDS: [&str; 2] = ["pattern", "patternProperties"];

/// Bytes one compiled pattern (and its lazy DFA cache) may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The validator's text for `error`, bounded. It quotes the failing value
/// before the reason ("\"aaa…\" is longer than 5 characters"), so a long
/// value is cut to a preview in place and the reason kept.
fn reason(error: &jsonschema::ValidationError<'_>) -> String {
    let full = error.to_string();
    if full.len() <= 2 * crate::error::QUOTE_BYTES {
        return full;
    }
    let value = error.instance().to_string();
    let preview = crate::error::cut(&value, crate::error::QUOTE_BYTES / 2);
    let shown = if preview.len() < value.len() {
        format!("{preview}… ({} bytes)", value.len())
    } else {
        value
    };
    let masked = error.masked_with(shown).to_string();
    let cut = crate::error::cut(&masked, 3 * crate::error::QUOTE_BYTES);
    if cut.len() < masked.len() {
        format!("{cut}…")
    } else {
        masked
    }
}

/// `text` cut to twice [`crate::error::QUOTE_BYTES`], marked when cut.
fn clip(text: &str) -> String {
    let cut = crate::error::cut(text, 2 * crate::error::QUOTE_BYTES);
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(schema: &str) -> ToolSpec {
        ToolSpec::new(
            &ToolDef {
                name: ToolKey::from_key("search"),
                input_schema_json: schema.into(),
                ..Default::default()
            },
            &Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn names_follow_model_api_rules() {
        assert!(check_name("web_search-2").is_ok());
        for bad in ["", "has space", "dot.ted", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn schema_failure_names_the_path() {
        let s = spec(
            r#"{"type":"object","properties":{"q":{"type":"string"},"n":{"type":"integer"}},"required":["q"]}"#,
        );
        let limits = Limits::default();
        assert!(s.check_arguments(r#"{"q":"x","n":3}"#, &limits).is_ok());
        let err = s
            .check_arguments(r#"{"q":"x","n":"three"}"#, &limits)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(err.to_string().contains("/n"), "{err}");
        let err = s.check_arguments("{}", &limits).unwrap_err();
        assert!(
            err.to_string().contains("required") || err.to_string().contains("\"q\""),
            "{err}"
        );
    }

    /// The message is bounded by cutting the value the validator quotes, not
    /// the reason after it (a long value used to push the reason out).
    #[test]
    fn a_long_failing_value_is_cut_and_the_reason_kept() {
        let s =
            spec(r#"{"properties":{"x":{"type":"string","maxLength":5},"e":{"enum":["a","b"]}}}"#);
        let limits = Limits::default();
        let long = "a".repeat(300);
        for (args, reason) in [
            (
                format!(r#"{{"x":"{long}"}}"#),
                "is longer than 5 characters",
            ),
            (format!(r#"{{"e":"{long}"}}"#), "is not one of"),
        ] {
            let err = s.check_arguments(&args, &limits).unwrap_err().to_string();
            assert!(err.contains(reason), "{err}");
            assert!(err.contains(r#""aaaa"#), "a preview of the value: {err}");
            assert!(err.len() < 400, "bounded: {} bytes: {err}", err.len());
        }
    }

    #[test]
    fn arguments_must_be_a_bounded_json_object() {
        let s = spec("");
        let limits = Limits {
            max_arguments_bytes: 16,
            ..Limits::default()
        };
        assert_eq!(&*s.check_arguments("", &limits).unwrap(), "{}");
        assert!(
            matches!(s.check_arguments("[1]", &limits), Err(Error::InvalidArgument(m)) if m.contains("array"))
        );
        assert!(
            matches!(s.check_arguments("{", &limits), Err(Error::InvalidArgument(m)) if m.contains("not valid JSON"))
        );
        assert!(matches!(
            s.check_arguments(r#"{"a":"0123456789abcdef"}"#, &limits),
            Err(Error::TooLarge(_))
        ));
    }

    /// The deepest schema and arguments the JSON-text rule lets through
    /// compile and validate within a tokio worker thread's 2 MiB stack.
    #[test]
    fn the_deepest_texts_fit_a_worker_thread_stack() {
        let run = || {
            let k = crate::json_text::MAX_DEPTH - 3;
            let schema = format!(
                r#"{{"type":"object","properties":{{"a":{}{{"type":"integer"}}{}}}}}"#,
                r#"{"items":"#.repeat(k),
                "}".repeat(k)
            );
            let s = spec(&schema);
            let limits = Limits::default();
            let args =
                |inner: &str| format!(r#"{{"a":{}{inner}{}}}"#, "[".repeat(k), "]".repeat(k));
            assert!(s.check_arguments(&args("1"), &limits).is_ok());
            assert!(s.check_arguments(&args(r#""x""#), &limits).is_err());
        };
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn backtracking_patterns_are_refused_naming_the_keyword() {
        let limits = Limits::default();
        for (schema, keyword) in [
            (
                r#"{"type":"object","properties":{"a":{"type":"array","items":{"type":"string","pattern":"^(a|a)*\\1$"}}}}"#,
                "pattern",
            ),
            (
                r#"{"patternProperties":{"^(a)\\1":{}}}"#,
                "patternProperties",
            ),
            (r#"{"propertyNames":{"pattern":"(?<=a)b"}}"#, "pattern"),
        ] {
            let tool = ToolDef {
                name: ToolKey::from_key("t"),
                input_schema_json: schema.into(),
                ..Default::default()
            };
            let err = ToolSpec::new(&tool, &limits).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
            assert!(err.to_string().contains(&format!("`{keyword}`")), "{err}");
        }
        // Linear-time patterns still work, Unicode classes included.
        let s = spec(r#"{"properties":{"x":{"type":"string","pattern":"^\\p{L}+[0-9]{1,3}$"}}}"#);
        assert!(s.check_arguments(r#"{"x":"été42"}"#, &limits).is_ok());
        assert!(s.check_arguments(r#"{"x":"42"}"#, &limits).is_err());
    }

    /// A pattern over the compiled-size bound is refused as too large, not
    /// as a backtracking one (it uses no such feature).
    #[test]
    fn a_pattern_too_large_to_compile_says_so() {
        let tool = ToolDef {
            name: ToolKey::from_key("t"),
            input_schema_json: r#"{"properties":{"x":{"pattern":"(a{1000}){1000}"}}}"#.into(),
            ..Default::default()
        };
        let err = ToolSpec::new(&tool, &Limits::default()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(
            text.contains("`pattern`") && text.contains("too large"),
            "{text}"
        );
        assert!(!text.contains("backreferences"), "{text}");
    }

    /// The schema is of the arguments, always a JSON object: a root `type`
    /// without "object" admits no call at all, and is refused at register.
    #[test]
    fn a_root_type_that_admits_no_object_is_refused() {
        for (schema, ok) in [
            (r#"{"type":"string"}"#, false),
            (r#"{"type":["string","null"]}"#, false),
            (r#"{"type":"object"}"#, true),
            (r#"{"type":["object","null"]}"#, true),
            (r#"{"properties":{}}"#, true),
            // Not a type name: the validator's error says so (below).
            (r#"{"type":"wat"}"#, false),
        ] {
            let tool = ToolDef {
                name: ToolKey::from_key("t"),
                input_schema_json: schema.into(),
                ..Default::default()
            };
            match ToolSpec::new(&tool, &Limits::default()) {
                Ok(_) => assert!(ok, "{schema} accepted"),
                Err(e) => {
                    assert!(!ok, "{schema}: {e}");
                    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
                    let why = if schema.contains("wat") {
                        "not a valid JSON Schema"
                    } else {
                        r#""object""#
                    };
                    assert!(e.to_string().contains(why), "{e}");
                }
            }
        }
    }

    #[test]
    fn bad_schemas_are_refused() {
        let limits = Limits::default();
        for bad in ["[]", "{", r#"{"type":"nonsense"}"#] {
            let tool = ToolDef {
                name: ToolKey::from_key("t"),
                input_schema_json: bad.into(),
                ..Default::default()
            };
            assert!(ToolSpec::new(&tool, &limits).is_err(), "{bad}");
        }
    }
}

/// The body of the `tool_input` fuzz target (`fuzz/`): registers a tool with
/// `schema` and checks `arguments` against it, as a worker and an agent
/// would. Any input must give `Ok` or a precise error, never a panic.
pub fn fuzz_tool_input(name: &str, schema: &str, arguments: &str) {
    let limits = Limits::default();
    let tool = ToolDef {
        name: ToolKey::from_key(name),
        input_schema_json: schema.to_string(),
        ..Default::default()
    };
    let _ = parse_arguments(arguments, &limits);
    if let Ok(spec) = ToolSpec::new(&tool, &limits) {
        match spec.check_arguments(arguments, &limits) {
            Ok(args) => assert!(serde_json::from_str::<Value>(&args).is_ok_and(|v| v.is_object())),
            Err(Error::InvalidArgument(_) | Error::TooLarge(_)) => {}
            Err(other) => panic!("unexpected error kind: {other:?}"),
        }
    }
}

#[cfg(test)]
mod fuzz_tests {
    //! A short, deterministic run of the fuzz body over generated inputs, so
    //! the normal (stable) test run covers it; `cargo +nightly fuzz run
    //! tool_input` in `fuzz/` explores further.
    use arbitrary::{Arbitrary, Unstructured};
    use serde_json::{Map, Value};

    /// A JSON value shaped by fuzz bytes.
    #[derive(Debug, Arbitrary)]
    enum Json {
        Null,
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
        Array(Vec<Json>),
        Object(Vec<(String, Json)>),
    }

    impl Json {
        fn value(&self, depth: u32) -> Value {
            if depth > 6 {
                return Value::Null;
            }
            match self {
                Json::Null => Value::Null,
                Json::Bool(b) => Value::Bool(*b),
                Json::Int(i) => Value::from(*i),
                Json::Float(f) => {
                    serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
                }
                Json::Str(s) => Value::String(s.clone()),
                Json::Array(a) => a.iter().map(|j| j.value(depth + 1)).collect(),
                Json::Object(o) => Value::Object(
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.value(depth + 1)))
                        .collect::<Map<_, _>>(),
                ),
            }
        }
    }

    #[derive(Debug, Arbitrary)]
    struct Input {
        name: String,
        schema: Json,
        schema_seed: u8,
        arguments: Json,
        raw_arguments: Option<String>,
    }

    /// Schemas that exercise the validator's keywords; fuzz bytes pick one
    /// or write their own.
    const SEEDS: [&str; 6] = [
        r#"{"type":"object","properties":{"q":{"type":"string","maxLength":5}},"required":["q"]}"#,
        r#"{"type":"object","additionalProperties":{"type":"integer","minimum":0}}"#,
        r#"{"type":"object","properties":{"a":{"type":"array","items":{"enum":[1,"x",null]}}}}"#,
        r#"{"type":"object","patternProperties":{"^x":{"type":"boolean"}},"additionalProperties":false}"#,
        r#"{"type":"object","properties":{"n":{"anyOf":[{"type":"number"},{"const":"n"}]}}}"#,
        r#"{"$ref":"\#/definitions/a","definitions":{"a":{"type":"object"}}}"#,
    ];

    /// xorshift64*: the same bytes on every run and machine.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.max(1);
        (0..n)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn the_fuzz_body_holds_on_generated_inputs() {
        for seed in 0..4000u64 {
            let data = bytes(seed, 64 + (seed as usize % 512));
            let mut u = Unstructured::new(&data);
            let Ok(input) = Input::arbitrary(&mut u) else {
                continue;
            };
            let schema = match input.schema_seed % 8 {
                i @ 0..6 => SEEDS[i as usize].to_string(),
                6 => input.schema.value(0).to_string(),
                _ => String::from_utf8_lossy(&data[..data.len() / 3]).into_owned(),
            };
            let arguments = input
                .raw_arguments
                .unwrap_or_else(|| input.arguments.value(0).to_string());
            let name = if seed % 2 == 0 { "tool" } else { &input.name };
            super::fuzz_tool_input(name, &schema, &arguments);
        }
    }
}
