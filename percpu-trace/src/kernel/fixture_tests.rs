//! The analysis and the plan run on facts extracted from real kernels
//! (tests/fixtures/kernels/*, made by extract.sh there).
use std::{collections::HashMap, path::PathBuf};

use percpu_trace_common::NO_ARG;

use super::{
    analyze::{analyze, privileges_from, Inputs},
    btf_dump::RawDump,
    decode::format_gfp,
    fix_code::{FixCode, FunctionCode},
    plan::{AttachMode, Attachment},
    symbols::{MutexSource, Resolution},
    tables::TRACEPOINTS,
    tracefs::Tracefs,
    BtfStatus, Fentry, Kernel, ParamSource, PatchId, PatchState, Support, Verdict,
};

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kernels")
        .join(name)
}

/// Inputs as discovery would gather them on the kernel the fixture came from.
pub(super) fn inputs(name: &str) -> Inputs {
    // A hand-made fixture names in `base` the real one its other files come from.
    let own = dir(name);
    let d = match std::fs::read_to_string(own.join("base")) {
        Ok(b) => dir(b.trim()),
        Err(_) => own.clone(),
    };
    let read = |f: &str| {
        std::fs::read_to_string(own.join(f))
            .or_else(|_| std::fs::read_to_string(d.join(f)))
            .ok()
    };
    let misc = read("misc").unwrap_or_default();
    let misc_get = |k: &str| {
        misc.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    let event_sources = misc_get("event_sources").unwrap_or_default();
    let mut formats = HashMap::new();
    for (cat, tp, _) in TRACEPOINTS {
        if let Ok(t) = std::fs::read_to_string(d.join("events").join(cat).join(tp).join("format")) {
            formats.insert(format!("{cat}/{tp}"), t);
        }
    }
    let btf =
        read("btf.raw").map(|t| Box::new(RawDump::parse(&t)) as Box<dyn super::btf::TypeSource>);
    let code = |f: &str, name: &str| {
        std::fs::read(d.join(f))
            .map(|bytes| FunctionCode {
                name: name.into(),
                bytes,
                addr: 0,
                source: "read_kmem".into(),
            })
            .map_err(|_| "not in the fixture".to_string())
    };
    Inputs {
        release: read("release")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        build: read("version").map(|s| s.trim().to_string()),
        fix_code: FixCode {
            arch: "x86_64".into(),
            pcpu_alloc: code("pcpu_alloc_noprof.bin", "pcpu_alloc_noprof"),
            populate: code("pcpu_populate_chunk.bin", "pcpu_populate_chunk"),
            map_pages: Vec::new(),
            scope_helpers: Vec::new(),
        },
        arch: "x86_64".into(),
        privileges: privileges_from(0x1ff_feff_ffff, 0),
        btf_status: BtfStatus {
            path: Some(d.join("btf.raw")),
            from_user: false,
            error: None,
        },
        btf,
        kallsyms_path: d.join("kallsyms"),
        kallsyms: read("kallsyms")
            .map(|t| std::sync::Arc::new(super::symbols::SymbolTable::parse(&t)))
            .ok_or_else(|| "missing".to_string()),
        kptr_restrict: misc_get("kptr_restrict").and_then(|s| s.parse().ok()),
        system_map: Err("no System.map".into()),
        filter_functions: read("available_filter_functions"),
        kprobe_blacklist: None,
        kprobes: Support {
            available: event_sources.split_whitespace().any(|s| s == "kprobe"),
            detail: format!("event sources: {event_sources}"),
        },
        fentry: Fentry::NotProbed {
            reason: "fixture".into(),
        },
        tracefs: Tracefs {
            path: Some("/sys/kernel/tracing".into()),
            mounted_by_us: false,
            error: None,
        },
        formats: Some(formats),
        lockdown: misc_get("lockdown"),
        realtime: misc_get("realtime").filter(|s| !s.is_empty()),
    }
}

pub(crate) fn kernel(name: &str) -> Kernel {
    analyze(inputs(name))
}

fn sym<'a>(k: &'a Kernel, role: &str) -> Option<&'a str> {
    k.symbols[role].symbol.as_deref()
}

#[test]
fn host_6_18_no_kprobes_no_mutex_unpatched() {
    let k = kernel("host-6.18");
    assert!(k.release.starts_with("6.18"));
    assert!(!k.kprobes.available);
    assert_eq!(sym(&k, "pcpu_alloc"), Some("pcpu_alloc_noprof"));
    assert_eq!(sym(&k, "vmalloc"), Some("__vmalloc_node_range_noprof"));
    assert_eq!(k.fix.present, Some(false));
    assert_eq!(k.mutex.addr, None);
    assert_eq!(k.task.flags, Some(44));
    assert_eq!(
        k.mutex.layout.as_ref().map(|l| (l.owner_off, l.owner_mask)),
        Some((0, !7))
    );
    assert_eq!(k.preempt_rt, Some(false));
    // 6.18 reclaim layout: order @8, gfp_flags @16.
    let plan = k.plan(AttachMode::Auto).unwrap();
    assert_eq!(plan.mode, AttachMode::Tracepoint);
    assert_eq!(plan.config.tp_reclaim_order_off, 8);
    assert_eq!(plan.config.tp_reclaim_gfp_off, 16);
    // This extract has no __bpf_trace_* functions: no argument names, so perf tracepoint
    // events read at the format's offsets, and no raw program is planned.
    assert!(k.tracepoints.values().all(|t| t.raw_args.is_err()));
    assert!(plan.probes.iter().all(|p| !p.program.ends_with("_raw")
        && !matches!(p.attachment, Attachment::Tracepoint { raw: true, .. })));
    assert!(plan.probes.iter().any(|p| p.program == "percpu_alloc_tp"
        && matches!(p.attachment, Attachment::Tracepoint { raw: false, .. })));
    assert_eq!(plan.config.raw_reclaim_gfp_arg, NO_ARG);
    assert_eq!(plan.config.mutex_addr, 0);
    // The kernel's own BTF: task flags are read through bpf_get_current_task_btf.
    assert_eq!(plan.config.task_btf, 1);
    let by = |p: &str| {
        plan.probes
            .iter()
            .find(|x| x.program == p)
            .unwrap()
            .attachment
            .clone()
    };
    assert!(matches!(
        by("percpu_alloc_tp"),
        Attachment::Tracepoint { .. }
    ));
    assert!(matches!(
        by("chunk_create_tp"),
        Attachment::Tracepoint { .. }
    ));
    assert!(matches!(
        by("pcpu_alloc_enter"),
        Attachment::Unavailable { .. }
    ));
    assert!(matches!(
        by("contention_begin"),
        Attachment::Unavailable { .. }
    ));
    assert!(matches!(
        by("direct_reclaim_begin"),
        Attachment::Tracepoint { .. }
    ));
    assert!(k.plan(AttachMode::Kprobe).is_err());
    let e = k.plan(AttachMode::Fentry).unwrap_err().to_string();
    assert!(e.contains("--attach fentry") && !e.contains('\n'), "{e}");
    let text = super::check::render_text(&k, &plan);
    assert!(text.contains("pcpu_alloc_mutex  UNKNOWN"), "{text}");
    let v = super::check::render_json(&k, &plan);
    assert_eq!(v["plan"]["mode"], "tracepoint");
    assert_eq!(v["kernel"]["fix"]["present"], false);
}

#[test]
fn debian_7_2_vulnerable_kprobes_mutex() {
    let k = kernel("debian-7.2.13");
    assert!(k.kprobes.available);
    assert_eq!(k.fix.present, Some(false));
    assert_eq!(k.mutex.source, Some(MutexSource::Kallsyms));
    assert!(k.mutex.addr.is_some());
    assert_eq!(k.lockdown.as_deref(), Some("none"));
    assert!(k.gfp.source.starts_with("BTF enum ___GFP_*_BIT"));
    // 7.2's table: GFP_NOWAIT includes __GFP_NOWARN; single flags in bit order.
    assert_eq!(format_gfp(0x2800, &k.gfp), "GFP_NOWAIT");
    assert_eq!(format_gfp(0xc00 | 0x2000, &k.gfp), "GFP_NOIO|__GFP_NOWARN");
    assert_eq!(
        format_gfp(0xcc0 | 0x10000 | 0x100, &k.gfp),
        "GFP_KERNEL|__GFP_ZERO|__GFP_NORETRY"
    );
    let plan = k.plan(AttachMode::Auto).unwrap();
    assert_eq!(plan.mode, AttachMode::Kprobe);
    let c = plan.config;
    assert_eq!(
        (
            c.arg_pcpu_size,
            c.arg_pcpu_align,
            c.arg_pcpu_reserved,
            c.arg_pcpu_gfp
        ),
        (0, 1, 2, 3)
    );
    assert_eq!(c.arg_create_gfp, 0);
    assert_eq!(c.arg_populate_gfp, 3);
    assert_eq!((c.arg_populate_start, c.arg_populate_end), (1, 2));
    assert_eq!(c.arg_vm_areas_gfp, NO_ARG);
    assert_eq!(c.arg_vm_areas_nr, 2);
    assert_eq!(c.arg_vmalloc_gfp, 4);
    // 7.2 reclaim layout: gfp_flags @8, memcg_id @16, order @24.
    assert_eq!((c.tp_reclaim_gfp_off, c.tp_reclaim_order_off), (8, 24));
    assert_eq!(c.mutex_owner_mask, !7);
    assert_eq!(c.pf_memalloc_noio, 0x80000);
    let by = |p: &str| {
        plan.probes
            .iter()
            .filter(|x| x.program == p)
            .map(|x| x.attachment.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by("pcpu_alloc_enter"),
        vec![Attachment::Kprobe {
            symbol: "pcpu_alloc_noprof".into()
        }]
    );
    assert_eq!(
        by("pcpu_alloc_exit"),
        vec![Attachment::Kretprobe {
            symbol: "pcpu_alloc_noprof".into()
        }]
    );
    assert_eq!(by("pgtable_alloc").len(), 3);
    // check --probe finds the page-table points by this suffix.
    let pgt = plan.probes.iter().filter(|p| p.program == "pgtable_alloc");
    assert!(
        pgt.clone().count() == 3
            && pgt
                .clone()
                .all(|p| p.point.ends_with(super::plan::POINT_PGTABLE_SUFFIX))
    );
    // Every tracepoint is a raw one: its TP_PROTO names from the BTF's __bpf_trace_*
    // functions (7.2's vmscan prototype is (gfp_flags, order, memcg), 6.x's (order,
    // gfp_flags)), so the raw programs are planned.
    assert_eq!(
        by("contention_begin_raw"),
        vec![Attachment::Tracepoint {
            category: "lock".into(),
            name: "contention_begin".into(),
            raw: true
        }]
    );
    assert!(by("contention_begin").is_empty());
    for p in [
        "direct_reclaim_begin_raw",
        "direct_reclaim_end_raw",
        "memcg_reclaim_begin_raw",
        "memcg_reclaim_end_raw",
        "contention_end_raw",
        "task_exit_raw",
    ] {
        assert!(
            matches!(by(p)[..], [Attachment::Tracepoint { raw: true, .. }]),
            "{p}"
        );
    }
    assert_eq!((c.raw_reclaim_gfp_arg, c.raw_reclaim_order_arg), (0, 1));
    assert_eq!(c.raw_reclaim_nr_arg, 0);
    assert_eq!(
        (
            c.raw_lock_addr_arg,
            c.raw_lock_flags_arg,
            c.raw_lock_ret_arg
        ),
        (0, 1, 1)
    );
    assert!(matches!(
        by("percpu_alloc_tp")[0],
        Attachment::Unavailable { .. }
    ));
    assert!(matches!(by("chunk_create")[0], Attachment::Kprobe { .. }));
    // Tracepoint mode on the same kernel swaps the chunk programs.
    let tp = k.plan(AttachMode::Tracepoint).unwrap();
    assert!(tp.probes.iter().any(|p| p.program == "chunk_create_raw"
        && matches!(p.attachment, Attachment::Tracepoint { raw: true, .. })));
    let t = tp.config;
    assert_eq!(
        (
            t.raw_pcpu_call_site_arg,
            t.raw_pcpu_reserved_arg,
            t.raw_pcpu_atomic_arg,
            t.raw_pcpu_size_arg,
            t.raw_pcpu_align_arg,
            t.raw_pcpu_gfp_arg,
            t.raw_chunk_base_arg
        ),
        (0, 1, 2, 3, 4, 9, 0)
    );
    assert!(tp
        .probes
        .iter()
        .any(|p| p.program == "chunk_create"
            && matches!(p.attachment, Attachment::Unavailable { .. })));
}

#[test]
fn debian_7_3_fix_present() {
    let k = kernel("debian-7.3.4");
    assert_eq!(k.fix.present, Some(true), "{}", k.fix.detail);
    let c = k.plan(AttachMode::Kprobe).unwrap().config;
    assert_eq!(c.arg_vm_areas_gfp, 4);
    assert_eq!(c.arg_vm_areas_nr, 2);
    assert_eq!(c.arg_pcpu_gfp, 3);
}

#[test]
fn debian_6_1_old_names_and_gfp_table() {
    let k = kernel("debian-6.1.192");
    assert_eq!(sym(&k, "pcpu_alloc"), Some("pcpu_alloc"));
    assert_eq!(sym(&k, "vmalloc"), Some("__vmalloc_node_range"));
    assert_eq!(k.signatures["pcpu_alloc"].source, ParamSource::Btf);
    let c = k.plan(AttachMode::Kprobe).unwrap().config;
    assert_eq!(c.arg_pcpu_gfp, 3);
    assert_eq!(c.arg_vmalloc_gfp, 4);
    // No ___GFP_*_BIT enum before 6.10: the per-version table, with __GFP_ATOMIC (before 6.3).
    assert!(k.gfp.source.contains("6.1"));
    assert_eq!(format_gfp(0xa20, &k.gfp), "GFP_ATOMIC");
    // 6.1's own table (from its tracefs format) puts __GFP_NOWARN before __GFP_ZERO.
    assert_eq!(
        format_gfp(0xcc0 | 0x2000 | 0x100, &k.gfp),
        "GFP_KERNEL|__GFP_NOWARN|__GFP_ZERO"
    );
    assert!(k.notes.iter().any(|n| n.starts_with("gfp bits")));
}

#[test]
fn debian_7_2_rt_mutex_layout() {
    let k = kernel("debian-7.2.13-rt");
    assert_eq!(k.preempt_rt, Some(true));
    let l = k.mutex.layout.clone().unwrap();
    assert!(l.rt);
    assert_ne!(l.owner_off, 0);
    assert_eq!(l.owner_mask, !1);
}

#[test]
fn missing_btf_falls_back_to_tables() {
    let mut i = inputs("debian-6.1.192");
    i.btf = None;
    let k = analyze(i);
    assert_eq!(k.signatures["pcpu_alloc"].source, ParamSource::Table);
    assert_eq!(k.fix.present, None);
    assert_eq!(k.task.flags, None);
    let c = k.plan(AttachMode::Kprobe).unwrap().config;
    assert_eq!(c.arg_pcpu_gfp, 3);
    assert_eq!(c.task_btf, 0, "no flags offset from BTF: the helper read");
    assert_eq!(
        c.pf_memalloc_noio, 0,
        "scope bits are off when task flags cannot be read"
    );
    assert_eq!(c.mutex_addr, 0, "no owner layout, no holder checks");
}

#[test]
fn zeroed_kallsyms_hide_the_mutex() {
    let mut i = inputs("debian-7.2.13");
    let text = std::fs::read_to_string(dir("debian-7.2.13").join("kallsyms")).unwrap();
    let zeroed: String = text
        .lines()
        .map(|l| format!("0000000000000000{}\n", &l[16..]))
        .collect();
    i.kallsyms = Ok(std::sync::Arc::new(super::symbols::SymbolTable::parse(
        &zeroed,
    )));
    let k = analyze(i);
    assert!(k.kallsyms.zeroed);
    assert_eq!(k.mutex.addr, None);
    assert_eq!(k.symbols["pcpu_alloc"].resolution, Resolution::Exact);
    assert!(!k.mutex_losses().is_empty());
}

#[test]
fn mutex_found_in_real_locking_code() {
    // pcpu_alloc_noprof's code as loaded on the host (host-6.18/pcpu_alloc_noprof.bin, read
    // through read_kmem), and the host's kallsyms.
    let table = super::symbols::SymbolTable::parse(
        &std::fs::read_to_string(dir("host-6.18").join("kallsyms")).unwrap(),
    );
    let code = std::fs::read(dir("host-6.18").join("pcpu_alloc_noprof.bin")).unwrap();
    let f = table.get("pcpu_alloc_noprof").unwrap().addr;
    let want = 0xffffffff83125180u64;
    let mut idle_mutex = [0u8; 64];
    idle_mutex[16..24].copy_from_slice(&(want + 16).to_le_bytes());
    idle_mutex[24..32].copy_from_slice(&(want + 16).to_le_bytes());
    let mut read = |a: u64, n: usize| -> Result<Vec<u8>, String> {
        if a == f {
            Ok(code[..n.min(code.len())].to_vec())
        } else if a == want {
            Ok(idle_mutex[..n.min(64)].to_vec())
        } else {
            Ok(vec![0xcc; n]) // other functions: int3 padding, no calls
        }
    };
    let wait = Some(("wait_list".to_string(), 16));
    let (addr, funcs, n) =
        super::mutex_scan::mutex_from_code(&table, "x86_64", wait.clone(), &mut read).unwrap();
    assert_eq!(addr, want);
    assert!(funcs.contains(&"pcpu_alloc_noprof".to_string()));
    assert!(n >= 1);
    // A candidate whose wait list is garbage is refused.
    idle_mutex[16..24].copy_from_slice(&0x1234u64.to_le_bytes());
    let mut read_bad = |a: u64, n: usize| -> Result<Vec<u8>, String> {
        if a == f {
            Ok(code[..n.min(code.len())].to_vec())
        } else if a == want {
            Ok(idle_mutex[..n.min(64)].to_vec())
        } else {
            Ok(vec![0xcc; n])
        }
    };
    assert!(super::mutex_scan::mutex_from_code(&table, "x86_64", wait, &mut read_bad).is_err());
}

#[test]
fn fentry_plan_when_the_kernel_accepts_it() {
    let mut i = inputs("debian-7.2.13");
    i.fentry = Fentry::Supported {
        target: "pcpu_alloc_noprof".into(),
    };
    let plan = analyze(i).plan(AttachMode::Auto).unwrap();
    assert_eq!(plan.mode, AttachMode::Fentry);
    let get = |p: &str| {
        plan.probes
            .iter()
            .find(|x| x.program == p)
            .map(|x| x.attachment.clone())
    };
    assert_eq!(
        get("fentry_pcpu_alloc"),
        Some(Attachment::Fentry {
            symbol: "pcpu_alloc_noprof".into()
        })
    );
    assert_eq!(
        get("fexit_pcpu_alloc"),
        Some(Attachment::Fexit {
            symbol: "pcpu_alloc_noprof".into()
        })
    );
    assert_eq!(
        get("fentry_pud_alloc"),
        Some(Attachment::Fentry {
            symbol: "__pud_alloc".into()
        })
    );
    assert!(get("pcpu_alloc_enter").is_none());
}

/// `--btf` accepts a vmlinux ELF: set PERCPU_TRACE_TEST_VMLINUX to one (see README.md).
#[test]
#[ignore]
fn btf_from_vmlinux_elf() {
    let path = std::env::var("PERCPU_TRACE_TEST_VMLINUX").unwrap();
    let b = super::btf_file::BtfFile::open(std::path::Path::new(&path)).unwrap();
    let p = super::btf::func_params(&b, "pcpu_get_vm_areas").unwrap();
    println!("pcpu_get_vm_areas({})", p.join(", "));
    assert!(super::btf::member_offset(&b, "task_struct", &["flags"]).is_some());
}

fn states(k: &Kernel) -> Vec<(&'static str, &'static str)> {
    k.fix
        .patches
        .iter()
        .map(|p| (p.id.id(), p.state.id()))
        .collect()
}

#[test]
fn fix_verdicts_of_real_kernels() {
    // Host 6.18: BTF says no gfp, and its own code shows the old masks.
    let k = kernel("host-6.18");
    assert_eq!(k.fix.verdict, Verdict::Vulnerable);
    assert_eq!(
        states(&k),
        [
            ("regression", "present"),
            ("vm-areas-gfp", "absent"),
            ("populate-gfp", "absent"),
            ("backing-noio", "absent")
        ]
    );
    assert!(k.fix.patches[3].evidence.contains("0x12cc0"));
    // 7.2.13: BTF only (no code in the fixture).
    let k = kernel("debian-7.2.13");
    assert_eq!(k.fix.verdict, Verdict::Vulnerable);
    assert_eq!(k.fix.patches[0].state, PatchState::Present);
    assert_eq!(k.fix.patches[3].state, PatchState::Unknown);
    assert!(k.fix.patches[3].evidence.contains("not read"));
    // 7.2.13-rt: the same code under PREEMPT_RT (the VM matrix line expects this verdict).
    assert_eq!(kernel("debian-7.2.13-rt").fix.verdict, Verdict::Vulnerable);
    // 7.3.4: pcpu_get_vm_areas takes a gfp; nothing says a part is missing.
    let k = kernel("debian-7.3.4");
    assert_eq!(k.fix.verdict, Verdict::LikelyFixed);
    assert!(k.fix.patches[0].evidence.starts_with("fix-series: implied"));
    // 6.1.192 (Debian's release string hides the sublevel; uname -v has it): the backport.
    let k = kernel("debian-6.1.192");
    assert_eq!(k.fix.verdict, Verdict::Vulnerable);
    assert!(
        k.fix.patches[0].evidence.contains("Debian 6.1.192-2"),
        "{}",
        k.fix.patches[0].evidence
    );
    let plan = k.plan(AttachMode::Auto).unwrap();
    let v = super::check::render_json(&k, &plan);
    assert_eq!(v["kernel"]["fix"]["verdict"], "vulnerable");
    assert_eq!(v["kernel"]["fix"]["patches"][1]["id"], "vm-areas-gfp");
    assert_eq!(v["kernel"]["fix"]["patches"][1]["state"], "absent");
    assert_eq!(v["kernel"]["fix"]["present"], false);
    let text = super::check::render_text(&k, &plan);
    assert!(text.contains("fix verdict  vulnerable"), "{text}");
    assert!(
        text.contains("    vm-areas-gfp  absent   BTF: pcpu_get_vm_areas("),
        "{text}"
    );
}

#[test]
fn fix_verdict_without_the_regression_is_not_affected() {
    let k = kernel("synthetic-6.14-no-regression");
    assert_eq!(k.fix.verdict, Verdict::NotAffected);
    assert_eq!(k.fix.patches[0].state, PatchState::Absent);
    assert!(k.fix.patches[0].evidence.contains("before v6.15"));
    // Earlier 6.1.y than the known backport: cannot tell.
    let mut i = inputs("debian-6.1.192");
    i.build = Some("#1 SMP Debian 6.1.150-1".into());
    assert_eq!(analyze(i).fix.verdict, Verdict::Unknown);
}

#[test]
fn fix_verdict_patches_1_2_only_is_partially_fixed() {
    // 7.3.4's BTF (pcpu_get_vm_areas takes a gfp) with code that scopes the populate path
    // (or $0x80000,0x2c(%rax)) but still masks backing allocations with GFP_KERNEL
    // (and $0x12cc0,%eax): the maintainer's "first two, third needs discussion" kernel.
    let mut i = inputs("debian-7.3.4");
    i.fix_code = FixCode {
        arch: "x86_64".into(),
        pcpu_alloc: Ok(FunctionCode {
            name: "pcpu_alloc_noprof".into(),
            bytes: vec![0x25, 0xc0, 0x2c, 0x01, 0x00],
            addr: 0,
            source: "read_kmem".into(),
        }),
        populate: Ok(FunctionCode {
            name: "pcpu_populate_chunk".into(),
            bytes: vec![0x81, 0x48, 0x2c, 0x00, 0x00, 0x08, 0x00],
            addr: 0,
            source: "read_kmem".into(),
        }),
        map_pages: Vec::new(),
        scope_helpers: Vec::new(),
    };
    let k = analyze(i);
    assert_eq!(k.fix.verdict, Verdict::PartiallyFixed);
    assert_eq!(
        states(&k),
        [
            ("regression", "present"),
            ("vm-areas-gfp", "present"),
            ("populate-gfp", "present"),
            ("backing-noio", "absent")
        ]
    );
    assert_eq!(k.fix.fix_verdict().missing(), vec![PatchId::BackingNoio]);
}

#[test]
fn fix_verdict_unknown_without_btf_or_code() {
    let mut i = inputs("debian-7.2.13");
    i.btf = None;
    let k = analyze(i);
    assert_eq!(k.fix.verdict, Verdict::Unknown);
    assert_eq!(k.fix.present, None);
}

/// Every number in a JSON value, with its path, that a double cannot hold exactly.
fn numbers_past_2_53(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Number(n)
            if n.as_u64().is_some_and(|x| x > 1 << 53)
                || n.as_i64().is_some_and(|x| x < -(1 << 53)) =>
        {
            out.push(format!("{path} = {n}"));
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                numbers_past_2_53(x, &format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                numbers_past_2_53(x, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn check_json_writes_addresses_as_hex_strings() {
    // jq turned 0xffffffff82a4b816 into 18446744071611494000: no JSON number may hold an
    // address; each is a "0x..." string.
    for name in [
        "debian-7.2.13",
        "debian-7.2.13-rt",
        "host-6.18",
        "debian-6.1.192",
    ] {
        let k = kernel(name);
        let plan = k.plan(AttachMode::Auto).unwrap();
        let v = super::check::render_json(&k, &plan);
        assert_eq!(v["schema"], super::check::CHECK_SCHEMA_ID);
        let mut big = Vec::new();
        numbers_past_2_53(&v, "", &mut big);
        assert!(big.is_empty(), "{name}: {big:?}");
        let mask = v["config"]["mutex_owner_mask"].as_str().unwrap();
        assert!(mask.starts_with("0xffffffffffff"), "{name}: {mask}");
    }
    let k = kernel("debian-7.2.13");
    let v = super::check::render_json(&k, &k.plan(AttachMode::Auto).unwrap());
    let addr = k.mutex.addr.unwrap();
    assert_eq!(v["kernel"]["mutex"]["addr"], format!("{addr:#x}"));
    assert_eq!(v["config"]["mutex_addr"], format!("{addr:#x}"));
    let sym = &v["kernel"]["symbols"]["pcpu_alloc"]["addr"];
    assert!(
        sym.as_str().is_some_and(|s| s.starts_with("0xffffffff")),
        "{sym}"
    );
}

#[test]
fn check_and_record_count_the_same_unseen_points() {
    // check said "cannot see 7 probe point(s)" and listed 9; record said 9.
    let k = kernel("host-6.18");
    let plan = k.plan(AttachMode::Auto).unwrap();
    let n = plan.unseen().len();
    let text = super::check::render_text(&k, &plan);
    let head = format!(
        "cannot see on this host ({}):",
        super::check::unseen_count(n)
    );
    let at = text.find(&head).unwrap_or_else(|| panic!("{head}\n{text}"));
    let listed = text[at..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .count();
    assert_eq!(listed, n, "{text}");
    for p in &plan.probes {
        if matches!(p.attachment, Attachment::Unavailable { .. }) {
            assert!(
                text[at..].contains(&format!("  {}: ", p.point)),
                "{}",
                p.point
            );
        }
    }
}

#[test]
fn check_without_root_says_what_root_adds() {
    let mut k = kernel("debian-7.2.13");
    let plan = k.plan(AttachMode::Auto).unwrap();
    let text = super::check::render_text(&k, &plan);
    assert!(!text.contains("without root"), "{text}");
    k.privileges = Default::default();
    k.kallsyms.zeroed = true;
    let text = super::check::render_text(&k, &plan);
    let at = text.find("without root: ").expect(&text);
    assert!(
        text[at..].contains("loading and attaching the probes"),
        "{text}"
    );
    assert!(text[at..].contains("pcpu_alloc_mutex address"), "{text}");
    assert_eq!(
        super::check::render_json(&k, &plan)["root_adds"]
            .as_array()
            .map(Vec::len),
        Some(super::check::root_adds(&k).len())
    );
}

#[test]
fn offline_check_makes_no_attach_plan() {
    // The offline JSON showed a tracepoint-mode plan for a kernel nobody had probed.
    let k = kernel("debian-7.2.13");
    let plan = k.plan(AttachMode::Auto).unwrap();
    let v = super::check::render_offline_json(&k, &plan);
    assert_eq!(v["plan"]["probed"], false);
    assert_eq!(v["plan"]["mode"], serde_json::Value::Null);
    assert_eq!(v["plan"]["probes"].as_array().map(Vec::len), Some(0));
    assert!(v["plan"]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("not probed (offline")));
    for key in ["limits", "can_trace", "root_adds"] {
        assert!(v[key].is_null(), "{key}: {}", v[key]);
    }
    assert!(v["config"]["tracepoint_mode"].is_null());
    assert!(v["config"]["mutex_addr"].is_null());
    // The kernel's facts and verdict stay as the live document has them.
    let live = super::check::render_json(&k, &plan);
    assert_eq!(v["kernel"], live["kernel"]);
    assert_eq!(
        v["config"]["task_flags_off"],
        live["config"]["task_flags_off"]
    );
    let o = super::image::Offline {
        file: "x.deb".into(),
        package: None,
        steps: vec!["raw arm64 Image".into()],
        kernel: k,
    };
    let text = super::image::detail_text(&o);
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("  plan: attach modes not probed (offline image)"),
        "{text}"
    );
    assert!(!text.contains("tracepoint"), "{text}");
}

/// Discovery's one pass over kallsyms gives the same table and function starts as the two
/// passes it replaced, on real kallsyms text (one with modules and `__pfx_` padding).
#[test]
fn one_kallsyms_pass_gives_the_table_and_the_starts() {
    for kernel in ["host-6.18", "debian-7.2.13"] {
        let mut text = std::fs::read_to_string(dir(kernel).join("kallsyms")).unwrap();
        // Module symbols are no vmlinux function starts (the fixtures hold none).
        text.push_str("ffffffffc0001000 t __pfx_mod_fn\t[somemod]\n");
        text.push_str("ffffffffc0001010 t mod_fn\t[somemod]\n");
        let (table, starts) = super::gather::table_and_starts(&text);
        let alone = super::symbols::SymbolTable::parse(&text);
        assert_eq!(starts, super::gather::function_starts(&text), "{kernel}");
        assert!(!starts.contains(&0xffffffffc0001010), "{kernel}");
        assert_eq!(
            (table.count, table.zeroed),
            (alone.count, alone.zeroed),
            "{kernel}"
        );
        for name in [
            "pcpu_alloc_noprof",
            "pcpu_alloc_mutex",
            "mutex_lock",
            "_stext",
        ] {
            assert_eq!(table.get(name), alone.get(name), "{kernel} {name}");
        }
    }
}

#[test]
fn raw_tracepoints_sharing_a_position_fall_back_when_it_differs() {
    // CONFIG has one position per field for both reclaim families and both contention
    // events; a kernel where the second of a pair puts it elsewhere gets that one as a
    // perf tracepoint event (its record offsets checked as before), the first stays raw.
    let mut k = kernel("debian-7.2.13");
    let swap = |t: &mut super::Tracepoint| {
        if let Ok(a) = t.raw_args.as_mut() {
            a.swap(0, 1);
        }
    };
    swap(
        k.tracepoints
            .get_mut("vmscan:mm_vmscan_memcg_reclaim_begin")
            .unwrap(),
    );
    swap(k.tracepoints.get_mut("lock:contention_end").unwrap());
    let plan = k.plan(AttachMode::Kprobe).unwrap();
    let at = |p: &str| {
        plan.probes
            .iter()
            .find(|x| x.program == p)
            .map(|x| x.attachment.clone())
    };
    assert!(matches!(
        at("direct_reclaim_begin_raw"),
        Some(Attachment::Tracepoint { raw: true, .. })
    ));
    assert!(matches!(
        at("memcg_reclaim_begin"),
        Some(Attachment::Tracepoint { raw: false, .. })
    ));
    assert!(matches!(
        at("contention_begin_raw"),
        Some(Attachment::Tracepoint { raw: true, .. })
    ));
    assert!(matches!(
        at("contention_end"),
        Some(Attachment::Tracepoint { raw: false, .. })
    ));
    assert!(at("memcg_reclaim_begin_raw").is_none() && at("contention_end_raw").is_none());
    // A tracepoint whose BTF lacks an argument the program reads is not raw either.
    let mut k = kernel("debian-7.2.13");
    if let Ok(a) = k
        .tracepoints
        .get_mut("lock:contention_begin")
        .unwrap()
        .raw_args
        .as_mut()
    {
        a.retain(|n| n != "flags");
    }
    let plan = k.plan(AttachMode::Kprobe).unwrap();
    assert!(plan.probes.iter().any(|p| p.program == "contention_begin"
        && matches!(p.attachment, Attachment::Tracepoint { raw: false, .. })));
}
