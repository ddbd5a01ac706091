//! The pure analysis: raw [`Inputs`] gathered from a machine (or a fixture) in, [`Kernel`]
//! out. No file or kernel access here, so the fixture tests run exactly this code on data
//! extracted from other kernels. One function per derived fact; [`analyze`] only wires them
//! together in the order their notes are reported.
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
};

use super::{
    atomic_code,
    btf::{self, TypeSource},
    decode::{GfpLayout, MutexLayout, PF_MEMALLOC_NOFS, PF_MEMALLOC_NOIO},
    facts::{DecidedBy, FixVerdict, PatchEvidence, PatchId, PatchState},
    fix_code::{self, FixCode},
    print_fmt,
    symbols::{self, MutexSource, ResolvedSymbol, SymbolTable},
    tables::{ROLES, TABLE, TRACEPOINTS},
    tracefs::{self, Field, FormatSource, Tracefs, TracepointFormat},
    BtfStatus, Fentry, FixStatus, KallsymsStatus, Kernel, MutexInfo, ParamSource, PfFlags,
    Privileges, Signature, Support, TaskOffsets, Tracepoint,
};

/// Raw facts, before analysis: what `gather` read, or what a fixture test builds.
pub(crate) struct Inputs {
    pub release: String,
    /// `uname -v` (Debian puts the real stable version there: "Debian 6.1.192-2").
    pub build: Option<String>,
    /// Code of the functions the fix series changed, read through the kernel-memory reader.
    pub fix_code: FixCode,
    pub arch: String,
    pub privileges: Privileges,
    pub btf: Option<Box<dyn TypeSource>>,
    pub btf_status: BtfStatus,
    pub kallsyms_path: PathBuf,
    /// /proc/kallsyms parsed (shared with the gathering side's code scan), or why not.
    pub kallsyms: Result<Arc<SymbolTable>, String>,
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

/// Turns raw inputs into facts. Pure: no file or kernel access.
pub(crate) fn analyze(inp: Inputs) -> Kernel {
    // Notes are appended in this order (symbols, signatures, task, RT, gfp): `check` prints
    // them as they come.
    let mut notes = Vec::new();
    let src = inp.btf.as_deref();

    let (table, kallsyms_error) = match &inp.kallsyms {
        Ok(t) => (t.clone(), None),
        Err(e) => (Arc::new(SymbolTable::default()), Some(e.clone())),
    };
    let syms = resolve_roles(
        &table,
        inp.filter_functions.as_deref(),
        inp.kprobe_blacklist.as_deref(),
        &mut notes,
    );
    let sigs = signatures(src, &syms, &mut notes);
    let task = task_offsets(src, &mut notes);
    let (layout, layout_source, rt_from_btf) = mutex_layout(src);
    let (preempt_rt, preempt_rt_detail) =
        preempt_rt(inp.realtime.as_deref(), rt_from_btf, &mut notes);
    let (addr, source, attempts) = mutex_address(&table, &inp.system_map);
    let wait_field = mutex_wait_field(src, layout.as_ref());
    let mutex = MutexInfo {
        addr,
        source,
        attempts,
        layout,
        layout_source,
        wait_field,
    };
    let gfp = gfp_layout(src, &inp.release, inp.formats.as_ref(), &mut notes);
    let pf = pf_flags();
    let fix = fix_status(
        &sigs,
        &inp.release,
        inp.build.as_deref(),
        &inp.fix_code,
        &gfp,
        &pf,
    );
    let tps = tracepoints(src, inp.formats.as_ref());
    let lockdown = inp.lockdown.as_deref().and_then(lockdown_mode);
    Kernel {
        release: inp.release,
        build: inp.build,
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
        identity: Default::default(),
        notes,
        kallsyms_text: None,
    }
}

/// Probe targets by role ([`ROLES`]), with a note for each compiler clone and each target
/// ftrace cannot see.
pub(crate) fn resolve_roles(
    table: &SymbolTable,
    filter_functions: Option<&str>,
    kprobe_blacklist: Option<&str>,
    notes: &mut Vec<String>,
) -> BTreeMap<String, ResolvedSymbol> {
    // Only the names of the roles' functions and their compiler clones are ever looked up.
    let wanted = |name: &str| {
        let base = symbols::split_suffix(name).0;
        ROLES.iter().any(|(_, alts)| alts.contains(&base))
    };
    let ftrace = filter_functions.map(|t| symbols::parse_filter_functions(t, wanted));
    let blacklist = kprobe_blacklist.map(symbols::parse_kprobe_blacklist);
    let mut syms = BTreeMap::new();
    for (role, alts) in ROLES {
        let r = symbols::resolve(table, alts, ftrace.as_ref(), blacklist.as_ref());
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
    syms
}

/// Parameter names by role, from BTF or, failing that, the built-in [`TABLE`]. A role with
/// neither is left out.
pub(crate) fn signatures(
    src: Option<&dyn TypeSource>,
    syms: &BTreeMap<String, ResolvedSymbol>,
    notes: &mut Vec<String>,
) -> BTreeMap<String, Signature> {
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
    sigs
}

/// Fix status: the verdict and every patch's evidence, strongest source first ([`vm_areas_gfp`]
/// from BTF, [`fix_code`] from the kernel's own code, the regression from pcpu_alloc's code
/// ([`atomic_code`]) with the version table ([`regression`]) as the fallback). The old
/// `present`/`detail` pair is the BTF answer alone.
pub(crate) fn fix_status(
    sigs: &BTreeMap<String, Signature>,
    release: &str,
    build: Option<&str>,
    code: &FixCode,
    gfp: &GfpLayout,
    pf: &PfFlags,
) -> FixStatus {
    let vm = vm_areas_gfp(sigs);
    let populate = fix_code::populate_gfp(code, gfp, pf.memalloc_noio, pf.memalloc_nofs);
    let backing = fix_code::backing_noio(code, gfp);
    let any_part = [&vm, &populate, &backing]
        .iter()
        .find(|p| p.state == PatchState::Present)
        .map(|p| p.id);
    let reg = decide_regression(
        atomic_code::regression(code, gfp),
        regression(release, build, any_part),
        any_part.is_some(),
    );
    let present = match vm.state {
        PatchState::Present => Some(true),
        PatchState::Absent => Some(false),
        PatchState::Unknown => None,
    };
    let detail = vm.evidence.clone();
    let FixVerdict { verdict, patches } =
        FixVerdict::from_patches(vec![reg, vm, populate, backing]);
    FixStatus {
        present,
        detail,
        verdict,
        patches,
    }
}

/// The regression's state: the code's when it says (a contradiction with a present fix part
/// is unknown), else the version table's (or the fix part's implication). The evidence gives
/// both sources, the deciding one first.
pub(crate) fn decide_regression(
    code: PatchEvidence,
    table: PatchEvidence,
    implied: bool,
) -> PatchEvidence {
    let id = PatchId::Regression;
    let table_by = if implied {
        DecidedBy::FixSeries
    } else {
        DecidedBy::VersionTable
    };
    match code.state {
        PatchState::Unknown => {
            let mut e = PatchEvidence::new(
                id,
                table.state,
                format!(
                    "{}: {}; code: {}",
                    table_by.id(),
                    table.evidence,
                    code.evidence
                ),
            );
            e.decided_by = (table.state != PatchState::Unknown).then_some(table_by);
            e
        }
        PatchState::Absent if implied => PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!(
                "code and fix series disagree: code: {}; {}: {}",
                code.evidence,
                table_by.id(),
                table.evidence
            ),
        ),
        state => {
            let agree = match table.state {
                PatchState::Unknown => "cannot tell",
                s if s == state => "agrees",
                _ => "disagrees (code wins: a backport or a vendor change)",
            };
            let mut e = PatchEvidence::new(
                id,
                state,
                format!(
                    "code: {}; {} {agree}: {}",
                    code.evidence,
                    table_by.id(),
                    table.evidence
                ),
            );
            e.decided_by = Some(DecidedBy::Code);
            e
        }
    }
}

/// vm-areas-gfp: pcpu_get_vm_areas grew a gfp parameter. Only a BTF prototype can tell; the
/// table lists the old one.
pub(crate) fn vm_areas_gfp(sigs: &BTreeMap<String, Signature>) -> PatchEvidence {
    let id = PatchId::VmAreasGfp;
    match sigs.get("pcpu_get_vm_areas") {
        Some(s) if s.source == ParamSource::Btf => {
            let list = s.params.join(", ");
            if s.index(&["gfp", "gfp_mask"]).is_some() {
                PatchEvidence::new(
                    id,
                    PatchState::Present,
                    format!("BTF: pcpu_get_vm_areas({list}) takes a gfp"),
                )
            } else {
                PatchEvidence::new(
                    id,
                    PatchState::Absent,
                    format!("BTF: pcpu_get_vm_areas({list}) has no gfp parameter"),
                )
            }
        }
        _ => PatchEvidence::new(
            id,
            PatchState::Unknown,
            "pcpu_get_vm_areas is not in BTF: its parameters cannot be read",
        ),
    }
}

/// Stable series that took the 9a5b183941b5 backport, with a release known to have it
/// (KERNELS.md: read from Debian's 6.1.176 and 6.12.117 sources; 6.6.117).
const REGRESSION_BACKPORTS: &[((u32, u32), u32)] = &[((6, 1), 176), ((6, 6), 117), ((6, 12), 117)];

/// "6.1.192" from Debian's `uname -v` ("... Debian 6.1.192-2 (...)"), else the release.
pub(crate) fn full_version(release: &str, build: Option<&str>) -> Option<(u32, u32, u32, String)> {
    let parse = |s: &str| -> Option<(u32, u32, u32)> {
        let head: String = s
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut it = head.split('.').map(|p| p.parse::<u32>().ok());
        Some((it.next()??, it.next()??, it.next().flatten().unwrap_or(0)))
    };
    if let Some(b) = build {
        if let Some(i) = b.find("Debian ") {
            let v = &b[i + 7..];
            if let Some((a, m, p)) = parse(v) {
                let shown: String = v.chars().take_while(|c| !c.is_whitespace()).collect();
                return Some((a, m, p, format!("uname -v \"Debian {shown}\"")));
            }
        }
    }
    parse(release).map(|(a, m, p)| (a, m, p, format!("release {release}")))
}

/// regression: 9a5b183941b5 is in mainline since v6.15 and in the stable series of
/// [`REGRESSION_BACKPORTS`]. A part of the fix series being present implies it (the series
/// says "Fixes: 9a5b183941b5").
pub(crate) fn regression(
    release: &str,
    build: Option<&str>,
    fix_part: Option<PatchId>,
) -> PatchEvidence {
    let id = PatchId::Regression;
    if let Some(p) = fix_part {
        return PatchEvidence::new(
            id,
            PatchState::Present,
            format!("implied: fix part {p} is present, and the series fixes 9a5b183941b5"),
        );
    }
    let Some((maj, min, sub, src)) = full_version(release, build) else {
        return PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!("release {release:?} has no version number"),
        );
    };
    if (maj, min) >= (6, 15) {
        return PatchEvidence::new(
            id,
            PatchState::Present,
            format!("{src}: mainline has it since v6.15"),
        );
    }
    match REGRESSION_BACKPORTS.iter().find(|(s, _)| *s == (maj, min)) {
        Some((_, known)) if sub >= *known => PatchEvidence::new(
            id,
            PatchState::Present,
            format!("{src}: {maj}.{min}.y took the backport ({maj}.{min}.{known} has it)"),
        ),
        Some((_, known)) => PatchEvidence::new(
            id,
            PatchState::Unknown,
            format!("{src}: {maj}.{min}.y took the backport, known in {maj}.{min}.{known}; earlier releases not checked"),
        ),
        None => PatchEvidence::new(
            id,
            PatchState::Absent,
            format!("{src}: before v6.15 and not a stable series that took the backport (6.1.y, 6.6.y, 6.12.y); a distribution backport would not show here"),
        ),
    }
}

/// task_struct offsets from BTF.
pub(crate) fn task_offsets(src: Option<&dyn TypeSource>, notes: &mut Vec<String>) -> TaskOffsets {
    let task = TaskOffsets {
        flags: src.and_then(|s| btf::member_offset(s, "task_struct", &["flags"])),
        pid: src.and_then(|s| btf::member_offset(s, "task_struct", &["pid"])),
        comm: src.and_then(|s| btf::member_offset(s, "task_struct", &["comm"])),
    };
    if task.flags.is_none() {
        notes.push("task_struct.flags offset unknown (no BTF): task scope (PF_MEMALLOC_NOIO/NOFS) cannot be read".into());
    }
    task
}

/// struct mutex owner-word layout from BTF: (layout, where from, rt_mutex based). The last
/// is None without BTF; [`preempt_rt`] uses it when /sys/kernel/realtime is absent.
pub(crate) fn mutex_layout(
    src: Option<&dyn TypeSource>,
) -> (Option<MutexLayout>, String, Option<bool>) {
    let mutex_members = src.and_then(|s| btf::struct_members(s, "mutex"));
    match (&mutex_members, src) {
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
    }
}

/// The member of struct mutex that tells an idle mutex from garbage (see
/// [`MutexInfo::wait_field`]): none for an rt_mutex based one or an unknown layout.
pub(crate) fn mutex_wait_field(
    src: Option<&dyn TypeSource>,
    layout: Option<&MutexLayout>,
) -> Option<(String, u32)> {
    if layout.is_none_or(|l| l.rt) {
        return None;
    }
    let src = src?;
    ["wait_list", "first_waiter"]
        .iter()
        .find_map(|m| btf::member_offset(src, "mutex", &[m]).map(|o| (m.to_string(), o)))
}

/// PREEMPT_RT: /sys/kernel/realtime when it says 1, else the shape of struct mutex in BTF.
pub(crate) fn preempt_rt(
    realtime: Option<&str>,
    rt_from_btf: Option<bool>,
    notes: &mut Vec<String>,
) -> (Option<bool>, String) {
    let (rt, detail) = match (realtime.map(str::trim), rt_from_btf) {
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
    if rt == Some(true) {
        notes.push(
            "PREEMPT_RT: pcpu_alloc_mutex is an rt_mutex; the owner word is rt_mutex_base.owner (bit 0 = has waiters)"
                .into(),
        );
    }
    (rt, detail)
}

/// pcpu_alloc_mutex from kallsyms, else System.map shifted by the KASLR offset: (address,
/// source, every way that failed). The code scan, which needs kernel memory, is tried
/// afterwards by the gathering side (`gather::scan_for_mutex`).
pub(crate) fn mutex_address(
    table: &SymbolTable,
    system_map: &Result<(String, String), String>,
) -> (Option<u64>, Option<MutexSource>, Vec<String>) {
    let mut attempts = Vec::new();
    match table.get("pcpu_alloc_mutex") {
        Some(s) if s.addr != 0 => return (Some(s.addr), Some(MutexSource::Kallsyms), attempts),
        Some(_) => attempts.push(
            "kallsyms: pcpu_alloc_mutex listed but its address is hidden (kptr_restrict)".into(),
        ),
        None => attempts.push(
            "kallsyms: pcpu_alloc_mutex not listed (data symbols need CONFIG_KALLSYMS_ALL)".into(),
        ),
    }
    match system_map {
        Ok((path, text)) => {
            match symbols::mutex_from_system_map(table, &SymbolTable::parse(text)) {
                Ok((a, off)) => {
                    let source = MutexSource::SystemMap {
                        path: path.clone(),
                        kaslr_offset: off,
                    };
                    return (Some(a), Some(source), attempts);
                }
                Err(e) => attempts.push(format!("System.map {path}: {e}")),
            }
        }
        Err(e) => attempts.push(format!("System.map: {e}")),
    }
    (None, None, attempts)
}

/// gfp bits: the BTF enum when there is one, else the table for the release; names and
/// order from the kernel's own show_gfp_flags table when a vmscan format prints them.
pub(crate) fn gfp_layout(
    src: Option<&dyn TypeSource>,
    release: &str,
    formats: Option<&HashMap<String, String>>,
    notes: &mut Vec<String>,
) -> GfpLayout {
    let mut gfp = match src
        .and_then(btf::gfp_bit_enum)
        .and_then(|v| GfpLayout::from_bit_enum(v.iter().map(|(n, b)| (n.as_str(), *b))))
    {
        Some(l) => l,
        None => {
            let (maj, min) = version(release);
            let l = if (maj, min) >= (6, 3) || maj == 0 {
                GfpLayout::default_for_6x()
            } else {
                GfpLayout::table_for_version(maj, min)
            };
            notes.push(format!("gfp bits: {}", l.source));
            l
        }
    };
    let fmt_text = formats.and_then(|f| f.get("vmscan/mm_vmscan_direct_reclaim_begin"));
    if let Some(names) = fmt_text.and_then(|t| print_fmt::parse_gfp_name_table(t)) {
        gfp.names = Some(names);
        gfp.source
            .push_str("; names and order from the kernel's show_gfp_flags table (tracefs)");
    }
    gfp
}

/// PF_* bits: #defines, so never in BTF; the same in every kernel the tool supports.
pub(crate) fn pf_flags() -> PfFlags {
    PfFlags {
        memalloc_nofs: PF_MEMALLOC_NOFS,
        memalloc_noio: PF_MEMALLOC_NOIO,
        source: "table (PF_* are #defines, not in BTF; same in 6.1..7.3 per KERNELS.md)".into(),
    }
}

/// Every tracepoint of [`TRACEPOINTS`]: existence and layout from tracefs, or the layout from
/// the BTF template struct when tracefs could not be read.
pub(crate) fn tracepoints(
    src: Option<&dyn TypeSource>,
    formats: Option<&HashMap<String, String>>,
) -> BTreeMap<String, Tracepoint> {
    let mut tps = BTreeMap::new();
    for (cat, name, template) in TRACEPOINTS {
        let key = format!("{cat}:{name}");
        let (exists, format) = match formats {
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
        let raw_args = match src {
            Some(s) => btf::trace_args(s, name, template).map_err(|e| format!("{e:#}")),
            None => Err("no BTF".to_string()),
        };
        tps.insert(
            key,
            Tracepoint {
                category: cat.to_string(),
                name: name.to_string(),
                exists,
                format,
                raw_args,
            },
        );
    }
    tps
}

/// The selected mode of /sys/kernel/security/lockdown ("none [integrity] confidentiality").
pub(crate) fn lockdown_mode(s: &str) -> Option<String> {
    let a = s.find('[')?;
    let b = s[a..].find(']')?;
    Some(s[a + 1..a + b].to_string())
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
    fn lockdown_selected_mode() {
        assert_eq!(
            lockdown_mode("none [integrity] confidentiality\n").as_deref(),
            Some("integrity")
        );
        assert_eq!(lockdown_mode("garbage"), None);
    }
}
