//! What the UI says about the traced kernel and how it is observed. It wraps the report
//! module's [`ReportContext`] (kernel, fix status, attach mode, per-probe status, gfp names),
//! so the header on screen and an exported report say the same thing.
use std::path::Path;

use crate::{
    engine::EngineConfig,
    kernel::{plan::AttachPlan, Kernel},
    record::{self, ReplaySummary},
    report::{ProbeState, ProbeStatus, ReportContext, Source},
};

/// Everything the header shows that does not change while the UI runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Kernel, arch, fix status, attach mode, probes, gfp layout, live or replay.
    pub context: ReportContext,
    /// Engine configuration (the traced kernel's gfp/PF bits, limits).
    pub engine: EngineConfig,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            context: ReportContext::new(Source::Live),
            engine: EngineConfig::default(),
        }
    }
}

impl Header {
    /// A header from a report context and the engine configuration the live run uses.
    pub fn new(context: ReportContext, engine: EngineConfig) -> Self {
        Header { context, engine }
    }

    /// From live discovery, the plan and the attach result (`failed`:
    /// [`crate::probes::Probes::failed`]). `engine` is the configuration headless mode uses
    /// for this kernel.
    pub fn live(
        k: &Kernel,
        plan: &AttachPlan,
        failed: &[(String, String)],
        engine: EngineConfig,
    ) -> Self {
        Header {
            context: ReportContext::live(k, plan, failed),
            engine,
        }
    }

    /// From a recording's header (probe lines, gfp names and fix evidence come from its
    /// `extra` keys when the writer kept them).
    pub fn from_recording(path: &Path, h: &record::Header) -> Self {
        let summary = ReplaySummary {
            header: h.clone(),
            events: 0,
            stacks: Default::default(),
            missing_stacks: 0,
            drops: Default::default(),
            first_ns: None,
            last_ns: None,
            skipped_lines: 0,
            first_skipped: None,
            torn_tail: false,
        };
        let mut engine = h.engine.clone();
        if engine.fix_present.is_none() {
            engine.fix_present = h.fix_present;
        }
        Header {
            context: ReportContext::from_replay(path, &summary),
            engine,
        }
    }

    /// `uname -r`, or "unknown".
    pub fn kernel_release(&self) -> &str {
        self.context.kernel_release.as_deref().unwrap_or("unknown")
    }

    /// Architecture, or "?".
    pub fn arch(&self) -> &str {
        self.context.arch.as_deref().unwrap_or("?")
    }

    /// Attach mode, or "unknown".
    pub fn attach_mode(&self) -> &str {
        self.context.attach_mode.as_deref().unwrap_or("unknown")
    }

    /// Tracepoint-only: no pcpu_alloc entry and no nested allocations are seen.
    pub fn degraded(&self) -> bool {
        self.attach_mode() == "tracepoint"
    }

    /// Whether the kernel has the fix series.
    pub fn fix_present(&self) -> Option<bool> {
        self.context.fix_present
    }

    /// Replaying a recording (its path), rather than tracing live.
    pub fn replay_path(&self) -> Option<&Path> {
        match &self.context.source {
            Source::Recording { path } => Some(path),
            Source::Live => None,
        }
    }

    /// Probe points that are not observed.
    pub fn probes_off(&self) -> impl Iterator<Item = &ProbeStatus> {
        self.context
            .probes
            .iter()
            .filter(|p| p.state != ProbeState::Attached)
    }
}
