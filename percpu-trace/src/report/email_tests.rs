//! The bug-report parts (#28): email format (width, subject, tags), identity lines, the
//! reproducer, old recordings that lack identity, and debug files of another build.
use std::path::{Path, PathBuf};

use super::{
    tests::{context, findings, stacks},
    *,
};
use crate::{
    engine::Finding,
    kernel::identity::{parse_config, KernelIdentity},
};

fn with_identity(mut ctx: ReportContext) -> ReportContext {
    ctx.run.identity = Some(KernelIdentity {
        build_id: Some("3f8a2b9c0d1e4f5a6b7c8d9e0f1a2b3c4d5e6f70".into()),
        taint: Some(1 << 9),
        config: Some(parse_config(
            "/boot/config-7.2.13+deb14-amd64",
            "CONFIG_MEMCG=y\nCONFIG_KALLSYMS_ALL=y\nCONFIG_DEBUG_INFO_BTF=y\n\
             CONFIG_KPROBES=y\nCONFIG_KPROBE_EVENTS=y\nCONFIG_BPF_EVENTS=y\n",
        )),
        modules: [("loop".to_string(), "9c".repeat(20))].into(),
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
        Some("Subject: [BUG] mm/percpu: possible NOIO reclaim recursion on 7.2.13+deb14-amd64")
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

/// The subject stays within 72 columns: the headline is shortened, `(+N more)` dropped
/// when nothing else fits, the release never cut (was: 107 columns for three findings on
/// Debian's 7.2.13).
#[test]
fn email_subjects_fit_72_columns_and_keep_the_release() {
    let all = findings();
    let mut lines = Vec::new();
    for release in [
        "6.12.0",
        "7.2.13+deb14-amd64",
        "6.1.0-57-cloud-amd64",
        "7.3.4-200.fc44.x86_64+debug",
        "7.2.13-custom-build-from-the-lab-with-a-very-long-localversion",
    ] {
        let mut ctx = context();
        ctx.run.kernel_release = Some(release.into());
        let mut cases: Vec<Vec<&Finding>> = all.iter().map(|f| vec![f]).collect();
        cases.push(all.iter().collect());
        cases.push(Vec::new());
        for case in cases {
            let s = email::subject(&ctx, &case);
            assert!(
                s.ends_with(release) || s.contains(&format!("{release} (+")),
                "{s}"
            );
            if release.len() < 40 {
                assert!(s.len() <= email::SUBJECT_WIDTH, "{} columns: {s}", s.len());
            }
            lines.push(s);
        }
    }
    insta::assert_snapshot!("email_subjects", lines.join("\n"));
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

fn json(ctx: &ReportContext) -> serde_json::Value {
    let out = render(Format::Json, ctx, &findings(), &stacks());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let schema: serde_json::Value = serde_json::from_str(JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    v
}

/// The JSON report carries the identity, each finding's tags and its reproducer as fields,
/// the same values the text report prints (before: none of them).
#[test]
fn json_carries_identity_tags_and_reproducer() {
    let ctx = with_identity(context());
    let v = json(&ctx);
    let text = render(Format::Text, &ctx, &findings(), &stacks());
    let id = &v["kernel"]["identity"];
    assert_eq!(id["recorded"], true);
    assert_eq!(id["build_id"], "3f8a2b9c0d1e4f5a6b7c8d9e0f1a2b3c4d5e6f70");
    assert_eq!(id["taint"]["mask"], 512);
    assert_eq!(id["taint"]["columns"], "Tainted: G        W");
    assert_eq!(
        id["taint"]["flags"],
        serde_json::json!([{ "bit": 9, "letter": "W", "name": "WARN" }])
    );
    assert_eq!(id["config"]["source"], "/boot/config-7.2.13+deb14-amd64");
    assert_eq!(id["config"]["options"]["CONFIG_MEMCG"], "y");
    assert_eq!(id["config"]["options"]["CONFIG_PREEMPT_RT"], "n");
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let config_line = id["config"]["line"].as_str().unwrap();
    assert!(flat.contains(config_line), "{config_line}");
    assert_eq!(id["modules"]["loop"], "9c".repeat(20));
    assert_eq!(id["unknown"], serde_json::json!({}));
    assert!(v["kernel"]["source_lines"]
        .as_str()
        .unwrap()
        .contains("linux-image-7.2.13+deb14-amd64-dbg"));

    let fs = v["findings"].as_array().unwrap();
    assert_eq!(fs.len(), findings().len());
    let text_lines: Vec<&str> = text.lines().collect();
    for f in fs {
        let tags = &f["tags"];
        assert_eq!(tags["fixes"]["commit"], "9a5b183941b5");
        assert_eq!(
            tags["fixes"]["subject"],
            "mm, percpu: do not consider sleepable allocations atomic"
        );
        assert_eq!(tags["fix_verdict"], "vulnerable");
        let series: Vec<(&str, &str)> = tags["fix_series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["state"].as_str().unwrap()))
            .collect();
        assert_eq!(
            series,
            [
                ("vm-areas-gfp", "absent"),
                ("populate-gfp", "unknown"),
                ("backing-noio", "unknown")
            ]
        );
        let sig = format!(
            "percpu-trace/{}/{}",
            f["kind"].as_str().unwrap().replace('_', "-"),
            f["signature"].as_str().unwrap()
        );
        assert_eq!(tags["signature"], sig);
        // Every tag line is a whole line of the text report.
        for line in tags["lines"].as_array().unwrap() {
            let line = line.as_str().unwrap();
            assert!(
                text_lines.contains(&line),
                "{line:?} not in the text report"
            );
        }
        assert_eq!(
            tags["lines"][0],
            "Fixes: 9a5b183941b5 (\"mm, percpu: do not consider sleepable allocations atomic\")"
        );
        let r = &f["reproducer"];
        assert_eq!(
            r["command"],
            "sudo percpu-trace check --probe --attach kprobe"
        );
        assert!(text_lines.contains(&"   sudo percpu-trace check --probe --attach kprobe"));
        let trigger = r["trigger"].as_str().unwrap();
        assert!(
            flat.contains(&format!("Trigger seen: {trigger}.")),
            "{trigger}"
        );
    }
    // The recursion's stack writes io.max through tg_set_limit; its device is not recorded.
    let entry = &fs[0]["reproducer"]["entry_point"];
    assert_eq!(entry["function"], "tg_set_limit");
    assert_eq!(
        entry["action"],
        "a write to a cgroup's io.max (blk-throttle)"
    );
    assert_eq!(entry["not_recorded"], "the device's MAJ:MIN");
}

/// Identity facts that could not be read are null with the reason the text report prints.
#[test]
fn json_says_why_identity_facts_are_null() {
    let mut ctx = context();
    ctx.run.identity = Some(KernelIdentity::default());
    let v = json(&ctx);
    let id = &v["kernel"]["identity"];
    assert_eq!(id["recorded"], true);
    for (k, why) in [
        (
            "build_id",
            "not readable on the traced host (/sys/kernel/notes)",
        ),
        (
            "taint",
            "not readable on the traced host (/proc/sys/kernel/tainted)",
        ),
        (
            "config",
            "not readable on the traced host (no /boot/config-<release> or /proc/config.gz)",
        ),
    ] {
        assert!(id[k].is_null(), "{k}");
        assert_eq!(id["unknown"][k], why);
    }
}

/// An old recording (no build id, taint or config) still reports in JSON, every identity
/// fact null with the reason, and it says how to get source lines.
#[test]
fn an_old_recording_reports_in_json() {
    let empty = std::env::temp_dir().join(format!("pt-nodebug-json-{}", std::process::id()));
    let opts = ReportOptions {
        debug_root: Some(empty),
        ..ReportOptions::default()
    };
    let path = fixture("legacy-header-7.2-gfp-noio-writer.jsonl");
    let out = report_from_recording_opts(&path, Format::Json, &opts).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let schema: serde_json::Value = serde_json::from_str(JSON_SCHEMA).unwrap();
    assert!(jsonschema::is_valid(&schema, &v));
    let id = &v["kernel"]["identity"];
    assert_eq!(id["recorded"], false);
    for k in ["build_id", "taint", "config"] {
        assert!(id[k].is_null());
        assert!(
            id["unknown"][k]
                .as_str()
                .unwrap()
                .starts_with("not recorded (recording made before build id"),
            "{k}"
        );
    }
    assert!(v["kernel"]["source_lines"]
        .as_str()
        .unwrap()
        .starts_with("no debug vmlinux of this kernel here"));
    assert!(!v["findings"].as_array().unwrap().is_empty());
    assert!(v["findings"][0]["tags"]["signature"]
        .as_str()
        .unwrap()
        .starts_with("percpu-trace/"));
}

/// A header with the identity (module build ids included) reports it in JSON as recorded.
#[test]
fn a_recorded_identity_reaches_the_json_report() {
    let dir = std::env::temp_dir().join(format!("pt-idjson-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(fixture("legacy-header-7.2-gfp-noio-writer.jsonl")).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    let mut h: serde_json::Value = serde_json::from_str(first).unwrap();
    h["identity"] = serde_json::json!({
        "build_id": "ab".repeat(20),
        "taint": 4096,
        "modules": { "null_blk": "cd".repeat(20) },
    });
    let rec = dir.join("rec.jsonl");
    std::fs::write(&rec, format!("{h}\n{rest}")).unwrap();
    let opts = ReportOptions {
        debug_root: Some(dir.join("none")),
        ..ReportOptions::default()
    };
    let out = report_from_recording_opts(&rec, Format::Json, &opts).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = &v["kernel"]["identity"];
    assert_eq!(id["recorded"], true);
    assert_eq!(id["build_id"], "ab".repeat(20));
    assert_eq!(id["taint"]["columns"], "Tainted: G           O");
    assert_eq!(id["modules"]["null_blk"], "cd".repeat(20));
    assert!(id["config"].is_null());
    assert!(id["unknown"]["config"]
        .as_str()
        .unwrap()
        .starts_with("not readable on the traced host"));
    std::fs::remove_dir_all(&dir).unwrap();
}
