//! How much checking one value against a schema can cost, bounded at
//! registration.
//!
//! A schema's size does not bound its work: `$ref`s let a few bytes stand
//! for many subschemas (`allOf` of two refs to a def that is `allOf` of two
//! refs to the next def... doubles per level), and a `$ref` cycle that
//! never descends into the value (`{"$ref":"#"}`) never ends. Here every
//! subschema's *expansion* is counted: the subschemas that apply to one
//! value at its location through in-place keywords (`allOf`, `anyOf`,
//! `oneOf`, `not`, `if`/`then`/`else`, `dependentSchemas`, `$ref`...). A cycle
//! of those is refused; so is an expansion over [`MAX_EXPANSION`].
//! Keywords that descend (`properties`, `items`, ...) apply to smaller
//! parts of the value, which the argument size bounds, so cycles through
//! them (tree schemas) are fine.
use std::collections::{HashMap, HashSet, VecDeque};

use serde_json::Value;

/// Most subschemas that may apply to one value at one location.
pub const MAX_EXPANSION: u64 = 20_000;

/// Keywords whose subschemas apply in place: one schema, a list, a map.
const IN_PLACE_ONE: [&str; 4] = ["not", "if", "then", "else"];
const IN_PLACE_LIST: [&str; 3] = ["allOf", "anyOf", "oneOf"];
const IN_PLACE_MAP: [&str; 2] = ["dependentSchemas", "dependencies"];
/// Keywords whose subschemas apply to parts of the value.
const DESCEND_ONE: [&str; 8] = [
    "additionalProperties",
    "items",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "additionalItems",
    "contentSchema",
];
const DESCEND_LIST: [&str; 2] = ["prefixItems", "items"];
const DESCEND_MAP: [&str; 2] = ["properties", "patternProperties"];
const REFS: [&str; 3] = ["$ref", "$dynamicRef", "$recursiveRef"];

/// Checks `schema`'s expansion; returns the largest (subschemas applying to
/// one value); `Err` says what is wrong, at which pointer.
pub fn check(schema: &Value) -> Result<u64, String> {
    let mut walk = Walk {
        root: schema,
        anchors: HashMap::new(),
        memo: HashMap::new(),
        descend: VecDeque::new(),
    };
    index_anchors(schema, String::new(), &mut walk.anchors);
    walk.descend.push_back(String::new());
    let mut seen = HashSet::new();
    while let Some(at) = walk.descend.pop_front() {
        if seen.insert(at.clone()) {
            walk.expansion(&at, &mut Vec::new())?;
        }
    }
    Ok(walk.memo.values().copied().max().unwrap_or(1))
}

struct Walk<'a> {
    root: &'a Value,
    /// `$anchor` name -> pointer.
    anchors: HashMap<String, String>,
    /// Pointer -> expansion, computed.
    memo: HashMap<String, u64>,
    /// Subschemas that apply to parts of the value, to check on their own.
    descend: VecDeque<String>,
}

impl Walk<'_> {
    /// The expansion of the subschema at pointer `at`; `stack`: the in-place
    /// path that led here, for cycles.
    fn expansion(&mut self, at: &str, stack: &mut Vec<String>) -> Result<u64, String> {
        if let Some(n) = self.memo.get(at) {
            return Ok(*n);
        }
        if stack.iter().any(|p| p == at) {
            return Err(format!(
                "a `$ref` cycle through {} applies a schema to the same value again without end: \
                 recursion must go through a keyword that descends (properties, items, ...)",
                pointer_text(at)
            ));
        }
        let Some(node) = self.root.pointer(at) else {
            return Ok(1); // the validator reports unresolvable refs itself
        };
        let Value::Object(map) = node else {
            return Ok(1); // true/false schemas
        };
        stack.push(at.to_string());
        let mut total: u64 = 1;
        for (key, value) in map {
            let here = format!("{at}/{}", escape(key));
            let mut inplace = Vec::new();
            if IN_PLACE_ONE.contains(&key.as_str()) {
                inplace.push(here.clone());
            }
            if IN_PLACE_LIST.contains(&key.as_str())
                && let Value::Array(items) = value
            {
                inplace.extend((0..items.len()).map(|i| format!("{here}/{i}")));
            }
            if IN_PLACE_MAP.contains(&key.as_str())
                && let Value::Object(m) = value
            {
                inplace.extend(m.keys().map(|k| format!("{here}/{}", escape(k))));
            }
            if REFS.contains(&key.as_str())
                && let Value::String(target) = value
                && let Some(target) = self.resolve(target)
            {
                inplace.push(target);
            }
            if DESCEND_ONE.contains(&key.as_str()) && value.is_object() {
                self.descend.push_back(here.clone());
            }
            if DESCEND_LIST.contains(&key.as_str())
                && let Value::Array(items) = value
            {
                self.descend
                    .extend((0..items.len()).map(|i| format!("{here}/{i}")));
            }
            if DESCEND_MAP.contains(&key.as_str())
                && let Value::Object(m) = value
            {
                self.descend
                    .extend(m.keys().map(|k| format!("{here}/{}", escape(k))));
            }
            for sub in inplace {
                total = total.saturating_add(self.expansion(&sub, stack)?);
                if total > MAX_EXPANSION {
                    stack.pop();
                    return Err(format!(
                        "at {} more than {MAX_EXPANSION} subschemas apply to one value (through \
                         allOf/anyOf/oneOf/$ref...): checking arguments would cost too much; \
                         simplify the schema",
                        pointer_text(at)
                    ));
                }
            }
        }
        stack.pop();
        self.memo.insert(at.to_string(), total);
        Ok(total)
    }

    /// The pointer a local reference names: `#`, `#/json/pointer`, `#anchor`.
    fn resolve(&self, reference: &str) -> Option<String> {
        let fragment = reference.strip_prefix('#')?;
        if fragment.is_empty() || fragment.starts_with('/') {
            let decoded = percent_decode(fragment);
            return Some(decoded);
        }
        self.anchors.get(fragment).cloned()
    }
}

fn index_anchors(node: &Value, at: String, anchors: &mut HashMap<String, String>) {
    match node {
        Value::Object(map) => {
            for key in ["$anchor", "$dynamicAnchor"] {
                if let Some(Value::String(name)) = map.get(key) {
                    anchors.entry(name.clone()).or_insert_with(|| at.clone());
                }
            }
            for (k, v) in map {
                index_anchors(v, format!("{at}/{}", escape(k)), anchors);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                index_anchors(v, format!("{at}/{i}"), anchors);
            }
        }
        _ => {}
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A pointer as shown in messages: `/` for the root, a long one cut.
fn pointer_text(at: &str) -> String {
    let cut = crate::error::cut(at, 2 * crate::error::QUOTE_BYTES);
    match cut {
        "" => "/".into(),
        _ if cut.len() < at.len() => format!("{cut}…"),
        _ => cut.into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ordinary_and_recursive_tree_schemas_pass() {
        check(&json!({"type":"object","properties":{"q":{"type":"string"}}})).unwrap();
        // A tree: recursion that descends into the value.
        check(&json!({
            "type":"object",
            "properties":{"children":{"type":"array","items":{"$ref":"#"}}}
        }))
        .unwrap();
        check(
            &json!({"$defs":{"n":{"anyOf":[{"type":"null"},{"$ref":"#/$defs/n/anyOf/0"}]}},
                      "properties":{"x":{"$ref":"#/$defs/n"}}}),
        )
        .unwrap();
    }

    #[test]
    fn in_place_cycles_are_refused() {
        for schema in [
            json!({"$ref":"#"}),
            json!({"$defs":{"a":{"allOf":[{"$ref":"#/$defs/b"}]},"b":{"not":{"$ref":"#/$defs/a"}}},"$ref":"#/$defs/a"}),
            json!({"$defs":{"a":{"$anchor":"top","anyOf":[{"$ref":"#top"}]}},"$ref":"#/$defs/a"}),
        ] {
            let e = check(&schema).unwrap_err();
            assert!(e.contains("cycle"), "{schema}: {e}");
        }
    }

    #[test]
    fn exponential_expansions_are_refused() {
        let mut defs = serde_json::Map::new();
        for i in 0..30 {
            let next = format!("#/$defs/d{}", i + 1);
            defs.insert(
                format!("d{i}"),
                json!({"allOf":[{"$ref":next},{"$ref":next}]}),
            );
        }
        defs.insert("d30".into(), json!({"type":"object"}));
        let schema = json!({"$defs":defs,"properties":{"x":{"$ref":"#/$defs/d0"}}});
        let e = check(&schema).unwrap_err();
        assert!(e.contains("more than 20000"), "{e}");
    }
}
