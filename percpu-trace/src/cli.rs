//! Command line: parsing and dispatch. Every error ends as one line on stderr and exit 2.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    kernel::plan::AttachMode,
    options::{KernelOptions, TraceOptions},
};

/// Live tracer for NOFS/NOIO reclaim recursion under pcpu_alloc_mutex.
#[derive(Debug, Parser)]
#[command(name = "percpu-trace", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Show a recording in the terminal UI instead of tracing live (no root needed).
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
}

/// Subcommands; without one, the live terminal UI starts.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what this kernel offers and how each probe point would be observed.
    Check {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Trace headless: print findings as they appear, write a replayable recording.
    /// Exit status: 0 no findings, 1 findings, 2 error.
    Record {
        /// How long to trace (e.g. 30s, 5m); until Ctrl-C/SIGTERM when absent.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// Recording file (JSON lines), created 0600.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Replace an existing recording file owned by another user (a symlink is always
        /// refused).
        #[arg(long)]
        force: bool,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9752).
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        #[command(flatten)]
        live: LiveArgs,
    },
    /// Render findings as a report for a kernel bug filing, from a recording.
    Report {
        /// Recording made by `record --output`.
        #[arg(long)]
        from: PathBuf,
        /// Report format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::report::Format,
        /// Output file ("-" or absent: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Replace an existing output file owned by another user (a symlink is always
        /// refused).
        #[arg(long)]
        force: bool,
    },
}

/// Options about the kernel: where facts come from and how to attach.
#[derive(Debug, Clone, Args)]
pub struct KernelArgs {
    /// Which program family to attach.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    pub attach: AttachMode,
    /// BTF file to use instead of /sys/kernel/btf/vmlinux.
    #[arg(long, global = true)]
    pub btf: Option<PathBuf>,
}

/// Options of live tracing.
#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Event ring buffer size in MiB (a power of two): bigger rides out longer bursts
    /// while userspace cannot run, at the cost of locked kernel memory.
    #[arg(long, default_value_t = 4, value_parser = parse_ring_mib, global = true)]
    pub ring_buffer_mib: u32,
    /// Only this process (tgid); filtered in the kernel.
    #[arg(long, global = true)]
    pub pid: Option<u32>,
    /// Only findings involving a task with this comm.
    #[arg(long, global = true)]
    pub comm: Option<String>,
    /// Only findings involving a task in this cgroup (path under /sys/fs/cgroup, or id).
    #[arg(long, global = true)]
    pub cgroup: Option<String>,
}

/// Parses a ring-buffer size in MiB: a power of two from 1 to 1024.
pub fn parse_ring_mib(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= 1024 => Ok(n),
        _ => Err(format!("{s:?} is not a power of two between 1 and 1024")),
    }
}

/// Parses "30s", "5m", "1h30m", or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("bad duration {s:?}: {e}"))
}

/// Parses arguments and runs; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            crate::warnln!("percpu-trace: {e:#}");
            ExitCode::from(2)
        }
    }
}

impl KernelArgs {
    /// The plain options the session code takes.
    pub fn options(&self) -> KernelOptions {
        KernelOptions {
            attach: self.attach,
            btf: self.btf.clone(),
        }
    }
}

impl LiveArgs {
    /// The plain options the session code takes, resolved once (cgroup path to id, one
    /// finding filter).
    pub fn options(&self) -> anyhow::Result<TraceOptions> {
        TraceOptions::resolve(
            self.kernel.options(),
            self.ring_buffer_mib,
            self.pid,
            self.comm.clone(),
            self.cgroup.as_deref(),
        )
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Check { json, kernel }) => crate::live::check(&kernel.options(), json),
        Some(Command::Record {
            duration,
            output,
            force,
            metrics,
            live,
        }) => crate::live::record(&live.options()?, duration, output, force, metrics),
        Some(Command::Report {
            from,
            format,
            output,
            force,
        }) => {
            let text = crate::report::report_from_recording(&from, format)?;
            let out = output.unwrap_or_else(|| PathBuf::from("-"));
            crate::report::write_report_with(&out, &text, force)?;
            Ok(ExitCode::SUCCESS)
        }
        None => match cli.replay {
            Some(path) => crate::tui::run_replay(&path).map(|()| ExitCode::SUCCESS),
            None => crate::live::tui(&cli.live.options()?),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_ring_mib("32"), Ok(32));
        assert!(parse_ring_mib("3").is_err());
        assert!(parse_ring_mib("2048").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
