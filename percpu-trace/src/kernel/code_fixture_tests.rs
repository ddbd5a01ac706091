//! The code rules (regression, populate-gfp, backing-noio) on the real code of Debian
//! kernels on both sides of every change, x86_64 and aarch64
//! (tests/fixtures/kernels/code/*, made by extract_code.py there).
use std::path::PathBuf;

use super::{
    analyze::{analyze, decide_regression, regression},
    atomic_code,
    decode::{GfpLayout, PF_MEMALLOC_NOFS, PF_MEMALLOC_NOIO},
    fix_code::{self, FixCode, FunctionCode},
    DecidedBy, PatchId, PatchState, Verdict,
};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kernels/code")
        .join(name)
}

/// The code as an image reader would hand it over, from the fixture's SOURCE and .bin files.
pub(super) fn fixture_code(name: &str) -> FixCode {
    let d = dir(name);
    let source = std::fs::read_to_string(d.join("SOURCE")).expect("SOURCE");
    let get = |k: &str| -> Vec<&str> {
        source
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{k}=")))
            .collect()
    };
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex");
    let read = |line: &str| {
        let mut p = line.split_whitespace();
        let (fname, addr) = (p.next().unwrap(), hex(p.next().unwrap()));
        FunctionCode {
            name: fname.into(),
            bytes: std::fs::read(d.join(format!("{fname}.bin"))).expect("bin"),
            addr,
            source: "image".into(),
        }
    };
    FixCode {
        arch: get("arch")[0].into(),
        pcpu_alloc: Ok(read(get("pcpu_alloc")[0])),
        populate: Ok(read(get("populate")[0])),
        map_pages: get("map_pages").into_iter().map(read).collect(),
        scope_helpers: get("helper")
            .iter()
            .map(|l| {
                let mut p = l.split_whitespace();
                (p.next().unwrap().to_string(), hex(p.next().unwrap()))
            })
            .collect(),
    }
}

fn layout(name: &str) -> GfpLayout {
    if name.contains("-5.10.") {
        GfpLayout::table_for_version(5, 10)
    } else {
        GfpLayout::default_for_6x()
    }
}

/// (fixture, regression, populate-gfp, backing-noio) as read from each kernel's code.
const EXPECTED: &[(&str, PatchState, PatchState, PatchState)] = {
    use PatchState::{Absent as A, Present as P};
    &[
        ("debian-5.10.223-amd64", A, A, A),
        ("debian-6.1.192-amd64", P, A, A),
        ("debian-6.12.117-amd64", P, A, A),
        ("debian-7.2.13-amd64", P, A, A),
        ("debian-7.2.13-rt-amd64", P, A, A),
        ("debian-7.3.4-amd64", P, P, P),
        ("debian-7.2.13-arm64", P, A, A),
        ("debian-7.3.4-arm64", P, P, P),
    ]
};

#[test]
fn every_kernel_by_its_code() {
    for &(name, reg, populate, backing) in EXPECTED {
        let c = fixture_code(name);
        let l = layout(name);
        let r = atomic_code::regression(&c, &l);
        let p = fix_code::populate_gfp(&c, &l, PF_MEMALLOC_NOIO, PF_MEMALLOC_NOFS);
        let b = fix_code::backing_noio(&c, &l);
        println!(
            "{name}\n  {}\n  {}\n  {}",
            r.evidence, p.evidence, b.evidence
        );
        assert_eq!(r.state, reg, "{name} regression: {}", r.evidence);
        assert_eq!(p.state, populate, "{name} populate-gfp: {}", p.evidence);
        assert_eq!(b.state, backing, "{name} backing-noio: {}", b.evidence);
        // The evidence names the source and the instruction found.
        assert!(
            r.evidence.contains("(image)") || r.evidence.contains("bytes, image"),
            "{}",
            r.evidence
        );
    }
}

#[test]
fn evidence_names_the_instructions() {
    let l = GfpLayout::default_for_6x();
    let r = atomic_code::regression(&fixture_code("debian-5.10.223-amd64"), &l);
    assert!(
        r.evidence.contains("(gfp & GFP_KERNEL) != GFP_KERNEL"),
        "{}",
        r.evidence
    );
    let r = atomic_code::regression(&fixture_code("debian-7.2.13-amd64"), &l);
    assert!(
        r.evidence.contains("and $0x400 at +0x122"),
        "{}",
        r.evidence
    );
    let a = fixture_code("debian-7.2.13-arm64");
    let b = fix_code::backing_noio(&a, &l);
    assert!(b.evidence.contains("built 0x12cc0"), "{}", b.evidence);
    let p = fix_code::populate_gfp(
        &fixture_code("debian-7.3.4-amd64"),
        &l,
        PF_MEMALLOC_NOIO,
        PF_MEMALLOC_NOFS,
    );
    assert!(
        p.evidence.contains("calls memalloc_apply_gfp_scope"),
        "{}",
        p.evidence
    );
}

/// The rules must not pass by accident: each kernel's code fed to the wrong rule input
/// (the other architecture, another gfp layout, no helper addresses) gives a different or
/// unknown answer.
#[test]
fn wrong_inputs_do_not_pass() {
    let l = GfpLayout::default_for_6x();
    for name in ["debian-7.2.13-amd64", "debian-7.2.13-arm64"] {
        let mut c = fixture_code(name);
        c.arch = if c.arch == "x86_64" {
            "aarch64"
        } else {
            "x86_64"
        }
        .into();
        let r = atomic_code::regression(&c, &l);
        assert_ne!(
            r.state,
            PatchState::Present,
            "{name} decoded as the wrong arch: {}",
            r.evidence
        );
    }
    // arm64 7.3 keeps the scope in __pcpu_map_pages: without that function's code, unknown.
    let mut c = fixture_code("debian-7.3.4-arm64");
    let p = fix_code::populate_gfp(&c, &l, PF_MEMALLOC_NOIO, PF_MEMALLOC_NOFS);
    assert!(
        p.evidence.contains(
            "calls __pcpu_map_pages (which calls memalloc_apply_gfp_scope at +0x30) at +0x2d4"
        ),
        "{}",
        p.evidence
    );
    c.map_pages.clear();
    let p = fix_code::populate_gfp(&c, &l, PF_MEMALLOC_NOIO, PF_MEMALLOC_NOFS);
    assert_eq!(p.state, PatchState::Unknown, "{}", p.evidence);
    // Without the helper's address 7.3's populate path cannot be shown scoped.
    let mut c = fixture_code("debian-7.3.4-amd64");
    c.scope_helpers.clear();
    let p = fix_code::populate_gfp(&c, &l, PF_MEMALLOC_NOIO, PF_MEMALLOC_NOFS);
    assert_eq!(p.state, PatchState::Unknown, "{}", p.evidence);
    assert!(p.evidence.contains("not checked"), "{}", p.evidence);
}

#[test]
fn code_decides_and_the_version_table_falls_back() {
    let l = GfpLayout::default_for_6x();
    // 5.10: code says absent, the version table agrees.
    let code = atomic_code::regression(&fixture_code("debian-5.10.223-amd64"), &l);
    let r = decide_regression(
        code,
        regression(
            "5.10.0-32-amd64",
            Some("#1 SMP Debian 5.10.223-1 (2024-08-10)"),
            None,
        ),
        false,
    );
    assert_eq!(
        (r.state, r.decided_by),
        (PatchState::Absent, Some(DecidedBy::Code))
    );
    assert!(
        r.evidence.starts_with("code: ") && r.evidence.contains("version-table agrees"),
        "{}",
        r.evidence
    );
    // A 6.1 build older than the known backport: the table cannot tell, the code can.
    let code = atomic_code::regression(&fixture_code("debian-6.1.192-amd64"), &l);
    let r = decide_regression(
        code,
        regression("6.1.0-40-amd64", Some("#1 SMP Debian 6.1.150-1"), None),
        false,
    );
    assert_eq!(
        (r.state, r.decided_by),
        (PatchState::Present, Some(DecidedBy::Code))
    );
    assert!(
        r.evidence.contains("version-table cannot tell"),
        "{}",
        r.evidence
    );
    // A vendor 6.14 that carries the backport: the table says absent, the code wins.
    let code = atomic_code::regression(&fixture_code("debian-7.2.13-amd64"), &l);
    let r = decide_regression(code, regression("6.14.11-vendor", None, None), false);
    assert_eq!(r.state, PatchState::Present);
    assert!(r.evidence.contains("disagrees"), "{}", r.evidence);
    // Code unreadable: the table decides and says so.
    let r = decide_regression(
        atomic_code::regression(&FixCode::unread("x86_64", "no privileges"), &l),
        regression("7.2.13+deb14-amd64", None, None),
        false,
    );
    assert_eq!(
        (r.state, r.decided_by),
        (PatchState::Present, Some(DecidedBy::VersionTable))
    );
    assert!(
        r.evidence.starts_with("version-table: ") && r.evidence.contains("no privileges"),
        "{}",
        r.evidence
    );
    // Old code beside a present fix part: they contradict, so unknown.
    let code = atomic_code::regression(&fixture_code("debian-5.10.223-amd64"), &l);
    let r = decide_regression(
        code,
        regression("7.3.4", None, Some(PatchId::VmAreasGfp)),
        true,
    );
    assert_eq!((r.state, r.decided_by), (PatchState::Unknown, None));
}

/// The whole analysis (what `check` runs live and offline) on booted-kernel fixtures with
/// the code of the same package: verdicts and the "decided by" line.
#[test]
fn analyze_uses_the_code() {
    use super::fixture_tests::inputs;
    let mut i = inputs("debian-7.2.13");
    i.fix_code = fixture_code("debian-7.2.13-amd64");
    let k = analyze(i);
    assert_eq!(k.fix.verdict, Verdict::Vulnerable);
    let reg = k
        .fix
        .fix_verdict()
        .patch(PatchId::Regression)
        .cloned()
        .unwrap();
    assert_eq!(reg.decided_by, Some(DecidedBy::Code));
    let plan = k.plan(super::plan::AttachMode::Auto).unwrap();
    let text = super::check::render_text(&k, &plan);
    assert!(
        text.contains("fix verdict  vulnerable (regression decided by code)"),
        "{text}"
    );
    let json = super::check::render_json(&k, &plan).to_string();
    assert!(json.contains(r#""decided_by":"code""#), "{json}");

    let mut i = inputs("debian-7.3.4");
    i.fix_code = fixture_code("debian-7.3.4-amd64");
    let k = analyze(i);
    assert_eq!(k.fix.verdict, Verdict::LikelyFixed);
    assert!(
        k.fix.patches.iter().all(|p| p.state == PatchState::Present),
        "{:?}",
        k.fix.patches
    );

    // A kernel claiming 6.14 (before the regression by version) with 5.10's code: not-affected
    // from the code, with the table agreeing.
    let mut i = inputs("synthetic-6.14-no-regression");
    i.fix_code = fixture_code("debian-5.10.223-amd64");
    let k = analyze(i);
    assert_eq!(k.fix.verdict, Verdict::NotAffected);
    assert_eq!(k.fix.patches[0].decided_by, Some(DecidedBy::Code));
    // The same release with 7.2's code (a vendor backport): regression present by code.
    let mut i = inputs("synthetic-6.14-no-regression");
    i.fix_code = fixture_code("debian-7.2.13-amd64");
    let k = analyze(i);
    assert_eq!(k.fix.patches[0].state, PatchState::Present);
    assert_eq!(k.fix.verdict, Verdict::Vulnerable);
}
