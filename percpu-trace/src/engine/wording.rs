//! The engine's prose: the one-paragraph explanation each finding carries. Renderers (TUI,
//! reports) show it as is; their own labels come from `report::describe`.
use super::{occurrence::Occurrence, EngineConfig, FindingKind, TaskInfo, Trigger};

/// "IO", "FS" or "IO and FS" for the reclaim bits in `bits`.
pub(super) fn bits_words(cfg: &EngineConfig, bits: u32) -> &'static str {
    match (bits & cfg.gfp_io != 0, bits & cfg.gfp_fs != 0) {
        (true, true) => "IO and FS",
        (true, false) => "IO",
        (false, true) => "FS",
        (false, false) => "no",
    }
}

/// Why a reclaiming task's flags show PF_MEMALLOC: the page allocator sets it around direct
/// reclaim (so reclaim's own allocations do not reclaim again). It is not a memalloc scope
/// and does not narrow the caller's constraint; without this a maintainer reading the flags
/// of a recursion's holder would wonder where it came from.
fn in_reclaim_note(task_flags: u32, trigger: &Trigger) -> &'static str {
    if matches!(trigger, Trigger::Reclaim { .. })
        && task_flags & crate::kernel::decode::PF_MEMALLOC != 0
    {
        "; PF_MEMALLOC is set because the task is inside that reclaim"
    } else {
        ""
    }
}

pub(super) fn explain(cfg: &EngineConfig, occ: &Occurrence<'_>, tasks: &[TaskInfo]) -> String {
    let who = |t: &TaskInfo| format!("{} (pid {})", t.comm, t.pid);
    let bits = bits_words(cfg, occ.violated);
    let op = match occ.trigger {
        Trigger::Reclaim { memcg: true, .. } => "memcg reclaim".to_string(),
        Trigger::Reclaim { .. } => "direct reclaim".to_string(),
        other => other.name().to_string(),
    };
    let eff = occ.trigger_effective_gfp.unwrap_or(0);
    let Some(first) = tasks.first() else {
        return String::new();
    };
    match occ.kind {
        FindingKind::Recursion => format!(
            "{} holds pcpu_alloc_mutex while its allocation is constrained to gfp {:#x} \
             (task flags {:#x}{}), and entered {op} with effective gfp {eff:#x}, which \
             allows {bits} reclaim the constraint forbade: reclaim can now wait on {bits} \
             work that needs this allocation or pcpu_alloc_mutex (the recursion NOFS/NOIO \
             exists to prevent).",
            who(first),
            occ.constraint_gfp,
            first.task_flags,
            in_reclaim_note(first.task_flags, &occ.trigger)
        ),
        FindingKind::Window => format!(
            "{} holds pcpu_alloc_mutex while serving a pcpu_alloc with gfp {:#x}, which \
             forbids {bits} reclaim; under the mutex {op} allocates with effective gfp \
             {eff:#x} (task flags {:#x}), which allows it. {}",
            who(first),
            first.gfp.unwrap_or(occ.constraint_gfp),
            first.task_flags,
            if occ.reclaim_seen {
                "The same call then entered reclaim under the mutex (see its recursion \
                 finding): the gap the percpu fix series closes was used."
            } else {
                "No reclaim had begun at this allocation, but under memory pressure it can \
                 enter that reclaim with the mutex held (the gap the percpu fix series \
                 closes)."
            }
        ),
        FindingKind::CrossTask => {
            let waiter = tasks.get(1).map(who).unwrap_or_default();
            let unclassified = if occ.reason == Some(super::WaiterReason::Unclassified) {
                " Waiter unclassified (no stack): a workqueue worker in a NOIO scope, which \
                 may be the percpu balance worker (then it does not matter) or not."
            } else {
                ""
            };
            format!(
                "{} holds pcpu_alloc_mutex and is in {op} with effective gfp {eff:#x}, which \
                 may do {bits} reclaim, while {waiter}, constrained to gfp {:#x}, waits for \
                 the mutex: if that reclaim waits on {bits} work that depends on the waiter, \
                 neither makes progress.{unclassified}",
                who(first),
                occ.constraint_gfp
            )
        }
    }
}
