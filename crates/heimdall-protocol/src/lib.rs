//! The canonical form, the dialects Heimdall speaks, and pure translation between them.
//!
//! **Architecture invariant:** nothing in this crate does IO, reads a clock or draws random
//! numbers, and it depends on no other Heimdall crate. Every function is deterministic given
//! its input, so it is tested with golden files. Ids that must be fresh (message ids) are
//! passed in by the caller.
//!
//! Layout:
//! - [`canonical`]: the form every front door and upstream dialect meets in, the stream
//!   vocabularies ([`canonical::Delta`], [`canonical::Event`]) and the one
//!   [`canonical::Assembler`] that owns the stream grammar.
//! - [`dialect`]: one folder per wire dialect, behind the traits the exchange uses.
//! - [`framing`]: how a byte stream splits into messages (SSE today).
//! - [`error`]: the error vocabulary and its HTTP status mapping.
//! - [`ids`], [`time`]: identifier rules and calendar arithmetic the wire formats need.

pub mod canonical;
pub mod dialect;
pub mod error;
pub mod framing;
pub mod ids;
pub mod time;
