//! Reports for bug filings: text shaped like a lockdep/syzbot splat, JSON with a versioned
//! schema (`percpu-trace/schema/report-v2.schema.json`), and markdown for issue trackers.
//!
//! Renderers are pure functions of a [`ReportContext`] (what was traced and how), the
//! findings and the stack table; the same call serves `percpu-trace report`, the TUI's
//! export key and tests. [`finding_line`] is the one-line form headless `record` logs.
//!
//! A context comes from a recording ([`ReportContext::from_replay`]: the header's
//! [`crate::run::RunInfo`]) or from live state ([`ReportContext::live`]), which builds the
//! same `RunInfo` the live run writes into its recording header.
//!
//! Files: `context` (the context types and where they come from), `wording` (every phrase
//! about a finding, shared with the TUI), one file per format. Imports run one way:
//! formats -> wording -> context, and this file only re-exports and dispatches.
mod bugmail;
mod context;
mod email;
mod json;
mod markdown;
mod text;
pub mod wording;

#[cfg(test)]
mod email_tests;
#[cfg(test)]
mod tests;

use std::path::Path;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

pub use crate::run::{ProbeState, ProbeStatus};
use crate::{
    engine::Finding,
    kernel::decode::{self, GfpLayout},
};

pub use crate::run::{hostname, kernel_build, probe_statuses};
pub use context::{ReportContext, Source, StackTable};
pub use json::{JSON_SCHEMA, JSON_SCHEMA_ID};
pub use text::TEXT_WIDTH;

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Plain ASCII shaped like a lockdep/syzbot splat, for email and bugzilla.
    Text,
    /// Versioned JSON (`percpu-trace-report/v2`).
    Json,
    /// Markdown for issue trackers.
    Markdown,
    /// Plain text for a mailing list: a `Subject: [BUG] mm/percpu: ...` line, then the text
    /// report wrapped at 72 columns (tags are never wrapped), for git send-email or mutt.
    Email,
}

impl Format {
    /// Usual file extension ("txt", "json", "md"), for export file names.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Text => "txt",
            Format::Json => "json",
            Format::Markdown => "md",
            Format::Email => "eml",
        }
    }
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
        Format::Email => email::render(ctx, &ordered, stacks),
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
    use wording::{ascii, task_label};
    let g = |v: u32| decode::format_gfp(v, layout);
    let first = f
        .tasks
        .first()
        .map(task_label)
        .unwrap_or_else(|| "?".into());
    let op = f.trigger.name();
    let tg = wording::trigger_gfp(&f.trigger)
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
    // Printed at detection: a severity still waiting for the loss counters says so.
    let pending = if f.doubts.contains(&crate::engine::Doubt::LossCheckPending) {
        ", pending loss check"
    } else {
        ""
    };
    let line = format!(
        "{} ({}{pending}): {what}; allows {} it forbids [sig {:016x}]",
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
    report_from_recording_with(path, format, false)
}

/// [`report_from_recording`]; `redact` replaces kernel addresses (stack frame addresses)
/// with 0, for a report posted where a KASLR offset must not leak. Function names and
/// offsets stay: they are what a maintainer reads, as in the kernel's own splats.
pub fn report_from_recording_with(path: &Path, format: Format, redact: bool) -> Result<String> {
    report_from_recording_opts(
        path,
        format,
        &ReportOptions {
            redact,
            ..ReportOptions::default()
        },
    )
}

/// How `report` renders a recording besides the format.
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// See [`report_from_recording_with`].
    pub redact: bool,
    /// `--debug-vmlinux`: the debug vmlinux to take source lines from (refused, as an
    /// error, when its build id is not the recorded kernel's).
    pub debug_vmlinux: Option<std::path::PathBuf>,
    /// `--debug-root`: where the automatic lookup of debug files (vmlinux and modules)
    /// starts (`None`: `/`); tests point it at a directory of their own.
    pub debug_root: Option<std::path::PathBuf>,
}

/// [`report_from_recording`] with [`ReportOptions`]: source lines are added to the
/// recorded frames from a debug vmlinux of the recorded build when one is found
/// ([`crate::debuginfo`]), and the report says where they came from or how to get them.
pub fn report_from_recording_opts(
    path: &Path,
    format: Format,
    opts: &ReportOptions,
) -> Result<String> {
    report_with_count(path, format, opts).map(|(text, _)| text)
}

/// [`report_from_recording_opts`], and how many findings the report holds (the run's
/// selected ones): `report`'s exit status comes from it (0 none, 1 findings).
pub fn report_with_count(
    path: &Path,
    format: Format,
    opts: &ReportOptions,
) -> Result<(String, usize)> {
    let (engine, mut summary) = crate::record::replay_file(path).map_err(|e| anyhow!("{e}"))?;
    let source_lines = add_source_lines(&summary.header.run, &mut summary.stacks, opts)?;
    let redact = opts.redact;
    if redact {
        redact_addresses(&mut summary.stacks);
    }
    if let Some(w) = summary.skipped_warning() {
        crate::warnln!("percpu-trace: warning: {}: {w}", path.display());
    }
    let mut ctx = ReportContext::from_replay(path, &summary);
    if let Some(u) = ctx.unclean_end() {
        crate::warnln!("percpu-trace: warning: {}: {u}", path.display());
    }
    ctx.source_lines = Some(source_lines);
    ctx.set_fix_observed(&engine);
    let snap = engine.snapshot();
    ctx.findings_dropped = snap.counters.findings_dropped;
    ctx.activity = Some(snap.activity);
    // The findings the run selected (its `--comm`/`--cgroup`/`--pid`, named in the report).
    let selected: Vec<_> = engine.selected().map(|(_, f)| f.clone()).collect();
    Ok((
        render(format, &ctx, &selected, &summary.stacks),
        selected.len(),
    ))
}

/// Finds the debug vmlinux of the recorded build and each module's debug file, and adds
/// source lines to `stacks`; returns the report's one line about them. An explicit
/// vmlinux of another build is an error; an automatic candidate of another build is
/// skipped and said.
fn add_source_lines(
    run: &crate::run::RunInfo,
    stacks: &mut StackTable,
    opts: &ReportOptions,
) -> Result<String> {
    use crate::debuginfo;
    let release = run.kernel_release.as_deref();
    let build_id = run.identity.as_ref().and_then(|i| i.build_id.as_deref());
    let root = opts.debug_root.as_deref().unwrap_or(Path::new("/"));
    let (found, refused) = debuginfo::find(opts.debug_vmlinux.as_deref(), root, release, build_id)
        .map_err(|e| anyhow!("--debug-vmlinux {e:#}"))?;
    let mut line = match found {
        None => {
            let mut line = debuginfo::how_to_get(release, build_id);
            for r in refused {
                line.push_str("; ");
                line.push_str(&r);
            }
            line
        }
        Some(file) => {
            let (located, total) = debuginfo::annotate(stacks, &file.path)
                .map_err(|e| anyhow!("{}: {e:#}", file.path.display()))?;
            let check = if file.verified {
                "build id matches"
            } else {
                "NOT checked: the recording has no build id"
            };
            format!(
                "{located} of {total} kernel frame(s) from {} ({check})",
                file.path.display()
            )
        }
    };
    let modules = run
        .identity
        .as_ref()
        .map(|i| i.modules.clone())
        .unwrap_or_default();
    let notes = crate::module_debug::annotate(stacks, root, release, &modules);
    if !notes.is_empty() {
        line.push_str("; modules: ");
        line.push_str(&notes.join("; "));
    }
    Ok(line)
}

/// Zeroes every frame address in a stack table (see [`report_from_recording_with`]).
pub fn redact_addresses(stacks: &mut StackTable) {
    for frames in stacks.values_mut() {
        for f in frames {
            f.addr = 0;
        }
    }
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
