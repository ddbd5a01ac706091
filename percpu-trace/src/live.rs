//! Live modes: `check` and headless `record`. Both start from the same discovery and plan.
use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::{
    cli::{KernelArgs, LiveArgs},
    engine::{Engine, EngineConfig, Finding, FindingUpdate},
    event::{Event, Frame},
    kernel::{self, decode::GfpLayout, plan::AttachPlan, Kernel},
    metrics::Metrics,
    pipeline::{Losses, Pipeline, Sink},
    probes::Probes,
    record::{Header, RecordingWriter},
    report,
    symbolize::Symbolizer,
};

/// Fails with one line unless this process may load and attach tracing programs.
pub fn require_privileges() -> Result<()> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
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

/// Discovery and plan, as every live mode starts.
pub fn discover(args: &KernelArgs) -> Result<(Kernel, AttachPlan)> {
    let opts = kernel::DiscoverOptions {
        btf: args.btf.clone(),
        ..Default::default()
    };
    let k = kernel::discover(&opts, &crate::probes::BpfProber)?;
    let plan = k.plan(args.attach)?;
    Ok((k, plan))
}

/// The engine configuration for this kernel: its gfp and task-flag bits and fix status.
pub fn engine_config(k: &Kernel) -> EngineConfig {
    EngineConfig {
        gfp_io: k.gfp.io(),
        gfp_fs: k.gfp.fs(),
        gfp_direct_reclaim: k.gfp.direct_reclaim(),
        gfp_kernel: k.gfp.gfp_kernel(),
        pf_memalloc_noio: k.pf.memalloc_noio,
        pf_memalloc_nofs: k.pf.memalloc_nofs,
        fix_present: k.fix.present,
        ..EngineConfig::default()
    }
}

/// The recording header for a live run on this kernel.
pub fn recording_header(k: &Kernel, plan: &AttachPlan) -> Header {
    let mut h = Header::new(engine_config(k));
    h.kernel_release = Some(k.release.clone());
    h.arch = Some(k.arch.clone());
    h.attach_mode = Some(format!("{:?}", plan.mode).to_lowercase());
    h.extra.insert(
        "plan".into(),
        serde_json::to_value(&plan.probes).unwrap_or_default(),
    );
    h.extra.insert(
        "gfp_layout".into(),
        serde_json::to_value(&k.gfp).unwrap_or_default(),
    );
    h
}

/// `percpu-trace check`.
pub fn check(args: &KernelArgs, json: bool) -> Result<ExitCode> {
    require_privileges()?;
    let (k, plan) = discover(args)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&kernel::check::render_json(&k, &plan))?
        );
    } else {
        print!("{}", kernel::check::render_text(&k, &plan));
    }
    Ok(ExitCode::SUCCESS)
}

/// Which findings the user wants to see (`--comm`, `--cgroup`); `--pid` is applied in the
/// kernel. Events are never filtered before the engine: a cross-task finding needs the
/// holder's events even when only the waiter matches.
#[derive(Clone, Debug, Default)]
pub struct FindingFilter {
    /// Task comm.
    pub comm: Option<String>,
    /// cgroup v2 id.
    pub cgroup: Option<u64>,
    /// Process id.
    pub pid: Option<u32>,
}

impl FindingFilter {
    /// True when some task of the finding matches every given criterion.
    pub fn matches(&self, f: &Finding) -> bool {
        f.tasks.iter().any(|t| {
            self.comm.as_ref().is_none_or(|c| &t.comm == c)
                && self.cgroup.is_none_or(|c| t.cgroup_id == c)
                && self.pid.is_none_or(|p| t.tgid == p || t.pid == p)
        })
    }
}

/// The headless consumer: engine, recording, one line per new finding.
struct HeadlessSink {
    engine: Engine,
    writer: Option<RecordingWriter<BufWriter<File>>>,
    io_error: Option<std::io::Error>,
    filter: FindingFilter,
    layout: GfpLayout,
    shown: usize,
    metrics: Option<std::sync::Arc<Metrics>>,
}

impl HeadlessSink {
    fn io(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r {
            self.io_error.get_or_insert(e);
        }
    }
}

impl Sink for HeadlessSink {
    fn event(&mut self, ev: &Event) {
        if let Some(w) = &mut self.writer {
            let r = w.write_event(ev);
            self.io(r);
        }
        if let Some(m) = &self.metrics {
            m.observe_event(ev);
        }
        for u in self.engine.process(ev) {
            if let FindingUpdate::New { index } = u {
                let f = &self.engine.findings()[index];
                if self.filter.matches(f) {
                    self.shown += 1;
                    println!("{}", report::finding_line_with(f, &self.layout));
                }
            }
        }
    }

    fn stack(&mut self, id: u32, frames: &[Frame]) {
        if let Some(w) = &mut self.writer {
            let r = w.write_stack(id, frames);
            self.io(r);
        }
    }

    fn progress(&mut self, _events: u64, losses: &Losses) {
        if let Some(m) = &self.metrics {
            m.set_losses(losses);
            m.update_engine(&self.engine);
        }
    }
}

/// Resolves `--cgroup`: a numeric id, or a path under /sys/fs/cgroup (its inode number is
/// the cgroup v2 id).
pub fn cgroup_id(arg: &str) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(id) = arg.parse::<u64>() {
        return Ok(id);
    }
    let p = Path::new(arg);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new("/sys/fs/cgroup").join(p)
    };
    let md = std::fs::metadata(&full)
        .with_context(|| format!("--cgroup {arg}: no cgroup at {}", full.display()))?;
    Ok(md.ino())
}

/// `percpu-trace record`.
pub fn record(
    args: &LiveArgs,
    duration: Option<Duration>,
    output: Option<PathBuf>,
    metrics_addr: Option<std::net::SocketAddr>,
) -> Result<ExitCode> {
    require_privileges()?;
    let filter = FindingFilter {
        comm: args.comm.clone(),
        cgroup: args.cgroup.as_deref().map(cgroup_id).transpose()?,
        pid: args.pid,
    };
    let (k, mut plan) = discover(&args.kernel)?;
    plan.config.filter_tgid = args.pid.unwrap_or(0);
    plan.ring_bytes = args.ring_buffer_mib << 20;
    let header = recording_header(&k, &plan);
    let writer = output
        .as_deref()
        .map(|p| {
            let f = File::create(p)
                .with_context(|| format!("cannot write recording {}", p.display()))?;
            RecordingWriter::new(BufWriter::new(f), &header)
                .with_context(|| format!("writing {}", p.display()))
        })
        .transpose()?;
    eprint!("{}", kernel::check::render_text(&k, &plan));
    let mut sink = HeadlessSink {
        engine: Engine::new(engine_config(&k)),
        writer,
        io_error: None,
        filter,
        layout: k.gfp.clone(),
        shown: 0,
        metrics: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(addr) = metrics_addr {
        // Bind before attaching so a bad address fails fast, in one line.
        let listener = rt.block_on(crate::metrics::bind(addr))?;
        let m = std::sync::Arc::new(Metrics::new());
        m.set_info(&report::ReportContext::live(&k, &plan, &[]));
        rt.spawn(crate::metrics::serve_listener(listener, m.clone()));
        eprintln!("percpu-trace: metrics on http://{addr}/metrics");
        sink.metrics = Some(m);
    }
    let btf = load_btf(&args.kernel, &plan)?;
    let summary = rt.block_on(trace(&plan, btf.as_ref(), duration, &mut sink))?;
    if let Some(mut w) = sink.writer.take() {
        let drops: BTreeMap<String, u64> = report::losses_map(&summary.losses);
        sink.io_error = w.write_drops(&drops).err().or(sink.io_error);
        match w.finish() {
            Ok(mut inner) => {
                if let Err(e) = inner.flush() {
                    sink.io_error.get_or_insert(e);
                }
            }
            Err(e) => {
                sink.io_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = sink.io_error {
        bail!("writing the recording failed: {e}");
    }
    let by_kind = count_by_kind(sink.engine.findings(), &sink.filter);
    eprintln!(
        "percpu-trace: summary: {} events, {} lost {}, findings: {}",
        summary.events,
        summary.losses.events_lost(),
        serde_json::to_string(&summary.losses).unwrap_or_default(),
        if by_kind.is_empty() {
            "none".to_string()
        } else {
            by_kind.join(", ")
        }
    );
    Ok(if sink.shown > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn count_by_kind(findings: &[Finding], filter: &FindingFilter) -> Vec<String> {
    let mut m: BTreeMap<&str, u64> = BTreeMap::new();
    for f in findings.iter().filter(|f| filter.matches(f)) {
        *m.entry(f.kind.id()).or_default() += f.count;
    }
    m.into_iter().map(|(k, n)| format!("{k}={n}")).collect()
}

/// Kernel BTF for fentry/fexit attachments (None when the plan has none).
pub fn load_btf(args: &KernelArgs, plan: &AttachPlan) -> Result<Option<aya::Btf>> {
    use crate::kernel::plan::Attachment;
    let needs = plan.probes.iter().any(|p| {
        matches!(
            p.attachment,
            Attachment::Fentry { .. } | Attachment::Fexit { .. }
        )
    });
    if !needs {
        return Ok(None);
    }
    let btf = match &args.btf {
        Some(p) => aya::Btf::parse_file(p, aya::Endianness::default()),
        None => aya::Btf::from_sys_fs(),
    }
    .map_err(|e| anyhow::anyhow!("reading kernel BTF for fentry: {e}"))?;
    Ok(Some(btf))
}

/// What a tracing run ends with.
pub struct TraceSummary {
    /// Events delivered.
    pub events: u64,
    /// Losses.
    pub losses: Losses,
}

/// Attached probes and the pipeline reading them. Dropping it detaches everything.
pub struct Session {
    // Field order matters: the pipeline holds maps of the object the probes own.
    pipeline: Pipeline,
    probes: Probes,
}

impl Session {
    /// Loads and attaches per `plan`; warns on stderr about probes that failed to attach.
    pub fn start(plan: &AttachPlan, btf: Option<&aya::Btf>, quiet: bool) -> Result<Self> {
        let mut probes = Probes::attach(plan, btf)?;
        if !quiet {
            for (prog, err) in &probes.failed {
                eprintln!("percpu-trace: warning: {prog} not attached: {err}");
            }
            eprintln!("percpu-trace: {} probe(s) attached", probes.attached.len());
        }
        let mut symbolizer =
            Symbolizer::from_kallsyms(Path::new("/proc/kallsyms")).unwrap_or_else(|e| {
                if !quiet {
                    eprintln!("percpu-trace: warning: stacks will not be symbolized: {e:#}");
                }
                Symbolizer::default()
            });
        // Source lines when Debian's debug vmlinux is installed; stacks are complete without.
        if let Some(vmlinux) = Symbolizer::debian_vmlinux() {
            if let Err(e) = symbolizer.attach_vmlinux(&vmlinux) {
                if !quiet {
                    eprintln!("percpu-trace: warning: no source lines in stacks: {e:#}");
                }
            }
        }
        let pipeline = Pipeline::new(&mut probes, symbolizer)?;
        Ok(Session { pipeline, probes })
    }

    /// Probe points that failed to attach although the plan had them.
    pub fn failed(&self) -> &[(String, String)] {
        &self.probes.failed
    }

    /// Streams events into `sink` until `stop` completes; progress about once a second.
    pub async fn stream(
        &mut self,
        sink: &mut dyn Sink,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<TraceSummary> {
        let pipeline = &mut self.pipeline;
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // The kernel side does not wake us for every record (see the eBPF `emit`), so
        // drain on a timer; this bounds the delay from event to finding.
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                r = pipeline.next_batch(sink) => { r?; }
                _ = poll.tick() => { pipeline.drain_now(sink); }
                _ = tick.tick() => {
                    pipeline.decoder.refresh_losses()?;
                    sink.progress(pipeline.decoder.events, &pipeline.decoder.losses);
                }
                _ = &mut stop => break,
            }
        }
        pipeline.drain_now(sink);
        pipeline.decoder.refresh_losses()?;
        Ok(TraceSummary {
            events: pipeline.decoder.events,
            losses: pipeline.decoder.losses.clone(),
        })
    }
}

/// Attaches, streams events into `sink` until the duration passes or SIGINT/SIGTERM, detaches.
pub async fn trace(
    plan: &AttachPlan,
    btf: Option<&aya::Btf>,
    duration: Option<Duration>,
    sink: &mut dyn Sink,
) -> Result<TraceSummary> {
    use tokio::signal::unix::{signal, SignalKind};
    // Signal handlers first, so a SIGTERM during attach still ends in a clean detach.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut session = Session::start(plan, btf, false)?;
    let stop = async {
        let forever = Duration::from_secs(100 * 365 * 86400);
        tokio::select! {
            _ = tokio::time::sleep(duration.unwrap_or(forever)) => {}
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
    };
    let summary = session.stream(sink, stop).await?;
    drop(session);
    Ok(summary)
}

/// `percpu-trace` without a subcommand: the live terminal UI.
pub fn tui(args: &LiveArgs) -> Result<ExitCode> {
    require_privileges()?;
    let (k, mut plan) = discover(&args.kernel)?;
    plan.config.filter_tgid = args.pid.unwrap_or(0);
    plan.ring_bytes = args.ring_buffer_mib << 20;
    let btf = load_btf(&args.kernel, &plan)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Attach before the terminal switches to raw mode, so errors print normally.
        let mut session = Session::start(&plan, btf.as_ref(), true)?;
        let header = crate::tui::Header::live(&k, &plan, session.failed(), engine_config(&k));
        let (tx, rx) = tokio::sync::mpsc::channel(1 << 16);
        let mut sink = crate::pipeline::ChannelSink::new(tx);
        let ui = crate::tui::run_live(header, rx);
        let res = tokio::select! {
            r = ui => r,
            r = session.stream(&mut sink, std::future::pending()) => r.map(|_| ()),
        };
        drop(session);
        res
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_ids_parse_or_fail_in_one_line() {
        assert_eq!(cgroup_id("1234").unwrap(), 1234);
        let e = cgroup_id("no/such/cgroup-xyz").unwrap_err();
        assert!(format!("{e:#}").contains("no cgroup at /sys/fs/cgroup/no/such/cgroup-xyz"));
    }
}
