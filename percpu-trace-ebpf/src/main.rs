//! eBPF programs of percpu-trace.
//!
//! Each program is a thin entry point over a `try_*` function. Everything kernel-specific
//! (argument positions, struct offsets, tracepoint field offsets, gfp bits, the mutex
//! address) arrives in the load-time global `CONFIG`; nothing is compiled in.
//! Filtering happens here: an unconstrained caller outside the slow path costs at most one
//! map lookup and produces no ring-buffer record.
#![no_std]
// An atomic add on a shared map value (`live_add`): the BPF target has no RMW atomics in
// core::sync::atomic, but LLVM lowers the intrinsic to the BPF atomic add.
#![feature(core_intrinsics)]
// Constant-offset tracepoint context loads (`direct_load`).
#![feature(asm_experimental_arch)]
#![allow(internal_features)]
#![no_main]

use aya_ebpf::programs::tracing::StackIdContext;
use aya_ebpf::EbpfContext;
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
    programs::{FEntryContext, ProbeContext},
};
use percpu_trace_common::{
    activity, drop_reason, state, ProbeConfig, ProcCount, RawEvent, MAX_STACK_DEPTH, NO_ARG,
    PROCS_MAX, STACK_INLINE,
};

/// Load-time configuration (see `ProbeConfig`). Userspace sets it with `set_global`.
#[no_mangle]
static CONFIG: ProbeConfig = ProbeConfig {
    mutex_addr: 0,
    mutex_owner_mask: 0,
    mutex_owner_off: 0,
    task_flags_off: 0,
    gfp_io: 0,
    gfp_fs: 0,
    gfp_direct_reclaim: 0,
    pf_memalloc_nofs: 0,
    pf_memalloc_noio: 0,
    filter_tgid: 0,
    arg_pcpu_size: 0,
    arg_pcpu_align: 0,
    arg_pcpu_reserved: 0,
    arg_pcpu_gfp: 0,
    arg_create_gfp: 0,
    arg_populate_gfp: 0,
    arg_populate_start: 0,
    arg_populate_end: 0,
    arg_vm_areas_gfp: 0,
    arg_vm_areas_nr: 0,
    arg_vmalloc_gfp: 0,
    arg_vmalloc_size: 0,
    tp_pcpu_gfp_off: 0,
    tp_pcpu_atomic_off: 0,
    tp_pcpu_reserved_off: 0,
    tp_pcpu_size_off: 0,
    tp_pcpu_align_off: 0,
    tp_pcpu_call_site_off: 0,
    tp_chunk_base_off: 0,
    tp_reclaim_gfp_off: 0,
    tp_reclaim_order_off: 0,
    tp_reclaim_nr_off: 0,
    tp_lock_addr_off: 0,
    tp_lock_flags_off: 0,
    tp_lock_ret_off: 0,
    pf_local_throttle: 0,
    tracepoint_mode: 0,
    task_pid_off: 0,
    task_btf: 0,
    raw_pcpu_gfp_arg: 0,
    raw_pcpu_atomic_arg: 0,
    raw_pcpu_reserved_arg: 0,
    raw_pcpu_size_arg: 0,
    raw_pcpu_align_arg: 0,
    raw_pcpu_call_site_arg: 0,
    raw_chunk_base_arg: 0,
    raw_reclaim_gfp_arg: 0,
    raw_reclaim_order_arg: 0,
    raw_reclaim_nr_arg: 0,
    raw_lock_addr_arg: 0,
    raw_lock_flags_arg: 0,
    raw_lock_ret_arg: 0,
};

/// Reads one field of CONFIG so the verifier sees a load from .rodata, not a constant.
macro_rules! cfg {
    ($f:ident) => {{
        // SAFETY: CONFIG is a plain static; volatile keeps the load from being folded
        // into the compile-time zero, since userspace rewrites .rodata before load.
        #[allow(unused_unsafe)]
        let v = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(CONFIG.$f)) };
        v
    }};
}

/// What a task inside a constrained pcpu_alloc looks like.
/// A constrained pcpu_alloc in progress (entry seen, return not yet). Its entry record is
/// kept here, not sent: only a call that goes on to something that can become a finding
/// (the slow path under the mutex, a wait for it, reclaim) sends it, just before that event
/// (see [`emit`]); the fast path stays in the kernel as a counter.
#[repr(C)]
#[derive(Clone, Copy)]
struct TaskState {
    /// Entry time (the deferred record's timestamp).
    ts_ns: u64,
    size: u64,
    align: u64,
    gfp: u32,
    /// current->flags at entry.
    flags: u32,
    /// Extra state bits of the entry record (GFP_KNOWN, RESERVED).
    state: u32,
    /// 1 once the entry record was sent (so its return is sent too).
    sent: u32,
    /// Calls that began on this task inside this one and have not returned (an atomic
    /// pcpu_alloc from an interrupt, say): their returns are not this call's.
    nested: u32,
    _pad: u32,
}

/// bpf_ringbuf_query: bytes not yet consumed.
const BPF_RB_AVAIL_DATA: u64 = 0;
/// bpf_ringbuf_submit: do not wake the reader.
const BPF_RB_NO_WAKEUP: u64 = 1;
/// bpf_ringbuf_submit: wake the reader now.
const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// Unread bytes past which a record wakes the reader (1/16 of the buffer).
const WAKEUP_BYTES: u64 = 256 * 1024;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Kernel stacks by id. Never cleared: an id keeps its stack for the whole run, so
/// userspace reads each id once and an event can never be given another event's stack.
/// A stack whose bucket holds another one travels inline instead (`STACK_SCRATCH`), so a
/// full or colliding map loses nothing; the size only keeps inline records rare.
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(4096, 0);

/// An event with its kernel stack inline: the record is `ev` and the first `len - 88`
/// bytes of `ips` (see `percpu_trace_common::STACK_INLINE`).
#[repr(C)]
struct InlineStack {
    ev: RawEvent,
    ips: [u64; MAX_STACK_DEPTH],
    /// Bytes of `ips` that `bpf_get_stack` filled.
    len: u64,
}

/// Per-CPU room for one inline stack, between `stack` (which takes it while the program
/// still has its context) and `write_event` (which sends it after any deferred entry
/// record, so records stay in order). Both run in the same program run on one CPU.
#[map]
static STACK_SCRATCH: PerCpuArray<InlineStack> = PerCpuArray::with_max_entries(1, 0);

/// Tasks inside a constrained, blocking pcpu_alloc, keyed by thread id.
#[map]
static TASKS: HashMap<u32, TaskState> = HashMap::with_max_entries(16384, 0);

/// Tracepoint mode: tasks that made an event since their last blocking
/// percpu_alloc_percpu (a chunk created under the mutex, a wait, reclaim). Their next
/// blocking allocation is sent, constrained or not: it is the completion of the call the
/// engine pairs with that event, and it clears the mark (so no later call is paired with
/// it). Not LRU: an evicted mark would be lost silently; a full map is counted
/// (`SLOW_PATH_FULL`), and marks are counted in `LIVE` so the exit program deletes them.
#[map]
static SLOW_PATH: HashMap<u32, u32> = HashMap::with_max_entries(8192, 0);

/// Tasks whose reclaim begin was reported, so the matching end is reported too.
#[map]
static RECLAIMING: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

/// Lost events per reason (see `drop_reason`).
/// Entries in `TASKS` and `RECLAIMING` together. The process-exit program runs on every
/// exit of the host and needs to look in those maps only when this is not zero (almost
/// never: constrained calls and reclaims are short): one array read instead of two cold
/// hash lookups for the exits of untracked tasks. A missed return leaves it high, which
/// costs only those lookups again.
#[map]
static LIVE: Array<u64> = Array::with_max_entries(1, 0);

/// `LIVE += delta` (wrapping: -1 is `u64::MAX`), atomically: programs run on every CPU.
#[inline(always)]
fn live_add(delta: u64) {
    if let Some(p) = LIVE.get_ptr_mut(0) {
        // SAFETY: a map value, 8-byte aligned, valid for this program run. The result is
        // not used, so this is the plain BPF atomic add (any kernel).
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                p, delta,
            )
        };
    }
}

/// Tracked-task entries exist (see `LIVE`).
#[inline(always)]
fn any_live() -> bool {
    LIVE.get(0).is_some_and(|v| *v != 0)
}

/// Inserts `v` for `pid` in a tracked-task map, counting a new key in `LIVE` (an existing
/// key, a stale entry of a missed return, is overwritten without counting).
#[inline(always)]
fn track<V>(map: &HashMap<u32, V>, pid: u32, v: &V) -> bool {
    const BPF_NOEXIST: u64 = 1;
    if map.insert(pid, v, BPF_NOEXIST).is_ok() {
        live_add(1);
        true
    } else {
        map.insert(pid, v, 0).is_ok()
    }
}

/// Removes `pid` from a tracked-task map, uncounting it in `LIVE` if it was there.
#[inline(always)]
fn untrack<V>(map: &HashMap<u32, V>, pid: u32) {
    if map.remove(pid).is_ok() {
        live_add(u64::MAX);
    }
}

#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(drop_reason::COUNT, 0);

/// Host-wide activity (see `percpu_trace_common::activity`): one per-CPU value holding
/// every counter, so a program that counts two of them (every percpu allocation counts
/// "seen" and most "blocking") does one map lookup.
#[map]
static ACTIVITY: PerCpuArray<[u64; activity::COUNT as usize]> = PerCpuArray::with_max_entries(1, 0);

/// Constrained allocations by process (see `ProcCount`): one lookup and an atomic add per
/// constrained call, an insert for a process's first.
#[map]
static PROCS: LruHashMap<u32, ProcCount> = LruHashMap::with_max_entries(PROCS_MAX, 0);

/// Counts a constrained call of process `tgid` in `PROCS`.
#[inline(always)]
fn count_process(tgid: u32) {
    if let Some(v) = PROCS.get_ptr_mut(&tgid) {
        // SAFETY: the value `get_ptr_mut` returned (its first field, 8-byte aligned), valid
        // for this program run. The result is unused: the plain BPF atomic add (any kernel).
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                core::ptr::addr_of_mut!((*v).constrained),
                1,
            )
        };
        return;
    }
    let v = ProcCount {
        constrained: 1,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    // BPF_NOEXIST: a thread of the same process that inserted first is not overwritten
    // (this one call is then not counted: a race of two first calls).
    let _ = PROCS.insert(&tgid, &v, 1);
}

#[inline(always)]
fn count_activity(what: u32) {
    count_activities(what, u32::MAX);
}

/// Counts `a` and, unless it is `u32::MAX`, `b`, with one lookup.
#[inline(always)]
fn count_activities(a: u32, b: u32) {
    if let Some(v) = ACTIVITY.get_ptr_mut(0) {
        // SAFETY: this CPU's value, no concurrent writer on this CPU; indexes checked.
        let v = unsafe { &mut *v };
        if let Some(x) = v.get_mut(a as usize) {
            *x += 1;
        }
        if let Some(x) = v.get_mut(b as usize) {
            *x += 1;
        }
    }
}

#[inline(always)]
fn count_drop(reason: u32) {
    if let Some(p) = DROPS.get_ptr_mut(reason) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn current_task() -> u64 {
    unsafe { bpf_get_current_task() }
}

/// `flags` of `task`, which is always the current task (`current_task()`).
#[inline(always)]
fn task_flags(task: u64) -> u32 {
    let off = cfg!(task_flags_off);
    if cfg!(task_btf) != 0 {
        if let Some(v) = direct_load::current_task_u32(off) {
            return v;
        }
    }
    unsafe { bpf_probe_read_kernel((task + off as u64) as *const u32) }.unwrap_or(0)
}

/// State bits describing whether `task` holds pcpu_alloc_mutex right now.
#[inline(always)]
fn mutex_state(task: u64) -> u32 {
    let addr = cfg!(mutex_addr);
    if addr == 0 {
        return 0;
    }
    let off = cfg!(mutex_owner_off) as u64;
    let owner = unsafe { bpf_probe_read_kernel((addr + off) as *const u64) }.unwrap_or(0);
    if owner & cfg!(mutex_owner_mask) == task {
        state::MUTEX_KNOWN | state::HOLDS_MUTEX
    } else {
        state::MUTEX_KNOWN
    }
}

/// The gfp after the task's memalloc scope narrows it (what current_gfp_context() does).
/// The thread id of pcpu_alloc_mutex's owner, 0 when it has none or it cannot be read.
#[inline(always)]
fn mutex_owner_pid() -> u32 {
    let (addr, pid_off) = (cfg!(mutex_addr), cfg!(task_pid_off));
    if addr == 0 || pid_off == 0 {
        return 0;
    }
    let off = cfg!(mutex_owner_off) as u64;
    let owner = unsafe { bpf_probe_read_kernel((addr + off) as *const u64) }.unwrap_or(0);
    let task = owner & cfg!(mutex_owner_mask);
    if task == 0 {
        return 0;
    }
    unsafe { bpf_probe_read_kernel((task + pid_off as u64) as *const u32) }.unwrap_or(0)
}

#[inline(always)]
fn effective_gfp(gfp: u32, flags: u32) -> u32 {
    if flags & cfg!(pf_memalloc_noio) != 0 {
        gfp & !(cfg!(gfp_io) | cfg!(gfp_fs))
    } else if flags & cfg!(pf_memalloc_nofs) != 0 {
        gfp & !cfg!(gfp_fs)
    } else {
        gfp
    }
}

/// Counts a constrained allocation by its first reason, in the engine's order: the gfp
/// argument, then an IO_FLUSHER scope, a NOIO scope, a NOFS scope.
#[inline(always)]
fn count_constrained(gfp: u32, flags: u32, tgid: u32) {
    let both = cfg!(gfp_io) | cfg!(gfp_fs);
    let noio = cfg!(pf_memalloc_noio);
    let flusher = noio | cfg!(pf_local_throttle);
    let why = if gfp & both != both {
        activity::BY_GFP_ARGUMENT
    } else if flags & flusher == flusher {
        activity::BY_IO_FLUSHER
    } else if flags & noio != 0 {
        activity::BY_NOIO_SCOPE
    } else {
        activity::BY_NOFS_SCOPE
    };
    count_activities(activity::CONSTRAINED, why);
    count_process(tgid);
}

#[inline(always)]
fn is_constrained(eff_gfp: u32) -> bool {
    let both = cfg!(gfp_io) | cfg!(gfp_fs);
    eff_gfp & both != both
}

#[inline(always)]
fn scope_constrained(flags: u32) -> bool {
    flags & (cfg!(pf_memalloc_noio) | cfg!(pf_memalloc_nofs)) != 0
}

/// False when a tgid filter is set and this task is not in it.
#[inline(always)]
fn tgid_wanted(tgid: u32) -> bool {
    let f = cfg!(filter_tgid);
    f == 0 || f == tgid
}

#[inline(always)]
fn pid_tgid() -> (u32, u32) {
    let v = bpf_get_current_pid_tgid();
    (v as u32, (v >> 32) as u32)
}

/// Fields every event carries; the caller fills the kind-specific ones.
#[derive(Clone, Copy)]
struct Common {
    pid: u32,
    tgid: u32,
    flags: u32,
    state: u32,
    caller_gfp: u32,
}

impl Common {
    #[inline(always)]
    fn new(task: u64) -> Self {
        let (pid, tgid) = pid_tgid();
        let mut c = Common {
            pid,
            tgid,
            flags: task_flags(task),
            state: mutex_state(task),
            caller_gfp: 0,
        };
        if let Some(t) = unsafe { TASKS.get(pid) } {
            c.state |= state::IN_PCPU_ALLOC;
            c.caller_gfp = t.gfp;
        }
        c
    }

    #[inline(always)]
    fn holds(&self) -> bool {
        self.state & state::HOLDS_MUTEX != 0
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn emit(
    c: &Common,
    kind: u32,
    gfp: u32,
    extra_state: u32,
    stack_id: i32,
    a0: u64,
    a1: u64,
    a2: u64,
) {
    if c.state & state::IN_PCPU_ALLOC != 0 {
        send_deferred_entry(c);
    }
    if cfg!(tracepoint_mode) != 0
        && kind != percpu_trace_common::kind::PCPU_ALLOC_TP
        && kind != percpu_trace_common::kind::TASK_EXIT
        && unsafe { SLOW_PATH.get(c.pid) }.is_none()
        && !track(&SLOW_PATH, c.pid, &1)
    {
        count_drop(drop_reason::SLOW_PATH_FULL);
    }
    write_event(
        c,
        unsafe { bpf_ktime_get_ns() },
        c.flags,
        kind,
        gfp,
        extra_state,
        stack_id,
        a0,
        a1,
        a2,
    );
}

/// Sends the task's pcpu_alloc entry record if it was kept back: the engine must see the
/// call begin before anything that happens inside it.
#[inline(always)]
fn send_deferred_entry(c: &Common) {
    let Some(t) = TASKS.get_ptr_mut(c.pid) else {
        return;
    };
    // SAFETY: a value of this map, valid for this program run.
    let t = unsafe { &mut *t };
    if t.sent != 0 {
        return;
    }
    t.sent = 1;
    let (ts, flags, gfp, st, size, align) = (t.ts_ns, t.flags, t.gfp, t.state, t.size, t.align);
    // The entry record says what the call was, before anything happened in it. It carries
    // no mutex state: it is sent now, not at entry, and "not holding" would end the hold
    // the task may have taken since.
    let entry = Common {
        state: state::IN_PCPU_ALLOC,
        ..*c
    };
    write_event(
        &entry,
        ts,
        flags,
        percpu_trace_common::kind::PCPU_ALLOC_ENTER,
        gfp,
        st,
        -1,
        size,
        align,
        0,
    );
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn write_event(
    c: &Common,
    ts_ns: u64,
    task_flags: u32,
    kind: u32,
    gfp: u32,
    extra_state: u32,
    stack_id: i32,
    a0: u64,
    a1: u64,
    a2: u64,
) {
    let ev = RawEvent {
        ts_ns,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        arg0: a0,
        arg1: a1,
        arg2: a2,
        kind,
        pid: c.pid,
        tgid: c.tgid,
        task_flags,
        gfp,
        caller_gfp: c.caller_gfp,
        state: c.state | extra_state,
        stack_id,
        comm: bpf_get_current_comm().unwrap_or([0u8; 16]),
    };
    if stack_id == STACK_INLINE {
        write_inline(ev);
        return;
    }
    match EVENTS.reserve::<RawEvent>(0) {
        Some(mut entry) => {
            entry.write(ev);
            entry.submit(wakeup_flags());
        }
        None => count_drop(drop_reason::RINGBUF_FULL),
    }
}

/// Waking the reader on every record (an irq_work each) was most of this program's cost;
/// userspace drains on a short timer instead, and is woken only when the buffer starts
/// to fill.
#[inline(always)]
fn wakeup_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) > WAKEUP_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// Sends `ev` followed by the frames `inline_stack` left in `STACK_SCRATCH`.
#[inline(always)]
fn write_inline(ev: RawEvent) {
    let Some(s) = STACK_SCRATCH.get_ptr_mut(0) else {
        count_drop(drop_reason::STACK);
        return;
    };
    // SAFETY: this CPU's value of the scratch map, valid for this program run.
    let s = unsafe { &mut *s };
    s.ev = ev;
    // A bound the verifier can see: the record is the event and the filled frames.
    let len = s.len.min((MAX_STACK_DEPTH * 8) as u64) as usize;
    let bytes = core::mem::size_of::<RawEvent>() + len;
    // SAFETY: `ev` and `ips` are contiguous in the repr(C) struct (88 is a multiple of
    // 8), and `bytes` stays within them.
    let rec = unsafe { core::slice::from_raw_parts((s as *const InlineStack).cast::<u8>(), bytes) };
    if EVENTS.output::<[u8]>(rec, wakeup_flags()).is_err() {
        count_drop(drop_reason::RINGBUF_FULL);
    }
}

#[inline(always)]
fn stack<C: StackIdContext>(ctx: &C) -> i32 {
    match ctx.get_stackid(&STACKS, 0) {
        Ok(id) => id as i32,
        // The bucket holds another stack (the map is never cleared, see `STACKS`): the
        // frames go inline in this event's record.
        Err(_) => inline_stack(ctx),
    }
}

/// Takes the current kernel stack into `STACK_SCRATCH` for `write_inline`.
#[inline(always)]
fn inline_stack<C: StackIdContext>(ctx: &C) -> i32 {
    let Some(s) = STACK_SCRATCH.get_ptr_mut(0) else {
        count_drop(drop_reason::STACK);
        return -1;
    };
    // SAFETY: this CPU's value of the scratch map, valid for this program run; `ips` is
    // writable memory of exactly the size passed.
    let n = unsafe {
        aya_ebpf::helpers::bpf_get_stack(
            ctx.as_ptr(),
            core::ptr::addr_of_mut!((*s).ips).cast(),
            (MAX_STACK_DEPTH * 8) as u32,
            0,
        )
    };
    if n <= 0 {
        count_drop(drop_reason::STACK);
        return -1;
    }
    // SAFETY: as above.
    unsafe { (*s).len = n as u64 };
    STACK_INLINE
}

/// Function arguments by position, the same way for kprobes and fentry programs, so each
/// probe point has one implementation and two thin entry points.
trait Args: StackIdContext {
    /// Argument `n` (0-based) as u64; 0 for `NO_ARG`.
    fn argn(&self, n: u32) -> u64;
}

impl Args for ProbeContext {
    #[inline(always)]
    fn argn(&self, n: u32) -> u64 {
        // Constant-offset reads only: the verifier rejects a load through a ctx pointer
        // moved by a run-time offset, which is what `arg(n)` with a variable n compiles to.
        let a = [
            self.arg::<u64>(0).unwrap_or(0),
            self.arg::<u64>(1).unwrap_or(0),
            self.arg::<u64>(2).unwrap_or(0),
            self.arg::<u64>(3).unwrap_or(0),
            self.arg::<u64>(4).unwrap_or(0),
            self.arg::<u64>(5).unwrap_or(0),
        ];
        pick(&a, n)
    }
}

impl Args for FEntryContext {
    #[inline(always)]
    fn argn(&self, n: u32) -> u64 {
        // bpf_get_func_arg checks n against the traced function's own argument count at
        // run time; a direct ctx load past the last argument fails verification, and the
        // functions differ (pcpu_create_chunk has 1, pcpu_get_vm_areas 4 or 5).
        if n == NO_ARG {
            return 0;
        }
        let mut v: u64 = 0;
        // SAFETY: ctx is the trampoline context; v is a valid out pointer.
        let r = unsafe { aya_ebpf::helpers::generated::bpf_get_func_arg(self.as_ptr(), n, &mut v) };
        if r == 0 {
            v
        } else {
            0
        }
    }
}

/// Selects argument `n` by comparisons (no indexed load); 0 for NO_ARG or out of range.
#[inline(always)]
fn pick(a: &[u64; 6], n: u32) -> u64 {
    if n == 0 {
        a[0]
    } else if n == 1 {
        a[1]
    } else if n == 2 {
        a[2]
    } else if n == 3 {
        a[3]
    } else if n == 4 {
        a[4]
    } else if n == 5 {
        a[5]
    } else {
        0
    }
}

#[inline(always)]
fn arg_u64<C: Args>(ctx: &C, n: u32) -> u64 {
    ctx.argn(n)
}

mod alloc;
mod chunk;
mod direct_load;
mod fields;
mod lifetime;
mod reclaim;
mod waiters;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
