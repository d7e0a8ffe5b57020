//! The registry of provider families. Adding a provider: its own module (a file or a folder)
//! here, and one line in the `registry!` list below.

use crate::provider::ProviderFactory;

use std::sync::LazyLock;

/// Declares each module and lists its factories (`FACTORIES`: one per family it serves), so
/// one line registers a provider.
macro_rules! registry {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $($(#[$attr])* pub mod $name;)*

        static ALL: LazyLock<Vec<&'static ProviderFactory>> = LazyLock::new(|| {
            let modules: &[&'static [ProviderFactory]] = &[$($(#[$attr])* $name::FACTORIES,)*];
            modules.iter().flat_map(|m| m.iter()).collect()
        });
    };
}

registry! {
    anthropic,
    compat,
    azure,
    bedrock,
    ollama,
    gemini,
    vertex,
    #[cfg(feature = "test-dialect")] dummy,
}

/// Every provider family this build knows, in a stable order.
pub fn factories() -> &'static [&'static ProviderFactory] {
    &ALL
}

/// The family configured under `name`.
pub fn factory(name: &str) -> Option<&'static ProviderFactory> {
    factories().iter().copied().find(|f| f.name == name)
}
