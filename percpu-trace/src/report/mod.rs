//! Reports for bug filings: text shaped like a lockdep/syzbot splat, JSON with a versioned
//! schema (`percpu-trace/schema/report-v1.schema.json`), and markdown for issue trackers.
//!
//! Renderers are pure functions of a [`ReportContext`] (what was traced and how), the
//! findings and the stack table; the same call serves `percpu-trace report`, the TUI's
//! export key and tests. [`finding_line`] is the one-line form headless `record` logs.
//!
//! A context comes from a recording ([`ReportContext::from_replay`], which reads the
//! header's `extra` keys listed in [`extra`]) or from live state ([`ReportContext::live`]);
//! [`ReportContext::header_extra`] gives the live values to store in a recording header so
//! a report made from the recording later says the same.
mod describe;
mod json;
mod markdown;
mod text;

#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use crate::{
    engine::Finding,
    event::Frame,
    kernel::{
        decode::{self, GfpLayout},
        plan::{AttachPlan, Attachment},
        Kernel,
    },
    pipeline::Losses,
    record::ReplaySummary,
};

/// Kernel stack id to symbolized frames (innermost first), as recordings and the live
/// pipeline deliver them ([`ReplaySummary::stacks`] has this type).
pub type StackTable = BTreeMap<u32, Vec<Frame>>;

/// Value of the JSON report's `schema` field.
pub const JSON_SCHEMA_ID: &str = "percpu-trace-report/v1";

/// The JSON Schema the JSON report follows (also in the repository as
/// `percpu-trace/schema/report-v1.schema.json`).
pub const JSON_SCHEMA: &str = include_str!("../../schema/report-v1.schema.json");

/// Widest line of the text report (email-friendly).
pub const TEXT_WIDTH: usize = 76;

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Plain ASCII shaped like a lockdep/syzbot splat, for email and bugzilla.
    Text,
    /// Versioned JSON (`percpu-trace-report/v1`).
    Json,
    /// Markdown for issue trackers.
    Markdown,
}

impl Format {
    /// Usual file extension ("txt", "json", "md"), for export file names.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Text => "txt",
            Format::Json => "json",
            Format::Markdown => "md",
        }
    }
}

/// Keys of a recording header's `extra` map that reports read (and that
/// [`ReportContext::header_extra`] writes).
pub mod extra {
    /// `uname -v` of the traced kernel (string).
    pub const KERNEL_BUILD: &str = "kernel_build";
    /// Host name (string).
    pub const HOSTNAME: &str = "hostname";
    /// The kernel's gfp bit layout ([`crate::kernel::decode::GfpLayout`] as JSON).
    pub const GFP_LAYOUT: &str = "gfp_layout";
    /// Per-probe status (array of [`super::ProbeStatus`]).
    pub const PROBES: &str = "probes";
    /// The attach plan (array of [`crate::kernel::plan::PlannedProbe`]), used when
    /// [`PROBES`] is absent: what was planned, without the attach result.
    pub const PLAN: &str = "plan";
    /// One line of evidence for the fix status (string).
    pub const FIX_DETAIL: &str = "fix_detail";
    /// Wall-clock length of the run in nanoseconds (number).
    pub const DURATION_NS: &str = "duration_ns";
    /// Filters the run used, e.g. `["--comm kworker"]` (array of strings).
    pub const FILTERS: &str = "filters";
}

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

/// Whether one planned probe point was observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeState {
    /// Attached and delivering.
    Attached,
    /// The plan had no way to observe it on this kernel.
    Unavailable,
    /// The plan said yes but attaching failed.
    Failed,
}

/// One probe point and how it was observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// What is observed, for humans ("pcpu_alloc entry").
    pub point: String,
    /// Program name in the eBPF object.
    pub program: String,
    /// "kprobe:pcpu_alloc_noprof", "tracepoint:percpu:percpu_alloc_percpu", "-".
    pub target: String,
    /// Attached, unavailable or failed.
    pub state: ProbeState,
    /// Why it is unavailable or failed, and what detection that costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Everything a report says about the run besides the findings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportContext {
    /// Version of the tool rendering the report.
    pub tool_version: String,
    /// Version of the tool that recorded the events, when it was another run.
    pub recorded_by: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// `uname -r`.
    pub kernel_release: Option<String>,
    /// `uname -v` (build number, config flavour, date).
    pub kernel_build: Option<String>,
    /// `uname -m`.
    pub arch: Option<String>,
    /// Whether the upstream fix series is in the kernel (`None`: unknown).
    pub fix_present: Option<bool>,
    /// The evidence for `fix_present`, one line.
    pub fix_detail: Option<String>,
    /// Live or a recording.
    pub source: Source,
    /// "kprobe", "fentry", "tracepoint".
    pub attach_mode: Option<String>,
    /// Per-probe status (empty when unknown, e.g. an old recording).
    pub probes: Vec<ProbeStatus>,
    /// `probes` come from a recorded attach plan: `Attached` there means "planned", since
    /// the recording does not say whether attaching succeeded.
    pub probes_from_plan: bool,
    /// Filters in effect (`--pid 12`, `--comm x`), as given.
    pub filters: Vec<String>,
    /// Events seen.
    pub events: u64,
    /// Loss counters by reason (`ringbuf_full`, `stack`, `task_map_full`, ...).
    pub drops: BTreeMap<String, u64>,
    /// Length of the run (wall clock live; first to last event for a recording without one).
    pub duration_ns: Option<u64>,
    /// Events whose stack id the stack table lacks.
    pub missing_stacks: u64,
    /// Recording lines skipped as corrupt or torn ([`ReplaySummary::skipped_lines`]).
    #[serde(default)]
    pub skipped_lines: u64,
    /// Line number and byte offset of the first skipped line.
    #[serde(default)]
    pub first_skipped: Option<(u64, u64)>,
    /// gfp bit layout of the traced kernel, for decoding gfp masks.
    pub gfp_layout: GfpLayout,
}

impl ReportContext {
    /// An empty context for this tool version: nothing known yet.
    pub fn new(source: Source) -> Self {
        ReportContext {
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            recorded_by: None,
            hostname: None,
            kernel_release: None,
            kernel_build: None,
            arch: None,
            fix_present: None,
            fix_detail: None,
            source,
            attach_mode: None,
            probes: Vec::new(),
            probes_from_plan: false,
            filters: Vec::new(),
            events: 0,
            drops: BTreeMap::new(),
            duration_ns: None,
            missing_stacks: 0,
            skipped_lines: 0,
            first_skipped: None,
            gfp_layout: GfpLayout::default_for_6x(),
        }
    }

    /// The context of a replayed recording: header fields, the header's `extra` keys (see
    /// [`extra`]), and the replay's counts. Unknown or malformed extras are ignored: a
    /// report from an older recording just says less.
    pub fn from_replay(path: &Path, summary: &ReplaySummary) -> Self {
        let h = &summary.header;
        let x = &h.extra;
        let s = |k: &str| x.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let parse = |k: &str| x.get(k).cloned();
        let mut ctx = ReportContext::new(Source::Recording {
            path: path.to_path_buf(),
        });
        ctx.recorded_by = h.tool_version.clone();
        ctx.kernel_release = h.kernel_release.clone();
        ctx.arch = h.arch.clone();
        ctx.fix_present = h.fix_present.or(h.engine.fix_present);
        ctx.attach_mode = h.attach_mode.clone();
        ctx.kernel_build = s(extra::KERNEL_BUILD);
        ctx.hostname = s(extra::HOSTNAME);
        ctx.fix_detail = s(extra::FIX_DETAIL);
        if let Some(l) = parse(extra::GFP_LAYOUT).and_then(|v| serde_json::from_value(v).ok()) {
            ctx.gfp_layout = l;
        }
        if let Some(p) = parse(extra::PROBES).and_then(|v| serde_json::from_value(v).ok()) {
            ctx.probes = p;
        } else if let Some(plan) = x.get(extra::PLAN).and_then(|v| v.as_array()) {
            ctx.probes = plan.iter().filter_map(planned_probe).collect();
            ctx.probes_from_plan = true;
        }
        if let Some(f) = parse(extra::FILTERS).and_then(|v| serde_json::from_value(v).ok()) {
            ctx.filters = f;
        }
        let span = match (summary.first_ns, summary.last_ns) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        };
        ctx.duration_ns = x.get(extra::DURATION_NS).and_then(|v| v.as_u64()).or(span);
        ctx.events = summary.events;
        ctx.drops = summary.drops.clone();
        ctx.missing_stacks = summary.missing_stacks;
        ctx.skipped_lines = summary.skipped_lines;
        ctx.first_skipped = summary.first_skipped;
        ctx
    }

    /// The context of a live run from discovery, the plan and the attach result
    /// (`failed`: [`crate::probes::Probes::failed`], program name and error). Events, drops
    /// and duration start empty: update them with [`ReportContext::set_progress`].
    pub fn live(kernel: &Kernel, plan: &AttachPlan, failed: &[(String, String)]) -> Self {
        let mut ctx = ReportContext::new(Source::Live);
        ctx.kernel_release = Some(kernel.release.clone());
        ctx.arch = Some(kernel.arch.clone());
        ctx.kernel_build = kernel_build();
        ctx.hostname = hostname();
        ctx.fix_present = kernel.fix.present;
        ctx.fix_detail = Some(kernel.fix.detail.clone());
        ctx.gfp_layout = kernel.gfp.clone();
        ctx.attach_mode = serde_json::to_value(plan.mode)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        ctx.probes = probe_statuses(plan, failed);
        ctx
    }

    /// Updates the counts of a live run.
    pub fn set_progress(&mut self, events: u64, losses: &Losses, duration_ns: u64) {
        self.events = events;
        self.drops = losses_map(losses);
        self.duration_ns = Some(duration_ns);
    }

    /// What to put in a recording header's `extra` so that [`ReportContext::from_replay`]
    /// gets back what this live context knows (see [`extra`]).
    pub fn header_extra(&self) -> BTreeMap<String, serde_json::Value> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: serde_json::Value| {
            if !v.is_null() {
                m.insert(k.to_string(), v);
            }
        };
        put(extra::KERNEL_BUILD, self.kernel_build.clone().into());
        put(extra::HOSTNAME, self.hostname.clone().into());
        put(extra::FIX_DETAIL, self.fix_detail.clone().into());
        put(
            extra::GFP_LAYOUT,
            serde_json::to_value(&self.gfp_layout).unwrap_or_default(),
        );
        if !self.probes.is_empty() {
            put(
                extra::PROBES,
                serde_json::to_value(&self.probes).unwrap_or_default(),
            );
        }
        if !self.filters.is_empty() {
            put(extra::FILTERS, self.filters.clone().into());
        }
        put(extra::DURATION_NS, self.duration_ns.into());
        m
    }
}

/// What a live run should add to its recording header's `extra` at start, before probes
/// are attached: `uname -v`, host name, the fix evidence and the gfp layout (see [`extra`]).
/// The attach plan goes under [`extra::PLAN`]; the run's length is taken from the events.
pub fn recording_extra(kernel: &Kernel) -> BTreeMap<String, serde_json::Value> {
    let mut ctx = ReportContext::new(Source::Live);
    ctx.kernel_build = kernel_build();
    ctx.hostname = hostname();
    ctx.fix_detail = Some(kernel.fix.detail.clone());
    ctx.gfp_layout = kernel.gfp.clone();
    ctx.header_extra()
}

/// A [`ProbeStatus`] from one serialized [`crate::kernel::plan::PlannedProbe`] (which has
/// no `Deserialize`: read field by field, so a changed plan format degrades to less detail).
fn planned_probe(v: &serde_json::Value) -> Option<ProbeStatus> {
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let a = v.get("attachment")?;
    let how = s(a, "how")?;
    let (target, state, detail) = match how.as_str() {
        "unavailable" => (
            "-".to_string(),
            ProbeState::Unavailable,
            Some(format!(
                "{}; loses: {}",
                s(a, "reason").unwrap_or_default(),
                s(v, "disables").unwrap_or_default()
            )),
        ),
        "tracepoint" => (
            format!(
                "tracepoint:{}:{}",
                s(a, "category").unwrap_or_default(),
                s(a, "name").unwrap_or_default()
            ),
            ProbeState::Attached,
            None,
        ),
        other => (
            format!("{other}:{}", s(a, "symbol").unwrap_or_default()),
            ProbeState::Attached,
            None,
        ),
    };
    Some(ProbeStatus {
        point: s(v, "point")?,
        program: s(v, "program").unwrap_or_default(),
        target,
        state,
        detail,
    })
}

/// Per-probe status from the plan and the attach failures.
pub fn probe_statuses(plan: &AttachPlan, failed: &[(String, String)]) -> Vec<ProbeStatus> {
    plan.probes
        .iter()
        .map(|p| {
            let target = match &p.attachment {
                Attachment::Kprobe { symbol } => format!("kprobe:{symbol}"),
                Attachment::Kretprobe { symbol } => format!("kretprobe:{symbol}"),
                Attachment::Fentry { symbol } => format!("fentry:{symbol}"),
                Attachment::Fexit { symbol } => format!("fexit:{symbol}"),
                Attachment::Tracepoint { category, name } => {
                    format!("tracepoint:{category}:{name}")
                }
                Attachment::Unavailable { .. } => "-".into(),
            };
            let fail = failed.iter().find(|(prog, _)| *prog == p.program);
            let (state, detail) = match (&p.attachment, fail) {
                (Attachment::Unavailable { reason }, _) => (
                    ProbeState::Unavailable,
                    Some(format!("{reason}; loses: {}", p.disables)),
                ),
                (_, Some((_, err))) => (
                    ProbeState::Failed,
                    Some(format!("{err}; loses: {}", p.disables)),
                ),
                _ => (ProbeState::Attached, None),
            };
            ProbeStatus {
                point: p.point.clone(),
                program: p.program.clone(),
                target,
                state,
                detail,
            }
        })
        .collect()
}

/// Loss counters by the names recordings use (the field names of [`Losses`], through
/// serde so that a new loss reason shows up without touching this code).
pub fn losses_map(l: &Losses) -> BTreeMap<String, u64> {
    serde_json::to_value(l)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

/// `uname -v` of the running kernel.
pub fn kernel_build() -> Option<String> {
    read_trimmed("/proc/sys/kernel/version")
}

/// Host name of this machine.
pub fn hostname() -> Option<String> {
    read_trimmed("/proc/sys/kernel/hostname")
}

fn read_trimmed(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Renders a report. Findings are shown most severe first, then by first occurrence.
pub fn render(
    format: Format,
    ctx: &ReportContext,
    findings: &[Finding],
    stacks: &StackTable,
) -> String {
    let ordered = ordered(findings);
    match format {
        Format::Text => text::render(ctx, &ordered, stacks),
        Format::Json => json::render(ctx, &ordered, stacks),
        Format::Markdown => markdown::render(ctx, &ordered, stacks),
    }
}

/// The JSON report as a value (what [`render`] prints for [`Format::Json`]).
pub fn render_json_value(
    ctx: &ReportContext,
    findings: &[Finding],
    stacks: &StackTable,
) -> serde_json::Value {
    json::value(ctx, &ordered(findings), stacks)
}

fn ordered(findings: &[Finding]) -> Vec<&Finding> {
    let mut v: Vec<&Finding> = findings.iter().collect();
    // Stable sort: equal severities keep the engine's order of first occurrence.
    v.sort_by_key(|f| std::cmp::Reverse(f.severity));
    v
}

/// One line per new finding, for headless `record` and the journal: plain ASCII, no
/// control characters, gfp masks decoded with the bits stable across 6.1..7.3.
pub fn finding_line(f: &Finding) -> String {
    finding_line_with(f, &GfpLayout::default_for_6x())
}

/// [`finding_line`] with the traced kernel's gfp layout.
pub fn finding_line_with(f: &Finding, layout: &GfpLayout) -> String {
    use describe::{ascii, task_label};
    let g = |v: u32| decode::format_gfp(v, layout);
    let first = f
        .tasks
        .first()
        .map(task_label)
        .unwrap_or_else(|| "?".into());
    let op = f.trigger.name();
    let tg = describe::trigger_gfp(&f.trigger)
        .or(f.trigger_effective_gfp)
        .map(|v| format!(" ({})", g(v)))
        .unwrap_or_default();
    let what = match f.kind {
        crate::engine::FindingKind::Recursion => format!(
            "{first} [{}] entered {op}{tg} holding pcpu_alloc_mutex",
            g(f.constraint_gfp)
        ),
        crate::engine::FindingKind::Window => format!(
            "{first} [{}] holds pcpu_alloc_mutex; {op} allocates{tg}",
            g(f.constraint_gfp)
        ),
        crate::engine::FindingKind::CrossTask => {
            let waiter = f.tasks.get(1).map(task_label).unwrap_or_else(|| "?".into());
            format!(
                "holder {first} in {op}{tg} while {waiter} [{}] waits for pcpu_alloc_mutex",
                g(f.constraint_gfp)
            )
        }
    };
    let line = format!(
        "{} ({}): {what}; allows {} it forbids [sig {:016x}]",
        f.kind,
        f.severity,
        g(f.violated_bits),
        f.signature
    );
    // One journal line: no newline may survive.
    ascii(&line).replace('\n', " ")
}

/// Replays the recording at `path` through the engine (configured from its header) and
/// renders every finding. Errors are one line and name the file (and line/offset for a
/// corrupt header). Skipped corrupt or torn lines are a one-line warning on stderr (the
/// report still comes, and says how many lines it lacks).
pub fn report_from_recording(path: &Path, format: Format) -> Result<String> {
    let (engine, summary) = crate::record::replay_file(path).map_err(|e| anyhow!("{e}"))?;
    if let Some(w) = summary.skipped_warning() {
        crate::warnln!("percpu-trace: warning: {}: {w}", path.display());
    }
    let ctx = ReportContext::from_replay(path, &summary);
    Ok(render(format, &ctx, engine.findings(), &summary.stacks))
}

/// Writes a report to `path` (`-` is stdout). Errors are one line naming the path.
/// Never through a symlink, mode 0600, never over another user's file: see
/// [`write_report_with`].
pub fn write_report(path: &Path, text: &str) -> Result<()> {
    write_report_with(path, text, false)
}

/// [`write_report`] through [`crate::output::write_private`]: the report is written whole
/// to a 0600 file and renamed into place; a symlink at `path` is refused, and a file owned
/// by another user is replaced only with `force` (`--force`).
pub fn write_report_with(path: &Path, text: &str, force: bool) -> Result<()> {
    crate::output::write_private(path, text.as_bytes(), force).map_err(|e| {
        // The error names the path (or stdout) already.
        if crate::output::is_stdout(path) {
            anyhow!("cannot write report: {e}")
        } else {
            anyhow!("cannot write report to {e}")
        }
    })
}
