//! `cargo xtask symbolize-test`: `percpu-trace report` on a real recording (a Debian
//! 7.2.13 guest's, in the test fixtures) against the real Debian `-dbg` vmlinux of that
//! kernel (a 1.2 GB package, cached in target/vm-cache/dbg), checked against `addr2line`
//! on the same file. Too large for CI's time, so a command of its own.
//!
//! It checks, and fails loudly when it cannot:
//! - the `-dbg` vmlinux is the shipped kernel: its build id is the one of the vmlinux inside
//!   the image package's bzImage (the fixture recording predates recorded build ids, so the
//!   release names the package and the build id proves the pairing);
//! - every inlined and outer line the report prints for a `pcpu_alloc_noprof+0x...` frame
//!   is what `addr2line -f -i` prints for that address, build directory stripped;
//! - with the recorded build id set to another build, `report --debug-vmlinux` is refused
//!   in one line (exit 2); with the right one, the report says the build id matches;
//! - module frames get their lines from the module's debug file in the same package
//!   (`symbolize_module`, run after this by the same command).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, ensure, Context, Result};

use crate::vm::{self, kernels};

/// The recording symbolized (made by `cargo xtask vm-test` on Debian's 7.2.13).
const FIXTURE: &str =
    "percpu-trace/tests/fixtures/recordings/guests/debian-7.2.13-noio-gfp.jsonl.gz";
/// The frame checked against addr2line.
const FUNCTION: &str = "pcpu_alloc_noprof";

/// Runs the check; prints what it compared.
pub fn run() -> Result<()> {
    let root = vm::root();
    let cache = root.join("target/vm-cache");
    let work = root.join("target/symbolize-test");
    fs::create_dir_all(&work)?;
    let rec = work.join("recording.jsonl");
    let out = Command::new("zcat").arg(root.join(FIXTURE)).output()?;
    ensure!(out.status.success(), "zcat {FIXTURE} failed");
    fs::write(&rec, &out.stdout)?;
    let text = String::from_utf8(out.stdout)?;
    let header: serde_json::Value =
        serde_json::from_str(text.lines().next().context("empty fixture")?)?;
    let release = header["kernel_release"]
        .as_str()
        .context("fixture header has no kernel_release")?
        .to_string();
    let recorded_id = header["identity"]["build_id"].as_str().map(str::to_string);
    println!(
        "fixture: {FIXTURE}: kernel {release}, build id {}",
        recorded_id
            .as_deref()
            .unwrap_or("not recorded (older recording)")
    );

    kernels::ensure_apt_sources()?;
    let shipped = shipped_vmlinux(&cache, &release)?;
    let dbg = dbg_vmlinux(&cache, &release)?;
    let (shipped_id, dbg_id) = (build_id(&shipped)?, build_id(&dbg)?);
    println!(
        "shipped vmlinux {}: build id {shipped_id}",
        shipped.display()
    );
    println!("-dbg vmlinux    {}: build id {dbg_id}", dbg.display());
    ensure!(
        shipped_id == dbg_id,
        "the -dbg vmlinux is not the shipped kernel's build"
    );
    if let Some(r) = &recorded_id {
        ensure!(*r == dbg_id, "recorded build id {r} is not the -dbg file's");
    }

    let tool = vm::build_tool()?;
    let started = Instant::now();
    let (ok, text_report, stderr) = report(&tool, &rec, &dbg)?;
    ensure!(ok, "report failed: {stderr}");
    println!(
        "report --debug-vmlinux: {:.2} s; {}",
        started.elapsed().as_secs_f64(),
        text_report
            .lines()
            .find(|l| l.starts_with("source lines:"))
            .unwrap_or("no source-lines line")
    );
    check_frame(&text_report, &dbg)?;

    // Identity from the header: another build's id is refused, the right one accepted.
    let other = "00".repeat(20);
    for (id, must_work) in [(other.as_str(), false), (dbg_id.as_str(), true)] {
        let patched = work.join(format!("with-id-{}.jsonl", &id[..8]));
        fs::write(&patched, with_build_id(&text, id)?)?;
        let (ok, stdout, stderr) = report(&tool, &patched, &dbg)?;
        if must_work {
            ensure!(
                ok && stdout.contains("build id matches"),
                "with the right build id: {stderr}"
            );
            println!("recorded build id {id}: accepted (\"build id matches\")");
        } else {
            ensure!(
                !ok && stderr.trim().lines().count() == 1 && stderr.contains("refused"),
                "another build id must be refused in one line; got ok={ok}: {stderr}"
            );
            println!("recorded build id {id}: {}", stderr.trim());
        }
    }
    println!("symbolize-test: vmlinux ok");
    Ok(())
}

/// `percpu-trace report FILE --debug-vmlinux DBG`: (exit 0 or 1, stdout, stderr).
fn report(tool: &Path, rec: &Path, dbg: &Path) -> Result<(bool, String, String)> {
    let out = Command::new(tool)
        .arg("report")
        .arg(rec)
        .arg("--debug-vmlinux")
        .arg(dbg)
        .output()
        .context("running percpu-trace report")?;
    // Exit 1 is "findings reported" (report's exit contract), not a failure; 2 is.
    Ok((
        matches!(out.status.code(), Some(0 | 1)),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The recording with `identity.build_id` set in its header.
fn with_build_id(text: &str, id: &str) -> Result<String> {
    let (first, rest) = text.split_once('\n').context("one-line fixture")?;
    let mut h: serde_json::Value = serde_json::from_str(first)?;
    h["identity"] = serde_json::json!({ "build_id": id });
    Ok(format!("{h}\n{rest}"))
}

/// Compares the report's lines for the first `pcpu_alloc_noprof` frame it prints in a
/// call trace with `addr2line -f -i` at that frame's link-time address (the function's
/// address in the -dbg symbol table plus the recorded offset).
fn check_frame(report: &str, dbg: &Path) -> Result<()> {
    let prefix = format!("{FUNCTION}+0x");
    let (off, len) = report
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(&prefix) && l.contains(' '))
        .find_map(|l| {
            let pcs = l.split(' ').next()?.strip_prefix(&format!("{FUNCTION}+"))?;
            let (o, n) = pcs.split_once('/')?;
            let hex = |x: &str| u64::from_str_radix(x.trim_start_matches("0x"), 16).ok();
            Some((hex(o)?, hex(n)?))
        })
        .context("the report prints no pcpu_alloc_noprof frame with a source line")?;
    let nm = Command::new("nm").arg(dbg).output().context("running nm")?;
    let start = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .find_map(|l| {
            let mut p = l.split_whitespace();
            let (a, _, n) = (p.next()?, p.next()?, p.next()?);
            (n == FUNCTION).then(|| u64::from_str_radix(a, 16).ok())?
        })
        .context("pcpu_alloc_noprof not in the -dbg symbol table")?;
    let addr = start + off;
    let a2l = Command::new("addr2line")
        .arg("-e")
        .arg(dbg)
        .args(["-f", "-i"])
        .arg(format!("{addr:#x}"))
        .output()
        .context("running addr2line")?;
    let a2l = String::from_utf8_lossy(&a2l.stdout).into_owned();
    let lines: Vec<&str> = a2l.lines().collect();
    ensure!(
        lines.len() >= 2 && lines.len().is_multiple_of(2),
        "addr2line: {a2l}"
    );
    // Innermost first, as the report prints them.
    let n = lines.len() / 2;
    let expected: Vec<String> = (0..n)
        .map(|i| {
            let (func, loc) = (lines[2 * i], tree_path(lines[2 * i + 1]));
            if i + 1 < n {
                format!("{func} {loc} [inline]")
            } else {
                format!("{FUNCTION}+{off:#x}/{len:#x} {loc}")
            }
        })
        .collect();
    let head = format!("{FUNCTION}+{off:#x}/{len:#x}");
    let report_lines: Vec<&str> = report.lines().map(str::trim).collect();
    let at = report_lines
        .iter()
        .position(|l| l.starts_with(&format!("{head} ")))
        .with_context(|| format!("the report has no source line for {head}"))?;
    ensure!(
        at + 1 >= n,
        "the report's frame has fewer lines than addr2line's"
    );
    let got = &report_lines[at + 1 - n..=at];
    println!("addr2line -f -i {addr:#x} (link address of {head}):");
    for e in &expected {
        println!("  {e}");
    }
    if got != expected.as_slice() {
        bail!("the report prints {got:#?}, addr2line says {expected:#?}");
    }
    println!("report prints the same {n} line(s)");
    Ok(())
}

/// addr2line's `path:line (discriminator N)` as the report prints it: build directory
/// stripped, no discriminator.
pub(crate) fn tree_path(loc: &str) -> String {
    let loc = loc.split(" (discriminator").next().unwrap_or(loc);
    match loc.find("debian/build/build_") {
        Some(i) => {
            let rest = &loc[i + "debian/build/build_".len()..];
            rest.split_once('/').map_or(loc, |(_, p)| p).to_string()
        }
        None => loc.to_string(),
    }
}

/// The GNU build id of an ELF file, from `readelf -n`.
pub(crate) fn build_id(elf: &Path) -> Result<String> {
    let out = Command::new("readelf").arg("-n").arg(elf).output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_string))
        .with_context(|| format!("{}: no build id", elf.display()))
}

/// The vmlinux inside the image package of `release` (`linux-binary-<release>`), unpacked
/// apart from vm-test's kernels (whose directories also hold the modules).
fn shipped_vmlinux(cache: &Path, release: &str) -> Result<PathBuf> {
    let pkg = format!("linux-binary-{release}");
    let dir = cache.join("symbolize").join(&pkg);
    let vmlinux = dir.join("vmlinux");
    if vmlinux.exists() {
        return Ok(vmlinux);
    }
    let deb = kernels::download(&pkg, &cache.join("debs"))?;
    fs::create_dir_all(&dir)?;
    kernels::run(
        Command::new("dpkg").arg("-x").arg(&deb).arg(&dir),
        "dpkg -x",
    )?;
    let vmlinuz = dir.join(format!("usr/lib/modules/{release}/vmlinuz"));
    kernels::btf_dump(&vmlinuz, &vmlinux)?;
    Ok(vmlinux)
}

/// Debian's debug vmlinux of `release`, from `linux-image-<release>-dbg` (only the vmlinux
/// and the link to it are extracted: the package installs 7.7 GB; about 4 minutes).
pub(crate) fn dbg_vmlinux(cache: &Path, release: &str) -> Result<PathBuf> {
    let dir = cache.join("dbg");
    let vmlinux = dir.join(format!("usr/lib/debug/boot/vmlinux-{release}"));
    if vmlinux.exists() {
        return Ok(vmlinux);
    }
    let deb = kernels::download(&format!("linux-image-{release}-dbg"), &dir)?;
    // boot/vmlinux-<release> is a symlink to lib/modules/<release>/vmlinux.
    extract(
        &deb,
        &dir,
        &[
            "./usr/lib/debug/boot/vmlinux-*",
            "./usr/lib/debug/lib/modules/*/vmlinux",
        ],
    )?;
    ensure!(
        vmlinux.exists(),
        "{} not in {}",
        vmlinux.display(),
        deb.display()
    );
    Ok(vmlinux)
}

/// Extracts the members matching `patterns` (tar wildcards) of a .deb into `dir`, without
/// the rest (a -dbg package installs 7.7 GB).
pub(crate) fn extract(deb: &Path, dir: &Path, patterns: &[&str]) -> Result<()> {
    let mut tarfile = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let stdout = tarfile.stdout.take().context("dpkg-deb stdout")?;
    kernels::run(
        Command::new("tar")
            .arg("-x")
            .arg("-C")
            .arg(dir)
            .arg("--wildcards")
            .args(patterns)
            .stdin(stdout),
        "dpkg-deb --fsys-tarfile | tar -x",
    )?;
    ensure!(tarfile.wait()?.success(), "dpkg-deb --fsys-tarfile failed");
    Ok(())
}
