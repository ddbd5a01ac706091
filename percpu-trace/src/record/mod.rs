//! Recordings: the live event stream as JSON lines, and replay through the engine.
//!
//! Format (version 2; version 1 is still read: it wrote addresses as numbers), one JSON
//! object per line:
//! 1. a header: `{"format":"percpu-trace-recording","version":2,"engine":{EngineConfig},
//!    ...RunInfo fields (kernel_release, arch, fix_present, hostname, probes, filter...)}`;
//! 2. then records tagged by `"t"`:
//!    - `{"t":"event", ...Event fields...}` (the [`Event`] flattened next to the tag),
//!    - `{"t":"stack","id":N,"frames":[Frame...]}`, written before the first event using it,
//!    - `{"t":"drops","ringbuf_full":N,...}`: cumulative loss counters by reason,
//!    - `{"t":"run","elapsed_ns":N,"ended":bool}`: the run's wall-clock length so far.
//!
//! Files: `format` (the header, records and errors), `writer`, `reader`, `replay`.
//!
//! Readers never panic on bad input: every error names the line number and byte offset.
//! Records are read tolerantly, since the tool runs when a host is in trouble and a
//! recording may end in a crash or a full disk: a torn last line (no newline, not a whole
//! record) and corrupt lines in the middle are skipped and counted (with the line and byte
//! offset of the first), so the rest of the recording still replays. A bad header still
//! fails, in one line.
mod format;
mod reader;
mod replay;
mod writer;

#[cfg(test)]
mod tests;

pub use format::{
    Header, Record, RecordError, RecordErrorKind, FORMAT, MAX_LINE, OLDEST_VERSION, VERSION,
};
pub use reader::RecordingReader;
pub use replay::{replay, replay_file, replay_reader, ReplaySummary};
pub use writer::RecordingWriter;
