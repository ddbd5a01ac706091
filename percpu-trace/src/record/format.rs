//! The recording format: header, records, and read errors.
use std::{collections::BTreeMap, io, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{
    engine::EngineConfig,
    event::{Event, Frame},
    run::RunInfo,
};

/// Value of the header's `format` field.
pub const FORMAT: &str = "percpu-trace-recording";
/// The version this code writes (and the newest it reads). Version 2 writes kernel
/// addresses (frame addresses, lock, call site, chunk base, returned pointer) as hex
/// strings; version 1 wrote them as numbers and is still read ([`crate::hex`]).
pub const VERSION: u32 = 2;
/// The oldest version this code reads.
pub const OLDEST_VERSION: u32 = 1;
/// Longest line accepted, so a corrupt file without newlines cannot exhaust memory.
pub const MAX_LINE: usize = 16 << 20;

/// The first line of a recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] for files this code writes.
    pub version: u32,
    /// Engine configuration the live run used (gfp/PF bits of that kernel, limits).
    #[serde(default)]
    pub engine: EngineConfig,
    /// What was traced and how (host, kernel, fix evidence, attach result, filters...):
    /// the same struct reports show, written at the top level of the header.
    #[serde(flatten)]
    pub run: RunInfo,
    /// Anything else a writer wants to keep (e.g. a test's `source`); recordings made
    /// before the run facts were typed kept them here, see
    /// [`RunInfo::fill_from_legacy_extra`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Header {
    /// A header for this tool version with the given engine configuration.
    pub fn new(engine: EngineConfig) -> Self {
        let run = RunInfo {
            fix_present: engine.fix_present,
            ..RunInfo::default()
        };
        Header::with_run(engine, run)
    }

    /// A header for a run with these facts.
    pub fn with_run(engine: EngineConfig, run: RunInfo) -> Self {
        Header {
            format: FORMAT.to_string(),
            version: VERSION,
            engine,
            run,
            extra: BTreeMap::new(),
        }
    }

    /// The engine configuration to replay with: the recorded kernel's bits, this tool's
    /// own limits (a file must not be able to set `max_findings: 0` and hide every
    /// finding), and the one reconciliation of the fix status: the engine's own when it
    /// has one, else the header's.
    pub fn engine_config(&self) -> EngineConfig {
        let limits = EngineConfig::default();
        EngineConfig {
            fix_present: self.engine.fix_present.or(self.run.fix_present),
            max_tasks: limits.max_tasks,
            max_findings: limits.max_findings,
            max_recent_reclaims: limits.max_recent_reclaims,
            max_counter_keys: limits.max_counter_keys,
            max_pending_links: limits.max_pending_links,
            ..self.engine.clone()
        }
    }
}

/// One record after the header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Record {
    /// A decoded event.
    Event(Event),
    /// A stack table entry.
    Stack {
        /// Kernel stack id.
        id: u32,
        /// Symbolized frames, innermost first.
        frames: Vec<Frame>,
    },
    /// Cumulative loss counters by reason (`drop_reason::NAMES` and userspace reasons).
    Drops(BTreeMap<String, u64>),
    /// Host-wide activity totals counted in the kernel (cumulative, by name).
    Activity(BTreeMap<String, u64>),
    /// Wall-clock time since the run started, written every few seconds and at the end
    /// (`ended`), so a recording cut short by a kill still says how long it ran.
    Run {
        /// Nanoseconds since the run started.
        elapsed_ns: u64,
        /// The run ended cleanly (its last record).
        #[serde(default)]
        ended: bool,
    },
}

/// What went wrong reading a recording.
#[derive(Debug)]
pub enum RecordErrorKind {
    /// The file could not be read.
    Io(io::Error),
    /// The file is empty.
    Empty,
    /// The first line is not a recording header.
    NotARecording(String),
    /// A version this code cannot read.
    UnsupportedVersion(u32),
    /// A line is not valid JSON for a record (records are now skipped and counted
    /// instead, see [`RecordingReader::skipped_lines`]).
    Corrupt(String),
    /// The last line is incomplete (no newline and not a whole record): only for the
    /// header; a torn record is skipped (see [`RecordingReader::torn_tail`]).
    Truncated(String),
    /// A line longer than [`MAX_LINE`].
    LineTooLong,
}

/// An error reading a recording, with where it happened.
#[derive(Debug)]
pub struct RecordError {
    /// The file, when reading one.
    pub path: Option<PathBuf>,
    /// 1-based line number (0 when not tied to a line).
    pub line: u64,
    /// Byte offset of the start of that line.
    pub offset: u64,
    /// What went wrong.
    pub kind: RecordErrorKind,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = &self.path {
            write!(f, "{}: ", p.display())?;
        }
        write!(f, "line {} (byte offset {}): ", self.line, self.offset)?;
        match &self.kind {
            RecordErrorKind::Io(e) => write!(f, "read error: {e}"),
            RecordErrorKind::Empty => write!(f, "empty file, not a percpu-trace recording"),
            RecordErrorKind::NotARecording(why) => {
                write!(f, "not a percpu-trace recording header: {why}")
            }
            RecordErrorKind::UnsupportedVersion(v) => {
                write!(
                    f,
                    "recording version {v} is not supported (this tool reads \
                     {OLDEST_VERSION} to {VERSION})"
                )
            }
            RecordErrorKind::Corrupt(why) => write!(f, "corrupt record: {why}"),
            RecordErrorKind::Truncated(why) => write!(f, "truncated recording: {why}"),
            RecordErrorKind::LineTooLong => {
                write!(f, "corrupt recording: line longer than {MAX_LINE} bytes")
            }
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            RecordErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}
