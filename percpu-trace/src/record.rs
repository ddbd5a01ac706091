//! Recordings: the live event stream as JSON lines, and replay through the engine.
//!
//! Format (version 1), one JSON object per line:
//! 1. a header: `{"format":"percpu-trace-recording","version":1,"kernel_release":...,
//!    "arch":...,"fix_present":...,"engine":{EngineConfig},"attach_mode":...,...}`;
//! 2. then records tagged by `"t"`:
//!    - `{"t":"event", ...Event fields...}` (the [`Event`] flattened next to the tag),
//!    - `{"t":"stack","id":N,"frames":[Frame...]}`, written before the first event using it,
//!    - `{"t":"drops","ringbuf_full":N,...}`: cumulative loss counters by reason.
//!
//! Readers never panic on bad input: every error names the line number and byte offset.
use std::{
    collections::{BTreeMap, HashSet},
    fs::File,
    io::{self, BufRead, BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    engine::{Engine, EngineConfig},
    event::{Event, Frame},
};

/// Value of the header's `format` field.
pub const FORMAT: &str = "percpu-trace-recording";
/// The version this code writes and reads.
pub const VERSION: u32 = 1;
/// Longest line accepted, so a corrupt file without newlines cannot exhaust memory.
pub const MAX_LINE: usize = 16 << 20;

/// The first line of a recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] for files this code writes.
    pub version: u32,
    /// `uname -r` of the traced kernel.
    #[serde(default)]
    pub kernel_release: Option<String>,
    /// Machine architecture (`x86_64`, `aarch64`).
    #[serde(default)]
    pub arch: Option<String>,
    /// Whether the kernel has the percpu fix series (`None`: unknown).
    #[serde(default)]
    pub fix_present: Option<bool>,
    /// Engine configuration the live run used (gfp/PF bits of that kernel).
    #[serde(default)]
    pub engine: EngineConfig,
    /// How probes were attached (e.g. "kprobe", "fentry", "tracepoint").
    #[serde(default)]
    pub attach_mode: Option<String>,
    /// Version of the tool that wrote it.
    #[serde(default)]
    pub tool_version: Option<String>,
    /// Anything else the writer wants to keep (host, workload, probe list...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Header {
    /// A header for this tool version with the given engine configuration.
    pub fn new(engine: EngineConfig) -> Self {
        Header {
            format: FORMAT.to_string(),
            version: VERSION,
            kernel_release: None,
            arch: None,
            fix_present: engine.fix_present,
            engine,
            attach_mode: None,
            tool_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            extra: BTreeMap::new(),
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
    /// A line is not valid JSON for a record.
    Corrupt(String),
    /// The last line is incomplete (no newline and not a whole record).
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
                    "recording version {v} is not supported (this tool reads {VERSION})"
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

/// Writes a recording. Buffered; flushed by [`RecordingWriter::finish`] or on drop.
pub struct RecordingWriter<W: Write> {
    out: Option<BufWriter<W>>,
    stacks: HashSet<u32>,
    line: Vec<u8>,
}

impl RecordingWriter<File> {
    /// Creates (truncates) `path` and writes the header.
    pub fn create(path: &Path, header: &Header) -> io::Result<Self> {
        let f = File::create(path)?;
        RecordingWriter::new(f, header)
    }
}

impl<W: Write> RecordingWriter<W> {
    /// Writes the header to `out`.
    pub fn new(out: W, header: &Header) -> io::Result<Self> {
        let mut w = RecordingWriter {
            out: Some(BufWriter::with_capacity(256 << 10, out)),
            stacks: HashSet::new(),
            line: Vec::with_capacity(512),
        };
        w.put(header)?;
        Ok(w)
    }

    fn put<T: Serialize>(&mut self, v: &T) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, v).map_err(io::Error::other)?;
        self.line.push(b'\n');
        match &mut self.out {
            Some(o) => o.write_all(&self.line),
            None => Err(io::Error::other("recording already finished")),
        }
    }

    /// Writes an event. Write its stack first with [`RecordingWriter::write_stack`].
    pub fn write_event(&mut self, ev: &Event) -> io::Result<()> {
        #[derive(Serialize)]
        struct Tagged<'a> {
            t: &'static str,
            #[serde(flatten)]
            ev: &'a Event,
        }
        self.put(&Tagged { t: "event", ev })
    }

    /// Whether stack `id` was written already.
    pub fn has_stack(&self, id: u32) -> bool {
        self.stacks.contains(&id)
    }

    /// Writes a stack table entry; a no-op for an id already written.
    pub fn write_stack(&mut self, id: u32, frames: &[Frame]) -> io::Result<()> {
        if !self.stacks.insert(id) {
            return Ok(());
        }
        #[derive(Serialize)]
        struct Stack<'a> {
            t: &'static str,
            id: u32,
            frames: &'a [Frame],
        }
        self.put(&Stack {
            t: "stack",
            id,
            frames,
        })
    }

    /// Writes the cumulative loss counters.
    pub fn write_drops(&mut self, counters: &BTreeMap<String, u64>) -> io::Result<()> {
        self.put(&Record::Drops(counters.clone()))
    }

    /// Writes any record.
    pub fn write_record(&mut self, r: &Record) -> io::Result<()> {
        match r {
            Record::Event(ev) => self.write_event(ev),
            Record::Stack { id, frames } => self.write_stack(*id, frames),
            Record::Drops(d) => self.write_drops(d),
        }
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        let out = self.out.take().expect("out is only taken here");
        out.into_inner().map_err(|e| e.into_error())
    }
}

impl<W: Write> Drop for RecordingWriter<W> {
    fn drop(&mut self) {
        if let Some(o) = &mut self.out {
            // Best effort: errors are reported by finish(), which callers should use.
            let _ = o.flush();
        }
    }
}

/// Reads a recording: the header on construction, then records as an iterator.
/// After the first error the iterator ends.
pub struct RecordingReader<R: BufRead> {
    input: R,
    path: Option<PathBuf>,
    header: Header,
    line_no: u64,
    offset: u64,
    buf: Vec<u8>,
    done: bool,
}

impl RecordingReader<BufReader<File>> {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        let f = File::open(path).map_err(|e| RecordError {
            path: Some(path.to_path_buf()),
            line: 0,
            offset: 0,
            kind: RecordErrorKind::Io(e),
        })?;
        let mut r =
            RecordingReader::new(BufReader::with_capacity(256 << 10, f)).map_err(|mut e| {
                e.path = Some(path.to_path_buf());
                e
            })?;
        r.path = Some(path.to_path_buf());
        Ok(r)
    }
}

impl<R: BufRead> RecordingReader<R> {
    /// Reads the header from `input`.
    pub fn new(input: R) -> Result<Self, RecordError> {
        let mut r = RecordingReader {
            input,
            path: None,
            header: Header::new(EngineConfig::default()),
            line_no: 0,
            offset: 0,
            buf: Vec::with_capacity(512),
            done: false,
        };
        let complete = match r.next_line() {
            Ok(Some(c)) => c,
            Ok(None) => return Err(r.err(RecordErrorKind::Empty)),
            Err(e) => return Err(e),
        };
        let v: serde_json::Value = serde_json::from_slice(&r.buf).map_err(|e| {
            let why = e.to_string();
            r.err(if complete {
                RecordErrorKind::NotARecording(why)
            } else {
                RecordErrorKind::Truncated(why)
            })
        })?;
        if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(r.err(RecordErrorKind::NotARecording(format!(
                "missing \"format\":\"{FORMAT}\""
            ))));
        }
        let version = v.get("version").and_then(|x| x.as_u64()).unwrap_or(0);
        if version != u64::from(VERSION) {
            return Err(r.err(RecordErrorKind::UnsupportedVersion(
                u32::try_from(version).unwrap_or(u32::MAX),
            )));
        }
        r.header = serde_json::from_value(v)
            .map_err(|e| r.err(RecordErrorKind::NotARecording(e.to_string())))?;
        Ok(r)
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Line number of the last line read (1-based).
    pub fn line(&self) -> u64 {
        self.line_no
    }

    fn err(&self, kind: RecordErrorKind) -> RecordError {
        RecordError {
            path: self.path.clone(),
            line: self.line_no,
            offset: self.offset,
            kind,
        }
    }

    /// Reads the next non-empty line into `buf`. Returns whether it ended with a newline,
    /// or `None` at end of input. Updates `line_no` and `offset` (start of that line).
    fn next_line(&mut self) -> Result<Option<bool>, RecordError> {
        loop {
            // Offset of the line we are about to read.
            self.offset += self.buf.len() as u64;
            self.buf.clear();
            let n = (&mut self.input)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| {
                    let mut er = self.err(RecordErrorKind::Io(e));
                    er.line += 1;
                    er
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let complete = self.buf.last() == Some(&b'\n');
            if !complete && self.buf.len() > MAX_LINE {
                return Err(self.err(RecordErrorKind::LineTooLong));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue; // tolerate blank lines
            }
            return Ok(Some(complete));
        }
    }
}

impl<R: BufRead> Iterator for RecordingReader<R> {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let complete = match self.next_line() {
            Ok(Some(c)) => c,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        match serde_json::from_slice::<Record>(&self.buf) {
            Ok(r) => Some(Ok(r)),
            Err(e) => {
                self.done = true;
                let why = e.to_string();
                Some(Err(self.err(if complete {
                    RecordErrorKind::Corrupt(why)
                } else {
                    RecordErrorKind::Truncated(why)
                })))
            }
        }
    }
}

/// What a replay saw.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReplaySummary {
    /// The recording's header.
    pub header: Header,
    /// Events fed to the engine.
    pub events: u64,
    /// The stack table, for rendering findings' `stack_ids`.
    pub stacks: BTreeMap<u32, Vec<Frame>>,
    /// Events that referenced a stack id not (yet) in the table.
    pub missing_stacks: u64,
    /// The last loss counters in the recording.
    pub drops: BTreeMap<String, u64>,
    /// Timestamp of the first and last event.
    pub first_ns: Option<u64>,
    /// See `first_ns`.
    pub last_ns: Option<u64>,
}

/// Runs the recording at `path` through `engine` (create it with the header's engine
/// configuration, see [`replay_file`], to judge with the recorded kernel's bits).
pub fn replay(path: &Path, engine: &mut Engine) -> Result<ReplaySummary, RecordError> {
    let reader = RecordingReader::open(path)?;
    replay_reader(reader, engine)
}

/// Opens `path`, builds an engine from its header (`EngineConfig` with the header's
/// `fix_present` when the config has none) and replays it. Returns the engine and summary.
pub fn replay_file(path: &Path) -> Result<(Engine, ReplaySummary), RecordError> {
    let reader = RecordingReader::open(path)?;
    let mut cfg = reader.header().engine.clone();
    if cfg.fix_present.is_none() {
        cfg.fix_present = reader.header().fix_present;
    }
    let mut engine = Engine::new(cfg);
    let summary = replay_reader(reader, &mut engine)?;
    Ok((engine, summary))
}

/// [`replay`] from any reader.
pub fn replay_reader<R: BufRead>(
    mut reader: RecordingReader<R>,
    engine: &mut Engine,
) -> Result<ReplaySummary, RecordError> {
    let mut s = ReplaySummary {
        header: reader.header().clone(),
        events: 0,
        stacks: BTreeMap::new(),
        missing_stacks: 0,
        drops: BTreeMap::new(),
        first_ns: None,
        last_ns: None,
    };
    for rec in &mut reader {
        match rec? {
            Record::Event(ev) => {
                if ev.stack_id.is_some_and(|id| !s.stacks.contains_key(&id)) {
                    s.missing_stacks += 1;
                }
                s.first_ns.get_or_insert(ev.ts_ns);
                s.last_ns = Some(ev.ts_ns);
                s.events += 1;
                engine.process(&ev);
            }
            Record::Stack { id, frames } => {
                s.stacks.insert(id, frames);
            }
            Record::Drops(d) => s.drops = d,
        }
    }
    Ok(s)
}
