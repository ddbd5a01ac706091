//! UI state and the only place it changes: events in ([`App::ingest`]), actions in
//! ([`App::update`]), time in ([`App::tick`]), and [`App::refresh`] before a draw. Drawing
//! (`ui.rs`) only reads it.
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use crate::{
    engine::{
        CallerRow, ChunkRow, Engine, EngineState, Finding, FindingFilter, FindingKind,
        FindingUpdate, HoldHistory, Severity,
    },
    event::Event,
    pipeline::{LiveItem, Losses},
    report::StackTable,
};

pub use super::action::{Action, Effect};
pub use super::transport::{Goal, Transport};
pub use super::view_state::{Focus, Mode, SortBy, Status, Tab, Verdict};
use super::{header::Header, theme::Theme};
/// The `/` prompt's filter: the engine's [`FindingFilter`] (one matching rule for the
/// command line and the UI), applied on top of the run's own filter.
pub type Filter = FindingFilter;

/// Page size for PageUp/PageDown.
const PAGE: usize = 10;
/// How far `b` rewinds, in recorded time.
pub const REWIND_NS: u64 = 10_000_000_000;

/// The whole UI state.
pub struct App {
    /// Kernel and probe facts.
    pub header: Header,
    /// Colors.
    pub theme: Theme,
    engine: Engine,
    /// Stack table (ids from events and findings).
    pub stacks: StackTable,
    /// The engine's state at the last refresh.
    pub snap: EngineState,
    /// Finding indices in display order (filtered, sorted) at the last refresh.
    pub view: Vec<usize>,
    /// Indices into `snap.tasks` that pass the filter.
    pub task_rows: Vec<usize>,
    /// Position of the selected finding in `view`.
    pub selected: usize,
    /// The selected finding's identity, so the selection follows it when the order changes.
    selected_id: Option<(FindingKind, u64)>,
    /// Pane focus.
    pub focus: Focus,
    /// Table shown.
    pub tab: Tab,
    /// Selected row per table (the activity tab: its scroll offset).
    pub table_sel: [usize; Tab::ALL.len()],
    /// Detail pane scroll (lines).
    pub detail_scroll: u16,
    /// Findings order.
    pub sort: SortBy,
    /// Overlay or prompt.
    pub mode: Mode,
    /// Active filter.
    pub filter: Filter,
    /// Display frozen (live) or reading stopped (replay).
    pub paused: bool,
    /// Events that arrived while paused (live).
    pub held_back: u64,
    /// Footer message.
    pub status: Option<Status>,
    /// Events fed to the engine since start (clears do not reset it).
    pub events: u64,
    /// Events per second over the last second or so.
    pub rate: f64,
    /// Time since the UI started.
    pub uptime: Duration,
    rate_mark: (Duration, u64),
    /// Timestamp of the first event (times are shown relative to it).
    pub base_ns: Option<u64>,
    /// Set when the source ended ("recording finished", "event stream closed").
    pub ended: Option<String>,
    /// Replay only: speed and where the replay is going.
    pub transport: Option<Transport>,
    /// Summary for the header.
    pub verdict: Verdict,
    /// Findings announced in the footer since it last said something else, and the most
    /// severe of them.
    announced: Option<(usize, (Severity, String))>,
}

impl App {
    /// A fresh UI for `header`.
    pub fn new(header: Header, theme: Theme) -> Self {
        let engine = Engine::with_filter(header.engine.clone(), header.filter.clone());
        let snap = engine.snapshot();
        let verdict = Verdict::Quiet(header.fix_present());
        let transport = header.replay_path().map(|_| Transport::default());
        App {
            header,
            theme,
            engine,
            stacks: StackTable::new(),
            snap,
            view: Vec::new(),
            task_rows: Vec::new(),
            selected: 0,
            selected_id: None,
            focus: Focus::Findings,
            tab: Tab::Callers,
            table_sel: [0; Tab::ALL.len()],
            detail_scroll: 0,
            sort: SortBy::Severity,
            mode: Mode::Normal,
            filter: Filter::default(),
            paused: false,
            held_back: 0,
            status: None,
            events: 0,
            rate: 0.0,
            uptime: Duration::ZERO,
            rate_mark: (Duration::ZERO, 0),
            base_ns: None,
            ended: None,
            transport,
            verdict,
            announced: None,
        }
    }

    /// All findings, in the engine's (first occurrence) order.
    pub fn findings(&self) -> &[Finding] {
        self.engine.findings()
    }

    /// The engine (read-only).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The selected finding and its index in [`App::findings`].
    pub fn selected_finding(&self) -> Option<(usize, &Finding)> {
        let i = *self.view.get(self.selected)?;
        self.engine.findings().get(i).map(|f| (i, f))
    }

    /// Whether events come from a recording.
    pub fn is_replay(&self) -> bool {
        self.header.replay_path().is_some()
    }

    /// Feeds one message from the pipeline or the recording.
    pub fn ingest(&mut self, item: LiveItem) {
        match item {
            LiveItem::Event(ev) => self.ingest_event(&ev),
            LiveItem::Stack(id, frames) => {
                self.engine.stack(id, &frames);
                self.stacks.insert(id, frames);
            }
            LiveItem::Progress { losses, .. } => self.set_losses(&losses),
            LiveItem::Activity(totals) => self.engine.set_kernel_activity(&totals),
        }
    }

    /// Feeds one event.
    pub fn ingest_event(&mut self, ev: &Event) {
        self.base_ns.get_or_insert(ev.ts_ns);
        self.events += 1;
        if self.paused {
            self.held_back += 1;
        }
        let updates = self.engine.process(ev);
        let mut stop = None;
        for u in updates {
            if let FindingUpdate::New { index } = u {
                let f = &self.engine.findings()[index];
                if self.engine.is_selected(f) {
                    // `n` stops at a finding the user would see (the `/` filter too).
                    if self.filter.matches_finding(f) {
                        stop = Some((f.kind, f.signature));
                    }
                    self.announce(index);
                }
            }
        }
        if let Some(id) = stop {
            if let Some(t) = self
                .transport
                .as_mut()
                .filter(|t| t.goal == Goal::NextFinding)
            {
                t.goal = Goal::Play;
                // Select what `n` stopped at, so the detail pane shows it.
                self.selected_id = Some(id);
                self.detail_scroll = 0;
                self.pause_here();
            }
        }
    }

    /// Shows the state as it is now and pauses there (a replay reached what it ran to).
    pub fn pause_here(&mut self) {
        self.refresh_now();
        self.paused = true;
        self.held_back = 0;
    }

    /// Shows the final state, even while paused (the source ended).
    pub fn show_final(&mut self) {
        self.refresh_now();
    }

    /// The engine's clock: the latest event time it has seen (0: none yet).
    pub fn now_ns(&self) -> u64 {
        self.engine.now_ns()
    }

    /// Starts over for a replay fed again from its first record: a fresh engine and stack
    /// table, no events. The view settings, the selection's identity (it follows the
    /// finding when it comes back) and the transport's goal stay.
    pub fn restart_replay(&mut self) {
        self.engine = Engine::with_filter(self.header.engine.clone(), self.header.filter.clone());
        self.stacks = StackTable::new();
        self.events = 0;
        self.held_back = 0;
        self.rate_mark = (self.uptime, 0);
        self.base_ns = None;
        self.ended = None;
        self.paused = false;
        self.announced = None;
        self.refresh_now();
    }

    /// Says in the footer that a finding appeared; several in a row are summed up under the
    /// most severe one, so a burst does not end on its least interesting finding.
    fn announce(&mut self, index: usize) {
        let Some(f) = self.engine.findings().get(index) else {
            return;
        };
        let who = f.tasks.first().map(|t| t.comm.as_str()).unwrap_or("?");
        let this = (f.severity, format!("{} {} ({who})", f.severity, f.kind));
        let (n, best) = match self.announced.take() {
            Some((n, best)) if best.0 > this.0 => (n + 1, best),
            Some((n, _)) => (n + 1, this),
            None => (1, this),
        };
        let text = if n == 1 {
            format!("new finding: {}", best.1)
        } else {
            format!("{n} new findings, most severe: {}", best.1)
        };
        self.status = Some(Status { text, error: false });
        self.announced = Some((n, best));
    }

    /// Sets the footer message.
    pub fn say(&mut self, text: impl Into<String>, error: bool) {
        self.announced = None;
        self.status = Some(Status {
            text: text.into(),
            error,
        });
    }

    /// Loss counters from the live pipeline (the engine keeps them).
    pub fn set_losses(&mut self, l: &Losses) {
        // Events the UI itself was too slow to take are lost like any other: the channel
        // sink already put them under `consumer_full`.
        self.engine.set_losses(l.to_map());
    }

    /// Loss counters by reason name (a recording's `drops` record).
    pub fn set_drops(&mut self, drops: BTreeMap<String, u64>) {
        self.engine.set_losses(drops);
    }

    /// Lost events (stack losses lose detail, not events, and are shown apart).
    pub fn events_lost(&self) -> u64 {
        self.engine.losses().events_lost()
    }

    /// Stacks that could not be taken or read.
    pub fn stacks_lost(&self) -> u64 {
        self.engine.losses().detail_lost()
    }

    /// Loss counters by reason, latest.
    pub fn losses(&self) -> &BTreeMap<String, u64> {
        &self.engine.losses().by_reason
    }

    /// Whether any event said whether its task held the mutex (address known).
    pub fn mutex_known(&self) -> bool {
        self.engine.tables().mutex_known
    }

    /// Completed holds of pcpu_alloc_mutex (the engine's history).
    pub fn holds(&self) -> &HoldHistory {
        &self.snap.holds
    }

    /// The filter rows and findings are shown through: the run's (`--comm`, `--cgroup`,
    /// `--pid`) and the prompt's together.
    pub fn view_filter(&self) -> FindingFilter {
        self.engine.filter().and(&self.filter)
    }

    /// The source ended; the screen stays until quit.
    pub fn set_ended(&mut self, why: impl Into<String>) {
        let why = why.into();
        self.say(why.clone(), false);
        self.ended = Some(why);
    }

    /// Shows an error in the footer.
    pub fn set_error(&mut self, text: impl Into<String>) {
        self.say(text, true);
    }

    /// Advances time: uptime and the event rate (over windows of at least a second).
    pub fn tick(&mut self, uptime: Duration) {
        self.uptime = uptime;
        let (t0, n0) = self.rate_mark;
        let dt = uptime.saturating_sub(t0);
        if dt >= Duration::from_secs(1) {
            self.rate = self.events.saturating_sub(n0) as f64 / dt.as_secs_f64();
            self.rate_mark = (uptime, self.events);
        }
    }

    /// Brings the displayed state up to date (skipped while paused, except `force`).
    pub fn refresh(&mut self) {
        if !self.paused {
            self.refresh_now();
        }
    }

    fn refresh_now(&mut self) {
        self.snap = self.engine.snapshot();
        let view_filter = self.view_filter();
        let findings = self.engine.findings();
        // The verdict counts what the run selected (`--comm`/`--cgroup`), as headless does.
        self.verdict = Verdict::of(
            self.engine.selected().map(|(_, f)| f),
            self.header.fix_present(),
        );
        let mut view: Vec<usize> = (0..findings.len())
            .filter(|&i| view_filter.matches_finding(&findings[i]))
            .collect();
        self.sort.sort(&mut view, findings);
        // Keep the selection on the same finding when the order changes under it.
        let pos = self.selected_id.and_then(|id| {
            view.iter()
                .position(|&i| (findings[i].kind, findings[i].signature) == id)
        });
        self.view = view;
        self.selected = pos.unwrap_or(self.selected.min(self.view.len().saturating_sub(1)));
        self.remember_selection();
        let f = &view_filter;
        self.task_rows = (0..self.snap.tasks.len())
            .filter(|&i| {
                let t = &self.snap.tasks[i];
                f.matches(t.pid, t.tgid, &t.comm, Some(t.cgroup_id))
            })
            .collect();
    }

    fn remember_selection(&mut self) {
        self.selected_id = self.selected_finding().map(|(_, f)| (f.kind, f.signature));
    }

    /// Rows in the shown table (after filtering), for navigation.
    pub fn table_len(&self, tab: Tab) -> usize {
        match tab {
            Tab::Callers => self.caller_rows().len(),
            Tab::Reclaim => self.reclaim_rows().len(),
            Tab::Chunks => self.chunk_rows().len(),
            Tab::Tasks => self.task_rows.len(),
            Tab::Activity => crate::report::wording::activity_lines(&self.snap.activity).len(),
        }
    }

    /// Whether the run selected no finding yet (the activity tab then says why).
    pub fn no_finding(&self) -> bool {
        self.engine.selected().next().is_none()
    }

    /// Constrained caller rows that pass the filter, most calls first. A pid filter matches
    /// the pids remembered for the row.
    pub fn caller_rows(&self) -> Vec<&CallerRow> {
        let f = &self.view_filter();
        let mut rows = self.engine.tables().callers();
        rows.retain(|r| {
            if f.pid.is_some() {
                r.pids
                    .iter()
                    .any(|&p| f.matches(p, p, &r.comm, Some(r.cgroup_id)))
            } else {
                f.matches(0, 0, &r.comm, Some(r.cgroup_id))
            }
        });
        rows
    }

    /// Chunk activity rows that pass the filter, most recent first.
    pub fn chunk_rows(&self) -> Vec<&ChunkRow> {
        let f = &self.view_filter();
        let mut rows = self.engine.tables().chunks();
        rows.retain(|r| f.matches(r.pid, r.pid, &r.comm, Some(r.cgroup_id)));
        rows
    }

    /// Reclaim episodes entered while holding the mutex that pass the filter, newest first.
    pub fn reclaim_rows(&self) -> Vec<&crate::engine::ReclaimRecord> {
        let f = self.view_filter();
        self.snap
            .recent_reclaims
            .iter()
            .rev()
            .filter(|r| r.held_mutex)
            .filter(|r| f.is_empty() || f.matches(r.pid, r.tgid, &r.comm, None))
            .collect()
    }

    fn move_by(&mut self, delta: isize) {
        let clamp = |cur: usize, len: usize| -> usize {
            if len == 0 {
                0
            } else {
                cur.saturating_add_signed(delta).min(len - 1)
            }
        };
        match self.focus {
            Focus::Findings => {
                self.selected = clamp(self.selected, self.view.len());
                self.detail_scroll = 0;
                self.remember_selection();
            }
            Focus::Tables => {
                let len = self.table_len(self.tab);
                let i = self.tab.index();
                self.table_sel[i] = clamp(self.table_sel[i], len);
            }
            Focus::Detail => {
                let d = i32::from(self.detail_scroll) + delta as i32;
                self.detail_scroll = d.clamp(0, i32::from(u16::MAX)) as u16;
            }
        }
    }

    /// Applies one action; returns a side effect for the runner, if any.
    pub fn update(&mut self, action: Action) -> Option<Effect> {
        match (&mut self.mode, action) {
            (_, Action::Quit) => return Some(Effect::Quit),
            (Mode::Filter { input } | Mode::Export { input, .. }, Action::Input(c)) => {
                input.push(c)
            }
            (Mode::Filter { input } | Mode::Export { input, .. }, Action::Backspace) => {
                input.pop();
            }
            (Mode::Filter { input } | Mode::Export { input, .. }, Action::ClearInput) => {
                input.clear()
            }
            (Mode::Filter { input }, Action::Submit) => match Filter::parse(input) {
                Ok(f) => {
                    let text = if f.is_empty() {
                        "filter cleared".into()
                    } else {
                        format!("filter: {}", f.describe())
                    };
                    self.say(text, false);
                    self.filter = f;
                    self.mode = Mode::Normal;
                    self.table_sel = [0; Tab::ALL.len()];
                    self.refresh_now();
                }
                Err(e) => self.set_error(format!("bad filter: {e}")),
            },
            (Mode::Export { input, all }, Action::Submit) => {
                let path = PathBuf::from(input.trim());
                let all = *all;
                self.mode = Mode::Normal;
                if path.as_os_str().is_empty() {
                    self.set_error("export: no path given");
                    return None;
                }
                let finding = if all {
                    None
                } else {
                    match self.selected_finding() {
                        Some((i, _)) => Some(i),
                        None => {
                            self.set_error("export: no finding selected");
                            return None;
                        }
                    }
                };
                return Some(Effect::Export { path, finding });
            }
            (Mode::Filter { .. } | Mode::Export { .. } | Mode::Help, Action::Cancel) => {
                self.mode = Mode::Normal
            }
            (Mode::Help, Action::ToggleHelp) => self.mode = Mode::Normal,
            // Prompts take only the actions above; other keys are ignored while typing.
            (Mode::Filter { .. } | Mode::Export { .. }, _) => {}
            // The overlay hides the screen: any other key closes it and is dropped.
            (Mode::Help, _) => self.mode = Mode::Normal,
            (Mode::Normal, a) => return self.update_normal(a),
        }
        None
    }

    fn update_normal(&mut self, action: Action) -> Option<Effect> {
        match action {
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-(PAGE as isize)),
            Action::PageDown => self.move_by(PAGE as isize),
            Action::Top => self.move_by(isize::MIN / 2),
            Action::Bottom => self.move_by(isize::MAX / 2),
            Action::NextFocus | Action::PrevFocus => {
                let order = [Focus::Findings, Focus::Detail, Focus::Tables];
                let i = order.iter().position(|&f| f == self.focus).unwrap_or(0);
                let step = if action == Action::NextFocus {
                    1
                } else {
                    order.len() - 1
                };
                self.focus = order[(i + step) % order.len()];
            }
            Action::ShowTab(t) => {
                self.tab = t;
                self.focus = Focus::Tables;
            }
            Action::NextTab | Action::PrevTab => {
                let n = Tab::ALL.len();
                let step = if action == Action::NextTab { 1 } else { n - 1 };
                self.tab = Tab::ALL[(self.tab.index() + step) % n];
            }
            Action::TogglePause => {
                if !self.paused && self.transport.is_some() {
                    // A replay stops reading here: show where, not the last frame.
                    self.refresh_now();
                }
                self.paused = !self.paused;
                if self.paused {
                    self.held_back = 0;
                    self.say("paused (p to resume)", false);
                } else {
                    self.status = None;
                    self.announced = None;
                    self.refresh_now();
                }
            }
            Action::Clear => {
                let losses = self.engine.losses().by_reason.clone();
                self.engine =
                    Engine::with_filter(self.header.engine.clone(), self.header.filter.clone());
                // Losses are the pipeline's totals, not something a clear can forget;
                // nor are the stacks (events refer to ids sent once).
                self.engine.set_losses(losses);
                for (id, frames) in &self.stacks {
                    self.engine.stack(*id, frames);
                }
                self.selected = 0;
                self.selected_id = None;
                self.table_sel = [0; Tab::ALL.len()];
                self.detail_scroll = 0;
                self.say("cleared findings and tables", false);
                self.refresh_now();
            }
            Action::CycleSort => {
                self.sort = match self.sort {
                    SortBy::Severity => SortBy::Newest,
                    SortBy::Newest => SortBy::Count,
                    SortBy::Count => SortBy::Severity,
                };
                self.refresh_now();
            }
            Action::ToggleHelp => self.mode = Mode::Help,
            Action::StartFilter => {
                self.mode = Mode::Filter {
                    input: self.filter.describe(),
                }
            }
            Action::StartExport { all } => {
                if !all && self.selected_finding().is_none() {
                    self.set_error("export: no finding selected (E exports all)");
                } else {
                    let selected = self.selected_finding().map(|(_, f)| f);
                    let input = super::export::default_path(selected, all)
                        .display()
                        .to_string();
                    self.mode = Mode::Export { input, all };
                }
            }
            Action::Cancel => {
                if !self.filter.is_empty() {
                    self.filter = Filter::default();
                    self.say("filter cleared", false);
                    self.refresh_now();
                } else {
                    self.status = None;
                    self.announced = None;
                }
            }
            Action::Submit => {
                if self.focus == Focus::Findings && self.selected_finding().is_some() {
                    self.focus = Focus::Detail;
                }
            }
            Action::Faster
            | Action::Slower
            | Action::NextFinding
            | Action::ToEnd
            | Action::ToStart
            | Action::Back => return self.update_transport(action),
            Action::Quit | Action::Input(_) | Action::Backspace | Action::ClearInput => {}
        }
        None
    }

    /// The replay keys: speed, and jumps (a jump back restarts the engine, see
    /// [`Effect::Restart`]: the engine cannot run backwards).
    fn update_transport(&mut self, action: Action) -> Option<Effect> {
        let clock = self.transport.as_ref().map_or(0, |t| t.clock_ns);
        let now = self.engine.now_ns().max(clock);
        let ended = self.ended.is_some();
        let Some(t) = self.transport.as_mut() else {
            self.set_error("replay keys work with --replay FILE");
            return None;
        };
        let mut effect = None;
        let mut run = true;
        match action {
            Action::Faster | Action::Slower => {
                if action == Action::Faster {
                    t.faster();
                } else {
                    t.slower();
                }
                let text = format!("speed {}", t.speed_label());
                self.say(text, false);
                return None;
            }
            Action::NextFinding if ended => {
                run = false;
                self.say(
                    "recording finished: no further finding (< to start over)",
                    false,
                );
            }
            Action::ToEnd if ended => run = false,
            Action::NextFinding => t.goal = Goal::NextFinding,
            Action::ToEnd => t.goal = Goal::End,
            Action::ToStart => {
                t.goal = Goal::Start;
                effect = Some(Effect::Restart);
            }
            _ => {
                let first = t.first_ns.unwrap_or(0);
                // Not past the first event: rewinding from there goes to the start.
                let to = now.saturating_sub(REWIND_NS);
                t.goal = if now > 0 && to >= first {
                    Goal::Until(to)
                } else {
                    Goal::Start
                };
                effect = Some(Effect::Restart);
            }
        }
        if run && effect.is_none() {
            self.paused = false;
            self.status = None;
            self.announced = None;
        }
        effect
    }

    /// Result of an export the runner performed.
    pub fn export_done(&mut self, result: anyhow::Result<PathBuf>) {
        match result {
            Ok(p) => self.say(format!("report written to {}", p.display()), false),
            // One line: the footer has room for one.
            Err(e) => self.say(
                format!("export failed: {}", format!("{e:#}").replace('\n', " ")),
                true,
            ),
        }
    }
}
