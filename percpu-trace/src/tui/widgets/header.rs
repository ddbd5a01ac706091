//! The header: what is traced (kernel, fix verdict reconciled with the run, attach mode), how much traffic, which
//! probes are on, and the verdict line (also drawn by the tiny screen).
use ratatui::{
    layout::Rect,
    style::Modifier,
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use crate::{
    engine::{reconcile, Severity},
    kernel::Verdict as FixVerdictKind,
    report::ProbeState,
};

use super::{
    super::app::{App, Verdict},
    format::{fmt_count, fmt_uptime},
};

/// The one-line answer: was the bug hit, is the hazard live, or why nothing was found.
pub fn verdict_line(app: &App) -> Line<'static> {
    let t = &app.theme;
    let (style, text) = match app.verdict {
        Verdict::Hit(n) => (
            t.bad(),
            format!("BUG HIT: NOFS/NOIO caller in FS/IO reclaim holding pcpu_alloc_mutex ({n})"),
        ),
        Verdict::Live(n) => (
            t.severity(Severity::High),
            format!("HAZARD LIVE: mutex holder in FS/IO reclaim, constrained task waiting ({n})"),
        ),
        Verdict::Exposed(n) => (
            t.warn(),
            format!(
                "EXPOSED: FS/IO-capable allocation under the mutex for a NOIO/NOFS caller ({n})"
            ),
        ),
        Verdict::Quiet(Some(false)) => (
            t.warn(),
            "no finding yet; kernel lacks the fix series (vulnerable)".into(),
        ),
        Verdict::Quiet(Some(true)) => (t.good(), "no finding; kernel has the fix series".into()),
        Verdict::Quiet(None) => (
            t.text(),
            "no finding yet; fix status of this kernel unknown".into(),
        ),
    };
    Line::from(vec![Span::styled("▶ ", style), Span::styled(text, style)])
}

/// The four header lines: kernel and attach mode, traffic, probes, verdict.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let h = &app.header;
    let sep = || Span::styled(" │ ", t.dim());
    let fix = reconcile(
        &h.context.run.fix_verdict(),
        app.engine().fix_observations(),
    );
    let fix_style = match fix.fix.verdict {
        FixVerdictKind::NotAffected | FixVerdictKind::Fixed | FixVerdictKind::LikelyFixed => {
            t.good()
        }
        FixVerdictKind::Vulnerable | FixVerdictKind::PartiallyFixed => t.bad(),
        FixVerdictKind::Unknown => t.warn(),
    };
    let fix_text = format!(
        "fix {}{}",
        fix.fix.verdict,
        if fix.upgraded() { " (by this run)" } else { "" }
    );
    let mut l1 = vec![
        Span::styled("percpu-trace", t.title()),
        sep(),
        Span::raw(format!("Linux {} {}", h.kernel_release(), h.arch())),
        sep(),
        Span::styled(fix_text, fix_style),
        sep(),
        Span::raw("attach "),
        Span::styled(
            h.attach_mode().to_string(),
            if h.degraded() { t.warn() } else { t.text() },
        ),
    ];
    if h.degraded() {
        l1.push(Span::styled(
            " (degraded: tracepoints only, fewer findings; see the findings pane)",
            t.warn(),
        ));
    }
    if let Some(p) = h.replay_path() {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        l1.push(sep());
        l1.push(Span::styled(format!("replay {name}"), t.title()));
    }

    let lost = app.events_lost();
    let mut l2 = Vec::new();
    // Replay: where in the recording and how fast, first (the line is cut at the width).
    if let Some(tr) = &app.transport {
        let text = tr.describe(app.snap.now_ns, app.paused, app.ended.is_some());
        let style = if app.paused && app.ended.is_none() {
            t.warn().add_modifier(Modifier::REVERSED)
        } else {
            t.title()
        };
        l2.extend([Span::styled(text, style), sep()]);
    }
    l2.extend([
        Span::raw(format!("{} ev/s", fmt_count(app.rate.round() as u64))),
        sep(),
        Span::raw(format!("{} events", fmt_count(app.events))),
        sep(),
        Span::styled(
            format!("drops {}", fmt_count(lost)),
            if lost > 0 { t.bad() } else { t.text() },
        ),
    ]);
    let stacks_lost = app.stacks_lost();
    if stacks_lost > 0 {
        l2.push(Span::styled(
            format!(" (+{} stacks)", fmt_count(stacks_lost)),
            t.warn(),
        ));
    }
    let dropped = app.snap.counters.findings_dropped;
    if dropped > 0 {
        l2.push(Span::styled(
            format!(" (+{} findings past the cap)", fmt_count(dropped)),
            t.bad(),
        ));
    }
    l2.extend([
        sep(),
        Span::raw(format!("tasks {}", fmt_count(app.snap.tasks.len() as u64))),
    ]);
    if app.transport.is_none() {
        l2.extend([sep(), Span::raw(format!("up {}", fmt_uptime(app.uptime)))]);
    }
    // A replay says "paused" in its position text.
    if app.paused && app.transport.is_none() {
        l2.push(sep());
        let more = if app.held_back > 0 && !app.is_replay() {
            format!(" (+{} new)", fmt_count(app.held_back))
        } else {
            String::new()
        };
        l2.push(Span::styled(
            format!("PAUSED{more}"),
            t.warn().add_modifier(Modifier::REVERSED),
        ));
    }
    if let Some(e) = &app.ended {
        l2.push(sep());
        l2.push(Span::styled(e.clone(), t.dim()));
    }

    let probes = &h.context.run.probes;
    let l3 = if probes.is_empty() {
        Line::from(Span::styled(
            "probes: not known (recording without a probe list)",
            t.dim(),
        ))
    } else {
        let on = probes
            .iter()
            .filter(|p| p.state == ProbeState::Attached)
            .count();
        let off: Vec<&str> = h.probes_off().map(|p| p.point.as_str()).collect();
        let mut spans = vec![Span::styled(
            format!("probes {on}/{} on", probes.len()),
            if off.is_empty() { t.good() } else { t.warn() },
        )];
        if !off.is_empty() {
            spans.push(Span::styled(
                format!("; off (? for why): {}", off.join(", ")),
                t.warn(),
            ));
        }
        Line::from(spans)
    };
    let lines = vec![Line::from(l1), Line::from(l2), l3, verdict_line(app)];
    frame.render_widget(Paragraph::new(lines), area);
}
