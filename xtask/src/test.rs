//! `cargo xtask test`: every check, in order, stopping at the first failure.
//! Nothing is skipped silently: a part that cannot run here fails the whole run.
//! The tool the offline check, the dist-test and the VM matrix run is the portable binary
//! `cargo xtask dist` ships (`vm::build_tool`), not a development build.
use std::{process::Command, time::Instant};

use anyhow::{bail, Context, Result};

use crate::{build::root, setup, vm};

/// `cargo xtask test` options.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Leave out the qemu tests (for quick local iterations only; CI runs everything).
    #[arg(long)]
    pub no_vm: bool,
    /// Leave out `dist-test` (packages, Debian 11 chroots; for quick local iterations only).
    #[arg(long)]
    pub no_dist: bool,
}

/// Runs every test.
pub fn run(args: &TestArgs) -> Result<()> {
    setup::ensure()?;
    step("rustfmt", &["fmt", "--all", "--check"])?;
    step(
        "clippy",
        &[
            "clippy",
            "--locked",
            "--workspace",
            "--exclude",
            "percpu-trace-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step(
        "unit tests",
        &[
            "test",
            "--locked",
            "--workspace",
            "--exclude",
            "percpu-trace-ebpf",
        ],
    )?;
    println!("==> offline verdicts of the VM-matrix packages (no boot)");
    crate::offline::offline_check()?;
    if !setup::is_root() {
        bail!("the host smoke test loads real eBPF programs and needs root: run `sudo cargo xtask test`");
    }
    step(
        "host smoke test (real eBPF on this kernel)",
        &[
            "test",
            "--locked",
            "-p",
            "percpu-trace",
            "--test",
            "host_smoke",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
    )?;
    step(
        "TUI end-to-end on this kernel (tmux, tracepoint mode)",
        &[
            "test",
            "--locked",
            "-p",
            "percpu-trace",
            "--test",
            "tui_e2e",
            "--",
            "--ignored",
            "--test-threads=1",
        ],
    )?;
    if args.no_dist {
        println!("test: dist-test left out (--no-dist): this run is NOT a full test run");
    } else {
        // The artefacts users install, proven on an old userland; the VM matrix below
        // then boots these same binaries (vm::build_tool), already built.
        println!("==> dist-test: glibc 2.17 binaries, .deb/.rpm/tarball, Debian 11 chroots");
        let t = Instant::now();
        crate::dist_check::run()?;
        println!("test: dist-test: {:.0} s", t.elapsed().as_secs_f64());
    }
    if args.no_vm {
        println!("test: VM tests left out (--no-vm): this run is NOT a full test run");
        return Ok(());
    }
    // Both architectures' matrices, one after the other: kernels, userland and builds
    // are cached in target/ (target/vm-cache, the aarch64 cargo targets), so the arm64
    // binaries are built once here and again only when sources change.
    let mut times = Vec::new();
    for (arch, what) in [
        (
            vm::Arch::X86_64,
            "Debian amd64 kernels under qemu-system-x86_64",
        ),
        (
            vm::Arch::Aarch64,
            "Debian arm64 kernels under qemu-system-aarch64",
        ),
    ] {
        println!("==> VM tests, {}: {what}", arch.uname());
        let t = Instant::now();
        let res = vm::vm_test(vm::VmTestArgs {
            kernel: None,
            scenario: None,
            arch,
            attach: Vec::new(),
        });
        times.push((arch.uname(), t.elapsed().as_secs_f64()));
        for (a, secs) in &times {
            println!("test: VM tests {a}: {secs:.0} s");
        }
        res?;
    }
    Ok(())
}

fn step(name: &str, args: &[&str]) -> Result<()> {
    println!("==> {name}: cargo {}", args.join(" "));
    let st = Command::new("cargo")
        .current_dir(root())
        .args(args)
        .status()
        .with_context(|| format!("running {name}"))?;
    if !st.success() {
        bail!("{name} failed ({st})");
    }
    Ok(())
}
