//! Live modes: `check` and headless `record`. Both start from the same discovery and plan.
use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::{
    cli::{KernelArgs, LiveArgs},
    event::{Event, Frame},
    kernel::{self, plan::AttachPlan},
    pipeline::{Pipeline, Sink},
    probes::Probes,
    symbolize::Symbolizer,
};

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails with one line unless this process may load and attach tracing programs.
pub fn require_privileges() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let has = |c: u32| cap_eff & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    bail!("needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN) to load eBPF programs: run it with sudo")
}

fn discover(args: &KernelArgs) -> Result<(kernel::Kernel, AttachPlan)> {
    let opts = kernel::DiscoverOptions { btf: args.btf.clone(), ..Default::default() };
    let k = kernel::discover(&opts)?;
    let plan = k.plan(args.attach)?;
    Ok((k, plan))
}

/// `percpu-trace check`.
pub fn check(args: &KernelArgs, json: bool) -> Result<ExitCode> {
    require_privileges()?;
    let (k, plan) = discover(args)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&kernel::check::render_json(&k, &plan))?);
    } else {
        print!("{}", kernel::check::render_text(&k, &plan));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the recording as JSON lines.
struct RecordSink {
    out: Option<BufWriter<File>>,
    io_error: Option<std::io::Error>,
}

impl RecordSink {
    fn line(&mut self, v: serde_json::Value) {
        if let Some(out) = &mut self.out {
            if let Err(e) = writeln!(out, "{v}") {
                self.io_error.get_or_insert(e);
            }
        }
    }
}

impl Sink for RecordSink {
    fn event(&mut self, ev: &Event) {
        let mut v = serde_json::to_value(ev).unwrap_or_default();
        v["t"] = "event".into();
        self.line(v);
    }

    fn stack(&mut self, id: u32, frames: &[Frame]) {
        self.line(serde_json::json!({"t": "stack", "id": id, "frames": frames}));
    }
}

fn create_output(path: &Path) -> Result<BufWriter<File>> {
    let f = File::create(path).with_context(|| format!("cannot write recording {}", path.display()))?;
    Ok(BufWriter::new(f))
}

/// `percpu-trace record`.
pub fn record(args: &LiveArgs, duration: Option<Duration>, output: Option<PathBuf>) -> Result<ExitCode> {
    require_privileges()?;
    let out = output.as_deref().map(create_output).transpose()?;
    let (k, mut plan) = discover(&args.kernel)?;
    plan.config.filter_tgid = args.pid.unwrap_or(0);
    eprint!("{}", kernel::check::render_text(&k, &plan));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut sink = RecordSink { out, io_error: None };
    rt.block_on(trace(&plan, duration, &mut sink))?;
    if let Some(e) = sink.io_error {
        bail!("writing the recording failed: {e}");
    }
    if let Some(out) = &mut sink.out {
        out.flush().context("flushing the recording")?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn trace(plan: &AttachPlan, duration: Option<Duration>, sink: &mut dyn Sink) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut probes = Probes::attach(plan)?;
    for (prog, err) in &probes.failed {
        eprintln!("percpu-trace: warning: {prog} not attached: {err}");
    }
    eprintln!("percpu-trace: {} probe(s) attached", probes.attached.len());
    let symbolizer = Symbolizer::from_kallsyms(Path::new("/proc/kallsyms")).unwrap_or_else(|e| {
        eprintln!("percpu-trace: warning: stacks will not be symbolized: {e:#}");
        Symbolizer::default()
    });
    let mut pipeline = Pipeline::new(&mut probes, symbolizer)?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let deadline = tokio::time::sleep(duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = pipeline.next_batch(sink) => { r?; }
            _ = tick.tick() => { pipeline.refresh_losses()?; }
            _ = &mut deadline => break,
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    pipeline.refresh_losses()?;
    eprintln!(
        "percpu-trace: {} events, {} lost ({:?})",
        pipeline.events,
        pipeline.losses.events_lost(),
        pipeline.losses
    );
    drop(pipeline);
    drop(probes);
    Ok(())
}
