//! Replaying a recording through the engine.
use std::{collections::BTreeMap, io::BufRead, path::Path};

use serde::Serialize;

use super::{
    format::{Header, Record, RecordError},
    reader::{skipped_text, RecordingReader},
};
use crate::{engine::Engine, event::Frame};

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

/// Runs the recording at `path` through `engine` (create it with the header's engine
/// configuration, see [`replay_file`], to judge with the recorded kernel's bits).
pub fn replay(path: &Path, engine: &mut Engine) -> Result<ReplaySummary, RecordError> {
    let reader = RecordingReader::open(path)?;
    replay_reader(reader, engine)
}

/// Opens `path`, builds an engine from its header ([`Header::engine_config`], and the
/// run's finding filter) and replays it. Returns the engine and summary.
///
/// `-` reads standard input.
pub fn replay_file(path: &Path) -> Result<(Engine, ReplaySummary), RecordError> {
    if path == Path::new("-") {
        let reader = RecordingReader::new(std::io::BufReader::new(std::io::stdin().lock()))
            .map_err(|mut e| {
                e.path = Some(path.to_path_buf());
                e
            })?;
        return replay_with_its_engine(reader);
    }
    replay_with_its_engine(RecordingReader::open(path)?)
}

fn replay_with_its_engine<R: BufRead>(
    reader: RecordingReader<R>,
) -> Result<(Engine, ReplaySummary), RecordError> {
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
    let mut s = ReplaySummary::new(reader.header().clone());
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
                engine.stack(id, &frames);
                s.stacks.insert(id, frames);
            }
            Record::Drops(d) => {
                engine.set_losses(d.clone());
                s.drops = d;
            }
            Record::Activity(a) => engine.set_kernel_activity(&a),
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
