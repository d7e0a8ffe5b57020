//! What a request cost: published list prices of well-known models (USD per million tokens),
//! overridable per model by Heimdall's own `pricing` config section. Prices change; the table
//! is a default for the logs and `bifrost_cost_total`, not a bill.

use std::collections::BTreeMap;

use heimdall_protocol::canonical::Usage;
use serde::Deserialize;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Defaults to the input price.
    #[serde(default)]
    pub cache_read: Option<f64>,
    /// Defaults to the input price.
    #[serde(default)]
    pub cache_write: Option<f64>,
}

const fn p(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Price {
    Price {
        input,
        output,
        cache_read: Some(cache_read),
        cache_write: Some(cache_write),
    }
}

/// Model name prefixes and their list prices; the longest prefix of a model's name wins
/// (`gpt-4o-mini-2024-07-18` is `gpt-4o-mini`, not `gpt-4o`).
const LIST_PRICES: &[(&str, Price)] = &[
    ("claude-opus-4-5", p(5.0, 25.0, 0.5, 6.25)),
    ("claude-opus-4", p(15.0, 75.0, 1.5, 18.75)),
    ("claude-3-opus", p(15.0, 75.0, 1.5, 18.75)),
    ("claude-sonnet-4", p(3.0, 15.0, 0.3, 3.75)),
    ("claude-3-7-sonnet", p(3.0, 15.0, 0.3, 3.75)),
    ("claude-3-5-sonnet", p(3.0, 15.0, 0.3, 3.75)),
    ("claude-haiku-4-5", p(1.0, 5.0, 0.1, 1.25)),
    ("claude-3-5-haiku", p(0.8, 4.0, 0.08, 1.0)),
    ("claude-3-haiku", p(0.25, 1.25, 0.03, 0.3)),
    ("gpt-5-nano", p(0.05, 0.4, 0.005, 0.05)),
    ("gpt-5-mini", p(0.25, 2.0, 0.025, 0.25)),
    ("gpt-5", p(1.25, 10.0, 0.125, 1.25)),
    ("gpt-4.1-nano", p(0.1, 0.4, 0.025, 0.1)),
    ("gpt-4.1-mini", p(0.4, 1.6, 0.1, 0.4)),
    ("gpt-4.1", p(2.0, 8.0, 0.5, 2.0)),
    ("gpt-4o-mini", p(0.15, 0.6, 0.075, 0.15)),
    ("gpt-4o", p(2.5, 10.0, 1.25, 2.5)),
    ("o4-mini", p(1.1, 4.4, 0.275, 1.1)),
    ("o3-mini", p(1.1, 4.4, 0.55, 1.1)),
    ("o3", p(2.0, 8.0, 0.5, 2.0)),
    ("gemini-2.5-pro", p(1.25, 10.0, 0.31, 1.25)),
    ("gemini-2.5-flash-lite", p(0.1, 0.4, 0.025, 0.1)),
    ("gemini-2.5-flash", p(0.3, 2.5, 0.075, 0.3)),
    ("gemini-2.0-flash", p(0.1, 0.4, 0.025, 0.1)),
    ("gemini-1.5-pro", p(1.25, 5.0, 0.3125, 1.25)),
    ("gemini-1.5-flash", p(0.075, 0.3, 0.01875, 0.075)),
    ("gemini-pro", p(0.5, 1.5, 0.5, 0.5)),
];

/// The prices a gateway uses: the config's, then the list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pricing {
    overrides: BTreeMap<String, Price>,
}

impl Pricing {
    pub fn new(overrides: BTreeMap<String, Price>) -> Self {
        Self {
            overrides: overrides
                .into_iter()
                .map(|(model, price)| (normalize(&model).to_owned(), price))
                .collect(),
        }
    }

    /// The price of `usage` on `model` (as a client names it: `openai/gpt-4o-mini`, or a
    /// Bedrock id such as `anthropic.claude-3-5-haiku-20241022-v1:0`). Models served on the
    /// client's own machine (`ollama`) cost nothing; unknown models have no price.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<f64> {
        let name = normalize(model);
        let price = match self.overrides.get(name) {
            Some(price) => *price,
            None if provider == "ollama" => return Some(0.0),
            None => longest_prefix(name)?,
        };
        let per_token = |tokens: u64, usd_per_million: f64| tokens as f64 * usd_per_million / 1e6;
        Some(
            per_token(usage.input_tokens, price.input)
                + per_token(usage.output_tokens, price.output)
                + per_token(
                    usage.cache_read_input_tokens,
                    price.cache_read.unwrap_or(price.input),
                )
                + per_token(
                    usage.cache_creation_input_tokens,
                    price.cache_write.unwrap_or(price.input),
                ),
        )
    }
}

/// The model's own name: after a provider prefix, a region prefix and a vendor prefix
/// (`bedrock/us.anthropic.claude-…` is `claude-…`).
fn normalize(model: &str) -> &str {
    let mut name = model.rsplit('/').next().unwrap_or(model);
    // Region and vendor prefixes are plain words; a model's own dots (`gpt-4.1`) follow digits.
    while let Some((head, rest)) = name.split_once('.') {
        if head.is_empty() || !head.bytes().all(|b| b.is_ascii_lowercase()) {
            break;
        }
        name = rest;
    }
    name
}

fn longest_prefix(name: &str) -> Option<Price> {
    LIST_PRICES
        .iter()
        .filter(|(prefix, _)| name.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, price)| *price)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        }
    }

    #[test]
    fn list_prices_take_the_longest_prefix() {
        let pricing = Pricing::default();
        let mini = pricing
            .cost(
                "openai",
                "openai/gpt-4o-mini-2024-07-18",
                &usage(1_000_000, 1_000_000),
            )
            .unwrap();
        assert!((mini - 0.75).abs() < 1e-9, "{mini}");
        let sonnet = pricing
            .cost("anthropic", "claude-sonnet-4-5-20250929", &usage(1000, 100))
            .unwrap();
        assert!((sonnet - (0.003 + 0.0015)).abs() < 1e-12, "{sonnet}");
        let bedrock = pricing.cost(
            "bedrock",
            "bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0",
            &usage(1_000_000, 0),
        );
        assert_eq!(bedrock, Some(0.8));
        assert_eq!(
            pricing.cost("ollama", "ollama/llama3.1:8b", &usage(5, 5)),
            Some(0.0)
        );
        assert_eq!(pricing.cost("openai", "openai/mystery", &usage(5, 5)), None);
    }

    #[test]
    fn cache_tokens_and_overrides() {
        let u = Usage {
            input_tokens: 0,
            output_tokens: 0,
            cache_read_input_tokens: 1_000_000,
            cache_creation_input_tokens: 1_000_000,
        };
        let cached = Pricing::default()
            .cost("anthropic", "claude-3-5-haiku-latest", &u)
            .unwrap();
        assert!((cached - 1.08).abs() < 1e-9, "{cached}");
        let own = Pricing::new(BTreeMap::from([(
            "openai/mystery".to_owned(),
            Price {
                input: 2.0,
                output: 4.0,
                cache_read: None,
                cache_write: None,
            },
        )]));
        assert_eq!(
            own.cost("openai", "openai/mystery", &usage(1_000_000, 500_000)),
            Some(4.0)
        );
    }
}
