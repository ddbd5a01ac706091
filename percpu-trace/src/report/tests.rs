//! Golden tests of the three formats on a synthetic set of findings, JSON schema validation,
//! a report from a real recording through the engine, and output-path errors.
use std::{collections::BTreeMap, path::PathBuf};

use super::*;
use crate::{
    engine::{
        Durations, FindingKind, FixObservations, Severity, TaskInfo, TaskRole, Trigger,
        WaiterReason,
    },
    event::{Event, EventKind, Frame},
    kernel::{FixVerdict, PatchEvidence, PatchId, PatchState, Verdict},
    record::{Header, RecordingReader, RecordingWriter},
};

fn frame(function: &str, offset: u64, len: u64, module: Option<&str>) -> Frame {
    Frame {
        addr: 0xffff_ffff_8100_0000 + offset,
        function: Some(function.into()),
        offset,
        len: Some(len),
        module: module.map(Into::into),
        ..Default::default()
    }
}

/// Stacks shaped like the ones seen on Debian 7.2.13 (KERNELS.md workloads).
pub(super) fn stacks() -> StackTable {
    let mut t = StackTable::new();
    // A GFP_NOIO io.max writer whose populate allocates a page table and reclaims.
    t.insert(
        7,
        vec![
            frame("try_to_free_pages", 0x1c9, 0x6f0, None),
            frame("__alloc_pages_slowpath.constprop.0", 0x3c4, 0xe60, None),
            frame("__alloc_pages_noprof", 0x31c, 0x350, None),
            frame("__pte_alloc_kernel", 0x1f, 0xa0, None),
            frame("vmap_pages_pte_range", 0x2a6, 0x2c0, None),
            frame("pcpu_populate_chunk", 0x67, 0x3c0, None),
            frame("pcpu_alloc_noprof", 0x6d6, 0x9f0, None),
            frame("blkg_alloc", 0x9e, 0x300, None),
            frame("blkg_conf_prep", 0x2b5, 0x430, None),
            frame("tg_set_limit", 0x7c, 0x510, None),
            frame("kernfs_fop_write_iter", 0x13e, 0x1f0, None),
            frame("vfs_write", 0x2a9, 0x450, None),
            frame("do_syscall_64", 0x82, 0x190, None),
            frame("entry_SYSCALL_64_after_hwframe", 0x76, 0x7e, None),
        ],
    );
    // The same writer creating a chunk: unpatched pcpu_get_vm_areas (GFP_KERNEL metadata).
    t.insert(
        9,
        vec![
            frame("pcpu_get_vm_areas", 0x4, 0xb70, None),
            frame("pcpu_create_chunk", 0x2d, 0x250, None),
            frame("pcpu_alloc_noprof", 0x5f1, 0x9f0, None),
            frame("blkg_alloc", 0x9e, 0x300, None),
            frame("blkg_conf_prep", 0x2b5, 0x430, None),
        ],
    );
    // An unconstrained holder reclaiming, and an IO_FLUSHER waiter (one module frame).
    t.insert(
        11,
        vec![
            frame("try_to_free_pages", 0x1c9, 0x6f0, None),
            frame("__alloc_pages_noprof", 0x31c, 0x350, None),
            frame("pcpu_populate_chunk", 0x67, 0x3c0, None),
            frame("pcpu_alloc_noprof", 0x6d6, 0x9f0, None),
            frame("bpf_map_alloc_percpu", 0x5a, 0x110, None),
            frame("__sys_bpf", 0x1b2, 0x2300, None),
        ],
    );
    t.insert(
        12,
        vec![
            frame("__mutex_lock.constprop.0", 0x2b4, 0x8f0, None),
            frame("pcpu_alloc_noprof", 0x146, 0x9f0, None),
            frame("loop_add", 0x1a4, 0x3c0, Some("loop")),
            frame("loop_control_ioctl", 0x95, 0x240, Some("loop")),
        ],
    );
    t
}

fn task(pid: u32, comm: &str, role: TaskRole, gfp: Option<u32>, eff: u32, flags: u32) -> TaskInfo {
    TaskInfo {
        pid,
        tgid: pid,
        comm: comm.into(),
        cgroup_id: 4242,
        role,
        gfp,
        effective_gfp: Some(eff),
        task_flags: flags,
    }
}

/// One finding of each kind, with the numbers the engine would give them.
pub(super) fn findings() -> Vec<Finding> {
    vec![
        Finding {
            kind: FindingKind::Window,
            severity: Severity::Warning,
            explanation: "io-max-writer (pid 812) holds pcpu_alloc_mutex while serving a \
                          pcpu_alloc with gfp 0xc00, which forbids IO and FS reclaim; under \
                          the mutex pcpu_get_vm_areas allocates with effective gfp 0xcc0."
                .into(),
            tasks: vec![task(
                812,
                "io-max-writer",
                TaskRole::Caller,
                Some(0xc00),
                0xc00,
                0x400100,
            )],
            trigger: Trigger::GetVmAreas { gfp: None },
            trigger_effective_gfp: Some(0xcc0),
            constraint_gfp: 0xc00,
            violated_bits: 0xc0,
            first_seen_ns: 41_200_300_400,
            last_seen_ns: 43_000_000_000,
            count: 2,
            durations: Durations {
                hold_ns: Some(180_000),
                ..Default::default()
            },
            stack_ids: vec![9],
            signature: 0x1111_2222_3333_4444,
            fix_present: Some(false),
            waiter_reason: None,
            doubts: vec![],
        },
        Finding {
            kind: FindingKind::Recursion,
            severity: Severity::Critical,
            explanation: "io-max-writer (pid 812) holds pcpu_alloc_mutex while its allocation \
                          is constrained to gfp 0xc00 (task flags 0x400100), and entered \
                          direct reclaim with effective gfp 0xcc0, which allows IO and FS \
                          reclaim the constraint forbade."
                .into(),
            tasks: vec![task(
                812,
                "io-max-writer",
                TaskRole::Caller,
                Some(0xc00),
                0xc00,
                0x400100,
            )],
            trigger: Trigger::Reclaim {
                gfp: 0xcc0,
                order: 0,
                memcg: false,
            },
            trigger_effective_gfp: Some(0xcc0),
            constraint_gfp: 0xc00,
            violated_bits: 0xc0,
            first_seen_ns: 42_123_456_789,
            last_seen_ns: 42_123_456_789,
            count: 1,
            durations: Durations {
                hold_ns: Some(1_234_567),
                reclaim_ns: Some(3_400_000),
                reclaim_total_ns: 3_400_000,
                wait_ns: None,
                wait_end_seen: false,
            },
            stack_ids: vec![7],
            signature: 0xdead_beef_0123_4567,
            fix_present: Some(false),
            waiter_reason: None,
            doubts: vec![],
        },
        Finding {
            kind: FindingKind::CrossTask,
            severity: Severity::High,
            explanation: "mapmaker (pid 900) holds pcpu_alloc_mutex and is in direct reclaim \
                          with effective gfp 0x140cca, which may do IO and FS reclaim, while \
                          iof|lush\u{e9}r (pid 901), constrained to gfp 0x502c00, waits."
                .into(),
            tasks: vec![
                task(900, "mapmaker", TaskRole::Holder, None, 0xcc0, 0x400000),
                task(
                    901,
                    "iof|lush\u{e9}r",
                    TaskRole::Waiter,
                    Some(0x502cc0),
                    0x502c00,
                    0x580000,
                ),
            ],
            trigger: Trigger::Reclaim {
                gfp: 0x140cca,
                order: 0,
                memcg: false,
            },
            trigger_effective_gfp: Some(0x140cca),
            constraint_gfp: 0x502c00,
            violated_bits: 0xc0,
            first_seen_ns: 50_000_000_000,
            last_seen_ns: 59_999_000_000,
            count: 2247,
            durations: Durations {
                hold_ns: Some(9_800_000),
                reclaim_ns: Some(7_000_000),
                reclaim_total_ns: 4_100_000_000,
                wait_ns: Some(12_500_000),
                wait_end_seen: true,
            },
            stack_ids: vec![11, 12],
            signature: 0x0123_4567_89ab_cdef,
            fix_present: Some(false),
            waiter_reason: Some(WaiterReason::IoFlusher),
            doubts: vec![],
        },
    ]
}

pub(super) fn context() -> ReportContext {
    let mut ctx = ReportContext::new(Source::Recording {
        path: PathBuf::from("/var/lib/percpu-trace/trace.jsonl"),
    });
    // Golden files must not change with every release.
    ctx.tool_version = "0.1.0".into();
    ctx.run.tool_version = Some("0.1.0".into());
    ctx.run.hostname = Some("guest-7-2".into());
    ctx.run.kernel_release = Some("7.2.13+deb14-amd64".into());
    ctx.run.kernel_build = Some("#1 SMP PREEMPT_DYNAMIC Debian 7.2.13-1 (2026-10-30)".into());
    ctx.run.arch = Some("x86_64".into());
    ctx.run.fix_present = Some(false);
    ctx.run.fix_detail = Some("pcpu_get_vm_areas has 4 parameters in BTF (no gfp)".into());
    ctx.run.attach_mode = Some("kprobe".into());
    ctx.run.probes = vec![
        ProbeStatus {
            point: "pcpu_alloc entry".into(),
            program: "pcpu_alloc_enter".into(),
            target: "kprobe:pcpu_alloc_noprof".into(),
            state: ProbeState::Attached,
            detail: None,
        },
        ProbeStatus {
            point: "pcpu_get_vm_areas".into(),
            program: "get_vm_areas".into(),
            target: "kprobe:pcpu_get_vm_areas".into(),
            state: ProbeState::Attached,
            detail: None,
        },
        ProbeStatus {
            point: "memcg reclaim".into(),
            program: "reclaim_begin".into(),
            target: "-".into(),
            state: ProbeState::Unavailable,
            detail: Some(
                "tracepoint vmscan:mm_vmscan_memcg_reclaim_begin not in tracefs; \
                 loses: memcg reclaim under the mutex"
                    .into(),
            ),
        },
    ];
    ctx.run.filter.comm = Some("io-max-writer".into());
    ctx.events = 123_456;
    ctx.drops = [("ringbuf_full", 3), ("stack", 1), ("task_map_full", 0)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    ctx.duration_ns = Some(60_000_000_000);
    ctx
}

#[test]
fn text_golden() {
    let out = render(Format::Text, &context(), &findings(), &stacks());
    insta::assert_snapshot!("text", out);
}

#[test]
fn markdown_golden() {
    let out = render(Format::Markdown, &context(), &findings(), &stacks());
    insta::assert_snapshot!("markdown", out);
}

#[test]
fn json_golden() {
    let out = render(Format::Json, &context(), &findings(), &stacks());
    insta::assert_snapshot!("json", out);
}

#[test]
fn text_is_ascii_and_fits_email() {
    let out = render(Format::Text, &context(), &findings(), &stacks());
    // A `Fixes:` tag is never wrapped (kernel commit-message rule).
    for line in out.lines() {
        assert!(line.is_ascii(), "non-ASCII line: {line}");
        assert!(
            line.len() <= 78 || line.starts_with("Fixes: "),
            "{} columns: {line}",
            line.len()
        );
        assert!(!line.contains('\x1b'));
    }
    // Everything a maintainer needs, without the tool.
    for needle in [
        "WARNING: possible NOIO reclaim recursion under pcpu_alloc_mutex",
        "7.2.13+deb14-amd64 #1 SMP PREEMPT_DYNAMIC",
        "fix verdict vulnerable",
        "io-max-writer/812",
        "GFP_NOIO (0xc00)",
        "GFP_KERNEL (0xcc0)",
        "__GFP_IO|__GFP_FS (0xc0)",
        "PF_MEMALLOC_NOIO",
        "pcpu_populate_chunk+0x67/0x3c0",
        "loop_add+0x1a4/0x3c0 [loop]",
        "Possible unsafe locking scenario",
        "lock(pcpu_alloc_mutex);",
        "lock(fs_reclaim);",
        "*** DEADLOCK ***",
        "attach mode: kprobe",
        "ringbuf_full 3",
    ] {
        assert!(out.contains(needle), "missing {needle:?}");
    }
    // Most severe first.
    let rec = out.find("reclaim recursion under").unwrap();
    let win = out.find("recursion window").unwrap();
    assert!(rec < win);
}

#[test]
fn json_validates_against_the_schema_file() {
    let schema_file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schema/report-v2.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let embedded: serde_json::Value = serde_json::from_str(JSON_SCHEMA).unwrap();
    assert_eq!(schema_file, embedded);
    let validator = jsonschema::validator_for(&schema_file).expect("the schema compiles");

    let ctx = context();
    let mut cases = vec![
        render(Format::Json, &ctx, &findings(), &stacks()),
        // No findings, nothing known, stacks missing from the table.
        render(
            Format::Json,
            &ReportContext::new(Source::Live),
            &[],
            &StackTable::new(),
        ),
        render(Format::Json, &ctx, &findings(), &StackTable::new()),
    ];
    let mut live = ReportContext::new(Source::Live);
    live.run.fix_present = None;
    cases.push(render(Format::Json, &live, &findings()[..1], &stacks()));
    for text in &cases {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(v["schema"], "percpu-trace-report/v2");
    }
    // What the VM harness asserts on.
    let v: serde_json::Value = serde_json::from_str(&cases[0]).unwrap();
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["recursion", "cross_task", "window"]);

    // The schema rejects what it should.
    let mut bad = v.clone();
    bad["findings"][0]["kind"] = "deadlock".into();
    assert!(!validator.is_valid(&bad));
    let mut bad = v;
    bad["schema"] = "percpu-trace-report/v1".into();
    assert!(!validator.is_valid(&bad));
}

#[test]
fn finding_lines_are_single_journal_lines() {
    let lines: Vec<String> = findings().iter().map(finding_line).collect();
    insta::assert_snapshot!("finding_lines", lines.join("\n"));
    for l in &lines {
        assert!(l.is_ascii() && !l.contains('\n'));
    }
}

#[test]
fn no_findings_reads_cleanly() {
    let out = render(
        Format::Text,
        &ReportContext::new(Source::Live),
        &[],
        &StackTable::new(),
    );
    assert!(out.contains("findings: none"));
    assert!(out.contains("kernel: unknown kernel unknown arch"));
    let md = render(
        Format::Markdown,
        &ReportContext::new(Source::Live),
        &[],
        &StackTable::new(),
    );
    assert!(md.contains("No findings."));
}

fn ev(ts: u64, pid: u32, holds: bool, stack: Option<u32>, kind: EventKind) -> Event {
    Event {
        ts_ns: ts,
        pid,
        tgid: pid,
        comm: "io-max-writer".into(),
        cgroup_id: 7,
        task_flags: 0x400100,
        holds_mutex: Some(holds),
        caller_gfp: Some(0xc00),
        stack_id: stack,
        kind,
    }
}

/// Writes a recording of a GFP_NOIO caller reclaiming with GFP_KERNEL under the mutex.
fn write_recording(path: &Path) {
    let mut header = Header::new(crate::engine::EngineConfig {
        fix_present: Some(false),
        ..Default::default()
    });
    header.run.kernel_release = Some("7.2.13+deb14-amd64".into());
    header.run.arch = Some("x86_64".into());
    header.run.attach_mode = Some("kprobe".into());
    let mut live = ReportContext::new(Source::Live);
    live.run.kernel_build = Some("#1 SMP PREEMPT_DYNAMIC Debian 7.2.13-1 (2026-10-30)".into());
    live.run.probes = context().run.probes;
    header.run.kernel_build = live.run.kernel_build.clone();
    header.run.probes = live.run.probes.clone();
    let mut w = RecordingWriter::create(path, &header).unwrap();
    w.write_run(5_000_000_000, false).unwrap();
    w.write_stack(7, &stacks()[&7]).unwrap();
    let enter = EventKind::PcpuAllocEnter {
        size: 32768,
        align: 8,
        reserved: false,
        gfp: 0xc00,
    };
    w.write_event(&ev(1_000, 812, false, None, enter)).unwrap();
    let reclaim = EventKind::ReclaimBegin {
        gfp: 0xcc0,
        order: 0,
        memcg: false,
    };
    w.write_event(&ev(2_000, 812, true, Some(7), reclaim))
        .unwrap();
    let end = EventKind::ReclaimEnd {
        nr_reclaimed: 12,
        memcg: false,
    };
    w.write_event(&ev(5_000, 812, true, None, end)).unwrap();
    w.write_event(&ev(
        6_000,
        812,
        false,
        None,
        EventKind::PcpuAllocExit { ptr: 1 },
    ))
    .unwrap();
    let drops: BTreeMap<String, u64> = [("ringbuf_full".to_string(), 2)].into();
    w.write_drops(&drops).unwrap();
    w.finish().unwrap();
}

#[test]
fn report_from_a_recording() {
    let dir = std::env::temp_dir().join(format!("percpu-trace-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace.jsonl");
    write_recording(&path);

    let text = report_from_recording(&path, Format::Text).unwrap();
    assert!(text.contains("WARNING: possible NOIO reclaim recursion under pcpu_alloc_mutex"));
    assert!(
        text.contains("7.2.13+deb14-amd64 #1 SMP PREEMPT_DYNAMIC"),
        "{text}"
    );
    assert!(text.contains("try_to_free_pages+0x1c9/0x6f0"));
    assert!(text.contains("(pcpu_alloc_mutex) at: pcpu_alloc_noprof+0x6d6/0x9f0"));
    assert!(text.contains("ringbuf_full 2"));
    assert!(text.contains("events:      4 in 5.000 s"));
    assert!(text.contains("attached    pcpu_alloc entry (kprobe:pcpu_alloc_noprof)"));

    let json = report_from_recording(&path, Format::Json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let schema: serde_json::Value = serde_json::from_str(JSON_SCHEMA).unwrap();
    assert!(jsonschema::is_valid(&schema, &v));
    assert_eq!(v["findings"][0]["kind"], "recursion");
    assert_eq!(v["findings"][0]["durations"]["reclaim_ns"], 3_000);
    assert_eq!(v["kernel"]["fix_present"], false);

    let md = report_from_recording(&path, Format::Markdown).unwrap();
    assert!(md.contains("| 1 | `recursion` | critical |"));

    // No final `run` line (ended: true): the tracer was killed or the host stopped, and
    // every format says so (before: nothing did). With the line, nothing is said.
    let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    let unclean = "recording ended uncleanly at 5.0 s: the tracer was killed or the host stopped";
    assert!(flat(&text).contains(unclean), "{text}");
    assert!(flat(&md).contains(unclean), "{md}");
    assert_eq!(v["observation"]["ended_uncleanly_at_ns"], 5_000_000_000u64);
    let clean = dir.join("clean.jsonl");
    let mut data = std::fs::read(&path).unwrap();
    data.extend_from_slice(b"{\"t\":\"run\",\"elapsed_ns\":5100000000,\"ended\":true}\n");
    std::fs::write(&clean, &data).unwrap();
    for f in [Format::Text, Format::Markdown, Format::Json] {
        let r = report_from_recording(&clean, f).unwrap();
        assert!(!r.contains("uncleanly"), "{r}");
    }

    // A recording cut mid-line (was an error; now the report comes, saying what was
    // skipped and where): the last line here is the drops record.
    let data = std::fs::read(&path).unwrap();
    let cut = dir.join("cut.jsonl");
    std::fs::write(&cut, &data[..data.len() - 10]).unwrap();
    let text = report_from_recording(&cut, Format::Text).unwrap();
    assert!(text.contains("events:      4 in 5.000 s"), "{text}");
    assert!(text.contains("try_to_free_pages+0x1c9/0x6f0"));
    let last_line = data[..data.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let lines = data.iter().filter(|&&b| b == b'\n').count();
    assert!(
        text.contains(&format!(
            "recording:   1 corrupt or cut line(s) skipped (first at line {lines}, byte offset\n             {last_line})"
        )),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&report_from_recording(&cut, Format::Json).unwrap()).unwrap();
    assert!(jsonschema::is_valid(&schema, &v), "{v}");
    assert_eq!(v["observation"]["skipped_lines"], 1);
    assert_eq!(v["observation"]["first_skipped"]["offset"], last_line);
    // A corrupt header is still one line naming the file and where.
    let mut bad = data.clone();
    bad[0] = b'[';
    std::fs::write(&cut, &bad).unwrap();
    let err = format!(
        "{:#}",
        report_from_recording(&cut, Format::Text).unwrap_err()
    );
    assert!(err.contains("cut.jsonl") && err.contains("line 1"), "{err}");
    assert!(!err.contains('\n'));
    let err = format!(
        "{:#}",
        report_from_recording(&dir.join("absent.jsonl"), Format::Text).unwrap_err()
    );
    assert!(err.contains("absent.jsonl") && !err.contains('\n'), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_output_paths_are_one_line_errors() {
    let dir = std::env::temp_dir().join(format!("percpu-trace-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            dir.join("no/such/dir/report.txt"),
            "directory does not exist",
        ),
        (dir.clone(), "cannot write report to"),
    ];
    for (path, want) in cases {
        let err = format!("{:#}", write_report(&path, "x").unwrap_err());
        assert!(err.contains(want), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
    // Unwritable file (skipped as root, which may write anything).
    if unsafe { libc::geteuid() } != 0 {
        let ro = dir.join("ro.txt");
        std::fs::write(&ro, "").unwrap();
        let mut p = std::fs::metadata(&ro).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o444);
        std::fs::set_permissions(&ro, p).unwrap();
        let err = format!("{:#}", write_report(&ro, "x").unwrap_err());
        assert!(err.contains("permission denied"), "{err}");
    }
    let ok = dir.join("ok.txt");
    write_report(&ok, "report\n").unwrap();
    assert_eq!(std::fs::read_to_string(&ok).unwrap(), "report\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_header_carries_every_fact_the_report_shows() {
    // A live context goes into a recording header through the one `RunInfo` and comes
    // back from the written bytes unchanged: host, kernel build, fix evidence, probes and
    // their attach result, filters, gfp layout; the run's wall-clock length comes from
    // its `run` records.
    let mut live = context();
    live.source = Source::Live;
    let header = Header::with_run(Default::default(), live.run.clone());
    let mut w = RecordingWriter::new(Vec::new(), &header).unwrap();
    w.write_run(live.duration_ns.unwrap(), true).unwrap();
    let bytes = w.finish().unwrap();
    let reader = RecordingReader::new(std::io::Cursor::new(bytes)).unwrap();
    let mut engine = crate::engine::Engine::new(reader.header().engine_config());
    let summary = crate::record::replay_reader(reader, &mut engine).unwrap();
    let back = ReportContext::from_replay(Path::new("/var/lib/percpu-trace/trace.jsonl"), &summary);
    assert_eq!(back.run, live.run);
    assert_eq!(back.filters(), vec!["--comm io-max-writer".to_string()]);
    assert_eq!(back.duration_ns, live.duration_ns);
    assert!(back.duration_is_wall_clock);
    assert!(summary.ended);
}

#[test]
fn facts_in_an_older_recordings_extra_map_are_still_read() {
    let mut header = Header::new(Default::default());
    for (k, v) in [
        ("hostname", serde_json::json!("old-host")),
        ("kernel_build", serde_json::json!("#1 SMP")),
        (
            "fix_detail",
            serde_json::json!("pcpu_get_vm_areas has 4 parameters"),
        ),
        ("filters", serde_json::json!(["--comm x", "--cgroup 5"])),
    ] {
        header.extra.insert(k.into(), v);
    }
    let mut bytes = serde_json::to_vec(&header).unwrap();
    bytes.push(b'\n');
    let reader = RecordingReader::new(std::io::Cursor::new(bytes)).unwrap();
    let run = &reader.header().run;
    assert_eq!(run.hostname.as_deref(), Some("old-host"));
    assert_eq!(run.kernel_build.as_deref(), Some("#1 SMP"));
    assert_eq!(run.filter.comm.as_deref(), Some("x"));
    assert_eq!(run.filter.cgroup, Some(5));
    assert!(run.fix_detail.is_some());
}

#[test]
fn probes_from_a_recorded_attach_plan() {
    use crate::kernel::plan::{Attachment, PlannedProbe};
    let plan = vec![
        PlannedProbe {
            point: "pcpu_alloc entry".into(),
            program: "pcpu_alloc_enter".into(),
            attachment: Attachment::Kprobe {
                symbol: "pcpu_alloc_noprof".into(),
            },
            disables: "constrained callers".into(),
        },
        PlannedProbe {
            point: "direct reclaim".into(),
            program: "reclaim_begin".into(),
            attachment: Attachment::Tracepoint {
                category: "vmscan".into(),
                name: "mm_vmscan_direct_reclaim_begin".into(),
                raw: false,
            },
            disables: "recursion".into(),
        },
        PlannedProbe {
            point: "page tables".into(),
            program: "pgtable_alloc".into(),
            attachment: Attachment::Unavailable {
                reason: "no kprobes".into(),
            },
            disables: "window via page tables".into(),
        },
    ];
    let mut header = Header::new(Default::default());
    header
        .extra
        .insert("plan".into(), serde_json::to_value(&plan).unwrap());
    let mut bytes = serde_json::to_vec(&header).unwrap();
    bytes.push(b'\n');
    let reader = RecordingReader::new(std::io::Cursor::new(bytes)).unwrap();
    let ctx = ReportContext::from_header(Path::new("t.jsonl"), reader.header());
    assert!(ctx.run.probes_from_plan);
    let got: Vec<(&str, &str, ProbeState)> = ctx
        .run
        .probes
        .iter()
        .map(|p| (p.point.as_str(), p.target.as_str(), p.state))
        .collect();
    assert_eq!(
        got,
        [
            (
                "pcpu_alloc entry",
                "kprobe:pcpu_alloc_noprof",
                ProbeState::Attached
            ),
            (
                "direct reclaim",
                "tracepoint:vmscan:mm_vmscan_direct_reclaim_begin",
                ProbeState::Attached
            ),
            ("page tables", "-", ProbeState::Unavailable),
        ]
    );
    assert_eq!(
        ctx.run.probes[2].detail.as_deref(),
        Some("no kprobes; loses: window via page tables")
    );
    let v: serde_json::Value =
        serde_json::from_str(&render(Format::Json, &ctx, &[], &StackTable::new())).unwrap();
    let schema: serde_json::Value = serde_json::from_str(JSON_SCHEMA).unwrap();
    assert!(jsonschema::is_valid(&schema, &v));
}

/// Every recording fixture renders in all formats: ASCII text within email width, JSON that
/// validates, and no finding at all from the fixed kernel.
#[test]
fn fixture_recordings_render_and_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recordings");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return; // fixtures not in this checkout
    };
    let schema: serde_json::Value = serde_json::from_str(JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for e in entries {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        let name = path.display().to_string();
        let text = report_from_recording(&path, Format::Text).unwrap();
        // `PRINT_REPORTS=1 cargo test ... fixture -- --nocapture` shows them for review.
        if std::env::var_os("PRINT_REPORTS").is_some() {
            println!("{text}");
        }
        for line in text.lines() {
            // A single unbreakable token (a long file path) may not fit; nothing else.
            let one_token = !line.trim().contains(' ');
            let tag = line.starts_with("Fixes: ");
            assert!(
                line.is_ascii() && (line.len() <= 78 || one_token || tag),
                "{name}: {line}"
            );
        }
        let json = report_from_recording(&path, Format::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        report_from_recording(&path, Format::Markdown).unwrap();
        if name.contains("7.3-fixed") {
            assert_eq!(v["findings"].as_array().unwrap().len(), 0, "{name}");
        }
    }
}

fn fix_of(states: [PatchState; 4]) -> FixVerdict {
    FixVerdict::from_patches(
        PatchId::ALL
            .iter()
            .zip(states)
            .map(|(&id, st)| PatchEvidence::new(id, st, format!("test evidence for {id}")))
            .collect(),
    )
}

#[test]
fn partially_fixed_kernel_names_the_missing_patch_in_cross_task_findings() {
    use PatchState::*;
    let mut ctx = context();
    ctx.run.fix = Some(fix_of([Present, Present, Present, Absent]));
    let f = findings();
    let text = render(Format::Text, &ctx, &f, &stacks());
    assert!(text.contains("fix verdict: partially-fixed"), "{text}");
    assert!(
        text.contains("  backing-noio  absent   test evidence"),
        "{text}"
    );
    let note = "patch backing-noio (\"mm/percpu: avoid IO/FS reclaim in backing allocations\") is what is missing";
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(squash(&text).contains(note), "{text}");
    let v = render_json_value(&ctx, &f, &stacks());
    assert_eq!(v["kernel"]["fix"]["verdict"], "partially-fixed");
    assert_eq!(v["kernel"]["fix"]["patches"][3]["state"], "absent");
    let notes: Vec<(&str, bool)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["kind"].as_str().unwrap(), x.get("fix_note").is_some()))
        .collect();
    assert!(notes.contains(&("cross_task", true)), "{notes:?}");
    assert!(notes.contains(&("window", false)), "{notes:?}");
    assert!(render(Format::Markdown, &ctx, &f, &stacks()).contains(note));
}

#[test]
fn a_run_that_shows_the_patches_at_work_upgrades_likely_fixed() {
    use PatchState::*;
    let mut ctx = context();
    ctx.run.fix = Some(fix_of([Present, Present, Unknown, Unknown]));
    assert_eq!(ctx.fix().fix.verdict, Verdict::LikelyFixed);
    ctx.fix_observed = FixObservations {
        populate_noio: 3,
        populate_noio_gfp: Some(0x2c00),
        pgtable_scope_inside: 2,
        ..FixObservations::default()
    };
    let text = render(Format::Text, &ctx, &[], &stacks());
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("fix verdict: fixed (upgraded from likely-fixed to fixed by this run"),
        "{text}"
    );
    assert!(flat.contains("(first 0x2c00)"), "{text}");
    let v = render_json_value(&ctx, &[], &stacks());
    assert_eq!(v["kernel"]["fix"]["verdict"], "fixed");
    assert_eq!(v["kernel"]["fix"]["static_verdict"], "likely-fixed");
    assert_eq!(v["kernel"]["fix"]["upgraded_by_run"], true);
}

#[test]
fn the_tracers_own_frames_are_dropped_from_the_top_of_stacks() {
    let fr = |n: &str| frame(n, 0, 0x10, None);
    let taken = vec![
        fr("bpf_prog_cda0356c51e2ec24_fentry_vmalloc_node"),
        fr("bpf_trampoline_6442512602"),
        fr("__vmalloc_node_range_noprof"),
        fr("pcpu_alloc_noprof"),
        fr("bpf_trampoline_6442552041"),
        fr("bpf_map_alloc_percpu"),
    ];
    let kept = wording::without_own_frames(&taken);
    assert_eq!(
        kept[0].function.as_deref(),
        Some("__vmalloc_node_range_noprof")
    );
    assert_eq!(kept.len(), 4, "a trampoline further down stays");
    // A raw tracepoint's: the program, the kernel's bpf_trace_runN and __bpf_trace_<event>.
    let raw = vec![
        fr("bpf_prog_6deef7357e7b4530_contention_begi"),
        fr("bpf_trace_run2"),
        fr("__bpf_trace_contention_begin"),
        fr("__mutex_lock.constprop.0"),
        fr("pcpu_alloc_noprof"),
    ];
    assert_eq!(
        wording::without_own_frames(&raw)[0].function.as_deref(),
        Some("__mutex_lock.constprop.0")
    );
    let mut table = StackTable::new();
    table.insert(3, taken);
    let mut f = findings().remove(0);
    f.stack_ids = vec![3];
    let st = wording::stacks(&f, &table);
    assert_eq!(st[0].frames.map(<[_]>::len), Some(4));
    // The one left in the middle is marked, never printed as kernel code.
    let lines: Vec<String> = st[0]
        .frames
        .unwrap()
        .iter()
        .map(wording::frame_line)
        .collect();
    assert!(
        lines[2].starts_with("bpf_trampoline_6442552041"),
        "{lines:?}"
    );
    assert!(
        lines[2].ends_with("(percpu-trace's own probe, not kernel code)"),
        "{lines:?}"
    );
    assert!(!lines[1].contains("percpu-trace"), "{lines:?}");
}

#[test]
fn redacted_reports_carry_no_kernel_address() {
    let dir = std::env::temp_dir().join(format!("pt-redact-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("r.jsonl");
    write_recording(&path);
    let plain = report_from_recording_with(&path, Format::Json, false).unwrap();
    assert!(plain.contains("0xffffffff"), "{plain}");
    for format in [Format::Json, Format::Text, Format::Markdown] {
        let r = report_from_recording_with(&path, format, true).unwrap();
        assert!(!r.contains("ffffffff"), "{format:?}: {r}");
        assert!(r.contains("try_to_free_pages"), "names stay: {r}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
