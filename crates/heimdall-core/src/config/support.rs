//! What the config reader says about settings it does not act on, and how its errors read.
//!
//! A Bifrost `config.json` may carry sections Heimdall does not implement. Most are harmless
//! to ignore (a warning names them), but ignoring one that changes who may do what, or what a
//! request costs, would run a gateway less strict or differently billed than its operator
//! believes: those are collected as *unsupported* and refused at start-up unless the operator
//! opts out (see [`super::Config::check_supported`]).

/// Provider names of Bifrost's that Heimdall has no implementation of (its own are in the
/// provider registry). A section naming one of these is unsupported, not a typo.
const BIFROST_ONLY_PROVIDERS: &[&str] = &[
    "cohere",
    "nebius",
    "parasail",
    "huggingface",
    "replicate",
    "elevenlabs",
    "runway",
    "bedrock_mantle",
    "runware",
    "sarvam",
    "opencode-go",
    "opencode-zen",
    "databricks",
];

/// Whether Bifrost knows a provider Heimdall lacks.
pub(super) fn is_bifrost_only_provider(name: &str) -> bool {
    BIFROST_ONLY_PROVIDERS.contains(&name)
}

/// Ignored settings that change security or billing, by path pattern (`*` is one segment,
/// a pattern also matches everything below it), with what ignoring them would do.
const SECURITY_OR_BILLING: &[(&str, &str)] = &[
    (
        "auth_config",
        "the admin API would not ask for these credentials (Heimdall reads client.admin_auth)",
    ),
    ("mcp", "MCP tool servers and their access rules"),
    ("guardrails_config", "guardrails would not check requests"),
    ("access_profiles", "access profiles would not restrict keys"),
    (
        "routing_rules",
        "requests would not be routed (and billed) as these rules say",
    ),
    (
        "cluster_config",
        "limits and budgets would not be shared across the cluster",
    ),
    (
        "framework",
        "model prices would not be synced (costs and budgets use Heimdall's price list)",
    ),
    (
        "client.allowed_origins",
        "browser origins would not be restricted",
    ),
    (
        "client.required_headers",
        "requests lacking these headers would not be refused",
    ),
    (
        "client.dual_credential_conflict_behavior",
        "which credential wins would differ",
    ),
    (
        "governance",
        "budgets, rate limits or access rules would not apply",
    ),
    (
        "providers.*.proxy_config",
        "upstream traffic would bypass this proxy",
    ),
];

/// Plugins that Heimdall provides otherwise (always-on metrics and request logs), so a file
/// enabling them loses nothing.
const BUILT_IN_PLUGINS: &[&str] = &["telemetry", "logging"];

/// Why ignoring the setting at `path` (as `serde_ignored` writes it: `a.b[0].c`) changes
/// security or billing; `None` when it is harmless to ignore.
pub(super) fn security_or_billing(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path
        .split(['.', '['])
        .map(|s| s.trim_end_matches(']'))
        .filter(|s| !s.is_empty())
        .collect();
    SECURITY_OR_BILLING.iter().find_map(|(pattern, why)| {
        let pattern: Vec<&str> = pattern.split('.').collect();
        let matches = pattern.len() <= segments.len()
            && pattern
                .iter()
                .zip(&segments)
                .all(|(p, s)| *p == "*" || p == s);
        matches.then_some(*why)
    })
}

/// Whether the value at `path` (`a.b.0.c` or `a.b[0].c`) in `tree` is absent or empty:
/// `null`, `false`, `0`, `""`, `[]` or `{}`.
pub(super) fn is_empty_at(tree: &serde_json::Value, path: &str) -> bool {
    use serde_json::Value;
    let mut at = tree;
    for segment in path
        .split(['.', '['])
        .map(|s| s.trim_end_matches(']'))
        .filter(|s| !s.is_empty())
    {
        let next = match at {
            Value::Object(map) => map.get(segment),
            Value::Array(list) => segment.parse::<usize>().ok().and_then(|i| list.get(i)),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return true,
        }
    }
    match at {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Why an enabled plugin Heimdall does not implement must not be ignored; `None` for one
/// whose work Heimdall does anyway.
pub(super) fn unsupported_plugin(name: &str) -> Option<&'static str> {
    (!BUILT_IN_PLUGINS.contains(&name)).then_some(
        "a plugin may check, rewrite, refuse or bill requests; without it none of that happens",
    )
}

/// The candidate nearest to `name` by edit distance, when it is near enough to be a typo.
pub(crate) fn nearest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters, one row at a time.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `unknown provider `opnai`; did you mean `openai`? (known: …)`.
pub(super) fn unknown_provider(name: &str, known: &[&str]) -> String {
    let hint = nearest(name, known.iter().copied())
        .map_or_else(String::new, |n| format!("; did you mean `{n}`?"));
    format!(
        "unknown provider `{name}`{hint} (known: {})",
        known.join(", ")
    )
}

/// A serde error message in the words of JSON rather than Rust: `expected a number`, not
/// `expected f64`; `object`, not `map` or `struct RawKey`.
pub(super) fn json_words(message: &str) -> String {
    const RUST_TO_JSON: &[(&str, &str)] = &[
        ("invalid type: map", "invalid type: object"),
        ("invalid type: sequence", "invalid type: array"),
        ("invalid type: unit value", "invalid type: null"),
        ("invalid type: floating point", "invalid type: number"),
        ("invalid type: integer", "invalid type: number"),
        ("invalid value: integer", "invalid value: number"),
        ("invalid value: floating point", "invalid value: number"),
    ];
    let mut out = message.to_owned();
    for (rust, json) in RUST_TO_JSON {
        out = out.replace(rust, json);
    }
    // What follows `expected ` up to a comma or the end.
    let Some(at) = out.find("expected ") else {
        return out;
    };
    let start = at + "expected ".len();
    let end = out[start..]
        .find([',', ' '])
        .map_or(out.len(), |i| start + i);
    let word = &out[start..end];
    let json = match word {
        "f32" | "f64" => Some("a number"),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => Some("a whole number of 0 or more"),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => Some("a whole number"),
        "struct" => {
            // `expected struct RawKey`: the type's name means nothing to the file's author.
            let name_end = out[end + 1..]
                .find([',', ' '])
                .map_or(out.len(), |i| end + 1 + i);
            out.replace_range(start..name_end, "an object");
            None
        }
        "a" | "an" => {
            return out
                .replacen("expected a map", "expected an object", 1)
                .replacen("expected a sequence", "expected an array", 1)
                .replacen("expected unit", "expected null", 1);
        }
        "unit" => Some("null"),
        _ => None,
    };
    if let Some(json) = json {
        out.replace_range(start..end, json);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_nearest_provider() {
        let known = ["anthropic", "openai", "azure", "gemini", "groq"];
        assert_eq!(nearest("opnai", known), Some("openai"));
        assert_eq!(nearest("antropic", known), Some("anthropic"));
        assert_eq!(nearest("grok", known), Some("groq"));
        assert_eq!(nearest("zzzzzzz", known), None);
        let msg = unknown_provider("opnai", &known);
        assert!(msg.contains("did you mean `openai`?"), "{msg}");
        assert!(msg.contains("known: anthropic, openai"), "{msg}");
        assert!(!unknown_provider("qqqqqq", &known).contains("did you mean"));
    }

    #[test]
    fn sorts_ignored_settings_by_what_ignoring_them_costs() {
        for path in [
            "mcp",
            "routing_rules",
            "client.allowed_origins",
            "governance.virtual_keys[0].mcp_configs",
            "providers.openai.proxy_config",
            "providers.openai.proxy_config.url",
        ] {
            assert!(security_or_billing(path).is_some(), "{path}");
        }
        for path in [
            "client.enable_logging",
            "client.prometheus_labels",
            "websocket",
            "providers.openai.send_back_raw_response",
            "vector_store.config.pool_size",
        ] {
            assert!(security_or_billing(path).is_none(), "{path}");
        }
        assert!(unsupported_plugin("telemetry").is_none());
        assert!(unsupported_plugin("guardrails").is_some());
    }

    #[test]
    fn serde_errors_speak_json() {
        for (rust, json) in [
            (
                r#"invalid type: string "heavy", expected f64"#,
                r#"invalid type: string "heavy", expected a number"#,
            ),
            (
                "invalid value: integer `-1`, expected u64",
                "invalid value: number `-1`, expected a whole number of 0 or more",
            ),
            (
                "invalid type: map, expected a sequence",
                "invalid type: object, expected an array",
            ),
            (
                "invalid type: sequence, expected struct RawKey",
                "invalid type: array, expected an object",
            ),
            (
                "invalid type: floating point `1.5`, expected i64",
                "invalid type: number `1.5`, expected a whole number",
            ),
            ("missing field `value`", "missing field `value`"),
            (
                "invalid type: string \"x\", expected a boolean",
                "invalid type: string \"x\", expected a boolean",
            ),
        ] {
            assert_eq!(json_words(rust), json, "{rust}");
        }
    }
}
