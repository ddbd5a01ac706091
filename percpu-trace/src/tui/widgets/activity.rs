//! The activity tab: what the run saw, finding or not (the engine's [`ActivityCounts`] in
//! the report's words), and why nothing was found when nothing was.
//!
//! [`ActivityCounts`]: crate::engine::ActivityCounts
use ratatui::{
    layout::Rect,
    text::{Line, Span},
    widgets::{Paragraph, Wrap},
    Frame,
};

use crate::report::wording::activity_lines;

use super::super::app::App;

/// Width of the label column: the report's longest label.
const LABEL_W: usize = 26;

/// The activity lines as drawn: one per count, then (no finding) the reason.
pub fn lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let a = &app.snap.activity;
    let mut out: Vec<Line<'static>> = activity_lines(a)
        .into_iter()
        .map(|(label, value)| {
            Line::from(vec![
                Span::styled(format!("{label:<LABEL_W$}"), t.dim()),
                Span::raw(value),
            ])
        })
        .collect();
    if app.no_finding() {
        out.push(Line::from(vec![
            Span::styled("why no finding: ", t.title()),
            Span::raw(a.why_no_finding(Some(app.header.attach_mode()))),
        ]));
    }
    out
}

/// The tab's body, scrolled by the tab's selection.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let scroll = u16::try_from(app.table_sel[app.tab.index()]).unwrap_or(u16::MAX);
    frame.render_widget(
        Paragraph::new(lines(app))
            .wrap(Wrap { trim: false })
            .scroll((scroll, 0)),
        area,
    );
}
