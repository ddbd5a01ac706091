//! One reader for a tracepoint's fields, whichever way its program is attached: a perf
//! tracepoint program reads its record at the byte offset of the format file, a raw
//! tracepoint program (`*_raw`, what the plan prefers) the `TP_PROTO` argument at the
//! position BTF gives. Each program body is written once over [`Fields`], with one entry
//! point per attach type; each call names both places and the context picks its own.
use aya_ebpf::programs::{tracing::StackIdContext, RawTracePointContext, TracePointContext};

use crate::direct_load;

/// A tracepoint program's context.
pub trait Fields: StackIdContext {
    /// A `bool`/`u8` field: at record offset `off`, or argument `arg`.
    fn u8f(&self, off: u32, arg: u32) -> Option<u8>;
    /// The low 32 bits of a field (gfp masks, `int`s).
    fn u32f(&self, off: u32, arg: u32) -> Option<u32>;
    /// A 64-bit field (addresses, sizes).
    fn u64f(&self, off: u32, arg: u32) -> Option<u64>;
}

impl Fields for TracePointContext {
    #[inline(always)]
    fn u8f(&self, off: u32, _arg: u32) -> Option<u8> {
        direct_load::u8_at(self, off)
    }
    #[inline(always)]
    fn u32f(&self, off: u32, _arg: u32) -> Option<u32> {
        direct_load::u32_at(self, off)
    }
    #[inline(always)]
    fn u64f(&self, off: u32, _arg: u32) -> Option<u64> {
        direct_load::u64_at(self, off)
    }
}

// The kernel passes every argument zero-extended to 64 bits (`bool` as 0/1, `int` as its
// 32-bit pattern), so the narrower reads are truncations.
impl Fields for RawTracePointContext {
    #[inline(always)]
    fn u8f(&self, _off: u32, arg: u32) -> Option<u8> {
        direct_load::raw_arg(self, arg).map(|v| v as u8)
    }
    #[inline(always)]
    fn u32f(&self, _off: u32, arg: u32) -> Option<u32> {
        direct_load::raw_arg(self, arg).map(|v| v as u32)
    }
    #[inline(always)]
    fn u64f(&self, _off: u32, arg: u32) -> Option<u64> {
        direct_load::raw_arg(self, arg)
    }
}
