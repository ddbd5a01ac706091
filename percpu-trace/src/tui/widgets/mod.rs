//! The panes of the screen, one file each, every one a pure function of [`App`] drawing
//! into its own area. [`super::ui::render`] lays them out; nothing here changes state.
//!
//! Every table that scrolls goes through [`scroll_table::ScrollTable`], so the visible
//! window and the selection highlight are computed in one place.
use ratatui::{text::Line, widgets::Block};

use super::app::App;

pub mod activity;
pub mod detail;
pub mod findings;
pub mod footer;
pub mod format;
pub mod header;
pub mod help;
pub mod mutex;
pub mod scroll_table;
pub mod tables;
pub mod tiny;

/// The bordered block every pane sits in; the focused pane's border stands out.
pub(crate) fn pane<'a>(app: &App, title: Line<'a>, focused: bool) -> Block<'a> {
    let t = &app.theme;
    Block::bordered().title(title).border_style(if focused {
        t.focus_border()
    } else {
        t.border()
    })
}
