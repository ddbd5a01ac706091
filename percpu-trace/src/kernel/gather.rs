//! Gathering: every read from the machine discovery does (files, tracefs, capabilities, and
//! through the [`BpfProbe`] the caller passes, one fentry load attempt and kernel memory).
//! The result, [`Inputs`], goes to the pure `analyze`, which the fixture tests run on data
//! extracted from other kernels.
//!
//! BPF syscalls are not made here: they belong to the probes side, which implements
//! [`BpfProbe`]. Passing it in keeps `kernel` free of any dependency on `probes` (which
//! depends on `kernel` for the plan).
use std::{collections::HashMap, path::Path, sync::Arc};

use anyhow::Result;

use super::{
    access::{BpfProbe, KernelMemory},
    analyze::{analyze, privileges_from, Inputs},
    btf::{self, TypeSource},
    btf_file::BtfFile,
    fix_code::{
        FixCode, FunctionCode, MAP_PAGES_NAMES, PCPU_ALLOC_NAMES, POPULATE_NAMES, SCOPE_HELPERS,
    },
    mutex_scan,
    symbols::{self, MutexSource, SymbolTable},
    tables::TRACEPOINTS,
    tracefs, BtfStatus, DiscoverOptions, Fentry, Kernel, Privileges, Support,
};

/// Learns what this kernel offers. Never fails on missing facts (they are reported as
/// unknown); fails only when nothing can be read at all.
pub fn discover(opts: &DiscoverOptions, bpf: &dyn BpfProbe) -> Result<Kernel> {
    let root = Path::new("/");
    let uts = uname();
    let privileges = read_privileges();
    // The kernel-memory reader first, once, for both code reads below: opening it loads
    // the BPF object, whose loader parses the kernel BTF on its own (aya), and that
    // transient copy is the tool's peak memory unless nothing else big is alive yet
    // (this function's BTF file and kallsyms text come after).
    let scan = opts.scan_code && privileges.can_trace();
    let mut mem = if scan {
        bpf.kernel_memory()
    } else {
        Err("code reading disabled or no privileges".into())
    };
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
    } else if !privileges.can_trace() {
        Fentry::NotProbed {
            reason: "loading the test program needs root".into(),
        }
    } else if from_user {
        // Ids in a user-given BTF need not match the running kernel: probe with its own.
        match BtfFile::open(&root.join("sys/kernel/btf/vmlinux")) {
            Ok(own) => probe_fentry(&own, bpf),
            Err(_) => Fentry::NotProbed {
                reason: "the running kernel has no /sys/kernel/btf/vmlinux".into(),
            },
        }
    } else {
        match &btf {
            Some(b) => probe_fentry(b.as_ref(), bpf),
            None => Fentry::NotProbed {
                reason: "no kernel BTF (fentry needs it)".into(),
            },
        }
    };
    let system_map_path = opts
        .system_map
        .clone()
        .unwrap_or_else(|| root.join(format!("boot/System.map-{}", uts.0)));
    // Only the lines the KASLR-shifted lookup needs: a whole System.map is megabytes.
    let system_map =
        symbols::read_lines_matching(&system_map_path, |name| SYSTEM_MAP_NAMES.contains(&name))
            .map(|t| (system_map_path.display().to_string(), t))
            .map_err(|e| format!("{}: {e}", system_map_path.display()));
    // kallsyms is read and parsed once, into one table shared by analysis and the code
    // scan. Its text (10 MB and more on Debian's arm64 kernels) is dropped before anything
    // else big is read, discovery being the tool's peak memory, unless a live session is
    // to build its stack symbols from it (`keep_kallsyms_text`): the BTF file and the
    // table are gone by then, so that is no new peak.
    let mut kallsyms_text = None;
    let kallsyms =
        crate::bounded::read_text(&opts.kallsyms, "kallsyms", crate::bounded::MAX_KALLSYMS)
            .map(|text| {
                let (table, starts) = table_and_starts(&text);
                if opts.keep_kallsyms_text {
                    kallsyms_text = Some(symbols::KallsymsText(Arc::new(text)));
                }
                (Arc::new(table), starts)
            })
            .map_err(|e| format!("{}: {e}", opts.kallsyms.display()));
    let code_scan_table = match (&kallsyms, scan) {
        (Ok((t, _)), true) => Some(t.clone()),
        _ => None,
    };
    let fix_code = match (&kallsyms, &code_scan_table) {
        (Ok((_, starts)), Some(table)) => read_fix_code(starts, table, &uts.1, &mut mem),
        _ => FixCode::unread(
            &uts.1,
            "code reading disabled, no privileges or no kallsyms",
        ),
    };
    let kallsyms = kallsyms.map(|(t, _)| t);
    let inputs = Inputs {
        release: uts.0,
        build: Some(uts.2).filter(|s| !s.is_empty()),
        fix_code,
        arch: uts.1,
        privileges,
        btf,
        btf_status,
        kallsyms_path: opts.kallsyms.clone(),
        kallsyms,
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
    k.identity = super::identity::read(root, &k.release);
    k.kallsyms_text = kallsyms_text;
    if k.mutex.addr.is_none() {
        scan_for_mutex(&mut k, code_scan_table, &mut mem);
    }
    Ok(k)
}

/// The last way to find pcpu_alloc_mutex: decode the code that locks it, read through
/// `bpf`. Records the address or why not in `k.mutex`.
fn scan_for_mutex(
    k: &mut Kernel,
    code_scan_table: Option<Arc<SymbolTable>>,
    mem: &mut Result<Box<dyn KernelMemory>, String>,
) {
    match code_scan_table {
        Some(table) if k.mutex.layout.is_some() => {
            let wait = k.mutex.wait_field.clone();
            let found = match mem {
                Ok(mem) => mutex_scan::mutex_from_code(&table, &k.arch, wait, mem.as_mut()),
                Err(e) => Err(e.clone()),
            };
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
fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// The longest function read for the fix evidence.
const MAX_FUNCTION_BYTES: u64 = 16 * 1024;

/// Reads the code of pcpu_alloc and pcpu_populate_chunk (from the start of each to the next
/// kallsyms symbol) through `bpf`, for `fix_code`.
/// System.map symbols discovery uses (the mutex and the KASLR anchors).
const SYSTEM_MAP_NAMES: [&str; 3] = ["pcpu_alloc_mutex", "_stext", "_text"];

/// Sorted start addresses of every vmlinux symbol (`__pfx_` padding included): where a
/// function read for the fix evidence ends.
pub(super) fn function_starts(kallsyms: &str) -> Vec<u64> {
    sorted_starts(
        symbols::kallsyms_lines(kallsyms)
            .filter(|l| l.module.is_none())
            .map(|l| l.addr)
            .collect(),
    )
}

/// [`SymbolTable::parse`] and [`function_starts`] in one pass over the text.
pub(super) fn table_and_starts(kallsyms: &str) -> (SymbolTable, Vec<u64>) {
    let mut starts = Vec::new();
    let table = SymbolTable::parse_noting(kallsyms, |l| starts.push(l.addr));
    (table, sorted_starts(starts))
}

fn sorted_starts(mut starts: Vec<u64>) -> Vec<u64> {
    starts.retain(|&a| a != 0);
    starts.sort_unstable();
    starts.dedup();
    starts.shrink_to_fit();
    starts
}

pub(super) fn read_fix_code(
    starts: &[u64],
    table: &SymbolTable,
    arch: &str,
    mem: &mut Result<Box<dyn KernelMemory>, String>,
) -> FixCode {
    let mem = match mem {
        Ok(m) => m,
        Err(e) => return FixCode::unread(arch, &format!("kernel memory reader: {e}")),
    };
    let mut read = |names: &[&str]| -> Result<FunctionCode, String> {
        let s = names
            .iter()
            .find_map(|n| table.get(n).filter(|s| s.addr != 0))
            .ok_or_else(|| format!("{} not in kallsyms (or address hidden)", names.join("/")))?;
        let end = starts
            .iter()
            .find(|&&a| a > s.addr)
            .copied()
            .unwrap_or(s.addr + 4096);
        let len = (end - s.addr).min(MAX_FUNCTION_BYTES) as usize;
        Ok(FunctionCode {
            name: s.name.clone(),
            bytes: mem.read(s.addr, len)?,
            addr: s.addr,
            source: "read_kmem".into(),
        })
    };
    FixCode {
        arch: arch.to_string(),
        pcpu_alloc: read(PCPU_ALLOC_NAMES),
        populate: read(POPULATE_NAMES),
        // Only when they are functions of their own: inlined, populate's code holds them.
        map_pages: MAP_PAGES_NAMES
            .iter()
            .filter_map(|n| read(&[n]).ok())
            .collect(),
        scope_helpers: SCOPE_HELPERS
            .iter()
            .filter_map(|n| table.get(n).filter(|s| s.addr != 0))
            .map(|s| (s.name.clone(), s.addr))
            .collect(),
    }
}

fn uname() -> (String, String, String) {
    // SAFETY: utsname is plain bytes; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return (
            "unknown".into(),
            std::env::consts::ARCH.into(),
            String::new(),
        );
    }
    let s = |f: &[libc::c_char]| {
        let b: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    (s(&u.release), s(&u.machine), s(&u.version))
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

/// Asks `bpf` to load a minimal fentry program on pcpu_alloc_noprof (or another probe
/// target found in `src`), which is what the real fentry programs need.
fn probe_fentry(src: &dyn TypeSource, bpf: &dyn BpfProbe) -> Fentry {
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
    match bpf.load_fentry(id) {
        Ok(()) => Fentry::Supported { target },
        Err(e) => Fentry::Refused { target, error: e },
    }
}
