//! The detail pane: everything known about the selected finding (tasks, gfp masks,
//! stacks, explanation, durations), scrolled by [`App::detail_scroll`]; with no selection,
//! one line per finding kind.
use ratatui::{
    layout::Rect,
    style::Modifier,
    text::{Line, Span},
    widgets::{Paragraph, Wrap},
    Frame,
};

use crate::{
    engine::{Finding, FindingKind, TaskRole, Trigger},
    kernel::decode,
};

use super::{
    super::app::{App, Focus},
    findings::sev_tag,
    format::{fmt_ns, gfp, rel},
    pane,
};

/// Role in words.
fn role(r: TaskRole) -> &'static str {
    match r {
        TaskRole::Holder => "holder",
        TaskRole::Waiter => "waiter",
        TaskRole::Caller => "caller",
    }
}

/// The trigger and its gfp in one line.
fn trigger_text(app: &App, tr: &Trigger) -> String {
    let g = |v: Option<u32>| v.map(|v| gfp(app, v));
    match *tr {
        Trigger::Reclaim { gfp: v, order, .. } => {
            format!("{} gfp {} order {order}", tr.name(), gfp(app, v))
        }
        Trigger::ChunkCreate { gfp: v } | Trigger::ChunkPopulate { gfp: v } => {
            format!(
                "{} gfp {}",
                tr.name(),
                g(v).unwrap_or_else(|| "not seen".into())
            )
        }
        Trigger::GetVmAreas { gfp: v } => format!(
            "{} gfp {}",
            tr.name(),
            g(v).unwrap_or_else(|| "none (unpatched: GFP_KERNEL metadata)".into())
        ),
        Trigger::Vmalloc { gfp: v } => format!("{} gfp {}", tr.name(), gfp(app, v)),
        Trigger::PgtableAlloc => format!("{} (GFP_PGTABLE_KERNEL)", tr.name()),
    }
}

/// The detail of one finding as lines (also what the detail pane scrolls through).
pub fn detail_lines(app: &App, f: &Finding) -> Vec<Line<'static>> {
    let t = &app.theme;
    let label = |s: &str| Span::styled(format!("{s:<11}"), t.dim());
    let mut l: Vec<Line<'static>> = Vec::new();
    l.push(Line::from(vec![
        Span::styled(
            f.severity.to_string().to_uppercase(),
            t.severity(f.severity),
        ),
        Span::raw(format!(" {}  ×{}", f.kind, f.count)),
    ]));
    l.push(Line::from(vec![
        label("seen"),
        Span::raw(format!(
            "first {}  last {}",
            rel(app, f.first_seen_ns),
            rel(app, f.last_seen_ns)
        )),
    ]));
    l.push(Line::from(vec![
        label("trigger"),
        Span::raw(trigger_text(app, &f.trigger)),
    ]));
    if let Some(e) = f.trigger_effective_gfp {
        l.push(Line::from(vec![label("effective"), Span::raw(gfp(app, e))]));
    }
    l.push(Line::from(vec![
        label("constraint"),
        Span::styled(gfp(app, f.constraint_gfp), t.warn()),
    ]));
    l.push(Line::from(vec![
        label("violated"),
        Span::styled(gfp(app, f.violated_bits), t.bad()),
    ]));
    for task in &f.tasks {
        l.push(Line::from(vec![
            label(role(task.role)),
            Span::styled(
                format!("{}/{}", task.comm, task.pid),
                t.text().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(" tgid {} cg {}", task.tgid, task.cgroup_id)),
        ]));
        let mut parts = Vec::new();
        if let Some(g) = task.gfp {
            parts.push(format!("gfp {}", gfp(app, g)));
        }
        if let Some(g) = task.effective_gfp {
            parts.push(format!("eff {}", gfp(app, g)));
        }
        parts.push(format!(
            "flags {}",
            decode::format_task_flags(task.task_flags)
        ));
        l.push(Line::from(vec![
            Span::raw("           "),
            Span::raw(parts.join("  ")),
        ]));
    }
    stacks_lines(app, f, &mut l);
    l.push(Line::from(Span::styled("what happened", t.title())));
    l.push(Line::from(f.explanation.clone()));
    let d = &f.durations;
    let opt = |v: Option<u64>| v.map_or("-".to_string(), fmt_ns);
    l.push(Line::from(vec![
        label("times"),
        Span::raw(format!(
            "held ≥{}  reclaim {} (total {})  wait {}",
            opt(d.hold_ns),
            opt(d.reclaim_ns),
            fmt_ns(d.reclaim_total_ns),
            opt(d.wait_ns)
        )),
    ]));
    let fix = match f.fix_present {
        Some(true) => "present",
        Some(false) => "absent",
        None => "unknown",
    };
    l.push(Line::from(vec![label("fix series"), Span::raw(fix)]));
    l.push(Line::from(vec![
        label("signature"),
        Span::styled(format!("{:016x}", f.signature), t.dim()),
    ]));
    l
}

/// The finding's kernel stacks, each under a title line.
fn stacks_lines(app: &App, f: &Finding, l: &mut Vec<Line<'static>>) {
    let t = &app.theme;
    for (i, id) in f.stack_ids.iter().enumerate() {
        let whose = if i == 0 { "trigger" } else { "other task" };
        l.push(Line::from(Span::styled(
            format!("stack #{id} ({whose})"),
            t.title(),
        )));
        match app.stacks.get(id) {
            Some(frames) if !frames.is_empty() => {
                for fr in frames {
                    l.push(Line::from(format!("  {fr}")));
                }
            }
            _ => l.push(Line::from(Span::styled(
                "  (not in the stack table: lost or not yet read)",
                t.warn(),
            ))),
        }
    }
    if f.stack_ids.is_empty() {
        l.push(Line::from(Span::styled(
            "no kernel stack was taken for this finding",
            t.dim(),
        )));
    }
}

/// The detail pane: the selected finding, scrolled, or what each kind means.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let block = pane(
        app,
        Line::from(Span::styled(" detail ", t.title())),
        app.focus == Focus::Detail,
    );
    let para = match app.selected_finding() {
        Some((_, f)) => Paragraph::new(detail_lines(app, f)).scroll((app.detail_scroll, 0)),
        None => {
            let mut lines = vec![Line::from(Span::styled(
                "select a finding to see its tasks, gfp masks and stacks",
                t.dim(),
            ))];
            let k = FindingKind::ALL;
            lines.push(Line::from(""));
            for kind in k {
                let what = match kind {
                    FindingKind::Recursion => {
                        "constrained caller reclaimed with FS/IO holding the mutex"
                    }
                    FindingKind::CrossTask => {
                        "holder in FS/IO reclaim while a constrained task waits"
                    }
                    FindingKind::Window => {
                        "FS/IO-capable allocation under the mutex for a constrained caller"
                    }
                };
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("{} {:<10} ", sev_tag(kind.severity()), kind.id()),
                        t.severity(kind.severity()),
                    ),
                    Span::styled(what, t.dim()),
                ]));
            }
            Paragraph::new(lines)
        }
    };
    frame.render_widget(para.block(block).wrap(Wrap { trim: false }), area);
}
