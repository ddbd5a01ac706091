//! The regression (9a5b183941b5, "mm, percpu: do not consider sleepable allocations
//! atomic") read from pcpu_alloc's own code, whatever the version says.
//!
//! The commit changed how pcpu_alloc decides `is_atomic`, which decides whether the caller
//! takes pcpu_alloc_mutex:
//! - before: `is_atomic = (gfp & GFP_KERNEL) != GFP_KERNEL`: the code compares with the
//!   GFP_KERNEL mask (x86_64 `cmp $0xcc0,%r32` after an `and`; aarch64 0xcc0 is not a bitmask
//!   immediate, so it is built by MOVZ or compared with `CMP #0xcc0`), so GFP_NOFS/GFP_NOIO
//!   callers are atomic and never take the mutex;
//! - after: `is_atomic = !gfpflags_allow_blocking(gfp)`: a test of the single bit
//!   __GFP_DIRECT_RECLAIM (0x400): x86_64 `and`/`test $0x400`, `test $0x4,%ah`, `bt $0xa`;
//!   aarch64 `AND`/`TST #0x400`, `TBZ`/`TBNZ #10`, `UBFX #10, #1`.
//!
//! Neither shape, or both, is unknown: the version table then decides (`analyze::regression`).
use super::{
    a64,
    decode::GfpLayout,
    facts::{PatchEvidence, PatchId, PatchState},
    fix_code::{self, Arch, FixCode},
    x86_alu::{self, AluOp},
};

/// Places in `code` that compare gfp with the GFP_KERNEL mask (the pre-regression shape).
fn mask_compares(arch: Arch, code: &[u8], gfp_kernel: u32) -> Vec<(usize, String)> {
    let mut found: Vec<(usize, String)> = match arch {
        Arch::X86_64 => x86_alu::find(code, &[AluOp::Cmp, AluOp::Test, AluOp::And], gfp_kernel)
            .into_iter()
            .map(|a| (a.offset, format!("{} ${gfp_kernel:#x}", a.op.name())))
            .collect(),
        Arch::Aarch64 => a64::constants(code)
            .into_iter()
            .filter(|&(_, _, v)| v == gfp_kernel as u64)
            .map(|(o, how, _)| {
                let what = match how {
                    a64::ConstUse::Compare => "cmp #",
                    a64::ConstUse::Mask => "and #",
                    _ => "mov #",
                };
                (o, format!("{what}{gfp_kernel:#x}"))
            })
            .collect(),
    };
    // The comparison itself is the best evidence: list it first.
    found.sort_by_key(|(o, text)| (!text.starts_with("cmp"), *o));
    found
}

/// Places in `code` that test the single bit `bit` (the post-regression shape).
fn bit_tests(arch: Arch, code: &[u8], bit: u32) -> Vec<(usize, String)> {
    let value = 1u32 << bit;
    match arch {
        Arch::X86_64 => x86_alu::find(code, &[AluOp::And, AluOp::Test, AluOp::Bt], value)
            .into_iter()
            .map(|a| {
                let shown = match a.op {
                    AluOp::Bt => format!("bt ${bit}"),
                    op => format!("{} ${value:#x}", op.name()),
                };
                (a.offset, shown)
            })
            .collect(),
        Arch::Aarch64 => a64::bit_tests(code, bit as u8),
    }
}

/// regression from pcpu_alloc's code (see the module doc).
pub fn regression(code: &FixCode, l: &GfpLayout) -> PatchEvidence {
    let id = PatchId::Regression;
    let (arch, f) = match fix_code::readable(id, code, &code.pcpu_alloc, "pcpu_alloc") {
        Ok(x) => x,
        Err(e) => return e,
    };
    let (kernel, reclaim) = (l.gfp_kernel(), l.direct_reclaim());
    if reclaim.count_ones() != 1 || kernel == 0 {
        return PatchEvidence::new(
            id,
            PatchState::Unknown,
            "gfp layout lacks __GFP_DIRECT_RECLAIM or GFP_KERNEL",
        );
    }
    let old = mask_compares(arch, &f.bytes, kernel);
    let new = bit_tests(arch, &f.bytes, reclaim.trailing_zeros());
    let src = fix_code::source_of(f);
    let at = |v: &[(usize, String)]| format!("{} at +{:#x}", v[0].1, v[0].0);
    match (old.is_empty(), new.is_empty()) {
        (true, false) => PatchEvidence::new(
            id,
            PatchState::Present,
            format!(
                "{src}: is_atomic = !gfpflags_allow_blocking(gfp), a __GFP_DIRECT_RECLAIM ({reclaim:#x}) test ({}), no GFP_KERNEL mask comparison",
                at(&new)
            ),
        ),
        (false, true) => PatchEvidence::new(
            id,
            PatchState::Absent,
            format!(
                "{src}: is_atomic = (gfp & GFP_KERNEL) != GFP_KERNEL ({}), no __GFP_DIRECT_RECLAIM test: NOFS/NOIO callers never take pcpu_alloc_mutex",
                at(&old)
            ),
        ),
        (false, false) => PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!(
                "{src}: both a GFP_KERNEL mask comparison ({}) and a __GFP_DIRECT_RECLAIM test ({})",
                at(&old),
                at(&new)
            ),
        ),
        (true, true) => PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!("{src}: neither a GFP_KERNEL ({kernel:#x}) mask comparison nor a __GFP_DIRECT_RECLAIM ({reclaim:#x}) test"),
        ),
    }
}
