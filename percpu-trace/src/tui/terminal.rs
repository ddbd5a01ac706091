//! The real terminal: raw mode and the alternate screen behind a guard that always restores
//! them (Drop, panic hook), and a thread that turns key presses into messages.
use std::{
    io::{self, Stdout, Write},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Once,
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::{Context, Result};
use crossterm::{
    cursor, event,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    ExecutableCommand,
};
use ratatui::{backend::CrosstermBackend, Terminal};

/// Whether the terminal is currently in raw mode/alternate screen because of us; the panic
/// hook and `Drop` both restore, whichever comes first, and only once.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Leaves raw mode and the alternate screen, shows the cursor. Idempotent.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let mut out = io::stdout();
        // Best effort: there is nothing useful to do if the terminal is gone.
        let _ = out.execute(LeaveAlternateScreen);
        let _ = out.execute(cursor::Show);
        let _ = terminal::disable_raw_mode();
        let _ = out.flush();
    }
}

/// Installs (once per process) a panic hook that restores the terminal before the previous
/// hook prints the panic, so the message is readable and the shell usable.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Owns the terminal while the UI runs; dropping it restores the terminal.
pub struct TerminalGuard {
    /// The ratatui terminal drawing to stdout.
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    /// Enters raw mode and the alternate screen.
    pub fn enter() -> Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode()
            .context("the terminal UI needs a terminal (raw mode failed)")?;
        ACTIVE.store(true, Ordering::SeqCst);
        // From here on any error restores through Drop of the partially built guard.
        let mut out = io::stdout();
        if let Err(e) = out
            .execute(EnterAlternateScreen)
            .and_then(|o| o.execute(cursor::Hide))
        {
            restore();
            return Err(e).context("entering the alternate screen");
        }
        match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore();
                Err(e).context("setting up the terminal")
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// What the input thread reports.
#[derive(Debug)]
pub enum Input {
    /// A key press.
    Key(event::KeyEvent),
    /// The terminal was resized.
    Resize,
    /// Reading the terminal failed; the UI should end.
    Failed(String),
}

/// Reads terminal input on its own thread (crossterm's reader blocks) and forwards it to the
/// async loop. Polls with a timeout so it can be stopped: otherwise it would stay blocked in
/// read() after the UI ended and swallow the next keystrokes meant for the shell.
pub struct InputThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl InputThread {
    /// Starts the thread; messages go to `tx`.
    pub fn spawn(tx: tokio::sync::mpsc::UnboundedSender<Input>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("tui-input".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match event::poll(Duration::from_millis(50)) {
                        Ok(false) => continue,
                        Ok(true) => {}
                        Err(e) => {
                            let _ = tx.send(Input::Failed(e.to_string()));
                            return;
                        }
                    }
                    let msg = match event::read() {
                        // Only presses: on terminals that report releases a key would act twice.
                        Ok(event::Event::Key(k)) if k.kind != event::KeyEventKind::Release => {
                            Input::Key(k)
                        }
                        Ok(event::Event::Resize(..)) => Input::Resize,
                        Ok(_) => continue,
                        Err(e) => Input::Failed(e.to_string()),
                    };
                    let failed = matches!(msg, Input::Failed(_));
                    if tx.send(msg).is_err() || failed {
                        return;
                    }
                }
            })
            .context("starting the terminal input thread")?;
        Ok(InputThread {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for InputThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Join only if the thread ends promptly: on a hung-up terminal crossterm's read()
        // can spin without returning (seen after the tmux server died), and joining then
        // kept the process alive after SIGTERM. A detached thread ends with the process.
        if let Some(h) = self.handle.take() {
            for _ in 0..20 {
                if h.is_finished() {
                    let _ = h.join();
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
