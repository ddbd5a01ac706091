//! The live modes: `check`, headless `record` and the live TUI, each a session
//! ([`crate::session`]) with its own consumer of events.
use std::{
    io::IsTerminal,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::{
    engine::{Engine, FindingUpdate},
    event::{Event, Frame},
    kernel::{self, decode::GfpLayout},
    live_recording::LiveRecording,
    metrics::Metrics,
    options::{KernelOptions, TraceOptions},
    pipeline::{Losses, Sink},
    record::Header,
    report::{self, ReportContext},
    session::{discover, engine_config, require_privileges, Session},
};

/// `percpu-trace check`; with `probe`, also `check --probe` ([`crate::fix_probe`]).
/// Without root it prints what this user can learn and what root adds (`--probe`, which
/// attaches programs, still needs root).
pub fn check(args: &KernelOptions, json: bool, probe: bool) -> Result<ExitCode> {
    if probe {
        require_privileges()?;
    }
    // check --probe reads kallsyms again for its stack symbols, as it always did.
    let (k, plan) = discover(args, false)?;
    if json {
        let mut v = kernel::check::render_json(&k, &plan);
        if probe {
            // One JSON document: the probe runs before anything is printed.
            v["probe"] = serde_json::to_value(crate::fix_probe::run(args, &k, &plan)?)?;
        }
        crate::outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        crate::out!("{}", kernel::check::render_text(&k, &plan))?;
        if probe {
            let o = crate::fix_probe::run(args, &k, &plan)?;
            crate::out!("{}", crate::fix_probe::render_text(&o))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `percpu-trace check --kernel FILE...`: the verdict of each kernel read offline, one line
/// each (one file: with the evidence), or a JSON array of `check --json` documents. A file
/// that cannot be read is one line on stderr, the others still run, and the exit is 2.
pub fn check_offline(
    files: &[PathBuf],
    opts: &kernel::image::ImageOptions,
    attach: kernel::plan::AttachMode,
    json: bool,
) -> Result<ExitCode> {
    let files = kernel::image::kernel_files(files).map_err(anyhow::Error::msg)?;
    let mut docs = Vec::new();
    let mut failed = false;
    for f in &files {
        let o = match kernel::image::inspect(f, opts) {
            Ok(o) => o,
            Err(e) => {
                crate::warnln!("percpu-trace: {}: {e}", f.display());
                failed = true;
                continue;
            }
        };
        if json {
            let plan = o.kernel.plan(attach)?;
            let mut v = kernel::check::render_offline_json(&o.kernel, &plan);
            v["image"] = serde_json::json!({
                "file": o.file,
                "package": o.package.as_ref().map(|(p, _)| p),
                "package_version": o.package.as_ref().map(|(_, v)| v),
                "steps": o.steps,
            });
            docs.push(v);
        } else {
            crate::outln!("{}", kernel::image::summary_line(&o))?;
            if files.len() == 1 {
                crate::out!("{}", kernel::image::detail_text(&o))?;
            }
        }
    }
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&docs)?)?;
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The exit contract of `record` and `report` (and every error): 0 when there is no
/// finding, 1 when there are findings, 2 on an error. The help's EXIT STATUS text (`cli`) says
/// the same (a test holds the two together).
pub fn exit_status(findings: usize) -> ExitCode {
    if findings > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The headless consumer: engine, recording, one line per new finding.
struct HeadlessSink {
    engine: Engine,
    writer: Option<LiveRecording>,
    /// Finding lines go to stderr when the recording itself is on stdout.
    lines_to_stderr: bool,
    /// A status line is kept at the bottom of stderr (a terminal only).
    status_line: bool,
    io_error: Option<std::io::Error>,
    layout: GfpLayout,
    shown: usize,
    metrics: Option<Arc<Metrics>>,
    started: Instant,
    last_activity: Option<std::collections::BTreeMap<String, u64>>,
}

impl HeadlessSink {
    fn io(&mut self, r: std::io::Result<()>) {
        if let Err(e) = r {
            self.io_error.get_or_insert(e);
        }
    }

    /// Pushes the recording to the disk and notes the run's length (once a second, and
    /// at once after a new finding: what is recorded must survive a kill).
    fn flush(&mut self, force_run_record: bool) {
        let Some(w) = &mut self.writer else { return };
        let r = w.sync(force_run_record);
        self.io(r);
    }
}

impl Sink for HeadlessSink {
    fn event(&mut self, ev: &Event) {
        if self.io_error.is_some() {
            return;
        }
        if let Some(w) = &mut self.writer {
            let r = w.event(ev);
            self.io(r);
        }
        let mut new_finding = false;
        for u in self.engine.process(ev) {
            if let FindingUpdate::New { index } = u {
                let f = &self.engine.findings()[index];
                if self.engine.is_selected(f) {
                    self.shown += 1;
                    new_finding = true;
                    let line = report::finding_line_with(f, &self.layout);
                    if self.status_line {
                        crate::warn!("\r\x1b[K");
                    }
                    if self.lines_to_stderr {
                        crate::warnln!("{line}");
                    } else {
                        // A closed stdout (journald gone, `| head`) must not stop tracing:
                        // the finding is in the recording and the summary too.
                        let _ = crate::outln!("{line}");
                    }
                }
            }
        }
        if new_finding {
            self.flush(true);
        }
    }

    fn stack(&mut self, id: u32, frames: &[Frame]) {
        self.engine.stack(id, frames);
        if let Some(w) = &mut self.writer {
            let r = w.stack(id, frames);
            self.io(r);
        }
    }

    fn progress(&mut self, events: u64, losses: &Losses) {
        let by_reason = losses.to_map();
        if let Some(w) = &mut self.writer {
            let r = w.drops(&by_reason);
            self.io(r);
        }
        self.engine.set_losses(by_reason);
        if self.status_line {
            crate::warn!(
                "\r\x1b[Kpercpu-trace: {events} events, {} findings, {} lost, {:.0}s",
                self.shown,
                self.engine.losses().events_lost(),
                self.started.elapsed().as_secs_f64()
            );
        }
        self.flush(false);
        if let Some(m) = &self.metrics {
            m.update_engine(&self.engine);
        }
    }

    fn activity(&mut self, totals: &std::collections::BTreeMap<String, u64>) {
        self.engine.set_kernel_activity(totals);
        // Only when it changed: an idle host adds nothing to the recording.
        if self.last_activity.as_ref() != Some(totals) {
            self.last_activity = Some(totals.clone());
            if let Some(w) = &mut self.writer {
                let r = w.activity(totals);
                self.io(r);
            }
        }
    }

    fn failed(&self) -> bool {
        self.io_error.is_some()
    }
}

/// `percpu-trace record`; `metrics_addr`: `--metrics` and `--metrics-max-requests`.
pub fn record(
    opts: &TraceOptions,
    duration: Option<Duration>,
    output: Option<PathBuf>,
    force: bool,
    max_size: Option<u64>,
    metrics_addr: Option<(std::net::SocketAddr, usize)>,
) -> Result<ExitCode> {
    require_privileges()?;
    let (mut k, mut plan) = discover(&opts.kernel, true)?;
    plan.config.filter_tgid = opts.pid.unwrap_or(0);
    plan.ring_bytes = opts.ring_buffer_mib << 20;
    if opts.verbose {
        crate::warn!("{}", kernel::check::render_text(&k, &plan));
    }
    let cfg = engine_config(&k);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Bind before attaching so a bad address fails fast, in one line.
    let listener = metrics_addr
        .map(|(addr, max)| {
            rt.block_on(crate::metrics::http::bind(addr))
                .map(|l| (l, max))
        })
        .transpose()?;
    // The output is opened (never blocking: a regular file or stdout, checked with fstat)
    // before any signal handler or probe, so a bad path fails fast in one line and nothing
    // can hold the process where a signal would not end it.
    let out = output
        .as_deref()
        .map(|p| crate::output::open_output(p, force))
        .transpose()
        .map_err(|e| anyhow::anyhow!("cannot write recording {e}"))?;
    // A signal always ends the run, even when the clean stop below is blocked.
    crate::stop_guard::install()?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        // Signal handlers first, so a signal during attach still ends in a clean detach.
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut session = Session::start(
            &plan,
            opts.kernel.btf.as_deref(),
            k.kallsyms_text.take(),
            !opts.verbose,
        )?;
        // The header is written after attaching, so it says what really attached.
        let ctx = ReportContext::live(&k, &plan, session.failed(), &opts.filter);
        let to_stdout = output.as_deref().is_some_and(crate::output::is_stdout);
        let now = Instant::now();
        let mut run = ctx.run.clone();
        run.clock_start_ns = crate::run::monotonic_ns();
        let writer = match (out, output.as_deref()) {
            (Some(out), Some(p)) => {
                // Never through a symlink, mode 0600 (it holds kernel addresses).
                let header = Header::with_run(cfg.clone(), run.clone());
                Some(
                    LiveRecording::start(out, p, header, max_size, now).map_err(|e| {
                        anyhow::anyhow!("cannot write recording {}: {e}", p.display())
                    })?,
                )
            }
            _ => None,
        };
        crate::warnln!(
            "{}",
            start_line(
                &ctx,
                &plan,
                session.attached(),
                session.failed(),
                output.as_deref()
            )
        );
        let mut sink = HeadlessSink {
            engine: Engine::with_filter(cfg.clone(), opts.filter.clone()),
            writer,
            io_error: None,
            lines_to_stderr: to_stdout,
            status_line: std::io::stderr().is_terminal(),
            layout: k.gfp.clone(),
            shown: 0,
            metrics: None,
            started: now,
            last_activity: None,
        };
        if let Some((listener, max_requests)) = listener {
            let m = Arc::new(Metrics::new());
            m.set_info(&ctx);
            let addr = listener.local_addr()?;
            tokio::spawn(crate::metrics::http::serve_listener(
                listener,
                m.clone(),
                max_requests,
            ));
            crate::warnln!("percpu-trace: metrics on http://{addr}/metrics");
            if addr.ip().is_unspecified() {
                crate::warnln!(
                    "percpu-trace: warning: metrics are served on every interface ({addr}); \
                     use 127.0.0.1:{} unless other hosts must scrape this one",
                    addr.port()
                );
            }
            sink.metrics = Some(m);
        }
        let stop = async {
            let forever = Duration::from_secs(100 * 365 * 86400);
            tokio::select! {
                // From `now`, the run's start in the recording: `-d 1s` is 1 s of it.
                _ = tokio::time::sleep_until((now + duration.unwrap_or(forever)).into()) => {}
                _ = sigint.recv() => {}
                _ = sigterm.recv() => {}
                _ = sighup.recv() => {}
            }
        };
        let summary = session.stream(&mut sink, stop).await?;
        // The traced window ends here; detaching (concurrent, ~0.1 s) is not part of it.
        let elapsed = sink.started.elapsed();
        drop(session);
        finish(sink, &summary.losses, summary.events, elapsed)
    })
}

/// The one line `record` starts with: what is traced, how, and where it goes.
fn start_line(
    ctx: &ReportContext,
    plan: &crate::kernel::plan::AttachPlan,
    attached: usize,
    failed: &[(String, String)],
    output: Option<&std::path::Path>,
) -> String {
    let unseen = plan.unseen().len();
    let planned = plan
        .probes
        .iter()
        .filter(|p| {
            !matches!(
                p.attachment,
                crate::kernel::plan::Attachment::Unavailable { .. }
            )
        })
        .count();
    let failed_text = if failed.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = failed.iter().map(|(p, _)| p.as_str()).collect();
        format!(" (failed: {}; -v for why)", names.join(", "))
    };
    format!(
        "percpu-trace: recording {} on {}: {} mode, {}/{planned} probes attached{failed_text}{}, fix verdict {}, filter {}, output {}",
        ctx.run.kernel_release.as_deref().unwrap_or("?"),
        ctx.run.hostname.as_deref().unwrap_or("?"),
        ctx.run.attach_mode.as_deref().unwrap_or("?"),
        attached,
        if unseen > 0 {
            format!(
                ", cannot see {} (`check` lists them)",
                kernel::check::unseen_count(unseen)
            )
        } else {
            String::new()
        },
        ctx.run.fix_verdict().verdict,
        if ctx.run.filter.is_empty() {
            "none".to_string()
        } else {
            ctx.run.filter.describe()
        },
        match output {
            Some(p) if crate::output::is_stdout(p) => "stdout".to_string(),
            Some(p) => p.display().to_string(),
            None => "none (findings only)".to_string(),
        }
    )
}

/// Closes the recording and prints the summary line; the exit code of `record`.
fn finish(
    mut sink: HeadlessSink,
    losses: &Losses,
    events: u64,
    elapsed: Duration,
) -> Result<ExitCode> {
    if sink.status_line {
        crate::warn!("\r\x1b[K");
    }
    let by_reason = losses.to_map();
    let mut rotations = 0;
    if let Some(w) = sink.writer.take() {
        rotations = w.rotations;
        if sink.io_error.is_none() {
            if let Err(e) = w.finish(&by_reason, elapsed) {
                sink.io_error.get_or_insert(e);
            }
        }
    }
    if rotations > 0 {
        crate::warnln!(
            "percpu-trace: the recording reached --max-size {rotations} time(s); the previous \
             part is FILE.1 (older parts were replaced)"
        );
    }
    sink.engine.set_losses(by_reason);
    crate::warnln!("{}", summary_line(&sink.engine, events, elapsed));
    if let Some(e) = sink.io_error {
        bail!("writing the recording failed, tracing stopped: {e}");
    }
    Ok(exit_status(sink.shown))
}

/// The summary `record` ends with: events, time, losses as perf says them, findings (or
/// what was seen when there were none).
fn summary_line(engine: &Engine, events: u64, elapsed: Duration) -> String {
    let counts = engine.selected_counts();
    let snap = engine.snapshot();
    let dropped = snap.counters.findings_dropped;
    format!(
        "percpu-trace: summary: {events} events in {:.1}s, {}, findings: {}{}",
        elapsed.as_secs_f64(),
        engine.losses().describe(),
        if counts.is_empty() {
            let a = &snap.activity;
            format!(
                "none ({} percpu allocations, {} constrained, {} of them took the mutex)",
                a.percpu_allocations
                    .map_or("uncounted".to_string(), |n| n.to_string()),
                a.constrained_allocations,
                a.constrained_took_mutex
            )
        } else {
            counts
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        if dropped > 0 {
            format!(" ({dropped} occurrence(s) past the findings cap not kept)")
        } else {
            String::new()
        }
    )
}

/// `percpu-trace` without a subcommand: the live terminal UI.
pub fn tui(opts: &TraceOptions) -> Result<ExitCode> {
    require_privileges()?;
    let (mut k, mut plan) = discover(&opts.kernel, true)?;
    plan.config.filter_tgid = opts.pid.unwrap_or(0);
    plan.ring_bytes = opts.ring_buffer_mib << 20;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Attach before the terminal switches to raw mode, so errors print normally.
        let mut session = Session::start(
            &plan,
            opts.kernel.btf.as_deref(),
            k.kallsyms_text.take(),
            true,
        )?;
        let header =
            crate::tui::Header::live(&k, &plan, session.failed(), engine_config(&k), &opts.filter);
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
    use crate::kernel::{fixture_tests::kernel, plan::AttachMode};

    #[test]
    fn record_says_what_check_says() {
        // record said "fix absent" and "9 probe point(s) unavailable" where check said
        // "vulnerable" and "cannot see 7 probe point(s)".
        let k = kernel("host-6.18");
        let plan = k.plan(AttachMode::Auto).unwrap();
        let ctx = ReportContext::live(&k, &plan, &[], &Default::default());
        let line = start_line(&ctx, &plan, 5, &[], None);
        let check = kernel::check::render_text(&k, &plan);
        let verdict = k.fix.verdict.to_string();
        assert!(
            check.contains(&format!("fix verdict  {verdict}")),
            "{check}"
        );
        assert!(line.contains(&format!("fix verdict {verdict}")), "{line}");
        assert!(!line.contains("fix absent"), "{line}");
        let count = kernel::check::unseen_count(plan.unseen().len());
        assert!(line.contains(&format!("cannot see {count}")), "{line}");
        assert!(
            check.contains(&format!("cannot see on this host ({count})")),
            "{check}"
        );
    }

    #[test]
    fn summary_says_losses_like_perf() {
        let mut e = Engine::new(crate::engine::EngineConfig::default());
        e.set_losses(
            [
                ("ringbuf_full".to_string(), 7),
                ("task_map_full".to_string(), 2),
                ("stack".to_string(), 0),
            ]
            .into(),
        );
        let line = summary_line(&e, 100, Duration::from_millis(1020));
        assert!(
            line.contains("100 events in 1.0s, 9 events lost (ringbuf_full: 7, task_map_full: 2), findings: none"),
            "{line}"
        );
        assert!(!line.contains('{') && !line.contains('"'), "{line}");
    }
}
