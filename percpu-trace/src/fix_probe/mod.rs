//! `percpu-trace check --probe`: proves the fix verdict on the spot instead of waiting for
//! traffic. After the normal check it attaches the probes as `record` does (own process
//! only), runs a bounded in-process load that makes percpu chunks get populated under
//! pcpu_alloc_mutex by an IO_FLUSHER thread and by an unconstrained one ([`load`]), feeds
//! the events through the same [`Engine`], and reconciles the static verdict with the
//! engine's run-time fix evidence exactly as reports of recordings do
//! ([`ReportContext::fix`], i.e. [`crate::engine::reconcile`]). Everything it attached is
//! detached, and every map closed, before it returns.
pub mod load;

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use crate::{
    engine::{Engine, FindingFilter, FixObservations},
    event::{Event, Frame},
    kernel::{
        plan::{self, AttachPlan},
        Kernel, PatchEvidence, Verdict,
    },
    options::KernelOptions,
    pipeline::{Losses, Sink},
    report::ReportContext,
    run::{ProbeState, RunInfo},
    session::{engine_config, Session},
};

/// How long the load may create maps.
const LOAD_TIME: Duration = Duration::from_secs(2);
/// Hard limit on the whole traced part (attach excluded), whatever the load does.
const TRACE_LIMIT: Duration = Duration::from_secs(8);

/// What `check --probe` found (the `probe` object of `check --json`).
#[derive(Clone, Debug, Serialize)]
pub struct ProbeOutcome {
    /// The probe ran (a refusal is an error instead, so this is always true when shown).
    pub ran: bool,
    /// Attach mode used (`fentry`, `kprobe`, `tracepoint`).
    pub attach_mode: String,
    /// The static verdict, before the probe's events.
    pub verdict_before: Verdict,
    /// The verdict reconciled with what the probe's events showed.
    pub verdict_after: Verdict,
    /// The probe upgraded likely-fixed to fixed.
    pub upgraded: bool,
    /// What the run changed, one line (None: nothing).
    pub note: Option<String>,
    /// The patches whose state the probe's events decided, with the run's evidence.
    pub evidence: Vec<PatchEvidence>,
    /// The engine's raw run-time fix observations (counts behind `evidence`).
    pub observed: FixObservations,
    /// Percpu allocations the load made (map entries).
    pub allocations: u64,
    /// Chunk populations seen under the mutex (any task of this process).
    pub populates: u64,
    /// Chunk creations seen under the mutex.
    pub chunk_creates: u64,
    /// Constrained (NOFS/NOIO) blocking allocations seen.
    pub constrained_allocations: u64,
    /// Constrained allocations seen holding the mutex (the slow path).
    pub constrained_took_mutex: u64,
    /// Events the probe delivered.
    pub events: u64,
    /// Events lost (ring buffer full, ...).
    pub events_lost: u64,
    /// What this attach mode cannot show about the fix (None: nothing).
    pub cannot_show: Option<String>,
    /// The load's size.
    pub load: load::LoadSpec,
    /// What the load did.
    pub done: load::LoadResult,
}

/// Whether a probe point of `run` whose name satisfies `pred` attached.
fn attached(run: &RunInfo, pred: impl Fn(&str) -> bool) -> bool {
    run.probes
        .iter()
        .any(|p| pred(&p.point) && p.state == ProbeState::Attached)
}

/// Why the probe cannot run from what `run` attached (or, before attaching, planned to),
/// or what it cannot show.
fn coverage(run: &RunInfo) -> Result<Option<String>> {
    let populate = attached(run, |p| p == plan::POINT_POPULATE);
    let pgtables = attached(run, |p| p.ends_with(plan::POINT_PGTABLE_SUFFIX));
    let tracepoints = attached(run, |p| plan::POINTS_PERCPU_TRACEPOINTS.contains(&p));
    Ok(match (populate, pgtables) {
        (true, true) => None,
        (true, false) => Some(
            "page-table allocations are not seen here, so populate-gfp cannot be shown at work \
             (backing-noio can): a likely-fixed kernel stays likely-fixed"
                .into(),
        ),
        (false, _) if tracepoints => Some(
            "tracepoint mode: the percpu tracepoints show chunk creation and constrained \
             allocations after the unlock, but not pcpu_populate_chunk's gfp nor the page-table \
             allocations, so neither backing-noio nor populate-gfp can be shown at work or \
             missing: that evidence needs kprobes or fentry, and the verdict stays the static one"
                .into(),
        ),
        (false, _) => bail!(
            "no probe or tracepoint of the percpu populate path can attach on this kernel \
             (pcpu_populate_chunk, percpu:percpu_create_chunk): nothing to prove the verdict with"
        ),
    })
}

/// Refuses with one line unless the probe can run: root, the mutex address known, a probe
/// on the populate path in the plan.
fn preflight(k: &Kernel, plan: &AttachPlan) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("check --probe needs root: it creates BPF maps and enters PR_SET_IO_FLUSHER");
    }
    if k.mutex.addr.is_none() {
        bail!(
            "check --probe: the address of pcpu_alloc_mutex is unknown, so no event can be \
             tied to its holder ({})",
            k.mutex.attempts.join("; ")
        );
    }
    let planned = RunInfo::live(k, plan, &[], &FindingFilter::default());
    coverage(&planned).map_err(|e| anyhow!("check --probe: {e}"))?;
    Ok(())
}

/// Feeds the probe's events to the engine; nothing else.
struct ProbeSink {
    engine: Engine,
}

impl Sink for ProbeSink {
    fn event(&mut self, ev: &Event) {
        self.engine.process(ev);
    }
    fn stack(&mut self, id: u32, frames: &[Frame]) {
        self.engine.stack(id, frames);
    }
    fn progress(&mut self, _events: u64, losses: &Losses) {
        self.engine.set_losses(losses.to_map());
    }
    fn activity(&mut self, totals: &std::collections::BTreeMap<String, u64>) {
        self.engine.set_kernel_activity(totals);
    }
}

/// Runs the probe on the kernel `k` with the check's `plan` (see the module documentation).
/// Errors are one line; nothing stays attached or allocated after it returns.
pub fn run(args: &KernelOptions, k: &Kernel, plan: &AttachPlan) -> Result<ProbeOutcome> {
    preflight(k, plan)?;
    let mut plan = plan.clone();
    // Only this process: the evidence is about the load's own holders, not whatever else
    // the host does meanwhile (the balance worker included).
    plan.config.filter_tgid = std::process::id();
    let spec = load::LoadSpec::new(load::possible_cpus(), LOAD_TIME);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut session = Session::start(&plan, args.btf.as_deref(), None, true)
            .map_err(|e| anyhow!("check --probe: cannot load or attach the probes: {e:#}"))?;
        let mut ctx = ReportContext::live(k, &plan, session.failed(), &FindingFilter::default());
        let cannot_show = match coverage(&ctx.run) {
            Ok(c) => c,
            Err(e) => {
                drop(session);
                bail!("check --probe: {e}");
            }
        };
        let mut sink = ProbeSink {
            engine: Engine::new(engine_config(k)),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let worker = std::thread::Builder::new()
            .name("pt-probe".into())
            .spawn(move || {
                let r = load::run(spec);
                let _ = tx.send(());
                r
            })?;
        let stop = async {
            tokio::select! {
                _ = rx => {}
                _ = tokio::time::sleep(TRACE_LIMIT) => {}
            }
            // The last records are submitted without a wakeup: give the drain a beat.
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let traced = session.stream(&mut sink, stop).await;
        // Detach before anything else can fail.
        drop(session);
        let done = worker
            .join()
            .map_err(|_| anyhow!("check --probe: the load thread panicked"))?
            .map_err(|e| anyhow!("check --probe: the load failed: {e:#}"))?;
        let traced = traced.map_err(|e| anyhow!("check --probe: tracing failed: {e:#}"))?;
        sink.engine.set_losses(traced.losses.to_map());
        let engine = &sink.engine;
        ctx.set_fix_observed(engine);
        let fix = ctx.fix();
        let static_fix = ctx.run.fix_verdict();
        let evidence = fix
            .fix
            .patches
            .iter()
            .filter(|p| static_fix.patches.iter().all(|s| s != *p))
            .cloned()
            .collect();
        let chunks = engine.tables().chunks();
        let activity = engine.activity();
        Ok(ProbeOutcome {
            ran: true,
            attach_mode: ctx.run.attach_mode.clone().unwrap_or_default(),
            verdict_before: fix.static_verdict,
            verdict_after: fix.fix.verdict,
            upgraded: fix.upgraded(),
            note: fix.note.clone(),
            evidence,
            observed: engine.fix_observations().clone(),
            allocations: done.allocations,
            populates: chunks.iter().map(|r| r.populates).sum(),
            chunk_creates: chunks.iter().map(|r| r.creates).sum(),
            constrained_allocations: activity.constrained_allocations,
            constrained_took_mutex: activity.constrained_took_mutex,
            events: traced.events,
            events_lost: engine.losses().events_lost(),
            cannot_show,
            load: spec,
            done,
        })
    })
}

/// The probe's part of `check`'s text.
pub fn render_text(o: &ProbeOutcome) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "probe ({} mode, {:.1} s): {} maps x {} x {} B on {} CPU(s) ({} percpu allocations, at most {} MiB held)",
        o.attach_mode,
        o.done.elapsed_ms as f64 / 1000.0,
        o.done.maps,
        o.load.entries,
        o.load.value_size,
        o.load.possible_cpus,
        o.allocations,
        o.load.max_bytes_held >> 20
    );
    let _ = writeln!(
        w,
        "  seen         {} chunk population(s), {} chunk creation(s) under the mutex; {} constrained allocation(s), {} of them holding it; {} event(s), {} lost",
        o.populates,
        o.chunk_creates,
        o.constrained_allocations,
        o.constrained_took_mutex,
        o.events,
        o.events_lost
    );
    if let Some(e) = &o.done.io_flusher_error {
        let _ = writeln!(
            w,
            "  no NOIO load {e}: only the unconstrained thread ran (it is the one both patches show in)"
        );
    }
    let _ = writeln!(
        w,
        "  verdict      {} -> {}{}",
        o.verdict_before,
        o.verdict_after,
        o.note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_else(|| " (unchanged by the probe)".into())
    );
    for p in &o.evidence {
        let _ = writeln!(
            w,
            "    {:<13} {:<8} {}",
            p.id.id(),
            p.state.id(),
            p.evidence
        );
    }
    if o.evidence.is_empty() {
        let _ = writeln!(
            w,
            "    no patch decided by the probe's events (no populate or page-table event of the kind that shows one)"
        );
    }
    if let Some(c) = &o.cannot_show {
        let _ = writeln!(w, "  cannot show  {c}");
    }
    s
}
