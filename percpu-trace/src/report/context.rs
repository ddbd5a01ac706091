//! [`ReportContext`]: everything a report says about the run besides the findings. The
//! static facts are the run's [`RunInfo`] (the same struct a recording header carries);
//! the rest is what the run counted.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    engine::{reconcile, Engine, FindingFilter, FixObservations, LossTotals, Reconciled},
    event::Frame,
    kernel::{plan::AttachPlan, Kernel},
    record::{Header, ReplaySummary},
    run::RunInfo,
};

/// Kernel stack id to symbolized frames (innermost first), as recordings and the live
/// pipeline deliver them ([`ReplaySummary::stacks`] has this type).
pub type StackTable = BTreeMap<u32, Vec<Frame>>;

/// Where the findings came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// Traced live on this host.
    Live,
    /// Replayed from a recording.
    Recording {
        /// The recording file.
        path: PathBuf,
    },
}

/// Everything a report says about the run besides the findings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportContext {
    /// Version of the tool rendering the report.
    pub tool_version: String,
    /// What was traced and how: host, kernel, fix evidence, attach mode and result,
    /// filters, gfp layout (`run.tool_version` is the version that traced).
    pub run: RunInfo,
    /// Live or a recording.
    pub source: Source,
    /// Events seen.
    pub events: u64,
    /// Loss counters by reason (`ringbuf_full`, `stack`, `task_map_full`, ...).
    pub drops: BTreeMap<String, u64>,
    /// Length of the run: wall clock when known, else first to last event.
    pub duration_ns: Option<u64>,
    /// Whether `duration_ns` is the wall-clock length of the run (false: event span).
    pub duration_is_wall_clock: bool,
    /// Events whose stack id the stack table lacks.
    pub missing_stacks: u64,
    /// What the run saw, findings or not (`None`: not known, e.g. a hand-made context).
    #[serde(default)]
    pub activity: Option<crate::engine::ActivityCounts>,
    /// Finding occurrences not kept because the engine's cap of distinct findings was
    /// reached (they are counted, never silently gone).
    #[serde(default)]
    pub findings_dropped: u64,
    /// Recording lines skipped as corrupt or torn ([`ReplaySummary::skipped_lines`]).
    #[serde(default)]
    pub skipped_lines: u64,
    /// Line number and byte offset of the first skipped line.
    #[serde(default)]
    pub first_skipped: Option<(u64, u64)>,
    /// What the run's events showed about the fix series ([`Engine::fix_observations`]).
    #[serde(default)]
    pub fix_observed: FixObservations,
    /// A recording without its final `run` line (the tracer was killed or the host
    /// stopped): how far into the run its last `run` line was written.
    #[serde(default)]
    pub ended_uncleanly_at_ns: Option<u64>,
    /// Where the frames' source lines came from, or how to get them (one line; `None`:
    /// not looked for, e.g. a live run).
    #[serde(default)]
    pub source_lines: Option<String>,
}

impl ReportContext {
    /// An empty context for this tool version: nothing known yet.
    pub fn new(source: Source) -> Self {
        ReportContext {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            run: RunInfo::default(),
            source,
            events: 0,
            drops: BTreeMap::new(),
            duration_ns: None,
            duration_is_wall_clock: false,
            missing_stacks: 0,
            activity: None,
            findings_dropped: 0,
            skipped_lines: 0,
            first_skipped: None,
            fix_observed: FixObservations::default(),
            ended_uncleanly_at_ns: None,
            source_lines: None,
        }
    }

    /// The fix verdict to show: the run's static verdict reconciled with what its events
    /// showed ([`reconcile`]).
    pub fn fix(&self) -> Reconciled {
        reconcile(&self.run.fix_verdict(), &self.fix_observed)
    }

    /// Takes what `engine` saw about the fix series.
    pub fn set_fix_observed(&mut self, engine: &Engine) {
        self.fix_observed = engine.fix_observations().clone();
    }

    /// The context of a recording, from its header alone (counts start empty).
    pub fn from_header(path: &Path, h: &Header) -> Self {
        let mut ctx = ReportContext::new(Source::Recording {
            path: path.to_path_buf(),
        });
        ctx.run = h.run.clone();
        ctx.run.fix_present = h.engine_config().fix_present;
        ctx
    }

    /// The context of a replayed recording: its header's facts and the replay's counts.
    pub fn from_replay(path: &Path, summary: &ReplaySummary) -> Self {
        let mut ctx = ReportContext::from_header(path, &summary.header);
        ctx.events = summary.events;
        ctx.drops = summary.drops.clone();
        ctx.missing_stacks = summary.missing_stacks;
        ctx.skipped_lines = summary.skipped_lines;
        ctx.first_skipped = summary.first_skipped;
        ctx.duration_is_wall_clock = summary.wall_ns.is_some();
        // Recordings with `run` lines end with one saying `ended`; older ones have none.
        ctx.ended_uncleanly_at_ns = summary.wall_ns.filter(|_| !summary.ended);
        ctx.duration_ns = summary
            .wall_ns
            .or(match (summary.first_ns, summary.last_ns) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                _ => None,
            });
        ctx
    }

    /// The context of a live run from discovery, the plan, the attach result (`failed`:
    /// [`crate::probes::Probes::failed`], program name and error) and the run's filter.
    /// Events, drops and duration start empty: see [`ReportContext::set_progress`].
    pub fn live(
        kernel: &Kernel,
        plan: &AttachPlan,
        failed: &[(String, String)],
        filter: &FindingFilter,
    ) -> Self {
        let mut ctx = ReportContext::new(Source::Live);
        ctx.run = RunInfo::live(kernel, plan, failed, filter);
        ctx
    }

    /// Updates the counts of a live run (losses as the engine holds them).
    pub fn set_progress(&mut self, events: u64, losses: &LossTotals, duration_ns: u64) {
        self.events = events;
        self.drops = losses.by_reason.clone();
        self.duration_ns = Some(duration_ns);
        self.duration_is_wall_clock = true;
    }

    /// Version of the tool that recorded the events, when it was another run.
    pub fn recorded_by(&self) -> Option<&str> {
        match self.source {
            Source::Recording { .. } => self.run.tool_version.as_deref(),
            Source::Live => None,
        }
    }

    /// "recording ended uncleanly at 12.3 s: ..." for a recording without its final
    /// `run` line, the one wording every report format uses.
    pub fn unclean_end(&self) -> Option<String> {
        self.ended_uncleanly_at_ns.map(|ns| {
            format!(
                "recording ended uncleanly at {:.1} s: the tracer was killed or the host \
                 stopped (what was written until then is reported)",
                ns as f64 / 1e9
            )
        })
    }

    /// The run's filters as given on the command line (`--comm x`).
    pub fn filters(&self) -> Vec<String> {
        self.run.filters()
    }
}
