//! What a finding rests on, and the severity that earns: why a waiter's progress matters
//! to FS/IO ([`WaiterReason`]), what the engine could not be sure of ([`Doubt`]), and what
//! the engine learned from kernel stacks ([`StackFacts`]).
//!
//! # Waiters
//! A `cross_task` needs a waiter whose progress FS/IO may need. In order:
//! - its pcpu_alloc's gfp *argument* forbids IO/FS (`blkg_alloc(GFP_NOIO)` with the queue
//!   frozen): [`WaiterReason::GfpConstrained`];
//! - an IO_FLUSHER process (PR_SET_IO_FLUSHER sets PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE; it
//!   is part of the IO path): [`WaiterReason::IoFlusher`];
//! - a NOFS/NOIO memalloc scope (a filesystem transaction, a frozen queue):
//!   [`WaiterReason::Scope`].
//!
//! Not a reason: `pcpu_balance_workfn`'s own `memalloc_noio_save()`. The balance worker
//! protects itself with it and holds no FS/IO lock; the holder's reclaim does not depend on
//! it. It is told by its stack (a frame in `pcpu_balance_workfn`) or, with no stack, by its
//! flags: a workqueue worker in a NOIO scope outside any constrained pcpu_alloc (the only
//! other place that takes pcpu_alloc_mutex). Task flags the kernel side could not read give
//! no scope reason at all.
use super::{
    finding::{Doubt, WaiterReason},
    EngineConfig, FindingKind, Severity,
};
use crate::event::Frame;

/// What a kernel stack says about the task it was taken from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackFacts {
    /// A frame in `pcpu_balance_workfn`: the percpu balance worker.
    pub balance_worker: bool,
}

impl StackFacts {
    /// Facts from symbolized frames.
    pub fn of(frames: &[Frame]) -> Self {
        StackFacts {
            balance_worker: frames
                .iter()
                .any(|f| f.function.as_deref() == Some("pcpu_balance_workfn")),
        }
    }
}

/// The reason a waiter counts for `cross_task`, or `None` when it does not (see the module
/// documentation). `flags` must already be 0 when the flags are unknown.
pub(super) fn classify(
    cfg: &EngineConfig,
    caller_gfp: Option<u32>,
    flags: u32,
    stack: Option<StackFacts>,
) -> Option<WaiterReason> {
    if caller_gfp.is_some_and(|g| cfg.forbidden(g) != 0) {
        return Some(WaiterReason::GfpConstrained);
    }
    if !cfg.scope_constrained(flags) {
        return None;
    }
    // PF_LOCAL_THROTTLE (IO_FLUSHER) is never the balance worker.
    if cfg.io_flusher(flags) {
        return Some(WaiterReason::IoFlusher);
    }
    let balance_worker_flags = flags & cfg.pf_wq_worker != 0
        && flags & cfg.pf_memalloc_noio != 0
        && flags & cfg.pf_local_throttle == 0
        && caller_gfp.is_none();
    match stack {
        Some(s) if s.balance_worker => None,
        Some(_) => Some(WaiterReason::Scope),
        // Flags that fit the balance worker and no stack to tell: said, not dropped.
        None if balance_worker_flags => Some(WaiterReason::Unclassified),
        None => Some(WaiterReason::Scope),
    }
}

/// One step down, never above Warning: a finding with doubts is never High or Critical.
fn doubted(s: Severity) -> Severity {
    match s {
        Severity::Critical | Severity::High => Severity::Warning,
        Severity::Warning | Severity::Info => Severity::Info,
    }
}

/// The severity an occurrence earns: the kind's, for `cross_task` High only with a
/// gfp-constrained or IO_FLUSHER waiter, and lowered when anything is in doubt.
pub(super) fn grade(kind: FindingKind, reason: Option<WaiterReason>, doubts: &[Doubt]) -> Severity {
    let base = match (kind, reason) {
        (FindingKind::CrossTask, Some(WaiterReason::Unclassified)) => Severity::Info,
        (FindingKind::CrossTask, Some(WaiterReason::Scope) | None) => Severity::Warning,
        _ => kind.severity(),
    };
    if doubts.is_empty() {
        base
    } else {
        doubted(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WQ_NOIO: u32 = 0x4288060; // a kworker as seen on 7.2.13
    const IO_FLUSHER: u32 = 0x580100;

    #[test]
    fn waiters_are_classified_by_gfp_flags_and_stack() {
        let c = EngineConfig::default();
        let bw = Some(StackFacts {
            balance_worker: true,
        });
        let other = Some(StackFacts::default());
        assert_eq!(
            classify(&c, Some(0xc00), 0, None),
            Some(WaiterReason::GfpConstrained)
        );
        assert_eq!(
            classify(&c, Some(0x502cc0), IO_FLUSHER, None),
            Some(WaiterReason::IoFlusher)
        );
        assert_eq!(classify(&c, None, WQ_NOIO, bw), None);
        assert_eq!(
            classify(&c, None, WQ_NOIO, None),
            Some(WaiterReason::Unclassified)
        );
        // A loop worker (IO_FLUSHER kworker) is never the balance worker.
        assert_eq!(
            classify(&c, None, WQ_NOIO | 0x100000, None),
            Some(WaiterReason::IoFlusher)
        );
        assert_eq!(
            classify(&c, None, WQ_NOIO, other),
            Some(WaiterReason::Scope)
        );
        assert_eq!(classify(&c, None, 0x40000, None), Some(WaiterReason::Scope));
        assert_eq!(classify(&c, Some(0xcc0), 0, None), None);
    }

    #[test]
    fn doubts_cap_severity_at_warning() {
        use FindingKind::*;
        let lost = [Doubt::EventsLost];
        assert_eq!(grade(Recursion, None, &[]), Severity::Critical);
        assert_eq!(grade(Recursion, None, &lost), Severity::Warning);
        assert_eq!(
            grade(CrossTask, Some(WaiterReason::IoFlusher), &[]),
            Severity::High
        );
        assert_eq!(
            grade(CrossTask, Some(WaiterReason::Scope), &[]),
            Severity::Warning
        );
        assert_eq!(
            grade(CrossTask, Some(WaiterReason::GfpConstrained), &lost),
            Severity::Warning
        );
        assert_eq!(grade(Window, None, &lost), Severity::Info);
    }
}
