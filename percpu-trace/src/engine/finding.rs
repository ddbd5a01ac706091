//! Findings: what the engine reports, and what the TUI, reports and recordings build on.
//!
//! Everything here is raw kernel numbers (gfp bits, task flags, stack ids): decoding them to
//! names is the renderers' job (`kernel::decode`), so a finding serialized today can be
//! rendered again by a later version of the tool.
use serde::{Deserialize, Serialize};

/// The three hazards the engine detects. Serialized as the stable ids `"recursion"`,
/// `"window"`, `"cross_task"` (see [`FindingKind::id`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Confirmed: a constrained caller holding pcpu_alloc_mutex entered reclaim whose gfp
    /// allows FS or IO that its own constraint forbade.
    Recursion,
    /// Possible: while serving a gfp-constrained caller with the mutex held, the chunk
    /// create/populate path allocated with an effective gfp allowing FS/IO the caller forbade
    /// (reclaim did not necessarily happen this time).
    Window,
    /// The holder of pcpu_alloc_mutex was in FS/IO-capable reclaim while a constrained task
    /// waited for the mutex.
    CrossTask,
}

impl FindingKind {
    /// All kinds, in id order.
    pub const ALL: [FindingKind; 3] = [
        FindingKind::Recursion,
        FindingKind::Window,
        FindingKind::CrossTask,
    ];

    /// The stable identifier used in JSON, reports and command-line filters.
    pub fn id(self) -> &'static str {
        match self {
            FindingKind::Recursion => "recursion",
            FindingKind::Window => "window",
            FindingKind::CrossTask => "cross_task",
        }
    }

    /// Parses an id produced by [`FindingKind::id`].
    pub fn from_id(id: &str) -> Option<FindingKind> {
        FindingKind::ALL.into_iter().find(|k| k.id() == id)
    }

    /// The highest severity the engine gives this kind (complete evidence; a `cross_task`
    /// needs a gfp-constrained or IO_FLUSHER waiter for it).
    pub fn severity(self) -> Severity {
        match self {
            // Reclaim really ran with FS/IO under the mutex: the deadlock lockdep warns about
            // can happen on this machine.
            FindingKind::Recursion => Severity::Critical,
            // A constrained task is blocked behind FS/IO reclaim: a real dependency chain
            // (reclaim -> FS/IO -> the waiter's locks) was live.
            FindingKind::CrossTask => Severity::High,
            // The door was open but nobody walked through it this time.
            FindingKind::Window => Severity::Warning,
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// How urgent a finding is. Ordered: `Info < Warning < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Info,
    /// A hazard that did not materialize this time.
    Warning,
    /// A hazard that was live (a task really waited behind it).
    High,
    /// The hazard happened.
    Critical,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// The part a task plays in a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskRole {
    /// Held pcpu_alloc_mutex.
    Holder,
    /// Waited for pcpu_alloc_mutex.
    Waiter,
    /// The constrained pcpu_alloc caller (holding the mutex, for recursion/window).
    Caller,
}

/// One task involved in a finding, as seen at the triggering event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Task comm.
    pub comm: String,
    /// cgroup v2 id.
    pub cgroup_id: u64,
    /// Its role.
    pub role: TaskRole,
    /// gfp of the pcpu_alloc it is in (as passed, when a probe saw it), if any.
    pub gfp: Option<u32>,
    /// The constraint that applies to it: its gfp narrowed by its memalloc scope
    /// (current_gfp_context()); for a task with no known gfp, GFP_KERNEL narrowed by scope.
    pub effective_gfp: Option<u32>,
    /// current->flags at the triggering event.
    pub task_flags: u32,
}

/// The nested operation that triggered a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Trigger {
    /// Direct or memcg reclaim.
    Reclaim {
        /// Reclaim gfp (as reported by vmscan).
        gfp: u32,
        /// Allocation order.
        order: u32,
        /// memcg reclaim rather than global direct reclaim.
        memcg: bool,
    },
    /// pcpu_create_chunk (the chunk struct and its metadata).
    ChunkCreate {
        /// gfp passed, when probed.
        gfp: Option<u32>,
    },
    /// pcpu_populate_chunk.
    ChunkPopulate {
        /// gfp passed, when probed.
        gfp: Option<u32>,
    },
    /// pcpu_get_vm_areas (`None`: unpatched kernel, GFP_KERNEL metadata).
    GetVmAreas {
        /// Its gfp parameter on kernels with the fix.
        gfp: Option<u32>,
    },
    /// __vmalloc_node*.
    Vmalloc {
        /// gfp passed.
        gfp: u32,
    },
    /// Kernel page-table allocation (GFP_PGTABLE_KERNEL).
    PgtableAlloc,
}

impl Trigger {
    /// Stable snake_case name of the operation.
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Reclaim { memcg: false, .. } => "direct_reclaim",
            Trigger::Reclaim { memcg: true, .. } => "memcg_reclaim",
            Trigger::ChunkCreate { .. } => "pcpu_create_chunk",
            Trigger::ChunkPopulate { .. } => "pcpu_populate_chunk",
            Trigger::GetVmAreas { .. } => "pcpu_get_vm_areas",
            Trigger::Vmalloc { .. } => "vmalloc",
            Trigger::PgtableAlloc => "pgtable_alloc",
        }
    }
}

/// Time spans attached to a finding, in nanoseconds, maximum over all occurrences.
/// `None` when the closing event was not (yet) seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    /// Longest time the mutex holder had held pcpu_alloc_mutex at the trigger (lower bound:
    /// measured from the first event that showed it holding the mutex).
    pub hold_ns: Option<u64>,
    /// Longest reclaim (ReclaimBegin to ReclaimEnd) of an occurrence.
    pub reclaim_ns: Option<u64>,
    /// Sum of reclaim durations over all occurrences.
    pub reclaim_total_ns: u64,
    /// Longest wait of a constrained waiter (ContentionBegin to ContentionEnd, or to the
    /// trigger when the wait had not ended).
    pub wait_ns: Option<u64>,
    /// Whether `wait_ns` was measured to a seen ContentionEnd (`false`: a lower bound, the
    /// wait's end was not seen).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait_end_seen: bool,
}

/// One deduplicated finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Kind (stable id in JSON).
    pub kind: FindingKind,
    /// Severity.
    pub severity: Severity,
    /// Plain-words explanation of the first occurrence.
    pub explanation: String,
    /// Tasks involved in the first occurrence (caller, or holder then waiter).
    pub tasks: Vec<TaskInfo>,
    /// The nested operation that triggered it.
    pub trigger: Trigger,
    /// Effective gfp of the trigger (its gfp narrowed by the task's scope at that moment);
    /// `None` when the kernel did not expose one.
    pub trigger_effective_gfp: Option<u32>,
    /// The constraint that was broken: the effective gfp of the constrained caller/waiter.
    pub constraint_gfp: u32,
    /// The reclaim bits (__GFP_IO | __GFP_FS) the trigger allows but the constraint forbade.
    pub violated_bits: u32,
    /// Timestamp of the first occurrence.
    pub first_seen_ns: u64,
    /// Timestamp of the latest occurrence.
    pub last_seen_ns: u64,
    /// Number of occurrences merged into this finding.
    pub count: u64,
    /// Time spans.
    pub durations: Durations,
    /// Kernel stack ids (trigger stack first, then the other task's, when taken); resolve
    /// through the recording's or the live stack table.
    pub stack_ids: Vec<u32>,
    /// Deduplication signature: FNV-1a over kind, trigger operation, comms and stack ids.
    /// Stable across runs and versions of the engine for the same inputs.
    pub signature: u64,
    /// Whether the kernel has the fix series (`None`: unknown).
    pub fix_present: Option<bool>,
    /// For `cross_task`: why the waiter's progress may be needed by FS/IO (absent in
    /// findings made before waiters were classified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiter_reason: Option<WaiterReason>,
    /// What the engine could not be sure of in every occurrence (empty: complete evidence
    /// in at least one). A finding with doubts is never High or Critical.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub doubts: Vec<Doubt>,
}

/// What [`crate::engine::Engine::process`] reports for one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum FindingUpdate {
    /// A new finding at this index of [`crate::engine::Engine::findings`].
    New {
        /// Index into `findings()`.
        index: usize,
    },
    /// An existing finding got another occurrence (count, last seen, durations changed).
    Repeated {
        /// Index into `findings()`.
        index: usize,
    },
    /// A duration of an existing finding was completed (e.g. the reclaim ended).
    Updated {
        /// Index into `findings()`.
        index: usize,
    },
}

impl FindingUpdate {
    /// Index into `findings()`.
    pub fn index(&self) -> usize {
        match *self {
            FindingUpdate::New { index }
            | FindingUpdate::Repeated { index }
            | FindingUpdate::Updated { index } => index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_ids_are_stable() {
        for k in FindingKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.id()));
            assert_eq!(FindingKind::from_id(k.id()), Some(k));
        }
        assert_eq!(FindingKind::CrossTask.id(), "cross_task");
        assert!(Severity::Critical > Severity::Warning);
    }
}

/// Why a waiting task's progress may be needed by FS/IO (see `engine::evidence`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaiterReason {
    /// The gfp argument of its pcpu_alloc forbids IO or FS.
    GfpConstrained,
    /// An IO_FLUSHER process (PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE).
    IoFlusher,
    /// A NOFS/NOIO memalloc scope of unknown origin (a filesystem transaction, a frozen
    /// queue...).
    Scope,
    /// A workqueue worker in a NOIO scope whose stack was not taken: it may be the balance
    /// worker (which does not count) or not; said, never dropped, and only Info.
    Unclassified,
}

impl WaiterReason {
    /// The stable snake_case id (as serialized).
    pub fn id(self) -> &'static str {
        match self {
            WaiterReason::GfpConstrained => "gfp_constrained",
            WaiterReason::IoFlusher => "io_flusher",
            WaiterReason::Scope => "scope",
            WaiterReason::Unclassified => "unclassified",
        }
    }
}

/// Something the engine could not be sure of when it saw an occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Doubt {
    /// Events were lost after the state the occurrence rests on began: a lost end event may
    /// have made it stale.
    EventsLost,
    /// The task_struct.flags offset was unknown: memalloc scopes and PF_MEMALLOC could not
    /// be seen.
    TaskFlagsUnknown,
    /// It rests on the engine's memory of earlier events, and the loss counters covering
    /// it have not arrived yet: capped until they do (then removed, or made
    /// [`Doubt::EventsLost`]).
    LossCheckPending,
}
