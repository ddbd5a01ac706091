//! The footer: the prompt while filtering or exporting, else the last status message, else
//! the key hints.
use ratatui::{
    layout::Rect,
    text::{Line, Span},
    widgets::Paragraph,
    Frame,
};

use super::super::{
    app::{App, Mode},
    keys,
};

/// The footer line.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let line = match &app.mode {
        Mode::Filter { input } => Line::from(vec![
            Span::styled("filter> ", t.title()),
            Span::raw(input.clone()),
            Span::styled("█", t.text()),
            Span::styled("  Enter apply · Esc cancel · pid:N comm:S cg:N", t.dim()),
        ]),
        Mode::Export { input, all } => Line::from(vec![
            Span::styled(
                if *all {
                    "export all to> "
                } else {
                    "export finding to> "
                },
                t.title(),
            ),
            Span::raw(input.clone()),
            Span::styled("█", t.text()),
            Span::styled("  Enter write · Esc cancel", t.dim()),
        ]),
        _ => match &app.status {
            Some(s) => Line::from(vec![
                Span::styled(s.text.clone(), if s.error { t.bad() } else { t.good() }),
                Span::styled("  │ ? help · q quit", t.dim()),
            ]),
            None => {
                let mut spans = Vec::new();
                let list = if app.is_replay() {
                    keys::REPLAY_FOOTER
                } else {
                    keys::FOOTER
                };
                for (k, what) in list {
                    spans.push(Span::styled(*k, t.title()));
                    spans.push(Span::styled(format!(" {what} "), t.dim()));
                }
                Line::from(spans)
            }
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}
