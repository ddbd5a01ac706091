//! `recursion`: a gfp-constrained mutex holder that enters reclaim allowing FS/IO.
//!
//! The io.max writer of `noio-gfp` calls pcpu_alloc with GFP_NOIO as an *argument* (no
//! scope), so on a kernel without the fix the allocations pcpu_alloc makes for it under
//! pcpu_alloc_mutex when it creates or maps a chunk (kernel page tables, GFP_PGTABLE_KERNEL;
//! pcpu_get_vm_areas' metadata, GFP_KERNEL) may reclaim with FS and IO allowed while the
//! NOIO caller holds the mutex: the `recursion` condition. (An IO_FLUSHER task never can:
//! its scope makes the nested allocations NOIO as well.)
//!
//! The recipe (issue 25; each knob was needed, why is in xtask/src/vm/README.md,
//! "recursion"): one online CPU of many possible (the shell offlines them: chunks of 32
//! units need 4 page-table pages each); many blkgs per write (`chains` x `depth` cgroups,
//! every disk); throttling activated on every disk before the pass, so the writer never
//! sleeps in blk_throtl_init; free memory brought down by a tmpfs balloon and the rest filled
//! with single-page page cache; MGLRU off and tight watermarks, so the writer itself reclaims
//! often and a little each time; the writer at SCHED_FIFO with CPU 0's fair server off (it
//! shuts out kswapd and the percpu balance worker); and [`crate::jitter`] at a higher
//! priority, which moves where in the pass the reclaims fall.
use std::{
    fs,
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{cgroup, page_cache, sys};

/// Knobs of one run.
pub struct Args {
    /// Large file on a real filesystem (page cache to fill).
    pub file: PathBuf,
    /// File on a tmpfs that holds the balloon (unreclaimable without swap).
    pub balloon: PathBuf,
    /// MemFree (MiB) the balloon leaves before the page cache is filled.
    pub free_mib: u64,
    /// Chains per pass.
    pub chains: usize,
    /// Cgroups per chain.
    pub depth: usize,
    /// Disks ("MAJ:MIN").
    pub devs: Vec<String>,
    /// SCHED_FIFO priority of the writer.
    pub prio: i32,
    /// SCHED_FIFO priority of the jitter task (0: no jitter task).
    pub jitter_prio: i32,
    /// Chain name prefix (unique per run).
    pub prefix: String,
    /// Passes at most (a fresh set of cgroups each); no further pass after one with a
    /// raw hit.
    pub passes: usize,
    /// The recorder's output: between passes, wait until it stops growing.
    pub settle: Option<PathBuf>,
    /// cgroup v2 mount point.
    pub root: String,
}

/// VM knobs of the recipe: (path, value). MGLRU off: each reclaim then frees 32-46 pages
/// instead of whole generations; a small min_free_kbytes with watermark_scale_factor 1
/// keeps min, low and high close, and no watermark boost.
const VM_KNOBS: &[(&str, &str)] = &[
    ("/sys/kernel/mm/lru_gen/enabled", "0"),
    ("/proc/sys/vm/min_free_kbytes", "4096"),
    ("/proc/sys/vm/watermark_scale_factor", "1"),
    ("/proc/sys/vm/watermark_boost_factor", "0"),
    ("/proc/sys/kernel/sched_rt_runtime_us", "-1"),
];

/// Runs the recipe; returns (writes, blkgs).
pub fn run(a: &Args) -> Result<(usize, usize)> {
    let n = sys::ncpus();
    if n != 1 {
        bail!("recursion wants exactly one online CPU (offline the others first), have {n}");
    }
    let mut saved = Vec::new();
    for (p, v) in VM_KNOBS {
        match sys::write_knob(p, v) {
            Ok(old) => saved.push((p.to_string(), old)),
            // MGLRU is a config option; the others exist on every kernel of the matrix.
            Err(e) if p.contains("lru_gen") => eprintln!("recursion: {e:#}"),
            Err(e) => {
                sys::restore_knobs(&saved);
                return Err(e);
            }
        }
    }
    let result = prepared(a);
    let _ = fs::remove_file(&a.balloon);
    sys::restore_knobs(&saved);
    result
}

fn prepared(a: &Args) -> Result<(usize, usize)> {
    // Built first, at normal priority: mkdir's own percpu allocations are GFP_KERNEL and
    // must not be what creates the chunks during the pass.
    let passes = a.passes.max(1);
    let sets = (0..passes)
        .map(|i| cgroup::build_chains(&a.root, &format!("{}p{i}-", a.prefix), a.chains, a.depth))
        .collect::<Result<Vec<_>>>()?;
    // Throttling on every disk now (blk_throtl_init freezes the queue and waits for RCU:
    // a sleep in which kswapd would refill the free pages), from a one-level cgroup.
    let prime = cgroup::build_chains(&a.root, &format!("{}prime-", a.prefix), 1, 1)?;
    cgroup::write_io_max(&prime, &a.devs)?;
    let free = balloon(&a.balloon, a.free_mib)?;
    eprintln!("recursion: balloon leaves MemFree {free} MiB");
    let filled = page_cache::churn_with(&a.file, 0, true)?;
    eprintln!(
        "recursion: page cache filled with {} MiB (single pages); MemFree {} MiB",
        filled >> 20,
        mem_free_mib()?
    );
    let mut jitter = None;
    if a.jitter_prio > 0 {
        let args: Vec<String> = [
            "jitter",
            "--prio",
            &a.jitter_prio.to_string(),
            "--secs",
            "3600",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        jitter = Some(sys::spawn(&args)?);
    }
    let result = passes_until_hit(a, &sets);
    if let Some(mut c) = jitter {
        // SIGTERM would do as well; the jitter task holds nothing worth a clean exit.
        let _ = c.kill();
        let _ = c.wait();
    }
    result
}

/// One pass per cgroup set until `truth` (when armed) counts a raw hit. A pass hits with
/// probability about one half on 7.2.13 (README.md, "recursion": one page-table page for
/// every 512 backing pages, and a page-table allocation reclaims only when it falls on
/// the watermark), so a second pass in the same boot is far cheaper than a second boot.
/// Every pass creates new blkgs and so new chunks: deleting the previous pass's cgroups
/// would free chunks whose address range (and page tables) the next pass would reuse.
fn passes_until_hit(a: &Args, sets: &[Vec<PathBuf>]) -> Result<(usize, usize)> {
    let (mut writes, mut blkgs) = (0, 0);
    for (i, leaves) in sets.iter().enumerate() {
        let (w, b) = writer(a, leaves)?;
        writes += w;
        blkgs += b;
        let hits = match crate::truth::recursion_hits_so_far() {
            Ok(n) => Some(n),
            Err(e) => {
                eprintln!("recursion: no ground truth to stop on: {e:#}");
                None
            }
        };
        eprintln!(
            "recursion: pass {}: raw hits so far {}; MemFree {} MiB, Cached {} MiB",
            i + 1,
            hits.map_or("unknown".into(), |n| n.to_string()),
            meminfo_mib("MemFree")?,
            meminfo_mib("Cached")?
        );
        if hits.unwrap_or(0) > 0 || i + 1 == sets.len() {
            break;
        }
        if let Some(f) = &a.settle {
            settle(f);
        }
    }
    Ok((writes, blkgs))
}

/// Waits until `file` has grown by less than 64 KiB in 2 s (at most 120 s): the recorder
/// has drained what the pass left in its ring, which the next pass would otherwise
/// overflow. (It never stops growing: its once-a-second drop and activity records.)
fn settle(file: &PathBuf) {
    let t = Instant::now();
    let size = || fs::metadata(file).map_or(0, |m| m.len());
    let mut last = size();
    while t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_secs(2));
        let now = size();
        if now.saturating_sub(last) < 64 << 10 {
            last = now;
            break;
        }
        last = now;
    }
    eprintln!(
        "recursion: {} settled at {} bytes after {:?}",
        file.display(),
        last,
        t.elapsed()
    );
}

/// MemFree from /proc/meminfo, MiB.
fn mem_free_mib() -> Result<u64> {
    meminfo_mib("MemFree")
}

/// A /proc/meminfo field, MiB.
fn meminfo_mib(key: &str) -> Result<u64> {
    let text = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb >> 10)
        .with_context(|| format!("no {key} in /proc/meminfo"))
}

/// Writes `path` (on a tmpfs) until MemFree is at most `free_mib`; returns MemFree then.
fn balloon(path: &PathBuf, free_mib: u64) -> Result<u64> {
    let mut f = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let chunk = vec![0x5au8; 1 << 20];
    loop {
        let free = mem_free_mib()?;
        if free <= free_mib {
            return Ok(free);
        }
        // Big steps while far off, then 1 MiB at a time.
        let steps = ((free - free_mib) / 2).max(1);
        for _ in 0..steps {
            f.write_all(&chunk)
                .with_context(|| format!("writing the balloon {}", path.display()))?;
        }
    }
}

/// The io.max pass at SCHED_FIFO with CPU 0's fair server off.
fn writer(a: &Args, leaves: &[PathBuf]) -> Result<(usize, usize)> {
    let fair = sys::fair_server_off_on(Some(0));
    sys::set_fifo(a.prio)?;
    let t = Instant::now();
    let res = cgroup::write_io_max(leaves, &a.devs);
    let took = t.elapsed();
    sys::set_fifo(0)?;
    sys::restore_knobs(&fair);
    let writes = res?;
    // Let kswapd and the balance worker catch up before the tool is stopped.
    std::thread::sleep(Duration::from_millis(500));
    eprintln!(
        "recursion: {writes} io.max writes ({} blkgs) in {took:?}",
        writes * a.depth
    );
    Ok((writes, writes * a.depth))
}
