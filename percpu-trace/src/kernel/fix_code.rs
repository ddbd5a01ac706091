//! Evidence for the fix series read from the kernel's own machine code (through the
//! `read_kmem` reader, like `mutex_scan`). Pure functions over code bytes; x86_64 only (on
//! other architectures the constants are split across instructions and these say unknown).
//!
//! - backing-noio ("mm/percpu: avoid IO/FS reclaim in backing allocations") changes the mask
//!   pcpu_alloc applies to the gfp of every backing allocation made under pcpu_alloc_mutex:
//!   `gfp & (GFP_KERNEL | __GFP_NORETRY | __GFP_NOWARN)` before (0x12cc0 on 6.1..7.2),
//!   `gfp & (GFP_NOIO | __GFP_NORETRY | __GFP_NOWARN)` after (0x12c00). The constant is an
//!   immediate of pcpu_alloc's code (`and $0x12cc0,%eax` on the 6.18 host).
//! - populate-gfp ("mm/percpu: honor GFP constraints when populating chunks") makes
//!   pcpu_get_pages() allocate its pages array with the caller's gfp instead of GFP_KERNEL,
//!   and puts the page-table allocation of pcpu_map_pages() inside a memalloc scope derived
//!   from that gfp. Both are inlined into pcpu_populate_chunk: unpatched code loads
//!   GFP_KERNEL as an immediate (`mov $0xcc0,%esi` for pcpu_mem_zalloc on the 6.18 host) and
//!   never touches PF_MEMALLOC_NOIO/NOFS; patched code sets one of those task flags.
use super::{
    decode::GfpLayout,
    facts::{PatchEvidence, PatchId, PatchState},
};

/// Code of one function as read from kernel memory, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionCode {
    /// kallsyms name ("pcpu_alloc_noprof").
    pub name: String,
    /// The bytes from its start to the next symbol.
    pub bytes: Vec<u8>,
}

/// What gathering read for the fix evidence: code of pcpu_alloc and pcpu_populate_chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixCode {
    /// Architecture the code is for (`uname -m`).
    pub arch: String,
    /// pcpu_alloc_noprof (or pcpu_alloc on 6.1), or why not read.
    pub pcpu_alloc: Result<FunctionCode, String>,
    /// pcpu_populate_chunk, or why not read.
    pub populate: Result<FunctionCode, String>,
}

impl FixCode {
    /// Nothing read, for `why`.
    pub fn unread(arch: &str, why: &str) -> Self {
        FixCode {
            arch: arch.to_string(),
            pcpu_alloc: Err(why.to_string()),
            populate: Err(why.to_string()),
        }
    }
}

/// Offsets of `imm` as a little-endian 32-bit value in `code`.
pub fn imm32_at(code: &[u8], imm: u32) -> Vec<usize> {
    let pat = imm.to_le_bytes();
    code.windows(4)
        .enumerate()
        .filter(|(_, w)| *w == pat)
        .map(|(i, _)| i)
        .collect()
}

/// The backing-allocation masks before and after the fix for this gfp layout.
pub fn backing_masks(l: &GfpLayout) -> (u32, u32) {
    let extra = l.get("NORETRY") | l.get("NOWARN");
    let noio = l.direct_reclaim() | l.get("KSWAPD_RECLAIM");
    (l.gfp_kernel() | extra, noio | extra)
}

fn not_x86(arch: &str, what: &str) -> Option<PatchEvidence> {
    (arch != "x86_64").then(|| {
        PatchEvidence::new(
            PatchId::BackingNoio,
            PatchState::Unknown,
            format!("no decoder for {arch} code ({what} needs x86_64)"),
        )
    })
}

/// backing-noio from pcpu_alloc's code: which of the two masks it applies.
pub fn backing_noio(code: &FixCode, l: &GfpLayout) -> PatchEvidence {
    let id = PatchId::BackingNoio;
    let f = match &code.pcpu_alloc {
        Ok(f) => f,
        Err(e) => {
            return PatchEvidence::new(
                id,
                PatchState::Unknown,
                format!("code of pcpu_alloc not read: {e}"),
            )
        }
    };
    if let Some(e) = not_x86(&code.arch, "the gfp mask scan") {
        return e;
    }
    let (before, after) = backing_masks(l);
    let (b, a) = (imm32_at(&f.bytes, before), imm32_at(&f.bytes, after));
    let src = format!("code of {} ({} bytes, read_kmem)", f.name, f.bytes.len());
    match (b.is_empty(), a.is_empty()) {
        (false, true) => PatchEvidence::new(
            id,
            PatchState::Absent,
            format!("{src}: backing allocations get gfp & {before:#x} (GFP_KERNEL|__GFP_NORETRY|__GFP_NOWARN) at +{:#x}", b[0]),
        ),
        (true, false) => PatchEvidence::new(
            id,
            PatchState::Present,
            format!("{src}: backing allocations get gfp & {after:#x} (GFP_NOIO|__GFP_NORETRY|__GFP_NOWARN) at +{:#x}", a[0]),
        ),
        (false, false) => PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!("{src}: both masks {before:#x} and {after:#x} occur"),
        ),
        (true, true) => PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!("{src}: neither mask {before:#x} (before the fix) nor {after:#x} (after) occurs"),
        ),
    }
}

/// populate-gfp from pcpu_populate_chunk's code: a GFP_KERNEL immediate (the pages array)
/// without memalloc scope flags, or scope flags without GFP_KERNEL.
pub fn populate_gfp(code: &FixCode, l: &GfpLayout, pf_noio: u32, pf_nofs: u32) -> PatchEvidence {
    let id = PatchId::PopulateGfp;
    let f = match &code.populate {
        Ok(f) => f,
        Err(e) => {
            return PatchEvidence::new(
                id,
                PatchState::Unknown,
                format!("code of pcpu_populate_chunk not read: {e}"),
            )
        }
    };
    if code.arch != "x86_64" {
        return PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!(
                "no decoder for {} code (the scope scan needs x86_64)",
                code.arch
            ),
        );
    }
    let kernel = imm32_at(&f.bytes, l.gfp_kernel());
    let scope: Vec<usize> = [pf_noio, pf_nofs]
        .iter()
        .filter(|&&b| b != 0)
        .flat_map(|&b| imm32_at(&f.bytes, b))
        .collect();
    let src = format!("code of {} ({} bytes, read_kmem)", f.name, f.bytes.len());
    match (kernel.is_empty(), scope.is_empty()) {
        (false, true) => PatchEvidence::new(
            id,
            PatchState::Absent,
            format!("{src}: GFP_KERNEL ({:#x}) immediate at +{:#x} and no PF_MEMALLOC_NOIO/NOFS scope", l.gfp_kernel(), kernel[0]),
        ),
        (true, false) => PatchEvidence::new(
            id,
            PatchState::Present,
            format!("{src}: sets a memalloc scope (PF_MEMALLOC_NOIO/NOFS at +{:#x}), no GFP_KERNEL immediate", scope[0]),
        ),
        (false, false) => PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!("{src}: both a GFP_KERNEL immediate and memalloc scope flags"),
        ),
        (true, true) => PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!("{src}: neither a GFP_KERNEL immediate nor memalloc scope flags"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_ALLOC: &[u8] =
        include_bytes!("../../tests/fixtures/kernels/host-6.18/pcpu_alloc_noprof.bin");
    const HOST_POPULATE: &[u8] =
        include_bytes!("../../tests/fixtures/kernels/host-6.18/pcpu_populate_chunk.bin");

    fn code(alloc: &[u8], populate: &[u8]) -> FixCode {
        FixCode {
            arch: "x86_64".into(),
            pcpu_alloc: Ok(FunctionCode {
                name: "pcpu_alloc_noprof".into(),
                bytes: alloc.to_vec(),
            }),
            populate: Ok(FunctionCode {
                name: "pcpu_populate_chunk".into(),
                bytes: populate.to_vec(),
            }),
        }
    }

    #[test]
    fn host_6_18_code_is_unpatched() {
        let l = GfpLayout::default_for_6x();
        assert_eq!(backing_masks(&l), (0x12cc0, 0x12c00));
        let c = code(HOST_ALLOC, HOST_POPULATE);
        let b = backing_noio(&c, &l);
        assert_eq!(b.state, PatchState::Absent, "{}", b.evidence);
        assert!(b.evidence.contains("0x12cc0"), "{}", b.evidence);
        let p = populate_gfp(&c, &l, 0x80000, 0x40000);
        assert_eq!(p.state, PatchState::Absent, "{}", p.evidence);
    }

    #[test]
    fn patched_shapes_and_refusals() {
        let l = GfpLayout::default_for_6x();
        // and $0x12c00,%eax ; or $0x80000,0x2c(%rax) with the pages array on the caller's gfp.
        let alloc = [0x25, 0x00, 0x2c, 0x01, 0x00];
        let populate = [0x81, 0x48, 0x2c, 0x00, 0x00, 0x08, 0x00];
        let c = code(&alloc, &populate);
        assert_eq!(backing_noio(&c, &l).state, PatchState::Present);
        assert_eq!(
            populate_gfp(&c, &l, 0x80000, 0x40000).state,
            PatchState::Present
        );
        let mut arm = c.clone();
        arm.arch = "aarch64".into();
        assert_eq!(backing_noio(&arm, &l).state, PatchState::Unknown);
        let none = code(&[0x90; 16], &[0x90; 16]);
        assert_eq!(backing_noio(&none, &l).state, PatchState::Unknown);
        assert_eq!(
            populate_gfp(&none, &l, 0x80000, 0x40000).state,
            PatchState::Unknown
        );
        let unread = FixCode::unread("x86_64", "no privileges");
        assert!(backing_noio(&unread, &l).evidence.contains("no privileges"));
    }
}
