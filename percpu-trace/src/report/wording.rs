//! Wording shared by the three formats and the TUI, so text, markdown, JSON and the screen
//! say the same thing about a finding: headlines, gfp and task-flag names, the trigger,
//! task labels and roles, the lockdep-style scenario, durations and timestamps. A phrase
//! about a finding is written here once; renderers arrange phrases, they do not word them.
use crate::{
    engine::{
        Doubt, Finding, FindingKind, Reconciled, Severity, TaskInfo, TaskRole, Trigger,
        WaiterReason,
    },
    event::Frame,
    kernel::{
        decode::{self, GfpLayout},
        PatchEvidence, PatchId, PatchState, Verdict,
    },
};

use super::context::{ReportContext, StackTable};

/// "GFP_NOIO|__GFP_NOWARN (0x2c00)".
pub fn gfp(layout: &GfpLayout, v: u32) -> String {
    format!("{} ({v:#x})", decode::format_gfp(v, layout))
}

/// "PF_MEMALLOC_NOIO|PF_RANDOMIZE (0x480000)".
pub fn task_flags(v: u32) -> String {
    if v == 0 {
        return "none (0x0)".into();
    }
    format!("{} ({v:#x})", decode::format_task_flags(v))
}

/// The memalloc scope the task flags put a task in, if any.
pub fn scope(flags: u32) -> Option<&'static str> {
    if flags & decode::PF_MEMALLOC_NOIO != 0 {
        Some("memalloc_noio")
    } else if flags & decode::PF_MEMALLOC_NOFS != 0 {
        Some("memalloc_nofs")
    } else {
        None
    }
}

/// What a reader should know about task flags seen at a finding's trigger: PF_MEMALLOC on a
/// task whose trigger is its own reclaim is the page allocator's marker for "inside direct
/// reclaim", not a scope the caller entered (it neither narrows nor widens the gfp).
pub fn task_flags_note(f: &Finding, t: &TaskInfo) -> Option<&'static str> {
    let reclaiming = matches!(f.trigger, Trigger::Reclaim { .. })
        && matches!(t.role, TaskRole::Caller | TaskRole::Holder);
    (reclaiming && t.task_flags & decode::PF_MEMALLOC != 0)
        .then_some("PF_MEMALLOC: set by the page allocator while the task is inside reclaim")
}

/// "NOIO" when the constraint forbids __GFP_IO, "NOFS" when it forbids only __GFP_FS.
pub fn constraint_word(layout: &GfpLayout, f: &Finding) -> &'static str {
    if f.constraint_gfp & layout.io() == 0 {
        "NOIO"
    } else {
        "NOFS"
    }
}

/// The lockdep name of what the trigger may take: `fs_reclaim` is the lockdep map the
/// kernel acquires for reclaim that may enter the filesystem; reclaim that may only start
/// I/O has no lockdep map, so it is named by the bit.
pub fn reclaim_lock(layout: &GfpLayout, f: &Finding) -> &'static str {
    if f.violated_bits & layout.fs() != 0 {
        "fs_reclaim"
    } else {
        "reclaim(__GFP_IO)"
    }
}

/// One headline per kind, shaped like lockdep's first line.
pub fn headline(layout: &GfpLayout, f: &Finding) -> String {
    let w = constraint_word(layout, f);
    match f.kind {
        FindingKind::Recursion => {
            format!("possible {w} reclaim recursion under pcpu_alloc_mutex")
        }
        FindingKind::Window => {
            format!("possible {w} reclaim recursion window under pcpu_alloc_mutex")
        }
        FindingKind::CrossTask => {
            format!("possible {w} deadlock: pcpu_alloc_mutex holder in FS/IO reclaim")
        }
    }
}

/// The gfp the trigger was called with, when the kernel exposed one.
pub fn trigger_gfp(t: &Trigger) -> Option<u32> {
    match *t {
        Trigger::Reclaim { gfp, .. } | Trigger::Vmalloc { gfp } => Some(gfp),
        Trigger::ChunkCreate { gfp } | Trigger::ChunkPopulate { gfp } => gfp,
        Trigger::GetVmAreas { gfp } => gfp,
        Trigger::PgtableAlloc => None,
    }
}

/// What the trigger is, in words ("direct reclaim, order 0").
pub fn trigger_words(t: &Trigger) -> String {
    match *t {
        Trigger::Reclaim { order, memcg, .. } => {
            let which = if memcg {
                "memcg reclaim"
            } else {
                "direct reclaim"
            };
            format!("{which}, order {order}")
        }
        Trigger::ChunkCreate { .. } => "pcpu_create_chunk".into(),
        Trigger::ChunkPopulate { .. } => "pcpu_populate_chunk".into(),
        Trigger::GetVmAreas { gfp: None } => {
            "pcpu_get_vm_areas (kernel without the fix: metadata allocated with GFP_KERNEL)".into()
        }
        Trigger::GetVmAreas { gfp: Some(_) } => "pcpu_get_vm_areas".into(),
        Trigger::Vmalloc { .. } => "__vmalloc_node".into(),
        Trigger::PgtableAlloc => "kernel page-table allocation (GFP_PGTABLE_KERNEL)".into(),
    }
}

/// [`trigger_words`] with the gfp the trigger was called with, when known:
/// "direct reclaim, order 0, gfp GFP_KERNEL (0xcc0)".
pub fn trigger_phrase(layout: &GfpLayout, t: &Trigger) -> String {
    let gfp_part = trigger_gfp(t)
        .map(|g| format!(", gfp {}", gfp(layout, g)))
        .unwrap_or_default();
    format!("{}{gfp_part}", trigger_words(t))
}

/// The trigger in at most 8 characters, for narrow columns (the TUI's findings list);
/// [`trigger_words`] is the full form.
pub fn trigger_short(t: &Trigger) -> &'static str {
    match t {
        Trigger::Reclaim { memcg: false, .. } => "reclaim",
        Trigger::Reclaim { memcg: true, .. } => "memcg",
        Trigger::ChunkCreate { .. } => "create",
        Trigger::ChunkPopulate { .. } => "populate",
        Trigger::GetVmAreas { .. } => "vm_areas",
        Trigger::Vmalloc { .. } => "vmalloc",
        Trigger::PgtableAlloc => "pgtable",
    }
}

/// Severity in four capitals, for narrow columns (the TUI's findings list and legend).
pub fn severity_tag(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "CRIT",
        Severity::High => "HIGH",
        Severity::Warning => "WARN",
        Severity::Info => "INFO",
    }
}

/// What a kind of finding means, in one line, before any finding of it exists (the TUI's
/// legend); [`headline`] is the form for a finding.
pub fn kind_summary(k: FindingKind) -> &'static str {
    match k {
        FindingKind::Recursion => "constrained caller reclaimed with FS/IO holding the mutex",
        FindingKind::CrossTask => "holder in FS/IO reclaim while a constrained task waits",
        FindingKind::Window => "FS/IO-capable allocation under the mutex for a constrained caller",
    }
}

/// One task of a finding: "iomax-writer/200 (tgid 200, cgroup 7), caller".
pub fn task_summary(t: &TaskInfo) -> String {
    format!(
        "{} (tgid {}, cgroup {}), {}",
        task_label(t),
        t.tgid,
        t.cgroup_id,
        role(t.role)
    )
}

/// Whose stack a stack is: "stack of iomax-writer/200 (caller), stack id 7", or
/// "stack id 7 (task not recorded)" when it cannot be told.
pub fn stack_title(st: &LabeledStack<'_>) -> String {
    match st.task {
        Some(t) => format!(
            "stack of {} ({}), stack id {}",
            task_label(t),
            role(t.role),
            st.id
        ),
        None => format!("stack id {} (task not recorded)", st.id),
    }
}

/// "comm/pid", with anything but printable ASCII replaced (comms are user-controlled and
/// reports are plain ASCII).
pub fn task_label(t: &TaskInfo) -> String {
    format!("{}/{}", ascii(&t.comm), t.pid)
}

/// Role in words.
pub fn role(r: TaskRole) -> &'static str {
    match r {
        TaskRole::Holder => "holder",
        TaskRole::Waiter => "waiter",
        TaskRole::Caller => "caller",
    }
}

/// Replaces every character that is not printable ASCII (or a newline) by `?`.
pub fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '\n' || (' '..='~').contains(&c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Nanoseconds for humans: "850 ns", "12.3 us", "1.234 ms", "2.500 s".
pub fn dur(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.1} us", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.3} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

/// A CLOCK_MONOTONIC timestamp the way dmesg prints one: "[  123.456789]".
pub fn stamp(ns: u64) -> String {
    format!(
        "[{:>5}.{:06}]",
        ns / 1_000_000_000,
        (ns % 1_000_000_000) / 1_000
    )
}

/// The durations of a finding in one phrase each.
pub fn durations(f: &Finding) -> Vec<String> {
    let d = &f.durations;
    let mut out = Vec::new();
    if let Some(h) = d.hold_ns {
        out.push(format!(
            "pcpu_alloc_mutex held for at least {} at the trigger",
            dur(h)
        ));
    }
    if let Some(r) = d.reclaim_ns {
        out.push(format!(
            "longest reclaim {} ({} over all occurrences)",
            dur(r),
            dur(d.reclaim_total_ns)
        ));
    } else if matches!(f.trigger, Trigger::Reclaim { .. }) {
        out.push("reclaim end not seen".into());
    }
    match (d.wait_ns, d.wait_end_seen) {
        (Some(w), true) => out.push(format!("longest wait for the mutex {}", dur(w))),
        (Some(w), false) => out.push(format!(
            "waited for the mutex at least {} (end of the wait not seen)",
            dur(w)
        )),
        (None, _) if f.kind == FindingKind::CrossTask => {
            out.push("end of the wait not seen".into())
        }
        (None, _) => {}
    }
    out
}

/// Why a waiter counts for cross_task, in words.
pub fn waiter_reason(r: WaiterReason) -> &'static str {
    match r {
        WaiterReason::GfpConstrained => {
            "its pcpu_alloc gfp argument forbids the reclaim (a caller such as \
             blkg_alloc(GFP_NOIO) that holds FS/IO resources while it allocates)"
        }
        WaiterReason::IoFlusher => {
            "it is an IO_FLUSHER process (PF_MEMALLOC_NOIO|PF_LOCAL_THROTTLE): part of the IO \
             path, so reclaim that waits for IO can wait for it"
        }
        WaiterReason::Scope => {
            "it is in a NOFS/NOIO memalloc scope of unknown origin (a filesystem transaction, a \
             frozen queue?); the scope alone does not prove FS/IO waits for it"
        }
        WaiterReason::Unclassified => {
            "waiter unclassified (no stack): a workqueue worker in a NOIO scope, maybe the \
             percpu balance worker (which does not count)"
        }
    }
}

/// A doubt, in words.
pub fn doubt(d: Doubt) -> &'static str {
    match d {
        Doubt::EventsLost => {
            "events were lost after the state this rests on began (a lost end event may have \
             left it stale)"
        }
        Doubt::TaskFlagsUnknown => {
            "task flags could not be read (no task_struct.flags offset): memalloc scopes and \
             PF_MEMALLOC were not seen"
        }
        Doubt::LossCheckPending => {
            "pending loss check: it rests on earlier events and the loss counters covering \
             them have not arrived yet"
        }
    }
}

/// What the finding rests on, one phrase each (empty for complete evidence and no waiter):
/// the waiter's reason, then every doubt.
pub fn evidence(f: &Finding) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = f.waiter_reason {
        out.push(format!("the waiter counts because {}", waiter_reason(r)));
    }
    for d in &f.doubts {
        out.push(format!("uncertain, severity lowered: {}", doubt(*d)));
    }
    out
}

/// A stack of the finding with the task it belongs to (when that is certain).
pub struct LabeledStack<'a> {
    /// Kernel stack id.
    pub id: u32,
    /// The task whose stack it is; `None` when it cannot be told.
    pub task: Option<&'a TaskInfo>,
    /// The frames; `None` when the stack table lacks the id.
    pub frames: Option<&'a [Frame]>,
}

/// Pairs stack ids with tasks. The engine lists the trigger's stack first and then the other
/// task's, skipping stacks that were not taken: when every task has one, they pair in order;
/// for a single-task finding the stack is the caller's; otherwise it is left unattributed.
pub fn stacks<'a>(f: &'a Finding, table: &'a StackTable) -> Vec<LabeledStack<'a>> {
    let paired = f.stack_ids.len() == f.tasks.len() || f.tasks.len() == 1;
    f.stack_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| LabeledStack {
            id,
            task: if paired { f.tasks.get(i) } else { None },
            frames: table.get(&id).map(|fr| without_own_frames(fr)),
        })
        .collect()
}

/// Frames of the tracer itself, at the top of stacks its programs took: the BPF program,
/// its trampoline (fentry) and the kprobe/ftrace/tracepoint plumbing that called it.
fn own_frame(f: &Frame) -> bool {
    let Some(n) = f.function.as_deref() else {
        return false;
    };
    const PREFIXES: &[&str] = &[
        "bpf_prog_",
        "bpf_trampoline_",
        "bpf_trace_run",
        "__bpf_trace_",
        "kprobe_ftrace_handler",
        "kprobe_perf_func",
        "kprobe_dispatcher",
        "kretprobe_",
        "__kretprobe_",
        "trace_call_bpf",
        "perf_trace_run_bpf_submit",
        "ftrace_regs_caller",
        "ftrace_caller",
        "arch_ftrace_ops_list_func",
        "fprobe_",
        "rethook_",
        "arch_rethook_",
    ];
    PREFIXES.iter().any(|p| n.starts_with(p))
}

/// One frame as a report prints it: the kernel's way, and a frame of the tracer's own
/// (the fentry trampoline left in the middle of a stack, between a caller and the probed
/// function) marked so that no reader takes it for kernel code.
pub fn frame_line(f: &Frame) -> String {
    if own_frame(f) {
        format!("{f} (percpu-trace's own probe, not kernel code)")
    } else {
        f.to_string()
    }
}

/// A frame's report lines (inlined calls first, then the frame with its source line when
/// debug info gave one), the tracer's own trampoline marked as in [`frame_line`]: own
/// frames never have source lines, so only a bare frame line can be one.
pub fn frame_lines_marked(f: &Frame) -> Vec<String> {
    let mut lines = crate::debuginfo::frame_lines(f);
    if let Some(last) = lines.last_mut() {
        if *last == f.to_string() {
            *last = frame_line(f);
        }
    }
    lines
}

/// `frames` without the tracer's own frames at the top (innermost first); frames below the
/// first kernel frame are kept as they are (a trampoline in the middle of a waiter's stack
/// is where the caller was, not where the stack was taken).
pub fn without_own_frames(frames: &[Frame]) -> &[Frame] {
    let first_kernel = frames
        .iter()
        .position(|f| !own_frame(f))
        .unwrap_or(frames.len());
    &frames[first_kernel..]
}

/// The frame where pcpu_alloc_mutex was taken, as far as a stack shows it: the innermost
/// pcpu_alloc* frame of the holder's or caller's stack (never a waiter's, which has not
/// taken it).
pub fn lock_site<'a>(stacks: &[LabeledStack<'a>]) -> Option<&'a Frame> {
    stacks
        .iter()
        .filter(|s| s.task.is_some_and(|t| t.role != TaskRole::Waiter))
        .filter_map(|s| s.frames)
        .find_map(|fr| {
            fr.iter().find(|f| {
                f.function
                    .as_deref()
                    .is_some_and(|n| n.starts_with("pcpu_alloc") || n.starts_with("__alloc_percpu"))
            })
        })
}

/// The lockdep-style "Possible unsafe locking scenario" rows: (CPU0 cell, CPU1 cell).
///
/// The constrained task's side is written as `lock(<GFP_NOIO context>)`: whatever made it
/// constrained (a frozen queue's q_usage_counter in the syzbot report, an IO_FLUSHER's
/// writeback) is invisible to the tracer, but it is exactly what FS/IO reclaim can wait for.
pub fn scenario(layout: &GfpLayout, f: &Finding) -> Scenario {
    let ctx = format!("<GFP_{} context>", constraint_word(layout, f));
    let reclaim = reclaim_lock(layout, f);
    match f.kind {
        FindingKind::Recursion => Scenario {
            two_cpus: false,
            rows: vec![
                (format!("lock({ctx});"), String::new()),
                ("lock(pcpu_alloc_mutex);".into(), String::new()),
                (format!("lock({reclaim});"), String::new()),
                (format!("  <reclaim waits for {ctx}>"), String::new()),
            ],
        },
        FindingKind::Window => Scenario {
            two_cpus: false,
            rows: vec![
                (format!("lock({ctx});"), String::new()),
                ("lock(pcpu_alloc_mutex);".into(), String::new()),
                (format!("{}();", f.trigger.name()), String::new()),
                (format!("  may lock({reclaim});"), String::new()),
                (format!("  <reclaim waits for {ctx}>"), String::new()),
            ],
        },
        FindingKind::CrossTask => Scenario {
            two_cpus: true,
            rows: vec![
                ("lock(pcpu_alloc_mutex);".into(), String::new()),
                (String::new(), format!("lock({ctx});")),
                (String::new(), "lock(pcpu_alloc_mutex);".into()),
                (format!("lock({reclaim});"), String::new()),
                (format!("  <reclaim waits for {ctx}>"), String::new()),
            ],
        },
    }
}

/// Rows of a locking scenario.
pub struct Scenario {
    /// CPU1 column used (cross-task); otherwise a single-CPU self-deadlock.
    pub two_cpus: bool,
    /// (CPU0, CPU1) cells.
    pub rows: Vec<(String, String)>,
}

impl Scenario {
    /// The scenario block as lockdep prints it, indented like the kernel's.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if self.two_cpus {
            s.push_str(&format!("       {:<24}{}\n", "CPU0", "CPU1"));
            s.push_str(&format!("       {:<24}{}\n", "----", "----"));
            for (a, b) in &self.rows {
                if a.is_empty() {
                    s.push_str(&format!("  {:<29}{b}\n", ""));
                } else {
                    s.push_str(&format!("  {a}\n"));
                }
            }
        } else {
            s.push_str("       CPU0\n       ----\n");
            for (a, _) in &self.rows {
                s.push_str(&format!("  {a}\n"));
            }
        }
        s.push_str("\n *** DEADLOCK ***\n");
        s
    }
}

/// "partially-fixed (upgraded ... by this run)": the verdict, and what the run changed.
pub fn fix_verdict(r: &Reconciled) -> String {
    match &r.note {
        Some(n) => format!("{} ({n})", r.fix.verdict),
        None => r.fix.verdict.to_string(),
    }
}

/// One patch: "backing-noio  absent   code of pcpu_alloc_noprof ...".
pub fn patch_line(p: &PatchEvidence) -> String {
    format!("{:<13} {:<8} {}", p.id.id(), p.state.id(), p.evidence)
}

/// What the kernel's fix state means for this finding, when it matters: on a partially
/// fixed kernel, the missing patch that leaves this hazard open.
pub fn finding_fix_note(r: &Reconciled, f: &Finding) -> Option<String> {
    if r.fix.verdict != Verdict::PartiallyFixed {
        return None;
    }
    let missing = |id: PatchId| r.fix.state(id) == PatchState::Absent;
    let why = match f.kind {
        FindingKind::CrossTask if missing(PatchId::BackingNoio) => PatchId::BackingNoio,
        FindingKind::Window | FindingKind::Recursion if missing(PatchId::PopulateGfp) => {
            PatchId::PopulateGfp
        }
        FindingKind::Window | FindingKind::Recursion if missing(PatchId::VmAreasGfp) => {
            PatchId::VmAreasGfp
        }
        _ => return None,
    };
    let what = match why {
        PatchId::BackingNoio => "an unconstrained holder's backing allocations may still do FS/IO reclaim while constrained tasks wait",
        PatchId::PopulateGfp => "page tables and the pages array of a chunk populate are still allocated without the caller's constraint",
        _ => "pcpu_get_vm_areas still allocates its metadata with GFP_KERNEL",
    };
    Some(format!(
        "kernel is partially fixed: patch {why} (\"{}\") is what is missing: {what}",
        why.title()
    ))
}

/// The "how observed" verdict on the fix series.
pub fn fix_words(fix: Option<bool>) -> &'static str {
    match fix {
        Some(true) => "present",
        Some(false) => "absent",
        None => "unknown",
    }
}

/// Events lost in total: the engine's one definition ([`crate::engine::LossTotals`]).
pub fn events_lost(ctx: &ReportContext) -> u64 {
    crate::engine::LossTotals {
        by_reason: ctx.drops.clone(),
    }
    .events_lost()
}

/// Greedy word wrap of `text` to `width` columns, each line prefixed by `indent`.
/// A word too long for a line is broken after a `|` (gfp and flag names) when it has one;
/// otherwise it stays whole (a symbol must not be broken).
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    wrap_labeled(indent, text, width, indent)
}

/// [`wrap`] with `label` before the first line and `indent` before the others
/// ("source:      replay of ..." with continuation lines under the value).
pub fn wrap_labeled(label: &str, text: &str, width: usize, indent: &str) -> String {
    let room = width.saturating_sub(indent.len().max(label.len())).max(1);
    // (piece, joins the previous piece without a space)
    let mut pieces: Vec<(&str, bool)> = Vec::new();
    for word in text.split_whitespace() {
        if word.len() <= room || !word.contains('|') {
            pieces.push((word, false));
            continue;
        }
        let mut glue = false;
        for part in word.split_inclusive('|') {
            pieces.push((part, glue));
            glue = true;
        }
    }
    let mut out = String::new();
    let mut line = String::new();
    let mut prefix = label;
    for (piece, glue) in pieces {
        let sep = usize::from(!glue && !line.is_empty());
        if !line.is_empty() && prefix.len() + line.len() + sep + piece.len() > width {
            out.push_str(prefix);
            out.push_str(&line);
            out.push('\n');
            line.clear();
            prefix = indent;
        } else if sep == 1 {
            line.push(' ');
        }
        line.push_str(piece);
    }
    if !line.is_empty() {
        out.push_str(prefix);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// "What was seen": one line per activity count worth showing, for the text and markdown
/// reports (and the sentence that explains an empty findings list).
pub fn activity_lines(a: &crate::engine::ActivityCounts) -> Vec<(&'static str, String)> {
    let opt = |v: Option<u64>| v.map_or("not counted".to_string(), |n| n.to_string());
    let mut v = vec![
        ("percpu allocations (host)", opt(a.percpu_allocations)),
        ("  of them blocking", opt(a.blocking_percpu_allocations)),
        (
            "constrained (NOFS/NOIO)",
            a.constrained_allocations.to_string(),
        ),
        (
            "  by cause",
            format!(
                "gfp argument {}, IO_FLUSHER {}, NOIO scope {}, NOFS scope {}",
                a.constrained_by_gfp_argument,
                a.constrained_by_io_flusher,
                a.constrained_by_noio_scope,
                a.constrained_by_nofs_scope
            ),
        ),
        ("  took the mutex", a.constrained_took_mutex.to_string()),
        (
            "  chunk work held",
            format!(
                "{} creation(s), {} population(s)",
                a.chunk_creates_by_constrained_holder, a.chunk_populates_by_constrained_holder
            ),
        ),
        (
            "nested FS/IO-capable",
            a.nested_allocations_allowing_fs_io.to_string(),
        ),
        ("reclaims by a holder", a.reclaims_by_holder.to_string()),
    ];
    let waits = if a.waits_by_class.is_empty() {
        "0".to_string()
    } else {
        a.waits_by_class
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    v.push(("waits on the mutex", waits));
    if !a.top_processes.is_empty() {
        v.push(("constrained, by whom", processes_words(&a.top_processes)));
    }
    v
}

/// Who made the constrained allocations: "fio/1234 12012, iscsid/88 3" (the kernel's
/// per-process counts, most first).
pub fn processes_words(p: &[crate::engine::ProcessActivity]) -> String {
    p.iter()
        .map(|p| {
            format!(
                "{}/{} {}",
                ascii(&p.comm),
                p.tgid,
                p.constrained_allocations
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
