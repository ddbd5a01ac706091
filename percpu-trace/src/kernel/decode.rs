//! Decoders for raw kernel values, used everywhere in output: gfp masks (printed the way the
//! kernel's `%pGg` / `show_gfp_flags()` prints them), task flags, and the mutex owner word.
//!
//! Pure functions over an explicit layout, so a recording replayed on another machine decodes
//! with the layout of the kernel it was recorded on.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bit values of the single `__GFP_*` flags of one kernel.
///
/// Keys are flag names without the leading underscores ("IO", "FS", "DIRECT_RECLAIM"); a flag
/// that is absent (compiled out, or not in this version) is simply not in the map, which makes
/// it 0 exactly as the kernel's `#define __GFP_X 0` does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GfpLayout {
    /// `"IO" -> 0x40`, ...
    pub flags: BTreeMap<String, u32>,
    /// Where the layout came from, for humans ("BTF enum ___GFP_*_BIT", "table for 6.1").
    pub source: String,
    /// The kernel's own name table (`show_gfp_flags()`), in its order, when a tracepoint
    /// format printed it; composite definitions and order changed between versions
    /// (GFP_NOWAIT gained __GFP_NOWARN; single flags follow bit order since 6.1x).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<(String, u32)>>,
}

/// Bits below 24 that every kernel from 6.3 to 7.3 defines the same way (KERNELS.md).
const STABLE_6X: &[(&str, u32)] = &[
    ("DMA", 0),
    ("HIGHMEM", 1),
    ("DMA32", 2),
    ("MOVABLE", 3),
    ("RECLAIMABLE", 4),
    ("HIGH", 5),
    ("IO", 6),
    ("FS", 7),
    ("ZERO", 8),
    ("DIRECT_RECLAIM", 10),
    ("KSWAPD_RECLAIM", 11),
    ("WRITE", 12),
    ("NOWARN", 13),
    ("RETRY_MAYFAIL", 14),
    ("NOFAIL", 15),
    ("NORETRY", 16),
    ("MEMALLOC", 17),
    ("COMP", 18),
    ("NOMEMALLOC", 19),
    ("HARDWALL", 20),
    ("THISNODE", 21),
    ("ACCOUNT", 22),
    ("ZEROTAGS", 23),
];

impl GfpLayout {
    /// The bits that are the same on every kernel from 6.3 to 7.3 (bits 24 and up, which
    /// depend on config and version, are left out and print as hex).
    pub fn default_for_6x() -> Self {
        GfpLayout {
            flags: STABLE_6X
                .iter()
                .map(|&(n, b)| (n.to_string(), 1u32 << b))
                .collect(),
            source: "built-in table of the bits stable in 6.3..7.3 (KERNELS.md)".into(),
            names: None,
        }
    }

    /// Per-version table for kernels whose BTF has no `___GFP_*_BIT` enum (before 6.10).
    /// Bit 9 was `__GFP_ATOMIC` until 6.3; the rest of the low 24 bits did not move.
    pub fn table_for_version(major: u32, minor: u32) -> Self {
        let mut l = Self::default_for_6x();
        if (major, minor) < (6, 3) {
            l.flags.insert("ATOMIC".into(), 1 << 9);
        }
        l.source = format!(
            "built-in table for {major}.{minor} (BTF has no ___GFP_*_BIT enum before 6.10)"
        );
        l
    }

    /// From the members of the anonymous enum in vmlinux BTF (`___GFP_IO_BIT = 6`, ...;
    /// 6.10 and later). `___GFP_LAST_BIT` and `___GFP_UNUSED_BIT` are not flags.
    pub fn from_bit_enum<'a>(members: impl IntoIterator<Item = (&'a str, u64)>) -> Option<Self> {
        let mut flags = BTreeMap::new();
        for (name, bit) in members {
            let Some(flag) = name
                .strip_prefix("___GFP_")
                .and_then(|n| n.strip_suffix("_BIT"))
            else {
                continue;
            };
            if flag == "LAST" || flag.starts_with("UNUSED") || bit >= 32 {
                continue;
            }
            flags.insert(flag.to_string(), 1u32 << bit);
        }
        // A real kernel always has these; anything else is not the gfp enum.
        let ok = ["IO", "FS", "DIRECT_RECLAIM"]
            .iter()
            .all(|f| flags.contains_key(*f));
        ok.then(|| GfpLayout {
            flags,
            source: "BTF enum ___GFP_*_BIT".into(),
            names: None,
        })
    }

    /// Value of one flag ("IO" or "__GFP_IO"), 0 when this kernel lacks it.
    pub fn get(&self, name: &str) -> u32 {
        let n = name.trim_start_matches('_').trim_start_matches("GFP_");
        self.flags.get(n).copied().unwrap_or(0)
    }

    /// `__GFP_IO`.
    pub fn io(&self) -> u32 {
        self.get("IO")
    }

    /// `__GFP_FS`.
    pub fn fs(&self) -> u32 {
        self.get("FS")
    }

    /// `__GFP_DIRECT_RECLAIM`.
    pub fn direct_reclaim(&self) -> u32 {
        self.get("DIRECT_RECLAIM")
    }

    /// `GFP_KERNEL`.
    pub fn gfp_kernel(&self) -> u32 {
        self.reclaim() | self.io() | self.fs()
    }

    fn reclaim(&self) -> u32 {
        self.get("DIRECT_RECLAIM") | self.get("KSWAPD_RECLAIM")
    }

    /// The names the kernel prints, in the order of `__def_gfpflag_names`
    /// (include/trace/events/mmflags.h): composites first, then single flags.
    pub fn named_masks(&self) -> Vec<(String, u32)> {
        if let Some(n) = &self.names {
            return n.clone();
        }
        let g = |n: &str| self.get(n);
        let reclaim = self.reclaim();
        let kernel = reclaim | g("IO") | g("FS");
        let user = kernel | g("HARDWALL");
        let highuser = user | g("HIGHMEM");
        let highuser_movable = highuser | g("MOVABLE") | g("SKIP_KASAN");
        let transhuge_light =
            (highuser_movable | g("COMP") | g("NOMEMALLOC") | g("NOWARN")) & !reclaim;
        let composites: [(&str, u32); 12] = [
            ("GFP_TRANSHUGE", transhuge_light | g("DIRECT_RECLAIM")),
            ("GFP_TRANSHUGE_LIGHT", transhuge_light),
            ("GFP_HIGHUSER_MOVABLE", highuser_movable),
            ("GFP_HIGHUSER", highuser),
            ("GFP_USER", user),
            ("GFP_KERNEL_ACCOUNT", kernel | g("ACCOUNT")),
            ("GFP_KERNEL", kernel),
            ("GFP_NOFS", reclaim | g("IO")),
            ("GFP_ATOMIC", g("HIGH") | g("ATOMIC") | g("KSWAPD_RECLAIM")),
            ("GFP_NOIO", reclaim),
            ("GFP_NOWAIT", g("KSWAPD_RECLAIM")),
            ("GFP_DMA", g("DMA")),
        ];
        let singles = [
            "HIGHMEM",
            "DMA32",
            "HIGH",
            "ATOMIC",
            "IO",
            "FS",
            "NOWARN",
            "RETRY_MAYFAIL",
            "NOFAIL",
            "NORETRY",
            "COMP",
            "ZERO",
            "NOMEMALLOC",
            "MEMALLOC",
            "HARDWALL",
            "THISNODE",
            "RECLAIMABLE",
            "MOVABLE",
            "ACCOUNT",
            "WRITE",
            "RECLAIM",
            "DIRECT_RECLAIM",
            "KSWAPD_RECLAIM",
            "ZEROTAGS",
            "SKIP_ZERO",
            "SKIP_KASAN",
            "NO_OBJ_EXT",
            "NOLOCKDEP",
        ];
        let mut out: Vec<(String, u32)> = composites
            .iter()
            .map(|&(n, m)| (n.to_string(), m))
            .collect();
        for s in singles {
            let m = if s == "RECLAIM" { reclaim } else { g(s) };
            // The kernel lists GFP_DMA32 (the composite) where the single flag would be.
            let name = if s == "DMA32" {
                "GFP_DMA32".to_string()
            } else {
                format!("__GFP_{s}")
            };
            out.push((name, m));
        }
        // Flags this kernel has that the list above does not know: after all known names.
        for (name, &bit) in &self.flags {
            if !singles.contains(&name.as_str()) {
                out.push((format!("__GFP_{name}"), bit));
            }
        }
        out.retain(|&(_, m)| m != 0);
        out
    }
}

/// Formats a gfp mask like the kernel's `show_gfp_flags()`: "GFP_NOIO|__GFP_NOWARN",
/// "none" for 0, leftover unknown bits as hex at the end.
pub fn format_gfp(gfp: u32, layout: &GfpLayout) -> String {
    if gfp == 0 {
        return "none".into();
    }
    let mut rest = gfp;
    let mut parts: Vec<String> = Vec::new();
    for (name, mask) in layout.named_masks() {
        if rest == 0 {
            break;
        }
        if rest & mask == mask {
            parts.push(name);
            rest &= !mask;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// Task flags (`include/linux/sched.h`), the memalloc scopes first because they are what
/// this tool is about. Values from KERNELS.md, the same in 6.1..7.3.
pub const PF_FLAGS: &[(&str, u32)] = &[
    ("PF_MEMALLOC_NOIO", 0x0008_0000),
    ("PF_MEMALLOC_NOFS", 0x0004_0000),
    ("PF_MEMALLOC", 0x0000_0800),
    ("PF_MEMALLOC_PIN", 0x1000_0000),
    ("PF_KSWAPD", 0x0002_0000),
    ("PF_KTHREAD", 0x0020_0000),
    ("PF_WQ_WORKER", 0x0000_0020),
    ("PF_IO_WORKER", 0x0000_0010),
    ("PF_IDLE", 0x0000_0002),
    ("PF_EXITING", 0x0000_0004),
    ("PF_FORKNOEXEC", 0x0000_0040),
    ("PF_SUPERPRIV", 0x0000_0100),
    ("PF_SIGNALED", 0x0000_0400),
    ("PF_NOFREEZE", 0x0000_8000),
    ("PF_LOCAL_THROTTLE", 0x0010_0000),
    ("PF_RANDOMIZE", 0x0040_0000),
    ("PF_NO_SETAFFINITY", 0x0400_0000),
];

/// `PF_MEMALLOC_NOFS`.
pub const PF_MEMALLOC_NOFS: u32 = 0x0004_0000;
/// `PF_MEMALLOC`: the task is itself reclaiming or allowed to use reserves; its allocations
/// never enter direct reclaim.
pub const PF_MEMALLOC: u32 = 0x0000_0800;
/// `PF_LOCAL_THROTTLE` (was PF_LESS_THROTTLE): with PF_MEMALLOC_NOIO it is what
/// `prctl(PR_SET_IO_FLUSHER)` sets (kernel/sys.c `PR_IO_FLUSHER`).
pub const PF_LOCAL_THROTTLE: u32 = 0x0010_0000;
/// `PF_WQ_WORKER`: a workqueue worker (kworker).
pub const PF_WQ_WORKER: u32 = 0x0000_0020;
/// `PF_MEMALLOC_NOIO`.
pub const PF_MEMALLOC_NOIO: u32 = 0x0008_0000;

/// Formats task flags: "PF_MEMALLOC_NOIO|PF_RANDOMIZE", unknown bits as hex, "0" for none.
pub fn format_task_flags(flags: u32) -> String {
    if flags == 0 {
        return "0".into();
    }
    let mut rest = flags;
    let mut parts: Vec<String> = Vec::new();
    for &(name, bit) in PF_FLAGS {
        if rest & bit != 0 {
            parts.push(name.into());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// How the owner word of a `struct mutex` is laid out on one kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutexLayout {
    /// Byte offset of the owner word in struct mutex.
    pub owner_off: u32,
    /// Mask giving the task pointer (JSON: a hex string).
    #[serde(with = "crate::hex")]
    pub owner_mask: u64,
    /// PREEMPT_RT (rt_mutex based: only bit 0, RT_MUTEX_HAS_WAITERS, is a flag).
    pub rt: bool,
}

impl MutexLayout {
    /// Non-RT kernels: owner at 0, low 3 bits are MUTEX_FLAG_WAITERS/HANDOFF/PICKUP.
    pub fn non_rt() -> Self {
        MutexLayout {
            owner_off: 0,
            owner_mask: !7,
            rt: false,
        }
    }

    /// PREEMPT_RT: the owner of the embedded rt_mutex_base at `owner_off`, bit 0 a flag.
    pub fn rt(owner_off: u32) -> Self {
        MutexLayout {
            owner_off,
            owner_mask: !1,
            rt: true,
        }
    }
}

/// A decoded mutex owner word.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutexOwner {
    /// task_struct pointer of the owner, 0 when unlocked (JSON: a hex string).
    #[serde(with = "crate::hex")]
    pub task: u64,
    /// Flag names set in the low bits.
    pub flags: Vec<String>,
}

/// Splits an owner word into task pointer and flag bits.
pub fn decode_mutex_owner(word: u64, layout: &MutexLayout) -> MutexOwner {
    let names: &[(&str, u64)] = if layout.rt {
        &[("RT_MUTEX_HAS_WAITERS", 1)]
    } else {
        &[("WAITERS", 1), ("HANDOFF", 2), ("PICKUP", 4)]
    };
    let flags = names
        .iter()
        .filter(|&&(_, b)| word & b != 0)
        .map(|&(n, _)| n.to_string())
        .collect();
    MutexOwner {
        task: word & layout.owner_mask,
        flags,
    }
}

impl std::fmt::Display for MutexOwner {
    /// "unlocked", "task 0xffff8880...", "task 0xffff8880... [WAITERS|HANDOFF]".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.task == 0 {
            write!(f, "unlocked")?;
        } else {
            write!(f, "task {:#x}", self.task)?;
        }
        if !self.flags.is_empty() {
            write!(f, " [{}]", self.flags.join("|"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gfp_like_the_kernel() {
        let l = GfpLayout::default_for_6x();
        assert_eq!(format_gfp(0xcc0, &l), "GFP_KERNEL");
        assert_eq!(format_gfp(0xc00, &l), "GFP_NOIO");
        assert_eq!(format_gfp(0xc40, &l), "GFP_NOFS");
        assert_eq!(format_gfp(0xc00 | 0x2000, &l), "GFP_NOIO|__GFP_NOWARN");
        assert_eq!(
            format_gfp(0xcc0 | 0x10000 | 0x100, &l),
            "GFP_KERNEL|__GFP_NORETRY|__GFP_ZERO"
        );
        // The IO_FLUSHER percpu-array allocations seen on 7.2.13 (KERNELS.md).
        // GFP_USER comes before GFP_KERNEL_ACCOUNT in the kernel's list, so it wins.
        assert_eq!(
            format_gfp(0x502cc0, &l),
            "GFP_USER|__GFP_NOWARN|__GFP_ACCOUNT"
        );
        assert_eq!(format_gfp(0x400cc0, &l), "GFP_KERNEL_ACCOUNT");
        assert_eq!(format_gfp(0, &l), "none");
        assert_eq!(format_gfp(0x400, &l), "__GFP_DIRECT_RECLAIM");
        assert_eq!(format_gfp(0x800, &l), "GFP_NOWAIT");
        assert_eq!(format_gfp(0x8000_0000 | 0xcc0, &l), "GFP_KERNEL|0x80000000");
    }

    #[test]
    fn gfp_atomic_differs_before_6_3() {
        let old = GfpLayout::table_for_version(6, 1);
        assert_eq!(format_gfp(0xa20, &old), "GFP_ATOMIC");
        let new = GfpLayout::default_for_6x();
        assert_eq!(format_gfp(0x820, &new), "GFP_ATOMIC");
        assert_eq!(format_gfp(0xa20, &new), "GFP_ATOMIC|0x200");
    }

    #[test]
    fn gfp_from_enum_skips_non_flags() {
        let l = GfpLayout::from_bit_enum([
            ("___GFP_IO_BIT", 6),
            ("___GFP_FS_BIT", 7),
            ("___GFP_UNUSED_BIT", 9),
            ("___GFP_DIRECT_RECLAIM_BIT", 10),
            ("___GFP_LAST_BIT", 25),
        ])
        .unwrap();
        assert_eq!(l.io(), 0x40);
        assert_eq!(l.get("__GFP_DIRECT_RECLAIM"), 0x400);
        assert_eq!(l.flags.len(), 3);
        assert!(GfpLayout::from_bit_enum([("FOO", 1)]).is_none());
    }

    #[test]
    fn task_flags() {
        assert_eq!(
            format_task_flags(0x80000 | 0x400000),
            "PF_MEMALLOC_NOIO|PF_RANDOMIZE"
        );
        assert_eq!(
            format_task_flags(0x40000 | 0x8000_0000),
            "PF_MEMALLOC_NOFS|0x80000000"
        );
        assert_eq!(format_task_flags(0), "0");
    }

    #[test]
    fn mutex_owner() {
        let o = decode_mutex_owner(0xffff_8880_0123_4563, &MutexLayout::non_rt());
        assert_eq!(o.task, 0xffff_8880_0123_4560);
        assert_eq!(o.to_string(), "task 0xffff888001234560 [WAITERS|HANDOFF]");
        let rt = decode_mutex_owner(0xffff_8880_0123_4567, &MutexLayout::rt(24));
        assert_eq!(rt.task, 0xffff_8880_0123_4566);
        assert_eq!(rt.flags, vec!["RT_MUTEX_HAS_WAITERS"]);
        assert_eq!(
            decode_mutex_owner(0, &MutexLayout::non_rt()).to_string(),
            "unlocked"
        );
    }
}
