//! From the client's `model` to a provider and the model name that provider knows.

use heimdall_providers::ProviderKind;

use crate::config::{Config, ProviderConfig};
use crate::error::GatewayError;

/// `provider/model`, split at the first `/`; no prefix means Anthropic.
pub fn split_model(model: &str) -> Result<(ProviderKind, &str), GatewayError> {
    let Some((prefix, rest)) = model.split_once('/') else {
        return Ok((ProviderKind::Anthropic, model));
    };
    let kind = ProviderKind::from_name(prefix).ok_or_else(|| {
        GatewayError::invalid_request(format!(
            "model `{model}`: unknown provider `{prefix}` (use `provider/model`, e.g. `openai/gpt-4o-mini`)"
        ))
    })?;
    if rest.is_empty() {
        return Err(GatewayError::invalid_request(format!(
            "model `{model}`: the model name after `{prefix}/` is empty"
        )));
    }
    Ok((kind, rest))
}

/// The configured provider for `kind`, or a client error naming it and how to enable it.
pub fn configured(config: &Config, kind: ProviderKind) -> Result<&ProviderConfig, GatewayError> {
    config.provider(kind).ok_or_else(|| {
        GatewayError::invalid_request(format!(
            "provider `{}` is not configured: set {} or add providers.{} to config.json",
            kind.name(),
            kind.env_var(),
            kind.name()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_first_slash() {
        assert_eq!(
            split_model("claude-x").unwrap(),
            (ProviderKind::Anthropic, "claude-x")
        );
        assert_eq!(
            split_model("openai/ft:gpt/odd").unwrap(),
            (ProviderKind::OpenAi, "ft:gpt/odd")
        );
        assert!(
            split_model("nope/x")
                .unwrap_err()
                .message
                .contains("unknown provider `nope`")
        );
        assert!(split_model("openai/").is_err());
    }
}
