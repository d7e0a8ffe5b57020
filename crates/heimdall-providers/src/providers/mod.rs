//! The registry of provider families. Adding a provider: its own module (a file or a folder)
//! here, and one line in the `registry!` list below.

use crate::provider::ProviderFactory;

/// Declares each family's module and lists its factory, so one line registers a provider.
macro_rules! registry {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $($(#[$attr])* pub mod $name;)*

        /// Every provider family this build knows, in a stable order.
        pub fn factories() -> &'static [ProviderFactory] {
            const ALL: &[ProviderFactory] = &[$($(#[$attr])* $name::FACTORY,)*];
            ALL
        }
    };
}

registry! {
    anthropic,
    openai,
    gemini,
    vertex,
    #[cfg(feature = "test-dialect")] dummy,
}

/// The family configured under `name`.
pub fn factory(name: &str) -> Option<&'static ProviderFactory> {
    factories().iter().find(|f| f.name == name)
}
