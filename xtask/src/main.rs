//! Developer tasks for percpu-trace: `cargo xtask <command>`.
//!
//! `setup` installs the toolchain; every other command runs it first when something is
//! missing, so a fresh machine needs nothing else.
mod bench;
mod build;
mod dist;
mod dist_check;
mod import_graph;
mod kernel_table;
mod marked;
mod offline;
mod setup;
mod symbolize_module;
mod symbolize_test;
mod test;
mod vm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "percpu-trace developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing to build, test and package (idempotent).
    Setup,
    /// Build the release binary (eBPF object embedded).
    Build(build::BuildArgs),
    /// Build, then run the tool as root (via sudo when not root); arguments go to the tool.
    Run {
        /// Arguments for percpu-trace.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Release artefacts in target/dist: portable binaries (glibc >= 2.17), tarballs,
    /// .deb, .rpm, SHA256SUMS.
    Dist(dist::DistArgs),
    /// Build the artefacts, then prove them: glibc symbol versions, a Debian 11 chroot
    /// (x86_64 run, arm64 under qemu-user), .deb install/remove, .rpm file list (root).
    DistTest,
    /// Every test: fmt, clippy, unit tests, host smoke test, VM tests.
    Test(test::TestArgs),
    /// Real-kernel tests under qemu.
    VmTest(vm::VmTestArgs),
    /// `report` on real 7.2.13 recordings against Debian's real -dbg vmlinux and ext4.ko,
    /// checked with addr2line (downloads 1.2 GB once; not part of `test`).
    SymbolizeTest,
    /// Overhead benchmarks against bpftrace; writes BENCHMARKS.md (root, several minutes).
    Bench(bench::BenchArgs),
    /// Offline verdicts (`check --kernel`) of every VM-matrix kernel's package must equal
    /// the booted ones, patch by patch; prints time and peak RSS per package.
    OfflineCheck,
    /// The README table of offline verdicts of the newest Debian kernels.
    KernelTable(kernel_table::KernelTableArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Setup => setup::run()
            .and_then(|_| setup::ensure_cross_aarch64())
            .and_then(|_| setup::ensure_dist()),
        Command::Dist(a) => dist::run(&a),
        Command::DistTest => dist_check::run(),
        Command::Build(a) => build::run(&a).map(|_| ()),
        Command::Run { args } => build::run_tool(&args),
        Command::Test(a) => test::run(&a),
        Command::VmTest(a) => setup::ensure().and_then(|_| vm::vm_test(a)),
        Command::Bench(a) => bench::run(&a),
        Command::SymbolizeTest => setup::ensure()
            .and_then(|_| symbolize_test::run())
            .and_then(|_| symbolize_module::run()),
        Command::OfflineCheck => setup::ensure().and_then(|_| offline::offline_check()),
        Command::KernelTable(a) => setup::ensure().and_then(|_| kernel_table::run(&a)),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
