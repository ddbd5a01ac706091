//! The module part of `cargo xtask symbolize-test`: source lines of module frames from the
//! module's debug file in the real Debian `-dbg` package, checked against `addr2line`.
//!
//! The recording is a Debian 7.2.13 guest's (`debian-7.2.13-contention`); its `ext4` frames
//! are in a kworker's reclaim stack that no finding prints, so the test puts that stack's
//! real frames in place of the first finding's first stack (lines come from a frame's
//! function and offset, not from which event took the stack). Only `ext4.ko` is extracted
//! from the package (into target/vm-cache/dbg, next to the vmlinux). It checks, and fails
//! loudly when it cannot:
//! - the `-dbg` `ext4.ko` is the shipped module's build (same build id as the
//!   `ext4.ko.xz` of `linux-modules-<release>`: the fixture predates recorded module build
//!   ids);
//! - every `ext4` frame of the report's JSON has the file, line and inlined calls that
//!   `addr2line -f -i` prints for that function's symbol value plus the frame's offset;
//! - without the debug file, the report says so in one line (`ext4: no debug file ...`);
//! - with a recorded module build id of another build, the file is refused in one line and
//!   gives no line; with the file's own build id, "build id matches".
use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::vm::kernels;

/// The recording with module frames.
const FIXTURE: &str =
    "percpu-trace/tests/fixtures/recordings/guests/debian-7.2.13-contention.jsonl.gz";
/// The module checked, and its debug file below `usr/lib/debug/lib/modules/<release>/`.
const MODULE: &str = "ext4";
const MODULE_PATH: &str = "kernel/fs/ext4/ext4.ko";

/// Runs the module check (after [`crate::symbolize_test::run`], which fetched the
/// vmlinux and built the tool).
pub fn run() -> Result<()> {
    let root = crate::vm::root();
    let cache = &root.join("target/vm-cache");
    let work = &root.join("target/symbolize-test");
    fs::create_dir_all(work)?;
    let tool = &crate::vm::build_tool()?;
    let text = zcat(FIXTURE)?;
    let header: Value = serde_json::from_str(text.lines().next().context("empty fixture")?)?;
    let release = header["kernel_release"]
        .as_str()
        .context("fixture header has no kernel_release")?
        .to_string();
    let ko = dbg_module(cache, &release)?;
    let ko_id = super::symbolize_test::build_id(&ko)?;
    let shipped = shipped_module(cache, &release, work)?;
    let shipped_id = super::symbolize_test::build_id(&shipped)?;
    println!(
        "shipped {MODULE}.ko {}: build id {shipped_id}",
        shipped.display()
    );
    println!("-dbg {MODULE}.ko    {}: build id {ko_id}", ko.display());
    ensure!(
        shipped_id == ko_id,
        "the -dbg {MODULE}.ko is not the shipped module's build"
    );

    // Which stack the first finding prints (no debug files: fast).
    let empty = work.join("no-debug-files");
    fs::create_dir_all(&empty)?;
    let original = work.join("contention.jsonl");
    fs::write(&original, &text)?;
    let v = report_json(tool, &original, &empty)?;
    let printed = v["findings"][0]["stacks"][0]["id"]
        .as_u64()
        .context("the fixture's first finding prints no stack")?;
    let derived = with_module_stack(&text, printed)?;
    let rec = work.join("module-frames.jsonl");
    fs::write(&rec, &derived)?;

    // No debug file: one line says so.
    let v = report_json(tool, &rec, &empty)?;
    let note = module_note(&v)?;
    ensure!(
        note.starts_with(&format!("{MODULE}: no debug file")),
        "without the debug file: {note}"
    );
    println!("without the debug file: {note}");

    // The -dbg package's tree: every ext4 frame against addr2line.
    let dbg_root = cache.join("dbg");
    let v = report_json(tool, &rec, &dbg_root)?;
    let note = module_note(&v)?;
    println!("with the -dbg tree: {note}");
    let frames = module_frames(&v);
    ensure!(!frames.is_empty(), "the report prints no {MODULE} frame");
    let starts = symbol_values(&ko)?;
    let mut seen = BTreeSet::new();
    for f in &frames {
        let func = f["function"].as_str().context("frame without function")?;
        let off = f["offset"].as_u64().context("frame without offset")?;
        if !seen.insert((func.to_string(), off)) {
            continue;
        }
        let start = starts
            .iter()
            .find(|(n, _)| n == func)
            .map(|(_, a)| *a)
            .with_context(|| format!("{func} not in {}'s symbol table", ko.display()))?;
        compare(&ko, start + off, func, off, f)?;
    }
    println!(
        "{} distinct {MODULE} frame(s): file, line and inlined calls are addr2line's",
        seen.len()
    );

    // Recorded module build ids: another build refused, its own accepted.
    let other = "00".repeat(20);
    for (id, own) in [(other.as_str(), false), (ko_id.as_str(), true)] {
        let patched = work.join(format!("module-id-{}.jsonl", &id[..8]));
        fs::write(&patched, with_module_id(&derived, id)?)?;
        let v = report_json(tool, &patched, &dbg_root)?;
        let note = module_note(&v)?;
        if own {
            ensure!(note.contains("(build id matches)"), "own build id: {note}");
        } else {
            ensure!(
                note.contains("refused") && note.contains(&other) && !note.contains('\n'),
                "another build must be refused in one line: {note}"
            );
            ensure!(
                module_frames(&v).iter().all(|f| f["file"].is_null()),
                "a refused module file gave lines"
            );
        }
        println!("recorded {MODULE} build id {id}: {note}");
    }
    println!("symbolize-test: modules ok");
    Ok(())
}

fn zcat(path: &str) -> Result<String> {
    let out = Command::new("zcat")
        .arg(crate::vm::root().join(path))
        .output()?;
    ensure!(out.status.success(), "zcat {path} failed");
    Ok(String::from_utf8(out.stdout)?)
}

/// `percpu-trace report --format json --debug-root ROOT FILE`, parsed.
fn report_json(tool: &Path, rec: &Path, root: &Path) -> Result<Value> {
    let out = Command::new(tool)
        .args(["report", "--format", "json", "--debug-root"])
        .arg(root)
        .arg(rec)
        .output()
        .context("running percpu-trace report")?;
    // Exit 1 is "findings reported" (the exit contract), not a failure.
    ensure!(
        matches!(out.status.code(), Some(0 | 1)),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The part of `kernel.source_lines` about the module (one line by construction: JSON
/// string; checked to hold no newline).
fn module_note(v: &Value) -> Result<String> {
    let all = v["kernel"]["source_lines"]
        .as_str()
        .context("report without kernel.source_lines")?;
    let at = all
        .find(&format!("{MODULE}: "))
        .with_context(|| format!("source_lines names no {MODULE}: {all}"))?;
    Ok(all[at..].to_string())
}

/// Every frame of the module the report prints.
fn module_frames(v: &Value) -> Vec<Value> {
    v["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|f| f["stacks"].as_array().into_iter().flatten())
        .flat_map(|s| s["frames"].as_array().into_iter().flatten())
        .filter(|f| f["module"] == MODULE)
        .cloned()
        .collect()
}

/// The recording with stack `printed`'s frames replaced by those of the first stack that
/// has frames of [`MODULE`].
fn with_module_stack(text: &str, printed: u64) -> Result<String> {
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let is_stack = |l: &Value| l["t"] == "stack";
    let module_frames = lines
        .iter()
        .filter(|l| is_stack(l))
        .map(|l| &l["frames"])
        .find(|f| {
            f.as_array()
                .is_some_and(|a| a.iter().any(|fr| fr["module"] == MODULE))
        })
        .with_context(|| format!("no stack with {MODULE} frames in {FIXTURE}"))?
        .clone();
    let mut replaced = false;
    let mut out = String::new();
    // Other lines stay byte for byte.
    for (raw, mut l) in text.lines().zip(lines) {
        if is_stack(&l) && l["id"].as_u64() == Some(printed) {
            l["frames"] = module_frames.clone();
            replaced = true;
            out.push_str(&l.to_string());
        } else {
            out.push_str(raw);
        }
        out.push('\n');
    }
    ensure!(replaced, "stack {printed} not in the recording");
    Ok(out)
}

/// The recording with `identity.modules.<MODULE>` set in its header.
fn with_module_id(text: &str, id: &str) -> Result<String> {
    let (first, rest) = text.split_once('\n').context("one-line recording")?;
    let mut h: Value = serde_json::from_str(first)?;
    h["identity"] = serde_json::json!({ "modules": { MODULE: id } });
    Ok(format!("{h}\n{rest}"))
}

/// Text symbols of the module and their values (offsets in their section), from `nm`.
fn symbol_values(ko: &Path) -> Result<Vec<(String, u64)>> {
    let nm = Command::new("nm").arg(ko).output().context("running nm")?;
    ensure!(nm.status.success(), "nm {} failed", ko.display());
    Ok(String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            let (a, t, n) = (p.next()?, p.next()?, p.next()?);
            matches!(t, "t" | "T")
                .then(|| Some((n.to_string(), u64::from_str_radix(a, 16).ok()?)))?
        })
        .collect())
}

/// Compares one JSON frame with `addr2line -f -i` at `addr` in the module's debug file.
fn compare(ko: &Path, addr: u64, func: &str, off: u64, f: &Value) -> Result<()> {
    let out = Command::new("addr2line")
        .arg("-e")
        .arg(ko)
        .args(["-f", "-i"])
        .arg(format!("{addr:#x}"))
        .output()
        .context("running addr2line")?;
    let a2l = String::from_utf8_lossy(&out.stdout).into_owned();
    let l: Vec<&str> = a2l.lines().collect();
    ensure!(
        l.len() >= 2 && l.len().is_multiple_of(2),
        "addr2line: {a2l}"
    );
    // addr2line: innermost first, the frame's own function last.
    let expected: Vec<String> = l
        .chunks(2)
        .map(|p| format!("{} {}", p[0], super::symbolize_test::tree_path(p[1])))
        .collect();
    let loc = |file: &Value, line: &Value| match (file.as_str(), line.as_u64()) {
        (Some(p), Some(n)) => format!("{p}:{n}"),
        (Some(p), None) => p.to_string(),
        _ => "??".to_string(),
    };
    let mut got: Vec<String> = f["inlined"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .map(|i| {
            format!(
                "{} {}",
                i["function"].as_str().unwrap_or("?"),
                loc(&i["file"], &i["line"])
            )
        })
        .collect();
    got.push(format!("{func} {}", loc(&f["file"], &f["line"])));
    if got != expected {
        bail!("{func}+{off:#x} ({addr:#x} in the module): the report has {got:#?}, addr2line {expected:#?}");
    }
    println!("  {func}+{off:#x} -> {}", expected.join(" <- "));
    Ok(())
}

/// The module as Debian ships it (xz-compressed, signed), decompressed into `work`: from
/// vm-test's unpacked kernel when there, else from `linux-modules-<release>`.
fn shipped_module(cache: &Path, release: &str, work: &Path) -> Result<PathBuf> {
    let rel = format!("usr/lib/modules/{release}/{MODULE_PATH}.xz");
    let unpacked = format!("linux-binary-{release}");
    let mut xz = cache.join("kernels").join(unpacked).join(&rel);
    if !xz.exists() {
        let pkg = format!("linux-modules-{release}");
        let deb = kernels::download(&pkg, &cache.join("debs"))?;
        let dir = work.join("shipped");
        fs::create_dir_all(&dir)?;
        super::symbolize_test::extract(&deb, &dir, &[&format!("./{rel}")])?;
        xz = dir.join(&rel);
    }
    let out = Command::new("xz")
        .arg("-dc")
        .arg(&xz)
        .output()
        .context("running xz")?;
    ensure!(out.status.success(), "xz -dc {} failed", xz.display());
    let ko = work.join(format!("{MODULE}-shipped.ko"));
    fs::write(&ko, out.stdout)?;
    Ok(ko)
}

/// Debian's debug file of the module, from `linux-image-<release>-dbg` (only that file is
/// extracted: the package installs 7.7 GB; about 4 minutes).
fn dbg_module(cache: &Path, release: &str) -> Result<PathBuf> {
    let dir = cache.join("dbg");
    let rel = format!("usr/lib/debug/lib/modules/{release}/{MODULE_PATH}");
    let ko = dir.join(&rel);
    if ko.exists() {
        return Ok(ko);
    }
    let deb = kernels::download(&format!("linux-image-{release}-dbg"), &dir)?;
    println!("extracting {rel} from {}", deb.display());
    super::symbolize_test::extract(&deb, &dir, &[&format!("./{rel}")])?;
    ensure!(ko.exists(), "{} not in {}", ko.display(), deb.display());
    Ok(ko)
}
