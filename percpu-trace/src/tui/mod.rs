//! The live terminal UI (`sudo percpu-trace`, `percpu-trace --replay FILE`).
//!
//! Shape (ratatui/bpftop style): [`app::App`] holds all state and changes only through
//! `ingest` (events), `update` (actions from keys, see [`keys`]), `tick` and `refresh`;
//! [`ui::render`] is a pure function of it; [`terminal`] owns raw mode and restores the
//! terminal on every way out (Drop guard, panic hook, SIGTERM/SIGINT/SIGHUP). The UI feeds
//! its own [`crate::engine::Engine`] — the same engine as headless mode — and draws from the
//! engine's snapshot, at most four times a second plus once per key.
//!
//! Entry points: [`run_live`] (events from the live pipeline through a channel) and
//! [`run_replay`] (events from a recording, paced or at full speed, pausable).
pub mod action;
pub mod app;
pub mod export;
pub mod header;
pub mod keys;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod view_state;
pub mod widgets;

#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    fs::File,
    io::BufReader,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context, Result};
use ratatui::{backend::Backend, Terminal};
use tokio::sync::mpsc;

pub use app::App;
pub use header::Header;
pub use theme::Theme;

use crate::{
    pipeline::LiveItem,
    record::{Record, RecordingReader},
};
use app::Effect;
use terminal::{Input, InputThread, TerminalGuard};

/// Redraw period when nothing is pressed (events are batched between redraws).
const FRAME: Duration = Duration::from_millis(250);
/// Most queued items taken per wake-up before the loop looks at keys and the clock again.
const BATCH: usize = 4096;

/// How a recording is replayed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplayOptions {
    /// Time factor against the recorded timestamps (1.0: as recorded); `None`: full speed.
    pub speed: Option<f64>,
    /// Longest pause between two events, so idle stretches of a recording do not stall it.
    pub max_gap: Duration,
}

impl Default for ReplayOptions {
    /// As recorded, with idle stretches cut to one second.
    fn default() -> Self {
        ReplayOptions {
            speed: Some(1.0),
            max_gap: Duration::from_secs(1),
        }
    }
}

/// What the replay thread sends.
enum Feed {
    Item(LiveItem),
    Drops(BTreeMap<String, u64>),
    /// The source ended: `None` normally, `Some(error)` on a bad recording.
    End(Option<String>),
    /// The recording ended after lines were skipped as corrupt (what and where).
    EndSkipped(String),
}

enum FeedRx {
    Live(mpsc::Receiver<LiveItem>),
    Replay(mpsc::Receiver<Feed>),
    Closed,
}

impl FeedRx {
    async fn next(&mut self) -> Feed {
        match self {
            FeedRx::Live(rx) => match rx.recv().await {
                Some(i) => Feed::Item(i),
                None => Feed::End(None),
            },
            FeedRx::Replay(rx) => rx.recv().await.unwrap_or(Feed::End(None)),
            FeedRx::Closed => std::future::pending().await,
        }
    }

    fn try_next(&mut self) -> Option<Feed> {
        match self {
            FeedRx::Live(rx) => match rx.try_recv() {
                Ok(i) => Some(Feed::Item(i)),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => Some(Feed::End(None)),
            },
            FeedRx::Replay(rx) => match rx.try_recv() {
                Ok(f) => Some(f),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => Some(Feed::End(None)),
            },
            FeedRx::Closed => None,
        }
    }

    fn is_open(&self) -> bool {
        !matches!(self, FeedRx::Closed)
    }
}

/// Runs the UI on live events until the user quits or SIGTERM/SIGINT/SIGHUP arrives. When
/// the channel closes (tracing stopped) the screen stays, with a note, until quit. The
/// terminal is restored on return, on error and on panic.
pub async fn run_live(header: Header, rx: mpsc::Receiver<LiveItem>) -> Result<()> {
    let app = App::new(header, Theme::detect());
    run(app, FeedRx::Live(rx)).await
}

/// Replays a recording through the UI as recorded (idle gaps cut to a second); see
/// [`run_replay_with`]. Call it outside a tokio runtime (it makes its own).
pub fn run_replay(path: &Path) -> Result<()> {
    run_replay_with(path, ReplayOptions::default())
}

/// Replays a recording through the UI. Errors in opening the recording are returned before
/// the terminal is touched; a corrupt record later shows in the status bar and stops the
/// replay where it is. Pausing stops reading the file.
pub fn run_replay_with(path: &Path, opts: ReplayOptions) -> Result<()> {
    let reader = RecordingReader::open(path).map_err(|e| anyhow!("{e}"))?;
    let header = Header::from_recording(path, reader.header());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the UI runtime")?;
    let (tx, rx) = mpsc::channel(1024);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("tui-replay".into())
        .spawn(move || replay_thread(reader, opts, tx, flag))
        .context("starting the replay thread")?;
    let app = App::new(header, Theme::detect());
    let r = rt.block_on(run(app, FeedRx::Replay(rx)));
    // The thread ends at its next send (receiver gone) or sleep slice; no join needed.
    stop.store(true, Ordering::Relaxed);
    r
}

fn replay_thread(
    reader: RecordingReader<BufReader<File>>,
    opts: ReplayOptions,
    tx: mpsc::Sender<Feed>,
    stop: Arc<AtomicBool>,
) {
    let mut last_ts: Option<u64> = None;
    // Gaps below a few milliseconds are summed and slept at once: sleeping per event would
    // cost more than the events.
    let mut owed = Duration::ZERO;
    let sleep = |mut d: Duration| {
        while !d.is_zero() && !stop.load(Ordering::Relaxed) {
            let step = d.min(Duration::from_millis(50));
            std::thread::sleep(step);
            d -= step;
        }
    };
    let mut reader = reader;
    for rec in &mut reader {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let feed = match rec {
            Ok(Record::Event(ev)) => {
                if let (Some(speed), Some(prev)) = (opts.speed, last_ts) {
                    let gap = Duration::from_nanos(ev.ts_ns.saturating_sub(prev));
                    owed += gap.div_f64(speed.max(1e-6)).min(opts.max_gap);
                    if owed >= Duration::from_millis(5) {
                        sleep(owed);
                        owed = Duration::ZERO;
                    }
                }
                last_ts = Some(ev.ts_ns);
                Feed::Item(LiveItem::Event(ev))
            }
            Ok(Record::Stack { id, frames }) => Feed::Item(LiveItem::Stack(id, frames)),
            Ok(Record::Drops(d)) => Feed::Drops(d),
            // The run's length matters to reports, not to the screen.
            Ok(Record::Run { .. }) => continue,
            Ok(Record::Activity(a)) => Feed::Item(LiveItem::Activity(a)),
            Err(e) => {
                let _ = tx.blocking_send(Feed::End(Some(e.to_string())));
                return;
            }
        };
        if tx.blocking_send(feed).is_err() {
            return;
        }
    }
    let end = match reader.skipped_warning() {
        Some(w) => Feed::EndSkipped(w),
        None => Feed::End(None),
    };
    let _ = tx.blocking_send(end);
}

/// What the export key reports for `finding` (`Some(index into App::findings)`) or all
/// findings: the session's header context with this session's counts. Built here, by the
/// runner that performs the export, so `export` stays a pure function of its inputs and
/// neither it nor `app` imports the other both ways.
pub(crate) fn export_request(app: &App, finding: Option<usize>) -> export::Export<'_> {
    let mut context = app.header.context.clone();
    let span = app
        .findings()
        .iter()
        .map(|f| f.last_seen_ns)
        .max()
        .zip(app.base_ns)
        .map(|(last, first)| last.saturating_sub(first));
    context.events = app.events;
    context.drops = app.losses().clone();
    context.findings_dropped = app.snap.counters.findings_dropped;
    context.activity = Some(app.snap.activity.clone());
    context.set_fix_observed(app.engine());
    // Live: how long the UI ran; replay: the recording's own span.
    context.duration_ns = if app.is_replay() {
        span.or(context.duration_ns)
    } else {
        Some(u64::try_from(app.uptime.as_nanos()).unwrap_or(u64::MAX))
    };
    // "All" is every finding the run selected (`--comm`/`--cgroup`, which the report's
    // filters line names); the `/` prompt only narrows the screen.
    export::Export {
        context,
        selected: app.engine().selected().map(|(i, _)| i).collect(),
        findings: app.findings(),
        stacks: &app.stacks,
        finding,
    }
}

async fn run(mut app: App, feed: FeedRx) -> Result<()> {
    // Signal handlers first: failing here must not leave the terminal in raw mode.
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut guard = TerminalGuard::enter()?;
    let (in_tx, mut in_rx) = mpsc::unbounded_channel();
    let _input = InputThread::spawn(in_tx)?;
    let started = Instant::now();
    let stop = async {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
            _ = sighup.recv() => {}
        }
    };
    let r = event_loop(
        &mut app,
        &mut guard.terminal,
        feed,
        &mut in_rx,
        started,
        stop,
    )
    .await;
    drop(_input);
    drop(guard);
    r
}

/// The loop, over any backend (the real terminal, or a test backend).
async fn event_loop<B: Backend>(
    app: &mut App,
    term: &mut Terminal<B>,
    mut feed: FeedRx,
    input: &mut mpsc::UnboundedReceiver<Input>,
    started: Instant,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()>
where
    B::Error: Send + Sync + 'static,
{
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let replay = matches!(feed, FeedRx::Replay(_));
    loop {
        // Reading a recording stops while paused; live events keep flowing into the engine
        // (so nothing is lost) and only the display is frozen.
        let want_feed = feed.is_open() && !(replay && app.paused);
        tokio::select! {
            biased;
            _ = &mut stop => return Ok(()),
            inp = input.recv() => match inp {
                Some(Input::Key(k)) => {
                    if let Some(action) = keys::map_key(&app.mode, k) {
                        match app.update(action) {
                            Some(Effect::Quit) => return Ok(()),
                            Some(Effect::Export { path, finding }) => {
                                let r = export_request(app, finding).write(&path);
                                app.export_done(r);
                            }
                            None => {}
                        }
                    }
                    term.draw(|f| ui::render(app, f))?;
                }
                Some(Input::Resize) => {
                    term.autoresize()?;
                    term.draw(|f| ui::render(app, f))?;
                }
                Some(Input::Failed(e)) => return Err(anyhow!("reading the terminal: {e}")),
                None => return Err(anyhow!("terminal input thread ended")),
            },
            _ = tick.tick() => {
                app.tick(started.elapsed());
                app.refresh();
                term.draw(|f| ui::render(app, f))?;
            }
            first = feed.next(), if want_feed => {
                let mut next = Some(first);
                let mut n = 0;
                while let Some(f) = next.take() {
                    match f {
                        Feed::Item(item) => app.ingest(item),
                        Feed::Drops(d) => app.set_drops(d),
                        Feed::EndSkipped(w) => {
                            // Not an error: everything readable was shown.
                            app.set_ended(format!("recording finished; {w} (q to quit)"));
                            let paused = std::mem::replace(&mut app.paused, false);
                            app.refresh();
                            app.paused = paused;
                            feed = FeedRx::Closed;
                            break;
                        }
                        Feed::End(err) => {
                            match err {
                                Some(e) => app.set_error(format!("replay stopped: {e}")),
                                None if replay => app.set_ended("recording finished (q to quit)"),
                                None => app.set_ended("event stream closed (q to quit)"),
                            }
                            // Final state at once, even while paused.
                            let paused = std::mem::replace(&mut app.paused, false);
                            app.refresh();
                            app.paused = paused;
                            feed = FeedRx::Closed;
                            break;
                        }
                    }
                    n += 1;
                    if n < BATCH && !(replay && app.paused) {
                        next = feed.try_next();
                    }
                }
            }
        }
    }
}
