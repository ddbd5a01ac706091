//! Engine memory at 10,000 tracked tasks: a stand-alone program built by `cargo xtask
//! bench` in a scratch crate that depends on the percpu-trace library (xtask itself does
//! not link the tool). Each task is left inside a GFP_NOIO percpu allocation that waited
//! for the mutex, so the engine must keep its state. Prints one JSON line.
use std::fs;

use percpu_trace::{
    engine::{Engine, EngineConfig},
    event::{Event, EventKind},
};

const TASKS: u32 = 10_000;
const NOIO: u32 = 0xc00;
const LOCK: u64 = 0xffff_ffff_8300_0000;

fn rss_kib() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn ev(ts: u64, pid: u32, kind: EventKind) -> Event {
    Event {
        ts_ns: ts,
        pid,
        tgid: pid,
        comm: format!("writer-{pid}"),
        cgroup_id: 1000 + u64::from(pid),
        task_flags: 0,
        holds_mutex: Some(false),
        caller_gfp: Some(NOIO),
        stack_id: Some(pid % 64),
        kind,
    }
}

fn main() {
    let before = rss_kib();
    let mut eng = Engine::new(EngineConfig {
        fix_present: Some(false),
        ..Default::default()
    });
    let mut ts = 1_000_000u64;
    let mut events = 0u64;
    for pid in 1..=TASKS {
        for kind in [
            EventKind::PcpuAllocEnter {
                size: 32768,
                align: 8,
                reserved: false,
                gfp: NOIO,
            },
            EventKind::ContentionBegin {
                lock: LOCK,
                flags: 32,
                owner_pid: None,
            },
        ] {
            ts += 100;
            events += 1;
            std::hint::black_box(eng.process(&ev(ts, 10_000 + pid, kind)));
        }
    }
    let after = rss_kib();
    println!(
        "{{\"tasks\":{},\"events\":{events},\"rss_before_kib\":{before},\"rss_after_kib\":{after}}}",
        eng.tracked_tasks()
    );
}
