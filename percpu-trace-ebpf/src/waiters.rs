//! Waiters on pcpu_alloc_mutex (lock:contention_begin/end, filtered by its address).
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use percpu_trace_common::{activity, kind};

use crate::*;

#[tracepoint]
pub fn contention_begin(ctx: TracePointContext) -> u32 {
    if !is_pcpu_alloc_mutex(&ctx) {
        return 0;
    }
    // Only a constrained waiter can be the waiter of a finding; the others are counted
    // (at their contention_end) and cost no record.
    if !waiter_constrained() {
        return 0;
    }
    let c = Common::new(current_task());
    let lflags: u32 = unsafe { ctx.read_at(cfg!(tp_lock_flags_off) as usize) }.unwrap_or(0);
    let st = stack(&ctx);
    emit(
        &c,
        kind::CONTENTION_BEGIN,
        c.caller_gfp,
        0,
        st,
        cfg!(mutex_addr),
        lflags as u64,
        mutex_owner_pid() as u64,
    );
    0
}

#[tracepoint]
pub fn contention_end(ctx: TracePointContext) -> u32 {
    if !is_pcpu_alloc_mutex(&ctx) {
        return 0;
    }
    if !waiter_constrained() {
        count_activity(activity::UNCONSTRAINED_WAITS);
        return 0;
    }
    let c = Common::new(current_task());
    let ret: i32 = unsafe { ctx.read_at(cfg!(tp_lock_ret_off) as usize) }.unwrap_or(0);
    emit(
        &c,
        kind::CONTENTION_END,
        c.caller_gfp,
        0,
        -1,
        cfg!(mutex_addr),
        ret as i64 as u64,
        0,
    );
    0
}

/// A waiter whose wait can matter: in a NOIO/NOFS scope (IO_FLUSHER, a filesystem section;
/// the balance worker too, which the engine tells apart by its stack), or inside a
/// constrained pcpu_alloc (its gfp argument). Unchanged while it waits: it is blocked.
/// Decided before anything else is read: most waiters are neither.
#[inline(always)]
fn waiter_constrained() -> bool {
    if scope_constrained(task_flags(current_task())) {
        return true;
    }
    let (pid, _) = pid_tgid();
    any_live() && unsafe { TASKS.get(pid) }.is_some()
}

/// Whether this lock tracepoint is about pcpu_alloc_mutex (its address is known).
#[inline(always)]
fn is_pcpu_alloc_mutex(ctx: &TracePointContext) -> bool {
    let addr = cfg!(mutex_addr);
    if addr == 0 {
        return false;
    }
    let lock = direct_load::u64_at(ctx, cfg!(tp_lock_addr_off)).unwrap_or(0);
    lock == addr
}
