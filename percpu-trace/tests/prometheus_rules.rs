//! The shipped alerting rules (dist/percpu-trace.rules.yml) and the exposition, checked by
//! Debian's real `promtool` (package `prometheus`, installed by `cargo xtask setup`).
//! Without promtool these tests fail: a check that cannot run must not pass.
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
}

/// Runs promtool with `args` (stdin: `input`), failing loudly when it is missing or fails.
fn promtool(args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dist())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool cannot run ({e}): install Debian's `prometheus` package \
                 (`cargo xtask setup` does)"
            )
        });
    if let Some(text) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    eprintln!("promtool {args:?}:\n{text}");
    text
}

#[test]
fn shipped_rules_pass_promtool_check_and_their_unit_tests() {
    let out = promtool(&["check", "rules", "percpu-trace.rules.yml"], None);
    assert!(out.contains("SUCCESS: 3 rules found"), "{out}");
    let out = promtool(&["test", "rules", "percpu-trace.rules.test.yml"], None);
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_exposition_passes_promtool_check_metrics() {
    let m = percpu_trace::metrics::Metrics::new();
    let text = m.encode_text();
    // promtool prints lint problems and exits non-zero on any.
    let out = promtool(&["check", "metrics"], Some(&text));
    assert!(!out.contains("no help text"), "{out}");
    assert!(text.contains("percpu_trace_mutex_hold_seconds_bucket{le=\"+Inf\"}"));
}
