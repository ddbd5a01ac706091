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
//! [`run_replay`] (a recording fed by [`replay::Replay`] on the UI thread: paced, faster,
//! or at full speed to the next finding or the end, and back by feeding a fresh engine).
pub mod action;
pub mod app;
pub mod export;
pub mod header;
pub mod keys;
pub mod replay;
pub mod replay_clock;
pub mod terminal;
pub mod theme;
pub mod transport;
pub mod ui;
pub mod view_state;
pub mod widgets;

#[cfg(test)]
mod tests;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context, Result};
use ratatui::{backend::Backend, Terminal};
use tokio::sync::mpsc;

pub use app::App;
pub use header::Header;
pub use replay::ReplayOptions;
pub use theme::Theme;

use crate::pipeline::LiveItem;
use app::Effect;
use replay::Replay;
use terminal::{Input, InputThread, TerminalGuard};

/// Redraw period when nothing is pressed (events are batched between redraws).
const FRAME: Duration = Duration::from_millis(250);
/// Most queued items taken per wake-up before the loop looks at keys and the clock again.
const BATCH: usize = 4096;

/// Where the events come from.
enum Source {
    /// The live pipeline, through a channel; `None` once it closed.
    Live(Option<mpsc::Receiver<LiveItem>>),
    /// A recording, fed by the driver on this thread.
    Replay(Box<Replay>),
}

/// Runs the UI on live events until the user quits or SIGTERM/SIGINT/SIGHUP arrives. When
/// the channel closes (tracing stopped) the screen stays, with a note, until quit. The
/// terminal is restored on return, on error and on panic.
pub async fn run_live(header: Header, rx: mpsc::Receiver<LiveItem>) -> Result<()> {
    let app = App::new(header, Theme::detect());
    run(app, Source::Live(Some(rx))).await
}

/// Replays a recording through the UI as recorded (idle gaps cut to a second); see
/// [`run_replay_with`]. Call it outside a tokio runtime (it makes its own).
pub fn run_replay(path: &Path) -> Result<()> {
    run_replay_with(path, ReplayOptions::default())
}

/// Replays a recording through the UI, with the replay keys (speed, next finding, end,
/// back). Errors in opening the recording are returned before the terminal is touched; a
/// corrupt record later shows in the status bar and stops the replay where it is.
pub fn run_replay_with(path: &Path, opts: ReplayOptions) -> Result<()> {
    let (replay, rec_header) = Replay::open(path, opts).map_err(|e| anyhow!("{e}"))?;
    let header = Header::from_recording(path, &rec_header);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the UI runtime")?;
    let mut app = App::new(header, Theme::detect());
    replay.prepare(&mut app, opts);
    rt.block_on(run(app, Source::Replay(Box::new(replay))))
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

async fn run(mut app: App, source: Source) -> Result<()> {
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
        source,
        &mut in_rx,
        started,
        stop,
    )
    .await;
    drop(_input);
    drop(guard);
    r
}

/// The next live item, or never once the channel closed.
async fn next_live(rx: &mut Option<mpsc::Receiver<LiveItem>>) -> Option<LiveItem> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The loop, over any backend (the real terminal, or a test backend).
async fn event_loop<B: Backend>(
    app: &mut App,
    term: &mut Terminal<B>,
    source: Source,
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
    let (mut live_rx, mut replay) = match source {
        Source::Live(rx) => (rx, None),
        Source::Replay(r) => (None, Some(r)),
    };
    loop {
        // A recording is read only while playing or seeking (its driver says when next);
        // live events keep flowing into the engine while paused (so nothing is lost) and
        // only the display is frozen.
        let due = replay.as_ref().and_then(|r| r.due(app, Instant::now()));
        let live_open = live_rx.is_some();
        let wake = tokio::time::Instant::from_std(due.unwrap_or_else(Instant::now));
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
                            Some(Effect::Restart) => {
                                if let Some(r) = replay.as_mut() {
                                    r.restart(app);
                                }
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
            _ = tokio::time::sleep_until(wake), if due.is_some() => {
                if let Some(r) = replay.as_mut() {
                    if r.pump(app, Instant::now()) {
                        term.draw(|f| ui::render(app, f))?;
                    }
                }
            }
            first = next_live(&mut live_rx), if live_open => {
                let mut next = first;
                let mut n = 0;
                loop {
                    match next.take() {
                        Some(item) => app.ingest(item),
                        None => {
                            app.set_ended("event stream closed (q to quit)");
                            // Final state at once, even while paused.
                            app.show_final();
                            live_rx = None;
                            break;
                        }
                    }
                    n += 1;
                    if n >= BATCH {
                        break;
                    }
                    match live_rx.as_mut().map(|rx| rx.try_recv()) {
                        Some(Ok(item)) => next = Some(item),
                        Some(Err(mpsc::error::TryRecvError::Disconnected)) => next = None,
                        _ => break,
                    }
                }
            }
        }
    }
}
