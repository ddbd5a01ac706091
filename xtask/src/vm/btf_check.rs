//! `check --json`'s kernel numbers against the booted kernel's own BTF, read on the host
//! with bpftool (an independent reader): struct offsets and argument positions differ
//! between architectures (task_struct.flags is at byte 44 on x86_64 and 52 on arm64), and
//! the BPF programs read exactly these numbers, so a wrong one silently breaks detection.
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::{arm64::Arch, assess::Verdict, kernels};

/// The raw BTF dump (bpftool `format raw`) of a prepared kernel; cached by [`kernels`].
pub fn dump(cache: &Path, k: &kernels::Kernel) -> Result<String> {
    let vmlinux = cache.join("kernels").join(&k.package).join("vmlinux");
    kernels::btf_dump(&k.vmlinuz, &vmlinux)
}

/// Byte offset of `member` in `struct name` (first definition), from raw BTF text:
/// `[N] STRUCT 'name' size=S vlen=V` then one indented `'member' type_id=T bits_offset=B`
/// line per member.
pub fn member_offset(raw: &str, name: &str, member: &str) -> Option<u64> {
    let head = format!("] STRUCT '{name}' size=");
    let mut lines = raw.lines().skip_while(|l| !l.contains(&head));
    lines.next()?;
    let needle = format!("'{member}' type_id=");
    lines
        .take_while(|l| l.starts_with(char::is_whitespace))
        .find(|l| l.trim_start().starts_with(&needle))?
        .split_once("bits_offset=")?
        .1
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()
        .map(|b| b / 8)
}

/// The mutex owner word's offset in the BTF, and where it is: `mutex.owner`, or on
/// PREEMPT_RT (struct mutex wraps an rt_mutex_base named `rtmutex`) `rtmutex.owner`. The
/// same offset that `check` must believe, and what `truth` reads in the guest.
pub fn mutex_owner_off(raw: &str) -> (Option<u64>, &'static str) {
    match member_offset(raw, "mutex", "owner") {
        Some(off) => (Some(off), "mutex.owner"),
        None => (
            member_offset(raw, "mutex", "rtmutex")
                .zip(member_offset(raw, "rt_mutex_base", "owner"))
                .map(|(a, b)| a + b),
            "mutex.rtmutex.owner (PREEMPT_RT)",
        ),
    }
}

/// Parameter names of function `func`, from raw BTF text.
pub fn params(raw: &str, func: &str) -> Option<Vec<String>> {
    let needle = format!("FUNC '{func}' type_id=");
    let proto = raw.lines().find_map(|l| {
        l.split_once(&needle)
            .map(|(_, r)| r.split_whitespace().next().unwrap_or("").to_string())
    })?;
    let head = format!("[{proto}] FUNC_PROTO ");
    let mut lines = raw.lines().skip_while(|l| !l.starts_with(&head));
    lines.next()?;
    Some(
        lines
            .take_while(|l| l.starts_with(char::is_whitespace))
            .filter_map(|l| {
                Some(
                    l.trim_start()
                        .strip_prefix('\'')?
                        .split('\'')
                        .next()?
                        .into(),
                )
            })
            .collect(),
    )
}

/// The symbol the plan attaches for probe point `point` (None: not attached), without a
/// compiler suffix such as `.isra.0`.
fn planned_symbol(check: &Value, point: &str) -> Option<String> {
    check["plan"]["probes"]
        .as_array()?
        .iter()
        .find(|p| p["point"] == point)?["attachment"]["symbol"]
        .as_str()
        .map(|s| s.split('.').next().unwrap_or(s).to_string())
}

/// Compares `check.json` in `out` with the BTF (`raw`) of the kernel that produced it, and
/// adds the mismatches to `v` as failures (a facts line says what was compared).
pub fn check(out: &Path, raw: &str, arch: Arch, v: &mut Verdict) {
    let Some(json) = std::fs::read(out.join("check.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return; // assess_check already failed on it.
    };
    let mut problems = Vec::new();
    let mut compared = Vec::new();
    let arch_seen = json["kernel"]["arch"].as_str().unwrap_or("?");
    if arch_seen != arch.uname() {
        problems.push(format!(
            "check says arch {arch_seen}, the guest is {}",
            arch.uname()
        ));
    }
    let cfg = &json["config"];
    let mut expect = |key: &str, want: Option<u64>, what: String| {
        let Some(want) = want else { return };
        let got = super::tool_json::json_u64(&cfg[key]);
        compared.push(format!("{key}={want}"));
        if got != Some(want) {
            problems.push(format!(
                "config.{key} is {got:?}, the kernel's BTF says {want} ({what})"
            ));
        }
    };
    expect(
        "task_flags_off",
        member_offset(raw, "task_struct", "flags"),
        "task_struct.flags".into(),
    );
    let (owner, what) = mutex_owner_off(raw);
    expect("mutex_owner_off", owner, what.into());
    // (config key, probe point whose attached function it describes, parameter name,
    // value when the function has no such parameter).
    const ARGS: &[(&str, &str, &str, Option<u64>)] = &[
        ("arg_pcpu_size", "pcpu_alloc entry", "size", None),
        ("arg_pcpu_align", "pcpu_alloc entry", "align", None),
        ("arg_pcpu_reserved", "pcpu_alloc entry", "reserved", None),
        ("arg_pcpu_gfp", "pcpu_alloc entry", "gfp", None),
        ("arg_create_gfp", "pcpu_create_chunk", "gfp", None),
        ("arg_populate_gfp", "pcpu_populate_chunk", "gfp", None),
        (
            "arg_populate_start",
            "pcpu_populate_chunk",
            "page_start",
            None,
        ),
        ("arg_populate_end", "pcpu_populate_chunk", "page_end", None),
        ("arg_vm_areas_nr", "pcpu_get_vm_areas", "nr_vms", None),
        // No gfp before the fix: the config says so with 255.
        ("arg_vm_areas_gfp", "pcpu_get_vm_areas", "gfp", Some(255)),
        ("arg_vmalloc_size", "__vmalloc_node_range", "size", None),
        ("arg_vmalloc_gfp", "__vmalloc_node_range", "gfp_mask", None),
    ];
    for (key, point, param, absent) in ARGS {
        let Some(sym) = planned_symbol(&json, point) else {
            continue;
        };
        let Some(ps) = params(raw, &sym) else {
            continue;
        };
        let want = ps
            .iter()
            .position(|p| p == param)
            .map(|i| i as u64)
            .or(*absent);
        expect(key, want, format!("{param} of {sym}"));
    }
    v.facts.push(format!("btf: {}", compared.join(" ")));
    if !problems.is_empty() {
        v.problems.extend(problems);
        v.miss_only = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &str = "[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED\n\
[2] STRUCT 'task_struct' size=9792 vlen=3\n\
\t'thread_info' type_id=3 bits_offset=0\n\
\t'__state' type_id=1 bits_offset=192\n\
\t'flags' type_id=1 bits_offset=416\n\
[4] STRUCT 'other' size=8 vlen=1\n\
\t'flags' type_id=1 bits_offset=0\n\
[5] FUNC_PROTO '(anon)' ret_type_id=1 vlen=4\n\
\t'size' type_id=1\n\t'align' type_id=1\n\t'reserved' type_id=1\n\t'gfp' type_id=1\n\
[6] FUNC 'pcpu_alloc_noprof' type_id=5 linkage=global\n";

    #[test]
    fn reads_raw_btf() {
        assert_eq!(member_offset(RAW, "task_struct", "flags"), Some(52));
        assert_eq!(member_offset(RAW, "task_struct", "nope"), None);
        assert_eq!(
            params(RAW, "pcpu_alloc_noprof").unwrap(),
            ["size", "align", "reserved", "gfp"]
        );
        assert_eq!(params(RAW, "nope"), None);
    }

    /// An x86_64 offset on an arm64 kernel, or a wrong argument position, fails.
    #[test]
    fn mismatches_fail() {
        let dir = std::env::temp_dir().join(format!("pt-btf-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = |flags: u64, gfp: u64| {
            serde_json::json!({
                "kernel": {"arch": "aarch64"},
                "config": {"task_flags_off": flags, "arg_pcpu_size": 0, "arg_pcpu_align": 1,
                           "arg_pcpu_reserved": 2, "arg_pcpu_gfp": gfp},
                "plan": {"probes": [{"point": "pcpu_alloc entry",
                    "attachment": {"how": "fentry", "symbol": "pcpu_alloc_noprof"}}]},
            })
            .to_string()
        };
        let run = |text: String| {
            std::fs::write(dir.join("check.json"), text).unwrap();
            let mut v = Verdict::default();
            check(&dir, RAW, Arch::Aarch64, &mut v);
            v.problems
        };
        assert!(run(json(52, 3)).is_empty());
        let p = run(json(44, 3));
        assert!(p.len() == 1 && p[0].contains("task_flags_off"), "{p:?}");
        let p = run(json(52, 2));
        assert!(p.len() == 1 && p[0].contains("arg_pcpu_gfp"), "{p:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
