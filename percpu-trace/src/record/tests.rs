use super::*;
use crate::engine::tests::{
    e, fixed_kernel_stream, reclaim, reclaim_end, vulnerable_caller_stream, wait, wait_end, Ev,
};
use crate::engine::Engine;
use crate::engine::EngineConfig;
use crate::engine::FindingKind;
use crate::event::EventKind;
use crate::event::{Event, Frame};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::path::PathBuf;

fn frame(function: &str, offset: u64, len: u64) -> Frame {
    Frame {
        addr: 0xffff_ffff_8100_0000 + offset,
        function: Some(function.into()),
        offset,
        len: Some(len),
        module: None,
        ..Default::default()
    }
}

fn stacks() -> Vec<(u32, Vec<Frame>)> {
    let tail = |v: Vec<Frame>| {
        let mut v = v;
        v.push(frame("pcpu_alloc_noprof", 0x1f3, 0x900));
        v.push(frame("blkg_alloc", 0x8e, 0x3c0));
        v.push(frame("blkg_conf_prep", 0x2a1, 0x6a0));
        v
    };
    vec![
        (
            3,
            tail(vec![
                frame("pcpu_get_vm_areas", 0x0, 0xb10),
                frame("pcpu_create_chunk", 0x1e, 0x190),
            ]),
        ),
        (4, tail(vec![frame("pcpu_populate_chunk", 0x0, 0x3c0)])),
        (
            5,
            tail(vec![
                frame("__pte_alloc_kernel", 0x0, 0xd0),
                frame("vmap_pages_pte_range", 0x3a, 0x140),
                frame("pcpu_populate_chunk", 0x12c, 0x3c0),
            ]),
        ),
        (
            7,
            tail(vec![
                frame("try_to_free_pages", 0x0, 0x370),
                frame("__alloc_pages_slowpath", 0x3ec, 0xe80),
                frame("pcpu_populate_chunk", 0x1a0, 0x3c0),
            ]),
        ),
        (9, tail(vec![frame("__mutex_lock", 0x16e, 0x9c0)])),
    ]
}

/// Writes `evs` as a recording, with each stack written before its first use.
fn write(header: &Header, evs: &[Event], drops: bool) -> Vec<u8> {
    let table = stacks();
    let mut w = RecordingWriter::new(Vec::new(), header).unwrap();
    for ev in evs {
        if let Some(id) = ev.stack_id {
            if !w.has_stack(id) {
                let frames = table
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, f)| f.clone())
                    .unwrap_or_default();
                w.write_stack(id, &frames).unwrap();
            }
        }
        w.write_event(ev).unwrap();
    }
    if drops {
        let d: BTreeMap<String, u64> =
            [("ringbuf_full".to_string(), 0), ("stack".to_string(), 2)].into();
        w.write_drops(&d).unwrap();
    }
    w.finish().unwrap()
}

fn header(release: &str, fix: Option<bool>, mode: &str) -> Header {
    let mut h = Header::new(EngineConfig {
        fix_present: fix,
        ..Default::default()
    });
    h.run.kernel_release = Some(release.into());
    h.run.arch = Some("x86_64".into());
    h.run.attach_mode = Some(mode.into());
    h.run.tool_version = Some("0.1.0".into());
    h.extra.insert(
        "source".into(),
        "synthetic (engine unit-test streams)".into(),
    );
    h
}

fn cross_task_stream() -> Vec<Event> {
    let mut v = vec![
        crate::engine::tests::enter(0, 20, 0xc00).comm("iomax-writer"),
        wait(1, 20).caller(0xc00).comm("iomax-writer"),
        reclaim(3, 30, 0xcc0).holding().comm("bpf-maps"),
        reclaim_end(13, 30).holding().comm("bpf-maps"),
        wait_end(20, 20).caller(0xc00).comm("iomax-writer"),
        crate::engine::tests::exit(21, 20).comm("iomax-writer"),
    ];
    // A second wait by a scope-constrained IO_FLUSHER, holder reclaiming again.
    v.push(reclaim(30, 30, 0xcc0).holding().comm("bpf-maps"));
    v.push(wait(31, 40).flags(0x80000).comm("io-flusher"));
    v.push(reclaim_end(35, 30).holding().comm("bpf-maps"));
    v.push(wait_end(36, 40).flags(0x80000).comm("io-flusher"));
    v.push(
        e(37, 40, EventKind::TaskExit)
            .flags(0x80000)
            .comm("io-flusher"),
    );
    v
}

fn scope_stream() -> Vec<Event> {
    let f = 0x80000;
    vec![
        crate::engine::tests::enter(0, 7, 0xcc0).flags(f),
        crate::engine::tests::populate(1, 7, Some(0xcc0))
            .caller(0xcc0)
            .flags(f),
        crate::engine::tests::vm_areas(2, 7, None)
            .caller(0xcc0)
            .flags(f),
        crate::engine::tests::pgtable(3, 7).caller(0xcc0).flags(f),
        reclaim(5, 7, 0xc00).caller(0xcc0).flags(f).holding(),
        reclaim_end(6, 7).caller(0xcc0).flags(f).holding(),
        crate::engine::tests::exit(7, 7).flags(f),
    ]
}

struct Fixture {
    name: &'static str,
    header: Header,
    events: Vec<Event>,
    expect: Vec<(FindingKind, u64)>,
}

fn fixtures() -> Vec<Fixture> {
    let mut vuln = Vec::new();
    for i in 0..3 {
        vuln.extend(
            vulnerable_caller_stream(100 + i, u64::from(i) * 1000)
                .into_iter()
                .map(|e| e.comm("iomax-writer")),
        );
    }
    vec![
        Fixture {
            name: "synthetic-7.2-gfp-noio-writer.jsonl",
            header: header("7.2.13+deb14-amd64", Some(false), "kprobe"),
            events: vuln,
            expect: vec![
                (FindingKind::Window, 3),
                (FindingKind::Window, 3),
                (FindingKind::Recursion, 3),
            ],
        },
        Fixture {
            name: "synthetic-7.2-cross-task.jsonl",
            header: header("7.2.13+deb14-amd64", Some(false), "kprobe"),
            events: cross_task_stream(),
            expect: vec![(FindingKind::CrossTask, 1), (FindingKind::CrossTask, 1)],
        },
        Fixture {
            name: "synthetic-7.3-fixed.jsonl",
            header: header("7.3.4+deb13-amd64", Some(true), "kprobe"),
            events: fixed_kernel_stream(40, 0)
                .into_iter()
                .map(|e| e.comm("iomax-writer"))
                .collect(),
            expect: vec![],
        },
        Fixture {
            name: "synthetic-7.2-io-flusher-scope.jsonl",
            header: header("7.2.13+deb14-amd64", Some(false), "kprobe"),
            events: scope_stream(),
            expect: vec![],
        },
    ]
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recordings")
}

/// Regenerates the synthetic fixtures: `cargo test -p percpu-trace record::tests::write_fixtures -- --ignored`.
#[test]
#[ignore]
fn write_fixtures() {
    std::fs::create_dir_all(fixture_dir()).unwrap();
    for f in fixtures() {
        std::fs::write(
            fixture_dir().join(f.name),
            write(&f.header, &f.events, true),
        )
        .unwrap();
    }
}

#[test]
fn fixtures_replay_to_the_expected_findings() {
    for f in fixtures() {
        let path = fixture_dir().join(f.name);
        let (eng, summary) = replay_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<(FindingKind, u64)> =
            eng.findings().iter().map(|x| (x.kind, x.count)).collect();
        assert_eq!(got, f.expect, "{}", f.name);
        assert_eq!(summary.events as usize, f.events.len(), "{}", f.name);
        assert_eq!(summary.missing_stacks, 0, "{}", f.name);
        assert_eq!(summary.drops.get("stack"), Some(&2));
        // The file on disk is what this code writes today (format stability).
        let fresh = write(&f.header, &f.events, true);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            fresh,
            "{} is stale: run write_fixtures",
            f.name
        );
        // Same findings every time.
        let (again, _) = replay_file(&path).unwrap();
        assert_eq!(eng.findings(), again.findings());
        for finding in eng.findings() {
            for id in &finding.stack_ids {
                assert!(summary.stacks.contains_key(id), "{}: stack {id}", f.name);
            }
        }
    }
}

#[test]
fn a_recording_with_the_old_header_layout_still_replays() {
    // Written before the run facts were typed (header fields in the old order, facts
    // under `extra`): same findings, same header facts as today's file.
    let old = fixture_dir().join("legacy-header-7.2-gfp-noio-writer.jsonl");
    let new = fixture_dir().join("synthetic-7.2-gfp-noio-writer.jsonl");
    let (a, sa) = replay_file(&old).unwrap_or_else(|e| panic!("{e}"));
    let (b, sb) = replay_file(&new).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.findings(), b.findings());
    assert!(!a.findings().is_empty());
    assert_eq!(sa.header.run, sb.header.run);
    assert_eq!(sa.header.engine_config(), sb.header.engine_config());
}

#[test]
fn round_trip() {
    let h = header("7.2.13", Some(false), "tracepoint");
    let evs = vulnerable_caller_stream(1, 0);
    let bytes = write(&h, &evs, true);
    let r = RecordingReader::new(Cursor::new(&bytes)).unwrap();
    assert_eq!(r.header(), &h);
    let recs: Vec<Record> = r.collect::<Result<_, _>>().unwrap();
    let got: Vec<&Event> = recs
        .iter()
        .filter_map(|r| {
            if let Record::Event(e) = r {
                Some(e)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(got, evs.iter().collect::<Vec<_>>());
    assert!(matches!(recs.last(), Some(Record::Drops(d)) if d["stack"] == 2));
    let first_stack = recs
        .iter()
        .position(|r| matches!(r, Record::Stack { id: 4, .. }))
        .unwrap();
    let first_use = recs
        .iter()
        .position(|r| matches!(r, Record::Event(e) if e.stack_id == Some(4)))
        .unwrap();
    assert!(first_stack < first_use);
}

#[test]
fn reads_what_the_live_recorder_writes() {
    // live.rs flattens the event next to "t".
    let ev = reclaim(5, 9, 0xcc0).holding();
    let mut v = serde_json::to_value(&ev).unwrap();
    v["t"] = "event".into();
    let text = format!(
        "{}\n{v}\n",
        serde_json::to_string(&Header::new(EngineConfig::default())).unwrap()
    );
    let recs: Vec<Record> = RecordingReader::new(Cursor::new(text))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recs, vec![Record::Event(ev)]);
}

fn read_all(bytes: &[u8]) -> Result<Vec<Record>, RecordError> {
    RecordingReader::new(Cursor::new(bytes))?.collect()
}

/// Byte offset where line `n` (1-based) of `bytes` starts.
fn line_start(bytes: &[u8], n: usize) -> usize {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .take(n - 1)
        .map(<[u8]>::len)
        .sum()
}

// Was `corrupt_line_names_line_and_offset` (an error for the whole file): a corrupt
// middle line is now skipped and counted, with its line and offset kept.
#[test]
fn corrupt_middle_line_is_skipped_and_counted() {
    let evs = vulnerable_caller_stream(1, 0);
    let bytes = write(&header("x", None, "kprobe"), &evs, false);
    let offset = line_start(&bytes, 4);
    let bad_line = bytes[offset..]
        .split_inclusive(|&b| b == b'\n')
        .next()
        .unwrap()
        .to_vec();
    let mut bad = bytes.clone();
    bad[offset + 5] = b'#';
    let mut r = RecordingReader::new(Cursor::new(&bad)).unwrap();
    let recs: Vec<Record> = (&mut r).collect::<Result<_, _>>().unwrap();
    assert_eq!(r.skipped_lines(), 1);
    assert_eq!(r.first_skipped(), Some((4, offset as u64)));
    assert!(!r.torn_tail());
    let all: Vec<Record> = read_all(&bytes).unwrap();
    let lost: Record = serde_json::from_slice(&bad_line).unwrap();
    let want: Vec<&Record> = all.iter().filter(|x| **x != lost).collect();
    assert_eq!(recs.iter().collect::<Vec<_>>(), want);
    // The replay sees the events before and after it, and says what it skipped.
    let mut eng = Engine::new(EngineConfig::default());
    let s = replay_reader(RecordingReader::new(Cursor::new(&bad)).unwrap(), &mut eng).unwrap();
    let lost_events = u64::from(matches!(lost, Record::Event(_)));
    assert_eq!(s.events, evs.len() as u64 - lost_events);
    assert_eq!(s.last_ns, evs.last().map(|e| e.ts_ns));
    assert_eq!(
        (s.skipped_lines, s.first_skipped, s.torn_tail),
        (1, Some((4, offset as u64)), false)
    );
    assert_eq!(
        s.skipped_warning().unwrap(),
        format!("skipped 1 corrupt line(s) (first at line 4, byte offset {offset})")
    );
}

#[test]
fn several_corrupt_lines_keep_the_first_position() {
    let evs = vulnerable_caller_stream(1, 0);
    let bytes = write(&header("x", None, "kprobe"), &evs, true);
    let (o3, o6) = (line_start(&bytes, 3), line_start(&bytes, 6));
    let mut bad = bytes.clone();
    bad[o6] = b'!';
    bad[o3] = b'!';
    let mut eng = Engine::new(EngineConfig::default());
    let s = replay_reader(RecordingReader::new(Cursor::new(&bad)).unwrap(), &mut eng).unwrap();
    assert_eq!(
        (s.skipped_lines, s.first_skipped),
        (2, Some((3, o3 as u64)))
    );
    // The drops record after them is still read.
    assert_eq!(s.drops.get("stack"), Some(&2));
}

// Was `truncated_file_is_an_error_not_a_panic`: a torn last line is now skipped and
// counted; a header cut short is still an error.
#[test]
fn recording_cut_mid_line_replays_every_complete_event() {
    let evs = vulnerable_caller_stream(1, 0);
    let bytes = write(&header("x", None, "kprobe"), &evs, false);
    let full = read_all(&bytes).unwrap();
    // Cut inside every record line in turn: what precedes the cut is all there.
    let starts: Vec<usize> = (2..=bytes.iter().filter(|&&b| b == b'\n').count())
        .map(|n| line_start(&bytes, n))
        .collect();
    for (i, &start) in starts.iter().enumerate() {
        let cut = start + 7;
        let mut r = RecordingReader::new(Cursor::new(&bytes[..cut])).unwrap();
        let recs: Vec<Record> = (&mut r).collect::<Result<_, _>>().unwrap();
        assert_eq!(recs, full[..i], "cut at {cut}");
        assert_eq!(r.skipped_lines(), 1);
        assert_eq!(r.first_skipped(), Some((i as u64 + 2, start as u64)));
        assert!(r.torn_tail());
        assert!(r
            .skipped_warning()
            .unwrap()
            .ends_with("(crash or full disk?)"));
    }
    let cut = bytes.len() - 7;
    let mut eng = Engine::new(EngineConfig::default());
    let s = replay_reader(
        RecordingReader::new(Cursor::new(&bytes[..cut])).unwrap(),
        &mut eng,
    )
    .unwrap();
    assert_eq!(s.events as usize, evs.len() - 1);
    assert_eq!(s.last_ns, Some(evs[evs.len() - 2].ts_ns));
    assert!(s.torn_tail);
    assert!(s
        .skipped_warning()
        .unwrap()
        .contains("the last line was cut"));
    // A last line without its newline but whole is not skipped.
    let s = replay_reader(
        RecordingReader::new(Cursor::new(&bytes[..bytes.len() - 1])).unwrap(),
        &mut Engine::new(EngineConfig::default()),
    )
    .unwrap();
    assert_eq!((s.events as usize, s.skipped_lines), (evs.len(), 0));
    // Cut inside the header: still an error, in one line.
    let err = read_all(&bytes[..10]).unwrap_err();
    assert!(matches!(err.kind, RecordErrorKind::Truncated(_)), "{err}");
    assert_eq!(err.line, 1);
    assert!(err.to_string().contains("truncated recording"));
}

#[test]
fn overlong_middle_line_is_skipped_and_the_rest_read() {
    let evs = vulnerable_caller_stream(1, 0);
    let bytes = write(&header("x", None, "kprobe"), &evs, false);
    let at = line_start(&bytes, 3);
    let mut big = bytes[..at].to_vec();
    big.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
    big.push(b'\n');
    big.extend_from_slice(&bytes[at..]);
    let at4 = at + MAX_LINE + 11 + line_start(&bytes[at..], 2);
    // The line after the long one (original line 4) is corrupt too: both are counted,
    // and everything else is read.
    big[at4] = b'!';
    let mut r = RecordingReader::new(Cursor::new(&big)).unwrap();
    let n = (&mut r).filter(Result::is_ok).count();
    assert_eq!(r.skipped_lines(), 2);
    assert_eq!(r.first_skipped(), Some((3, at as u64)));
    assert_eq!(n, read_all(&bytes).unwrap().len() - 1);
}

#[test]
fn header_errors() {
    assert!(matches!(
        read_all(b"").unwrap_err().kind,
        RecordErrorKind::Empty
    ));
    assert!(matches!(
        read_all(b"{\"t\":\"event\"}\n").unwrap_err().kind,
        RecordErrorKind::NotARecording(_)
    ));
    let v3 = b"{\"format\":\"percpu-trace-recording\",\"version\":3}\n";
    assert!(matches!(
        read_all(v3).unwrap_err().kind,
        RecordErrorKind::UnsupportedVersion(3)
    ));
    assert!(matches!(
        read_all(b"\xff\xfe garbage\n").unwrap_err().kind,
        RecordErrorKind::NotARecording(_)
    ));
    let err = replay(
        Path::new("/nonexistent/rec.jsonl"),
        &mut Engine::new(EngineConfig::default()),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/rec.jsonl: line 0"),
        "{err}"
    );
}

#[test]
fn header_with_only_the_required_fields() {
    let text = "{\"format\":\"percpu-trace-recording\",\"version\":1}\n\n";
    let r = RecordingReader::new(Cursor::new(text)).unwrap();
    assert_eq!(r.header().engine, EngineConfig::default());
    assert_eq!(r.count(), 0);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn mangled_recordings_never_panic(cut in 0usize..4000, flips in proptest::collection::vec((0usize..4000, any::<u8>()), 0..4)) {
            let mut bytes = write(&header("x", Some(false), "kprobe"), &vulnerable_caller_stream(1, 0), true);
            for (at, b) in flips {
                if at < bytes.len() {
                    bytes[at] = b;
                }
            }
            bytes.truncate(cut.min(bytes.len()));
            if let Ok(r) = RecordingReader::new(Cursor::new(&bytes)) {
                let mut eng = Engine::new(EngineConfig::default());
                let _ = replay_reader(r, &mut eng);
            }
        }
    }
}

#[test]
fn a_version_1_recording_with_numeric_addresses_still_replays() {
    // Version 1 wrote kernel addresses as JSON numbers (which jq rounds); version 2 writes
    // "0x..." strings. The old file replays to the same findings and the same stacks.
    let old = fixture_dir().join("v1-numbers-7.2-cross-task.jsonl");
    let new = fixture_dir().join("synthetic-7.2-cross-task.jsonl");
    let old_text = std::fs::read_to_string(&old).unwrap();
    assert!(old_text.starts_with(r#"{"format":"percpu-trace-recording","version":1,"#));
    assert!(old_text.contains(r#""addr":18446744"#));
    let new_text = std::fs::read_to_string(&new).unwrap();
    assert!(new_text.contains(r#""version":2"#));
    assert!(new_text.contains(r#""addr":"0xffffffff"#), "{new_text}");
    assert!(!new_text.contains(r#""addr":1"#));
    let (a, sa) = replay_file(&old).unwrap_or_else(|e| panic!("{e}"));
    let (b, sb) = replay_file(&new).unwrap_or_else(|e| panic!("{e}"));
    assert!(!a.findings().is_empty());
    assert_eq!(a.findings(), b.findings());
    assert_eq!(sa.stacks, sb.stacks);
    assert_eq!(sa.events, sb.events);
}
