//! Direct and memcg reclaim begin/end (vmscan tracepoints; `*_raw` as raw tracepoints).
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use percpu_trace_common::{drop_reason, kind, state};

use crate::fields::Fields;
use crate::*;

#[tracepoint]
pub fn direct_reclaim_begin(ctx: TracePointContext) -> u32 {
    reclaim_begin(&ctx, 0)
}

#[raw_tracepoint]
pub fn direct_reclaim_begin_raw(ctx: RawTracePointContext) -> i32 {
    reclaim_begin(&ctx, 0) as i32
}

#[tracepoint]
pub fn memcg_reclaim_begin(ctx: TracePointContext) -> u32 {
    reclaim_begin(&ctx, state::MEMCG)
}

#[raw_tracepoint]
pub fn memcg_reclaim_begin_raw(ctx: RawTracePointContext) -> i32 {
    reclaim_begin(&ctx, state::MEMCG) as i32
}

#[inline(always)]
fn reclaim_begin<C: Fields>(ctx: &C, extra: u32) -> u32 {
    let c = Common::new(current_task());
    let interesting =
        c.holds() || c.state & state::IN_PCPU_ALLOC != 0 || scope_constrained(c.flags);
    // `--pid`: a holder's reclaim is kept whatever its process: when the selected
    // process waits for the mutex, the holder's reclaim is half of the cross_task finding.
    if !interesting || !(c.holds() || tgid_wanted(c.tgid)) {
        return 0;
    }
    let gfp = ctx
        .u32f(cfg!(tp_reclaim_gfp_off), cfg!(raw_reclaim_gfp_arg))
        .unwrap_or(0);
    let order = ctx
        .u32f(cfg!(tp_reclaim_order_off), cfg!(raw_reclaim_order_arg))
        .unwrap_or(0);
    if !track(&RECLAIMING, c.pid, &1) {
        // Its reclaim_end will not be sent: a loss the engine must hear of.
        count_drop(drop_reason::RECLAIM_MAP_FULL);
    }
    let st = stack(ctx);
    emit(
        &c,
        kind::RECLAIM_BEGIN,
        gfp,
        state::GFP_KNOWN | extra,
        st,
        order as u64,
        0,
        0,
    );
    0
}

#[tracepoint]
pub fn direct_reclaim_end(ctx: TracePointContext) -> u32 {
    reclaim_end(&ctx, 0)
}

#[raw_tracepoint]
pub fn direct_reclaim_end_raw(ctx: RawTracePointContext) -> i32 {
    reclaim_end(&ctx, 0) as i32
}

#[tracepoint]
pub fn memcg_reclaim_end(ctx: TracePointContext) -> u32 {
    reclaim_end(&ctx, state::MEMCG)
}

#[raw_tracepoint]
pub fn memcg_reclaim_end_raw(ctx: RawTracePointContext) -> i32 {
    reclaim_end(&ctx, state::MEMCG) as i32
}

#[inline(always)]
fn reclaim_end<C: Fields>(ctx: &C, extra: u32) -> u32 {
    let (pid, _) = pid_tgid();
    if unsafe { RECLAIMING.get(pid) }.is_none() {
        return 0;
    }
    untrack(&RECLAIMING, pid);
    let c = Common::new(current_task());
    let nr = ctx
        .u64f(cfg!(tp_reclaim_nr_off), cfg!(raw_reclaim_nr_arg))
        .unwrap_or(0);
    emit(&c, kind::RECLAIM_END, 0, extra, -1, nr, 0, 0);
    0
}
