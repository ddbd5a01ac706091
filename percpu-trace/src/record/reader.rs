//! Reading recordings: the header, then records, tolerant of torn and corrupt lines.
use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use super::format::{
    Header, Record, RecordError, RecordErrorKind, FORMAT, MAX_LINE, OLDEST_VERSION, VERSION,
};
use crate::engine::EngineConfig;

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
        if !(u64::from(OLDEST_VERSION)..=u64::from(VERSION)).contains(&version) {
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

/// The warning text for skipped lines (`None` when nothing was skipped).
pub(crate) fn skipped_text(n: u64, first: Option<(u64, u64)>, torn: bool) -> Option<String> {
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
