//! The benchmark's data: options, workloads and their sizes, and what was measured. Shared
//! by the orchestration (`mod.rs`) and the markdown renderer (`render.rs`), so neither
//! imports the other's items.
use std::path::PathBuf;

use anyhow::Result;
use serde_json::Value;

use super::{
    guest,
    tracer::{ProgStat, Tracer},
};

/// `cargo xtask bench` options.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Short run (smaller workloads, fewer rate steps; still 5 repeats): a smoke test of
    /// the benchmark itself, not numbers to publish.
    #[arg(long)]
    pub quick: bool,
    /// Repeats of every workload x tracer cell.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Skip the Debian guest (kprobe/fentry modes).
    #[arg(long)]
    pub no_guest: bool,
    /// Where the table goes.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub output: PathBuf,
}

/// Workloads timed in the slowdown table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Workload {
    /// GFP_NOIO percpu allocations (blkg_alloc via a throttle rule per cgroup).
    Blkio,
    /// Unconstrained: BPF percpu array creation.
    PercpuArrays,
    /// Unconstrained: network namespace creation.
    Netns,
    /// Unconstrained: short-lived threads (every exit runs the process-exit program).
    Exits,
}

impl Workload {
    pub(super) const ALL: [Workload; 4] = [
        Workload::Blkio,
        Workload::PercpuArrays,
        Workload::Netns,
        Workload::Exits,
    ];

    pub(super) fn describe(self, sz: &Sizes) -> String {
        match self {
            Workload::Blkio => format!(
                "constrained: {} cgroup throttle-rule writes (blkg_alloc, GFP_NOIO percpu)",
                sz.cgroups
            ),
            Workload::PercpuArrays => format!(
                "unconstrained: {} BPF percpu arrays of {} x {} B",
                sz.maps, sz.entries, sz.value
            ),
            Workload::Netns => format!(
                "unconstrained: {} network namespaces (unshare CLONE_NEWNET)",
                sz.netns
            ),
            Workload::Exits => format!(
                "unconstrained: {} threads started and exited one after another",
                sz.exits
            ),
        }
    }

    pub(super) fn ops(self, sz: &Sizes) -> usize {
        match self {
            Workload::Blkio => sz.cgroups,
            Workload::PercpuArrays => sz.maps,
            Workload::Netns => sz.netns,
            Workload::Exits => sz.exits,
        }
    }
}

/// Workload sizes.
pub(super) struct Sizes {
    pub(super) cgroups: usize,
    pub(super) maps: usize,
    pub(super) entries: u32,
    pub(super) value: u32,
    pub(super) netns: usize,
    /// Threads of the exit workload.
    pub(super) exits: usize,
    /// Seconds per ring-buffer rate step.
    pub(super) step_secs: u64,
}

impl Sizes {
    pub(super) fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                cgroups: 300,
                maps: 200,
                entries: 16,
                value: 4096,
                netns: 20,
                exits: 200,
                step_secs: 1,
            }
        } else {
            Sizes {
                cgroups: 5000,
                maps: 3000,
                entries: 16,
                value: 4096,
                netns: 300,
                exits: 3000,
                step_secs: 3,
            }
        }
    }
}

/// One timed run of one workload under one tracer.
pub(super) struct Sample {
    pub(super) workload: Workload,
    pub(super) tracer: Tracer,
    pub(super) secs: f64,
    pub(super) progs: Vec<ProgStat>,
    /// percpu-trace's (events, lost) summary.
    pub(super) summary: Option<(u64, u64)>,
}

/// Everything measured.
pub(super) struct Measured {
    pub(super) samples: Vec<Sample>,
    pub(super) rate_steps: Vec<RateStep>,
    pub(super) engine_eps: Result<f64>,
    pub(super) rss: Result<Value>,
    pub(super) guest: Result<guest::GuestResult>,
}

/// One step of the ring-buffer rate test.
pub(super) struct RateStep {
    pub(super) target_writes: u64,
    pub(super) secs: f64,
    pub(super) events: u64,
    pub(super) lost: u64,
}

impl RateStep {
    pub(super) fn eps(&self) -> f64 {
        self.events as f64 / self.secs.max(1e-9)
    }
}
