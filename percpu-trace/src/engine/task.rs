//! Per-task state: what each task is doing as far as the events show (inside a
//! constrained pcpu_alloc, holding the mutex, reclaiming, waiting) and which task holds
//! pcpu_alloc_mutex. The bookkeeping that changes it is in `bookkeeping`.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::{finding::WaiterReason, state::Activity};

#[derive(Default)]
pub(super) struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (u64::from(v) ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(super) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<PidHasher>>;

/// A constrained pcpu_alloc in progress.
#[derive(Clone, Debug)]
pub(super) struct AllocState {
    /// gfp as passed (caller_gfp / PcpuAllocEnter gfp).
    pub(super) gfp: u32,
    /// Task flags on entry (the scope pcpu_alloc folded into its gfp).
    pub(super) entry_flags: u32,
    pub(super) since_ns: u64,
    /// Already counted as a constrained allocation that took the mutex.
    pub(super) took_mutex: bool,
}

#[derive(Clone, Debug)]
pub(super) struct OpenReclaim {
    pub(super) since_ns: u64,
    pub(super) effective_gfp: u32,
    pub(super) held_mutex: bool,
    pub(super) stack_id: Option<u32>,
    /// Sequence number of its entry in `recent`.
    pub(super) recent_seq: u64,
    /// Findings whose durations this reclaim completes when it ends.
    pub(super) links: Vec<usize>,
}

#[derive(Clone, Debug)]
pub(super) struct OpenWait {
    pub(super) since_ns: u64,
    pub(super) caller_gfp: Option<u32>,
    pub(super) flags: u32,
    /// Effective constraint: caller gfp (or GFP_KERNEL) narrowed by the scope.
    pub(super) constraint: u32,
    /// Why its progress may be needed by FS/IO; `None`: it does not count for cross_task.
    pub(super) reason: Option<WaiterReason>,
    pub(super) stack_id: Option<u32>,
    pub(super) links: Vec<usize>,
}

/// A chunk creation seen under the mutex (percpu_create_chunk tracepoint) by a task whose
/// pcpu_alloc entry is not observed (tracepoint-only mode): judged at its
/// percpu_alloc_percpu, which tells the caller's gfp.
#[derive(Clone, Debug)]
pub(super) struct PendingCreate {
    pub(super) ts_ns: u64,
    pub(super) flags: u32,
    pub(super) stack_id: Option<u32>,
    pub(super) hold_ns: Option<u64>,
}

/// A reclaim begun under the mutex by a task whose pcpu_alloc entry is not observed
/// (tracepoint-only mode): judged at its percpu_alloc_percpu, which tells the caller's gfp.
#[derive(Clone, Debug)]
pub(super) struct PendingReclaim {
    pub(super) ts_ns: u64,
    pub(super) gfp: u32,
    pub(super) effective_gfp: u32,
    pub(super) order: u32,
    pub(super) memcg: bool,
    pub(super) flags: u32,
    pub(super) stack_id: Option<u32>,
    pub(super) hold_ns: Option<u64>,
}

#[derive(Clone, Debug)]
pub(super) struct TaskState {
    pub(super) pid: u32,
    pub(super) tgid: u32,
    pub(super) comm: String,
    pub(super) cgroup_id: u64,
    pub(super) task_flags: u32,
    pub(super) last_seen_ns: u64,
    pub(super) alloc: Option<AllocState>,
    /// Chunk work in the current allocation.
    pub(super) work: Activity,
    pub(super) hold_since_ns: Option<u64>,
    pub(super) reclaim: Option<OpenReclaim>,
    pub(super) wait: Option<OpenWait>,
    pub(super) pending_create: Option<PendingCreate>,
    pub(super) pending_reclaim: Option<PendingReclaim>,
}

impl TaskState {
    pub(super) fn idle(&self) -> bool {
        self.alloc.is_none()
            && self.pending_create.is_none()
            && self.pending_reclaim.is_none()
            && self.reclaim.is_none()
            && self.wait.is_none()
            && self.hold_since_ns.is_none()
    }

    pub(super) fn activity(&self) -> Activity {
        if self.reclaim.is_some() {
            Activity::Reclaiming
        } else if self.wait.is_some() {
            Activity::Waiting
        } else if self.work != Activity::Idle {
            self.work
        } else if self.alloc.is_some() {
            Activity::Allocating
        } else {
            Activity::Idle
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Holder {
    pub(super) pid: u32,
    pub(super) since_ns: u64,
    pub(super) confirmed_ns: u64,
}
