//! Offline verdicts (`percpu-trace check --kernel`) on real Debian kernel packages:
//! - `cargo xtask offline-check` (part of `cargo xtask test`): every VM-matrix kernel's
//!   package, read without booting, must get the verdict and every patch state `check` gives
//!   when that kernel is booted; prints the time and peak RSS of each run (the benchmark);
//! - `cargo xtask kernel-table`: the newest package of each series and flavour on both
//!   architectures plus the oldest reachable 6.1, as the README's markdown table.
//!
//! offline-check also runs `tests/offline_images.rs`: decoded symbols against booted kallsyms
//! and -dbg System.maps, and 7.2.13 read with Debian's -dbg vmlinux (`--debug-vmlinux`):
//! the same states, code from that file, and 7.3.4's package refused with it.
//!
//! Packages are downloaded with apt (signed hashes) into `target/vm-cache/debs`, the same
//! cache the VM tests use; a package that cannot be had fails the run.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{
    build::root,
    vm::{
        kernels::{self, Fix, KernelSpec},
        Arch,
    },
};

/// What one offline run said, and what it cost.
pub struct Run {
    /// The JSON document for the kernel (`check --json`'s shape).
    pub doc: Value,
    /// Wall-clock seconds.
    pub secs: f64,
    /// Peak RSS of the tool (ru_maxrss), MiB.
    pub rss_mib: f64,
}

/// Runs `bin check --kernel deb --json` and measures it (wait4's rusage: the child alone).
pub fn run_offline(bin: &Path, deb: &Path) -> Result<Run> {
    let t = Instant::now();
    let child = Command::new(bin)
        .args(["check", "--json", "--kernel"])
        .arg(deb)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting percpu-trace")?;
    let pid = child.id() as libc::pid_t;
    // Read the output while it runs (a pipe fills), then reap with wait4 for the rusage.
    let out = {
        use std::io::Read;
        let mut child = child;
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut o) = child.stdout.take() {
            o.read_to_string(&mut stdout)?;
        }
        if let Some(mut e) = child.stderr.take() {
            e.read_to_string(&mut stderr)?;
        }
        (stdout, stderr)
    };
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let secs = t.elapsed().as_secs_f64();
    if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!(
            "percpu-trace check --kernel {} failed (status {status:#x}): {}",
            deb.display(),
            out.1.trim()
        );
    }
    let docs: Value = serde_json::from_str(&out.0).context("check --kernel --json output")?;
    let doc = docs
        .as_array()
        .and_then(|a| (a.len() == 1).then(|| a[0].clone()))
        .context("check --kernel --json: not an array of one kernel")?;
    Ok(Run {
        doc,
        secs,
        rss_mib: ru.ru_maxrss as f64 / 1024.0,
    })
}

/// The state of `patch` in a `check --json` document.
pub fn patch_state(doc: &Value, patch: &str) -> String {
    doc["kernel"]["fix"]["patches"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["id"] == patch))
        .and_then(|p| p["state"].as_str())
        .unwrap_or("missing")
        .to_string()
}

/// The patches, in the order `check` lists them.
pub const PATCHES: [&str; 4] = ["regression", "vm-areas-gfp", "populate-gfp", "backing-noio"];

/// What booted `check` says of each patch on a matrix kernel. Recorded facts: the verdict
/// (matrix data, asserted on every boot) and the role (BTF). The per-patch states of a
/// booted kernel are not recorded anywhere, so they are derived from what booted `check`
/// reads: the same BTF and `uname -v` as the image, and the code of pcpu_alloc and
/// pcpu_populate_chunk through read_kmem from the kallsyms start of each to the next
/// symbol, the same bytes the image's text holds there (the immediates the scans look for
/// are not patched at boot). So:
/// - the regression is present everywhere (6.1/6.12 by the backport, 7.x by version, and
///   implied by any fix part);
/// - every fix part absent on the vulnerable kernels and present on 7.3.4, on x86_64 and
///   arm64 alike (BTF for vm-areas-gfp; `fix_code`'s x86_64 and A64 scans for
///   populate-gfp, including the memalloc scope 7.3.4 enters in a callee, and for the
///   backing-noio mask 0x12cc0/0x12c00).
fn expected(spec: &KernelSpec, _arch: Arch) -> [&'static str; 4] {
    match spec.fix {
        Fix::Vulnerable => ["present", "absent", "absent", "absent"],
        Fix::Fixed => ["present", "present", "present", "present"],
    }
}

/// The cached package of a matrix line (the newest one apt offers, downloaded when missing).
fn matrix_deb(spec: &KernelSpec, arch: Arch, debs: &Path) -> Result<PathBuf> {
    let prefix = &spec.image[..spec.image.find('#').unwrap_or(spec.image.len())];
    let mut names: Vec<(Vec<u64>, String)> = fs::read_dir(debs)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some(e.file_name().to_str()?.split('_').next()?.to_string()))
        .chain(kernels::apt_names(prefix))
        .filter_map(|n| Some((kernels::match_pattern(spec.image, &n)?, n)))
        .collect();
    names.sort();
    let (_, pkg) = names
        .last()
        .with_context(|| format!("no package matches {} (apt-get update?)", spec.image))?;
    let qualified = match arch {
        Arch::X86_64 => pkg.clone(),
        Arch::Aarch64 => format!("{pkg}:arm64"),
    };
    kernels::download(&qualified, debs)
}

/// Tracepoints and the `TP_PROTO` arguments their raw programs read (kernel/planner.rs).
const RAW_ARGS: [(&str, &[&str]); 9] = [
    (
        "percpu:percpu_alloc_percpu",
        &[
            "gfp_flags",
            "is_atomic",
            "size",
            "align",
            "reserved",
            "call_site",
        ],
    ),
    ("percpu:percpu_create_chunk", &["base_addr"]),
    (
        "vmscan:mm_vmscan_direct_reclaim_begin",
        &["gfp_flags", "order"],
    ),
    ("vmscan:mm_vmscan_direct_reclaim_end", &["nr_reclaimed"]),
    (
        "vmscan:mm_vmscan_memcg_reclaim_begin",
        &["gfp_flags", "order"],
    ),
    ("vmscan:mm_vmscan_memcg_reclaim_end", &["nr_reclaimed"]),
    ("lock:contention_begin", &["lock", "flags"]),
    ("lock:contention_end", &["lock", "ret"]),
    ("sched:sched_process_exit", &[]),
];

/// `cargo xtask offline-check`: the offline verdict of every matrix kernel equals the booted
/// one, patch by patch.
pub fn offline_check() -> Result<()> {
    let bin = crate::vm::build_tool()?;
    let debs = root().join("target/vm-cache/debs");
    fs::create_dir_all(&debs)?;
    kernels::ensure_apt_sources()?;
    let mut failures = Vec::new();
    for arch in [Arch::X86_64, Arch::Aarch64] {
        for spec in arch.kernels() {
            let deb = matrix_deb(spec, arch, &debs)?;
            let run = run_offline(&bin, &deb)?;
            let got: Vec<String> = PATCHES.iter().map(|p| patch_state(&run.doc, p)).collect();
            let want = expected(spec, arch);
            let verdict = run.doc["kernel"]["fix"]["verdict"].as_str().unwrap_or("?");
            let kernel_arch = run.doc["kernel"]["arch"].as_str().unwrap_or("?");
            println!(
                "offline: {} {}: {verdict} ({}) in {:.2} s, peak RSS {:.0} MiB",
                arch.uname(),
                deb.file_name().unwrap_or_default().to_string_lossy(),
                PATCHES
                    .iter()
                    .zip(&got)
                    .map(|(p, s)| format!("{p} {s}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                run.secs,
                run.rss_mib
            );
            if verdict != spec.verdict {
                failures.push(format!(
                    "{} {}: verdict {verdict}, booted check says {}",
                    arch.uname(),
                    spec.name,
                    spec.verdict
                ));
            }
            if kernel_arch != arch.uname() {
                failures.push(format!("{}: arch {kernel_arch}", spec.name));
            }
            // The booted kernel attaches every tracepoint as a raw one only if its BTF names
            // the arguments the programs read (the VM tests then prove they read right).
            for (tp, want) in RAW_ARGS {
                let have = &run.doc["kernel"]["tracepoints"][tp]["raw_args"];
                let names: Vec<&str> = have
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !have.is_array() {
                    failures.push(format!(
                        "{} {}: {tp}: no raw tracepoint arguments in BTF ({have})",
                        arch.uname(),
                        spec.name
                    ));
                } else if let Some(w) = want.iter().find(|w| !names.contains(w)) {
                    failures.push(format!(
                        "{} {}: {tp}: no raw tracepoint argument {w} in BTF ({have})",
                        arch.uname(),
                        spec.name
                    ));
                }
            }
            for ((p, g), w) in PATCHES.iter().zip(&got).zip(want) {
                if g != w {
                    failures.push(format!(
                        "{} {}: {p} {g}, booted check says {w}",
                        arch.uname(),
                        spec.name
                    ));
                }
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "offline verdicts differ from the booted ones:\n  {}",
            failures.join("\n  ")
        );
    }
    println!(
        "offline: every matrix kernel's offline verdict and patch states equal the booted ones"
    );
    // The decoded symbol tables against the booted kallsyms and the -dbg System.maps.
    for pkg in fixture_packages()? {
        kernels::download(&pkg, &debs)?;
    }
    // `check --kernel --debug-vmlinux` against Debian's real -dbg vmlinux (the one
    // symbolize-test uses; a 1.2 GB download the first time).
    let dbg = crate::symbolize_test::dbg_vmlinux(&root().join("target/vm-cache"), DBG_RELEASE)?;
    let st = Command::new("cargo")
        .current_dir(root())
        .args([
            "test",
            "--locked",
            "-p",
            "percpu-trace",
            "--test",
            "offline_images",
            "--",
            "--ignored",
        ])
        .env("PT_OFFLINE_DEBS", &debs)
        .env("PT_DEBUG_VMLINUX", &dbg)
        .status()
        .context("running the offline_images test")?;
    if !st.success() {
        bail!(
            "offline_images (decoded symbols vs booted kallsyms and -dbg System.map) failed ({st})"
        );
    }
    Ok(())
}

/// The release whose -dbg vmlinux `offline_images` reads with `--debug-vmlinux`.
const DBG_RELEASE: &str = "7.2.13+deb14-amd64";

/// Packages the symbol fixtures come from: `fixtures/offline/<deb stem>.System.map` and the
/// booted kernels' `fixtures/kernels/*/PACKAGE` that `offline_images` reads.
fn fixture_packages() -> Result<Vec<String>> {
    let fx = root().join("percpu-trace/tests/fixtures");
    let mut out = Vec::new();
    for e in fs::read_dir(fx.join("offline"))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".System.map") {
            let pkg = stem.split('_').next().unwrap_or(stem);
            out.push(if stem.ends_with("_arm64") {
                format!("{pkg}:arm64")
            } else {
                pkg.to_string()
            });
        }
    }
    for d in ["debian-7.2.13", "debian-7.3.4", "debian-7.2.13-rt"] {
        let p = fs::read_to_string(fx.join("kernels").join(d).join("PACKAGE"))?;
        out.push(p.trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_follow_the_matrix() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            for spec in arch.kernels() {
                let e = expected(spec, arch);
                assert_eq!(e[0], "present", "{}", spec.name);
                let fixed = spec.verdict == "likely-fixed";
                assert_eq!(e[1] == "present", fixed, "{}", spec.name);
            }
        }
    }

    #[test]
    fn patch_states_from_json() {
        let doc = serde_json::json!({"kernel": {"fix": {"patches": [
            {"id": "regression", "state": "present"},
            {"id": "backing-noio", "state": "absent"}
        ]}}});
        assert_eq!(patch_state(&doc, "regression"), "present");
        assert_eq!(patch_state(&doc, "backing-noio"), "absent");
        assert_eq!(patch_state(&doc, "populate-gfp"), "missing");
    }
}
