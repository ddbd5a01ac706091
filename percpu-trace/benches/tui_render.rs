//! One full redraw of the terminal UI into a TestBackend with 10,000 tracked tasks (the
//! issue's target: under 16 ms per frame). Measured twice: the draw alone, and the engine
//! snapshot plus the draw, which is what the UI does on every timer tick. The tasks table is
//! shown (the view that walks every tracked task) and a finding with a stack is selected.
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use percpu_trace::{
    engine::EngineConfig,
    event::{Event, EventKind, Frame},
    pipeline::LiveItem,
    report::{ReportContext, Source},
    tui::{
        app::{Action, App, Tab},
        ui, Header, Theme,
    },
};
use ratatui::{backend::TestBackend, Terminal};

const TASKS: u32 = 10_000;
const NOIO: u32 = 0xc00;
const KERNEL: u32 = 0xcc0;

fn ev(ts: u64, pid: u32, comm: String, holds: bool, stack: Option<u32>, kind: EventKind) -> Event {
    Event {
        ts_ns: ts,
        pid,
        tgid: pid,
        comm,
        cgroup_id: u64::from(pid % 64),
        task_flags: if pid.is_multiple_of(3) { 0x80000 } else { 0 },
        holds_mutex: Some(holds),
        caller_gfp: Some(NOIO),
        stack_id: stack,
        kind,
    }
}

/// An app tracking `TASKS` tasks, each inside a constrained pcpu_alloc, with a holder that
/// reclaimed (findings) and a thousand waiters.
fn busy_app() -> App {
    let mut ctx = ReportContext::new(Source::Live);
    ctx.run.kernel_release = Some("7.2.13+deb14-amd64".into());
    ctx.run.arch = Some("x86_64".into());
    ctx.run.fix_present = Some(false);
    ctx.run.attach_mode = Some("kprobe".into());
    let header = Header::new(
        ctx,
        EngineConfig {
            fix_present: Some(false),
            ..Default::default()
        },
    );
    let mut app = App::new(header, Theme::colored());
    let frames: Vec<Frame> = (0..16)
        .map(|i| Frame {
            addr: 0xffff_ffff_8100_0000 + i * 0x100,
            function: Some(format!("kernel_function_{i}")),
            offset: 0x4a,
            len: Some(0x3c0),
            module: None,
            ..Default::default()
        })
        .collect();
    app.ingest(LiveItem::Stack(1, frames));
    let mut ts = 1_000_000;
    for pid in 1..=TASKS {
        ts += 100;
        // Comms repeat so the caller table has a few hundred rows, like a real host.
        let comm = format!("worker-{}", pid % 300);
        let enter = EventKind::PcpuAllocEnter {
            size: 64,
            align: 8,
            reserved: false,
            gfp: NOIO,
        };
        app.ingest_event(&ev(ts, pid, comm.clone(), false, None, enter));
        if pid.is_multiple_of(10) {
            let wait = EventKind::ContentionBegin {
                lock: 0xffff_8880_0000_1000,
                flags: 32,
                owner_pid: None,
            };
            app.ingest_event(&ev(ts + 10, pid, comm, false, None, wait));
        }
    }
    let holder = 1;
    let c = || "worker-1".to_string();
    let populate = EventKind::ChunkPopulate {
        gfp: Some(NOIO),
        page_start: 0,
        page_end: 8,
    };
    app.ingest_event(&ev(ts + 100, holder, c(), true, Some(1), populate));
    app.ingest_event(&ev(
        ts + 200,
        holder,
        c(),
        true,
        Some(1),
        EventKind::PgtableAlloc,
    ));
    let reclaim = EventKind::ReclaimBegin {
        gfp: KERNEL,
        order: 0,
        memcg: false,
    };
    app.ingest_event(&ev(ts + 300, holder, c(), true, Some(1), reclaim));
    app.tick(Duration::from_secs(60));
    app.refresh();
    assert!(
        app.engine().tracked_tasks() >= TASKS as usize,
        "{}",
        app.engine().tracked_tasks()
    );
    assert!(!app.findings().is_empty());
    app.update(Action::ShowTab(Tab::Tasks));
    app
}

fn bench(c: &mut Criterion) {
    let mut app = busy_app();
    c.bench_function(
        &format!("tui refresh (engine snapshot), {TASKS} tasks"),
        |b| b.iter(|| app.refresh()),
    );
    for (w, h) in [(80u16, 24u16), (200, 60)] {
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        c.bench_function(&format!("tui draw {w}x{h}, {TASKS} tasks"), |b| {
            b.iter(|| {
                // Forget the previous frame so every cell is drawn and compared again.
                term.clear().unwrap();
                term.draw(|f| ui::render(&app, f)).unwrap();
            })
        });
        c.bench_function(&format!("tui refresh+draw {w}x{h}, {TASKS} tasks"), |b| {
            b.iter(|| {
                app.refresh();
                term.clear().unwrap();
                term.draw(|f| ui::render(&app, f)).unwrap();
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
