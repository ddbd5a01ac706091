//! Key presses to [`Action`]s, per mode. The only place that knows key bindings; the footer
//! and the help overlay list the same keys ([`HELP`]).
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{Action, Mode, Tab};

/// Key and meaning, as the help overlay lists them.
pub const HELP: &[(&str, &str)] = &[
    ("↑↓ j k", "move in the focused pane"),
    ("PgUp PgDn g G", "page, first, last"),
    ("Tab S-Tab", "focus findings / detail / tables"),
    ("Enter", "open the selected finding's detail"),
    (
        "1 2 3 4 5 ← →",
        "table: callers, reclaim, chunks, tasks, activity",
    ),
    ("/", "filter: pid:N comm:S cg:N (bare number = pid)"),
    ("Esc", "drop the filter / close"),
    ("p Space", "pause / resume"),
    (
        "+ - n",
        "replay: speed 1x..max; next finding (full speed, pause)",
    ),
    ("> < b", "replay: to the end; back to the start; back 10 s"),
    ("c", "clear findings and tables"),
    ("s", "sort findings: severity, newest, count"),
    ("e", "export the selected finding (text report)"),
    ("E", "export all findings"),
    ("?", "this help"),
    ("q Ctrl-C", "quit"),
];

/// The footer's short list.
pub const FOOTER: &[(&str, &str)] = &[
    ("q", "quit"),
    ("?", "help"),
    ("Tab", "pane"),
    ("1-5", "tables"),
    ("/", "filter"),
    ("p", "pause"),
    ("c", "clear"),
    ("s", "sort"),
    ("e/E", "export"),
];

/// The footer's list when replaying: the time keys first (the line is cut at the width).
pub const REPLAY_FOOTER: &[(&str, &str)] = &[
    ("q", "quit"),
    ("?", "help"),
    ("p", "pause"),
    ("+/-", "speed"),
    ("n", "next finding"),
    ("</>", "start/end"),
    ("b", "back"),
    ("Tab", "pane"),
    ("1-5", "tables"),
    ("/", "filter"),
];

/// The action for a key in `mode`, if any.
pub fn map_key(mode: &Mode, key: KeyEvent) -> Option<Action> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c')) {
        return Some(Action::Quit);
    }
    match mode {
        Mode::Filter { .. } | Mode::Export { .. } => match key.code {
            KeyCode::Enter => Some(Action::Submit),
            KeyCode::Esc => Some(Action::Cancel),
            KeyCode::Backspace => Some(Action::Backspace),
            KeyCode::Char('u') if ctrl => Some(Action::ClearInput),
            KeyCode::Char(c) if !ctrl => Some(Action::Input(c)),
            _ => None,
        },
        Mode::Help => match key.code {
            KeyCode::Char('?') => Some(Action::ToggleHelp),
            // Any other key closes the overlay (App::update drops it).
            _ => Some(Action::Cancel),
        },
        Mode::Normal => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Char('?') | KeyCode::F(1) => Some(Action::ToggleHelp),
            KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
            KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
            KeyCode::PageUp => Some(Action::PageUp),
            KeyCode::PageDown => Some(Action::PageDown),
            KeyCode::Home | KeyCode::Char('g') => Some(Action::Top),
            KeyCode::End | KeyCode::Char('G') => Some(Action::Bottom),
            KeyCode::Tab => Some(Action::NextFocus),
            KeyCode::BackTab => Some(Action::PrevFocus),
            KeyCode::Char('1') => Some(Action::ShowTab(Tab::Callers)),
            KeyCode::Char('2') => Some(Action::ShowTab(Tab::Reclaim)),
            KeyCode::Char('3') => Some(Action::ShowTab(Tab::Chunks)),
            KeyCode::Char('4') => Some(Action::ShowTab(Tab::Tasks)),
            KeyCode::Char('5') => Some(Action::ShowTab(Tab::Activity)),
            KeyCode::Char('+') | KeyCode::Char('=') => Some(Action::Faster),
            KeyCode::Char('-') => Some(Action::Slower),
            KeyCode::Char('n') => Some(Action::NextFinding),
            KeyCode::Char('>') => Some(Action::ToEnd),
            KeyCode::Char('<') => Some(Action::ToStart),
            KeyCode::Char('b') => Some(Action::Back),
            KeyCode::Right => Some(Action::NextTab),
            KeyCode::Left => Some(Action::PrevTab),
            KeyCode::Char('/') | KeyCode::Char('f') => Some(Action::StartFilter),
            KeyCode::Char('p') | KeyCode::Char(' ') => Some(Action::TogglePause),
            KeyCode::Char('c') => Some(Action::Clear),
            KeyCode::Char('s') => Some(Action::CycleSort),
            KeyCode::Char('e') => Some(Action::StartExport { all: false }),
            KeyCode::Char('E') => Some(Action::StartExport { all: true }),
            KeyCode::Enter => Some(Action::Submit),
            KeyCode::Esc => Some(Action::Cancel),
            _ => None,
        },
    }
}
