//! The JSON report, `percpu-trace-report/v2`. The schema is
//! `percpu-trace/schema/report-v2.schema.json`; change both together, and bump the version
//! for anything but added optional fields (v2: the build's identity, each finding's tags
//! and reproducer, and frames' source lines became required).
//!
//! What the text, email and markdown reports also say (identity, tags, reproducer) is the
//! same value ([`super::bugmail`]) serialized, never derived a second time here.
//!
//! Raw kernel numbers are kept next to their decoded names (`value` and `names`) so a
//! consumer can re-decode; 64-bit addresses and signatures are hex strings because JSON
//! numbers above 2^53 lose precision in many parsers. Typed structs (not `json!`) keep the
//! fields in schema order, `schema` first.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    engine::{Doubt, Finding, FindingKind, Severity, TaskInfo, TaskRole, Trigger, WaiterReason},
    event::{Frame, InlinedFrame},
    kernel::{
        decode::{self, GfpLayout},
        plan::mode_limits,
        PatchEvidence, Verdict,
    },
    run::ProbeStatus,
};

use super::{
    bugmail::{self, Identity, Reproducer, Tags},
    context::{ReportContext, Source, StackTable},
    wording as d,
};

/// Value of the JSON report's `schema` field.
pub const JSON_SCHEMA_ID: &str = "percpu-trace-report/v2";

/// The JSON Schema the JSON report follows (also in the repository as
/// `percpu-trace/schema/report-v2.schema.json`).
pub const JSON_SCHEMA: &str = include_str!("../../schema/report-v2.schema.json");

#[derive(Serialize)]
struct Report<'a> {
    schema: &'static str,
    tool: Tool<'a>,
    kernel: Kernel<'a>,
    observation: Observation<'a>,
    summary: Summary,
    findings: Vec<JFinding<'a>>,
}

#[derive(Serialize)]
struct Tool<'a> {
    name: &'static str,
    version: &'a str,
    recorded_by: Option<&'a str>,
}

#[derive(Serialize)]
struct Kernel<'a> {
    release: Option<&'a str>,
    build: Option<&'a str>,
    arch: Option<&'a str>,
    hostname: Option<&'a str>,
    fix_present: Option<bool>,
    fix_detail: Option<&'a str>,
    fix: JFix,
    gfp_layout_source: &'a str,
    /// Build id, taint, config, module build ids; null facts say why in `unknown`.
    identity: Identity,
    /// Where the frames' source lines came from, or how to get them (null: not looked
    /// for, e.g. a live run).
    source_lines: Option<&'a str>,
}

/// The reconciled fix verdict (`kernel.fix`).
#[derive(Serialize)]
struct JFix {
    verdict: Verdict,
    /// The verdict before this run's events (the recording's static one).
    static_verdict: Verdict,
    /// Whether this run upgraded likely-fixed to fixed.
    upgraded_by_run: bool,
    /// What the run changed, one line.
    run_note: Option<String>,
    patches: Vec<PatchEvidence>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum JSource {
    Live,
    Recording { path: String },
}

#[derive(Serialize)]
struct Observation<'a> {
    source: JSource,
    attach_mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attach_limits: Option<&'static str>,
    probes: &'a [ProbeStatus],
    probes_from_plan: bool,
    filters: Vec<String>,
    events: u64,
    duration_ns: Option<u64>,
    drops: &'a BTreeMap<String, u64>,
    events_lost: u64,
    missing_stacks: u64,
    #[serde(skip_serializing_if = "is_zero")]
    findings_dropped: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    activity: Option<&'a crate::engine::ActivityCounts>,
    // Only when lines were skipped, so reports of sound recordings do not change.
    #[serde(skip_serializing_if = "is_zero")]
    skipped_lines: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_skipped: Option<Skipped>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_uncleanly_at_ns: Option<u64>,
}

#[derive(Serialize)]
struct Skipped {
    line: u64,
    offset: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct Summary {
    findings: usize,
    occurrences: u64,
    by_kind: BTreeMap<&'static str, usize>,
    max_severity: Option<Severity>,
}

#[derive(Serialize)]
struct Gfp {
    value: u32,
    names: String,
}

#[derive(Serialize)]
struct JTrigger {
    op: &'static str,
    description: String,
    gfp: Option<Gfp>,
    effective_gfp: Option<Gfp>,
    order: Option<u32>,
    memcg: Option<bool>,
}

#[derive(Serialize)]
struct JTask<'a> {
    pid: u32,
    tgid: u32,
    comm: &'a str,
    cgroup_id: u64,
    role: TaskRole,
    gfp: Option<Gfp>,
    effective_gfp: Option<Gfp>,
    task_flags: Gfp,
    memalloc_scope: Option<&'static str>,
}

#[derive(Serialize)]
struct JDurations {
    hold_ns: Option<u64>,
    reclaim_ns: Option<u64>,
    reclaim_total_ns: u64,
    wait_ns: Option<u64>,
    /// `wait_ns` was measured to the wait's end (else a lower bound).
    wait_end_seen: bool,
}

#[derive(Serialize)]
struct JFrame<'a> {
    addr: String,
    function: Option<&'a str>,
    offset: u64,
    len: Option<u64>,
    module: Option<&'a str>,
    text: String,
    /// Source file (DWARF, build directory stripped); null without debug info.
    file: Option<&'a str>,
    line: Option<u32>,
    /// Calls inlined at the address, outermost first.
    inlined: &'a [InlinedFrame],
}

#[derive(Serialize)]
struct JStack<'a> {
    id: u32,
    pid: Option<u32>,
    role: Option<TaskRole>,
    frames: Option<Vec<JFrame<'a>>>,
}

#[derive(Serialize)]
struct JFinding<'a> {
    kind: &'static str,
    severity: Severity,
    headline: String,
    explanation: &'a str,
    count: u64,
    first_seen_ns: u64,
    last_seen_ns: u64,
    signature: String,
    fix_present: Option<bool>,
    /// On a partially fixed kernel, the missing patch that leaves this hazard open.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix_note: Option<String>,
    trigger: JTrigger,
    constraint_gfp: Gfp,
    violated: Gfp,
    tasks: Vec<JTask<'a>>,
    durations: JDurations,
    #[serde(skip_serializing_if = "Option::is_none")]
    waiter_reason: Option<WaiterReason>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    doubts: &'a [Doubt],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    evidence: Vec<String>,
    scenario: Vec<[String; 2]>,
    stacks: Vec<JStack<'a>>,
    tags: JTags,
    reproducer: Reproducer,
}

/// A finding's tags, and the lines the text report prints for them.
#[derive(Serialize)]
struct JTags {
    #[serde(flatten)]
    tags: Tags,
    lines: Vec<String>,
}

pub(super) fn render(ctx: &ReportContext, findings: &[&Finding], stacks: &StackTable) -> String {
    let mut s = serde_json::to_string_pretty(&report(ctx, findings, stacks))
        .expect("report structs always serialize");
    s.push('\n');
    s
}

pub(super) fn value(
    ctx: &ReportContext,
    findings: &[&Finding],
    stacks: &StackTable,
) -> serde_json::Value {
    serde_json::to_value(report(ctx, findings, stacks)).expect("report structs always serialize")
}

fn gfp(l: &GfpLayout, value: u32) -> Gfp {
    Gfp {
        value,
        names: decode::format_gfp(value, l),
    }
}

fn report<'a>(
    ctx: &'a ReportContext,
    findings: &[&'a Finding],
    table: &'a StackTable,
) -> Report<'a> {
    let l = &ctx.run.gfp_layout;
    let by_kind = FindingKind::ALL
        .iter()
        .map(|k| (k.id(), findings.iter().filter(|f| f.kind == *k).count()))
        .collect();
    Report {
        schema: JSON_SCHEMA_ID,
        tool: Tool {
            name: "percpu-trace",
            version: &ctx.tool_version,
            recorded_by: ctx.recorded_by(),
        },
        kernel: Kernel {
            release: ctx.run.kernel_release.as_deref(),
            build: ctx.run.kernel_build.as_deref(),
            arch: ctx.run.arch.as_deref(),
            hostname: ctx.run.hostname.as_deref(),
            fix_present: ctx.run.fix_present,
            fix_detail: ctx.run.fix_detail.as_deref(),
            fix: {
                let r = ctx.fix();
                JFix {
                    verdict: r.fix.verdict,
                    static_verdict: r.static_verdict,
                    upgraded_by_run: r.upgraded(),
                    run_note: r.note.clone(),
                    patches: r.fix.patches,
                }
            },
            gfp_layout_source: &ctx.run.gfp_layout.source,
            identity: bugmail::identity(ctx),
            source_lines: ctx.source_lines.as_deref(),
        },
        observation: Observation {
            source: match &ctx.source {
                Source::Live => JSource::Live,
                Source::Recording { path } => JSource::Recording {
                    path: path.display().to_string(),
                },
            },
            attach_mode: ctx.run.attach_mode.as_deref(),
            attach_limits: ctx.run.attach_mode.as_deref().and_then(mode_limits),
            probes: &ctx.run.probes,
            probes_from_plan: ctx.run.probes_from_plan,
            filters: ctx.filters(),
            events: ctx.events,
            duration_ns: ctx.duration_ns,
            drops: &ctx.drops,
            events_lost: d::events_lost(ctx),
            missing_stacks: ctx.missing_stacks,
            findings_dropped: ctx.findings_dropped,
            activity: ctx.activity.as_ref(),
            skipped_lines: ctx.skipped_lines,
            first_skipped: ctx
                .first_skipped
                .map(|(line, offset)| Skipped { line, offset }),
            ended_uncleanly_at_ns: ctx.ended_uncleanly_at_ns,
        },
        summary: Summary {
            findings: findings.len(),
            occurrences: findings.iter().map(|f| f.count).sum(),
            by_kind,
            max_severity: findings.iter().map(|f| f.severity).max(),
        },
        findings: findings.iter().map(|f| finding(ctx, l, f, table)).collect(),
    }
}

fn task<'a>(l: &GfpLayout, t: &'a TaskInfo) -> JTask<'a> {
    JTask {
        pid: t.pid,
        tgid: t.tgid,
        comm: &t.comm,
        cgroup_id: t.cgroup_id,
        role: t.role,
        gfp: t.gfp.map(|g| gfp(l, g)),
        effective_gfp: t.effective_gfp.map(|g| gfp(l, g)),
        task_flags: Gfp {
            value: t.task_flags,
            names: decode::format_task_flags(t.task_flags),
        },
        memalloc_scope: d::scope(t.task_flags),
    }
}

fn frame(f: &Frame) -> JFrame<'_> {
    JFrame {
        addr: format!("{:#x}", f.addr),
        function: f.function.as_deref(),
        offset: f.offset,
        len: f.len,
        module: f.module.as_deref(),
        text: d::frame_line(f),
        file: f.file.as_deref(),
        line: f.line,
        inlined: &f.inlined,
    }
}

fn finding<'a>(
    ctx: &ReportContext,
    l: &GfpLayout,
    f: &'a Finding,
    table: &'a StackTable,
) -> JFinding<'a> {
    let (order, memcg) = match f.trigger {
        Trigger::Reclaim { order, memcg, .. } => (Some(order), Some(memcg)),
        _ => (None, None),
    };
    JFinding {
        kind: f.kind.id(),
        severity: f.severity,
        headline: d::headline(l, f),
        explanation: &f.explanation,
        count: f.count,
        first_seen_ns: f.first_seen_ns,
        last_seen_ns: f.last_seen_ns,
        signature: format!("{:016x}", f.signature),
        fix_present: f.fix_present,
        fix_note: d::finding_fix_note(&ctx.fix(), f),
        trigger: JTrigger {
            op: f.trigger.name(),
            description: d::trigger_words(&f.trigger),
            gfp: d::trigger_gfp(&f.trigger).map(|g| gfp(l, g)),
            effective_gfp: f.trigger_effective_gfp.map(|g| gfp(l, g)),
            order,
            memcg,
        },
        constraint_gfp: gfp(l, f.constraint_gfp),
        violated: gfp(l, f.violated_bits),
        tasks: f.tasks.iter().map(|t| task(l, t)).collect(),
        durations: JDurations {
            hold_ns: f.durations.hold_ns,
            reclaim_ns: f.durations.reclaim_ns,
            reclaim_total_ns: f.durations.reclaim_total_ns,
            wait_ns: f.durations.wait_ns,
            wait_end_seen: f.durations.wait_end_seen,
        },
        waiter_reason: f.waiter_reason,
        doubts: &f.doubts,
        evidence: d::evidence(f),
        scenario: d::scenario(l, f)
            .rows
            .into_iter()
            .map(|(a, b)| [a, b])
            .collect(),
        stacks: d::stacks(f, table)
            .into_iter()
            .map(|s| JStack {
                id: s.id,
                pid: s.task.map(|t| t.pid),
                role: s.task.map(|t| t.role),
                frames: s.frames.map(|fr| fr.iter().map(frame).collect()),
            })
            .collect(),
        tags: {
            let tags = bugmail::tags(ctx, f);
            JTags {
                lines: tags.lines(),
                tags,
            }
        },
        reproducer: bugmail::reproducer(ctx, f, table),
    }
}
