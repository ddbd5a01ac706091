//! Gathering facts from the machine ([`discover`]) and the pure analysis of them ([`analyze`]),
//! which the fixture tests run on data extracted from other kernels.
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use anyhow::Result;

use super::{
    btf::{self, BtfFile, TypeSource},
    decode::{GfpLayout, MutexLayout, PF_MEMALLOC_NOFS, PF_MEMALLOC_NOIO},
    symbols::{self, MutexSource, SymbolTable},
    tracefs::{self, Field, FormatSource, Tracefs, TracepointFormat},
    BtfStatus, DiscoverOptions, Fentry, FixStatus, KallsymsStatus, Kernel, MutexInfo, ParamSource,
    PfFlags, Privileges, Signature, Support, TaskOffsets,
};

/// Probe targets by role: alternatives in order of preference (new name first).
/// 6.1 has the static `pcpu_alloc`; when even that is unusable, the exported
/// `__alloc_percpu_gfp(size, align, gfp)` is the dependable entry (it misses __alloc_percpu()
/// callers, which pass GFP_KERNEL and are only constrained by a task scope).
pub(crate) const ROLES: &[(&str, &[&str])] = &[
    (
        "pcpu_alloc",
        &["pcpu_alloc_noprof", "pcpu_alloc", "__alloc_percpu_gfp"],
    ),
    ("pcpu_get_vm_areas", &["pcpu_get_vm_areas"]),
    (
        "vmalloc",
        &["__vmalloc_node_range_noprof", "__vmalloc_node_range"],
    ),
    ("try_to_free_pages", &["try_to_free_pages"]),
    (
        "try_to_free_mem_cgroup_pages",
        &["try_to_free_mem_cgroup_pages"],
    ),
    ("pcpu_create_chunk", &["pcpu_create_chunk"]),
    ("pcpu_populate_chunk", &["pcpu_populate_chunk"]),
    ("pcpu_balance_workfn", &["pcpu_balance_workfn"]),
    ("__pte_alloc_kernel", &["__pte_alloc_kernel"]),
    ("__pmd_alloc", &["__pmd_alloc"]),
    ("__pud_alloc", &["__pud_alloc"]),
];

/// Parameter lists used when a function is not in BTF (static functions can be missing on
/// older kernels, or BTF may be absent). From the kernel sources of 6.1..7.3 (KERNELS.md).
/// pcpu_get_vm_areas is listed without the fix's gfp: a table cannot tell the fix status.
pub(crate) const TABLE: &[(&str, &[&str])] = &[
    ("pcpu_alloc_noprof", &["size", "align", "reserved", "gfp"]),
    ("pcpu_alloc", &["size", "align", "reserved", "gfp"]),
    ("__alloc_percpu_gfp", &["size", "align", "gfp"]),
    ("pcpu_create_chunk", &["gfp"]),
    (
        "pcpu_populate_chunk",
        &["chunk", "page_start", "page_end", "gfp"],
    ),
    (
        "pcpu_get_vm_areas",
        &["offsets", "sizes", "nr_vms", "align"],
    ),
    (
        "__vmalloc_node_range_noprof",
        &[
            "size", "align", "start", "end", "gfp_mask", "prot", "vm_flags", "node", "caller",
        ],
    ),
    (
        "__vmalloc_node_range",
        &[
            "size", "align", "start", "end", "gfp_mask", "prot", "vm_flags", "node", "caller",
        ],
    ),
    (
        "try_to_free_pages",
        &["zonelist", "order", "gfp_mask", "nodemask"],
    ),
    (
        "try_to_free_mem_cgroup_pages",
        &["memcg", "nr_pages", "gfp_mask"],
    ),
];

/// Tracepoints read, with the BTF template struct holding their record (for when tracefs
/// cannot be read).
pub(crate) const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("percpu", "percpu_alloc_percpu", "percpu_alloc_percpu"),
    ("percpu", "percpu_create_chunk", "percpu_create_chunk"),
    (
        "vmscan",
        "mm_vmscan_direct_reclaim_begin",
        "mm_vmscan_direct_reclaim_begin_template",
    ),
    (
        "vmscan",
        "mm_vmscan_direct_reclaim_end",
        "mm_vmscan_direct_reclaim_end_template",
    ),
    (
        "vmscan",
        "mm_vmscan_memcg_reclaim_begin",
        "mm_vmscan_direct_reclaim_begin_template",
    ),
    (
        "vmscan",
        "mm_vmscan_memcg_reclaim_end",
        "mm_vmscan_direct_reclaim_end_template",
    ),
    ("lock", "contention_begin", "contention_begin"),
    ("lock", "contention_end", "contention_end"),
    ("sched", "sched_process_exit", "sched_process_template"),
];

/// Raw facts, before analysis.
pub(crate) struct Inputs {
    pub release: String,
    pub arch: String,
    pub privileges: Privileges,
    pub btf: Option<Box<dyn TypeSource>>,
    pub btf_status: BtfStatus,
    pub kallsyms_path: PathBuf,
    pub kallsyms: Result<String, String>,
    pub kptr_restrict: Option<u32>,
    /// (path, text) of System.map, or why none.
    pub system_map: Result<(String, String), String>,
    pub filter_functions: Option<String>,
    pub kprobe_blacklist: Option<String>,
    pub kprobes: Support,
    pub fentry: Fentry,
    pub tracefs: Tracefs,
    /// "cat/name" -> format text; a missing key means the tracepoint does not exist.
    pub formats: Option<HashMap<String, String>>,
    pub lockdown: Option<String>,
    pub realtime: Option<String>,
}

/// Learns what this kernel offers. Never fails on missing facts (they are reported as
/// unknown); fails only when nothing can be read at all.
pub fn discover(opts: &DiscoverOptions) -> Result<Kernel> {
    let root = Path::new("/");
    let uts = uname();
    let privileges = read_privileges();
    let (btf_path, from_user) = match &opts.btf {
        Some(p) => (p.clone(), true),
        None => (root.join("sys/kernel/btf/vmlinux"), false),
    };
    let (btf, btf_status): (Option<Box<dyn TypeSource>>, _) = match BtfFile::open(&btf_path) {
        Ok(b) => (
            Some(Box::new(b)),
            BtfStatus {
                path: Some(btf_path.clone()),
                from_user,
                error: None,
            },
        ),
        Err(e) => {
            if from_user {
                // The user asked for this file: not being able to read it is an error.
                return Err(e);
            }
            (
                None,
                BtfStatus {
                    path: None,
                    from_user,
                    error: Some(format!("{e:#}")),
                },
            )
        }
    };
    let tracefs = tracefs::locate(root, opts.mount_tracefs && privileges.root);
    let formats = tracefs.path.as_ref().map(|p| read_formats(p));
    let filter_functions = tracefs
        .path
        .as_ref()
        .and_then(|p| read(&p.join("available_filter_functions")));
    let kprobe_blacklist = read(&root.join("sys/kernel/debug/kprobes/blacklist"));
    let kprobes = kprobe_support(root, tracefs.path.as_deref());
    let fentry = if !opts.probe_fentry {
        Fentry::NotProbed {
            reason: "disabled by the caller".into(),
        }
    } else if from_user {
        // Ids in a user-given BTF need not match the running kernel: probe with its own.
        match BtfFile::open(&root.join("sys/kernel/btf/vmlinux")) {
            Ok(own) => probe_fentry(&own),
            Err(_) => Fentry::NotProbed {
                reason: "the running kernel has no /sys/kernel/btf/vmlinux".into(),
            },
        }
    } else {
        match &btf {
            Some(b) => probe_fentry(b.as_ref()),
            None => Fentry::NotProbed {
                reason: "no kernel BTF (fentry needs it)".into(),
            },
        }
    };
    let system_map_path = opts
        .system_map
        .clone()
        .unwrap_or_else(|| root.join(format!("boot/System.map-{}", uts.0)));
    let system_map = std::fs::read_to_string(&system_map_path)
        .map(|t| (system_map_path.display().to_string(), t))
        .map_err(|e| format!("{}: {e}", system_map_path.display()));
    let kallsyms_text = std::fs::read_to_string(&opts.kallsyms)
        .map_err(|e| format!("{}: {e}", opts.kallsyms.display()));
    let code_scan_table = match (&kallsyms_text, opts.scan_code && privileges.can_trace()) {
        (Ok(t), true) => Some(SymbolTable::parse(t)),
        _ => None,
    };
    let inputs = Inputs {
        release: uts.0,
        arch: uts.1,
        privileges,
        btf,
        btf_status,
        kallsyms_path: opts.kallsyms.clone(),
        kallsyms: std::fs::read_to_string(&opts.kallsyms)
            .map_err(|e| format!("{}: {e}", opts.kallsyms.display())),
        kptr_restrict: read(&root.join("proc/sys/kernel/kptr_restrict"))
            .and_then(|s| s.trim().parse().ok()),
        system_map,
        filter_functions,
        kprobe_blacklist,
        kprobes,
        fentry,
        tracefs,
        formats,
        lockdown: read(&root.join("sys/kernel/security/lockdown")),
        realtime: read(&root.join("sys/kernel/realtime")),
    };
    let mut k = analyze(inputs);
    if k.mutex.addr.is_none() {
        match code_scan_table {
            Some(table) if k.mutex.layout.is_some() => {
                let wait = wait_field(&k, btf_path_for_scan(&k).as_deref());
                let found = crate::probes::KernelMemReader::new()
                    .map_err(|e| format!("{e:#}"))
                    .and_then(|mut r| {
                        mutex_from_code(&table, &k.arch, wait, &mut |a, n| {
                            r.read(a, n).map_err(|e| format!("{e:#}"))
                        })
                    });
                match found {
                    Ok((addr, functions, agreeing_calls)) => {
                        k.mutex.addr = Some(addr);
                        k.mutex.source = Some(MutexSource::CodeScan {
                            functions,
                            agreeing_calls,
                        });
                    }
                    Err(e) => k.mutex.attempts.push(format!("code scan: {e}")),
                }
            }
            Some(_) => k
                .mutex
                .attempts
                .push("code scan: skipped, struct mutex layout unknown".into()),
            None => k
                .mutex
                .attempts
                .push("code scan: skipped (disabled, no privileges or no kallsyms)".into()),
        }
    }
    Ok(k)
}

fn btf_path_for_scan(k: &Kernel) -> Option<PathBuf> {
    k.btf.path.clone()
}

/// The member of struct mutex used to check a candidate: `wait_list` (a list head, empty
/// when it points at itself) or, on newer kernels, `first_waiter` (a pointer, NULL when no
/// waiter). Read from the same BTF as the rest.
fn wait_field(k: &Kernel, btf_path: Option<&Path>) -> Option<(String, u32)> {
    if k.mutex.layout.as_ref().is_some_and(|l| l.rt) {
        return None;
    }
    let src = BtfFile::open(btf_path?).ok()?;
    ["wait_list", "first_waiter"]
        .iter()
        .find_map(|m| btf::member_offset(&src, "mutex", &[m]).map(|o| (m.to_string(), o)))
}

/// Finds pcpu_alloc_mutex as the address the functions that lock it pass to
/// mutex_lock/mutex_lock_killable, then checks the memory there looks like a struct mutex
/// (owner 0 or a kernel pointer; an empty or kernel-pointing wait list). `read` reads kernel
/// memory. Returns (address, functions scanned, calls agreeing).
pub(crate) fn mutex_from_code(
    table: &SymbolTable,
    arch: &str,
    wait: Option<(String, u32)>,
    read: &mut dyn FnMut(u64, usize) -> Result<Vec<u8>, String>,
) -> Result<(u64, Vec<String>, usize), String> {
    use super::mutex_scan;
    let lockers: Vec<&symbols::Sym> = ["pcpu_alloc_noprof", "pcpu_alloc", "pcpu_balance_workfn"]
        .iter()
        .filter_map(|n| table.get(n))
        .filter(|s| s.addr != 0)
        .collect();
    let targets: Vec<u64> = ["mutex_lock", "mutex_lock_killable"]
        .iter()
        .filter_map(|n| table.get(n))
        .map(|s| s.addr)
        .filter(|&a| a != 0)
        .collect();
    if lockers.is_empty() || targets.is_empty() {
        return Err(
            "the locking functions or mutex_lock* are not in kallsyms (or addresses hidden)".into(),
        );
    }
    let mut calls = Vec::new();
    for f in &lockers {
        let code = read(f.addr, 4096)?;
        calls.extend(match arch {
            "x86_64" => mutex_scan::scan_x86_64(&code, f.addr, &targets),
            "aarch64" => mutex_scan::scan_aarch64(&code, f.addr, &targets),
            other => return Err(format!("no code decoder for {other}")),
        });
    }
    let (addr, n) = mutex_scan::consensus(&calls)
        .ok_or_else(|| "no mutex_lock* call with a decodable argument".to_string())?;
    let bytes = read(addr, 64)?;
    let word = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let kptr = |p: u64| p >= 0xffff_0000_0000_0000;
    let owner = word(0).unwrap_or(u64::MAX) & !7;
    let ok_owner = owner == 0 || kptr(owner);
    let ok_wait = match &wait {
        Some((name, off)) if name == "wait_list" => {
            mutex_scan::looks_like_mutex(&bytes, addr, *off as usize)
        }
        Some((_, off)) => word(*off as usize).is_some_and(|p| p == 0 || kptr(p)),
        None => true,
    };
    if !(ok_owner && ok_wait) {
        return Err(format!(
            "candidate {addr:#x} does not look like a struct mutex"
        ));
    }
    Ok((addr, lockers.iter().map(|s| s.name.clone()).collect(), n))
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

fn uname() -> (String, String) {
    // SAFETY: utsname is plain bytes; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return ("unknown".into(), std::env::consts::ARCH.into());
    }
    let s = |f: &[libc::c_char]| {
        let b: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    (s(&u.release), s(&u.machine))
}

fn read_privileges() -> Privileges {
    let cap_eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        })
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0);
    privileges_from(cap_eff, unsafe { libc::geteuid() })
}

/// Capability bits of CapEff (include/uapi/linux/capability.h).
pub(crate) fn privileges_from(cap_eff: u64, euid: u32) -> Privileges {
    let has = |bit: u32| cap_eff & (1u64 << bit) != 0;
    Privileges {
        root: euid == 0,
        cap_sys_admin: has(21),
        cap_perfmon: has(38),
        cap_bpf: has(39),
    }
}

fn kprobe_support(root: &Path, tracefs: Option<&Path>) -> Support {
    if root.join("sys/bus/event_source/devices/kprobe").exists() {
        return Support {
            available: true,
            detail: "kprobe PMU (/sys/bus/event_source/devices/kprobe)".into(),
        };
    }
    if let Some(t) = tracefs {
        if t.join("kprobe_events").exists() {
            return Support {
                available: true,
                detail: format!("{}/kprobe_events", t.display()),
            };
        }
        return Support {
            available: false,
            detail: "no kprobe PMU and no kprobe_events in tracefs (CONFIG_KPROBES off)".into(),
        };
    }
    Support {
        available: false,
        detail: "no kprobe PMU, and tracefs is unavailable to check kprobe_events".into(),
    }
}

fn read_formats(tracefs: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (cat, name, _) in TRACEPOINTS {
        if let Ok(t) =
            std::fs::read_to_string(tracefs.join("events").join(cat).join(name).join("format"))
        {
            out.insert(format!("{cat}/{name}"), t);
        }
    }
    out
}

/// Tries BPF_PROG_LOAD of `r0 = 0; exit` as BPF_PROG_TYPE_TRACING / BPF_TRACE_FENTRY on
/// pcpu_alloc_noprof (or another probe target), which is what an fentry program needs.
fn probe_fentry(src: &dyn TypeSource) -> Fentry {
    let targets = ["pcpu_alloc_noprof", "pcpu_alloc", "try_to_free_pages"];
    let Some((target, id)) = targets.iter().find_map(|t| {
        src.ids_by_name(t)
            .into_iter()
            .find(|&i| matches!(src.ty(i), Some(btf::Ty::Func { .. })))
            .map(|i| (t.to_string(), i))
    }) else {
        return Fentry::NotProbed {
            reason: "no probe target function in BTF to verify against".into(),
        };
    };
    match bpf_load_fentry(id) {
        Ok(()) => Fentry::Supported { target },
        Err(e) => Fentry::Refused { target, error: e },
    }
}

/// The prefix of `union bpf_attr` used by BPF_PROG_LOAD, up to attach_prog_fd.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    _pad: u32,
}

fn bpf_load_fentry(attach_btf_id: u32) -> Result<(), String> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_TRACING: u32 = 26;
    const BPF_TRACE_FENTRY: u32 = 24;
    // r0 = 0 (BPF_ALU64|BPF_MOV|BPF_K = 0xb7); exit (0x95).
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"pcpu_fentry_");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_TRACING,
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_TRACE_FENTRY,
        attach_btf_id,
        ..Default::default()
    };
    // SAFETY: attr points at a live, fully initialised struct of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd >= 0 {
        // SAFETY: fd was just returned by the kernel and is owned here.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    let name = match err.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOENT) => "ENOENT",
        Some(524) => "ENOTSUPP",
        _ => "error",
    };
    Err(format!(
        "BPF_PROG_LOAD(tracing/fentry) failed: {name} ({err})"
    ))
}

// ------------------------------------------------------------------ analysis

/// Turns raw inputs into facts. Pure: no file or kernel access.
pub(crate) fn analyze(inp: Inputs) -> Kernel {
    let mut notes = Vec::new();
    let src = inp.btf.as_deref();

    // Symbols.
    let (table, kallsyms_error) = match &inp.kallsyms {
        Ok(t) => (SymbolTable::parse(t), None),
        Err(e) => (SymbolTable::default(), Some(e.clone())),
    };
    let ftrace = inp
        .filter_functions
        .as_deref()
        .map(symbols::parse_filter_functions);
    let blacklist = inp
        .kprobe_blacklist
        .as_deref()
        .map(symbols::parse_kprobe_blacklist);
    let mut syms = BTreeMap::new();
    for (role, alts) in ROLES {
        let r = symbols::resolve(&table, alts, ftrace.as_ref(), blacklist.as_ref());
        if let symbols::Resolution::Clone { suffix } = &r.resolution {
            notes.push(format!(
                "{}: only the compiler clone {}{suffix} exists; its parameters may differ from the BTF prototype",
                r.wanted, r.wanted
            ));
        }
        if r.ftrace == Some(false) {
            notes.push(format!(
                "{}: in kallsyms but not in available_filter_functions (notrace): fentry cannot attach",
                r.symbol.as_deref().unwrap_or(&r.wanted)
            ));
        }
        syms.insert(role.to_string(), r);
    }

    // Signatures by parameter name, from BTF or the table.
    let mut sigs = BTreeMap::new();
    for (role, _) in ROLES {
        let want = &syms[*role].wanted;
        let from_btf = match src {
            Some(s) => btf::func_params(s, want).map_err(|e| format!("{e:#}")),
            None => Err("no BTF".to_string()),
        };
        let sig = match from_btf {
            Ok(params) => Signature {
                params,
                source: ParamSource::Btf,
                note: None,
            },
            Err(why) => match TABLE.iter().find(|(n, _)| n == want) {
                Some((_, p)) => {
                    if syms[*role].symbol.is_some() {
                        notes.push(format!(
                            "{want}: parameters from the built-in table ({why})"
                        ));
                    }
                    Signature {
                        params: p.iter().map(|s| s.to_string()).collect(),
                        source: ParamSource::Table,
                        note: Some(why),
                    }
                }
                None => continue,
            },
        };
        sigs.insert(role.to_string(), sig);
    }

    // Fix status: pcpu_get_vm_areas grew a gfp parameter in the fix series (7.3).
    let fix = match sigs.get("pcpu_get_vm_areas") {
        Some(s) if s.source == ParamSource::Btf => {
            let list = s.params.join(", ");
            if s.index(&["gfp", "gfp_mask"]).is_some() {
                FixStatus {
                    present: Some(true),
                    detail: format!("pcpu_get_vm_areas({list}) takes a gfp (BTF)"),
                }
            } else {
                FixStatus {
                    present: Some(false),
                    detail: format!(
                        "pcpu_get_vm_areas({list}) has no gfp parameter (BTF): fix series absent"
                    ),
                }
            }
        }
        _ => FixStatus {
            present: None,
            detail:
                "pcpu_get_vm_areas is not in BTF: cannot tell whether the fix series is present"
                    .into(),
        },
    };

    // Struct layouts.
    let task = TaskOffsets {
        flags: src.and_then(|s| btf::member_offset(s, "task_struct", &["flags"])),
        pid: src.and_then(|s| btf::member_offset(s, "task_struct", &["pid"])),
        comm: src.and_then(|s| btf::member_offset(s, "task_struct", &["comm"])),
    };
    if task.flags.is_none() {
        notes.push("task_struct.flags offset unknown (no BTF): task scope (PF_MEMALLOC_NOIO/NOFS) cannot be read".into());
    }
    let mutex_members = src.and_then(|s| btf::struct_members(s, "mutex"));
    let (layout, layout_source, rt_from_btf) = match (&mutex_members, src) {
        (Some(m), Some(s)) if m.iter().any(|n| n == "rtmutex") => {
            match btf::member_offset(s, "mutex", &["rtmutex", "owner"]) {
                Some(off) => (
                    Some(MutexLayout::rt(off)),
                    format!("BTF: struct mutex wraps rt_mutex_base, owner at {off}, flag bit 0 (PREEMPT_RT)"),
                    Some(true),
                ),
                None => (None, "BTF: struct mutex is rt_mutex based but rt_mutex_base.owner was not found".into(), Some(true)),
            }
        }
        (Some(m), Some(s)) if m.iter().any(|n| n == "owner") => {
            let off = btf::member_offset(s, "mutex", &["owner"]).unwrap_or(0);
            (
                Some(MutexLayout {
                    owner_off: off,
                    ..MutexLayout::non_rt()
                }),
                format!("BTF: struct mutex.owner at {off}, flags in bits 0-2"),
                Some(false),
            )
        }
        _ => (
            None,
            "struct mutex not in BTF: owner layout unknown".into(),
            None,
        ),
    };
    let (preempt_rt, preempt_rt_detail) =
        match (inp.realtime.as_deref().map(str::trim), rt_from_btf) {
            (Some("1"), _) => (Some(true), "/sys/kernel/realtime = 1".to_string()),
            (_, Some(true)) => (
                Some(true),
                "struct mutex is rt_mutex based (BTF)".to_string(),
            ),
            (_, Some(false)) => (
                Some(false),
                "struct mutex has its own owner word (BTF)".to_string(),
            ),
            (_, None) => (None, "no /sys/kernel/realtime and no BTF".to_string()),
        };
    if preempt_rt == Some(true) {
        notes.push(
            "PREEMPT_RT: pcpu_alloc_mutex is an rt_mutex; the owner word is rt_mutex_base.owner (bit 0 = has waiters)"
                .into(),
        );
    }

    // pcpu_alloc_mutex address.
    let mut attempts = Vec::new();
    let mut addr = None;
    let mut source = None;
    match table.get("pcpu_alloc_mutex") {
        Some(s) if s.addr != 0 => {
            addr = Some(s.addr);
            source = Some(MutexSource::Kallsyms);
        }
        Some(_) => attempts.push(
            "kallsyms: pcpu_alloc_mutex listed but its address is hidden (kptr_restrict)".into(),
        ),
        None => attempts.push(
            "kallsyms: pcpu_alloc_mutex not listed (data symbols need CONFIG_KALLSYMS_ALL)".into(),
        ),
    }
    if addr.is_none() {
        match &inp.system_map {
            Ok((path, text)) => {
                match symbols::mutex_from_system_map(&table, &SymbolTable::parse(text)) {
                    Ok((a, off)) => {
                        addr = Some(a);
                        source = Some(MutexSource::SystemMap {
                            path: path.clone(),
                            kaslr_offset: off,
                        });
                    }
                    Err(e) => attempts.push(format!("System.map {path}: {e}")),
                }
            }
            Err(e) => attempts.push(format!("System.map: {e}")),
        }
    }
    let mutex = MutexInfo {
        addr,
        source,
        attempts,
        layout,
        layout_source,
    };

    // gfp bits.
    let gfp = match src
        .and_then(btf::gfp_bit_enum)
        .and_then(|v| GfpLayout::from_bit_enum(v.iter().map(|(n, b)| (n.as_str(), *b))))
    {
        Some(l) => l,
        None => {
            let (maj, min) = version(&inp.release);
            let l = if (maj, min) >= (6, 3) || maj == 0 {
                GfpLayout::default_for_6x()
            } else {
                GfpLayout::table_for_version(maj, min)
            };
            notes.push(format!("gfp bits: {}", l.source));
            l
        }
    };
    // The kernel's own name table, from a format that prints gfp flags: exact names and order.
    let mut gfp = gfp;
    let fmt_text = inp
        .formats
        .as_ref()
        .and_then(|f| f.get("vmscan/mm_vmscan_direct_reclaim_begin"));
    if let Some(names) = fmt_text.and_then(|t| super::decode::parse_gfp_name_table(t)) {
        gfp.names = Some(names);
        gfp.source
            .push_str("; names and order from the kernel's show_gfp_flags table (tracefs)");
    }
    let pf = PfFlags {
        memalloc_nofs: PF_MEMALLOC_NOFS,
        memalloc_noio: PF_MEMALLOC_NOIO,
        source: "table (PF_* are #defines, not in BTF; same in 6.1..7.3 per KERNELS.md)".into(),
    };

    // Tracepoints.
    let mut tps = BTreeMap::new();
    for (cat, name, template) in TRACEPOINTS {
        let key = format!("{cat}:{name}");
        let (exists, format) = match &inp.formats {
            Some(f) => match f.get(&format!("{cat}/{name}")) {
                Some(text) => (Some(true), tracefs::parse_format(text)),
                None => (Some(false), None),
            },
            None => (
                None,
                src.and_then(|s| btf::trace_event_struct(s, template))
                    .map(btf_format),
            ),
        };
        tps.insert(
            key,
            super::Tracepoint {
                category: cat.to_string(),
                name: name.to_string(),
                exists,
                format,
            },
        );
    }

    let lockdown = inp.lockdown.as_deref().and_then(|s| {
        let a = s.find('[')?;
        let b = s[a..].find(']')?;
        Some(s[a + 1..a + b].to_string())
    });
    Kernel {
        release: inp.release,
        arch: inp.arch,
        privileges: inp.privileges,
        btf: inp.btf_status,
        kprobes: inp.kprobes,
        fentry: inp.fentry,
        tracefs: inp.tracefs,
        lockdown,
        preempt_rt,
        preempt_rt_detail,
        kallsyms: KallsymsStatus {
            path: inp.kallsyms_path,
            symbols: table.count,
            zeroed: table.zeroed,
            kptr_restrict: inp.kptr_restrict,
            error: kallsyms_error,
        },
        symbols: syms,
        signatures: sigs,
        mutex,
        task,
        gfp,
        pf,
        tracepoints: tps,
        fix,
        notes,
    }
}

fn btf_format(fields: Vec<(String, u32)>) -> TracepointFormat {
    TracepointFormat {
        fields: fields
            .into_iter()
            .map(|(name, offset)| Field {
                name,
                ctype: String::new(),
                offset,
                size: 0,
            })
            .collect(),
        source: FormatSource::Btf,
    }
}

/// "6.18.44-fc-v657" -> (6, 18); (0, 0) when unparsable.
pub(crate) fn version(release: &str) -> (u32, u32) {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let maj = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let min = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    (maj, min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_caps() {
        assert_eq!(version("6.18.44-fc-v657"), (6, 18));
        assert_eq!(version("7.2.13+deb14-amd64"), (7, 2));
        assert_eq!(version("weird"), (0, 0));
        let p = privileges_from(0x000001fffeffffff, 0);
        assert!(p.root && p.cap_bpf && p.cap_perfmon && p.cap_sys_admin && p.can_trace());
        assert!(!privileges_from(0, 1000).can_trace());
    }

    #[test]
    fn attr_layout_matches_the_kernel() {
        // attach_btf_id is at byte 108 of union bpf_attr for BPF_PROG_LOAD.
        let a = ProgLoadAttr::default();
        let base = &a as *const _ as usize;
        assert_eq!(&a.attach_btf_id as *const _ as usize - base, 108);
        assert_eq!(&a.expected_attach_type as *const _ as usize - base, 68);
    }
}
