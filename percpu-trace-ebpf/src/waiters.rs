//! Waiters on pcpu_alloc_mutex (lock:contention_begin/end, filtered by its address;
//! `*_raw` as raw tracepoints).
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use percpu_trace_common::{activity, kind};

use crate::fields::Fields;
use crate::*;

#[tracepoint]
pub fn contention_begin(ctx: TracePointContext) -> u32 {
    on_contention_begin(&ctx)
}

#[raw_tracepoint]
pub fn contention_begin_raw(ctx: RawTracePointContext) -> i32 {
    on_contention_begin(&ctx) as i32
}

#[inline(always)]
fn on_contention_begin<C: Fields>(ctx: &C) -> u32 {
    if !is_pcpu_alloc_mutex(ctx) {
        return 0;
    }
    // Only a constrained waiter can be the waiter of a finding; the others are counted
    // (at their contention_end) and cost no record.
    if !waiter_constrained() {
        return 0;
    }
    let c = Common::new(current_task());
    let lflags = ctx
        .u32f(cfg!(tp_lock_flags_off), cfg!(raw_lock_flags_arg))
        .unwrap_or(0);
    let st = stack(ctx);
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
    on_contention_end(&ctx)
}

#[raw_tracepoint]
pub fn contention_end_raw(ctx: RawTracePointContext) -> i32 {
    on_contention_end(&ctx) as i32
}

#[inline(always)]
fn on_contention_end<C: Fields>(ctx: &C) -> u32 {
    if !is_pcpu_alloc_mutex(ctx) {
        return 0;
    }
    if !waiter_constrained() {
        count_activity(activity::UNCONSTRAINED_WAITS);
        return 0;
    }
    let c = Common::new(current_task());
    let ret = ctx
        .u32f(cfg!(tp_lock_ret_off), cfg!(raw_lock_ret_arg))
        .unwrap_or(0) as i32;
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
fn is_pcpu_alloc_mutex<C: Fields>(ctx: &C) -> bool {
    let addr = cfg!(mutex_addr);
    if addr == 0 {
        return false;
    }
    let lock = ctx
        .u64f(cfg!(tp_lock_addr_off), cfg!(raw_lock_addr_arg))
        .unwrap_or(0);
    lock == addr
}
