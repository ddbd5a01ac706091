//! The findings list: one row per finding in the current sort and filter, a
//! [`ScrollTable`] that always highlights the selection.
use ratatui::{
    layout::{Constraint, Rect},
    text::{Line, Span},
    widgets::{Cell, Paragraph, Row, Wrap},
    Frame,
};

use crate::report::wording as w;

use super::{
    super::app::{App, Focus},
    format::fmt_count,
    pane,
    scroll_table::ScrollTable,
};

/// The findings pane.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let mut title = vec![
        Span::styled(format!(" findings {} ", app.view.len()), t.title()),
        Span::styled(format!("[{}] ", app.sort.label()), t.dim()),
    ];
    if !app.filter.is_empty() {
        title.push(Span::styled(
            format!("filter {} ", app.filter.describe()),
            t.warn(),
        ));
    }
    let block = pane(app, Line::from(title), app.focus == Focus::Findings);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let findings = app.findings();
    if app.view.is_empty() {
        let mut lines = vec![Line::from(Span::styled(
            if findings.is_empty() {
                "no findings yet"
            } else {
                "no finding matches the filter"
            },
            t.dim(),
        ))];
        if app.header.degraded() {
            lines.push(Line::from(Span::styled(
                crate::kernel::plan::TRACEPOINT_ONLY_LIMITS,
                t.warn(),
            )));
        }
        // Nothing found is an answer only with what was seen: the engine's reason, and
        // where the counts are.
        if findings.is_empty() && app.events > 0 {
            lines.push(Line::from(Span::styled(
                format!(
                    "so far: {} (5: what was seen)",
                    app.snap
                        .activity
                        .why_no_finding(Some(app.header.attach_mode()))
                ),
                t.text(),
            )));
        }
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
        return;
    }
    // The trigger column only when there is room; the comm is cut before the count.
    let with_op = inner.width >= 40;
    let mut widths = vec![Constraint::Length(4), Constraint::Length(10)];
    if with_op {
        widths.push(Constraint::Length(8));
    }
    widths.extend([Constraint::Fill(1), Constraint::Length(5)]);
    ScrollTable::new(app.view.len(), widths, |i| {
        let f = &findings[app.view[i]];
        let mut cells = vec![
            Cell::from(Span::styled(
                w::severity_tag(f.severity),
                t.severity(f.severity),
            )),
            Cell::from(f.kind.id()),
        ];
        if with_op {
            cells.push(Cell::from(w::trigger_short(&f.trigger)));
        }
        // The report's task label (comm/pid, non-ASCII replaced: comms are user-controlled).
        let who = f.tasks.first().map_or_else(|| "?".into(), w::task_label);
        cells.push(Cell::from(who));
        cells.push(Cell::from(Span::styled(
            format!("×{}", fmt_count(f.count)),
            t.dim(),
        )));
        Row::new(cells)
    })
    .selection(app.selected, Some(t.selected()))
    .render(frame, inner);
}
