//! Workload drivers for the benchmark, run in this process so timing has no fork/exec noise.
//!
//! - [`Blkio`]: GFP_NOIO percpu allocations. Writing a throttle rule for a real disk into
//!   a fresh cgroup makes blk-cgroup create the blkg with `blkg_alloc(GFP_NOIO)`, several
//!   percpu allocations per write. The cgroups are made before the timed pass and removed
//!   after it, so the timed pass is (almost) purely constrained allocations.
//! - [`percpu_arrays`]: unconstrained, percpu-heavy: `BPF_MAP_TYPE_PERCPU_ARRAY` maps, one
//!   GFP_KERNEL percpu allocation per entry.
//! - [`netns`]: unconstrained, percpu-heavy: `unshare(CLONE_NEWNET)` (SNMP counters,
//!   loopback stats and more are percpu).
use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// cgroup v1 blkio hierarchy on this host; v2 kernels use io.max instead.
const BLKIO_V1: &str = "/sys/fs/cgroup/blkio";
const CGROUP_V2: &str = "/sys/fs/cgroup";

/// Cgroups for the GFP_NOIO workload, created and removed around the timed pass.
pub struct Blkio {
    dirs: Vec<PathBuf>,
    /// The file written in each cgroup (v1 read_bps_device or v2 io.max).
    file: &'static str,
    /// The line written (the device's MAJ:MIN and a limit).
    rule: String,
    /// The line that removes the rule again.
    unrule: String,
}

impl Blkio {
    /// Makes `n` empty cgroups under a `tag`-named parent. `dev` is `/sys/block/X/dev`.
    pub fn prepare(tag: &str, n: usize, dev: &str) -> Result<Blkio> {
        let majmin = fs::read_to_string(format!("/sys/block/{dev}/dev"))
            .with_context(|| format!("reading /sys/block/{dev}/dev"))?
            .trim()
            .to_string();
        let (base, file, rule, unrule) = if fs::metadata(BLKIO_V1).is_ok() {
            (
                PathBuf::from(BLKIO_V1),
                "blkio.throttle.read_bps_device",
                format!("{majmin} 1000000"),
                format!("{majmin} 0"),
            )
        } else {
            (
                PathBuf::from(CGROUP_V2),
                "io.max",
                format!("{majmin} rbps=1000000"),
                format!("{majmin} rbps=max"),
            )
        };
        let parent = base.join(format!("pt-bench-{tag}"));
        // A parent left over by an interrupted run: its children first.
        remove_tree(&parent);
        fs::create_dir(&parent).with_context(|| format!("mkdir {}", parent.display()))?;
        if file == "io.max" {
            // v2: the io controller must be enabled for the children.
            let _ = fs::write(base.join("cgroup.subtree_control"), "+io");
            fs::write(parent.join("cgroup.subtree_control"), "+io")
                .context("enabling +io in the bench cgroup")?;
        }
        let mut dirs = Vec::with_capacity(n);
        for i in 0..n {
            let d = parent.join(format!("c{i}"));
            fs::create_dir(&d).with_context(|| format!("mkdir {}", d.display()))?;
            dirs.push(d);
        }
        Ok(Blkio {
            dirs,
            file,
            rule,
            unrule,
        })
    }

    /// The timed pass: one rule write per cgroup. Returns its wall time.
    pub fn run(&self) -> Result<Duration> {
        let t = Instant::now();
        for d in &self.dirs {
            let p = d.join(self.file);
            fs::write(&p, &self.rule).with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(t.elapsed())
    }

    /// Writes the rule into cgroup `i` (for rate-driven runs); false when all are used.
    pub fn write_one(&self, i: usize) -> Result<bool> {
        let Some(d) = self.dirs.get(i) else {
            return Ok(false);
        };
        fs::write(d.join(self.file), &self.rule)?;
        Ok(true)
    }

    /// Number of cgroups.
    pub fn len(&self) -> usize {
        self.dirs.len()
    }
}

impl Drop for Blkio {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = fs::write(d.join(self.file), &self.unrule);
            let _ = fs::remove_dir(d);
        }
        if let Some(p) = self.dirs.first().and_then(|d| d.parent()) {
            let _ = fs::remove_dir(p);
        }
    }
}

fn remove_tree(p: &std::path::Path) {
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(p);
}

/// Creates and closes `maps` percpu array maps of `entries` x `value_size` bytes.
pub fn percpu_arrays(maps: usize, entries: u32, value_size: u32) -> Result<Duration> {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
    let t = Instant::now();
    for _ in 0..maps {
        // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries,
        // then fields left zero. 120 bytes covers every field this kernel knows.
        let mut attr = [0u32; 30];
        attr[0] = BPF_MAP_TYPE_PERCPU_ARRAY;
        attr[1] = 4;
        attr[2] = value_size;
        attr[3] = entries;
        // SAFETY: attr is a valid, initialized buffer of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_CREATE,
                attr.as_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if fd < 0 {
            bail!(
                "BPF_MAP_CREATE (percpu array): {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: fd was just returned by the kernel and is owned here.
        unsafe { libc::close(fd as i32) };
    }
    Ok(t.elapsed())
}

/// `n` network namespaces, each replacing the previous one, in a thread of its own so the
/// rest of the process keeps its namespace. The old namespaces are torn down by the
/// kernel's cleanup worker, partly after the timed loop.
pub fn netns(n: usize) -> Result<Duration> {
    std::thread::spawn(move || -> Result<Duration> {
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: unshare has no memory arguments; it changes this thread's namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                bail!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
            }
        }
        Ok(t.elapsed())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}

/// `n` threads, each started and joined before the next: `n` task exits, so the
/// process-exit programs' cost is measured over many runs (a few dozen exits of the other
/// workloads hit cold caches on every one).
pub fn exits(n: usize) -> Result<Duration> {
    let t = Instant::now();
    for _ in 0..n {
        std::thread::spawn(|| ())
            .join()
            .map_err(|_| anyhow::anyhow!("exit thread panicked"))?;
    }
    Ok(t.elapsed())
}
