//! pcpu_alloc entry and return (kprobe/kretprobe or fentry/fexit) and the
//! percpu_alloc_percpu tracepoint: who is a constrained caller.
use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe, raw_tracepoint, tracepoint},
    programs::{
        FEntryContext, FExitContext, ProbeContext, RawTracePointContext, RetProbeContext,
        TracePointContext,
    },
};
use percpu_trace_common::{activity, drop_reason, kind, state};

use crate::fields::Fields;
use crate::*;

#[kprobe]
pub fn pcpu_alloc_enter(ctx: ProbeContext) -> u32 {
    try_pcpu_alloc_enter(&ctx).unwrap_or(0)
}

#[fentry]
pub fn fentry_pcpu_alloc(ctx: FEntryContext) -> u32 {
    try_pcpu_alloc_enter(&ctx).unwrap_or(0)
}

#[inline(always)]
fn try_pcpu_alloc_enter<C: Args>(ctx: &C) -> Option<u32> {
    let gfp = arg_u64(ctx, cfg!(arg_pcpu_gfp)) as u32;
    let (pid, tgid) = pid_tgid();
    if gfp & cfg!(gfp_direct_reclaim) == 0 {
        count_activity(activity::ALLOCS_SEEN);
        // Atomic: never takes the mutex. From an interrupt it may run on top of a
        // constrained call of this task: its return must not end that call.
        nest(pid);
        return None;
    }
    count_activities(activity::ALLOCS_SEEN, activity::BLOCKING_SEEN);
    let task = current_task();
    let flags = task_flags(task);
    if !is_constrained(effective_gfp(gfp, flags)) {
        // A blocking call runs in task context, never on top of another pcpu_alloc of the
        // same task: an entry still there is stale (its return, or a nested call's, was
        // missed) and would lend this call its constraint. Forget it.
        if any_live() && unsafe { TASKS.get(pid) }.is_some() {
            untrack(&TASKS, pid);
        }
        return None;
    }
    // `--pid` narrows what is counted, not what is tracked: a constrained caller of another
    // process may wait for the mutex a selected holder reclaims under (or hold it while a
    // selected task waits), and the engine needs its gfp to judge that. It is sent only
    // if it goes on to such an event.
    if tgid_wanted(tgid) {
        count_constrained(gfp, flags, tgid);
    }
    let reserved = if arg_u64(ctx, cfg!(arg_pcpu_reserved)) & 1 != 0 {
        state::RESERVED
    } else {
        0
    };
    // Kept, not sent: `emit` sends it before the first event of this call that can become
    // a finding (most constrained calls are served from populated chunks and end here).
    let entry = TaskState {
        ts_ns: unsafe { bpf_ktime_get_ns() },
        size: arg_u64(ctx, cfg!(arg_pcpu_size)),
        align: arg_u64(ctx, cfg!(arg_pcpu_align)),
        gfp,
        flags,
        state: state::GFP_KNOWN | reserved,
        sent: 0,
        nested: 0,
        _pad: 0,
    };
    if !track(&TASKS, pid, &entry) {
        count_drop(drop_reason::TASK_MAP_FULL);
    }
    Some(0)
}

/// Pairs entries and returns by nesting: a call that begins while this task is inside a
/// constrained one (only an atomic call from an interrupt can) is counted, so its return
/// is told apart from the constrained call's. One lookup, nothing written, for tasks not
/// inside a constrained call. A missed nested return leaves the count high and swallows
/// the constrained call's own return; the entry then lasts until the task's next blocking
/// call (which clears it), next constrained call or exit, and the miss is counted as a loss.
#[inline(always)]
fn nest(pid: u32) {
    if !any_live() {
        return;
    }
    if let Some(t) = TASKS.get_ptr_mut(pid) {
        // SAFETY: a value of this map, valid for this program run.
        unsafe { (*t).nested += 1 };
    }
}

#[kretprobe]
pub fn pcpu_alloc_exit(ctx: RetProbeContext) -> u32 {
    pcpu_alloc_return(|| ctx.ret::<u64>())
}

#[fexit]
pub fn fexit_pcpu_alloc(ctx: FExitContext) -> u32 {
    pcpu_alloc_return(|| ctx.ret::<u64>().unwrap_or(0))
}

#[inline(always)]
fn pcpu_alloc_return(ret: impl FnOnce() -> u64) -> u32 {
    let (pid, _) = pid_tgid();
    let sent = match TASKS.get_ptr_mut(pid) {
        Some(t) => {
            // SAFETY: a value of this map, valid for this program run.
            let t = unsafe { &mut *t };
            if t.nested != 0 {
                // The return of a call nested in this one (see `nest`), not of this one.
                t.nested -= 1;
                return 0;
            }
            t.sent != 0
        }
        None => return 0,
    };
    // A call whose entry was never sent ends unseen, as it began.
    if sent {
        let c = Common::new(current_task());
        untrack(&TASKS, pid);
        emit(&c, kind::PCPU_ALLOC_EXIT, c.caller_gfp, 0, -1, ret(), 0, 0);
    } else {
        untrack(&TASKS, pid);
    }
    0
}

#[tracepoint]
pub fn percpu_alloc_tp(ctx: TracePointContext) -> u32 {
    try_percpu_alloc_tp(&ctx).unwrap_or(0)
}

#[raw_tracepoint]
pub fn percpu_alloc_raw(ctx: RawTracePointContext) -> i32 {
    try_percpu_alloc_tp(&ctx).unwrap_or(0) as i32
}

#[inline(always)]
fn try_percpu_alloc_tp<C: Fields>(ctx: &C) -> Option<u32> {
    let atomic = ctx.u8f(cfg!(tp_pcpu_atomic_off), cfg!(raw_pcpu_atomic_arg));
    if atomic != Some(0) {
        // Atomic (never takes the mutex), or unreadable: seen, nothing more.
        count_activity(activity::ALLOCS_SEEN);
        return None;
    }
    count_activities(activity::ALLOCS_SEEN, activity::BLOCKING_SEEN);
    // gfp_flags is `gfp_t` (4 bytes) or `unsigned long`: little-endian, the low word is the mask.
    let gfp = ctx.u32f(cfg!(tp_pcpu_gfp_off), cfg!(raw_pcpu_gfp_arg))?;
    let task = current_task();
    let flags = task_flags(task);
    let (pid, tgid) = pid_tgid();
    let constrained = is_constrained(effective_gfp(gfp, flags));
    if constrained && tgid_wanted(tgid) {
        count_constrained(gfp, flags, tgid);
    }
    // Sent only after a slow-path event of this task (see SLOW_PATH), whatever its gfp and
    // process: it completes the call that event belongs to. The rest are counted.
    if !any_live() || unsafe { SLOW_PATH.get(pid) }.is_none() {
        return None;
    }
    untrack(&SLOW_PATH, pid);
    let reserved = ctx
        .u8f(cfg!(tp_pcpu_reserved_off), cfg!(raw_pcpu_reserved_arg))
        .unwrap_or(0);
    let size = ctx
        .u64f(cfg!(tp_pcpu_size_off), cfg!(raw_pcpu_size_arg))
        .unwrap_or(0);
    let align = ctx
        .u64f(cfg!(tp_pcpu_align_off), cfg!(raw_pcpu_align_arg))
        .unwrap_or(0);
    let site = ctx
        .u64f(cfg!(tp_pcpu_call_site_off), cfg!(raw_pcpu_call_site_arg))
        .unwrap_or(0);
    let c = Common::new(task);
    let rs = if reserved != 0 { state::RESERVED } else { 0 };
    emit(
        &c,
        kind::PCPU_ALLOC_TP,
        gfp,
        state::GFP_KNOWN | rs,
        -1,
        size,
        align,
        site,
    );
    Some(0)
}
