//! What was traced and how: the facts about a run that a recording header carries and
//! every report and the TUI header show (host, kernel, fix evidence, attach mode and result,
//! filters, gfp layout). One struct, [`RunInfo`], serialized into the header and read back
//! from it, so a fact added here is written live and shown from a recording alike.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    engine::FindingFilter,
    kernel::{
        decode::GfpLayout,
        identity::KernelIdentity,
        plan::{AttachPlan, Attachment},
        FixVerdict, Kernel,
    },
};

/// Whether one planned probe point was observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeState {
    /// Attached and delivering.
    Attached,
    /// The plan had no way to observe it on this kernel.
    Unavailable,
    /// The plan said yes but attaching failed.
    Failed,
}

/// One probe point and how it was observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// What is observed, for humans ("pcpu_alloc entry").
    pub point: String,
    /// Program name in the eBPF object.
    pub program: String,
    /// "kprobe:pcpu_alloc_noprof", "tracepoint:percpu:percpu_alloc_percpu", "-".
    pub target: String,
    /// Attached, unavailable or failed.
    pub state: ProbeState,
    /// Why it is unavailable or failed, and what detection that costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The facts about a run (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// Version of the tool that traced.
    #[serde(default)]
    pub tool_version: Option<String>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `uname -r` of the traced kernel.
    #[serde(default)]
    pub kernel_release: Option<String>,
    /// `uname -v` (build number, config flavour, date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_build: Option<String>,
    /// Machine architecture (`x86_64`, `aarch64`).
    #[serde(default)]
    pub arch: Option<String>,
    /// Whether the kernel has the percpu fix series (`None`: unknown).
    #[serde(default)]
    pub fix_present: Option<bool>,
    /// The evidence for `fix_present`, one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_detail: Option<String>,
    /// The static fix verdict and per-patch evidence (`None` in recordings made before it:
    /// see [`RunInfo::fix_verdict`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<FixVerdict>,
    /// Build id, taint flags and analysis-relevant config of the traced kernel (`None` in
    /// recordings made before they were recorded: reports say what they lack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<KernelIdentity>,
    /// How probes were attached ("kprobe", "fentry", "tracepoint").
    #[serde(default)]
    pub attach_mode: Option<String>,
    /// Per-probe status (empty when unknown, e.g. an old recording).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeStatus>,
    /// `probes` come from a recorded attach plan: `Attached` there means "planned", since
    /// such a recording does not say whether attaching succeeded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probes_from_plan: bool,
    /// The run's finding filter (`--pid`, `--comm`, `--cgroup`).
    #[serde(default, skip_serializing_if = "FindingFilter::is_empty")]
    pub filter: FindingFilter,
    /// gfp bit layout of the traced kernel, for decoding gfp masks.
    #[serde(default = "GfpLayout::default_for_6x")]
    pub gfp_layout: GfpLayout,
    /// CLOCK_MONOTONIC nanoseconds (the clock of event timestamps) when the run started:
    /// what `run` records' `elapsed_ns` count from, so a replay places events on the
    /// recording's own clock (`None` in recordings made before it: replay estimates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_start_ns: Option<u64>,
}

impl Default for RunInfo {
    fn default() -> Self {
        RunInfo {
            tool_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            hostname: None,
            kernel_release: None,
            kernel_build: None,
            arch: None,
            fix_present: None,
            fix_detail: None,
            fix: None,
            identity: None,
            attach_mode: None,
            probes: Vec::new(),
            probes_from_plan: false,
            filter: FindingFilter::default(),
            gfp_layout: GfpLayout::default_for_6x(),
            clock_start_ns: None,
        }
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock BPF's `bpf_ktime_get_ns` stamps events
/// with (and `Instant`'s on Linux).
pub fn monotonic_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer given.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (r == 0).then(|| {
        u64::try_from(ts.tv_sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
    })
}

impl RunInfo {
    /// The facts of a live run on this host: discovery, the plan, the attach result
    /// (`failed`: [`crate::probes::Probes::failed`], program name and error) and the filter.
    pub fn live(
        kernel: &Kernel,
        plan: &AttachPlan,
        failed: &[(String, String)],
        filter: &FindingFilter,
    ) -> Self {
        RunInfo {
            hostname: hostname(),
            kernel_release: Some(kernel.release.clone()),
            kernel_build: kernel_build(),
            arch: Some(kernel.arch.clone()),
            fix_present: kernel.fix.present,
            fix_detail: Some(kernel.fix.detail.clone()),
            fix: Some(kernel.fix.fix_verdict()),
            identity: Some(kernel.identity.clone()),
            attach_mode: serde_json::to_value(plan.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string)),
            probes: probe_statuses(plan, failed),
            probes_from_plan: false,
            filter: filter.clone(),
            gfp_layout: kernel.gfp.clone(),
            ..RunInfo::default()
        }
    }

    /// The static fix verdict: the recorded one, or for a recording made before per-patch
    /// evidence, what its `fix_present` says (false: vulnerable, true: likely-fixed, none:
    /// unknown).
    pub fn fix_verdict(&self) -> FixVerdict {
        self.fix.clone().unwrap_or_else(|| {
            FixVerdict::from_legacy(self.fix_present, self.fix_detail.as_deref())
        })
    }

    /// The filters as given on the command line (`--comm x`), for reports.
    pub fn filters(&self) -> Vec<String> {
        self.filter.as_args()
    }

    /// Fills what recordings made before these facts were typed kept under the header's
    /// `extra` map (`hostname`, `kernel_build`, `fix_detail`, `gfp_layout`, `probes` or
    /// `plan`, `filters`). Unknown or malformed entries are ignored: a report from an
    /// older recording just says less.
    pub fn fill_from_legacy_extra(&mut self, x: &BTreeMap<String, serde_json::Value>) {
        let s = |k: &str| x.get(k).and_then(|v| v.as_str()).map(str::to_string);
        self.hostname = self.hostname.take().or_else(|| s("hostname"));
        self.kernel_build = self.kernel_build.take().or_else(|| s("kernel_build"));
        self.fix_detail = self.fix_detail.take().or_else(|| s("fix_detail"));
        if let Some(l) = x
            .get("gfp_layout")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
        {
            self.gfp_layout = l;
        }
        if self.probes.is_empty() {
            if let Some(p) = x
                .get("probes")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
            {
                self.probes = p;
            } else if let Some(plan) = x.get("plan").and_then(|v| v.as_array()) {
                self.probes = plan.iter().filter_map(planned_probe).collect();
                self.probes_from_plan = true;
            }
        }
        if self.filter.is_empty() {
            let args: Vec<String> = x
                .get("filters")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            for a in args {
                match a.split_once(' ') {
                    Some(("--pid", v)) => self.filter.pid = v.parse().ok(),
                    Some(("--comm", v)) => self.filter.comm = Some(v.to_string()),
                    Some(("--cgroup", v)) => self.filter.cgroup = v.parse().ok(),
                    _ => {}
                }
            }
        }
    }
}

/// A [`ProbeStatus`] from one serialized [`crate::kernel::plan::PlannedProbe`] (which has
/// no `Deserialize`: read field by field, so a changed plan format degrades to less detail).
pub(crate) fn planned_probe(v: &serde_json::Value) -> Option<ProbeStatus> {
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let a = v.get("attachment")?;
    let how = s(a, "how")?;
    let (target, state, detail) = match how.as_str() {
        "unavailable" => (
            "-".to_string(),
            ProbeState::Unavailable,
            Some(format!(
                "{}; loses: {}",
                s(a, "reason").unwrap_or_default(),
                s(v, "disables").unwrap_or_default()
            )),
        ),
        "tracepoint" => (
            format!(
                "{}:{}:{}",
                if a.get("raw").and_then(|r| r.as_bool()) == Some(true) {
                    "raw_tracepoint"
                } else {
                    "tracepoint"
                },
                s(a, "category").unwrap_or_default(),
                s(a, "name").unwrap_or_default()
            ),
            ProbeState::Attached,
            None,
        ),
        other => (
            format!("{other}:{}", s(a, "symbol").unwrap_or_default()),
            ProbeState::Attached,
            None,
        ),
    };
    Some(ProbeStatus {
        point: s(v, "point")?,
        program: s(v, "program").unwrap_or_default(),
        target,
        state,
        detail,
    })
}

/// Per-probe status from the plan and the attach failures.
pub fn probe_statuses(plan: &AttachPlan, failed: &[(String, String)]) -> Vec<ProbeStatus> {
    plan.probes
        .iter()
        .map(|p| {
            let target = match &p.attachment {
                Attachment::Kprobe { symbol } => format!("kprobe:{symbol}"),
                Attachment::Kretprobe { symbol } => format!("kretprobe:{symbol}"),
                Attachment::Fentry { symbol } => format!("fentry:{symbol}"),
                Attachment::Fexit { symbol } => format!("fexit:{symbol}"),
                Attachment::Tracepoint {
                    category,
                    name,
                    raw: false,
                } => format!("tracepoint:{category}:{name}"),
                Attachment::Tracepoint {
                    category,
                    name,
                    raw: true,
                } => format!("raw_tracepoint:{category}:{name}"),
                Attachment::Unavailable { .. } => "-".into(),
            };
            let fail = failed.iter().find(|(prog, _)| *prog == p.program);
            let (state, detail) = match (&p.attachment, fail) {
                (Attachment::Unavailable { reason }, _) => (
                    ProbeState::Unavailable,
                    Some(format!("{reason}; loses: {}", p.disables)),
                ),
                (_, Some((_, err))) => (
                    ProbeState::Failed,
                    Some(format!("{err}; loses: {}", p.disables)),
                ),
                _ => (ProbeState::Attached, None),
            };
            ProbeStatus {
                point: p.point.clone(),
                program: p.program.clone(),
                target,
                state,
                detail,
            }
        })
        .collect()
}

/// `uname -v` of the running kernel.
pub fn kernel_build() -> Option<String> {
    read_trimmed("/proc/sys/kernel/version")
}

/// Host name of this machine.
pub fn hostname() -> Option<String> {
    read_trimmed("/proc/sys/kernel/hostname")
}

fn read_trimmed(path: &str) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}
