//! `jitter`: a high-priority task that maps or unmaps a few random anonymous pages every
//! few milliseconds.
//!
//! Beside `recursion`'s SCHED_FIFO writer on a one-CPU guest it preempts the writer at
//! random points and moves the free-page count up and down by up to 64 pages: without it the
//! writer's reclaims fell at the same points of the pass every boot, so a boot hit
//! (6-9 recursions) or missed (0) as a whole; with it every boot of the recipe hit
//! (issue 25). busybox has no `chrt`, so it is a workload subcommand.
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::sys;

/// Page size of the guests (x86_64 and arm64 Debian kernels: 4 KiB).
const PAGE: usize = 4096;
/// Pages held at most, so the task's memory stays bounded (16 MiB).
const MAX_HELD: usize = 4096;

/// One anonymous mapping held by the task.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

/// xorshift64*: a few random numbers a tick, no crate needed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Runs for `secs` at SCHED_FIFO `prio`: every `period_ms`, maps (and touches) or unmaps
/// 1..=`max_pages` anonymous pages, chosen at random.
pub fn run(prio: i32, period_ms: u64, max_pages: usize, secs: u64) -> Result<()> {
    if max_pages == 0 {
        bail!("jitter: --max-pages must be at least 1");
    }
    sys::set_comm("pt-jitter");
    sys::set_fifo(prio)?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seed = u64::from(std::process::id()) << 32 | 0x9e37_79b9;
    let mut held: Vec<Mapping> = Vec::new();
    let mut held_pages = 0usize;
    let (mut maps, mut unmaps) = (0u64, 0u64);
    while sys::remaining(deadline).is_some() {
        std::thread::sleep(Duration::from_millis(period_ms));
        let r = next(&mut seed);
        let unmap = !held.is_empty() && (r & 1 == 1 || held_pages >= MAX_HELD);
        if unmap {
            let m = held.swap_remove((r >> 8) as usize % held.len());
            held_pages -= m.len / PAGE;
            // SAFETY: the mapping was made by mmap below with this length and is not used
            // after this.
            unsafe { libc::munmap(m.addr, m.len) };
            unmaps += 1;
            continue;
        }
        let pages = 1 + (r >> 8) as usize % max_pages;
        let len = pages * PAGE;
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            // Under the pressure this task exists to vary, a refusal is part of the game.
            continue;
        }
        for p in 0..pages {
            // SAFETY: inside the mapping just made (pages * PAGE bytes, writable): one
            // write per page makes the kernel allocate it.
            unsafe { (addr as *mut u8).add(p * PAGE).write_volatile(1) };
        }
        held.push(Mapping { addr, len });
        held_pages += pages;
        maps += 1;
    }
    println!("jitter: {maps} maps, {unmaps} unmaps, {held_pages} pages held at the end");
    Ok(())
}
