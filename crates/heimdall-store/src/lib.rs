//! The logs store.
