//! A live tracing session: privileges, discovery and plan, loading and attaching the
//! probes, and streaming decoded events into a [`Sink`] until told to stop. `check`,
//! `record` and the TUI all start here.
use std::{path::Path, time::Duration};

use anyhow::{bail, Context, Result};

use crate::{
    engine::EngineConfig,
    kernel::{self, plan::AttachPlan, symbols::KallsymsText, Kernel},
    options::KernelOptions,
    pipeline::{Losses, Pipeline, Sink},
    probes::Probes,
    symbolize::{Symbolizer, TextSymbols},
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

/// Discovery and plan, as every live mode starts. `keep_kallsyms_text`: for
/// [`Session::start`]'s stack symbols (see [`kernel::DiscoverOptions`]).
pub fn discover(args: &KernelOptions, keep_kallsyms_text: bool) -> Result<(Kernel, AttachPlan)> {
    let opts = kernel::DiscoverOptions {
        btf: args.btf.clone(),
        keep_kallsyms_text,
        ..Default::default()
    };
    let k = kernel::discover(&opts, &crate::probes::BpfProber)?;
    let plan = k.plan(args.attach)?;
    Ok((k, plan))
}

/// The engine configuration for this kernel: its gfp and task-flag bits and fix status.
pub fn engine_config(k: &Kernel) -> EngineConfig {
    EngineConfig::for_kernel(k)
}

/// What a tracing run ends with.
pub struct TraceSummary {
    /// Events delivered.
    pub events: u64,
    /// Losses.
    pub losses: Losses,
}

/// The symbolizer for stacks from kallsyms `text` (read on another thread), plus source
/// lines when Debian's debug vmlinux is installed (stacks are complete without).
fn stack_symbolizer(text: Result<TextSymbols>, quiet: bool) -> Symbolizer {
    let mut symbolizer = text.map(Symbolizer::from).unwrap_or_else(|e| {
        if !quiet {
            crate::warnln!("percpu-trace: warning: stacks will not be symbolized: {e:#}");
        }
        Symbolizer::default()
    });
    if let Some(vmlinux) = Symbolizer::debian_vmlinux() {
        if let Err(e) = symbolizer.attach_vmlinux(&vmlinux) {
            if !quiet {
                crate::warnln!("percpu-trace: warning: no source lines in stacks: {e:#}");
            }
        }
    }
    symbolizer
}

/// Attached probes and the pipeline reading them. Dropping it detaches everything.
pub struct Session {
    // Field order matters: the pipeline holds maps of the object the probes own.
    pipeline: Pipeline,
    probes: Probes,
}

impl Session {
    /// Loads and attaches per `plan` (`btf_file`: `--btf`, for fentry/fexit); warns on
    /// stderr about probes that failed to attach. `kallsyms_text`: the /proc/kallsyms text
    /// discovery read ([`Kernel::kallsyms_text`], taken so that it is freed once the stack
    /// symbols are built), else /proc/kallsyms is read again.
    pub fn start(
        plan: &AttachPlan,
        btf_file: Option<&Path>,
        kallsyms_text: Option<KallsymsText>,
        quiet: bool,
    ) -> Result<Self> {
        // Building the stack symbols (~0.05 s from discovery's text, ~0.2 s reading
        // kallsyms again) overlaps loading and attaching, which mostly wait for the kernel:
        // `record -d 1s` should take about a second.
        let kallsyms = Path::new("/proc/kallsyms");
        let shared = kallsyms_text.clone();
        let text =
            std::thread::Builder::new()
                .name("kallsyms".into())
                .spawn(move || match shared {
                    Some(KallsymsText(text)) => TextSymbols::from_text(&text, kallsyms),
                    None => TextSymbols::read(kallsyms),
                });
        let mut probes = Probes::attach(plan, btf_file)?;
        if !quiet {
            if let Some(why) = &probes.task_btf_refused {
                crate::warnln!(
                    "percpu-trace: warning: task flags are read with bpf_probe_read_kernel: the BTF task pointer was refused ({why})"
                );
            }
            for (prog, err) in &probes.failed {
                crate::warnln!("percpu-trace: warning: {prog} not attached: {err}");
            }
            crate::warnln!("percpu-trace: {} probes attached", probes.attached.len());
        }
        let text = match text {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("reading kallsyms failed"))),
            // No thread to spare: build it here.
            Err(_) => match &kallsyms_text {
                Some(KallsymsText(text)) => TextSymbols::from_text(text, kallsyms),
                None => TextSymbols::read(kallsyms),
            },
        };
        drop(kallsyms_text); // the symbols are built: the text is not needed any more
        let symbolizer = stack_symbolizer(text, quiet);
        let pipeline = Pipeline::new(&mut probes, symbolizer)?;
        Ok(Session { pipeline, probes })
    }

    /// Programs attached.
    pub fn attached(&self) -> usize {
        self.probes.attached.len()
    }

    /// Probe points that failed to attach although the plan had them.
    pub fn failed(&self) -> &[(String, String)] {
        &self.probes.failed
    }

    /// Streams events into `sink` until `stop` completes or the sink reports a failure
    /// ([`Sink::failed`], e.g. the recording's disk is full); progress about once a
    /// second.
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
                    sink.activity(&pipeline.decoder.kernel_activity);
                }
                _ = &mut stop => break,
            }
            if sink.failed() {
                // Stop reading at once; the caller reports why and ends the run.
                return Ok(TraceSummary {
                    events: pipeline.decoder.events,
                    losses: pipeline.decoder.losses.clone(),
                });
            }
        }
        pipeline.drain_now(sink);
        pipeline.decoder.refresh_losses()?;
        sink.activity(&pipeline.decoder.kernel_activity);
        Ok(TraceSummary {
            events: pipeline.decoder.events,
            losses: pipeline.decoder.losses.clone(),
        })
    }
}
