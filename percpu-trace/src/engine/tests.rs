//! Engine tests on synthetic streams: every finding kind and the negative cases.
use super::*;
use crate::event::{Event, EventKind};

const NOIO: u32 = 0xc00;
const NOFS: u32 = 0xc40;
const KERNEL: u32 = 0xcc0;
const PF_NOIO: u32 = 0x80000;
const PF_NOFS: u32 = 0x40000;

/// A synthetic event builder.
pub(crate) fn e(ts: u64, pid: u32, kind: EventKind) -> Event {
    Event {
        ts_ns: ts,
        pid,
        tgid: pid,
        comm: format!("task{pid}"),
        cgroup_id: 1,
        task_flags: 0,
        holds_mutex: Some(false),
        caller_gfp: None,
        stack_id: None,
        kind,
    }
}

pub(crate) trait Ev {
    fn holding(self) -> Self;
    fn caller(self, gfp: u32) -> Self;
    fn flags(self, f: u32) -> Self;
    fn stack(self, s: u32) -> Self;
    fn comm(self, c: &str) -> Self;
}

impl Ev for Event {
    fn holding(mut self) -> Self {
        self.holds_mutex = Some(true);
        self
    }
    fn caller(mut self, gfp: u32) -> Self {
        self.caller_gfp = Some(gfp);
        self
    }
    fn flags(mut self, f: u32) -> Self {
        self.task_flags = f;
        self
    }
    fn stack(mut self, s: u32) -> Self {
        self.stack_id = Some(s);
        self
    }
    fn comm(mut self, c: &str) -> Self {
        self.comm = c.to_string();
        self
    }
}

pub(crate) fn enter(ts: u64, pid: u32, gfp: u32) -> Event {
    e(
        ts,
        pid,
        EventKind::PcpuAllocEnter {
            size: 32768,
            align: 8,
            reserved: false,
            gfp,
        },
    )
    .caller(gfp)
}
pub(crate) fn exit(ts: u64, pid: u32) -> Event {
    e(ts, pid, EventKind::PcpuAllocExit { ptr: 0x1000 })
}
pub(crate) fn reclaim(ts: u64, pid: u32, gfp: u32) -> Event {
    e(
        ts,
        pid,
        EventKind::ReclaimBegin {
            gfp,
            order: 0,
            memcg: false,
        },
    )
    .stack(7)
}
pub(crate) fn reclaim_end(ts: u64, pid: u32) -> Event {
    e(
        ts,
        pid,
        EventKind::ReclaimEnd {
            nr_reclaimed: 32,
            memcg: false,
        },
    )
}
pub(crate) fn wait(ts: u64, pid: u32) -> Event {
    e(
        ts,
        pid,
        EventKind::ContentionBegin {
            lock: 0xffff_8880_0000_1000,
            flags: 32,
            owner_pid: None,
        },
    )
    .stack(9)
}
pub(crate) fn wait_end(ts: u64, pid: u32) -> Event {
    e(
        ts,
        pid,
        EventKind::ContentionEnd {
            lock: 0xffff_8880_0000_1000,
            ret: 0,
        },
    )
    .holding()
}
pub(crate) fn vm_areas(ts: u64, pid: u32, gfp: Option<u32>) -> Event {
    e(ts, pid, EventKind::GetVmAreas { gfp, nr_vms: 1 })
        .holding()
        .stack(3)
}
pub(crate) fn populate(ts: u64, pid: u32, gfp: Option<u32>) -> Event {
    e(
        ts,
        pid,
        EventKind::ChunkPopulate {
            gfp,
            page_start: 0,
            page_end: 8,
        },
    )
    .holding()
    .stack(4)
}
pub(crate) fn pgtable(ts: u64, pid: u32) -> Event {
    e(ts, pid, EventKind::PgtableAlloc).holding().stack(5)
}
pub(crate) fn vmalloc(ts: u64, pid: u32, gfp: u32) -> Event {
    e(ts, pid, EventKind::Vmalloc { gfp, size: 4096 })
        .holding()
        .stack(6)
}

/// A kernel known to lack the fix series (7.2).
pub(crate) fn vulnerable() -> EngineConfig {
    EngineConfig {
        fix_present: Some(false),
        ..Default::default()
    }
}

fn run(cfg: EngineConfig, evs: &[Event]) -> Engine {
    let mut eng = Engine::new(cfg);
    for ev in evs {
        eng.process(ev);
    }
    eng
}

fn kinds(eng: &Engine) -> Vec<(FindingKind, u64)> {
    eng.findings().iter().map(|f| (f.kind, f.count)).collect()
}

/// A gfp-constrained (GFP_NOIO) caller populating and creating a chunk under the mutex on an
/// unpatched kernel, then entering GFP_KERNEL reclaim with the mutex held.
pub(crate) fn vulnerable_caller_stream(pid: u32, t0: u64) -> Vec<Event> {
    vec![
        enter(t0, pid, NOIO),
        populate(t0 + 10, pid, Some(NOIO)).caller(NOIO),
        pgtable(t0 + 20, pid).caller(NOIO),
        vm_areas(t0 + 30, pid, None).caller(NOIO),
        reclaim(t0 + 40, pid, KERNEL).caller(NOIO).holding(),
        reclaim_end(t0 + 90, pid).caller(NOIO).holding(),
        exit(t0 + 100, pid).caller(NOIO),
    ]
}

#[test]
fn recursion_when_noio_caller_reclaims_with_io_under_the_mutex() {
    let eng = run(
        EngineConfig::default(),
        &vulnerable_caller_stream(100, 1_000),
    );
    let rec: Vec<&Finding> = eng
        .findings()
        .iter()
        .filter(|f| f.kind == FindingKind::Recursion)
        .collect();
    assert_eq!(rec.len(), 1);
    let f = rec[0];
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.violated_bits, 0xc0);
    assert_eq!(f.constraint_gfp, NOIO);
    assert_eq!(
        f.trigger,
        Trigger::Reclaim {
            gfp: KERNEL,
            order: 0,
            memcg: false
        }
    );
    assert_eq!(f.tasks[0].role, TaskRole::Caller);
    assert_eq!(f.tasks[0].gfp, Some(NOIO));
    assert_eq!(f.stack_ids, vec![7]);
    assert_eq!(f.durations.reclaim_ns, Some(50));
    assert_eq!(
        f.durations.hold_ns,
        Some(30),
        "held since the populate at +10"
    );
    assert!(
        f.explanation.contains("task100 (pid 100)"),
        "{}",
        f.explanation
    );
    // Everything about the task is gone once it returned.
    assert_eq!(eng.tracked_tasks(), 0);
    assert!(eng.snapshot().holder.is_none());
}

#[test]
fn window_for_gfp_constrained_caller_on_unpatched_kernel() {
    let eng = run(vulnerable(), &vulnerable_caller_stream(100, 1_000));
    let win: Vec<&Trigger> = eng
        .findings()
        .iter()
        .filter(|f| f.kind == FindingKind::Window)
        .map(|f| &f.trigger)
        .collect();
    // populate itself keeps NOIO: only the page table and the vm areas metadata.
    assert_eq!(
        win,
        vec![&Trigger::PgtableAlloc, &Trigger::GetVmAreas { gfp: None }]
    );
    let f = &eng.findings()[0];
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.trigger_effective_gfp, Some(KERNEL));
    assert_eq!(f.violated_bits, 0xc0, "GFP_NOIO forbids both IO and FS");
}

#[test]
fn window_vmalloc_and_partial_scope() {
    // GFP_NOIO argument inside a NOFS scope: nested GFP_KERNEL becomes NOFS, still allows IO.
    let evs = vec![
        enter(0, 5, NOIO).flags(PF_NOFS),
        vmalloc(1, 5, KERNEL).caller(NOIO).flags(PF_NOFS),
        pgtable(2, 5).caller(NOIO).flags(PF_NOFS),
    ];
    let eng = run(EngineConfig::default(), &evs);
    assert_eq!(
        kinds(&eng),
        vec![(FindingKind::Window, 1), (FindingKind::Window, 1)]
    );
    for f in eng.findings() {
        assert_eq!(f.violated_bits, 0x40);
        assert_eq!(f.trigger_effective_gfp, Some(NOFS));
    }
}

#[test]
fn nested_allocations_that_cannot_reclaim_are_not_a_window() {
    let evs = vec![
        enter(0, 5, NOIO),
        vmalloc(1, 5, KERNEL & !0x400).caller(NOIO),
    ];
    assert!(run(EngineConfig::default(), &evs).findings().is_empty());
}

#[test]
fn scope_constrained_caller_is_covered() {
    // IO_FLUSHER task: GFP_KERNEL argument, PF_MEMALLOC_NOIO. Its nested allocations and its
    // reclaim are narrowed by the scope (the kernel reports the narrowed reclaim gfp).
    let f = PF_NOIO;
    let evs = vec![
        enter(0, 7, KERNEL).flags(f),
        populate(1, 7, Some(KERNEL)).caller(KERNEL).flags(f),
        vm_areas(2, 7, None).caller(KERNEL).flags(f),
        pgtable(3, 7).caller(KERNEL).flags(f),
        vmalloc(4, 7, KERNEL).caller(KERNEL).flags(f),
        reclaim(5, 7, NOIO).caller(KERNEL).flags(f).holding(),
        reclaim_end(6, 7).caller(KERNEL).flags(f).holding(),
        exit(7, 7).flags(f),
    ];
    let eng = run(EngineConfig::default(), &evs);
    assert!(eng.findings().is_empty(), "{:#?}", eng.findings());
    assert_eq!(eng.tracked_tasks(), 0);
}

#[test]
fn scope_dropped_between_allocations_is_judged_by_flags_at_the_moment() {
    // Same gfp-constrained caller: page tables under a NOIO scope are fine, without it not.
    let evs = vec![
        enter(0, 8, NOIO).flags(PF_NOIO),
        pgtable(1, 8).caller(NOIO).flags(PF_NOIO),
        exit(2, 8).flags(PF_NOIO),
        enter(3, 8, NOIO),
        pgtable(4, 8).caller(NOIO),
        exit(5, 8),
    ];
    let eng = run(EngineConfig::default(), &evs);
    assert_eq!(kinds(&eng), vec![(FindingKind::Window, 1)]);
    assert_eq!(eng.findings()[0].first_seen_ns, 4);
}

#[test]
fn constrained_caller_whose_nested_allocations_stay_constrained() {
    let evs = vec![
        enter(0, 9, NOFS),
        populate(1, 9, Some(NOFS)).caller(NOFS),
        vmalloc(2, 9, NOFS).caller(NOFS),
        reclaim(3, 9, NOFS).caller(NOFS).holding(),
        reclaim_end(4, 9).caller(NOFS).holding(),
        exit(5, 9),
    ];
    assert!(run(EngineConfig::default(), &evs).findings().is_empty());
}

#[test]
fn unconstrained_caller_under_the_mutex() {
    // No caller_gfp (the kernel side only tracks constrained callers), no scope.
    let evs = vec![
        e(
            0,
            11,
            EventKind::ChunkCreate {
                gfp: Some(KERNEL),
                base: 0,
            },
        )
        .holding(),
        vm_areas(1, 11, None),
        pgtable(2, 11),
        vmalloc(3, 11, KERNEL),
        reclaim(4, 11, KERNEL).holding(),
        reclaim_end(5, 11).holding(),
        e(6, 11, EventKind::TaskExit),
    ];
    let cfg = EngineConfig {
        fix_present: Some(false),
        ..Default::default()
    };
    let eng = run(cfg, &evs);
    assert!(eng.findings().is_empty());
    assert_eq!(eng.tracked_tasks(), 0);
}

#[test]
fn cross_task_when_waiter_already_waits() {
    let evs = vec![
        enter(0, 20, NOIO),
        wait(1, 20).caller(NOIO),
        vm_areas(2, 30, None), // unconstrained holder creating a chunk
        reclaim(3, 30, KERNEL).holding(),
        reclaim_end(13, 30).holding(),
        wait_end(20, 20).caller(NOIO),
        exit(21, 20),
    ];
    let mut eng = run(EngineConfig::default(), &evs);
    assert_eq!(kinds(&eng), vec![(FindingKind::CrossTask, 1)]);
    // Capped until the loss counters covering it arrive, then graded in full.
    assert_eq!(eng.findings()[0].severity, Severity::Warning);
    assert_eq!(eng.set_losses(BTreeMap::new()).len(), 1);
    let f = &eng.findings()[0];
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.tasks.len(), 2);
    assert_eq!((f.tasks[0].pid, f.tasks[0].role), (30, TaskRole::Holder));
    assert_eq!((f.tasks[1].pid, f.tasks[1].role), (20, TaskRole::Waiter));
    assert_eq!(f.tasks[1].gfp, Some(NOIO));
    assert_eq!(f.stack_ids, vec![7, 9]);
    assert_eq!(f.durations.reclaim_ns, Some(10));
    assert_eq!(f.durations.wait_ns, Some(19));
    assert_eq!(f.durations.hold_ns, Some(1));
}

#[test]
fn cross_task_when_waiter_arrives_during_reclaim() {
    let evs = vec![
        reclaim(3, 30, KERNEL).holding(),
        wait(4, 21).flags(PF_NOFS), // scope-constrained waiter, no caller gfp
        wait(5, 22),                // unconstrained waiter: nothing
        reclaim_end(9, 30).holding(),
    ];
    let eng = run(EngineConfig::default(), &evs);
    assert_eq!(kinds(&eng), vec![(FindingKind::CrossTask, 1)]);
    let f = &eng.findings()[0];
    assert_eq!(f.violated_bits, 0x80);
    assert_eq!(f.constraint_gfp, NOFS);
    assert_eq!(f.durations.reclaim_ns, Some(6));
    let s = eng.snapshot();
    assert_eq!(s.waiters.len(), 2);
    assert!(s.waiters[0].constrained && !s.waiters[1].constrained);
    assert_eq!(s.holder.as_ref().map(|h| h.pid), Some(30));
}

/// A waiter's contention_begin as the kernel now sends it: with the owner's thread id.
fn wait_owned_by(ts: u64, pid: u32, owner: u32) -> Event {
    let mut ev = wait(ts, pid);
    if let EventKind::ContentionBegin { owner_pid, .. } = &mut ev.kind {
        *owner_pid = Some(owner);
    }
    ev
}

#[test]
fn the_owner_at_a_wait_replaces_a_stale_holder() {
    // 30 held the mutex and entered reclaim; its reclaim_end and the rest of its events
    // were lost. When 21 (NOFS scope) begins to wait, the owner word names 40: 30 no
    // longer holds it, so its reclaim is not the holder's and there is no cross_task.
    let stale = vec![
        reclaim(3, 30, KERNEL).holding(),
        wait_owned_by(100, 21, 40).flags(PF_NOFS),
    ];
    let eng = run(EngineConfig::default(), &stale);
    assert_eq!(kinds(&eng), vec![]);
    let s = eng.snapshot();
    assert_eq!(s.holder.as_ref().map(|h| h.pid), Some(40));
    // Without the owner (an older recording) the engine still blames 30: the finding the
    // owner pid removes.
    let old = vec![
        reclaim(3, 30, KERNEL).holding(),
        wait(100, 21).flags(PF_NOFS),
    ];
    assert_eq!(
        kinds(&run(EngineConfig::default(), &old)),
        vec![(FindingKind::CrossTask, 1)]
    );
    // The owner named at the wait confirms a holder that is really reclaiming.
    let live = vec![
        reclaim(3, 30, KERNEL).holding(),
        wait_owned_by(4, 21, 30).flags(PF_NOFS),
        reclaim_end(9, 30).holding(),
    ];
    assert_eq!(
        kinds(&run(EngineConfig::default(), &live)),
        vec![(FindingKind::CrossTask, 1)]
    );
}

#[test]
fn a_late_entry_record_does_not_end_the_hold_its_task_took() {
    // The kernel sends a constrained call's entry only when the call reaches the slow path,
    // after the owner word already named the task as holder; the entry carries no mutex
    // state, so the hold still runs from the wait that named it.
    let mut entry = enter(5, 30, NOIO);
    entry.holds_mutex = None;
    let evs = vec![
        wait_owned_by(1, 21, 30).flags(PF_NOFS),
        entry,
        populate(6, 30, Some(NOIO)).holding().caller(NOIO),
    ];
    let eng = run(EngineConfig::default(), &evs);
    let h = eng.snapshot().holder.expect("30 holds the mutex");
    assert_eq!((h.pid, h.since_ns), (30, 1));
}

#[test]
fn a_task_named_as_owner_is_no_longer_waiting() {
    // 20's contention_end was lost; a later waiter's owner word names 20: it got the
    // mutex, so its wait ended.
    let evs = vec![
        enter(0, 20, NOIO),
        wait(1, 20).caller(NOIO),
        wait_owned_by(50, 22, 20),
    ];
    let eng = run(EngineConfig::default(), &evs);
    let s = eng.snapshot();
    assert!(s.waiters.iter().all(|w| w.pid != 20), "{:?}", s.waiters);
    assert_eq!(s.holder.as_ref().map(|h| h.pid), Some(20));
}

#[test]
fn holder_reclaim_without_constrained_waiter() {
    let evs = vec![
        wait(1, 22),
        reclaim(3, 30, KERNEL).holding(),
        reclaim_end(9, 30).holding(),
        wait_end(10, 22),
    ];
    assert!(run(EngineConfig::default(), &evs).findings().is_empty());
}

#[test]
fn holder_reclaim_that_cannot_do_what_the_waiter_forbids() {
    // Waiter forbids FS only; holder reclaims NOFS: fine. (Fixed kernels: holder NOIO.)
    let evs = vec![wait(1, 22).caller(NOFS), reclaim(3, 30, NOFS).holding()];
    assert!(run(EngineConfig::default(), &evs).findings().is_empty());
}

/// The same workload on a kernel with the fix series.
pub(crate) fn fixed_kernel_stream(pid: u32, t0: u64) -> Vec<Event> {
    vec![
        enter(t0, pid, NOIO),
        e(
            t0 + 5,
            pid,
            EventKind::ChunkCreate {
                gfp: Some(NOIO),
                base: 0,
            },
        )
        .holding()
        .caller(NOIO),
        vm_areas(t0 + 10, pid, Some(NOIO)).caller(NOIO),
        populate(t0 + 15, pid, Some(NOIO)).caller(NOIO),
        vmalloc(t0 + 20, pid, NOIO).caller(NOIO),
        reclaim(t0 + 25, pid, NOIO).caller(NOIO).holding(),
        wait(t0 + 26, pid + 1).caller(NOIO),
        reclaim_end(t0 + 30, pid).caller(NOIO).holding(),
        exit(t0 + 35, pid),
        wait_end(t0 + 36, pid + 1).caller(NOIO),
        // The waiter now holds it and allocates with NOIO backing too.
        populate(t0 + 37, pid + 1, Some(NOIO)).caller(NOIO),
        reclaim(t0 + 38, pid + 1, NOIO).caller(NOIO).holding(),
        reclaim_end(t0 + 39, pid + 1).caller(NOIO).holding(),
        exit(t0 + 40, pid + 1),
    ]
}

#[test]
fn fixed_kernel_sequences_give_nothing() {
    let cfg = EngineConfig {
        fix_present: Some(true),
        ..Default::default()
    };
    let eng = run(cfg, &fixed_kernel_stream(40, 0));
    assert!(eng.findings().is_empty(), "{:#?}", eng.findings());
    assert_eq!(eng.tracked_tasks(), 0);
}

#[test]
fn tracepoint_chunk_create_depends_on_fix_status() {
    let evs = vec![
        enter(0, 50, NOIO),
        e(
            1,
            50,
            EventKind::ChunkCreate {
                gfp: None,
                base: 0xdead,
            },
        )
        .holding()
        .caller(NOIO),
    ];
    for (fix, n) in [(Some(false), 1), (None, 0), (Some(true), 0)] {
        let cfg = EngineConfig {
            fix_present: fix,
            ..Default::default()
        };
        let eng = run(cfg, &evs);
        assert_eq!(eng.findings().len(), n, "fix_present {fix:?}");
        if n == 1 {
            assert_eq!(eng.findings()[0].fix_present, Some(false));
        }
    }
}

#[test]
fn storms_deduplicate_into_counts() {
    let mut eng = Engine::new(vulnerable());
    let mut updates = 0;
    for i in 0..1000u64 {
        let pid = 100 + (i % 4) as u32; // same comm, different threads
        for ev in vulnerable_caller_stream(pid, i * 1000) {
            let ev = ev.comm("writer");
            updates += eng.process(&ev).len();
        }
    }
    assert_eq!(
        kinds(&eng),
        vec![
            (FindingKind::Window, 1000),
            (FindingKind::Window, 1000),
            (FindingKind::Recursion, 1000)
        ]
    );
    let f = &eng.findings()[2];
    assert_eq!((f.first_seen_ns, f.last_seen_ns), (40, 999_040));
    assert_eq!(f.durations.reclaim_total_ns, 50 * 1000);
    assert!(updates >= 3000);
    let s = eng.snapshot();
    assert_eq!(s.counters.occurrences_by_kind["recursion"], 1000);
    assert_eq!(s.counters.constrained_by_comm["writer"], 1000);
    assert_eq!(s.counters.constrained_by_gfp[&NOIO], 1000);
    assert_eq!(s.counters.events_by_kind["reclaim_begin"], 1000);
}

#[test]
fn different_stacks_or_comms_are_different_findings() {
    let a = vec![enter(0, 1, NOIO), pgtable(1, 1).caller(NOIO)];
    let b = vec![enter(2, 2, NOIO), pgtable(3, 2).caller(NOIO).stack(99)];
    let c = vec![
        enter(4, 3, NOIO).comm("other"),
        pgtable(5, 3).caller(NOIO).comm("other"),
    ];
    let d = vec![enter(6, 4, NOIO), pgtable(7, 4).caller(NOIO).comm("task1")];
    let mut evs = a;
    evs.extend(b);
    evs.extend(c);
    evs.extend(d.into_iter().map(|e| e.comm("task1")));
    let eng = run(EngineConfig::default(), &evs);
    let counts: Vec<u64> = eng.findings().iter().map(|f| f.count).collect();
    assert_eq!(counts, vec![2, 1, 1]);
    let sigs: std::collections::BTreeSet<u64> =
        eng.findings().iter().map(|f| f.signature).collect();
    assert_eq!(sigs.len(), 3);
}

#[test]
fn snapshot_shows_holder_activity_and_reclaims() {
    let evs = vec![
        enter(0, 60, NOIO),
        populate(10, 60, Some(NOIO)).caller(NOIO),
        wait(11, 61).flags(PF_NOIO),
    ];
    let eng = run(EngineConfig::default(), &evs);
    let s = eng.snapshot();
    let h = s.holder.clone().unwrap();
    assert_eq!(
        (h.pid, h.activity, h.since_ns, h.held_ns),
        (60, Activity::Populating, 10, 1)
    );
    assert!(h.constrained);
    assert_eq!(h.caller_gfp, Some(NOIO));
    assert_eq!(s.tasks.len(), 2);
    assert_eq!(s.tasks[1].activity, Activity::Waiting);
    let mut eng = eng;
    eng.process(&reclaim(12, 60, NOIO).caller(NOIO).holding());
    let s = eng.snapshot();
    assert_eq!(s.holder.unwrap().activity, Activity::Reclaiming);
    assert_eq!(s.recent_reclaims.len(), 1);
    assert!(s.recent_reclaims[0].held_mutex && s.recent_reclaims[0].end_ns.is_none());
    eng.process(&reclaim_end(15, 60).caller(NOIO).holding());
    assert_eq!(eng.snapshot().recent_reclaims[0].nr_reclaimed, Some(32));
    // JSON for the TUI/report engineers.
    let json = serde_json::to_string(&eng.snapshot()).unwrap();
    assert!(json.contains("\"activity\":\"populating\""), "{json}");
}

#[test]
fn holder_changes_hands() {
    let mut eng = Engine::new(EngineConfig::default());
    eng.process(&pgtable(1, 70));
    assert_eq!(eng.snapshot().holder.unwrap().pid, 70);
    eng.process(&wait_end(2, 71));
    let s = eng.snapshot();
    assert_eq!(s.holder.unwrap().pid, 71);
    assert!(s
        .tasks
        .iter()
        .all(|t| t.pid != 70 || t.hold_since_ns.is_none()));
    eng.process(&e(3, 71, EventKind::TaskExit));
    assert!(eng.snapshot().holder.is_none());
}

#[test]
fn lost_exit_is_repaired_by_the_kernel_view() {
    let mut eng = Engine::new(EngineConfig::default());
    eng.process(&enter(0, 80, NOIO));
    // Exit lost; a later event says the task is no longer in a constrained pcpu_alloc.
    eng.process(&pgtable(5, 80));
    assert!(eng.findings().is_empty());
}

#[test]
fn task_cap_evicts_oldest() {
    let cfg = EngineConfig {
        max_tasks: 64,
        ..Default::default()
    };
    let mut eng = Engine::new(cfg);
    for pid in 0..10_000u32 {
        eng.process(&enter(u64::from(pid), pid, NOIO));
        assert!(eng.tracked_tasks() <= 64);
    }
    assert!(eng.snapshot().counters.evicted_tasks > 0);
    // The newest survive.
    assert!(eng.snapshot().tasks.iter().any(|t| t.pid == 9_999));
}

#[test]
fn finding_cap_counts_the_rest() {
    let cfg = EngineConfig {
        max_findings: 2,
        ..Default::default()
    };
    let mut eng = Engine::new(cfg);
    for s in 0..5u32 {
        eng.process(&enter(0, 1, NOIO));
        eng.process(&pgtable(1, 1).caller(NOIO).stack(s));
    }
    assert_eq!(eng.findings().len(), 2);
    assert_eq!(eng.snapshot().counters.findings_dropped, 3);
}

#[test]
fn deterministic() {
    let mut evs = vulnerable_caller_stream(1, 0);
    evs.extend(fixed_kernel_stream(2, 1000));
    evs.extend([
        wait(2000, 5).caller(NOIO),
        reclaim(2001, 6, KERNEL).holding(),
    ]);
    let a = run(EngineConfig::default(), &evs);
    let b = run(EngineConfig::default(), &evs);
    assert_eq!(a.findings(), b.findings());
    assert_eq!(a.snapshot(), b.snapshot());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_kind() -> impl Strategy<Value = EventKind> {
        let gfp = prop_oneof![Just(NOIO), Just(NOFS), Just(KERNEL), any::<u32>()];
        prop_oneof![
            gfp.clone().prop_map(|gfp| EventKind::PcpuAllocEnter {
                size: 8,
                align: 8,
                reserved: false,
                gfp
            }),
            Just(EventKind::PcpuAllocExit { ptr: 0 }),
            gfp.clone().prop_map(|gfp| EventKind::PcpuAllocDone {
                size: 8,
                align: 8,
                reserved: false,
                gfp,
                call_site: 0
            }),
            proptest::option::of(gfp.clone())
                .prop_map(|gfp| EventKind::ChunkCreate { gfp, base: 0 }),
            proptest::option::of(gfp.clone()).prop_map(|gfp| EventKind::ChunkPopulate {
                gfp,
                page_start: 0,
                page_end: 1
            }),
            proptest::option::of(gfp.clone())
                .prop_map(|gfp| EventKind::GetVmAreas { gfp, nr_vms: 1 }),
            gfp.clone()
                .prop_map(|gfp| EventKind::Vmalloc { gfp, size: 1 }),
            Just(EventKind::PgtableAlloc),
            (gfp, any::<bool>()).prop_map(|(gfp, memcg)| EventKind::ReclaimBegin {
                gfp,
                order: 0,
                memcg
            }),
            Just(EventKind::ReclaimEnd {
                nr_reclaimed: 1,
                memcg: false
            }),
            // The owner: none, or one of the few pids the stream uses (or one it never
            // uses, a task with no events of its own).
            proptest::option::of(1u32..6).prop_map(|owner_pid| EventKind::ContentionBegin {
                lock: 1,
                flags: 32,
                owner_pid
            }),
            Just(EventKind::ContentionEnd { lock: 1, ret: 0 }),
            Just(EventKind::TaskExit),
        ]
    }

    prop_compose! {
        fn arb_event()(
            ts in 0u64..1_000_000,
            pid in 0u32..200,
            flags in prop_oneof![Just(0u32), Just(PF_NOIO), Just(PF_NOFS), any::<u32>()],
            holds in proptest::option::of(any::<bool>()),
            caller in proptest::option::of(prop_oneof![Just(NOIO), Just(NOFS), Just(KERNEL)]),
            stack in proptest::option::of(0u32..20),
            comm in 0u8..6,
            kind in arb_kind(),
        ) -> Event {
            Event {
                ts_ns: ts, pid, tgid: pid, comm: format!("c{comm}"), cgroup_id: 0,
                task_flags: flags, holds_mutex: holds, caller_gfp: caller, stack_id: stack, kind,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_streams_never_panic_and_stay_bounded(evs in proptest::collection::vec(arb_event(), 0..600)) {
            let cfg = EngineConfig { max_tasks: 32, max_findings: 16, max_recent_reclaims: 8, max_counter_keys: 4, max_pending_links: 3, ..Default::default() };
            let mut eng = Engine::new(cfg);
            for ev in &evs {
                for u in eng.process(ev) {
                    prop_assert!(u.index() < eng.findings().len());
                }
                prop_assert!(eng.tracked_tasks() <= 32);
                prop_assert!(eng.findings().len() <= 16);
            }
            let s = eng.snapshot();
            prop_assert!(s.recent_reclaims.len() <= 8);
            prop_assert!(s.counters.constrained_by_gfp.len() <= 4);
            prop_assert!(s.counters.constrained_by_comm.len() <= 4);
            prop_assert!(s.waiters.len() <= s.tasks.len());
            for f in eng.findings() {
                prop_assert!(f.count >= 1 && f.first_seen_ns <= f.last_seen_ns);
                prop_assert!(f.violated_bits != 0);
            }
            // Every task exiting, owners named at waits included, leaves nothing behind.
            let owners = evs.iter().filter_map(|e| match e.kind {
                EventKind::ContentionBegin { owner_pid, .. } => owner_pid,
                _ => None,
            });
            let pids: std::collections::BTreeSet<u32> =
                evs.iter().map(|e| e.pid).chain(owners).collect();
            for pid in pids {
                eng.process(&e(1_000_001, pid, EventKind::TaskExit));
            }
            prop_assert_eq!(eng.tracked_tasks(), 0);
            let s = eng.snapshot();
            prop_assert!(s.holder.is_none() && s.waiters.is_empty());
        }

        #[test]
        fn replaying_twice_gives_the_same_findings(evs in proptest::collection::vec(arb_event(), 0..300)) {
            let a = run(EngineConfig::default(), &evs);
            let b = run(EngineConfig::default(), &evs);
            prop_assert_eq!(a.findings(), b.findings());
        }
    }
}

fn eng_waits_unconstrained(e: &Engine) -> u64 {
    e.activity()
        .waits_by_class
        .get("balance_worker_or_unconstrained")
        .copied()
        .unwrap_or(0)
}

#[test]
fn the_kernels_constrained_counts_replace_the_events_when_it_kept_them() {
    // The kernel sends only slow-path constrained calls, so the events undercount: one
    // constrained call was sent, the kernel counted 500 by cause.
    let mut eng = run(
        EngineConfig {
            fix_present: Some(true),
            ..EngineConfig::default()
        },
        &fixed_kernel_stream(100, 1_000),
    );
    assert_eq!(eng.activity().constrained_allocations, 1);
    let totals: std::collections::BTreeMap<String, u64> = [
        ("percpu_allocations", 9_000),
        ("constrained_allocations", 500),
        ("constrained_by_gfp_argument", 300),
        ("constrained_by_io_flusher", 150),
        ("constrained_by_noio_scope", 40),
        ("constrained_by_nofs_scope", 10),
        ("unconstrained_waits", 70),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    eng.set_kernel_activity(&totals);
    let a = eng.snapshot().activity;
    assert_eq!(a, eng.activity());
    assert_eq!(
        (
            a.constrained_allocations,
            a.constrained_by_gfp_argument,
            a.constrained_by_io_flusher,
            a.constrained_by_noio_scope,
            a.constrained_by_nofs_scope
        ),
        (500, 300, 150, 40, 10)
    );
    // What only the events show stays theirs; unconstrained waits add to the events'.
    assert_eq!(a.constrained_took_mutex, 2, "{a:?}");
    assert_eq!(a.waits_by_class.get("gfp_constrained"), Some(&1));
    let before = eng_waits_unconstrained(&run(
        EngineConfig {
            fix_present: Some(true),
            ..EngineConfig::default()
        },
        &fixed_kernel_stream(100, 1_000),
    ));
    assert_eq!(
        a.waits_by_class
            .get("balance_worker_or_unconstrained")
            .copied(),
        Some(before + 70)
    );

    // A recording from before these counters: the counts come from the events.
    let mut old = std::collections::BTreeMap::new();
    old.insert("percpu_allocations".to_string(), 9_000);
    eng.set_kernel_activity(&old);
    assert_eq!(eng.activity().constrained_allocations, 1);
}

#[test]
fn activity_says_what_was_seen_without_a_finding() {
    // A fixed kernel: the constrained caller takes the mutex and populates, nested
    // allocations keep the constraint, no finding; the counts say the path was exercised.
    let mut eng = run(
        EngineConfig {
            fix_present: Some(true),
            ..EngineConfig::default()
        },
        &fixed_kernel_stream(100, 1_000),
    );
    assert!(eng.findings().is_empty());
    let mut totals = std::collections::BTreeMap::new();
    totals.insert("percpu_allocations".to_string(), 150);
    totals.insert("blocking_percpu_allocations".to_string(), 120);
    eng.set_kernel_activity(&totals);
    let a = eng.snapshot().activity;
    assert_eq!(a.percpu_allocations, Some(150));
    assert_eq!(a.constrained_allocations, 1);
    assert_eq!(a.constrained_by_gfp_argument, 1);
    // Two holders: the caller, and the waiter that then held it (its entry was not seen,
    // its events carry the caller gfp).
    assert_eq!(a.constrained_took_mutex, 2, "{a:?}");
    assert_eq!(a.waits_by_class.get("gfp_constrained"), Some(&1));
    assert!(a.chunk_populates_by_constrained_holder >= 1, "{a:?}");
    assert_eq!(a.nested_allocations_allowing_fs_io, 0, "{a:?}");
    assert!(
        a.why_no_finding(None).contains("kept the constraint"),
        "{}",
        a.why_no_finding(None)
    );

    // The vulnerable kernel's stream: nested allocations that allow FS/IO are counted, a
    // holder's reclaim too, and a scope-constrained caller is counted under its scope.
    let eng = run(vulnerable(), &vulnerable_caller_stream(100, 1_000));
    let a = eng.snapshot().activity;
    assert!(a.nested_allocations_allowing_fs_io >= 2, "{a:?}");
    assert_eq!(a.reclaims_by_holder, 1);
    assert_eq!(
        a.percpu_allocations, None,
        "not counted: no kernel totals given"
    );
    let scoped = run(
        EngineConfig::default(),
        &[enter(0, 7, KERNEL).flags(0x80000), exit(5, 7)],
    );
    assert_eq!(scoped.snapshot().activity.constrained_by_noio_scope, 1);
    let none = run(EngineConfig::default(), &[]);
    assert!(none
        .snapshot()
        .activity
        .why_no_finding(None)
        .contains("not exercised"));
}

#[test]
fn why_none_in_tracepoint_mode_says_only_what_it_saw() {
    // 12,012 constrained calls counted in the kernel, none seen on the slow path: tracepoint
    // mode cannot see populated chunks serve them, so it must not claim it did.
    let a = ActivityCounts {
        constrained_allocations: 12_012,
        ..ActivityCounts::default()
    };
    let kprobe = a.why_no_finding(Some("kprobe"));
    assert!(kprobe.contains("already populated chunks"), "{kprobe}");
    let tp = a.why_no_finding(Some("tracepoint"));
    assert!(
        tp.starts_with("12012 constrained allocation(s) were seen"),
        "{tp}"
    );
    assert!(!tp.contains("populated chunks"), "{tp}");
    assert!(tp.contains("does not see chunk population"), "{tp}");
    // Nor that the kernel kept the constraint under the mutex: nested allocations are unseen.
    let b = ActivityCounts {
        constrained_allocations: 5,
        constrained_took_mutex: 2,
        ..ActivityCounts::default()
    };
    assert!(b.why_no_finding(None).contains("kept the constraint"));
    assert!(!b
        .why_no_finding(Some("tracepoint"))
        .contains("kept the constraint"));
}

#[test]
fn the_kernels_per_process_counts_say_who_made_the_constrained_calls() {
    // 12,012 constrained calls, none sent (all served from populated chunks): the callers
    // table was empty. The kernel's per-process counts travel with the activity totals.
    let mut eng = Engine::new(EngineConfig::default());
    let mut totals: std::collections::BTreeMap<String, u64> =
        [("constrained_allocations".to_string(), 12_015)].into();
    totals.insert(process_key(4242, "fio"), 12_012);
    totals.insert(process_key(88, "iscsid"), 3);
    for i in 0..40 {
        totals.insert(process_key(10_000 + i, "w:x"), 0);
    }
    eng.set_kernel_activity(&totals);
    let a = eng.snapshot().activity;
    assert_eq!(a.top_processes.len(), TOP_PROCESSES);
    assert_eq!(
        (a.top_processes[0].tgid, a.top_processes[0].comm.as_str()),
        (4242, "fio")
    );
    assert_eq!(a.top_processes[0].constrained_allocations, 12_012);
    assert_eq!(a.top_processes[1].comm, "iscsid");
    // A comm with ':' survives the key.
    assert_eq!(a.top_processes[2].comm, "w:x");
    let words = crate::report::wording::activity_lines(&a);
    let who = words
        .iter()
        .find(|(l, _)| *l == "constrained, by whom")
        .unwrap();
    assert!(
        who.1.starts_with("fio/4242 12012, iscsid/88 3"),
        "{}",
        who.1
    );
}
