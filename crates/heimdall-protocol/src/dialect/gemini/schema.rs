//! JSON Schema → the OpenAPI 3.0 subset Gemini accepts for function parameters and
//! `responseSchema`.
//!
//! Gemini rejects the whole request over one unknown keyword (`Unknown name "$schema"`,
//! `"additionalProperties"`), so the schema is rebuilt from an allow-list instead of stripped
//! by a deny-list: references are inlined, `oneOf` becomes `anyOf`, `allOf` is merged, type
//! lists become `type` + `nullable`, `const` becomes a one-value `enum`, and anything else
//! Gemini does not know is dropped. Loose rather than rejected: a tool whose schema says a
//! little less still works, a request that 400s does not.

use serde_json::{Map, Value};

/// Keywords Gemini's `Schema` object knows, kept (after reduction) as they are.
const KEPT: &[&str] = &[
    "title",
    "description",
    "nullable",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "default",
    "example",
    "propertyOrdering",
];

/// `format` values Gemini accepts (the Gemini API rejects the rest, `email` or `uri` included).
const FORMATS: &[&str] = &["enum", "date-time", "int32", "int64", "float", "double"];

/// Most `$ref`s inlined in one schema: references may fan out exponentially (or recurse), and
/// the request must stay bounded. Past it a reference becomes a bare object.
const MAX_REFS: usize = 1000;

/// Deepest nesting followed; deeper subschemas become bare objects.
const MAX_DEPTH: usize = 64;

/// Reduces `schema` to what Gemini accepts. Pure and total: any JSON value gives a schema.
pub fn reduce(schema: &Value) -> Value {
    let mut r = Reducer {
        root: schema,
        refs_left: MAX_REFS,
    };
    Value::Object(r.schema(schema, 0))
}

/// Whether a reduced schema declares any property; Gemini rejects function parameters of type
/// object with none, so such parameters are left out.
pub fn has_properties(schema: &Value) -> bool {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty())
}

struct Reducer<'a> {
    root: &'a Value,
    refs_left: usize,
}

fn bare_object() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), Value::String("object".into()));
    m
}

impl<'a> Reducer<'a> {
    fn schema(&mut self, schema: &Value, depth: usize) -> Map<String, Value> {
        let Some(obj) = schema.as_object() else {
            // `true` / `{}` (anything goes) and malformed subschemas.
            return Map::new();
        };
        if depth > MAX_DEPTH {
            return bare_object();
        }
        if let Some(target) = obj.get("$ref").and_then(Value::as_str) {
            return match self.resolve(target) {
                Some(def) if self.refs_left > 0 => {
                    self.refs_left -= 1;
                    let mut out = self.schema(def, depth + 1);
                    // Siblings of `$ref` (a description, usually) refine the reference.
                    let mut rest = obj.clone();
                    rest.remove("$ref");
                    merge_into(&mut out, self.schema_of_map(&rest, depth));
                    out
                }
                _ => bare_object(),
            };
        }
        self.schema_of_map(obj, depth)
    }

    fn schema_of_map(&mut self, obj: &Map<String, Value>, depth: usize) -> Map<String, Value> {
        let mut out = Map::new();
        let mut nullable = false;
        match obj.get("type") {
            Some(Value::String(t)) if t == "null" => nullable = true,
            Some(Value::String(t)) => {
                out.insert("type".into(), Value::String(t.clone()));
            }
            Some(Value::Array(types)) => {
                let named: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
                nullable = named.contains(&"null");
                let real: Vec<&str> = named.into_iter().filter(|t| *t != "null").collect();
                match real.as_slice() {
                    [] => {}
                    [one] => {
                        out.insert("type".into(), Value::String((*one).to_owned()));
                    }
                    many => {
                        let any = many
                            .iter()
                            .map(|t| {
                                let mut m = Map::new();
                                m.insert("type".into(), Value::String((*t).to_owned()));
                                Value::Object(m)
                            })
                            .collect();
                        out.insert("anyOf".into(), Value::Array(any));
                    }
                }
            }
            _ => {}
        }
        for key in KEPT {
            if let Some(v) = obj.get(*key) {
                out.insert((*key).to_owned(), v.clone());
            }
        }
        if let Some(format) = obj.get("format").and_then(Value::as_str)
            && FORMATS.contains(&format)
        {
            out.insert("format".into(), Value::String(format.to_owned()));
        }
        let enum_values = match (obj.get("enum"), obj.get("const")) {
            (Some(Value::Array(values)), _) => Some(values.clone()),
            (None, Some(c)) => Some(vec![c.clone()]),
            _ => None,
        };
        // Gemini enums are strings only.
        if let Some(values) =
            enum_values.filter(|v| !v.is_empty() && v.iter().all(Value::is_string))
        {
            out.insert("enum".into(), Value::Array(values));
            if !out.contains_key("type") {
                out.insert("type".into(), Value::String("string".into()));
            }
        }
        if let Some(Value::Object(props)) = obj.get("properties") {
            let reduced: Map<String, Value> = props
                .iter()
                .map(|(k, v)| (k.clone(), Value::Object(self.schema(v, depth + 1))))
                .collect();
            if let Some(Value::Array(required)) = obj.get("required") {
                // Gemini rejects required names that are not properties.
                let known: Vec<Value> = required
                    .iter()
                    .filter(|r| r.as_str().is_some_and(|r| reduced.contains_key(r)))
                    .cloned()
                    .collect();
                if !known.is_empty() {
                    out.insert("required".into(), Value::Array(known));
                }
            }
            if !reduced.is_empty() {
                out.insert("properties".into(), Value::Object(reduced));
            }
        }
        match obj.get("items") {
            Some(items @ Value::Object(_)) => {
                out.insert("items".into(), Value::Object(self.schema(items, depth + 1)));
            }
            // Tuple validation has no Gemini form; the first position stands for all.
            Some(Value::Array(items)) => {
                if let Some(first) = items.first() {
                    out.insert("items".into(), Value::Object(self.schema(first, depth + 1)));
                }
            }
            _ => {}
        }
        let alternatives = obj
            .get("anyOf")
            .or_else(|| obj.get("oneOf"))
            .and_then(Value::as_array);
        if let Some(alternatives) = alternatives {
            let mut any = Vec::with_capacity(alternatives.len());
            for alt in alternatives {
                if alt.get("type").and_then(Value::as_str) == Some("null") {
                    nullable = true;
                    continue;
                }
                any.push(self.schema(alt, depth + 1));
            }
            match any.len() {
                0 => {}
                1 => {
                    if let Some(only) = any.pop() {
                        merge_into(&mut out, only);
                    }
                }
                _ => {
                    out.insert(
                        "anyOf".into(),
                        Value::Array(any.into_iter().map(Value::Object).collect()),
                    );
                }
            }
        }
        if let Some(Value::Array(all)) = obj.get("allOf") {
            for part in all {
                let reduced = self.schema(part, depth + 1);
                merge_into(&mut out, reduced);
            }
        }
        if nullable {
            out.insert("nullable".into(), Value::Bool(true));
        }
        out
    }

    /// The definition a local reference (`#/$defs/X`, `#/definitions/X`, any JSON pointer into
    /// the root) points at.
    fn resolve(&self, target: &str) -> Option<&'a Value> {
        let pointer = target.strip_prefix('#')?;
        self.root.pointer(pointer)
    }
}

/// Merges `from` into `into`: properties and required names are united, other keywords
/// already in `into` win.
fn merge_into(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (key, value) in from {
        match (key.as_str(), into.get_mut(&key), value) {
            ("properties", Some(Value::Object(have)), Value::Object(more)) => {
                for (k, v) in more {
                    have.entry(k).or_insert(v);
                }
            }
            ("required", Some(Value::Array(have)), Value::Array(more)) => {
                for r in more {
                    if !have.contains(&r) {
                        have.push(r);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, value) => {
                into.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_what_gemini_rejects() {
        let s = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "$id": "x", "type": "object", "additionalProperties": false,
            "properties": {
                "email": {"type": "string", "format": "email", "minLength": 3},
                "when": {"type": "string", "format": "date-time"},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "n": {"type": "integer", "exclusiveMinimum": 0, "maximum": 9},
                "free": {"type": "object", "patternProperties": {".*": {}}, "properties": {}},
            },
            "required": ["email", "ghost"],
        });
        assert_eq!(
            reduce(&s),
            json!({
                "type": "object",
                "properties": {
                    "email": {"type": "string", "minLength": 3},
                    "when": {"type": "string", "format": "date-time"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "n": {"type": "integer", "maximum": 9},
                    "free": {"type": "object"},
                },
                "required": ["email"],
            })
        );
    }

    #[test]
    fn inlines_references_and_keeps_sibling_descriptions() {
        let s = json!({
            "type": "object",
            "$defs": {"City": {"type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": false}},
            "definitions": {"Unit": {"enum": ["c", "f"], "type": "string"}},
            "properties": {
                "city": {"$ref": "#/$defs/City", "description": "where"},
                "unit": {"$ref": "#/definitions/Unit"},
                "elsewhere": {"$ref": "https://example.com/schema.json"},
            },
        });
        assert_eq!(
            reduce(&s),
            json!({"type": "object", "properties": {
                "city": {"type": "object", "properties": {"name": {"type": "string"}}, "description": "where"},
                "unit": {"type": "string", "enum": ["c", "f"]},
                "elsewhere": {"type": "object"},
            }})
        );
    }

    #[test]
    fn recursive_references_stay_bounded() {
        let s = json!({
            "$defs": {"Node": {"type": "object", "properties": {
                "left": {"$ref": "#/$defs/Node"}, "right": {"$ref": "#/$defs/Node"}}}},
            "$ref": "#/$defs/Node",
        });
        let out = reduce(&s);
        assert!(out.to_string().len() < 1_000_000);
        assert_eq!(out["properties"]["left"]["type"], "object");
    }

    #[test]
    fn nullable_types_unions_and_consts() {
        let s = json!({"type": "object", "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"type": ["string", "integer"]},
            "c": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "d": {"oneOf": [{"type": "string"}, {"type": "number"}]},
            "e": {"const": "fixed"},
            "f": {"enum": [1, 2], "type": "integer"},
            "g": {"allOf": [
                {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
                {"properties": {"y": {"type": "number"}}, "required": ["y"]}]},
            "h": true,
        }});
        assert_eq!(
            reduce(&s)["properties"],
            json!({
                "a": {"type": "string", "nullable": true},
                "b": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "c": {"type": "integer", "nullable": true},
                "d": {"anyOf": [{"type": "string"}, {"type": "number"}]},
                "e": {"type": "string", "enum": ["fixed"]},
                "f": {"type": "integer"},
                "g": {"type": "object",
                      "properties": {"x": {"type": "string"}, "y": {"type": "number"}},
                      "required": ["x", "y"]},
                "h": {},
            })
        );
    }

    #[test]
    fn empty_objects_have_no_properties() {
        assert!(!has_properties(&reduce(&json!({"type": "object"}))));
        assert!(!has_properties(&reduce(
            &json!({"type": "object", "properties": {}})
        )));
        assert!(has_properties(&reduce(
            &json!({"type": "object", "properties": {"q": {"type": "string"}}})
        )));
        assert_eq!(reduce(&json!("nonsense")), json!({}));
    }

    #[test]
    fn depth_is_bounded() {
        let mut s = json!({"type": "string"});
        for _ in 0..100 {
            s = json!({"type": "array", "items": s});
        }
        let out = reduce(&s);
        let mut node = &out;
        let mut depth = 0;
        while let Some(next) = node.get("items") {
            node = next;
            depth += 1;
        }
        assert!(depth <= MAX_DEPTH + 1, "{depth}");
    }
}
