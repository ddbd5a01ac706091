//! Task exit (forget per-task state) and the discovery helper that reads kernel memory.
use aya_ebpf::{
    helpers::bpf_probe_read_kernel_buf,
    macros::{map, raw_tracepoint, tracepoint},
    maps::Array,
    programs::{RawTracePointContext, TracePointContext},
};
use percpu_trace_common::{kind, KMEM_CHUNK};

use crate::*;

#[tracepoint]
pub fn task_exit(_ctx: TracePointContext) -> u32 {
    on_task_exit()
}

#[raw_tracepoint]
pub fn task_exit_raw(_ctx: RawTracePointContext) -> i32 {
    on_task_exit() as i32
}

#[inline(always)]
fn on_task_exit() -> u32 {
    // Every exit on the host runs this: nothing to look up while no task is tracked.
    if !any_live() {
        return 0;
    }
    let (pid, _) = pid_tgid();
    // Look up first (lock-free) and delete only what exists (a delete takes the bucket
    // lock). Each lookup is tested on its own: testing two lookups' pointers together
    // would make the compiler OR two map-value pointers, which the verifier refuses.
    let mut tracked = false;
    if unsafe { TASKS.get(pid) }.is_some() {
        untrack(&TASKS, pid);
        tracked = true;
    }
    if unsafe { RECLAIMING.get(pid) }.is_some() {
        untrack(&RECLAIMING, pid);
        tracked = true;
    }
    if unsafe { SLOW_PATH.get(pid) }.is_some() {
        // A mark only: the engine needs no exit for it.
        untrack(&SLOW_PATH, pid);
    }
    if !tracked {
        return 0;
    }
    let c = Common::new(current_task());
    emit(&c, kind::TASK_EXIT, 0, 0, -1, 0, 0, 0);
    0
}

// ---------------------------------------------------------------- discovery helper

/// Kernel memory copied by `read_kmem`.
#[map]
static KMEM: Array<[u8; KMEM_CHUNK]> = Array::with_max_entries(1, 0);

/// Copies KMEM_CHUNK bytes of kernel memory at args[0] into `KMEM`. Never attached: userspace
/// runs it with BPF_PROG_TEST_RUN to read kernel text when /proc/kcore is unavailable
/// (finding pcpu_alloc_mutex's address from the code that locks it).
#[raw_tracepoint]
pub fn read_kmem(ctx: RawTracePointContext) -> i32 {
    let addr: u64 = ctx.arg(0);
    let Some(buf) = KMEM.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: buf points at the map value, KMEM_CHUNK bytes; the helper checks the source.
    match unsafe { bpf_probe_read_kernel_buf(addr as *const u8, &mut *buf) } {
        Ok(()) => 0,
        Err(_) => 2,
    }
}
