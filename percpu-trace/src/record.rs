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
//! Records are read tolerantly, since the tool runs when a host is in trouble and a
//! recording may end in a crash or a full disk: a torn last line (no newline, not a whole
//! record) and corrupt lines in the middle are skipped and counted (with the line and byte
//! offset of the first), so the rest of the recording still replays. A bad header still
//! fails, in one line.
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
    run::RunInfo,
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

    /// The engine configuration to replay with. The one reconciliation of the fix status:
    /// the engine's own when it has one, else the header's.
    pub fn engine_config(&self) -> EngineConfig {
        let mut cfg = self.engine.clone();
        if cfg.fix_present.is_none() {
            cfg.fix_present = self.run.fix_present;
        }
        cfg
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
    /// Creates `path` and writes the header: [`RecordingWriter::create_with`] without
    /// `force`.
    pub fn create(path: &Path, header: &Header) -> io::Result<Self> {
        Self::create_with(path, header, false)
    }

    /// Creates `path` with [`crate::output::create_private`] (never through a symlink,
    /// mode 0600, another user's file replaced only with `force`) and writes the header.
    pub fn create_with(path: &Path, header: &Header, force: bool) -> io::Result<Self> {
        let f = crate::output::create_private(path, force)?;
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

    /// Writes the run's wall-clock length so far.
    pub fn write_run(&mut self, elapsed_ns: u64, ended: bool) -> io::Result<()> {
        self.put(&Record::Run { elapsed_ns, ended })
    }

    /// Pushes what is buffered to the file (each record is a whole line, so a reader
    /// after a crash sees complete lines up to the last flush).
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }

    /// Writes any record.
    pub fn write_record(&mut self, r: &Record) -> io::Result<()> {
        match r {
            Record::Event(ev) => self.write_event(ev),
            Record::Stack { id, frames } => self.write_stack(*id, frames),
            Record::Drops(d) => self.write_drops(d),
            Record::Run { elapsed_ns, ended } => self.write_run(*elapsed_ns, *ended),
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
/// Corrupt record lines and a torn last line are skipped and counted (see
/// [`RecordingReader::skipped_lines`]); a read error ends the iterator after yielding it.
pub struct RecordingReader<R: BufRead> {
    input: R,
    path: Option<PathBuf>,
    header: Header,
    line_no: u64,
    offset: u64,
    buf: Vec<u8>,
    done: bool,
    skipped: u64,
    first_skipped: Option<(u64, u64)>,
    torn_tail: bool,
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
            skipped: 0,
            first_skipped: None,
            torn_tail: false,
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
        let extra = r.header.extra.clone();
        r.header.run.fill_from_legacy_extra(&extra);
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

    /// Record lines skipped so far as corrupt (a torn last line included).
    pub fn skipped_lines(&self) -> u64 {
        self.skipped
    }

    /// Line number (1-based) and byte offset of the first skipped line.
    pub fn first_skipped(&self) -> Option<(u64, u64)> {
        self.first_skipped
    }

    /// Whether the last line was incomplete (no newline, not a whole record) and skipped:
    /// what a crash or a full disk leaves.
    pub fn torn_tail(&self) -> bool {
        self.torn_tail
    }

    /// [`ReplaySummary::skipped_warning`] for what this reader skipped so far.
    pub fn skipped_warning(&self) -> Option<String> {
        skipped_text(self.skipped, self.first_skipped, self.torn_tail)
    }

    fn note_skip(&mut self) {
        self.skipped += 1;
        self.first_skipped
            .get_or_insert((self.line_no, self.offset));
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
        loop {
            if self.done {
                return None;
            }
            let complete = match self.next_line() {
                Ok(Some(c)) => c,
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(RecordError {
                    kind: RecordErrorKind::LineTooLong,
                    ..
                }) => {
                    // Skip the rest of the overlong line without holding it in memory;
                    // the offset moves past what was skipped so later lines stay exact.
                    self.note_skip();
                    match self.input.skip_until(b'\n') {
                        Ok(n) => self.offset += n as u64,
                        Err(e) => {
                            self.done = true;
                            return Some(Err(self.err(RecordErrorKind::Io(e))));
                        }
                    }
                    continue;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            match serde_json::from_slice::<Record>(&self.buf) {
                Ok(r) => return Some(Ok(r)),
                Err(_) => {
                    // Skip rather than fail: one damaged line must not hide the rest of
                    // a recording made while the host was in trouble. Only the last line
                    // can lack its newline (a crash or full disk cut it).
                    self.note_skip();
                    if !complete {
                        self.torn_tail = true;
                        self.done = true;
                        return None;
                    }
                }
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
    /// Wall-clock length of the run, from its latest `run` record.
    pub wall_ns: Option<u64>,
    /// The recording ends with a clean end-of-run record.
    pub ended: bool,
    /// Timestamp of the first and last event.
    pub first_ns: Option<u64>,
    /// See `first_ns`.
    pub last_ns: Option<u64>,
    /// Record lines skipped as corrupt, a torn last line included.
    #[serde(default)]
    pub skipped_lines: u64,
    /// Line number (1-based) and byte offset of the first skipped line.
    #[serde(default)]
    pub first_skipped: Option<(u64, u64)>,
    /// The last line was incomplete (a crash or a full disk cut it) and skipped.
    #[serde(default)]
    pub torn_tail: bool,
}

impl ReplaySummary {
    /// An empty summary for `header`: nothing replayed yet.
    pub fn new(header: Header) -> Self {
        ReplaySummary {
            header,
            events: 0,
            stacks: BTreeMap::new(),
            missing_stacks: 0,
            drops: BTreeMap::new(),
            wall_ns: None,
            ended: false,
            first_ns: None,
            last_ns: None,
            skipped_lines: 0,
            first_skipped: None,
            torn_tail: false,
        }
    }

    /// One line about skipped lines for a warning on stderr (`None` when nothing was
    /// skipped), e.g. "skipped 2 corrupt line(s) (first at line 7, byte offset 812);
    /// the last line was cut (crash or full disk?)".
    pub fn skipped_warning(&self) -> Option<String> {
        skipped_text(self.skipped_lines, self.first_skipped, self.torn_tail)
    }
}

fn skipped_text(n: u64, first: Option<(u64, u64)>, torn: bool) -> Option<String> {
    if n == 0 {
        return None;
    }
    let mut s = format!("skipped {n} corrupt line(s)");
    if let Some((line, offset)) = first {
        s.push_str(&format!(" (first at line {line}, byte offset {offset})"));
    }
    if torn {
        s.push_str("; the last line was cut (crash or full disk?)");
    }
    Some(s)
}

/// Runs the recording at `path` through `engine` (create it with the header's engine
/// configuration, see [`replay_file`], to judge with the recorded kernel's bits).
pub fn replay(path: &Path, engine: &mut Engine) -> Result<ReplaySummary, RecordError> {
    let reader = RecordingReader::open(path)?;
    replay_reader(reader, engine)
}

/// Opens `path`, builds an engine from its header ([`Header::engine_config`], and the
/// run's finding filter) and replays it. Returns the engine and summary.
pub fn replay_file(path: &Path) -> Result<(Engine, ReplaySummary), RecordError> {
    let reader = RecordingReader::open(path)?;
    let h = reader.header();
    let mut engine = Engine::with_filter(h.engine_config(), h.run.filter.clone());
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
        wall_ns: None,
        ended: false,
        first_ns: None,
        last_ns: None,
        skipped_lines: 0,
        first_skipped: None,
        torn_tail: false,
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
            Record::Drops(d) => {
                engine.set_losses(d.clone());
                s.drops = d;
            }
            Record::Run { elapsed_ns, ended } => {
                s.wall_ns = Some(elapsed_ns);
                s.ended = ended;
            }
        }
    }
    s.skipped_lines = reader.skipped_lines();
    s.first_skipped = reader.first_skipped();
    s.torn_tail = reader.torn_tail();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{
        e, fixed_kernel_stream, reclaim, reclaim_end, vulnerable_caller_stream, wait, wait_end, Ev,
    };
    use crate::engine::FindingKind;
    use crate::event::EventKind;
    use std::io::Cursor;

    fn frame(function: &str, offset: u64, len: u64) -> Frame {
        Frame {
            addr: 0xffff_ffff_8100_0000 + offset,
            function: Some(function.into()),
            offset,
            len: Some(len),
            module: None,
            ..Default::default()
        }
    }

    fn stacks() -> Vec<(u32, Vec<Frame>)> {
        let tail = |v: Vec<Frame>| {
            let mut v = v;
            v.push(frame("pcpu_alloc_noprof", 0x1f3, 0x900));
            v.push(frame("blkg_alloc", 0x8e, 0x3c0));
            v.push(frame("blkg_conf_prep", 0x2a1, 0x6a0));
            v
        };
        vec![
            (
                3,
                tail(vec![
                    frame("pcpu_get_vm_areas", 0x0, 0xb10),
                    frame("pcpu_create_chunk", 0x1e, 0x190),
                ]),
            ),
            (4, tail(vec![frame("pcpu_populate_chunk", 0x0, 0x3c0)])),
            (
                5,
                tail(vec![
                    frame("__pte_alloc_kernel", 0x0, 0xd0),
                    frame("vmap_pages_pte_range", 0x3a, 0x140),
                    frame("pcpu_populate_chunk", 0x12c, 0x3c0),
                ]),
            ),
            (
                7,
                tail(vec![
                    frame("try_to_free_pages", 0x0, 0x370),
                    frame("__alloc_pages_slowpath", 0x3ec, 0xe80),
                    frame("pcpu_populate_chunk", 0x1a0, 0x3c0),
                ]),
            ),
            (9, tail(vec![frame("__mutex_lock", 0x16e, 0x9c0)])),
        ]
    }

    /// Writes `evs` as a recording, with each stack written before its first use.
    fn write(header: &Header, evs: &[Event], drops: bool) -> Vec<u8> {
        let table = stacks();
        let mut w = RecordingWriter::new(Vec::new(), header).unwrap();
        for ev in evs {
            if let Some(id) = ev.stack_id {
                if !w.has_stack(id) {
                    let frames = table
                        .iter()
                        .find(|(i, _)| *i == id)
                        .map(|(_, f)| f.clone())
                        .unwrap_or_default();
                    w.write_stack(id, &frames).unwrap();
                }
            }
            w.write_event(ev).unwrap();
        }
        if drops {
            let d: BTreeMap<String, u64> =
                [("ringbuf_full".to_string(), 0), ("stack".to_string(), 2)].into();
            w.write_drops(&d).unwrap();
        }
        w.finish().unwrap()
    }

    fn header(release: &str, fix: Option<bool>, mode: &str) -> Header {
        let mut h = Header::new(EngineConfig {
            fix_present: fix,
            ..Default::default()
        });
        h.run.kernel_release = Some(release.into());
        h.run.arch = Some("x86_64".into());
        h.run.attach_mode = Some(mode.into());
        h.run.tool_version = Some("0.1.0".into());
        h.extra.insert(
            "source".into(),
            "synthetic (engine unit-test streams)".into(),
        );
        h
    }

    fn cross_task_stream() -> Vec<Event> {
        let mut v = vec![
            crate::engine::tests::enter(0, 20, 0xc00).comm("iomax-writer"),
            wait(1, 20).caller(0xc00).comm("iomax-writer"),
            reclaim(3, 30, 0xcc0).holding().comm("bpf-maps"),
            reclaim_end(13, 30).holding().comm("bpf-maps"),
            wait_end(20, 20).caller(0xc00).comm("iomax-writer"),
            crate::engine::tests::exit(21, 20).comm("iomax-writer"),
        ];
        // A second wait by a scope-constrained IO_FLUSHER, holder reclaiming again.
        v.push(reclaim(30, 30, 0xcc0).holding().comm("bpf-maps"));
        v.push(wait(31, 40).flags(0x80000).comm("io-flusher"));
        v.push(reclaim_end(35, 30).holding().comm("bpf-maps"));
        v.push(wait_end(36, 40).flags(0x80000).comm("io-flusher"));
        v.push(
            e(37, 40, EventKind::TaskExit)
                .flags(0x80000)
                .comm("io-flusher"),
        );
        v
    }

    fn scope_stream() -> Vec<Event> {
        let f = 0x80000;
        vec![
            crate::engine::tests::enter(0, 7, 0xcc0).flags(f),
            crate::engine::tests::populate(1, 7, Some(0xcc0))
                .caller(0xcc0)
                .flags(f),
            crate::engine::tests::vm_areas(2, 7, None)
                .caller(0xcc0)
                .flags(f),
            crate::engine::tests::pgtable(3, 7).caller(0xcc0).flags(f),
            reclaim(5, 7, 0xc00).caller(0xcc0).flags(f).holding(),
            reclaim_end(6, 7).caller(0xcc0).flags(f).holding(),
            crate::engine::tests::exit(7, 7).flags(f),
        ]
    }

    struct Fixture {
        name: &'static str,
        header: Header,
        events: Vec<Event>,
        expect: Vec<(FindingKind, u64)>,
    }

    fn fixtures() -> Vec<Fixture> {
        let mut vuln = Vec::new();
        for i in 0..3 {
            vuln.extend(
                vulnerable_caller_stream(100 + i, u64::from(i) * 1000)
                    .into_iter()
                    .map(|e| e.comm("iomax-writer")),
            );
        }
        vec![
            Fixture {
                name: "synthetic-7.2-gfp-noio-writer.jsonl",
                header: header("7.2.13+deb14-amd64", Some(false), "kprobe"),
                events: vuln,
                expect: vec![
                    (FindingKind::Window, 3),
                    (FindingKind::Window, 3),
                    (FindingKind::Recursion, 3),
                ],
            },
            Fixture {
                name: "synthetic-7.2-cross-task.jsonl",
                header: header("7.2.13+deb14-amd64", Some(false), "kprobe"),
                events: cross_task_stream(),
                expect: vec![(FindingKind::CrossTask, 1), (FindingKind::CrossTask, 1)],
            },
            Fixture {
                name: "synthetic-7.3-fixed.jsonl",
                header: header("7.3.4+deb13-amd64", Some(true), "kprobe"),
                events: fixed_kernel_stream(40, 0)
                    .into_iter()
                    .map(|e| e.comm("iomax-writer"))
                    .collect(),
                expect: vec![],
            },
            Fixture {
                name: "synthetic-7.2-io-flusher-scope.jsonl",
                header: header("7.2.13+deb14-amd64", Some(false), "kprobe"),
                events: scope_stream(),
                expect: vec![],
            },
        ]
    }

    fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recordings")
    }

    /// Regenerates the synthetic fixtures: `cargo test -p percpu-trace record::tests::write_fixtures -- --ignored`.
    #[test]
    #[ignore]
    fn write_fixtures() {
        std::fs::create_dir_all(fixture_dir()).unwrap();
        for f in fixtures() {
            std::fs::write(
                fixture_dir().join(f.name),
                write(&f.header, &f.events, true),
            )
            .unwrap();
        }
    }

    #[test]
    fn fixtures_replay_to_the_expected_findings() {
        for f in fixtures() {
            let path = fixture_dir().join(f.name);
            let (eng, summary) = replay_file(&path).unwrap_or_else(|e| panic!("{e}"));
            let got: Vec<(FindingKind, u64)> =
                eng.findings().iter().map(|x| (x.kind, x.count)).collect();
            assert_eq!(got, f.expect, "{}", f.name);
            assert_eq!(summary.events as usize, f.events.len(), "{}", f.name);
            assert_eq!(summary.missing_stacks, 0, "{}", f.name);
            assert_eq!(summary.drops.get("stack"), Some(&2));
            // The file on disk is what this code writes today (format stability).
            let fresh = write(&f.header, &f.events, true);
            assert_eq!(
                std::fs::read(&path).unwrap(),
                fresh,
                "{} is stale: run write_fixtures",
                f.name
            );
            // Same findings every time.
            let (again, _) = replay_file(&path).unwrap();
            assert_eq!(eng.findings(), again.findings());
            for finding in eng.findings() {
                for id in &finding.stack_ids {
                    assert!(summary.stacks.contains_key(id), "{}: stack {id}", f.name);
                }
            }
        }
    }

    #[test]
    fn a_recording_with_the_old_header_layout_still_replays() {
        // Written before the run facts were typed (header fields in the old order, facts
        // under `extra`): same findings, same header facts as today's file.
        let old = fixture_dir().join("legacy-header-7.2-gfp-noio-writer.jsonl");
        let new = fixture_dir().join("synthetic-7.2-gfp-noio-writer.jsonl");
        let (a, sa) = replay_file(&old).unwrap_or_else(|e| panic!("{e}"));
        let (b, sb) = replay_file(&new).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.findings(), b.findings());
        assert!(!a.findings().is_empty());
        assert_eq!(sa.header.run, sb.header.run);
        assert_eq!(sa.header.engine_config(), sb.header.engine_config());
    }

    #[test]
    fn round_trip() {
        let h = header("7.2.13", Some(false), "tracepoint");
        let evs = vulnerable_caller_stream(1, 0);
        let bytes = write(&h, &evs, true);
        let r = RecordingReader::new(Cursor::new(&bytes)).unwrap();
        assert_eq!(r.header(), &h);
        let recs: Vec<Record> = r.collect::<Result<_, _>>().unwrap();
        let got: Vec<&Event> = recs
            .iter()
            .filter_map(|r| {
                if let Record::Event(e) = r {
                    Some(e)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(got, evs.iter().collect::<Vec<_>>());
        assert!(matches!(recs.last(), Some(Record::Drops(d)) if d["stack"] == 2));
        let first_stack = recs
            .iter()
            .position(|r| matches!(r, Record::Stack { id: 4, .. }))
            .unwrap();
        let first_use = recs
            .iter()
            .position(|r| matches!(r, Record::Event(e) if e.stack_id == Some(4)))
            .unwrap();
        assert!(first_stack < first_use);
    }

    #[test]
    fn reads_what_the_live_recorder_writes() {
        // live.rs flattens the event next to "t".
        let ev = reclaim(5, 9, 0xcc0).holding();
        let mut v = serde_json::to_value(&ev).unwrap();
        v["t"] = "event".into();
        let text = format!(
            "{}\n{v}\n",
            serde_json::to_string(&Header::new(EngineConfig::default())).unwrap()
        );
        let recs: Vec<Record> = RecordingReader::new(Cursor::new(text))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(recs, vec![Record::Event(ev)]);
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Record>, RecordError> {
        RecordingReader::new(Cursor::new(bytes))?.collect()
    }

    /// Byte offset where line `n` (1-based) of `bytes` starts.
    fn line_start(bytes: &[u8], n: usize) -> usize {
        bytes
            .split_inclusive(|&b| b == b'\n')
            .take(n - 1)
            .map(<[u8]>::len)
            .sum()
    }

    // Was `corrupt_line_names_line_and_offset` (an error for the whole file): a corrupt
    // middle line is now skipped and counted, with its line and offset kept.
    #[test]
    fn corrupt_middle_line_is_skipped_and_counted() {
        let evs = vulnerable_caller_stream(1, 0);
        let bytes = write(&header("x", None, "kprobe"), &evs, false);
        let offset = line_start(&bytes, 4);
        let bad_line = bytes[offset..]
            .split_inclusive(|&b| b == b'\n')
            .next()
            .unwrap()
            .to_vec();
        let mut bad = bytes.clone();
        bad[offset + 5] = b'#';
        let mut r = RecordingReader::new(Cursor::new(&bad)).unwrap();
        let recs: Vec<Record> = (&mut r).collect::<Result<_, _>>().unwrap();
        assert_eq!(r.skipped_lines(), 1);
        assert_eq!(r.first_skipped(), Some((4, offset as u64)));
        assert!(!r.torn_tail());
        let all: Vec<Record> = read_all(&bytes).unwrap();
        let lost: Record = serde_json::from_slice(&bad_line).unwrap();
        let want: Vec<&Record> = all.iter().filter(|x| **x != lost).collect();
        assert_eq!(recs.iter().collect::<Vec<_>>(), want);
        // The replay sees the events before and after it, and says what it skipped.
        let mut eng = Engine::new(EngineConfig::default());
        let s = replay_reader(RecordingReader::new(Cursor::new(&bad)).unwrap(), &mut eng).unwrap();
        let lost_events = u64::from(matches!(lost, Record::Event(_)));
        assert_eq!(s.events, evs.len() as u64 - lost_events);
        assert_eq!(s.last_ns, evs.last().map(|e| e.ts_ns));
        assert_eq!(
            (s.skipped_lines, s.first_skipped, s.torn_tail),
            (1, Some((4, offset as u64)), false)
        );
        assert_eq!(
            s.skipped_warning().unwrap(),
            format!("skipped 1 corrupt line(s) (first at line 4, byte offset {offset})")
        );
    }

    #[test]
    fn several_corrupt_lines_keep_the_first_position() {
        let evs = vulnerable_caller_stream(1, 0);
        let bytes = write(&header("x", None, "kprobe"), &evs, true);
        let (o3, o6) = (line_start(&bytes, 3), line_start(&bytes, 6));
        let mut bad = bytes.clone();
        bad[o6] = b'!';
        bad[o3] = b'!';
        let mut eng = Engine::new(EngineConfig::default());
        let s = replay_reader(RecordingReader::new(Cursor::new(&bad)).unwrap(), &mut eng).unwrap();
        assert_eq!(
            (s.skipped_lines, s.first_skipped),
            (2, Some((3, o3 as u64)))
        );
        // The drops record after them is still read.
        assert_eq!(s.drops.get("stack"), Some(&2));
    }

    // Was `truncated_file_is_an_error_not_a_panic`: a torn last line is now skipped and
    // counted; a header cut short is still an error.
    #[test]
    fn recording_cut_mid_line_replays_every_complete_event() {
        let evs = vulnerable_caller_stream(1, 0);
        let bytes = write(&header("x", None, "kprobe"), &evs, false);
        let full = read_all(&bytes).unwrap();
        // Cut inside every record line in turn: what precedes the cut is all there.
        let starts: Vec<usize> = (2..=bytes.iter().filter(|&&b| b == b'\n').count())
            .map(|n| line_start(&bytes, n))
            .collect();
        for (i, &start) in starts.iter().enumerate() {
            let cut = start + 7;
            let mut r = RecordingReader::new(Cursor::new(&bytes[..cut])).unwrap();
            let recs: Vec<Record> = (&mut r).collect::<Result<_, _>>().unwrap();
            assert_eq!(recs, full[..i], "cut at {cut}");
            assert_eq!(r.skipped_lines(), 1);
            assert_eq!(r.first_skipped(), Some((i as u64 + 2, start as u64)));
            assert!(r.torn_tail());
            assert!(r
                .skipped_warning()
                .unwrap()
                .ends_with("(crash or full disk?)"));
        }
        let cut = bytes.len() - 7;
        let mut eng = Engine::new(EngineConfig::default());
        let s = replay_reader(
            RecordingReader::new(Cursor::new(&bytes[..cut])).unwrap(),
            &mut eng,
        )
        .unwrap();
        assert_eq!(s.events as usize, evs.len() - 1);
        assert_eq!(s.last_ns, Some(evs[evs.len() - 2].ts_ns));
        assert!(s.torn_tail);
        assert!(s
            .skipped_warning()
            .unwrap()
            .contains("the last line was cut"));
        // A last line without its newline but whole is not skipped.
        let s = replay_reader(
            RecordingReader::new(Cursor::new(&bytes[..bytes.len() - 1])).unwrap(),
            &mut Engine::new(EngineConfig::default()),
        )
        .unwrap();
        assert_eq!((s.events as usize, s.skipped_lines), (evs.len(), 0));
        // Cut inside the header: still an error, in one line.
        let err = read_all(&bytes[..10]).unwrap_err();
        assert!(matches!(err.kind, RecordErrorKind::Truncated(_)), "{err}");
        assert_eq!(err.line, 1);
        assert!(err.to_string().contains("truncated recording"));
    }

    #[test]
    fn overlong_middle_line_is_skipped_and_the_rest_read() {
        let evs = vulnerable_caller_stream(1, 0);
        let bytes = write(&header("x", None, "kprobe"), &evs, false);
        let at = line_start(&bytes, 3);
        let mut big = bytes[..at].to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        big.push(b'\n');
        big.extend_from_slice(&bytes[at..]);
        let at4 = at + MAX_LINE + 11 + line_start(&bytes[at..], 2);
        // The line after the long one (original line 4) is corrupt too: both are counted,
        // and everything else is read.
        big[at4] = b'!';
        let mut r = RecordingReader::new(Cursor::new(&big)).unwrap();
        let n = (&mut r).filter(Result::is_ok).count();
        assert_eq!(r.skipped_lines(), 2);
        assert_eq!(r.first_skipped(), Some((3, at as u64)));
        assert_eq!(n, read_all(&bytes).unwrap().len() - 1);
    }

    #[test]
    fn header_errors() {
        assert!(matches!(
            read_all(b"").unwrap_err().kind,
            RecordErrorKind::Empty
        ));
        assert!(matches!(
            read_all(b"{\"t\":\"event\"}\n").unwrap_err().kind,
            RecordErrorKind::NotARecording(_)
        ));
        let v2 = b"{\"format\":\"percpu-trace-recording\",\"version\":2}\n";
        assert!(matches!(
            read_all(v2).unwrap_err().kind,
            RecordErrorKind::UnsupportedVersion(2)
        ));
        assert!(matches!(
            read_all(b"\xff\xfe garbage\n").unwrap_err().kind,
            RecordErrorKind::NotARecording(_)
        ));
        let err = replay(
            Path::new("/nonexistent/rec.jsonl"),
            &mut Engine::new(EngineConfig::default()),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/rec.jsonl: line 0"),
            "{err}"
        );
    }

    #[test]
    fn header_with_only_the_required_fields() {
        let text = "{\"format\":\"percpu-trace-recording\",\"version\":1}\n\n";
        let r = RecordingReader::new(Cursor::new(text)).unwrap();
        assert_eq!(r.header().engine, EngineConfig::default());
        assert_eq!(r.count(), 0);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn mangled_recordings_never_panic(cut in 0usize..4000, flips in proptest::collection::vec((0usize..4000, any::<u8>()), 0..4)) {
                let mut bytes = write(&header("x", Some(false), "kprobe"), &vulnerable_caller_stream(1, 0), true);
                for (at, b) in flips {
                    if at < bytes.len() {
                        bytes[at] = b;
                    }
                }
                bytes.truncate(cut.min(bytes.len()));
                if let Ok(r) = RecordingReader::new(Cursor::new(&bytes)) {
                    let mut eng = Engine::new(EngineConfig::default());
                    let _ = replay_reader(r, &mut eng);
                }
            }
        }
    }
}
