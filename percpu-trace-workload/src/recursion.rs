//! `recursion`: a gfp-constrained mutex holder that enters reclaim allowing FS/IO.
//!
//! The io.max writer of `noio-gfp` calls pcpu_alloc with GFP_NOIO as an *argument* (no
//! scope), so on a kernel without the fix the allocations pcpu_alloc makes for it under
//! pcpu_alloc_mutex when it creates a chunk (pcpu_get_vm_areas' metadata, kernel page
//! tables) are GFP_KERNEL. Under memory pressure one of them reclaims directly, with FS and
//! IO allowed, while the NOIO caller holds the mutex: the `recursion` condition. (An
//! IO_FLUSHER task never can: its scope makes the nested allocations NOIO as well.)
//!
//! The pressure (what was tried is in xtask/src/vm/README.md, "recursion"): the page cache
//! filled with single pages, then, with the writer at SCHED_FIFO on CPU 0 (RT throttling
//! and CPU 0's fair server off), kswapd and the unbound workqueues (the percpu balance
//! work) pinned to CPU 0 so neither runs while the writer does, and the min watermark set
//! just under the free pages: the writer reclaims for itself. Optional churn readers on
//! CPU 1. No recursion has been seen yet: the writer's GFP_KERNEL allocations under the
//! mutex are a few dozen a run and none of them has reclaimed.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{cgroup, page_cache, sys};

/// CPUs that unbound workqueues may run on (hex mask).
const WQ_CPUMASK: &str = "/sys/devices/virtual/workqueue/cpumask";

/// Knobs of one run.
pub struct Args {
    /// Large file on a real filesystem (page cache to fill and churn).
    pub file: PathBuf,
    /// vm.min_free_kbytes while the writer runs.
    pub min_free_kbytes: u64,
    /// io.max passes (each on its own fresh chains).
    pub passes: usize,
    /// Chains per pass.
    pub chains: usize,
    /// Cgroups per chain.
    pub depth: usize,
    /// Disks ("MAJ:MIN").
    pub devs: Vec<String>,
    /// SCHED_FIFO priority of the writer.
    pub prio: i32,
    /// Chain name prefix (unique per run).
    pub prefix: String,
    /// cgroup v2 mount point.
    pub root: String,
    /// Milliseconds between starting the readers and the first pass.
    pub settle_ms: u64,
    /// Churn readers on CPU 1 during the passes (0: the writer alone reclaims).
    pub readers: usize,
    /// Set the min watermark this many pages under the free pages once the writer runs
    /// (0: keep `min_free_kbytes`).
    pub margin_pages: u64,
    /// Fill the page cache with single pages (POSIX_FADV_RANDOM), not large folios.
    pub small_pages: bool,
}

/// Runs the passes under pressure; returns (writes, blkgs).
pub fn run(a: &Args) -> Result<(usize, usize)> {
    let n = sys::ncpus();
    if n < 2 {
        bail!("recursion needs 2 CPUs (the writer's, with kswapd, and the rest), have {n}");
    }
    // Built first, at normal priority and without pressure: mkdir's own percpu allocations
    // are GFP_KERNEL and must not be what creates the chunks during the passes.
    let mut passes = Vec::new();
    for p in 0..a.passes {
        passes.push(cgroup::build_chains(
            &a.root,
            &format!("{}{p}-", a.prefix),
            a.chains,
            a.depth,
        )?);
    }
    let filled = page_cache::churn_with(&a.file, 0, a.small_pages)?;
    eprintln!("recursion: page cache filled with {} MiB", filled >> 20);

    let old_rt = sys::write_knob("/proc/sys/kernel/sched_rt_runtime_us", "-1")?;
    let old_min = sys::write_knob(
        "/proc/sys/vm/min_free_kbytes",
        &a.min_free_kbytes.to_string(),
    )?;
    let kswapd = sys::find_task("kswapd0").context("no kswapd0 task")?;
    // kswapd on the writer's CPU: it cannot run while the writer does (fair server off
    // there), so the writer reclaims for itself, and whenever the writer sleeps (throttled
    // in reclaim, waiting for kswapd) kswapd can run and nothing hangs.
    sys::pin(kswapd, 0)?;
    // Unbound workqueues (the percpu balance work is queued on one) onto CPU 0 too: on the
    // other CPUs the balance worker took the mutex from the writer ~46,000 times a run,
    // and each of those sleeps let kswapd refill the free pages (ground truth, 7.2.13).
    let old_wq = sys::write_knob(WQ_CPUMASK, "1")
        .map_err(|e| eprintln!("recursion: {e:#}"))
        .ok();
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let mut children = Vec::new();
    for _ in 0..a.readers {
        children.push(sys::spawn(&strs(&[
            "churn",
            "--file",
            &a.file.to_string_lossy(),
            "--secs",
            "3600",
            "--cpu",
            "1",
        ]))?);
    }
    std::thread::sleep(Duration::from_millis(a.settle_ms));

    let result = writer(a, &passes);
    for c in &mut children {
        let _ = c.kill();
    }
    for mut c in children {
        let _ = c.wait();
    }
    sys::write_knob("/proc/sys/vm/min_free_kbytes", &old_min)?;
    sys::write_knob("/proc/sys/kernel/sched_rt_runtime_us", &old_rt)?;
    let _ = sys::pin_any(kswapd);
    if let Some(v) = old_wq {
        sys::write_knob(WQ_CPUMASK, &v)?;
    }
    result
}

/// min_free_kbytes that puts the largest zone's min watermark `margin` pages under its free
/// pages now (the watermarks split min_free_kbytes by managed pages), from /proc/zoneinfo.
fn min_free_near_free(margin: u64) -> Result<u64> {
    let text = std::fs::read_to_string("/proc/zoneinfo").context("reading /proc/zoneinfo")?;
    // (free, managed) per zone.
    let mut zones: Vec<(u64, u64)> = Vec::new();
    for l in text.lines() {
        let mut it = l.split_whitespace();
        match (it.next(), it.next(), it.next()) {
            (Some("Node"), _, _) => zones.push((0, 0)),
            (Some("pages"), Some("free"), Some(v)) => {
                if let Some(z) = zones.last_mut() {
                    z.0 = v.parse().unwrap_or(0);
                }
            }
            (Some("managed"), Some(v), None) => {
                if let Some(z) = zones.last_mut() {
                    z.1 = v.parse().unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    let total: u64 = zones.iter().map(|z| z.1).sum();
    let (free, managed) = zones
        .iter()
        .copied()
        .max_by_key(|z| z.1)
        .filter(|z| z.1 > 0)
        .context("no zone with managed pages in /proc/zoneinfo")?;
    let zone_min = free.saturating_sub(margin).max(128);
    Ok(zone_min * 4 * total / managed)
}

/// The io.max passes, on CPU 0 at SCHED_FIFO with the fair server off.
fn writer(a: &Args, passes: &[Vec<PathBuf>]) -> Result<(usize, usize)> {
    sys::pin(0, 0)?;
    // Only on the writer's CPU: with the fair server off on the hog's CPU too, kswapd never
    // ran at all and a task throttled in direct reclaim (which waits for kswapd) hung the
    // guest; with it on, kswapd gets 50 ms a second there, as in `contention`.
    let fair = sys::fair_server_off_on(Some(0));
    sys::set_fifo(a.prio)?;
    // Now that kswapd cannot run: the min watermark just under what is free, so the
    // writer's own allocations soon go under it and reclaim directly.
    if a.margin_pages > 0 {
        let min = min_free_near_free(a.margin_pages)?;
        sys::write_knob("/proc/sys/vm/min_free_kbytes", &min.to_string())?;
        eprintln!("recursion: min_free_kbytes {min}");
    }
    let t = Instant::now();
    let mut writes = 0;
    let mut err = None;
    for leaves in passes {
        match cgroup::write_io_max(leaves, &a.devs) {
            Ok(w) => writes += w,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let took = t.elapsed();
    sys::set_fifo(0)?;
    sys::restore_knobs(&fair);
    if let Some(e) = err {
        return Err(e);
    }
    eprintln!(
        "recursion: {writes} io.max writes ({} blkgs) in {took:?}",
        writes * a.depth
    );
    Ok((writes, writes * a.depth))
}
