//! The facts discovery produces: [`Kernel`] and its parts, plain data.
use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::decode::{GfpLayout, MutexLayout};
use super::symbols::{MutexSource, ResolvedSymbol};
use super::tracefs::{Tracefs, TracepointFormat};

/// Where discovery reads from, and what it may do.
#[derive(Clone, Debug)]
pub struct DiscoverOptions {
    /// BTF given by the user (raw BTF or a vmlinux ELF with .BTF); default /sys/kernel/btf/vmlinux.
    pub btf: Option<PathBuf>,
    /// Kernel symbols.
    pub kallsyms: PathBuf,
    /// System.map for the pcpu_alloc_mutex fallback; default /boot/System.map-$(uname -r).
    pub system_map: Option<PathBuf>,
    /// Mount tracefs at /sys/kernel/tracing when it is not mounted (needs root).
    pub mount_tracefs: bool,
    /// Try loading a minimal fentry program to learn whether fentry works.
    pub probe_fentry: bool,
    /// When pcpu_alloc_mutex is in neither kallsyms nor System.map, find it by reading the
    /// code that locks it through a BPF test run (`mutex_scan`).
    pub scan_code: bool,
    /// Keep the kallsyms text read for the facts ([`Kernel::kallsyms_text`]), for a live
    /// session's stack symbols: kallsyms is then read once per run, not twice (each read
    /// is ~0.1 s of kernel time on a 2-vCPU host, and the second one was on the path to
    /// opening the tracing window).
    pub keep_kallsyms_text: bool,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            btf: None,
            kallsyms: PathBuf::from("/proc/kallsyms"),
            system_map: None,
            mount_tracefs: true,
            probe_fentry: true,
            scan_code: true,
            keep_kallsyms_text: false,
        }
    }
}

/// Privileges of this process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Privileges {
    /// Effective uid is 0.
    pub root: bool,
    /// CAP_BPF in the effective set.
    pub cap_bpf: bool,
    /// CAP_PERFMON.
    pub cap_perfmon: bool,
    /// CAP_SYS_ADMIN.
    pub cap_sys_admin: bool,
}

impl Privileges {
    /// May load and attach tracing programs.
    pub fn can_trace(&self) -> bool {
        self.cap_sys_admin || (self.cap_bpf && self.cap_perfmon)
    }
}

/// Whether a facility is there, and how that was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Support {
    /// Usable.
    pub available: bool,
    /// How it was found, or why not.
    pub detail: String,
}

/// Result of trying to load a minimal fentry (BPF_PROG_TYPE_TRACING) program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Fentry {
    /// The kernel accepted it.
    Supported {
        /// Function it was verified against.
        target: String,
    },
    /// The kernel refused it.
    Refused {
        /// Function it was tried on.
        target: String,
        /// errno name and text.
        error: String,
    },
    /// Not tried.
    NotProbed {
        /// Why.
        reason: String,
    },
}

/// BTF in use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BtfStatus {
    /// File read, when one was.
    pub path: Option<PathBuf>,
    /// Given with --btf.
    pub from_user: bool,
    /// Why there is none.
    pub error: Option<String>,
}

/// /proc/kallsyms as read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KallsymsStatus {
    /// File read.
    pub path: PathBuf,
    /// vmlinux symbols read.
    pub symbols: usize,
    /// All addresses were zero (kptr_restrict or missing privilege).
    pub zeroed: bool,
    /// /proc/sys/kernel/kptr_restrict.
    pub kptr_restrict: Option<u32>,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// Where a function's parameter list came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamSource {
    /// BTF of the kernel.
    Btf,
    /// Built-in table (function not in BTF, or no BTF): documented in `tables::TABLE`.
    Table,
}

/// Parameter names of one probed function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// Names in order.
    pub params: Vec<String>,
    /// Where they came from.
    pub source: ParamSource,
    /// Why BTF could not be used, when `source` is Table.
    pub note: Option<String>,
}

impl Signature {
    /// Position of the first parameter named one of `names`.
    pub fn index(&self, names: &[&str]) -> Option<u32> {
        super::btf::param_index(&self.params, names)
    }
}

/// pcpu_alloc_mutex: address and owner-word layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MutexInfo {
    /// Address, when known (JSON: a hex string).
    #[serde(with = "crate::hex::opt")]
    pub addr: Option<u64>,
    /// Where the address came from.
    pub source: Option<MutexSource>,
    /// Every way tried that failed, in order.
    pub attempts: Vec<String>,
    /// Owner-word layout (None without BTF).
    pub layout: Option<MutexLayout>,
    /// Where the layout came from.
    pub layout_source: String,
    /// The member of struct mutex the code scan checks a candidate with, and its byte
    /// offset: `wait_list` (a list head, empty when it points at itself) or, on newer
    /// kernels, `first_waiter` (a pointer, NULL when no waiter). None on PREEMPT_RT and
    /// without BTF. Read from the same BTF as the layout, in `analyze`; internal to the
    /// scan, so not part of the JSON facts.
    #[serde(skip)]
    pub wait_field: Option<(String, u32)>,
}

/// Detections that need the mutex address (said in `check` when it is unknown).
pub const MUTEX_LOST: &[&str] = &[
    "holder checks (is the task in reclaim/vmalloc/page-table allocation the owner of pcpu_alloc_mutex?)",
    "waiters (lock:contention_begin/end filtered on pcpu_alloc_mutex)",
    "cross_task (an unconstrained holder reclaiming while a constrained task waits)",
];

/// task_struct offsets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TaskOffsets {
    /// task_struct.flags.
    pub flags: Option<u32>,
    /// task_struct.pid.
    pub pid: Option<u32>,
    /// task_struct.comm.
    pub comm: Option<u32>,
}

/// Task flag bits the BPF side tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PfFlags {
    /// PF_MEMALLOC_NOFS.
    pub memalloc_nofs: u32,
    /// PF_MEMALLOC_NOIO.
    pub memalloc_noio: u32,
    /// Where they came from.
    pub source: String,
}

/// One tracepoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tracepoint {
    /// Category ("vmscan").
    pub category: String,
    /// Name.
    pub name: String,
    /// It exists in tracefs (None when tracefs could not be read).
    pub exists: Option<bool>,
    /// Record layout, when known.
    pub format: Option<TracepointFormat>,
    /// Its `TP_PROTO` parameter names from BTF, in the order a raw tracepoint program
    /// receives them (`btf::trace_args`); `Err`: why a raw tracepoint cannot read it.
    #[serde(serialize_with = "ser_args")]
    pub raw_args: std::result::Result<Vec<String>, String>,
}

impl Tracepoint {
    /// Position of the `TP_PROTO` argument `name`, for a raw tracepoint program (None when
    /// BTF does not name it).
    pub fn raw_arg(&self, name: &str) -> Option<u32> {
        let args = self.raw_args.as_ref().ok()?;
        args.iter().position(|n| n == name).map(|i| i as u32)
    }
}

/// `raw_args` in JSON: the names, or `{"unknown": why}`.
fn ser_args<S: serde::Serializer>(
    v: &std::result::Result<Vec<String>, String>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::Serialize;
    match v {
        Ok(names) => names.serialize(s),
        Err(why) => serde_json::json!({ "unknown": why }).serialize(s),
    }
}

/// Whether the upstream fix series ("honor GFP in pcpu_get_vm_areas" ...) is in this kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FixStatus {
    /// pcpu_get_vm_areas takes a gfp (BTF): true: present; false: absent; None: cannot
    /// tell. Kept for compatibility; [`FixStatus::verdict`] is the answer.
    pub present: Option<bool>,
    /// The evidence for `present`, one line.
    pub detail: String,
    /// Exposure of this kernel from every static source (never `fixed`: that takes a run).
    pub verdict: Verdict,
    /// Each part of the story, in [`PatchId::ALL`] order, with its evidence.
    pub patches: Vec<PatchEvidence>,
}

impl FixStatus {
    /// The verdict and patches as one value (what a recording header carries).
    pub fn fix_verdict(&self) -> FixVerdict {
        FixVerdict {
            verdict: self.verdict,
            patches: self.patches.clone(),
        }
    }
}

/// How exposed a kernel is to NOFS/NOIO reclaim recursion under pcpu_alloc_mutex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Without 9a5b183941b5 NOFS/NOIO callers never take the mutex.
    NotAffected,
    /// 9a5b183941b5 without any part of the fix series.
    Vulnerable,
    /// Some parts of the fix series, not all: the missing ones say what is still open.
    PartiallyFixed,
    /// Static evidence says every part is in (or none is known missing); no run proved it.
    LikelyFixed,
    /// Static evidence plus a run that showed the populate and backing patches at work.
    Fixed,
    /// Not enough evidence.
    Unknown,
}

impl Verdict {
    /// The id used in JSON, metrics and text (`partially-fixed`).
    pub fn id(self) -> &'static str {
        match self {
            Verdict::NotAffected => "not-affected",
            Verdict::Vulnerable => "vulnerable",
            Verdict::PartiallyFixed => "partially-fixed",
            Verdict::LikelyFixed => "likely-fixed",
            Verdict::Fixed => "fixed",
            Verdict::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// The commits that decide the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchId {
    /// 9a5b183941b5 "mm, percpu: do not consider sleepable allocations atomic" (the cause).
    Regression,
    /// Fix part 1: "mm/vmalloc: honor GFP constraints in pcpu_get_vm_areas()".
    VmAreasGfp,
    /// Fix part 2: "mm/percpu: honor GFP constraints when populating chunks".
    PopulateGfp,
    /// Fix part 3: "mm/percpu: avoid IO/FS reclaim in backing allocations".
    BackingNoio,
}

impl PatchId {
    /// Every id, in the order reports list them.
    pub const ALL: [PatchId; 4] = [
        PatchId::Regression,
        PatchId::VmAreasGfp,
        PatchId::PopulateGfp,
        PatchId::BackingNoio,
    ];

    /// The id used in JSON and text (`backing-noio`).
    pub fn id(self) -> &'static str {
        match self {
            PatchId::Regression => "regression",
            PatchId::VmAreasGfp => "vm-areas-gfp",
            PatchId::PopulateGfp => "populate-gfp",
            PatchId::BackingNoio => "backing-noio",
        }
    }

    /// The commit subject, for humans.
    pub fn title(self) -> &'static str {
        match self {
            PatchId::Regression => {
                "9a5b183941b5 mm, percpu: do not consider sleepable allocations atomic"
            }
            PatchId::VmAreasGfp => "mm/vmalloc: honor GFP constraints in pcpu_get_vm_areas()",
            PatchId::PopulateGfp => "mm/percpu: honor GFP constraints when populating chunks",
            PatchId::BackingNoio => "mm/percpu: avoid IO/FS reclaim in backing allocations",
        }
    }
}

impl std::fmt::Display for PatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// Whether one patch is in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchState {
    /// In.
    Present,
    /// Not in.
    Absent,
    /// Cannot tell.
    Unknown,
}

impl PatchState {
    /// `present`, `absent`, `unknown`.
    pub fn id(self) -> &'static str {
        match self {
            PatchState::Present => "present",
            PatchState::Absent => "absent",
            PatchState::Unknown => "unknown",
        }
    }
}

/// One patch, its state and the evidence (one line naming its source).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchEvidence {
    /// Which patch.
    pub id: PatchId,
    /// In, out or unknown.
    pub state: PatchState,
    /// Why, naming the source ("BTF: ...", "release ...", "code of pcpu_alloc_noprof ...").
    pub evidence: String,
    /// Which of several sources decided the state, where there are several (the regression:
    /// pcpu_alloc's code or the version table). Absent in recordings made before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<DecidedBy>,
}

/// The source that decided a patch state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecidedBy {
    /// The kernel's own machine code.
    Code,
    /// The built-in table of versions that carry the patch.
    VersionTable,
    /// Implied by a part of the fix series being present (the series fixes the regression).
    FixSeries,
}

impl DecidedBy {
    /// `code`, `version-table`, `fix-series`.
    pub fn id(self) -> &'static str {
        match self {
            DecidedBy::Code => "code",
            DecidedBy::VersionTable => "version-table",
            DecidedBy::FixSeries => "fix-series",
        }
    }
}

impl PatchEvidence {
    /// Shorthand.
    pub fn new(id: PatchId, state: PatchState, evidence: impl Into<String>) -> Self {
        PatchEvidence {
            id,
            state,
            evidence: evidence.into(),
            decided_by: None,
        }
    }
}

/// The verdict and the per-patch evidence it rests on: what `check` shows, what a recording
/// header carries, and (reconciled with a run's observations) what reports show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixVerdict {
    /// The answer.
    pub verdict: Verdict,
    /// The evidence, one entry per [`PatchId`] in [`PatchId::ALL`] order.
    pub patches: Vec<PatchEvidence>,
}

impl Default for FixVerdict {
    fn default() -> Self {
        FixVerdict::from_patches(Vec::new())
    }
}

impl FixVerdict {
    /// The static verdict from the patch states (every missing id counts as unknown):
    /// - regression absent: not-affected;
    /// - parts of the fix present and absent: partially-fixed;
    /// - only present parts (the rest unknown): likely-fixed;
    /// - regression present and only absent parts: vulnerable;
    /// - anything else (nothing known about the fix, or the regression unknown and no part
    ///   present): unknown.
    ///
    /// Never `fixed`: only a run can show the patches at work
    /// (`engine::fix_evidence::reconcile`).
    pub fn from_patches(mut patches: Vec<PatchEvidence>) -> Self {
        for id in PatchId::ALL {
            if !patches.iter().any(|p| p.id == id) {
                patches.push(PatchEvidence::new(id, PatchState::Unknown, "no evidence"));
            }
        }
        patches.sort_by_key(|p| p.id);
        let state = |id| {
            patches
                .iter()
                .find(|p| p.id == id)
                .map_or(PatchState::Unknown, |p| p.state)
        };
        let parts = [
            PatchId::VmAreasGfp,
            PatchId::PopulateGfp,
            PatchId::BackingNoio,
        ];
        let present = parts.iter().any(|&p| state(p) == PatchState::Present);
        let absent = parts.iter().any(|&p| state(p) == PatchState::Absent);
        let verdict = match (state(PatchId::Regression), present, absent) {
            (PatchState::Absent, _, _) => Verdict::NotAffected,
            (_, true, true) => Verdict::PartiallyFixed,
            (_, true, false) => Verdict::LikelyFixed,
            (PatchState::Present, false, true) => Verdict::Vulnerable,
            _ => Verdict::Unknown,
        };
        FixVerdict { verdict, patches }
    }

    /// The entry for `id`.
    pub fn patch(&self, id: PatchId) -> Option<&PatchEvidence> {
        self.patches.iter().find(|p| p.id == id)
    }

    /// The state of `id` (unknown when not listed).
    pub fn state(&self, id: PatchId) -> PatchState {
        self.patch(id).map_or(PatchState::Unknown, |p| p.state)
    }

    /// Parts of the fix series known to be missing.
    pub fn missing(&self) -> Vec<PatchId> {
        PatchId::ALL[1..]
            .iter()
            .copied()
            .filter(|&id| self.state(id) == PatchState::Absent)
            .collect()
    }

    /// What a recording made before per-patch evidence says: only whether pcpu_get_vm_areas
    /// took a gfp. false maps to vulnerable, true to likely-fixed, None to unknown.
    pub fn from_legacy(fix_present: Option<bool>, detail: Option<&str>) -> Self {
        let not_recorded = "not recorded (recording made before per-patch evidence)";
        let vm = match fix_present {
            Some(true) => PatchState::Present,
            Some(false) => PatchState::Absent,
            None => PatchState::Unknown,
        };
        let vm_ev = detail.map_or_else(
            || format!("recording header: fix_present = {fix_present:?}"),
            |d| format!("recording header: {d}"),
        );
        FixVerdict {
            verdict: match fix_present {
                Some(true) => Verdict::LikelyFixed,
                Some(false) => Verdict::Vulnerable,
                None => Verdict::Unknown,
            },
            patches: vec![
                PatchEvidence::new(PatchId::Regression, PatchState::Unknown, not_recorded),
                PatchEvidence::new(PatchId::VmAreasGfp, vm, vm_ev),
                PatchEvidence::new(PatchId::PopulateGfp, PatchState::Unknown, not_recorded),
                PatchEvidence::new(PatchId::BackingNoio, PatchState::Unknown, not_recorded),
            ],
        }
    }
}

/// Everything discovery learned about one kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    /// `uname -v` (build number, date; Debian's stable version), when read.
    pub build: Option<String>,
    /// `uname -m`.
    pub arch: String,
    /// This process's privileges.
    pub privileges: Privileges,
    /// BTF used.
    pub btf: BtfStatus,
    /// kprobe PMU or kprobe_events.
    pub kprobes: Support,
    /// fentry/fexit.
    pub fentry: Fentry,
    /// tracefs.
    pub tracefs: Tracefs,
    /// Lockdown mode ("none", "integrity", "confidentiality"), None when unknown.
    pub lockdown: Option<String>,
    /// PREEMPT_RT, None when unknown.
    pub preempt_rt: Option<bool>,
    /// How PREEMPT_RT was decided.
    pub preempt_rt_detail: String,
    /// kallsyms.
    pub kallsyms: KallsymsStatus,
    /// Probe targets by role ("pcpu_alloc", "vmalloc", ...).
    pub symbols: BTreeMap<String, ResolvedSymbol>,
    /// Parameter lists, by role.
    pub signatures: BTreeMap<String, Signature>,
    /// pcpu_alloc_mutex.
    pub mutex: MutexInfo,
    /// task_struct offsets.
    pub task: TaskOffsets,
    /// gfp bits.
    pub gfp: GfpLayout,
    /// PF_* bits.
    pub pf: PfFlags,
    /// Tracepoints, by "category:name".
    pub tracepoints: BTreeMap<String, Tracepoint>,
    /// Fix series status.
    pub fix: FixStatus,
    /// Build id, taint and analysis-relevant config, as a report names the build.
    pub identity: super::identity::KernelIdentity,
    /// Other things worth saying (fallbacks taken, clones, ...).
    pub notes: Vec<String>,
    /// The kallsyms text discovery read, when [`DiscoverOptions::keep_kallsyms_text`] asked
    /// for it and it was read. Not a fact: the input of the stack symbolizer.
    #[serde(skip)]
    pub kallsyms_text: Option<super::symbols::KallsymsText>,
}
