//! The markdown report for issue trackers (GitHub, GitLab, Jira's markdown): a summary
//! table, then per finding its facts, the lockdep-style scenario and the stacks in code
//! blocks (stacks folded in `<details>` so a long report stays readable).
use std::fmt::Write;

use crate::{engine::Finding, kernel::plan::mode_limits, run::ProbeState};

use super::{
    bugmail,
    context::{ReportContext, Source, StackTable},
    wording as d,
};

/// Escapes text for a table cell or inline text: pipes, backticks and markup characters.
/// Underscores inside identifiers (`pcpu_alloc_mutex`) cannot start emphasis in
/// GitHub-flavoured markdown and stay as they are, so the source remains readable.
fn esc(s: &str) -> String {
    let chars: Vec<char> = d::ascii(s).chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        let word = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_some_and(|c| c.is_ascii_alphanumeric())
        };
        let escape = match c {
            '|' | '`' | '*' | '<' | '>' | '[' | ']' | '\\' => true,
            '_' => !(word(i.checked_sub(1)) && word(Some(i + 1))),
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(if c == '\n' { ' ' } else { c });
    }
    out
}

/// Inline code; gfp names and symbols contain `_` and `|`, which code spans keep literal.
/// Backticks cannot occur in what this renders (decoded names, numbers, sanitized comms
/// have them replaced).
fn code(s: &str) -> String {
    format!("`{}`", d::ascii(s).replace('`', "'"))
}

/// Inline code inside a table cell: GitHub-flavoured tables split on `|` even inside code
/// spans, and render `\|` there as a pipe.
fn cell_code(s: &str) -> String {
    code(s).replace('|', "\\|")
}

pub(super) fn render(ctx: &ReportContext, findings: &[&Finding], stacks: &StackTable) -> String {
    let l = &ctx.run.gfp_layout;
    let mut s = String::new();
    let title = match findings.first() {
        Some(f) => d::headline(l, f),
        None => "no NOFS/NOIO reclaim hazard under pcpu_alloc_mutex observed".into(),
    };
    let _ = writeln!(s, "## percpu-trace: {}\n", esc(&title));
    let rel = ctx.run.kernel_release.as_deref().unwrap_or("unknown");
    let arch = ctx.run.arch.as_deref().unwrap_or("unknown");
    let _ = writeln!(s, "- **Kernel:** {} ({})", code(rel), esc(arch));
    if let Some(b) = &ctx.run.kernel_build {
        let _ = writeln!(s, "- **Build:** {}", code(b));
    }
    for (label, value) in bugmail::identity_lines(ctx) {
        let mut l = label.to_string();
        l[..1].make_ascii_uppercase();
        let _ = writeln!(s, "- **{l}:** {}", esc(&value));
    }
    if let Some(l) = &ctx.source_lines {
        let _ = writeln!(s, "- **Source lines:** {}", esc(l));
    }
    let fix = ctx.fix();
    let _ = writeln!(
        s,
        "- **Fix verdict:** **{}**{}",
        fix.fix.verdict,
        fix.note
            .as_deref()
            .map(|n| format!(" ({})", esc(n)))
            .unwrap_or_default()
    );
    for p in &fix.fix.patches {
        let _ = writeln!(
            s,
            "  - {} {}: {}",
            code(p.id.id()),
            p.state.id(),
            esc(&p.evidence)
        );
    }
    if let Some(h) = &ctx.run.hostname {
        let _ = writeln!(s, "- **Host:** {}", esc(h));
    }
    let _ = writeln!(s, "- **Tool:** percpu-trace {}\n", esc(&ctx.tool_version));

    if findings.is_empty() {
        s.push_str("No findings.\n\n");
    } else {
        s.push_str("| # | kind | severity | task(s) | trigger | constraint | allowed | count |\n");
        s.push_str("|---|------|----------|---------|---------|------------|---------|-------|\n");
        for (i, f) in findings.iter().enumerate() {
            let tasks: Vec<String> = f.tasks.iter().map(|t| esc(&d::task_label(t))).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                i + 1,
                cell_code(f.kind.id()),
                f.severity,
                tasks.join(", "),
                cell_code(f.trigger.name()),
                cell_code(&crate::kernel::decode::format_gfp(f.constraint_gfp, l)),
                cell_code(&crate::kernel::decode::format_gfp(f.violated_bits, l)),
                f.count
            );
        }
        s.push('\n');
    }

    for (i, f) in findings.iter().enumerate() {
        finding(&mut s, ctx, f, i + 1, stacks);
    }
    observed(&mut s, ctx);
    s
}

fn finding(s: &mut String, ctx: &ReportContext, f: &Finding, n: usize, table: &StackTable) {
    let l = &ctx.run.gfp_layout;
    let _ = writeln!(
        s,
        "### {n}. {} ({}, {})\n",
        esc(&d::headline(l, f)),
        f.kind.id(),
        f.severity
    );
    let _ = writeln!(s, "{}\n", esc(&f.explanation));
    if let Some(note) = d::finding_fix_note(&ctx.fix(), f) {
        let _ = writeln!(s, "**{}**\n", esc(&note));
    }
    let trig_gfp = d::trigger_gfp(&f.trigger)
        .map(|g| format!(", gfp {}", code(&d::gfp(l, g))))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "- **Trigger:** {}{trig_gfp}",
        esc(&d::trigger_words(&f.trigger))
    );
    if let Some(e) = f.trigger_effective_gfp {
        let _ = writeln!(s, "- **Trigger gfp after scope:** {}", code(&d::gfp(l, e)));
    }
    let _ = writeln!(
        s,
        "- **Constraint:** {}",
        code(&d::gfp(l, f.constraint_gfp))
    );
    let _ = writeln!(
        s,
        "- **Allowed anyway:** {}",
        code(&d::gfp(l, f.violated_bits))
    );
    let evidence = d::evidence(f);
    if !evidence.is_empty() {
        let _ = writeln!(s, "- **Evidence:** {}", esc(&evidence.join("; ")));
    }
    let durs = d::durations(f);
    if !durs.is_empty() {
        let _ = writeln!(s, "- **Durations:** {}", esc(&durs.join("; ")));
    }
    let _ = writeln!(
        s,
        "- **Occurrences:** {} (first {}, last {} CLOCK_MONOTONIC), signature {}\n",
        f.count,
        code(&d::stamp(f.first_seen_ns)),
        code(&d::stamp(f.last_seen_ns)),
        code(&format!("{:016x}", f.signature))
    );

    s.push_str("| task | role | tgid | cgroup | pcpu_alloc gfp | constraint | task flags |\n");
    s.push_str("|------|------|------|--------|----------------|------------|------------|\n");
    for t in &f.tasks {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            esc(&d::task_label(t)),
            d::role(t.role),
            t.tgid,
            t.cgroup_id,
            t.gfp
                .map_or("not seen".into(), |g| cell_code(&d::gfp(l, g))),
            t.effective_gfp
                .map_or("-".into(), |g| cell_code(&d::gfp(l, g))),
            cell_code(&d::task_flags(t.task_flags)),
        );
    }
    s.push('\n');

    s.push_str("Possible unsafe locking scenario:\n\n```text\n");
    s.push_str(&d::ascii(&d::scenario(l, f).render()));
    s.push_str("```\n\n");

    for st in d::stacks(f, table) {
        let who = match st.task {
            Some(t) => format!("{} ({})", esc(&d::task_label(t)), d::role(t.role)),
            None => "task not recorded".into(),
        };
        let _ = writeln!(
            s,
            "<details><summary>Stack of {who}, id {}</summary>\n\n```text",
            st.id
        );
        match st.frames {
            Some(frames) if !frames.is_empty() => {
                for fr in frames {
                    for line in d::frame_lines_marked(fr) {
                        let _ = writeln!(s, "{}", d::ascii(&line));
                    }
                }
            }
            _ => s.push_str("(stack not in the recording's stack table)\n"),
        }
        s.push_str("```\n\n</details>\n\n");
    }

    s.push_str("How to reproduce:\n\n");
    let r = bugmail::reproducer(ctx, f, table);
    let _ = writeln!(s, "{}\n\n{}\n", esc(&r.trigger_line()), esc(&r.note));
    let _ = writeln!(s, "```sh\n{}\n```", r.command);
    s.push_str("\n```text\n");
    for line in bugmail::tags(ctx, f).lines() {
        let _ = writeln!(s, "{}", d::ascii(&line));
    }
    s.push_str("```\n\n");
}

fn observed(s: &mut String, ctx: &ReportContext) {
    s.push_str("### How this was observed\n\n");
    match &ctx.source {
        Source::Live => s.push_str("- **Source:** live tracing\n"),
        Source::Recording { path } => {
            let _ = writeln!(
                s,
                "- **Source:** replay of {}{}",
                code(&path.display().to_string()),
                ctx.recorded_by()
                    .map(|v| format!(" (recorded by percpu-trace {})", esc(v)))
                    .unwrap_or_default()
            );
        }
    }
    let dur = ctx
        .duration_ns
        .map(|n| format!(" in {}", d::dur(n)))
        .unwrap_or_default();
    let _ = writeln!(s, "- **Events:** {}{dur}", ctx.events);
    let drops: Vec<String> = ctx
        .drops
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{} {v}", code(k)))
        .collect();
    if drops.is_empty() {
        s.push_str("- **Losses:** none\n");
    } else {
        let _ = writeln!(
            s,
            "- **Losses:** {} ({} event(s) lost)",
            drops.join(", "),
            d::events_lost(ctx)
        );
    }
    if let Some(a) = &ctx.activity {
        s.push_str("- **What was seen:**\n");
        for (label, value) in d::activity_lines(a) {
            let _ = writeln!(s, "  - {}: {}", label.trim(), value);
        }
        if a.constrained_took_mutex == 0 || a.nested_allocations_allowing_fs_io == 0 {
            let _ = writeln!(
                s,
                "  - *{}*",
                a.why_no_finding(ctx.run.attach_mode.as_deref())
            );
        }
    }
    if ctx.findings_dropped > 0 {
        let _ = writeln!(
            s,
            "- **Not kept:** {} finding occurrence(s) past the cap of distinct findings",
            ctx.findings_dropped
        );
    }
    if ctx.skipped_lines > 0 {
        let _ = writeln!(
            s,
            "- **Recording:** {} corrupt or cut line(s) skipped",
            ctx.skipped_lines
        );
    }
    if let Some(u) = ctx.unclean_end() {
        let _ = writeln!(s, "- **Warning:** {u}");
    }
    if !ctx.filters().is_empty() {
        let _ = writeln!(s, "- **Filters:** {}", code(&ctx.filters().join(" ")));
    }
    let _ = writeln!(
        s,
        "- **Attach mode:** {}",
        esc(ctx.run.attach_mode.as_deref().unwrap_or("unknown"))
    );
    if let Some(l) = ctx.run.attach_mode.as_deref().and_then(mode_limits) {
        let _ = writeln!(s, "- **Limits:** {}", esc(l));
    }
    if ctx.run.probes.is_empty() {
        return;
    }
    if ctx.run.probes_from_plan {
        s.push_str("\nProbe states are as planned: the recording has no attach results.\n");
    }
    s.push_str("\n| probe point | how | state | detail |\n|---|---|---|---|\n");
    for p in &ctx.run.probes {
        let state = match p.state {
            ProbeState::Attached => "attached",
            ProbeState::Unavailable => "**unavailable**",
            ProbeState::Failed => "**failed**",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {state} | {} |",
            esc(&p.point),
            cell_code(&p.target),
            p.detail.as_deref().map(esc).unwrap_or_default()
        );
    }
}
