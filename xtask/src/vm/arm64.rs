//! arm64 guests for `cargo xtask vm-test --arch aarch64`: Debian's arm64 kernels booted
//! under qemu-system-aarch64 (TCG, `-M virt`) from this x86_64 machine, with the
//! cross-built tool and workload.
//!
//! The scenarios, the guest /init and the assertions are the x86_64 ones; what differs is
//! here: the kernel matrix, the qemu machine, and the guest userland, which cannot come
//! from the host (busybox-static:arm64, libc6:arm64 and libgcc-s1:arm64 are downloaded
//! with apt and unpacked, and the tool's libraries are found from its ELF NEEDED entries
//! because `ldd` cannot run an aarch64 binary here).
use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::{
    initramfs::Initramfs,
    kernels::{
        self, Fix, KernelSpec, Mode, ModeRun, FIXED_RECURSION, VULNERABLE,
        VULNERABLE_RECURSION_TRUTH,
    },
};

/// Guest architecture (`vm-test --arch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// qemu-system-x86_64; the host's own binaries.
    #[default]
    #[value(name = "x86_64")]
    X86_64,
    /// qemu-system-aarch64 `-M virt`; cross-built binaries.
    Aarch64,
}

impl Arch {
    /// The kernel matrix of this architecture.
    pub fn kernels(self) -> &'static [KernelSpec] {
        match self {
            Arch::X86_64 => kernels::KERNELS,
            Arch::Aarch64 => KERNELS,
        }
    }

    /// `uname -m` in the guest, as `check --json` reports it in `kernel.arch`.
    pub fn uname(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }
}

/// The arm64 matrix: the vulnerable kernel in the mode `auto` picks (fentry) and in kprobe
/// mode (the arm64 pt_regs argument registers), the fixed kernel in `auto`. The
/// role-specific logic is the same code as on x86_64. `recursion` runs in `auto` on both
/// (its own 32-vCPU boot, 84 s here): truth-checked on 7.2, a hit not required (one boot
/// measured, no hit), and the negative on 7.3.
#[rustfmt::skip]
pub const KERNELS: &[KernelSpec] = &[
    KernelSpec { name: "7.2", image: "linux-binary-7.2.#+deb#-arm64", modules: Some(("linux-binary-", "linux-modules-")), ci: true, fix: Fix::Vulnerable, verdict: "vulnerable", old_names: false, probe: None, rt: false,
        runs: &[ModeRun { mode: Mode::Auto, expect: VULNERABLE_RECURSION_TRUTH }, ModeRun { mode: Mode::Kprobe, expect: VULNERABLE }] },
    KernelSpec { name: "7.3", image: "linux-binary-7.3.#+deb#-arm64", modules: Some(("linux-binary-", "linux-modules-")), ci: true, fix: Fix::Fixed, verdict: "likely-fixed", old_names: false, probe: None, rt: false,
        runs: &[ModeRun { mode: Mode::Auto, expect: FIXED_RECURSION }] },
];

/// The qemu command for an arm64 guest, before the common arguments. Single-threaded TCG
/// always (multi-threaded TCG oopsed on x86_64 guests while they patched their code).
/// `pauth-impdef=on`: the architected pointer-authentication cipher (QARMA) is very slow
/// to emulate and Debian's kernel signs every return address; the implementation-defined
/// one behaves the same for the guest. GICv3: the default GICv2 of `virt` takes 8 vCPUs at
/// most, and the recursion boot asks for 32 possible CPUs.
pub fn qemu_command() -> Command {
    let mut c = Command::new("qemu-system-aarch64");
    c.args([
        "-M",
        "virt,gic-version=3",
        "-cpu",
        "max,pauth-impdef=on",
        "-accel",
        "tcg,thread=single",
    ]);
    c
}

/// Kernel parameters of arm64 guests. `cma=0`: Debian's arm64 kernel reserves 64 MiB for
/// CMA, which only movable allocations may use; in a 512 MiB guest that left the percpu,
/// vmalloc and slab allocations of the contention scenario 64 MiB short of the x86_64
/// guest, and the OOM killer took the tool (seen: free 79 MB of which 59 MB CMA).
pub const KERNEL_ARGS: &str = "console=ttyAMA0 cma=0";

/// Guest userland packages (the binaries' architecture, apt verifies them).
const USERLAND: &[&str] = &["busybox-static:arm64", "libc6:arm64", "libgcc-s1:arm64"];

/// Downloads and unpacks [`USERLAND`] once; returns the unpacked root.
pub fn userland(cache: &Path) -> Result<PathBuf> {
    let root = cache.join("arm64-userland");
    let stamp = root.join(".unpacked");
    if stamp.exists() {
        return Ok(root);
    }
    // Not next to the kernel debs: `libc6_*.deb` of two architectures would collide.
    let debs = cache.join("debs-arm64");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root)?;
    for pkg in USERLAND {
        let deb = kernels::download(pkg, &debs)?;
        kernels::run(
            Command::new("dpkg").arg("-x").arg(&deb).arg(&root),
            "dpkg -x",
        )?;
    }
    fs::write(&stamp, "")?;
    Ok(root)
}

/// Adds the arm64 busybox with a link per applet. The applet list comes from the host's
/// busybox (the arm64 one cannot run here); both are Debian's busybox-static of the same
/// release, and a link to an applet the binary lacks would only fail when used.
pub fn add_busybox(ird: &mut Initramfs, userland: &Path) -> Result<()> {
    ird.host_file("/bin/busybox", &userland.join("bin/busybox"), 0o755)?;
    let out = Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .context("host busybox --list-full (for the applet list)")?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let name = applet.rsplit('/').next().unwrap_or(applet);
        // A link named busybox over the binary makes every applet fail with ELOOP.
        if name == "busybox" || applet.is_empty() {
            continue;
        }
        ird.symlink(&format!("/{applet}"), "/bin/busybox");
    }
    Ok(())
}

/// `readelf` output of an aarch64 ELF file (the cross binutils come with the cross gcc).
fn readelf(args: &[&str], elf: &Path) -> Result<String> {
    let out = Command::new("aarch64-linux-gnu-readelf")
        .args(args)
        .arg(elf)
        .output()
        .context("running aarch64-linux-gnu-readelf")?;
    if !out.status.success() {
        bail!(
            "readelf {}: {}",
            elf.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value after `key` up to `]` on each line of `text` (readelf writes both
/// `Shared library: [X]` and `[Requesting program interpreter: X]`).
fn bracketed<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| {
            let rest = &l[l.find(key)? + key.len()..];
            let rest = rest.trim_start().trim_start_matches('[');
            Some(rest[..rest.find(']')?].trim())
        })
        .collect()
}

/// `rel` under the unpacked userland, usrmerged or not.
fn find_in(userland: &Path, rel: &str) -> Option<PathBuf> {
    let rel = rel.trim_start_matches('/');
    [userland.join(rel), userland.join("usr").join(rel)]
        .into_iter()
        .find(|p| p.exists())
}

/// Adds a dynamically linked aarch64 binary at `path`, its program interpreter at the
/// path baked into it, and every library it needs (transitively, from DT_NEEDED) under
/// /lib/aarch64-linux-gnu, one of the multiarch directories Debian's ld.so searches
/// without an ld.so.cache. A static binary adds only itself.
pub fn add_binary(ird: &mut Initramfs, path: &str, host: &Path, userland: &Path) -> Result<()> {
    ird.host_file(path, host, 0o755)?;
    if let Some(interp) = bracketed(
        &readelf(&["-l", "-W"], host)?,
        "Requesting program interpreter:",
    )
    .first()
    {
        let file = find_in(userland, interp)
            .with_context(|| format!("{interp} is not in the arm64 userland"))?;
        ird.host_file(interp, &file, 0o755)?;
    }
    let mut todo = vec![host.to_path_buf()];
    let mut seen = HashSet::new();
    while let Some(elf) = todo.pop() {
        for lib in bracketed(&readelf(&["-d", "-W"], &elf)?, "Shared library:") {
            if !seen.insert(lib.to_string()) {
                continue;
            }
            let rel = format!("lib/aarch64-linux-gnu/{lib}");
            let file = find_in(userland, &rel)
                .with_context(|| format!("{lib} (needed by {}) not found", elf.display()))?;
            ird.host_file(&format!("/{rel}"), &file, 0o755)?;
            todo.push(file);
        }
    }
    Ok(())
}

/// The aarch64 tool as it ships (`cargo xtask dist --arch aarch64`: eBPF object for arm64
/// pt_regs embedded, glibc >= 2.17). It cannot run here; reports on the host use the
/// x86_64 build.
pub fn build_tool() -> Result<PathBuf> {
    crate::dist::binary(crate::dist::Target::of("aarch64")?)
}

/// The workload for aarch64, static (crt-static), like the x86_64 one. Built into its own
/// target directory: the tool's aarch64 build shares dependencies (libc, clap) that a
/// different RUSTFLAGS would otherwise rebuild back and forth.
pub fn build_workload(target_dir: &Path) -> Result<PathBuf> {
    crate::setup::ensure_cross_aarch64()?;
    let dir = target_dir.join("static-aarch64");
    kernels::run(
        Command::new("cargo")
            .current_dir(crate::build::root())
            .env("RUSTC", "/usr/bin/rustc")
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env(
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                "aarch64-linux-gnu-gcc",
            )
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                "percpu-trace-workload",
                "--target",
                crate::build::AARCH64,
                "--target-dir",
            ])
            .arg(&dir),
        "cargo build percpu-trace-workload (aarch64)",
    )?;
    Ok(dir.join(crate::build::AARCH64).join("release/pt-workload"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readelf_lines() {
        let t = " 0x01 (NEEDED)  Shared library: [libc.so.6]\n      [Requesting program interpreter: /lib/ld-linux-aarch64.so.1]\n";
        assert_eq!(bracketed(t, "Shared library:"), ["libc.so.6"]);
        assert_eq!(
            bracketed(t, "Requesting program interpreter:"),
            ["/lib/ld-linux-aarch64.so.1"]
        );
    }
}
