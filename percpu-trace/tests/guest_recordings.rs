//! Replays of real recordings made by `cargo xtask vm-test` in Debian guests (gzip'd under
//! tests/fixtures/recordings/guests; regenerate by copying `target/vm-results/<boot>/out/
//! <scenario>/rec.jsonl` and gzip -9). The engine must find what the event sequence shows on
//! the vulnerable kernel, and none of the three kinds on the fixed one.
use std::{collections::BTreeMap, fs::File, io::BufReader, path::PathBuf};

use percpu_trace::{
    engine::Engine,
    record::{replay_reader, RecordingReader},
};

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
