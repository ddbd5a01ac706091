//! Drawing: pure functions of [`App`] into a ratatui frame. Nothing here changes state;
//! the few things that depend on the terminal size (which rows are visible) are computed
//! from the selection on every draw.
//!
//! This file only lays the panes out; each pane is a widget in [`super::widgets`].
use ratatui::{
    layout::{Constraint, Layout},
    Frame,
};

use super::{
    app::{App, Mode},
    widgets::{detail, findings, footer, header, help, mutex, tables, tiny},
};

pub use super::widgets::{
    detail::detail_lines,
    format::{fmt_count, fmt_ns},
    tiny::{MIN_HEIGHT, MIN_WIDTH},
};

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        tiny::render(app, frame, area);
        return;
    }
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    header::render(app, frame, head);
    // The mutex panel and tables get a fixed slice; findings take the rest, they matter most.
    let top_h = if body.height >= 30 { 12 } else { 8 };
    let [top, bottom] =
        Layout::vertical([Constraint::Length(top_h), Constraint::Fill(1)]).areas(body);
    let mutex_w = (area.width * 2 / 5).clamp(34, 60);
    let [mutex_area, tables_area] =
        Layout::horizontal([Constraint::Length(mutex_w), Constraint::Fill(1)]).areas(top);
    let list_w = (area.width * 9 / 20).clamp(34, 64);
    let [list, detail_area] =
        Layout::horizontal([Constraint::Length(list_w), Constraint::Fill(1)]).areas(bottom);
    mutex::render(app, frame, mutex_area);
    tables::render(app, frame, tables_area);
    findings::render(app, frame, list);
    detail::render(app, frame, detail_area);
    footer::render(app, frame, foot);
    if app.mode == Mode::Help {
        help::render(app, frame, area);
    }
}
