//! What a kernel maintainer asks before reading a report, worded once for every format:
//! the build's identity (build id, taint, config), where source lines came from, the tags
//! that end a finding (`Fixes:`, the fix series with each patch's state, a signature), and
//! how to reproduce it (the trigger seen in the stacks and the tool's own active check).
use std::collections::BTreeMap;

use serde::Serialize;

use crate::{
    engine::{Finding, FindingKind},
    kernel::{
        decode::PF_MEMALLOC_NOIO,
        identity::{config_line, decode_taint, Taint},
        PatchId, Verdict,
    },
};

use super::{
    context::{ReportContext, StackTable},
    wording as d,
};

/// Why a recording made before build id, taint and config were recorded has none.
pub const IDENTITY_NOT_RECORDED: &str = "not recorded (recording made before build id, taint \
     and config were recorded): the build cannot be checked against a debug file";

/// The traced build as every report shows it: build id, decoded taint, config, module
/// build ids, and for each fact that is missing, why (the one derivation the text, email,
/// markdown and JSON reports render).
#[derive(Clone, Debug, Serialize)]
pub struct Identity {
    /// False for a recording made before these facts were recorded: every fact is null and
    /// `unknown` says so.
    pub recorded: bool,
    /// GNU build id of the kernel, lowercase hex.
    pub build_id: Option<String>,
    /// `/proc/sys/kernel/tainted` at the start of the run, decoded.
    pub taint: Option<Taint>,
    /// The config options that change the analysis.
    pub config: Option<Config>,
    /// Build ids of the modules loaded when the run started, by name (empty: not recorded).
    pub modules: BTreeMap<String, String>,
    /// Why a fact is null: `build_id`, `taint`, `config` -> one line.
    pub unknown: BTreeMap<&'static str, String>,
}

/// The recorded config options and the one line reports print.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    /// The file read (`/boot/config-<release>`, `/proc/config.gz`).
    pub source: String,
    /// `CONFIG_X` -> `y`, `m`, a value or `n`.
    pub options: BTreeMap<String, String>,
    /// `PREEMPT_RT=n KASAN=n MEMCG=y ...`.
    pub line: String,
}

/// The identity of the traced build ([`Identity`]).
pub fn identity(ctx: &ReportContext) -> Identity {
    let Some(id) = &ctx.run.identity else {
        return Identity {
            recorded: false,
            build_id: None,
            taint: None,
            config: None,
            modules: BTreeMap::new(),
            unknown: ["build_id", "taint", "config"]
                .into_iter()
                .map(|k| (k, IDENTITY_NOT_RECORDED.to_string()))
                .collect(),
        };
    };
    let unread = |what: &str| format!("not readable on the traced host ({what})");
    let mut unknown = BTreeMap::new();
    if id.build_id.is_none() {
        unknown.insert("build_id", unread("/sys/kernel/notes"));
    }
    if id.taint.is_none() {
        unknown.insert("taint", unread("/proc/sys/kernel/tainted"));
    }
    if id.config.is_none() {
        unknown.insert(
            "config",
            unread("no /boot/config-<release> or /proc/config.gz"),
        );
    }
    Identity {
        recorded: true,
        build_id: id.build_id.clone(),
        taint: id.taint.map(decode_taint),
        config: id.config.as_ref().map(|c| Config {
            source: c.source.clone(),
            options: c.options.clone(),
            line: config_line(c),
        }),
        modules: id.modules.clone(),
        unknown,
    }
}

/// `(label, value)` lines naming the traced build: build id, taint, config, and for a
/// recording made before these were recorded, what it lacks.
pub fn identity_lines(ctx: &ReportContext) -> Vec<(&'static str, String)> {
    let id = identity(ctx);
    if !id.recorded {
        return vec![("identity", IDENTITY_NOT_RECORDED.into())];
    }
    let why = |k: &str| id.unknown.get(k).cloned().unwrap_or_default();
    vec![
        (
            "build id",
            id.build_id.clone().unwrap_or_else(|| why("build_id")),
        ),
        (
            "taint",
            id.taint
                .as_ref()
                .map(Taint::text)
                .unwrap_or_else(|| why("taint")),
        ),
        (
            "config",
            id.config
                .as_ref()
                .map(|c| format!("{} (from {})", c.line, c.source))
                .unwrap_or_else(|| why("config")),
        ),
    ]
}

/// The lockdep-style "#N Not tainted" word for the splat's release line, when known.
pub fn taint_word(ctx: &ReportContext) -> Option<String> {
    let t = ctx.run.identity.as_ref()?.taint?;
    Some(decode_taint(t).columns)
}

/// The commit a `Fixes:` tag names.
#[derive(Clone, Debug, Serialize)]
pub struct FixesTag {
    /// Abbreviated commit id (`9a5b183941b5`).
    pub commit: &'static str,
    /// Its subject.
    pub subject: &'static str,
}

/// One patch of the fix series and its state on the traced kernel.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesPatch {
    /// Which patch.
    pub id: PatchId,
    /// Its title.
    pub title: &'static str,
    /// `present`, `absent`, `unknown` (the engine's reconciled state).
    pub state: &'static str,
}

/// The tags that end a finding (the one derivation every format renders; see
/// [`Tags::lines`]).
#[derive(Clone, Debug, Serialize)]
pub struct Tags {
    /// The commit that made the recursion possible.
    pub fixes: FixesTag,
    /// That commit's state on this kernel.
    pub cause_state: &'static str,
    /// The reconciled fix verdict.
    pub fix_verdict: Verdict,
    /// The fix series by title, each patch's state on this kernel.
    pub fix_series: Vec<SeriesPatch>,
    /// `percpu-trace/<kind>/<16 hex digits>`: stable across runs for the same finding.
    pub signature: String,
}

impl Tags {
    /// The `Fixes:` tag as a kernel commit message writes it.
    pub fn fixes_line(&self) -> String {
        format!("Fixes: {} (\"{}\")", self.fixes.commit, self.fixes.subject)
    }

    /// The tag lines as the text, email and markdown reports print them.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![
            self.fixes_line(),
            format!("Cause on this kernel: {}", self.cause_state),
            format!("Fix series on this kernel (verdict {}):", self.fix_verdict),
        ];
        for p in &self.fix_series {
            v.push(format!("  [{}] \"{}\"", p.state, p.title));
        }
        v.push(format!("Signature: {}", self.signature));
        v
    }
}

/// The tags of a finding: `Fixes:`, the fix series with each patch's state on this kernel
/// (the engine's reconciled status, [`ReportContext::fix`]), and a stable signature.
pub fn tags(ctx: &ReportContext, f: &Finding) -> Tags {
    let fix = ctx.fix();
    let state = |id: PatchId| {
        fix.fix
            .patches
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.state.id())
            .unwrap_or("unknown")
    };
    // The regression's title is "<commit> <subject>": one source for both.
    let (commit, subject) = PatchId::Regression
        .title()
        .split_once(' ')
        .unwrap_or(("", PatchId::Regression.title()));
    Tags {
        fixes: FixesTag { commit, subject },
        cause_state: state(PatchId::Regression),
        fix_verdict: fix.fix.verdict,
        fix_series: PatchId::ALL
            .into_iter()
            .filter(|i| *i != PatchId::Regression)
            .map(|id| SeriesPatch {
                id,
                title: id.title(),
                state: state(id),
            })
            .collect(),
        signature: format!("percpu-trace/{}/{:016x}", kind_id(f.kind), f.signature),
    }
}

fn kind_id(k: FindingKind) -> &'static str {
    match k {
        FindingKind::Recursion => "recursion",
        FindingKind::Window => "window",
        FindingKind::CrossTask => "cross-task",
    }
}

/// Known user-space entry points of constrained percpu allocations, by a function in the
/// stack: what the caller was doing, said so it can be done again.
const ENTRIES: &[(&str, &str)] = &[
    (
        "tg_set_limit",
        "a write to a cgroup's io.max (blk-throttle)",
    ),
    ("tg_set_conf", "a write to a cgroup's blk-throttle file"),
    ("ioc_qos_write", "a write to io.cost.qos"),
    (
        "ioc_weight_write",
        "a write to a cgroup's io.weight (iocost)",
    ),
    ("iolatency_set_limit", "a write to a cgroup's io.latency"),
    ("bfq_io_set_weight", "a write to a cgroup's io.bfq.weight"),
    (
        "blkg_conf_prep",
        "a blkcg config write for a new (cgroup, disk) pair",
    ),
    (
        "queue_wb_lat_store",
        "a write to queue/wbt_lat_usec (queue frozen: NOIO)",
    ),
    (
        "elv_iosched_store",
        "a write to queue/scheduler (queue frozen: NOIO)",
    ),
    (
        "queue_requests_store",
        "a write to queue/nr_requests (queue frozen: NOIO)",
    ),
    (
        "nullb_device_submit_queues_store",
        "a write to null_blk's submit_queues",
    ),
    (
        "blk_mq_update_nr_hw_queues",
        "a change of the hw queue count (queue frozen: NOIO)",
    ),
    ("nbd_genl_connect", "an nbd connect (queue frozen: NOIO)"),
    (
        "bpf_map_alloc_percpu",
        "creating a BPF per-CPU map (bpf(BPF_MAP_CREATE))",
    ),
];

/// A user-space entry point recognised in a finding's stacks.
#[derive(Clone, Debug, Serialize)]
pub struct EntryPoint {
    /// The kernel function in the stack that names it (`tg_set_limit`).
    pub function: &'static str,
    /// What the caller was doing (`a write to a cgroup's io.max (blk-throttle)`).
    pub action: &'static str,
    /// What the recording lacks to name it fully (the device of a cgroup write).
    pub not_recorded: Option<&'static str>,
}

/// The first entry of [`ENTRIES`] that is in one of the finding's stacks: the table runs
/// from the most specific (the cgroup file written) to the most general.
pub fn entry_point(f: &Finding, table: &StackTable) -> Option<EntryPoint> {
    let stacks = d::stacks(f, table);
    let frames: Vec<&str> = stacks
        .iter()
        .filter_map(|s| s.frames)
        .flatten()
        .filter_map(|fr| fr.function.as_deref())
        .collect();
    ENTRIES
        .iter()
        .find(|(k, _)| frames.contains(k))
        .map(|&(function, action)| EntryPoint {
            function,
            action,
            not_recorded: (action.contains("cgroup") || action.contains("blkcg"))
                .then_some("the device's MAJ:MIN"),
        })
}

/// The trigger seen, in words: who, with what constraint, doing what (from the stacks).
pub fn trigger_seen(ctx: &ReportContext, f: &Finding, entry: Option<&EntryPoint>) -> String {
    let l = &ctx.run.gfp_layout;
    let label = |i: usize| {
        f.tasks
            .get(i)
            .map(d::task_label)
            .unwrap_or_else(|| "?".into())
    };
    // The constrained task: the caller, or for a cross-task finding the waiter.
    let constrained = usize::from(f.kind == FindingKind::CrossTask);
    let scope = f
        .tasks
        .get(constrained)
        .filter(|t| t.task_flags & PF_MEMALLOC_NOIO != 0)
        .map(|_| " in a memalloc_noio scope (e.g. an IO_FLUSHER process)")
        .unwrap_or_default();
    let doing = entry
        .map(|e| {
            let lacks = e
                .not_recorded
                .map(|w| format!(" ({w} is not recorded)"))
                .unwrap_or_default();
            format!("{}{lacks}, through {}", e.action, e.function)
        })
        .unwrap_or_else(|| "an entry point not recognised in the recorded stacks".into());
    let gfp = d::gfp(l, f.constraint_gfp);
    let op = f.trigger.name();
    match f.kind {
        FindingKind::CrossTask => format!(
            "{doing} (in the recorded stacks); holder {} entered {op} under \
             pcpu_alloc_mutex while {}{scope} waited for it with {gfp}",
            label(0),
            label(1)
        ),
        _ => format!(
            "{doing}, by {}{scope} with {gfp}; under pcpu_alloc_mutex it entered {op}",
            label(0)
        ),
    }
}

/// The "how to reproduce" section of a finding.
#[derive(Clone, Debug, Serialize)]
pub struct Reproducer {
    /// The trigger seen ([`trigger_seen`]), one sentence.
    pub trigger: String,
    /// The entry point recognised in the stacks (`None`: none recognised).
    pub entry_point: Option<EntryPoint>,
    /// What the active check does, one sentence.
    pub note: String,
    /// The exact command.
    pub command: String,
}

impl Reproducer {
    /// "Trigger seen: ...", as the text, email and markdown reports print it.
    pub fn trigger_line(&self) -> String {
        format!("Trigger seen: {}.", self.trigger)
    }
}

/// The trigger seen and the exact active check command.
pub fn reproducer(ctx: &ReportContext, f: &Finding, table: &StackTable) -> Reproducer {
    let attach = match ctx.run.attach_mode.as_deref() {
        Some(m @ ("kprobe" | "fentry" | "tracepoint")) => format!(" --attach {m}"),
        _ => String::new(),
    };
    let entry = entry_point(f, table);
    Reproducer {
        trigger: trigger_seen(ctx, f, entry.as_ref()),
        entry_point: entry,
        note: "Minimal active reproducer (root, same kernel): it attaches the probes, has \
               an IO_FLUSHER thread and an unconstrained one populate percpu chunks \
               through BPF per-CPU maps for about 2 s, and reports what the kernel did:"
            .to_string(),
        command: format!("sudo percpu-trace check --probe{attach}"),
    }
}
