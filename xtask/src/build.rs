//! Release builds of the tool, and running it as root.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::setup;

/// `cargo xtask build` options.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Target architecture (x86_64 or aarch64).
    #[arg(long, default_value = "x86_64")]
    pub arch: String,
}

/// Workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Builds the release binary and returns its path. For another architecture (aarch64 from
/// x86_64) it uses Debian's rustc-web with that architecture's standard library
/// (libstd-rust-web-dev:arm64) and the cross gcc as linker; build.rs then builds the eBPF
/// object for that architecture's pt_regs (`bpf_target_arch`).
pub fn run(args: &BuildArgs) -> Result<PathBuf> {
    setup::ensure()?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(root())
        .args(["build", "--release", "--locked", "-p", "percpu-trace"]);
    let out = if args.arch == std::env::consts::ARCH {
        root().join("target/release/percpu-trace")
    } else if args.arch == "aarch64" {
        setup::ensure_cross_aarch64()?;
        cmd.args(["--target", AARCH64])
            .env("RUSTC", "/usr/bin/rustc")
            .env(
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                "aarch64-linux-gnu-gcc",
            );
        root()
            .join("target")
            .join(AARCH64)
            .join("release/percpu-trace")
    } else {
        bail!("unsupported --arch {} (x86_64 or aarch64)", args.arch);
    };
    let st = cmd.status().context("running cargo build")?;
    if !st.success() {
        bail!("cargo build failed ({st})");
    }
    println!("build: {}", out.display());
    Ok(out)
}

/// Rust target triple of arm64 builds.
pub const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// Builds, then runs the tool as root with `args`.
pub fn run_tool(args: &[String]) -> Result<()> {
    let bin = run(&BuildArgs {
        arch: std::env::consts::ARCH.into(),
    })?;
    let mut cmd = if setup::is_root() {
        Command::new(&bin)
    } else {
        let mut c = Command::new("sudo");
        c.arg(&bin);
        c
    };
    let st = cmd.args(args).status().context("starting percpu-trace")?;
    if !st.success() {
        std::process::exit(st.code().unwrap_or(2));
    }
    Ok(())
}
