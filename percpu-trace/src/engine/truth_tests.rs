//! Findings are never stronger than their evidence, and none is missed that the events show
//! (issue 24): losses reported after a finding, stale state, tracepoint-only pairing, facts
//! the tool does not have, and the words of the occurrence that earned the severity. Each
//! test is an event sequence that the engine got wrong before.
use std::collections::BTreeMap;

use super::tests::{
    e, enter, populate, reclaim, reclaim_end, vulnerable, vulnerable_caller_stream, wait, Ev,
};
use super::*;
use crate::event::EventKind;

const NOIO: u32 = 0xc00;
const KERNEL: u32 = 0xcc0;
const PF_NOIO: u32 = 0x80000;
const PF_NOFS: u32 = 0x40000;
const PF_WQ_WORKER: u32 = 0x20;
const PF_LOCAL_THROTTLE: u32 = 0x100000;
const IO_FLUSHER: u32 = PF_NOIO | PF_LOCAL_THROTTLE;
const S: u64 = 1_000_000_000;

fn feed(eng: &mut Engine, evs: &[crate::event::Event]) {
    for ev in evs {
        eng.process(ev);
    }
}

fn losses(n: u64) -> BTreeMap<String, u64> {
    [("ringbuf_full".to_string(), n)].into()
}

fn strongest(eng: &Engine) -> Option<Severity> {
    eng.findings().iter().map(|f| f.severity).max()
}

fn done(ts: u64, pid: u32, gfp: u32) -> crate::event::Event {
    e(
        ts,
        pid,
        EventKind::PcpuAllocDone {
            size: 8,
            align: 8,
            reserved: false,
            gfp,
            call_site: 0,
        },
    )
}

fn create_tp(ts: u64, pid: u32) -> crate::event::Event {
    e(ts, pid, EventKind::ChunkCreate { gfp: None, base: 0 })
        .holding()
        .stack(2)
}

#[test]
fn a_lost_reclaim_end_and_losses_reported_after_the_finding_give_no_high() {
    let mut eng = Engine::new(EngineConfig::default());
    eng.set_losses(losses(0));
    // The holder's reclaim_end is lost; a GFP_NOIO caller waits within the second.
    feed(
        &mut eng,
        &[
            reclaim(S, 30, KERNEL).holding(),
            enter(S + S / 2, 20, NOIO),
            wait(S + S / 2 + 1, 20).caller(NOIO),
        ],
    );
    assert_eq!(eng.findings().len(), 1);
    // The counters of that second arrive: 500 events lost.
    eng.set_losses(losses(500));
    let f = &eng.findings()[0];
    assert_eq!(f.kind, FindingKind::CrossTask);
    assert!(f.severity < Severity::High, "{f:?}");
    assert!(!f.doubts.is_empty(), "{f:?}");
}

#[test]
fn an_io_flusher_whose_wait_end_was_lost_gives_no_high_when_losses_arrive() {
    let mut eng = Engine::new(EngineConfig::default());
    eng.set_losses(losses(0));
    feed(
        &mut eng,
        &[
            wait(S, 40).flags(IO_FLUSHER),
            // Its contention_end is lost; a second later the holder reclaims.
            reclaim(2 * S, 30, KERNEL).holding(),
        ],
    );
    assert_eq!(eng.findings().len(), 1);
    eng.set_losses(losses(500));
    assert!(
        strongest(&eng) < Some(Severity::High),
        "{:?}",
        eng.findings()
    );
}

#[test]
fn a_clean_loss_check_grades_the_finding_in_full() {
    let mut eng = Engine::new(EngineConfig::default());
    feed(
        &mut eng,
        &[
            reclaim(S, 30, KERNEL).holding(),
            enter(S + 10, 20, NOIO),
            wait(S + 11, 20).caller(NOIO),
        ],
    );
    eng.set_losses(losses(0));
    let f = &eng.findings()[0];
    assert_eq!(f.severity, Severity::High, "{f:?}");
    assert!(f.doubts.is_empty(), "{f:?}");
}

#[test]
fn state_older_than_any_plausible_wait_is_not_evidence() {
    let mut eng = Engine::new(EngineConfig::default());
    feed(
        &mut eng,
        &[
            // A wait whose end was lost, uncounted; a minute later the holder reclaims.
            wait(S, 40).flags(IO_FLUSHER),
            reclaim(61 * S, 30, KERNEL).holding(),
        ],
    );
    eng.set_losses(losses(0));
    assert!(eng.findings().is_empty(), "{:?}", eng.findings());
}

#[test]
fn tracepoint_mode_never_pairs_a_creation_with_a_later_call() {
    // systemd creates a chunk for a GFP_KERNEL cgroup allocation (its percpu_alloc_percpu
    // is filtered out), and 30 s later makes a GFP_NOIO fast-path allocation.
    let mut eng = Engine::new(vulnerable());
    feed(
        &mut eng,
        &[
            create_tp(S, 1).comm("systemd"),
            done(31 * S, 1, NOIO).comm("systemd"),
        ],
    );
    eng.set_losses(losses(0));
    assert!(eng.findings().is_empty(), "{:?}", eng.findings());
    // The kernel sends the completion of an unconstrained call that did something under
    // the mutex: the next constrained call is not paired with that creation either.
    let mut eng = Engine::new(vulnerable());
    feed(
        &mut eng,
        &[
            create_tp(S, 1),
            done(S + 1000, 1, KERNEL),
            done(S + 2000, 1, NOIO),
        ],
    );
    eng.set_losses(losses(0));
    assert!(eng.findings().is_empty(), "{:?}", eng.findings());
    assert_eq!(eng.snapshot().counters.constrained_allocs, 1);
    // The same call's completion still gives the window.
    let mut eng = Engine::new(vulnerable());
    feed(&mut eng, &[create_tp(S, 1), done(S + 1000, 1, NOIO)]);
    eng.set_losses(losses(0));
    assert_eq!(eng.findings().len(), 1);
    assert_eq!(eng.findings()[0].kind, FindingKind::Window);
}

#[test]
fn tracepoint_mode_finds_the_same_call_recursion() {
    // A held reclaim with gfp 0xcc0, then that task's percpu_alloc_percpu with gfp 0xc00:
    // the completion of the call it held the mutex for.
    let mut eng = Engine::new(vulnerable());
    feed(
        &mut eng,
        &[
            create_tp(S, 1),
            reclaim(S + 100, 1, KERNEL).holding(),
            reclaim_end(S + 200, 1).holding(),
            done(S + 300, 1, NOIO),
        ],
    );
    eng.set_losses(losses(0));
    let rec: Vec<_> = eng
        .findings()
        .iter()
        .filter(|f| f.kind == FindingKind::Recursion)
        .collect();
    assert_eq!(rec.len(), 1, "{:?}", eng.findings());
    assert_eq!(rec[0].severity, Severity::Critical);
    assert_eq!(rec[0].constraint_gfp, NOIO);
    assert_eq!(rec[0].violated_bits, 0xc0);
    // The window of the same call does not say no reclaim was seen.
    let w = eng
        .findings()
        .iter()
        .find(|f| f.kind == FindingKind::Window)
        .expect("window");
    assert!(
        !w.explanation.contains("No reclaim was seen here"),
        "{}",
        w.explanation
    );
    // A GFP_KERNEL call's reclaim is no recursion, nor is one paired across calls.
    let mut eng = Engine::new(vulnerable());
    feed(
        &mut eng,
        &[
            reclaim(S, 1, KERNEL).holding(),
            done(S + 100, 1, KERNEL),
            done(S + 200, 1, NOIO),
            reclaim(2 * S, 2, KERNEL).holding(),
            done(40 * S, 2, NOIO),
        ],
    );
    eng.set_losses(losses(0));
    assert!(eng.findings().is_empty(), "{:?}", eng.findings());
}

#[test]
fn unknown_task_flags_cap_only_what_they_could_change() {
    let cfg = EngineConfig {
        task_flags_known: false,
        ..vulnerable()
    };
    let mut eng = Engine::new(cfg.clone());
    feed(&mut eng, &vulnerable_caller_stream(100, 1_000));
    eng.set_losses(losses(0));
    let sev = |k| {
        eng.findings()
            .iter()
            .filter(|f| f.kind == k)
            .map(|f| f.severity)
            .max()
    };
    // The caller's gfp argument and the reclaim's (already narrowed) gfp need no flags.
    assert_eq!(sev(FindingKind::Recursion), Some(Severity::Critical));
    // A window's nested gfp is narrowed by the scope the flags would show.
    assert!(sev(FindingKind::Window) < Some(Severity::Warning));
    let mut eng = Engine::new(cfg);
    feed(
        &mut eng,
        &[
            reclaim(S, 30, KERNEL).holding(),
            enter(S + 10, 20, NOIO),
            wait(S + 11, 20).caller(NOIO),
        ],
    );
    eng.set_losses(losses(0));
    assert_eq!(
        strongest(&eng),
        Some(Severity::High),
        "{:?}",
        eng.findings()
    );
}

#[test]
fn a_loop_worker_without_a_stack_is_an_io_flusher_not_the_balance_worker() {
    let mut eng = Engine::new(EngineConfig::default());
    let mut w = wait(S, 40)
        .flags(PF_WQ_WORKER | IO_FLUSHER)
        .comm("kworker/u8:1");
    w.stack_id = None;
    feed(&mut eng, &[w, reclaim(S + 10, 30, KERNEL).holding()]);
    eng.set_losses(losses(0));
    assert_eq!(eng.findings().len(), 1, "{:?}", eng.findings());
    assert_eq!(
        eng.findings()[0].waiter_reason,
        Some(WaiterReason::IoFlusher)
    );
    assert_eq!(eng.findings()[0].severity, Severity::High);
}

#[test]
fn a_balance_worker_lookalike_without_a_stack_is_said_unclassified() {
    let mut eng = Engine::new(EngineConfig::default());
    let mut w = wait(S, 40)
        .flags(PF_WQ_WORKER | PF_NOIO)
        .comm("kworker/0:1");
    w.stack_id = None;
    feed(&mut eng, &[w, reclaim(S + 10, 30, KERNEL).holding()]);
    eng.set_losses(losses(0));
    assert_eq!(eng.findings().len(), 1, "{:?}", eng.findings());
    let f = &eng.findings()[0];
    assert!(f.explanation.contains("unclassified (no stack)"), "{f:?}");
    assert!(f.severity < Severity::Warning, "{f:?}");
}

#[test]
fn the_finding_shows_the_occurrence_that_earned_its_severity() {
    let mut eng = Engine::new(EngineConfig::default());
    // Same comms and stacks, so one finding: first a NOFS-scope waiter (Warning), then an
    // IO_FLUSHER (High).
    feed(
        &mut eng,
        &[
            wait(S, 40).flags(PF_NOFS).comm("w"),
            reclaim(S + 10, 30, KERNEL).holding(),
            reclaim_end(S + 20, 30).holding(),
            e(S + 30, 40, EventKind::TaskExit),
            wait(S + 40, 41).flags(IO_FLUSHER).comm("w"),
            reclaim(S + 50, 30, KERNEL).holding(),
        ],
    );
    eng.set_losses(losses(0));
    assert_eq!(eng.findings().len(), 1, "{:?}", eng.findings());
    let f = &eng.findings()[0];
    assert_eq!(f.count, 2);
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.waiter_reason, Some(WaiterReason::IoFlusher), "{f:?}");
    assert_eq!(f.tasks[1].pid, 41, "{f:?}");
}

#[test]
fn a_wait_whose_end_was_not_seen_is_not_a_zero_wait() {
    let mut eng = Engine::new(EngineConfig::default());
    feed(
        &mut eng,
        &[
            reclaim(S, 30, KERNEL).holding(),
            enter(S + 10, 20, NOIO),
            wait(S + 11, 20).caller(NOIO),
            // Its contention_end is lost: the next event of the task ends the wait.
            populate(S + 500, 20, Some(NOIO)).caller(NOIO),
        ],
    );
    eng.set_losses(losses(0));
    let f = &eng.findings()[0];
    assert_ne!(f.durations.wait_ns, Some(0), "{f:?}");
}

#[test]
fn a_stale_hold_gives_no_held_for_at_least() {
    let mut eng = Engine::new(EngineConfig::default());
    feed(
        &mut eng,
        &[
            enter(0, 20, NOIO),
            populate(10, 20, Some(NOIO)).caller(NOIO),
            // A minute with nothing from it: its release was lost.
            reclaim(60 * S, 20, KERNEL).caller(NOIO).holding(),
        ],
    );
    eng.set_losses(losses(0));
    let f = eng
        .findings()
        .iter()
        .find(|f| f.kind == FindingKind::Recursion)
        .expect("recursion");
    assert_eq!(f.durations.hold_ns, None, "{f:?}");
}
