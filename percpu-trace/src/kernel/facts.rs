//! The facts discovery produces: [`Kernel`] and its parts, plain data.
use std::{collections::BTreeMap, path::PathBuf};

use serde::Serialize;

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
    /// Address, when known.
    pub addr: Option<u64>,
    /// Where the address came from.
    pub source: Option<MutexSource>,
    /// Every way tried that failed, in order.
    pub attempts: Vec<String>,
    /// Owner-word layout (None without BTF).
    pub layout: Option<MutexLayout>,
    /// Where the layout came from.
    pub layout_source: String,
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
}

/// Whether the upstream fix series ("honor GFP in pcpu_get_vm_areas" ...) is in this kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FixStatus {
    /// true: present; false: absent; None: cannot tell.
    pub present: Option<bool>,
    /// The evidence, one line.
    pub detail: String,
}

/// Everything discovery learned about one kernel.
#[derive(Clone, Debug, Serialize)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
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
    /// Other things worth saying (fallbacks taken, clones, ...).
    pub notes: Vec<String>,
}
