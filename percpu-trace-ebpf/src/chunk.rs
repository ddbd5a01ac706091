//! Chunk creation and population, and the allocations made under pcpu_alloc_mutex while
//! doing them (pcpu_get_vm_areas, vmalloc, kernel page tables): emitted for the holder only.
use aya_ebpf::programs::tracing::StackIdContext;
use aya_ebpf::{
    macros::{fentry, kprobe, raw_tracepoint, tracepoint},
    programs::{FEntryContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use percpu_trace_common::{kind, state, NO_ARG};

use crate::*;

#[kprobe]
pub fn chunk_create(ctx: ProbeContext) -> u32 {
    on_chunk_create(&ctx)
}

#[fentry]
pub fn fentry_chunk_create(ctx: FEntryContext) -> u32 {
    on_chunk_create(&ctx)
}

#[inline(always)]
fn on_chunk_create<C: Args>(ctx: &C) -> u32 {
    let c = Common::new(current_task());
    let gfp = arg_u64(ctx, cfg!(arg_create_gfp)) as u32;
    let st = stack(ctx);
    emit(&c, kind::CHUNK_CREATE, gfp, state::GFP_KNOWN, st, 0, 0, 0);
    0
}

#[tracepoint]
pub fn chunk_create_tp(ctx: TracePointContext) -> u32 {
    on_chunk_create_tp(&ctx)
}

#[raw_tracepoint]
pub fn chunk_create_raw(ctx: RawTracePointContext) -> i32 {
    on_chunk_create_tp(&ctx) as i32
}

#[inline(always)]
fn on_chunk_create_tp<C: crate::fields::Fields>(ctx: &C) -> u32 {
    let c = Common::new(current_task());
    let base = ctx
        .u64f(cfg!(tp_chunk_base_off), cfg!(raw_chunk_base_arg))
        .unwrap_or(0);
    let st = stack(ctx);
    emit(&c, kind::CHUNK_CREATE, 0, 0, st, base, 0, 0);
    0
}

#[kprobe]
pub fn chunk_populate(ctx: ProbeContext) -> u32 {
    on_chunk_populate(&ctx)
}

#[fentry]
pub fn fentry_chunk_populate(ctx: FEntryContext) -> u32 {
    on_chunk_populate(&ctx)
}

#[inline(always)]
fn on_chunk_populate<C: Args>(ctx: &C) -> u32 {
    let c = Common::new(current_task());
    let gfp = arg_u64(ctx, cfg!(arg_populate_gfp)) as u32;
    // Only a constrained caller's populate can become a finding; the balance worker's cannot.
    let st = if c.state & state::IN_PCPU_ALLOC != 0 {
        stack(ctx)
    } else {
        -1
    };
    // Positions from kernel/ (pcpu_populate_chunk(chunk, page_start, page_end, gfp) on
    // every version so far, but read from BTF like every other argument).
    let start = arg_u64(ctx, cfg!(arg_populate_start));
    let end = arg_u64(ctx, cfg!(arg_populate_end));
    emit(
        &c,
        kind::CHUNK_POPULATE,
        gfp,
        state::GFP_KNOWN,
        st,
        start,
        end,
        0,
    );
    0
}

// ---------------------------------------------------------------- allocations under the mutex

#[kprobe]
pub fn get_vm_areas(ctx: ProbeContext) -> u32 {
    on_get_vm_areas(&ctx)
}

#[fentry]
pub fn fentry_get_vm_areas(ctx: FEntryContext) -> u32 {
    on_get_vm_areas(&ctx)
}

#[inline(always)]
fn on_get_vm_areas<C: Args>(ctx: &C) -> u32 {
    let c = Common::new(current_task());
    let n = cfg!(arg_vm_areas_gfp);
    let (gfp, known) = if n == NO_ARG {
        (0, 0)
    } else {
        (arg_u64(ctx, n) as u32, state::GFP_KNOWN)
    };
    let st = if c.state & state::IN_PCPU_ALLOC != 0 {
        stack(ctx)
    } else {
        -1
    };
    let nr = arg_u64(ctx, cfg!(arg_vm_areas_nr));
    emit(&c, kind::GET_VM_AREAS, gfp, known, st, nr, 0, 0);
    0
}

#[kprobe]
pub fn vmalloc_node(ctx: ProbeContext) -> u32 {
    on_vmalloc(&ctx)
}

#[fentry]
pub fn fentry_vmalloc_node(ctx: FEntryContext) -> u32 {
    on_vmalloc(&ctx)
}

#[inline(always)]
fn on_vmalloc<C: Args>(ctx: &C) -> u32 {
    // Hot path for everyone else: one owner-word read, nothing written.
    let task = current_task();
    if mutex_state(task) & state::HOLDS_MUTEX == 0 {
        return 0;
    }
    let c = Common::new(task);
    let gfp = arg_u64(ctx, cfg!(arg_vmalloc_gfp)) as u32;
    let st = if c.state & state::IN_PCPU_ALLOC != 0 {
        stack(ctx)
    } else {
        -1
    };
    let size = arg_u64(ctx, cfg!(arg_vmalloc_size));
    emit(&c, kind::VMALLOC, gfp, state::GFP_KNOWN, st, size, 0, 0);
    0
}

#[kprobe]
pub fn pgtable_alloc(ctx: ProbeContext) -> u32 {
    on_pgtable_alloc(&ctx)
}

// One fentry program binds to one function, so each page-table level has its own.
#[fentry]
pub fn fentry_pte_alloc(ctx: FEntryContext) -> u32 {
    on_pgtable_alloc(&ctx)
}

#[fentry]
pub fn fentry_pmd_alloc(ctx: FEntryContext) -> u32 {
    on_pgtable_alloc(&ctx)
}

#[fentry]
pub fn fentry_pud_alloc(ctx: FEntryContext) -> u32 {
    on_pgtable_alloc(&ctx)
}

#[inline(always)]
fn on_pgtable_alloc<C: StackIdContext>(ctx: &C) -> u32 {
    let task = current_task();
    if mutex_state(task) & state::HOLDS_MUTEX == 0 {
        return 0;
    }
    let c = Common::new(task);
    let st = if c.state & state::IN_PCPU_ALLOC != 0 {
        stack(ctx)
    } else {
        -1
    };
    emit(&c, kind::PGTABLE_ALLOC, 0, 0, st, 0, 0, 0);
    0
}
