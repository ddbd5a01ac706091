//! What a key asks for ([`Action`]) and what the runner must do about it ([`Effect`]),
//! independent of the terminal.
use std::path::PathBuf;

use super::view_state::Tab;

/// What a key asks for, independent of the terminal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Leave the UI.
    Quit,
    /// Move up in the focused pane.
    Up,
    /// Move down.
    Down,
    /// A page up.
    PageUp,
    /// A page down.
    PageDown,
    /// To the first row.
    Top,
    /// To the last row.
    Bottom,
    /// Focus the next pane.
    NextFocus,
    /// Focus the previous pane.
    PrevFocus,
    /// Show this table.
    ShowTab(Tab),
    /// Next table.
    NextTab,
    /// Previous table.
    PrevTab,
    /// Pause or resume.
    TogglePause,
    /// Forget findings and tables, start over.
    Clear,
    /// Next findings order.
    CycleSort,
    /// Open or close the help overlay.
    ToggleHelp,
    /// Start typing a filter.
    StartFilter,
    /// Start typing an export path.
    StartExport {
        /// All findings rather than the selected one.
        all: bool,
    },
    /// A character typed into a prompt.
    Input(char),
    /// Delete the last character of a prompt.
    Backspace,
    /// Clear a prompt's text.
    ClearInput,
    /// Accept the prompt.
    Submit,
    /// Close the prompt or overlay; in the main screen, drop the filter.
    Cancel,
    /// Replay: one speed step faster.
    Faster,
    /// Replay: one speed step slower.
    Slower,
    /// Replay: full speed to the next finding, paused there.
    NextFinding,
    /// Replay: full speed to the end.
    ToEnd,
    /// Replay: back to the start, paused.
    ToStart,
    /// Replay: back [`super::app::REWIND_NS`] in recorded time, paused.
    Back,
}

/// Side effects [`App::update`] asks the runner to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Leave the UI.
    Quit,
    /// Write a report.
    Export {
        /// Where.
        path: PathBuf,
        /// `None`: all findings; `Some(i)`: index of the finding in the engine's list.
        finding: Option<usize>,
    },
    /// Replay: feed a fresh engine from the recording's start (the engine is pure and
    /// deterministic, so this is how the replay goes back); the transport's goal says
    /// where to stop.
    Restart,
}
