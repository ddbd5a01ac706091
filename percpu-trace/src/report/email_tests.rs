//! The bug-report parts (#28): email format (width, subject, tags), identity lines, the
//! reproducer, old recordings that lack identity, and debug files of another build.
use std::path::{Path, PathBuf};

use super::{
    tests::{context, findings, stacks},
    *,
};
use crate::kernel::identity::{parse_config, KernelIdentity};

fn with_identity(mut ctx: ReportContext) -> ReportContext {
    ctx.run.identity = Some(KernelIdentity {
        build_id: Some("3f8a2b9c0d1e4f5a6b7c8d9e0f1a2b3c4d5e6f70".into()),
        taint: Some(1 << 9),
        config: Some(parse_config(
            "/boot/config-7.2.13+deb14-amd64",
            "CONFIG_MEMCG=y\nCONFIG_KALLSYMS_ALL=y\nCONFIG_DEBUG_INFO_BTF=y\n\
             CONFIG_KPROBES=y\nCONFIG_KPROBE_EVENTS=y\nCONFIG_BPF_EVENTS=y\n",
        )),
    });
    ctx.source_lines = Some(
        "no debug vmlinux of this kernel here: install the distribution's debug package \
         (linux-image-7.2.13+deb14-amd64-dbg on Debian) or pass --debug-vmlinux FILE for \
         file:line"
            .into(),
    );
    ctx
}

#[test]
fn email_golden() {
    let out = render(
        Format::Email,
        &with_identity(context()),
        &findings(),
        &stacks(),
    );
    insta::assert_snapshot!("email", out);
}

#[test]
fn email_fits_72_columns_with_subject_and_tags() {
    let out = render(
        Format::Email,
        &with_identity(context()),
        &findings(),
        &stacks(),
    );
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(
            "Subject: [BUG] mm/percpu: possible NOIO reclaim recursion under \
             pcpu_alloc_mutex on 7.2.13+deb14-amd64 (+2 more)"
        )
    );
    assert_eq!(lines.next(), Some(""), "a blank line ends the headers");
    for line in lines {
        assert!(line.is_ascii() && !line.contains('\x1b'), "{line}");
        // Tags stay whole, as in a kernel commit message.
        assert!(
            line.len() <= 72 || line.starts_with("Fixes: "),
            "{} columns: {line}",
            line.len()
        );
    }
    let n = findings().len();
    for needle in [
        "Fixes: 9a5b183941b5 (\"mm, percpu: do not consider sleepable allocations atomic\")",
        "Fix series on this kernel (verdict vulnerable):",
        "[absent] \"mm/vmalloc: honor GFP constraints in pcpu_get_vm_areas()\"",
        "Signature: percpu-trace/recursion/",
        "build id: 3f8a2b9c0d1e4f5a6b7c8d9e0f1a2b3c4d5e6f70",
        "taint: Tainted: G        W ([W]=WARN)",
        "(2026-10-30)\nTainted: G        W\n",
        "PREEMPT_RT=n KASAN=n MEMCG=y",
        "linux-image-7.2.13+deb14-amd64-dbg",
        "a write to a cgroup's io.max (blk-throttle)",
        "sudo percpu-trace check --probe --attach kprobe",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    assert_eq!(
        out.matches("\nFixes: ").count(),
        n,
        "one tag block per finding"
    );
    assert_eq!(out.matches("\nhow to reproduce:").count(), n);
}

#[test]
fn a_context_without_identity_says_what_it_lacks() {
    let out = render(Format::Text, &context(), &findings(), &stacks());
    assert!(out.contains("identity: not recorded (recording made before build id"));
    let mut ctx = context();
    ctx.run.identity = Some(KernelIdentity::default());
    let out = render(Format::Text, &ctx, &findings(), &stacks());
    for needle in [
        "build id: not readable on the traced host (/sys/kernel/notes)",
        "taint: not readable on the traced host (/proc/sys/kernel/tainted)",
        "config: not readable on the traced host",
    ] {
        assert!(out.contains(needle), "missing {needle:?}");
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/recordings")
        .join(name)
}

/// A recording made before build id, taint and config were recorded still reports, says
/// what it lacks, and says how to get source lines.
#[test]
fn an_old_recording_reports_and_says_what_it_lacks() {
    let empty = std::env::temp_dir().join(format!("pt-nodebug-{}", std::process::id()));
    let opts = ReportOptions {
        debug_root: Some(empty),
        ..ReportOptions::default()
    };
    let path = fixture("legacy-header-7.2-gfp-noio-writer.jsonl");
    for format in [Format::Text, Format::Email] {
        let out = report_from_recording_opts(&path, format, &opts).unwrap();
        assert!(out.contains("WARNING: possible NOIO"), "{out}");
        assert!(out.contains("identity: not recorded"), "{out}");
        assert!(
            out.contains("source lines: no debug vmlinux of this kernel here"),
            "{out}"
        );
        assert!(out.contains("linux-image-7.2.13+deb14-amd64-dbg"), "{out}");
    }
}

/// A debug file of another build is refused by build id: an explicit one is a one-line
/// error, one found automatically is skipped and said in the report.
#[test]
fn a_debug_file_of_another_build_is_refused() {
    let dir = std::env::temp_dir().join(format!("pt-otherbuild-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The recording claims a build id; the "debug file" (this test binary) has another.
    let text = std::fs::read_to_string(fixture("legacy-header-7.2-gfp-noio-writer.jsonl")).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    let mut h: serde_json::Value = serde_json::from_str(first).unwrap();
    let claimed = "11".repeat(20);
    h["identity"] = serde_json::json!({ "build_id": claimed, "taint": 0 });
    let boot = dir.join("usr/lib/debug/boot");
    std::fs::create_dir_all(&boot).unwrap();
    let rec = dir.join("rec.jsonl");
    std::fs::write(&rec, format!("{h}\n{rest}")).unwrap();
    let exe = std::env::current_exe().unwrap();
    std::os::unix::fs::symlink(&exe, boot.join("vmlinux-7.2.13+deb14-amd64")).unwrap();

    let explicit = ReportOptions {
        debug_vmlinux: Some(exe.clone()),
        debug_root: Some(dir.clone()),
        ..ReportOptions::default()
    };
    let e = report_from_recording_opts(&rec, Format::Text, &explicit)
        .unwrap_err()
        .to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("refused") && e.contains(&claimed), "{e}");

    let auto = ReportOptions {
        debug_root: Some(dir.clone()),
        ..ReportOptions::default()
    };
    let out = report_from_recording_opts(&rec, Format::Text, &auto).unwrap();
    assert!(out.contains("source lines: no debug vmlinux"), "{out}");
    assert!(out.contains("refused"), "{out}");
    assert!(out.contains("Not tainted"), "{out}");
    assert!(
        !out.contains(".rs:"),
        "no line may come from the refused file"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
