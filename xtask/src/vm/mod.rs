//! Real-kernel tests: Debian kernels under qemu (placeholder until the harness lands).
use anyhow::{bail, Result};

/// `cargo xtask vm-test` options.
#[derive(Debug, clap::Args)]
pub struct VmTestArgs {
    /// Kernel role or name (default: the whole matrix).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Scenario name (default: all).
    #[arg(long)]
    pub scenario: Option<String>,
}

/// Runs the VM test matrix.
pub fn vm_test(_args: VmTestArgs) -> Result<()> {
    bail!("vm-test is not implemented yet")
}
