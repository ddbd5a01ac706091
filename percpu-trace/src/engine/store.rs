//! The finding store: occurrences merged into deduplicated findings (by kind and a stable
//! signature of the tasks, roles and stacks involved), bounded by `max_findings`.
use std::collections::{BTreeMap, HashMap};

use super::{
    evidence::grade,
    finding::{Doubt, WaiterReason},
    occurrence::Occurrence,
    Durations, EngineConfig, Finding, FindingKind, FindingUpdate, Severity, TaskInfo, TaskRole,
    Trigger,
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
    /// By finding index: the best occurrence still waiting for its loss check (see
    /// [`Doubt::LossCheckPending`]), with the severity it earns if no loss is reported.
    pending: BTreeMap<usize, Earned>,
    /// By finding index, for findings with an occurrence waiting for its loss check: the
    /// doubts the finding has if the check finds losses (its `doubts` are those it has if
    /// not, plus [`Doubt::LossCheckPending`]).
    if_lost: BTreeMap<usize, Vec<Doubt>>,
}

/// What an occurrence shows in a finding: the occurrence that earned the finding's
/// severity is the one its words, tasks and gfps describe.
#[derive(Clone)]
struct Earned {
    severity: Severity,
    explanation: String,
    tasks: Vec<TaskInfo>,
    trigger: Trigger,
    trigger_effective_gfp: Option<u32>,
    constraint_gfp: u32,
    violated: u32,
    reason: Option<WaiterReason>,
}

impl Earned {
    fn apply(self, f: &mut Finding) {
        f.severity = self.severity;
        f.explanation = self.explanation;
        f.tasks = self.tasks;
        f.trigger = self.trigger;
        f.trigger_effective_gfp = self.trigger_effective_gfp;
        f.constraint_gfp = self.constraint_gfp;
        f.violated_bits = self.violated;
        f.waiter_reason = self.reason;
    }
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
            pending,
            if_lost,
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
        let now = grade(occ.kind, occ.reason, &occ.doubts);
        // What it earns once its loss check passes.
        let cleared: Vec<Doubt> = occ
            .doubts
            .iter()
            .copied()
            .filter(|d| *d != Doubt::LossCheckPending)
            .collect();
        let is_pending = cleared.len() < occ.doubts.len();
        let later = is_pending.then(|| grade(occ.kind, occ.reason, &cleared));
        // Its doubts if the check finds losses.
        let mut lost = cleared.clone();
        if is_pending && !lost.contains(&Doubt::EventsLost) {
            lost.push(Doubt::EventsLost);
            lost.sort();
        }
        if let Some(&idx) = index.get(&(occ.kind, sig)) {
            let f = &mut findings[idx];
            f.count += 1;
            f.first_seen_ns = f.first_seen_ns.min(occ.ts_ns);
            f.last_seen_ns = f.last_seen_ns.max(occ.ts_ns);
            max_opt(&mut f.durations.hold_ns, occ.hold_ns);
            max_opt(&mut f.durations.wait_ns, occ.wait_ns);
            // Doubts that every occurrence had; severity the best evidence earned, and the
            // words of the occurrence that earned it.
            match if_lost.get_mut(&idx) {
                Some(l) => l.retain(|d| lost.contains(d)),
                None if is_pending => {
                    let l = f.doubts.iter().copied().filter(|d| lost.contains(d));
                    if_lost.insert(idx, l.collect());
                }
                None => {}
            }
            let had_pending = f.doubts.contains(&Doubt::LossCheckPending);
            f.doubts
                .retain(|d| *d != Doubt::LossCheckPending && cleared.contains(d));
            if had_pending || is_pending {
                f.doubts.push(Doubt::LossCheckPending);
                f.doubts.sort();
            }
            if now > f.severity {
                earned(cfg, &occ, now).apply(f);
            }
            if let Some(later) = later {
                let best = pending
                    .get(&idx)
                    .map_or(f.severity, |e| e.severity.max(f.severity));
                if later > best {
                    pending.insert(idx, earned(cfg, &occ, later));
                }
            }
            return Some(FindingUpdate::Repeated { index: idx });
        }
        if findings.len() >= cfg.max_findings {
            *dropped += 1;
            return None;
        }
        let e = earned(cfg, &occ, now);
        let idx = findings.len();
        if let Some(later) = later.filter(|l| *l > now) {
            pending.insert(idx, earned(cfg, &occ, later));
        }
        if is_pending {
            if_lost.insert(idx, lost);
        }
        let stack_ids = occ
            .parts
            .iter()
            .flatten()
            .filter_map(|(_, _, s)| *s)
            .collect();
        findings.push(Finding {
            kind: occ.kind,
            severity: e.severity,
            explanation: e.explanation,
            tasks: e.tasks,
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
                wait_end_seen: false,
            },
            stack_ids,
            signature: sig,
            fix_present: cfg.fix_present,
            waiter_reason: occ.reason,
            doubts: {
                let mut d = occ.doubts.clone();
                d.sort();
                d
            },
        });
        index.insert((occ.kind, sig), idx);
        Some(FindingUpdate::New { index: idx })
    }

    /// The loss counters covering every pending occurrence arrived: `lost` says whether
    /// they rose. Pending doubts become [`Doubt::EventsLost`] or go, and a finding whose
    /// pending occurrence now earns more is re-graded (shown as that occurrence). Returns
    /// the indexes of the findings changed.
    pub(super) fn settle(&mut self, lost: bool) -> Vec<usize> {
        let mut changed = Vec::new();
        for (idx, doubts) in std::mem::take(&mut self.if_lost) {
            let f = &mut self.findings[idx];
            if lost {
                f.doubts = doubts;
            } else {
                f.doubts.retain(|d| *d != Doubt::LossCheckPending);
            }
            changed.push(idx);
        }
        for (idx, e) in std::mem::take(&mut self.pending) {
            let f = &mut self.findings[idx];
            if !lost && e.severity > f.severity {
                e.apply(f);
                if !changed.contains(&idx) {
                    changed.push(idx);
                }
            }
        }
        changed.sort_unstable();
        changed
    }
}

/// The view of a finding `occ` gives, graded `severity`.
fn earned(cfg: &EngineConfig, occ: &Occurrence<'_>, severity: Severity) -> Earned {
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
    let explanation = super::wording::explain(cfg, occ, &tasks);
    Earned {
        severity,
        explanation,
        tasks,
        trigger: occ.trigger,
        trigger_effective_gfp: occ.trigger_effective_gfp,
        constraint_gfp: occ.constraint_gfp,
        violated: occ.violated,
        reason: occ.reason,
    }
}

fn max_opt(slot: &mut Option<u64>, v: Option<u64>) {
    if let Some(v) = v {
        *slot = Some(slot.map_or(v, |s| s.max(v)));
    }
}
