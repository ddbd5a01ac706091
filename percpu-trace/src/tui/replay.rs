//! The replay driver: feeds a recording's records into [`App`] paced by the recorded
//! timestamps, or at full speed in slices while seeking (the transport's goal), and starts
//! over from the first record to go back (the engine is pure and deterministic: a fresh one
//! fed the same records reaches the same state).
//!
//! It runs on the UI thread, called by the event loop between keys and redraws: at full
//! speed one [`Replay::pump`] ingests records for at most [`SLICE`], so a 1.6 M-event
//! recording goes through in large batches with a redraw only every frame, and keys stay
//! answered within a slice.
use std::{
    fs::File,
    io::BufReader,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    pipeline::LiveItem,
    record::{Header as RecordingHeader, Record, RecordError, RecordingReader},
};

use super::replay_clock::{recording_clock, RecordingClock};

use super::{
    app::App,
    transport::{Goal, Transport},
};

/// Longest stretch of work one [`Replay::pump`] does before handing back to the loop.
pub const SLICE: Duration = Duration::from_millis(30);
/// Records between two looks at the clock inside a slice (reading the clock per record
/// would cost more than some records).
const CLOCK_EVERY: u32 = 256;

/// How a recording is replayed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplayOptions {
    /// Index into [`super::transport::SPEEDS`] to start at (0: as recorded).
    pub speed: usize,
    /// Longest pause between two events, so idle stretches of a recording do not stall it.
    pub max_gap: Duration,
}

impl Default for ReplayOptions {
    /// As recorded, with idle stretches cut to one second.
    fn default() -> Self {
        ReplayOptions {
            speed: 0,
            max_gap: Duration::from_secs(1),
        }
    }
}

/// The paced clock: at wall time `.0` the replay was at (gap-cut) recorded time `.1`.
type Anchor = (Instant, u64);

/// Feeds one recording into an [`App`].
pub struct Replay {
    path: PathBuf,
    /// `None` once the recording ended (or failed).
    reader: Option<RecordingReader<BufReader<File>>>,
    /// The next record, read but not fed (paced replay waits for its time).
    pending: Option<Record>,
    /// Recorded time cut out of idle gaps so far (subtracted from timestamps).
    skew_ns: u64,
    /// Timestamp of the last event read (for the gap cut).
    last_read_ns: Option<u64>,
    /// Gap-cut timestamp of the last event fed.
    last_fed_ns: Option<u64>,
    anchor: Option<Anchor>,
    /// The pace and pause the anchor was set for: a change sets a new anchor.
    anchored_for: (Option<u64>, bool),
    max_gap: Duration,
    /// The recording's own clock ([`recording_clock`]): `run` records are placed on it,
    /// so idle stretches and the activity lines written in them replay in time.
    clock: RecordingClock,
}

impl Replay {
    /// Opens `path`: its header (for [`super::Header::from_recording`]) and the driver.
    /// Errors come before the terminal is touched.
    pub fn open(
        path: &Path,
        opts: ReplayOptions,
    ) -> Result<(Replay, RecordingHeader), RecordError> {
        let reader = RecordingReader::open(path)?;
        let header = reader.header().clone();
        let clock = recording_clock(path, &header);
        let r = Replay {
            path: path.to_path_buf(),
            reader: Some(reader),
            pending: None,
            skew_ns: 0,
            last_read_ns: None,
            last_fed_ns: None,
            anchor: None,
            anchored_for: (None, false),
            max_gap: opts.max_gap,
            clock,
        };
        Ok((r, header))
    }

    /// Sets up `app`'s transport for this recording: the start speed and the span (the
    /// run's start and end on the recording's own clock; unknown ends stay `None`).
    pub fn prepare(&self, app: &mut App, opts: ReplayOptions) {
        let t = app.transport.get_or_insert_with(Transport::default);
        t.speed = opts.speed.min(super::transport::SPEEDS.len() - 1);
        t.first_ns = self.clock.start_ns;
        t.last_ns = self.clock.end_ns;
    }

    /// When a record happened on the recording's clock: an event at its timestamp, a
    /// `run` record at the start plus its length; other records follow the one before.
    fn time_of(&self, rec: &Record) -> Option<u64> {
        match rec {
            Record::Event(ev) => Some(ev.ts_ns),
            Record::Run { elapsed_ns, .. } => {
                self.clock.start_ns.map(|s| s.saturating_add(*elapsed_ns))
            }
            _ => None,
        }
    }

    /// Whether records are left to feed.
    pub fn is_open(&self) -> bool {
        self.reader.is_some()
    }

    /// Starts over from the first record with a fresh engine in `app` (a jump back).
    pub fn restart(&mut self, app: &mut App) {
        app.restart_replay();
        if let Some(t) = app.transport.as_mut() {
            t.clock_ns = 0;
        }
        self.pending = None;
        self.skew_ns = 0;
        self.last_read_ns = None;
        self.last_fed_ns = None;
        self.anchor = None;
        match RecordingReader::open(&self.path) {
            Ok(r) => self.reader = Some(r),
            Err(e) => {
                self.reader = None;
                app.set_error(format!("replay stopped: reopening the recording: {e}"));
                self.finish(app);
            }
        }
    }

    /// When the loop should call [`Replay::pump`] next: `None` while paused or after the
    /// end, `now` at full speed or when a record must be read, else the next event's time.
    pub fn due(&self, app: &App, now: Instant) -> Option<Instant> {
        if self.reader.is_none() || app.paused {
            return None;
        }
        let Some(speed) = app.transport.as_ref().and_then(Transport::pace) else {
            return Some(now);
        };
        let ts = self.pending.as_ref().and_then(|r| self.time_of(r));
        match (ts, self.anchor) {
            (Some(ts), Some((wall, at))) if self.anchored_for == (Some(speed), false) => {
                let ahead = ts.saturating_sub(self.skew_ns).saturating_sub(at);
                // Never far (idle gaps are cut), but a bad timestamp must not overflow.
                Some(
                    wall.checked_add(Duration::from_nanos(ahead / speed))
                        .unwrap_or(now),
                )
            }
            _ => Some(now),
        }
    }

    /// Feeds what is due (paced) or as much as fits in [`SLICE`] (full speed). Returns
    /// whether the replay stopped (paused at its goal, ended or failed): the screen should
    /// be drawn at once.
    pub fn pump(&mut self, app: &mut App, now: Instant) -> bool {
        let pace = app.transport.as_ref().and_then(Transport::pace);
        if (pace, app.paused) != self.anchored_for {
            // Resumed, or the speed changed: pace from here, not from where it was (before
            // the first event, from that event: see below).
            self.anchor = self.last_fed_ns.map(|t| (now, t));
            self.anchored_for = (pace, app.paused);
        }
        let mut n = 0u32;
        loop {
            if app.paused {
                return true;
            }
            if self.pending.is_none() && !self.read_next(app, pace) {
                return true;
            }
            let timed = self.pending.as_ref().and_then(|r| self.time_of(r));
            if let Some(ts) = timed {
                let arrived = match app.transport.as_ref().map(|t| t.goal) {
                    Some(Goal::Start) => Some("at the start, paused (p play, n next finding)"),
                    Some(Goal::Until(to)) if ts > to => {
                        Some("went back, paused (p play, n next finding)")
                    }
                    _ => None,
                };
                if let Some(text) = arrived {
                    if let Some(t) = app.transport.as_mut() {
                        t.goal = Goal::Play;
                    }
                    app.pause_here();
                    app.say(text, false);
                    return true;
                }
                let eff = ts.saturating_sub(self.skew_ns);
                if let Some(speed) = pace {
                    // Paced from the run's start when nothing was fed yet.
                    let from = self
                        .last_fed_ns
                        .or(self.clock.start_ns)
                        .map_or(eff, |t| t.min(eff));
                    let (wall, at) = *self.anchor.get_or_insert((now, from));
                    let ahead = Duration::from_nanos(eff.saturating_sub(at) / speed);
                    let not_yet = wall
                        .checked_add(ahead)
                        .is_some_and(|due| due > Instant::now().max(now));
                    if not_yet {
                        return false;
                    }
                }
                self.last_fed_ns = Some(eff);
                if let Some(t) = app.transport.as_mut() {
                    t.clock_ns = t.clock_ns.max(ts);
                }
            }
            if let Some(rec) = self.pending.take() {
                feed(app, rec);
            }
            n += 1;
            if n == CLOCK_EVERY {
                if now.elapsed() >= SLICE {
                    return false;
                }
                n = 0;
            }
        }
    }

    /// Reads the next record into `pending`; at the end (or on an error) closes the replay
    /// and says so. Returns whether a record was read.
    fn read_next(&mut self, app: &mut App, pace: Option<u64>) -> bool {
        let Some(reader) = self.reader.as_mut() else {
            return false;
        };
        match reader.next() {
            Some(Ok(rec)) => {
                if let Some(ts) = self.time_of(&rec) {
                    // Idle stretches are cut to `max_gap` of wall time at this pace (a
                    // recording's `run` records, a second apart, leave none to cut).
                    let cap = u64::try_from(self.max_gap.as_nanos())
                        .unwrap_or(u64::MAX)
                        .saturating_mul(pace.unwrap_or(1));
                    if let Some(prev) = self.last_read_ns {
                        let gap = ts.saturating_sub(prev);
                        if gap > cap {
                            self.skew_ns += gap - cap;
                        }
                    }
                    self.last_read_ns = Some(self.last_read_ns.map_or(ts, |p| p.max(ts)));
                }
                self.pending = Some(rec);
                true
            }
            Some(Err(e)) => {
                self.reader = None;
                app.set_error(format!("replay stopped: {e}"));
                self.finish(app);
                false
            }
            None => {
                let text = match reader.skipped_warning() {
                    // Not an error: everything readable was shown.
                    Some(w) => format!("recording finished; {w} (q to quit)"),
                    None => "recording finished (q to quit)".to_string(),
                };
                self.reader = None;
                app.set_ended(text);
                self.finish(app);
                false
            }
        }
    }

    fn finish(&mut self, app: &mut App) {
        if app.ended.is_none() {
            app.ended = Some("replay stopped".into());
        }
        if let Some(t) = app.transport.as_mut() {
            t.goal = Goal::Play;
        }
        app.show_final();
    }
}

/// Hands one record to the app, as the live pipeline would.
fn feed(app: &mut App, rec: Record) {
    match rec {
        Record::Event(ev) => app.ingest(LiveItem::Event(ev)),
        Record::Stack { id, frames } => app.ingest(LiveItem::Stack(id, frames)),
        Record::Drops(d) => app.set_drops(d),
        // The run's length matters to reports, not to the screen.
        Record::Run { .. } => {}
        Record::Activity(a) => app.ingest(LiveItem::Activity(a)),
    }
}
