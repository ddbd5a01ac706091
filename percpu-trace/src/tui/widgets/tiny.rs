//! The screen for a terminal below [`MIN_WIDTH`]x[`MIN_HEIGHT`]: the verdict and counts,
//! and how large the terminal must be for the full view.
use ratatui::{
    layout::Rect,
    text::{Line, Span},
    widgets::{Paragraph, Wrap},
    Frame,
};

use super::{super::app::App, format::fmt_count, header};

/// Below this width only the summary is drawn.
pub const MIN_WIDTH: u16 = 60;
/// See [`MIN_WIDTH`].
pub const MIN_HEIGHT: u16 = 16;

/// The summary drawn instead of the panes on a small terminal.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let counts = format!(
        "{} findings · {} events · drops {}",
        app.findings().len(),
        fmt_count(app.events),
        fmt_count(app.events_lost())
    );
    let lines = vec![
        Line::from(vec![
            Span::styled("percpu-trace ", t.title()),
            Span::raw(app.header.kernel_release().to_string()),
        ]),
        header::verdict_line(app),
        Line::from(counts),
        Line::from(Span::styled(
            format!(
                "terminal {}x{}: enlarge to {MIN_WIDTH}x{MIN_HEIGHT} for the full view",
                area.width, area.height
            ),
            t.warn(),
        )),
        Line::from(Span::styled("q quit", t.dim())),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), area);
}
