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

/// Builds the release binary and returns its path.
pub fn run(args: &BuildArgs) -> Result<PathBuf> {
    setup::ensure()?;
    if args.arch != std::env::consts::ARCH {
        bail!(
            "cross-building for {} is not supported yet (see the arm64 issue)",
            args.arch
        );
    }
    let st = Command::new("cargo")
        .current_dir(root())
        .args(["build", "--release", "--locked", "-p", "percpu-trace"])
        .status()
        .context("running cargo build")?;
    if !st.success() {
        bail!("cargo build failed ({st})");
    }
    Ok(root().join("target/release/percpu-trace"))
}

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
