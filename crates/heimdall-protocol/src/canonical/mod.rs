//! The canonical form between every front door and every upstream dialect: requests,
//! responses, usage, the stream vocabularies and the one [`Assembler`] that owns the stream
//! grammar.

mod assembler;
mod json_scan;
mod media;
mod request;
mod response;
mod stream;
mod usage;

pub use assembler::Assembler;
pub use media::{InlineMedia, MediaKind, UrlMedia};
pub use request::*;
pub use response::{ContentBlock, Response, StopReason};
pub use stream::{BlockDelta, BlockStart, Delta, Event, StreamEncoder};
pub use usage::Usage;
