//! The live tables pane: one tab at a time (callers, reclaim, chunks, tasks, each a
//! [`ScrollTable`] over the rows [`App`] keeps for it; activity, a text of counts).
use ratatui::{
    layout::{Constraint, Rect},
    style::Modifier,
    text::{Line, Span},
    widgets::{Cell, Paragraph, Row, Wrap},
    Frame,
};

use crate::report::wording as w;

use super::{
    super::app::{App, Focus, Tab},
    format::{activity, fmt_count, fmt_ns, gfp},
    pane,
    scroll_table::ScrollTable,
};

/// The tab titles, the shown one underlined. When they do not all fit in `width`, the
/// others are cut to their key, so the shown one and every key stay visible.
fn title(app: &App, width: u16) -> Line<'static> {
    let t = &app.theme;
    let full: usize = Tab::ALL.iter().map(|tab| tab.title().len() + 5).sum();
    let short = full + 2 > usize::from(width);
    let mut title = vec![Span::raw(" ")];
    for (i, tab) in Tab::ALL.iter().enumerate() {
        if i > 0 {
            title.push(Span::styled(if short { " " } else { " │ " }, t.dim()));
        }
        let shown = *tab == app.tab;
        let style = if shown {
            t.title().add_modifier(Modifier::UNDERLINED)
        } else {
            t.dim()
        };
        let text = if short && !shown {
            (i + 1).to_string()
        } else {
            format!("{} {}", i + 1, tab.title())
        };
        title.push(Span::styled(text, style));
    }
    title.push(Span::raw(" "));
    Line::from(title)
}

/// What an empty table says instead.
fn empty(app: &App, frame: &mut Frame, area: Rect, text: &'static str) {
    frame.render_widget(
        Paragraph::new(Span::styled(text, app.theme.dim())).wrap(Wrap { trim: true }),
        area,
    );
}

/// The kernel's per-process counts of constrained calls, most first.
fn processes(app: &App, frame: &mut Frame, area: Rect, who: &[crate::engine::ProcessActivity]) {
    let t = &app.theme;
    let mut lines = vec![Line::from(Span::styled(
        "constrained calls by process (counted in the kernel)",
        t.dim(),
    ))];
    lines.push(Line::from(Span::styled(
        format!("{:<16} {:>8} {:>10}", "comm", "pid", "calls"),
        t.dim().add_modifier(Modifier::BOLD),
    )));
    for p in who {
        lines.push(Line::from(Span::raw(format!(
            "{:<16} {:>8} {:>10}",
            w::ascii(&p.comm),
            p.tgid,
            fmt_count(p.constrained_allocations)
        ))));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// The tables pane.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let block = pane(app, title(app, area.width), app.focus == Focus::Tables);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height < 2 {
        return;
    }
    let sel = app.table_sel[app.tab.index()];
    let highlight = (app.focus == Focus::Tables).then(|| t.selected());
    let head =
        |cols: &[&'static str]| Row::new(cols.to_vec()).style(t.dim().add_modifier(Modifier::BOLD));
    match app.tab {
        Tab::Callers => {
            let all = app.caller_rows();
            let who = &app.snap.activity.top_processes;
            if all.is_empty() && !who.is_empty() {
                // No constrained call went on to the slow path (none was sent), but the
                // kernel counted them by process: say who made them.
                return processes(app, frame, inner, who);
            }
            if all.is_empty() {
                return empty(
                    app,
                    frame,
                    inner,
                    "no constrained percpu allocation seen yet",
                );
            }
            let widths = vec![
                Constraint::Length(15),
                Constraint::Length(5),
                Constraint::Fill(1),
                Constraint::Length(6),
            ];
            ScrollTable::new(all.len(), widths, |i| {
                let r = all[i];
                Row::new(vec![
                    Cell::from(r.comm.clone()),
                    Cell::from(r.cgroup_id.to_string()),
                    Cell::from(gfp(app, r.gfp)),
                    Cell::from(fmt_count(r.count)),
                ])
            })
            .header(head(&["comm", "cg", "gfp", "calls"]))
            .selection(sel, highlight)
            .render(frame, inner);
        }
        Tab::Reclaim => {
            let all = app.reclaim_rows();
            if all.is_empty() {
                return empty(
                    app,
                    frame,
                    inner,
                    "no reclaim entered while holding the mutex",
                );
            }
            let widths = vec![
                Constraint::Length(7),
                Constraint::Length(15),
                Constraint::Fill(1),
                Constraint::Length(7),
                Constraint::Length(6),
            ];
            ScrollTable::new(all.len(), widths, |i| {
                let r = all[i];
                let took = r
                    .end_ns
                    .map_or("open".into(), |e| fmt_ns(e.saturating_sub(r.begin_ns)));
                let style = if app.header.engine.forbidden(r.effective_gfp) == 0 {
                    t.warn()
                } else {
                    t.text()
                };
                Row::new(vec![
                    Cell::from(r.pid.to_string()),
                    Cell::from(r.comm.clone()),
                    Cell::from(gfp(app, r.effective_gfp)),
                    Cell::from(took),
                    Cell::from(if r.memcg { "memcg" } else { "direct" }),
                ])
                .style(style)
            })
            .header(head(&["pid", "comm", "reclaim gfp", "took", "kind"]))
            .selection(sel, highlight)
            .render(frame, inner);
        }
        Tab::Chunks => {
            let all = app.chunk_rows();
            if all.is_empty() {
                return empty(
                    app,
                    frame,
                    inner,
                    if app.header.degraded() {
                        "tracepoint-only: populate/vmalloc/page tables are not seen"
                    } else {
                        "no chunk creation or population seen yet"
                    },
                );
            }
            let widths = vec![
                Constraint::Fill(1),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(6),
            ];
            ScrollTable::new(all.len(), widths, |i| {
                let r = all[i];
                Row::new(vec![
                    Cell::from(r.comm.clone()),
                    Cell::from(fmt_count(r.creates)),
                    Cell::from(fmt_count(r.populates)),
                    Cell::from(fmt_count(r.vm_areas)),
                    Cell::from(fmt_count(r.pgtables + r.vmallocs)),
                    Cell::from(fmt_count(r.held)),
                ])
            })
            .header(head(&[
                "comm", "create", "popul", "vmarea", "pt+vm", "held",
            ]))
            .selection(sel, highlight)
            .render(frame, inner);
        }
        Tab::Activity => super::activity::render(app, frame, inner),
        Tab::Tasks => {
            if app.task_rows.is_empty() {
                return empty(
                    app,
                    frame,
                    inner,
                    "no task with open percpu/reclaim/mutex state",
                );
            }
            let widths = vec![
                Constraint::Length(7),
                Constraint::Length(15),
                Constraint::Length(5),
                // The report's scope words ("memalloc_noio"): 13 wide.
                Constraint::Length(13),
                Constraint::Fill(1),
            ];
            ScrollTable::new(app.task_rows.len(), widths, |i| {
                let tv = &app.snap.tasks[app.task_rows[i]];
                Row::new(vec![
                    Cell::from(tv.pid.to_string()),
                    Cell::from(tv.comm.clone()),
                    Cell::from(tv.cgroup_id.to_string()),
                    Cell::from(w::scope(tv.task_flags).unwrap_or("none")),
                    Cell::from(activity(tv.activity)),
                ])
            })
            .header(head(&["pid", "comm", "cg", "scope", "doing"]))
            .selection(sel, highlight)
            .render(frame, inner);
        }
    }
}
