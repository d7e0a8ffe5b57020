//! Translation between dialects.
