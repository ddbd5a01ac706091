//! The finding store: occurrences merged into deduplicated findings (by kind and a stable
//! signature of the tasks, roles and stacks involved), bounded by `max_findings`.
use std::collections::HashMap;

use super::{
    evidence::grade, occurrence::Occurrence, Durations, EngineConfig, Finding, FindingKind,
    FindingUpdate, TaskInfo, TaskRole,
};

/// FNV-1a, for finding signatures that must be stable across runs and builds.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
}

/// Deduplicated findings, in order of first occurrence (indexes are stable).
#[derive(Default)]
pub(super) struct FindingStore {
    pub(super) findings: Vec<Finding>,
    index: HashMap<(FindingKind, u64), usize>,
    /// Occurrences by kind (`FindingKind as usize`).
    pub(super) occurrences: [u64; 3],
    /// Occurrences not kept because `max_findings` distinct findings exist.
    pub(super) dropped: u64,
}

impl FindingStore {
    /// Merges an occurrence into the findings; `None` when it was dropped at the cap.
    pub(super) fn report(
        &mut self,
        cfg: &EngineConfig,
        occ: Occurrence<'_>,
    ) -> Option<FindingUpdate> {
        let FindingStore {
            findings,
            index,
            occurrences,
            dropped,
        } = self;
        occurrences[occ.kind as usize] += 1;
        let mut h = Fnv::new();
        h.bytes(occ.kind.id().as_bytes())
            .bytes(occ.trigger.name().as_bytes());
        for (t, role, stack) in occ.parts.iter().flatten() {
            h.u32(*role as u32).bytes(t.comm.as_bytes());
            h.u32(stack.map_or(u32::MAX, |s| s));
            // Stack-less events still separate by what was broken.
            if stack.is_none() {
                h.u32(occ.violated);
            }
        }
        let sig = h.0;
        if let Some(&idx) = index.get(&(occ.kind, sig)) {
            let f = &mut findings[idx];
            f.count += 1;
            f.first_seen_ns = f.first_seen_ns.min(occ.ts_ns);
            f.last_seen_ns = f.last_seen_ns.max(occ.ts_ns);
            max_opt(&mut f.durations.hold_ns, occ.hold_ns);
            max_opt(&mut f.durations.wait_ns, occ.wait_ns);
            // Doubts that every occurrence had; severity the best evidence earned.
            f.doubts.retain(|d| occ.doubts.contains(d));
            f.severity = f.severity.max(grade(occ.kind, occ.reason, &occ.doubts));
            if f.waiter_reason.is_none() {
                f.waiter_reason = occ.reason;
            }
            return Some(FindingUpdate::Repeated { index: idx });
        }
        if findings.len() >= cfg.max_findings {
            *dropped += 1;
            return None;
        }
        let tasks: Vec<TaskInfo> = occ
            .parts
            .iter()
            .flatten()
            .map(|(t, role, _)| {
                let (gfp, eff) = match (&t.alloc, role) {
                    (Some(a), _) => (
                        Some(a.gfp),
                        cfg.effective_gfp(a.gfp, a.entry_flags | t.task_flags),
                    ),
                    (None, TaskRole::Waiter) => (
                        t.wait.as_ref().and_then(|w| w.caller_gfp),
                        t.wait.as_ref().map_or(cfg.gfp_kernel, |w| w.constraint),
                    ),
                    (None, _) => (None, cfg.effective_gfp(cfg.gfp_kernel, t.task_flags)),
                };
                TaskInfo {
                    pid: t.pid,
                    tgid: t.tgid,
                    comm: t.comm.clone(),
                    cgroup_id: t.cgroup_id,
                    role: *role,
                    gfp,
                    effective_gfp: Some(eff),
                    task_flags: t.task_flags,
                }
            })
            .collect();
        let stack_ids = occ
            .parts
            .iter()
            .flatten()
            .filter_map(|(_, _, s)| *s)
            .collect();
        let explanation = super::wording::explain(cfg, &occ, &tasks);
        let idx = findings.len();
        findings.push(Finding {
            kind: occ.kind,
            severity: grade(occ.kind, occ.reason, &occ.doubts),
            explanation,
            tasks,
            trigger: occ.trigger,
            trigger_effective_gfp: occ.trigger_effective_gfp,
            constraint_gfp: occ.constraint_gfp,
            violated_bits: occ.violated,
            first_seen_ns: occ.ts_ns,
            last_seen_ns: occ.ts_ns,
            count: 1,
            durations: Durations {
                hold_ns: occ.hold_ns,
                reclaim_ns: None,
                reclaim_total_ns: 0,
                wait_ns: occ.wait_ns,
            },
            stack_ids,
            signature: sig,
            fix_present: cfg.fix_present,
            waiter_reason: occ.reason,
            doubts: occ.doubts.clone(),
        });
        index.insert((occ.kind, sig), idx);
        Some(FindingUpdate::New { index: idx })
    }
}

fn max_opt(slot: &mut Option<u64>, v: Option<u64>) {
    if let Some(v) = v {
        *slot = Some(slot.map_or(v, |s| s.max(v)));
    }
}
