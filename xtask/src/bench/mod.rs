//! `cargo xtask bench`: what percpu-trace costs, measured side by side with the bpftrace
//! script a user would write instead (`percpu.bt`), written to BENCHMARKS.md.
//!
//! Sections (issue 9):
//! - per-program BPF cost from `kernel.bpf_stats_enabled` (run time / run count of every
//!   program the tracer loaded) during the workloads, on this machine's kernel (tracepoint
//!   mode) and on the Debian guest (kprobe, fentry, tracepoint modes, [`guest`]);
//! - workload slowdown: each workload timed with no tracer, percpu-trace and bpftrace,
//!   interleaved within each repeat (order rotated), as ratios to that repeat's baseline;
//! - userspace: engine events/s (criterion bench, pinned to one core), ring-buffer
//!   throughput before the first loss (rate-driven GFP_NOIO workload), engine RSS at
//!   10,000 tracked tasks (`engine_rss.rs`).
//!
//! Needs root. Not part of `cargo xtask test`: timings depend on the machine.
mod guest;
mod model;
mod render;
mod stats;
mod tracer;
mod workload;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{build, setup};
pub use model::BenchArgs;
use model::{Measured, RateStep, Sample, Sizes, Workload};
use render::render;
use tracer::Tracer;

/// Runs everything and writes the table.
pub fn run(args: &BenchArgs) -> Result<()> {
    if !setup::is_root() {
        bail!("cargo xtask bench needs root (BPF, cgroups, bpf_stats): run it with sudo");
    }
    if args.repeats < 1 {
        bail!("--repeats must be at least 1");
    }
    let started = Instant::now();
    let sz = Sizes::new(args.quick);
    let tool = build::run(&build::BuildArgs {
        arch: std::env::consts::ARCH.into(),
    })?;
    ensure_tools()?;
    let root = build::root();
    let dir = root.join("target/bench");
    fs::create_dir_all(&dir)?;
    let script = root.join("xtask/src/bench/percpu.bt");
    let check = check_json(&tool)?;
    let mutex_addr = crate::vm::tool_json::json_u64(&check["config"]["mutex_addr"]).unwrap_or(0);
    if mutex_addr == 0 {
        bail!("percpu-trace check --json gave no config.mutex_addr: the bpftrace script needs it");
    }
    let setup = tracer::Setup {
        tool: tool.clone(),
        script,
        floor_script: root.join("xtask/src/bench/empty.bt"),
        mutex_addr,
        dir: dir.clone(),
    };

    let stats_path = Path::new("/proc/sys/kernel/bpf_stats_enabled");
    let old_stats = tracer::set_sysctl(stats_path, "1")?;
    let res = measure(args, &sz, &setup, &tool, &root);
    let _ = tracer::set_sysctl(stats_path, &old_stats);
    let m = res?;

    let md = render(args, &sz, &m, &check, started.elapsed());
    let out = if args.output.is_absolute() {
        args.output.clone()
    } else {
        root.join(&args.output)
    };
    // kernel-table --write owns the offline section; keep it.
    let old = fs::read_to_string(&out).unwrap_or_default();
    let md = crate::kernel_table::OFFLINE_BENCH.carry(&old, md);
    fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "bench: wrote {} after {:.0} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn measure(
    args: &BenchArgs,
    sz: &Sizes,
    setup: &tracer::Setup,
    tool: &Path,
    root: &Path,
) -> Result<Measured> {
    let samples = slowdown(args.repeats, sz, setup)?;
    let rate_steps = ring_rates(sz, setup)?;
    println!("bench: engine throughput (criterion, pinned to one CPU)");
    let engine_eps = engine_throughput(root);
    println!("bench: engine memory at 10,000 tasks");
    let rss = engine_rss(root);
    let guest = if args.no_guest {
        Err(anyhow::anyhow!("skipped (--no-guest)"))
    } else {
        println!("bench: Debian guest (kprobe, fentry, tracepoint modes)");
        guest::run(tool, args.quick)
    };
    if let Err(e) = &guest {
        println!("bench: guest part not measured: {e:#}");
    }
    Ok(Measured {
        samples,
        rate_steps,
        engine_eps,
        rss,
        guest,
    })
}

/// Installs bpftrace (Debian's) when missing; bpftool is needed to read program stats.
fn ensure_tools() -> Result<()> {
    let have = |b: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("bpftrace") {
        println!("bench: installing bpftrace");
        let st = Command::new("apt-get")
            .args(["install", "-y", "bpftrace"])
            .status()?;
        if !st.success() {
            bail!("apt-get install bpftrace failed ({st})");
        }
    }
    if !have("bpftool") {
        bail!("bpftool is missing (apt-get install bpftool)");
    }
    Ok(())
}

fn check_json(tool: &Path) -> Result<Value> {
    let out = Command::new(tool)
        .args(["check", "--json"])
        .output()
        .context("running percpu-trace check --json")?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "parsing percpu-trace check --json: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The workload x tracer x repeat grid.
fn slowdown(repeats: usize, sz: &Sizes, setup: &tracer::Setup) -> Result<Vec<Sample>> {
    let tracers = [
        Tracer::None,
        Tracer::Floor,
        Tracer::PercpuTrace,
        Tracer::Bpftrace,
    ];
    let mut samples = Vec::new();
    for w in Workload::ALL {
        // Warm-up: first-time kernel work (module-less caches, slab growth) out of the timing.
        let _ = run_workload(w, sz, "warm")?;
        for r in 0..repeats {
            for k in 0..tracers.len() {
                // Rotate the order so drift over the run does not favour one tracer.
                let t = tracers[(k + r) % tracers.len()];
                let tag = format!("{w:?}-{}-{r}", t.name().replace(' ', "-")).to_lowercase();
                let s = one_sample(w, t, sz, setup, &tag)?;
                println!(
                    "bench: {:<12} {:<12} repeat {} {:8.3} s{}",
                    format!("{w:?}"),
                    t.name(),
                    r + 1,
                    s.secs,
                    s.summary
                        .map(|(e, l)| format!("  ({e} events, {l} lost)"))
                        .unwrap_or_default()
                );
                samples.push(s);
            }
        }
    }
    Ok(samples)
}

/// Runs the workload once (its set-up and tear-down untimed); returns the timed seconds.
fn run_workload(w: Workload, sz: &Sizes, tag: &str) -> Result<f64> {
    Ok(match w {
        Workload::Blkio => {
            let b = workload::Blkio::prepare(tag, sz.cgroups, "vda")?;
            b.run()?.as_secs_f64()
        }
        Workload::PercpuArrays => {
            workload::percpu_arrays(sz.maps, sz.entries, sz.value)?.as_secs_f64()
        }
        Workload::Netns => {
            let t = workload::netns(sz.netns)?.as_secs_f64();
            // Let the cleanup worker tear the namespaces down before the next sample.
            std::thread::sleep(Duration::from_secs(1));
            t
        }
        Workload::Exits => workload::exits(sz.exits)?.as_secs_f64(),
    })
}

fn one_sample(
    w: Workload,
    t: Tracer,
    sz: &Sizes,
    setup: &tracer::Setup,
    tag: &str,
) -> Result<Sample> {
    // Set-up before the tracer starts, so only the timed pass is traced and counted.
    let blkio = match w {
        Workload::Blkio => Some(workload::Blkio::prepare(tag, sz.cgroups, "vda")?),
        _ => None,
    };
    let running = tracer::start(t, setup, tag)?;
    let before = match &running {
        Some(r) => tracer::prog_stats(r.pid())?,
        None => BTreeMap::new(),
    };
    let secs = match (&blkio, w) {
        (Some(b), _) => b.run()?.as_secs_f64(),
        (None, Workload::PercpuArrays) => {
            workload::percpu_arrays(sz.maps, sz.entries, sz.value)?.as_secs_f64()
        }
        (None, Workload::Exits) => workload::exits(sz.exits)?.as_secs_f64(),
        (None, _) => workload::netns(sz.netns)?.as_secs_f64(),
    };
    let after = match &running {
        Some(r) => tracer::prog_stats(r.pid())?,
        None => BTreeMap::new(),
    };
    let stopped = running.map(|r| r.stop()).transpose()?;
    drop(blkio);
    if w == Workload::Netns {
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(Sample {
        workload: w,
        tracer: t,
        secs,
        progs: tracer::delta(&before, &after),
        summary: stopped
            .as_ref()
            .and_then(|s| tracer::parse_summary(&s.stderr)),
    })
}

/// Rate-driven GFP_NOIO events through percpu-trace: each step writes throttle rules at a
/// target rate (paced per millisecond) on all CPUs, until losses appear or the machine
/// cannot go faster. The tool's own summary gives events and losses.
fn ring_rates(sz: &Sizes, setup: &tracer::Setup) -> Result<Vec<RateStep>> {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut steps = Vec::new();
    // Writes per second; 0 = as fast as the writers can go.
    let targets: &[u64] = &[1_000, 5_000, 15_000, 0];
    // Each write needs a fresh cgroup (a kernel object made before the step): cap them.
    const MAX_CGROUPS: usize = 20_000;
    for &target in targets {
        let n_total = if target == 0 {
            MAX_CGROUPS
        } else {
            ((target * sz.step_secs) as usize).min(MAX_CGROUPS)
        };
        let per = n_total.div_ceil(ncpu);
        let groups: Vec<workload::Blkio> = (0..ncpu)
            .map(|c| workload::Blkio::prepare(&format!("rate{target}-{c}"), per, "vda"))
            .collect::<Result<_>>()?;
        let tag = format!("rate-{target}");
        let running = tracer::start(Tracer::PercpuTrace, setup, &tag)?.expect("a tracer");
        let t0 = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let hs: Vec<_> = groups
                .iter()
                .map(|g| {
                    s.spawn(move || -> Result<()> {
                        let per_thread = if target == 0 {
                            0.0
                        } else {
                            target as f64 / ncpu as f64
                        };
                        let start = Instant::now();
                        for i in 0..g.len() {
                            if per_thread > 0.0 {
                                let due = Duration::from_secs_f64(i as f64 / per_thread);
                                if let Some(wait) = due.checked_sub(start.elapsed()) {
                                    std::thread::sleep(wait);
                                }
                            }
                            g.write_one(i)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in hs {
                h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
            }
            Ok(())
        })?;
        let secs = t0.elapsed().as_secs_f64();
        // Let the reader drain what is in the ring before stopping.
        std::thread::sleep(Duration::from_millis(300));
        let stopped = running.stop()?;
        drop(groups);
        let (events, lost) = tracer::parse_summary(&stopped.stderr)
            .with_context(|| format!("no summary line from percpu-trace: {}", stopped.stderr))?;
        let st = RateStep {
            target_writes: target,
            secs,
            events,
            lost,
        };
        println!(
            "bench: ring step {} writes/s: {:.0} events/s over {:.1} s, {} lost",
            if target == 0 {
                "max".into()
            } else {
                target.to_string()
            },
            st.eps(),
            secs,
            lost
        );
        let stop = lost > 0;
        steps.push(st);
        if stop {
            break;
        }
    }
    Ok(steps)
}

/// Engine events/s from the criterion bench, pinned to CPU 0 (the build is not pinned).
fn engine_throughput(root: &Path) -> Result<f64> {
    let st = Command::new("cargo")
        .current_dir(root)
        .args([
            "bench",
            "--locked",
            "-p",
            "percpu-trace",
            "--bench",
            "engine",
            "--no-run",
        ])
        .status()?;
    if !st.success() {
        bail!("building the engine bench failed ({st})");
    }
    let out = Command::new("taskset")
        .current_dir(root)
        .args([
            "-c",
            "0",
            "cargo",
            "bench",
            "--locked",
            "-p",
            "percpu-trace",
        ])
        .args(["--bench", "engine", "--", "--noplot"])
        .output()
        .context("running the engine bench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_criterion_thrpt(&text)
        .with_context(|| format!("no throughput line in the criterion output:\n{text}"))
}

/// Middle value of criterion's `thrpt: [lo mid hi]` line, in elements per second.
fn parse_criterion_thrpt(text: &str) -> Option<f64> {
    let l = text
        .lines()
        .find(|l| l.trim_start().starts_with("thrpt:"))?;
    let inner = l.split('[').nth(1)?.split(']').next()?;
    let w: Vec<&str> = inner.split_whitespace().collect();
    // [lo unit mid unit hi unit]
    let (v, unit) = (w.get(2)?.parse::<f64>().ok()?, *w.get(3)?);
    let mult = match unit {
        "elem/s" => 1.0,
        "Kelem/s" => 1e3,
        "Melem/s" => 1e6,
        "Gelem/s" => 1e9,
        _ => return None,
    };
    Some(v * mult)
}

/// Builds and runs `engine_rss.rs` in a scratch crate under target/ (its own workspace,
/// sharing the workspace's lock file and target dir).
fn engine_rss(root: &Path) -> Result<Value> {
    let krate = root.join("target/bench/engine-rss");
    fs::create_dir_all(&krate)?;
    let manifest = format!(
        "# Generated by `cargo xtask bench`.\n[package]\nname = \"pt-bench-engine-rss\"\n\
         version = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n\n\
         [dependencies]\npercpu-trace = {{ path = \"{}\" }}\n\n[[bin]]\nname = \"engine-rss\"\n\
         path = \"{}\"\n",
        root.join("percpu-trace").display(),
        root.join("xtask/src/bench/engine_rss.rs").display()
    );
    fs::write(krate.join("Cargo.toml"), manifest)?;
    // The workspace's lock file keeps the same versions (and no registry look-ups).
    fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock"))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let st = Command::new("cargo")
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--release", "--bin", "engine-rss"])
        .status()?;
    if !st.success() {
        bail!("building engine-rss failed ({st})");
    }
    let out = Command::new(target.join("release/engine-rss")).output()?;
    serde_json::from_slice(&out.stdout).context("parsing engine-rss output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_throughput() {
        let t = "engine/process_mixed_stream\n  time:   [20.1 ms 20.5 ms 20.9 ms]\n  \
                 thrpt:  [9.5012 Melem/s 9.7000 Melem/s 9.8000 Melem/s]\n";
        assert_eq!(parse_criterion_thrpt(t), Some(9.7e6));
        assert_eq!(parse_criterion_thrpt("nothing"), None);
    }
}
