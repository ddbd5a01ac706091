//! The one scrolling table: every list on screen that can be longer than its pane (the
//! findings list and the four live tables) is drawn through [`ScrollTable`], so which rows
//! are visible and which one is highlighted is decided in one place.
use ratatui::{
    layout::{Constraint, Rect},
    style::Style,
    widgets::{Row, Table},
    Frame,
};

/// First row to show so that `sel` is in view when `n` of `len` rows fit: the window
/// follows the selection only once it would leave the bottom edge.
pub fn window(sel: usize, len: usize, n: usize) -> usize {
    if n == 0 || len <= n {
        0
    } else {
        sel.saturating_sub(n - 1).min(len - n)
    }
}

/// A table of `len` rows of which only the visible ones are built (tables can hold
/// thousands of tasks; a row costs allocations).
pub struct ScrollTable<'a, F> {
    len: usize,
    widths: Vec<Constraint>,
    header: Option<Row<'a>>,
    selected: usize,
    highlight: Option<Style>,
    row: F,
}

impl<'a, F: FnMut(usize) -> Row<'a>> ScrollTable<'a, F> {
    /// `len` rows, `row(i)` builds row `i` (called for visible rows only).
    pub fn new(len: usize, widths: Vec<Constraint>, row: F) -> Self {
        ScrollTable {
            len,
            widths,
            header: None,
            selected: 0,
            highlight: None,
            row,
        }
    }

    /// A header row, which takes one line of the area.
    pub fn header(mut self, header: Row<'a>) -> Self {
        self.header = Some(header);
        self
    }

    /// The selected row: the window keeps it visible, and it is drawn with `highlight`
    /// when that is `Some` (an unfocused table keeps its place but shows no highlight).
    pub fn selection(mut self, selected: usize, highlight: Option<Style>) -> Self {
        self.selected = selected;
        self.highlight = highlight;
        self
    }

    /// Draws the visible window into `area`.
    pub fn render(mut self, frame: &mut Frame, area: Rect) {
        let visible = usize::from(area.height).saturating_sub(usize::from(self.header.is_some()));
        let off = window(self.selected, self.len, visible);
        // A selection past the end (rows went away since it was made) marks the last row.
        let sel = self.selected.min(self.len.saturating_sub(1));
        let end = (off + visible).min(self.len);
        let rows: Vec<Row> = (off..end)
            .map(|i| {
                let r = (self.row)(i);
                match self.highlight {
                    Some(s) if i == sel => r.style(s),
                    _ => r,
                }
            })
            .collect();
        let mut table = Table::new(rows, self.widths);
        if let Some(h) = self.header {
            table = table.header(h);
        }
        frame.render_widget(table.column_spacing(1), area);
    }
}

#[cfg(test)]
mod tests {
    use super::window;

    #[test]
    fn window_follows_selection() {
        assert_eq!(window(0, 3, 5), 0);
        assert_eq!(window(4, 10, 5), 0);
        assert_eq!(window(5, 10, 5), 1);
        assert_eq!(window(9, 10, 5), 5);
        // Past the end: the last full window.
        assert_eq!(window(42, 10, 5), 5);
        assert_eq!(window(3, 10, 0), 0);
    }
}
