//! Ground truth from tracefs, independent of percpu-trace: did the workload really reach
//! the condition the tool must find? Used to measure workload hit rates (the harness's
//! workload-only mode), never to judge the tool.
//!
//! kprobe events read pcpu_alloc_mutex's owner word (`@pcpu_alloc_mutex`, needs
//! KALLSYMS_ALL, as Debian has). In pcpu_populate_chunk the caller always holds the mutex, so
//! the owner there *is* the calling task: that teaches the task pointer of each comm, and
//! later events compare the owner against it ("does this task hold the mutex now?").
use std::{
    collections::{BTreeMap, HashMap},
    fs,
};

use anyhow::{bail, Context, Result};

const T: &str = "/sys/kernel/tracing";

/// Probes, in kprobe_events syntax; `OWNER` becomes the owner word's fetch argument. The
/// gfp is `$arg3` (try_to_free_pages(zonelist, order, gfp_mask, nodemask)), which the
/// kernel maps to the architecture's argument register (x86_64 and arm64 alike). A probe
/// the kernel rejects (missing function on an old kernel) is skipped.
const PROBES: &[&str] = &[
    "p:pt/populate pcpu_populate_chunk owner=OWNER",
    "p:pt/vmareas pcpu_get_vm_areas owner=OWNER",
    "p:pt/pte __pte_alloc_kernel owner=OWNER",
    "p:pt/ttfp try_to_free_pages gfp=$arg3:u32 owner=OWNER",
];

/// The owner word's fetch argument: `owner_off` bytes into pcpu_alloc_mutex (0 for
/// `mutex.owner`; on PREEMPT_RT the owner is `mutex.rtmutex.owner`, 24 on 7.2.13-rt: the
/// harness passes the offset it read from the kernel's BTF).
fn owner_arg(owner_off: u64) -> String {
    if owner_off == 0 {
        "@pcpu_alloc_mutex:u64".into()
    } else {
        format!("@pcpu_alloc_mutex+{owner_off}:u64")
    }
}

fn kallsym(name: &str) -> Result<u64> {
    let text = fs::read_to_string("/proc/kallsyms")?;
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            let addr = it.next()?;
            let _ty = it.next()?;
            (it.next()? == name).then(|| u64::from_str_radix(addr, 16).ok())?
        })
        .with_context(|| format!("{name} not in /proc/kallsyms"))
}

/// Online CPUs, from the kernel's range list ("0", "0-2,4").
fn online_cpus() -> Result<Vec<usize>> {
    let text = fs::read_to_string("/sys/devices/system/cpu/online")
        .context("reading /sys/devices/system/cpu/online")?;
    parse_cpu_list(text.trim())
}

fn parse_cpu_list(list: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.parse()?, b.parse()?);
        cpus.extend(a..=b);
    }
    Ok(cpus)
}

/// Arms the probes and lock tracepoints and starts tracing; `owner_off`: see [`owner_arg`].
/// `buffer_kb`: trace buffer per online CPU.
pub fn start(owner_off: u64, buffer_kb: u64) -> Result<()> {
    let mutex = kallsym("pcpu_alloc_mutex")?;
    fs::write(format!("{T}/tracing_on"), "0")?;
    fs::write(format!("{T}/trace"), "")?;
    // Per online CPU: the global knob sizes the buffer of every CPU ever online, which on
    // `recursion`'s 32-vCPU guest (31 offlined) would be 512 MiB of a 2 GiB guest.
    for cpu in online_cpus()? {
        fs::write(
            format!("{T}/per_cpu/cpu{cpu}/buffer_size_kb"),
            buffer_kb.to_string(),
        )?;
    }
    let owner = owner_arg(owner_off);
    for p in PROBES.iter().map(|p| p.replace("OWNER", &owner)) {
        // Append: each line is one probe.
        if let Err(e) = fs::OpenOptions::new()
            .append(true)
            .open(format!("{T}/kprobe_events"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{p}\n").as_bytes()))
        {
            eprintln!("truth: skipping probe {p:?}: {e}");
        }
    }
    let _ = fs::write(format!("{T}/events/pt/enable"), "1");
    for ev in ["contention_begin", "contention_end"] {
        let dir = format!("{T}/events/lock/{ev}");
        fs::write(format!("{dir}/filter"), format!("lock_addr == 0x{mutex:x}"))?;
        fs::write(format!("{dir}/enable"), "1")?;
    }
    if std::env::var_os("PT_TRUTH_SCHED").is_some() {
        // Where do the workload's tasks sleep? (debugging aid)
        let sw = format!("{T}/events/sched/sched_switch");
        fs::write(
            format!("{sw}/trigger"),
            "stacktrace if prev_comm ~ \"pt-*\" && prev_state != 0",
        )?;
    }
    fs::write(format!("{T}/tracing_on"), "1")?;
    Ok(())
}

/// Raw recursion hits so far, read from the live trace without stopping it (the trace
/// file is not consumed): lets the recursion workload stop after the pass that hit.
pub fn recursion_hits_so_far() -> Result<u64> {
    let trace = fs::read_to_string(format!("{T}/trace")).context("reading trace")?;
    Ok(analyze(&trace)
        .lines()
        .filter(|l| l.contains(" RECURSION_"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

/// Stops tracing, removes the probes, and writes counts per comm to `out`.
pub fn stop(out: &str) -> Result<()> {
    fs::write(format!("{T}/tracing_on"), "0")?;
    let trace = fs::read_to_string(format!("{T}/trace")).context("reading trace")?;
    let _ = fs::write(format!("{T}/events/pt/enable"), "0");
    for ev in ["contention_begin", "contention_end"] {
        let _ = fs::write(format!("{T}/events/lock/{ev}/enable"), "0");
    }
    fs::write(format!("{T}/kprobe_events"), "").context("removing our kprobes")?;
    if std::env::var_os("PT_TRUTH_SCHED").is_some() {
        fs::write(format!("{out}.trace"), &trace)?;
        let _ = fs::write(
            format!("{T}/events/sched/sched_switch/trigger"),
            "!stacktrace",
        );
    }
    let summary = analyze(&trace);
    fs::write(out, &summary)?;
    print!("{summary}");
    if trace.lines().any(|l| l.contains("LOST")) {
        bail!("trace buffer overflowed: counts are low bounds");
    }
    Ok(())
}

fn field(line: &str, key: &str) -> Option<u64> {
    let v = line.split(key).nth(1)?.split_whitespace().next()?;
    let v = v.trim_end_matches(',');
    v.strip_prefix("0x")
        .map_or_else(|| v.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
}

/// Counts per comm and the two conditions the tool must find.
fn analyze(trace: &str) -> String {
    // __GFP_IO | __GFP_FS.
    const IO_FS: u64 = 0x40 | 0x80;
    let mut task_ptr: HashMap<String, u64> = HashMap::new();
    let mut counts: BTreeMap<(String, &str), u64> = BTreeMap::new();
    let mut waiting: HashMap<String, bool> = HashMap::new();
    for l in trace.lines().filter(|l| !l.starts_with('#')) {
        // "  comm-pid  [cpu] flags  ts: event: args"
        let Some(task) = l.split_whitespace().next() else {
            continue;
        };
        let comm = task.rsplit_once('-').map_or(task, |(c, _)| c).to_string();
        let owner = field(l, "owner=").map(|o| o & !7);
        let holds = owner.is_some() && owner == task_ptr.get(&comm).copied();
        let mut bump = |k: &'static str| *counts.entry((comm.clone(), k)).or_default() += 1;
        if l.contains(" populate:") {
            if let Some(o) = owner {
                task_ptr.insert(comm.clone(), o);
            }
            bump("populate");
        } else if l.contains(" vmareas:") {
            bump(if holds {
                "vm_areas_holding"
            } else {
                "vm_areas"
            });
        } else if l.contains(" pte:") {
            bump(if holds { "pte_holding" } else { "pte" });
        } else if l.contains(" ttfp:") {
            bump("direct_reclaim");
            if holds {
                bump("direct_reclaim_holding");
                let io_fs = field(l, "gfp=").is_some_and(|g| g & IO_FS != 0);
                let constrained_waits = waiting.iter().any(|(c, w)| *w && c.contains("flusher"));
                if io_fs && constrained_waits {
                    bump("CROSS_TASK_reclaim_io_fs_holding_while_flusher_waits");
                }
                // The io.max writers' gfp argument is GFP_NOIO (no scope): their own
                // reclaim allowing IO/FS under the mutex is the recursion condition.
                if io_fs && (comm.contains("noio-gfp") || comm.contains("rec-writer")) {
                    bump("RECURSION_reclaim_io_fs_holding_by_noio_writer");
                }
            }
        } else if l.contains("contention_begin:") {
            waiting.insert(comm.clone(), true);
            bump("contention");
        } else if l.contains("contention_end:") {
            waiting.insert(comm.clone(), false);
        }
    }
    counts
        .iter()
        .map(|((c, k), n)| format!("{c} {k} {n}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_task_is_counted() {
        let t = "\
 pt-unc-a-10 [000] ..... 1.0: populate: (pcpu_populate_chunk+0x0/0x10) owner=0xffff888001000000
 pt-flusher-11 [001] ..... 1.1: contention_begin: 0xffffffff82000000 (flags=MUTEX)
 pt-unc-a-10 [000] ..... 1.2: ttfp: (try_to_free_pages+0x0/0x10) gfp=0xcc0 owner=0xffff888001000001
 pt-flusher-11 [001] ..... 1.3: contention_end: 0xffffffff82000000 (ret=0)
 pt-unc-a-10 [000] ..... 1.4: ttfp: (try_to_free_pages+0x0/0x10) gfp=0xcc0 owner=0xffff888001000000
";
        let s = analyze(t);
        assert!(
            s.contains("pt-unc-a CROSS_TASK_reclaim_io_fs_holding_while_flusher_waits 1"),
            "{s}"
        );
        assert!(s.contains("pt-unc-a direct_reclaim_holding 2"), "{s}");
        assert!(s.contains("pt-flusher contention 1"), "{s}");
    }

    #[test]
    fn cpu_lists_are_parsed() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_cpu_list("x").is_err());
    }

    #[test]
    fn recursion_is_counted() {
        let t = "\
 pt-rec-writer-9 [000] ..... 1.0: populate: (pcpu_populate_chunk+0x0/0x10) owner=0xffff888002000000
 pt-rec-writer-9 [000] ..... 1.1: ttfp: (try_to_free_pages+0x0/0x10) gfp=0x400 owner=0xffff888002000000
 pt-rec-writer-9 [000] ..... 1.2: ttfp: (try_to_free_pages+0x0/0x10) gfp=0xcc0 owner=0xffff888002000000
 pt-rec-writer-9 [000] ..... 1.3: ttfp: (try_to_free_pages+0x0/0x10) gfp=0xcc0 owner=0x0
";
        let s = analyze(t);
        assert!(
            s.contains("pt-rec-writer RECURSION_reclaim_io_fs_holding_by_noio_writer 1"),
            "{s}"
        );
        assert!(s.contains("pt-rec-writer direct_reclaim_holding 2"), "{s}");
    }
}
