//! Engine throughput on a realistic synthetic stream: several GFP_NOIO writers and an
//! IO_FLUSHER process allocating percpu memory under pcpu_alloc_mutex, populating and
//! creating chunks, reclaiming while holding it, and waiting for each other, like the
//! Debian 7.2.13 guest workloads in KERNELS.md. Reports events per second.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use percpu_trace::{
    engine::{Engine, EngineConfig},
    event::{Event, EventKind},
};

const NOIO: u32 = 0xc00;
const KERNEL: u32 = 0xcc0;
const PF_NOIO: u32 = 0x80000;

#[allow(clippy::too_many_arguments)] // a test-data constructor: one argument per field
fn ev(
    ts: u64,
    pid: u32,
    comm: &str,
    flags: u32,
    holds: bool,
    caller: Option<u32>,
    stack: Option<u32>,
    kind: EventKind,
) -> Event {
    Event {
        ts_ns: ts,
        pid,
        tgid: pid,
        comm: comm.to_string(),
        cgroup_id: 42,
        task_flags: flags,
        holds_mutex: Some(holds),
        caller_gfp: caller,
        stack_id: stack,
        kind,
    }
}

/// About `n` events of a mixed workload.
fn stream(n: usize) -> Vec<Event> {
    let mut out = Vec::with_capacity(n + 16);
    let mut ts = 1_000_000u64;
    let mut i = 0u64;
    while out.len() < n {
        i += 1;
        let pid = 1000 + (i % 8) as u32;
        let (comm, flags, gfp) = if pid.is_multiple_of(2) {
            ("iomax-writer", 0, NOIO)
        } else {
            ("io-flusher", PF_NOIO, KERNEL)
        };
        let c = Some(gfp);
        let mut push = |holds: bool, stack: Option<u32>, kind: EventKind| {
            ts += 350;
            out.push(ev(ts, pid, comm, flags, holds, c, stack, kind));
        };
        push(
            false,
            None,
            EventKind::PcpuAllocEnter {
                size: 32768,
                align: 8,
                reserved: false,
                gfp,
            },
        );
        if i.is_multiple_of(5) {
            // contended: another task holds it
            push(
                false,
                Some(11),
                EventKind::ContentionBegin {
                    lock: 0xffff_ffff_8300_0000,
                    flags: 32,
                    owner_pid: None,
                },
            );
            push(
                true,
                None,
                EventKind::ContentionEnd {
                    lock: 0xffff_ffff_8300_0000,
                    ret: 0,
                },
            );
        }
        push(
            true,
            Some(20 + (i % 3) as u32),
            EventKind::ChunkPopulate {
                gfp: Some(gfp),
                page_start: 0,
                page_end: 8,
            },
        );
        if i.is_multiple_of(3) {
            push(true, Some(30), EventKind::PgtableAlloc);
        }
        if i.is_multiple_of(40) {
            push(
                true,
                Some(40),
                EventKind::ChunkCreate {
                    gfp: Some(gfp),
                    base: 0,
                },
            );
            push(
                true,
                Some(41),
                EventKind::GetVmAreas {
                    gfp: None,
                    nr_vms: 1,
                },
            );
        }
        if i.is_multiple_of(7) {
            let rg = if flags != 0 { NOIO } else { KERNEL };
            push(
                true,
                Some(50),
                EventKind::ReclaimBegin {
                    gfp: rg,
                    order: 0,
                    memcg: false,
                },
            );
            push(
                true,
                None,
                EventKind::ReclaimEnd {
                    nr_reclaimed: 32,
                    memcg: false,
                },
            );
        }
        push(
            false,
            None,
            EventKind::PcpuAllocDone {
                size: 32768,
                align: 8,
                reserved: false,
                gfp,
                call_site: 0,
            },
        );
        push(false, None, EventKind::PcpuAllocExit { ptr: 0x1000 });
        if i.is_multiple_of(11) {
            // An unconstrained holder reclaiming while a constrained task waits.
            ts += 100;
            out.push(ev(
                ts,
                2000,
                "kworker/u8:3",
                0,
                false,
                Some(NOIO),
                Some(12),
                EventKind::ContentionBegin {
                    lock: 0xffff_ffff_8300_0000,
                    flags: 32,
                    owner_pid: None,
                },
            ));
            ts += 100;
            out.push(ev(
                ts,
                3000,
                "bpf-maps",
                0,
                true,
                None,
                Some(60),
                EventKind::ReclaimBegin {
                    gfp: KERNEL,
                    order: 0,
                    memcg: false,
                },
            ));
            ts += 100;
            out.push(ev(
                ts,
                3000,
                "bpf-maps",
                0,
                true,
                None,
                None,
                EventKind::ReclaimEnd {
                    nr_reclaimed: 8,
                    memcg: false,
                },
            ));
            ts += 100;
            out.push(ev(
                ts,
                2000,
                "kworker/u8:3",
                0,
                true,
                Some(NOIO),
                None,
                EventKind::ContentionEnd {
                    lock: 0xffff_ffff_8300_0000,
                    ret: 0,
                },
            ));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let evs = stream(200_000);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(20);
    g.bench_function("process_mixed_stream", |b| {
        b.iter_batched(
            || {
                Engine::new(EngineConfig {
                    fix_present: Some(false),
                    ..Default::default()
                })
            },
            |mut eng| {
                for e in &evs {
                    std::hint::black_box(eng.process(e));
                }
                eng
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
