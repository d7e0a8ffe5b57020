//! From the client's `model` to a configured provider and the model name that provider knows.

use std::borrow::Cow;

use crate::config::{Config, ProviderConfig};
use crate::error::GatewayError;

/// The provider a model routes to when it has no `provider/` prefix.
pub const DEFAULT_PROVIDER: &str = "anthropic";

/// Where a request goes.
pub struct Route<'a> {
    pub provider: &'a ProviderConfig,
    /// The model as the provider knows it (prefix removed).
    pub upstream_model: &'a str,
}

/// `provider/model`, split at the first `/`; no prefix means Anthropic. The provider is a
/// registered family or a custom provider of `config`.
pub fn split_model<'m>(
    config: &Config,
    model: &'m str,
) -> Result<(&'m str, &'m str), GatewayError> {
    let Some((prefix, rest)) = model.split_once('/') else {
        return Ok((DEFAULT_PROVIDER, model));
    };
    if heimdall_providers::factory(prefix).is_none() && config.provider(prefix).is_none() {
        let names = config.providers.iter().map(|p| p.name.as_str());
        let hint = crate::config::support::nearest(prefix, names)
            .map_or_else(String::new, |n| format!("; did you mean `{n}`?"));
        return Err(GatewayError::invalid_request(format!(
            "model `{model}`: unknown provider `{prefix}`{hint} (use `provider/model`, e.g. `openai/gpt-4o-mini`; {})",
            config.configured_providers()
        )));
    }
    if rest.is_empty() {
        return Err(GatewayError::invalid_request(format!(
            "model `{model}`: the model name after `{prefix}/` is empty"
        )));
    }
    Ok((prefix, rest))
}

/// Longest fallback chain, the model asked for included.
pub const MAX_CHAIN: usize = 16;

/// The models a request tries, in order: `model`, then the request's own `fallbacks` when it
/// has the field (an empty list means none), else the configured fallbacks of `model`. A
/// model already in the chain is not tried twice.
pub fn chain<'a>(
    config: &'a Config,
    model: &'a str,
    requested: Option<&'a [Cow<'a, str>]>,
) -> Result<Vec<&'a str>, GatewayError> {
    let mut out = vec![model];
    match requested {
        Some(list) => {
            for (i, m) in list.iter().enumerate() {
                split_model(config, m).map_err(|e| {
                    GatewayError::invalid_request(format!("fallbacks.{i}: {}", e.message))
                })?;
                out.push(m);
            }
        }
        None => {
            let (provider, upstream_model) = split_model(config, model)?;
            if let Some(p) = config.provider(provider) {
                out.extend(p.fallbacks_of(upstream_model).iter().map(String::as_str));
            }
        }
    }
    if out.len() > MAX_CHAIN {
        return Err(GatewayError::invalid_request(format!(
            "fallbacks: at most {} models may follow the one asked for",
            MAX_CHAIN - 1
        )));
    }
    let mut seen = 1;
    for i in 1..out.len() {
        if !out[..seen].contains(&out[i]) {
            out[seen] = out[i];
            seen += 1;
        }
    }
    out.truncate(seen);
    Ok(out)
}

pub fn resolve<'a>(config: &'a Config, model: &'a str) -> Result<Route<'a>, GatewayError> {
    let (name, upstream_model) = split_model(config, model)?;
    let provider = config.provider(name).ok_or_else(|| {
        let how = heimdall_providers::factory(name)
            .map_or_else(String::new, |f| format!("set {} or ", f.env_var));
        GatewayError::invalid_request(format!(
            "provider `{name}` is not configured: {how}add providers.{name} to config.json ({})",
            config.configured_providers()
        ))
    })?;
    Ok(Route {
        provider,
        upstream_model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_first_slash() {
        let c = Config::from_env(&|_| None);
        assert_eq!(
            split_model(&c, "claude-x").unwrap(),
            ("anthropic", "claude-x")
        );
        assert_eq!(
            split_model(&c, "openai/ft:gpt/odd").unwrap(),
            ("openai", "ft:gpt/odd")
        );
        assert!(
            split_model(&c, "nope/x")
                .unwrap_err()
                .message
                .contains("unknown provider `nope`")
        );
        assert!(split_model(&c, "openai/").is_err());
    }

    #[test]
    fn chains_put_the_model_first_and_try_nothing_twice() {
        let c = Config::from_json(
            r#"{"providers": {"anthropic": {"keys": [{"value": "k"}],
                "fallbacks": ["openai/a", "claude-x", "openai/a"],
                "model_fallbacks": {"claude-y": ["openai/b"]}}}}"#,
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            chain(&c, "claude-x", None).unwrap(),
            ["claude-x", "openai/a"]
        );
        assert_eq!(
            chain(&c, "claude-y", None).unwrap(),
            ["claude-y", "openai/b"]
        );
        // The request's own list, even empty, replaces the configured one.
        let none: Vec<Cow<'_, str>> = Vec::new();
        assert_eq!(chain(&c, "claude-x", Some(&none)).unwrap(), ["claude-x"]);
        let own = vec![Cow::from("gemini/g")];
        assert_eq!(
            chain(&c, "claude-x", Some(&own)).unwrap(),
            ["claude-x", "gemini/g"]
        );
        let bad = vec![Cow::from("openai/a"), Cow::from("nope/x")];
        let e = chain(&c, "claude-x", Some(&bad)).unwrap_err();
        assert!(
            e.message.starts_with("fallbacks.1: model `nope/x`"),
            "{}",
            e.message
        );
        let long: Vec<Cow<'_, str>> = (0..MAX_CHAIN).map(|i| Cow::from(format!("m{i}"))).collect();
        assert!(chain(&c, "claude-x", Some(&long)).is_err());
    }

    #[test]
    fn unconfigured_providers_say_how_to_enable_them() {
        let config = Config::from_env(&|_| None);
        let err = resolve(&config, "openai/gpt-4o-mini").err().unwrap();
        assert_eq!(
            err.message,
            "provider `openai` is not configured: set OPENAI_API_KEY or add providers.openai to config.json (no provider is configured)"
        );
        let config = Config::from_json(
            r#"{"providers": {"anthropic": {"keys": [{"value": "k"}]}, "groq": {"keys": [{"value": "k"}]}}}"#,
            &|_| None,
        )
        .unwrap();
        let err = resolve(&config, "openai/gpt-4o-mini").err().unwrap();
        assert!(
            err.message
                .ends_with("(configured providers: anthropic, groq)"),
            "{}",
            err.message
        );
        let err = resolve(&config, "grok/llama").err().unwrap();
        assert!(
            err.message
                .contains("unknown provider `grok`; did you mean `groq`?")
                && err
                    .message
                    .contains("configured providers: anthropic, groq"),
            "{}",
            err.message
        );
    }
}
