//! The attach plan: for each probe point, how it is observed on this kernel.
use percpu_trace_common::ProbeConfig;
use serde::Serialize;

/// `--attach`: which family of program to prefer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AttachMode {
    /// Best available: kprobe where the kernel allows it, tracepoints otherwise.
    Auto,
    /// fentry/fexit (BPF trampolines).
    Fentry,
    /// kprobe/kretprobe.
    Kprobe,
    /// Tracepoints only (degraded: no pcpu_alloc entry, no nested allocations).
    Tracepoint,
}

/// What tracepoint-only mode sees less of, by finding kind: the one wording `check`, the
/// TUI and every report show (the engine's rules are in `engine`; this says which of their
/// inputs the mode lacks).
pub const TRACEPOINT_ONLY_LIMITS: &str = "tracepoint-only mode sees less: recursion only \
     after the fact (reclaim under the mutex paired with the same call's percpu_alloc_percpu, \
     which tells the caller's gfp; uncertain until the loss counters arrive); window only for \
     a chunk created under the mutex by a constrained caller on a kernel known to lack the \
     fix (page tables, vmalloc, populate and pcpu_get_vm_areas are not seen); cross_task \
     never with a waiter constrained by its gfp argument (only IO_FLUSHER and scope waiters \
     are seen)";

/// Probe point of pcpu_populate_chunk (its gfp shows whether backing-noio is at work).
pub const POINT_POPULATE: &str = "pcpu_populate_chunk";
/// Every kernel page-table probe point ends with this (populate-gfp shows there).
pub const POINT_PGTABLE_SUFFIX: &str = " (page tables)";
/// Tracepoint mode's view of the percpu slow path: chunk creation and, after the unlock,
/// the constrained allocation.
pub const POINTS_PERCPU_TRACEPOINTS: [&str; 2] =
    ["percpu_create_chunk", "percpu_alloc_percpu (after unlock)"];

/// The limits of an attach mode by name (as in recordings' `attach_mode`), if it has any.
pub fn mode_limits(mode: &str) -> Option<&'static str> {
    (mode == "tracepoint").then_some(TRACEPOINT_ONLY_LIMITS)
}

/// How one program is attached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Attachment {
    /// kprobe on a kernel function (exact kallsyms name, suffixes included).
    Kprobe {
        /// Function name.
        symbol: String,
    },
    /// kretprobe on a kernel function.
    Kretprobe {
        /// Function name.
        symbol: String,
    },
    /// fentry on a kernel function (BPF trampoline; needs the function in BTF).
    Fentry {
        /// Function name as in BTF.
        symbol: String,
    },
    /// fexit on a kernel function.
    Fexit {
        /// Function name as in BTF.
        symbol: String,
    },
    /// A tracepoint.
    Tracepoint {
        /// e.g. "percpu".
        category: String,
        /// e.g. "percpu_alloc_percpu".
        name: String,
        /// Attached as a raw tracepoint (`BPF_RAW_TRACEPOINT_OPEN`, arguments by their
        /// `TP_PROTO` position from BTF) rather than a perf tracepoint event (the record's
        /// fields at their format-file offsets). Preferred: a perf tracepoint event's
        /// release waits for RCU grace periods (~40 ms each, one at a time), a raw one's
        /// does not, and a hit builds no perf record.
        raw: bool,
    },
    /// Not observable here.
    Unavailable {
        /// Why, in one line.
        reason: String,
    },
}

/// One program of the eBPF object and where it goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedProbe {
    /// What is observed, for humans ("pcpu_alloc entry").
    pub point: String,
    /// Program name in the eBPF object.
    pub program: String,
    /// Where it attaches (a program may appear in several entries).
    pub attachment: Attachment,
    /// What detection is lost when this is unavailable.
    pub disables: String,
}

/// The resolved plan every mode uses.
#[derive(Clone, Debug, Serialize)]
pub struct AttachPlan {
    /// The mode actually used (never `Auto`).
    pub mode: AttachMode,
    /// Every probe point, available or not.
    pub probes: Vec<PlannedProbe>,
    /// Size of the event ring buffer in bytes (a power of two, whole pages).
    pub ring_bytes: u32,
    /// Load-time globals for the eBPF programs.
    #[serde(skip)]
    pub config: ProbeConfig,
}

/// Default event ring buffer size: 4 MiB.
pub const DEFAULT_RING_BYTES: u32 = 4 << 20;

/// A probe point this host cannot observe: what is not seen, why, and what it costs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unseen<'a> {
    /// The probe point, for humans ("pcpu_alloc entry").
    pub point: &'a str,
    /// Why it is not observed, in one line.
    pub reason: &'a str,
    /// What detection is lost.
    pub costs: &'a str,
}

impl AttachPlan {
    /// The probe points this plan cannot observe, one entry per point (a program attached
    /// at several points counts once per point): the one list `check` prints and `record`
    /// counts, so both say the same number.
    pub fn unseen(&self) -> Vec<Unseen<'_>> {
        let mut out: Vec<Unseen<'_>> = Vec::new();
        for p in &self.probes {
            if let Attachment::Unavailable { reason } = &p.attachment {
                if !out.iter().any(|u| u.point == p.point) {
                    out.push(Unseen {
                        point: &p.point,
                        reason,
                        costs: &p.disables,
                    });
                }
            }
        }
        out
    }
}
