//! Tracepoint fields and the current task's `flags` at load-time offsets, read without a
//! helper call where possible.
//!
//! The verifier accepts a tracepoint context load only at an offset fixed in the
//! instruction, so `TracePointContext::read_at` with a CONFIG offset costs a
//! `bpf_probe_read` helper call per field. But the offsets of the fields read on hot paths
//! are the same on every kernel this tool supports (the tracefs formats of 6.1 to 7.3 and the
//! host's, in the kernel fixtures), so each reader has one arm per such offset with a direct
//! load at that constant offset, and the helper only for any other. CONFIG lives in the
//! frozen `.rodata` map, so the verifier knows the offset and checks only the arm taken.
//! The loads are inline assembly so LLVM cannot merge the arms back into one load at a
//! computed offset, which the verifier would refuse.
use aya_ebpf::{
    helpers::bpf_get_current_task_btf,
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};

/// One direct context load of `$size` (`u8`, `u32`, `u64`) at constant `$off`.
macro_rules! ctx_load {
    ($ctx:expr, $size:literal, $off:literal) => {{
        let v: u64;
        // SAFETY: a load from the tracepoint's own record (or raw argument array) inside
        // its size; the verifier checks the offset and size against the context.
        unsafe {
            core::arch::asm!(
                concat!("{v} = *(", $size, " *)({p} + ", $off, ")"),
                v = out(reg) v,
                p = in(reg) $ctx,
                options(readonly, nostack, preserves_flags),
            )
        };
        v
    }};
}

/// A `bool`/`u8` field (percpu_alloc_percpu's `is_atomic` at 17 on every supported kernel).
#[inline(always)]
pub fn u8_at(ctx: &TracePointContext, off: u32) -> Option<u8> {
    match off {
        17 => Some(ctx_load!(ctx.as_ptr(), "u8", 17) as u8),
        16 => Some(ctx_load!(ctx.as_ptr(), "u8", 16) as u8),
        // SAFETY: the helper checks the read.
        _ => unsafe { ctx.read_at(off as usize) }.ok(),
    }
}

/// The low 32 bits of a field (a gfp mask: `gfp_t` or `unsigned long`, little-endian):
/// percpu_alloc_percpu's `gfp_flags` at 72, vmscan's at 8 (7.x) or 16 (6.x).
#[inline(always)]
pub fn u32_at(ctx: &TracePointContext, off: u32) -> Option<u32> {
    match off {
        72 => Some(ctx_load!(ctx.as_ptr(), "u32", 72) as u32),
        8 => Some(ctx_load!(ctx.as_ptr(), "u32", 8) as u32),
        16 => Some(ctx_load!(ctx.as_ptr(), "u32", 16) as u32),
        // SAFETY: the helper checks the read.
        _ => unsafe { ctx.read_at(off as usize) }.ok(),
    }
}

/// A 64-bit field (lock:contention_begin/end's `lock_addr` at 8 on every supported kernel).
#[inline(always)]
pub fn u64_at(ctx: &TracePointContext, off: u32) -> Option<u64> {
    match off {
        8 => Some(ctx_load!(ctx.as_ptr(), "u64", 8)),
        // SAFETY: the helper checks the read.
        _ => unsafe { ctx.read_at(off as usize) }.ok(),
    }
}

/// A 32-bit field of the current task (`task_struct.flags`) at `off`, a direct load through
/// the BTF pointer `bpf_get_current_task_btf` returns (the verifier checks the offset
/// against task_struct's BTF). `flags` sits after thread_info, `__state`, `stack` and
/// `usage`: 44 on x86_64 from 6.1 to 7.3; the arms cover every 4-byte offset up to 128
/// for the other architectures and configurations. None past that (the caller reads it
/// with the helper).
#[inline(always)]
pub fn current_task_u32(off: u32) -> Option<u32> {
    macro_rules! arms {
        ($($o:literal)*) => {
            match off {
                $($o => {
                    // SAFETY: a trusted, non-null pointer to the running task.
                    let t = unsafe { bpf_get_current_task_btf() };
                    Some(ctx_load!(t, "u32", $o) as u32)
                })*
                _ => None,
            }
        };
    }
    arms!(0 4 8 12 16 20 24 28 32 36 40 44 48 52 56 60 64 68 72 76 80 84 88 92 96 100 104 108
          112 116 120 124 128)
}

/// Raw tracepoint argument `n` (`TP_PROTO` order): one direct load at `8 * n`. The kernel
/// refuses to attach a raw tracepoint program whose context loads reach past the
/// tracepoint's argument count, so each arm is its own constant-offset load and the
/// verifier sees only the arm the frozen CONFIG selects. None past the 12 arguments a
/// BPF program can receive.
#[inline(always)]
pub fn raw_arg(ctx: &RawTracePointContext, n: u32) -> Option<u64> {
    macro_rules! arms {
        ($($n:literal => $o:literal)*) => {
            match n {
                $($n => Some(ctx_load!(ctx.as_ptr(), "u64", $o)),)*
                _ => None,
            }
        };
    }
    arms!(0 => 0 1 => 8 2 => 16 3 => 24 4 => 32 5 => 40 6 => 48 7 => 56 8 => 64 9 => 72
          10 => 80 11 => 88)
}
