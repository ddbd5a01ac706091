//! The text report: one lockdep/syzbot-style splat per finding, plus how the run observed
//! the kernel. Plain ASCII, at most [`TEXT_WIDTH`] columns except unbreakable symbols.
use std::{cell::Cell, fmt::Write};

use crate::{
    engine::{Finding, FindingKind, TaskRole},
    kernel::plan::mode_limits,
    run::ProbeState,
};

use super::{
    bugmail,
    context::{ReportContext, Source, StackTable},
    wording::{self as d, LabeledStack},
};

/// Widest line of the text report (email-friendly).
pub const TEXT_WIDTH: usize = 76;

const RULE_HEAVY: &str = "======================================================";
const RULE_LIGHT: &str = "------------------------------------------------------";

thread_local! {
    /// The width [`render`] wraps at: [`TEXT_WIDTH`], or the email's for [`render_width`].
    static WIDTH: Cell<usize> = const { Cell::new(TEXT_WIDTH) };
}

fn width() -> usize {
    WIDTH.with(Cell::get)
}

/// [`render`] wrapped at `w` columns (the email report's 72).
pub(super) fn render_width(
    ctx: &ReportContext,
    findings: &[&Finding],
    stacks: &StackTable,
    w: usize,
) -> String {
    let old = WIDTH.replace(w);
    let out = render(ctx, findings, stacks);
    WIDTH.set(old);
    out
}

/// The whole text report.
pub(super) fn render(ctx: &ReportContext, findings: &[&Finding], stacks: &StackTable) -> String {
    let mut s = String::new();
    summary(&mut s, ctx, findings);
    for (i, f) in findings.iter().enumerate() {
        s.push('\n');
        splat(&mut s, ctx, f, i + 1, findings.len(), stacks);
    }
    s.push('\n');
    observed(&mut s, ctx);
    d::ascii(&s)
}

/// A "label: value" line, wrapped with continuation lines aligned under the value.
fn kv(s: &mut String, label: &str, value: &str) {
    let indent = " ".repeat(label.len());
    s.push_str(&d::wrap_labeled(label, value, width(), &indent));
}

fn kernel_line(ctx: &ReportContext) -> String {
    let rel = ctx
        .run
        .kernel_release
        .as_deref()
        .unwrap_or("unknown kernel");
    let arch = ctx.run.arch.as_deref().unwrap_or("unknown arch");
    match &ctx.run.kernel_build {
        Some(b) => format!("{rel} {b} {arch}"),
        None => format!("{rel} {arch}"),
    }
}

fn summary(s: &mut String, ctx: &ReportContext, findings: &[&Finding]) {
    let host = ctx
        .run
        .hostname
        .as_deref()
        .map(|h| format!(" on {h}"))
        .unwrap_or_default();
    let _ = writeln!(s, "percpu-trace {} report{host}", ctx.tool_version);
    kv(s, "kernel: ", &kernel_line(ctx));
    for (label, value) in bugmail::identity_lines(ctx) {
        // Whole when it fits: the taint columns must keep their spaces.
        if label.len() + 2 + value.len() <= width() {
            let _ = writeln!(s, "{label}: {value}");
        } else {
            kv(s, &format!("{label}: "), &value);
        }
    }
    if let Some(l) = &ctx.source_lines {
        kv(s, "source lines: ", l);
    }
    let fix = ctx.fix();
    kv(s, "fix verdict: ", &d::fix_verdict(&fix));
    for p in &fix.fix.patches {
        kv(
            s,
            &format!("  {:<13} {:<8} ", p.id.id(), p.state.id()),
            &p.evidence,
        );
    }
    if findings.is_empty() {
        s.push_str("findings: none\n");
        if let Some(a) = &ctx.activity {
            kv(
                s,
                "why none: ",
                &a.why_no_finding(ctx.run.attach_mode.as_deref()),
            );
        }
        return;
    }
    let by_kind: Vec<String> = FindingKind::ALL
        .iter()
        .filter_map(|k| {
            let n = findings.iter().filter(|f| f.kind == *k).count();
            (n > 0).then(|| format!("{n} {k}"))
        })
        .collect();
    let occ: u64 = findings.iter().map(|f| f.count).sum();
    let _ = writeln!(
        s,
        "findings: {} ({}), {occ} occurrence(s)",
        findings.len(),
        by_kind.join(", ")
    );
}

fn splat(
    s: &mut String,
    ctx: &ReportContext,
    f: &Finding,
    n: usize,
    total: usize,
    table: &StackTable,
) {
    let l = &ctx.run.gfp_layout;
    let stacks = d::stacks(f, table);
    let first = f.tasks.first();
    let who = first.map(d::task_label).unwrap_or_else(|| "?".into());
    let reclaim = d::reclaim_lock(l, f);

    let _ = writeln!(s, "{RULE_HEAVY}");
    let _ = writeln!(s, "WARNING: {}", d::headline(l, f));
    let rel = ctx
        .run
        .kernel_release
        .as_deref()
        .unwrap_or("unknown kernel");
    match &ctx.run.kernel_build {
        Some(b) => s.push_str(&d::wrap(&format!("{rel} {b}"), width(), "")),
        None => {
            let _ = writeln!(s, "{rel}");
        }
    }
    // On a line of its own: wrapping would squeeze the kernel's one column per flag.
    if let Some(t) = bugmail::taint_word(ctx) {
        let _ = writeln!(s, "{t}");
    }
    let fix = ctx.fix();
    let _ = writeln!(
        s,
        "{}, fix verdict {}; finding {n} of {total}: {} ({})",
        ctx.run.arch.as_deref().unwrap_or("unknown arch"),
        fix.fix.verdict,
        f.kind,
        f.severity
    );
    if let Some(note) = d::finding_fix_note(&fix, f) {
        s.push_str(&d::wrap(&note, width(), ""));
    }
    let _ = writeln!(s, "{RULE_LIGHT}");

    // The lockdep-style opening: who takes what while holding what.
    let held_at = d::lock_site(&stacks)
        .map(|fr| format!(" at: {fr}"))
        .unwrap_or_default();
    let trig = d::trigger_phrase(l, &f.trigger);
    let bits = d::gfp(l, f.violated_bits);
    match f.kind {
        FindingKind::Recursion => {
            let _ = writeln!(s, "{who} is trying to acquire lock:");
            s.push_str(&d::wrap(&format!("({reclaim}) by {trig}"), width(), " "));
            let _ = writeln!(s, "\nbut task is already holding lock:");
            let _ = writeln!(s, " (pcpu_alloc_mutex){held_at}");
            let _ = writeln!(s, "\nwhile its allocation forbids that reclaim:");
        }
        FindingKind::Window => {
            let _ = writeln!(s, "{who} is holding lock:");
            let _ = writeln!(s, " (pcpu_alloc_mutex){held_at}");
            let _ = writeln!(
                s,
                "\nand allocates with a gfp that may acquire ({reclaim}):"
            );
            s.push_str(&d::wrap(&trig, width(), " "));
            let _ = writeln!(s, "\nwhile the allocation it serves forbids that reclaim:");
        }
        FindingKind::CrossTask => {
            let waiter = f
                .tasks
                .get(1)
                .map(d::task_label)
                .unwrap_or_else(|| "?".into());
            let _ = writeln!(s, "{who} is holding lock:");
            let _ = writeln!(s, " (pcpu_alloc_mutex){held_at}");
            let _ = writeln!(s, "\nand is trying to acquire lock:");
            s.push_str(&d::wrap(&format!("({reclaim}) by {trig}"), width(), " "));
            let _ = writeln!(
                s,
                "\nwhile {waiter} waits for pcpu_alloc_mutex and forbids that reclaim:"
            );
        }
    }
    kv(s, " constraint:     ", &d::gfp(l, f.constraint_gfp));
    if let Some(e) = f.trigger_effective_gfp {
        kv(s, " trigger gfp:    ", &d::gfp(l, e));
    }
    kv(s, " allowed anyway: ", &bits);
    s.push_str(" (effective gfp: as passed, narrowed by the task's memalloc scope)\n");

    s.push_str("\ntasks:\n");
    for t in &f.tasks {
        let _ = writeln!(s, " {}", d::task_summary(t));
        if let Some(g) = t.gfp {
            kv(s, "   pcpu_alloc gfp: ", &d::gfp(l, g));
        } else if t.role != TaskRole::Holder {
            let _ = writeln!(s, "   pcpu_alloc gfp: not seen");
        }
        if let Some(e) = t.effective_gfp {
            kv(s, "   constraint:     ", &d::gfp(l, e));
        }
        kv(s, "   task flags:     ", &d::task_flags(t.task_flags));
        if let Some(note) = d::task_flags_note(f, t) {
            let _ = writeln!(s, "                   ({note})");
        }
        let _ = writeln!(
            s,
            "   memalloc scope: {}",
            d::scope(t.task_flags).unwrap_or("none")
        );
    }

    let evidence = d::evidence(f);
    if !evidence.is_empty() {
        s.push_str("\nevidence:\n");
    }
    for line in evidence {
        s.push_str(&d::wrap(&line, width(), " "));
    }

    s.push_str("\ndurations:\n");
    let durs = d::durations(f);
    if durs.is_empty() {
        s.push_str(" none measured\n");
    }
    for line in durs {
        s.push_str(&d::wrap(&line, width(), " "));
    }
    let _ = writeln!(
        s,
        "occurrences: {}, first {} last {} (CLOCK_MONOTONIC)",
        f.count,
        d::stamp(f.first_seen_ns),
        d::stamp(f.last_seen_ns)
    );
    let _ = writeln!(s, "signature: {:016x}", f.signature);

    s.push_str("\nother info that might help us debug this:\n\n");
    if f.kind == FindingKind::CrossTask {
        s.push_str(" Possible unsafe locking scenario:\n\n");
    } else {
        s.push_str(" Possible unsafe locking scenario (one task):\n\n");
    }
    s.push_str(&d::scenario(l, f).render());
    let _ = writeln!(
        s,
        "\n <GFP_{} context> is whatever made the caller constrain its",
        d::constraint_word(l, f)
    );
    s.push_str(
        " allocation (a frozen queue's q_usage_counter, writeback of an\n \
         IO_FLUSHER, a filesystem transaction); the tracer cannot see it.\n",
    );

    s.push_str("\nexplanation:\n");
    s.push_str(&d::wrap(&f.explanation, width(), " "));

    if stacks.is_empty() {
        s.push_str("\nno kernel stack was taken for this finding.\n");
    }
    for st in &stacks {
        s.push('\n');
        call_trace(s, st);
    }

    s.push_str("\nhow to reproduce:\n");
    let r = bugmail::reproducer(ctx, f, table);
    s.push_str(&d::wrap(&r.trigger_line(), width(), " "));
    s.push_str(&d::wrap(&r.note, width(), " "));
    let _ = writeln!(s, "   {}", r.command);
    s.push('\n');
    for line in bugmail::tags(ctx, f).lines() {
        let _ = writeln!(s, "{line}");
    }
}

fn call_trace(s: &mut String, st: &LabeledStack<'_>) {
    let _ = writeln!(s, "{}:", d::stack_title(st));
    s.push_str("Call Trace:\n <TASK>\n");
    match st.frames {
        Some(frames) if !frames.is_empty() => {
            for fr in frames {
                for line in d::frame_lines_marked(fr) {
                    let _ = writeln!(s, " {line}");
                }
            }
        }
        _ => s.push_str(" (stack not in the recording's stack table)\n"),
    }
    s.push_str(" </TASK>\n");
}

fn observed(s: &mut String, ctx: &ReportContext) {
    let _ = writeln!(s, "{RULE_HEAVY}");
    let _ = writeln!(
        s,
        "How this was observed (percpu-trace {})",
        ctx.tool_version
    );
    let _ = writeln!(s, "{RULE_LIGHT}");
    match &ctx.source {
        Source::Live => s.push_str("source:      live tracing\n"),
        Source::Recording { path } => {
            let by = ctx
                .recorded_by()
                .map(|v| format!(" (recorded by percpu-trace {v})"))
                .unwrap_or_default();
            kv(
                s,
                "source:      ",
                &format!("replay of {}{by}", path.display()),
            );
        }
    }
    if let Some(h) = &ctx.run.hostname {
        let _ = writeln!(s, "host:        {h}");
    }
    let dur = ctx
        .duration_ns
        .map(|n| format!(" in {}", d::dur(n)))
        .unwrap_or_default();
    let _ = writeln!(s, "events:      {}{dur}", ctx.events);
    let lost = d::events_lost(ctx);
    let drops: Vec<String> = ctx
        .drops
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if drops.is_empty() {
        s.push_str("losses:      none (every event the probes emitted was read)\n");
    } else {
        kv(
            s,
            "losses:      ",
            &format!(
                "{} ({lost} event(s) lost; stack losses lose only detail)",
                drops.join(", ")
            ),
        );
    }
    if ctx.missing_stacks > 0 {
        let _ = writeln!(
            s,
            "stacks:      {} event(s) refer to stacks not recorded",
            ctx.missing_stacks
        );
    }
    if let Some(a) = &ctx.activity {
        s.push_str("what was seen:\n");
        for (label, value) in d::activity_lines(a) {
            kv(s, &format!("  {label:<26} "), &value);
        }
    }
    if ctx.findings_dropped > 0 {
        kv(
            s,
            "not kept:    ",
            &format!(
                "{} finding occurrence(s) past the cap of distinct findings (counted, \
                 not shown)",
                ctx.findings_dropped
            ),
        );
    }
    if ctx.skipped_lines > 0 {
        let first = ctx
            .first_skipped
            .map(|(line, offset)| format!(" (first at line {line}, byte offset {offset})"))
            .unwrap_or_default();
        kv(
            s,
            "recording:   ",
            &format!(
                "{} corrupt or cut line(s) skipped{first}",
                ctx.skipped_lines
            ),
        );
    }
    if let Some(u) = ctx.unclean_end() {
        kv(s, "warning:     ", &u);
    }
    if !ctx.filters().is_empty() {
        kv(s, "filters:     ", &ctx.filters().join(" "));
    }
    let _ = writeln!(
        s,
        "attach mode: {}",
        ctx.run.attach_mode.as_deref().unwrap_or("unknown")
    );
    if let Some(l) = ctx.run.attach_mode.as_deref().and_then(mode_limits) {
        s.push_str(&d::wrap(l, width(), "             "));
    }
    if ctx.run.probes.is_empty() {
        s.push_str("probes:      not recorded\n");
        return;
    }
    if ctx.run.probes_from_plan {
        s.push_str("probes (as planned; the recording has no attach results):\n");
    } else {
        s.push_str("probes:\n");
    }
    for p in &ctx.run.probes {
        let state = match p.state {
            ProbeState::Attached => "attached",
            ProbeState::Unavailable => "UNAVAILABLE",
            ProbeState::Failed => "FAILED",
        };
        let _ = writeln!(s, " {:<11} {} ({})", state, p.point, p.target);
        if let Some(why) = &p.detail {
            s.push_str(&d::wrap(why, width(), "             "));
        }
    }
}
