//! Types shared by the percpu-trace eBPF programs and userspace.
//!
//! Everything here is `#[repr(C)]` plain integers so both sides agree on the layout without
//! transmuting into Rust enums: userspace converts with checks (see `percpu-trace::event`).
#![no_std]

/// Event kinds, as the `kind` field of [`RawEvent`].
pub mod kind {
    /// Entry of pcpu_alloc by a blocking caller whose effective gfp lacks __GFP_IO or __GFP_FS.
    /// arg0 = size, arg1 = align, arg2 = reserved.
    pub const PCPU_ALLOC_ENTER: u32 = 1;
    /// Return of a pcpu_alloc whose entry was reported. arg0 = returned pointer (0 = failure).
    pub const PCPU_ALLOC_EXIT: u32 = 2;
    /// percpu:percpu_alloc_percpu tracepoint (fires after the mutex is released), for a
    /// constrained non-atomic caller. arg0 = size, arg1 = align, arg2 = call site.
    pub const PCPU_ALLOC_TP: u32 = 3;
    /// A new chunk is being created (pcpu_create_chunk entry, or percpu:percpu_create_chunk).
    /// arg0 = chunk base address when known.
    pub const CHUNK_CREATE: u32 = 4;
    /// pcpu_populate_chunk entry. arg0 = page_start, arg1 = page_end.
    pub const CHUNK_POPULATE: u32 = 5;
    /// pcpu_get_vm_areas entry. arg0 = nr_vms. `gfp` valid only on kernels with the fix.
    pub const GET_VM_AREAS: u32 = 6;
    /// __vmalloc_node* entry by the holder of pcpu_alloc_mutex. arg0 = size.
    pub const VMALLOC: u32 = 7;
    /// Kernel page-table allocation (__pte_alloc_kernel / __pmd_alloc / __pud_alloc) by the
    /// holder of pcpu_alloc_mutex: GFP_PGTABLE_KERNEL, narrowed only by the task's scope.
    pub const PGTABLE_ALLOC: u32 = 8;
    /// Direct or memcg reclaim begins. arg0 = order. `gfp` = reclaim gfp.
    pub const RECLAIM_BEGIN: u32 = 9;
    /// Reclaim ends. arg0 = nr_reclaimed.
    pub const RECLAIM_END: u32 = 10;
    /// lock:contention_begin on pcpu_alloc_mutex. arg0 = lock address, arg1 = flags,
    /// arg2 = thread id of the mutex owner then (0: none or unknown).
    pub const CONTENTION_BEGIN: u32 = 11;
    /// lock:contention_end on pcpu_alloc_mutex. arg0 = lock address, arg1 = ret.
    pub const CONTENTION_END: u32 = 12;
    /// A task with state in the eBPF maps exited.
    pub const TASK_EXIT: u32 = 13;
    /// Highest valid kind.
    pub const MAX: u32 = 13;
}

/// Bits of [`RawEvent::state`].
pub mod state {
    /// The task held pcpu_alloc_mutex (owner word == current) at the event.
    pub const HOLDS_MUTEX: u32 = 1 << 0;
    /// The mutex address is known, so `HOLDS_MUTEX` is meaningful.
    pub const MUTEX_KNOWN: u32 = 1 << 1;
    /// The task is inside a constrained pcpu_alloc (entry seen by a probe); `caller_gfp` valid.
    pub const IN_PCPU_ALLOC: u32 = 1 << 2;
    /// The reclaim is memcg reclaim (try_to_free_mem_cgroup_pages).
    pub const MEMCG: u32 = 1 << 3;
    /// The `gfp` field is valid.
    pub const GFP_KNOWN: u32 = 1 << 4;
    /// percpu_alloc_percpu: the allocation was atomic (no mutex).
    pub const ATOMIC: u32 = 1 << 5;
    /// percpu_alloc_percpu / pcpu_alloc: from the reserved chunk.
    pub const RESERVED: u32 = 1 << 6;
}

/// Reasons an event or part of it was lost in the kernel: indexes of the `DROPS` per-CPU array.
pub mod drop_reason {
    /// The ring buffer was full.
    pub const RINGBUF_FULL: u32 = 0;
    /// No kernel stack could be taken: neither an id in the stack map nor the frames
    /// themselves (`bpf_get_stack` failed). A bucket collision is not a loss: the frames
    /// then travel inline in the record (see [`super::STACK_INLINE`]).
    pub const STACK: u32 = 1;
    /// The per-task state map was full.
    pub const TASK_MAP_FULL: u32 = 2;
    /// The reclaim map was full: a reclaim begin was sent whose end never will be.
    pub const RECLAIM_MAP_FULL: u32 = 3;
    /// Tracepoint mode: the slow-path mark map was full, so a call that did something under
    /// the mutex will not send its completion (the engine cannot pair the two).
    pub const SLOW_PATH_FULL: u32 = 4;
    /// Number of reasons.
    pub const COUNT: u32 = 5;
    /// Names, indexed by reason (recordings made before a reason existed lack its key).
    pub const NAMES: [&str; COUNT as usize] = [
        "ringbuf_full",
        "stack",
        "task_map_full",
        "reclaim_map_full",
        "slow_path_full",
    ];
}

/// Host-wide activity counted in the kernel (per-CPU counters, never a ring-buffer record):
/// what the tool saw even where nothing could become a finding.
pub mod activity {
    /// Every percpu allocation the entry probe or the percpu_alloc_percpu tracepoint saw.
    pub const ALLOCS_SEEN: u32 = 0;
    /// Of those, the ones that may block (and so may take pcpu_alloc_mutex).
    pub const BLOCKING_SEEN: u32 = 1;
    /// Constrained (NOFS/NOIO) blocking allocations of the traced processes, counted in the
    /// kernel whether or not a record is sent (only slow-path ones are).
    pub const CONSTRAINED: u32 = 2;
    /// Of those, constrained by their gfp argument (first reason that holds, in this order).
    pub const BY_GFP_ARGUMENT: u32 = 3;
    /// Constrained by an IO_FLUSHER scope (PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE).
    pub const BY_IO_FLUSHER: u32 = 4;
    /// Constrained by a NOIO scope (not IO_FLUSHER).
    pub const BY_NOIO_SCOPE: u32 = 5;
    /// Constrained by a NOFS scope.
    pub const BY_NOFS_SCOPE: u32 = 6;
    /// Waits for pcpu_alloc_mutex by tasks neither inside a constrained pcpu_alloc nor in
    /// a NOIO/NOFS scope (no record is sent for them: such a waiter cannot be the waiter of
    /// a finding), counted once per wait, at its contention_end.
    pub const UNCONSTRAINED_WAITS: u32 = 7;
    /// Number of counters.
    pub const COUNT: u32 = 8;
    /// Names, indexed by counter (the engine's `ActivityCounts` reads them by name).
    pub const NAMES: [&str; COUNT as usize] = [
        "percpu_allocations",
        "blocking_percpu_allocations",
        "constrained_allocations",
        "constrained_by_gfp_argument",
        "constrained_by_io_flusher",
        "constrained_by_noio_scope",
        "constrained_by_nofs_scope",
        "unconstrained_waits",
    ];
}

/// Constrained allocations of one process (tgid), counted in the kernel: the value of the
/// `PROCS` map (an LRU hash keyed by tgid, at most [`PROCS_MAX`] processes), so the tool
/// can say who made the constrained calls it counted without sending a record for each.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcCount {
    /// Constrained (NOFS/NOIO) blocking percpu allocations (added atomically).
    pub constrained: u64,
    /// comm of the thread that made the first one (NUL-padded).
    pub comm: [u8; 16],
}

/// Processes the `PROCS` map keeps (least recently counted ones are evicted first).
pub const PROCS_MAX: u32 = 1024;

/// Marker for "this function has no such argument" in [`ProbeConfig`] argument positions.
pub const NO_ARG: u32 = 0xff;

/// Bytes the `read_kmem` program copies per run (kernel text reads for discovery).
pub const KMEM_CHUNK: usize = 4096;

/// Name of the load-time global holding the [`ProbeConfig`].
pub const CONFIG_GLOBAL: &str = "CONFIG";

/// [`RawEvent::stack_id`] of a record whose kernel stack travels inline, right after the
/// event (the stack map's bucket for it held another stack): the record is then longer
/// than a `RawEvent`, and its remaining bytes are the return addresses, 8 bytes each.
pub const STACK_INLINE: i32 = -2;

/// Frames a kernel stack holds at most, inline or in the stack map (the kernel's
/// `PERF_MAX_STACK_DEPTH`, the depth of aya's stack map values).
pub const MAX_STACK_DEPTH: usize = 127;

/// One event from the kernel. 88 bytes, no padding holes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// bpf_ktime_get_ns() (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    /// Kind-specific (see [`kind`]).
    pub arg0: u64,
    /// Kind-specific.
    pub arg1: u64,
    /// Kind-specific.
    pub arg2: u64,
    /// One of [`kind`].
    pub kind: u32,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// current->flags at the event.
    pub task_flags: u32,
    /// The gfp of this event (allocation, reclaim), raw kernel bits.
    pub gfp: u32,
    /// gfp of the constrained pcpu_alloc the task is inside, when `IN_PCPU_ALLOC`.
    pub caller_gfp: u32,
    /// Bits of [`state`].
    pub state: u32,
    /// Kernel stack id in the `STACKS` map; [`STACK_INLINE`] when the frames follow the
    /// event in the same record; otherwise negative: none was taken.
    pub stack_id: i32,
    /// Task comm.
    pub comm: [u8; 16],
}

/// Everything the eBPF programs need to know about the running kernel, set at load time
/// from kallsyms, BTF and tracefs (never compiled in).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    /// Address of pcpu_alloc_mutex, 0 when unknown (then no holder/waiter detection).
    pub mutex_addr: u64,
    /// Mask applied to the owner word before comparing it with current (~7, or ~1 on RT).
    pub mutex_owner_mask: u64,
    /// Byte offset of the owner word inside struct mutex.
    pub mutex_owner_off: u32,
    /// Byte offset of task_struct.flags.
    pub task_flags_off: u32,
    /// __GFP_IO bit.
    pub gfp_io: u32,
    /// __GFP_FS bit.
    pub gfp_fs: u32,
    /// __GFP_DIRECT_RECLAIM bit.
    pub gfp_direct_reclaim: u32,
    /// PF_MEMALLOC_NOFS.
    pub pf_memalloc_nofs: u32,
    /// PF_MEMALLOC_NOIO.
    pub pf_memalloc_noio: u32,
    /// Only trace this tgid (0 = all).
    pub filter_tgid: u32,
    /// pcpu_alloc argument positions (0-based).
    pub arg_pcpu_size: u32,
    /// See `arg_pcpu_size`.
    pub arg_pcpu_align: u32,
    /// See `arg_pcpu_size`; `NO_ARG` when absent (6.1's __alloc_percpu_gfp).
    pub arg_pcpu_reserved: u32,
    /// See `arg_pcpu_size`.
    pub arg_pcpu_gfp: u32,
    /// pcpu_create_chunk gfp position.
    pub arg_create_gfp: u32,
    /// pcpu_populate_chunk gfp position.
    pub arg_populate_gfp: u32,
    /// pcpu_populate_chunk page_start position.
    pub arg_populate_start: u32,
    /// pcpu_populate_chunk page_end position.
    pub arg_populate_end: u32,
    /// pcpu_get_vm_areas gfp position, `NO_ARG` on unpatched kernels.
    pub arg_vm_areas_gfp: u32,
    /// pcpu_get_vm_areas nr_vms position.
    pub arg_vm_areas_nr: u32,
    /// __vmalloc_node* gfp position.
    pub arg_vmalloc_gfp: u32,
    /// __vmalloc_node* size position.
    pub arg_vmalloc_size: u32,
    /// percpu:percpu_alloc_percpu field offsets.
    pub tp_pcpu_gfp_off: u32,
    /// See `tp_pcpu_gfp_off`.
    pub tp_pcpu_atomic_off: u32,
    /// See `tp_pcpu_gfp_off`.
    pub tp_pcpu_reserved_off: u32,
    /// See `tp_pcpu_gfp_off`.
    pub tp_pcpu_size_off: u32,
    /// See `tp_pcpu_gfp_off`.
    pub tp_pcpu_align_off: u32,
    /// See `tp_pcpu_gfp_off`.
    pub tp_pcpu_call_site_off: u32,
    /// percpu:percpu_create_chunk base_addr offset.
    pub tp_chunk_base_off: u32,
    /// vmscan:mm_vmscan_{direct,memcg}_reclaim_begin gfp_flags offset.
    pub tp_reclaim_gfp_off: u32,
    /// vmscan:mm_vmscan_{direct,memcg}_reclaim_begin order offset.
    pub tp_reclaim_order_off: u32,
    /// vmscan:mm_vmscan_{direct,memcg}_reclaim_end nr_reclaimed offset.
    pub tp_reclaim_nr_off: u32,
    /// lock:contention_begin lock_addr offset (contention_end has it at the same place).
    pub tp_lock_addr_off: u32,
    /// lock:contention_begin flags offset.
    pub tp_lock_flags_off: u32,
    /// lock:contention_end ret offset.
    pub tp_lock_ret_off: u32,
    /// PF_LOCAL_THROTTLE: with PF_MEMALLOC_NOIO, the mark of an IO_FLUSHER process (the
    /// in-kernel constrained-by-cause counters need it).
    pub pf_local_throttle: u32,
    /// 1 when pcpu_alloc is seen only by the percpu_alloc_percpu tracepoint (tracepoint
    /// mode): a constrained allocation is then sent only if its task was seen on the slow
    /// path since its last one (see the eBPF `SLOW_PATH` map).
    pub tracepoint_mode: u32,
    /// Byte offset of task_struct.pid (0: unknown; the owner of the mutex is then not
    /// named at contention_begin).
    pub task_pid_off: u32,
    /// 1 when the running kernel has BTF, so the current task's `flags` can be a direct
    /// load through `bpf_get_current_task_btf` instead of a `bpf_probe_read` (0: the
    /// helper read; userspace also falls back to 0 when a program using it fails to load).
    pub task_btf: u32,
    /// Argument positions (`TP_PROTO` order, from BTF) of the same tracepoint fields for the
    /// raw tracepoint programs (`*_raw`), which the plan prefers: their release needs no
    /// RCU grace period (a perf tracepoint event's does, ~40 ms each, serialized) and a hit
    /// builds no perf record. percpu:percpu_alloc_percpu gfp_flags.
    pub raw_pcpu_gfp_arg: u32,
    /// See `raw_pcpu_gfp_arg`: percpu_alloc_percpu is_atomic.
    pub raw_pcpu_atomic_arg: u32,
    /// See `raw_pcpu_gfp_arg`: percpu_alloc_percpu reserved.
    pub raw_pcpu_reserved_arg: u32,
    /// See `raw_pcpu_gfp_arg`: percpu_alloc_percpu size.
    pub raw_pcpu_size_arg: u32,
    /// See `raw_pcpu_gfp_arg`: percpu_alloc_percpu align.
    pub raw_pcpu_align_arg: u32,
    /// See `raw_pcpu_gfp_arg`: percpu_alloc_percpu call_site.
    pub raw_pcpu_call_site_arg: u32,
    /// See `raw_pcpu_gfp_arg`: percpu_create_chunk base_addr.
    pub raw_chunk_base_arg: u32,
    /// See `raw_pcpu_gfp_arg`: mm_vmscan_{direct,memcg}_reclaim_begin gfp_flags.
    pub raw_reclaim_gfp_arg: u32,
    /// See `raw_pcpu_gfp_arg`: mm_vmscan_{direct,memcg}_reclaim_begin order.
    pub raw_reclaim_order_arg: u32,
    /// See `raw_pcpu_gfp_arg`: mm_vmscan_{direct,memcg}_reclaim_end nr_reclaimed.
    pub raw_reclaim_nr_arg: u32,
    /// See `raw_pcpu_gfp_arg`: contention_begin/end lock (the same position in both).
    pub raw_lock_addr_arg: u32,
    /// See `raw_pcpu_gfp_arg`: contention_begin flags.
    pub raw_lock_flags_arg: u32,
    /// See `raw_pcpu_gfp_arg`: contention_end ret.
    pub raw_lock_ret_arg: u32,
}

#[cfg(feature = "user")]
// SAFETY: plain integers, no padding holes, valid for any bit pattern.
unsafe impl aya::Pod for RawEvent {}
#[cfg(feature = "user")]
// SAFETY: plain integers, no padding holes, valid for any bit pattern.
unsafe impl aya::Pod for ProbeConfig {}
#[cfg(feature = "user")]
// SAFETY: integers and a byte array, no padding holes, valid for any bit pattern.
unsafe impl aya::Pod for ProcCount {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_holes() {
        assert_eq!(core::mem::size_of::<RawEvent>(), 88);
        assert_eq!(core::mem::size_of::<ProbeConfig>() % 8, 0);
        assert_eq!(core::mem::size_of::<ProbeConfig>(), 16 + 50 * 4);
    }
}
