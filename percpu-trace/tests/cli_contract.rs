//! The command line's contracts a script relies on, run through the real binary (no root):
//! `report`'s exit status is `record`'s (0 no findings, 1 findings, 2 error).
use std::{path::PathBuf, process::Command};

const BIN: &str = env!("CARGO_BIN_EXE_percpu-trace");

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/recordings")
        .join(name)
}

fn report_status(path: &std::path::Path, format: &str) -> Option<i32> {
    let out = Command::new(BIN)
        .args(["report", "--format", format])
        .arg(path)
        .output()
        .expect("running percpu-trace report");
    assert!(!out.stdout.is_empty() || out.status.code() == Some(2));
    out.status.code()
}

#[test]
fn report_exits_like_record() {
    for format in ["text", "json", "markdown"] {
        // Findings: 1, as `record` exits when it printed findings.
        assert_eq!(
            report_status(&fixture("synthetic-7.2-gfp-noio-writer.jsonl"), format),
            Some(1),
            "{format}"
        );
        // None: 0.
        assert_eq!(
            report_status(&fixture("synthetic-7.3-fixed.jsonl"), format),
            Some(0),
            "{format}"
        );
        // An error: 2.
        assert_eq!(
            report_status(&fixture("no-such-recording.jsonl"), format),
            Some(2),
            "{format}"
        );
    }
}
