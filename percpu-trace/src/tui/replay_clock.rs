//! The recording's own clock, for replay: where the run started on the clock of event
//! timestamps (CLOCK_MONOTONIC) and where it ended, so a 20.7 s recording replays as
//! 20.7 s and an idle 120 s one as 120 s, not from its first to its last event.
//!
//! The start is the header's `clock_start_ns` when the recording has it. Older recordings
//! only have `run` records (the run's length so far, written every second): every event
//! before a `run` record with `elapsed_ns` E happened at most E after the start, so the
//! start is at least that event's time minus E; the latest such bound (never after the
//! first event) is within about a second of the truth. Read from the file's head and tail
//! only, never the whole recording; never fails.
use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::Path,
};

use crate::record::{Header, Record, RecordingReader};

/// How much of the file's end is read to find the last event and the final run length.
const TAIL_BYTES: u64 = 1 << 20;
/// Records read from the head.
const HEAD_RECORDS: usize = 100_000;

/// A recording's span on the clock of its event timestamps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordingClock {
    /// When the run started (`None`: nothing to place it by).
    pub start_ns: Option<u64>,
    /// When it ended: the later of its last event and its last `run` record.
    pub end_ns: Option<u64>,
}

/// What a stretch of records says about the clock.
#[derive(Default)]
struct Scan {
    first_event: Option<u64>,
    last_event: Option<u64>,
    /// Latest lower bound on the start (an event's time minus a later run length).
    start_at_least: Option<u64>,
    /// Longest run length seen.
    run_ns: Option<u64>,
}

impl Scan {
    fn add(&mut self, rec: &Record) {
        match rec {
            Record::Event(ev) => {
                self.first_event.get_or_insert(ev.ts_ns);
                self.last_event = Some(self.last_event.map_or(ev.ts_ns, |t| t.max(ev.ts_ns)));
            }
            Record::Run { elapsed_ns, .. } => {
                if let Some(t) = self.last_event {
                    let bound = t.saturating_sub(*elapsed_ns);
                    self.start_at_least = Some(self.start_at_least.map_or(bound, |b| b.max(bound)));
                }
                self.run_ns = Some(self.run_ns.map_or(*elapsed_ns, |r| r.max(*elapsed_ns)));
            }
            _ => {}
        }
    }
}

/// The clock of the recording at `path` with this `header`.
pub fn recording_clock(path: &Path, header: &Header) -> RecordingClock {
    let mut head = Scan::default();
    if let Ok(r) = RecordingReader::open(path) {
        for rec in r.take(HEAD_RECORDS) {
            match rec {
                Ok(rec) => head.add(&rec),
                Err(_) => break,
            }
        }
    }
    let mut tail = Scan::default();
    for rec in tail_records(path) {
        tail.add(&rec);
    }
    let first_event = head.first_event.or(tail.first_event);
    let last_event = tail.last_event.or(head.last_event);
    let run_ns = tail.run_ns.max(head.run_ns);
    let start_ns = header.run.clock_start_ns.or_else(|| {
        let bound = head.start_at_least.max(tail.start_at_least);
        match (bound, first_event) {
            (Some(b), Some(f)) => Some(b.min(f)),
            (None, Some(f)) => Some(f),
            // No event to place: the run records alone make the clock, from 0.
            (_, None) => run_ns.map(|_| 0),
        }
    });
    let end_by_run = start_ns.zip(run_ns).map(|(s, r)| s.saturating_add(r));
    RecordingClock {
        start_ns,
        end_ns: last_event.max(end_by_run),
    }
}

/// The whole records in the last [`TAIL_BYTES`] of the file, in order.
fn tail_records(path: &Path) -> Vec<Record> {
    let read = || -> Option<Vec<Record>> {
        let mut f = File::open(path).ok()?;
        let len = f.metadata().ok()?.len();
        let start = len.saturating_sub(TAIL_BYTES);
        f.seek(SeekFrom::Start(start)).ok()?;
        let mut buf = Vec::new();
        f.take(TAIL_BYTES).read_to_end(&mut buf).ok()?;
        let mut lines = buf.split(|&b| b == b'\n');
        if start > 0 {
            // Most likely the middle of a line.
            lines.next();
        }
        Some(
            lines
                .filter_map(|l| serde_json::from_slice::<Record>(l).ok())
                .collect(),
        )
    };
    read().unwrap_or_default()
}
