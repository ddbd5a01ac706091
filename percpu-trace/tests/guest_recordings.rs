//! Replays of real recordings made by `cargo xtask vm-test` in Debian guests (gzip'd under
//! tests/fixtures/recordings/guests; regenerate by copying `target/vm-results/<boot>/out/
//! <scenario>/rec.jsonl` and gzip -9). The engine must find what the event sequence shows on
//! the vulnerable kernel, and none of the three kinds on the fixed one.
use std::{collections::BTreeMap, fs::File, io::BufReader, path::PathBuf};

use percpu_trace::{
    engine::{Engine, EngineConfig, Finding, FindingKind, Severity, Trigger, WaiterReason},
    event::EventKind,
    record::{replay_reader, Record, RecordingReader, ReplaySummary},
};

fn replay_full(name: &str) -> (Engine, ReplaySummary) {
    replay_with(name, |_| {})
}

/// Replays a guest recording (or, for a name ending in `.jsonl`, a synthetic one one
/// directory up) with its engine configuration changed by `change`.
fn replay_with(name: &str, change: impl FnOnce(&mut EngineConfig)) -> (Engine, ReplaySummary) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recordings");
    let input: Box<dyn std::io::Read> = if name.ends_with(".gz") {
        let f = File::open(dir.join("guests").join(name)).expect("fixture");
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(File::open(dir.join(name)).expect("fixture"))
    };
    let reader = RecordingReader::new(BufReader::new(input)).expect("recording header");
    let mut cfg = reader.header().engine_config();
    change(&mut cfg);
    let mut engine = Engine::new(cfg);
    let summary = replay_reader(reader, &mut engine).expect("replay");
    (engine, summary)
}

/// Occurrences of a cross_task finding whose waiter's stack is in pcpu_balance_workfn.
fn balance_worker_waiter(f: &Finding, s: &ReplaySummary) -> u64 {
    let waiter_stack = (f.tasks.len() == 2 && f.stack_ids.len() == 2)
        .then(|| s.stacks.get(&f.stack_ids[1]))
        .flatten();
    let in_balance = waiter_stack.is_some_and(|fr| {
        fr.iter()
            .any(|x| x.function.as_deref() == Some("pcpu_balance_workfn"))
    });
    if f.kind == FindingKind::CrossTask && in_balance {
        f.count
    } else {
        0
    }
}

fn replay(name: &str) -> (BTreeMap<&'static str, u64>, u64, Option<String>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/recordings/guests")
        .join(name);
    let gz = flate2::read::GzDecoder::new(File::open(&path).expect("fixture"));
    let reader = RecordingReader::new(BufReader::new(gz)).expect("recording header");
    let mut engine = Engine::new(reader.header().engine.clone());
    let release = reader.header().run.kernel_release.clone();
    let summary = replay_reader(reader, &mut engine).expect("replay");
    let mut kinds = BTreeMap::new();
    for f in engine.findings() {
        *kinds.entry(f.kind.id()).or_default() += f.count;
    }
    (kinds, summary.events, release)
}

#[test]
fn vulnerable_7_2_gfp_noio_writer_opens_the_window() {
    let (kinds, events, release) = replay("debian-7.2.13-noio-gfp.jsonl.gz");
    assert_eq!(release.as_deref(), Some("7.2.13+deb14-amd64"));
    assert!(events > 10_000, "{events} events");
    assert!(kinds.get("window").copied().unwrap_or(0) >= 1, "{kinds:?}");
}

#[test]
fn vulnerable_7_2_io_flusher_scope_is_not_a_window() {
    let (kinds, events, _) = replay("debian-7.2.13-noio-scope.jsonl.gz");
    assert!(events > 2_000, "{events} events");
    assert_eq!(kinds.get("window"), None, "{kinds:?}");
    assert_eq!(kinds.get("recursion"), None, "{kinds:?}");
}

#[test]
fn vulnerable_7_2_holder_reclaims_while_a_constrained_task_waits() {
    let (kinds, _, _) = replay("debian-7.2.13-contention.jsonl.gz");
    assert!(
        kinds.get("cross_task").copied().unwrap_or(0) >= 1,
        "{kinds:?}"
    );
}

/// The balance worker waits in its own NOIO scope: never the waiter of a cross_task. The
/// IO_FLUSHER waiters stay, High (no events were lost in this run).
#[test]
fn vulnerable_7_2_cross_task_never_blames_the_balance_worker() {
    let (engine, s) = replay_full("debian-7.2.13-contention.jsonl.gz");
    let cross: Vec<_> = engine
        .findings()
        .iter()
        .filter(|f| f.kind == FindingKind::CrossTask)
        .collect();
    assert!(!cross.is_empty());
    for f in &cross {
        assert_eq!(balance_worker_waiter(f, &s), 0, "{f:?}");
        assert!(!f.tasks[1].comm.starts_with("kworker"), "{f:?}");
        assert_eq!(f.waiter_reason, Some(WaiterReason::IoFlusher), "{f:?}");
        assert_eq!(f.severity, Severity::High);
        assert!(f.doubts.is_empty());
    }
    // contention_begin fires more than once per wait: waits are counted, not events.
    let c = engine.snapshot().counters;
    assert!(
        c.contentions < c.events_by_kind["contention_begin"],
        "{c:?}"
    );
}

/// 6.12.y (the 9a5b183941b5 backport; blkg_alloc GFP_NOIO since 6.12.63) and the
/// PREEMPT_RT 7.2 (rt_mutex-based struct mutex, owner word with RT_MUTEX_HAS_WAITERS),
/// recorded after the kernel began keeping fast-path constrained calls to itself and naming
/// the mutex owner at every wait: the holder's reclaim while the IO_FLUSHER waits is found,
/// never with the balance worker as the waiter, and every wait names an owner.
#[test]
fn stable_6_12_and_rt_7_2_show_the_cross_task_hazard() {
    for (name, release) in [
        (
            "debian-6.12.117-contention.jsonl.gz",
            "6.12.117+deb13-amd64",
        ),
        (
            "debian-7.2.13-rt-contention.jsonl.gz",
            "7.2.13+deb14-rt-amd64",
        ),
    ] {
        let (engine, s) = replay_full(name);
        let cross: Vec<_> = engine
            .findings()
            .iter()
            .filter(|f| f.kind == FindingKind::CrossTask)
            .collect();
        assert!(!cross.is_empty(), "{name}: no cross_task");
        assert!(
            engine
                .findings()
                .iter()
                .all(|f| f.kind == FindingKind::CrossTask),
            "{name}: {:?}",
            engine.findings().iter().map(|f| f.kind).collect::<Vec<_>>()
        );
        for f in &cross {
            assert_eq!(balance_worker_waiter(f, &s), 0, "{name}: {f:?}");
            assert_eq!(
                f.waiter_reason,
                Some(WaiterReason::IoFlusher),
                "{name}: {f:?}"
            );
        }
        // The owner word read at each wait names a holder.
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/recordings/guests")
            .join(name);
        let gz = flate2::read::GzDecoder::new(File::open(&path).expect("fixture"));
        let reader = RecordingReader::new(BufReader::new(gz)).expect("recording header");
        assert_eq!(reader.header().run.kernel_release.as_deref(), Some(release));
        // lock:contention_begin flags: LCB_F_SPIN (1) an optimistic spin, LCB_F_RT (8) the
        // PREEMPT_RT rt_mutex slow path.
        let (mut sleeping, mut named) = (0u64, 0u64);
        for rec in reader {
            if let Ok(Record::Event(ev)) = rec {
                if let EventKind::ContentionBegin {
                    owner_pid, flags, ..
                } = ev.kind
                {
                    if flags & 1 == 0 {
                        sleeping += 1;
                        named += u64::from(owner_pid.is_some_and(|p| p != ev.pid));
                    }
                }
            }
        }
        assert!(sleeping > 1_000, "{name}: {sleeping} sleeping waits");
        if release.contains("-rt-") {
            // Measured: 779 of 18,170 rt_mutex waits found the owner word set when the
            // tracepoint fired; the rest read it empty (not understood yet, see the VM
            // README). Some must name one.
            assert!(named > 0, "{name}: no wait names an owner");
        } else {
            // A sleeping waiter waits for a holder, so the owner word names another task
            // (6.12.117: 2,168 of 2,214; the rest name the waiter itself, the lock handed
            // over to it as the tracepoint fired). Spinners often find it already released.
            assert!(
                named * 100 >= sleeping * 95,
                "{name}: {named} of {sleeping} sleeping waits name an owner"
            );
        }
    }
}

#[test]
fn fixed_7_3_shows_the_same_load_and_no_finding() {
    for name in [
        "debian-7.3.4-noio-gfp.jsonl.gz",
        "debian-7.3.4-contention.jsonl.gz",
    ] {
        let (kinds, events, release) = replay(name);
        assert_eq!(release.as_deref(), Some("7.3.4+deb13-amd64"));
        assert!(events > 10_000, "{name}: {events} events");
        assert!(kinds.is_empty(), "{name}: {kinds:?}");
    }
}

/// Per-recording counts of each finding kind (by severity, waiter reason and doubts), and
/// how many cross_task occurrences name a waiter whose stack is in pcpu_balance_workfn
/// (run with `-- --ignored --nocapture`).
#[test]
#[ignore]
fn print_counts() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recordings");
    let mut names: Vec<_> = std::fs::read_dir(dir.join("guests"))
        .unwrap()
        .chain(std::fs::read_dir(&dir).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jsonl") || n.ends_with(".jsonl.gz"))
        .collect();
    names.sort();
    for name in names {
        let (engine, s) = replay_full(&name);
        let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
        let mut balance = 0;
        for f in engine.findings() {
            let key = format!(
                "{}/{}/{:?}/{:?}",
                f.kind.id(),
                f.severity,
                f.waiter_reason,
                f.doubts
            );
            *kinds.entry(key).or_default() += f.count;
            balance += balance_worker_waiter(f, &s);
        }
        println!(
            "{name}: {kinds:?}; cross_task with a pcpu_balance_workfn waiter: {balance}; losses {:?}",
            s.drops
        );
    }
}

/// The real noio-gfp run seen as tracepoint-only mode would see it: no pcpu_alloc entry or
/// return (percpu_alloc_percpu with the narrowed gfp instead), no nested-allocation probes,
/// percpu_create_chunk without a gfp, and no caller gfp in the kernel's task map.
fn replay_as_tracepoint_only(name: &str) -> Engine {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/recordings/guests")
        .join(name);
    let gz = flate2::read::GzDecoder::new(File::open(&path).expect("fixture"));
    let mut reader = RecordingReader::new(BufReader::new(gz)).expect("recording header");
    let cfg = reader.header().engine_config();
    let mut engine = Engine::new(cfg.clone());
    for rec in &mut reader {
        match rec.expect("record") {
            Record::Event(mut ev) => {
                let caller = ev.caller_gfp.take();
                ev.kind = match ev.kind {
                    EventKind::PcpuAllocExit { .. } => {
                        let Some(g) = caller else { continue };
                        EventKind::PcpuAllocDone {
                            size: 0,
                            align: 0,
                            reserved: false,
                            gfp: cfg.effective_gfp(g, ev.task_flags),
                            call_site: 0,
                        }
                    }
                    EventKind::ChunkCreate { base, .. } => {
                        EventKind::ChunkCreate { gfp: None, base }
                    }
                    EventKind::PcpuAllocEnter { .. }
                    | EventKind::ChunkPopulate { .. }
                    | EventKind::GetVmAreas { .. }
                    | EventKind::Vmalloc { .. }
                    | EventKind::PgtableAlloc => continue,
                    k => k,
                };
                engine.process(&ev);
            }
            Record::Stack { id, frames } => engine.stack(id, &frames),
            Record::Drops(d) => {
                engine.set_losses(d);
            }
            Record::Run { .. } => {}
            Record::Activity(a) => engine.set_kernel_activity(&a),
        }
    }
    engine
}

#[test]
fn tracepoint_only_view_of_the_vulnerable_run_keeps_the_chunk_creation_window() {
    let e = replay_as_tracepoint_only("debian-7.2.13-noio-gfp.jsonl.gz");
    let w: Vec<_> = e
        .findings()
        .iter()
        .filter(|f| f.kind == FindingKind::Window)
        .collect();
    assert_eq!(w.len(), 1, "{:?}", e.findings());
    assert_eq!(w[0].trigger, Trigger::ChunkCreate { gfp: None });
    assert_eq!(w[0].tasks[0].gfp, Some(0xc00));
    let fixed = replay_as_tracepoint_only("debian-7.3.4-noio-gfp.jsonl.gz");
    assert!(fixed.findings().is_empty(), "{:?}", fixed.findings());
}

#[test]
fn the_run_upgrades_the_fixed_kernel_and_not_the_vulnerable_one() {
    // The headers of these recordings predate per-patch evidence (their static verdict is
    // mapped from fix_present); what the run showed decides: on 7.3.4 unconstrained holders
    // populate with a gfp without IO/FS and allocate page tables in a scope the kernel set
    // (patches 2 and 3 at work); 7.2.13 shows neither.
    use percpu_trace::engine::reconcile;
    use percpu_trace::kernel::Verdict;
    let verdict = |name: &str| {
        let (engine, summary) = replay_full(name);
        let fix = summary.header.run.fix_verdict();
        reconcile(&fix, engine.fix_observations()).fix.verdict
    };
    assert_eq!(verdict("debian-7.3.4-contention.jsonl.gz"), Verdict::Fixed);
    assert_eq!(
        verdict("debian-7.2.13-contention.jsonl.gz"),
        Verdict::Vulnerable
    );
    assert_ne!(verdict("debian-7.2.13-noio-gfp.jsonl.gz"), Verdict::Fixed);
}

/// The fixed kernel's runs replayed as if the task_struct.flags offset had been unknown:
/// the evidence that reads scopes says nothing, so the verdict stays what the kernel image
/// shows (never partially-fixed from zeroed flags read as "no scope").
#[test]
fn fixed_7_3_replayed_without_task_flags_is_not_partially_fixed() {
    use percpu_trace::engine::reconcile;
    use percpu_trace::kernel::Verdict;
    for name in [
        "debian-7.3.4-noio-gfp.jsonl.gz",
        "debian-7.3.4-contention.jsonl.gz",
    ] {
        let (engine, summary) = replay_with(name, |c| c.task_flags_known = false);
        let fix = summary.header.run.fix_verdict();
        let v = reconcile(&fix, engine.fix_observations()).fix.verdict;
        assert!(
            matches!(v, Verdict::Fixed | Verdict::LikelyFixed),
            "{name}: {v}"
        );
        assert!(
            engine.findings().is_empty(),
            "{name}: {:?}",
            engine.findings()
        );
    }
}

/// What `pt-workload truth` (tracefs kprobes, not BPF) counted beside the tool in that boot:
/// try_to_free_pages entered by the writer holding the mutex with __GFP_IO|__GFP_FS allowed.
const RECURSION_RAW_HITS: u64 = 1;

/// The `recursion` scenario on Debian 7.2.13 (issue 25's recipe, fentry): the GFP_NOIO
/// io.max writer, holding pcpu_alloc_mutex, entered direct reclaim allowing IO and FS from a
/// kernel page-table allocation for a new chunk. Critical, with the whole path on its stack;
/// the unscoped page tables it allocated show populate-gfp missing (the static verdict
/// stands: `vulnerable`). The recording is whole (201,037 events were lost to the ring
/// buffer while the SCHED_FIFO writer kept the reader off the only CPU; the occurrence
/// rests on events seen, so it stays critical), and its reclaims are counted exactly: as
/// many occurrences as `truth` counted.
#[test]
fn vulnerable_7_2_recursion_is_found_with_its_stack() {
    use percpu_trace::engine::reconcile;
    use percpu_trace::kernel::{PatchId, PatchState, Verdict};
    let (engine, s) = replay_full("debian-7.2.13-recursion.jsonl.gz");
    assert_eq!(
        s.header.run.kernel_release.as_deref(),
        Some("7.2.13+deb14-amd64")
    );
    let rec: Vec<_> = engine
        .findings()
        .iter()
        .filter(|f| f.kind == FindingKind::Recursion)
        .collect();
    assert!(!rec.is_empty(), "{:?}", engine.findings());
    let occurrences: u64 = rec.iter().map(|f| f.count).sum();
    assert_eq!(occurrences, RECURSION_RAW_HITS, "every raw hit, none other");
    for f in &rec {
        assert_eq!(f.severity, Severity::Critical, "{f:?}");
        assert!(f.doubts.is_empty(), "{f:?}");
        assert_eq!(f.tasks[0].comm, "pt-rec-writer");
        assert_eq!(f.tasks[0].gfp, Some(0xc00), "blkg_alloc(GFP_NOIO)");
        assert!(matches!(f.trigger, Trigger::Reclaim { memcg: false, .. }));
        let frames = s.stacks.get(&f.stack_ids[0]).expect("the reclaim's stack");
        let names: Vec<&str> = frames
            .iter()
            .filter_map(|x| x.function.as_deref())
            .collect();
        // Innermost first: reclaim, entered from a page-table page for the chunk being
        // mapped, inside pcpu_alloc under blkg_conf_prep.
        let path = [
            "try_to_free_pages",
            "__pte_alloc_kernel",
            "pcpu_populate_chunk",
            "pcpu_alloc_noprof",
            "blkg_alloc",
            "blkg_conf_prep",
        ];
        let mut at = 0;
        for want in path {
            at += names[at..]
                .iter()
                .position(|n| *n == want)
                .unwrap_or_else(|| panic!("{want} missing after {at} in {names:?}"));
        }
        // The holder's flags carry PF_MEMALLOC (the allocator sets it around reclaim), and
        // the explanation says why rather than leave it unexplained.
        assert_ne!(f.tasks[0].task_flags & 0x800, 0);
        assert!(
            f.explanation.contains("PF_MEMALLOC is set because"),
            "{}",
            f.explanation
        );
    }
    let fix = reconcile(&s.header.run.fix_verdict(), engine.fix_observations());
    assert_eq!(fix.fix.verdict, Verdict::Vulnerable);
    assert_eq!(fix.fix.state(PatchId::PopulateGfp), PatchState::Absent);
    let p = fix
        .fix
        .patches
        .iter()
        .find(|p| p.id == PatchId::PopulateGfp)
        .unwrap();
    assert!(p.evidence.starts_with("run: "), "{p:?}");
}
