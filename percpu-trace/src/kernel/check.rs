//! `percpu-trace check`: the kernel facts and the attach plan as one screen of text, or JSON.
//! The text form is also the start-up summary of the live modes.
use std::fmt::Write;

use serde_json::{json, Value};

use super::{
    decode::format_gfp,
    plan::{AttachPlan, Attachment},
    symbols::{MutexSource, Resolution},
    Fentry, Kernel, ParamSource,
};

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Readable summary of the kernel and the plan (about one screen).
pub fn render_text(k: &Kernel, plan: &AttachPlan) -> String {
    let mut o = String::new();
    let w = &mut o;
    let _ = writeln!(w, "percpu-trace check: Linux {} {}", k.release, k.arch);
    let p = &k.privileges;
    let _ = writeln!(
        w,
        "  privileges   root {}, CAP_BPF {}, CAP_PERFMON {}, CAP_SYS_ADMIN {}{}",
        yes(p.root),
        yes(p.cap_bpf),
        yes(p.cap_perfmon),
        yes(p.cap_sys_admin),
        if p.can_trace() {
            ""
        } else {
            "  -> cannot load eBPF programs"
        }
    );
    let btf = match (&k.btf.path, &k.btf.error) {
        (Some(path), _) => format!(
            "{}{}",
            path.display(),
            if k.btf.from_user { " (--btf)" } else { "" }
        ),
        (None, Some(e)) => format!("none ({e})"),
        _ => "none".into(),
    };
    let _ = writeln!(w, "  BTF          {btf}");
    let _ = writeln!(
        w,
        "  kprobes      {} ({})",
        yes(k.kprobes.available),
        k.kprobes.detail
    );
    let fentry = match &k.fentry {
        Fentry::Supported { target } => format!("yes (test program on {target} loaded)"),
        Fentry::Refused { target, error } => format!("no: refused on {target}: {error}"),
        Fentry::NotProbed { reason } => format!("not probed ({reason})"),
    };
    let _ = writeln!(w, "  fentry       {fentry}");
    let tracefs = match (&k.tracefs.path, &k.tracefs.error) {
        (Some(p), _) => format!(
            "{}{}",
            p.display(),
            if k.tracefs.mounted_by_us {
                " (mounted by percpu-trace)"
            } else {
                ""
            }
        ),
        (None, Some(e)) => format!("unavailable: {e}"),
        _ => "unavailable".into(),
    };
    let _ = writeln!(w, "  tracefs      {tracefs}");
    let _ = writeln!(
        w,
        "  lockdown     {}",
        k.lockdown.as_deref().unwrap_or(
            "unknown (no /sys/kernel/security/lockdown: securityfs not mounted or LSM off)"
        )
    );
    let rt = match k.preempt_rt {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let _ = writeln!(w, "  PREEMPT_RT   {rt} ({})", k.preempt_rt_detail);
    let ks = &k.kallsyms;
    let kall = match &ks.error {
        Some(e) => format!("unreadable: {e}"),
        None if ks.zeroed => format!(
            "{} symbols, addresses hidden (kptr_restrict={})",
            ks.symbols,
            ks.kptr_restrict
                .map(|v| v.to_string())
                .unwrap_or("?".into())
        ),
        None => format!(
            "{} symbols, addresses visible (kptr_restrict={})",
            ks.symbols,
            ks.kptr_restrict
                .map(|v| v.to_string())
                .unwrap_or("?".into())
        ),
    };
    let _ = writeln!(w, "  kallsyms     {kall}");
    let _ = writeln!(
        w,
        "  fix verdict  {}{}{}",
        k.fix.verdict,
        match k
            .fix
            .fix_verdict()
            .patch(super::PatchId::Regression)
            .and_then(|p| p.decided_by)
        {
            Some(by) => format!(" (regression decided by {})", by.id()),
            None => String::new(),
        },
        if k.fix.verdict == super::Verdict::LikelyFixed {
            " (static evidence only: a recording upgrades it to fixed once the run shows the patches at work)"
        } else {
            ""
        }
    );
    for p in &k.fix.patches {
        let _ = writeln!(
            w,
            "    {:<13} {:<8} {}",
            p.id.id(),
            p.state.id(),
            p.evidence
        );
    }

    // Mutex.
    match (k.mutex.addr, &k.mutex.source) {
        (Some(a), Some(src)) => {
            let from = match src {
                MutexSource::Kallsyms => "kallsyms".to_string(),
                MutexSource::SystemMap { path, kaslr_offset } => {
                    format!("{path}, KASLR offset {kaslr_offset:#x}")
                }
                MutexSource::CodeScan { functions, agreeing_calls } => format!(
                    "the code of {} ({agreeing_calls} mutex_lock call(s) agree; checked as a struct mutex)",
                    functions.join(", ")
                ),
            };
            let _ = writeln!(w, "  pcpu_alloc_mutex  {a:#x} (from {from})");
        }
        _ => {
            let _ = writeln!(
                w,
                "  pcpu_alloc_mutex  UNKNOWN: {}",
                k.mutex.attempts.join("; ")
            );
        }
    }
    let _ = writeln!(w, "    owner word: {}", k.mutex.layout_source);
    let losses = k.mutex_losses();
    if !losses.is_empty() {
        let _ = writeln!(
            w,
            "    lost without it: {}",
            losses
                .iter()
                .map(|l| l.split(' ').next().unwrap_or(l))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let off = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_else(|| "?".into());
    let _ = writeln!(
        w,
        "  task_struct  flags@{} pid@{} comm@{}; PF_MEMALLOC_NOFS {:#x}, PF_MEMALLOC_NOIO {:#x} ({})",
        off(k.task.flags),
        off(k.task.pid),
        off(k.task.comm),
        k.pf.memalloc_nofs,
        k.pf.memalloc_noio,
        if k.pf.source.starts_with("table") { "table" } else { "BTF" }
    );
    let _ = writeln!(
        w,
        "  gfp bits     __GFP_IO {:#x}, __GFP_FS {:#x}, __GFP_DIRECT_RECLAIM {:#x}, GFP_KERNEL={:#x} ({}) ({})",
        k.gfp.io(),
        k.gfp.fs(),
        k.gfp.direct_reclaim(),
        k.gfp.gfp_kernel(),
        format_gfp(k.gfp.gfp_kernel(), &k.gfp),
        k.gfp.source
    );

    // Symbols.
    let _ = writeln!(w, "symbols:");
    for (role, s) in &k.symbols {
        let sig = k.signatures.get(role);
        let args = sig
            .map(|s| {
                let src = if s.source == ParamSource::Btf {
                    "BTF"
                } else {
                    "table"
                };
                format!("({}) [{src}]", s.params.join(", "))
            })
            .unwrap_or_default();
        let state = match &s.resolution {
            Resolution::Exact => s.symbol.clone().unwrap_or_default(),
            Resolution::Clone { .. } => format!("{} (clone)", s.symbol.clone().unwrap_or_default()),
            Resolution::PartOnly { parts } => {
                format!("{} inlined; only {}", s.wanted, parts.join(","))
            }
            Resolution::Ambiguous { names } => {
                format!("{} ambiguous: {}", s.wanted, names.join(","))
            }
            Resolution::Missing => format!("{} MISSING", s.wanted),
        };
        let trace = match (s.ftrace, s.kprobe_blacklisted) {
            (_, Some(true)) => " kprobe-blacklisted",
            (Some(false), _) => " notrace",
            _ => "",
        };
        let _ = writeln!(w, "  {role:<29} {state}{trace} {args}");
    }

    // Plan.
    let _ = writeln!(
        w,
        "plan (--attach {}):",
        super::planner::mode_name(plan.mode)
    );
    if let Some(l) = super::plan::mode_limits(super::planner::mode_name(plan.mode)) {
        let _ = writeln!(w, "  limits: {l}");
    }
    for p in &plan.probes {
        let (tag, what) = match &p.attachment {
            Attachment::Kprobe { symbol } => ("kprobe", symbol.clone()),
            Attachment::Kretprobe { symbol } => ("kretprobe", symbol.clone()),
            Attachment::Fentry { symbol } => ("fentry", symbol.clone()),
            Attachment::Fexit { symbol } => ("fexit", symbol.clone()),
            Attachment::Tracepoint {
                category,
                name,
                raw,
            } => (
                if *raw { "raw_tp" } else { "tracepoint" },
                format!("{category}:{name}"),
            ),
            Attachment::Unavailable { reason } => {
                if reason.starts_with("not used in") {
                    ("-", reason.clone())
                } else {
                    ("UNAVAILABLE", format!("{reason}; loses: {}", p.disables))
                }
            }
        };
        let _ = writeln!(w, "  {:<24} {:<11} {}", p.program, tag, what);
    }
    for n in &k.notes {
        let _ = writeln!(w, "note: {n}");
    }
    // Last, so it is what a reader sees: what this host cannot observe, and what it costs.
    let lost = plan.unseen();
    if lost.is_empty() {
        let _ = writeln!(
            w,
            "cannot see: nothing; every probe point has a way to attach"
        );
    } else {
        let _ = writeln!(w, "cannot see on this host ({}):", unseen_count(lost.len()));
        for u in lost {
            let _ = writeln!(w, "  {}: {}; costs: {}", u.point, u.reason, u.costs);
        }
    }
    let adds = root_adds(k);
    if !adds.is_empty() {
        let _ = writeln!(
            w,
            "without root: the facts above are what this user can read; run as root \
             (sudo percpu-trace check) for:"
        );
        for a in adds {
            let _ = writeln!(w, "  {a}");
        }
    }
    o
}

/// What running as root would add to what this process learned: empty when it may trace.
/// `check` without root prints what it can (release, BTF, the verdict parts read from
/// BTF and kallsyms names), then this.
pub fn root_adds(k: &Kernel) -> Vec<&'static str> {
    if k.privileges.can_trace() {
        return Vec::new();
    }
    let mut out = vec![
        "loading and attaching the probes (tracing itself, and whether this kernel's \
         verifier accepts them)",
    ];
    if k.kallsyms.zeroed || k.kallsyms.error.is_some() {
        out.push("kernel addresses in kallsyms (the pcpu_alloc_mutex address, stack symbols)");
    }
    if k.tracefs.path.is_none() {
        out.push("tracefs (tracepoint formats, which functions kprobes may attach to)");
    }
    if matches!(k.fentry, Fentry::NotProbed { .. }) {
        out.push("the fentry load test (whether fentry/fexit can be used)");
    }
    out.push(
        "reading the kernel's code through a BPF program: the fix verdict's code evidence \
         and, without CONFIG_KALLSYMS_ALL, the mutex address",
    );
    out
}

/// "N probe point(s)": the count of [`AttachPlan::unseen`] in the words `check` and
/// `record` both use.
pub fn unseen_count(n: usize) -> String {
    format!("{n} probe point(s)")
}

/// Value of `check --json`'s `schema` field. v2: kernel addresses and masks are hex
/// strings (`"0xffffffff82a4b816"`; v1, unnamed, printed them as numbers, which jq and
/// JavaScript round).
pub const CHECK_SCHEMA_ID: &str = "percpu-trace-check/v2";

/// What an offline `check --kernel` says in place of an attach plan: which programs attach
/// how is decided by probing the booted kernel (kprobes, the fentry load test, tracefs), and
/// an image is not booted.
pub const OFFLINE_PLAN: &str = "attach modes not probed (offline image): kprobes, fentry and \
     tracefs are probed on the booted kernel; `percpu-trace check` there gives the plan";

/// `check --json` for a kernel read offline: the same document, with the plan replaced by
/// `{"probed": false, "reason": OFFLINE_PLAN}` and every value that only a plan or a
/// running kernel gives set to null: the mode's limits, `config.tracepoint_mode`,
/// `config.mutex_addr` (a link-time address at best; KASLR moves it at boot), `can_trace`
/// and `root_adds` (this process's privileges, not the image's).
pub fn render_offline_json(k: &Kernel, plan: &AttachPlan) -> Value {
    let mut v = render_json(k, plan);
    v["plan"] = json!({ "probed": false, "mode": null, "reason": OFFLINE_PLAN, "probes": [] });
    v["limits"] = Value::Null;
    v["config"]["tracepoint_mode"] = Value::Null;
    v["config"]["mutex_addr"] = Value::Null;
    v["can_trace"] = Value::Null;
    v["root_adds"] = Value::Null;
    v
}

/// Machine-readable form: `{"schema": ..., "kernel": ..., "plan": {...}, "config": {...}}`.
pub fn render_json(k: &Kernel, plan: &AttachPlan) -> Value {
    let c = &plan.config;
    let config = json!({
        "mutex_addr": crate::hex::format(c.mutex_addr),
        "mutex_owner_mask": crate::hex::format(c.mutex_owner_mask),
        "mutex_owner_off": c.mutex_owner_off,
        "task_flags_off": c.task_flags_off,
        "gfp_io": c.gfp_io,
        "gfp_fs": c.gfp_fs,
        "gfp_direct_reclaim": c.gfp_direct_reclaim,
        "pf_memalloc_nofs": c.pf_memalloc_nofs,
        "pf_memalloc_noio": c.pf_memalloc_noio,
        "pf_local_throttle": c.pf_local_throttle,
        "tracepoint_mode": c.tracepoint_mode,
        "task_pid_off": c.task_pid_off,
        "task_btf": c.task_btf,
        "filter_tgid": c.filter_tgid,
        "arg_pcpu_size": c.arg_pcpu_size,
        "arg_pcpu_align": c.arg_pcpu_align,
        "arg_pcpu_reserved": c.arg_pcpu_reserved,
        "arg_pcpu_gfp": c.arg_pcpu_gfp,
        "arg_create_gfp": c.arg_create_gfp,
        "arg_populate_gfp": c.arg_populate_gfp,
        "arg_populate_start": c.arg_populate_start,
        "arg_populate_end": c.arg_populate_end,
        "arg_vm_areas_gfp": c.arg_vm_areas_gfp,
        "arg_vm_areas_nr": c.arg_vm_areas_nr,
        "arg_vmalloc_gfp": c.arg_vmalloc_gfp,
        "arg_vmalloc_size": c.arg_vmalloc_size,
        "tp_pcpu_gfp_off": c.tp_pcpu_gfp_off,
        "tp_pcpu_atomic_off": c.tp_pcpu_atomic_off,
        "tp_pcpu_reserved_off": c.tp_pcpu_reserved_off,
        "tp_pcpu_size_off": c.tp_pcpu_size_off,
        "tp_pcpu_align_off": c.tp_pcpu_align_off,
        "tp_pcpu_call_site_off": c.tp_pcpu_call_site_off,
        "tp_chunk_base_off": c.tp_chunk_base_off,
        "tp_reclaim_gfp_off": c.tp_reclaim_gfp_off,
        "tp_reclaim_order_off": c.tp_reclaim_order_off,
        "tp_reclaim_nr_off": c.tp_reclaim_nr_off,
        "tp_lock_addr_off": c.tp_lock_addr_off,
        "tp_lock_flags_off": c.tp_lock_flags_off,
        "tp_lock_ret_off": c.tp_lock_ret_off,
    });
    json!({
        "schema": CHECK_SCHEMA_ID,
        "kernel": k,
        "plan": plan,
        "config": config,
        "mutex_losses": k.mutex_losses(),
        "can_trace": k.privileges.can_trace(),
        "root_adds": root_adds(k),
        "limits": super::plan::mode_limits(super::planner::mode_name(plan.mode)),
    })
}
