//! What the screen is showing: focused pane, table, findings order, overlay or prompt,
//! footer message and the verdict line. Plain data; [`super::app::App`] changes it.
/// Which pane Up/Down move in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    /// The findings list.
    Findings,
    /// The live table shown.
    Tables,
    /// The finding detail (scrolls).
    Detail,
}

/// The live tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// Constrained percpu callers.
    Callers,
    /// Reclaim entered while holding the mutex.
    Reclaim,
    /// Chunk create/populate activity.
    Chunks,
    /// Tracked tasks.
    Tasks,
}

impl Tab {
    /// All tabs, in key order (1..4).
    pub const ALL: [Tab; 4] = [Tab::Callers, Tab::Reclaim, Tab::Chunks, Tab::Tasks];

    /// Position in [`Tab::ALL`].
    pub fn index(self) -> usize {
        match self {
            Tab::Callers => 0,
            Tab::Reclaim => 1,
            Tab::Chunks => 2,
            Tab::Tasks => 3,
        }
    }

    /// Short title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Callers => "callers",
            Tab::Reclaim => "reclaim",
            Tab::Chunks => "chunks",
            Tab::Tasks => "tasks",
        }
    }
}

/// Order of the findings list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// Most severe first, newest first within a severity (the default).
    Severity,
    /// Most recent occurrence first.
    Newest,
    /// Most occurrences first.
    Count,
}

impl SortBy {
    /// Label for the list title.
    pub fn label(self) -> &'static str {
        match self {
            SortBy::Severity => "severity",
            SortBy::Newest => "newest",
            SortBy::Count => "count",
        }
    }
}

/// Modal state: overlays and prompts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The main screen.
    Normal,
    /// The help overlay.
    Help,
    /// Typing a filter.
    Filter {
        /// Text so far.
        input: String,
    },
    /// Typing the export path.
    Export {
        /// Path so far.
        input: String,
        /// Export all findings rather than the selected one.
        all: bool,
    },
}

/// The one-line message in the footer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Text.
    pub text: String,
    /// An error (shown in the error style).
    pub error: bool,
}

/// The answer to "does this host have the bug?", from all findings (not the filtered view).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// At least one recursion finding.
    Hit(usize),
    /// At least one cross_task finding, no recursion.
    Live(usize),
    /// Window findings only.
    Exposed(usize),
    /// No finding; whether the kernel has the fix.
    Quiet(Option<bool>),
}
