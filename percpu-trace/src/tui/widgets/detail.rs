//! The detail pane: everything known about the selected finding (tasks, gfp masks,
//! stacks, explanation, durations), scrolled by [`App::detail_scroll`]; with no selection,
//! one line per finding kind.
//!
//! Every phrase about the finding comes from [`crate::report::wording`], so the pane and an
//! exported report say the same thing; only the arrangement is the pane's.
use ratatui::{
    layout::Rect,
    style::Modifier,
    text::{Line, Span},
    widgets::{Paragraph, Wrap},
    Frame,
};

use crate::{
    engine::{Finding, FindingKind, TaskRole},
    report::wording as w,
};

use super::{
    super::app::{App, Focus},
    format::rel,
    pane,
};

/// Width of the labels on the left ("allowed anyway" and a space).
const LABEL_W: usize = 15;

/// The detail of one finding as lines (also what the detail pane scrolls through).
pub fn detail_lines(app: &App, f: &Finding) -> Vec<Line<'static>> {
    let t = &app.theme;
    let layout = &app.header.context.run.gfp_layout;
    let gfp = |v: u32| w::gfp(layout, v);
    let label = |s: &str| Span::styled(format!("{s:<LABEL_W$}"), t.dim());
    let mut l: Vec<Line<'static>> = Vec::new();
    l.push(Line::from(vec![
        Span::styled(
            f.severity.to_string().to_uppercase(),
            t.severity(f.severity),
        ),
        Span::raw(format!(" {}  ×{}", w::headline(layout, f), f.count)),
    ]));
    // Relative to the first event: the screen has no CLOCK_MONOTONIC base to show.
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
        Span::raw(w::trigger_phrase(layout, &f.trigger)),
    ]));
    if let Some(e) = f.trigger_effective_gfp {
        l.push(Line::from(vec![label("trigger gfp"), Span::raw(gfp(e))]));
    }
    l.push(Line::from(vec![
        label("constraint"),
        Span::styled(gfp(f.constraint_gfp), t.warn()),
    ]));
    l.push(Line::from(vec![
        label("allowed anyway"),
        Span::styled(gfp(f.violated_bits), t.bad()),
    ]));
    l.push(Line::from(Span::styled("tasks", t.title())));
    for task in &f.tasks {
        l.push(Line::from(Span::styled(
            w::task_summary(task),
            t.text().add_modifier(Modifier::BOLD),
        )));
        // Under the task, indented by two: the label column is two wider here.
        let indent = |s: &str| Span::styled(format!("  {s:<LABEL_W$}"), t.dim());
        match task.gfp {
            Some(g) => l.push(Line::from(vec![
                indent("pcpu_alloc gfp"),
                Span::raw(gfp(g)),
            ])),
            None if task.role != TaskRole::Holder => l.push(Line::from(vec![
                indent("pcpu_alloc gfp"),
                Span::raw("not seen"),
            ])),
            None => {}
        }
        if let Some(g) = task.effective_gfp {
            l.push(Line::from(vec![indent("constraint"), Span::raw(gfp(g))]));
        }
        l.push(Line::from(vec![
            indent("task flags"),
            Span::raw(w::task_flags(task.task_flags)),
        ]));
        l.push(Line::from(vec![
            indent("memalloc scope"),
            Span::raw(w::scope(task.task_flags).unwrap_or("none")),
        ]));
    }
    stacks_lines(app, f, &mut l);
    l.push(Line::from(Span::styled("explanation", t.title())));
    l.push(Line::from(f.explanation.clone()));
    let evidence = w::evidence(f);
    if !evidence.is_empty() {
        l.push(Line::from(Span::styled("evidence", t.title())));
        l.extend(evidence.into_iter().map(Line::from));
    }
    l.push(Line::from(Span::styled("durations", t.title())));
    let durs = w::durations(f);
    if durs.is_empty() {
        l.push(Line::from("none measured"));
    }
    l.extend(durs.into_iter().map(Line::from));
    l.push(Line::from(vec![
        label("fix series"),
        Span::raw(w::fix_words(f.fix_present.or(app.header.fix_present()))),
    ]));
    l.push(Line::from(vec![
        label("signature"),
        Span::styled(format!("{:016x}", f.signature), t.dim()),
    ]));
    l
}

/// The finding's kernel stacks, each under the report's title for it.
fn stacks_lines(app: &App, f: &Finding, l: &mut Vec<Line<'static>>) {
    let t = &app.theme;
    let stacks = w::stacks(f, &app.stacks);
    for st in &stacks {
        l.push(Line::from(Span::styled(w::stack_title(st), t.title())));
        match st.frames {
            Some(frames) if !frames.is_empty() => {
                for fr in frames {
                    l.push(Line::from(format!("  {}", w::frame_line(fr))));
                }
            }
            _ => l.push(Line::from(Span::styled(
                "  (not in the stack table: lost or not yet read)",
                t.warn(),
            ))),
        }
    }
    if stacks.is_empty() {
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
            lines.push(Line::from(""));
            for kind in FindingKind::ALL {
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("{} {:<10} ", w::severity_tag(kind.severity()), kind.id()),
                        t.severity(kind.severity()),
                    ),
                    Span::styled(w::kind_summary(kind), t.dim()),
                ]));
            }
            Paragraph::new(lines)
        }
    };
    frame.render_widget(para.block(block).wrap(Wrap { trim: false }), area);
}
