//! Recordings (JSON lines) and replay.
