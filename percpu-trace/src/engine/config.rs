//! Engine configuration: every kernel number the engine uses, so none is hard-coded in the
//! rules. The numbers come from `kernel/` ([`EngineConfig::for_kernel`]): the defaults are
//! its built-in layout stable from 6.1 to 7.3 (see KERNELS.md); live mode passes the
//! running kernel's.
use serde::{Deserialize, Serialize};

use crate::kernel::{
    decode::{
        GfpLayout, PF_LOCAL_THROTTLE, PF_MEMALLOC, PF_MEMALLOC_NOFS, PF_MEMALLOC_NOIO, PF_WQ_WORKER,
    },
    Kernel,
};

/// Kernel constants and limits for the [`crate::engine::Engine`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// __GFP_IO.
    pub gfp_io: u32,
    /// __GFP_FS.
    pub gfp_fs: u32,
    /// __GFP_DIRECT_RECLAIM.
    pub gfp_direct_reclaim: u32,
    /// GFP_KERNEL: what pcpu_get_vm_areas' metadata (unpatched kernels) and kernel page
    /// tables (GFP_PGTABLE_KERNEL) are allocated with before the task's scope narrows them.
    pub gfp_kernel: u32,
    /// PF_MEMALLOC_NOIO.
    pub pf_memalloc_noio: u32,
    /// PF_MEMALLOC_NOFS.
    pub pf_memalloc_nofs: u32,
    /// PF_MEMALLOC: a task with it set never enters direct reclaim.
    pub pf_memalloc: u32,
    /// PF_LOCAL_THROTTLE: with PF_MEMALLOC_NOIO, the mark of an IO_FLUSHER process.
    pub pf_local_throttle: u32,
    /// PF_WQ_WORKER: a workqueue worker.
    pub pf_wq_worker: u32,
    /// Whether events' `task_flags` are real (`false`: the task_struct.flags offset was
    /// unknown, so the kernel side read something else; the engine then assumes no scope
    /// and says its evidence is incomplete).
    pub task_flags_known: bool,
    /// Whether the kernel has the fix series (`None`: unknown). Copied into findings; also
    /// used to judge a chunk creation seen only through the tracepoint (see `rules`).
    pub fix_present: Option<bool>,
    /// Most tasks tracked at once; the least recently seen are evicted beyond it.
    pub max_tasks: usize,
    /// Most distinct findings; further distinct ones are only counted.
    pub max_findings: usize,
    /// Reclaim episodes kept for [`crate::engine::EngineState::recent_reclaims`].
    pub max_recent_reclaims: usize,
    /// Distinct comms/gfps counted in the constrained-allocation counters; the rest are
    /// counted under [`crate::engine::OTHER_COMM`] / in `constrained_other_gfp`.
    pub max_counter_keys: usize,
    /// Findings a single open reclaim or wait can still update when it ends.
    pub max_pending_links: usize,
    /// Age past which never-closed engine state (a wait, a reclaim, a hold, a tracepoint
    /// mode chunk creation or reclaim waiting for its call's completion) is not evidence:
    /// longer than any plausible wait or reclaim, so its closing event was lost uncounted.
    /// Written to recordings only when not the default (older readers ignore it).
    #[serde(skip_serializing_if = "is_default_open_state")]
    pub max_open_state_ns: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig::from_layout(
            &GfpLayout::default_for_6x(),
            PF_MEMALLOC_NOIO,
            PF_MEMALLOC_NOFS,
            None,
        )
    }
}

/// Default of [`EngineConfig::max_open_state_ns`]: 10 s.
const DEFAULT_OPEN_STATE_NS: u64 = 10_000_000_000;

fn is_default_open_state(v: &u64) -> bool {
    *v == DEFAULT_OPEN_STATE_NS
}

impl EngineConfig {
    /// The configuration for a discovered kernel: its gfp and task-flag bits and fix
    /// status, default limits.
    pub fn for_kernel(k: &Kernel) -> Self {
        EngineConfig {
            task_flags_known: k.task.flags.is_some(),
            ..EngineConfig::from_layout(
                &k.gfp,
                k.pf.memalloc_noio,
                k.pf.memalloc_nofs,
                k.fix.present,
            )
        }
    }

    /// From a gfp layout and the PF_MEMALLOC_NOIO/NOFS bits; default limits.
    pub fn from_layout(
        gfp: &GfpLayout,
        pf_memalloc_noio: u32,
        pf_memalloc_nofs: u32,
        fix_present: Option<bool>,
    ) -> Self {
        EngineConfig {
            gfp_io: gfp.io(),
            gfp_fs: gfp.fs(),
            gfp_direct_reclaim: gfp.direct_reclaim(),
            gfp_kernel: gfp.gfp_kernel(),
            pf_memalloc_noio,
            pf_memalloc_nofs,
            pf_memalloc: PF_MEMALLOC,
            pf_local_throttle: PF_LOCAL_THROTTLE,
            pf_wq_worker: PF_WQ_WORKER,
            task_flags_known: true,
            fix_present,
            max_tasks: 16384,
            max_findings: 4096,
            max_recent_reclaims: 64,
            max_counter_keys: 256,
            max_pending_links: 16,
            max_open_state_ns: DEFAULT_OPEN_STATE_NS,
        }
    }

    /// __GFP_IO | __GFP_FS: the reclaim capabilities a constraint can take away.
    pub fn reclaim_bits(&self) -> u32 {
        self.gfp_io | self.gfp_fs
    }

    /// `gfp` narrowed by the memalloc scope in `task_flags`, as current_gfp_context() does:
    /// NOIO clears IO and FS, NOFS clears FS.
    pub fn effective_gfp(&self, gfp: u32, task_flags: u32) -> u32 {
        if task_flags & self.pf_memalloc_noio != 0 {
            gfp & !(self.gfp_io | self.gfp_fs)
        } else if task_flags & self.pf_memalloc_nofs != 0 {
            gfp & !self.gfp_fs
        } else {
            gfp
        }
    }

    /// The reclaim bits (IO/FS) an effective gfp forbids.
    pub fn forbidden(&self, effective_gfp: u32) -> u32 {
        self.reclaim_bits() & !effective_gfp
    }

    /// Whether the task flags mark an IO_FLUSHER process (PR_SET_IO_FLUSHER sets
    /// PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE).
    pub fn io_flusher(&self, task_flags: u32) -> bool {
        let both = self.pf_memalloc_noio | self.pf_local_throttle;
        task_flags & both == both
    }

    /// Whether the task flags put the task in a NOIO or NOFS scope.
    pub fn scope_constrained(&self, task_flags: u32) -> bool {
        task_flags & (self.pf_memalloc_noio | self.pf_memalloc_nofs) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kernel_modules_built_in_layout() {
        // One copy of the numbers: the engine's defaults come from kernel/decode.
        let c = EngineConfig::default();
        assert_eq!(
            (c.gfp_io, c.gfp_fs, c.gfp_direct_reclaim, c.gfp_kernel),
            (0x40, 0x80, 0x400, 0xcc0)
        );
        assert_eq!((c.pf_memalloc_noio, c.pf_memalloc_nofs), (0x80000, 0x40000));
    }

    #[test]
    fn scopes_narrow_like_current_gfp_context() {
        let c = EngineConfig::default();
        assert_eq!(c.effective_gfp(0xcc0, 0x80000), 0xc00);
        assert_eq!(c.effective_gfp(0xcc0, 0x40000), 0xc40);
        assert_eq!(c.effective_gfp(0xcc0, 0xc0000), 0xc00);
        assert_eq!(c.effective_gfp(0xc40, 0), 0xc40);
        assert_eq!(c.forbidden(0xc00), 0xc0);
        assert_eq!(c.forbidden(0xc40), 0x80);
        assert_eq!(c.forbidden(0xcc0), 0);
    }

    #[test]
    fn config_round_trips_and_fills_missing_fields() {
        let c = EngineConfig {
            fix_present: Some(true),
            ..Default::default()
        };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<EngineConfig>(&s).unwrap(), c);
        let partial: EngineConfig = serde_json::from_str(r#"{"gfp_io":64}"#).unwrap();
        assert_eq!(partial.gfp_fs, 0x80);
        // Recordings made before these fields existed: flags trusted, kernel's bits.
        assert!(partial.task_flags_known);
        assert_eq!(
            (
                partial.pf_memalloc,
                partial.pf_local_throttle,
                partial.pf_wq_worker
            ),
            (0x800, 0x100000, 0x20)
        );
    }
}
