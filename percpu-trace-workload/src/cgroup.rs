//! `noio-gfp`: GFP_NOIO percpu allocations made *by the caller's gfp argument* (no scope).
//!
//! Writing `MAJ:MIN rbps=...` to a cgroup's io.max goes through blkg_conf_prep(), which
//! creates the missing blkgs of the cgroup and all its ancestors with blkg_alloc(GFP_NOIO)
//! (since 6.18, backported to 6.12.117): four percpu allocations per blkg. On the leaf of a
//! chain `depth` deep that is `4 * depth` GFP_NOIO allocations in one system call, fast
//! enough to use up the populated part of the percpu chunks before the balance worker
//! (which refills it) gets to run; at SCHED_FIFO with RT throttling off the worker cannot
//! run at all on this CPU until the writer sleeps (with the fair deadline server of 6.12+
//! switched off too, see below). So the writer itself populates chunks
//! (and now and then creates one) while it holds pcpu_alloc_mutex.
use std::{fs, path::PathBuf, time::Instant};

use anyhow::{Context, Result};

use crate::sys;

/// What one run did.
pub struct Outcome {
    /// io.max writes that succeeded.
    pub writes: usize,
    /// blkgs that should have been created (depth per chain, plus the leaf's own).
    pub blkgs: usize,
}

/// Builds `chains` chains of `depth` cgroups under `root/<prefix>N`, then writes io.max on
/// each leaf for each disk of `devs` ("MAJ:MIN") at SCHED_FIFO `prio` (0: normal priority).
pub fn noio_gfp(
    root: &str,
    prefix: &str,
    chains: usize,
    depth: usize,
    devs: &[String],
    prio: i32,
) -> Result<Outcome> {
    let leaves = build_chains(root, prefix, chains, depth)?;

    // Creating the cgroups first keeps the io.max pass purely GFP_NOIO percpu allocations.
    let old_rt = sys::write_knob("/proc/sys/kernel/sched_rt_runtime_us", "-1")?;
    // Since 6.12 the fair deadline server still gives normal tasks 50 ms a second under RT
    // load (RT throttling off or not): switch it off for the pass, or the balance worker
    // keeps preempting the writer (seen: the writer preempted ~200 times per pass at
    // pcpu_alloc's unlock points, and the worker created the chunks).
    let fair = sys::fair_server_off();
    if prio > 0 {
        sys::set_fifo(prio)?;
    }
    let t = Instant::now();
    let writes = write_io_max(&leaves, devs)?;
    let took = t.elapsed();
    sys::set_fifo(0)?;
    sys::restore_knobs(&fair);
    sys::write_knob("/proc/sys/kernel/sched_rt_runtime_us", &old_rt)?;
    eprintln!(
        "noio-gfp: {writes} io.max writes ({} blkgs) in {took:?}",
        writes * depth
    );
    Ok(Outcome {
        writes,
        blkgs: writes * depth,
    })
}

/// Builds `chains` chains of `depth` cgroups under `root/<prefix>N` (io enabled all the way
/// down); returns the leaves.
pub fn build_chains(root: &str, prefix: &str, chains: usize, depth: usize) -> Result<Vec<PathBuf>> {
    enable_io(&PathBuf::from(root))?;
    let t = Instant::now();
    let mut leaves = Vec::new();
    for c in 0..chains {
        let mut p = PathBuf::from(root).join(format!("{prefix}{c}"));
        mkdir(&p)?;
        for _ in 1..depth {
            enable_io(&p)?;
            p.push("c");
            mkdir(&p)?;
        }
        leaves.push(p);
    }
    eprintln!(
        "noio-gfp: {chains} chains of {depth} cgroups built in {:?}",
        t.elapsed()
    );
    Ok(leaves)
}

/// One io.max pass: writes `MAJ:MIN rbps=...` on each leaf for each disk of `devs`, each
/// write creating the blkgs of the whole chain with GFP_NOIO. Returns the writes made.
pub fn write_io_max(leaves: &[PathBuf], devs: &[String]) -> Result<usize> {
    let mut writes = 0;
    for leaf in leaves {
        let f = leaf.join("io.max");
        for dev in devs {
            let line = format!("{dev} rbps=1000000");
            fs::write(&f, &line).with_context(|| format!("writing {line:?} to {}", f.display()))?;
            writes += 1;
        }
    }
    Ok(writes)
}

fn mkdir(p: &PathBuf) -> Result<()> {
    match fs::create_dir(p) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(e).with_context(|| format!("mkdir {}", p.display()))
        }
        _ => Ok(()),
    }
}

fn enable_io(p: &std::path::Path) -> Result<()> {
    let f = p.join("cgroup.subtree_control");
    fs::write(&f, "+io").with_context(|| format!("writing +io to {}", f.display()))
}

/// "MAJ:MIN" of a block device by name (e.g. "vda").
pub fn disk_dev(name: &str) -> Result<String> {
    let p = format!("/sys/block/{name}/dev");
    Ok(fs::read_to_string(&p)
        .with_context(|| format!("reading {p}"))?
        .trim()
        .to_string())
}

/// Every virtio and null_blk disk (names under /sys/block), sorted.
pub fn all_disks() -> Result<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir("/sys/block")
        .context("reading /sys/block")?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.starts_with("vd") || n.starts_with("nullb"))
        .collect();
    v.sort();
    Ok(v)
}
