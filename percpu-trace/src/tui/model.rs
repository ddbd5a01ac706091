//! The live tables the UI shows are the engine's ([`crate::engine::tables`]): re-exported
//! here for the panes that draw them.
pub use crate::engine::tables::{CallerRow, ChunkRow, MAX_ROWS, OVERFLOW};
