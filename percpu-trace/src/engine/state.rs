//! Read-only views of the engine's state for the TUI and reports ([`EngineState`]).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a tracked task is doing, as far as the events show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// No known activity (e.g. a mutex holder seen only through its owner word).
    Idle,
    /// Inside a constrained pcpu_alloc.
    Allocating,
    /// Creating a chunk (pcpu_create_chunk / pcpu_get_vm_areas).
    CreatingChunk,
    /// Populating a chunk (pcpu_populate_chunk and the page/page-table allocations in it).
    Populating,
    /// In direct or memcg reclaim.
    Reclaiming,
    /// Waiting for pcpu_alloc_mutex.
    Waiting,
}

/// The task last seen holding pcpu_alloc_mutex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderView {
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Task comm.
    pub comm: String,
    /// First event that showed it holding the mutex (a lower bound of the hold start).
    pub since_ns: u64,
    /// Latest event that confirmed it still held the mutex.
    pub confirmed_ns: u64,
    /// `now_ns - since_ns`.
    pub held_ns: u64,
    /// What it is doing.
    pub activity: Activity,
    /// gfp of the constrained pcpu_alloc it serves, if any.
    pub caller_gfp: Option<u32>,
    /// Its constraint: caller gfp (or GFP_KERNEL) narrowed by its scope.
    pub constraint_gfp: u32,
    /// Whether that constraint forbids IO or FS.
    pub constrained: bool,
    /// current->flags at its latest event.
    pub task_flags: u32,
}

/// A task waiting for pcpu_alloc_mutex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaiterView {
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Task comm.
    pub comm: String,
    /// ContentionBegin time.
    pub since_ns: u64,
    /// `now_ns - since_ns`.
    pub waited_ns: u64,
    /// gfp of the constrained pcpu_alloc it is in, if a probe saw it.
    pub caller_gfp: Option<u32>,
    /// Its constraint: caller gfp (or GFP_KERNEL) narrowed by its scope.
    pub constraint_gfp: u32,
    /// Whether that constraint forbids IO or FS.
    pub constrained: bool,
    /// current->flags at ContentionBegin.
    pub task_flags: u32,
}

/// One tracked task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Task comm.
    pub comm: String,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// current->flags at its latest event.
    pub task_flags: u32,
    /// What it is doing.
    pub activity: Activity,
    /// gfp of the constrained pcpu_alloc it is in.
    pub caller_gfp: Option<u32>,
    /// When that pcpu_alloc was first seen.
    pub alloc_since_ns: Option<u64>,
    /// When it was first seen holding the mutex, while it does.
    pub hold_since_ns: Option<u64>,
    /// When its open reclaim began.
    pub reclaim_since_ns: Option<u64>,
    /// When it began waiting for the mutex.
    pub wait_since_ns: Option<u64>,
    /// Its latest event.
    pub last_seen_ns: u64,
}

/// One reclaim episode by an interesting task (holder, constrained caller or scoped task).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReclaimRecord {
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Task comm.
    pub comm: String,
    /// ReclaimBegin time.
    pub begin_ns: u64,
    /// ReclaimEnd time, once seen.
    pub end_ns: Option<u64>,
    /// Reclaim gfp as reported.
    pub gfp: u32,
    /// Reclaim gfp narrowed by the task's scope at that moment.
    pub effective_gfp: u32,
    /// Order.
    pub order: u32,
    /// memcg reclaim.
    pub memcg: bool,
    /// The task held pcpu_alloc_mutex when reclaim began.
    pub held_mutex: bool,
    /// gfp of the constrained pcpu_alloc it was in, if any.
    pub caller_gfp: Option<u32>,
    /// current->flags at ReclaimBegin.
    pub task_flags: u32,
    /// Pages reclaimed, once ended.
    pub nr_reclaimed: Option<u64>,
}

/// Volume counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Events processed.
    pub events: u64,
    /// Events by kind (snake_case kind names as in the event JSON).
    pub events_by_kind: BTreeMap<String, u64>,
    /// Constrained pcpu_alloc calls (PcpuAllocEnter, or PcpuAllocDone when no entry was seen).
    pub constrained_allocs: u64,
    /// Constrained allocations by gfp as passed.
    pub constrained_by_gfp: BTreeMap<u32, u64>,
    /// Constrained allocations whose gfp did not fit in `constrained_by_gfp` (bounded).
    pub constrained_other_gfp: u64,
    /// Constrained allocations by comm (bounded; overflow under [`crate::engine::OTHER_COMM`]).
    pub constrained_by_comm: BTreeMap<String, u64>,
    /// Reclaim episodes begun.
    pub reclaims: u64,
    /// Reclaim episodes begun while holding pcpu_alloc_mutex.
    pub reclaims_holding_mutex: u64,
    /// Waits for pcpu_alloc_mutex (not contention_begin events: it fires more than once
    /// per wait).
    pub contentions: u64,
    /// Waits by constrained tasks.
    pub contentions_constrained: u64,
    /// Tasks evicted because `max_tasks` was reached.
    pub evicted_tasks: u64,
    /// Occurrences of findings not kept because `max_findings` distinct findings exist.
    pub findings_dropped: u64,
    /// Occurrences (not distinct findings) by finding kind id.
    pub occurrences_by_kind: BTreeMap<String, u64>,
}

/// Everything the TUI shows, at the time of the latest event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    /// Timestamp of the latest event (the engine has no clock).
    pub now_ns: u64,
    /// The last task seen holding pcpu_alloc_mutex, if still believed to hold it.
    pub holder: Option<HolderView>,
    /// Tasks waiting for the mutex, by pid.
    pub waiters: Vec<WaiterView>,
    /// Tracked tasks, by pid.
    pub tasks: Vec<TaskView>,
    /// Most recent reclaim episodes, oldest first.
    pub recent_reclaims: Vec<ReclaimRecord>,
    /// Counters.
    pub counters: Counters,
    /// Number of distinct findings.
    pub findings: usize,
    /// Completed holds of pcpu_alloc_mutex.
    pub holds: super::HoldHistory,
    /// What the run saw.
    pub activity: super::ActivityCounts,
    /// The latest loss totals.
    pub losses: super::LossTotals,
}
