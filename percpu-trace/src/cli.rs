//! Command line: parsing and dispatch. Every error ends as one line on stderr and exit 2.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    kernel::plan::AttachMode,
    options::{KernelOptions, TraceOptions},
};

/// Live tracer for NOFS/NOIO reclaim recursion under pcpu_alloc_mutex.
#[derive(Debug, Parser)]
#[command(
    name = "percpu-trace",
    // Version, git commit and the embedded eBPF object's hash (build.rs).
    version = env!("PERCPU_TRACE_VERSION"),
    about,
    long_about = None,
    // Flags of the live UI are not flags of the subcommands: `report --pid 5` is an error.
    args_conflicts_with_subcommands = true,
    after_help = EXAMPLES_TOP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Show a recording in the terminal UI instead of tracing live (no root needed).
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
}

const EXAMPLES_TOP: &str = "EXAMPLES:
    sudo percpu-trace                          live terminal UI
    sudo percpu-trace check                    what this kernel allows and how it is observed
    sudo percpu-trace record -d 60s -o t.jsonl trace a minute headless into a recording
    percpu-trace report t.jsonl                a report for a kernel bug filing
    percpu-trace --replay t.jsonl              a recording in the terminal UI";

const EXAMPLES_CHECK: &str = "EXAMPLES:
    sudo percpu-trace check
    sudo percpu-trace check --json | jq .kernel.fix
    sudo percpu-trace check --attach kprobe    would kprobes work here?
    percpu-trace check --kernel linux-image-6.1.0-57-amd64-unsigned_6.1.192-3_amd64.deb
    percpu-trace check --kernel /boot/vmlinuz-* --json | jq '.[].kernel.fix.verdict'
    percpu-trace check --kernel ./debs/       every kernel package in a directory, offline";

const EXAMPLES_RECORD: &str = "EXAMPLES:
    sudo percpu-trace record -d 5m -o /var/tmp/pt.jsonl
    sudo percpu-trace record -p 1234 -d 30s -o -  > pt.jsonl   (recording on stdout)
    sudo percpu-trace record --comm 'kworker/*' --metrics 127.0.0.1:9752

EXIT STATUS:
    0 no findings, 1 findings, 2 error (bad arguments, no privileges, I/O).";

const EXAMPLES_REPORT: &str = "EXAMPLES:
    percpu-trace report pt.jsonl
    percpu-trace report pt.jsonl --format markdown -o pt.md
    ssh host cat /var/lib/percpu-trace/trace-X.jsonl | percpu-trace report -

EXIT STATUS:
    0 no findings, 1 findings, 2 error (bad arguments, no privileges, I/O).";

/// Subcommands; without one, the live terminal UI starts.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what this kernel offers and how each probe point would be observed.
    #[command(after_help = EXAMPLES_CHECK)]
    Check {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Also prove the fix verdict now (root): attach the probes, make percpu chunks get
        /// populated by an IO_FLUSHER thread and an unconstrained one (at most 64 MiB of
        /// BPF maps for about 2 s, freed at once), and report what the kernel did.
        #[arg(long, conflicts_with = "kernel_files")]
        probe: bool,
        /// Judge these kernels offline instead of the running one (no root): Debian kernel
        /// packages (.deb), vmlinuz/bzImage (zstd, xz, gzip, lz4), vmlinux ELF, arm64
        /// Image/Image.gz or EFI zboot images, or directories of them. One line per kernel
        /// (`--json`: an array of what `check --json` says, one per kernel); exit 2 if any
        /// could not be read.
        #[arg(long = "kernel", value_name = "FILE", num_args = 1.., id = "kernel_files")]
        kernel_files: Vec<PathBuf>,
        /// With --kernel: take symbol addresses from this System.map instead of the image's
        /// own kallsyms tables.
        #[arg(long, value_name = "FILE", requires = "kernel_files")]
        system_map: Option<PathBuf>,
        /// With --kernel: take symbols and function code from this debug vmlinux (an ELF
        /// with .symtab, e.g. Debian's -dbg package's) instead of the image's kallsyms;
        /// refused (exit 2) unless it is the same build (build id, else linux_banner).
        #[arg(
            long,
            value_name = "FILE",
            requires = "kernel_files",
            conflicts_with = "system_map"
        )]
        debug_vmlinux: Option<PathBuf>,
        #[command(flatten)]
        kernel: KernelArgs,
    },
    /// Trace headless: print findings as they appear, write a replayable recording.
    #[command(after_help = EXAMPLES_RECORD)]
    Record {
        /// How long to trace (e.g. 30s, 5m); until Ctrl-C/SIGTERM/SIGHUP when absent.
        #[arg(long, short = 'd', value_parser = crate::options::parse_duration)]
        duration: Option<Duration>,
        /// Recording file (JSON lines), created 0600; `-` writes it to stdout (finding
        /// lines then go to stderr).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Replace an existing recording file owned by another user (a symlink is always
        /// refused).
        #[arg(long)]
        force: bool,
        /// Rotate the recording at this size (e.g. 200M): the full file becomes FILE.1,
        /// replacing an older one, so at most twice this much is kept.
        #[arg(long, value_parser = crate::live_recording::parse_size)]
        max_size: Option<u64>,
        /// Serve Prometheus metrics on this address (`127.0.0.1:9752`; `:9752` means
        /// loopback; port 0 picks a free port and prints it).
        #[arg(long, value_parser = parse_metrics_addr)]
        metrics: Option<std::net::SocketAddr>,
        /// Most metrics connections served at once (more get 503 and are closed), like
        /// node_exporter's --web.max-requests.
        #[arg(long, default_value_t = crate::metrics::http::DEFAULT_MAX_REQUESTS,
              value_parser = crate::options::parse_max_requests)]
        metrics_max_requests: usize,
        #[command(flatten)]
        live: LiveArgs,
    },
    /// Render findings as a report for a kernel bug filing, from a recording.
    #[command(after_help = EXAMPLES_REPORT)]
    Report {
        /// Recording made by `record --output` (`-`: stdin).
        #[arg(
            value_name = "FILE",
            required_unless_present = "from",
            conflicts_with = "from"
        )]
        file: Option<PathBuf>,
        /// Same as FILE (kept for older scripts).
        #[arg(long, value_name = "FILE", hide = true)]
        from: Option<PathBuf>,
        /// Report format.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::report::Format,
        /// Output file (`-` or absent: stdout).
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Replace an existing output file owned by another user (a symlink is always
        /// refused).
        #[arg(long)]
        force: bool,
        /// Replace kernel addresses with 0 (function names and offsets stay), for a report
        /// posted where the KASLR offset must not leak.
        #[arg(long)]
        redact_addresses: bool,
        /// Debug vmlinux (with DWARF) of the recorded kernel, for file:line in stack
        /// frames; refused when its build id is not the recorded one. Without it, looked for
        /// under /usr/lib/debug by build id and release.
        #[arg(long, value_name = "FILE")]
        debug_vmlinux: Option<PathBuf>,
        /// Directory whose usr/lib/debug holds the debug files (vmlinux, modules' .ko) that
        /// are looked for by build id and release, e.g. where a `-dbg` package was
        /// unpacked with `dpkg -x`; default /.
        #[arg(long, value_name = "DIR")]
        debug_root: Option<PathBuf>,
    },
    /// Print a manual page (roff): the top level, or a subcommand's (`man record` is
    /// percpu-trace-record(1)); `--list` names them all.
    #[command(after_help = "EXAMPLES:\n    percpu-trace man record | man -l -")]
    Man {
        /// Subcommand whose page to print.
        page: Option<String>,
        /// Print the names of every page instead.
        #[arg(long, conflicts_with = "page")]
        list: bool,
    },
    /// Print the completion script for SHELL (packages install them; or
    /// `source <(percpu-trace completions bash)`).
    Completions {
        /// Shell to complete in.
        shell: clap_complete::Shell,
    },
}

/// Options about the kernel: where facts come from and how to attach.
#[derive(Debug, Clone, Args)]
pub struct KernelArgs {
    /// Which program family to attach.
    #[arg(long, value_enum, default_value = "auto")]
    pub attach: AttachMode,
    /// BTF file to use instead of /sys/kernel/btf/vmlinux.
    #[arg(long)]
    pub btf: Option<PathBuf>,
}

/// Options of live tracing.
#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    #[command(flatten)]
    pub kernel: KernelArgs,
    /// Event ring buffer size in MiB (a power of two): bigger rides out longer bursts
    /// while userspace cannot run, at the cost of locked kernel memory.
    #[arg(long, default_value_t = 4, value_parser = parse_ring_mib)]
    pub ring_buffer_mib: u32,
    /// Only this process (tgid, > 0); filtered in the kernel.
    #[arg(long, short = 'p', value_parser = crate::options::parse_pid)]
    pub pid: Option<u32>,
    /// Only findings involving a task with this comm (exact; `*` matches any run of
    /// characters, e.g. 'kworker/*').
    #[arg(long, value_parser = crate::options::parse_comm)]
    pub comm: Option<String>,
    /// Only findings involving a task in this cgroup (path under /sys/fs/cgroup, or id).
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Say more at start (the attach plan).
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

/// Parses a metrics address; `:PORT` means 127.0.0.1:PORT (loopback unless told otherwise).
pub fn parse_metrics_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("127.0.0.1{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not an address like 127.0.0.1:9752 or :9752"))
}

/// Parses a ring-buffer size in MiB: a power of two from 1 to 1024.
pub fn parse_ring_mib(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n.is_power_of_two() && n <= 1024 => Ok(n),
        _ => Err(format!("{s:?} is not a power of two between 1 and 1024")),
    }
}

/// Parses arguments and runs; the process exit code.
pub fn main() -> ExitCode {
    crate::manual::set_command(<Cli as clap::CommandFactory>::command);
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return clap_error(e),
    };
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
        let mut o = TraceOptions::resolve(
            self.kernel.options(),
            self.ring_buffer_mib,
            self.pid,
            self.comm.clone(),
            self.cgroup.as_deref(),
        )?;
        o.verbose = self.verbose;
        Ok(o)
    }
}

/// `--help`/`--version` print as clap does (exit 0); a usage error is one line and exit 2,
/// the same shape as every other error.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = crate::out!("{}", e.render());
            ExitCode::SUCCESS
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ");
            crate::warnln!("percpu-trace: {first} (see --help)");
            ExitCode::from(2)
        }
    }
}

/// Writes generated text (a manual page, a completion script) to stdout.
fn print_bytes(b: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    std::io::stdout()
        .write_all(b)
        .map_err(|e| anyhow::anyhow!("cannot write to stdout: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Check {
            json,
            kernel_files,
            system_map,
            debug_vmlinux,
            kernel,
            ..
        }) if !kernel_files.is_empty() => {
            let opts = crate::kernel::image::ImageOptions {
                system_map,
                debug_vmlinux,
                btf: kernel.btf.clone(),
            };
            crate::live::check_offline(&kernel_files, &opts, kernel.attach, json)
        }
        Some(Command::Check {
            json,
            probe,
            kernel,
            ..
        }) => crate::live::check(&kernel.options(), json, probe),
        Some(Command::Record {
            duration,
            output,
            force,
            max_size,
            metrics,
            metrics_max_requests,
            live,
        }) => {
            let metrics = metrics.map(|a| (a, metrics_max_requests));
            crate::live::record(&live.options()?, duration, output, force, max_size, metrics)
        }
        Some(Command::Man { list: true, .. }) => {
            print_bytes((crate::manual::page_names().join("\n") + "\n").as_bytes())
        }
        Some(Command::Man { page, .. }) => {
            print_bytes(&crate::manual::page(page.as_deref()).map_err(anyhow::Error::msg)?)
        }
        Some(Command::Completions { shell }) => print_bytes(&crate::manual::completions(shell)),
        Some(Command::Report {
            file,
            from,
            format,
            output,
            force,
            redact_addresses,
            debug_vmlinux,
            debug_root,
        }) => {
            // clap guarantees exactly one of them.
            let from = file.or(from).unwrap_or_else(|| PathBuf::from("-"));
            let opts = crate::report::ReportOptions {
                redact: redact_addresses,
                debug_vmlinux,
                debug_root,
            };
            let (text, findings) = crate::report::report_with_count(&from, format, &opts)?;
            let out = output.unwrap_or_else(|| PathBuf::from("-"));
            crate::report::write_report_with(&out, &text, force)?;
            Ok(crate::live::exit_status(findings))
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
        assert_eq!(parse_ring_mib("32"), Ok(32));
        assert!(parse_ring_mib("3").is_err());
        assert!(parse_ring_mib("2048").is_err());
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("percpu-trace").chain(args.iter().copied()))
    }

    #[test]
    fn flag_rules() {
        // -p/-d/-o short forms.
        let c = parse(&["record", "-p", "12", "-d", "5s", "-o", "-"]).unwrap();
        match c.command {
            Some(Command::Record {
                duration,
                output,
                live,
                ..
            }) => {
                assert_eq!(live.pid, Some(12));
                assert_eq!(duration, Some(Duration::from_secs(5)));
                assert_eq!(output, Some(PathBuf::from("-")));
            }
            other => panic!("{other:?}"),
        }
        // pid 0 would trace everything; negative is not a pid.
        assert!(parse(&["record", "--pid", "0"]).is_err());
        assert!(parse(&["record", "--pid=-3"]).is_err());
        // -d needs a unit and more than zero; --comm fits a task name.
        for args in [
            &["record", "-d", "1"][..],
            &["record", "-d", "0s"],
            &["record", "--comm", ""],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        // report takes its file positionally, `-` for stdin, and --from still works.
        for args in [&["report", "t.jsonl"][..], &["report", "--from", "t.jsonl"]] {
            match parse(args).unwrap().command {
                Some(Command::Report { file, from, .. }) => {
                    assert_eq!(file.or(from), Some(PathBuf::from("t.jsonl")))
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(parse(&["report", "-"]).is_ok());
        assert!(parse(&["report"]).is_err(), "a report needs a recording");
        assert!(parse(&["report", "a", "--from", "b"]).is_err());
        // Flags a subcommand does not use are refused, before or after it.
        assert!(parse(&["report", "t.jsonl", "--pid", "5"]).is_err());
        assert!(parse(&["check", "--comm", "x"]).is_err());
        assert!(parse(&["--pid", "5", "report", "t.jsonl"]).is_err());
        assert!(parse(&["--pid", "5"]).is_ok(), "the live UI takes --pid");
        // --metrics :PORT is loopback; a bad address is refused.
        assert_eq!(
            parse_metrics_addr(":0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert!(parse_metrics_addr("0.0.0.0:9752")
            .unwrap()
            .ip()
            .is_unspecified());
        assert!(parse_metrics_addr("localhost").is_err());
    }

    #[test]
    fn usage_errors_are_one_line_and_help_has_examples() {
        let e = parse(&["report", "--pid", "5", "x"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        for sub in ["check", "record", "report"] {
            let help = cmd
                .find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(help.contains("EXAMPLES:"), "{sub}: {help}");
            if sub != "check" {
                // One contract for both, said where the man page can carry it.
                assert!(
                    help.contains("EXIT STATUS:\n    0 no findings, 1 findings, 2 error"),
                    "{sub}: {help}"
                );
            }
        }
        assert_eq!(crate::live::exit_status(0), ExitCode::SUCCESS);
        assert_eq!(crate::live::exit_status(3), ExitCode::from(1));
        let top = cmd.render_long_help().to_string();
        for sub in ["man", "completions"] {
            assert!(top.contains(&format!("\n  {sub} ")), "{sub} listed: {top}");
        }
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
