//! Guest workloads for the percpu-trace qemu tests: each subcommand drives one kernel path
//! that the tool must see (see xtask/src/vm/README.md for why each one works).
//!
//! Built statically (`-C target-feature=+crt-static`) so it runs in a busybox initramfs
//! without a libc; it needs root in the guest.
mod bpf;
mod cgroup;
mod floor;
mod jitter;
mod page_cache;
mod recursion;
mod sys;
mod truth;

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pt-workload", about = "percpu-trace guest workloads")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The bench's floor: an empty BPF program on each hook of the tool's hot programs in
    /// this attach mode, named like them; held until signalled.
    Floor {
        /// kprobe, fentry or tracepoint.
        #[arg(long)]
        attach: String,
    },
    /// Create and close BPF percpu arrays in rounds (one percpu allocation per entry).
    PercpuArrays(ArraysArgs),
    /// GFP_NOIO percpu allocations by gfp argument: io.max on the leaves of deep cgroup chains.
    NoioGfp {
        /// Disks whose blkgs io.max creates (names under /sys/block, comma-separated): each
        /// disk is one more io.max write per leaf, each creating `depth` blkgs. "all": every
        /// virtio and null_blk disk.
        #[arg(long, default_value = "vda", value_delimiter = ',')]
        disks: Vec<String>,
        /// Number of chains (one io.max write each).
        #[arg(long, default_value_t = 6)]
        chains: usize,
        /// Cgroups per chain (blkgs created by one write).
        #[arg(long, default_value_t = 400)]
        depth: usize,
        /// SCHED_FIFO priority of the writer; 0 keeps SCHED_OTHER.
        #[arg(long, default_value_t = 50)]
        prio: i32,
        /// Name prefix of the chains (unique per run: blkgs exist once per cgroup and disk).
        #[arg(long, default_value = "pt")]
        prefix: String,
        /// cgroup v2 mount point.
        #[arg(long, default_value = "/sys/fs/cgroup")]
        root: String,
    },
    /// Read a file over and over so reclaim has page cache to take.
    Churn {
        /// File to read.
        #[arg(long)]
        file: PathBuf,
        /// Seconds to keep reading; 0 reads it once.
        #[arg(long, default_value_t = 0)]
        secs: u64,
        /// Pin to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Busy loop at SCHED_FIFO on one CPU.
    Hog {
        /// CPU to occupy.
        #[arg(long)]
        cpu: usize,
        /// Seconds.
        #[arg(long)]
        secs: u64,
        /// SCHED_FIFO priority.
        #[arg(long, default_value_t = 1)]
        prio: i32,
    },
    /// Cross-task contention: kswapd starved, constrained and unconstrained creators, churn.
    Contention {
        /// Seconds of load.
        #[arg(long, default_value_t = 40)]
        secs: u64,
        /// Large file on a real filesystem for page-cache churn.
        #[arg(long)]
        file: PathBuf,
        /// vm.min_free_kbytes during the run.
        #[arg(long, default_value_t = 20000)]
        min_free_kbytes: u64,
        /// Maps per creator round.
        #[arg(long, default_value_t = 8)]
        maps: usize,
        /// Start the creators first, write DIR/<label>.pid for each (unc-a, io-flusher,
        /// unc-b), and begin the load only once DIR/go exists: the tool can then be started
        /// with `--pid` of one of them before anything happens.
        #[arg(long)]
        gate: Option<PathBuf>,
    },
    /// A NOIO-gfp mutex holder reclaiming with FS/IO allowed: noio-gfp's io.max writer on
    /// the only online CPU under its own memory pressure (the issue-25 recipe).
    Recursion {
        /// Large file on a real filesystem (page cache to fill with single pages).
        #[arg(long)]
        file: PathBuf,
        /// Balloon file on a tmpfs.
        #[arg(long, default_value = "/balloon/fill")]
        balloon: PathBuf,
        /// MemFree (MiB) the balloon leaves before the page cache is filled.
        #[arg(long, default_value_t = 1060)]
        free_mib: u64,
        /// Chains.
        #[arg(long, default_value_t = 4)]
        chains: usize,
        /// Cgroups per chain.
        #[arg(long, default_value_t = 400)]
        depth: usize,
        /// Disks (as for noio-gfp).
        #[arg(long, default_value = "all", value_delimiter = ',')]
        disks: Vec<String>,
        /// SCHED_FIFO priority of the writer.
        #[arg(long, default_value_t = 50)]
        prio: i32,
        /// SCHED_FIFO priority of the jitter task (0: none).
        #[arg(long, default_value_t = 90)]
        jitter_prio: i32,
        /// Chain name prefix (unique per run).
        #[arg(long, default_value = "r")]
        prefix: String,
        /// Passes at most: each writes io.max in a fresh set of cgroups (new blkgs, new
        /// chunks); after a pass with a raw hit (`truth` armed) no further pass runs.
        #[arg(long, default_value_t = 1)]
        passes: usize,
        /// Between passes, wait until this file (the recorder's output) stops growing for
        /// 2 s (at most 120 s), so the reader has drained the pass before the next one.
        #[arg(long)]
        settle: Option<PathBuf>,
    },
    /// Map or unmap 1..=max-pages random anonymous pages every period at SCHED_FIFO.
    Jitter {
        /// SCHED_FIFO priority.
        #[arg(long, default_value_t = 90)]
        prio: i32,
        /// Milliseconds between steps.
        #[arg(long, default_value_t = 2)]
        period_ms: u64,
        /// Most pages mapped or unmapped in one step.
        #[arg(long, default_value_t = 64)]
        max_pages: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
    /// Print the BPF objects and kprobes alive now, one per line (to a file with --out).
    Snapshot {
        /// Output file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Fail unless every BPF object and kprobe alive now was already in the --before snapshot
    /// (waits up to --wait seconds: the kernel frees programs after an RCU grace period).
    Compare {
        /// Snapshot taken before the tool started.
        #[arg(long)]
        before: PathBuf,
        /// Seconds to wait for deferred frees.
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Ground truth from tracefs kprobes (workload calibration, independent of the tool):
    /// `truth start`, then `truth stop --out FILE`.
    Truth {
        /// start or stop.
        action: String,
        /// Summary file (stop).
        #[arg(long, default_value = "/tmp/truth.txt")]
        out: String,
        /// Offset of the owner word in struct mutex (start; from the kernel's BTF: 0, or
        /// 24 on 7.2.13-rt).
        #[arg(long, default_value_t = 0)]
        owner_off: u64,
        /// Trace buffer per online CPU, KiB (start). recursion's passes record about
        /// 12 MB of mutex contention each.
        #[arg(long, default_value_t = 16384)]
        buffer_kb: u64,
    },
    /// Wait until BPF programs beyond the --before snapshot are loaded (the tool attached).
    WaitAttached {
        /// Snapshot taken before the tool started.
        #[arg(long)]
        before: PathBuf,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// At least this many new programs.
        #[arg(long, default_value_t = 1)]
        min: usize,
        /// The tool's pid: give up at once when it exits.
        #[arg(long)]
        pid: Option<u32>,
    },
}

#[derive(clap::Args, Clone)]
struct ArraysArgs {
    /// Enter the IO_FLUSHER (NOIO) scope first.
    #[arg(long)]
    io_flusher: bool,
    /// Maps per round (kept open until the round ends).
    #[arg(long, default_value_t = 20)]
    maps: usize,
    /// Entries per map (one percpu allocation each).
    #[arg(long, default_value_t = 64)]
    entries: u32,
    /// Value size; 32 KiB is the largest percpu allocation (PCPU_MIN_UNIT_SIZE).
    #[arg(long, default_value_t = 32768)]
    value_size: u32,
    /// Rounds; ignored when --secs is given.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Loop rounds for this many seconds instead.
    #[arg(long)]
    secs: Option<u64>,
    /// Pin to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Label for the summary line.
    #[arg(long, default_value = "arrays")]
    label: String,
    /// Write DIR/LABEL.pid, then wait for DIR/run before the first round (see
    /// `contention --gate`).
    #[arg(long)]
    gate: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Cli::parse().cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pt-workload: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Floor { attach } => floor::run(&attach),
        Cmd::PercpuArrays(a) => percpu_arrays(&a),
        Cmd::NoioGfp {
            disks,
            chains,
            depth,
            prio,
            prefix,
            root,
        } => {
            sys::set_comm("pt-noio-gfp");
            let devs = devices(disks)?;
            let o = cgroup::noio_gfp(&root, &prefix, chains, depth, &devs, prio)?;
            println!(
                "noio-gfp: writes={} blkgs={} noio_allocs~={}",
                o.writes,
                o.blkgs,
                o.blkgs * 4
            );
            Ok(())
        }
        Cmd::Churn { file, secs, cpu } => {
            sys::set_comm("pt-churn");
            if let Some(c) = cpu {
                sys::pin(0, c)?;
            }
            let bytes = page_cache::churn(&file, secs)?;
            println!("churn: read {} MiB", bytes >> 20);
            Ok(())
        }
        Cmd::Hog { cpu, secs, prio } => hog(cpu, secs, prio),
        Cmd::Contention {
            secs,
            file,
            min_free_kbytes,
            maps,
            gate,
        } => contention(secs, &file, min_free_kbytes, maps, gate.as_deref()),
        Cmd::Recursion {
            file,
            balloon,
            free_mib,
            chains,
            depth,
            disks,
            prio,
            jitter_prio,
            prefix,
            passes,
            settle,
        } => {
            sys::set_comm("pt-rec-writer");
            let devs = devices(disks)?;
            let (writes, blkgs) = recursion::run(&recursion::Args {
                file,
                balloon,
                free_mib,
                chains,
                depth,
                devs,
                prio,
                jitter_prio,
                prefix,
                passes,
                settle,
                root: "/sys/fs/cgroup".into(),
            })?;
            println!("recursion: writes={writes} blkgs={blkgs}");
            Ok(())
        }
        Cmd::Jitter {
            prio,
            period_ms,
            max_pages,
            secs,
        } => jitter::run(prio, period_ms, max_pages, secs),
        Cmd::Snapshot { out } => {
            let text: String = bpf::snapshot()?.into_iter().map(|l| l + "\n").collect();
            match out {
                Some(p) => fs::write(&p, text).with_context(|| format!("writing {}", p.display())),
                None => {
                    print!("{text}");
                    Ok(())
                }
            }
        }
        Cmd::Compare { before, wait } => compare(&before, wait),
        Cmd::Truth {
            action,
            out,
            owner_off,
            buffer_kb,
        } => match action.as_str() {
            "start" => truth::start(owner_off, buffer_kb),
            "stop" => truth::stop(&out),
            other => bail!("truth {other}: expected start or stop"),
        },
        Cmd::WaitAttached {
            before,
            timeout,
            min,
            pid,
        } => wait_attached(&before, timeout, min, pid),
    }
}

/// "MAJ:MIN" of each disk named (`all`: every virtio and null_blk disk).
fn devices(disks: Vec<String>) -> Result<Vec<String>> {
    let disks = if disks == ["all"] {
        cgroup::all_disks()?
    } else {
        disks
    };
    disks.iter().map(|d| cgroup::disk_dev(d)).collect()
}

fn percpu_arrays(a: &ArraysArgs) -> Result<()> {
    sys::set_comm(&format!("pt-{}", a.label));
    if let Some(c) = a.cpu {
        sys::pin(0, c)?;
    }
    sys::unlimit_memlock();
    if a.io_flusher {
        sys::set_io_flusher()?;
    }
    if let Some(dir) = &a.gate {
        fs::write(
            dir.join(format!("{}.pid", a.label)),
            format!("{}\n", std::process::id()),
        )
        .with_context(|| format!("writing {}/{}.pid", dir.display(), a.label))?;
        wait_for_file(&dir.join("run"))?;
    }
    let deadline = a.secs.map(|s| Instant::now() + Duration::from_secs(s));
    let (mut rounds, mut made, mut failed) = (0usize, 0usize, 0usize);
    let mut last_err = None;
    loop {
        match deadline {
            Some(d) if sys::remaining(d).is_none() => break,
            None if rounds >= a.rounds => break,
            _ => {}
        }
        // Keep the round's maps open together so their percpu areas pile up in the chunks.
        let mut fds = Vec::with_capacity(a.maps);
        for _ in 0..a.maps {
            match bpf::percpu_array(a.value_size, a.entries) {
                Ok(fd) => {
                    fds.push(fd);
                    made += 1;
                }
                // ENOMEM under pressure is part of the game, not a workload failure.
                Err(e) => {
                    failed += 1;
                    last_err = Some(e);
                }
            }
        }
        drop(fds);
        rounds += 1;
    }
    println!(
        "{}: io_flusher={} rounds={rounds} maps={made} failed={failed} allocs~={}",
        a.label,
        a.io_flusher,
        made * a.entries as usize
    );
    if made == 0 {
        bail!("no map could be created (last error: {last_err:?})");
    }
    Ok(())
}

fn hog(cpu: usize, secs: u64, prio: i32) -> Result<()> {
    sys::set_comm("pt-hog");
    sys::pin(0, cpu)?;
    sys::set_fifo(prio)?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut spins = 0u64;
    while sys::remaining(deadline).is_some() {
        for _ in 0..10_000 {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
    println!("hog: cpu {cpu} done");
    Ok(())
}

/// Waits (at most 10 minutes) until `p` exists.
fn wait_for_file(p: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !p.exists() {
        if sys::remaining(deadline).is_none() {
            bail!("{} did not appear within 600 s", p.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn contention(
    secs: u64,
    file: &PathBuf,
    min_free_kbytes: u64,
    maps: usize,
    gate: Option<&Path>,
) -> Result<()> {
    let n = sys::ncpus();
    if n < 2 {
        bail!("contention needs at least 2 CPUs (one is given to a starved kswapd), have {n}");
    }
    // Fill the page cache first so reclaim has clean pages to take from the start.
    let filled = page_cache::churn(file, 0)?;
    eprintln!("contention: page cache filled with {} MiB", filled >> 20);

    let starve = n - 1;
    let work = |i: usize| i % (n - 1);
    let old_rt = sys::write_knob("/proc/sys/kernel/sched_rt_runtime_us", "-1")?;
    let old_min = sys::write_knob("/proc/sys/vm/min_free_kbytes", &min_free_kbytes.to_string())?;
    // kswapd can only run where the FIFO hog lives, so it never runs: every allocation that
    // dips under the watermarks reclaims directly, including the mutex holder's.
    let kswapd = sys::find_task("kswapd0").context("no kswapd0 task")?;
    sys::pin(kswapd, starve)?;

    let s = secs.to_string();
    let arrays = |label: &str, cpu: usize, flusher: bool| {
        let mut v: Vec<String> = [
            "percpu-arrays",
            "--secs",
            &s,
            "--maps",
            &maps.to_string(),
            "--label",
            label,
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        v.extend(["--cpu".into(), cpu.to_string()]);
        if flusher {
            v.push("--io-flusher".into());
        }
        if let Some(g) = gate {
            v.extend(["--gate".into(), g.to_string_lossy().into_owned()]);
        }
        v
    };
    let hog_args: Vec<String> = [
        "hog",
        "--cpu",
        &starve.to_string(),
        "--secs",
        &(secs + 2).to_string(),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let churn_args: Vec<String> = [
        "churn",
        "--file",
        &file.to_string_lossy(),
        "--secs",
        &s,
        "--cpu",
        &work(0).to_string(),
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let creators = [
        arrays("unc-a", work(0), false),
        arrays("io-flusher", work(1), true),
        arrays("unc-b", work(1), false),
    ];
    let mut children = Vec::new();
    if let Some(g) = gate {
        // Gated creators wait for `run`; the caller learns their pids meanwhile.
        for args in &creators {
            children.push(sys::spawn(args)?);
        }
        wait_for_file(&g.join("go"))?;
    }
    children.push(sys::spawn(&hog_args)?);
    // Give the hog a moment to occupy its CPU before the pressure starts.
    std::thread::sleep(Duration::from_millis(300));
    if let Some(g) = gate {
        fs::write(g.join("run"), b"").context("opening the gate")?;
    } else {
        for args in &creators {
            children.push(sys::spawn(args)?);
        }
    }
    children.push(sys::spawn(&churn_args)?);
    let mut failed = 0;
    for mut c in children {
        if !c.wait().context("waiting for a child")?.success() {
            failed += 1;
        }
    }
    sys::write_knob("/proc/sys/vm/min_free_kbytes", &old_min)?;
    sys::write_knob("/proc/sys/kernel/sched_rt_runtime_us", &old_rt)?;
    if failed > 0 {
        bail!("{failed} workload children failed");
    }
    println!("contention: done ({n} CPUs, kswapd starved on CPU {starve})");
    Ok(())
}

fn read_snapshot(p: &PathBuf) -> Result<std::collections::BTreeSet<String>> {
    Ok(fs::read_to_string(p)
        .with_context(|| format!("reading {}", p.display()))?
        .lines()
        .map(String::from)
        .collect())
}

fn compare(before: &PathBuf, wait: u64) -> Result<()> {
    let before = read_snapshot(before)?;
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        let now = bpf::snapshot()?;
        let left: Vec<_> = now.difference(&before).collect();
        if left.is_empty() {
            println!(
                "compare: nothing left behind ({} objects, as before)",
                now.len()
            );
            return Ok(());
        }
        if sys::remaining(deadline).is_none() {
            for l in &left {
                println!("left behind: {l}");
            }
            bail!("{} BPF objects or kprobes outlived the tool", left.len());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn wait_attached(before: &PathBuf, timeout: u64, min: usize, pid: Option<u32>) -> Result<()> {
    let before = read_snapshot(before)?;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    // Attached = programs loaded, at least one link (a program loaded during discovery,
    // such as the kernel-memory reader, has none), and the set of new objects (programs,
    // links, kprobes) unchanged for 2 s: loading and attaching happen in steps.
    let (mut last, mut stable_since) = (0usize, Instant::now());
    loop {
        let now = bpf::snapshot()?;
        let new: Vec<_> = now.difference(&before).collect();
        let progs = new.iter().filter(|l| l.starts_with("prog ")).count();
        let links = new.iter().filter(|l| l.starts_with("link ")).count();
        if new.len() != last {
            last = new.len();
            stable_since = Instant::now();
        } else if progs >= min && links > 0 && stable_since.elapsed() >= Duration::from_secs(2) {
            let kprobes = new.iter().filter(|l| l.starts_with("kprobe")).count();
            println!("wait-attached: {progs} programs, {links} links, {kprobes} kprobes");
            return Ok(());
        }
        if let Some(p) = pid {
            // A zombie still has /proc/PID (the shell reaps it later): look at the state.
            let stat = fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
            if matches!(state, None | Some('Z') | Some('X')) {
                bail!("the tool (pid {p}) exited before attaching");
            }
        }
        if sys::remaining(deadline).is_none() {
            bail!("the tool loaded {progs} programs within {timeout} s (wanted {min}, stable for 2 s)");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
