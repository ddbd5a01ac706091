//! Colors, with a monochrome fallback for `NO_COLOR` and `TERM=dumb`.
//!
//! Everything that color says is also said by text or by bold/reverse, so the monochrome
//! theme loses no information.
use ratatui::style::{Color, Modifier, Style};

use crate::engine::Severity;

/// The styles the renderer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    /// Whether colors are used at all.
    pub color: bool,
}

impl Theme {
    /// Colors unless `NO_COLOR` is set (to anything, per no-color.org) or `TERM` is "dumb".
    pub fn detect() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Theme {
            color: !(no_color || dumb),
        }
    }

    /// A colored theme.
    pub fn colored() -> Self {
        Theme { color: true }
    }

    /// A theme without colors (bold/reverse only).
    pub fn mono() -> Self {
        Theme { color: false }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    /// Plain text.
    pub fn text(&self) -> Style {
        Style::new()
    }

    /// Secondary text (labels, units).
    pub fn dim(&self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new()
        }
    }

    /// Titles and key names.
    pub fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Something good (fix present, probe attached).
    pub fn good(&self) -> Style {
        self.fg(Color::Green)
    }

    /// Something degraded (probe off, unknown).
    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }

    /// Something bad (bug hit, drops).
    pub fn bad(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    /// A severity's label.
    pub fn severity(&self, s: Severity) -> Style {
        match s {
            Severity::Critical => self.bad(),
            Severity::High => self.fg(Color::LightRed).add_modifier(Modifier::BOLD),
            Severity::Warning => self.warn(),
            Severity::Info => self.text(),
        }
    }

    /// The selected row.
    pub fn selected(&self) -> Style {
        if self.color {
            Style::new()
                .bg(Color::Blue)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    /// Border of the focused pane.
    pub fn focus_border(&self) -> Style {
        if self.color {
            Style::new().fg(Color::Cyan)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    /// Border of other panes.
    pub fn border(&self) -> Style {
        self.dim()
    }

    /// The sparkline.
    pub fn spark(&self) -> Style {
        self.fg(Color::Magenta)
    }
}
