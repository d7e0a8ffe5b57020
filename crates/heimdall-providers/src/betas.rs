//! Which `anthropic-beta` values each Claude platform takes.
//!
//! Anthropic's own API takes every beta (an unknown one is its to refuse). Claude on Vertex,
//! Bedrock and Azure AI Foundry each accept a subset and answer 400 to the rest ("Unexpected
//! value(s) … for the anthropic-beta header"), which breaks clients such as Claude Code that
//! send several betas on every request. So a beta goes to those platforms only when its name
//! starts with a prefix in the platform's table (prefixes, so that a new date of the same beta
//! still matches). Upstreams of another dialect never get betas. The table is what the
//! platforms document today; `network_config.beta_header_overrides` (Bifrost's setting:
//! prefix → true to send, false to hold back) corrects it per provider without a release.

use http::HeaderValue;

/// Where a provider's Claude models run, as far as betas are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetaPlatform {
    /// Not a Claude upstream: no beta is sent.
    None,
    /// Anthropic's API: every beta.
    Anthropic,
    /// Claude on Vertex AI (`anthropic-beta` header).
    Vertex,
    /// Claude on Bedrock InvokeModel (`anthropic_beta` in the body).
    Bedrock,
    /// Claude on Azure AI Foundry (`anthropic-beta` header).
    Foundry,
}

/// Betas the three clouds share: extended output, thinking between tool calls, the 1M
/// context window, context editing and compaction, token-efficient and fine-grained tool
/// input, and the client-side tools (computer use, bash, text editor, memory).
const CLOUD: &[&str] = &[
    "interleaved-thinking-",
    "context-1m-",
    "context-management-",
    "compact-",
    "fine-grained-tool-streaming-",
    "token-efficient-tools-",
    "output-128k-",
    "computer-use-",
];
const VERTEX_ONLY: &[&str] = &["tool-search-tool-", "web-search-"];
const BEDROCK_ONLY: &[&str] = &["tool-search-tool-", "structured-outputs-"];
const FOUNDRY_ONLY: &[&str] = &[
    "structured-outputs-",
    "files-api-",
    "code-execution-",
    "web-fetch-",
    "web-search-",
    "mcp-client-",
    "prompt-caching-scope-",
    "effort-",
];

impl BetaPlatform {
    /// Whether the platform's table takes `beta` (before any override).
    fn takes(self, beta: &str) -> bool {
        let extra = match self {
            Self::None => return false,
            Self::Anthropic => return true,
            Self::Vertex => VERTEX_ONLY,
            Self::Bedrock => BEDROCK_ONLY,
            Self::Foundry => FOUNDRY_ONLY,
        };
        CLOUD.iter().chain(extra).any(|p| beta.starts_with(p))
    }
}

/// `network_config.beta_header_overrides`: the longest matching prefix decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BetaOverrides(Vec<(String, bool)>);

impl BetaOverrides {
    pub fn new(prefixes: impl IntoIterator<Item = (String, bool)>) -> Self {
        let mut list: Vec<_> = prefixes.into_iter().collect();
        list.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Self(list)
    }

    fn verdict(&self, beta: &str) -> Option<bool> {
        self.0
            .iter()
            .find(|(prefix, _)| beta.starts_with(prefix.as_str()))
            .map(|&(_, send)| send)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The beta names in `anthropic-beta` values: comma-separated, possibly in several headers.
pub fn beta_names<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
) -> impl Iterator<Item = &'a str> {
    values
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty())
}

/// The betas among the client's `anthropic-beta` values (comma-separated, possibly in several
/// headers) that `platform` takes, in the client's order, without duplicates.
pub fn filter_betas<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    platform: BetaPlatform,
    overrides: &BetaOverrides,
) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for beta in beta_names(values) {
        let send = platform != BetaPlatform::None
            && overrides
                .verdict(beta)
                .unwrap_or_else(|| platform.takes(beta));
        if send && !out.contains(&beta) {
            out.push(beta);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &[&'static str], platform: BetaPlatform, o: &BetaOverrides) -> Vec<String> {
        let values: Vec<_> = values.iter().map(|v| HeaderValue::from_static(v)).collect();
        filter_betas(&values, platform, o)
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    const CLAUDE_CODE: &[&str] = &[
        "claude-code-20250219,interleaved-thinking-2025-05-14",
        "fine-grained-tool-streaming-2025-05-14, effort-2025-11-24",
    ];

    #[test]
    fn each_platform_gets_what_its_table_takes() {
        let none = BetaOverrides::default();
        assert_eq!(
            run(CLAUDE_CODE, BetaPlatform::Anthropic, &none),
            [
                "claude-code-20250219",
                "interleaved-thinking-2025-05-14",
                "fine-grained-tool-streaming-2025-05-14",
                "effort-2025-11-24"
            ]
        );
        let cloud = [
            "interleaved-thinking-2025-05-14",
            "fine-grained-tool-streaming-2025-05-14",
        ];
        assert_eq!(run(CLAUDE_CODE, BetaPlatform::Vertex, &none), cloud);
        assert_eq!(run(CLAUDE_CODE, BetaPlatform::Bedrock, &none), cloud);
        assert_eq!(
            run(CLAUDE_CODE, BetaPlatform::Foundry, &none),
            [
                "interleaved-thinking-2025-05-14",
                "fine-grained-tool-streaming-2025-05-14",
                "effort-2025-11-24"
            ]
        );
        assert!(run(CLAUDE_CODE, BetaPlatform::None, &none).is_empty());
    }

    #[test]
    fn overrides_win_longest_prefix_first_and_duplicates_go() {
        let o = BetaOverrides::new([
            ("claude-code-".to_owned(), true),
            ("interleaved-".to_owned(), false),
            ("interleaved-thinking-2025-05-14".to_owned(), true),
            ("fine-grained-".to_owned(), false),
        ]);
        assert_eq!(
            run(
                &[CLAUDE_CODE[0], CLAUDE_CODE[1], "claude-code-20250219"],
                BetaPlatform::Vertex,
                &o
            ),
            ["claude-code-20250219", "interleaved-thinking-2025-05-14"]
        );
        // Overrides cannot make a non-Claude upstream take betas.
        assert!(run(CLAUDE_CODE, BetaPlatform::None, &o).is_empty());
    }
}
