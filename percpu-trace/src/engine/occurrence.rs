//! One occurrence of a finding as a rule sees it, before it is merged into the store.
use super::{
    finding::{Doubt, WaiterReason},
    task::TaskState,
    FindingKind, TaskRole, Trigger,
};

/// One occurrence about to be reported.
pub(super) struct Occurrence<'a> {
    pub(super) kind: FindingKind,
    pub(super) trigger: Trigger,
    pub(super) trigger_effective_gfp: Option<u32>,
    pub(super) constraint_gfp: u32,
    pub(super) violated: u32,
    pub(super) ts_ns: u64,
    /// (task, role, stack of that task's part)
    pub(super) parts: [Option<(&'a TaskState, TaskRole, Option<u32>)>; 2],
    pub(super) hold_ns: Option<u64>,
    pub(super) wait_ns: Option<u64>,
    /// The waiter's reason (cross_task).
    pub(super) reason: Option<WaiterReason>,
    /// What was in doubt.
    pub(super) doubts: Vec<Doubt>,
    /// The same call was seen entering reclaim (a window reported with its recursion).
    pub(super) reclaim_seen: bool,
}
