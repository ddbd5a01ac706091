//! Engine tests for issue 14: who counts as a waiter, state after losses, counting waits,
//! and the rules on PF_MEMALLOC, unknown fix status and unknown task flags.
use super::tests::{
    e, enter, exit, pgtable, populate, reclaim, reclaim_end, vm_areas, vulnerable, wait, wait_end,
    Ev,
};
use super::*;
use crate::event::{Event, EventKind, Frame};

const NOIO: u32 = 0xc00;
const KERNEL: u32 = 0xcc0;
/// A kworker as seen on 7.2.13: PF_WQ_WORKER|PF_FORKNOEXEC|PF_NOFREEZE|PF_MEMALLOC_NOIO|
/// PF_KTHREAD|PF_NO_SETAFFINITY.
const KWORKER_NOIO: u32 = 0x428_8060;
/// PR_SET_IO_FLUSHER: PF_MEMALLOC_NOIO|PF_LOCAL_THROTTLE (and PF_RANDOMIZE|PF_SUPERPRIV).
const IO_FLUSHER: u32 = 0x58_0100;
const PF_MEMALLOC: u32 = 0x800;

fn frames(names: &[&str]) -> Vec<Frame> {
    names
        .iter()
        .map(|n| Frame {
            function: Some(n.to_string()),
            ..Default::default()
        })
        .collect()
}

fn feed(eng: &mut Engine, evs: &[Event]) {
    for ev in evs {
        eng.process(ev);
    }
}

fn cross(eng: &Engine) -> Vec<&Finding> {
    eng.findings()
        .iter()
        .filter(|f| f.kind == FindingKind::CrossTask)
        .collect()
}

/// An unconstrained holder (pid 30) in GFP_KERNEL reclaim with the mutex held while `w`
/// waits.
fn holder_reclaims_while(w: Event) -> Vec<Event> {
    let pid = w.pid;
    vec![
        vm_areas(2, 30, None),
        w,
        reclaim(3, 30, KERNEL).holding(),
        reclaim_end(13, 30).holding(),
        wait_end(20, pid),
    ]
}

#[test]
fn the_balance_worker_waiting_is_not_a_cross_task() {
    // Its stack says so ...
    let mut eng = Engine::new(vulnerable());
    eng.stack(
        50,
        &frames(&[
            "__mutex_lock.constprop.0",
            "pcpu_balance_workfn",
            "process_one_work",
            "worker_thread",
        ]),
    );
    let w = wait(1, 40)
        .comm("kworker/1:2")
        .flags(KWORKER_NOIO)
        .stack(50);
    feed(&mut eng, &holder_reclaims_while(w));
    assert!(cross(&eng).is_empty(), "{:?}", eng.findings());

    // ... and without a stack, its flags (a workqueue worker in a NOIO scope outside any
    // constrained pcpu_alloc) make it unclassified: said, Info, never High.
    let mut eng = Engine::new(vulnerable());
    let mut w = wait(1, 40).comm("kworker/1:2").flags(KWORKER_NOIO);
    w.stack_id = None;
    feed(&mut eng, &holder_reclaims_while(w));
    eng.set_losses(Default::default());
    let f = cross(&eng);
    assert_eq!(f.len(), 1, "{:?}", eng.findings());
    assert_eq!(f[0].waiter_reason, Some(WaiterReason::Unclassified));
    assert_eq!(f[0].severity, Severity::Info);
}

#[test]
fn a_kworker_whose_stack_is_not_the_balance_worker_still_counts() {
    let mut eng = Engine::new(vulnerable());
    eng.stack(
        51,
        &frames(&["__mutex_lock", "pcpu_alloc_noprof", "blk_mq_init_sched"]),
    );
    let w = wait(1, 40)
        .comm("kworker/u8:1")
        .flags(KWORKER_NOIO)
        .stack(51);
    feed(&mut eng, &holder_reclaims_while(w));
    eng.set_losses(Default::default());
    let f = cross(&eng);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].waiter_reason, Some(WaiterReason::Scope));
    assert_eq!(
        f[0].severity,
        Severity::Warning,
        "a scope alone is not High"
    );
}

#[test]
fn waiters_are_named_and_graded_by_their_reason() {
    for (w, reason, sev) in [
        (
            wait(1, 20).caller(NOIO),
            WaiterReason::GfpConstrained,
            Severity::High,
        ),
        (
            wait(1, 20).caller(0x50_2cc0).flags(IO_FLUSHER),
            WaiterReason::IoFlusher,
            Severity::High,
        ),
        (
            wait(1, 20).flags(0x4_0000),
            WaiterReason::Scope,
            Severity::Warning,
        ),
    ] {
        let mut eng = Engine::new(vulnerable());
        feed(&mut eng, &holder_reclaims_while(w));
        eng.set_losses(Default::default());
        let f = cross(&eng);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].waiter_reason, Some(reason));
        assert_eq!(f[0].severity, sev, "{reason:?}");
        assert!(f[0].doubts.is_empty());
    }
}

#[test]
fn old_finding_json_still_parses() {
    let mut eng = Engine::new(vulnerable());
    feed(&mut eng, &holder_reclaims_while(wait(1, 20).caller(NOIO)));
    let mut v = serde_json::to_value(&eng.findings()[0]).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("waiter_reason");
    o.remove("doubts");
    let f: Finding = serde_json::from_value(v).unwrap();
    assert_eq!(f.waiter_reason, None);
    assert!(f.doubts.is_empty());
}

#[test]
fn contention_begin_twice_is_one_wait_and_one_occurrence() {
    // lock:contention_begin fires when the waiter spins and again when it sleeps.
    let evs = vec![
        reclaim(3, 30, KERNEL).holding(),
        e(
            4,
            20,
            EventKind::ContentionBegin {
                lock: 1,
                flags: 33,
                owner_pid: None,
            },
        )
        .caller(NOIO)
        .stack(9),
        e(
            5,
            20,
            EventKind::ContentionBegin {
                lock: 1,
                flags: 32,
                owner_pid: None,
            },
        )
        .caller(NOIO)
        .stack(9),
        reclaim_end(9, 30).holding(),
        wait_end(10, 20).caller(NOIO),
    ];
    let mut eng = Engine::new(vulnerable());
    feed(&mut eng, &evs);
    let f = cross(&eng);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].count, 1);
    assert_eq!(f[0].durations.wait_ns, Some(6), "from the first begin");
    let c = eng.snapshot().counters;
    assert_eq!((c.contentions, c.contentions_constrained), (1, 1));
}

#[test]
fn a_waiter_seen_holding_the_mutex_is_no_longer_waiting() {
    // 20's contention_end is lost; it is then seen holding the mutex and returning.
    let evs = vec![
        enter(0, 20, NOIO),
        wait(1, 20).caller(NOIO),
        populate(5, 20, Some(NOIO)).caller(NOIO),
        exit(6, 20),
        vm_areas(10, 30, None),
        reclaim(11, 30, KERNEL).holding(),
    ];
    let mut eng = Engine::new(vulnerable());
    feed(&mut eng, &evs);
    assert!(cross(&eng).is_empty(), "{:?}", eng.findings());
    assert!(eng.snapshot().waiters.is_empty());
}

#[test]
fn a_reclaim_does_not_outlive_its_holder() {
    // 30's reclaim_end is lost; it releases the mutex (its pcpu_alloc returns), then takes
    // it again later without reclaiming: a waiter arriving then is no cross_task.
    let evs = vec![
        enter(0, 30, KERNEL),
        vm_areas(1, 30, None),
        reclaim(2, 30, KERNEL).holding(),
        exit(5, 30),
        populate(10, 30, Some(KERNEL)),
        wait(11, 20).caller(NOIO),
    ];
    let mut eng = Engine::new(vulnerable());
    feed(&mut eng, &evs);
    assert!(cross(&eng).is_empty(), "{:?}", eng.findings());

    // Same with a new holder seen in between (the release was lost too).
    let evs = vec![
        vm_areas(1, 30, None),
        reclaim(2, 30, KERNEL).holding(),
        populate(5, 31, Some(KERNEL)),
        populate(10, 30, Some(KERNEL)),
        wait(11, 20).caller(NOIO),
    ];
    let mut eng = Engine::new(vulnerable());
    feed(&mut eng, &evs);
    assert!(cross(&eng).is_empty(), "{:?}", eng.findings());
}

#[test]
fn hand_made_loss_sequences_give_no_high_or_critical() {
    let lost = |n: u64| [("ringbuf_full".to_string(), n)].into_iter().collect();
    // A wait that began before events were lost (its end may be among them).
    let mut eng = Engine::new(vulnerable());
    feed(&mut eng, &[wait(1, 20).caller(NOIO), vm_areas(2, 30, None)]);
    eng.set_losses(lost(3));
    feed(&mut eng, &[reclaim(5, 30, KERNEL).holding()]);
    // A reclaim that began before events were lost.
    let mut eng2 = Engine::new(vulnerable());
    feed(
        &mut eng2,
        &[vm_areas(1, 30, None), reclaim(2, 30, KERNEL).holding()],
    );
    eng2.set_losses(lost(1));
    feed(&mut eng2, &[wait(5, 21).caller(NOIO)]);
    for eng in [&eng, &eng2] {
        let f = cross(eng);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].doubts, vec![Doubt::EventsLost]);
        assert!(f[0].severity < Severity::High, "{:?}", f[0].severity);
    }
    // State begun after the losses were counted is complete again.
    let mut eng3 = Engine::new(vulnerable());
    feed(&mut eng3, &[vm_areas(1, 30, None)]);
    eng3.set_losses(lost(1));
    feed(
        &mut eng3,
        &[wait(5, 21).caller(NOIO), reclaim(6, 30, KERNEL).holding()],
    );
    // Once the next counters show no further loss.
    assert!(cross(&eng3)[0].severity < Severity::High);
    eng3.set_losses(lost(1));
    assert_eq!(cross(&eng3)[0].severity, Severity::High);
    // Detail-only losses (a stack) cast no doubt.
    let mut eng4 = Engine::new(vulnerable());
    feed(
        &mut eng4,
        &[wait(1, 20).caller(NOIO), vm_areas(2, 30, None)],
    );
    eng4.set_losses([("stack".to_string(), 9)].into_iter().collect());
    feed(&mut eng4, &[reclaim(5, 30, KERNEL).holding()]);
    eng4.set_losses([("stack".to_string(), 12)].into_iter().collect());
    assert!(cross(&eng4)[0].doubts.is_empty());
}

#[test]
fn pf_memalloc_means_no_direct_reclaim_so_no_window() {
    let evs = vec![
        enter(0, 100, NOIO),
        pgtable(1, 100).caller(NOIO).flags(PF_MEMALLOC),
        vm_areas(2, 100, None).caller(NOIO).flags(PF_MEMALLOC),
    ];
    let mut eng = Engine::new(vulnerable());
    feed(&mut eng, &evs);
    assert!(eng.findings().is_empty(), "{:?}", eng.findings());
}

#[test]
fn get_vm_areas_without_gfp_on_a_kernel_of_unknown_fix_status_is_no_window() {
    let evs = vec![enter(0, 100, NOIO), vm_areas(1, 100, None).caller(NOIO)];
    let mut eng = Engine::new(EngineConfig::default());
    assert_eq!(eng.config().fix_present, None);
    feed(&mut eng, &evs);
    assert!(eng.findings().is_empty(), "{:?}", eng.findings());
    let mut eng = Engine::new(vulnerable());
    feed(&mut eng, &evs);
    assert_eq!(eng.findings().len(), 1);
}

#[test]
fn flags_the_engine_was_told_are_unknown_are_not_trusted() {
    let cfg = EngineConfig {
        task_flags_known: false,
        ..vulnerable()
    };
    // A garbage NOIO bit must not close the window of a GFP_NOIO caller ...
    let evs = vec![
        enter(0, 100, NOIO).flags(0x8_0000),
        pgtable(1, 100).caller(NOIO).flags(0x8_0000),
    ];
    let mut eng = Engine::new(cfg.clone());
    feed(&mut eng, &evs);
    assert_eq!(eng.findings().len(), 1);
    let f = &eng.findings()[0];
    assert_eq!(f.doubts, vec![Doubt::TaskFlagsUnknown]);
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(f.tasks[0].task_flags, 0, "no made-up flags in findings");
    // ... nor make a waiter count.
    let mut eng = Engine::new(cfg);
    feed(
        &mut eng,
        &holder_reclaims_while(wait(1, 20).flags(IO_FLUSHER)),
    );
    assert!(cross(&eng).is_empty(), "{:?}", eng.findings());
}

/// Tracepoint-only mode on a kernel without the fix: the GFP_NOIO writer creates a chunk with
/// the mutex held (percpu_create_chunk, owner word = the task), then its GFP_NOIO
/// percpu_alloc_percpu reports the caller's gfp.
fn tracepoint_create_then_done(flags: u32, done_gfp: u32) -> Vec<Event> {
    vec![
        e(
            1,
            60,
            EventKind::ChunkCreate {
                gfp: None,
                base: 0xbeef,
            },
        )
        .holding()
        .flags(flags)
        .stack(12),
        e(
            5,
            60,
            EventKind::PcpuAllocDone {
                size: 8,
                align: 8,
                reserved: false,
                gfp: done_gfp,
                call_site: 0xffff_ffff_8100_0000,
            },
        )
        .flags(flags),
    ]
}

#[test]
fn tracepoint_mode_sees_the_chunk_creation_window() {
    let mut eng = Engine::new(vulnerable());
    feed(&mut eng, &tracepoint_create_then_done(0, NOIO));
    eng.set_losses(Default::default());
    assert_eq!(eng.findings().len(), 1, "{:?}", eng.findings());
    let f = &eng.findings()[0];
    assert_eq!(f.kind, FindingKind::Window);
    assert_eq!(f.trigger, Trigger::ChunkCreate { gfp: None });
    assert_eq!((f.violated_bits, f.constraint_gfp), (0xc0, NOIO));
    assert_eq!(f.tasks[0].gfp, Some(NOIO));
    assert_eq!(f.stack_ids, vec![12]);
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(eng.tracked_tasks(), 0);

    // Not when the fix status is unknown or present, not for an unconstrained caller, not
    // when the narrowing came from the task's own scope (its nested allocations too), not
    // for PF_MEMALLOC.
    for (cfg, flags, gfp) in [
        (EngineConfig::default(), 0, NOIO),
        (
            EngineConfig {
                fix_present: Some(true),
                ..Default::default()
            },
            0,
            NOIO,
        ),
        (vulnerable(), 0, KERNEL),
        (vulnerable(), 0x8_0000, NOIO),
        (vulnerable(), PF_MEMALLOC, NOIO),
    ] {
        let mut eng = Engine::new(cfg);
        feed(&mut eng, &tracepoint_create_then_done(flags, gfp));
        assert!(eng.findings().is_empty(), "{flags:#x} {gfp:#x}");
    }
}
