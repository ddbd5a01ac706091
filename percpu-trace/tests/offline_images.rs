//! The kernel's symbol table decoded from real Debian packages (`check --kernel`) against
//! ground truth: the booted kernels' /proc/kallsyms (fixtures/kernels/*/kallsyms, minus the
//! KASLR offset measured on `_stext`) and the real System.map from the `-dbg` packages
//! (fixtures/offline/*.System.map: the lines of every function the analysis reads, the
//! symbol after each function whose code it reads, `_text`/`_stext`/`_etext` and the mutex;
//! the names a kallsyms does not list are named in `NOT_IN_KALLSYMS`).
//!
//! Needs the packages (tens of MB each), so it is `#[ignore]`d for plain `cargo test`;
//! `cargo xtask offline-check` (part of `cargo xtask test`) downloads them into
//! target/vm-cache/debs and runs it with `--ignored`. A missing package fails the test.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use percpu_trace::kernel::{
    image::{kallsyms, layout::Image, unpack},
    symbols::kallsyms_lines,
};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn debs() -> PathBuf {
    std::env::var_os("PT_OFFLINE_DEBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("../target/vm-cache/debs"))
}

/// The package whose file name starts with `prefix` (`name_` or the full stem).
fn package(prefix: &str) -> PathBuf {
    let dir = debs();
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask offline-check`)", dir.display()))
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".deb"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no {prefix}*.deb in {} (run `cargo xtask offline-check`)",
                dir.display()
            )
        })
}

/// (name, address) of every symbol decoded from the package.
fn decoded(deb: &Path) -> HashSet<(String, u64)> {
    let u = unpack::open(deb).unwrap_or_else(|e| panic!("{}: {e}", deb.display()));
    let img = Image::parse(u.image).unwrap();
    let (d, map) = img.rodata();
    let k = kallsyms::decode(d, &map).unwrap_or_else(|e| panic!("{}: {e}", deb.display()));
    k.symbols.into_iter().map(|s| (s.name, s.addr)).collect()
}

/// System.map lines a package's kallsyms does not list, and why: arm64 6.1's
/// `scripts/kallsyms.c` keeps only symbols from `_stext` to `_etext` (and init text), and
/// `_text` lies before `_stext` there; without CONFIG_KALLSYMS_ALL no data symbol is listed.
const NOT_IN_KALLSYMS: &[(&str, &[&str])] = &[(
    "linux-image-6.1.0-57-arm64-unsigned_",
    &["_text", "pcpu_alloc_mutex"],
)];

/// Checks every line of `truth` is decoded at its address minus the KASLR offset (0 for a
/// System.map: both are link-time), except the names `absent` says kallsyms does not list,
/// which must then really be absent.
fn check(deb: &Path, truth: &str, what: &str, absent: &[&str]) -> usize {
    let syms = decoded(deb);
    let lines: Vec<_> = kallsyms_lines(truth).collect();
    let stext = |set: &HashSet<(String, u64)>| {
        set.iter()
            .find(|(n, _)| n == "_stext")
            .map(|(_, a)| *a)
            .unwrap()
    };
    let truth_stext = lines.iter().find(|l| l.name == "_stext").unwrap().addr;
    let kaslr = truth_stext.wrapping_sub(stext(&syms));
    if what.contains("System.map") {
        assert_eq!(kaslr, 0, "{}: System.map is link-time", deb.display());
    }
    let mut bad = Vec::new();
    for l in &lines {
        if absent.contains(&l.name) {
            if syms.iter().any(|(n, _)| n == l.name) {
                bad.push(format!("{} decoded but expected absent", l.name));
            }
            continue;
        }
        if !syms.contains(&(l.name.to_string(), l.addr.wrapping_sub(kaslr))) {
            bad.push(format!("{:x} {}", l.addr, l.name));
        }
    }
    assert!(
        bad.is_empty(),
        "{}: {} of {} {what} lines not found decoded (KASLR offset {kaslr:#x}): {bad:?}",
        deb.display(),
        bad.len(),
        lines.len()
    );
    println!(
        "{}: {} {what} lines agree (KASLR offset {kaslr:#x})",
        deb.display(),
        lines.len()
    );
    lines.len()
}

#[test]
#[ignore = "needs the Debian packages: cargo xtask offline-check"]
fn decoded_symbols_match_booted_kallsyms() {
    let fx = manifest().join("tests/fixtures/kernels");
    let mut n = 0;
    for (dir, pkg) in [
        ("debian-7.2.13", "linux-binary-7.2.13+deb14-amd64_"),
        ("debian-7.3.4", "linux-binary-7.3.4+deb13-amd64_"),
        ("debian-7.2.13-rt", "linux-binary-7.2.13+deb14-rt-amd64_"),
    ] {
        let truth = std::fs::read_to_string(fx.join(dir).join("kallsyms")).unwrap();
        n += check(&package(pkg), &truth, "booted kallsyms", &[]);
    }
    assert!(n > 60, "{n}");
}

#[test]
#[ignore = "needs the Debian packages: cargo xtask offline-check"]
fn decoded_symbols_match_dbg_system_map() {
    let fx = manifest().join("tests/fixtures/offline");
    let mut files: Vec<_> = std::fs::read_dir(&fx)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_str().is_some_and(|n| n.ends_with(".System.map")))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let stem = name.strip_suffix(".System.map").unwrap().to_string();
        let truth = std::fs::read_to_string(&f).unwrap();
        let absent = NOT_IN_KALLSYMS
            .iter()
            .find(|(p, _)| stem.starts_with(p))
            .map_or(&[][..], |(_, a)| a);
        check(&package(&stem), &truth, "-dbg System.map", absent);
    }
}

/// Some step of how `o` was read says all of `words`.
fn assert_step(o: &percpu_trace::kernel::image::Offline, words: &[&str]) {
    assert!(
        o.steps.iter().any(|s| words.iter().all(|w| s.contains(w))),
        "{words:?} not in {:?}",
        o.steps
    );
}

/// Debian's debug vmlinux of 7.2.13 amd64 (`PT_DEBUG_VMLINUX`, set by `cargo xtask
/// offline-check`, which extracts it from the -dbg package like `symbolize-test`).
fn debug_vmlinux() -> PathBuf {
    std::env::var_os("PT_DEBUG_VMLINUX")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            manifest().join("../target/vm-cache/dbg/usr/lib/debug/boot/vmlinux-7.2.13+deb14-amd64")
        })
}

#[test]
#[ignore = "needs the Debian packages: cargo xtask offline-check"]
fn debug_vmlinux_gives_the_same_verdict_and_refuses_another_build() {
    use percpu_trace::kernel::image::{inspect, ImageOptions};
    let dbg = debug_vmlinux();
    assert!(
        dbg.exists(),
        "{} missing (run `cargo xtask offline-check`)",
        dbg.display()
    );
    let deb = package("linux-binary-7.2.13+deb14-amd64_");
    let states = |o: &percpu_trace::kernel::image::Offline| -> Vec<String> {
        o.kernel
            .fix
            .patches
            .iter()
            .map(|p| format!("{} {}", p.id.id(), p.state.id()))
            .collect()
    };
    let plain = inspect(&deb, &ImageOptions::default()).unwrap();
    let opts = ImageOptions {
        debug_vmlinux: Some(dbg.clone()),
        ..Default::default()
    };
    let with = inspect(&deb, &opts).unwrap();
    assert_eq!(states(&with), states(&plain));
    assert_eq!(with.kernel.fix.verdict, plain.kernel.fix.verdict);
    assert_step(&with, &["build id f8da1e46", "matches the image's"]);
    let code: Vec<_> = with
        .kernel
        .fix
        .patches
        .iter()
        .filter(|p| p.evidence.contains("code of "))
        .collect();
    assert!(!code.is_empty());
    for p in code {
        assert!(p.evidence.contains("debug vmlinux text"), "{}", p.evidence);
    }
    // Another build (7.3.4's package) is refused in one line.
    let other = package("linux-binary-7.3.4+deb13-amd64_");
    let e = inspect(&other, &opts)
        .err()
        .expect("7.3.4 with 7.2.13's debug vmlinux");
    assert!(
        e.contains("another build: build id") && !e.contains('\n'),
        "{e}"
    );
    println!("debug vmlinux: {:?}; refused: {e}", with.steps);
}

#[test]
#[ignore = "needs the Debian packages: cargo xtask offline-check"]
fn undecodable_kallsyms_leaves_code_facts_unknown() {
    use percpu_trace::kernel::image::{inspect, ImageOptions};
    // arm64 6.1's raw Image with its kallsyms token table broken (the digit tokens).
    let u = unpack::open(&package("linux-image-6.1.0-57-arm64-unsigned_")).unwrap();
    let mut img = u.image;
    let digits: Vec<u8> = (b'0'..=b'9').flat_map(|c| [c, 0]).collect();
    let mut n = 0;
    while let Some(i) = img.windows(digits.len()).position(|w| w == digits) {
        img[i] = b'#';
        n += 1;
    }
    assert!(n >= 1);
    let dir = std::env::temp_dir().join(format!("pt-nokallsyms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("Image");
    std::fs::write(&file, &img).unwrap();
    drop(img);
    let o = inspect(&file, &ImageOptions::default());
    std::fs::remove_dir_all(&dir).unwrap();
    let o = o.unwrap();
    assert_step(&o, &["no kallsyms token table", "--debug-vmlinux"]);
    for p in &o.kernel.fix.patches {
        let state = p.state.id();
        match p.id.id() {
            // From BTF: still known.
            "vm-areas-gfp" => assert_eq!(state, "absent", "{}", p.evidence),
            // From code: unknown, not guessed (the regression may fall back to the
            // version table, which says so).
            "populate-gfp" | "backing-noio" => assert_eq!(state, "unknown", "{}", p.evidence),
            _ => {}
        }
        println!("{} {state}: {}", p.id.id(), p.evidence);
    }
}
