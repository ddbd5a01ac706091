//! Run-time evidence for the fix series, and the one function that reconciles it with the
//! static verdict from `kernel/` ([`reconcile`]): what reports, the TUI header and metrics
//! show.
//!
//! What the events show (KERNELS.md, Debian 7.2.13 vs 7.3.4):
//! - backing-noio at work: a mutex holder with no memalloc scope and no constrained
//!   pcpu_alloc open (an unconstrained caller) passes pcpu_populate_chunk a gfp without
//!   __GFP_IO/__GFP_FS (0x2c00 on 7.3.4). Missing: such a holder passes one allowing them
//!   (0x2cc0 on 7.2.13). The balance worker always runs in a NOIO scope, so it is in neither.
//! - populate-gfp at work: a holder that entered pcpu_alloc without a memalloc scope
//!   allocates page tables inside one (the kernel set it in the populate path). Missing: a
//!   holder whose pcpu_alloc gfp forbids IO/FS allocates page tables with no scope at all
//!   (2 of 5 on 7.2.13; the other 3 ran in the caller's own queue-freeze scope, which
//!   entered pcpu_alloc with it and so proves nothing).
use serde::{Deserialize, Serialize};

use super::EngineConfig;
use crate::{
    event::{Event, EventKind},
    kernel::{FixVerdict, PatchEvidence, PatchId, PatchState, Verdict},
};

/// Counts of the events above, with one example gfp each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixObservations {
    /// Populates by an unconstrained, unscoped holder with a gfp forbidding IO and FS.
    pub populate_noio: u64,
    /// The gfp of the first of those.
    pub populate_noio_gfp: Option<u32>,
    /// Populates by an unscoped holder with a reclaiming gfp allowing IO or FS.
    pub populate_io_fs: u64,
    /// The gfp of the first of those.
    pub populate_io_fs_gfp: Option<u32>,
    /// Page-table allocations in a memalloc scope by a holder that entered pcpu_alloc
    /// without one.
    pub pgtable_scope_inside: u64,
    /// Page-table allocations without any scope by a holder whose pcpu_alloc gfp forbids
    /// IO/FS.
    pub pgtable_unscoped: u64,
}

impl FixObservations {
    /// Records what `ev` shows. `alloc`: the (gfp, entry task flags) of the constrained
    /// pcpu_alloc the task has open, if any (unconstrained calls are not traced).
    pub(crate) fn observe(&mut self, ev: &Event, alloc: Option<(u32, u32)>, cfg: &EngineConfig) {
        if ev.holds_mutex != Some(true) {
            return;
        }
        let scoped = cfg.scope_constrained(ev.task_flags);
        match ev.kind {
            EventKind::ChunkPopulate { gfp: Some(g), .. }
                if !scoped && g & cfg.gfp_direct_reclaim != 0 =>
            {
                if g & cfg.reclaim_bits() != 0 {
                    self.populate_io_fs += 1;
                    self.populate_io_fs_gfp.get_or_insert(g);
                } else if alloc.is_none() {
                    self.populate_noio += 1;
                    self.populate_noio_gfp.get_or_insert(g);
                }
            }
            EventKind::PgtableAlloc => match alloc {
                Some((_, entry)) if scoped && !cfg.scope_constrained(entry) => {
                    self.pgtable_scope_inside += 1
                }
                // An unconstrained holder (no constrained pcpu_alloc open: page-table
                // events exist only in fentry/kprobe modes, where every constrained entry
                // is seen) in a scope it cannot have entered with, since a scope would have
                // made it constrained: the kernel set it around the page tables. Not the
                // balance worker, which always runs in its own NOIO scope, nor an IO_FLUSHER,
                // which brings its own (seen once on 7.2.13 without its task-map entry).
                None if scoped
                    && ev.task_flags & cfg.pf_wq_worker == 0
                    && !cfg.io_flusher(ev.task_flags) =>
                {
                    self.pgtable_scope_inside += 1
                }
                Some((gfp, entry))
                    if !scoped && cfg.forbidden(cfg.effective_gfp(gfp, entry)) != 0 =>
                {
                    self.pgtable_unscoped += 1
                }
                _ => {}
            },
            _ => {}
        }
    }

    /// Nothing observed.
    pub fn is_empty(&self) -> bool {
        *self == FixObservations::default()
    }
}

/// The verdict after a run: the static one with the run's evidence folded in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    /// The verdict and patches to show.
    pub fix: FixVerdict,
    /// The verdict before the run's evidence.
    pub static_verdict: Verdict,
    /// What the run changed, one line (None: nothing).
    pub note: Option<String>,
}

impl Reconciled {
    /// The run upgraded likely-fixed to fixed.
    pub fn upgraded(&self) -> bool {
        self.fix.verdict == Verdict::Fixed && self.static_verdict != Verdict::Fixed
    }
}

/// Folds `obs` into `static_fix`: a part seen missing becomes absent (a run beats a static
/// guess); a part seen at work becomes present unless static evidence says absent; a
/// likely-fixed kernel whose run showed populate-gfp and backing-noio at work is `fixed`.
pub fn reconcile(static_fix: &FixVerdict, obs: &FixObservations) -> Reconciled {
    let mut patches = static_fix.patches.clone();
    let mut set = |id: PatchId, state: PatchState, evidence: String| match patches
        .iter_mut()
        .find(|p| p.id == id)
    {
        Some(p) if state == PatchState::Absent || p.state == PatchState::Unknown => {
            p.state = state;
            p.evidence = evidence;
        }
        Some(_) => {}
        None => patches.push(PatchEvidence::new(id, state, evidence)),
    };
    let hex = |g: Option<u32>| g.map(|g| format!("{g:#x}")).unwrap_or_default();
    let mut at_work = (false, false);
    if obs.pgtable_unscoped > 0 {
        set(PatchId::PopulateGfp, PatchState::Absent, format!("run: {} page-table allocation(s) without a memalloc scope by a constrained holder of pcpu_alloc_mutex", obs.pgtable_unscoped));
    } else if obs.pgtable_scope_inside > 0 {
        at_work.0 = true;
        set(PatchId::PopulateGfp, PatchState::Present, format!("run: {} page-table allocation(s) by a holder in a memalloc scope it did not enter pcpu_alloc with", obs.pgtable_scope_inside));
    }
    if obs.populate_io_fs > 0 {
        set(PatchId::BackingNoio, PatchState::Absent, format!("run: {} pcpu_populate_chunk call(s) by an unscoped holder with gfp allowing IO/FS (first {})", obs.populate_io_fs, hex(obs.populate_io_fs_gfp)));
    } else if obs.populate_noio > 0 {
        at_work.1 = true;
        set(PatchId::BackingNoio, PatchState::Present, format!("run: {} pcpu_populate_chunk call(s) by an unconstrained holder with gfp without IO/FS (first {})", obs.populate_noio, hex(obs.populate_noio_gfp)));
    }
    let mut fix = FixVerdict::from_patches(patches);
    // The static verdict of a legacy recording is not derived from its patches (its
    // regression state is unknown): it stands unless the run's evidence decides.
    let legacy = static_fix.verdict != FixVerdict::from_patches(static_fix.patches.clone()).verdict;
    if legacy && (obs.is_empty() || fix.verdict == Verdict::Unknown) {
        fix.verdict = static_fix.verdict;
    }
    let both = at_work.0 && at_work.1;
    let shown = |id| fix.state(id) == PatchState::Present;
    if fix.verdict == Verdict::LikelyFixed
        && both
        && shown(PatchId::PopulateGfp)
        && shown(PatchId::BackingNoio)
    {
        fix.verdict = Verdict::Fixed;
    }
    let note = (fix.verdict != static_fix.verdict).then(|| {
        if fix.verdict == Verdict::Fixed {
            format!(
                "upgraded from {} to fixed by this run: populate-gfp and backing-noio seen at work",
                static_fix.verdict
            )
        } else {
            format!(
                "changed from {} to {} by this run's events",
                static_fix.verdict, fix.verdict
            )
        }
    });
    Reconciled {
        fix,
        static_verdict: static_fix.verdict,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, flags: u32) -> Event {
        Event {
            ts_ns: 1,
            pid: 7,
            tgid: 7,
            comm: "t".into(),
            cgroup_id: 0,
            task_flags: flags,
            holds_mutex: Some(true),
            caller_gfp: None,
            stack_id: None,
            kind,
        }
    }

    fn likely_fixed() -> FixVerdict {
        FixVerdict::from_patches(vec![
            PatchEvidence::new(PatchId::Regression, PatchState::Present, "implied"),
            PatchEvidence::new(PatchId::VmAreasGfp, PatchState::Present, "BTF"),
        ])
    }

    #[test]
    fn run_on_7_3_upgrades_likely_fixed_to_fixed() {
        let cfg = EngineConfig::default();
        let mut o = FixObservations::default();
        let populate = |g| EventKind::ChunkPopulate {
            gfp: Some(g),
            page_start: 0,
            page_end: 1,
        };
        // Unconstrained holder (no alloc open, no scope): 0x2c00 = GFP_NOIO|__GFP_NOWARN.
        o.observe(&ev(populate(0x2c00), 0), None, &cfg);
        // GFP_NOIO writer without a scope at entry; page tables inside one.
        o.observe(
            &ev(EventKind::PgtableAlloc, 0x80000),
            Some((0xc00, 0)),
            &cfg,
        );
        // The balance worker (NOIO scope) passing 0x12cc0 proves nothing.
        o.observe(&ev(populate(0x12cc0), 0x80000), None, &cfg);
        assert_eq!(
            (o.populate_noio, o.pgtable_scope_inside, o.populate_io_fs),
            (1, 1, 0)
        );
        let r = reconcile(&likely_fixed(), &o);
        assert_eq!(r.fix.verdict, Verdict::Fixed);
        assert!(r.upgraded());
        assert!(r.note.unwrap().contains("upgraded from likely-fixed"));
        // Only one of the two at work: still likely-fixed.
        let half = FixObservations {
            pgtable_scope_inside: 0,
            ..o.clone()
        };
        assert_eq!(
            reconcile(&likely_fixed(), &half).fix.verdict,
            Verdict::LikelyFixed
        );
    }

    #[test]
    fn an_unconstrained_holder_in_a_scope_it_did_not_bring_shows_populate_gfp() {
        // Seen on Debian 7.3.4 (contention): pt-unc-a, a GFP_KERNEL caller (no constrained
        // pcpu_alloc open), allocates page tables under the mutex with PF_MEMALLOC_NOIO set
        // (flags 0x480100). The balance worker (PF_WQ_WORKER) is in its own scope: nothing.
        let cfg = EngineConfig::default();
        let mut o = FixObservations::default();
        o.observe(&ev(EventKind::PgtableAlloc, 0x480100), None, &cfg);
        o.observe(&ev(EventKind::PgtableAlloc, 0x80020), None, &cfg);
        // An IO_FLUSHER (0x580100 on 7.2.13) brought its scope: nothing.
        o.observe(&ev(EventKind::PgtableAlloc, 0x580100), None, &cfg);
        assert_eq!(o.pgtable_scope_inside, 1);
        // Without a scope (7.2.13's unconstrained holders): nothing either way.
        let mut o = FixObservations::default();
        o.observe(&ev(EventKind::PgtableAlloc, 0x400100), None, &cfg);
        assert!(o.is_empty());
    }

    #[test]
    fn run_on_7_2_shows_the_parts_missing() {
        let cfg = EngineConfig::default();
        let mut o = FixObservations::default();
        let populate = EventKind::ChunkPopulate {
            gfp: Some(0x2cc0),
            page_start: 0,
            page_end: 1,
        };
        o.observe(&ev(populate, 0), None, &cfg);
        o.observe(&ev(EventKind::PgtableAlloc, 0), Some((0xc00, 0)), &cfg);
        // Queue-freeze scope from before pcpu_alloc: no evidence either way.
        o.observe(
            &ev(EventKind::PgtableAlloc, 0x80000),
            Some((0xc00, 0x80000)),
            &cfg,
        );
        assert_eq!(
            (o.populate_io_fs, o.pgtable_unscoped, o.pgtable_scope_inside),
            (1, 1, 0)
        );
        // A kernel that looked likely-fixed statically is shown partially fixed.
        let r = reconcile(&likely_fixed(), &o);
        assert_eq!(r.fix.verdict, Verdict::PartiallyFixed);
        assert_eq!(r.fix.state(PatchId::BackingNoio), PatchState::Absent);
        assert!(r
            .fix
            .patch(PatchId::BackingNoio)
            .unwrap()
            .evidence
            .contains("0x2cc0"));
        assert!(!r.upgraded());
        // Nothing observed: the static verdict stands, legacy ones included.
        let legacy = FixVerdict::from_legacy(Some(false), None);
        let r = reconcile(&legacy, &FixObservations::default());
        assert_eq!(r.fix.verdict, Verdict::Vulnerable);
        assert_eq!(r.note, None);
        // A legacy 7.2 recording whose run shows parts missing stays vulnerable.
        let r = reconcile(&legacy, &o);
        assert_eq!(r.fix.verdict, Verdict::Vulnerable);
        assert_eq!(r.fix.state(PatchId::BackingNoio), PatchState::Absent);
    }
}
