//! What the run saw, whether or not it became a finding: the answer to "was the tool blind,
//! or was the kernel safe this time?". Counted from the events (constrained callers, the
//! slow path under the mutex, reclaim by holders, waits) plus the kernel's host-wide
//! per-CPU counters (every percpu allocation, which is never sent as a record).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Activity counts, keyed for what they count (the JSON report's `observation.activity`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityCounts {
    /// Every percpu allocation seen on the host (kernel counter; `None`: not counted,
    /// e.g. a recording made before this counter existed).
    pub percpu_allocations: Option<u64>,
    /// Of those, the ones that may block and so may take pcpu_alloc_mutex.
    pub blocking_percpu_allocations: Option<u64>,
    /// Constrained (NOFS/NOIO) blocking allocations.
    pub constrained_allocations: u64,
    /// Constrained by their gfp argument.
    pub constrained_by_gfp_argument: u64,
    /// Constrained by an IO_FLUSHER task's scope (PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE).
    pub constrained_by_io_flusher: u64,
    /// Constrained by a NOIO scope (not IO_FLUSHER).
    pub constrained_by_noio_scope: u64,
    /// Constrained by a NOFS scope.
    pub constrained_by_nofs_scope: u64,
    /// Constrained allocations seen holding pcpu_alloc_mutex (the slow path).
    pub constrained_took_mutex: u64,
    /// Chunk creations by a constrained caller holding the mutex.
    pub chunk_creates_by_constrained_holder: u64,
    /// Chunk populations by a constrained caller holding the mutex.
    pub chunk_populates_by_constrained_holder: u64,
    /// Allocations nested under the mutex (vm areas, vmalloc, page tables) whose effective
    /// gfp allowed FS or IO reclaim, by any holder.
    pub nested_allocations_allowing_fs_io: u64,
    /// Reclaims entered while holding the mutex.
    pub reclaims_by_holder: u64,
    /// Waits on the mutex, by waiter class (`gfp_constrained`, `io_flusher`, `scope`,
    /// `balance_worker_or_unconstrained`).
    pub waits_by_class: BTreeMap<String, u64>,
    /// Who made the constrained allocations: the processes with the most, as the kernel
    /// counted them (at most [`TOP_PROCESSES`], most first; empty when not counted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_processes: Vec<ProcessActivity>,
}

/// Constrained allocations of one process, counted in the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessActivity {
    /// Process id.
    pub tgid: u32,
    /// comm of the thread that made its first constrained allocation.
    pub comm: String,
    /// Its constrained (NOFS/NOIO) blocking percpu allocations.
    pub constrained_allocations: u64,
}

/// Processes [`ActivityCounts::top_processes`] keeps.
pub const TOP_PROCESSES: usize = 16;

/// Prefix of the kernel activity totals that count one process's constrained allocations:
/// `process:TGID:COMM` (so they travel, and are recorded, with the other totals; readers
/// that do not know them ignore them).
pub const PROCESS_KEY: &str = "process:";

/// The activity-totals key of process `tgid` named `comm`.
pub fn process_key(tgid: u32, comm: &str) -> String {
    format!("{PROCESS_KEY}{tgid}:{comm}")
}

/// The processes in kernel activity totals, most constrained allocations first (ties by
/// tgid), at most [`TOP_PROCESSES`].
pub fn top_processes(totals: &BTreeMap<String, u64>) -> Vec<ProcessActivity> {
    let mut v: Vec<ProcessActivity> = totals
        .range(PROCESS_KEY.to_string()..)
        .take_while(|(k, _)| k.starts_with(PROCESS_KEY))
        .filter_map(|(k, &n)| {
            let (tgid, comm) = k[PROCESS_KEY.len()..].split_once(':')?;
            Some(ProcessActivity {
                tgid: tgid.parse().ok()?,
                comm: comm.to_string(),
                constrained_allocations: n,
            })
        })
        .collect();
    v.sort_by(|a, b| {
        b.constrained_allocations
            .cmp(&a.constrained_allocations)
            .then(a.tgid.cmp(&b.tgid))
    });
    v.truncate(TOP_PROCESSES);
    v
}

impl ActivityCounts {
    /// Sets the kernel's host-wide counters from their totals by name.
    pub(super) fn set_kernel(&mut self, totals: &BTreeMap<String, u64>) {
        self.percpu_allocations = totals.get("percpu_allocations").copied();
        self.blocking_percpu_allocations = totals.get("blocking_percpu_allocations").copied();
        self.top_processes = top_processes(totals);
    }

    /// The constrained allocations and their causes, and the unconstrained waits, as the
    /// kernel counted them, when it did: it sends a record only for a constrained call that
    /// goes on to the slow path, a wait or reclaim, and none for an unconstrained waiter,
    /// so the events alone undercount. Recordings made before these counters existed sent
    /// every one and keep the counts from events.
    pub(super) fn with_kernel_counts(mut self, totals: &BTreeMap<String, u64>) -> Self {
        // Unconstrained waiters are counted in the kernel, never sent.
        if let Some(&n) = totals.get("unconstrained_waits") {
            *self
                .waits_by_class
                .entry("balance_worker_or_unconstrained".to_string())
                .or_default() += n;
        }
        let Some(&n) = totals.get("constrained_allocations") else {
            return self;
        };
        self.constrained_allocations = n;
        for (name, field) in [
            (
                "constrained_by_gfp_argument",
                &mut self.constrained_by_gfp_argument,
            ),
            (
                "constrained_by_io_flusher",
                &mut self.constrained_by_io_flusher,
            ),
            (
                "constrained_by_noio_scope",
                &mut self.constrained_by_noio_scope,
            ),
            (
                "constrained_by_nofs_scope",
                &mut self.constrained_by_nofs_scope,
            ),
        ] {
            *field = totals.get(name).copied().unwrap_or(0);
        }
        self
    }

    /// Total waits.
    pub fn waits(&self) -> u64 {
        self.waits_by_class.values().sum()
    }

    /// Why there was no finding, in one sentence, from what was seen (for reports), under
    /// the run's attach mode (`"tracepoint"` sees no chunk population and no allocation
    /// nested under the mutex, so it says nothing about them).
    pub fn why_no_finding(&self, attach_mode: Option<&str>) -> String {
        if self.constrained_allocations == 0 {
            return "no constrained (NOFS/NOIO) blocking percpu allocation happened while \
                    tracing, so nothing could take the slow path: the hazard was not exercised"
                .into();
        }
        if attach_mode == Some("tracepoint") {
            return format!(
                "{} constrained allocation(s) were seen; {} seen holding pcpu_alloc_mutex, {} \
                 chunk creation(s) by a constrained holder, {} reclaim(s) by a holder. \
                 Tracepoint mode does not see chunk population or allocations nested under \
                 the mutex, so it cannot tell whether the slow path allowed FS/IO reclaim",
                self.constrained_allocations,
                self.constrained_took_mutex,
                self.chunk_creates_by_constrained_holder,
                self.reclaims_by_holder
            );
        }
        if self.constrained_took_mutex == 0 {
            return format!(
                "{} constrained allocation(s) were seen, but none was seen holding \
                 pcpu_alloc_mutex: they were served from already populated chunks (the \
                 slow path was not exercised)",
                self.constrained_allocations
            );
        }
        if self.nested_allocations_allowing_fs_io == 0 {
            return format!(
                "{} constrained allocation(s) took the mutex ({} chunk creation(s), {} \
                 population(s), {} reclaim(s) by a holder), and no allocation under the \
                 mutex allowed FS/IO reclaim: this kernel kept the constraint on the slow \
                 path",
                self.constrained_took_mutex,
                self.chunk_creates_by_constrained_holder,
                self.chunk_populates_by_constrained_holder,
                self.reclaims_by_holder
            );
        }
        format!(
            "the slow path was exercised ({} constrained allocation(s) under the mutex, {} \
             nested allocation(s) allowing FS/IO, {} reclaim(s) by a holder), but never by a \
             constrained caller in a way a rule proves",
            self.constrained_took_mutex,
            self.nested_allocations_allowing_fs_io,
            self.reclaims_by_holder
        )
    }
}
