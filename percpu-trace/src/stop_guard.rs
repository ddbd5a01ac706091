//! The last resort behind `record`'s clean stop: SIGTERM, SIGINT or SIGHUP always end the
//! process, even while it is blocked (a write into a pipe nobody reads, a hung disk), when
//! the clean stop ([`crate::live::record`]'s signal handling: detach, last lines, summary)
//! cannot run.
//!
//! The tokio handlers only set a flag that the event loop reads; a loop stuck in a system
//! call never reads it, and the signal seemed ignored (only SIGKILL ended it). Here a
//! second handler counts the signals: a second one ends the process at once, and a first
//! one does after [`GRACE`] if the clean stop has not finished by then. Exiting is safe:
//! the kernel detaches every probe when the process's descriptors close, and the
//! recording replays up to its last whole line (its report says it ended uncleanly).
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// How long a clean stop may take after the first signal.
pub const GRACE: Duration = Duration::from_secs(10);

/// Exit status when the clean stop did not happen.
const EXIT: i32 = 2;

/// Installs the handlers and the watchdog thread (once per process).
pub fn install() -> std::io::Result<()> {
    let count = Arc::new(AtomicUsize::new(0));
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let c = count.clone();
        // SAFETY: the action only touches an atomic and calls _exit, both
        // async-signal-safe.
        unsafe {
            signal_hook_registry::register(sig, move || {
                if c.fetch_add(1, Ordering::SeqCst) >= 1 {
                    libc::_exit(EXIT);
                }
            })
        }?;
    }
    std::thread::Builder::new()
        .name("stop-guard".into())
        .spawn(move || {
            let mut since: Option<Instant> = None;
            loop {
                std::thread::sleep(Duration::from_millis(100));
                if count.load(Ordering::SeqCst) == 0 {
                    continue;
                }
                let t = *since.get_or_insert_with(Instant::now);
                if t.elapsed() >= GRACE {
                    say(&format!(
                        "percpu-trace: still not stopped {}s after the signal (blocked \
                         writing the output?): exiting now, the recording ends uncleanly\n",
                        GRACE.as_secs()
                    ));
                    // SAFETY: ends the process; nothing to clean up that the kernel does not.
                    unsafe { libc::_exit(EXIT) };
                }
            }
        })?;
    Ok(())
}

/// Writes to stderr only if that cannot block (stderr may be the stuck pipe).
fn say(text: &str) {
    let mut p = libc::pollfd {
        fd: 2,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a zero timeout never blocks.
    if unsafe { libc::poll(&mut p, 1, 0) } == 1 && p.revents & libc::POLLOUT != 0 {
        crate::warn!("{text}");
    }
}
