//! What the screen is showing: focused pane, table, findings order, overlay or prompt,
//! footer message and the verdict line. Plain data; [`super::app::App`] changes it.
use crate::engine::{Finding, FindingKind};

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
    /// What was seen, finding or not (the engine's activity counts).
    Activity,
}

impl Tab {
    /// All tabs, in key order (1..5).
    pub const ALL: [Tab; 5] = [
        Tab::Callers,
        Tab::Reclaim,
        Tab::Chunks,
        Tab::Tasks,
        Tab::Activity,
    ];

    /// Position in [`Tab::ALL`].
    pub fn index(self) -> usize {
        match self {
            Tab::Callers => 0,
            Tab::Reclaim => 1,
            Tab::Chunks => 2,
            Tab::Tasks => 3,
            Tab::Activity => 4,
        }
    }

    /// Short title.
    pub fn title(self) -> &'static str {
        match self {
            Tab::Callers => "callers",
            Tab::Reclaim => "reclaim",
            Tab::Chunks => "chunks",
            Tab::Tasks => "tasks",
            Tab::Activity => "activity",
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
    /// Sorts `view` (indices into `findings`) in this order; ties: the later finding first.
    pub fn sort(self, view: &mut [usize], findings: &[Finding]) {
        match self {
            SortBy::Severity => view.sort_by(|&a, &b| {
                let (fa, fb) = (&findings[a], &findings[b]);
                fb.severity
                    .cmp(&fa.severity)
                    .then(fb.last_seen_ns.cmp(&fa.last_seen_ns))
                    .then(b.cmp(&a))
            }),
            SortBy::Newest => view.sort_by(|&a, &b| {
                findings[b]
                    .last_seen_ns
                    .cmp(&findings[a].last_seen_ns)
                    .then(b.cmp(&a))
            }),
            SortBy::Count => {
                view.sort_by(|&a, &b| findings[b].count.cmp(&findings[a].count).then(b.cmp(&a)))
            }
        }
    }

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

impl Verdict {
    /// The verdict for these findings (the run's selection) on a kernel with `fix`.
    pub fn of<'a>(findings: impl Iterator<Item = &'a Finding>, fix: Option<bool>) -> Self {
        let (mut hit, mut live, mut win) = (0, 0, 0);
        for f in findings {
            match f.kind {
                FindingKind::Recursion => hit += 1,
                FindingKind::CrossTask => live += 1,
                FindingKind::Window => win += 1,
            }
        }
        if hit > 0 {
            Verdict::Hit(hit)
        } else if live > 0 {
            Verdict::Live(live)
        } else if win > 0 {
            Verdict::Exposed(win)
        } else {
            Verdict::Quiet(fix)
        }
    }
}
