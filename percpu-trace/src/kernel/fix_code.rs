//! Evidence for the fix series read from the kernel's own machine code: live through the
//! `read_kmem` reader (like `mutex_scan`), offline from a kernel image. Pure functions over
//! code bytes, for x86_64 (immediates of `x86_alu` forms and raw imm32) and aarch64 (`a64`:
//! MOVZ/MOVK-built constants, bitmask immediates, TBZ/TBNZ, BL targets). The regression
//! itself is read from the same code by `atomic_code`.
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
//!   never touches PF_MEMALLOC_NOIO/NOFS; patched code sets one of those task flags, or (7.3)
//!   calls `memalloc_apply_gfp_scope()` for it, which [`FixCode::scope_helpers`] names.
use super::{
    a64,
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
    /// Address of its first byte (kallsyms or the image's symbol table; 0 when unknown), for
    /// call targets.
    pub addr: u64,
    /// Where the bytes came from, for evidence ("read_kmem", "image").
    pub source: String,
}

/// What gathering read for the fix evidence: code of pcpu_alloc and pcpu_populate_chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixCode {
    /// Architecture the code is for (`uname -m`).
    pub arch: String,
    /// The first of [`PCPU_ALLOC_NAMES`] the kernel has, or why not read.
    pub pcpu_alloc: Result<FunctionCode, String>,
    /// pcpu_populate_chunk, or why not read.
    pub populate: Result<FunctionCode, String>,
    /// Code of [`MAP_PAGES_NAMES`] functions the compiler kept out of line (arm64 7.3 keeps
    /// the populate path's scope in `__pcpu_map_pages`); empty when inlined or not read.
    pub map_pages: Vec<FunctionCode>,
    /// Functions that enter a memalloc scope, by name and address, for calls from
    /// pcpu_populate_chunk (`memalloc_apply_gfp_scope`; see [`SCOPE_HELPERS`]). Empty when
    /// the symbols are not known.
    pub scope_helpers: Vec<(String, u64)>,
}

/// Names whose code holds pcpu_alloc's, in order of preference: the 6.10+ name, the static
/// `pcpu_alloc` of older kernels, and the exported `__alloc_percpu_gfp` wrapper, which holds
/// the code when a compiler inlined `pcpu_alloc` into it. Live gathering and image readers
/// both read the first one the kernel's symbols have.
pub const PCPU_ALLOC_NAMES: &[&str] = &["pcpu_alloc_noprof", "pcpu_alloc", "__alloc_percpu_gfp"];

/// The populate function's name.
pub const POPULATE_NAMES: &[&str] = &["pcpu_populate_chunk"];

/// Page-mapping functions pcpu_populate_chunk calls, read when they are symbols of their own.
pub const MAP_PAGES_NAMES: &[&str] = &["pcpu_map_pages", "__pcpu_map_pages"];

/// Out-of-line functions that put the caller in a PF_MEMALLOC_NOIO/NOFS scope derived from
/// a gfp (the 7.3 populate fix calls the first one).
pub const SCOPE_HELPERS: &[&str] = &["memalloc_apply_gfp_scope"];

/// The architectures the code scans can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    /// x86_64.
    X86_64,
    /// aarch64 (arm64).
    Aarch64,
}

impl Arch {
    /// From `uname -m` (or the image's machine), None for one without a decoder here.
    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "x86_64" | "amd64" => Some(Arch::X86_64),
            "aarch64" | "arm64" => Some(Arch::Aarch64),
            _ => None,
        }
    }
}

/// Offsets and a description of each place where `code` uses `value` as a constant: any
/// imm32 on x86_64; on aarch64 a MOVZ/MOVK-built value or an immediate operand.
pub fn constant_sites(arch: Arch, code: &[u8], value: u32) -> Vec<(usize, String)> {
    match arch {
        Arch::X86_64 => imm32_at(code, value)
            .into_iter()
            .map(|o| (o, format!("imm32 {value:#x}")))
            .collect(),
        Arch::Aarch64 => a64::constants(code)
            .into_iter()
            .filter(|&(_, _, v)| v == value as u64)
            .map(|(o, how, _)| (o, format!("{how:?} {value:#x}").to_lowercase()))
            .collect(),
    }
}

/// Places where `code` sets task flag `flag` (a scope save): any imm32 of it on x86_64
/// (`or $flag,0x2c(%rax)`), `ORR #flag` on aarch64.
pub fn flag_set_sites(arch: Arch, code: &[u8], flag: u32) -> Vec<usize> {
    match arch {
        Arch::X86_64 => imm32_at(code, flag),
        Arch::Aarch64 => a64::constants(code)
            .into_iter()
            .filter(|&(_, how, v)| how == a64::ConstUse::Set && v == flag as u64)
            .map(|(o, _, _)| o)
            .collect(),
    }
}

/// Offsets of direct calls from `f` to `target` (`call rel32` / `BL`), when `f.addr` is known.
pub fn calls_to(arch: Arch, f: &FunctionCode, target: u64) -> Vec<usize> {
    if f.addr == 0 || target == 0 {
        return Vec::new();
    }
    let b = &f.bytes;
    match arch {
        Arch::X86_64 => (0..b.len().saturating_sub(4))
            .filter(|&i| {
                b[i] == 0xe8 && {
                    let rel = i32::from_le_bytes([b[i + 1], b[i + 2], b[i + 3], b[i + 4]]);
                    f.addr
                        .wrapping_add(i as u64 + 5)
                        .wrapping_add(rel as i64 as u64)
                        == target
                }
            })
            .collect(),
        Arch::Aarch64 => b
            .chunks_exact(4)
            .enumerate()
            .filter_map(|(i, c)| {
                let w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                // BL: 100101 imm26, offset in words, signed.
                let off = (((w & 0x03ff_ffff) << 6) as i32 >> 6) as i64 * 4;
                (w >> 26 == 0b100101
                    && f.addr.wrapping_add(i as u64 * 4).wrapping_add(off as u64) == target)
                    .then_some(i * 4)
            })
            .collect(),
    }
}

impl FixCode {
    /// Nothing read, for `why`.
    pub fn unread(arch: &str, why: &str) -> Self {
        FixCode {
            arch: arch.to_string(),
            pcpu_alloc: Err(why.to_string()),
            populate: Err(why.to_string()),
            map_pages: Vec::new(),
            scope_helpers: Vec::new(),
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

/// The function and its architecture, or the evidence saying why there is none.
pub(crate) fn readable<'a>(
    id: PatchId,
    code: &'a FixCode,
    f: &'a Result<FunctionCode, String>,
    what: &str,
) -> Result<(Arch, &'a FunctionCode), PatchEvidence> {
    let f = f.as_ref().map_err(|e| {
        PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!("code of {what} not read: {e}"),
        )
    })?;
    let arch = Arch::from_name(&code.arch).ok_or_else(|| {
        PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!(
                "no decoder for {} code (x86_64 and aarch64 only)",
                code.arch
            ),
        )
    })?;
    Ok((arch, f))
}

/// "code of pcpu_alloc_noprof (2624 bytes, read_kmem)".
pub(crate) fn source_of(f: &FunctionCode) -> String {
    format!("code of {} ({} bytes, {})", f.name, f.bytes.len(), f.source)
}

/// backing-noio from pcpu_alloc's code: which of the two masks it applies.
pub fn backing_noio(code: &FixCode, l: &GfpLayout) -> PatchEvidence {
    let id = PatchId::BackingNoio;
    let (arch, f) = match readable(id, code, &code.pcpu_alloc, "pcpu_alloc") {
        Ok(x) => x,
        Err(e) => return e,
    };
    let (before, after) = backing_masks(l);
    let (b, a) = (
        constant_sites(arch, &f.bytes, before),
        constant_sites(arch, &f.bytes, after),
    );
    let src = source_of(f);
    match (b.is_empty(), a.is_empty()) {
        (false, true) => PatchEvidence::new(
            id,
            PatchState::Absent,
            format!("{src}: backing allocations get gfp & {before:#x} (GFP_KERNEL|__GFP_NORETRY|__GFP_NOWARN), {} at +{:#x}", b[0].1, b[0].0),
        ),
        (true, false) => PatchEvidence::new(
            id,
            PatchState::Present,
            format!("{src}: backing allocations get gfp & {after:#x} (GFP_NOIO|__GFP_NORETRY|__GFP_NOWARN), {} at +{:#x}", a[0].1, a[0].0),
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

/// Where `f` enters a memalloc scope: sets PF_MEMALLOC_NOIO/NOFS, or calls a scope helper.
fn scope_sites(
    arch: Arch,
    f: &FunctionCode,
    helpers: &[(String, u64)],
    pf_noio: u32,
    pf_nofs: u32,
) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = [pf_noio, pf_nofs]
        .iter()
        .filter(|&&b| b != 0)
        .flat_map(|&b| {
            flag_set_sites(arch, &f.bytes, b)
                .into_iter()
                .map(move |o| (o, format!("sets PF_MEMALLOC_NOIO/NOFS ({b:#x})")))
        })
        .collect();
    for (name, addr) in helpers {
        out.extend(
            calls_to(arch, f, *addr)
                .into_iter()
                .map(|o| (o, format!("calls {name}"))),
        );
    }
    out.sort();
    out
}

/// populate-gfp from pcpu_populate_chunk's code: a GFP_KERNEL constant (the pages array)
/// without a memalloc scope, or a scope (flags set, or a call to a [`SCOPE_HELPERS`]
/// function) without GFP_KERNEL.
pub fn populate_gfp(code: &FixCode, l: &GfpLayout, pf_noio: u32, pf_nofs: u32) -> PatchEvidence {
    let id = PatchId::PopulateGfp;
    let (arch, f) = match readable(id, code, &code.populate, "pcpu_populate_chunk") {
        Ok(x) => x,
        Err(e) => return e,
    };
    let kernel = constant_sites(arch, &f.bytes, l.gfp_kernel());
    let mut scope = scope_sites(arch, f, &code.scope_helpers, pf_noio, pf_nofs);
    // A scope in a page-mapping function populate calls directly counts as populate's own.
    for m in &code.map_pages {
        if let (Some(call), Some((o, what))) = (
            calls_to(arch, f, m.addr).first(),
            scope_sites(arch, m, &code.scope_helpers, pf_noio, pf_nofs).first(),
        ) {
            scope.push((*call, format!("calls {} (which {what} at +{o:#x})", m.name)));
        }
    }
    scope.sort();
    let src = source_of(f);
    match (kernel.is_empty(), scope.is_empty()) {
        (false, true) => PatchEvidence::new(
            id,
            PatchState::Absent,
            format!(
                "{src}: GFP_KERNEL ({:#x}, {}) at +{:#x} and no PF_MEMALLOC_NOIO/NOFS scope",
                l.gfp_kernel(),
                kernel[0].1,
                kernel[0].0
            ),
        ),
        (true, false) => PatchEvidence::new(
            id,
            PatchState::Present,
            format!(
                "{src}: enters a memalloc scope ({} at +{:#x}), no GFP_KERNEL constant",
                scope[0].1, scope[0].0
            ),
        ),
        (false, false) => PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!("{src}: both a GFP_KERNEL constant and a memalloc scope"),
        ),
        (true, true) => PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!(
                "{src}: neither a GFP_KERNEL constant nor a memalloc scope{}",
                if code.scope_helpers.is_empty() || f.addr == 0 {
                    " (calls to memalloc_apply_gfp_scope not checked: its address or this function's is unknown)"
                } else {
                    ""
                }
            ),
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
                addr: 0,
                source: "read_kmem".into(),
            }),
            populate: Ok(FunctionCode {
                name: "pcpu_populate_chunk".into(),
                bytes: populate.to_vec(),
                addr: 0,
                source: "read_kmem".into(),
            }),
            map_pages: Vec::new(),
            scope_helpers: Vec::new(),
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
        let mut other = c.clone();
        other.arch = "riscv64".into();
        assert_eq!(backing_noio(&other, &l).state, PatchState::Unknown);
        // A call to memalloc_apply_gfp_scope (call rel32 to 0x1000 from 0x800) is a scope.
        let mut call = code(&alloc, &[0x90, 0xe8, 0xfa, 0x07, 0x00, 0x00]);
        call.populate.as_mut().unwrap().addr = 0x800;
        call.scope_helpers = vec![("memalloc_apply_gfp_scope".into(), 0x1000)];
        let p = populate_gfp(&call, &l, 0x80000, 0x40000);
        assert_eq!(p.state, PatchState::Present, "{}", p.evidence);
        assert!(
            p.evidence
                .contains("calls memalloc_apply_gfp_scope at +0x1"),
            "{}",
            p.evidence
        );
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
