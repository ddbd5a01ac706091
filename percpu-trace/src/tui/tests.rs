//! State tests (actions, no terminal) and TestBackend snapshot tests of the main screens.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{backend::TestBackend, style::Color, Terminal};

use super::{
    app::{Action, App, Effect, Filter, Focus, Goal, Mode, SortBy, Tab, Verdict},
    header::Header,
    keys::map_key,
    replay::{Replay, ReplayOptions},
    theme::Theme,
    ui,
};
use crate::{
    engine::EngineConfig,
    event::{Event, EventKind, Frame},
    kernel::decode::GfpLayout,
    pipeline::{LiveItem, Losses},
    record::{Header as RecordingHeader, RecordingWriter},
    report::{ProbeState, ProbeStatus, ReportContext, Source},
};

const NOIO: u32 = 0xc00;
const KERNEL: u32 = 0xcc0;
const PF_NOIO: u32 = 0x80000;
/// What PR_SET_IO_FLUSHER sets: PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE.
const PF_IO_FLUSHER: u32 = PF_NOIO | 0x100000;

fn probe(point: &str, target: &str, state: ProbeState, detail: Option<&str>) -> ProbeStatus {
    ProbeStatus {
        point: point.into(),
        program: point.replace(' ', "_"),
        target: target.into(),
        state,
        detail: detail.map(str::to_string),
    }
}

fn header(mode: &str, fix: Option<bool>) -> Header {
    let mut ctx = ReportContext::new(Source::Live);
    ctx.run.kernel_release = Some("7.2.13+deb14-amd64".into());
    ctx.run.arch = Some("x86_64".into());
    ctx.run.fix_present = fix;
    ctx.run.attach_mode = Some(mode.into());
    ctx.run.gfp_layout = GfpLayout::default_for_6x();
    ctx.run.probes = if mode == "tracepoint" {
        vec![
            probe(
                "pcpu_alloc entry",
                "-",
                ProbeState::Unavailable,
                Some("no kprobes (CONFIG_KPROBES off), fentry refused (EPERM)"),
            ),
            probe(
                "pcpu_populate_chunk",
                "-",
                ProbeState::Unavailable,
                Some("no kprobes"),
            ),
            probe(
                "percpu_alloc_percpu",
                "tracepoint:percpu:percpu_alloc_percpu",
                ProbeState::Attached,
                None,
            ),
            probe(
                "percpu_create_chunk",
                "tracepoint:percpu:percpu_create_chunk",
                ProbeState::Attached,
                None,
            ),
            probe(
                "direct reclaim",
                "tracepoint:vmscan:mm_vmscan_direct_reclaim_begin",
                ProbeState::Attached,
                None,
            ),
            probe(
                "mutex waiters",
                "tracepoint:lock:contention_begin",
                ProbeState::Attached,
                None,
            ),
        ]
    } else {
        vec![
            probe(
                "pcpu_alloc entry",
                "kprobe:pcpu_alloc_noprof",
                ProbeState::Attached,
                None,
            ),
            probe(
                "pcpu_populate_chunk",
                "kprobe:pcpu_populate_chunk",
                ProbeState::Attached,
                None,
            ),
            probe(
                "pcpu_get_vm_areas",
                "kprobe:pcpu_get_vm_areas",
                ProbeState::Attached,
                None,
            ),
            probe(
                "direct reclaim",
                "tracepoint:vmscan:mm_vmscan_direct_reclaim_begin",
                ProbeState::Attached,
                None,
            ),
            probe(
                "mutex waiters",
                "tracepoint:lock:contention_begin",
                ProbeState::Failed,
                Some("EINVAL; loses: waiters"),
            ),
        ]
    };
    let engine = EngineConfig {
        fix_present: fix,
        ..EngineConfig::default()
    };
    Header::new(ctx, engine)
}

#[allow(clippy::too_many_arguments)] // one column per Event field keeps the streams readable
fn ev(
    ts: u64,
    pid: u32,
    comm: &str,
    flags: u32,
    holds: Option<bool>,
    caller: Option<u32>,
    stack: Option<u32>,
    kind: EventKind,
) -> Event {
    Event {
        ts_ns: ts,
        pid,
        tgid: pid,
        comm: comm.into(),
        cgroup_id: 7,
        task_flags: flags,
        holds_mutex: holds,
        caller_gfp: caller,
        stack_id: stack,
        kind,
    }
}

fn frame(f: &str, off: u64, len: u64) -> Frame {
    Frame {
        addr: 0xffff_ffff_8100_0000 + off,
        function: Some(f.into()),
        offset: off,
        len: Some(len),
        module: None,
        ..Default::default()
    }
}

fn enter(gfp: u32) -> EventKind {
    EventKind::PcpuAllocEnter {
        size: 32768,
        align: 8,
        reserved: false,
        gfp,
    }
}

/// A busy moment: a GFP_NOIO writer holds the mutex and populates, an IO_FLUSHER task
/// waits, others allocate. `with_finding`: the writer then reclaims with FS/IO under the
/// mutex (recursion, and cross_task for the waiter) and allocates a page table (window).
fn traffic(app: &mut App, with_finding: bool) {
    app.ingest(LiveItem::Stack(
        4,
        vec![
            frame("pcpu_populate_chunk", 0x4a, 0x3c0),
            frame("pcpu_alloc_noprof", 0x1f3, 0x900),
            frame("blkg_alloc", 0x8e, 0x3c0),
            frame("blkg_conf_prep", 0x2a1, 0x6a0),
        ],
    ));
    app.ingest(LiveItem::Stack(
        7,
        vec![
            frame("try_to_free_pages", 0, 0x370),
            frame("__alloc_pages_slowpath", 0x3ec, 0xe80),
            frame("pcpu_populate_chunk", 0x4a, 0x3c0),
        ],
    ));
    let mut ts = 1_000_000_000;
    // Earlier holds, for the sparkline.
    for i in 0..12u32 {
        let pid = 200 + i % 3;
        app.ingest_event(&ev(
            ts,
            pid,
            "iomax-writer",
            0,
            Some(false),
            Some(NOIO),
            None,
            enter(NOIO),
        ));
        app.ingest_event(&ev(
            ts + 1000,
            pid,
            "iomax-writer",
            0,
            Some(true),
            Some(NOIO),
            Some(4),
            EventKind::ChunkPopulate {
                gfp: Some(NOIO),
                page_start: 0,
                page_end: 8,
            },
        ));
        ts += 20_000 + u64::from(i) * 7_000;
        app.ingest_event(&ev(
            ts,
            pid,
            "iomax-writer",
            0,
            Some(false),
            Some(NOIO),
            None,
            EventKind::PcpuAllocExit { ptr: 1 },
        ));
        ts += 5_000;
    }
    for i in 0..5u32 {
        app.ingest_event(&ev(
            ts,
            300 + i,
            "io-flusher",
            PF_IO_FLUSHER,
            Some(false),
            Some(KERNEL),
            None,
            enter(KERNEL),
        ));
        app.ingest_event(&ev(
            ts + 10,
            300 + i,
            "io-flusher",
            PF_IO_FLUSHER,
            Some(false),
            Some(KERNEL),
            None,
            EventKind::PcpuAllocExit { ptr: 1 },
        ));
        ts += 1_000;
    }
    // Now: 200 holds and populates; 301 waits.
    app.ingest_event(&ev(
        ts,
        200,
        "iomax-writer",
        0,
        Some(false),
        Some(NOIO),
        None,
        enter(NOIO),
    ));
    app.ingest_event(&ev(
        ts + 100,
        200,
        "iomax-writer",
        0,
        Some(true),
        Some(NOIO),
        Some(4),
        EventKind::ChunkPopulate {
            gfp: Some(NOIO),
            page_start: 8,
            page_end: 16,
        },
    ));
    app.ingest_event(&ev(
        ts + 200,
        301,
        "io-flusher",
        PF_IO_FLUSHER,
        Some(false),
        Some(KERNEL),
        None,
        enter(KERNEL),
    ));
    app.ingest_event(&ev(
        ts + 300,
        301,
        "io-flusher",
        PF_IO_FLUSHER,
        Some(false),
        Some(KERNEL),
        None,
        EventKind::ContentionBegin {
            lock: 0xffff_8880_0000_1000,
            flags: 32,
            owner_pid: None,
        },
    ));
    if with_finding {
        app.ingest_event(&ev(
            ts + 2_000,
            200,
            "iomax-writer",
            0,
            Some(true),
            Some(NOIO),
            Some(7),
            EventKind::ReclaimBegin {
                gfp: KERNEL,
                order: 0,
                memcg: false,
            },
        ));
        app.ingest_event(&ev(
            ts + 1_502_000,
            200,
            "iomax-writer",
            0,
            Some(true),
            Some(NOIO),
            None,
            EventKind::ReclaimEnd {
                nr_reclaimed: 32,
                memcg: false,
            },
        ));
    }
    if with_finding {
        // A page table for the new chunk's area: GFP_KERNEL under the mutex (window).
        app.ingest_event(&ev(
            ts + 1_600_000,
            200,
            "iomax-writer",
            0,
            Some(true),
            Some(NOIO),
            None,
            EventKind::PgtableAlloc,
        ));
    } else {
        app.ingest_event(&ev(
            ts + 1_600_000,
            200,
            "iomax-writer",
            0,
            Some(true),
            Some(NOIO),
            Some(4),
            EventKind::ChunkPopulate {
                gfp: Some(NOIO),
                page_start: 16,
                page_end: 24,
            },
        ));
    }
    app.ingest(LiveItem::Progress {
        events: app.events,
        losses: Losses::default(),
    });
}

fn app(h: Header) -> App {
    let mut a = App::new(h, Theme::mono());
    a.tick(Duration::from_secs(83));
    a
}

fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::render(app, f)).unwrap();
    t
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/recordings")
        .join(name)
}

/// A recording replayed to the end through the driver, as `>` in `run_replay` does.
fn replayed(name: &str) -> App {
    let (mut a, mut r) = replay_of(&fixture(name));
    a.update(Action::ToEnd);
    drive(&mut a, &mut r);
    a.tick(Duration::from_secs(5));
    a.refresh();
    a
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// Presses keys through the real key map.
fn press(app: &mut App, keys: &[KeyCode]) -> Vec<Effect> {
    keys.iter()
        .filter_map(|&k| map_key(&app.mode, key(k)).and_then(|a| app.update(a)))
        .collect()
}

fn type_text(app: &mut App, s: &str) {
    for c in s.chars() {
        press(app, &[KeyCode::Char(c)]);
    }
}

// ---------------------------------------------------------------- snapshots

#[test]
fn snapshot_idle() {
    let mut a = app(header("kprobe", Some(false)));
    a.refresh();
    insta::assert_snapshot!("idle_80x24", draw(&a, 80, 24).backend());
}

#[test]
fn snapshot_live_traffic() {
    let mut a = app(header("kprobe", Some(false)));
    traffic(&mut a, false);
    a.tick(Duration::from_secs(84));
    a.refresh();
    assert_eq!(a.verdict, Verdict::Quiet(Some(false)));
    insta::assert_snapshot!("live_traffic_80x24", draw(&a, 80, 24).backend());
    press(&mut a, &[KeyCode::Char('3')]);
    insta::assert_snapshot!("live_traffic_chunks_100x30", draw(&a, 100, 30).backend());
}

#[test]
fn snapshot_finding_selected() {
    let mut a = app(header("kprobe", Some(false)));
    traffic(&mut a, true);
    a.refresh();
    assert!(matches!(a.verdict, Verdict::Hit(_)), "{:?}", a.verdict);
    press(&mut a, &[KeyCode::Enter]);
    assert_eq!(a.focus, Focus::Detail);
    insta::assert_snapshot!("finding_selected_100x30", draw(&a, 100, 30).backend());
    insta::assert_snapshot!("finding_selected_80x24", draw(&a, 80, 24).backend());
}

#[test]
fn snapshot_replayed_recording() {
    let a = replayed("synthetic-7.2-gfp-noio-writer.jsonl");
    assert!(!a.findings().is_empty());
    insta::assert_snapshot!("replay_gfp_noio_writer_100x30", draw(&a, 100, 30).backend());
}

#[test]
fn snapshot_degraded_tracepoint_only() {
    let mut a = app(header("tracepoint", Some(false)));
    for i in 0..4u32 {
        a.ingest_event(&ev(
            1000 + u64::from(i),
            500 + i,
            "iomax-writer",
            0,
            None,
            None,
            None,
            EventKind::PcpuAllocDone {
                size: 64,
                align: 8,
                reserved: false,
                gfp: NOIO,
                call_site: 0xffff_ffff_8150_0000,
            },
        ));
    }
    a.refresh();
    let t = draw(&a, 80, 24);
    insta::assert_snapshot!("degraded_tracepoint_80x24", t.backend());
    press(&mut a, &[KeyCode::Char('?')]);
    insta::assert_snapshot!("help_overlay_degraded_80x24", draw(&a, 80, 24).backend());
}

#[test]
fn snapshot_tiny_terminal() {
    let mut a = app(header("kprobe", Some(false)));
    traffic(&mut a, true);
    a.refresh();
    insta::assert_snapshot!("tiny_40x10", draw(&a, 40, 10).backend());
}

#[test]
fn every_size_renders_without_panic() {
    let mut a = app(header("kprobe", None));
    traffic(&mut a, true);
    a.refresh();
    for w in [0u16, 1, 2, 10, 39, 59, 60, 61, 80, 100, 133, 250] {
        for h in [0u16, 1, 2, 5, 15, 16, 17, 24, 30, 31, 60] {
            draw(&a, w, h);
            let mut b = App::new(header("tracepoint", None), Theme::colored());
            b.mode = Mode::Help;
            draw(&b, w, h);
        }
    }
}

#[test]
fn no_color_draws_without_colors() {
    let mut a = app(header("kprobe", Some(false)));
    traffic(&mut a, true);
    a.refresh();
    let t = draw(&a, 100, 30);
    for c in t.backend().buffer().content() {
        assert_eq!(c.fg, Color::Reset, "{c:?}");
        assert_eq!(c.bg, Color::Reset, "{c:?}");
    }
    // The same screen in color does use colors.
    a.theme = Theme::colored();
    let t = draw(&a, 100, 30);
    assert!(t
        .backend()
        .buffer()
        .content()
        .iter()
        .any(|c| c.fg == Color::Red));
}

// ---------------------------------------------------------------- state and keys

#[test]
fn quit_keys() {
    let mut a = app(header("kprobe", None));
    assert_eq!(press(&mut a, &[KeyCode::Char('q')]), vec![Effect::Quit]);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    // Ctrl-C quits even while typing a filter.
    press(&mut a, &[KeyCode::Char('/')]);
    assert!(matches!(a.mode, Mode::Filter { .. }));
    assert_eq!(map_key(&a.mode, ctrl_c), Some(Action::Quit));
    // 'q' in a prompt is text.
    assert!(press(&mut a, &[KeyCode::Char('q')]).is_empty());
    assert_eq!(a.mode, Mode::Filter { input: "q".into() });
}

#[test]
fn navigation_clamps_and_follows_the_finding() {
    let mut a = replayed("synthetic-7.2-cross-task.jsonl");
    let n = a.view.len();
    assert!(n >= 1);
    press(&mut a, &[KeyCode::Up, KeyCode::Up]);
    assert_eq!(a.selected, 0);
    press(&mut a, &[KeyCode::End]);
    assert_eq!(a.selected, n - 1);
    press(&mut a, &[KeyCode::Down, KeyCode::PageDown]);
    assert_eq!(a.selected, n - 1);
    // Focus cycles findings -> detail -> tables -> findings; detail scrolls.
    press(&mut a, &[KeyCode::Tab]);
    assert_eq!(a.focus, Focus::Detail);
    press(&mut a, &[KeyCode::Down, KeyCode::Down, KeyCode::Up]);
    assert_eq!(a.detail_scroll, 1);
    press(&mut a, &[KeyCode::Tab]);
    assert_eq!(a.focus, Focus::Tables);
    press(&mut a, &[KeyCode::Tab]);
    assert_eq!(a.focus, Focus::Findings);
    press(&mut a, &[KeyCode::BackTab]);
    assert_eq!(a.focus, Focus::Tables);
    // Tables: number keys and arrows.
    press(&mut a, &[KeyCode::Char('4')]);
    assert_eq!(a.tab, Tab::Tasks);
    press(&mut a, &[KeyCode::Char('5')]);
    assert_eq!(a.tab, Tab::Activity);
    press(&mut a, &[KeyCode::Right]);
    assert_eq!(a.tab, Tab::Callers);
    press(&mut a, &[KeyCode::Left, KeyCode::Left]);
    assert_eq!(a.tab, Tab::Tasks);
}

#[test]
fn sort_cycles_and_keeps_the_selection() {
    let mut a = app(header("kprobe", Some(false)));
    traffic(&mut a, true);
    // A second, older-but-repeated finding kind: the cross-task fixture's stream.
    a.refresh();
    let before = a.selected_finding().map(|(_, f)| f.signature);
    assert_eq!(a.sort, SortBy::Severity);
    press(&mut a, &[KeyCode::Char('s')]);
    assert_eq!(a.sort, SortBy::Newest);
    assert_eq!(a.selected_finding().map(|(_, f)| f.signature), before);
    press(&mut a, &[KeyCode::Char('s'), KeyCode::Char('s')]);
    assert_eq!(a.sort, SortBy::Severity);
}

#[test]
fn findings_order_is_most_severe_then_newest() {
    let a = replayed("synthetic-7.2-gfp-noio-writer.jsonl");
    let f = a.findings();
    for w in a.view.windows(2) {
        let (x, y) = (&f[w[0]], &f[w[1]]);
        assert!(
            x.severity > y.severity
                || (x.severity == y.severity && x.last_seen_ns >= y.last_seen_ns)
        );
    }
}

#[test]
fn the_run_filter_applies_to_findings_tables_and_verdict() {
    // `--comm`/`--cgroup` given on the command line reach the UI through its header: the
    // engine selects findings, and the prompt filter narrows further.
    let mut h = header("kprobe", Some(false));
    h.filter = Filter::parse("comm:*flusher").unwrap();
    let mut a = app(h);
    traffic(&mut a, true);
    a.refresh();
    assert_eq!(a.view.len(), 1, "only the finding with the io-flusher");
    assert_eq!(a.caller_rows().len(), 1);
    assert!(matches!(a.verdict, Verdict::Live(1)), "{:?}", a.verdict);
    let mut h = header("kprobe", Some(false));
    h.filter = Filter::parse("cg:8").unwrap();
    let mut a = app(h);
    traffic(&mut a, true);
    a.refresh();
    assert_eq!(a.view.len(), 0);
    assert!(matches!(a.verdict, Verdict::Quiet(_)));
}

#[test]
fn filter_by_pid_comm_cgroup() {
    assert_eq!(
        Filter::parse("pid:12 comm:kw cg:3").unwrap(),
        Filter {
            pid: Some(12),
            comm: Some("kw".into()),
            cgroup: Some(3)
        }
    );
    assert_eq!(Filter::parse("42").unwrap().pid, Some(42));
    assert_eq!(
        Filter::parse("kworker").unwrap().comm.as_deref(),
        Some("kworker")
    );
    assert!(Filter::parse("pid:x").is_err());
    assert!(Filter::parse("bogus:1").is_err());

    let mut a = app(header("kprobe", Some(false)));
    traffic(&mut a, true);
    a.refresh();
    let total_callers = a.caller_rows().len();
    assert_eq!((a.view.len(), total_callers), (3, 2));
    // The engine's comm rule (the one `record --comm` uses): exact, `*` for wider. The UI
    // used to match substrings, so "flusher" alone matched; now it matches nothing.
    press(&mut a, &[KeyCode::Char('/')]);
    type_text(&mut a, "comm:flusher");
    press(&mut a, &[KeyCode::Enter]);
    assert_eq!(a.view.len(), 0, "comm is exact, as on the command line");
    press(&mut a, &[KeyCode::Char('/')]);
    for _ in 0..20 {
        press(&mut a, &[KeyCode::Backspace]);
    }
    type_text(&mut a, "comm:*flusher");
    press(&mut a, &[KeyCode::Enter]);
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(a.filter.comm.as_deref(), Some("*flusher"));
    assert_eq!(
        a.view.len(),
        1,
        "only the cross_task finding has the io-flusher (as waiter)"
    );
    assert_eq!(a.caller_rows().len(), 1);
    // A bad filter keeps the old one and says why, in one line.
    press(&mut a, &[KeyCode::Char('/')]);
    press(&mut a, &[KeyCode::Backspace]);
    type_text(&mut a, " pid:abc");
    press(&mut a, &[KeyCode::Enter]);
    let s = a.status.clone().unwrap();
    assert!(s.error && !s.text.contains('\n'), "{s:?}");
    assert!(matches!(a.mode, Mode::Filter { .. }));
    press(&mut a, &[KeyCode::Esc]);
    assert_eq!(a.mode, Mode::Normal);
    assert_eq!(a.filter.comm.as_deref(), Some("*flusher"));
    // pid filter matches the finding's task, cgroup filter too; Esc drops the filter.
    a.filter = Filter::parse("pid:200 cg:7").unwrap();
    a.refresh();
    assert_eq!(a.view.len(), 3);
    a.filter = Filter::parse("cg:8").unwrap();
    a.refresh();
    assert_eq!(a.view.len(), 0);
    press(&mut a, &[KeyCode::Esc]);
    assert!(a.filter.is_empty());
    assert_eq!(a.caller_rows().len(), total_callers);
}

#[test]
fn pause_freezes_the_view_and_clear_starts_over() {
    let mut a = app(header("kprobe", Some(false)));
    press(&mut a, &[KeyCode::Char('p')]);
    assert!(a.paused);
    traffic(&mut a, true);
    a.refresh();
    assert!(a.view.is_empty(), "paused: display frozen");
    assert!(a.held_back > 0);
    assert_eq!(a.findings().len(), 3, "but the engine saw them");
    press(&mut a, &[KeyCode::Char(' ')]);
    assert!(!a.paused);
    assert_eq!(a.view.len(), 3);
    press(&mut a, &[KeyCode::Char('c')]);
    assert!(a.findings().is_empty() && a.view.is_empty());
    assert!(a.caller_rows().is_empty());
    assert!(
        !a.stacks.is_empty(),
        "stacks stay: later events may use them"
    );
    assert_eq!(a.verdict, Verdict::Quiet(Some(false)));
}

#[test]
fn help_overlay_opens_and_any_key_closes() {
    let mut a = app(header("kprobe", None));
    press(&mut a, &[KeyCode::Char('?')]);
    assert_eq!(a.mode, Mode::Help);
    assert!(
        press(&mut a, &[KeyCode::Char('q')]).is_empty(),
        "q closes the overlay, does not quit"
    );
    assert_eq!(a.mode, Mode::Normal);
    press(&mut a, &[KeyCode::Char('?'), KeyCode::Char('?')]);
    assert_eq!(a.mode, Mode::Normal);
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("percpu-trace-tui-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn export_selected_and_all() {
    let mut a = replayed("synthetic-7.2-gfp-noio-writer.jsonl");
    let dir = scratch_dir("export");
    // Nothing selected on an empty app: one-line error, no prompt.
    let mut empty = app(header("kprobe", None));
    press(&mut empty, &[KeyCode::Char('e')]);
    assert_eq!(empty.mode, Mode::Normal);
    assert!(empty.status.as_ref().unwrap().error);

    press(&mut a, &[KeyCode::Char('e')]);
    let Mode::Export { input, all: false } = a.mode.clone() else {
        panic!("{:?}", a.mode)
    };
    assert!(
        input.starts_with("percpu-trace-") && input.ends_with(".txt"),
        "{input}"
    );
    a.update(Action::ClearInput);
    let path = dir.join("one.txt");
    type_text(&mut a, path.to_str().unwrap());
    let effects = press(&mut a, &[KeyCode::Enter]);
    let [Effect::Export {
        path: p,
        finding: Some(i),
    }] = effects.as_slice()
    else {
        panic!("{effects:?}")
    };
    assert_eq!(p, &path);
    let r = super::export_request(&a, Some(*i)).write(p);
    a.export_done(r);
    let s = a.status.clone().unwrap();
    assert!(!s.error && s.text.contains("one.txt"), "{s:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("pcpu_alloc_mutex"), "{text}");

    // All findings.
    press(&mut a, &[KeyCode::Char('E')]);
    a.update(Action::ClearInput);
    let all_path = dir.join("all.txt");
    type_text(&mut a, all_path.to_str().unwrap());
    let effects = press(&mut a, &[KeyCode::Enter]);
    assert_eq!(
        effects,
        vec![Effect::Export {
            path: all_path.clone(),
            finding: None
        }]
    );
    super::export_request(&a, None).write(&all_path).unwrap();
    assert!(std::fs::metadata(&all_path).unwrap().len() >= text.len() as u64);

    // Unwritable paths: one-line errors in the status bar.
    for bad in [
        dir.join("no/such/dir/x.txt"),
        dir.clone(),
        PathBuf::from("-"),
    ] {
        let r = super::export_request(&a, None).write(&bad);
        assert!(r.is_err(), "{bad:?}");
        a.export_done(r);
        let s = a.status.clone().unwrap();
        assert!(s.error && !s.text.contains('\n'), "{s:?}");
    }
    // An empty path never reaches the runner.
    press(&mut a, &[KeyCode::Char('E')]);
    a.update(Action::ClearInput);
    assert!(press(&mut a, &[KeyCode::Enter]).is_empty());
    assert!(a.status.as_ref().unwrap().error);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rate_and_losses() {
    let mut a = App::new(header("kprobe", None), Theme::mono());
    traffic(&mut a, false);
    let n = a.events;
    a.tick(Duration::from_millis(500));
    assert_eq!(a.rate, 0.0, "no full second yet");
    a.tick(Duration::from_secs(2));
    assert!((a.rate - n as f64 / 2.0).abs() < 1e-9);
    a.ingest(LiveItem::Progress {
        events: 1,
        losses: Losses {
            ringbuf_full: 3,
            stack: 2,
            task_map_full: 1,
            undecodable: 0,
            stack_read: 1,
            consumer_full: 5,
            recursion_misses: 4,
            kprobe_missed: 0,
            ..Default::default()
        },
    });
    // Missed program runs are lost events too.
    assert_eq!(a.events_lost(), 13);
    assert_eq!(a.stacks_lost(), 3);
}

#[test]
fn replay_header_comes_from_the_recording() {
    let a = replayed("synthetic-7.3-fixed.jsonl");
    assert_eq!(a.header.kernel_release(), "7.3.4+deb13-amd64");
    assert_eq!(a.header.fix_present(), Some(true));
    assert!(a.is_replay());
    assert_eq!(a.verdict, Verdict::Quiet(Some(true)));
    assert!(
        a.header.context.run.probes.is_empty(),
        "synthetic recordings keep no probe list"
    );
}

/// A holder whose release cannot be observed is shown as "last holder" once its last
/// event is old, never as holding the mutex for seconds.
#[test]
fn stale_holder_is_labelled_as_last_seen() {
    let mut a = app(header("tracepoint", Some(false)));
    let creating = EventKind::ChunkCreate { gfp: None, base: 0 };
    a.ingest_event(&ev(
        1_000_000_000,
        42,
        "kworker/1:2",
        0x80000,
        Some(true),
        None,
        None,
        creating,
    ));
    a.refresh();
    let fresh = format!("{:?}", draw(&a, 100, 30).backend().buffer());
    assert!(fresh.contains("holder") && !fresh.contains("last holder"));
    let later = EventKind::PcpuAllocDone {
        size: 8,
        align: 8,
        reserved: false,
        gfp: 0xc00,
        call_site: 0,
    };
    a.ingest_event(&ev(
        3_700_000_000,
        7,
        "bash",
        0,
        Some(false),
        None,
        None,
        later,
    ));
    a.refresh();
    let text: String = draw(&a, 100, 30)
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(text.contains("last holder"), "{text}");
    assert!(text.contains("seen holding 2.70s ago"), "{text}");
}

// ---------------------------------------------------------------- replay transport

/// A driver and an app for the recording at `path`, as `run_replay_with` sets them up.
fn replay_of(path: &Path) -> (App, Replay) {
    let opts = ReplayOptions::default();
    let (r, h) = Replay::open(path, opts).unwrap();
    let mut a = App::new(Header::from_recording(path, &h), Theme::mono());
    r.prepare(&mut a, opts);
    (a, r)
}

/// Runs the replay like the event loop does (pump when due; refresh and draw once a frame)
/// until it stops (paused or ended). Full-speed goals only: paced replays wait for time.
/// Returns the number of draws.
fn drive(a: &mut App, r: &mut Replay) -> u64 {
    let mut term = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let mut last_draw = Instant::now();
    let mut draws = 0;
    for _ in 0..10_000_000 {
        let now = Instant::now();
        if r.due(a, now).is_none() {
            term.draw(|f| ui::render(a, f)).unwrap();
            return draws + 1;
        }
        if now.duration_since(last_draw) >= Duration::from_millis(250) {
            a.refresh();
            term.draw(|f| ui::render(a, f)).unwrap();
            draws += 1;
            last_draw = now;
        }
        if r.pump(a, now) {
            term.draw(|f| ui::render(a, f)).unwrap();
            draws += 1;
        }
    }
    panic!("the replay did not stop");
}

/// The whole screen as text.
fn screen_text(a: &App) -> String {
    draw(a, 100, 30)
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect()
}

fn status(a: &App) -> String {
    a.status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default()
}

#[test]
fn speed_keys_step_through_the_factors_and_stop_at_the_ends() {
    let (mut a, _r) = replay_of(&fixture("synthetic-7.2-gfp-noio-writer.jsonl"));
    assert_eq!(a.transport.as_ref().unwrap().speed_label(), "1x");
    let mut seen = vec![];
    for _ in 0..6 {
        press(&mut a, &[KeyCode::Char('+')]);
        seen.push(a.transport.as_ref().unwrap().speed_label());
    }
    assert_eq!(seen, ["10x", "100x", "1000x", "max", "max", "max"]);
    assert_eq!(status(&a), "speed max");
    assert_eq!(a.transport.as_ref().unwrap().pace(), None, "max: no pacing");
    press(&mut a, &[KeyCode::Char('-'), KeyCode::Char('-')]);
    assert_eq!(a.transport.as_ref().unwrap().speed_label(), "100x");
    for _ in 0..5 {
        press(&mut a, &[KeyCode::Char('-')]);
    }
    assert_eq!(a.transport.as_ref().unwrap().factor(), Some(1));
    // Seeking runs at full speed whatever the factor, and unpauses.
    press(&mut a, &[KeyCode::Char('p')]);
    assert!(a.paused);
    press(&mut a, &[KeyCode::Char('n')]);
    assert!(!a.paused);
    assert_eq!(a.transport.as_ref().unwrap().goal, Goal::NextFinding);
    assert_eq!(a.transport.as_ref().unwrap().pace(), None);
    press(&mut a, &[KeyCode::Char('>')]);
    assert_eq!(a.transport.as_ref().unwrap().goal, Goal::End);
    // Going back asks the runner to restart the engine from the recording's start.
    assert_eq!(press(&mut a, &[KeyCode::Char('<')]), vec![Effect::Restart]);
    assert_eq!(a.transport.as_ref().unwrap().goal, Goal::Start);
    assert_eq!(press(&mut a, &[KeyCode::Char('b')]), vec![Effect::Restart]);
    assert_eq!(
        a.transport.as_ref().unwrap().goal,
        Goal::Start,
        "nothing fed yet: back is the start"
    );
}

#[test]
fn replay_keys_in_live_mode_say_so_and_change_nothing() {
    let mut a = app(header("kprobe", Some(false)));
    for k in ['+', '-', 'n', '>', '<', 'b'] {
        assert!(press(&mut a, &[KeyCode::Char(k)]).is_empty());
        assert!(a.transport.is_none());
        assert_eq!(status(&a), "replay keys work with --replay FILE");
        assert!(a.status.as_ref().unwrap().error);
    }
}

#[test]
fn next_finding_stops_at_each_finding_then_the_end_and_back_to_the_start() {
    let path = fixture("synthetic-7.2-gfp-noio-writer.jsonl");
    let (headless, summary) = crate::record::replay_file(&path).unwrap();
    let (mut a, mut r) = replay_of(&path);
    press(&mut a, &[KeyCode::Char('n')]);
    drive(&mut a, &mut r);
    assert!(a.paused, "paused at the finding");
    assert!(r.is_open(), "not at the end yet");
    assert_eq!(a.findings().len(), 1, "stopped at the first finding");
    assert!(
        a.events < summary.events,
        "{} of {}",
        a.events,
        summary.events
    );
    assert!(status(&a).starts_with("new finding"), "{}", status(&a));
    assert_eq!(a.view.len(), 1, "the finding is on screen");
    let text = screen_text(&a);
    assert!(
        text.contains("replay ") && text.contains(", 1x, paused"),
        "{text}"
    );
    // Each further `n` stops at the next one, until the recording ends.
    let mut stops = 1;
    while r.is_open() {
        let before = a.findings().len();
        press(&mut a, &[KeyCode::Char('n')]);
        drive(&mut a, &mut r);
        if r.is_open() {
            assert_eq!(a.findings().len(), before + 1);
            let (i, _) = a.selected_finding().unwrap();
            assert_eq!(i, before, "the finding n stopped at is selected");
            stops += 1;
        }
    }
    assert_eq!(stops, headless.findings().len(), "one stop per finding");
    assert_eq!(
        a.findings(),
        headless.findings(),
        "same engine, same findings"
    );
    assert_eq!(a.events, summary.events);
    assert!(a.ended.is_some());
    assert!(screen_text(&a).contains("at the end"));
    press(&mut a, &[KeyCode::Char('n')]);
    assert!(status(&a).contains("no further finding"), "{}", status(&a));

    // Back to the start: a fresh engine, paused before the first event.
    for e in press(&mut a, &[KeyCode::Char('<')]) {
        assert_eq!(e, Effect::Restart);
        r.restart(&mut a);
    }
    drive(&mut a, &mut r);
    assert!(a.paused && a.ended.is_none() && r.is_open());
    assert_eq!(a.events, 0);
    assert!(a.findings().is_empty() && a.view.is_empty());
    assert!(screen_text(&a).contains("replay 0.0 s"));
    // And to the end again: the same findings, fed again.
    press(&mut a, &[KeyCode::Char('>')]);
    drive(&mut a, &mut r);
    assert!(a.ended.is_some() && !r.is_open());
    assert_eq!(a.findings(), headless.findings());
    assert_eq!(a.snap.activity, headless.activity());
}

/// Writes a recording of `events` events spaced `gap_ns` apart: constrained allocations
/// that populate under the mutex, waiters, unconstrained allocations and reclaim outside
/// the mutex (busy but harmless), then one recursion (a GFP_NOIO holder reclaiming with
/// GFP_KERNEL) after `finding_after` events. Returns the path.
fn synthetic_recording(dir: &Path, events: u64, gap_ns: u64, finding_after: u64) -> PathBuf {
    let path = dir.join("synthetic.jsonl");
    let h = RecordingHeader::new(EngineConfig {
        fix_present: Some(false),
        ..EngineConfig::default()
    });
    let file = std::fs::File::create(&path).unwrap();
    let mut w = RecordingWriter::new(file, &h).unwrap();
    w.write_stack(7, &[frame("try_to_free_pages", 0, 0x370)])
        .unwrap();
    let mut ts = 1_000_000_000;
    let mut n = 0;
    let put = |w: &mut RecordingWriter<std::fs::File>, e: Event| {
        w.write_event(&e).unwrap();
    };
    let lock = 0xffff_8880_0000_1000;
    while n < events {
        let p = 1000 + (n / 8 % 97) as u32;
        let k = n % 8;
        let e = match k {
            0 => ev(
                ts,
                p,
                "worker",
                0,
                Some(false),
                Some(NOIO),
                None,
                enter(NOIO),
            ),
            1 => ev(
                ts,
                p,
                "worker",
                0,
                Some(true),
                Some(NOIO),
                None,
                EventKind::ChunkPopulate {
                    gfp: Some(NOIO),
                    page_start: 0,
                    page_end: 8,
                },
            ),
            2 => ev(
                ts,
                p,
                "worker",
                0,
                Some(false),
                Some(NOIO),
                None,
                EventKind::PcpuAllocExit { ptr: 1 },
            ),
            3 => ev(
                ts,
                p + 200,
                "waiter",
                0,
                Some(false),
                None,
                None,
                EventKind::ContentionBegin {
                    lock,
                    flags: 32,
                    owner_pid: None,
                },
            ),
            4 => ev(
                ts,
                p + 200,
                "waiter",
                0,
                Some(false),
                None,
                None,
                EventKind::ContentionEnd { lock, ret: 0 },
            ),
            5 => ev(
                ts,
                p + 400,
                "kworker/0:1",
                0,
                Some(false),
                None,
                None,
                EventKind::ReclaimBegin {
                    gfp: KERNEL,
                    order: 0,
                    memcg: false,
                },
            ),
            6 => ev(
                ts,
                p + 400,
                "kworker/0:1",
                0,
                Some(false),
                None,
                None,
                EventKind::ReclaimEnd {
                    nr_reclaimed: 32,
                    memcg: false,
                },
            ),
            _ => ev(
                ts,
                p + 600,
                "bash",
                0,
                Some(false),
                None,
                None,
                EventKind::PcpuAllocExit { ptr: 2 },
            ),
        };
        put(&mut w, e);
        n += 1;
        ts += gap_ns;
        if n == finding_after {
            let holder = |ts, holds, stack, kind| {
                ev(ts, 1, "iomax-writer", 0, holds, Some(NOIO), stack, kind)
            };
            put(&mut w, holder(ts, Some(false), None, enter(NOIO)));
            put(
                &mut w,
                holder(
                    ts + 1,
                    Some(true),
                    None,
                    EventKind::ChunkPopulate {
                        gfp: Some(NOIO),
                        page_start: 8,
                        page_end: 16,
                    },
                ),
            );
            put(
                &mut w,
                holder(
                    ts + 2,
                    Some(true),
                    Some(7),
                    EventKind::ReclaimBegin {
                        gfp: KERNEL,
                        order: 0,
                        memcg: false,
                    },
                ),
            );
            put(
                &mut w,
                holder(
                    ts + 3,
                    Some(true),
                    None,
                    EventKind::ReclaimEnd {
                        nr_reclaimed: 32,
                        memcg: false,
                    },
                ),
            );
            put(
                &mut w,
                holder(
                    ts + 4,
                    Some(false),
                    None,
                    EventKind::PcpuAllocExit { ptr: 3 },
                ),
            );
            n += 5;
        }
    }
    w.finish().unwrap();
    path
}

#[test]
fn back_refeeds_a_fresh_engine_up_to_ten_seconds_earlier() {
    let dir = scratch_dir("back");
    // Events a second apart, a finding at the 31st second (5 events at once): 34 s long.
    let path = synthetic_recording(&dir, 40, 1_000_000_000, 30);
    let (mut a, mut r) = replay_of(&path);
    let span = a.transport.as_ref().unwrap().span_ns().unwrap();
    assert_eq!(span, 34_000_000_000);
    press(&mut a, &[KeyCode::Char('>')]);
    drive(&mut a, &mut r);
    assert!(a.ended.is_some());
    assert_eq!(a.verdict, Verdict::Hit(1));
    let end = a.now_ns();
    assert_eq!(Some(end), a.transport.as_ref().unwrap().last_ns);
    for e in press(&mut a, &[KeyCode::Char('b')]) {
        assert_eq!(e, Effect::Restart);
        r.restart(&mut a);
    }
    drive(&mut a, &mut r);
    assert!(a.paused && a.ended.is_none());
    assert_eq!(
        a.now_ns(),
        end - 10_000_000_000,
        "events are a second apart"
    );
    assert!(a.findings().is_empty(), "the finding at 30 s is after 24 s");
    assert!(status(&a).starts_with("went back"), "{}", status(&a));
    let text = screen_text(&a);
    assert!(
        text.contains("replay 24.0 s / 34.0 s, 1x, paused"),
        "{text}"
    );
    // Paced replay resumes from there: one event per second at 1x (so nothing is due now).
    press(&mut a, &[KeyCode::Char('p')]);
    let before = a.events;
    r.pump(&mut a, Instant::now());
    assert!(a.events <= before + 1, "paced: {} -> {}", before, a.events);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs a synthetic recording of `events` events (75 s of traffic) to the end at full speed
/// (`>`) through the driver, redrawing once a frame as the event loop does, and checks it
/// took less than `bound`.
fn full_speed_to_the_end(name: &str, events: u64, bound: Duration) {
    let dir = scratch_dir(name);
    let t0 = Instant::now();
    let gap = 75_000_000_000 / events;
    let path = synthetic_recording(&dir, events, gap, events - events / 16);
    let written = t0.elapsed();
    let (mut a, mut r) = replay_of(&path);
    let t1 = Instant::now();
    press(&mut a, &[KeyCode::Char('>')]);
    let draws = drive(&mut a, &mut r);
    let took = t1.elapsed();
    eprintln!(
        "{events} events: written in {:.1} s, replayed to the end in {:.1} s \
         ({:.0} events/s) with {draws} draws",
        written.as_secs_f64(),
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    );
    assert!(a.ended.is_some() && !r.is_open());
    assert_eq!(a.events, events);
    assert_eq!(
        a.verdict,
        Verdict::Hit(1),
        "the finding near the end was seen"
    );
    let text = screen_text(&a);
    assert!(
        text.contains("replay 75.0 s / 75.0 s, 1x, at the end"),
        "{text}"
    );
    // Batched: a redraw a frame (and one at the end), never one per event.
    assert!(draws <= 2 + took.as_millis() as u64 / 250, "{draws} draws");
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The size: 1.6 M events, bound [`BIG_BOUND`]. Ignored in debug builds only
/// because writing the file and parsing it with unoptimized serde_json take most of a
/// minute there (~11 µs a line to write, ~18 µs to parse; the engine and the UI ~2 µs an
/// event).
#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "~60 s in a debug build: cargo test -p percpu-trace --lib full_speed -- --ignored"
)]
fn full_speed_replay_of_1_6m_events_is_fast() {
    full_speed_to_the_end("big", 1_600_000, BIG_BOUND);
}

/// The same path on a tenth of the events, in every test run (2.6-3.0 s measured in a debug
/// build; the bound is loose for loaded machines: the draw count is the exact check).
#[test]
fn full_speed_replay_of_160k_events_is_fast() {
    full_speed_to_the_end("160k", 160_000, BIG_BOUND / 4);
}

/// Bound for the 1.6 M-event replay to the end. Measured on the shared 2-core development
/// machine: debug build 29-38 s (~42-55 k events/s, parsing JSON is most of it), release
/// build 3.4 s (~476 k events/s, 14 draws); the bounds leave room for a loaded machine.
const BIG_BOUND: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(90)
} else {
    Duration::from_secs(15)
};

#[test]
fn activity_tab_says_what_was_seen_in_the_reports_words() {
    // No finding: the counts, and why nothing was found (also under the empty list).
    let mut a = replayed("synthetic-7.3-fixed.jsonl");
    assert!(a.no_finding());
    press(&mut a, &[KeyCode::Char('5')]);
    assert_eq!((a.tab, a.focus), (Tab::Activity, Focus::Tables));
    let shown: Vec<String> = super::widgets::activity::lines(&a)
        .iter()
        .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
        .collect();
    let words = crate::report::wording::activity_lines(&a.snap.activity);
    assert_eq!(shown.len(), words.len() + 1);
    for ((label, value), line) in words.iter().zip(&shown) {
        assert!(
            line.starts_with(label) && line.ends_with(value.as_str()),
            "{line}"
        );
    }
    let why = a.snap.activity.why_no_finding(None);
    assert_eq!(shown.last().unwrap(), &format!("why no finding: {why}"));
    let text = screen_text(&a);
    assert!(text.contains("5 activity"), "{text}");
    assert!(text.contains("percpu allocations (host)"), "{text}");
    assert!(text.contains("constrained (NOFS/NOIO)"), "{text}");
    assert!(text.contains("so far: "), "{text}");
    // The pane scrolls like a table, to its last line.
    press(&mut a, &[KeyCode::End]);
    assert_eq!(a.table_sel[Tab::Activity.index()], words.len() - 1);

    // With a finding: the counts, no reason.
    let a = replayed("synthetic-7.2-gfp-noio-writer.jsonl");
    assert!(!a.no_finding());
    let lines = super::widgets::activity::lines(&a);
    assert_eq!(lines.len(), words.len());
    assert!(a.snap.activity.constrained_allocations > 0);
}

#[test]
fn a_recording_gone_before_a_restart_stops_the_replay_with_an_error() {
    let dir = scratch_dir("gone");
    let path = dir.join("r.jsonl");
    std::fs::copy(fixture("synthetic-7.2-cross-task.jsonl"), &path).unwrap();
    let (mut a, mut r) = replay_of(&path);
    press(&mut a, &[KeyCode::Char('>')]);
    drive(&mut a, &mut r);
    std::fs::remove_file(&path).unwrap();
    for e in press(&mut a, &[KeyCode::Char('<')]) {
        assert_eq!(e, Effect::Restart);
        r.restart(&mut a);
    }
    assert!(!r.is_open() && a.ended.is_some());
    assert!(r.due(&a, Instant::now()).is_none(), "nothing more to feed");
    let s = a.status.clone().unwrap();
    assert!(
        s.error && s.text.contains("reopening the recording"),
        "{s:?}"
    );
    assert_eq!(a.transport.as_ref().unwrap().goal, Goal::Play);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn paced_replay_follows_the_recorded_times_at_the_chosen_factor() {
    let dir = scratch_dir("paced");
    // 20 events 100 ms apart, no finding.
    let path = synthetic_recording(&dir, 20, 100_000_000, u64::MAX);
    let (mut a, mut r) = replay_of(&path);
    press(&mut a, &[KeyCode::Char('+')]);
    assert_eq!(a.transport.as_ref().unwrap().factor(), Some(10));
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    assert!(!r.pump(&mut a, t0));
    assert_eq!(a.events, 1, "the first event at once, the next 10 ms later");
    assert_eq!(r.due(&a, t0), Some(ms(10)));
    r.pump(&mut a, ms(25));
    assert_eq!(a.events, 3);
    assert_eq!(r.due(&a, ms(25)), Some(ms(30)));
    // Slower: paced from here at 1x, the next event 100 ms after the last one fed.
    press(&mut a, &[KeyCode::Char('-')]);
    r.pump(&mut a, ms(30));
    assert_eq!(a.events, 3);
    assert_eq!(r.due(&a, ms(30)), Some(ms(130)));
    // Paused: nothing is due, nothing is read.
    press(&mut a, &[KeyCode::Char('p')]);
    assert_eq!(r.due(&a, ms(500)), None);
    r.pump(&mut a, ms(500));
    assert_eq!(a.events, 3);
    let text = screen_text(&a);
    assert!(text.contains("replay 0.2 s / 1.9 s, 1x, paused"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- the recording's clock

/// A recording as `record` writes one: a `run` record and the kernel's activity totals
/// every second for `secs` seconds, and `events` constrained calls from `from_s` on, 100 ms
/// apart. `clock_start`: the header's CLOCK_MONOTONIC start (None: an older recording).
fn clocked_recording(
    dir: &Path,
    secs: u64,
    from_s: u64,
    events: u64,
    clock_start: Option<u64>,
) -> PathBuf {
    const S: u64 = 1_000_000_000;
    let start = 50 * S;
    let path = dir.join("clocked.jsonl");
    let mut h = RecordingHeader::new(EngineConfig::default());
    h.run.clock_start_ns = clock_start.map(|_| start);
    let mut w = RecordingWriter::new(std::fs::File::create(&path).unwrap(), &h).unwrap();
    let mut next_event = 0;
    for sec in 1..=secs {
        while next_event < events && from_s * S + next_event * S / 10 < sec * S {
            let ts = start + from_s * S + next_event * S / 10;
            w.write_event(&ev(
                ts,
                40,
                "w",
                PF_NOIO,
                None,
                None,
                None,
                EventKind::PcpuAllocDone {
                    size: 8,
                    align: 8,
                    reserved: false,
                    gfp: NOIO,
                    call_site: 0xffffffff81000000,
                },
            ))
            .unwrap();
            next_event += 1;
        }
        // As the recorder writes them each second: the run's length, then the totals.
        w.write_run(sec * S, sec == secs).unwrap();
        w.write_activity(&[("percpu_allocations".to_string(), sec * 100)].into())
            .unwrap();
    }
    w.finish().unwrap();
    path
}

#[test]
fn replay_runs_on_the_recordings_own_clock() {
    let dir = scratch_dir("clock");
    // An idle 120 s recording: 120 s long, not 0.0 s.
    let path = clocked_recording(&dir, 120, 0, 0, Some(0));
    let (mut a, mut r) = replay_of(&path);
    assert_eq!(
        a.transport.as_ref().unwrap().span_ns(),
        Some(120_000_000_000)
    );
    // Paced at 1x: the activity totals arrive second by second, not all at once.
    let t0 = Instant::now();
    r.pump(&mut a, t0);
    a.refresh();
    let first = a.snap.activity.percpu_allocations.unwrap_or(0);
    assert!(first <= 100, "at the start: {first}");
    r.pump(&mut a, t0 + Duration::from_millis(10_050));
    a.refresh();
    assert_eq!(a.snap.activity.percpu_allocations, Some(1_000));
    press(&mut a, &[KeyCode::Char('p')]);
    let text = screen_text(&a);
    assert!(text.contains("replay 10.0 s / 120.0 s"), "{text}");

    // 20.7 s with events only from 5.0 to 8.6 s: 20.7 s, not 3.6 s; events on that clock.
    std::fs::remove_file(&path).unwrap();
    let path = clocked_recording(&dir, 21, 5, 37, Some(0));
    let (a, _r) = replay_of(&path);
    let t = a.transport.as_ref().unwrap();
    assert_eq!(t.span_ns(), Some(21_000_000_000));
    assert_eq!(t.first_ns, Some(50_000_000_000));

    // An older recording (no clock start in its header): the start is estimated from its
    // run records, within a second.
    std::fs::remove_file(&path).unwrap();
    let path = clocked_recording(&dir, 21, 5, 37, None);
    let (a, _r) = replay_of(&path);
    let t = a.transport.as_ref().unwrap();
    let span = t.span_ns().unwrap();
    assert!((20_000_000_000..=21_000_000_000).contains(&span), "{span}");
    let _ = std::fs::remove_dir_all(&dir);
}
