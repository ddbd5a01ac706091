//! What a kernel maintainer asks before reading a report, worded once for every format:
//! the build's identity (build id, taint, config), where source lines came from, the tags
//! that end a finding (`Fixes:`, the fix series with each patch's state, a signature), and
//! how to reproduce it (the trigger seen in the stacks and the tool's own active check).
use crate::{
    engine::{Finding, FindingKind},
    kernel::{
        decode::PF_MEMALLOC_NOIO,
        identity::{config_line, taint_string},
        PatchId,
    },
};

use super::{
    context::{ReportContext, StackTable},
    wording as d,
};

/// The commit that made the recursion possible, as a `Fixes:` tag names it.
pub const FIXES_TAG: &str =
    "Fixes: 9a5b183941b5 (\"mm, percpu: do not consider sleepable allocations atomic\")";

/// `(label, value)` lines naming the traced build: build id, taint, config, and for a
/// recording made before these were recorded, what it lacks.
pub fn identity_lines(ctx: &ReportContext) -> Vec<(&'static str, String)> {
    let Some(id) = &ctx.run.identity else {
        return vec![(
            "identity",
            "not recorded (recording made before build id, taint and config were \
             recorded): the build cannot be checked against a debug file"
                .into(),
        )];
    };
    let unread = |what: &str| format!("not readable on the traced host ({what})");
    let mut v = vec![
        (
            "build id",
            id.build_id
                .clone()
                .unwrap_or_else(|| unread("/sys/kernel/notes")),
        ),
        (
            "taint",
            id.taint
                .map(taint_string)
                .unwrap_or_else(|| unread("/proc/sys/kernel/tainted")),
        ),
    ];
    v.push((
        "config",
        match &id.config {
            Some(c) => format!("{} (from {})", config_line(c), c.source),
            None => unread("no /boot/config-<release> or /proc/config.gz"),
        },
    ));
    v
}

/// The lockdep-style "#N Not tainted" word for the splat's release line, when known.
pub fn taint_word(ctx: &ReportContext) -> Option<String> {
    let t = ctx.run.identity.as_ref()?.taint?;
    Some(match taint_string(t).split_once(" (") {
        Some((cols, _)) => cols.to_string(),
        None => taint_string(t),
    })
}

/// The tags that end a finding: `Fixes:`, the fix series with each patch's state on this
/// kernel (the engine's reconciled status, [`ReportContext::fix`]), and a stable signature.
pub fn tags(ctx: &ReportContext, f: &Finding) -> Vec<String> {
    let fix = ctx.fix();
    let mut v = vec![FIXES_TAG.to_string()];
    let state = |id: PatchId| {
        fix.fix
            .patches
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.state.id())
            .unwrap_or("unknown")
    };
    v.push(format!(
        "Cause on this kernel: {}",
        state(PatchId::Regression)
    ));
    v.push(format!(
        "Fix series on this kernel (verdict {}):",
        fix.fix.verdict
    ));
    for id in PatchId::ALL
        .into_iter()
        .filter(|i| *i != PatchId::Regression)
    {
        v.push(format!("  [{}] \"{}\"", state(id), id.title()));
    }
    v.push(format!(
        "Signature: percpu-trace/{}/{:016x}",
        kind_id(f.kind),
        f.signature
    ));
    v
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

/// The trigger seen, in words: who, with what constraint, doing what (from the stacks).
pub fn trigger_seen(ctx: &ReportContext, f: &Finding, table: &StackTable) -> String {
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
    let stacks = d::stacks(f, table);
    let frames: Vec<&str> = stacks
        .iter()
        .filter_map(|s| s.frames)
        .flatten()
        .filter_map(|fr| fr.function.as_deref())
        .collect();
    // The first entry of the table that is in a stack: the table runs from the most
    // specific (the cgroup file written) to the most general.
    let doing = ENTRIES
        .iter()
        .find(|(k, _)| frames.contains(k))
        .map(|(k, what)| {
            let dev = if what.contains("cgroup") || what.contains("blkcg") {
                " (the device's MAJ:MIN is not recorded)"
            } else {
                ""
            };
            format!("{what}{dev}, through {k}")
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
pub struct Reproducer {
    /// The trigger seen ([`trigger_seen`]), one sentence.
    pub trigger: String,
    /// What the active check does, one sentence.
    pub note: String,
    /// The exact command.
    pub command: String,
}

/// The trigger seen and the exact active check command.
pub fn reproducer(ctx: &ReportContext, f: &Finding, table: &StackTable) -> Reproducer {
    let attach = match ctx.run.attach_mode.as_deref() {
        Some(m @ ("kprobe" | "fentry" | "tracepoint")) => format!(" --attach {m}"),
        _ => String::new(),
    };
    Reproducer {
        trigger: format!("Trigger seen: {}.", trigger_seen(ctx, f, table)),
        note: "Minimal active reproducer (root, same kernel): it attaches the probes, has \
               an IO_FLUSHER thread and an unconstrained one populate percpu chunks \
               through BPF per-CPU maps for about 2 s, and reports what the kernel did:"
            .to_string(),
        command: format!("sudo percpu-trace check --probe{attach}"),
    }
}
